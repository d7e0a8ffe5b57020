//! OpenAI Chat Completions dialect: `POST /v1/chat/completions`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::directives::Directives;
use super::faults::{AnswerFaults, NEEDS_RAW_FRONT, StreamFrames, body_response, script_stream};
use super::reply::{Plan, Turn, arg_fragments, count_words, text_chunks};
use super::{
    Shared, Step, content_text, cut_json_response, directives, json_response, openai_error,
    openai_scripted_error, push_json_str, scripted_failure, sse_response, unix_now,
};

fn bad_request(message: &str) -> Response {
    openai_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        message,
        None,
    )
}

/// The key a request carries: `Authorization: Bearer <key>` or Azure's `api-key: <key>`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let azure = headers.get("api-key").and_then(|v| v.to_str().ok());
    bearer.or(azure).map(str::trim).filter(|k| !k.is_empty())
}

/// A key is required; `bad-key` is rejected. `Some` is the 401 response.
pub(super) fn check_auth(headers: &HeaderMap) -> Option<Response> {
    match api_key(headers) {
        None => Some(openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "You didn't provide an API key (Authorization: Bearer).",
            None,
        )),
        Some("bad-key") => Some(openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided: bad-key.",
            None,
        )),
        Some(_) => None,
    }
}

/// Media type of a data URL, or the URL itself.
fn image_label(url: &str) -> String {
    match url.strip_prefix("data:") {
        Some(rest) => rest.split([';', ',']).next().unwrap_or_default().to_owned(),
        None => url.to_owned(),
    }
}

fn images_of(content: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(parts)) = content else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
        .filter_map(|p| {
            let image = p.get("image_url")?;
            let url = image.get("url").unwrap_or(image).as_str()?;
            Some(image_label(url))
        })
        .collect()
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn extract_turn(messages: &[Value]) -> Turn {
    let mut words = 0;
    for m in messages {
        words += count_words(&content_text(m.get("content")));
    }
    let trailing_start = messages
        .iter()
        .rposition(|m| role(m) == "assistant")
        .map_or(0, |i| i + 1);
    let trailing = &messages[trailing_start..];
    let tool_results: Vec<String> = trailing
        .iter()
        .filter(|m| role(m) == "tool")
        .map(|m| content_text(m.get("content")))
        .collect();
    let scope = if tool_results.is_empty() {
        messages
    } else {
        trailing
    };
    let user = scope.iter().rev().find(|m| role(m) == "user");
    Turn {
        directive_text: user
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default(),
        images: user
            .map(|m| images_of(m.get("content")))
            .unwrap_or_default(),
        tool_results,
        prompt_tokens: words + 1,
    }
}

fn usage_json(plan: &Plan) -> Value {
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.prompt_tokens + plan.output_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached},
    })
}

/// Azure OpenAI's deployment route: like Chat Completions, but `api-version` is required.
pub(super) async fn azure_deployment(
    state: State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let has_version = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.starts_with("api-version=") && p.len() > 12)
    });
    if !has_version {
        return openai_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("404"),
            "Resource not found (api-version query parameter is required)",
            None,
        );
    }
    chat_completions(state, method, uri, headers, body).await
}

pub(super) async fn chat_completions(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    if let Some(resp) = check_auth(&headers) {
        return resp;
    }
    let Some(obj) = req.as_object() else {
        return bad_request("We could not parse the JSON body of your request.");
    };
    let Some(model) = obj.get("model").and_then(Value::as_str) else {
        return bad_request("you must provide a model parameter");
    };
    let Some(messages) = obj.get("messages").and_then(Value::as_array) else {
        return bad_request("Missing required parameter: 'messages'.");
    };
    if messages.is_empty() {
        return bad_request("Invalid 'messages': empty array.");
    }
    let turn = extract_turn(messages);
    let (d, remaining) = match directives::parse(&turn.directive_text) {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(&e.to_string()),
    };
    if d.connection.is_some() && !s.raw_front {
        return bad_request(NEEDS_RAW_FRONT);
    }
    let answer_faults = AnswerFaults::of(&d);
    let resp = answer(&s, obj, model, api_key(&headers), turn, d, remaining).await;
    answer_faults.apply(resp).await
}

