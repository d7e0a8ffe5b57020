//! Amazon Bedrock's runtime API: `POST /model/{id}/converse` and `/converse-stream` (any
//! model), `/invoke` and `/invoke-with-response-stream` (Claude's Messages body with
//! `anthropic_version: bedrock-2023-05-31`). Streams are AWS event stream messages with valid
//! checksums; Claude's stream wraps each Anthropic event as `{"bytes": "<base64 JSON>"}` in a
//! `chunk` event.
//!
//! Auth: a SigV4 signature, recomputed with [`MOCK_AWS_ACCESS_KEY`] / [`MOCK_AWS_SECRET_KEY`]
//! over the request as received (a mismatch, an unknown access key or a date more than five
//! minutes off is a 403, as on AWS), or a Bedrock API key as `Authorization: Bearer` (`bad-key`
//! is refused). Errors are Bedrock's: `{"message"}` with an `x-amzn-ErrorType` header.
//! Directives: `tool`, `text`, `reasoning` (signed), `finish`, `cached`, `error`,
//! `fail_first`, `key_error` (the API key, or the SigV4 access key id), `delay`, `stall`, `cut`,
//! `stream_error` (a `throttlingException` in the stream), `eof`, `hold_open`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

use super::directives::{Directives, ErrorDirective};
use super::faults::{StreamFrames, script_stream};
use super::reply::{Plan, Turn, arg_fragments, count_words, text_chunks};
use super::{
    Shared, Step, anthropic, cut_json_response, directives, json_response, scripted_failure,
    stepped_body, with_retry_after, with_retry_after_ms,
};
use crate::eventstream;

/// The access key the mock knows; any other is refused.
pub const MOCK_AWS_ACCESS_KEY: &str = "AKIDHEIMDALLMOCK";
/// Its secret, which the mock signs with to check a request's signature.
pub const MOCK_AWS_SECRET_KEY: &str = "heimdall/mock/secret+key";

/// What Bedrock allows between a request's date and its own clock.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Bedrock's error answer: `{"message"}`, the exception name in `x-amzn-ErrorType`.
fn error(status: u16, exception: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, &json!({ "message": message }));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-amzn-errortype"), v);
    }
    resp
}

fn validation(message: &str) -> Response {
    error(400, "ValidationException", message)
}

fn exception_for(status: u16) -> &'static str {
    match status {
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        500..=599 => "InternalServerException",
        _ => "ValidationException",
    }
}

fn scripted_error(e: &ErrorDirective) -> Response {
    let exception = e
        .error_type
        .as_deref()
        .unwrap_or_else(|| exception_for(e.status));
    let resp = error(e.status, exception, &format!("mock error {}", e.status));
    with_retry_after_ms(with_retry_after(resp, e.retry_after), e.retry_after_ms)
}

// ---------------------------------------------------------------------------------------------
// Auth

/// The key a request carries: a Bedrock API key (bearer), or a SigV4 signature's access key id.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    match auth.strip_prefix("Bearer ") {
        Some(token) => Some(token.trim()),
        None => sigv4_field(auth.strip_prefix("AWS4-HMAC-SHA256 ")?, "Credential")?
            .split('/')
            .next(),
    }
}

/// The value of field `name` in a SigV4 `Authorization` header's fields.
fn sigv4_field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    fields
        .split(", ")
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
}

fn check_auth(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Some(error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        let token = token.trim();
        return (token.is_empty() || token == "bad-key").then(|| {
            error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        });
    }
    match auth.strip_prefix("AWS4-HMAC-SHA256 ") {
        Some(fields) => verify_sigv4(fields, auth, method, uri, headers, body),
        None => Some(error(
            403,
            "IncompleteSignatureException",
            "Authorization header requires a SigV4 signature or a bearer API key.",
        )),
    }
}

