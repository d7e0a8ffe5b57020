//! Shared helpers for golden tests.
//!
//! Goldens are compared exactly. To regenerate after an intended change, run with
//! `UPDATE_GOLDEN=1` and review the diff before committing it.

// Each test binary uses a subset; a panic on a bad fixture is the failure report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use heimdall_protocol::dialect::ResponseContext;
use serde_json::Value;

pub fn fixtures(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
}

/// Inputs of a fixture directory: files ending in `suffix`, sorted, as (stem, path).
pub fn inputs(dir: &str, suffix: &str) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(fixtures(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            Some((name.strip_suffix(suffix)?.to_owned(), p))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {dir}");
    out
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the golden file (as JSON values), or rewrites it when updating.
pub fn check_json(path: &Path, actual: &Value) {
    if updating() {
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
        return;
    }
    let expected: Value = serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(
        actual,
        &expected,
        "{}\nactual:\n{}",
        path.display(),
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// Compares `actual` with the golden file byte for byte, or rewrites it when updating.
pub fn check_text(path: &Path, actual: &str) {
    if updating() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "{}", path.display());
}

/// Which golden exists for a stem: the first of `<stem><error suffix>` that exists (an error),
/// else `<stem><ok>`.
pub fn expected_path(
    dir: &str,
    stem: &str,
    ok_suffix: &str,
    error_suffixes: &[&str],
) -> (PathBuf, bool) {
    for suffix in error_suffixes {
        let err = fixtures(dir).join(format!("{stem}{suffix}"));
        if err.exists() {
            return (err, true);
        }
    }
    (fixtures(dir).join(format!("{stem}{ok_suffix}")), false)
}

pub fn ctx() -> ResponseContext {
    ResponseContext {
        message_id: "msg_01TestTestTestTestTestTe".to_owned(),
        model: "openai/gpt-5".to_owned(),
    }
}

/// Asserts the Anthropic stream grammar with the testkit's strict checker and returns the
/// events.
pub fn assert_grammar(sse: &str) -> Vec<heimdall_testkit::grammar::Event> {
    match heimdall_testkit::grammar::check_text(sse) {
        Ok((events, _)) => events,
        Err(e) => panic!("stream grammar violated: {e}\n{sse}"),
    }
}
