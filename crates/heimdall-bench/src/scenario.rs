//! The scenario set: what is measured against which target, and in which order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue};

use crate::load::{self, LoadConfig, LoadResult, Mode, RequestSpec};
use crate::procs::{self, RssSampler};

/// Which mock endpoint a gateway target ends at; the direct target of the same kind is its
/// baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Anthropic,
    OpenAi,
    Gemini,
    Bedrock,
}

/// Something to send load to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Scenario number(s) of the issue, e.g. "2".
    pub scenario: String,
    pub name: String,
    pub addr: SocketAddr,
    pub request: RequestSpec,
    pub stream_request: Option<RequestSpec>,
    /// Direct targets are baselines; the others are compared with the direct target of the
    /// same upstream kind.
    pub direct: bool,
    pub upstream: Upstream,
    /// Process (tree) whose RSS and CPU are reported.
    pub pid: Option<u32>,
}

impl Target {
    /// Sends `name: value` with every request to this target, streams included.
    pub fn add_header(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(stream) = &mut self.stream_request {
            stream.headers.push((name.clone(), value.clone()));
        }
        self.request.headers.push((name, value));
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub connections: usize,
    pub max_duration: Duration,
    /// Max-throughput runs per target, the targets taking turns each round; the report gives
    /// the median, so that the machine's drift over a run weighs on every target alike.
    pub max_rounds: usize,
    pub rates: Vec<f64>,
    pub rate_duration: Duration,
    /// Skip a fixed rate above this fraction of the target's measured maximum.
    pub rate_headroom: f64,
    pub stream_rate: f64,
    pub stream_duration: Duration,
    pub warmup: Duration,
}

impl Options {
    pub fn full() -> Self {
        Self {
            connections: 16,
            max_duration: Duration::from_secs(5),
            max_rounds: 1,
            rates: vec![1000.0, 5000.0],
            rate_duration: Duration::from_secs(10),
            rate_headroom: 0.9,
            stream_rate: 500.0,
            stream_duration: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
        }
    }

    /// Seconds-long settings for the smoke test.
    pub fn smoke() -> Self {
        Self {
            connections: 4,
            max_duration: Duration::from_millis(300),
            max_rounds: 1,
            rates: vec![200.0],
            rate_duration: Duration::from_millis(300),
            rate_headroom: 1.0,
            stream_rate: 50.0,
            stream_duration: Duration::from_millis(250),
            warmup: Duration::from_millis(20),
        }
    }
}

/// One open-loop run at a fixed rate.
#[derive(Debug, Clone)]
pub struct RateRun {
    pub rate: f64,
    /// `Some(reason)` when the rate was not attempted.
    pub skipped: Option<String>,
    pub result: Option<LoadResult>,
    pub rss_bytes: Option<u64>,
    pub cpu_per_1k: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct TargetReport {
    pub target: Target,
    pub max: Option<LoadResult>,
    pub max_error: Option<String>,
    /// Peak RSS and CPU seconds per 1k requests during the max-throughput run.
    pub max_rss: Option<u64>,
    pub max_cpu_per_1k: Option<f64>,
    /// Throughput of every max-throughput round, in the order run; `max` is their median.
    pub max_rounds: Vec<f64>,
    pub rates: Vec<RateRun>,
    pub stream: Option<LoadResult>,
    /// Arrival rate of the streaming run.
    pub stream_rate: f64,
    pub idle_rss: Option<u64>,
}

/// `count` streams held open at once through one target.
#[derive(Debug, Clone)]
pub struct OpenStreamsReport {
    pub name: String,
    pub count: usize,
    pub result: LoadResult,
    pub peak_rss: u64,
    pub idle_rss: u64,
    pub peak_open: u64,
}

fn header(name: &'static str, value: &'static str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

pub(crate) const PROMPT: &str = "Hello from the Heimdall benchmark. Please answer briefly.";

/// Anthropic Messages body for `model`, optionally streaming with `words` of reply.
pub fn anthropic_body(model: &str, stream: bool, words: u32) -> Bytes {
    anthropic_body_asking(PROMPT, model, stream, words)
}

/// [`anthropic_body`] with another prompt.
fn anthropic_body_asking(prompt: &str, model: &str, stream: bool, words: u32) -> Bytes {
    let content = if stream {
        format!("[[mock:words {words}]] {prompt}")
    } else {
        prompt.to_string()
    };
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
    });
    Bytes::from(body.to_string())
}

/// OpenAI Chat Completions body for `model`.
pub fn openai_body(model: &str, stream: bool, words: u32) -> Bytes {
    let content = if stream {
        format!("[[mock:words {words}]] {PROMPT}")
    } else {
        PROMPT.to_string()
    };
    let mut body = serde_json::json!({
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
    });
    if stream {
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    Bytes::from(body.to_string())
}

/// Gemini `generateContent` body.
pub fn gemini_body(stream: bool, words: u32) -> Bytes {
    let text = if stream {
        format!("[[mock:words {words}]] {PROMPT}")
    } else {
        PROMPT.to_string()
    };
    let body = serde_json::json!({
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generationConfig": {"maxOutputTokens": 256},
    });
    Bytes::from(body.to_string())
}

/// Bedrock Converse body.
pub fn converse_body(stream: bool, words: u32) -> Bytes {
    let text = if stream {
        format!("[[mock:words {words}]] {PROMPT}")
    } else {
        PROMPT.to_string()
    };
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 256},
    });
    Bytes::from(body.to_string())
}

