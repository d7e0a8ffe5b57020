//! heimdall-bench: the benchmark harness.
//!
//! - [`load`]: the load generator (open loop at a constant arrival rate with coordinated
//!   omission corrected, or closed loop for maximum throughput; HTTP/1.1 keep-alive).
//! - [`scenario`]: the scenario set of issue 3 and its runner.
//! - [`procs`]: child processes and their RSS / CPU from `/proc`.
//! - [`peers`]: LiteLLM proxy and the Portkey gateway, installed and run side by side.
//! - [`report`]: the markdown tables.
//!
//! [`run_suite`] wires them together: it starts `heimdall-mock` and `heimdall` (release
//! binaries next to this executable), optionally the peers, runs every scenario and returns
//! the report.

pub mod load;
pub mod micro;
pub mod peers;
pub mod procs;
pub mod report;
pub mod scenario;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::procs::Proc;
use crate::scenario::{OpenStreamsReport, Options, Target, TargetReport};

/// Everything a suite run needs.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    pub bin_dir: PathBuf,
    pub options: Options,
    /// Gateway config template; `{{MOCK_URL}}` is replaced by the mock's base URL.
    /// `None`: both providers point at the mock with one key.
    pub gateway_config: Option<String>,
    /// Scenario 5: more gateway configs (name, template) run on the translated path.
    pub variants: Vec<(String, String)>,
    /// Also run the logging scenario: variants with request logs in SQLite and PostgreSQL.
    pub logging: bool,
    /// Also run the governance scenario: variants with a virtual key counted in memory and
    /// in Redis.
    pub governance: bool,
    /// Also run the cache scenario: a gateway with the semantic cache on, its direct hits,
    /// semantic hits and misses.
    pub cache: bool,
    pub mock_latency_ms: u64,
    pub peers: bool,
    pub peers_dir: PathBuf,
    /// Scenario 6 stream count (0 skips it) and how long the mock holds each stream.
    pub open_streams: usize,
    pub stream_hold: Duration,
    pub gateway_cpus: Option<String>,
    pub mock_cpus: Option<String>,
    pub gateway_log_level: String,
    /// Keep only targets whose name contains one of these (direct baselines always kept).
    pub only: Vec<String>,
}

/// The default gateway config: every benchmarked provider at the mock, request logging off
/// (the logging scenario turns it on in variants measured beside it).
pub const DEFAULT_GATEWAY_CONFIG: &str = r#"{
  "providers": {
    "anthropic": {"keys": [{"name": "m", "value": "k", "models": ["*"], "weight": 1}],
                  "network_config": {"base_url": "{{MOCK_URL}}"}},
    "openai":    {"keys": [{"name": "m", "value": "k", "models": ["*"], "weight": 1}],
                  "network_config": {"base_url": "{{MOCK_URL}}"}},
    "gemini":    {"keys": [{"name": "m", "value": "k", "models": ["*"], "weight": 1}],
                  "network_config": {"base_url": "{{MOCK_URL}}"}},
    "bedrock":   {"keys": [{"name": "m", "value": "k", "models": ["*"], "weight": 1,
                            "bedrock_key_config": {"region": "us-east-1"}}],
                  "network_config": {"base_url": "{{MOCK_URL}}"}}
  },
  "logs_store": {"enabled": false}
}"#;

/// The default config with the top-level `sections` set.
fn default_config_with(sections: &[(&str, serde_json::Value)]) -> anyhow::Result<String> {
    let mut config: serde_json::Value = serde_json::from_str(DEFAULT_GATEWAY_CONFIG)?;
    for (name, value) in sections {
        config[*name] = value.clone();
    }
    Ok(serde_json::to_string_pretty(&config)?)
}

/// The default config with `logs_store` set to `store`.
fn with_logs_store(store: serde_json::Value) -> anyhow::Result<String> {
    default_config_with(&[("logs_store", store)])
}

/// The virtual key the governance variants' requests carry in `x-bf-vk`.
pub const BENCH_VIRTUAL_KEY: &str = "sk-bf-bench";

