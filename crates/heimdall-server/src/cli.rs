//! Command-line flags. Bifrost's single-dash spellings (`-app-dir`, `-port`, …) are accepted
//! too, so a Bifrost launch command works unchanged.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "heimdall",
    version,
    about = "An LLM gateway with an Anthropic-compatible front door"
)]
pub struct Cli {
    /// Folder for config.json and the gateway's data files.
    #[arg(long, default_value = "./data")]
    pub app_dir: PathBuf,
    /// Config file to read instead of APP_DIR/config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Try it out without any provider key: every provider is answered by a built-in mock
    /// upstream that echoes the message; no request leaves this machine. APP_DIR/config.json
    /// is not read; request logs are kept in APP_DIR as usual.
    // Boolish: `HEIMDALL_DEMO=1` (or yes/on) works, as people write it in a shell.
    #[arg(long, env = "HEIMDALL_DEMO", conflicts_with = "config",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// How often the config file is checked for changes, in milliseconds (0: only SIGHUP
    /// reloads it).
    #[arg(long, env = "HEIMDALL_CONFIG_POLL_MS", default_value_t = 1000)]
    pub config_poll_ms: u64,
    /// Seconds a client has to send a request line and headers, counted from connecting or
    /// from the first byte of a follow-up request; the connection is closed after that.
    #[arg(long, env = "HEIMDALL_HEADER_READ_TIMEOUT_SECONDS", default_value = "10", value_parser = seconds)]
    pub header_read_timeout_seconds: Duration,
    /// Seconds a client has to send a whole request body once its headers arrived (408 after).
    #[arg(long, env = "HEIMDALL_BODY_READ_TIMEOUT_SECONDS", default_value = "60", value_parser = seconds)]
    pub body_read_timeout_seconds: Duration,
    /// Seconds a connection may wait for its next request (HTTP/1.1 keep-alive and HTTP/2).
    #[arg(long, env = "HEIMDALL_IDLE_TIMEOUT_SECONDS", default_value = "75", value_parser = seconds)]
    pub idle_timeout_seconds: Duration,
    /// Seconds between HTTP/2 keep-alive pings; a peer that does not answer in 20 s is dropped.
    #[arg(long, env = "HEIMDALL_HTTP2_KEEPALIVE_SECONDS", default_value = "30", value_parser = seconds)]
    pub http2_keepalive_seconds: Duration,
    /// Client connections open at once. At the cap no more are accepted: new ones wait in the
    /// kernel's listen backlog until others close.
    #[arg(long, env = "HEIMDALL_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Largest request line plus headers in bytes (431 beyond); also HTTP/2's header list.
    #[arg(long, env = "HEIMDALL_MAX_HEADER_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(8192..=16 * 1024 * 1024))]
    pub max_header_bytes: u32,
    /// Longest request target (path and query) in bytes (414 beyond).
    #[arg(long, env = "HEIMDALL_MAX_URI_BYTES", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_uri_bytes: u32,
    /// Seconds an async job's lease lasts (renewed by its gateway three times as often). When
    /// a gateway stops without finishing its jobs, another sharing its logs store marks them
    /// failed once their lease ran out.
    #[arg(long, env = "HEIMDALL_ASYNC_JOB_LEASE_SECONDS", default_value = "30", value_parser = seconds)]
    pub async_job_lease_seconds: Duration,
    /// Keep serving an HTTP/1.1 client that half-closes (shuts down its sending side) after its
    /// request. Off by default: a half-close cannot be told apart from a client that went away,
    /// so with it on, a vanished client's upstream request runs until its answer is written.
    #[arg(long, env = "HEIMDALL_ALLOW_HALF_CLOSE")]
    pub allow_half_close: bool,
    /// Start (and reload) even when config.json holds settings Heimdall does not implement
    /// that change security or billing (`mcp`, `routing_rules`, `guardrails_config`, unknown
    /// plugins, …). Without it such a file is refused, naming each setting; with it they are
    /// ignored with a warning.
    #[arg(long, env = "HEIMDALL_ALLOW_UNSUPPORTED_CONFIG")]
    pub allow_unsupported_config: bool,
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("`{s}`: must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Flags that Bifrost spells with one dash; `-log-style` is Bifrost's name for the format.
const SINGLE_DASH: &[(&str, &str)] = &[
    ("-app-dir", "--app-dir"),
    ("-config", "--config"),
    ("-host", "--host"),
    ("-port", "--port"),
    ("-log-level", "--log-level"),
    ("-log-style", "--log-format"),
    ("-log-format", "--log-format"),
];

impl Cli {
    pub fn parse_from_env() -> Self {
        Self::parse_args(normalize(std::env::args_os()))
    }

    /// Parses `args` (already [`normalize`]d) with [`Cli::command_with_help`]; prints the help
    /// or the error and exits like clap's own `parse_from`.
    pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Self {
        let matches = Self::command_with_help().get_matches_from(args);
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The command with `--help`'s closing sections, built at run time from the flags and the
    /// provider registry so that a new flag or provider shows up by itself.
    pub fn command_with_help() -> clap::Command {
        let command = Self::command();
        let long = long_help(&command);
        command
            .after_help(
                "`--help` also lists the environment variables, providers, endpoints and files.",
            )
            .after_long_help(long)
    }
}

/// The endpoints a client or an operator calls, with what each is for.
const ENDPOINTS: &[(&str, &str)] = &[
    (
        "POST /anthropic/v1/messages",
        "Anthropic Messages API, to any provider (`claude-…` or `PROVIDER/MODEL`)",
    ),
    (
        "POST /anthropic/v1/messages/count_tokens",
        "Token count of a Messages request",
    ),
    (
        "GET  /anthropic/v1/models",
        "Models of the configured providers (`…/models/ID`: one)",
    ),
    (
        "     /api/*",
        "Admin API: providers, config, logs, governance, cache (see /api/openapi.json)",
    ),
    ("GET  /metrics", "Prometheus metrics"),
    ("GET  /health", "Liveness"),
    ("GET  /ui/", "Web UI over the admin API (`/` leads there)"),
];

/// `--help`'s closing sections: environment variables, providers, endpoints, files.
fn long_help(command: &clap::Command) -> String {
    use std::fmt::Write as _;

    let factories = heimdall_providers::factories();
    let mut flags: Vec<(String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let var = arg.get_env()?.to_string_lossy().into_owned();
            Some((var, format!("--{}", arg.get_long()?)))
        })
        .collect();
    flags.push((
        "TOKIO_WORKER_THREADS".into(),
        "worker threads (default: one per core)".into(),
    ));
    for var in ["HEIMDALL_ENCRYPTION_KEY", "BIFROST_ENCRYPTION_KEY"] {
        flags.push((
            var.into(),
            "encryption_key (the config store's secrets), when config.json names none".into(),
        ));
    }
    let width = flags
        .iter()
        .map(|(var, _)| var.len())
        .chain(factories.iter().map(|f| f.env_var.len()))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "Environment variables:");
    for (var, meaning) in &flags {
        let _ = writeln!(out, "  {var:width$}  {meaning}");
    }
    let _ = writeln!(
        out,
        "  Provider keys, read when there is no config file (one names its own as \"env.VAR\"):"
    );
    for f in factories {
        let _ = writeln!(out, "  {:width$}  {}", f.env_var, f.name);
    }

    let name_width = factories.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "\nProviders (config.json `providers.NAME`, models `NAME/MODEL`) and their default URLs:"
    );
    for f in factories {
        let url = match f.default_base_url {
            "" => "(none: set in the key's config)",
            url => url,
        };
        let _ = writeln!(out, "  {:name_width$}  {url}", f.name);
    }

