//! Ollama's native chat API: `POST /api/chat` (JSON, or NDJSON when `stream` is not false, as
//! Ollama defaults to streaming) and `GET /api/tags`. No key is needed; a bearer `bad-key`
//! is refused so tests can see auth errors. Directives: `tool`, `text`, `reasoning`, `finish`,
//! `error`, `fail_first`, `key_error` (on the bearer key, if one is sent), `delay`,
//! `stream_error` (an `{"error":…}` line mid-stream) and `cut` (the stream ends before its
//! `done` line).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::directives::ErrorDirective;
use super::reply::{Plan, text_chunks};
use super::{Shared, Step, directives, json_response, scripted_failure, stepped_body, unix_now};

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

fn scripted_error(e: &ErrorDirective) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = error(status, &format!("mock error {}", e.status));
    if let Some(s) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

pub(super) async fn chat(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = s.intake(&method, &uri, &headers, &body);
    s.latency().await;
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if key == Some("bad-key") {
        return error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let (Some(model), Some(messages)) = (
        req.get("model").and_then(Value::as_str),
        req.get("messages").and_then(Value::as_array),
    ) else {
        return error(StatusCode::BAD_REQUEST, "model and messages are required");
    };
    let mut turn = super::openai::extract_turn(messages);
    if let Some(last_user) = messages.iter().rev().find(|m| m["role"] == "user") {
        for image in last_user["images"].as_array().into_iter().flatten() {
            if image.as_str().is_some_and(|b| !b.is_empty()) {
                turn.images.push("base64".to_owned());
            }
        }
    }
    let (d, remaining) = match directives::parse(&turn.directive_text) {
        Ok(parsed) => parsed,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(err) = scripted_failure(&d, key).await {
        return scripted_error(&err);
    }
    let plan = Plan::build(turn, d, remaining);
    // Ollama streams unless told not to.
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(true);
    if !stream {
        let mut message =
            json!({"role": "assistant", "content": plan.text.clone().unwrap_or_default()});
        if let Some(r) = &plan.reasoning {
            message["thinking"] = json!(r);
        }
        if !plan.tools.is_empty() {
            message["tool_calls"] = tool_calls(&plan);
        }
        return json_response(StatusCode::OK, &final_line(&plan, model, message));
    }
    let line = |v: Value| {
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Step::Data(Bytes::from(b))
    };
    let chunk = |field: &str, text: &str| {
        line(json!({"model": model, "created_at": created_at(),
                    "message": {"role": "assistant", "content": "", field: text}, "done": false}))
    };
    let mut steps = Vec::new();
    if let Some(r) = &plan.reasoning {
        steps.extend(text_chunks(r).into_iter().map(|t| chunk("thinking", t)));
    }
    if let Some(t) = &plan.text {
        steps.extend(text_chunks(t).into_iter().map(|t| chunk("content", t)));
    }
    if plan.stream_error {
        steps.push(line(json!({"error": "mock stream error"})));
    } else if !plan.cut {
        if !plan.tools.is_empty() {
            steps.push(line(json!({"model": model, "created_at": created_at(),
                "message": {"role": "assistant", "content": "", "tool_calls": tool_calls(&plan)},
                "done": false})));
        }
        steps.push(line(final_line(
            &plan,
            model,
            json!({"role": "assistant", "content": ""}),
        )));
    }
    let mut resp = Response::new(stepped_body(steps, s.opts.chunk_delay));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

fn tool_calls(plan: &Plan) -> Value {
    Value::Array(
        plan.tools
            .iter()
            .map(|t| json!({"function": {"name": t.name, "arguments": t.input}}))
            .collect(),
    )
}

fn final_line(plan: &Plan, model: &str, message: Value) -> Value {
    let done_reason = match plan.finish.as_deref() {
        Some("length" | "max_tokens") => "length",
        _ => "stop",
    };
    json!({"model": model, "created_at": created_at(), "message": message, "done": true,
           "done_reason": done_reason, "prompt_eval_count": plan.prompt_tokens,
           "eval_count": plan.output_tokens})
}

fn created_at() -> String {
    format!("{}", unix_now())
}

pub(super) async fn tags() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"models": [{"name": "llama3.1:8b", "modified_at": "2026-01-01T00:00:00Z"},
                           {"name": "qwen3:4b", "modified_at": "2026-01-02T00:00:00Z"}]}),
    )
}
