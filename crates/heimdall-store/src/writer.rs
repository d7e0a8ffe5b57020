//! The log writer: records are queued by the request path and written by one task, in
//! batches (multi-row `INSERT`s, one transaction per batch), so that logging costs a request
//! only an atomic queue push.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use heimdall_core::{Content, Outcome, RecordSink, RequestRecord};
use heimdall_protocol::dialect::{Endpoint, front_door};
use sqlx::{PgPool, QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::mpsc;

use crate::query::AttemptEntry;
use crate::{Db, Store, duration_ms, millis};

/// A queue size that absorbs several seconds of bursts at 10k requests/s.
pub const DEFAULT_QUEUE: usize = 65_536;
/// Content bytes the queue may hold (request bodies and answers, up to 1 MiB each for a
/// stream): the record count alone would let a backlog of large bodies take gigabytes. Past
/// it a record still queues, without its content (stored as truncated), and is counted in
/// `heimdall_log_content_withheld_total`.
pub const DEFAULT_QUEUE_CONTENT_BYTES: usize = 256 << 20;
/// Rows per `INSERT` statement: far below SQLite's 32,766 bound parameters (31 per row).
const ROWS_PER_INSERT: usize = 256;
/// Records per transaction at most. A commit costs far more than a row (thread hand-offs,
/// WAL frames, an fsync now and then), so the writer gathers records for up to [`LINGER`]
/// before writing: under load it commits a few times a second instead of once per handful
/// of records. Measured in BENCHMARKS.md (the logging scenario).
const BATCH: usize = 4096;
/// How long the first record of a batch waits for others (asleep: waking for every record
/// that arrives would cost a wake-up per request); the delay before a record shows in
/// `/api/logs`.
const LINGER: Duration = Duration::from_millis(100);
/// Attempts at writing a batch before it is written row by row (so that one row the database
/// refuses does not take its whole batch down) and what still fails is counted as failed.
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(100);
/// At most one warning per this long about records dropped because the queue was full.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Takes finished records off the request path: [`RecordSink::record`] only pushes the
/// record onto a bounded queue, dropping (and counting) it when the queue is full.
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Ends the writer: see [`WriterHandle::close`].
pub struct WriterHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What the writer did over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    pub written: u64,
    /// Refused by a full queue or after close, or still queued when close gave up waiting.
    pub dropped: u64,
    /// Refused by the database after retries.
    pub failed: u64,
}

struct Shared {
    /// `None` once closed. Behind a lock rather than in each `LogWriter` so that close can end
    /// the channel (letting the task drain it and stop) while sinks still hold the writer.
    sender: RwLock<Option<mpsc::Sender<Arc<RequestRecord>>>>,
    /// Content bytes of the records queued or being written, and their bound.
    content_bytes: AtomicUsize,
    max_content_bytes: usize,
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    born: Instant,
    /// Drops not yet warned about, and when (ms after `born`) the last warning went out.
    unwarned: AtomicU64,
    last_warn_ms: AtomicU64,
}

impl Shared {
    fn counts(&self) -> Closed {
        Closed {
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("heimdall_log_records_dropped_total").increment(1);
        self.unwarned.fetch_add(1, Ordering::Relaxed);
        // Milliseconds since `born`, plus one so that 0 can mean "never warned".
        let now = u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= duration_ms(WARN_EVERY).unsigned_abs();
        // One caller wins the exchange and warns; the others only counted.
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let n = self.unwarned.swap(0, Ordering::Relaxed);
            tracing::warn!(
                dropped = n,
                "request log queue is full (or closed): records dropped"
            );
        }
    }
}

