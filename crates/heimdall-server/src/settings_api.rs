//! The admin API's client settings (`GET`/`PUT /api/config`, Bifrost's `client_config`): the
//! header allowlist and denylist, direct keys, dropping excess requests, a virtual key required
//! on inference, content logging, log retention and the largest request body. A change is
//! checked like config.json, written to the config store and applied before the answer; in a
//! change, `null` unsets a setting (its default applies), the way `DELETE` removes a provider.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use heimdall_store::ConfigKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::App;
use crate::api::ApiError;
use crate::config_service::{CLIENT_SETTINGS, Edit, set_entry};
use crate::providers_api::{bad_request, refusal, unavailable};

/// The client settings the admin API manages, with config.json's names. In a change, a field
/// left out stays as it is, and `null` unsets it: its default applies (shown in parentheses),
/// also over a value config.json sets, until the file's value of it changes. Answers carry
/// every field, never `null`.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// Which client headers go upstream (`anthropic-beta` needs the allowlist). (Both lists
    /// empty.)
    #[serde(skip_serializing_if = "Option::is_none")]
    header_filter_config: Option<HeaderFilter>,
    /// A client's own provider key is used for its request. (false)
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_direct_keys: Option<bool>,
    /// A provider whose queue is full answers 529 at once instead of waiting. (false)
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_excess_requests: Option<bool>,
    /// Inference needs a virtual key. (false)
    #[serde(skip_serializing_if = "Option::is_none")]
    enforce_auth_on_inference: Option<bool>,
    /// Request logs keep no request or answer content. (false)
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_content_logging: Option<bool>,
    /// Days request logs are kept; 0: for ever. (365)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 36500)]
    log_retention_days: Option<u64>,
    /// The largest request body taken, in MiB. (100)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 65536)]
    max_request_body_size_mb: Option<u64>,
}

/// `client.header_filter_config`: lower-case header names.
#[derive(Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct HeaderFilter {
    #[serde(default)]
    allowlist: Vec<String>,
    #[serde(default)]
    denylist: Vec<String>,
}

/// The settings, under Bifrost's `client_config`.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    client_config: ClientSettings,
}

const MIB: usize = 1024 * 1024;
const DAY: u64 = 86_400;

/// The settings that apply now.
#[utoipa::path(get, path = "/api/config", tag = "settings", operation_id = "getClientConfig",
    responses(
        (status = 200, description = "The client settings in effect", body = ClientConfig),
        (status = 400, description = "Configuration changes are not available", body = ApiError),
    ))]
pub async fn get(State(app): State<App>) -> Response {
    if app.config.is_none() {
        return unavailable();
    }
    Json(current(&app)).into_response()
}

/// Changes client settings; fields left out stay, `null` unsets one (its default applies).
#[utoipa::path(put, path = "/api/config", tag = "settings", operation_id = "updateClientConfig",
    request_body = ClientConfig,
    responses(
        (status = 200, description = "The client settings now in effect", body = ClientConfig),
        (status = 400, description = "A setting is not valid; the message names it", body = ApiError),
        (status = 415, description = "The body is not sent as `application/json`", body = ApiError),
        (status = 500, description = "The config store failed", body = ApiError),
    ))]
pub async fn update(State(app): State<App>, Json(body): Json<Value>) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let values = match changes(&body) {
        Ok(v) => v,
        Err(message) => return bad_request(&message),
    };
    let result = svc
        .change(|entries, _| {
            let mut edit = Edit::default();
            for (name, value) in &values {
                debug_assert!(CLIENT_SETTINGS.contains(&name.as_str()));
                // No value removes the entry (or, over the file's value, holds that back).
                set_entry(entries, ConfigKind::Client, name, value.as_ref(), &mut edit);
            }
            Ok((edit, ()))
        })
        .await;
    match result {
        Ok(()) => Json(current(&app)).into_response(),
        Err(e) => refusal(e, || bad_request("no such setting")),
    }
}

/// The settings a change sends, each with its value as checked, or `None` when sent as `null`
/// (unset); a refusal names the field.
fn changes(body: &Value) -> Result<Vec<(String, Option<Value>)>, String> {
    let change: ClientConfig = serde_path_to_error::deserialize(body)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    // A `null` reads as a field left out here; the body says which were sent so.
    let Ok(Value::Object(checked)) = serde_json::to_value(&change.client_config) else {
        return Err("not client settings".to_owned());
    };
    let unset = (body.get("client_config").and_then(Value::as_object))
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.is_null())
        .map(|(name, _)| (name.clone(), None));
    Ok(checked
        .into_iter()
        .map(|(name, v)| (name, Some(v)))
        .chain(unset)
        .collect())
}

/// The settings of the running configuration.
fn current(app: &App) -> ClientConfig {
    let config = app.gateway.config();
    let names =
        |list: &[axum::http::HeaderName]| list.iter().map(|n| n.as_str().to_owned()).collect();
    ClientConfig {
        client_config: ClientSettings {
            header_filter_config: Some(HeaderFilter {
                allowlist: names(config.header_rules.allowlist()),
                denylist: names(config.header_rules.denylist()),
            }),
            allow_direct_keys: Some(config.allow_direct_keys),
            drop_excess_requests: Some(config.drop_excess_requests),
            enforce_auth_on_inference: Some(config.governance.enforce_auth),
            disable_content_logging: Some(config.logging.disable_content),
            log_retention_days: Some(
                config
                    .logging
                    .retention
                    .map_or(0, |r: Duration| r.as_secs() / DAY),
            ),
            max_request_body_size_mb: Some((config.max_request_body_bytes / MIB) as u64),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_unsets_and_a_field_left_out_stays() {
        let body = json!({"client_config": {"allow_direct_keys": null, "log_retention_days": 7}});
        assert_eq!(
            changes(&body).unwrap(),
            [
                ("log_retention_days".to_owned(), Some(json!(7))),
                ("allow_direct_keys".to_owned(), None)
            ]
        );
        for (wrong, field) in [
            (json!({"allow_direct_keys": "yes"}), "allow_direct_keys"),
            (json!({"no_such_setting": null}), "no_such_setting"),
        ] {
            let e = changes(&json!({"client_config": wrong})).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
    }
}