/// The Redis server the governance scenario counts in (the local default).
const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The default config (logging off) with governance on: one virtual key with a budget, a
/// request and a token rate limit, and an openai provider config, so that every counter is
/// taken on each request. The limits are far above what a run sends: a refusal would stop
/// the measurement. With `redis_prefix`, the counters are kept in Redis under that prefix.
pub fn governance_config(redis_prefix: Option<&str>) -> anyhow::Result<String> {
    const LIMIT: u64 = 1_000_000_000_000;
    let governance = serde_json::json!({"virtual_keys": [{
        "id": "bench",
        "value": BENCH_VIRTUAL_KEY,
        "budgets": [{"max_limit": 1e9, "reset_duration": "1d"}],
        "rate_limit": {
            "request_max_limit": LIMIT, "request_reset_duration": "1m",
            "token_max_limit": LIMIT, "token_reset_duration": "1m"
        },
        "provider_configs": [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}]
    }]});
    let mut sections = vec![("governance", governance)];
    if let Some(prefix) = redis_prefix {
        sections.push((
            "redis",
            serde_json::json!({"url": REDIS_URL, "key_prefix": prefix}),
        ));
    }
    default_config_with(&sections)
}

/// The default config with the semantic cache on: embeddings from the mock's
/// OpenAI-compatible endpoint (its trigram vectors, 1,536 dimensions like OpenAI's small
/// embedding model's), threshold 0.8, entries kept an hour (longer than any run).
pub fn cache_config() -> anyhow::Result<String> {
    let plugin = serde_json::json!([{"enabled": true, "name": "semantic_cache", "config": {
        "provider": "openai", "embedding_model": "trigram-1536", "dimension": 1536,
        "threshold": 0.8, "ttl": "1h"
    }}]);
    default_config_with(&[("plugins", plugin)])
}

/// What the cache scenario's gateway counted over the run, read from its `/metrics` at the
/// end: the hits of each kind and the misses tell that each row measured what it names.
#[derive(Debug, Clone, Default)]
pub struct CacheReport {
    pub direct_hits: Option<u64>,
    pub semantic_hits: Option<u64>,
    pub misses: Option<u64>,
    pub embedding_calls: Option<u64>,
}

/// The bench's own key prefix on the local Redis server (checked to answer `PING`); the
/// keys under it are deleted when the value is dropped, so that repeated runs leave nothing.
struct BenchRedis {
    prefix: String,
}

impl BenchRedis {
    fn connect() -> anyhow::Result<Self> {
        let redis = Self {
            prefix: format!("heimdall-bench:{}:", std::process::id()),
        };
        let pong = redis.cli(&["ping"])?;
        anyhow::ensure!(pong == "PONG", "redis-cli ping answered `{pong}`");
        Ok(redis)
    }

    /// `redis-cli` against the server of [`REDIS_URL`]; its output, trimmed.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "-n", "0"])
            .args(args)
            .output()
            .context("running redis-cli")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let Ok(keys) = self.cli(&["--scan", "--pattern", &pattern]) else {
            return;
        };
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(500) {
            let _ = self.cli(&[&["del"], chunk].concat());
        }
    }
}

/// A database of the bench's own on the local PostgreSQL (created with `psql`, trust auth),
/// dropped when the value is.
struct BenchDatabase {
    name: String,
}

impl BenchDatabase {
    fn create() -> anyhow::Result<Self> {
        let db = Self {
            name: format!("heimdall_bench_{}", std::process::id()),
        };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name))?;
        db.psql(&format!("CREATE DATABASE {}", db.name))?;
        Ok(db)
    }

    fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                sql,
            ])
            .output()
            .context("running psql")?;
        anyhow::ensure!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let _ = self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// What a logging variant's writer lost over the run, read from its `/metrics` at the end.
#[derive(Debug, Clone)]
pub struct LoggingReport {
    /// The variant's translated target, as named in the reports.
    pub target: String,
    /// Records refused by the writer's full queue.
    pub dropped: Option<u64>,
    /// Records the database refused.
    pub failed: Option<u64>,
}