impl Shared {
    /// Takes `bytes` of the content budget; false (and nothing taken) when they do not fit.
    fn reserve_content(&self, bytes: usize) -> bool {
        let before = self.content_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) <= self.max_content_bytes {
            return true;
        }
        self.content_bytes.fetch_sub(bytes, Ordering::Relaxed);
        false
    }

    fn release_content(&self, records: &[Arc<RequestRecord>]) {
        let bytes: usize = records.iter().map(|r| content_len(r)).sum();
        self.content_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

fn content_len(record: &RequestRecord) -> usize {
    record.content.as_ref().map_or(0, Content::len)
}

impl RecordSink for LogWriter {
    fn record(&self, record: &Arc<RequestRecord>) {
        let size = content_len(record);
        let record = if size == 0 || self.shared.reserve_content(size) {
            Arc::clone(record)
        } else {
            metrics::counter!("heimdall_log_content_withheld_total").increment(1);
            let mut lean = RequestRecord::clone(record);
            lean.content = Some(Content::withheld());
            Arc::new(lean)
        };
        let sent = {
            let sender = self
                .shared
                .sender
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match sender.as_ref() {
                Some(tx) => tx.try_send(record).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
                }),
                None => Err(record),
            }
        };
        match sent {
            Ok(()) => {
                self.shared.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(record) => {
                self.shared.release_content(std::slice::from_ref(&record));
                self.shared.drop_one();
            }
        }
    }
}

impl WriterHandle {
    /// Stops taking records, writes everything already queued, and returns the counts. Gives
    /// up after `within`: what was still queued then counts as dropped.
    pub async fn close(mut self, within: Duration) -> Closed {
        // Dropping the only sender ends the channel once drained: the task then returns.
        drop(
            self.shared
                .sender
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if tokio::time::timeout(within, &mut self.task).await.is_err() {
            self.task.abort();
            let s = &self.shared;
            let settled = s.written.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed);
            let left = s.accepted.load(Ordering::Relaxed).saturating_sub(settled);
            s.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(
                dropped = left,
                "request log writer did not finish in time; queued records lost"
            );
        }
        self.shared.counts()
    }
}

impl Store {
    /// Starts the writer task with a queue of `capacity` records (at least 1) holding at most
    /// `content_bytes` of content.
    pub fn start_writer(
        &self,
        capacity: usize,
        content_bytes: usize,
    ) -> (Arc<LogWriter>, WriterHandle) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared {
            sender: RwLock::new(Some(tx)),
            content_bytes: AtomicUsize::new(0),
            max_content_bytes: content_bytes,
            accepted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            born: Instant::now(),
            unwarned: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(self.clone(), rx, Arc::clone(&shared)));
        (
            Arc::new(LogWriter {
                shared: Arc::clone(&shared),
            }),
            WriterHandle { shared, task },
        )
    }

    /// Inserts `rows` atomically; a row already there (same id) is left as it is, so a retried
    /// batch cannot duplicate. Rows are bound by value: their text moves into the statement's
    /// arguments instead of being copied once more.
    async fn insert_logs(&self, rows: Vec<Row>) -> anyhow::Result<()> {
        match &self.db {
            Db::Sqlite { write, .. } => insert_rows(write, rows).await,
            Db::Postgres(pool) => insert_columns(pool, rows).await,
        }
    }
}

/// The columns of `logs` in the order [`Row`]s bind them (a macro so that `concat!` can build
/// the statements from it at compile time).
macro_rules! log_columns {
    () => {
        "id, started_at, front_door, endpoint, provider, model, served_model, fallback_index, \
         key_name, virtual_key, status, status_code, error_type, error_message, latency_ms, \
         first_byte_ms, overhead_ms, input_tokens, output_tokens, cache_read_tokens, \
         cache_write_tokens, cost, stop_reason, stream, pass_through, attempts, is_async, \
         input, output, content_truncated, attempt_trail"
    };
}

