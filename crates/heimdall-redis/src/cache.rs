//! The semantic cache shared through Redis (`vector_store` of type `redis`): every instance
//! using the same server and key prefix answers from the same entries, each from its own
//! memory.
//!
//! **Layout.** Each entry is one string key, `{prefix}e:{tag}:{id}`, holding
//! [`Entry::encode`]'s bytes and expiring with the entry (`PXAT`), so Redis drops it when it
//! stops answering. `tag` is the first half of the SHA-256 of the entry's cache key, so a
//! cache key's entries share one key pattern and no client text reaches a key name or a
//! `SCAN` pattern. Every change is also appended to the stream `{prefix}changes` (trimmed to
//! about [`STREAM_LENGTH`] records): who made it (`o`, a random id per process) and what: an
//! entry stored (`s`: its key after the prefix), removed by id (`i`), a cache key's entries
//! removed (`k`), or all (`a`).
//!
//! **Writing.** [`SharedCache`] is the cache's [`Journal`]: it queues each change on a
//! bounded channel (a full queue drops and counts it) for one task, which writes stored
//! entries in batches (one pipeline of `SET` and `XADD` per batch) and carries out removals
//! with `SCAN` and `UNLINK`. Nothing on the request path waits for Redis.
//!
//! **Following.** Another task reads the stream (`XREAD BLOCK`, on a connection of its own,
//! since a blocked read holds its connection) and applies the other processes' changes to
//! this one's memory without journaling them again (no echo); its own records it skips. At
//! start, and whenever it may have missed records (Redis did not answer, or the stream was
//! trimmed past the last record it read), it reads every entry key instead and drops from
//! memory what Redis no longer holds. So an entry stored through one instance answers on the
//! others about one round trip later, and a removal on one reaches all.
//!
//! **Redis unreachable.** Each instance keeps answering from its memory and storing there;
//! changes it cannot write are dropped and counted. When Redis answers again the follower
//! reloads: Redis is the source of truth, so memory then holds what Redis holds (entries
//! stored meanwhile are gone, entries cleared meanwhile on this instance alone come back).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use heimdall_cache::request::hex;
use heimdall_cache::{Cache, Entry, Journal, Removed};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{Connection, Endpoint, Failure, RETRY_CONNECT, bounded};

/// Changes waiting for the writer; past this a change is dropped and counted (its entry
/// still answers from this instance's memory).
const QUEUE: usize = 4096;
/// Changes written per pipeline (an answer may be a few MiB).
const BATCH: usize = 32;
/// Records the change stream keeps, about (`MAXLEN ~`): seconds of changes under load, so
/// only a follower cut off for longer has to read every entry again.
const STREAM_LENGTH: usize = 10_000;
/// Records read per `XREAD`.
const READ_COUNT: usize = 256;
/// How long one `XREAD` waits on the server for a record.
const BLOCK_MS: u64 = 2_000;
const BLOCK: Duration = Duration::from_millis(BLOCK_MS);
/// Keys per `SCAN` step.
const SCAN_COUNT: usize = 512;
/// Values read per round trip (at most [`MAX_VALUE`] each).
const READ_CHUNK: usize = 16;
/// Longest value read: an answer is at most 4 MiB (the cache stage's bound) and a vector
/// 64 KiB, so a longer value is not an entry (it fails to decode, cut at this length).
const MAX_VALUE: usize = 8 << 20;
/// Longest wait at start for the first reading of the entries.
const FIRST_LOAD: Duration = Duration::from_secs(10);