/// The value of counter `name` in Prometheus text (labelled series summed; `name` may include
/// the start of a label set to pick one); a counter never incremented is not exported, so
/// absent reads as 0.
pub fn prometheus_counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| {
            rest.strip_prefix(' ')
                .or_else(|| rest.split_once("} ").map(|(_, v)| v))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// What a governance variant refused and failed to count over the run, read from its
/// `/metrics` at the end.
#[derive(Debug, Clone)]
pub struct GovernanceReport {
    /// The variant's translated target, as named in the reports.
    pub target: String,
    /// Requests refused (any reason); 0 unless the limits were set too low.
    pub refusals: Option<u64>,
    /// Round trips to the counters that failed.
    pub ledger_failures: Option<u64>,
}

/// The logging scenario's variants: request logs in SQLite (the embedded default) and in
/// PostgreSQL, content included, each measured beside the logging-off default.
fn logging_variants(notes: &mut Vec<String>) -> (Vec<(String, String)>, Option<BenchDatabase>) {
    let mut variants = Vec::new();
    match with_logs_store(serde_json::json!({"enabled": true, "type": "sqlite"})) {
        Ok(t) => variants.push(("logging SQLite".to_owned(), t)),
        Err(e) => notes.push(format!("logging SQLite: {e:#}")),
    }
    let db = match BenchDatabase::create() {
        Ok(db) => db,
        Err(e) => {
            notes.push(format!("logging PostgreSQL: {e:#}"));
            return (variants, None);
        }
    };
    let store = serde_json::json!({"enabled": true, "type": "postgres", "config": {
        "host": "127.0.0.1", "port": "5432", "user": "postgres", "password": "",
        "db_name": db.name, "ssl_mode": "disable"
    }});
    match with_logs_store(store) {
        Ok(t) => variants.push(("logging PostgreSQL".to_owned(), t)),
        Err(e) => notes.push(format!("logging PostgreSQL: {e:#}")),
    }
    (variants, Some(db))
}

/// The governance scenario's variants: a virtual key counted in memory and in Redis, each
/// measured beside the governance-off default.
fn governance_variants(notes: &mut Vec<String>) -> (Vec<(String, String)>, Option<BenchRedis>) {
    let mut variants = Vec::new();
    match governance_config(None) {
        Ok(t) => variants.push(("governance memory".to_owned(), t)),
        Err(e) => notes.push(format!("governance memory: {e:#}")),
    }
    let redis = match BenchRedis::connect() {
        Ok(r) => r,
        Err(e) => {
            notes.push(format!("governance Redis: no Redis at {REDIS_URL}: {e:#}"));
            return (variants, None);
        }
    };
    match governance_config(Some(&redis.prefix)) {
        Ok(t) => variants.push(("governance Redis".to_owned(), t)),
        Err(e) => notes.push(format!("governance Redis: {e:#}")),
    }
    (variants, Some(redis))
}

pub struct SuiteResult {
    pub reports: Vec<TargetReport>,
    pub open_streams: Vec<OpenStreamsReport>,
    /// The logging scenario's variants, with what their log writers lost.
    pub logging: Vec<LoggingReport>,
    /// The governance scenario's variants, with their refusals and counter failures.
    pub governance: Vec<GovernanceReport>,
    /// The cache scenario's gateway counts, when it ran.
    pub cache: Option<CacheReport>,
    /// Peers or variants that could not be run, and why.
    pub notes: Vec<String>,
}

async fn start_mock(cfg: &SuiteConfig) -> anyhow::Result<Proc> {
    let bin = cfg.bin_dir.join("heimdall-mock");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p heimdall-testkit)",
        bin.display()
    );
    let mut cmd = procs::command(&bin, cfg.mock_cpus.as_deref());
    cmd.args(["--port", "0", "--no-record", "--latency-ms"])
        .arg(cfg.mock_latency_ms.to_string());
    Proc::spawn_with_marker(
        "heimdall-mock",
        cmd,
        "listening on http://",
        Duration::from_secs(15),
        None,
    )
    .await
}