/// The answer to a valid request whose directives parsed.
async fn answer(
    s: &Shared,
    obj: &Map<String, Value>,
    model: &str,
    key: Option<&str>,
    turn: Turn,
    d: Directives,
    remaining: String,
) -> Response {
    if let Some(err) = scripted_failure(&d, key).await {
        return openai_scripted_error(&err, d.huge.is_some());
    }
    let plan = Plan::build(turn, d, remaining);
    let id = format!("chatcmpl-{}", s.id());
    let tool_ids: Vec<String> = plan
        .tools
        .iter()
        .map(|_| format!("call_{}", s.id()))
        .collect();
    let request_id = (
        HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&format!("req_mock{}", s.id()))
            .unwrap_or(HeaderValue::from_static("req_mock")),
    );
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = StreamUsage::of(obj, model);
    if let Some(kind) = plan.body {
        let mut resp = body_response(
            kind,
            || completion_json(&plan, &id, model, &tool_ids),
            || stream_steps(&plan, &id, model, &tool_ids, usage),
            s.opts.chunk_delay,
        );
        resp.headers_mut().insert(request_id.0, request_id.1);
        return resp;
    }
    if stream {
        let steps = stream_steps(&plan, &id, model, &tool_ids, usage);
        return sse_response(steps, s.opts.chunk_delay, Some(request_id));
    }
    if let Some(stall) = plan.stall {
        tokio::time::sleep(stall).await;
    }
    let body = completion_json(&plan, &id, model, &tool_ids);
    let mut resp = if plan.cut {
        cut_json_response(&body)
    } else {
        json_response(StatusCode::OK, &body)
    };
    resp.headers_mut().insert(request_id.0, request_id.1);
    resp
}

fn completion_json(plan: &Plan, id: &str, model: &str, tool_ids: &[String]) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": plan.text,
        "refusal": null,
    });
    if let Some(r) = &plan.reasoning {
        message["reasoning_content"] = json!(r);
    }
    if !plan.tools.is_empty() {
        let calls: Vec<Value> = plan
            .tools
            .iter()
            .zip(tool_ids)
            .map(|(t, id)| {
                json!({"id": id, "type": "function", "function": {"name": t.name, "arguments": t.args}})
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": plan.openai_finish_reason(),
        }],
        "usage": usage_json(plan),
    })
}

/// Encodes chunks as `data: {...}\n\n` sharing one serialized prefix.
/// Where a stream reports usage.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StreamUsage {
    /// Nowhere: OpenAI without `stream_options.include_usage`.
    Absent,
    /// OpenAI with `include_usage`: a last chunk with no choices, and `"usage":null` on the others.
    Separate,
    /// Mistral: on the finish chunk, always (its API rejects `stream_options`).
    OnFinish,
}

impl StreamUsage {
    fn of(req: &Map<String, Value>, model: &str) -> Self {
        let include_usage = req
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Mistral's models: mistral-*, ministral-*, codestral-*, pixtral-*, magistral-*, devstral-*.
        if model.contains("stral") {
            StreamUsage::OnFinish
        } else if include_usage {
            StreamUsage::Separate
        } else {
            StreamUsage::Absent
        }
    }
}

struct ChunkWriter {
    prefix: Vec<u8>,
    usage_null: bool,
}

impl ChunkWriter {
    fn new(id: &str, model: &str, created: u64, usage_null: bool) -> Self {
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(b"data: {\"id\":");
        push_json_str(&mut prefix, id);
        prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        prefix.extend_from_slice(created.to_string().as_bytes());
        prefix.extend_from_slice(b",\"model\":");
        push_json_str(&mut prefix, model);
        ChunkWriter { prefix, usage_null }
    }

