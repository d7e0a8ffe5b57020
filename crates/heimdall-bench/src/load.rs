//! The load generator: HTTP/1.1 keep-alive over N connections, hyper's low-level client.
//!
//! Two modes:
//! - **closed loop** ([`Mode::Closed`]): every connection sends its next request as soon as the
//!   previous answer is complete; gives the maximum throughput.
//! - **open loop** ([`Mode::Open`]): request `i` is due at `start + i / rate`, whatever the
//!   server is doing. A free connection claims the next due request. Latency is corrected for
//!   coordinated omission: when a request had to wait because its connection was still busy
//!   with the previous answer, its latency counts from the time it was *due*, so stalls of the
//!   system under test show up in the percentiles instead of silently lowering the rate. When
//!   the connection was idle, the latency counts from the actual send, so the 1 ms granularity
//!   of the load generator's own timer is not charged to the system under test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One kind of request, sent over and over.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Origin-form path, e.g. `/anthropic/v1/messages`.
    pub path: String,
    /// Extra headers (auth, versions); `host` and `content-type: application/json` are added.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// When set, a response only counts as complete if its last bytes contain this marker
    /// (e.g. `message_stop` for an Anthropic stream, `[DONE]` for an OpenAI one).
    pub expect_tail: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Back-to-back requests on every connection for `duration`.
    Closed { duration: Duration },
    /// `rate` requests per second for `duration` (`rate × duration` requests in total).
    Open { rate: f64, duration: Duration },
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub connections: usize,
    pub mode: Mode,
    /// Per-request limit; a request over it counts as an error and its connection is replaced.
    pub request_timeout: Duration,
    /// Open loop: requests not started this long after the schedule's end are abandoned and
    /// counted in [`LoadResult::not_sent`] (keeps a saturated target from running forever).
    pub grace: Duration,
    /// Closed-loop warm-up before measuring (fills the target's connection pools).
    pub warmup: Duration,
}

impl LoadConfig {
    pub fn new(connections: usize, mode: Mode) -> Self {
        Self {
            connections,
            mode,
            request_timeout: Duration::from_secs(10),
            grace: Duration::from_secs(3),
            warmup: Duration::from_millis(300),
        }
    }
}

/// Figures of one load run. Histograms are in nanoseconds.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub not_sent: u64,
    pub elapsed: Duration,
    /// Time to the last byte (coordinated-omission corrected in open loop).
    pub latency: Histogram<u64>,
    /// Time to the first body byte (same origin as `latency`).
    pub ttfb: Histogram<u64>,
    pub bytes: u64,
    pub first_error: Option<String>,
}

impl LoadResult {
    fn empty() -> Self {
        Self {
            ok: 0,
            errors: 0,
            not_sent: 0,
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            ttfb: new_histogram(),
            bytes: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.not_sent += other.not_sent;
        self.bytes += other.bytes;
        // Both histograms have the same bounds; `add` only fails on a bounds mismatch.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttfb.add(&other.ttfb);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.ok as f64 / s } else { 0.0 }
    }
}

/// 1 µs .. 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// When the first body byte and the last byte arrived.
struct Timing {
    first: Instant,
    end: Instant,
    bytes: u64,
}

async fn send_one(
    sender: &mut Sender,
    spec: &RequestSpec,
    host: &HeaderValue,
) -> Result<Timing, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let mut req = Request::new(Full::new(spec.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = spec.path.parse().map_err(|e| format!("path: {e}"))?;
    let h = req.headers_mut();
    h.insert(HOST, host.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &spec.headers {
        h.insert(k.clone(), v.clone());
    }
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut first = None;
    let mut bytes = 0u64;
    // The last bytes seen, to check a stream's terminal event.
    let mut tail: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if data.is_empty() {
                continue;
            }
            if first.is_none() {
                first = Some(Instant::now());
            }
            bytes += data.len() as u64;
            if spec.expect_tail.is_some() || !status.is_success() {
                tail.extend_from_slice(data);
                if tail.len() > 512 {
                    tail.drain(..tail.len() - 256);
                }
            }
        }
    }
    let end = Instant::now();
    if !status.is_success() {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&tail)
                .chars()
                .take(200)
                .collect::<String>()
        ));
    }
    if let Some(marker) = spec.expect_tail {
        let text = String::from_utf8_lossy(&tail);
        if !text.contains(marker) {
            return Err(format!("stream ended without `{marker}`"));
        }
    }
    Ok(Timing {
        first: first.unwrap_or(end),
        end,
        bytes,
    })
}