/// The Gemini model and the Bedrock Converse model the benchmark asks for.
const GEMINI_MODEL: &str = "gemini-2.5-flash";
const CONVERSE_MODEL: &str = "amazon.nova-pro-v1:0";

/// Request straight to the mock's Gemini API.
fn gemini_request(stream: bool) -> RequestSpec {
    let action = if stream {
        ":streamGenerateContent?alt=sse"
    } else {
        ":generateContent"
    };
    RequestSpec {
        path: format!("/v1beta/models/{GEMINI_MODEL}{action}"),
        headers: vec![header("x-goog-api-key", "k")],
        body: gemini_body(stream, STREAM_WORDS),
        // The last chunk carries the finish reason.
        expect_tail: stream.then_some("finishReason"),
    }
}

/// Request straight to the mock's Bedrock runtime (API-key auth).
fn converse_request(stream: bool) -> RequestSpec {
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    RequestSpec {
        path: format!("/model/{CONVERSE_MODEL}/{action}"),
        headers: vec![header("authorization", "Bearer k")],
        body: converse_body(stream, STREAM_WORDS),
        // The binary event stream ends with a `metadata` event (its name is plain ASCII).
        expect_tail: stream.then_some("metadata"),
    }
}

/// Words per streamed reply (each word is one SSE event upstream).
pub const STREAM_WORDS: u32 = 20;

/// Request to an Anthropic-dialect endpoint at `path` (mock or gateway).
pub fn anthropic_request(path: &str, model: &str, stream: bool) -> RequestSpec {
    RequestSpec {
        path: path.to_string(),
        headers: vec![
            header("x-api-key", "k"),
            header("anthropic-version", "2023-06-01"),
        ],
        body: anthropic_body(model, stream, STREAM_WORDS),
        expect_tail: stream.then_some("message_stop"),
    }
}

/// Request to an OpenAI-dialect endpoint at `path`.
pub fn openai_request(path: &str, model: &str, stream: bool) -> RequestSpec {
    RequestSpec {
        path: path.to_string(),
        headers: vec![header("authorization", "Bearer k")],
        body: openai_body(model, stream, STREAM_WORDS),
        expect_tail: stream.then_some("[DONE]"),
    }
}

