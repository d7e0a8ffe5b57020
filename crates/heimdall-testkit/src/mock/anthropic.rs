//! Anthropic Messages dialect: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::directives::Directives;
use super::faults::{AnswerFaults, NEEDS_RAW_FRONT, StreamFrames, body_response, script_stream};
use super::reply::{Plan, Turn, arg_fragments, count_words, text_chunks};
use super::{
    Shared, Step, anthropic_error, anthropic_scripted_error, content_text, cut_json_response,
    directives, json_response, push_json_str, scripted_failure, sse_response,
};

pub(super) fn bad_request(message: &str) -> Response {
    anthropic_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        None,
    )
}

/// The key a request carries: `x-api-key` or, like the real API since 2026-10-21,
/// `Authorization: Bearer`.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// A key is required; `bad-key` is rejected. `Some` is the 401 response.
pub(super) fn check_auth(headers: &HeaderMap) -> Option<Response> {
    match api_key(headers) {
        None => Some(anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
            None,
        )),
        Some("bad-key") => Some(anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
            None,
        )),
        Some(_) => None,
    }
}

fn check_version(headers: &HeaderMap) -> Option<Response> {
    (!headers.contains_key("anthropic-version"))
        .then(|| bad_request("anthropic-version: header is required"))
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or_default()
}

fn role(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or_default()
}

