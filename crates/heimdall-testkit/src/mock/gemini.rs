//! Google's dialects: the Gemini API (`/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent?alt=sse`, `GET /v1beta/models`, key in `x-goog-api-key`), Vertex AI
//! (`/v1/projects/{p}/locations/{l}/publishers/google|anthropic/models/{model}:{method}`,
//! `Authorization: Bearer`), and the OAuth2 token endpoint of the service-account flow
//! (`POST /token`), which verifies the JWT against the test account's public key.
//!
//! Like the real services, the Gemini API answers a bad key with 400 `INVALID_ARGUMENT` (and a
//! missing one with 403), Vertex rejects `id` on function calls and responses, and Claude on
//! Vertex wants `anthropic_version: vertex-2023-10-16` and no `model` in the body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use serde_json::{Map, Value, json};

use super::directives::{Directives, ErrorDirective};
use super::faults::{AnswerFaults, NEEDS_RAW_FRONT, StreamFrames, body_response, script_stream};
use super::reply::{Plan, Turn, count_words, text_chunks};
use super::{
    Shared, Step, anthropic, cut_json_response, directives, json_response, scripted_failure,
    sse_response, status_code, unix_now, with_retry_after, with_retry_after_ms,
};
use crate::fixtures::{SERVICE_ACCOUNT_EMAIL, SERVICE_ACCOUNT_PUBLIC_KEY};

/// Lifetime of the tokens `/token` grants, in seconds.
pub const TOKEN_LIFETIME_S: u64 = 3600;

/// Numbers the tokens `/token` grants (`ya29.mock-N`), process-wide.
static TOKENS: AtomicU64 = AtomicU64::new(1);

/// Google's error document: `{"error":{"code","message","status"}}`.
fn google_error(status: u16, google_status: &str, message: &str) -> Response {
    json_response(
        status_code(status),
        &json!({"error": {"code": status, "message": message, "status": google_status}}),
    )
}

fn google_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

fn invalid(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

fn scripted_error(e: &ErrorDirective, huge: bool) -> Response {
    let status = e
        .error_type
        .as_deref()
        .unwrap_or_else(|| google_status(e.status));
    let message = if huge {
        super::faults::HUGE_MARKER.to_owned()
    } else {
        format!("mock error {}", e.status)
    };
    let resp = with_retry_after(google_error(e.status, status, &message), e.retry_after);
    with_retry_after_ms(resp, e.retry_after_ms)
}

/// The key a Gemini API request carries: `x-goog-api-key`, or `?key=`.
fn api_key<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    let from_query = uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("key=")));
    headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or(from_query)
        .filter(|k| !k.trim().is_empty())
}

/// Missing key → 403, `bad-key` → 400 `API_KEY_INVALID`, as Google answers them.
fn check_api_key(headers: &HeaderMap, uri: &Uri) -> Option<Response> {
    match api_key(headers, uri) {
        None => Some(google_error(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )),
        Some("bad-key") => Some(invalid("API key not valid. Please pass a valid API key.")),
        Some(_) => None,
    }
}

/// The token a Vertex request carries: `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Missing or `bad-key` → 401 `UNAUTHENTICATED`.
fn check_bearer(headers: &HeaderMap) -> Option<Response> {
    match bearer(headers) {
        None | Some("bad-key") => Some(google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )),
        Some(_) => None,
    }
}

const MODELS: [(&str, &str, &[&str]); 3] = [
    (
        "gemini-2.5-flash",
        "Gemini 2.5 Flash",
        &["generateContent", "countTokens"],
    ),
    (
        "gemini-2.5-pro",
        "Gemini 2.5 Pro",
        &["generateContent", "countTokens"],
    ),
    (
        "text-embedding-004",
        "Text Embedding 004",
        &["embedContent"],
    ),
];

/// `GET /v1beta/models`.
pub(super) async fn list_models(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    s.intake(&method, &uri, &headers, &[]);
    s.latency().await;
    if let Some(resp) = check_api_key(&headers, &uri) {
        return resp;
    }
    let models: Vec<Value> = MODELS
        .iter()
        .map(|(id, name, methods)| {
            json!({"name": format!("models/{id}"), "displayName": name, "supportedGenerationMethods": methods})
        })
        .collect();
    json_response(StatusCode::OK, &json!({"models": models}))
}

