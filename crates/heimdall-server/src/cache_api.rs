//! The admin API's semantic-cache routes, in Bifrost's paths: clear one entry by its id (the
//! `x-bf-cache-id` of a hit), every entry of a cache key, or everything. Entries go from
//! memory at once and from the store through its queue.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, ApiErrorKind, api_error};

/// How many entries a clear removed.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    pub cleared: u64,
}

fn cleared(n: usize, app: &App) -> Response {
    app.gateway.purge_cache();
    Json(Cleared { cleared: n as u64 }).into_response()
}

/// Removes one cached answer.
#[utoipa::path(
    delete,
    path = "/api/cache/clear/{id}",
    tag = "cache",
    operation_id = "clearCacheEntry",
    params(("id" = String, Path, description = "The entry's id: the `x-bf-cache-id` header of \
        a hit (`ce_` and 32 hex digits)")),
    responses(
        (status = 200, description = "The entry was removed", body = Cleared),
        (status = 404, description = "No entry has this id", body = ApiError),
    ),
)]
pub async fn clear_entry(State(app): State<App>, Path(id): Path<String>) -> Response {
    if app.gateway.cache().remove_id(&id) {
        cleared(1, &app)
    } else {
        api_error(
            StatusCode::NOT_FOUND,
            ApiErrorKind::NotFound,
            &format!("no cache entry with id `{id}`"),
        )
    }
}

/// Removes every cached answer stored under one cache key.
#[utoipa::path(
    delete,
    path = "/api/cache/clear-by-key/{key}",
    tag = "cache",
    operation_id = "clearCacheKey",
    params(("key" = String, Path, description = "The `x-bf-cache-key` the entries were \
        stored under")),
    responses((status = 200, description = "The key's entries were removed (possibly none)",
        body = Cleared)),
)]
pub async fn clear_key(State(app): State<App>, Path(key): Path<String>) -> Response {
    let n = app.gateway.cache().remove_key(&key);
    cleared(n, &app)
}

/// Removes every cached answer.
#[utoipa::path(
    delete,
    path = "/api/cache/clear",
    tag = "cache",
    operation_id = "clearCache",
    responses((status = 200, description = "Every entry was removed", body = Cleared)),
)]
pub async fn clear_all(State(app): State<App>) -> Response {
    let n = app.gateway.cache().clear();
    cleared(n, &app)
}