/// Words of all text the prompt carries (system, text blocks, tool results).
pub(super) fn prompt_words(system: Option<&Value>, messages: &[Value]) -> u64 {
    let mut words = count_words(&content_text(system));
    for m in messages {
        match m.get("content") {
            Some(Value::String(s)) => words += count_words(s),
            Some(Value::Array(blocks)) => {
                for b in blocks {
                    match block_type(b) {
                        "text" => {
                            words += b.get("text").and_then(Value::as_str).map_or(0, count_words);
                        }
                        "tool_result" => words += count_words(&content_text(b.get("content"))),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    words
}

pub(super) fn extract_turn(system: Option<&Value>, messages: &[Value]) -> Turn {
    let mut turn = Turn {
        prompt_tokens: prompt_words(system, messages) + 1,
        ..Turn::default()
    };
    let Some(last_user) = messages.iter().rev().find(|m| role(m) == "user") else {
        return turn;
    };
    match last_user.get("content") {
        Some(Value::String(s)) => turn.directive_text = s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts: Vec<&str> = Vec::new();
            for b in blocks {
                match block_type(b) {
                    "text" => texts.extend(b.get("text").and_then(Value::as_str)),
                    "tool_result" => {
                        let text = content_text(b.get("content"));
                        let is_error = b.get("is_error").and_then(Value::as_bool) == Some(true);
                        turn.tool_results.push(if is_error {
                            format!("[tool error] {text}")
                        } else {
                            text
                        });
                    }
                    "image" => {
                        let source = b.get("source");
                        let label = ["media_type", "url", "file_id"]
                            .iter()
                            .find_map(|k| source?.get(k)?.as_str());
                        turn.images.push(label.unwrap_or("unknown").to_owned());
                    }
                    _ => {}
                }
            }
            turn.directive_text = texts.join("\n");
        }
        _ => {}
    }
    turn
}

fn usage_json(plan: &Plan) -> Value {
    json!({
        "input_tokens": plan.prompt_tokens - plan.cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": plan.cached,
        "output_tokens": plan.output_tokens,
    })
}

fn request_id_header(s: &Shared) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("request-id"),
        HeaderValue::from_str(&format!("req_mock{}", s.id()))
            .unwrap_or(HeaderValue::from_static("req_mock")),
    )
}

/// Shared front of both routes: record, latency, auth, version, JSON object.
async fn admit(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Response> {
    let req = s.intake(method, uri, headers, body);
    s.latency().await;
    if let Some(rejection) = check_auth(headers).or_else(|| check_version(headers)) {
        return Err(rejection);
    }
    if !req.is_object() {
        return Err(bad_request("the request body is not a JSON object"));
    }
    Ok(req)
}

pub(super) async fn count_tokens(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match admit(&s, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    if req.get("model").and_then(Value::as_str).is_none() {
        return bad_request("model: Field required");
    }
    count(&s, &req)
}

/// The token count of a request already admitted (Vertex admits its own way).
pub(super) fn count(s: &Shared, req: &Value) -> Response {
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("messages: Field required");
    };
    let n = prompt_words(req.get("system"), messages) + 1;
    let mut resp = json_response(StatusCode::OK, &json!({"input_tokens": n}));
    let (k, v) = request_id_header(s);
    resp.headers_mut().insert(k, v);
    resp
}

pub(super) async fn messages(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = match admit(&s, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return bad_request("model: Field required");
    };
    respond(&s, &req, model, api_key(&headers)).await
}

/// The answer to a Messages body already admitted with `key`, for `model` (Vertex names it in
/// the URL).
pub(super) async fn respond(s: &Shared, req: &Value, model: &str, key: Option<&str>) -> Response {
    if req.get("max_tokens").and_then(Value::as_u64).is_none() {
        return bad_request("max_tokens: Field required");
    }
    let Some(messages) = req.get("messages").and_then(Value::as_array) else {
        return bad_request("messages: Field required");
    };
    if messages.is_empty() {
        return bad_request("messages: at least one message is required");
    }
    let turn = extract_turn(req.get("system"), messages);
    let (d, remaining) = match directives::parse(&turn.directive_text) {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(&e.to_string()),
    };
    if d.connection.is_some() && !s.raw_front {
        return bad_request(NEEDS_RAW_FRONT);
    }
    let stream = req.get("stream").and_then(Value::as_bool) == Some(true);
    let answer_faults = AnswerFaults::of(&d);
    let resp = answer(s, model, key, stream, turn, d, remaining).await;
    answer_faults.apply(resp).await
}

/// The answer to a valid request whose directives parsed.
async fn answer(
    s: &Shared,
    model: &str,
    key: Option<&str>,
    stream: bool,
    turn: Turn,
    d: Directives,
    remaining: String,
) -> Response {
    if let Some(err) = scripted_failure(&d, key).await {
        let mut resp = anthropic_scripted_error(&err, d.huge.is_some());
        let (k, v) = request_id_header(s);
        resp.headers_mut().insert(k, v);
        return resp;
    }
    let plan = Plan::build(turn, d, remaining);
    let id = format!("msg_mock{}", s.id());
    let tool_ids: Vec<String> = plan
        .tools
        .iter()
        .map(|_| format!("toolu_mock{}", s.id()))
        .collect();
    let signature = format!("mocksig{}", s.id());
    let request_id = request_id_header(s);
    if let Some(kind) = plan.body {
        let mut resp = body_response(
            kind,
            || message_json(&plan, &id, model, &tool_ids, &signature),
            || stream_steps(&plan, &id, model, &tool_ids, &signature),
            s.opts.chunk_delay,
        );
        resp.headers_mut().insert(request_id.0, request_id.1);
        return resp;
    }
    if stream {
        let steps = stream_steps(&plan, &id, model, &tool_ids, &signature);
        return sse_response(steps, s.opts.chunk_delay, Some(request_id));
    }
    if let Some(stall) = plan.stall {
        tokio::time::sleep(stall).await;
    }
    let body = message_json(&plan, &id, model, &tool_ids, &signature);
    let mut resp = if plan.cut {
        cut_json_response(&body)
    } else {
        json_response(StatusCode::OK, &body)
    };
    resp.headers_mut().insert(request_id.0, request_id.1);
    resp
}

pub(super) fn message_json(
    plan: &Plan,
    id: &str,
    model: &str,
    tool_ids: &[String],
    signature: &str,
) -> Value {
    let mut content = Vec::new();
    if let Some(r) = &plan.reasoning {
        content.push(json!({"type": "thinking", "thinking": r, "signature": signature}));
    }
    if let Some(t) = &plan.text {
        content.push(json!({"type": "text", "text": t}));
    }
    for (tool, tool_id) in plan.tools.iter().zip(tool_ids) {
        content.push(
            json!({"type": "tool_use", "id": tool_id, "name": tool.name, "input": tool.input}),
        );
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": plan.anthropic_stop_reason(),
        "stop_sequence": null,
        "usage": usage_json(plan),
    })
}

fn event(name: &str, data: &Value) -> Step {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    buf.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    buf.extend_from_slice(b"\n\n");
    Step::Data(Bytes::from(buf))
}

/// `content_block_delta` with a string field, written without building a `Value`.
fn string_delta(index: usize, delta_type: &str, field: &str, value: &str) -> Step {
    let mut buf = Vec::with_capacity(value.len() + 128);
    buf.extend_from_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    buf.extend_from_slice(index.to_string().as_bytes());
    buf.extend_from_slice(b",\"delta\":{\"type\":");
    push_json_str(&mut buf, delta_type);
    buf.push(b',');
    push_json_str(&mut buf, field);
    buf.push(b':');
    push_json_str(&mut buf, value);
    buf.extend_from_slice(b"}}\n\n");
    Step::Data(Bytes::from(buf))
}

fn block_start(index: usize, block: Value) -> Step {
    event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn block_stop(index: usize) -> Step {
    event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": index}),
    )
}

pub(super) fn stream_steps(
    plan: &Plan,
    id: &str,
    model: &str,
    tool_ids: &[String],
    signature: &str,
) -> Vec<Step> {
    let mut frames = Vec::with_capacity(16);
    frames.push(event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {
                "input_tokens": plan.prompt_tokens - plan.cached,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": plan.cached,
                "output_tokens": 1,
            },
        }}),
    ));
    frames.push(event("ping", &json!({"type": "ping"})));
    // The cut / stall / error point: after the first block's first delta.
    let mut mark = None;
    let mut index = 0;
    if let Some(r) = &plan.reasoning {
        frames.push(block_start(
            index,
            json!({"type": "thinking", "thinking": "", "signature": ""}),
        ));
        for piece in text_chunks(r) {
            frames.push(string_delta(index, "thinking_delta", "thinking", piece));
            mark.get_or_insert(frames.len());
        }
        frames.push(string_delta(
            index,
            "signature_delta",
            "signature",
            signature,
        ));
        frames.push(block_stop(index));
        index += 1;
    }
    if let Some(t) = &plan.text {
        frames.push(block_start(index, json!({"type": "text", "text": ""})));
        for piece in plan.text_pieces(t) {
            frames.push(string_delta(index, "text_delta", "text", piece));
            mark.get_or_insert(frames.len());
        }
        frames.push(block_stop(index));
        index += 1;
    }
    for (tool, tool_id) in plan.tools.iter().zip(tool_ids) {
        frames.push(block_start(
            index,
            json!({"type": "tool_use", "id": tool_id, "name": tool.name, "input": {}}),
        ));
        if tool.whole {
            frames.push(string_delta(
                index,
                "input_json_delta",
                "partial_json",
                &tool.args,
            ));
            mark.get_or_insert(frames.len());
        } else {
            frames.push(string_delta(index, "input_json_delta", "partial_json", ""));
            mark.get_or_insert(frames.len());
            for frag in arg_fragments(&tool.args) {
                frames.push(string_delta(
                    index,
                    "input_json_delta",
                    "partial_json",
                    frag,
                ));
            }
        }
        frames.push(block_stop(index));
        index += 1;
    }
    let mark = mark.unwrap_or(frames.len());
    let finish = frames.len();
    frames.push(event(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": plan.anthropic_stop_reason(), "stop_sequence": null},
            "usage": usage_json(plan)}),
    ));
    frames.push(event("message_stop", &json!({"type": "message_stop"})));
    let error_event = event(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
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

    use super::super::MockServer;
    use super::super::test_util::*;
    use serde_json::{Value, json};

    async fn post_to(mock: &MockServer, path: &str, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}{path}", mock.base_url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap()
    }

    async fn post(mock: &MockServer, body: &Value) -> reqwest::Response {
        post_to(mock, "/v1/messages", body).await
    }

    fn user(text: &str) -> Value {
        json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 100,
               "system": [{"type": "text", "text": "be brief"}],
               "messages": [{"role": "user", "content": text}]})
    }

    fn streaming(mut body: Value) -> Value {
        body["stream"] = json!(true);
        body
    }

    /// Parses an Anthropic stream, checks the grammar and returns (name, data) of each event.
    async fn events(resp: reqwest::Response) -> Vec<(String, Value)> {
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let text = resp.text().await.unwrap();
        sse_events(&text)
            .into_iter()
            .map(|(name, data)| {
                let name = name.expect("every event has an event: line");
                let data: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    /// Rebuilds the final message from a well-formed stream, asserting the event grammar.
    fn accumulate(events: &[(String, Value)]) -> Value {
        assert_eq!(events[0].0, "message_start");
        assert_eq!(events.last().unwrap().0, "message_stop");
        let mut msg = events[0].1["message"].clone();
        let mut open: Option<usize> = None;
        let mut json_buf = String::new();
        for (name, data) in &events[1..events.len() - 1] {
            match name.as_str() {
                "ping" => {}
                "content_block_start" => {
                    assert!(open.is_none(), "blocks must not interleave");
                    let index = data["index"].as_u64().unwrap() as usize;
                    let content = msg["content"].as_array_mut().unwrap();
                    assert_eq!(index, content.len());
                    content.push(data["content_block"].clone());
                    open = Some(index);
                    json_buf.clear();
                }
                "content_block_delta" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(Some(index), open);
                    let block = &mut msg["content"][index];
                    let d = &data["delta"];
                    match d["type"].as_str().unwrap() {
                        "text_delta" => {
                            let t = format!(
                                "{}{}",
                                block["text"].as_str().unwrap(),
                                d["text"].as_str().unwrap()
                            );
                            block["text"] = json!(t);
                        }
                        "thinking_delta" => {
                            let t = format!(
                                "{}{}",
                                block["thinking"].as_str().unwrap(),
                                d["thinking"].as_str().unwrap()
                            );
                            block["thinking"] = json!(t);
                        }
                        "signature_delta" => block["signature"] = d["signature"].clone(),
                        "input_json_delta" => {
                            json_buf.push_str(d["partial_json"].as_str().unwrap())
                        }
                        other => panic!("unknown delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let index = data["index"].as_u64().unwrap() as usize;
                    assert_eq!(Some(index), open);
                    if msg["content"][index]["type"] == "tool_use" {
                        msg["content"][index]["input"] = serde_json::from_str(&json_buf).unwrap();
                    }
                    open = None;
                }
                "message_delta" => {
                    assert!(open.is_none());
                    msg["stop_reason"] = data["delta"]["stop_reason"].clone();
                    msg["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                    for (k, v) in data["usage"].as_object().unwrap() {
                        msg["usage"][k] = v.clone();
                    }
                }
                other => panic!("unexpected event {other}"),
            }
        }
        msg
    }

    #[tokio::test]
    async fn echo_non_streaming_and_streaming_agree() {
        let mock = server().await;
        let body = user("Hello   there world [[mock:cached 3]]");
        let r = post(&mock, &body).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["request-id"]
                .to_str()
                .unwrap()
                .starts_with("req_mock")
        );
        let v = body_json(r).await;
        assert!(v["id"].as_str().unwrap().starts_with("msg_mock"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(
            v["content"],
            json!([{"type": "text", "text": "Hello   there world"}])
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["stop_sequence"], Value::Null);
        // "be brief" + 5 words (the directive counts) + 1 = 8 prompt tokens, 3 of them cached.
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3, "output_tokens": 3})
        );

        let evs = events(post(&mock, &streaming(body)).await).await;
        assert_eq!(evs[1].0, "ping");
        assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 5);
        let text_deltas = evs
            .iter()
            .filter(|(_, d)| d["delta"]["type"] == "text_delta")
            .count();
        assert!(text_deltas >= 3);
        let msg = accumulate(&evs);
        assert_eq!(msg["content"], v["content"]);
        assert_eq!(msg["stop_reason"], "end_turn");
        assert_eq!(msg["usage"], v["usage"]);
    }

    #[tokio::test]
    async fn tools_thinking_and_images() {
        let mock = server().await;
        let body = json!({"model": "claude-haiku-4-5-20251001", "max_tokens": 100, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "text", "text": r#"go [[mock:reasoning I should call it]] [[mock:tool get_weather {"city":"Paris"}]] [[mock:tool_whole now]]"#},
        ]}]});
        let v = body_json(post(&mock, &body).await).await;
        assert_eq!(v["stop_reason"], "tool_use");
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 3);
        assert_eq!(content[0]["type"], "thinking");
        assert_eq!(content[0]["thinking"], "I should call it");
        assert!(!content[0]["signature"].as_str().unwrap().is_empty());
        assert_eq!(content[1]["type"], "tool_use");
        assert!(content[1]["id"].as_str().unwrap().starts_with("toolu_mock"));
        assert_eq!(content[1]["input"], json!({"city": "Paris"}));
        assert_eq!(content[2]["name"], "now");
        assert_eq!(content[2]["input"], json!({}));

        let evs = events(post(&mock, &streaming(body.clone())).await).await;
        let msg = accumulate(&evs);
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(msg["content"][0]["thinking"], "I should call it");
        assert!(!msg["content"][0]["signature"].as_str().unwrap().is_empty());
        assert_eq!(msg["content"][1]["input"], json!({"city": "Paris"}));
        assert_eq!(msg["content"][2]["input"], json!({}));
        let weather_deltas = evs
            .iter()
            .filter(|(_, d)| d["index"] == 1 && d["delta"]["type"] == "input_json_delta")
            .count();
        assert!(weather_deltas >= 3);
        let now_deltas = evs
            .iter()
            .filter(|(_, d)| d["index"] == 2 && d["delta"]["type"] == "input_json_delta")
            .count();
        assert_eq!(now_deltas, 1);

        let mut img = body.clone();
        img["messages"][0]["content"][1]["text"] = json!("what is it");
        img["messages"][0]["content"].as_array_mut().unwrap().push(
            json!({"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}),
        );
        let v = body_json(post(&mock, &img).await).await;
        assert_eq!(
            v["content"][0]["text"],
            "what is it [image: image/png] [image: https://x.test/a.jpg]"
        );
    }

    #[tokio::test]
    async fn tool_results_finish_and_count_tokens() {
        let mock = server().await;
        let body = json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "messages": [
            {"role": "user", "content": "go [[mock:tool a {}]] [[mock:tool b {}]]"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "a", "input": {}},
                {"type": "tool_use", "id": "toolu_2", "name": "b", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "boom"}], "is_error": true}]},
        ]});
        let v = body_json(post(&mock, &body).await).await;
        assert_eq!(
            v["content"][0]["text"],
            "tool said: 15 degrees | [tool error] boom"
        );
        assert_eq!(v["stop_reason"], "end_turn");

        for (reason, expected) in [
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
            ("stop", "end_turn"),
        ] {
            let v =
                body_json(post(&mock, &user(&format!("x [[mock:finish {reason}]]"))).await).await;
            assert_eq!(v["stop_reason"], expected);
        }

        let r = post_to(
            &mock,
            "/v1/messages/count_tokens?beta=true",
            &json!({
            "model": "claude-sonnet-4-5-20250929", "system": "a b",
            "messages": [{"role": "user", "content": "one two three [[mock:error 500]]"}]}),
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(body_json(r).await, json!({"input_tokens": 8}));
    }

    #[tokio::test]
    async fn errors() {
        let mock = server().await;
        let url = format!("{}/v1/messages", mock.base_url());
        let raw = serde_json::to_vec(&user("hi")).unwrap();
        let r = client()
            .post(&url)
            .header("anthropic-version", "2023-06-01")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(body_json(r).await["error"]["type"], "authentication_error");
        let r = client()
            .post(&url)
            .header("anthropic-version", "2023-06-01")
            .header("x-api-key", "bad-key")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = client()
            .post(&url)
            .header("anthropic-version", "2026-10-21")
            .bearer_auth("sk-ant")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client()
            .post(&url)
            .header("x-api-key", "k")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);

        let mut no_max = user("hi");
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(post(&mock, &no_max).await.status(), 400);

        for (status, ty) in [
            (429, "rate_limit_error"),
            (529, "overloaded_error"),
            (500, "api_error"),
            (400, "invalid_request_error"),
            (404, "not_found_error"),
        ] {
            let r = post(
                &mock,
                &streaming(user(&format!("[[mock:error {status} retry_after=2]]"))),
            )
            .await;
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()["retry-after"], "2");
            let v = body_json(r).await;
            assert_eq!(
                v,
                json!({"type": "error", "error": {"type": ty, "message": format!("mock error {status}")}})
            );
        }
        let r = post(&mock, &user("[[mock:error 400 type=billing_error]]")).await;
        assert_eq!(body_json(r).await["error"]["type"], "billing_error");

        let prompt = "hi [[mock:fail_first 1 529 anthropic-ff-test]]";
        assert_eq!(post(&mock, &user(prompt)).await.status(), 529);
        assert_eq!(post(&mock, &user(prompt)).await.status(), 200);
        assert_eq!(post(&mock, &user(prompt)).await.status(), 200);
    }

    #[tokio::test]
    async fn stream_failures() {
        let mock = server().await;
        let mut r = post(&mock, &streaming(user("alpha beta gamma [[mock:cut]]"))).await;
        assert_eq!(r.status(), 200);
        let mut got = Vec::new();
        loop {
            match r.chunk().await {
                Ok(Some(c)) => got.extend_from_slice(&c),
                Ok(None) => panic!("stream ended cleanly"),
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains("message_start") && text.contains("alpha"),
            "{text}"
        );
        assert!(!text.contains("message_stop"));

        let evs = events(
            post(
                &mock,
                &streaming(user("alpha beta gamma [[mock:stream_error]]")),
            )
            .await,
        )
        .await;
        let (name, data) = evs.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "overloaded_error");
        assert!(evs.iter().any(|(_, d)| d["delta"]["text"] == "alpha "));
        assert!(!evs.iter().any(|(n, _)| n == "message_stop"));

        let start = Instant::now();
        let mut r = post(
            &mock,
            &streaming(user("alpha beta gamma [[mock:stall 300]]")),
        )
        .await;
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("alpha") {
            got.extend_from_slice(&r.chunk().await.unwrap().unwrap());
        }
        assert!(start.elapsed() < Duration::from_millis(250));
        while let Some(c) = r.chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        assert!(start.elapsed() >= Duration::from_millis(280));
        assert!(String::from_utf8_lossy(&got).contains("message_stop"));

        let start = Instant::now();
        let r = post(&mock, &user("slow [[mock:delay 200]]")).await;
        assert_eq!(r.status(), 200);
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