/// The cache's live size bound, read when another instance's entry arrives.
pub type MaxBytes = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Change {
    Stored(Arc<Entry>),
    Removed(Removed),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The [`Journal`] of a cache shared through Redis; see the module documentation.
pub struct SharedCache {
    queue: mpsc::Sender<Change>,
}

impl SharedCache {
    /// Shares `cache` through `endpoint`'s Redis under `prefix`: reads the entries Redis
    /// holds (waiting at most [`FIRST_LOAD`], and not at all when Redis does not answer),
    /// becomes the cache's journal, and starts the writer (which ends once the journal is
    /// dropped and what it queued is written) and the follower, whose task is returned: it
    /// runs until aborted.
    pub async fn start(
        cache: Arc<Cache>,
        endpoint: &Endpoint,
        prefix: &str,
        max_bytes: MaxBytes,
    ) -> (Arc<SharedCache>, JoinHandle<()>) {
        let origin: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let layout = Layout::new(prefix);
        let reading = endpoint.blocking_up_to(BLOCK);
        let (writes, reads) = tokio::join!(endpoint.connect(None), reading.connect(None));
        let unreachable = reads.borrow().as_ref().err().cloned();
        let (loaded, first_load) = oneshot::channel();
        let follower = Follower {
            cache: Arc::clone(&cache),
            layout: layout.clone(),
            origin: Arc::clone(&origin),
            timeout: endpoint.timeout(),
            max_bytes,
        };
        let following = tokio::spawn(follower.run(reads, loaded));
        match unreachable {
            Some(e) => tracing::warn!(
                error = %e,
                "semantic cache: Redis (vector_store) does not answer; entries stay in this instance's memory until it does (trying every {} s)",
                RETRY_CONNECT.as_secs()
            ),
            None => {
                if tokio::time::timeout(FIRST_LOAD, first_load).await.is_err() {
                    tracing::warn!(
                        "semantic cache: reading the shared entries takes more than {} s; starting while they load",
                        FIRST_LOAD.as_secs()
                    );
                }
            }
        }
        let (queue, waiting) = mpsc::channel(QUEUE);
        let writer = Writer {
            cache: Arc::clone(&cache),
            connected: writes,
            layout,
            origin,
            timeout: endpoint.timeout(),
            failing: false,
        };
        tokio::spawn(writer.run(waiting));
        let shared = Arc::new(SharedCache { queue });
        cache.set_journal(Arc::clone(&shared) as Arc<dyn Journal>);
        (shared, following)
    }

    fn send(&self, change: Change) {
        if self.queue.try_send(change).is_err() {
            metrics::counter!("heimdall_cache_journal_dropped_total").increment(1);
            tracing::warn!("semantic cache: the queue to Redis is full; a change was not shared");
        }
    }

    /// Waits (at most `timeout`) until what is queued is written.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        if self
            .queue
            .send_timeout(Change::Flush(done), timeout)
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

impl Journal for SharedCache {
    fn stored(&self, entry: &Arc<Entry>) {
        self.send(Change::Stored(Arc::clone(entry)));
    }

    fn removed(&self, what: &Removed) {
        self.send(Change::Removed(what.clone()));
    }
}

/// Key names under the prefix.
#[derive(Clone)]
struct Layout {
    prefix: String,
    /// The prefix as a `SCAN` pattern matching itself.
    pattern: String,
}

impl Layout {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            pattern: glob_escape(prefix),
        }
    }

    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        [self.prefix.as_bytes(), suffix].concat()
    }

    fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// The keys of the entries `what` names.
    fn pattern(&self, what: &Removed) -> String {
        match what {
            Removed::Id(id) => format!("{}e:*:{}", self.pattern, glob_escape(id)),
            Removed::Key(key) => format!("{}e:{}:*", self.pattern, tag(key)),
            Removed::All => format!("{}e:*", self.pattern),
        }
    }
}

/// An entry's key after the prefix.
fn suffix(entry: &Entry) -> String {
    format!("e:{}:{}", tag(&entry.cache_key), entry.id)
}

/// How entry keys name a cache key: the first half of its SHA-256, in hex.
fn tag(cache_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cache_key.as_bytes());
    let mut tag = <[u8; 32]>::try_from(digest.as_ref()).map_or_else(|_| String::new(), |d| hex(&d));
    tag.truncate(32);
    tag
}

/// `text` as a `SCAN` pattern that matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `SCAN` step over `pattern`: the next cursor (0 at the end) and the keys found.
async fn scan(
    conn: &mut ConnectionManager,
    timeout: Duration,
    cursor: u64,
    pattern: &str,
) -> Result<(u64, Vec<Vec<u8>>), Failure> {
    bounded(
        timeout,
        "finding entries",
        redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query_async(conn),
    )
    .await
}