/// `POST /v1beta/models/{model}:{method}`.
pub(super) async fn generate(
    State(s): State<Arc<Shared>>,
    Path(call): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    if let Some(resp) = check_api_key(&headers, &uri) {
        return resp;
    }
    gemini_call(&s, &call, &uri, &req, api_key(&headers, &uri), false).await
}

/// `POST /v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}`.
pub(super) async fn vertex(
    State(s): State<Arc<Shared>>,
    Path((_project, _location, publisher, call)): Path<(String, String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    if let Some(resp) = check_bearer(&headers) {
        return resp;
    }
    let token = bearer(&headers);
    match publisher.as_str() {
        "google" => gemini_call(&s, &call, &uri, &req, token, true).await,
        "anthropic" => claude_call(&s, &call, &req, token).await,
        other => google_error(
            404,
            "NOT_FOUND",
            &format!("Publisher Model `publishers/{other}/models/{call}` not found."),
        ),
    }
}

/// Claude on Vertex: Anthropic's dialect, with the model in the URL.
async fn claude_call(s: &Shared, call: &str, req: &Value, token: Option<&str>) -> Response {
    let (model, action) = call.split_once(':').unwrap_or((call, ""));
    if !req.is_object() {
        return anthropic::bad_request("the request body is not a JSON object");
    }
    match (model, action) {
        ("count-tokens", "rawPredict") => {
            if req.get("model").and_then(Value::as_str).is_none() {
                return anthropic::bad_request("model: Field required");
            }
            anthropic::count(s, req)
        }
        (_, "rawPredict" | "streamRawPredict") => {
            if req.get("anthropic_version").and_then(Value::as_str) != Some("vertex-2023-10-16") {
                return anthropic::bad_request(
                    "anthropic_version: Input should be 'vertex-2023-10-16'",
                );
            }
            if req.get("model").is_some() {
                return anthropic::bad_request("model: Extra inputs are not permitted");
            }
            let streaming = req.get("stream").and_then(Value::as_bool) == Some(true);
            if streaming != (action == "streamRawPredict") {
                return anthropic::bad_request("mock: `stream` does not match the method");
            }
            anthropic::respond(s, req, model, token).await
        }
        _ => google_error(404, "NOT_FOUND", &format!("mock: no method `{action}`")),
    }
}

/// A Gemini call carrying `key` (an API key, or a Vertex token).
async fn gemini_call(
    s: &Shared,
    call: &str,
    uri: &Uri,
    req: &Value,
    key: Option<&str>,
    vertex: bool,
) -> Response {
    let Some((model, action)) = call.split_once(':') else {
        return google_error(404, "NOT_FOUND", &format!("mock: no method in `{call}`"));
    };
    let stream = match action {
        "countTokens" => return count_tokens(req, vertex),
        "embedContent" => return super::embeddings::gemini(model, req),
        "generateContent" => false,
        "streamGenerateContent" => {
            if !uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"))
            {
                return invalid(
                    "mock: streamGenerateContent without alt=sse streams a JSON array, which the mock does not speak",
                );
            }
            true
        }
        other => return google_error(404, "NOT_FOUND", &format!("mock: no method `{other}`")),
    };
    let contents = match validate(req, vertex) {
        Ok(c) => c,
        Err(message) => return invalid(&message),
    };
    let turn = extract_turn(req.get("systemInstruction"), contents);
    let (d, remaining) = match directives::parse(&turn.directive_text) {
        Ok(parsed) => parsed,
        Err(e) => return invalid(&e.to_string()),
    };
    if d.connection.is_some() && !s.raw_front {
        return invalid(NEEDS_RAW_FRONT);
    }
    let answer_faults = AnswerFaults::of(&d);
    let resp = answer(s, model, key, stream, turn, d, remaining).await;
    answer_faults.apply(resp).await
}

/// `countTokens`: the words of every text part and of the system instruction. The Gemini API
/// takes the request as `generateContentRequest` (with `models/{model}`) or bare `contents`;
/// Vertex takes the request's fields as they are.
fn count_tokens(req: &Value, vertex: bool) -> Response {
    let inner = match req.get("generateContentRequest") {
        Some(_) if vertex => {
            return invalid(
                "Invalid JSON payload received. Unknown name \"generateContentRequest\": Cannot find field.",
            );
        }
        Some(generate) => {
            if !generate
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("models/"))
            {
                return invalid("generateContentRequest.model: must be `models/{model}`");
            }
            generate
        }
        None => req,
    };
    let Some(contents) = inner.get("contents").and_then(Value::as_array) else {
        return invalid("contents: required");
    };
    let words = |parts: Option<&Value>| -> u64 {
        parts
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(|t| t.split_whitespace().count() as u64)
            .sum()
    };
    let total = contents.iter().map(|c| words(c.get("parts"))).sum::<u64>()
        + words(inner.get("systemInstruction").and_then(|s| s.get("parts")));
    json_response(status_code(200), &json!({ "totalTokens": total }))
}

