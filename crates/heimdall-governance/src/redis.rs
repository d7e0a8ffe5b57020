//! Counters in Redis, shared by every gateway instance that points at the same server.
//!
//! **Layout.** Each counter is one hash at `{key_prefix}{counter key}` with three fields:
//! `start` (the window's start, milliseconds since the epoch), `used` and `reserved`. Numbers
//! are stored as decimal text written with `%.17g`, so that a double reads back exactly. Every
//! write renews the hash's expiry so that counters nobody uses any more (a deleted budget) go
//! away: twice the length of a rolling window; for an aligned window, whose end the ledger is
//! not told, a little more than the longest window the configuration accepts. Either way the
//! window has ended before its hash expires, so nothing is forgotten that still counts (an
//! expired counter reads as one never used).
//!
//! **Why Lua.** The rules of [`crate::ledger`] read a counter, bring its window up to date,
//! decide and write. As separate commands, two instances could both see room for the last
//! slot of a rate limit. A script runs alone on the server, so reserving on every counter a
//! request draws on, all or none, is atomic across keys. The script mirrors `Tally` step by
//! step (same comparisons, same epsilon, IEEE doubles on both sides), so that the engines
//! agree to the last bit.
//!
//! **Group commit.** Operations (a request's reservation, its settlements, a reading) queue on
//! a bounded channel; one task sends whatever has queued as one `EVALSHA` of one script, which
//! applies them in order, each as it would alone, and answers each. So a request still costs
//! one round trip at admission and one at settlement, but under load many requests share it:
//! the server runs one script for a batch instead of one per operation, reads each counter a
//! batch touches once and writes it once, and both sides make one system call where they made
//! dozens. At most one batch is in flight, so a batch is whatever arrived while the previous
//! one was on the wire, plus what the tasks ready to run add when the sender lets them go
//! first: nothing waits on a timer for a batch to fill. A batch travels as one MessagePack
//! argument and comes back as one MessagePack reply (Redis's Lua decodes and encodes it in
//! C), so the server neither parses a string argument per number nor prints one per answer;
//! measured with `server_cost` below, this cut the server's CPU per request by half to two
//! thirds once batches hold a few dozen operations. The script is loaded when
//! connecting; should the server have lost it since (a restart), the call that meets
//! `NOSCRIPT` loads it and tries again.
//!
//! **Timeouts and bounds.** Connecting and every operation are bounded by `redis.timeout`,
//! counted from when the operation is queued; past it, when the queue is full, or on any Redis
//! error, the operation fails with a [`LedgerError`] and admission follows
//! `redis.on_failure`. A reservation or reading whose caller gave up before its batch left is
//! not sent. One that timed out on the wire may still have run on the server: such a
//! reservation is never settled and holds its amount until its counter's window starts over;
//! a settlement may or may not have been counted. A lost connection is made again in the
//! background, one attempt at a time: while the server is away, operations fail at once with
//! the cause rather than each waiting out the timeout.
//!
//! **A server that is not there at start.** Only an invalid URL stops the gateway. When the
//! first connection fails, the gateway starts anyway and the connection is made in the
//! background (`heimdall_redis`, shared with the semantic cache); until one attempt succeeds
//! every operation fails at once with the last attempt's cause, so admission follows
//! `redis.on_failure` as for a server lost later.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use heimdall_core::config::RedisSettings;
use heimdall_redis::{Connection, Endpoint, Failure, RETRY_CONNECT, bounded, no_answer};
use redis::Script;
use redis::aio::ConnectionManager;
use rmpv::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::ledger::{Draw, Hold, Ledger, LedgerError, Reading, Reservation, Settlement};
use crate::window::Span;

const DAY_MS: i64 = 86_400_000;

/// Expiry of a counter with an aligned window: past the longest window the configuration
/// accepts (530 weeks).
const ALIGNED_TTL_MS: i64 = 3_720 * DAY_MS;

/// Operations waiting for a batch; past this, an operation fails at once (admission then
/// follows `redis.on_failure`) rather than queueing without bound.
const QUEUE: usize = 16_384;

/// Operations in one script call: large enough that a batch is whatever queued, small enough
/// that one call's argument and reply stay a few hundred kilobytes.
const BATCH: usize = 512;

/// The script's names for operations and window kinds.
const RESERVE: i64 = 1;
const SETTLE: i64 = 2;
const READ: i64 = 3;
const ROLLING: i64 = 1;
const ALIGNED: i64 = 2;

