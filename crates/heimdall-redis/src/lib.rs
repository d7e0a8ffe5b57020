//! What gateway instances share through Redis: the connections (governance's counters use
//! them too) and the semantic cache's entries ([`cache`]).
//!
//! **A server that is not there at start.** Only an invalid URL is an error. When the first
//! connection fails, the caller goes on without one (a Redis restarted a moment after the
//! gateway must not keep the gateway down with it): a background task tries again every
//! [`RETRY_CONNECT`], one attempt at a time, and reports each outcome on a watch channel.
//! Once made, a connection is a [`ConnectionManager`], which makes itself again after a loss
//! when the next call finds it down.

pub mod cache;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};
use tokio::sync::watch;

/// Pause between attempts at a first connection that failed.
pub const RETRY_CONNECT: Duration = Duration::from_secs(1);

/// Why a Redis call did not work: the step and the cause, never the URL (it may hold a
/// password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// The connection, or why there is none yet.
pub type Connection = Result<ConnectionManager, Failure>;

/// A server and how long to wait for it.
#[derive(Clone)]
pub struct Endpoint {
    client: redis::Client,
    /// Connecting, and each call.
    timeout: Duration,
    /// Longest wait for a reply on the connection: `timeout`, plus how long the server may
    /// hold a blocking read.
    replies_within: Duration,
}

impl Endpoint {
    /// The server at `url`; fails only when the URL is invalid.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, Failure> {
        // The client's errors name the problem, never the URL.
        let client = redis::Client::open(url).map_err(|e| Failure(e.to_string()))?;
        Ok(Self {
            client,
            timeout,
            replies_within: timeout,
        })
    }

    /// The same server, for a connection whose calls may block on the server for up to
    /// `longest` (`XREAD BLOCK`).
    pub fn blocking_up_to(&self, longest: Duration) -> Self {
        Self {
            replies_within: self.timeout + longest,
            ..self.clone()
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// One connection, with `script` loaded when given, each step within the timeout.
    pub async fn establish(&self, script: Option<&Script>) -> Connection {
        // One attempt per reconnection, the next when a later call finds the connection
        // down, rather than retries with backoff that every call would wait behind.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.replies_within));
        let mut conn = bounded(
            self.timeout,
            "connect",
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await?;
        if let Some(script) = script {
            // Loaded now, so that the first calls take one round trip too.
            bounded(
                self.timeout,
                "loading the script",
                script.prepare_invoke().load_async(&mut conn),
            )
            .await?;
        }
        Ok(conn)
    }

    /// A connection made now or, when that fails, by a task trying every
    /// [`RETRY_CONNECT`] until one attempt works; the channel holds the latest outcome. The
    /// task ends early once every receiver is gone.
    pub async fn connect(&self, script: Option<&'static Script>) -> watch::Receiver<Connection> {
        let first = self.establish(script).await;
        let failed = first.is_err();
        let (report, connected) = watch::channel(first);
        if failed {
            tokio::spawn(self.clone().keep_connecting(script, report));
        }
        connected
    }

    async fn keep_connecting(
        self,
        script: Option<&'static Script>,
        report: watch::Sender<Connection>,
    ) {
        loop {
            tokio::time::sleep(RETRY_CONNECT).await;
            if report.is_closed() {
                return;
            }
            let attempt = self.establish(script).await;
            let done = attempt.is_ok();
            if done {
                tracing::info!("redis: connected");
            }
            if report.send(attempt).is_err() || done {
                return;
            }
        }
    }
}

/// The connection once there is one: the current one, else waits for the connecting task's
/// success. `None` if that task is gone without one (it never gives up while a receiver
/// lives, so only at exit).
pub async fn connected(connected: &mut watch::Receiver<Connection>) -> Option<ConnectionManager> {
    loop {
        if let Ok(conn) = &*connected.borrow_and_update() {
            return Some(conn.clone());
        }
        connected.changed().await.ok()?;
    }
}

/// `redis {what}: no answer within … ms`.
pub fn no_answer(what: &str, timeout: Duration) -> Failure {
    Failure(format!(
        "redis {what}: no answer within {} ms",
        timeout.as_millis()
    ))
}

/// Runs one Redis call within `timeout`.
pub async fn bounded<T>(
    timeout: Duration,
    what: &str,
    op: impl Future<Output = RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure(format!("redis {what}: {e}"))),
        Err(_) => Err(no_answer(what, timeout)),
    }
}
