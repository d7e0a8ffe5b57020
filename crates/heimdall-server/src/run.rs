//! Start-up and shutdown: logging, config loading, binding, serving, draining.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use heimdall_core::config::{Config, StoreConfig};
use heimdall_core::{Gateway, LogSink, RecordSink, Sinks};
use heimdall_store::Store;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::JsonFields;

use crate::cli::{Cli, LogFormat};
use crate::config_service::ConfigService;
use crate::edge::EdgeConfig;
use crate::governance::GovernanceService;
use crate::jobs::AsyncJobs;
use crate::logfmt::{EscapedFields, JsonEvents, JsonList, JsonStderr};
use crate::routes::App;

pub fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("--log-level `{}` is not a valid filter", cli.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Client strings are escaped in both formats (see `logfmt`); colours only for a terminal,
    // never into a file or a log collector.
    match cli.log_format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonEvents)
            .with_writer(JsonStderr)
            .init(),
        LogFormat::Pretty => builder
            .fmt_fields(EscapedFields)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// The config file: `--config`, else `APP_DIR/config.json`.
pub fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| cli.app_dir.join("config.json"))
}

/// `--allow-unsupported-config`, set once at start; read by every parse, reloads included
/// (which run far from the flags).
static ALLOW_UNSUPPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Parses the config file's text, logging its warnings; the error names the file and the
/// JSON path. Settings that change security or billing and that Heimdall does not implement
/// refuse the file unless `--allow-unsupported-config` was given.
pub(crate) fn parse_config(path: &Path, text: &str) -> anyhow::Result<Config> {
    let env = |var: &str| std::env::var(var).ok();
    let fail = |e| anyhow::anyhow!("{}: {e}", path.display());
    let config = Config::from_json(text, &env).map_err(fail)?;
    if ALLOW_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed) {
        for u in &config.unsupported {
            tracing::warn!(path = %path.display(), "{u} (ignored: --allow-unsupported-config)");
        }
    } else {
        config.check_supported().map_err(fail)?;
    }
    for w in &config.warnings {
        tracing::warn!(path = %path.display(), "{w}");
    }
    Ok(config)
}

/// The configuration the gateway starts with, and what the file held then.
pub struct Loaded {
    pub config: Config,
    seen: crate::reload::Seen,
    /// The file's text (`None`: no file), taken into the config store at start.
    text: Option<String>,
}

/// Reads the config file if there is one; otherwise enables providers from the environment.
pub fn load_config(cli: &Cli) -> anyhow::Result<Loaded> {
    ALLOW_UNSUPPORTED.store(
        cli.allow_unsupported_config,
        std::sync::atomic::Ordering::Relaxed,
    );
    let env = |var: &str| std::env::var(var).ok();
    let explicit = cli.config.is_some();
    let path = config_path(cli);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            let config = Config::from_env(&env);
            let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
            if names.is_empty() {
                tracing::warn!(
                    path = %path.display(),
                    "no config file and no provider key in the environment (ANTHROPIC_API_KEY, OPENAI_API_KEY); requests will fail until one is configured"
                );
            } else {
                tracing::info!(providers = ?JsonList(&names), "no config file; providers enabled from the environment");
            }
            return Ok(Loaded {
                config,
                seen: crate::reload::Seen::of(None),
                text: None,
            });
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let config = parse_config(&path, &text)?;
    let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(path = %path.display(), providers = ?JsonList(&names), "configuration loaded");
    Ok(Loaded {
        config,
        seen: crate::reload::Seen::of(Some(&text)),
        text: Some(text),
    })
}

/// How the server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every in-flight request finished within the grace period.
    Drained,
    /// The grace period ran out; requests still in flight were ended with an error.
    GraceExceeded,
}

/// How long requests ended by an expired grace period get to write their error out.
const ABORT_FLUSH: Duration = Duration::from_secs(2);
/// How long the request logs still queued at exit get to be written.
const LOG_FLUSH: Duration = Duration::from_secs(30);
/// How often old logs and expired async jobs are pruned.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// How long the semantic cache's queued changes get to be written at exit.
const CACHE_FLUSH: Duration = Duration::from_secs(10);
/// How often expired semantic-cache entries leave memory and the store.
const CACHE_PURGE_EVERY: Duration = Duration::from_secs(30);

/// Where the semantic cache's entries are kept beyond this process's memory.
enum CacheCopy {
    /// The logs store: read back at start, written through its queue.
    Store(Arc<heimdall_store::CacheJournal>),
    /// Redis (`vector_store`): shared with every instance using it.
    Shared(Arc<heimdall_redis::cache::SharedCache>),
}

impl CacheCopy {
    /// Waits (at most `timeout`) until the queued changes are written.
    async fn flush(&self, timeout: Duration) -> bool {
        match self {
            Self::Store(journal) => journal.flush(timeout).await,
            Self::Shared(shared) => shared.flush(timeout).await,
        }
    }
}