/// Writes the queued changes to Redis.
struct Writer {
    /// Its clock: an entry expired by the time it is written is not.
    cache: Arc<Cache>,
    connected: watch::Receiver<Connection>,
    layout: Layout,
    origin: Arc<str>,
    timeout: Duration,
    /// Whether the last write failed: the log says when failures start and stop, not each.
    failing: bool,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Change>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut stored = Vec::new();
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            for change in batch.drain(..) {
                match change {
                    Change::Stored(entry) => stored.push(entry),
                    Change::Removed(what) => {
                        self.store(&mut stored).await;
                        let removed = self.remove(&what).await;
                        self.settle(removed, 1);
                    }
                    Change::Flush(done) => {
                        self.store(&mut stored).await;
                        let _ = done.send(());
                    }
                }
            }
            self.store(&mut stored).await;
        }
    }

    /// The connection, or why there is none yet (once made, it stays: it reconnects itself).
    fn conn(&self) -> Connection {
        self.connected.borrow().clone()
    }

    /// Appends a change record to `pipe`.
    fn record(&self, pipe: &mut redis::Pipeline, field: &str, value: &[u8]) {
        pipe.cmd("XADD")
            .arg(self.layout.changes())
            .arg("MAXLEN")
            .arg("~")
            .arg(STREAM_LENGTH)
            .arg("*")
            .arg("o")
            .arg(&*self.origin)
            .arg(field)
            .arg(value)
            .ignore();
    }

    /// Writes `entries` (emptying it) in one round trip.
    async fn store(&mut self, entries: &mut Vec<Arc<Entry>>) {
        let now = self.cache.now_ms();
        let mut pipe = redis::pipe();
        let mut count = 0;
        for entry in entries.drain(..).filter(|e| e.expires_ms > now) {
            let suffix = suffix(&entry);
            pipe.cmd("SET")
                .arg(self.layout.key(suffix.as_bytes()))
                .arg(entry.encode())
                .arg("PXAT")
                .arg(entry.expires_ms)
                .ignore();
            self.record(&mut pipe, "s", suffix.as_bytes());
            count += 1;
        }
        if count == 0 {
            return;
        }
        let written = match self.conn() {
            Ok(mut conn) => {
                bounded(
                    self.timeout,
                    "storing entries",
                    pipe.query_async::<()>(&mut conn),
                )
                .await
            }
            Err(e) => Err(e),
        };
        self.settle(written, count);
    }

    async fn remove(&self, what: &Removed) -> Result<(), Failure> {
        let mut conn = self.conn()?;
        let pattern = self.layout.pattern(what);
        let mut cursor = 0;
        loop {
            let (next, keys) = scan(&mut conn, self.timeout, cursor, &pattern).await?;
            if !keys.is_empty() {
                bounded(
                    self.timeout,
                    "removing entries",
                    redis::cmd("UNLINK").arg(keys).query_async::<()>(&mut conn),
                )
                .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let (field, value) = match what {
            Removed::Id(id) => ("i", id.as_bytes()),
            Removed::Key(key) => ("k", key.as_bytes()),
            Removed::All => ("a", &b""[..]),
        };
        let mut pipe = redis::pipe();
        self.record(&mut pipe, field, value);
        bounded(
            self.timeout,
            "recording a removal",
            pipe.query_async::<()>(&mut conn),
        )
        .await
    }

    /// Counts and logs `changes` changes that were not written.
    fn settle(&mut self, written: Result<(), Failure>, changes: u64) {
        match written {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("semantic cache: writing to Redis works again");
                }
            }
            Err(e) => {
                metrics::counter!("heimdall_cache_journal_dropped_total").increment(changes);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        error = %e,
                        "semantic cache: writing to Redis failed; changes stay in this instance's memory (counted in heimdall_cache_journal_dropped_total)"
                    );
                }
            }
        }
    }
}

/// Applies the other instances' changes to this one's memory.
struct Follower {
    cache: Arc<Cache>,
    layout: Layout,
    origin: Arc<str>,
    timeout: Duration,
    max_bytes: MaxBytes,
}

