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
//! request draws on, all or none, is atomic across keys. The scripts mirror `Tally` step by
//! step (same comparisons, same epsilon, IEEE doubles on both sides), so that the engines
//! agree to the last bit.
//!
//! **One round trip.** `reserve`, `settle` (all settlements of a request together) and `read`
//! are one `EVALSHA` each. The scripts are loaded when connecting; should the server have lost
//! them since (a restart), the call that meets `NOSCRIPT` loads its script and tries again.
//!
//! **Timeouts.** Connecting and every operation are bounded by `redis.timeout`; past it, or on
//! any Redis error, the operation fails with a [`LedgerError`] and admission follows
//! `redis.on_failure`. An operation that timed out may still have run on the server: a
//! reservation made that way is never settled and holds its amount until its counter's window
//! starts over; a settlement may or may not have been counted. A lost connection is made
//! again in the background, one attempt at a time: while the server is away, operations fail
//! at once with the cause rather than each waiting out the timeout.

use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use heimdall_core::config::RedisSettings;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use crate::ledger::{Draw, Hold, Ledger, LedgerError, Reading, Reservation, Settlement};
use crate::window::Span;

const DAY_MS: i64 = 86_400_000;

/// Expiry of a counter with an aligned window: past the longest window the configuration
/// accepts (530 weeks).
const ALIGNED_TTL_MS: i64 = 3_720 * DAY_MS;

/// The ledger's rules in Lua, shared by the scripts below.
const RULES_LUA: &str = r"
local EPSILON = 1e-9 -- ledger::EPSILON

local function fmt(x)
  return string.format('%.17g', x)
end

local function load(key)
  local h = redis.call('HMGET', key, 'start', 'used', 'reserved')
  return tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
end

-- Tally::bring_up_to_date, and Tally::new when there is no start yet: the window as it
-- stands at now, and whether it started over.
local function up_to_date(start, used, reserved, kind, value, now)
  if start then
    local ended
    if kind == 'rolling' then
      ended = now >= start + value
    else
      ended = value > start
    end
    if not ended then
      return start, used, reserved, false
    end
  end
  if kind == 'rolling' then
    return now, 0, 0, true
  end
  return value, 0, 0, true
end

local function store(key, start, used, reserved, ttl)
  redis.call('HSET', key, 'start', fmt(start), 'used', fmt(used), 'reserved', fmt(reserved))
  redis.call('PEXPIRE', key, ttl)
end
";

/// ARGV: now, then per draw: kind, span value, ttl, max, amount, whole (`1` or `0`).
/// Reply: `granted` and per draw its window's start and what it reserved, or `refused`, the
/// draw's index and its window's start.
const RESERVE_LUA: &str = r"
local now = tonumber(ARGV[1])
local takes = {}
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 6
  local kind, value, ttl = ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3]
  local max, amount = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local start, used, reserved = load(key)
  local reset
  start, used, reserved, reset = up_to_date(start, used, reserved, kind, value, now)
  if reset then
    store(key, start, used, reserved, ttl)
  end
  -- Tally::take
  local room = max - used - reserved
  local take
  if ARGV[a + 6] == '1' then
    if amount <= room + EPSILON then
      take = amount
    end
  elseif room > EPSILON then
    take = math.max(math.min(amount, room), 0)
  end
  if not take then
    return {'refused', tostring(i - 1), fmt(start)}
  end
  takes[i] = take