    /// A chunk with one choice; `delta` is raw JSON.
    fn choice(&self, delta: &[u8], finish_reason: Option<&str>) -> Step {
        self.choice_with_usage(delta, finish_reason, None)
    }

    /// [`ChunkWriter::choice`], with `usage` in the same chunk when given.
    fn choice_with_usage(
        &self,
        delta: &[u8],
        finish_reason: Option<&str>,
        usage: Option<&Value>,
    ) -> Step {
        let mut buf = Vec::with_capacity(self.prefix.len() + delta.len() + 96);
        buf.extend_from_slice(&self.prefix);
        buf.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
        buf.extend_from_slice(delta);
        buf.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish_reason {
            Some(r) => push_json_str(&mut buf, r),
            None => buf.extend_from_slice(b"null"),
        }
        buf.extend_from_slice(b"}]");
        if let Some(usage) = usage {
            buf.extend_from_slice(b",\"usage\":");
            buf.extend_from_slice(&serde_json::to_vec(usage).unwrap_or_default());
        } else if self.usage_null {
            buf.extend_from_slice(b",\"usage\":null");
        }
        buf.extend_from_slice(b"}\n\n");
        Step::Data(Bytes::from(buf))
    }

    /// A delta with one string field, e.g. `{"content":"..."}`.
    fn string_delta(&self, field: &str, value: &str) -> Step {
        let mut delta = Vec::with_capacity(value.len() + field.len() + 8);
        delta.push(b'{');
        push_json_str(&mut delta, field);
        delta.push(b':');
        push_json_str(&mut delta, value);
        delta.push(b'}');
        self.choice(&delta, None)
    }

    fn value_delta(&self, delta: &Value) -> Step {
        self.choice(&serde_json::to_vec(delta).unwrap_or_default(), None)
    }

    fn usage(&self, usage: &Value) -> Step {
        let mut buf = self.prefix.clone();
        buf.extend_from_slice(b",\"choices\":[],\"usage\":");
        buf.extend_from_slice(&serde_json::to_vec(usage).unwrap_or_default());
        buf.extend_from_slice(b"}\n\n");
        Step::Data(Bytes::from(buf))
    }
}

