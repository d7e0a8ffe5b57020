//! Scripted faults applied to a planned answer, shared by both dialects: how a stream is cut,
//! stalled, corrupted or ended early.

use bytes::Bytes;

use super::directives::EarlyEof;
use super::reply::Plan;
use super::{ABORT_FLUSH, Step};

/// `garbage`: a line that is not UTF-8, then a line that is no SSE field a client knows, then the
/// blank line that would dispatch it.
pub(crate) const GARBAGE: &[u8] = b"\xff\xfe\x80 mock garbage \xc3\x28\n{not an sse line}\n\n";

/// A dialect's complete stream, with the points where faults strike.
pub(crate) struct StreamFrames {
    pub frames: Vec<Step>,
    /// Just after the first content: where `garbage`, `stall`, `cut` and `stream_error` strike.
    pub mark: usize,
    /// The finish frame (OpenAI `finish_reason` chunk / Anthropic `message_delta`), for `eof`.
    pub finish: usize,
}

/// Applies the plan's stream faults to `stream`; `error_event` is the dialect's in-band error.
pub(crate) fn script_stream(plan: &Plan, stream: StreamFrames, error_event: Step) -> Vec<Step> {
    let StreamFrames {
        mut frames,
        mark,
        finish,
    } = stream;
    match plan.eof {
        Some(EarlyEof::AfterContent) => frames.truncate(finish),
        Some(EarlyEof::AfterFinish) => frames.truncate(finish + 1),
        None => {}
    }
    let rest = frames.split_off(mark.min(frames.len()));
    let mut steps = frames;
    if plan.garbage {
        steps.push(Step::Data(Bytes::from_static(GARBAGE)));
    }
    if let Some(stall) = plan.stall {
        steps.push(Step::Sleep(stall));
    }
    if plan.cut {
        steps.push(Step::Sleep(ABORT_FLUSH));
        steps.push(Step::Abort);
        return steps;
    }
    if plan.stream_error {
        steps.push(error_event);
    } else {
        steps.extend(rest);
    }
    if let Some(hold) = plan.hold_open {
        steps.push(Step::Sleep(hold));
    }
    steps
}
