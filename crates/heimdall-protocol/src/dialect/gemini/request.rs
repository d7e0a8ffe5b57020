//! Canonical request → Gemini `generateContent` request.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::schema;
use super::signature;
use super::wire::{self as g, Content, Part};
use crate::canonical::{
    ContentBlockParam, MessageContent, OutputFormat, Request, Role, SYNTHETIC_USER_TEXT, Source,
    TextOrBlocks, ThinkingConfig, Tool, ToolChoice,
};
use crate::dialect::TranslateError;
use crate::dialect::text::{JOIN, UserBlock, assistant_block_error, is_blank, user_block};
use crate::ids;

const USER: &str = "user";
const MODEL: &str = "model";

/// [`request`], serialized.
pub(super) fn request_body(req: &Request, call_ids: bool) -> Result<Vec<u8>, TranslateError> {
    let body = request(req, call_ids)?;
    serde_json::to_vec(&body).map_err(|e| TranslateError::Internal(e.to_string()))
}

/// Builds the Gemini request. `call_ids`: send tool call ids on `functionCall` /
/// `functionResponse` parts (the Gemini API pairs by them; Vertex rejects the field and pairs by
/// name and order).
pub(super) fn request(
    req: &Request,
    call_ids: bool,
) -> Result<g::GenerateContentRequest, TranslateError> {
    let mut enc = Encoder {
        call_ids,
        names: tool_names(req),
        contents: Vec::with_capacity(req.messages.len()),
        system: Vec::new(),
    };
    match &req.system {
        Some(TextOrBlocks::Text(s)) => enc.system_text(s),
        Some(TextOrBlocks::Blocks(blocks)) => blocks.iter().for_each(|b| enc.system_text(&b.text)),
        None => {}
    }
    for (i, m) in req.messages.iter().enumerate() {
        let base = format!("messages.{i}.content");
        match m.role {
            Role::System => enc.system_message(&m.content, &base)?,
            Role::User => enc.user_turn(&m.content, &base)?,
            Role::Assistant => enc.model_turn(&m.content, &base)?,
        }
    }
    if enc
        .contents
        .first()
        .is_some_and(|c| c.role.as_deref() == Some(MODEL))
    {
        enc.contents.insert(
            0,
            Content {
                role: Some(USER.to_owned()),
                parts: vec![Part::text(SYNTHETIC_USER_TEXT)],
            },
        );
    }
    let tools = function_declarations(req.tools.as_deref().unwrap_or_default())?;
    let tool_config = req
        .tool_choice
        .as_ref()
        .filter(|_| !tools.is_empty())
        .map(tool_config);
    Ok(g::GenerateContentRequest {
        contents: enc.contents,
        system_instruction: (!enc.system.is_empty()).then_some(Content {
            role: None,
            parts: enc.system,
        }),
        tools: if tools.is_empty() {
            Vec::new()
        } else {
            vec![g::ToolDeclarations {
                function_declarations: tools,
            }]
        },
        tool_config,
        generation_config: generation_config(req),
    })
}

/// `tool_use` id → tool name over the whole history: a `functionResponse` must name its function.
fn tool_names(req: &Request) -> HashMap<&str, &str> {
    let mut names = HashMap::new();
    for m in &req.messages {
        if let TextOrBlocks::Blocks(blocks) = &m.content {
            for b in blocks {
                if let ContentBlockParam::ToolUse { id, name, .. } = b {
                    names.insert(id.as_str(), name.as_str());
                }
            }
        }
    }
    names
}

struct Encoder<'r> {
    call_ids: bool,
    names: HashMap<&'r str, &'r str>,
    contents: Vec<Content>,
    system: Vec<Part>,
}