/// The semantic cache's copy and its tasks. With `vector_store` (Redis) and the plugin on at
/// start, entries are shared with every instance using that Redis, which is then their source
/// of truth (the logs store keeps none); else the logs store keeps them (read back now);
/// without either they live in memory only. A task drops expired entries from memory (and
/// the store) in every case.
async fn start_cache(
    gateway: &Arc<Gateway>,
    store: Option<&Store>,
) -> anyhow::Result<(Option<CacheCopy>, Vec<tokio::task::JoinHandle<()>>)> {
    let cache = Arc::clone(gateway.cache());
    let config = gateway.config();
    let mut tasks = Vec::new();
    let copy = match (&config.vector_store, &config.cache, store) {
        (Some(settings), Some(_), _) => {
            let endpoint = heimdall_redis::Endpoint::new(settings.url.expose(), settings.timeout)
                .map_err(|e| anyhow::anyhow!("vector_store.config.addr: {e}"))?;
            // Read per entry another instance stored: a reload may change the bound.
            let max_bytes: heimdall_redis::cache::MaxBytes = {
                let gateway = Arc::clone(gateway);
                Arc::new(move || gateway.config().cache.as_ref().map_or(0, |c| c.max_bytes))
            };
            let (shared, follower) = heimdall_redis::cache::SharedCache::start(
                cache,
                &endpoint,
                &settings.key_prefix,
                max_bytes,
            )
            .await;
            tasks.push(follower);
            Some(CacheCopy::Shared(shared))
        }
        (_, _, Some(store)) => {
            let max_bytes = config.cache.as_ref().map_or(u64::MAX, |c| c.max_bytes);
            match store.cache_entries(cache.now_ms()).await {
                Ok(entries) => {
                    let n = cache.restore(entries, max_bytes);
                    if n > 0 {
                        tracing::info!(entries = n, "semantic cache entries restored");
                    }
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "semantic cache: reading stored entries failed; starting empty"
                ),
            }
            let (journal, _writer) = store.start_cache_journal();
            cache.set_journal(Arc::clone(&journal) as Arc<dyn heimdall_cache::Journal>);
            Some(CacheCopy::Store(journal))
        }
        (_, _, None) => None,
    };
    if config.vector_store.is_some() && config.cache.is_none() {
        tracing::warn!(
            "vector_store is configured but the semantic_cache plugin is not: nothing is shared (both are read at start)"
        );
    }
    gateway.purge_cache();
    let pruned = match &copy {
        Some(CacheCopy::Store(_)) => store.cloned(),
        _ => None,
    };
    let gateway = Arc::clone(gateway);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CACHE_PURGE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            gateway.purge_cache();
            if let Some(store) = &pruned
                && let Err(e) = store.prune_cache(gateway.cache().now_ms()).await
            {
                tracing::warn!(error = format!("{e:#}"), "pruning cache entries failed");
            }
        }
    }));
    Ok((copy, tasks))
}

/// Opens the logs store (creating the SQLite file, or connecting to PostgreSQL) and runs its
/// migrations; a store that cannot be opened stops the start, saying which and why.
async fn open_store(config: &StoreConfig, app_dir: &Path) -> anyhow::Result<Store> {
    let store = Store::open(config, app_dir)
        .await
        .context("opening the logs store (logs_store)")?;
    tracing::info!(engine = store.engine(), "logs store ready");
    Ok(store)
}