/// Runs one load test of `spec` against `addr`.
pub async fn run(
    addr: SocketAddr,
    spec: &RequestSpec,
    cfg: &LoadConfig,
) -> anyhow::Result<LoadResult> {
    let spec = Arc::new(spec.clone());
    let host = HeaderValue::from_str(&addr.to_string())?;
    // Connect everything first, so connection set-up is not measured.
    let mut senders = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        senders.push(connect(addr).await?);
    }
    if !cfg.warmup.is_zero() {
        let until = Instant::now() + cfg.warmup;
        let mut tasks = Vec::new();
        for mut s in senders.drain(..) {
            let (spec, host) = (spec.clone(), host.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < until {
                    if send_one(&mut s, &spec, &host).await.is_err() {
                        // Reconnect below; a failing warm-up shows up again in the real run.
                        break;
                    }
                }
                s
            }));
        }
        for t in tasks {
            let s = t.await?;
            senders.push(if s.is_closed() {
                connect(addr).await?
            } else {
                s
            });
        }
    }
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(senders.len());
    for sender in senders {
        let (spec, host, next, cfg) = (spec.clone(), host.clone(), next.clone(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            match cfg.mode {
                Mode::Closed { duration } => {
                    closed_loop(sender, addr, &spec, &host, &cfg, start + duration).await
                }
                Mode::Open { rate, duration } => {
                    open_loop(
                        sender, addr, &spec, &host, &cfg, start, rate, duration, &next,
                    )
                    .await
                }
            }
        }));
    }
    let mut total = LoadResult::empty();
    for t in tasks {
        total.merge(&t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

fn record(result: &mut LoadResult, origin: Instant, timing: &Timing) {
    let ns = |t: Instant| {
        u64::try_from(t.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
    };
    result.latency.saturating_record(ns(timing.end).max(1_000));
    result.ttfb.saturating_record(ns(timing.first).max(1_000));
    result.ok += 1;
    result.bytes += timing.bytes;
}

async fn fail(result: &mut LoadResult, sender: &mut Option<Sender>, err: String) {
    result.errors += 1;
    if result.first_error.is_none() {
        result.first_error = Some(err);
    }
    // The connection may be in any state after an error: replace it.
    *sender = None;
}

async fn closed_loop(
    sender: Sender,
    addr: SocketAddr,
    spec: &RequestSpec,
    host: &HeaderValue,
    cfg: &LoadConfig,
    until: Instant,
) -> LoadResult {
    let mut result = LoadResult::empty();
    let mut sender = Some(sender);
    while Instant::now() < until {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    fail(&mut result, &mut sender, format!("connect: {e}")).await;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let t0 = Instant::now();
        match tokio::time::timeout(cfg.request_timeout, send_one(s, spec, host)).await {
            Ok(Ok(timing)) => record(&mut result, t0, &timing),
            Ok(Err(e)) => fail(&mut result, &mut sender, e).await,
            Err(_) => fail(&mut result, &mut sender, "timeout".into()).await,
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    sender: Sender,
    addr: SocketAddr,
    spec: &RequestSpec,
    host: &HeaderValue,
    cfg: &LoadConfig,
    start: Instant,
    rate: f64,
    duration: Duration,
    next: &AtomicU64,
) -> LoadResult {
    let mut result = LoadResult::empty();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate.max(0.001);
    let hard_stop = start + duration + cfg.grace;
    let mut sender = Some(sender);
    let mut free_since = start;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let due = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        if Instant::now() > hard_stop {
            result.not_sent += 1;
            continue;
        }
        // Whether this connection was already free when the request fell due.
        let was_idle = free_since <= due;
        tokio::time::sleep_until(due.into()).await;
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    fail(&mut result, &mut sender, format!("connect: {e}")).await;
                    free_since = Instant::now();
                    continue;
                }
            },
        };
        let sent = Instant::now();
        let origin = if was_idle { sent } else { due };
        match tokio::time::timeout(cfg.request_timeout, send_one(s, spec, host)).await {
            Ok(Ok(timing)) => record(&mut result, origin, &timing),
            Ok(Err(e)) => fail(&mut result, &mut sender, e).await,
            Err(_) => fail(&mut result, &mut sender, "timeout".into()).await,
        }
        free_since = Instant::now();
    }
    result
}

/// Streams open now and the most open at once.
#[derive(Debug, Default)]
pub struct OpenGauge {
    now: AtomicU64,
    peak: AtomicU64,
}

impl OpenGauge {
    fn open(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    fn close(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }

    /// The most streams that were open at one moment.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Holds `count` streams open at once: each on its own connection, all started together.
/// Returns the result (ttfb/latency from each stream's own start).
pub async fn concurrent_streams(
    addr: SocketAddr,
    spec: &RequestSpec,
    count: usize,
    timeout: Duration,
    open: Arc<OpenGauge>,
) -> anyhow::Result<LoadResult> {
    let spec = Arc::new(spec.clone());
    let host = HeaderValue::from_str(&addr.to_string())?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (spec, host, open) = (spec.clone(), host.clone(), open.clone());
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::empty();
            let mut sender = None;
            let attempt = async {
                let mut s = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
                open.open();
                let t0 = Instant::now();
                let timing = send_one(&mut s, &spec, &host).await;
                open.close();
                Ok::<_, String>((t0, timing?))
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok((t0, timing))) => record(&mut result, t0, &timing),
                Ok(Err(e)) => fail(&mut result, &mut sender, e).await,
                Err(_) => fail(&mut result, &mut sender, "timeout".into()).await,
            }
            result
        }));
        // Spread the connects a little so the listen backlog never overflows.
        if tasks.len() % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut total = LoadResult::empty();
    for t in tasks {
        total.merge(&t.await?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// Sends `spec` once and returns the body as text (an error for non-2xx or transport trouble).
pub async fn probe(addr: SocketAddr, spec: &RequestSpec) -> Result<String, String> {
    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    let mut sender = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let mut req = Request::new(Full::new(spec.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = spec.path.parse().map_err(|e| format!("path: {e}"))?;
    let h = req.headers_mut();
    h.insert(HOST, host);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in &spec.headers {
        h.insert(k.clone(), v.clone());
    }
    let fut = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!(
                "status {status}: {}",
                text.chars().take(300).collect::<String>()
            ))
        }
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// Whether `GET path` on `addr` answers 2xx within two seconds.
pub async fn get_ok(addr: SocketAddr, path: &str) -> bool {
    get_text(addr, path).await.is_some()
}

/// The body of `GET path` on `addr` when it answers 2xx within two seconds.
pub async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let fut = async {
        let mut sender = connect(addr).await.ok()?;
        let req = Request::get(path)
            .header(HOST, addr.to_string())
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()
        .flatten()
}

/// A byte-for-byte TCP relay to `upstream` (one upstream connection per client connection):
/// the cost of one more process hop with no HTTP work at all, to calibrate what "added
/// latency" can be on this machine. Serves until the process ends.
pub async fn relay(listener: tokio::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Ok(mut up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        });
    }
}