impl Encoder<'_> {
    fn system_text(&mut self, text: &str) {
        if !is_blank(text) {
            self.system.push(Part::text(text));
        }
    }

    /// `role: system` inside `messages`: Gemini has one system instruction, so its text joins it.
    fn system_message(
        &mut self,
        content: &MessageContent,
        base: &str,
    ) -> Result<(), TranslateError> {
        match content {
            TextOrBlocks::Text(s) => self.system_text(s),
            TextOrBlocks::Blocks(blocks) => {
                for (j, block) in blocks.iter().enumerate() {
                    let ContentBlockParam::Text { text, .. } = block else {
                        return Err(TranslateError::invalid(
                            format!("{base}.{j}"),
                            "system messages may only contain text blocks",
                        ));
                    };
                    self.system_text(text);
                }
            }
        }
        Ok(())
    }

    /// Appends `parts` as a `role` turn; Gemini wants turns to alternate, so consecutive turns
    /// of one role (Anthropic allows them) are merged, and empty turns are left out.
    fn push(&mut self, role: &str, parts: Vec<Part>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => self.contents.push(Content {
                role: Some(role.to_owned()),
                parts,
            }),
        }
    }

    fn call_id(&self, anthropic_id: &str) -> Option<String> {
        self.call_ids
            .then(|| ids::tool_id_to_upstream(anthropic_id).to_owned())
    }

    /// Function responses go first, then media returned by tools, then the rest of the turn.
    fn user_turn(&mut self, content: &MessageContent, base: &str) -> Result<(), TranslateError> {
        let blocks = match content {
            TextOrBlocks::Text(s) => {
                if !is_blank(s) {
                    self.push(USER, vec![Part::text(s)]);
                }
                return Ok(());
            }
            TextOrBlocks::Blocks(blocks) => blocks,
        };
        let mut responses = Vec::new();
        let mut media = Vec::new();
        let mut own = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            let path = format!("{base}.{j}");
            let ContentBlockParam::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } = block
            else {
                user_parts(&mut own, block, &path)?;
                continue;
            };
            let Some(name) = self.names.get(tool_use_id.as_str()) else {
                return Err(TranslateError::invalid(
                    format!("{path}.tool_use_id"),
                    format!("no earlier tool_use block has the id `{tool_use_id}`"),
                ));
            };
            let text = tool_result_content(content.as_ref(), &path, &mut media)?;
            // Gemini's convention for a failed call: the model must see that the tool failed.
            let key = if *is_error { "error" } else { "result" };
            responses.push(Part {
                function_response: Some(g::FunctionResponse {
                    id: self.call_id(tool_use_id),
                    name: (*name).to_owned(),
                    response: Value::Object(Map::from_iter([(
                        key.to_owned(),
                        Value::String(text),
                    )])),
                }),
                ..Part::default()
            });
        }
        responses.append(&mut media);
        responses.append(&mut own);
        self.push(USER, responses);
        Ok(())
    }

    /// A model turn. A thinking block carrying a Gemini signature goes back where the signature
    /// came from: on the part right after it (a call or text, see [`signature`]), or on a thought
    /// part of its own. Other thinking is dropped: only its own provider can read it.
    fn model_turn(&mut self, content: &MessageContent, base: &str) -> Result<(), TranslateError> {
        let blocks = match content {
            TextOrBlocks::Text(s) => {
                if !is_blank(s) {
                    self.push(MODEL, vec![Part::text(s)]);
                }
                return Ok(());
            }
            TextOrBlocks::Blocks(blocks) => blocks,
        };
        let mut parts = Vec::with_capacity(blocks.len());
        let mut pending: Option<String> = None;
        for (j, block) in blocks.iter().enumerate() {
            match block {
                ContentBlockParam::Thinking {
                    thinking,
                    signature,
                } => {
                    let Some(sig) = signature::decode(signature) else {
                        continue;
                    };
                    let next_takes_it = matches!(
                        blocks.get(j + 1),
                        Some(ContentBlockParam::Text { .. } | ContentBlockParam::ToolUse { .. })
                    );
                    if next_takes_it {
                        if !thinking.is_empty() {
                            parts.push(thought(thinking));
                        }
                        pending = Some(sig.to_owned());
                    } else {
                        let mut part = if thinking.is_empty() {
                            Part::text("")
                        } else {
                            thought(thinking)
                        };
                        part.thought_signature = Some(sig.to_owned());
                        parts.push(part);
                    }
                }
                ContentBlockParam::RedactedThinking => {}
                ContentBlockParam::Text { text, .. } => {
                    if !is_blank(text) || pending.is_some() {
                        let mut part = Part::text(text);
                        part.thought_signature = pending.take();
                        parts.push(part);
                    }
                }
                ContentBlockParam::ToolUse {
                    id, name, input, ..
                } => parts.push(Part {
                    function_call: Some(g::FunctionCall {
                        id: self.call_id(id),
                        name: name.clone(),
                        args: Some(input.clone()),
                    }),
                    thought_signature: pending.take(),
                    ..Part::default()
                }),
                other => return Err(assistant_block_error(other, format!("{base}.{j}"))),
            }
        }
        self.push(MODEL, parts);
        Ok(())
    }
}

fn thought(text: &str) -> Part {
    Part {
        text: Some(text.to_owned()),
        thought: Some(true),
        ..Part::default()
    }
}

/// A tool result's text (text blocks joined); its images and documents go to `media`, since a
/// function response carries JSON only.
fn tool_result_content(
    content: Option<&MessageContent>,
    path: &str,
    media: &mut Vec<Part>,
) -> Result<String, TranslateError> {
    let blocks = match content {
        None => return Ok(String::new()),
        Some(TextOrBlocks::Text(s)) => return Ok(s.clone()),
        Some(TextOrBlocks::Blocks(blocks)) => blocks,
    };
    let mut parts = Vec::with_capacity(blocks.len());
    for (k, block) in blocks.iter().enumerate() {
        user_parts(&mut parts, block, &format!("{path}.content.{k}"))?;
    }
    let mut texts = Vec::new();
    for part in parts {
        match part.text {
            Some(t) if part.inline_data.is_none() => texts.push(t),
            _ => media.push(part),
        }
    }
    Ok(texts.join(JOIN))
}

