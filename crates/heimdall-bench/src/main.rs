//! `heimdall-bench`: runs the scenario set of the benchmark and prints markdown tables.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use heimdall_bench::scenario::Options;
use heimdall_bench::{SuiteConfig, peers, procs, report, run_suite};

// The gateway's allocator, so that `--log-writer` measures the writer as the gateway runs it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Benchmark Heimdall against the mock upstream (and optionally LiteLLM and Portkey).
#[derive(Debug, Parser)]
#[command(name = "heimdall-bench", version)]
struct Args {
    /// Seconds-long settings (checks the harness works; figures are not meaningful).
    #[arg(long)]
    quick: bool,
    /// Only run the micro-benchmarks of pure code and print them.
    #[arg(long)]
    micro: bool,
    /// Only measure the request-log writer alone with this many records (SQLite, and
    /// PostgreSQL when the local server is reachable) and print the CPU per record.
    #[arg(long)]
    log_writer: Option<usize>,
    /// Records a second handed to the writer by `--log-writer`.
    #[arg(long, default_value_t = 10_000.0)]
    log_writer_rate: f64,
    /// Engines measured by `--log-writer`.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    log_writer_engines: Vec<String>,
    /// Also install (if needed) and run LiteLLM proxy and the Portkey gateway.
    #[arg(long)]
    peers: bool,
    /// Where the peers are installed.
    #[arg(long)]
    peers_dir: Option<PathBuf>,
    /// Directory with the `heimdall` and `heimdall-mock` binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Connections of the load generator.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Fixed rates for the open-loop runs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    rates: Vec<f64>,
    /// Duration of each fixed-rate run.
    #[arg(long, default_value_t = 10.0)]
    rate_secs: f64,
    /// Duration of each max-throughput run.
    #[arg(long, default_value_t = 5.0)]
    max_secs: f64,
    /// Max-throughput runs per target, the targets taking turns each round; the median is
    /// reported (the variant comparisons need 3 or more to rise above the machine's drift).
    #[arg(long, default_value_t = 1)]
    max_rounds: usize,
    /// Arrival rate of the streaming runs.
    #[arg(long, default_value_t = 500.0)]
    stream_rate: f64,
    /// Duration of each streaming run.
    #[arg(long, default_value_t = 5.0)]
    stream_secs: f64,
    /// Scenario 6: concurrent open streams (0 skips).
    #[arg(long, default_value_t = 10_000)]
    open_streams: usize,
    /// How long the mock holds each of those streams open.
    #[arg(long, default_value_t = 3000)]
    stream_hold_ms: u64,
    /// Fixed latency of the mock upstream.
    #[arg(long, default_value_t = 0)]
    mock_latency_ms: u64,
    /// Gateway config template (JSON, Bifrost layout; `{{MOCK_URL}}` is replaced).
    #[arg(long)]
    gateway_config: Option<PathBuf>,
    /// Scenario 5: NAME=CONFIG.json, a gateway config (e.g. logging and governance on) run on
    /// the translated path next to the default one. Repeatable.
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// Skip the logging scenario (request logs in SQLite and in PostgreSQL, measured beside
    /// logging off); PostgreSQL must accept `psql -h 127.0.0.1 -U postgres` for its half.
    #[arg(long)]
    no_logging: bool,
    /// Skip the governance scenario (a virtual key with a budget and rate limits, counted in
    /// memory and in Redis, measured beside governance off); Redis must answer
    /// `redis-cli -h 127.0.0.1 -p 6379 ping` for its half.
    #[arg(long)]
    no_governance: bool,
    /// Skip the cache scenario (a gateway with the semantic cache on: direct hits, semantic
    /// hits and misses beside the cache-off hops).
    #[arg(long)]
    no_cache: bool,
    /// `taskset -c` CPU list for the gateway (and peers).
    #[arg(long)]
    gateway_cpus: Option<String>,
    /// `taskset -c` CPU list for the mock.
    #[arg(long)]
    mock_cpus: Option<String>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    loadgen_threads: usize,
    /// Log level of the gateway.
    #[arg(long, default_value = "warn")]
    gateway_log_level: String,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only run targets whose name contains one of these (comma separated; direct baselines
    /// always run).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Internal: run as a TCP relay to this address (the harness starts itself this way).
    #[arg(long, hide = true)]
    relay_to: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.micro {
        println!("{}", heimdall_bench::micro::report());
        println!("{}", heimdall_bench::micro::cache::report());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.loadgen_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heimdall-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(records) = args.log_writer {
        return match runtime.block_on(heimdall_bench::writer::report(
            records,
            args.log_writer_rate,
            &args.log_writer_engines,
        )) {
            Ok(table) => {
                println!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("heimdall-bench: log writer: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(upstream) = args.relay_to {
        return match runtime.block_on(run_relay(upstream)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("heimdall-bench relay: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(real_main(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_relay(upstream: std::net::SocketAddr) -> anyhow::Result<()> {
    use std::io::Write;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "heimdall-bench relay listening on http://{}",
        listener.local_addr()?
    )?;
    out.flush()?;
    drop(out);
    heimdall_bench::load::relay(listener, upstream).await
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.05))
}

fn shell(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

async fn real_main(args: Args) -> anyhow::Result<()> {
    let mut options = if args.quick {
        Options::smoke()
    } else {
        Options::full()
    };
    if !args.quick {
        options.connections = args.connections;
        options.rates = args.rates.clone();
        options.rate_duration = secs(args.rate_secs);
        options.max_duration = secs(args.max_secs);
        options.max_rounds = args.max_rounds.max(1);
        options.stream_rate = args.stream_rate;
        options.stream_duration = secs(args.stream_secs);
    }
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let mut variants = Vec::new();
    for v in &args.variants {
        let (name, path) = v
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--variant wants NAME=CONFIG.json, got `{v}`"))?;
        variants.push((name.to_string(), read(&PathBuf::from(path))?));
    }
    let cfg = SuiteConfig {
        bin_dir: procs::bin_dir(args.bin_dir.as_deref())?,
        options: options.clone(),
        gateway_config: args.gateway_config.as_ref().map(read).transpose()?,
        variants,
        logging: !args.no_logging && !args.quick,
        governance: !args.no_governance && !args.quick,
        cache: !args.no_cache,
        mock_latency_ms: args.mock_latency_ms,
        peers: args.peers,
        peers_dir: args.peers_dir.clone().unwrap_or_else(peers::default_dir),
        open_streams: if args.quick {
            args.open_streams.min(200)
        } else {
            args.open_streams
        },
        stream_hold: if args.quick {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(args.stream_hold_ms)
        },
        gateway_cpus: args.gateway_cpus.clone(),
        mock_cpus: args.mock_cpus.clone(),
        gateway_log_level: args.gateway_log_level.clone(),
        only: args.only.clone(),
    };
    let load_before = shell("cat /proc/loadavg");
    let started = shell("date -u '+%Y-%m-%d %H:%M UTC'");
    let result = run_suite(&cfg).await?;
    let load_after = shell("cat /proc/loadavg");

    let mut out = String::new();
    out.push_str(&format!(
        "## Run of {started}\n\n- command: `{}`\n- machine: {}; {} CPUs ({}); {}\n- load average before / after: {} / {}\n- settings: {} connections; max throughput {:.0} s closed loop, median of {} rounds; fixed rates {} for {:.0} s each; streams at {:.0}/s for {:.0} s ({} words each); {} open streams held {} ms; mock latency {} ms; load generator threads {}{}{}\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        shell("uname -srm"),
        shell("nproc"),
        shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'"),
        shell("free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"),
        load_before,
        load_after,
        options.connections,
        options.max_duration.as_secs_f64(),
        options.max_rounds,
        options.rates.iter().map(|r| format!("{r:.0}/s")).collect::<Vec<_>>().join(", "),
        options.rate_duration.as_secs_f64(),
        options.stream_rate,
        options.stream_duration.as_secs_f64(),
        heimdall_bench::scenario::STREAM_WORDS,
        cfg.open_streams,
        cfg.stream_hold.as_millis(),
        cfg.mock_latency_ms,
        args.loadgen_threads,
        cfg.gateway_cpus.as_deref().map(|c| format!("; gateway pinned to CPUs {c}")).unwrap_or_default(),
        cfg.mock_cpus.as_deref().map(|c| format!("; mock pinned to CPUs {c}")).unwrap_or_default(),
    ));
    out.push_str(&report::render(
        &result.reports,
        &result.open_streams,
        options.connections,
    ));
    out.push('\n');
    out.push_str(&report::targets(&result.reports, &result.open_streams));
    let logging = report::logging(&result.reports, &result.logging);
    if !logging.is_empty() {
        out.push('\n');
        out.push_str(&logging);
    }
    let governance = report::governance(&result.reports, &result.governance);
    if !governance.is_empty() {
        out.push('\n');
        out.push_str(&governance);
    }
    if let Some(cache) = &result.cache {
        out.push('\n');
        out.push_str(&report::cache(&result.reports, cache));
    }
    if !result.notes.is_empty() {
        out.push_str("\n### Notes\n\n");
        for n in &result.notes {
            out.push_str(&format!("- {n}\n"));
        }
    }
    println!("{out}");
    if let Some(p) = &args.out {
        std::fs::write(p, &out)?;
    }
    Ok(())
}