/// SQLite: multi-row `INSERT`s in one transaction. The statement of a full chunk is the same
/// text every time, so it is prepared once and cached.
async fn insert_rows(pool: &SqlitePool, rows: Vec<Row>) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk = rows.by_ref().take(ROWS_PER_INSERT);
        let mut q =
            QueryBuilder::<Sqlite>::new(concat!("INSERT INTO logs (", log_columns!(), ") "));
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.started_at)
                .push_bind(r.front_door)
                .push_bind(r.endpoint)
                .push_bind(r.provider)
                .push_bind(r.model)
                .push_bind(r.served_model)
                .push_bind(r.fallback_index)
                .push_bind(r.key_name)
                .push_bind(r.virtual_key)
                .push_bind(r.status)
                .push_bind(r.status_code)
                .push_bind(r.error_type)
                .push_bind(r.error_message)
                .push_bind(r.latency_ms)
                .push_bind(r.first_byte_ms)
                .push_bind(r.overhead_ms)
                .push_bind(r.tokens[0])
                .push_bind(r.tokens[1])
                .push_bind(r.tokens[2])
                .push_bind(r.tokens[3])
                .push_bind(r.cost)
                .push_bind(r.stop_reason)
                .push_bind(r.stream)
                .push_bind(r.pass_through)
                .push_bind(r.attempts)
                .push_bind(r.is_async)
                .push_bind(r.input)
                .push_bind(r.output)
                .push_bind(r.content_truncated)
                .push_bind(r.attempt_trail);
        });
        q.push(" ON CONFLICT (id) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// PostgreSQL: the whole batch as one array per column, unnested by one statement. Its text
/// never changes, so the server parses and plans it once per connection, where a multi-row
/// `VALUES` of thousands of placeholders is parsed and planned anew for every batch (measured
/// in BENCHMARKS.md, the logging scenario). One statement is atomic: no transaction needed.
async fn insert_columns(pool: &PgPool, rows: Vec<Row>) -> anyhow::Result<()> {
    let mut c = Columns::default();
    for r in rows {
        c.push(r);
    }
    let [
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
    ] = c.tokens;
    sqlx::query(concat!(
        "INSERT INTO logs (",
        log_columns!(),
        ") SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::int8[], $9::text[], $10::text[], $11::text[], \
         $12::int8[], $13::text[], $14::text[], $15::float8[], $16::float8[], $17::float8[], \
         $18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::float8[], $23::text[], \
         $24::bool[], $25::bool[], $26::int8[], $27::bool[], $28::text[], $29::text[], \
         $30::bool[], $31::text[]) ON CONFLICT (id) DO NOTHING"
    ))
    .bind(c.id)
    .bind(c.started_at)
    .bind(c.front_door)
    .bind(c.endpoint)
    .bind(c.provider)
    .bind(c.model)
    .bind(c.served_model)
    .bind(c.fallback_index)
    .bind(c.key_name)
    .bind(c.virtual_key)
    .bind(c.status)
    .bind(c.status_code)
    .bind(c.error_type)
    .bind(c.error_message)
    .bind(c.latency_ms)
    .bind(c.first_byte_ms)
    .bind(c.overhead_ms)
    .bind(input_tokens)
    .bind(output_tokens)
    .bind(cache_read_tokens)
    .bind(cache_write_tokens)
    .bind(c.cost)
    .bind(c.stop_reason)
    .bind(c.stream)
    .bind(c.pass_through)
    .bind(c.attempts)
    .bind(c.is_async)
    .bind(c.input)
    .bind(c.output)
    .bind(c.content_truncated)
    .bind(c.attempt_trail)
    .execute(pool)
    .await?;
    Ok(())
}

/// A batch of [`Row`]s turned column-wise, for [`insert_columns`].
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    started_at: Vec<i64>,
    front_door: Vec<&'static str>,
    endpoint: Vec<&'static str>,
    provider: Vec<Option<String>>,
    model: Vec<Option<String>>,
    served_model: Vec<Option<String>>,
    fallback_index: Vec<i64>,
    key_name: Vec<Option<String>>,
    virtual_key: Vec<Option<String>>,
    status: Vec<&'static str>,
    status_code: Vec<i64>,
    error_type: Vec<Option<&'static str>>,
    error_message: Vec<Option<String>>,
    latency_ms: Vec<f64>,
    first_byte_ms: Vec<Option<f64>>,
    overhead_ms: Vec<f64>,
    tokens: [Vec<i64>; 4],
    cost: Vec<Option<f64>>,
    stop_reason: Vec<Option<String>>,
    stream: Vec<bool>,
    pass_through: Vec<bool>,
    attempts: Vec<i64>,
    is_async: Vec<bool>,
    input: Vec<Option<String>>,
    output: Vec<Option<String>>,
    content_truncated: Vec<bool>,
    attempt_trail: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, r: Row) {
        self.id.push(r.id);
        self.started_at.push(r.started_at);
        self.front_door.push(r.front_door);
        self.endpoint.push(r.endpoint);
        self.provider.push(r.provider);
        self.model.push(r.model);
        self.served_model.push(r.served_model);
        self.fallback_index.push(r.fallback_index);
        self.key_name.push(r.key_name);
        self.virtual_key.push(r.virtual_key);
        self.status.push(r.status);
        self.status_code.push(r.status_code);
        self.error_type.push(r.error_type);
        self.error_message.push(r.error_message);
        self.latency_ms.push(r.latency_ms);
        self.first_byte_ms.push(r.first_byte_ms);
        self.overhead_ms.push(r.overhead_ms);
        for (column, n) in self.tokens.iter_mut().zip(r.tokens) {
            column.push(n);
        }
        self.cost.push(r.cost);
        self.stop_reason.push(r.stop_reason);
        self.stream.push(r.stream);
        self.pass_through.push(r.pass_through);
        self.attempts.push(r.attempts);
        self.is_async.push(r.is_async);
        self.input.push(r.input);
        self.output.push(r.output);
        self.content_truncated.push(r.content_truncated);
        self.attempt_trail.push(r.attempt_trail);
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Arc<RequestRecord>>, shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
        }
        let failed = write(&store, &batch).await;
        let n = batch.len() as u64;
        shared.release_content(&batch);
        batch.clear();
        shared.written.fetch_add(n - failed, Ordering::Relaxed);
        if failed > 0 {
            shared.failed.fetch_add(failed, Ordering::Relaxed);
            metrics::counter!("heimdall_log_records_failed_total").increment(failed);
        }
    }
}

