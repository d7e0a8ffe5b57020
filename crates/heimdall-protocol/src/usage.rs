//! Token usage as Heimdall accounts it, in Anthropic's terms (input excludes cached tokens).

use serde::Deserialize;

use crate::sse::SseEvent;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

/// The usage object of an Anthropic message or `message_delta`; absent counts stay `None` so
/// a delta only overwrites what it carries (Anthropic's counts are cumulative).
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl Usage {
    fn apply(&mut self, w: &WireUsage) {
        let fields = [
            (&mut self.input_tokens, w.input_tokens),
            (&mut self.output_tokens, w.output_tokens),
            (&mut self.cache_read_input_tokens, w.cache_read_input_tokens),
            (
                &mut self.cache_creation_input_tokens,
                w.cache_creation_input_tokens,
            ),
        ];
        for (slot, value) in fields {
            if let Some(v) = value {
                *slot = v;
            }
        }
    }

    /// Reads `usage` from a non-streaming Anthropic message body.
    pub fn from_anthropic_message(body: &[u8]) -> Option<Usage> {
        #[derive(Deserialize)]
        struct Msg {
            usage: WireUsage,
        }
        let msg: Msg = serde_json::from_slice(body).ok()?;
        let mut u = Usage::default();
        u.apply(&msg.usage);
        Some(u)
    }
}

/// Watches an Anthropic event stream that is being passed through and keeps the usage it
/// reports. It parses only `message_start` and `message_delta`, the two events carrying usage.
#[derive(Debug, Default)]
pub struct AnthropicUsageTap {
    usage: Usage,
    stop_reason: Option<String>,
    saw_message_stop: bool,
}

impl AnthropicUsageTap {
    pub fn observe(&mut self, event: &SseEvent) {
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
        match event.event_name() {
            Some("message_start") => {
                if let Ok(s) = serde_json::from_slice::<Start>(&event.data) {
                    self.usage.apply(&s.message.usage);
                }
            }
            Some("message_delta") => {
                if let Ok(d) = serde_json::from_slice::<Delta>(&event.data) {
                    self.usage.apply(&d.usage);
                    if d.delta.stop_reason.is_some() {
                        self.stop_reason = d.delta.stop_reason;
                    }
                }
            }
            Some("message_stop") => self.saw_message_stop = true,
            _ => {}
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn stop_reason(&self) -> Option<&str> {
        self.stop_reason.as_deref()
    }

    /// True once the stream has ended properly with `message_stop`.
    pub fn completed(&self) -> bool {
        self.saw_message_stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseFramer;

    #[test]
    fn tap_keeps_cumulative_usage() {
        let wire = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut framer = SseFramer::new();
        framer.push(wire.as_bytes());
        let mut tap = AnthropicUsageTap::default();
        while let Some(ev) = framer.next_event() {
            tap.observe(&ev);
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
        assert!(tap.completed());
    }

    #[test]
    fn reads_message_usage() {
        let u = Usage::from_anthropic_message(
            br#"{"id":"m","usage":{"input_tokens":4,"output_tokens":2}}"#,
        )
        .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (4, 2));
    }
}