async fn start_gateway(cfg: &SuiteConfig, template: &str, mock_url: &str) -> anyhow::Result<Proc> {
    let bin = cfg.bin_dir.join("heimdall");
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p heimdall-server)",
        bin.display()
    );
    let dir = tempfile::Builder::new()
        .prefix("heimdall-bench-gw-")
        .tempdir()?;
    std::fs::write(
        dir.path().join("config.json"),
        template.replace("{{MOCK_URL}}", mock_url),
    )
    .context("writing config.json")?;
    let mut cmd = procs::command(&bin, cfg.gateway_cpus.as_deref());
    cmd.arg("--app-dir")
        .arg(dir.path())
        .args(["--port", "0", "--host", "127.0.0.1", "--log-level"])
        .arg(&cfg.gateway_log_level)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY");
    Proc::spawn_with_marker(
        "heimdall",
        cmd,
        "heimdall listening on http://",
        Duration::from_secs(15),
        Some(dir),
    )
    .await
}

async fn start_relay(cfg: &SuiteConfig, mock: std::net::SocketAddr) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe()?;
    let mut cmd = procs::command(&exe, cfg.gateway_cpus.as_deref());
    cmd.arg("--relay-to").arg(mock.to_string());
    Proc::spawn_with_marker(
        "relay",
        cmd,
        "relay listening on http://",
        Duration::from_secs(10),
        None,
    )
    .await
}