/// Recomputes the signature from the request as received and compares; `Some` is the 403.
fn verify_sigv4(
    fields: &str,
    auth: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let mismatch = || {
        error(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    };
    let incomplete = || {
        error(
            403,
            "IncompleteSignatureException",
            "The authorization header is incomplete.",
        )
    };
    let (Some(credential), Some(signed_headers)) = (
        sigv4_field(fields, "Credential"),
        sigv4_field(fields, "SignedHeaders"),
    ) else {
        return Some(incomplete());
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return Some(incomplete());
    };
    if *access_key != MOCK_AWS_ACCESS_KEY {
        return Some(error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if *service != "bedrock" {
        return Some(mismatch());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(time) = header("x-amz-date").and_then(parse_amz_date) else {
        return Some(incomplete());
    };
    let now = SystemTime::now();
    let skew = now
        .duration_since(time)
        .or_else(|_| time.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_CLOCK_SKEW {
        return Some(error(403, "InvalidSignatureException", "Signature expired"));
    }
    let host = header("host").unwrap_or_default();
    let url = format!(
        "http://{host}{}",
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let signed: Vec<(&str, &str)> = signed_headers
        .split(';')
        .filter_map(|name| Some((name, header(name)?)))
        .collect();
    let identity = Credentials::new(
        MOCK_AWS_ACCESS_KEY,
        MOCK_AWS_SECRET_KEY,
        header("x-amz-security-token").map(str::to_owned),
        None,
        "heimdall-mock",
    )
    .into();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
    else {
        return Some(mismatch());
    };
    let params = params.into();
    let Ok(signable) = SignableRequest::new(
        method.as_str(),
        url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    ) else {
        return Some(mismatch());
    };
    let Ok(output) = sign(signable, &params) else {
        return Some(mismatch());
    };
    let (instructions, _) = output.into_parts();
    let expected = instructions
        .headers()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_owned());
    (expected.as_deref() != Some(auth)).then(mismatch)
}

/// `YYYYMMDDTHHMMSSZ` (SigV4's `x-amz-date`) as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (proleptic Gregorian), shifted so March starts the year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// Shared front

/// Record, latency, auth, JSON object; then the directives of the turn `extract` finds.
async fn admit(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Response> {
    let req = s.intake(method, uri, headers, body);
    s.latency().await;
    if let Some(rejection) = check_auth(method, uri, headers, body) {
        return Err(rejection);
    }
    if !req.is_object() {
        return Err(validation("The request body is not a JSON object."));
    }
    Ok(req)
}

/// Directives of the turn, and a failure if they script one for a request carrying `key`.
async fn directives_of(turn: &Turn, key: Option<&str>) -> Result<(Directives, String), Response> {
    let (d, remaining) =
        directives::parse(&turn.directive_text).map_err(|e| validation(&e.to_string()))?;
    if let Some(err) = scripted_failure(&d, key).await {
        return Err(scripted_error(&err));
    }
    Ok((d, remaining))
}

fn stream_response(steps: Vec<Step>, chunk_delay: Duration) -> Response {
    let mut resp = Response::new(stepped_body(steps, chunk_delay));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    resp
}

fn message_step(bytes: Vec<u8>) -> Step {
    Step::Data(Bytes::from(bytes))
}

fn exception_step() -> Step {
    message_step(eventstream::exception(
        "throttlingException",
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    ))
}

// ---------------------------------------------------------------------------------------------
// Converse

fn block_text(b: &Value) -> Option<&str> {
    b.get("text").and_then(Value::as_str)
}

fn converse_turn(system: Option<&Value>, messages: &[Value]) -> Turn {
    let mut words = 0;
    for b in system.and_then(Value::as_array).into_iter().flatten() {
        words += block_text(b).map_or(0, count_words);
    }
    for m in messages {
        for b in m["content"].as_array().into_iter().flatten() {
            words += block_text(b).map_or(0, count_words);
            for item in b["toolResult"]["content"].as_array().into_iter().flatten() {
                words += block_text(item).map_or(0, count_words);
            }
        }
    }
    let mut turn = Turn {
        prompt_tokens: words + 1,
        ..Turn::default()
    };
    let Some(last_user) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return turn;
    };
    let mut texts = Vec::new();
    for b in last_user["content"].as_array().into_iter().flatten() {
        if let Some(t) = block_text(b) {
            texts.push(t);
        } else if let Some(result) = b.get("toolResult") {
            let text: Vec<&str> = result["content"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(block_text)
                .collect();
            let text = text.join("\n");
            turn.tool_results.push(if result["status"] == "error" {
                format!("[tool error] {text}")
            } else {
                text
            });
        } else if let Some(image) = b.get("image") {
            let format = image["format"].as_str().unwrap_or("unknown");
            turn.images.push(format!("image/{format}"));
        }
    }
    turn.directive_text = texts.join("\n");
    turn
}

/// What Bedrock's own validation refuses in a Converse body, so the gateway's translation is
/// held to it.
fn converse_shape_problem(req: &Value, messages: &[Value]) -> Option<&'static str> {
    if messages.first().is_some_and(|m| m["role"] != "user") {
        return Some("A conversation must start with a user message.");
    }
    if messages.windows(2).any(|w| w[0]["role"] == w[1]["role"]) {
        return Some("A conversation must alternate between user and assistant roles.");
    }
    let blocks = || {
        messages
            .iter()
            .flat_map(|m| m["content"].as_array().into_iter().flatten())
    };
    if blocks().any(|b| block_text(b).is_some_and(|t| t.trim().is_empty())) {
        return Some("The text field in the ContentBlock object is blank.");
    }
    let tool_blocks = blocks().any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
    if tool_blocks && req.get("toolConfig").is_none() {
        return Some(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.",
        );
    }
    None
}

fn converse_stop_reason(plan: &Plan) -> &str {
    match plan.anthropic_stop_reason() {
        "refusal" => "guardrail_intervened",
        other => other,
    }
}

fn converse_usage(plan: &Plan) -> Value {
    json!({
        "inputTokens": plan.prompt_tokens - plan.cached,
        "outputTokens": plan.output_tokens,
        "totalTokens": plan.prompt_tokens + plan.output_tokens,
        "cacheReadInputTokens": plan.cached,
        "cacheWriteInputTokens": 0,
    })
}

pub(super) async fn converse(
    state: State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    converse_route(state, method, uri, headers, body, false).await
}

pub(super) async fn converse_stream(
    state: State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    converse_route(state, method, uri, headers, body, true).await
}

async fn converse_route(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
) -> Response {
    let req = match admit(&s, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    if req.get("model").is_some() {
        return validation("extraneous key [model] is not permitted");
    }
    let Some(messages) = req["messages"].as_array().filter(|m| !m.is_empty()) else {
        return validation("The messages field is required and must not be empty.");
    };
    if let Some(problem) = converse_shape_problem(&req, messages) {
        return validation(problem);
    }
    let turn = converse_turn(req.get("system"), messages);
    let (d, remaining) = match directives_of(&turn, api_key(&headers)).await {
        Ok(parsed) => parsed,
        Err(resp) => return resp,
    };
    let plan = Plan::build(turn, d, remaining);
    let tool_ids: Vec<String> = plan
        .tools
        .iter()
        .map(|_| format!("tooluse_mock{}", s.id()))
        .collect();
    let signature = format!("mocksig{}", s.id());
    if stream {
        let steps = converse_steps(&plan, &tool_ids, &signature);
        return stream_response(steps, s.opts.chunk_delay);
    }
    if let Some(stall) = plan.stall {
        tokio::time::sleep(stall).await;
    }
    let mut content = Vec::new();
    if let Some(r) = &plan.reasoning {
        content.push(
            json!({"reasoningContent": {"reasoningText": {"text": r, "signature": signature}}}),
        );
    }
    if let Some(t) = &plan.text {
        content.push(json!({ "text": t }));
    }
    for (tool, id) in plan.tools.iter().zip(&tool_ids) {
        content.push(json!({"toolUse": {"toolUseId": id, "name": tool.name, "input": tool.input}}));
    }
    let answer = json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": converse_stop_reason(&plan),
        "usage": converse_usage(&plan),
        "metrics": {"latencyMs": 1},
    });
    if plan.cut {
        cut_json_response(&answer)
    } else {
        json_response(StatusCode::OK, &answer)
    }
}

/// Bedrock pads stream payloads with a `p` member (to hide their lengths); clients ignore it.
fn converse_event(kind: &str, mut payload: Value) -> Step {
    payload["p"] = json!("abcdefgh");
    message_step(eventstream::event(
        kind,
        &serde_json::to_vec(&payload).unwrap_or_default(),
    ))
}

fn converse_steps(plan: &Plan, tool_ids: &[String], signature: &str) -> Vec<Step> {
    let mut frames = vec![converse_event("messageStart", json!({"role": "assistant"}))];
    let mut mark = None;
    let mut index = 0;
    let delta = |index: usize, d: Value| {
        converse_event(
            "contentBlockDelta",
            json!({"contentBlockIndex": index, "delta": d}),
        )
    };
    let stop =
        |index: usize| converse_event("contentBlockStop", json!({"contentBlockIndex": index}));
    if let Some(r) = &plan.reasoning {
        for piece in text_chunks(r) {
            frames.push(delta(index, json!({"reasoningContent": {"text": piece}})));
            mark.get_or_insert(frames.len());
        }
        frames.push(delta(
            index,
            json!({"reasoningContent": {"signature": signature}}),
        ));
        frames.push(stop(index));
        index += 1;
    }
    // Text blocks get no start event on Bedrock: the first delta opens them.
    if let Some(t) = &plan.text {
        for piece in plan.text_pieces(t) {
            frames.push(delta(index, json!({ "text": piece })));
            mark.get_or_insert(frames.len());
        }
        frames.push(stop(index));
        index += 1;
    }
    for (tool, id) in plan.tools.iter().zip(tool_ids) {
        frames.push(converse_event(
            "contentBlockStart",
            json!({"contentBlockIndex": index,
                   "start": {"toolUse": {"toolUseId": id, "name": tool.name}}}),
        ));
        for frag in arg_fragments(&tool.args) {
            frames.push(delta(index, json!({"toolUse": {"input": frag}})));
            mark.get_or_insert(frames.len());
        }
        frames.push(stop(index));
        index += 1;
    }
    let mark = mark.unwrap_or(frames.len());
    let finish = frames.len();
    frames.push(converse_event(
        "messageStop",
        json!({ "stopReason": converse_stop_reason(plan) }),
    ));
    frames.push(converse_event(
        "metadata",
        json!({"usage": converse_usage(plan), "metrics": {"latencyMs": 1}}),
    ));
    script_stream(
        plan,
        StreamFrames {
            frames,
            mark,
            finish,
        },
        exception_step(),
    )
}

// ---------------------------------------------------------------------------------------------
// InvokeModel (Claude)

pub(super) async fn invoke(
    state: State<Arc<Shared>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    invoke_route(state, &model, method, uri, headers, body, false).await
}

pub(super) async fn invoke_stream(
    state: State<Arc<Shared>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    invoke_route(state, &model, method, uri, headers, body, true).await
}

/// `POST /model/{model}/count-tokens`: Claude's InvokeModel body, base64 in
/// `input.invokeModel.body`, held to the same checks as InvokeModel; answers
/// `{"inputTokens": n}` counted as the Anthropic mock counts.
pub(super) async fn count_tokens(
    State(s): State<Arc<Shared>>,
    Path(_model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use base64::Engine as _;
    let req = match admit(&s, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let Some(invoke) = req["input"]["invokeModel"]["body"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return validation("input.invokeModel.body: base64 of a JSON InvokeModel body required");
    };
    let messages = match invoke_messages(&invoke) {
        Ok(messages) => messages,
        Err(message) => return validation(&message),
    };
    let n = anthropic::prompt_words(invoke.get("system"), messages) + 1;
    json_response(StatusCode::OK, &json!({ "inputTokens": n }))
}

/// What Bedrock checks of a Claude InvokeModel body (also the one CountTokens carries): no
/// `model` or `stream`, its `anthropic_version`, `max_tokens`, and some messages.
/// The error is the validation message.
fn invoke_messages(body: &Value) -> Result<&[Value], String> {
    for key in ["model", "stream"] {
        if body.get(key).is_some() {
            return Err(format!("extraneous key [{key}] is not permitted"));
        }
    }
    if body["anthropic_version"] != "bedrock-2023-05-31" {
        return Err("anthropic_version: must be bedrock-2023-05-31".into());
    }
    if body["max_tokens"].as_u64().is_none() {
        return Err("max_tokens: field required".into());
    }
    body["messages"]
        .as_array()
        .map(Vec::as_slice)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| "messages: at least one message is required".into())
}

/// `model` is the URL's model id (decoded); the answer names it, as Bedrock does.
async fn invoke_route(
    State(s): State<Arc<Shared>>,
    model: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    stream: bool,
) -> Response {
    let req = match admit(&s, &method, &uri, &headers, &body).await {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let messages = match invoke_messages(&req) {
        Ok(messages) => messages,
        Err(message) => return validation(&message),
    };
    let turn = anthropic::extract_turn(req.get("system"), messages);
    let (d, remaining) = match directives_of(&turn, api_key(&headers)).await {
        Ok(parsed) => parsed,
        Err(resp) => return resp,
    };
    let plan = Plan::build(turn, d, remaining);
    let id = format!("msg_bdrk_mock{}", s.id());
    let tool_ids: Vec<String> = plan
        .tools
        .iter()
        .map(|_| format!("toolu_bdrk_mock{}", s.id()))
        .collect();
    let signature = format!("mocksig{}", s.id());
    if stream {
        let steps = anthropic::stream_steps(&plan, &id, model, &tool_ids, &signature);
        return stream_response(as_chunks(steps), s.opts.chunk_delay);
    }
    if let Some(stall) = plan.stall {
        tokio::time::sleep(stall).await;
    }
    let answer = anthropic::message_json(&plan, &id, model, &tool_ids, &signature);
    if plan.cut {
        cut_json_response(&answer)
    } else {
        json_response(StatusCode::OK, &answer)
    }
}

/// Wraps each Anthropic SSE event in a `chunk` message; the in-band `error` event becomes a
/// throttling exception, as Bedrock reports a failure mid-stream.
fn as_chunks(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .map(|step| {
            let Step::Data(sse) = step else {
                return step;
            };
            let text = String::from_utf8_lossy(&sse);
            let name = text.lines().find_map(|l| l.strip_prefix("event: "));
            let data = text.lines().find_map(|l| l.strip_prefix("data: "));
            match (name, data) {
                (Some("error"), _) => exception_step(),
                (_, Some(data)) => {
                    let payload = json!({"bytes": STANDARD.encode(data), "p": "abcd"});
                    message_step(eventstream::event(
                        "chunk",
                        &serde_json::to_vec(&payload).unwrap_or_default(),
                    ))
                }
                // Not an event (garbage): passed on as the raw bytes it is.
                _ => Step::Data(sse),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(
            parse_amz_date("20231114T221320Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            parse_amz_date("20000301T000000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(951_868_800))
        );
        assert_eq!(parse_amz_date("2023-11-14"), None);
    }
}