end
local reply = {'granted'}
for i, key in ipairs(KEYS) do
  -- Read again: a counter may be drawn on twice.
  local start, used, reserved = load(key)
  reserved = reserved + takes[i]
  redis.call('HSET', key, 'reserved', fmt(reserved))
  redis.call('PEXPIRE', key, ARGV[1 + (i - 1) * 6 + 3])
  reply[#reply + 1] = fmt(start)
  reply[#reply + 1] = fmt(takes[i])
end
return reply
";

/// ARGV: now, then per settlement: kind, span value, ttl, the hold's start, what it
/// reserved, the actual amount.
const SETTLE_LUA: &str = r"
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 6
  local start, used, reserved = load(key)
  start, used, reserved = up_to_date(start, used, reserved, ARGV[a + 1], tonumber(ARGV[a + 2]), now)
  -- Tally::settle
  if tonumber(ARGV[a + 4]) == start then
    reserved = math.max(reserved - tonumber(ARGV[a + 5]), 0)
  end
  store(key, start, used + tonumber(ARGV[a + 6]), reserved, ARGV[a + 3])
end
return 1
";

/// ARGV: now, then per counter: kind, span value. Reply: per counter its start (empty when
/// never used), used and reserved. Writes nothing.
const READ_LUA: &str = r"
local now = tonumber(ARGV[1])
local reply = {}
for i, key in ipairs(KEYS) do
  local a = 1 + (i - 1) * 2
  local start, used, reserved = load(key)
  if start then
    start, used, reserved = up_to_date(start, used, reserved, ARGV[a + 1], tonumber(ARGV[a + 2]), now)
    reply[#reply + 1] = fmt(start)
  else
    reply[#reply + 1] = ''
  end
  reply[#reply + 1] = fmt(used)
  reply[#reply + 1] = fmt(reserved)
end
return reply
";

fn script(body: &str) -> Script {
    Script::new(&format!("{RULES_LUA}{body}"))
}

static RESERVE: LazyLock<Script> = LazyLock::new(|| script(RESERVE_LUA));
static SETTLE: LazyLock<Script> = LazyLock::new(|| script(SETTLE_LUA));
static READ: LazyLock<Script> = LazyLock::new(|| script(READ_LUA));

/// The Redis engine of [`Ledger`]: counters shared by every instance using the same server
/// and key prefix. See the module documentation for the data layout and guarantees.
pub struct RedisLedger {
    conn: ConnectionManager,
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
    /// Connects to `settings.url` and loads the scripts, within `settings.timeout` for each.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, LedgerError> {
        // Errors of the client name the problem, never the URL, so no password can leak.
        let client = redis::Client::open(settings.url.expose())
            .map_err(|e| LedgerError(format!("redis.url: {e}")))?;
        // One attempt per reconnection, the next when a later operation finds the connection
        // down, rather than retries with backoff that every operation would wait behind.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout));
        let mut conn = bounded(
            settings.timeout,
            "connect",
            ConnectionManager::new_with_config(client, config),
        )
        .await?;
        // Loaded now, so that the first requests take one round trip too.
        let mut load = redis::pipe();
        for s in [&*RESERVE, &*SETTLE, &*READ] {
            load.load_script(s);
        }
        bounded(
            settings.timeout,
            "loading scripts",
            load.query_async::<()>(&mut conn),
        )
        .await?;
        Ok(Self {
            conn,
            prefix: settings.key_prefix.as_str().into(),
            timeout: settings.timeout,
        })
    }

    fn key(&self, counter: &str) -> String {
        format!("{}{counter}", self.prefix)
    }
}

/// Runs one Redis operation within `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    op: impl Future<Output = RedisResult<T>>,
) -> Result<T, LedgerError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(LedgerError(format!("redis {what}: {e}"))),
        Err(_) => Err(LedgerError(format!(
            "redis {what}: no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// A span as the scripts take it: its kind, its value and the counter's expiry.
fn span_args(span: Span) -> (&'static str, i64, i64) {
    match span {
        Span::Rolling { length_ms } => ("rolling", length_ms, length_ms.saturating_mul(2).max(1)),
        Span::Aligned { start_ms } => ("aligned", start_ms, ALIGNED_TTL_MS),
    }
}

fn number<T: FromStr>(text: &str) -> Result<T, LedgerError> {
    text.parse()
        .map_err(|_| LedgerError(format!("redis: unexpected number `{text}` in a reply")))
}

fn unexpected(reply: &[String]) -> LedgerError {
    LedgerError(format!("redis: unexpected reply {reply:?}"))
}

fn reservation(draws: &[Draw], reply: &[String]) -> Result<Reservation, LedgerError> {
    match reply {
        [tag, index, start] if tag == "refused" => Ok(Reservation::Refused {
            index: number(index)?,
            start_ms: number(start)?,
        }),
        [tag, holds @ ..] if tag == "granted" && holds.len() == 2 * draws.len() => draws
            .iter()
            .zip(holds.chunks_exact(2))
            .map(|(draw, hold)| match hold {
                [start, reserved] => Ok(Hold {
                    key: Arc::clone(&draw.key),
                    start_ms: number(start)?,
                    reserved: number(reserved)?,
                }),
                _ => Err(unexpected(reply)),
            })
            .collect::<Result<_, _>>()
            .map(Reservation::Granted),
        _ => Err(unexpected(reply)),
    }
}

fn readings(count: usize, reply: &[String]) -> Result<Vec<Reading>, LedgerError> {
    if reply.len() != 3 * count {
        return Err(unexpected(reply));
    }
    reply
        .chunks_exact(3)
        .map(|r| match r {
            [start, used, reserved] => Ok(Reading {
                start_ms: match start.as_str() {
                    "" => None,
                    s => Some(number(s)?),
                },
                used: number(used)?,
                reserved: number(reserved)?,
            }),
            _ => Err(unexpected(reply)),
        })
        .collect()
}

impl Ledger for RedisLedger {
    fn reserve<'a>(
        &'a self,
        now_ms: i64,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>> {
        Box::pin(async move {
            if draws.is_empty() {
                return Ok(Reservation::Granted(Vec::new()));
            }
            let mut call = RESERVE.prepare_invoke();
            call.arg(now_ms);
            for d in draws {
                let (kind, value, ttl) = span_args(d.span);
                call.key(self.key(&d.key))
                    .arg(kind)
                    .arg(value)
                    .arg(ttl)
                    .arg(d.max)
                    .arg(d.amount)
                    .arg(if d.whole { "1" } else { "0" });
            }
            let mut conn = self.conn.clone();
            let reply: Vec<String> =
                bounded(self.timeout, "reserve", call.invoke_async(&mut conn)).await?;
            reservation(draws, &reply)
        })
    }

    fn settle(
        &self,
        now_ms: i64,
        settlements: Vec<Settlement>,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        // Everything the call needs is built here, so that the future owns it.
        let mut call = SETTLE.prepare_invoke();
        call.arg(now_ms);
        for s in &settlements {
            let (kind, value, ttl) = span_args(s.span);
            call.key(self.key(&s.hold.key))
                .arg(kind)
                .arg(value)
                .arg(ttl)
                .arg(s.hold.start_ms)
                .arg(s.hold.reserved)
                .arg(s.actual);
        }
        let mut conn = self.conn.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            if settlements.is_empty() {
                return Ok(());
            }
            bounded(timeout, "settle", call.invoke_async::<()>(&mut conn)).await
        })
    }

    fn read<'a>(
        &'a self,
        now_ms: i64,
        counters: &'a [(Arc<str>, Span)],
    ) -> BoxFuture<'a, Result<Vec<Reading>, LedgerError>> {
        Box::pin(async move {
            if counters.is_empty() {
                return Ok(Vec::new());
            }
            let mut call = READ.prepare_invoke();
            call.arg(now_ms);
            for (key, span) in counters {
                let (kind, value, _) = span_args(*span);
                call.key(self.key(key)).arg(kind).arg(value);
            }
            let mut conn = self.conn.clone();
            let reply: Vec<String> =
                bounded(self.timeout, "read", call.invoke_async(&mut conn)).await?;
            readings(counters.len(), &reply)
        })
    }

    fn engine(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use heimdall_core::config::{FailMode, Secret};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ledger::{MemoryLedger, conformance};

    /// The machine's Redis; `HEIMDALL_TEST_REDIS_URL` names another.
    fn server() -> String {
        std::env::var("HEIMDALL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    fn settings(url: &str, key_prefix: &str, timeout: Duration) -> RedisSettings {
        RedisSettings {
            url: Secret::new(url),
            key_prefix: key_prefix.to_owned(),
            on_failure: FailMode::Closed,
            timeout,
        }
    }

    /// A key prefix no other test run shares.
    fn unique_prefix(test: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("heimdall-test:{}:{nanos}:{test}:", std::process::id())
    }

    async fn ledger(prefix: &str) -> RedisLedger {
        RedisLedger::connect(&settings(&server(), prefix, Duration::from_secs(5)))
            .await
            .unwrap()
    }

    /// Deletes every key under the ledger's prefix.
    async fn clean_up(ledger: &RedisLedger) {
        let mut conn = ledger.conn.clone();
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

    /// The same random operations give the same answers, bit for bit, in memory and in Redis.
    #[tokio::test]
    async fn redis_agrees_with_memory() {
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
        for _ in 0..400 {
            now += rng.random_range(0..150);
            match rng.random_range(0..3) {
                0 => {
                    let draws: Vec<Draw> = (0..rng.random_range(1..4))
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
                        .collect();
                    let m = memory.reserve(now, &draws).await.unwrap();
                    let r = redis.reserve(now, &draws).await.unwrap();
                    assert_eq!(m, r, "at {now}: {draws:?}");
                    match r {
                        Reservation::Granted(granted) => {
                            seen[0] += 1;
                            holds.extend(granted.into_iter().map(|h| {
                                let i = keys.iter().position(|k| *k == h.key).unwrap();
                                (h, i)
                            }));
                        }
                        Reservation::Refused { .. } => seen[1] += 1,
                    }
                }
                1 if !holds.is_empty() => {
                    let mut settlements = Vec::new();
                    for _ in 0..rng.random_range(1..3).min(holds.len()) {
                        let (hold, i) = holds.swap_remove(rng.random_range(0..holds.len()));
                        settlements.push(Settlement {
                            actual: hold.reserved * rng.random_range(0.0..1.5),
                            span: span(i, now),
                            hold,
                        });
                    }
                    seen[2] += 1;
                    memory.settle(now, settlements.clone()).await.unwrap();
                    redis.settle(now, settlements).await.unwrap();
                }
                _ => {
                    let counters: Vec<(Arc<str>, Span)> = (0..3)
                        .map(|i| (Arc::clone(&keys[i]), span(i, now)))
                        .collect();
                    let m = memory.read(now, &counters).await.unwrap();
                    let r = redis.read(now, &counters).await.unwrap();
                    assert_eq!(m, r, "at {now}");
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

    /// No server, or one that never answers: a prompt error, never a hang, and no password
    /// in it.
    #[tokio::test]
    async fn an_unreachable_server_fails_within_the_timeout() {
        let timeout = Duration::from_millis(300);
        let bound = timeout * 2 + Duration::from_millis(500);
        let began = Instant::now();
        let refused =
            RedisLedger::connect(&settings("redis://:hunter2@127.0.0.1:1", "x:", timeout))
                .await
                .unwrap_err();
        assert!(began.elapsed() < bound, "{:?}", began.elapsed());
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
        let outcome = match RedisLedger::connect(&settings(&url, "x:", timeout)).await {
            Err(e) => e,
            Ok(l) => l
                .reserve(
                    0,
                    &[Draw {
                        key: "k".into(),
                        max: 1.0,
                        span: Span::Rolling { length_ms: 1_000 },
                        amount: 1.0,
                        whole: true,
                    }],
                )
                .await
                .unwrap_err(),
        };
        assert!(began.elapsed() < bound * 2, "{:?}", began.elapsed());
        assert!(!outcome.0.contains("hunter2"), "{outcome}");
        held.abort();
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
        let mut conn = l.conn.clone();
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
        let mut conn = l.conn.clone();
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
}
