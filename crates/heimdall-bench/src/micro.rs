//! Micro-benchmarks of pure code on the request path, run by `heimdall-bench --micro`.

pub mod cache;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use heimdall_protocol::canonical::{Assembler, Delta};
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::dialect::{FrontDoor, ResponseContext};

/// Streams one tool call of `total` bytes of arguments in `fragment`-byte pieces through the
/// assembler and the Anthropic encoder, as a translated stream does; returns the time taken
/// and the bytes written for the client.
pub fn streamed_tool_arguments(total: usize, fragment: usize) -> (Duration, usize) {
    let body = "x".repeat(total.saturating_sub(12));
    let arguments = format!(r#"{{"data":"{body}"}}"#);
    let ctx = ResponseContext {
        message_id: "msg_bench".to_owned(),
        model: "bench".to_owned(),
    };
    let started = Instant::now();
    let mut asm = Assembler::new(ctx, Anthropic.stream_encoder("req_bench"));
    let mut out = BytesMut::new();
    asm.start(&mut out);
    let mut written = 0;
    for (i, piece) in arguments.as_bytes().chunks(fragment.max(1)).enumerate() {
        asm.push(
            Delta::ToolCall {
                call: 0,
                id: (i == 0).then(|| "call_1".to_owned()),
                name: (i == 0).then(|| "f".to_owned()),
                arguments: String::from_utf8_lossy(piece).into_owned(),
            },
            &mut out,
        );
        // A client drains the bytes as they come.
        written += out.len();
        out.clear();
    }
    asm.push(Delta::Done, &mut out);
    written += out.len();
    (started.elapsed(), written)
}

/// The micro-benchmark report (markdown).
pub fn report() -> String {
    let (took, written) = streamed_tool_arguments(1 << 20, 8);
    format!(
        "### Micro-benchmarks\n\n| case | time | client bytes |\n|---|---|---|\n| 1 MiB of tool arguments in 8-byte fragments → assembler → Anthropic SSE | {:.1} ms | {written} |\n",
        took.as_secs_f64() * 1e3
    )
}
