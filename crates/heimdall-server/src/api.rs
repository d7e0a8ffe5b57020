//! The management API's request logs: `GET /api/logs` (filters, pagination, totals) and
//! `GET /api/logs/{id}` (one record with its content), read from the logs store. Each handler's
//! `#[utoipa::path]` is its part of the OpenAPI document (`crate::openapi`).

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heimdall_store::{LogEntry, LogPage, LogQuery};
use serde::Serialize;
use utoipa::ToSchema;

use crate::App;

/// Lists logs, newest first, with totals over everything that matches.
///
/// Unknown parameters are ignored.
#[utoipa::path(
    get,
    path = "/api/logs",
    tag = "logs",
    operation_id = "listLogs",
    params(
        ("providers" = Option<Vec<String>>, Query, style = Form, explode = true,
            description = "Only logs served by these providers (`openai`, `anthropic`, …): \
                repeat the parameter or separate names with commas. Also read as `provider`."),
        ("models" = Option<Vec<String>>, Query, style = Form, explode = true,
            description = "Only logs whose requested or serving model is one of these \
                (`openai/gpt-4o-mini`, `claude-sonnet-4-5`); repeated or comma-separated. \
                Also read as `model`."),
        ("status" = inline(Option<Vec<LogStatus>>), Query, style = Form, explode = true,
            description = "Only logs with one of these outcomes; repeated or comma-separated. \
                Any other value is a 400."),
        ("virtual_key" = Option<String>, Query,
            description = "Only logs of this virtual key: its id (`vk_` and 16 hex digits) or \
                the key itself, matched by its fingerprint. Also read as `virtual_key_id`."),
        ("start_time" = inline(Option<LogTime>), Query,
            description = "Only logs of requests started at or after this time, in UTC: \
                milliseconds since the Unix epoch, or RFC 3339 from 1970 on with `Z` or \
                `+00:00` (`2026-11-30T10:00:00.5Z`). Also taken: a space for the `T`, no offset \
                (read as UTC). Other offsets, and anything else, are a 400."),
        ("end_time" = inline(Option<LogTime>), Query,
            description = "Only logs of requests started at or before this time (inclusive); \
                the same forms as `start_time`."),
        ("search" = Option<String>, Query,
            description = "Case-insensitive substring of the request or answer content; blank \
                is ignored. Also read as `content_search`."),
        ("limit" = Option<u32>, Query, minimum = 0, maximum = 4_294_967_295_u64,
            description = "Logs per page: 50 when absent, otherwise clamped to 1 … 1000."),
        ("offset" = Option<u64>, Query, minimum = 0,
            maximum = 18_446_744_073_709_551_615_u64,
            description = "Matching logs to skip before the page; 0 when absent."),
    ),
    responses(
        (status = 200, description = "A page of logs, without their content", body = LogPage,
            links(("getFirstLog" = (operation_id = "getLog",
                parameters(("id" = "$response.body#/logs/0/id")),
                description = "The first log of the page, with its content")))),
        (status = 400, description = "A parameter has a value it does not take, or the logs \
            store is disabled (`logs_store.enabled` is false)", body = ApiError),
        (status = 500, description = "The logs store failed to answer", body = ApiError),
    ),
)]
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
            return api_error(
                StatusCode::BAD_REQUEST,
                ApiErrorKind::InvalidRequest,
                &message,
            );
        }
    };
    match store.logs(&query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => store_failed(&e),
    }
}

