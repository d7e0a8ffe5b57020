//! Collected-stream goldens: every Anthropic SSE transcript `fixtures/streams/NAME.anthropic.sse`
//! → the one document it amounts to, `NAME.collected.json` (`FrontDoor::collect_stream`, what
//! the logs store shows for a streamed answer). A stream that ended in an error event collects
//! to that error; every other one to a message. Cutting a transcript anywhere must still give
//! a document (or nothing) without panicking.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use heimdall_protocol::dialect::front_door;
use serde_json::Value;

#[test]
fn collected_goldens() {
    let door = front_door("anthropic").unwrap();
    for (stem, input) in common::inputs("streams", ".anthropic.sse") {
        let sse = std::fs::read(&input).unwrap();
        let collected = door
            .collect_stream(&sse)
            .unwrap_or_else(|| panic!("{stem}: nothing collected"));
        let doc: Value =
            serde_json::from_slice(&collected).unwrap_or_else(|e| panic!("{stem}: not JSON: {e}"));
        let ends_in_error = String::from_utf8_lossy(&sse).contains("event: error\n");
        let expected_type = if ends_in_error { "error" } else { "message" };
        assert_eq!(doc["type"], expected_type, "{stem}");
        if !ends_in_error {
            assert!(doc["content"].is_array(), "{stem}");
        }
        common::check_json(
            &common::fixtures("streams").join(format!("{stem}.collected.json")),
            &doc,
        );
    }
}

#[test]
fn cut_transcripts_do_not_panic() {
    let door = front_door("anthropic").unwrap();
    for (stem, input) in common::inputs("streams", ".anthropic.sse") {
        let sse = std::fs::read(&input).unwrap();
        for cut in (0..sse.len()).step_by(7) {
            if let Some(doc) = door.collect_stream(&sse[..cut]) {
                let v: Value = serde_json::from_slice(&doc)
                    .unwrap_or_else(|e| panic!("{stem} cut at {cut}: {e}"));
                assert!(v["type"] == "message" || v["type"] == "error", "{stem}");
            }
        }
    }
}

#[test]
fn unknown_front_door() {
    assert!(front_door("openai").is_none());
}