fn stream_steps(
    plan: &Plan,
    id: &str,
    model: &str,
    tool_ids: &[String],
    usage: StreamUsage,
) -> Vec<Step> {
    let w = ChunkWriter::new(id, model, unix_now(), usage == StreamUsage::Separate);
    let mut frames = Vec::with_capacity(16);
    frames.push(w.choice(br#"{"role":"assistant","content":"","refusal":null}"#, None));
    if let Some(r) = &plan.reasoning {
        for piece in text_chunks(r) {
            frames.push(w.string_delta("reasoning_content", piece));
        }
    }
    if let Some(t) = &plan.text {
        for piece in plan.text_pieces(t) {
            frames.push(w.string_delta("content", piece));
        }
    }
    for (index, (tool, call_id)) in plan.tools.iter().zip(tool_ids).enumerate() {
        let head_args = if tool.whole { tool.args.as_str() } else { "" };
        frames.push(w.value_delta(&json!({"tool_calls": [{
            "index": index, "id": call_id, "type": "function",
            "function": {"name": tool.name, "arguments": head_args},
        }]})));
        if !tool.whole {
            for frag in arg_fragments(&tool.args) {
                frames.push(w.value_delta(
                    &json!({"tool_calls": [{"index": index, "function": {"arguments": frag}}]}),
                ));
            }
        }
    }
    // The cut / stall / error point: after the role chunk and the first content chunk.
    let mark = frames.len().min(2);
    let finish = frames.len();
    match usage {
        StreamUsage::OnFinish => frames.push(w.choice_with_usage(
            b"{}",
            Some(plan.openai_finish_reason()),
            Some(&usage_json(plan)),
        )),
        StreamUsage::Separate => {
            frames.push(w.choice(b"{}", Some(plan.openai_finish_reason())));
            frames.push(w.usage(&usage_json(plan)));
        }
        StreamUsage::Absent => frames.push(w.choice(b"{}", Some(plan.openai_finish_reason()))),
    }
    frames.push(Step::Data(Bytes::from_static(b"data: [DONE]\n\n")));
    let error_event = Step::Data(Bytes::from_static(
        b"data: {\"error\":{\"message\":\"mock stream error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
    ));
    script_stream(
        plan,
        StreamFrames {
            frames,
            mark,
            finish,
        },
        error_event,
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::test_util::*;
    use super::super::{MockOptions, MockServer};
    use serde_json::{Value, json};

    async fn post(mock: &MockServer, body: Value) -> reqwest::Response {
        client()
            .post(format!("{}/v1/chat/completions", mock.base_url()))
            .bearer_auth("sk-test")
            .json_body(&body)
            .send()
            .await
            .unwrap()
    }

    trait JsonBody {
        fn json_body(self, v: &Value) -> Self;
    }

    impl JsonBody for reqwest::RequestBuilder {
        fn json_body(self, v: &Value) -> Self {
            self.header("content-type", "application/json")
                .body(serde_json::to_vec(v).unwrap())
        }
    }

    fn user(text: &str) -> Value {
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ]})
    }

    fn streaming(mut body: Value, usage: bool) -> Value {
        body["stream"] = json!(true);
        if usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    /// Data payloads of an OpenAI stream (without the `[DONE]` marker, which is asserted).
    async fn chunks(resp: reqwest::Response) -> Vec<Value> {
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = resp.text().await.unwrap();
        let events = sse_events(&text);
        let (last, rest) = events.split_last().unwrap();
        assert_eq!(last, &(None, "[DONE]".to_owned()), "{text}");
        rest.iter()
            .map(|(name, data)| {
                assert!(name.is_none());
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn echo_non_streaming() {
        let mock = server().await;
        let v = body_json(post(&mock, user("  Hello there [[mock:cached 2]] ")).await).await;
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["choices"][0]["message"]["content"], "Hello there");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        // "be brief" + "Hello there [[mock:cached 2]]" = 2 + 4 words, + 1.
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
                   "prompt_tokens_details": {"cached_tokens": 2}})
        );
        let v = body_json(post(&mock, user("[[mock:delay 1]]")).await).await;
        assert_eq!(v["choices"][0]["message"]["content"], "ok");
    }

    #[tokio::test]
    async fn echo_streaming_with_and_without_usage() {
        let mock = server().await;
        let chunks_u = chunks(post(&mock, streaming(user("one two three four"), true)).await).await;
        assert_eq!(chunks_u[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks_u
            .iter()
            .filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "one two three four");
        let content_chunks = chunks_u
            .iter()
            .filter(|c| {
                c["choices"].get(0).is_some_and(|ch| {
                    ch["delta"]["content"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty())
                })
            })
            .count();
        assert!(content_chunks >= 3);
        let n = chunks_u.len();
        assert_eq!(chunks_u[n - 2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks_u[n - 1]["choices"], json!([]));
        assert_eq!(chunks_u[n - 1]["usage"]["completion_tokens"], 4);
        assert_eq!(chunks_u[0]["usage"], Value::Null);
        assert!(chunks_u[0].get("usage").is_some());

        let plain = chunks(post(&mock, streaming(user("one two"), false)).await).await;
        assert!(plain.iter().all(|c| c.get("usage").is_none()));
        assert_eq!(plain.last().unwrap()["choices"][0]["finish_reason"], "stop");

        // Mistral reports usage on its finish chunk, without being asked.
        let mut mistral = streaming(user("one two"), false);
        mistral["model"] = json!("mistral-large-latest");
        let chunks_m = chunks(post(&mock, mistral).await).await;
        let (finish, rest) = chunks_m.split_last().unwrap();
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["usage"]["completion_tokens"], 2);
        assert!(rest.iter().all(|c| c.get("usage").is_none()));
    }

    #[tokio::test]
    async fn tool_calls() {
        let mock = server().await;
        let prompt = r#"weather? [[mock:tool get_weather {"city":"Paris"}]] [[mock:tool_whole get_time {"tz":"UTC"}]]"#;
        let v = body_json(post(&mock, user(prompt)).await).await;
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let calls = msg["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(calls[1]["function"]["name"], "get_time");

        let cs = chunks(post(&mock, streaming(user(prompt), true)).await).await;
        let frags: Vec<&Value> = cs
            .iter()
            .filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls"))
            .map(|t| &t[0])
            .collect();
        // get_weather: head + >=2 argument fragments; get_time: one whole fragment.
        let weather: Vec<&&Value> = frags.iter().filter(|f| f["index"] == 0).collect();
        assert!(weather.len() >= 3);
        assert_eq!(weather[0]["function"]["arguments"], "");
        assert_eq!(weather[0]["function"]["name"], "get_weather");
        assert!(weather[0]["id"].as_str().unwrap().starts_with("call_"));
        assert!(weather[1].get("id").is_none());
        let args: String = weather
            .iter()
            .map(|f| f["function"]["arguments"].as_str().unwrap())
            .collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        let time: Vec<&&Value> = frags.iter().filter(|f| f["index"] == 1).collect();
        assert_eq!(time.len(), 1);
        assert_eq!(time[0]["function"]["arguments"], r#"{"tz":"UTC"}"#);
        assert_eq!(time[0]["function"]["name"], "get_time");
        let finish = cs
            .iter()
            .find_map(|c| c["choices"].get(0)?["finish_reason"].as_str());
        assert_eq!(finish, Some("tool_calls"));
    }

    #[tokio::test]
    async fn tool_results_are_answered() {
        let mock = server().await;
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "user", "content": "go [[mock:tool a {}]] [[mock:tool b {}]]"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "15 degrees"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "[tool error] boom"}]},
        ]});
        let v = body_json(post(&mock, body).await).await;
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "tool said: 15 degrees | [tool error] boom"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[tokio::test]
    async fn images_reasoning_finish() {
        let mock = server().await;
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look [[mock:reasoning hmm, a cat]] [[mock:finish length]]"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg", "detail": "low"}},
        ]}]});
        let v = body_json(post(&mock, body.clone()).await).await;
        let msg = &v["choices"][0]["message"];
        assert_eq!(
            msg["content"],
            "look [image: image/png] [image: https://x.test/a.jpg]"
        );
        assert_eq!(msg["reasoning_content"], "hmm, a cat");
        assert_eq!(v["choices"][0]["finish_reason"], "length");

        let cs = chunks(post(&mock, streaming(body, false)).await).await;
        let deltas: Vec<&Value> = cs.iter().map(|c| &c["choices"][0]["delta"]).collect();
        let reasoning: String = deltas
            .iter()
            .filter_map(|d| d["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "hmm, a cat");
        let first_reasoning = deltas
            .iter()
            .position(|d| d.get("reasoning_content").is_some())
            .unwrap();
        let first_text = deltas
            .iter()
            .position(|d| d["content"].as_str().is_some_and(|s| !s.is_empty()))
            .unwrap();
        assert!(first_reasoning < first_text);
    }

    #[tokio::test]
    async fn auth_and_validation_errors() {
        let mock = server().await;
        let url = format!("{}/v1/chat/completions", mock.base_url());
        let r = client()
            .post(&url)
            .json_body(&user("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(body_json(r).await["error"]["code"], "invalid_api_key");
        let r = client()
            .post(&url)
            .bearer_auth("bad-key")
            .json_body(&user("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = post(&mock, json!({"messages": []})).await;
        assert_eq!(r.status(), 400);
        let r = post(&mock, user("[[mock:bogus]]")).await;
        assert_eq!(r.status(), 400);
        assert!(
            body_json(r).await["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bogus")
        );
    }

    #[tokio::test]
    async fn scripted_errors() {
        let mock = server().await;
        let r = post(&mock, user("[[mock:error 429 retry_after=7]]")).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let v = body_json(r).await;
        assert_eq!(v["error"]["message"], "mock error 429");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        let r = post(
            &mock,
            streaming(user("[[mock:error 503 type=overloaded]]"), false),
        )
        .await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().get("retry-after").is_none());
        assert_eq!(body_json(r).await["error"]["type"], "overloaded");

        let prompt = "hi [[mock:fail_first 2 500 openai-ff-test]]";
        assert_eq!(post(&mock, user(prompt)).await.status(), 500);
        assert_eq!(post(&mock, user(prompt)).await.status(), 500);
        let v = body_json(post(&mock, user(prompt)).await).await;
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
    }

    #[tokio::test]
    async fn stream_failures() {
        let mock = server().await;
        // cut: 200, some data, then the body fails.
        let mut r = post(
            &mock,
            streaming(user("alpha beta gamma delta [[mock:cut]]"), true),
        )
        .await;
        assert_eq!(r.status(), 200);
        let mut got = Vec::new();
        let err = loop {
            match r.chunk().await {
                Ok(Some(c)) => got.extend_from_slice(&c),
                Ok(None) => panic!("stream ended cleanly: {}", String::from_utf8_lossy(&got)),
                Err(e) => break e,
            }
        };
        let _ = err;
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("alpha"), "{text}");
        assert!(!text.contains("[DONE]"));

        // stream_error: in-band error, no [DONE].
        let r = post(
            &mock,
            streaming(user("alpha beta gamma [[mock:stream_error]]"), false),
        )
        .await;
        let text = r.text().await.unwrap();
        let events = sse_events(&text);
        let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
        assert_eq!(last["error"]["message"], "mock stream error");
        assert_eq!(last["error"]["type"], "server_error");
        assert!(events.len() >= 3);

        // stall: first chunks arrive, then a pause.
        let mut r = post(
            &mock,
            streaming(user("alpha beta gamma [[mock:stall 300]]"), false),
        )
        .await;
        let start = Instant::now();
        let first = r.chunk().await.unwrap().unwrap();
        assert!(start.elapsed() < Duration::from_millis(250));
        assert!(String::from_utf8_lossy(&first).contains("assistant"));
        let mut rest = Vec::new();
        while let Some(c) = r.chunk().await.unwrap() {
            rest.extend_from_slice(&c);
        }
        assert!(start.elapsed() >= Duration::from_millis(280));
        assert!(String::from_utf8_lossy(&rest).ends_with("data: [DONE]\n\n"));

        // cut without streaming: truncated JSON body.
        let r = post(&mock, user("x [[mock:cut]]")).await;
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.is_err());
    }

    #[tokio::test]
    async fn latency_and_chunk_delay() {
        let mock = MockServer::start(MockOptions {
            latency: Duration::from_millis(150),
            chunk_delay: Duration::from_millis(30),
            ..MockOptions::default()
        })
        .await
        .unwrap();
        let start = Instant::now();
        let r = post(&mock, streaming(user("a b c d"), false)).await;
        assert!(start.elapsed() >= Duration::from_millis(150));
        let body = r.text().await.unwrap();
        // role + 4 content + finish + [DONE] = 7 chunks, 6 gaps.
        assert!(
            start.elapsed() >= Duration::from_millis(150 + 6 * 30),
            "{:?}",
            start.elapsed()
        );
        assert!(body.ends_with("data: [DONE]\n\n"));
    }
}