/// The direct-to-mock targets (scenario 1).
pub fn direct_targets(mock: SocketAddr, mock_pid: Option<u32>) -> Vec<Target> {
    vec![
        Target {
            scenario: "1".into(),
            name: "direct → mock /v1/messages (Anthropic)".into(),
            addr: mock,
            request: anthropic_request("/v1/messages", "claude-haiku-4-5", false),
            stream_request: Some(anthropic_request("/v1/messages", "claude-haiku-4-5", true)),
            direct: true,
            upstream: Upstream::Anthropic,
            pid: mock_pid,
        },
        Target {
            scenario: "1".into(),
            name: "direct → mock /v1/chat/completions (OpenAI)".into(),
            addr: mock,
            request: openai_request("/v1/chat/completions", "gpt-4o-mini", false),
            stream_request: Some(openai_request("/v1/chat/completions", "gpt-4o-mini", true)),
            direct: true,
            upstream: Upstream::OpenAi,
            pid: mock_pid,
        },
        Target {
            scenario: "1".into(),
            name: "direct → mock generateContent (Gemini)".into(),
            addr: mock,
            request: gemini_request(false),
            stream_request: Some(gemini_request(true)),
            direct: true,
            upstream: Upstream::Gemini,
            pid: mock_pid,
        },
        Target {
            scenario: "1".into(),
            name: "direct → mock converse (Bedrock)".into(),
            addr: mock,
            request: converse_request(false),
            stream_request: Some(converse_request(true)),
            direct: true,
            upstream: Upstream::Bedrock,
            pid: mock_pid,
        },
    ]
}

/// Calibration: the OpenAI request through a plain TCP relay process (no HTTP parsing), the
/// cost of one extra process hop on this machine.
pub fn relay_target(relay: SocketAddr, pid: Option<u32>) -> Target {
    Target {
        scenario: "1 (calibration)".into(),
        name: "TCP relay (no HTTP work) → mock /v1/chat/completions".into(),
        addr: relay,
        request: openai_request("/v1/chat/completions", "gpt-4o-mini", false),
        stream_request: Some(openai_request("/v1/chat/completions", "gpt-4o-mini", true)),
        direct: false,
        upstream: Upstream::OpenAi,
        pid,
    }
}

/// Heimdall targets: pass-through (scenario 2) and translated (scenario 3), both with streams
/// (scenario 4). `label` distinguishes config variants (scenario 5).
pub fn heimdall_targets(
    gateway: SocketAddr,
    pid: Option<u32>,
    label: &str,
    passthrough: bool,
) -> Vec<Target> {
    let path = "/anthropic/v1/messages";
    let mut out = Vec::new();
    if passthrough {
        out.push(Target {
            scenario: "2, 4".into(),
            name: format!("{label} /anthropic → Anthropic (pass-through)"),
            addr: gateway,
            request: anthropic_request(path, "claude-haiku-4-5", false),
            stream_request: Some(anthropic_request(path, "claude-haiku-4-5", true)),
            direct: false,
            upstream: Upstream::Anthropic,
            pid,
        });
    }
    out.push(Target {
        scenario: if passthrough {
            "3, 4".into()
        } else {
            "5".into()
        },
        name: format!("{label} /anthropic → OpenAI (translated)"),
        addr: gateway,
        request: anthropic_request(path, "openai/gpt-4o-mini", false),
        stream_request: Some(anthropic_request(path, "openai/gpt-4o-mini", true)),
        direct: false,
        upstream: Upstream::OpenAi,
        pid,
    });
    if passthrough {
        for (name, model, upstream) in [
            ("Gemini", format!("gemini/{GEMINI_MODEL}"), Upstream::Gemini),
            (
                "Bedrock Converse",
                format!("bedrock/{CONVERSE_MODEL}"),
                Upstream::Bedrock,
            ),
        ] {
            out.push(Target {
                scenario: "3, 4".into(),
                name: format!("{label} /anthropic → {name} (translated)"),
                addr: gateway,
                request: anthropic_request(path, &model, false),
                stream_request: Some(anthropic_request(path, &model, true)),
                direct: false,
                upstream,
                pid,
            });
        }
    }
    out
}

