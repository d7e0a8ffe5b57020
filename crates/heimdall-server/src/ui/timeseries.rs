//! `GET /api/logs/timeseries`: the request logs of a time range in equal buckets (requests,
//! errors, latency percentiles, tokens, cost) with the top models and virtual keys; what the
//! web UI's dashboard draws. The SQL is the store's (`heimdall_store::timeseries`).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heimdall_store::{SeriesQuery, TimeSeries};
use serde::Serialize;
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, ApiErrorKind, api_error, no_store, store_failed};

const DAY_MS: i64 = 86_400_000;
const DEFAULT_BUCKETS: u32 = 48;
const DEFAULT_TOP: u32 = 10;

/// The series, and the names of the top virtual keys.
#[derive(Serialize, ToSchema)]
pub struct LogTimeSeries {
    #[serde(flatten)]
    series: TimeSeries,
    /// The configured name (else id) of each listed virtual key, by the id logs give it
    /// (`vk_…`); a key since deleted is not in it.
    virtual_key_names: HashMap<String, String>,
}

/// Request logs over time, in buckets.
///
/// Every bucket of the range is listed, empty ones included. Unknown parameters are ignored.
#[utoipa::path(
    get,
    path = "/api/logs/timeseries",
    tag = "logs",
    operation_id = "getLogTimeSeries",
    params(
        ("from" = Option<i64>, Query, minimum = 0, maximum = 9_223_372_036_854_775_807_i64,
            description = "Start of the range (inclusive), milliseconds since the Unix epoch; \
                default: 24 hours before `to`."),
        ("to" = Option<i64>, Query, minimum = 0, maximum = 9_223_372_036_854_775_807_i64,
            description = "End of the range (exclusive), milliseconds since the Unix epoch; \
                default: now. Must be after `from`."),
        ("buckets" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "How many equal buckets the range is cut into; default 48."),
        ("top" = Option<u32>, Query, minimum = 1, maximum = 100,
            description = "How many models and virtual keys the top lists hold; default 10."),
    ),
    responses(
        (status = 200, description = "The range's buckets and top lists", body = LogTimeSeries),
        (status = 400, description = "A parameter has a value it does not take, or the logs \
            store is disabled (`logs_store.enabled` is false)", body = ApiError),
        (status = 500, description = "The logs store failed to answer", body = ApiError),
    ),
)]
pub async fn timeseries(
    State(app): State<App>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let bad = |m: &str| api_error(StatusCode::BAD_REQUEST, ApiErrorKind::InvalidRequest, m);
    let Some(store) = &app.store else {
        return no_store();
    };
    let query = match series_query(&params, now_ms()) {
        Ok(q) => q,
        Err(message) => return bad(&message),
    };
    let series = match store.timeseries(&query).await {
        Ok(s) => s,
        Err(e) => return store_failed(&e),
    };
    let virtual_key_names = key_names(&app, &series);
    Json(LogTimeSeries {
        series,
        virtual_key_names,
    })
    .into_response()
}

/// Logs name a virtual key by the fingerprint of its value; the dashboard shows its name.
fn key_names(app: &App, series: &TimeSeries) -> HashMap<String, String> {
    let Some(governance) = &app.governance else {
        return HashMap::new();
    };
    let listed: Vec<&str> = series
        .top_virtual_keys
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    governance
        .entities()
        .virtual_keys
        .into_iter()
        .filter(|k| !k.value.is_empty())
        .filter_map(|k| {
            let id = heimdall_core::virtual_key_fingerprint(&k.value);
            let name = if k.name.is_empty() { k.id } else { k.name };
            listed.contains(&id.as_str()).then_some((id, name))
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn series_query(params: &[(String, String)], now: i64) -> Result<SeriesQuery, String> {
    let (mut from, mut to, mut buckets, mut top) = (None, None, DEFAULT_BUCKETS, DEFAULT_TOP);
    for (name, value) in params {
        let value = value.trim();
        match name.as_str() {
            "from" => from = Some(number::<i64>(name, value, 0, i64::MAX)?),
            "to" => to = Some(number::<i64>(name, value, 0, i64::MAX)?),
            "buckets" => buckets = number(name, value, 1, SeriesQuery::MAX_BUCKETS)?,
            "top" => top = number(name, value, 1, SeriesQuery::MAX_TOP)?,
            _ => {}
        }
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| to.saturating_sub(DAY_MS).max(0));
    if from >= to {
        return Err(format!("from ({from}) must be before to ({to})"));
    }
    Ok(SeriesQuery {
        from_ms: from,
        to_ms: to,
        buckets,
        top,
    })
}

fn number<T>(name: &str, value: &str, min: T, max: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "{name} `{value}` is not a whole number from {min} to {max}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::tests::params;

    #[test]
    fn reads_the_range_with_defaults_and_refuses_what_it_cannot_take() {
        let q = series_query(&[], 100 * DAY_MS).unwrap();
        assert_eq!((q.from_ms, q.to_ms), (99 * DAY_MS, 100 * DAY_MS));
        assert_eq!((q.buckets, q.top), (DEFAULT_BUCKETS, DEFAULT_TOP));
        let q = series_query(&params(&[("to", "1000"), ("buckets", "10")]), 5).unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.buckets), (0, 1000, 10));
        for bad in [
            &[("from", "10"), ("to", "10")][..],
            &[("from", "-1")],
            &[("buckets", "0")],
            &[("buckets", "1001")],
            &[("top", "x")],
            &[("to", "0")],
        ] {
            assert!(series_query(&params(bad), 1000).is_err(), "{bad:?}");
        }
    }
}
