//! `heimdall-mock`: the mock LLM upstream as a standalone process.
//!
//! Prints exactly one line, `heimdall-mock listening on http://HOST:PORT`, on stdout once it
//! accepts connections, then serves until SIGTERM / SIGINT. Logs go to stderr.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use heimdall_testkit::{MockOptions, MockServer};

/// Mock OpenAI / Anthropic upstream for Heimdall tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "heimdall-mock", version)]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to bind (0 = ephemeral).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Fixed latency before each answer (before the first byte when streaming).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between stream chunks.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Do not record requests (for benchmarks).
    #[arg(long)]
    no_record: bool,
    /// Serve through the raw HTTP/1.1 front, which also honours the connection-level
    /// directives (`status`, `close_idle`, `hangup`).
    #[arg(long)]
    raw_http: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let opts = MockOptions {
        latency: Duration::from_millis(args.latency_ms),
        record: !args.no_record,
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
    };
    let addr = SocketAddr::new(args.host, args.port);
    let server = if args.raw_http {
        MockServer::bind_raw(addr, opts).await?
    } else {
        MockServer::bind(addr, opts).await?
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "heimdall-mock listening on {}", server.base_url())?;
        out.flush()?;
    }
    shutdown_signal().await;
    drop(server);
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
