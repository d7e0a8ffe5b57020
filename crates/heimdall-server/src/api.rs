//! The management API's request logs: `GET /api/logs` (filters, pagination, totals) and
//! `GET /api/logs/{id}` (one record with its content), read from the logs store.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heimdall_store::LogQuery;

use crate::App;

pub async fn list_logs(
    State(app): State<App>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(store) = &app.store else {
        return no_store();
    };
    let query = match log_query(&params) {
        Ok(q) => q,
        Err(message) => {
            return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
        }
    };
    match store.logs(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_failed(&e),
    }
}

pub async fn get_log(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(store) = &app.store else {
        return no_store();
    };
    match store.log(&id).await {
        Ok(Some(entry)) => Json(entry).into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            &format!("no log with id `{id}`"),
        ),
        Err(e) => store_failed(&e),
    }
}

/// Reads the query string: lists as repeated parameters or comma-separated
/// (`providers=openai,anthropic`), times as RFC 3339 or milliseconds since the epoch.
fn log_query(params: &[(String, String)]) -> Result<LogQuery, String> {
    let mut q = LogQuery::default();
    for (name, value) in params {
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match name.as_str() {
            "providers" | "provider" => q.providers.extend(list()),
            "models" | "model" => q.models.extend(list()),
            "status" => {
                for s in list() {
                    if !matches!(s.as_str(), "success" | "error" | "cancelled") {
                        return Err(format!(
                            "status `{s}`: expected success, error or cancelled"
                        ));
                    }
                    q.status.push(s);
                }
            }
            "virtual_key" | "virtual_key_id" => {
                q.virtual_key = Some(virtual_key_id(value.trim()));
            }
            "start_time" => q.start_time = Some(time(name, value)?),
            "end_time" => q.end_time = Some(time(name, value)?),
            "search" | "content_search" => {
                q.search = Some(value.clone()).filter(|s| !s.trim().is_empty());
            }
            "limit" => {
                let limit: u32 = number(name, value)?;
                q.limit = Some(limit.clamp(1, LogQuery::MAX_LIMIT));
            }
            "offset" => q.offset = Some(number(name, value)?),
            // Unknown parameters are ignored, as a browser's extra ones should be.
            _ => {}
        }
    }
    Ok(q)
}

/// A virtual key as records name it: its fingerprint id as given, or the fingerprint of a
/// key value, so a caller can filter with the key it has.
fn virtual_key_id(value: &str) -> String {
    if value.starts_with("vk_") && value.len() == 19 {
        value.to_owned()
    } else {
        heimdall_core::virtual_key_fingerprint(value)
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name} `{value}` is not a non-negative integer"))
}

fn time(name: &str, value: &str) -> Result<SystemTime, String> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    }
    humantime::parse_rfc3339_weak(value).map_err(|e| {
        format!("{name} `{value}`: expected RFC 3339 or milliseconds since the epoch ({e})")
    })
}

fn no_store() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "request logs are not available: logs store not configured (logs_store.enabled is false)",
    )
}

fn store_failed(e: &anyhow::Error) -> Response {
    tracing::error!(error = %e, "logs store query failed");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "api_error",
        "the logs store could not answer; see the gateway's log",
    )
}

/// The management API's errors: the same `{"type":"error","error":{…}}` shape as the
/// inference routes.
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "type": "error",
        "error": {"type": kind, "message": message},
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_lists_times_and_pages() {
        let q = log_query(&params(&[
            ("providers", "openai, anthropic"),
            ("provider", "gemini"),
            ("models", "gpt-4o-mini"),
            ("status", "error"),
            ("start_time", "2026-11-30T10:00:00Z"),
            ("end_time", "1796040000000"),
            ("search", "hello"),
            ("limit", "5000"),
            ("offset", "20"),
            ("virtual_key", "sk-bf-team"),
        ]))
        .unwrap();
        assert_eq!(q.providers, ["openai", "anthropic", "gemini"]);
        assert_eq!(q.models, ["gpt-4o-mini"]);
        assert_eq!(q.status, ["error"]);
        assert_eq!(q.limit, Some(LogQuery::MAX_LIMIT));
        assert_eq!(q.offset, Some(20));
        assert_eq!(q.search.as_deref(), Some("hello"));
        assert_eq!(
            q.virtual_key.as_deref(),
            Some(heimdall_core::virtual_key_fingerprint("sk-bf-team").as_str())
        );
        assert_eq!(
            q.end_time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_040_000_000))
        );
        assert!(q.start_time.is_some());
        for bad in [
            ("status", "maybe"),
            ("limit", "-1"),
            ("start_time", "yesterday"),
        ] {
            assert!(log_query(&params(&[bad])).is_err(), "{bad:?}");
        }
    }
}