/// One log with its content.
///
/// The request and the answer as stored (without content when `client.disable_content_logging`
/// was on).
#[utoipa::path(
    get,
    path = "/api/logs/{id}",
    tag = "logs",
    operation_id = "getLog",
    params(("id" = String, Path, description = "The log's id: the `request-id` of the answer")),
    responses(
        (status = 200, description = "The log with its content", body = LogEntry),
        (status = 400, description = "The logs store is disabled (`logs_store.enabled` is \
            false)", body = ApiError),
        (status = 404, description = "No log has this id", body = ApiError),
        (status = 500, description = "The logs store failed to answer", body = ApiError),
    ),
)]
pub async fn get_log(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(store) = &app.store else {
        return no_store();
    };
    match store.log(&id).await {
        Ok(Some(entry)) => Json(entry).into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            ApiErrorKind::NotFound,
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
                    let status: LogStatus = s.parse()?;
                    q.status.push(status.as_str().to_owned());
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

/// A log's outcome, as the `status` filter takes it.
#[derive(Clone, Copy, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LogStatus {
    Success,
    /// A stream that failed midway included.
    Error,
    /// The client went away first.
    Cancelled,
}

impl LogStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for LogStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Success, Self::Error, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("status `{s}`: expected success, error or cancelled"))
    }
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
    value
        .parse::<LogTime>()
        .map(|t| t.0)
        .map_err(|e| format!("{name} `{value}`: {e}"))
}

/// A time filter's value: milliseconds since the Unix epoch, or RFC 3339 in UTC (humantime's
/// weak form, which also takes a space for the `T` and no offset). One type for reading it
/// and for its schema in the OpenAPI document.
struct LogTime(SystemTime);

impl FromStr for LogTime {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if let Ok(ms) = value.parse::<u64>() {
            return Ok(Self(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)));
        }
        humantime::parse_rfc3339_weak(value)
            .map(Self)
            .map_err(|e| format!("expected RFC 3339 or milliseconds since the epoch ({e})"))
    }
}

/// The canonical forms: every value it allows is read the same way (`format: date-time` rules
/// out impossible dates, the pattern other offsets and years before 1970); the lenient ones
/// are in the parameters' descriptions.
impl utoipa::PartialSchema for LogTime {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        let millis = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::UInt64)))
            .minimum(Some(0_u64))
            .maximum(Some(u64::MAX))
            .description(Some("Milliseconds since the Unix epoch"));
        let rfc3339 = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(
                r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|\+00:00)$",
            ))
            .description(Some("RFC 3339 in UTC, from 1970 on"));
        AnyOfBuilder::new().item(millis).item(rfc3339).into()
    }
}

impl ToSchema for LogTime {}

pub(crate) fn no_store() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        ApiErrorKind::InvalidRequest,
        "request logs are not available: logs store not configured (logs_store.enabled is false)",
    )
}

pub(crate) fn store_failed(e: &anyhow::Error) -> Response {
    tracing::error!(error = %e, "logs store query failed");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        ApiErrorKind::Api,
        "the logs store could not answer; see the gateway's log",
    )
}

/// An error answer of the admin API: the same `{"type":"error","error":{…}}` shape as the
/// inference routes. The one type both the answers and the OpenAPI document are made from.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    tag: ApiErrorTag,
    error: ApiErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ApiErrorTag {
    Error,
}

#[derive(Serialize, ToSchema)]
struct ApiErrorDetail {
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: ApiErrorKind,
    /// What went wrong, for a person; never a credential.
    message: String,
}

/// The kinds of error the admin API answers, named as Anthropic names them.
#[derive(Clone, Copy, Serialize, ToSchema)]
pub enum ApiErrorKind {
    #[serde(rename = "invalid_request_error")]
    InvalidRequest,
    #[serde(rename = "authentication_error")]
    Authentication,
    #[serde(rename = "not_found_error")]
    NotFound,
    #[serde(rename = "conflict_error")]
    Conflict,
    #[serde(rename = "rate_limit_error")]
    RateLimit,
    #[serde(rename = "api_error")]
    Api,
}

pub(crate) fn api_error(status: StatusCode, kind: ApiErrorKind, message: &str) -> Response {
    let body = ApiError {
        tag: ApiErrorTag::Error,
        error: ApiErrorDetail {
            kind,
            message: message.to_owned(),
        },
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Query pairs as the handlers take them (shared with the other query readers' tests).
    pub(crate) fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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
