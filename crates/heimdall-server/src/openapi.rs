//! The admin API: its routes and their OpenAPI 3.1 document (`GET /api/openapi.json`), both
//! built from the one list in [`api`], so that neither can drift from the other: a route is
//! added there as `.routes(routes!(handler))`, and its handler's `#[utoipa::path]` (path,
//! parameters, answers) is its part of the document. Every route of the list is behind
//! `client.admin_auth` (`crate::admin`), which the document states for each operation, except
//! the login itself (`POST /api/session`).

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::App;
use crate::api::ApiError;
use crate::governance_api as gov;

/// What the document says besides its paths: title, tags, the security schemes and that
/// every operation needs one of them.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Heimdall admin API",
        description = "Providers, client settings, request logs, governance, the semantic cache, metrics and this document. With `client.admin_auth` set in \
            config.json every operation needs its credentials (HTTP Basic or a bearer token, \
            whichever it configures); without it the API is open to anyone who can reach the \
            gateway's port.",
    ),
    tags(
        (name = "providers", description = "Providers, their keys (values write-only), network \
            and concurrency settings, kept in the config store"),
        (name = "settings", description = "Client settings (`client_config`), kept in the \
            config store"),
        (name = "logs", description = "Request logs from the logs store"),
        (name = "governance", description = "Virtual keys, teams, customers, budgets and \
            rate limits, kept in the config store"),
        (name = "cache", description = "The semantic cache's entries (`semantic_cache` plugin)"),
        (name = "meta", description = "Metrics and the API's own description"),
        (name = "session", description = "Browser sessions of the web UI: log in with \
            `client.admin_auth`'s credentials for a session cookie"),
    ),
    security(("basic" = []), ("bearer" = [])),
    modifiers(&SecuritySchemes),
)]
struct Document;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, scheme, description) in [
            (
                "basic",
                HttpAuthScheme::Basic,
                "`client.admin_auth` of type `basic`",
            ),
            (
                "bearer",
                HttpAuthScheme::Bearer,
                "`client.admin_auth` of type `bearer`",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(scheme)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
    }
}

/// Every admin route, and with it the document.
fn api() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(Document::openapi())
        .routes(routes!(
            crate::providers_api::list,
            crate::providers_api::create
        ))
        .routes(routes!(
            crate::providers_api::get,
            crate::providers_api::update,
            crate::providers_api::delete
        ))
        .routes(routes!(
            crate::settings_api::get,
            crate::settings_api::update
        ))
        .routes(routes!(crate::api::list_logs))
        .routes(routes!(crate::api::get_log))
        .routes(routes!(crate::ui::timeseries::timeseries))
        .routes(routes!(
            crate::ui::session::create,
            crate::ui::session::delete
        ))
        .routes(routes!(gov::virtual_keys::list, gov::virtual_keys::create))
        .routes(routes!(
            gov::virtual_keys::get,
            gov::virtual_keys::update,
            gov::virtual_keys::delete
        ))
        .routes(routes!(gov::teams::list, gov::teams::create))
        .routes(routes!(
            gov::teams::get,
            gov::teams::update,
            gov::teams::delete
        ))
        .routes(routes!(gov::customers::list, gov::customers::create))
        .routes(routes!(
            gov::customers::get,
            gov::customers::update,
            gov::customers::delete
        ))
        .routes(routes!(gov::budgets::list, gov::budgets::create))
        .routes(routes!(
            gov::budgets::get,
            gov::budgets::update,
            gov::budgets::delete
        ))
        .routes(routes!(gov::rate_limits::list, gov::rate_limits::create))
        .routes(routes!(
            gov::rate_limits::get,
            gov::rate_limits::update,
            gov::rate_limits::delete
        ))
        .routes(routes!(crate::cache_api::clear_entry))
        .routes(routes!(crate::cache_api::clear_key))
        .routes(routes!(crate::cache_api::clear_all))
        .routes(routes!(crate::metrics::render))
        .routes(routes!(openapi_json))
}

/// The admin routes, behind `client.admin_auth`.
pub fn router(app: &App) -> Router<App> {
    let (routes, _) = api().split_for_parts();
    routes.route_layer(axum::middleware::from_fn_with_state(
        app.clone(),
        crate::admin::require,
    ))
}

/// The document, with the gate's `401` added to every operation (the gate answers it for each
/// route, so no handler lists it).
fn document() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    let unauthorized = ResponseBuilder::new()
        .description(
            "Missing or wrong credentials (only with `client.admin_auth` set); \
             `WWW-Authenticate` names the scheme",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    <ApiError as utoipa::ToSchema>::name(),
                ))))
                .build(),
        )
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation
                .responses
                .responses
                .insert("401".to_owned(), RefOr::T(unauthorized.clone()));
        }
    }
    doc
}

/// Serialized once: it is the same for the life of the process.
#[allow(clippy::expect_used)] // Plain data (strings, maps, numbers) into memory: cannot fail.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(serde_json::to_vec(&document()).expect("the document serializes"))
});

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    operation_id = "getOpenApiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API",
        content_type = "application/json", body = Object)),
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_names_its_answers_and_the_schemas_they_use() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut listed: Vec<_> = paths.keys().map(String::as_str).collect();
        listed.sort_unstable();
        assert_eq!(
            listed,
            [
                "/api/cache/clear",
                "/api/cache/clear-by-key/{key}",
                "/api/cache/clear/{id}",
                "/api/config",
                "/api/governance/budgets",
                "/api/governance/budgets/{id}",
                "/api/governance/customers",
                "/api/governance/customers/{id}",
                "/api/governance/rate-limits",
                "/api/governance/rate-limits/{id}",
                "/api/governance/teams",
                "/api/governance/teams/{id}",
                "/api/governance/virtual-keys",
                "/api/governance/virtual-keys/{id}",
                "/api/logs",
                "/api/logs/timeseries",
                "/api/logs/{id}",
                "/api/openapi.json",
                "/api/providers",
                "/api/providers/{provider}",
                "/api/session",
                "/metrics"
            ]
        );
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let ok = ["200", "201", "204"]
                    .iter()
                    .any(|s| op["responses"][*s].is_object());
                assert!(ok, "{method} {path}");
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
            }
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "ApiError",
            "LogPage",
            "LogEntry",
            "LogStats",
            "Pagination",
            "VirtualKey",
            "VirtualKeyView",
            "LimitUsage",
            "Cleared",
            "Provider",
            "ProviderSection",
            "ClientConfig",
            "LogTimeSeries",
            "Bucket",
            "TopEntry",
            "Login",
            "SessionInfo",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        // Every `$ref` resolves.
        let text = doc.to_string();
        for name in text.split("\"#/components/schemas/").skip(1) {
            let name = &name[..name.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }
}