pub async fn serve(cli: Cli, loaded: Loaded) -> anyhow::Result<Stopped> {
    let logging = loaded.config.logging.clone();
    // Before anything registers a metric: handles taken earlier would record nowhere.
    crate::metrics::install();
    // Where every finished request's record goes; each sink queues or counts, none blocks.
    let mut sinks: Vec<Arc<dyn RecordSink>> = vec![Arc::new(LogSink)];
    sinks.push(Arc::new(heimdall_core::telemetry::MetricsSink::new()));
    let store = match &logging.store {
        Some(config) => Some(open_store(config, &cli.app_dir).await?),
        None => None,
    };
    let writer = store.as_ref().map(|store| {
        let (sink, writer) = store.start_writer(
            heimdall_store::DEFAULT_QUEUE,
            heimdall_store::DEFAULT_QUEUE_CONTENT_BYTES,
        );
        sinks.push(sink);
        writer
    });
    // The `otel` plugin: one span per request, exported in the background; started once, so a
    // reload does not change it.
    let otel = match &loaded.config.otel {
        Some(config) => {
            let (sink, guard) = heimdall_otel::start(config).context("starting the otel plugin")?;
            sinks.push(sink);
            tracing::info!(collector = %config.collector_url, "OpenTelemetry traces enabled");
            Some(guard)
        }
        None => None,
    };
    let governance = GovernanceService::start(&loaded.config, &cli.app_dir).await?;
    // The providers and client settings the admin API changed, over the file's.
    let (seeded, config) =
        crate::config_service::load(governance.store(), loaded.text.as_deref(), loaded.config)
            .await
            .context("taking config.json into the config store (config_store)")?;
    governance.settings_changed(&config).await;
    let gateway = Arc::new(
        Gateway::with_hooks(
            config,
            Arc::clone(&governance.policy) as Arc<dyn heimdall_core::Policy>,
            Arc::new(Sinks(sinks)),
        )
        .map_err(|e| anyhow::anyhow!(e.message))?,
    );
    // Watching starts before the gateway says it listens: a change or a SIGHUP from then on
    // is never lost.
    let config_service = ConfigService::new(seeded, Arc::clone(&gateway), Arc::clone(&governance));
    let reloader = crate::reload::spawn(
        Arc::clone(&config_service),
        config_path(&cli),
        Duration::from_millis(cli.config_poll_ms),
        loaded.seen,
    );
    let jobs = AsyncJobs::new(store.clone(), cli.async_job_lease_seconds);
    let (cache_copy, cache_tasks) = start_cache(&gateway, store.as_ref()).await?;
    let background = [
        jobs.spawn_lease_keeper(),
        store.as_ref().map(|s| {
            // Read on every round: the admin API may change it.
            let gateway = Arc::clone(&gateway);
            s.spawn_maintenance(
                move || gateway.config().logging.retention,
                MAINTENANCE_EVERY,
            )
        }),
        governance.spawn(),
        config_service.spawn(),
    ];
    let app = crate::router(App {
        gateway: Arc::clone(&gateway),
        jobs: Arc::clone(&jobs),
        store,
        governance: Some(Arc::clone(&governance)),
        config: Some(config_service),
    });
    let edge = edge_config(&cli);
    #[cfg(unix)]
    fit_open_file_limit(edge.max_connections);
    let addr = format!("{}:{}", cli.host, cli.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // Harnesses read this line to learn the port when started with --port 0.
    println!("heimdall listening on http://{local}");
    std::io::stdout().flush()?;
    tracing::info!(addr = %local, "listening");
    if gateway.config().admin_auth.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            addr = %local,
            "the admin API (/api, /metrics) is open to anyone who can reach this address: set client.admin_auth, or listen on 127.0.0.1"
        );
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let mut drain_rx = stop_rx.clone();
    let server = crate::edge::serve(listener, app, Arc::clone(&gateway), edge, stop_rx);
    // Drained: every connection closed, then every async job stored its result.
    let drained = async {
        server.await;
        jobs.idle().await;
    };
    tokio::pin!(drained);
    let grace = Duration::from_secs(cli.shutdown_grace_seconds);
    let stopped = tokio::select! {
        () = &mut drained => Stopped::Drained,
        _ = async {
            let _ = drain_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "shutdown grace period exceeded: ending the requests still in flight with an error"
            );
            gateway.abort_in_flight();
            if tokio::time::timeout(ABORT_FLUSH, &mut drained).await.is_err() {
                tracing::warn!("connections still open after their error answers; closing them");
            }
            Stopped::GraceExceeded
        }
    };
    signals.abort();
    reloader.abort();
    for task in background.into_iter().flatten().chain(cache_tasks) {
        task.abort();
    }
    // Every request has settled by now: what it spent is saved.
    governance.save_counters().await;
    if gateway
        .config()
        .cache
        .as_ref()
        .is_some_and(|c| c.cleanup_on_shutdown)
    {
        let n = gateway.cache().clear();
        tracing::info!(entries = n, "semantic cache cleared (cleanup_on_shutdown)");
    }
    if let Some(copy) = &cache_copy
        && !copy.flush(CACHE_FLUSH).await
    {
        tracing::warn!("semantic cache changes still queued at exit were not written");
    }
    // Every request has handed its record over by now: what is queued is written before exit.
    if let Some(writer) = writer {
        let closed = writer.close(LOG_FLUSH).await;
        tracing::info!(?closed, "request logs flushed");
    }
    if let Some(otel) = otel {
        otel.shutdown().await;
    }
    tracing::info!(?stopped, "stopped");
    Ok(stopped)
}

pub(crate) fn edge_config(cli: &Cli) -> EdgeConfig {
    EdgeConfig {
        header_read_timeout: cli.header_read_timeout_seconds,
        body_read_timeout: cli.body_read_timeout_seconds,
        idle_timeout: cli.idle_timeout_seconds,
        http2_keepalive_interval: cli.http2_keepalive_seconds,
        max_connections: cli.max_connections as usize,
        max_header_bytes: cli.max_header_bytes as usize,
        max_uri_bytes: cli.max_uri_bytes as usize,
        half_close: cli.allow_half_close,
    }
}

/// Raises the soft open-file limit (`ulimit -n`) as far as the hard limit allows towards what
/// `max_connections` needs: a descriptor per client connection, one per upstream connection
/// serving it, and a reserve. Below that, accepting fails with EMFILE before the cap is
/// reached; the accept loop then logs it and pauses.
#[cfg(unix)]
fn fit_open_file_limit(max_connections: usize) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let want = 2 * max_connections as u64 + 256;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let target = limit.maximum.map_or(want, |hard| hard.min(want));
    let raised = target > soft
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )
        .is_ok();
    let now = if raised { target } else { soft };
    if now < want {
        tracing::warn!(
            open_file_limit = now,
            max_connections,
            "the open-file limit is below what --max-connections needs (2 per connection plus 256); raise `ulimit -n` or lower the cap"
        );
    } else {
        tracing::info!(from = soft, to = now, "raised the open-file limit");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