/// The semantic cache's targets, on the translated path to OpenAI through a gateway with the
/// plugin on (its config: [`crate::cache_config`]). Direct hits: the translated target's
/// request under one cache key, so every request after the first is answered from memory
/// (streams replayed). Semantic hits: a paraphrase of it, never stored (`x-bf-cache-no-store`),
/// so each one is a direct miss, an embedding call and a vector search that finds the stored
/// answer; the harness stores that answer before the runs ([`cache_seed`]). Misses: the same
/// request under a key nothing is stored under, so both lookups run and the upstream answers.
pub fn cache_targets(gateway: SocketAddr, pid: Option<u32>) -> Vec<Target> {
    let path = "/anthropic/v1/messages";
    let model = "openai/gpt-4o-mini";
    let target = |kind: &str, request: RequestSpec, stream: Option<RequestSpec>| Target {
        scenario: "cache".into(),
        name: format!("Heimdall [cache] /anthropic → OpenAI (translated), {kind}"),
        addr: gateway,
        request,
        stream_request: stream,
        direct: false,
        upstream: Upstream::OpenAi,
        pid,
    };
    let with = |mut spec: RequestSpec, headers: &[(&'static str, &'static str)]| {
        spec.headers
            .extend(headers.iter().map(|(name, value)| header(name, value)));
        spec
    };
    let stored = [("x-bf-cache-key", CACHE_KEY)];
    let never_stored = [
        ("x-bf-cache-key", CACHE_KEY),
        ("x-bf-cache-no-store", "true"),
    ];
    let mut paraphrase = anthropic_request(path, model, false);
    paraphrase.body = anthropic_body_asking(PARAPHRASE, model, false, STREAM_WORDS);
    vec![
        target(
            "direct hit",
            cache_seed(),
            Some(with(anthropic_request(path, model, true), &stored)),
        ),
        target("semantic hit", with(paraphrase, &never_stored), None),
        target(
            "miss",
            with(
                anthropic_request(path, model, false),
                &[
                    ("x-bf-cache-key", "heimdall-bench-miss"),
                    ("x-bf-cache-no-store", "true"),
                ],
            ),
            None,
        ),
    ]
}

/// The cache key of the cache scenario's hits.
const CACHE_KEY: &str = "heimdall-bench";

/// A paraphrase of [`PROMPT`] whose trigram embedding (the mock's) is well above the cache
/// scenario's threshold of 0.8 from the prompt's.
pub(crate) const PARAPHRASE: &str = "Hello from the Heimdall benchmark! Please answer briefly.";

/// The request whose answer the cache scenario's hits find: the translated target's, under
/// the scenario's cache key. Sent once before the runs, it stores the entry.
pub fn cache_seed() -> RequestSpec {
    let mut spec = anthropic_request("/anthropic/v1/messages", "openai/gpt-4o-mini", false);
    spec.headers.push(header("x-bf-cache-key", CACHE_KEY));
    spec
}

fn log(msg: &str) {
    eprintln!("[heimdall-bench] {msg}");
}

/// One load run against `target`, with its peak RSS and its CPU seconds before and after
/// (when its process is known).
async fn measured(
    target: &Target,
    cfg: &LoadConfig,
) -> (
    anyhow::Result<LoadResult>,
    Option<u64>,
    Option<f64>,
    Option<f64>,
) {
    let sampler = target.pid.map(RssSampler::start);
    let cpu0 = target.pid.map(|p| procs::usage(p).cpu_seconds);
    let res = load::run(target.addr, &target.request, cfg).await;
    let cpu1 = target.pid.map(|p| procs::usage(p).cpu_seconds);
    let rss = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    (res, rss, cpu0, cpu1)
}