/// Runs the whole scenario set with real processes.
pub async fn run_suite(cfg: &SuiteConfig) -> anyhow::Result<SuiteResult> {
    let mut notes = Vec::new();
    if cfg.open_streams > 0 {
        let want = (cfg.open_streams as u64) * 3 + 4096;
        match procs::raise_nofile(want) {
            Ok(n) if n < want => notes.push(format!(
                "open-file limit is {n}, below the {want} that {} streams need",
                cfg.open_streams
            )),
            Ok(_) => {}
            Err(e) => notes.push(format!("could not raise the open-file limit: {e}")),
        }
    }
    let mock = start_mock(cfg).await?;
    let mock_url = mock.base_url.clone();
    let template = cfg
        .gateway_config
        .clone()
        .unwrap_or_else(|| DEFAULT_GATEWAY_CONFIG.to_string());
    let gateway = start_gateway(cfg, &template, &mock_url).await?;

    let mut targets: Vec<Target> = scenario::direct_targets(mock.addr()?, Some(mock.pid));
    // Calibration: a plain TCP relay process in front of the mock (no HTTP work at all).
    let relay = match start_relay(cfg, mock.addr()?).await {
        Ok(p) => {
            targets.push(scenario::relay_target(p.addr()?, Some(p.pid)));
            Some(p)
        }
        Err(e) => {
            notes.push(format!("TCP relay calibration: {e:#}"));
            None
        }
    };
    targets.extend(scenario::heimdall_targets(
        gateway.addr()?,
        Some(gateway.pid),
        "Heimdall",
        true,
    ));
    let mut keep: Vec<Proc> = Vec::new();
    let mut variants = cfg.variants.clone();
    let mut _logging_db = None;
    let mut logging_names = Vec::new();
    if cfg.logging {
        let (more, db) = logging_variants(&mut notes);
        logging_names.extend(more.iter().map(|(n, _)| n.clone()));
        variants.extend(more);
        _logging_db = db;
    }
    let mut _governance_redis = None;
    let mut governance_names = Vec::new();
    if cfg.governance {
        let (more, redis) = governance_variants(&mut notes);
        governance_names.extend(more.iter().map(|(n, _)| n.clone()));
        variants.extend(more);
        _governance_redis = redis;
    }
    // (report name of the translated target, gateway address) of each logging and each
    // governance variant.
    let mut logging_gateways = Vec::new();
    let mut governance_gateways = Vec::new();
    for (name, tpl) in &variants {
        match start_gateway(cfg, tpl, &mock_url).await {
            Ok(p) => {
                let addr = p.addr()?;
                let mut added = scenario::heimdall_targets(
                    addr,
                    Some(p.pid),
                    &format!("Heimdall [{name}]"),
                    false,
                );
                if logging_names.contains(name) {
                    logging_gateways.extend(added.iter().map(|t| (t.name.clone(), addr)));
                }
                if governance_names.contains(name) {
                    for t in &mut added {
                        t.add_header(
                            http::HeaderName::from_static("x-bf-vk"),
                            http::HeaderValue::from_static(BENCH_VIRTUAL_KEY),
                        );
                    }
                    governance_gateways.extend(added.iter().map(|t| (t.name.clone(), addr)));
                }
                targets.extend(added);
                keep.push(p);
            }
            Err(e) => notes.push(format!("variant {name}: {e:#}")),
        }
    }
    let mut cache_gateway = None;
    if cfg.cache {
        match start_cache_gateway(cfg, &mock_url).await {
            Ok(p) => {
                targets.extend(scenario::cache_targets(p.addr()?, Some(p.pid)));
                cache_gateway = Some(p.addr()?);
                keep.push(p);
            }
            Err(e) => notes.push(format!("cache: {e:#}")),
        }
    }
    if cfg.peers {
        match peers::install_litellm(&cfg.peers_dir).await {
            Ok(venv) => {
                match peers::start_litellm(&venv, &mock_url, cfg.gateway_cpus.as_deref()).await {
                    Ok(p) => {
                        let t = peers::litellm_target(p.addr()?, p.pid);
                        match load::probe(t.addr, &t.request).await {
                            Ok(_) => {
                                targets.push(t);
                                keep.push(p);
                            }
                            Err(e) => notes.push(format!("LiteLLM: probe request failed: {e}")),
                        }
                    }
                    Err(e) => notes.push(format!("LiteLLM: {e:#}")),
                }
            }
            Err(e) => notes.push(format!("LiteLLM: {e:#}")),
        }
        match peers::install_portkey(&cfg.peers_dir).await {
            Ok(root) => match peers::start_portkey(&root, cfg.gateway_cpus.as_deref()).await {
                Ok(p) => match peers::portkey_target(p.addr()?, p.pid, &mock_url).await {
                    Ok(t) => match load::probe(t.addr, &t.request).await {
                        Ok(_) => {
                            targets.push(t);
                            keep.push(p);
                        }
                        Err(e) => notes.push(format!("Portkey: probe request failed: {e}")),
                    },
                    Err(e) => notes.push(format!("Portkey: {e:#}")),
                },
                Err(e) => notes.push(format!("Portkey: {e:#}")),
            },
            Err(e) => notes.push(format!("Portkey: {e:#}")),
        }
    }
    for n in &notes {
        eprintln!("[heimdall-bench] note: {n}");
    }

    if !cfg.only.is_empty() {
        targets.retain(|t| t.direct || cfg.only.iter().any(|o| t.name.contains(o.as_str())));
    }
    let reports = scenario::run(&targets, &cfg.options).await;
    let mut logging = Vec::new();
    for (target, addr) in logging_gateways {
        let metrics = load::get_text(addr, "/metrics").await;
        logging.push(LoggingReport {
            target,
            dropped: metrics
                .as_deref()
                .map(|m| prometheus_counter(m, "heimdall_log_records_dropped_total")),
            failed: metrics
                .as_deref()
                .map(|m| prometheus_counter(m, "heimdall_log_records_failed_total")),
        });
    }
    let mut governance = Vec::new();
    for (target, addr) in governance_gateways {
        let metrics = load::get_text(addr, "/metrics").await;
        governance.push(GovernanceReport {
            target,
            refusals: metrics
                .as_deref()
                .map(|m| prometheus_counter(m, "heimdall_governance_refusals_total")),
            ledger_failures: metrics
                .as_deref()
                .map(|m| prometheus_counter(m, "heimdall_governance_ledger_failures_total")),
        });
    }
    let cache = match cache_gateway {
        Some(addr) => {
            let metrics = load::get_text(addr, "/metrics").await;
            let counter = |name: &str| metrics.as_deref().map(|m| prometheus_counter(m, name));
            Some(CacheReport {
                direct_hits: counter("bifrost_cache_hits_total{cache_type=\"direct\""),
                semantic_hits: counter("bifrost_cache_hits_total{cache_type=\"semantic\""),
                misses: counter("heimdall_cache_misses_total"),
                embedding_calls: counter("heimdall_cache_embedding_requests_total"),
            })
        }
        None => None,
    };

    let mut open_streams = Vec::new();
    if cfg.open_streams > 0 {
        // A fresh gateway, so the figure is not inflated or deflated by earlier runs.
        let fresh = start_gateway(cfg, &template, &mock_url).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        match scenario::open_streams(
            "Heimdall /anthropic → OpenAI (translated) stream",
            fresh.addr()?,
            fresh.pid,
            cfg.open_streams,
            cfg.stream_hold,
            "openai/gpt-4o-mini",
        )
        .await
        {
            Ok(r) => open_streams.push(r),
            Err(e) => notes.push(format!("open streams: {e:#}")),
        }
        fresh.stop().await;
    }
    for p in keep {
        p.stop().await;
    }
    if let Some(r) = relay {
        r.stop().await;
    }
    gateway.stop().await;
    mock.stop().await;
    Ok(SuiteResult {
        reports,
        open_streams,
        logging,
        governance,
        cache,
        notes,
    })
}

