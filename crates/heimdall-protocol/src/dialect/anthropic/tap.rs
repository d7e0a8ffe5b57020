//! Usage read from Anthropic answers that pass through untranslated.

use serde::Deserialize;

use crate::canonical::Usage;
use crate::dialect::{AnswerSummary, TapVerdict, UsageTap};
use crate::framing::Frame;

/// The usage object of an Anthropic message or `message_delta`; absent counts stay `None` so
/// a delta only overwrites what it carries (Anthropic's counts are cumulative).
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    fn apply_to(&self, u: &mut Usage) {
        let w = self;
        let fields = [
            (&mut u.input_tokens, w.input_tokens),
            (&mut u.output_tokens, w.output_tokens),
            (&mut u.cache_read_input_tokens, w.cache_read_input_tokens),
            (
                &mut u.cache_creation_input_tokens,
                w.cache_creation_input_tokens,
            ),
        ];
        for (slot, value) in fields {
            if let Some(v) = value {
                *slot = v;
            }
        }
    }
}

/// Reads `usage` and `stop_reason` from a non-streaming Anthropic message body.
pub(super) fn message_summary(body: &[u8]) -> Option<AnswerSummary> {
    #[derive(Deserialize)]
    struct Msg {
        usage: WireUsage,
        #[serde(default)]
        stop_reason: Option<String>,
    }
    let msg: Msg = serde_json::from_slice(body).ok()?;
    let mut usage = Usage::default();
    msg.usage.apply_to(&mut usage);
    Some(AnswerSummary {
        usage,
        stop_reason: msg.stop_reason,
    })
}

/// Watches an Anthropic event stream that is being passed through and keeps the usage it
/// reports. It parses only `message_start` and `message_delta`, the two events carrying usage.
#[derive(Debug, Default)]
pub struct AnthropicUsageTap {
    usage: Usage,
    stop_reason: Option<String>,
}

impl UsageTap for AnthropicUsageTap {
    fn observe(&mut self, event: &Frame) -> TapVerdict {
        #[derive(Deserialize)]
        struct Start {
            message: StartMessage,
        }
        #[derive(Deserialize)]
        struct StartMessage {
            #[serde(default)]
            usage: WireUsage,
        }
        #[derive(Deserialize)]
        struct Delta {
            #[serde(default)]
            usage: WireUsage,
            #[serde(default)]
            delta: DeltaBody,
        }
        #[derive(Deserialize, Default)]
        struct DeltaBody {
            stop_reason: Option<String>,
        }
        match event.name() {
            Some("message_start") => {
                if let Ok(s) = serde_json::from_slice::<Start>(&event.data) {
                    s.message.usage.apply_to(&mut self.usage);
                }
            }
            Some("message_delta") => {
                if let Ok(d) = serde_json::from_slice::<Delta>(&event.data) {
                    d.usage.apply_to(&mut self.usage);
                    if d.delta.stop_reason.is_some() {
                        self.stop_reason = d.delta.stop_reason;
                    }
                }
            }
            Some("message_stop") => return TapVerdict::Complete,
            Some("error") => return TapVerdict::Failed,
            Some(_) => {}
            // A comment (`: …`) is a valid keep-alive; anything else without an event name
            // is not Anthropic's stream.
            None if event.raw.first() == Some(&b':') => return TapVerdict::Continue,
            None => return TapVerdict::Invalid,
        }
        // Every Anthropic event carries one JSON object; checking its delimiters is enough
        // to refuse junk without parsing every event.
        let data = event.data.trim_ascii();
        if data.first() == Some(&b'{') && data.last() == Some(&b'}') {
            TapVerdict::Continue
        } else {
            TapVerdict::Invalid
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Framer;
    use crate::framing::sse::SseFramer;

    #[test]
    fn tap_keeps_cumulative_usage() {
        let wire = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut framer = SseFramer::new(1 << 20);
        framer.push(wire.as_bytes());
        let mut tap = AnthropicUsageTap::default();
        let mut verdicts = Vec::new();
        while let Some(ev) = framer.next_frame().unwrap() {
            verdicts.push(tap.observe(&ev));
        }
        assert_eq!(
            tap.usage(),
            Usage {
                input_tokens: 12,
                output_tokens: 7,
                cache_read_input_tokens: 3,
                cache_creation_input_tokens: 0
            }
        );
        assert_eq!(tap.stop_reason(), Some("end_turn"));
        assert_eq!(verdicts.last(), Some(&TapVerdict::Complete));
    }

    #[test]
    fn reads_message_usage_and_stop_reason() {
        let s = message_summary(
            br#"{"id":"m","stop_reason":"max_tokens","usage":{"input_tokens":4,"output_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!((s.usage.input_tokens, s.usage.output_tokens), (4, 2));
        assert_eq!(s.stop_reason.as_deref(), Some("max_tokens"));
        let s = message_summary(br#"{"usage":{"input_tokens":1,"output_tokens":0}}"#).unwrap();
        assert_eq!(s.stop_reason, None);
        assert!(message_summary(b"<html>").is_none());
    }
}
