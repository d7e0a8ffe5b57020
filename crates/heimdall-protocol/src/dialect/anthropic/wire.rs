//! Anthropic's wire encodings of the canonical answer, stream events, errors and model lists.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};

use crate::canonical::{BlockDelta, BlockStart, ContentBlock, Event, Response, StopReason, Usage};
use crate::dialect::{ModelInfo, ModelPage};
use crate::error::ErrorType;
use crate::framing::sse;

/// `{"id","type":"message","role":"assistant",…}`: a whole answer, and the `message` of
/// `message_start` (with no content yet).
struct WireMessage<'a> {
    id: &'a str,
    model: &'a str,
    content: &'a [ContentBlock],
    stop_reason: Option<StopReason>,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

impl Serialize for WireMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Message", 8)?;
        st.serialize_field("id", self.id)?;
        st.serialize_field("type", "message")?;
        st.serialize_field("role", "assistant")?;
        st.serialize_field("model", self.model)?;
        st.serialize_field("content", self.content)?;
        st.serialize_field("stop_reason", &self.stop_reason)?;
        st.serialize_field("stop_sequence", &self.stop_sequence)?;
        st.serialize_field("usage", &self.usage)?;
        st.end()
    }
}

pub(super) fn message_json(r: &Response) -> Vec<u8> {
    to_vec(&WireMessage {
        id: &r.id,
        model: &r.model,
        content: &r.content,
        stop_reason: r.stop_reason,
        stop_sequence: r.stop_sequence.as_deref(),
        usage: r.usage,
    })
}

/// One stream event; the SSE `event:` name and the JSON `"type"` both come from the variant.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent<'a> {
    MessageStart {
        message: WireMessage<'a>,
    },
    ContentBlockStart {
        index: usize,
        content_block: WireBlock<'a>,
    },
    ContentBlockDelta {
        index: usize,
        delta: WireDelta<'a>,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: WireMessageDelta<'a>,
        usage: Usage,
    },
    MessageStop,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

/// `{}`: a tool block starts with an empty input, filled by `input_json_delta`s.
#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(tag = "type")]
enum WireDelta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

#[derive(Serialize)]
struct WireMessageDelta<'a> {
    stop_reason: StopReason,
    stop_sequence: Option<&'a str>,
}

impl WireEvent<'_> {
    const fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
        }
    }
}

pub(super) fn write_event(event: &Event<'_>, out: &mut BytesMut) {
    let wire = match *event {
        Event::MessageStart { id, model, usage } => WireEvent::MessageStart {
            message: WireMessage {
                id,
                model,
                content: &[],
                stop_reason: None,
                stop_sequence: None,
                usage,
            },
        },
        Event::BlockStart { index, block } => WireEvent::ContentBlockStart {
            index,
            content_block: match block {
                BlockStart::Text => WireBlock::Text { text: "" },
                BlockStart::Thinking => WireBlock::Thinking {
                    thinking: "",
                    signature: "",
                },
                BlockStart::ToolUse { id, name } => WireBlock::ToolUse {
                    id,
                    name,
                    input: Empty {},
                },
            },
        },
        Event::BlockDelta { index, delta } => WireEvent::ContentBlockDelta {
            index,
            delta: match delta {
                BlockDelta::Text(text) => WireDelta::Text { text },
                BlockDelta::Thinking(thinking) => WireDelta::Thinking { thinking },
                BlockDelta::Signature(signature) => WireDelta::Signature { signature },
                BlockDelta::InputJson(partial_json) => WireDelta::InputJson { partial_json },
            },
        },
        Event::BlockStop { index } => WireEvent::ContentBlockStop { index },
        Event::MessageDelta {
            stop_reason,
            stop_sequence,
            usage,
        } => WireEvent::MessageDelta {
            delta: WireMessageDelta {
                stop_reason,
                stop_sequence,
            },
            usage,
        },
        Event::MessageStop => WireEvent::MessageStop,
    };
    sse::write_event(out, wire.name(), &to_vec(&wire));
}

/// `{"type":"error","error":{"type":…,"message":…},"request_id":…}`: the body of every
/// non-2xx answer and the `data` of an SSE `error` event.
pub fn error_body(kind: ErrorType, message: &str, request_id: Option<&str>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        r#type: &'static str,
        error: Inner<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        r#type: &'static str,
        message: &'a str,
    }
    to_vec(&Body {
        r#type: "error",
        error: Inner {
            r#type: kind.as_str(),
            message,
        },
        request_id,
    })
}

#[derive(Serialize)]
struct WireModel<'a> {
    r#type: &'static str,
    id: &'a str,
    display_name: &'a str,
    created_at: &'a str,
}

impl<'a> From<&'a ModelInfo> for WireModel<'a> {
    fn from(m: &'a ModelInfo) -> Self {
        Self {
            r#type: "model",
            id: &m.id,
            display_name: &m.display_name,
            created_at: &m.created_at,
        }
    }
}

pub(super) fn model_json(m: &ModelInfo) -> Vec<u8> {
    to_vec(&WireModel::from(m))
}

pub(super) fn model_page_json(page: ModelPage<'_>) -> Vec<u8> {
    #[derive(Serialize)]
    struct Page<'a> {
        data: Vec<WireModel<'a>>,
        has_more: bool,
        first_id: Option<&'a str>,
        last_id: Option<&'a str>,
    }
    to_vec(&Page {
        data: page.data.iter().map(WireModel::from).collect(),
        has_more: page.has_more,
        first_id: page.data.first().map(|m| m.id.as_str()),
        last_id: page.data.last().map(|m| m.id.as_str()),
    })
}

pub(super) fn decode_model_list(body: &[u8]) -> Option<Vec<ModelInfo>> {
    #[derive(Deserialize)]
    struct List {
        data: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        id: String,
        display_name: Option<String>,
        created_at: Option<String>,
    }
    let list: List = serde_json::from_slice(body).ok()?;
    Some(
        list.data
            .into_iter()
            .map(|m| ModelInfo {
                display_name: m.display_name.unwrap_or_else(|| m.id.clone()),
                created_at: m.created_at.unwrap_or_else(|| crate::time::rfc3339(0)),
                id: m.id,
            })
            .collect(),
    )
}

/// These types hold only strings, numbers and unit variants: encoding cannot fail.
fn to_vec<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let body = error_body(ErrorType::NotFoundError, "no \"x\"", Some("req_1"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"not_found_error","message":"no \"x\""},"request_id":"req_1"})
        );
    }

    #[test]
    fn event_type_equals_event_name() {
        let events = [
            Event::MessageStart {
                id: "msg_1",
                model: "m",
                usage: Usage::default(),
            },
            Event::BlockStart {
                index: 0,
                block: BlockStart::ToolUse { id: "t", name: "n" },
            },
            Event::BlockDelta {
                index: 0,
                delta: BlockDelta::InputJson("{}"),
            },
            Event::BlockStop { index: 0 },
            Event::MessageDelta {
                stop_reason: StopReason::EndTurn,
                stop_sequence: None,
                usage: Usage::default(),
            },
            Event::MessageStop,
        ];
        for ev in events {
            let mut out = BytesMut::new();
            write_event(&ev, &mut out);
            let text = std::str::from_utf8(&out).unwrap();
            let (name, data) = text.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap();
            let data: serde_json::Value =
                serde_json::from_str(data.strip_prefix("data: ").unwrap().trim()).unwrap();
            assert_eq!(data["type"], name);
        }
    }
}
