//! `heimdall`: the gateway binary.

use std::process::ExitCode;

use heimdall_server::cli::{Cli, LogFormat};
use heimdall_server::{demo, run};

// jemalloc by default, chosen by measurement (BENCHMARKS.md, "Performance work"): against
// glibc malloc, whose arena locks and consolidation took ~20 % of the gateway's CPU profile,
// it gave ~30 % more requests/s and ~20 % less CPU per request; mimalloc was as fast but held
// ~45 % more memory with thousands of open streams. `--no-default-features --features
// mimalloc` selects mimalloc; `--no-default-features` alone the system allocator.
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut cli = Cli::parse_from_env();
    let log_format = cli.log_format;
    if let Err(e) = run::init_logging(&cli) {
        eprintln!("heimdall: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heimdall: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `--demo`: the mock must listen before the config naming its port exists; it runs
    // until `serve` returns (dropping it stops it).
    let _demo = if cli.demo {
        match runtime.block_on(demo::Demo::start(&cli.app_dir)) {
            Ok(demo) => {
                // Like `--config FILE` (which `--demo` excludes): reloads read this file too.
                cli.config = Some(demo.config_path().to_owned());
                Some(demo)
            }
            Err(e) => {
                fatal(log_format, &format!("{e:#}"));
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let loaded = match run::load_config(&cli) {
        Ok(loaded) => loaded,
        Err(e) => {
            fatal(log_format, &format!("configuration error: {e:#}"));
            return ExitCode::from(78);
        }
    };
    match runtime.block_on(run::serve(cli, loaded)) {
        Ok(run::Stopped::Drained) => ExitCode::SUCCESS,
        // EX_TEMPFAIL: the stop worked, but some requests had to be ended with an error.
        Ok(run::Stopped::GraceExceeded) => ExitCode::from(75),
        Err(e) => {
            fatal(log_format, &format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A start-up error, printed once: as a log event in the JSON format (a collector reads
/// it), as plain text otherwise (what a person at a terminal reads).
fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Json => tracing::error!("{message}"),
        LogFormat::Pretty => eprintln!("heimdall: {message}"),
    }
}
