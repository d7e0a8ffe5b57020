//! The SSE framer against a reference model, on arbitrary bytes split at arbitrary points.
//!
//! Input layout: `[max_lo, max_hi, k, chunk_1 .. chunk_k, payload ..]`. The largest event
//! accepted is `1 + u16(max_lo, max_hi)`; `k & 15` chunk sizes follow (used in turn, again and
//! again; 0 pushes an empty chunk); the rest is the byte stream. Fewer than three bytes: the
//! whole input is the stream, with a 64 KiB limit.
//!
//! Checked, whatever the chunking:
//! - frames come out in order and, with the whitespace-only events the framer drops, tile the
//!   input exactly (`raw` is a slice of the input, nothing lost, nothing invented);
//! - an event ends at the first blank line after one of its lines (`\n`, `\r\n` or `\r`
//!   terminators), and the leftover at the end of input is the last frame from `finish`;
//! - no frame is larger than the limit, and the framer fails with `TooLarge` exactly when an
//!   event (or the unterminated leftover) is larger than it, after the frames before it;
//! - `name` and `data` are what the SSE fields of `raw` say (last `event:`, `data:` lines
//!   joined with `\n`, one space after the colon dropped, comments ignored);
//! - the Anthropic front door's `collect_stream` (a streamed answer rebuilt into the message
//!   the logs store keeps) on the same bytes gives nothing or one JSON document;
//! - nothing panics.

#![no_main]

use heimdall_protocol::dialect::FrontDoor;
use heimdall_protocol::dialect::anthropic::Anthropic;
use heimdall_protocol::framing::sse::SseFramer;
use heimdall_protocol::framing::{Frame, Framer, FramingError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (max, chunks, payload) = split_input(data);
    if let Some(doc) = Anthropic.collect_stream(payload) {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&doc).is_ok(),
            "collected stream is not JSON"
        );
    }
    let expected = reference_split(payload, max);
    let got = run(payload, max, chunks);

    let got_raws: Vec<&[u8]> = got.frames.iter().map(|f| &f.raw[..]).collect();
    assert_eq!(
        got_raws, expected.frames,
        "frames differ from the reference (max {max}, chunks {chunks:?})"
    );
    match (&got.error, expected.too_large) {
        (None, false) => {}
        (Some(FramingError::TooLarge { limit }), true) => assert_eq!(*limit, max),
        (e, too_large) => {
            panic!("framer error {e:?}, reference says too large: {too_large} (max {max})")
        }
    }
    for frame in &got.frames {
        assert!(
            frame.raw.len() <= max,
            "frame of {} > max {max}",
            frame.raw.len()
        );
        assert!(
            !frame.raw.iter().all(u8::is_ascii_whitespace),
            "blank frame"
        );
        let (name, data) = reference_fields(&frame.raw);
        assert_eq!(
            frame.name.as_deref(),
            name.as_deref(),
            "name of {:?}",
            frame.raw
        );
        assert_eq!(&frame.data[..], &data[..], "data of {:?}", frame.raw);
        let _ = frame.name();
    }
});

/// Splits the fuzz input into the size limit, the chunk sizes and the byte stream.
fn split_input(data: &[u8]) -> (usize, &[u8], &[u8]) {
    if data.len() < 3 {
        return (1 << 16, &[], data);
    }
    let max = 1 + usize::from(u16::from_le_bytes([data[0], data[1]]));
    let k = usize::from(data[2] & 15).min(data.len() - 3);
    (max, &data[3..3 + k], &data[3 + k..])
}

struct Run {
    frames: Vec<Frame>,
    error: Option<FramingError>,
}

/// Drives the framer the way the stream pump does: push a chunk, drain every complete frame;
/// at end of input, take the leftover from `finish`. Stops at the first error.
fn run(payload: &[u8], max: usize, chunks: &[u8]) -> Run {
    let mut framer = SseFramer::new(max);
    let mut out = Run {
        frames: Vec::new(),
        error: None,
    };
    let mut rest = payload;
    let mut sizes = chunks.iter().cycle();
    let mut first = true;
    while first || !rest.is_empty() {
        first = false;
        let size = match sizes.next() {
            Some(&s) if chunks.iter().any(|&c| c > 0) => usize::from(s).min(rest.len()),
            _ => rest.len(),
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => out.frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    // Whatever a caller does after an error must not panic either.
                    let _ = framer.next_frame();
                    let _ = framer.finish();
                    return out;
                }
            }
        }
    }
    if let Some(frame) = framer.finish() {
        out.frames.push(frame);
    }
    // Finishing twice is harmless and yields nothing more.
    assert_eq!(framer.finish(), None, "second finish returned a frame");
    out
}

struct Expected<'a> {
    frames: Vec<&'a [u8]>,
    too_large: bool,
}

/// The whole input split into events by the SSE line rules: lines end at `\r\n`, `\r` or
/// `\n`; an event ends at the first empty line that is not its first line (a leading empty
/// line belongs to the event that follows). Events made only of whitespace are dropped; an
/// unterminated leftover that is not whitespace is the last event.
fn reference_split(input: &[u8], max: usize) -> Expected<'_> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut event_start = 0;
    let mut line_in_event = 0;
    let mut pos = 0;
    while pos < input.len() {
        let Some(p) = input[pos..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map(|p| pos + p)
        else {
            break;
        };
        let term = if input[p] == b'\r' && input.get(p + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        let empty = p == pos;
        pos = p + term;
        if empty && line_in_event > 0 {
            segments.push(&input[event_start..pos]);
            event_start = pos;
            line_in_event = 0;
        } else {
            line_in_event += 1;
        }
    }
    let leftover = &input[event_start..];
    let mut out = Expected {
        frames: Vec::new(),
        too_large: false,
    };
    for segment in segments.into_iter().chain(Some(leftover)) {
        if segment.len() > max {
            out.too_large = true;
            break;
        }
        if !segment.iter().all(u8::is_ascii_whitespace) {
            out.frames.push(segment);
        }
    }
    out
}

/// The `event` name and joined `data` an event's fields carry.
fn reference_fields(raw: &[u8]) -> (Option<Vec<u8>>, Vec<u8>) {
    let mut name = None;
    let mut data: Vec<&[u8]> = Vec::new();
    let mut line_start = 0;
    let mut i = 0;
    let mut lines: Vec<&[u8]> = Vec::new();
    while i < raw.len() {
        match raw[i] {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                lines.push(&raw[line_start..i]);
                i += 2;
                line_start = i;
            }
            b'\r' | b'\n' => {
                lines.push(&raw[line_start..i]);
                i += 1;
                line_start = i;
            }
            _ => i += 1,
        }
    }
    lines.push(&raw[line_start..]);
    for line in lines {
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => name = Some(value.to_vec()),
            b"data" => data.push(value),
            _ => {}
        }
    }
    (name, data.join(&b'\n'))
}