/// Runs max throughput, the fixed rates and the streaming run against every target.
/// Baselines and gateways alternate at each step, so drift of the machine affects both.
pub async fn run(targets: &[Target], opts: &Options) -> Vec<TargetReport> {
    let mut reports: Vec<TargetReport> = targets
        .iter()
        .map(|t| TargetReport {
            target: t.clone(),
            max: None,
            max_error: None,
            max_rss: None,
            max_cpu_per_1k: None,
            max_rounds: Vec::new(),
            rates: Vec::new(),
            stream: None,
            stream_rate: 0.0,
            idle_rss: t.pid.map(|p| procs::usage(p).rss_bytes),
        })
        .collect();

    // Per target, each round's result with its peak RSS and CPU per 1k requests.
    type Round = (LoadResult, Option<u64>, Option<f64>);
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); reports.len()];
    for round in 0..opts.max_rounds.max(1) {
        for (r, kept) in reports.iter_mut().zip(&mut rounds) {
            if r.max_error.is_some() {
                continue;
            }
            let mut cfg = LoadConfig::new(
                opts.connections,
                Mode::Closed {
                    duration: opts.max_duration,
                },
            );
            cfg.warmup = opts.warmup;
            log(&format!(
                "max throughput (round {} of {}): {}",
                round + 1,
                opts.max_rounds.max(1),
                r.target.name
            ));
            let (res, rss, cpu0, cpu1) = measured(&r.target, &cfg).await;
            match res {
                Ok(res) => {
                    // Warm-up requests are not counted in `res.ok`; estimate them at the
                    // measured rate so they don't inflate the figure.
                    let cpu = match (cpu0, cpu1) {
                        (Some(a), Some(b)) if res.ok > 0 => {
                            let warm = opts.warmup.as_secs_f64() * res.throughput();
                            Some((b - a) / ((res.ok as f64 + warm) / 1000.0))
                        }
                        _ => None,
                    };
                    log(&format!(
                        "  {:.0} req/s, {} errors{}",
                        res.throughput(),
                        res.errors,
                        res.first_error
                            .as_deref()
                            .map(|e| format!(" (first: {e})"))
                            .unwrap_or_default()
                    ));
                    r.max_rounds.push(res.throughput());
                    kept.push((res, rss, cpu));
                }
                Err(e) => {
                    log(&format!("  failed: {e:#}"));
                    r.max_error = Some(format!("{e:#}"));
                }
            }
        }
    }
    for (r, mut kept) in reports.iter_mut().zip(rounds) {
        if r.max_error.is_some() || kept.is_empty() {
            continue;
        }
        kept.sort_by(|a, b| a.0.throughput().total_cmp(&b.0.throughput()));
        let (res, rss, cpu) = kept.swap_remove(kept.len() / 2);
        r.max = Some(res);
        r.max_rss = rss;
        r.max_cpu_per_1k = cpu;
    }

    for &rate in &opts.rates {
        for r in &mut reports {
            let max = r.max.as_ref().map_or(0.0, LoadResult::throughput);
            let usable = r.max.as_ref().is_some_and(|m| m.ok > 0);
            if !usable || rate > max * opts.rate_headroom {
                r.rates.push(RateRun {
                    rate,
                    skipped: Some(format!("max {max:.0} req/s")),
                    result: None,
                    rss_bytes: None,
                    cpu_per_1k: None,
                });
                continue;
            }
            log(&format!("{rate:.0} req/s: {}", r.target.name));
            let mut cfg = LoadConfig::new(
                opts.connections,
                Mode::Open {
                    rate,
                    duration: opts.rate_duration,
                },
            );
            cfg.warmup = opts.warmup;
            let (res, rss, cpu0, cpu1) = measured(&r.target, &cfg).await;
            match res {
                Ok(res) => {
                    // Warm-up requests also burn CPU; they are few next to the measured run
                    // but are counted for honesty: CPU over (measured + warm-up estimate).
                    let warm = opts.warmup.as_secs_f64() * max;
                    let cpu_per_1k = match (cpu0, cpu1) {
                        (Some(a), Some(b)) if res.ok > 0 => {
                            Some((b - a) / ((res.ok as f64 + warm) / 1000.0))
                        }
                        _ => None,
                    };
                    log(&format!(
                        "  p50 {:.0} µs, p99 {:.0} µs, {} errors, {} not sent",
                        res.latency.value_at_quantile(0.5) as f64 / 1e3,
                        res.latency.value_at_quantile(0.99) as f64 / 1e3,
                        res.errors,
                        res.not_sent
                    ));
                    r.rates.push(RateRun {
                        rate,
                        skipped: None,
                        result: Some(res),
                        rss_bytes: rss,
                        cpu_per_1k,
                    });
                }
                Err(e) => r.rates.push(RateRun {
                    rate,
                    skipped: Some(format!("failed: {e:#}")),
                    result: None,
                    rss_bytes: rss,
                    cpu_per_1k: None,
                }),
            }
        }
    }

    for r in &mut reports {
        let Some(spec) = r.target.stream_request.clone() else {
            continue;
        };
        let max = r.max.as_ref().map_or(0.0, LoadResult::throughput);
        if max <= 0.0 {
            continue;
        }
        // Slow targets (peers) stream at half their maximum instead, so they don't just queue.
        let rate = opts.stream_rate.min(max * 0.5).max(1.0);
        log(&format!("streams at {rate:.0}/s: {}", r.target.name));
        r.stream_rate = rate;
        let mut cfg = LoadConfig::new(
            opts.connections,
            Mode::Open {
                rate,
                duration: opts.stream_duration,
            },
        );
        cfg.warmup = opts.warmup;
        match load::run(r.target.addr, &spec, &cfg).await {
            Ok(res) => r.stream = Some(res),
            Err(e) => log(&format!("  failed: {e:#}")),
        }
    }
    reports
}

