//! `heimdall`: the gateway binary.

use std::process::ExitCode;

use heimdall_server::cli::Cli;
use heimdall_server::run;

fn main() -> ExitCode {
    let cli = Cli::parse_from_env();
    if let Err(e) = run::init_logging(&cli) {
        eprintln!("heimdall: {e:#}");
        return ExitCode::from(2);
    }
    let config = match run::load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("heimdall: configuration error: {e:#}");
            return ExitCode::from(78);
        }
    };
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
    match runtime.block_on(run::serve(cli, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("heimdall: {e:#}");
            ExitCode::FAILURE
        }
    }
}