impl Follower {
    /// Reads the entries, then the changes after them, and again whenever that stops; says
    /// on `loaded` when the first reading is done (dropping it if that failed).
    async fn run(self, mut connected: watch::Receiver<Connection>, loaded: oneshot::Sender<()>) {
        let mut loaded = Some(loaded);
        let Some(mut conn) = crate::connected(&mut connected).await else {
            return;
        };
        let mut failing = false;
        loop {
            let stopped = match self.load(&mut conn).await {
                Ok((last, entries)) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(entries, "semantic cache: entries read again from Redis");
                    } else {
                        tracing::info!(entries, "semantic cache: entries read from Redis");
                    }
                    if let Some(loaded) = loaded.take() {
                        let _ = loaded.send(());
                    }
                    self.tail(&mut conn, last).await
                }
                Err(e) => e,
            };
            loaded = None;
            if !std::mem::replace(&mut failing, true) {
                tracing::warn!(
                    error = %stopped,
                    "semantic cache: lost track of the shared entries; answering from this instance's memory until they are read again from Redis"
                );
            }
            tokio::time::sleep(RETRY_CONNECT).await;
        }
    }

    /// Reads every entry Redis holds into memory and drops from memory what Redis no longer
    /// holds: the stream's position before the reading, and how many entries were taken.
    async fn load(&self, conn: &mut ConnectionManager) -> Result<(StreamId, usize), Failure> {
        // The position first: changes made during the reading are applied after it again,
        // which does no harm.
        let newest = bounded(
            self.timeout,
            "reading the change stream",
            redis::cmd("XREVRANGE")
                .arg(self.layout.changes())
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async::<Value>(conn),
        )
        .await
        .and_then(records)?;
        let last = newest.first().map_or(StreamId::default(), |r| r.id);
        let since = self.cache.now_ms();
        let max_bytes = (self.max_bytes)();
        let pattern = self.layout.pattern(&Removed::All);
        let mut held = HashSet::new();
        let mut taken = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = scan(conn, self.timeout, cursor, &pattern).await?;
            for entry in self.read(conn, &keys).await?.into_iter().flatten() {
                let id = entry.id.clone();
                // Only what memory holds needs keeping, so this set is as bounded as memory.
                if self.cache.restore([entry], max_bytes) > 0 {
                    held.insert(id);
                    taken += 1;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.cache.forget_all_but(&held, since);
        Ok((last, taken))
    }

    /// The entries at `keys`, in order: `None` for a key that is gone or holds no entry.
    async fn read(
        &self,
        conn: &mut ConnectionManager,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Entry>>, Failure> {
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(READ_CHUNK) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("GETRANGE").arg(key).arg(0).arg(MAX_VALUE - 1);
            }
            let values: Vec<Vec<u8>> =
                bounded(self.timeout, "reading entries", pipe.query_async(conn)).await?;
            entries.extend(values.into_iter().map(|v| Entry::decode(Bytes::from(v))));
        }
        Ok(entries)
    }

    /// Applies the changes after `last` as they come, until a read fails or records may
    /// have been missed; says why it stopped.
    async fn tail(&self, conn: &mut ConnectionManager, mut last: StreamId) -> Failure {
        loop {
            let read = bounded(
                self.timeout + BLOCK,
                "reading changes",
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(BLOCK_MS)
                    .arg("STREAMS")
                    .arg(self.layout.changes())
                    .arg(last.to_string())
                    .query_async::<Value>(conn),
            )
            .await
            .and_then(read_records);
            let records = match read {
                Ok(records) => records,
                Err(e) => return e,
            };
            // A stream trimmed past `last` grew by more than a full read since.
            if records.len() >= READ_COUNT {
                match self.trimmed_past(conn, last).await {
                    Ok(false) => {}
                    Ok(true) => {
                        return Failure(
                            "the change stream was trimmed past the last record read".into(),
                        );
                    }
                    Err(e) => return e,
                }
            }
            if let Err(e) = self.apply(conn, &records).await {
                return e;
            }
            if let Some(r) = records.last() {
                last = r.id;
            }
        }
    }

    /// Whether the stream's oldest record is newer than `last`: records after `last` may
    /// have been trimmed unread.
    async fn trimmed_past(
        &self,
        conn: &mut ConnectionManager,
        last: StreamId,
    ) -> Result<bool, Failure> {
        let oldest = bounded(
            self.timeout,
            "reading the change stream",
            redis::cmd("XRANGE")
                .arg(self.layout.changes())
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async::<Value>(conn),
        )
        .await
        .and_then(records)?;
        Ok(oldest.first().is_some_and(|r| r.id > last))
    }

    /// Applies other instances' records in order; the entries they stored are read in one
    /// round trip first (one since removed or expired reads as gone and is skipped).
    async fn apply(&self, conn: &mut ConnectionManager, records: &[Record]) -> Result<(), Failure> {
        let theirs = || {
            records
                .iter()
                .filter(|r| r.origin.as_slice() != self.origin.as_bytes())
        };
        let keys: Vec<Vec<u8>> = theirs()
            .filter_map(|r| match &r.change {
                Some(Remote::Stored(suffix)) => Some(self.layout.key(suffix)),
                _ => None,
            })
            .collect();
        let mut stored = self.read(conn, &keys).await?.into_iter();
        let max_bytes = (self.max_bytes)();
        for r in theirs() {
            match &r.change {
                Some(Remote::Stored(_)) => {
                    if let Some(Some(entry)) = stored.next() {
                        self.cache.restore([entry], max_bytes);
                    }
                }
                Some(Remote::Removed(what)) => {
                    self.cache.forget(what);
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// A stream record's id: milliseconds and sequence number, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(text: &[u8]) -> Option<Self> {
        let (ms, seq) = std::str::from_utf8(text).ok()?.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// A change record.
struct Record {
    id: StreamId,
    origin: Vec<u8>,
    /// `None`: a record this version does not know; skipped.
    change: Option<Remote>,
}

enum Remote {
    /// The entry's key after the prefix.
    Stored(Vec<u8>),
    Removed(Removed),
}

fn unexpected() -> Failure {
    Failure("redis reading changes: unexpected reply".into())
}

/// The records of one stream as `XRANGE` gives them: `[[id, [field, value, …]], …]`.
fn records(reply: Value) -> Result<Vec<Record>, Failure> {
    let Value::Array(items) = reply else {
        return Err(unexpected());
    };
    items.into_iter().map(record).collect()
}

/// The records of the one stream an `XREAD` asked for; none when it timed out.
fn read_records(reply: Value) -> Result<Vec<Record>, Failure> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        // `[[name, records]]`, or with RESP3 `{name: records}`.
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.into_iter().nth(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, records)| records).collect(),
        _ => return Err(unexpected()),
    };
    let mut out = Vec::new();
    for stream in streams {
        out.extend(records(stream)?);
    }
    Ok(out)
}

fn record(item: Value) -> Result<Record, Failure> {
    let Value::Array(parts) = item else {
        return Err(unexpected());
    };
    let mut parts = parts.into_iter();
    let (Some(Value::BulkString(id)), Some(fields)) = (parts.next(), parts.next()) else {
        return Err(unexpected());
    };
    let id = StreamId::parse(&id).ok_or_else(unexpected)?;
    let mut record = Record {
        id,
        origin: Vec::new(),
        change: None,
    };
    let Value::Array(fields) = fields else {
        return Ok(record);
    };
    let text = |v: Vec<u8>| String::from_utf8(v).ok();
    let mut fields = fields.into_iter();
    while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) =
        (fields.next(), fields.next())
    {
        match name.as_slice() {
            b"o" => record.origin = value,
            b"s" => record.change = Some(Remote::Stored(value)),
            b"i" => record.change = text(value).map(|id| Remote::Removed(Removed::Id(id))),
            b"k" => record.change = text(value).map(|key| Remote::Removed(Removed::Key(key))),
            b"a" => record.change = Some(Remote::Removed(Removed::All)),
            _ => {}
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use heimdall_cache::{Clock, SystemClock, normalized};

    use super::*;
    use crate::testing::{relay, server, unique_prefix};

    /// Deletes the keys under its prefix when dropped, after a failed assertion too.
    struct Prefix(String);

    impl Drop for Prefix {
        fn drop(&mut self) {
            let Ok(mut conn) = redis::Client::open(server()).and_then(|c| c.get_connection())
            else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.0))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }

    struct Instance {
        cache: Arc<Cache>,
        shared: Arc<SharedCache>,
        follower: JoinHandle<()>,
    }

    impl Drop for Instance {
        fn drop(&mut self) {
            self.follower.abort();
        }
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::new(url, Duration::from_secs(2)).unwrap()
    }

    async fn instance(url: &str, prefix: &Prefix) -> Instance {
        let cache = Arc::new(Cache::default());
        let (shared, follower) = SharedCache::start(
            Arc::clone(&cache),
            &endpoint(url),
            &prefix.0,
            Arc::new(|| u64::MAX),
        )
        .await;
        Instance {
            cache,
            shared,
            follower,
        }
    }

    fn entry(n: u8, key: &str, vector: Option<&[f32]>, ttl_ms: i64) -> Entry {
        let direct = [n; 32];
        let now = SystemClock.now_ms();
        Entry {
            id: Entry::id_for(&direct),
            cache_key: key.into(),
            direct,
            scope: [0; 32],
            vector: vector.and_then(normalized).map(Arc::from),
            stream: false,
            body: Bytes::from(format!("answer {n}")),
            provider: "p".into(),
            model: "m".into(),
            created_ms: now,
            expires_ms: now + ttl_ms,
        }
    }

    async fn within(limit: Duration, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    async fn admin() -> ConnectionManager {
        endpoint(&server()).establish(None).await.unwrap()
    }

    async fn entry_keys(prefix: &Prefix) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{}e:*", prefix.0))
            .query_async(&mut admin().await)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_entry_stored_on_one_instance_answers_on_another_and_removals_reach_all() {
        let prefix = Prefix(unique_prefix("share"));
        let a = instance(&server(), &prefix).await;
        let b = instance(&server(), &prefix).await;
        let far = 60_000;
        let one = a
            .cache
            .insert(entry(1, "k1", Some(&[1.0, 0.0]), far), u64::MAX)
            .unwrap();
        within(SECOND, "a direct hit on b", || {
            b.cache.direct(&one.direct).is_some()
        })
        .await;
        let near = normalized(&[0.9, 0.1]).unwrap();
        let hit = b
            .cache
            .nearest(&[0; 32], &near, 0.9)
            .expect("a semantic hit on b");
        assert_eq!(*hit.entry, *one);

        b.cache.insert(entry(2, "k1", None, far), u64::MAX).unwrap();
        b.cache.insert(entry(3, "k2", None, far), u64::MAX).unwrap();
        within(SECOND, "b's entries on a", || a.cache.stats().0 == 3).await;
        assert_eq!(b.cache.remove_key("k1"), 2);
        within(SECOND, "k1 cleared on a", || a.cache.stats().0 == 1).await;
        assert_eq!(entry_keys(&prefix).await.len(), 1, "k2's entry is left");

        let four = a.cache.insert(entry(4, "k2", None, far), u64::MAX).unwrap();
        within(SECOND, "a's entry on b", || b.cache.stats().0 == 2).await;
        assert!(a.cache.remove_id(&four.id));
        within(SECOND, "the removal on b", || {
            b.cache.direct(&four.direct).is_none()
        })
        .await;
        assert_eq!(b.cache.clear(), 1);
        within(SECOND, "the clear on a", || a.cache.stats().0 == 0).await;
        assert!(entry_keys(&prefix).await.is_empty());
        // Each change made one record: nothing applied from another instance was sent back.
        let records: usize = redis::cmd("XLEN")
            .arg(format!("{}changes", prefix.0))
            .query_async(&mut admin().await)
            .await
            .unwrap();
        assert_eq!(records, 7);
    }

    #[tokio::test]
    async fn entries_expire_in_redis_and_in_every_instance() {
        let prefix = Prefix(unique_prefix("ttl"));
        let a = instance(&server(), &prefix).await;
        let b = instance(&server(), &prefix).await;
        let short = a.cache.insert(entry(1, "k", None, 600), u64::MAX).unwrap();
        within(SECOND, "the entry on b", || {
            b.cache.direct(&short.direct).is_some()
        })
        .await;
        let key = format!("{}{}", prefix.0, suffix(&short));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut admin().await)
            .await
            .unwrap();
        assert!((1..=600).contains(&ttl), "{ttl}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut admin().await)
            .await
            .unwrap();
        assert!(!exists, "Redis dropped it");
        assert!(b.cache.direct(&short.direct).is_none());
        assert_eq!(b.cache.purge_expired(), 1);
    }

    #[tokio::test]
    async fn a_reading_takes_what_redis_holds_and_drops_what_it_lost() {
        let prefix = Prefix(unique_prefix("load"));
        let a = instance(&server(), &prefix).await;
        let kept = a
            .cache
            .insert(entry(1, "k", None, 60_000), u64::MAX)
            .unwrap();
        let lost = a
            .cache
            .insert(entry(2, "k", None, 60_000), u64::MAX)
            .unwrap();
        assert!(a.shared.flush(SECOND).await);
        // A later instance has them once started.
        let c = instance(&server(), &prefix).await;
        assert_eq!(c.cache.stats().0, 2);
        // Redis loses one behind every instance's back (evicted, say): a reading drops it.
        redis::cmd("DEL")
            .arg(format!("{}{}", prefix.0, suffix(&lost)))
            .query_async::<()>(&mut admin().await)
            .await
            .unwrap();
        let follower = Follower {
            cache: Arc::clone(&c.cache),
            layout: Layout::new(&prefix.0),
            origin: "reader".into(),
            timeout: SECOND,
            max_bytes: Arc::new(|| u64::MAX),
        };
        let (_, taken) = follower.load(&mut admin().await).await.unwrap();
        assert_eq!(taken, 1);
        assert!(c.cache.direct(&kept.direct).is_some());
        assert!(c.cache.direct(&lost.direct).is_none());
    }

    #[tokio::test]
    async fn without_redis_the_cache_stays_local_and_reads_redis_once_it_answers() {
        let prefix = Prefix(unique_prefix("outage"));
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let a = instance(&server(), &prefix).await;
        let shared = a
            .cache
            .insert(entry(1, "k", None, 60_000), u64::MAX)
            .unwrap();
        assert!(a.shared.flush(SECOND).await);

        let began = Instant::now();
        let late = instance(&format!("redis://{addr}"), &prefix).await;
        assert!(began.elapsed() < 2 * SECOND, "{:?}", began.elapsed());
        let local = late
            .cache
            .insert(entry(2, "k", None, 60_000), u64::MAX)
            .unwrap();
        assert!(
            late.cache.direct(&local.direct).is_some(),
            "answers from memory"
        );
        assert!(late.cache.direct(&shared.direct).is_none());

        let relaying = relay(tokio::net::TcpListener::bind(addr).await.unwrap());
        within(RETRY_CONNECT * 5, "Redis's entries", || {
            late.cache.direct(&shared.direct).is_some()
        })
        .await;
        // Redis is the source of truth: what was stored while it was away is gone.
        assert!(late.cache.direct(&local.direct).is_none());
        relaying.abort();
    }

    #[test]
    fn key_names_and_patterns_hold_no_client_text_and_no_wildcards() {
        let layout = Layout::new("app[1]:");
        assert_eq!(layout.pattern(&Removed::All), "app\\[1\\]:e:*");
        let by_key = layout.pattern(&Removed::Key("tenant*".into()));
        assert!(!by_key.contains("tenant"), "{by_key}");
        assert_eq!(by_key.len(), "app\\[1\\]:e:".len() + 32 + 2);
        assert_eq!(
            layout.pattern(&Removed::Id("ce_?".into())),
            "app\\[1\\]:e:*:ce_\\?"
        );
        assert_eq!(
            StreamId::parse(b"1700000000000-12"),
            Some(StreamId(1_700_000_000_000, 12))
        );
        assert_eq!(StreamId(5, 0).to_string(), "5-0");
        assert!(StreamId(5, 1) > StreamId(4, 99));
        assert_eq!(StreamId::parse(b"12"), None);
    }
}