/// What Google checks before answering; the contents on success.
fn validate(req: &Value, vertex: bool) -> Result<&[Value], String> {
    let Some(obj) = req.as_object() else {
        return Err("Invalid JSON payload received.".into());
    };
    for foreign in ["model", "messages", "max_tokens", "stream"] {
        if obj.contains_key(foreign) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{foreign}\": Cannot find field."
            ));
        }
    }
    let contents = obj
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    for (i, content) in contents.iter().enumerate() {
        let role = content
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "Please use a valid role: user, model. (contents[{i}].role: {role})"
            ));
        }
        let parts = content
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            ))?;
        for (j, part) in parts.iter().enumerate() {
            for (field, name) in [
                ("functionCall", "function_call"),
                ("functionResponse", "function_response"),
            ] {
                if vertex && part.get(field).and_then(|f| f.get("id")).is_some() {
                    return Err(format!(
                        "Invalid JSON payload received. Unknown name \"id\" at 'contents[{i}].parts[{j}].{name}': Cannot find field."
                    ));
                }
            }
        }
    }
    Ok(contents)
}

fn parts_of(content: Option<&Value>) -> &[Value] {
    content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text_of(part: &Value) -> Option<&str> {
    part.get("text").and_then(Value::as_str)
}

fn extract_turn(system: Option<&Value>, contents: &[Value]) -> Turn {
    let mut words: u64 = parts_of(system)
        .iter()
        .filter_map(text_of)
        .map(count_words)
        .sum();
    for c in contents {
        for p in parts_of(Some(c)) {
            if p.get("thought").and_then(Value::as_bool) != Some(true) {
                words += text_of(p).map_or(0, count_words);
            }
        }
    }
    let mut turn = Turn {
        prompt_tokens: words + 1,
        ..Turn::default()
    };
    let Some(last_user) = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
    else {
        return turn;
    };
    let mut texts = Vec::new();
    for p in parts_of(Some(last_user)) {
        if let Some(t) = text_of(p) {
            texts.push(t);
        } else if let Some(data) = p.get("inlineData") {
            let mime = data.get("mimeType").and_then(Value::as_str);
            turn.images.push(mime.unwrap_or("unknown").to_owned());
        } else if let Some(r) = p.get("functionResponse").and_then(|f| f.get("response")) {
            let show = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            turn.tool_results
                .push(match (r.get("result"), r.get("error")) {
                    (_, Some(e)) => format!("[tool error] {}", show(e)),
                    (Some(v), None) => show(v),
                    (None, None) => show(r),
                });
        }
    }
    turn.directive_text = texts.join("\n");
    turn
}

fn usage_json(plan: &Plan) -> Value {
    let thoughts = plan.reasoning.as_deref().map_or(0, count_words);
    let mut u = json!({
        "promptTokenCount": plan.prompt_tokens,
        "candidatesTokenCount": plan.output_tokens.saturating_sub(thoughts).max(1),
        "totalTokenCount": plan.prompt_tokens + plan.output_tokens,
    });
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    if plan.cached > 0 {
        u["cachedContentTokenCount"] = json!(plan.cached);
    }
    u
}

/// The parts of the whole answer: thoughts, text, calls. The signature goes on the first call,
/// or on the text when the turn thought but called nothing.
fn parts(plan: &Plan, signature: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(r) = &plan.reasoning {
        out.push(json!({"text": r, "thought": true}));
    }
    if let Some(t) = &plan.text {
        let mut part = json!({"text": t});
        if plan.reasoning.is_some() && plan.tools.is_empty() {
            part["thoughtSignature"] = json!(signature);
        }
        out.push(part);
    }
    for (i, tool) in plan.tools.iter().enumerate() {
        let mut part = json!({"functionCall": {"name": tool.name, "args": tool.input}});
        if i == 0 {
            part["thoughtSignature"] = json!(signature);
        }
        out.push(part);
    }
    out
}

fn response_json(plan: &Plan, model: &str, id: &str, signature: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts(plan, signature)},
            "finishReason": plan.gemini_finish_reason(),
            "index": 0,
        }],
        "usageMetadata": usage_json(plan),
        "modelVersion": model,
        "responseId": id,
    })
}

