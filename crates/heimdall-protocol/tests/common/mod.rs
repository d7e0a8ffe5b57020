//! Shared helpers for golden tests.
//!
//! Goldens are compared exactly. To regenerate after an intended change, run with
//! `UPDATE_GOLDEN=1` and review the diff before committing it.

// Each test binary uses a subset; a panic on a bad fixture is the failure report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Usage};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::{
    FrontDoor, ResponseContext, TranslateError, UpstreamCodec, UpstreamDialect,
};
use serde_json::Value;

pub const REQUEST_ID: &str = "req_01TestTestTestTestTestTe";

/// A dialect with its codec, as the stream pump uses both.
pub trait Upstream: UpstreamDialect + UpstreamCodec {}
impl<T: UpstreamDialect + UpstreamCodec> Upstream for T {}

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

/// Checks one request golden: `encoded` (an upstream body, or the error the client would get)
/// against `<dir>/<stem><ok_suffix>` (as JSON) or the first error golden that exists.
pub fn check_request(
    dir: &str,
    stem: &str,
    ok_suffix: &str,
    error_suffixes: &[&str],
    encoded: Result<Vec<u8>, TranslateError>,
) {
    let (expected, is_error) = expected_path(dir, stem, ok_suffix, error_suffixes);
    match (encoded, is_error) {
        (Ok(bytes), false) => check_json(&expected, &serde_json::from_slice(&bytes).unwrap()),
        (Err(e), true) => check_text(&expected, &format!("{}\n", e.message())),
        (Ok(b), true) => panic!(
            "{stem}{ok_suffix}: expected an error, got {}",
            String::from_utf8_lossy(&b)
        ),
        (Err(e), false) => panic!("{stem}{ok_suffix}: {e}"),
    }
}

/// Checks one response golden: the upstream `body` through `codec` and the Anthropic front
/// door against `<dir>/<stem>.anthropic.json`, or the error against `<stem>.error.txt`. The
/// usage the gateway accounts must be the one the client sees.
pub fn check_response(dir: &str, stem: &str, body: &[u8], codec: &dyn UpstreamCodec) {
    let (expected, is_error) = expected_path(dir, stem, ".anthropic.json", &[".error.txt"]);
    match (codec.decode_response(body, &ctx()), is_error) {
        (Ok(response), false) => {
            let v: Value = serde_json::from_slice(&Anthropic.encode_response(&response)).unwrap();
            let u = &v["usage"];
            assert_eq!(
                response.usage,
                Usage {
                    input_tokens: u["input_tokens"].as_u64().unwrap(),
                    output_tokens: u["output_tokens"].as_u64().unwrap(),
                    cache_read_input_tokens: u["cache_read_input_tokens"].as_u64().unwrap(),
                    cache_creation_input_tokens: u["cache_creation_input_tokens"].as_u64().unwrap(),
                },
                "{stem}"
            );
            check_json(&expected, &v);
        }
        (Err(e), true) => check_text(&expected, &format!("{}\n", e.message())),
        (Ok(r), true) => panic!("{stem}: expected an error, got {r:?}"),
        (Err(e), false) => panic!("{stem}: {e}"),
    }
}

/// Runs upstream stream bytes, `chunk` bytes at a time, the way the gateway's pump does:
/// framer → decoder → assembler → Anthropic SSE.
pub fn run_stream(dialect: &dyn Upstream, wire: &[u8], chunk: usize) -> (String, Usage) {
    let mut asm = Assembler::new(ctx(), Anthropic.stream_encoder(REQUEST_ID));
    let mut framer = dialect.framer(1 << 20);
    let mut decoder = dialect.stream_decoder(&ctx());
    let mut out = BytesMut::new();
    let mut deltas = Vec::new();
    asm.start(&mut out);
    'read: for piece in wire.chunks(chunk) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame().unwrap() {
            decoder.frame(&frame, &mut deltas);
            for d in deltas.drain(..) {
                asm.push(d, &mut out);
            }
            if asm.is_done() {
                break 'read;
            }
        }
    }
    if !asm.is_done() {
        if let Some(frame) = framer.finish() {
            decoder.frame(&frame, &mut deltas);
        }
        decoder.end(&mut deltas);
        for d in deltas.drain(..) {
            asm.push(d, &mut out);
        }
        asm.finish(&mut out);
    }
    assert!(asm.is_done());
    (String::from_utf8(out.to_vec()).unwrap(), asm.usage())
}

/// Checks one stream golden: the Anthropic SSE made of `wire` follows the grammar, does not
/// depend on how the bytes were chunked, reports the usage the gateway accounts, and equals
/// `<dir>/<stem>.anthropic.sse` byte for byte.
pub fn check_stream(dir: &str, stem: &str, dialect: &dyn Upstream, wire: &[u8]) {
    let (text, usage) = run_stream(dialect, wire, wire.len());
    let events = assert_grammar(&text);
    for chunk in [1, 7, 64] {
        assert_eq!(
            run_stream(dialect, wire, chunk),
            (text.clone(), usage),
            "{stem}: chunk size {chunk}"
        );
    }
    if let Some(delta) = events.iter().find(|e| e.name == "message_delta") {
        assert_eq!(
            delta.data["usage"]["output_tokens"], usage.output_tokens,
            "{stem}"
        );
        assert_eq!(
            delta.data["usage"]["input_tokens"], usage.input_tokens,
            "{stem}"
        );
    }
    check_text(&fixtures(dir).join(format!("{stem}.anthropic.sse")), &text);
}