/// The ledger's rules in Lua.
///
/// KEYS: the counters the batch touches, each once. ARGV[1]: the batch as one MessagePack
/// array, per operation: its number of counters `n`, the `n` counters' places in KEYS, its
/// kind ([`RESERVE`], [`SETTLE`] or [`READ`]), the time it was made at, then per counter the
/// window's kind ([`ROLLING`] or [`ALIGNED`]) and span value, and
/// - reserve: ttl, max, amount, whole (a boolean);
/// - settle: ttl, the hold's start, what it reserved, the actual amount;
/// - read: nothing more.
///
/// Reply: one MessagePack array with per operation an array: `1` and per counter its window's
/// start and what it reserved, or `0`, the refusing counter's index and its window's start;
/// `1` for a settlement; per counter of a reading its start (`false` when never used), used
/// and reserved. MessagePack carries numbers in binary (integers, or IEEE floats kept exact),
/// so neither side parses or prints decimal text per number.
const BATCH_LUA: &str = r"
local EPSILON = 1e-9 -- ledger::EPSILON
local RESERVE, SETTLE, ROLLING = 1, 2, 1

local function fmt(x)
  return string.format('%.17g', x)
end

-- Counters as the batch has left them so far, read once; and the ones to write back, in
-- the order first written, each with the expiry of its last write.
local counters = {}
local written = {}

local function counter(key)
  local c = counters[key]
  if not c then
    local h = redis.call('HMGET', key, 'start', 'used', 'reserved')
    c = {start = tonumber(h[1]), used = tonumber(h[2]) or 0, reserved = tonumber(h[3]) or 0}
    counters[key] = c
  end
  return c
end