/// Converts one user-side block into parts. Thinking blocks are dropped: they belong to model
/// turns.
fn user_parts(
    parts: &mut Vec<Part>,
    block: &ContentBlockParam,
    path: &str,
) -> Result<(), TranslateError> {
    match user_block(block, path)? {
        Some(UserBlock::Text(text)) => parts.push(Part::text(text)),
        Some(UserBlock::Image(source)) => parts.push(image_part(source, path)?),
        Some(UserBlock::Document { source, .. }) => document_parts(parts, source, path)?,
        None => {}
    }
    Ok(())
}

fn inline(mime_type: &str, data: &str) -> Part {
    Part {
        inline_data: Some(g::Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
        }),
        ..Part::default()
    }
}

fn image_part(source: &Source, path: &str) -> Result<Part, TranslateError> {
    match source {
        Source::Base64 { media_type, data } => Ok(inline(media_type, data)),
        // Reached only when the gateway does not fetch URLs (see `UpstreamCodec::inline_media`).
        Source::Url { .. } => Err(TranslateError::unsupported(
            format!("{path}.source"),
            "this model's provider does not fetch image URLs; send the image as base64",
        )),
        Source::File { .. } => Err(TranslateError::unsupported(
            format!("{path}.source"),
            "file sources are not supported by this model's provider; send the image as base64",
        )),
        Source::Text { .. } | Source::Content { .. } => Err(TranslateError::invalid(
            format!("{path}.source.type"),
            "image sources must be base64, url or file",
        )),
    }
}

fn document_parts(
    parts: &mut Vec<Part>,
    source: &Source,
    path: &str,
) -> Result<(), TranslateError> {
    match source {
        // Gemini reads PDFs and plain-text documents inline.
        Source::Base64 { media_type, data } => parts.push(inline(media_type, data)),
        Source::Text { data, .. } => {
            if !is_blank(data) {
                parts.push(Part::text(data));
            }
        }
        Source::Content { content } => match content {
            TextOrBlocks::Text(s) => {
                if !is_blank(s) {
                    parts.push(Part::text(s));
                }
            }
            TextOrBlocks::Blocks(blocks) => {
                for (k, block) in blocks.iter().enumerate() {
                    user_parts(parts, block, &format!("{path}.source.content.{k}"))?;
                }
            }
        },
        Source::Url { .. } | Source::File { .. } => {
            return Err(TranslateError::unsupported(
                format!("{path}.source"),
                "this model's provider only accepts documents as base64, plain text or content blocks",
            ));
        }
    }
    Ok(())
}

fn function_declarations(tools: &[Tool]) -> Result<Vec<g::FunctionDeclaration>, TranslateError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.require_custom(i)?;
            let parameters = t
                .input_schema
                .as_ref()
                .map(schema::reduce)
                .filter(schema::has_properties);
            Ok(g::FunctionDeclaration {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters,
            })
        })
        .collect()
}

fn tool_config(choice: &ToolChoice) -> g::ToolConfig {
    let (mode, allowed) = match choice {
        ToolChoice::Auto { .. } => (g::CallingMode::Auto, None),
        ToolChoice::Any { .. } => (g::CallingMode::Any, None),
        ToolChoice::None => (g::CallingMode::None, None),
        ToolChoice::Tool { name, .. } => (g::CallingMode::Any, Some(vec![name.clone()])),
    };
    g::ToolConfig {
        function_calling_config: g::FunctionCallingConfig {
            mode,
            allowed_function_names: allowed,
        },
    }
}

/// `None` when nothing is set, so the request carries no empty object.
fn generation_config(req: &Request) -> Option<g::GenerationConfig> {
    let response_schema = req
        .output_config
        .as_ref()
        .and_then(|c| c.format.as_ref())
        .map(|OutputFormat::JsonSchema { schema }| schema::reduce(schema));
    let config = g::GenerationConfig {
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop_sequences: req.stop_sequences.clone().filter(|s| !s.is_empty()),
        response_mime_type: response_schema.as_ref().map(|_| "application/json"),
        response_schema,
        thinking_config: thinking_config(req.thinking.as_ref()),
    };
    (config != g::GenerationConfig::default()).then_some(config)
}

/// Anthropic's budget maps to Gemini's (Gemini 3 still reads `thinkingBudget`); adaptive thinking
/// is Gemini's dynamic budget (−1). Disabled sends nothing: a budget of 0 is an error on models
/// that cannot stop thinking, and without `includeThoughts` none are shown.
fn thinking_config(thinking: Option<&ThinkingConfig>) -> Option<g::ThinkingConfig> {
    let budget = match thinking? {
        ThinkingConfig::Enabled { budget_tokens } => {
            i64::try_from(*budget_tokens).unwrap_or(i64::MAX)
        }
        ThinkingConfig::Adaptive => -1,
        ThinkingConfig::Disabled | ThinkingConfig::Other => return None,
    };
    Some(g::ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: true,
    })
}