/// The cache scenario's gateway, its hits' answer already stored.
async fn start_cache_gateway(cfg: &SuiteConfig, mock_url: &str) -> anyhow::Result<Proc> {
    let gateway = start_gateway(cfg, &cache_config()?, mock_url).await?;
    load::probe(gateway.addr()?, &scenario::cache_seed())
        .await
        .map_err(|e| anyhow::anyhow!("storing the hits' answer: {e}"))?;
    Ok(gateway)
}

#[cfg(test)]
mod tests {
    use heimdall_core::config::Config;

    use super::*;

    #[test]
    fn governance_variants_are_configs_the_gateway_reads() -> anyhow::Result<()> {
        for prefix in [None, Some("heimdall-bench:1:")] {
            let text = governance_config(prefix)?.replace("{{MOCK_URL}}", "http://127.0.0.1:1");
            let config = Config::from_json(&text, &|_| None)?;
            let g = &config.governance;
            let vk = &g.entities.virtual_keys;
            anyhow::ensure!(vk.len() == 1 && vk[0].value == BENCH_VIRTUAL_KEY, "{vk:?}");
            anyhow::ensure!(config.logging.store.is_none(), "logging must stay off");
            let redis = g.redis.as_ref().map(|r| r.key_prefix.as_str());
            anyhow::ensure!(redis == prefix, "{redis:?}");
        }
        Ok(())
    }

    #[test]
    fn the_cache_scenario_config_is_read_and_its_paraphrase_is_a_semantic_hit() -> anyhow::Result<()>
    {
        let text = cache_config()?.replace("{{MOCK_URL}}", "http://127.0.0.1:1");
        let config = Config::from_json(&text, &|_| None)?;
        anyhow::ensure!(config.logging.store.is_none(), "logging must stay off");
        anyhow::ensure!(config.cache.is_some(), "no semantic_cache plugin");
        let similarity = heimdall_testkit::mock::embeddings::similarity(
            scenario::PROMPT,
            scenario::PARAPHRASE,
            1536,
        );
        anyhow::ensure!(
            (0.9..1.0).contains(&similarity),
            "similarity {similarity}: the semantic rows need a paraphrase above 0.8 that is not the prompt"
        );
        Ok(())
    }

    #[test]
    fn labelled_counters_are_summed() {
        let text = "# TYPE heimdall_governance_refusals_total counter\n\
                    heimdall_governance_refusals_total{reason=\"budget\"} 2\n\
                    heimdall_governance_refusals_total{reason=\"rate_limit\"} 3\n";
        assert_eq!(
            prometheus_counter(text, "heimdall_governance_refusals_total"),
            5
        );
        assert_eq!(
            prometheus_counter(text, "heimdall_governance_ledger_failures_total"),
            0
        );
    }
}