    let path_width = ENDPOINTS.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let _ = writeln!(out, "\nEndpoints:");
    for (path, meaning) in ENDPOINTS {
        let _ = writeln!(out, "  {path:path_width$}  {meaning}");
    }

    let _ = write!(
        out,
        "\nFiles (in the app dir, --app-dir, default ./data):
  config.json  Bifrost-layout configuration (--config FILE reads another); without one, the
               providers whose key variable is set are enabled. Reloaded when it changes
               and on SIGHUP.
  logs.db      Request logs and async jobs (`logs_store`; SQLite unless configured otherwise).
  config.db    Providers, settings and governance changed through /api (`config_store`)."
    );
    out
}

/// Rewrites `-port 8080` / `-port=8080` into their double-dash forms.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|arg| {
            let Some(s) = arg.to_str() else { return arg };
            let (flag, value) = match s.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (s, None),
            };
            match SINGLE_DASH.iter().find(|(single, _)| *single == flag) {
                Some((_, double)) => match value {
                    Some(v) => OsString::from(format!("{double}={v}")),
                    None => OsString::from(*double),
                },
                None => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_from(normalize(args.iter().map(OsString::from)))
    }

    #[test]
    fn bifrost_spellings_work() {
        let c = parse(&[
            "heimdall",
            "-app-dir",
            "/tmp/x",
            "-port=9000",
            "-host",
            "0.0.0.0",
            "-log-level",
            "debug",
        ]);
        assert_eq!(c.app_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.port, 9000);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.log_level, "debug");
        let c = parse(&["heimdall", "--port", "0", "--log-format", "json"]);
        assert_eq!(c.port, 0);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(parse(&["heimdall"]).port, 8080);
    }

    #[test]
    fn edge_limits_have_production_defaults_and_take_fractions() {
        let c = parse(&["heimdall"]);
        assert_eq!(c.header_read_timeout_seconds, Duration::from_secs(10));
        assert_eq!(c.body_read_timeout_seconds, Duration::from_secs(60));
        assert_eq!(c.idle_timeout_seconds, Duration::from_secs(75));
        assert_eq!(c.max_connections, 10_000);
        assert!(!c.allow_half_close);
        let c = parse(&["heimdall", "--header-read-timeout-seconds", "0.5"]);
        assert_eq!(c.header_read_timeout_seconds, Duration::from_millis(500));
        for bad in ["0", "-1", "NaN", "soon"] {
            assert!(
                Cli::try_parse_from(["heimdall", "--idle-timeout-seconds", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["heimdall", "--max-header-bytes", "100"]).is_err());
    }

    #[test]
    fn demo_is_a_switch_and_excludes_config() {
        assert!(parse(&["heimdall", "--demo"]).demo);
        assert!(!parse(&["heimdall"]).demo);
        assert!(Cli::try_parse_from(["heimdall", "--demo", "--config", "c.json"]).is_err());
    }
}