/// Scenario 6: `count` streams open at once through `addr`, each held open by the mock for
/// `hold` after its first events. Reports whether all completed and the peak RSS of `pid`.
pub async fn open_streams(
    name: &str,
    addr: SocketAddr,
    pid: u32,
    count: usize,
    hold: Duration,
    model: &str,
) -> anyhow::Result<OpenStreamsReport> {
    let body = serde_json::json!({
        "model": model,
        "max_tokens": 256,
        "stream": true,
        "messages": [{"role": "user", "content": format!("[[mock:stall {}]] [[mock:words 10]] {PROMPT}", hold.as_millis())}],
    });
    let spec = RequestSpec {
        path: "/anthropic/v1/messages".into(),
        headers: vec![
            header("x-api-key", "k"),
            header("anthropic-version", "2023-06-01"),
        ],
        body: Bytes::from(body.to_string()),
        expect_tail: Some("message_stop"),
    };
    let idle_rss = procs::usage(pid).rss_bytes;
    let sampler = RssSampler::start(pid);
    let open = Arc::new(load::OpenGauge::default());
    log(&format!("{count} concurrent streams through {name}"));
    let timeout = hold + Duration::from_secs(60);
    let res = load::concurrent_streams(addr, &spec, count, timeout, open.clone()).await?;
    let peak_rss = sampler.finish().await;
    log(&format!(
        "  {} complete, {} errors{}; peak RSS {:.1} MB",
        res.ok,
        res.errors,
        res.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default(),
        peak_rss as f64 / 1e6
    ));
    Ok(OpenStreamsReport {
        name: name.to_string(),
        count,
        peak_open: open.peak(),
        result: res,
        peak_rss,
        idle_rss,
    })
}

/// `h`'s value at `q` in microseconds.
pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}