/// Writes a batch, retrying; returns how many records could not be written. Reading content
/// into text happens here, off the request path (again for each attempt: attempts are rare,
/// and rows given by value cannot be reused).
async fn write(store: &Store, records: &[Arc<RequestRecord>]) -> u64 {
    let mut error = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF * attempt).await;
        }
        match store
            .insert_logs(records.iter().map(|r| Row::new(r)).collect())
            .await
        {
            Ok(()) => return 0,
            Err(e) => error = Some(e),
        }
    }
    // Only a refusal by the database can be one row's fault; when the database cannot be
    // reached, trying each row alone would wait out a connection timeout per row.
    let refused = error.as_ref().is_some_and(|e| {
        matches!(
            e.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(_))
        )
    });
    let mut failed = 0;
    if refused {
        for record in records {
            if let Err(e) = store.insert_logs(vec![Row::new(record)]).await {
                failed += 1;
                error = Some(e);
            }
        }
    } else {
        failed = records.len() as u64;
    }
    if failed > 0 {
        let error = error.map(|e| format!("{e:#}")).unwrap_or_default();
        tracing::error!(
            failed,
            error,
            engine = store.engine(),
            "request logs could not be written"
        );
    }
    failed
}

/// A record as a row: text fields cleaned of NUL (PostgreSQL text cannot hold it) and content
/// read into text.
struct Row {
    id: String,
    started_at: i64,
    front_door: &'static str,
    endpoint: &'static str,
    provider: Option<String>,
    model: Option<String>,
    served_model: Option<String>,
    fallback_index: i64,
    key_name: Option<String>,
    virtual_key: Option<String>,
    status: &'static str,
    status_code: i64,
    error_type: Option<&'static str>,
    error_message: Option<String>,
    latency_ms: f64,
    first_byte_ms: Option<f64>,
    overhead_ms: f64,
    /// input, output, cache read, cache write.
    tokens: [i64; 4],
    cost: Option<f64>,
    stop_reason: Option<String>,
    stream: bool,
    pass_through: bool,
    attempts: i64,
    is_async: bool,
    input: Option<String>,
    output: Option<String>,
    content_truncated: bool,
    /// The failed attempts as a JSON array; `None` (NULL) when there were none.
    attempt_trail: Option<String>,
}

