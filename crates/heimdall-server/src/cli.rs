//! Command-line flags. Bifrost's single-dash spellings (`-app-dir`, `-port`, …) are accepted
//! too, so a Bifrost launch command works unchanged.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

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
        Self::parse_from(normalize(std::env::args_os()))
    }
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
}
