//! `heimdall-sse-check [message_stop|error]`: reads an Anthropic SSE body on stdin and checks
//! it with the testkit's strict grammar checker, so the real-client suites (Python, Node)
//! judge raw streams exactly as the Rust tests do. Prints `ok <ending>` and exits 0, or prints
//! the violation and exits 1 (also when the stream ended otherwise than the argument says).

use std::io::Read;
use std::process::ExitCode;

use heimdall_testkit::grammar::{Ending, check_text};

fn main() -> ExitCode {
    let expected = match std::env::args().nth(1).as_deref() {
        None => None,
        Some("message_stop") => Some(Ending::MessageStop),
        Some("error") => Some(Ending::Error),
        Some(other) => {
            eprintln!("heimdall-sse-check: expected `message_stop` or `error`, got `{other}`");
            return ExitCode::from(2);
        }
    };
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        println!("stdin is not UTF-8 text: {e}");
        return ExitCode::FAILURE;
    }
    match check_text(&text) {
        Ok((_, ending)) if expected.is_none_or(|want| want == ending) => {
            println!("ok {ending:?}");
            ExitCode::SUCCESS
        }
        Ok((_, ending)) => {
            println!("stream ended with {ending:?}, expected {expected:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