impl Row {
    fn new(r: &RequestRecord) -> Row {
        let text = |s: &Option<String>| s.as_deref().map(|s| clean(Cow::Borrowed(s)).into_owned());
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let u = r.usage;
        let (input, output, content_truncated) = match &r.content {
            Some(c) => {
                let input = (!c.request.is_empty()).then(|| bytes_text(&c.request));
                // One chunk (a JSON answer) is read where it is; a stream's are joined.
                let answer: Cow<'_, [u8]> = match c.response.as_slice() {
                    [one] => Cow::Borrowed(one),
                    many => Cow::Owned(many.concat()),
                };
                let collected = (r.stream && !answer.is_empty())
                    .then(|| front_door(r.front_door)?.collect_stream(&answer))
                    .flatten();
                // A stream's collected document; else the answer as sent (a JSON answer, or
                // the JSON error of a stream that failed before starting).
                let output = match collected {
                    Some(doc) => Some(bytes_text(&doc)),
                    None => (!answer.is_empty()).then(|| bytes_text(&answer)),
                };
                (input, output, c.truncated)
            }
            None => (None, None, false),
        };
        Row {
            id: clean(Cow::Borrowed(&r.request_id)).into_owned(),
            started_at: millis(r.started_at),
            front_door: r.front_door,
            endpoint: match r.endpoint {
                Endpoint::Messages => "messages",
                Endpoint::CountTokens => "count_tokens",
                Endpoint::Embeddings => "embeddings",
            },
            provider: text(&r.provider),
            model: text(&r.model),
            served_model: text(&r.served_model),
            fallback_index: i64::from(r.fallback_index),
            key_name: text(&r.key_name),
            virtual_key: text(&r.virtual_key),
            status: match r.outcome {
                Outcome::Success => "success",
                Outcome::Cancelled => "cancelled",
                Outcome::Failed { .. } | Outcome::StreamError { .. } => "error",
            },
            status_code: i64::from(r.outcome.status()),
            error_type: r.outcome.error_type().map(|k| k.as_str()),
            error_message: text(&r.error_message),
            latency_ms: ms(r.latency),
            first_byte_ms: r.first_byte.map(ms),
            overhead_ms: ms(r.overhead()),
            tokens: [
                count(u.input_tokens),
                count(u.output_tokens),
                count(u.cache_read_input_tokens),
                count(u.cache_creation_input_tokens),
            ],
            cost: r.cost.filter(|c| c.is_finite()),
            stop_reason: text(&r.stop_reason),
            stream: r.stream,
            pass_through: r.pass_through,
            attempts: i64::from(r.attempts),
            is_async: r.is_async,
            input,
            output,
            content_truncated,
            attempt_trail: attempt_trail(r),
        }
    }
}

/// The record's failed attempts in the stored shape ([`AttemptEntry`]); `None` for the usual
/// request, none of whose attempts failed. JSON escapes NUL, so unlike other text it needs no
/// cleaning for PostgreSQL.
fn attempt_trail(r: &RequestRecord) -> Option<String> {
    if r.failed_attempts.is_empty() {
        return None;
    }
    let entries: Vec<AttemptEntry> = r
        .failed_attempts
        .iter()
        .map(|a| AttemptEntry {
            provider: a.provider.clone(),
            model: a.model.clone(),
            key_name: a.key_name.clone(),
            status: a.status,
            error_type: a.error_type.as_str().to_owned(),
            error_message: a.error_message.clone(),
            // One correctly rounded division: 12.5 ms reads back as 12.5.
            elapsed_ms: a.elapsed.as_nanos() as f64 / 1e6,
        })
        .collect();
    // Serializing strings, numbers and options cannot fail; were it to, the log is written
    // without its trail rather than not at all.
    serde_json::to_string(&entries).ok()
}

/// Bytes as text: UTF-8 as it is, anything else with replacement characters; NUL removed.
fn bytes_text(bytes: &[u8]) -> String {
    // The strict check is several times faster than the lossy reader on valid text, the
    // common case.
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    clean(text).into_owned()
}

fn clean(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use heimdall_core::{AttemptRecord, RequestRecord};
    use heimdall_protocol::dialect::Endpoint;
    use heimdall_protocol::error::ErrorType;

    use super::attempt_trail;

    #[test]
    fn no_failed_attempt_is_null_and_one_is_a_json_array() {
        let mut r = RequestRecord::new("req_1".into(), Endpoint::Messages, "anthropic");
        assert_eq!(attempt_trail(&r), None);
        r.failed_attempts.push(AttemptRecord {
            provider: "openai".into(),
            model: "openai/gpt-4o".into(),
            key_name: "k1".into(),
            status: Some(429),
            error_type: ErrorType::RateLimitError,
            error_message: "slow down".into(),
            elapsed: Duration::from_micros(1500),
        });
        let v: serde_json::Value = serde_json::from_str(&attempt_trail(&r).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"provider": "openai", "model": "openai/gpt-4o", "key_name": "k1",
                "status": 429, "error_type": "rate_limit_error", "error_message": "slow down",
                "elapsed_ms": 1.5}])
        );
    }
}
