//! Shared helpers for golden tests.
//!
//! Goldens are compared exactly. To regenerate after an intended change, run with
//! `UPDATE_GOLDEN=1` and review the diff before committing it.

// Each test binary uses a subset; a panic on a bad fixture is the failure report.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use heimdall_protocol::sse::SseFramer;
use heimdall_protocol::translate::ResponseContext;
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

/// Which golden exists for a stem: `<stem><ok>` or `<stem>.error.txt`.
pub fn expected_path(dir: &str, stem: &str, ok_suffix: &str) -> (PathBuf, bool) {
    let err = fixtures(dir).join(format!("{stem}.error.txt"));
    if err.exists() {
        (err, true)
    } else {
        (fixtures(dir).join(format!("{stem}{ok_suffix}")), false)
    }
}

pub fn ctx() -> ResponseContext {
    ResponseContext {
        message_id: "msg_01TestTestTestTestTestTe".to_owned(),
        model: "openai/gpt-5".to_owned(),
    }
}

/// One parsed frame of an Anthropic stream.
#[derive(Debug)]
pub struct Frame {
    pub event: String,
    pub data: Value,
}

/// Splits Anthropic SSE text into frames, asserting each has exactly one `event:` and one
/// `data:` line and that the JSON `type` equals the event name.
pub fn frames(sse: &str) -> Vec<Frame> {
    let mut framer = SseFramer::new();
    framer.push(sse.as_bytes());
    assert!(
        sse.ends_with("\n\n"),
        "stream must end with a complete frame"
    );
    let mut out = Vec::new();
    while let Some(ev) = framer.next_event() {
        let raw = std::str::from_utf8(&ev.raw).unwrap();
        let lines: Vec<_> = raw.trim_end_matches('\n').split('\n').collect();
        assert_eq!(lines.len(), 2, "frame must be event + data: {raw:?}");
        assert!(
            lines[0].starts_with("event: ") && lines[1].starts_with("data: "),
            "{raw:?}"
        );
        let event = ev.event_name().unwrap().to_owned();
        let data: Value = serde_json::from_slice(&ev.data).unwrap();
        assert_eq!(
            data["type"],
            event.as_str(),
            "type must equal event name: {raw:?}"
        );
        out.push(Frame { event, data });
    }
    assert!(framer.finish().is_none());
    out
}

/// Asserts the Anthropic stream grammar (protocols.md §2.2–2.4): `message_start` first and
/// once, blocks with contiguous indices that never overlap, deltas matching their block's
/// type, no blank text blocks, tool inputs that are complete JSON objects, then
/// `message_delta` and `message_stop` last — or a single `error` ending the stream.
pub fn assert_grammar(sse: &str) {
    let frames = frames(sse);
    assert_eq!(
        frames.first().map(|f| f.event.as_str()),
        Some("message_start")
    );
    let start = &frames[0].data["message"];
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["content"], Value::Array(vec![]));
    assert!(start["stop_reason"].is_null() && start["stop_sequence"].is_null());
    assert!(start["usage"]["input_tokens"].is_u64() && start["usage"]["output_tokens"].is_u64());

    let mut next_index = 0u64;
    let mut open: Option<(u64, String, String, usize)> = None; // index, type, accumulated, deltas
    let mut saw_delta = false;
    let mut tool_inputs = Vec::new();
    let mut ended = false;
    for (i, f) in frames.iter().enumerate().skip(1) {
        assert!(!ended, "frame after the end: {f:?}");
        match f.event.as_str() {
            "ping" => {}
            "message_start" => panic!("second message_start"),
            "content_block_start" => {
                assert!(open.is_none(), "block started while another is open");
                assert!(!saw_delta, "block after message_delta");
                assert_eq!(f.data["index"], next_index, "indices must be contiguous");
                let block = &f.data["content_block"];
                let kind = block["type"].as_str().unwrap().to_owned();
                match kind.as_str() {
                    "text" => assert_eq!(block["text"], ""),
                    "thinking" => {
                        assert_eq!(block["thinking"], "");
                        assert_eq!(block["signature"], "");
                    }
                    "tool_use" => {
                        let id = block["id"].as_str().unwrap();
                        assert!(heimdall_protocol::ids::is_valid_tool_id(id), "{id}");
                        assert!(block["name"].is_string());
                        assert_eq!(block["input"], serde_json::json!({}));
                    }
                    other => panic!("unexpected block type {other}"),
                }
                open = Some((next_index, kind, String::new(), 0));
                next_index += 1;
            }
            "content_block_delta" => {
                let (index, kind, acc, n) = open.as_mut().expect("delta outside a block");
                assert_eq!(f.data["index"], *index);
                let d = &f.data["delta"];
                let (want, field) = match kind.as_str() {
                    "text" => ("text_delta", "text"),
                    "thinking" => ("thinking_delta", "thinking"),
                    _ => ("input_json_delta", "partial_json"),
                };
                assert_eq!(d["type"], want);
                acc.push_str(d[field].as_str().unwrap());
                *n += 1;
            }
            "content_block_stop" => {
                let (index, kind, acc, n) = open.take().expect("stop outside a block");
                assert_eq!(f.data["index"], index);
                match kind.as_str() {
                    "text" => assert!(!acc.trim().is_empty(), "blank text block"),
                    "tool_use" => {
                        assert!(n >= 1, "tool_use block without input_json_delta");
                        tool_inputs.push(acc);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with an open block");
                let stop_reason = f.data["delta"]["stop_reason"].as_str().unwrap();
                // Only a length cut may leave a call's arguments unfinished, as on Anthropic.
                if stop_reason != "max_tokens" {
                    for acc in &tool_inputs {
                        let input: Value = serde_json::from_str(acc)
                            .unwrap_or_else(|e| panic!("tool input {acc:?}: {e}"));
                        assert!(input.is_object(), "tool input must be an object");
                    }
                }
                assert!(f.data["delta"].get("stop_sequence").is_some());
                assert!(f.data["usage"]["output_tokens"].is_u64());
                saw_delta = true;
            }
            "message_stop" => {
                assert!(saw_delta, "message_stop without message_delta");
                assert_eq!(i, frames.len() - 1);
                ended = true;
            }
            "error" => {
                assert!(
                    f.data["error"]["type"].is_string() && f.data["error"]["message"].is_string()
                );
                assert_eq!(i, frames.len() - 1, "error must end the stream");
                ended = true;
            }
            other => panic!("unknown event {other}"),
        }
    }
    assert!(ended, "stream must end with message_stop or error");
}