fn chunk(parts: Vec<Value>, finish: Option<(&str, Value)>) -> Step {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    let mut body = Map::new();
    if let Some((reason, usage)) = finish {
        candidate["finishReason"] = json!(reason);
        body.insert("usageMetadata".into(), usage);
    }
    body.insert("candidates".into(), json!([candidate]));
    let mut buf = b"data: ".to_vec();
    buf.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
    buf.extend_from_slice(b"\n\n");
    Step::Data(Bytes::from(buf))
}

fn stream_steps(plan: &Plan, signature: &str) -> Vec<Step> {
    let mut frames = Vec::with_capacity(16);
    if let Some(r) = &plan.reasoning {
        for piece in text_chunks(r) {
            frames.push(chunk(vec![json!({"text": piece, "thought": true})], None));
        }
    }
    if let Some(t) = &plan.text {
        for piece in plan.text_pieces(t) {
            frames.push(chunk(vec![json!({"text": piece})], None));
        }
    }
    // Gemini sends each call whole, in one part.
    for (i, tool) in plan.tools.iter().enumerate() {
        let mut part = json!({"functionCall": {"name": tool.name, "args": tool.input}});
        if i == 0 {
            part["thoughtSignature"] = json!(signature);
        }
        frames.push(chunk(vec![part], None));
    }
    let mark = frames.len().min(1);
    let finish = frames.len();
    // A turn that thought but called nothing ends with its signature on an empty text part.
    let last_parts = if plan.reasoning.is_some() && plan.tools.is_empty() {
        vec![json!({"text": "", "thoughtSignature": signature})]
    } else {
        Vec::new()
    };
    frames.push(chunk(
        last_parts,
        Some((plan.gemini_finish_reason(), usage_json(plan))),
    ));
    let error_event = Step::Data(Bytes::from_static(
        b"data: {\"error\":{\"code\":500,\"message\":\"mock stream error\",\"status\":\"INTERNAL\"}}\n\n",
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
        return scripted_error(&err, d.huge.is_some());
    }
    let plan = Plan::build(turn, d, remaining);
    let id = format!("mockresp{}", s.id());
    let signature = format!("bW9ja3NpZ{}", s.id());
    if let Some(kind) = plan.body {
        return body_response(
            kind,
            || response_json(&plan, model, &id, &signature),
            || stream_steps(&plan, &signature),
            s.opts.chunk_delay,
        );
    }
    if stream {
        return sse_response(stream_steps(&plan, &signature), s.opts.chunk_delay, None);
    }
    if let Some(stall) = plan.stall {
        tokio::time::sleep(stall).await;
    }
    let body = response_json(&plan, model, &id, &signature);
    if plan.cut {
        cut_json_response(&body)
    } else {
        json_response(StatusCode::OK, &body)
    }
}

/// `POST /token`: the JWT bearer grant. The assertion must be signed by the test account's key
/// (RS256), name that account as `iss`, this endpoint as `aud`, and be current.
pub(super) async fn token(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    let refuse = |description: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_grant", "error_description": description}),
        )
    };
    let form = String::from_utf8_lossy(&body);
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    if field("grant_type") != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
        );
    }
    let Some(assertion) = field("assertion") else {
        return refuse("Missing assertion");
    };
    let claims = match verify(assertion) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let now = unix_now();
    let number = |k: &str| claims.get(k).and_then(Value::as_u64).unwrap_or(0);
    if claims.get("iss").and_then(Value::as_str) != Some(SERVICE_ACCOUNT_EMAIL) {
        return refuse("Invalid email or User ID");
    }
    if !claims
        .get("aud")
        .and_then(Value::as_str)
        .is_some_and(|a| a.ends_with("/token"))
    {
        return refuse(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    if !claims
        .get("scope")
        .and_then(Value::as_str)
        .is_some_and(|sc| sc.contains("https://www.googleapis.com/auth/cloud-platform"))
    {
        return refuse("Invalid OAuth scope or ID token audience provided.");
    }
    let (iat, exp) = (number("iat"), number("exp"));
    if iat > now + 60 || exp <= now || exp > iat + 3600 {
        return refuse(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let n = TOKENS.fetch_add(1, Ordering::Relaxed);
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"access_token": format!("ya29.mock-{n}"), "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"}),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Checks an RS256 JWT against the test account's public key; its claims on success.
fn verify(jwt: &str) -> Result<Map<String, Value>, &'static str> {
    let mut pieces = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err("Invalid JWT: not three segments");
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "Invalid JWT: bad base64")
    };
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "Invalid JWT header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: alg must be RS256");
    }
    let signed = &jwt[..jwt.len() - signature.len() - 1];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, SERVICE_ACCOUNT_PUBLIC_KEY)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "Invalid JWT Signature.")?;
    serde_json::from_slice(&decode(claims)?).map_err(|_| "Invalid JWT claims")
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn body(text: &str) -> Value {
        json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
    }

    async fn post(url: String, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = client()
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap());
        if let Some(k) = key {
            r = r.header("x-goog-api-key", k);
        }
        r.send().await.unwrap()
    }

    #[tokio::test]
    async fn gemini_api_answers_streams_and_keys() {
        let mock = server().await;
        let url = |m: &str| format!("{}/v1beta/models/gemini-2.5-flash:{m}", mock.base_url());
        let v = body_json(
            post(
                url("generateContent"),
                Some("k"),
                &body(r#"go [[mock:reasoning hmm]] [[mock:tool f {"a":1}]] [[mock:cached 1]]"#),
            )
            .await,
        )
        .await;
        let parts = &v["candidates"][0]["content"]["parts"];
        assert_eq!(parts[0], json!({"text": "hmm", "thought": true}));
        assert_eq!(
            parts[1]["functionCall"],
            json!({"name": "f", "args": {"a": 1}})
        );
        assert!(parts[1]["thoughtSignature"].is_string());
        assert_eq!(v["candidates"][0]["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 1);
        assert_eq!(v["usageMetadata"]["cachedContentTokenCount"], 1);

        let r = post(
            url("streamGenerateContent?alt=sse"),
            Some("k"),
            &body("one two three"),
        )
        .await;
        let text = r.text().await.unwrap();
        let events = sse_events(&text);
        assert!(events.len() >= 4, "{text}");
        let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert!(last["usageMetadata"]["promptTokenCount"].is_u64());

        let r = post(url("streamGenerateContent"), Some("k"), &body("x")).await;
        assert_eq!(r.status(), 400);
        let r = post(url("generateContent"), None, &body("x")).await;
        assert_eq!(r.status(), 403);
        let r = post(url("generateContent"), Some("bad-key"), &body("x")).await;
        assert_eq!(r.status(), 400);
        assert_eq!(body_json(r).await["error"]["status"], "INVALID_ARGUMENT");
        let r = post(
            url("generateContent"),
            Some("k"),
            &body("[[mock:error 429 retry_after=3]]"),
        )
        .await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        assert_eq!(body_json(r).await["error"]["status"], "RESOURCE_EXHAUSTED");
    }

    #[tokio::test]
    async fn vertex_rejects_call_ids_and_checks_claude_bodies() {
        let mock = server().await;
        let base = format!(
            "{}/v1/projects/p/locations/global/publishers",
            mock.base_url()
        );
        let send = |path: String, body: Value| {
            client()
                .post(path)
                .bearer_auth("ya29.x")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
        };
        let with_id = json!({"contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "a", "name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "ok"}}}]}]});
        let r = send(format!("{base}/google/models/g:generateContent"), with_id)
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let claude = json!({"anthropic_version": "vertex-2023-10-16", "max_tokens": 5,
                            "messages": [{"role": "user", "content": "hello"}]});
        let r = send(
            format!("{base}/anthropic/models/claude-x:rawPredict"),
            claude.clone(),
        )
        .await
        .unwrap();
        assert_eq!(body_json(r).await["content"][0]["text"], "hello");
        let mut with_model = claude;
        with_model["model"] = json!("claude-x");
        let r = send(
            format!("{base}/anthropic/models/claude-x:rawPredict"),
            with_model,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let r = client()
            .post(format!("{base}/google/models/g:generateContent"))
            .body(serde_json::to_vec(&body("x")).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }

    #[tokio::test]
    async fn token_endpoint_refuses_forged_assertions() {
        let mock = server().await;
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": SERVICE_ACCOUNT_EMAIL, "aud": "x/token", "scope": "https://www.googleapis.com/auth/cloud-platform",
                   "iat": unix_now(), "exp": unix_now() + 600})
            .to_string(),
        );
        let forged = format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
        let r = client()
            .post(format!("{}/token", mock.base_url()))
            .body(format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={forged}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            body_json(r).await,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        );
    }
}