local function write(key, c, ttl)
  if not c.ttl then
    written[#written + 1] = key
  end
  c.ttl = ttl
end

-- Tally::bring_up_to_date, and Tally::new when there is no start yet: whether the window
-- started over.
local function up_to_date(c, kind, value, now)
  if c.start then
    local ended
    if kind == ROLLING then
      ended = now >= c.start + value
    else
      ended = value > c.start
    end
    if not ended then
      return false
    end
  end
  if kind == ROLLING then
    c.start = now
  else
    c.start = value
  end
  c.used, c.reserved = 0, 0
  return true
end

local v = cmsgpack.unpack(ARGV[1])

-- The operation's counters are KEYS[v[k]] .. KEYS[v[k + n - 1]]; their values start at v[a].
local function reserve(now, k, a, n)
  local takes = {}
  for j = 0, n - 1 do
    local key, b = KEYS[v[k + j]], a + j * 6
    local c = counter(key)
    if up_to_date(c, v[b], v[b + 1], now) then
      write(key, c, v[b + 2])
    end
    -- Tally::take
    local max, amount = v[b + 3], v[b + 4]
    local room = max - c.used - c.reserved
    local take
    if v[b + 5] then
      if amount <= room + EPSILON then
        take = amount
      end
    elseif room > EPSILON then
      take = math.max(math.min(amount, room), 0)
    end
    if not take then
      return {0, j, c.start}
    end
    takes[j] = take
  end
  -- Taken only once every counter had room; a counter may be drawn on twice.
  local reply = {1}
  for j = 0, n - 1 do
    local key = KEYS[v[k + j]]
    local c = counter(key)
    c.reserved = c.reserved + takes[j]
    write(key, c, v[a + j * 6 + 2])
    reply[#reply + 1] = c.start
    reply[#reply + 1] = takes[j]
  end
  return reply
end

local function settle(now, k, a, n)
  for j = 0, n - 1 do
    local key, b = KEYS[v[k + j]], a + j * 6
    local c = counter(key)
    up_to_date(c, v[b], v[b + 1], now)
    -- Tally::settle
    if v[b + 3] == c.start then
      c.reserved = math.max(c.reserved - v[b + 4], 0)
    end
    c.used = c.used + v[b + 5]
    write(key, c, v[b + 2])
  end
  return {1}
end

-- Writes nothing: a window brought up to date is only shown.
local function read(now, k, a, n)
  local reply = {}
  for j = 0, n - 1 do
    local c = counter(KEYS[v[k + j]])
    if c.start then
      local shown = {start = c.start, used = c.used, reserved = c.reserved}
      up_to_date(shown, v[a + j * 2], v[a + j * 2 + 1], now)
      reply[#reply + 1] = shown.start
      reply[#reply + 1] = shown.used
      reply[#reply + 1] = shown.reserved
    else
      reply[#reply + 1] = false
      reply[#reply + 1] = c.used
      reply[#reply + 1] = c.reserved
    end
  end
  return reply
end

local replies = {}
local i, last = 1, #v
while i <= last do
  local n = v[i]
  local k = i + 1
  local op, now = v[k + n], v[k + n + 1]
  local a = k + n + 2
  if op == RESERVE then
    replies[#replies + 1] = reserve(now, k, a, n)
    i = a + n * 6
  elseif op == SETTLE then
    replies[#replies + 1] = settle(now, k, a, n)
    i = a + n * 6
  else
    replies[#replies + 1] = read(now, k, a, n)
    i = a + n * 2
  end
end
for _, key in ipairs(written) do
  local c = counters[key]
  redis.call('HSET', key, 'start', fmt(c.start), 'used', fmt(c.used), 'reserved', fmt(c.reserved))
  redis.call('PEXPIRE', key, c.ttl)
end
return cmsgpack.pack(replies)
";

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(BATCH_LUA));

/// One operation for the script: its counters' keys, its values after their places in KEYS
/// (see [`BATCH_LUA`]), and where its reply goes.
struct Operation {
    keys: Vec<String>,
    values: Vec<Value>,
    /// A settlement is sent even when nobody waits for its answer any more.
    settles: bool,
    reply: oneshot::Sender<Result<Vec<Value>, LedgerError>>,
}

/// The Redis engine of [`Ledger`]: counters shared by every instance using the same server
/// and key prefix. See the module documentation for the data layout and guarantees.
pub struct RedisLedger {
    queue: mpsc::Sender<Operation>,
    #[cfg(test)]
    connected: watch::Receiver<Connection>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// Connects to `settings.url`, loads the script and starts the task that sends batches,
    /// within `settings.timeout` for each step. Fails only on an invalid URL: a server that
    /// cannot be reached is tried again in the background (see the module documentation),
    /// with a warning in the log. The tasks end once the ledger is dropped and what it queued
    /// is sent.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, LedgerError> {
        let timeout = settings.timeout;
        let endpoint = Endpoint::new(settings.url.expose(), timeout)
            .map_err(|e| LedgerError(format!("redis.url: {e}")))?;
        let connected = endpoint.connect(Some(&*SCRIPT)).await;
        if let Err(e) = &*connected.borrow() {
            tracing::warn!(
                "{e}; the gateway starts without Redis and connects once it answers (trying every {} s); until then redis.on_failure decides admission",
                RETRY_CONNECT.as_secs()
            );
        }
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(waiting, connected.clone(), timeout));
        Ok(Self {
            queue,
            #[cfg(test)]
            connected,
            prefix: settings.key_prefix.as_str().into(),
            timeout,
        })
    }

    fn key(&self, counter: &str) -> String {
        format!("{}{counter}", self.prefix)
    }

    /// Queues an operation of `kind` made at `now_ms` on `keys`, with `per_key` values per
    /// counter; the future answers the script's reply for it.
    fn submit(
        &self,
        kind: i64,
        now_ms: i64,
        keys: Vec<String>,
        per_key: impl IntoIterator<Item = Value>,
    ) -> impl Future<Output = Result<Vec<Value>, LedgerError>> + Send + 'static {
        let what = match kind {
            RESERVE => "reserve",
            SETTLE => "settle",
            _ => "read",
        };
        let (reply, answer) = oneshot::channel();
        let operation = Operation {
            values: [Value::from(kind), Value::from(now_ms)]
                .into_iter()
                .chain(per_key)
                .collect(),
            keys,
            settles: kind == SETTLE,
            reply,
        };
        let queued = self.queue.try_send(operation).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LedgerError(format!(
                "redis {what}: {QUEUE} operations already waiting for the server"
            )),
            mpsc::error::TrySendError::Closed(_) => {
                LedgerError(format!("redis {what}: the batch task has stopped"))
            }
        });
        let timeout = self.timeout;
        async move {
            queued?;
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Err(LedgerError(format!(
                    "redis {what}: the batch task stopped before answering"
                ))),
                Err(_) => Err(no_answer(what, timeout).into()),
            }
        }
    }
}

impl From<Failure> for LedgerError {
    fn from(failure: Failure) -> Self {
        LedgerError(failure.0)
    }
}

/// Sends what has queued as one script call at a time, until the ledger is dropped. Before
/// the first connection exists (`connected` holds its latest failure), a batch fails at
/// once with that failure.
async fn send_batches(
    mut waiting: mpsc::Receiver<Operation>,
    connected: watch::Receiver<Connection>,
    timeout: Duration,
) {
    let mut conn: Option<ConnectionManager> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while waiting.recv_many(&mut batch, BATCH).await > 0 {
        // Lets the tasks that are ready to run go first, so that under load their operations
        // join this batch instead of each paying for a batch of its own; when nothing else is
        // ready this costs a turn of the scheduler, not a timer's wait.
        if batch.len() < BATCH {
            tokio::task::yield_now().await;
            while batch.len() < BATCH {
                let Ok(op) = waiting.try_recv() else { break };
                batch.push(op);
            }
        }
        // Nobody would learn of a reservation or reading whose caller gave up.
        batch.retain(|op| op.settles || !op.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = connected.borrow().as_ref().ok().cloned();
        }
        let replies = match (&mut conn, encode(&batch)) {
            (Some(conn), Ok((keys, argument))) => {
                let mut call = SCRIPT.prepare_invoke();
                call.key(keys).arg(argument);
                bounded(timeout, "batch", call.invoke_async::<Vec<u8>>(conn))
                    .await
                    .map_err(LedgerError::from)
                    .and_then(|reply| decode(&reply, batch.len()))
            }
            (None, _) => Err(connected.borrow().as_ref().err().cloned().map_or_else(
                || LedgerError("redis: not connected yet".into()),
                LedgerError::from,
            )),
            (_, Err(e)) => Err(e),
        };
        match replies {
            Ok(replies) => {
                for (op, reply) in batch.drain(..).zip(replies) {
                    // A caller that gave up meanwhile drops its answer.
                    let _ = op.reply.send(Ok(reply));
                }
            }
            Err(error) => {
                for op in batch.drain(..) {
                    let _ = op.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// A batch as the script takes it: the keys it touches, each once, and its MessagePack
/// argument.
fn encode(batch: &[Operation]) -> Result<(Vec<&str>, Vec<u8>), LedgerError> {
    let mut keys: Vec<&str> = Vec::new();
    let mut places: HashMap<&str, i64> = HashMap::new();
    let mut values = Vec::with_capacity(
        batch
            .iter()
            .map(|op| 1 + op.keys.len() + op.values.len())
            .sum(),
    );
    for op in batch {
        values.push(Value::from(op.keys.len()));
        for key in &op.keys {
            let place = *places.entry(key).or_insert_with(|| {
                keys.push(key);
                keys.len() as i64
            });
            values.push(Value::from(place));
        }
        values.extend(op.values.iter().cloned());
    }
    let mut argument = Vec::new();
    rmpv::encode::write_value(&mut argument, &Value::Array(values))
        .map_err(|e| LedgerError(format!("redis: encoding a batch: {e}")))?;
    Ok((keys, argument))
}

/// The script's reply: one array per operation of the batch.
fn decode(reply: &[u8], operations: usize) -> Result<Vec<Vec<Value>>, LedgerError> {
    let unexpected =
        || LedgerError("redis: the script's reply is not an array per operation".into());
    match rmpv::decode::read_value(&mut &reply[..]) {
        Ok(Value::Array(replies)) if replies.len() == operations => replies
            .into_iter()
            .map(|r| match r {
                Value::Array(r) => Ok(r),
                _ => Err(unexpected()),
            })
            .collect(),
        _ => Err(unexpected()),
    }
}

/// A span as the script takes it: its kind and value, and the counter's expiry.
fn span_values(span: Span) -> [Value; 3] {
    let (kind, value, ttl) = match span {
        Span::Rolling { length_ms } => (ROLLING, length_ms, length_ms.saturating_mul(2).max(1)),
        Span::Aligned { start_ms } => (ALIGNED, start_ms, ALIGNED_TTL_MS),
    };
    [Value::from(kind), Value::from(value), Value::from(ttl)]
}

/// A number of the script's reply. Lua has only doubles, which MessagePack carries as an
/// integer when whole, else as a float of the smallest width that holds it exactly.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::F64(x) => Some(*x),
        Value::F32(x) => Some(f64::from(*x)),
        Value::Integer(n) => n.as_f64(),
        _ => None,
    }
}

/// A whole number of the script's reply (a window's start, an index).
fn whole<T: TryFrom<i64>>(value: &Value) -> Option<T> {
    let n = match value {
        Value::Integer(n) => n.as_i64()?,
        // Exact: the start of a window is whole milliseconds, far below 2^53.
        other => {
            let x = float(other)?;
            if x.fract() != 0.0 || x.abs() > 9e15 {
                return None;
            }
            x as i64
        }
    };
    T::try_from(n).ok()
}

fn unexpected(reply: &[Value]) -> LedgerError {
    LedgerError(format!("redis: unexpected reply {reply:?}"))
}

fn reservation(draws: &[Draw], reply: &[Value]) -> Result<Reservation, LedgerError> {
    let bad = || unexpected(reply);
    match reply {
        [tag, index, start] if tag.as_i64() == Some(0) => Ok(Reservation::Refused {
            index: whole(index).ok_or_else(bad)?,
            start_ms: whole(start).ok_or_else(bad)?,
        }),
        [tag, holds @ ..] if tag.as_i64() == Some(1) && holds.len() == 2 * draws.len() => draws
            .iter()
            .zip(holds.chunks_exact(2))
            .map(|(draw, hold)| match hold {
                [start, reserved] => Ok(Hold {
                    key: Arc::clone(&draw.key),
                    start_ms: whole(start).ok_or_else(bad)?,
                    reserved: float(reserved).ok_or_else(bad)?,
                }),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()
            .map(Reservation::Granted),
        _ => Err(bad()),
    }
}

fn readings(count: usize, reply: &[Value]) -> Result<Vec<Reading>, LedgerError> {
    let bad = || unexpected(reply);
    if reply.len() != 3 * count {
        return Err(bad());
    }
    reply
        .chunks_exact(3)
        .map(|r| match r {
            [start, used, reserved] => Ok(Reading {
                start_ms: match start {
                    Value::Boolean(false) => None,
                    s => Some(whole(s).ok_or_else(bad)?),
                },
                used: float(used).ok_or_else(bad)?,
                reserved: float(reserved).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        })
        .collect()
}

impl Ledger for RedisLedger {
    fn reserve<'a>(
        &'a self,
        now_ms: i64,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>> {
        if draws.is_empty() {
            return Box::pin(std::future::ready(Ok(Reservation::Granted(Vec::new()))));
        }
        let keys = draws.iter().map(|d| self.key(&d.key)).collect();
        let values = draws.iter().flat_map(|d| {
            let [kind, value, ttl] = span_values(d.span);
            [
                kind,
                value,
                ttl,
                Value::from(d.max),
                Value::from(d.amount),
                Value::from(d.whole),
            ]
        });
        let answer = self.submit(RESERVE, now_ms, keys, values);
        Box::pin(async move { reservation(draws, &answer.await?) })
    }

    fn settle(
        &self,
        now_ms: i64,
        settlements: Vec<Settlement>,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        if settlements.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        // Queued now, so that it is sent even if the future is never polled.
        let keys = settlements.iter().map(|s| self.key(&s.hold.key)).collect();
        let values = settlements.iter().flat_map(|s| {
            let [kind, value, ttl] = span_values(s.span);
            [
                kind,
                value,
                ttl,
                Value::from(s.hold.start_ms),
                Value::from(s.hold.reserved),
                Value::from(s.actual),
            ]
        });
        let answer = self.submit(SETTLE, now_ms, keys, values);
        Box::pin(async move {
            match answer.await?.as_slice() {
                [tag] if tag.as_i64() == Some(1) => Ok(()),
                other => Err(unexpected(other)),
            }
        })
    }

    fn read<'a>(
        &'a self,
        now_ms: i64,
        counters: &'a [(Arc<str>, Span)],
    ) -> BoxFuture<'a, Result<Vec<Reading>, LedgerError>> {
        if counters.is_empty() {
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        let keys = counters.iter().map(|(key, _)| self.key(key)).collect();
        let values = counters.iter().flat_map(|(_, span)| {
            let [kind, value, _] = span_values(*span);
            [kind, value]
        });
        let answer = self.submit(READ, now_ms, keys, values);
        Box::pin(async move { readings(counters.len(), &answer.await?) })
    }

    fn engine(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use heimdall_core::config::{FailMode, Secret};
    use heimdall_redis::testing::{relay, server, unique_prefix};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ledger::{MemoryLedger, conformance};

    fn settings(url: &str, key_prefix: &str, timeout: Duration) -> RedisSettings {
        RedisSettings {
            url: Secret::new(url),
            key_prefix: key_prefix.to_owned(),
            on_failure: FailMode::Closed,
            timeout,
        }
    }

    async fn ledger(prefix: &str) -> RedisLedger {
        RedisLedger::connect(&settings(&server(), prefix, Duration::from_secs(5)))
            .await
            .unwrap()
    }

    impl RedisLedger {
        /// The ledger's own connection, once it has one.
        fn test_conn(&self) -> ConnectionManager {
            self.connected.borrow().clone().expect("connected")
        }
    }

    /// Deletes every key under the ledger's prefix.
    async fn clean_up(ledger: &RedisLedger) {
        let mut conn = ledger.test_conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", ledger.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn redis_ledger_follows_the_rules() {
        let l = ledger(&unique_prefix("rules")).await;
        assert_eq!(l.engine(), "redis");
        conformance::all_or_nothing(&l, "a:").await;
        conformance::capped_by_what_remains(&l, "b:").await;
        conformance::windows_start_over(&l, "c:").await;
        conformance::reading_is_side_effect_free(&l, "d:").await;
        clean_up(&l).await;
    }

    /// The same random operations give the same answers, bit for bit, in memory and in Redis,
    /// also when many of them share one batch (and so the script's view of a counter).
    #[tokio::test]
    async fn redis_agrees_with_memory() {
        enum Op {
            Reserve(Vec<Draw>),
            Settle(Vec<Settlement>),
            Read(Vec<(Arc<str>, Span)>),
        }
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Reserved(Reservation),
            Settled,
            Read(Vec<Reading>),
        }
        async fn apply(ledger: &dyn Ledger, now: i64, op: &Op) -> Outcome {
            match op {
                Op::Reserve(draws) => Outcome::Reserved(ledger.reserve(now, draws).await.unwrap()),
                Op::Settle(s) => {
                    ledger.settle(now, s.clone()).await.unwrap();
                    Outcome::Settled
                }
                Op::Read(counters) => Outcome::Read(ledger.read(now, counters).await.unwrap()),
            }
        }

        let redis = ledger(&unique_prefix("agree")).await;
        let memory = MemoryLedger::default();
        let mut rng = StdRng::seed_from_u64(7);
        let keys: [Arc<str>; 3] = ["usd".into(), "req".into(), "tok".into()];
        let span = |i: usize, now: i64| match i {
            0 => Span::Rolling { length_ms: 1_000 },
            1 => Span::Aligned {
                start_ms: now - now % 1_500,
            },
            _ => Span::Rolling { length_ms: 700 },
        };
        let mut now = 1_000_000;
        let mut holds: Vec<(Hold, usize)> = Vec::new();
        // Granted, refused, settled: each must happen often for the comparison to mean much.
        let mut seen = [0; 3];
        for _ in 0..100 {
            // Queued together before any is sent (this runtime has one thread), so they make
            // one batch; settlements draw on holds of earlier batches.
            let mut ops = Vec::new();
            for _ in 0..rng.random_range(1..9) {
                now += rng.random_range(0..60);
                let op = match rng.random_range(0..3) {
                    0 => Op::Reserve(
                        (0..rng.random_range(1..4))
                            .map(|_| {
                                let i = rng.random_range(0..3);
                                Draw {
                                    key: Arc::clone(&keys[i]),
                                    max: [1.0, 0.3, 5.0][i],
                                    span: span(i, now),
                                    amount: rng.random_range(0.0..0.4),
                                    whole: i == 1 || rng.random_bool(0.2),
                                }
                            })
                            .collect(),
                    ),
                    1 if !holds.is_empty() => Op::Settle(
                        (0..rng.random_range(1..3).min(holds.len()))
                            .map(|_| {
                                let (hold, i) = holds.swap_remove(rng.random_range(0..holds.len()));
                                Settlement {
                                    actual: hold.reserved * rng.random_range(0.0..1.5),
                                    span: span(i, now),
                                    hold,
                                }
                            })
                            .collect(),
                    ),
                    _ => Op::Read(
                        (0..3)
                            .map(|i| (Arc::clone(&keys[i]), span(i, now)))
                            .collect(),
                    ),
                };
                ops.push((now, op));
            }
            let mut expected = Vec::new();
            for (now, op) in &ops {
                expected.push(apply(&memory, *now, op).await);
            }
            let actual =
                futures_util::future::join_all(ops.iter().map(|(now, op)| apply(&redis, *now, op)))
                    .await;
            assert_eq!(expected, actual);
            for outcome in actual {
                match outcome {
                    Outcome::Reserved(Reservation::Granted(granted)) => {
                        seen[0] += 1;
                        holds.extend(granted.into_iter().map(|h| {
                            let i = keys.iter().position(|k| *k == h.key).unwrap();
                            (h, i)
                        }));
                    }
                    Outcome::Reserved(Reservation::Refused { .. }) => seen[1] += 1,
                    Outcome::Settled => seen[2] += 1,
                    Outcome::Read(_) => {}
                }
            }
        }
        assert!(seen.iter().all(|n| *n >= 30), "{seen:?}");
        clean_up(&redis).await;
    }

    /// Instances reserving the last slots at once: exactly the limit is granted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_instances_never_exceed_a_limit() {
        let prefix = unique_prefix("concurrent");
        let mut instances = Vec::new();
        for _ in 0..4 {
            instances.push(Arc::new(ledger(&prefix).await));
        }
        let draws: Arc<[Draw]> = Arc::new([Draw {
            key: "requests".into(),
            max: 50.0,
            span: Span::Rolling { length_ms: 60_000 },
            amount: 1.0,
            whole: true,
        }]);
        let start = Arc::new(tokio::sync::Barrier::new(200));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let l = Arc::clone(&instances[i % instances.len()]);
                let draws = Arc::clone(&draws);
                let start = Arc::clone(&start);
                tokio::spawn(async move {
                    start.wait().await;
                    l.reserve(1_000, &draws).await.unwrap()
                })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Reservation::Granted(_)) {
                granted += 1;
            }
        }
        assert_eq!(granted, 50);
        let r = instances[0]
            .read(1_000, &[("requests".into(), draws[0].span)])
            .await
            .unwrap();
        assert_eq!(r[0].reserved, 50.0);
        clean_up(&instances[0]).await;
    }

    fn one_request() -> [Draw; 1] {
        [Draw {
            key: "k".into(),
            max: 1.0,
            span: Span::Rolling { length_ms: 1_000 },
            amount: 1.0,
            whole: true,
        }]
    }

    /// No server, or one that never answers: the ledger is made (the gateway starts), and
    /// its operations fail promptly, never hang, and never show the password.
    #[tokio::test]
    async fn an_unreachable_server_fails_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        let bound = timeout * 2 + Duration::from_millis(500);
        let began = Instant::now();
        let l = RedisLedger::connect(&settings("redis://:hunter2@127.0.0.1:1", "x:", timeout))
            .await
            .expect("a server that is down does not stop the start");
        let refused = l.reserve(0, &one_request()).await.unwrap_err();
        assert!(began.elapsed() < bound, "{:?}", began.elapsed());
        assert!(refused.0.contains("connect"), "{refused}");
        assert!(!refused.0.contains("hunter2"), "{refused}");

        // Accepts connections and answers nothing.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://:hunter2@{}", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                open.push(socket);
            }
        });
        let began = Instant::now();
        let l = RedisLedger::connect(&settings(&url, "x:", timeout))
            .await
            .unwrap();
        let outcome = l.reserve(0, &one_request()).await.unwrap_err();
        assert!(began.elapsed() < bound * 2, "{:?}", began.elapsed());
        assert!(!outcome.0.contains("hunter2"), "{outcome}");
        held.abort();

        let invalid = RedisLedger::connect(&settings("mysql://127.0.0.1", "x:", timeout))
            .await
            .unwrap_err();
        assert!(invalid.0.starts_with("redis.url"), "{invalid}");
    }

    /// A server that comes up after the gateway started is used once it answers: here a
    /// relay to the machine's Redis opens on a port that was closed when the ledger was made.
    #[tokio::test]
    async fn a_server_that_comes_up_later_is_used() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let prefix = unique_prefix("later");
        let l = RedisLedger::connect(&settings(
            &format!("redis://{addr}"),
            &prefix,
            Duration::from_millis(500),
        ))
        .await
        .unwrap();
        assert!(
            l.reserve(0, &one_request()).await.is_err(),
            "nothing listens yet"
        );

        let relaying = relay(tokio::net::TcpListener::bind(addr).await.unwrap());
        let deadline = Instant::now() + RETRY_CONNECT * 5;
        loop {
            match l.reserve(0, &one_request()).await {
                Ok(granted) => {
                    assert!(matches!(granted, Reservation::Granted(_)), "{granted:?}");
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "still not connected: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clean_up(&l).await;
        relaying.abort();
    }

    /// Settlement runs detached from the request, after the ledger that made it is gone.
    #[tokio::test]
    async fn settlement_runs_detached() {
        let prefix = unique_prefix("detached");
        let span = Span::Rolling { length_ms: 60_000 };
        let draws = [Draw {
            key: "usd".into(),
            max: 10.0,
            span,
            amount: 2.0,
            whole: false,
        }];
        let first = ledger(&prefix).await;
        let Reservation::Granted(holds) = first.reserve(1_000, &draws).await.unwrap() else {
            panic!("refused");
        };
        let done = first.settle(
            1_001,
            vec![Settlement {
                hold: holds[0].clone(),
                span,
                actual: 0.5,
            }],
        );
        drop(first);
        drop(tokio::spawn(done));

        let other = ledger(&prefix).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = other.read(1_002, &[("usd".into(), span)]).await.unwrap();
            if r[0].used == 0.5 {
                assert_eq!(r[0].reserved, 0.0);
                break;
            }
            assert!(Instant::now() < deadline, "not settled: {r:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        clean_up(&other).await;
    }

    /// A dropped connection is made again, and scripts the server lost are loaded again.
    #[tokio::test]
    async fn a_lost_connection_comes_back() {
        let l = ledger(&unique_prefix("reconnect")).await;
        let mut conn = l.test_conn();
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut admin = redis::Client::open(server().as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
        let draws = [Draw {
            key: "req".into(),
            max: 10.0,
            span: Span::Rolling { length_ms: 60_000 },
            amount: 1.0,
            whole: true,
        }];
        // The first operation may meet the dead connection; it sets off the reconnection.
        let mut outcome = l.reserve(0, &draws).await;
        for _ in 0..20 {
            if outcome.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            outcome = l.reserve(0, &draws).await;
        }
        assert!(
            matches!(outcome, Ok(Reservation::Granted(_))),
            "{outcome:?}"
        );
        let again: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_ne!(again, id);
        clean_up(&l).await;
    }

    #[tokio::test]
    async fn counters_expire_after_their_window() {
        let l = ledger(&unique_prefix("expiry")).await;
        let draw = |key: &str, span| Draw {
            key: key.into(),
            max: 1.0,
            span,
            amount: 1.0,
            whole: true,
        };
        let draws = [
            draw("rolling", Span::Rolling { length_ms: 60_000 }),
            draw("aligned", Span::Aligned { start_ms: 0 }),
        ];
        assert!(matches!(
            l.reserve(0, &draws).await.unwrap(),
            Reservation::Granted(_)
        ));
        let mut conn = l.test_conn();
        for (key, ttl) in [("rolling", 120_000), ("aligned", ALIGNED_TTL_MS)] {
            let left: i64 = redis::cmd("PTTL")
                .arg(l.key(key))
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(left > ttl - 10_000 && left <= ttl, "{key}: {left}");
        }
        clean_up(&l).await;
    }

    /// Redis's own CPU per request (a reservation and a settlement on three counters, as in
    /// the benchmark's governance scenario) with `tasks` requests in flight. Not a test of
    /// speed: it prints figures for comparing layouts of the script's arguments.
    /// `cargo test -p heimdall-governance --release -- --ignored --nocapture server_cost`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement"]
    async fn server_cost() {
        async fn server_stats(conn: &mut ConnectionManager) -> (f64, u64) {
            let info: String = redis::cmd("INFO")
                .arg("all")
                .query_async(conn)
                .await
                .unwrap();
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or("0")
                    .to_owned()
            };
            let cpu = field("used_cpu_user:").parse::<f64>().unwrap()
                + field("used_cpu_sys:").parse::<f64>().unwrap();
            let calls = field("cmdstat_evalsha:calls=")
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (cpu, calls)
        }
        for tasks in [1, 8, 64, 256] {
            let l = Arc::new(ledger(&unique_prefix("cost")).await);
            let mut conn = l.test_conn();
            let requests = 40_000;
            let before = server_stats(&mut conn).await;
            let started = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let l = Arc::clone(&l);
                    tokio::spawn(async move {
                        let now = 1_700_000_000_000;
                        let draws = [
                            (
                                "usd",
                                Span::Aligned {
                                    start_ms: now - now % DAY_MS,
                                },
                                1e9,
                                0.0125,
                                false,
                            ),
                            ("req", Span::Rolling { length_ms: 60_000 }, 1e9, 1.0, true),
                            (
                                "tok",
                                Span::Rolling { length_ms: 60_000 },
                                1e12,
                                1_024.0,
                                false,
                            ),
                        ]
                        .map(|(key, span, max, amount, whole)| Draw {
                            key: key.into(),
                            max,
                            span,
                            amount,
                            whole,
                        });
                        for _ in 0..requests / tasks {
                            let Reservation::Granted(holds) = l.reserve(now, &draws).await.unwrap()
                            else {
                                panic!("refused")
                            };
                            let settlements = holds
                                .into_iter()
                                .zip(&draws)
                                .map(|(hold, d)| Settlement {
                                    actual: hold.reserved * 0.5,
                                    span: d.span,
                                    hold,
                                })
                                .collect();
                            l.settle(now, settlements).await.unwrap();
                        }
                    })
                })
                .collect();
            for w in workers {
                w.await.unwrap();
            }
            let elapsed = started.elapsed();
            let after = server_stats(&mut conn).await;
            let done = (requests / tasks * tasks) as f64;
            println!(
                "{tasks:>4} in flight: {:>6.1} us of Redis CPU per request, {:>5.1} operations per batch, {:>7.0} requests/s",
                (after.0 - before.0) * 1e6 / done,
                2.0 * done / (after.1 - before.1).max(1) as f64,
                done / elapsed.as_secs_f64(),
            );
            clean_up(&l).await;
        }
    }
}
