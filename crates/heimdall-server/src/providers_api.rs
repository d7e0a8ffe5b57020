//! The admin API's providers: list, get, create, replace and delete a provider under
//! `/api/providers`, in config.json's layout (keys with weights and models, `network_config`,
//! `concurrency_and_buffer_size`, …). Changes go through `ConfigService`: checked like the
//! file, written to the config store and applied before the answer.
//!
//! Key values are write-only: answers carry a redacted form (`sk-…abcd` for a long value,
//! `********` for a short one; an `env.VAR` reference as it is), and so do other secrets of a
//! section (fields named like a key, secret, token, password, credential or auth). A
//! replacement that sends back a redacted value, or a key without `value`, keeps the stored
//! value of the key with the same name.
//!
//! Without a config file, the providers enabled from environment variables are listed too
//! (`"source": "env"`, their key as `env.VAR`): a replacement stores one in the config store,
//! where it then wins over the environment; a deletion is refused (409), since only unsetting
//! the variable removes it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heimdall_core::config::ConfigError;
use heimdall_store::{ConfigEntry, ConfigKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, ApiErrorKind, api_error};
use crate::config_service::{Edit, FROM_ENV, SOURCE, set_entry};
use crate::governance::Refused;

/// The JSON path of a refusal answered 409: a create of a name that is taken, a delete of a
/// provider only the environment enables.
const CONFLICT: &str = "provider";

/// A provider as config.json holds it: the documented fields; family-specific ones (Azure,
/// Vertex, Bedrock key settings) pass through as they are.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // Describes the JSON in the document; handlers keep the JSON as sent.
pub struct ProviderSection {
    #[serde(default)]
    keys: Vec<ProviderKey>,
    network_config: Option<NetworkConfig>,
    concurrency_and_buffer_size: Option<ConcurrencyAndBufferSize>,
    /// A custom provider: `base_provider_type` (the family it clones) and `allowed_requests`.
    #[schema(value_type = Option<Object>)]
    custom_provider_config: Option<Value>,
    /// `failure_threshold` and `cooldown_seconds` of each key's circuit.
    #[schema(value_type = Option<Object>)]
    circuit_breaker: Option<Value>,
    /// Models tried in order when this provider fails.
    fallbacks: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    model_fallbacks: Option<Value>,
}

/// One key of a provider.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct ProviderKey {
    /// Its name (also what a replacement matches to keep a value it does not resend).
    name: Option<String>,
    /// Write: the key, or `env.VAR`. Read: a redacted form, never the key.
    value: Option<String>,
    /// Models it serves; `["*"]` or absent: all.
    models: Option<Vec<String>>,
    /// Its share of the provider's requests (default 1).
    weight: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct NetworkConfig {
    base_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    extra_headers: Option<Value>,
    default_request_timeout_in_seconds: Option<u64>,
    max_retries: Option<u32>,
    retry_backoff_initial_ms: Option<u64>,
    retry_backoff_max_ms: Option<u64>,
    stream_idle_timeout_in_seconds: Option<u64>,
    #[schema(value_type = Option<Object>)]
    beta_header_overrides: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct ConcurrencyAndBufferSize {
    /// Upstream calls at once (default 1000).
    concurrency: Option<u64>,
    /// Calls waiting for a slot (default 5000).
    buffer_size: Option<u64>,
}

/// A provider as answered: its name, where it comes from and its section, secrets redacted.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct Provider {
    name: String,
    /// `config`: config.json or the admin API (the config store). `env`: enabled by its
    /// environment variable alone (`OPENAI_API_KEY`, …; only without a config file); a `PUT`
    /// stores it in the config store (it is `config` from then on), a `DELETE` is refused
    /// with 409 while the variable enables it. Read-only: ignored in a `PUT`.
    source: ProviderSource,
    #[serde(flatten)]
    section: ProviderSection,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // As above.
pub enum ProviderSource {
    Config,
    Env,
}

/// A provider to create: its name and section.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct NewProvider {
    /// Its name under `providers`: a provider family (`openai`, `anthropic`, …) or, with
    /// `custom_provider_config`, a name of its own; also the model prefix.
    provider: String,
    #[serde(flatten)]
    section: ProviderSection,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // As above.
pub struct ProviderList {
    providers: Vec<Provider>,
    total: usize,
}

/// The answer of an app built without the service.
pub(crate) fn unavailable() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        ApiErrorKind::InvalidRequest,
        "configuration changes are not available in this server",
    )
}

/// The answer to a refused change.
pub(crate) fn refusal(e: Refused, not_found: impl FnOnce() -> Response) -> Response {
    match e {
        Refused::Invalid(ConfigError { path, message }) if path.is_empty() => api_error(
            StatusCode::BAD_REQUEST,
            ApiErrorKind::InvalidRequest,
            &message,
        ),
        Refused::Invalid(ConfigError { path, message }) => api_error(
            StatusCode::BAD_REQUEST,
            ApiErrorKind::InvalidRequest,
            &format!("{path}: {message}"),
        ),
        Refused::NotFound => not_found(),
        Refused::Store(e) => {
            tracing::error!(error = format!("{e:#}"), "config store write failed");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiErrorKind::Api,
                "the config store could not be written; see the gateway's log",
            )
        }
    }
}

pub(crate) fn bad_request(message: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        ApiErrorKind::InvalidRequest,
        message,
    )
}

fn not_found(name: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        ApiErrorKind::NotFound,
        &format!("no provider `{name}`"),
    )
}

/// Lists the providers.
///
/// Without a config file, the providers enabled from environment variables alone are listed
/// too, with `source: env`.
#[utoipa::path(get, path = "/api/providers", tag = "providers", operation_id = "listProviders",
    responses(
        (status = 200, description = "Every provider, key values redacted", body = ProviderList),
        (status = 400, description = "Configuration changes are not available", body = ApiError),
    ))]
pub async fn list(State(app): State<App>) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let doc = svc.document().await;
    let providers: Vec<Value> = sections(&doc)
        .iter()
        .map(|(name, section)| view(name, section))
        .collect();
    Json(serde_json::json!({"total": providers.len(), "providers": providers})).into_response()
}

/// One provider.
#[utoipa::path(get, path = "/api/providers/{provider}", tag = "providers", operation_id = "getProvider",
    params(("provider" = String, Path, description = "Its name under `providers`")),
    responses(
        (status = 200, description = "The provider, key values redacted", body = Provider),
        (status = 400, description = "Configuration changes are not available", body = ApiError),
        (status = 404, description = "No such provider", body = ApiError),
    ))]
pub async fn get(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let doc = svc.document().await;
    match sections(&doc).get(&name) {
        Some(section) => Json(view(&name, section)).into_response(),
        None => not_found(&name),
    }
}

/// Adds a provider.
#[utoipa::path(post, path = "/api/providers", tag = "providers", operation_id = "createProvider",
    request_body = NewProvider,
    responses(
        (status = 201, description = "The provider as stored, key values redacted", body = Provider),
        (status = 400, description = "Not a valid provider; the message names the field", body = ApiError),
        (status = 409, description = "A provider of this name exists (one the environment \
            enables included: a `PUT` replaces that)", body = ApiError),
        (status = 415, description = "The body is not sent as `application/json`", body = ApiError),
        (status = 500, description = "The config store failed", body = ApiError),
    ))]
pub async fn create(State(app): State<App>, Json(body): Json<Value>) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let Value::Object(mut section) = body else {
        return bad_request("a provider is a JSON object");
    };
    // Read-only, as in a replacement.
    section.remove(SOURCE);
    let name = match section.remove("provider") {
        Some(Value::String(n)) => n,
        _ => return bad_request("provider: the provider's name is required (a string)"),
    };
    if let Err(message) = check_name(&name, &section) {
        return bad_request(&format!("provider: {message}"));
    }
    let section = Value::Object(section);
    let result = svc
        .change(|entries, doc| match sections(doc).get(&name) {
            Some(old) if from_env(old) => Err(conflict(format!(
                "a provider named `{name}` is enabled by {} (there is no config file); \
                     PUT /api/providers/{name} replaces its settings",
                env_var(&name)
            ))),
            Some(_) => Err(conflict(format!(
                "a provider named `{name}` exists already"
            ))),
            None => Ok((provider_edit(entries, &name, Some(&section)), ())),
        })
        .await;
    match result {
        Ok(()) => (StatusCode::CREATED, Json(view(&name, &section))).into_response(),
        Err(e) => conflict_or_refusal(e, &name),
    }
}

/// Replaces a provider's section.
///
/// A provider the environment enables (`source: env`) is stored in the config store by this,
/// and the stored one applies from then on; its key, sent back as `env.VAR` or without a
/// value, is still read from the variable.
#[utoipa::path(put, path = "/api/providers/{provider}", tag = "providers", operation_id = "updateProvider",
    params(("provider" = String, Path, description = "Its name under `providers`")),
    request_body = ProviderSection,
    responses(
        (status = 200, description = "The provider as stored, key values redacted", body = Provider),
        (status = 400, description = "Not a valid provider; the message names the field", body = ApiError),
        (status = 404, description = "No such provider", body = ApiError),
        (status = 415, description = "The body is not sent as `application/json`", body = ApiError),
        (status = 500, description = "The config store failed", body = ApiError),
    ))]
pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let Value::Object(mut section) = body else {
        return bad_request("a provider is a JSON object");
    };
    // Where it comes from is the gateway's to say; a view sent back carries it.
    section.remove(SOURCE);
    // The name is the path's; a body may repeat it as a view has it.
    for field in ["provider", "name"] {
        match section.remove(field) {
            Some(Value::String(n)) if n != name => {
                return bad_request(&format!(
                    "{field}: `{n}` differs from the provider in the path (`{name}`); a provider is renamed by creating the new one and deleting the old"
                ));
            }
            _ => {}
        }
    }
    let mut section = Value::Object(section);
    let result = svc
        .change(|entries, doc| {
            let all = sections(doc);
            let Some(old) = all.get(&name) else {
                return Err(Refused::NotFound);
            };
            keep_secrets(&mut section, old);
            Ok((provider_edit(entries, &name, Some(&section)), ()))
        })
        .await;
    match result {
        Ok(()) => Json(view(&name, &section)).into_response(),
        Err(e) => refusal(e, || not_found(&name)),
    }
}

/// Removes a provider.
///
/// Without a config file, deleting a provider stored through the API that the environment
/// also enables leaves the environment's (listed again with `source: env`).
#[utoipa::path(delete, path = "/api/providers/{provider}", tag = "providers", operation_id = "deleteProvider",
    params(("provider" = String, Path, description = "Its name under `providers`")),
    responses(
        (status = 204, description = "Deleted; requests under way finish"),
        (status = 400, description = "Something else needs it (the message says what)", body = ApiError),
        (status = 404, description = "No such provider", body = ApiError),
        (status = 409, description = "Enabled by its environment variable alone (`source: env`): \
            only unsetting the variable (and a restart) removes it", body = ApiError),
        (status = 500, description = "The config store failed", body = ApiError),
    ))]
pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> Response {
    let Some(svc) = app.config.as_deref() else {
        return unavailable();
    };
    let result = svc
        .change(|entries, doc| match sections(doc).get(&name) {
            None => Err(Refused::NotFound),
            Some(old) if from_env(old) => Err(conflict(format!(
                "`{name}` is enabled by {} (there is no config file): unset it and \
                 restart the gateway to remove the provider",
                env_var(&name)
            ))),
            Some(_) => Ok((provider_edit(entries, &name, None), ())),
        })
        .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => conflict_or_refusal(e, &name),
    }
}

fn conflict(message: String) -> Refused {
    Refused::Invalid(ConfigError {
        path: CONFLICT.into(),
        message,
    })
}

fn conflict_or_refusal(e: Refused, name: &str) -> Response {
    match e {
        Refused::Invalid(e) if e.path == CONFLICT => {
            api_error(StatusCode::CONFLICT, ApiErrorKind::Conflict, &e.message)
        }
        e => refusal(e, || not_found(name)),
    }
}

/// A section the environment alone enables (see `config_service::view`).
fn from_env(section: &Value) -> bool {
    section.get(SOURCE).and_then(Value::as_str) == Some(FROM_ENV)
}

/// The variable that enables provider `name` from the environment.
fn env_var(name: &str) -> &'static str {
    heimdall_providers::factory(name).map_or("an environment variable", |f| f.env_var)
}

/// The edit that sets provider `name`'s section to `section` (`None`: removes it).
fn provider_edit(entries: &[ConfigEntry], name: &str, section: Option<&Value>) -> Edit {
    let mut edit = Edit::default();
    set_entry(entries, ConfigKind::Provider, name, section, &mut edit);
    edit
}

fn sections(doc: &Value) -> Map<String, Value> {
    doc.get("providers")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A name the gateway can route by (it is the model prefix) and a family it knows.
fn check_name(name: &str, section: &Map<String, Value>) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(format!(
            "`{name}` is not a provider name (1 to 64 letters, digits, `-`, `_` or `.`)"
        ));
    }
    let family = section
        .get("custom_provider_config")
        .and_then(|c| c.get("base_provider_type"))
        .and_then(Value::as_str)
        .unwrap_or(name);
    if heimdall_providers::factory(family).is_none() {
        let known: Vec<_> = heimdall_providers::factories()
            .iter()
            .map(|f| f.name)
            .collect();
        return Err(format!(
            "`{family}` is not a provider family Heimdall knows ({}); a custom provider names one in custom_provider_config.base_provider_type",
            known.join(", ")
        ));
    }
    Ok(())
}

/// The provider as answered: `name`, `source` and its section with every secret redacted.
fn view(name: &str, section: &Value) -> Value {
    let mut out = section.clone();
    secrets(&mut out, None, &mut |s, _| *s = redact(s));
    let source = if from_env(section) {
        FROM_ENV
    } else {
        "config"
    };
    if let Value::Object(map) = &mut out {
        map.insert("name".into(), Value::String(name.to_owned()));
        map.insert(SOURCE.into(), Value::String(source.to_owned()));
    }
    out
}

/// What answers show of a secret: an `env.VAR` reference as it is; otherwise at most the
/// first 3 and last 4 characters of a value of 16 or more, so that at least 9 stay hidden.
fn redact(value: &str) -> String {
    if value.starts_with("env.") {
        return value.to_owned();
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 16 {
        return "********".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// In a replacement, the secrets sent back redacted (or a key's value left out) keep the
/// stored values: a client that read a provider can send it back changed elsewhere.
fn keep_secrets(section: &mut Value, old: &Value) {
    if let (Some(keys), Some(old_keys)) = (
        section.get_mut("keys").and_then(Value::as_array_mut),
        old.get("keys").and_then(Value::as_array),
    ) {
        for (i, key) in keys.iter_mut().enumerate() {
            let before = stored_key(old_keys, key, i);
            if let (Some(map), Some(before)) = (key.as_object_mut(), before)
                && !map.contains_key("value")
                && let Some(v) = before.get("value")
            {
                map.insert("value".into(), v.clone());
            }
        }
    }
    secrets(section, Some(old), &mut |s, before| {
        if let Some(before) = before
            && *s == redact(before)
        {
            *s = before.to_owned();
        }
    });
}

/// The stored key a replacement's `i`-th key stands for: the same name, else the same place
/// when neither has one.
fn stored_key<'a>(old_keys: &'a [Value], key: &Value, i: usize) -> Option<&'a Value> {
    match key.get("name") {
        Some(name) => old_keys.iter().find(|k| k.get("name") == Some(name)),
        None => old_keys.get(i).filter(|k| k.get("name").is_none()),
    }
}

/// Calls `f` on every secret string of a provider section, with the string at the same place
/// of `old` (keys matched by name).
fn secrets(section: &mut Value, old: Option<&Value>, f: &mut dyn FnMut(&mut String, Option<&str>)) {
    let Some(map) = section.as_object_mut() else {
        return;
    };
    for (field, v) in map.iter_mut() {
        let before = old.and_then(|o| o.get(field));
        if field != "keys" {
            visit(v, before, is_secret(field), f);
            continue;
        }
        let old_keys = before.and_then(Value::as_array).map(Vec::as_slice);
        for (i, key) in v.as_array_mut().into_iter().flatten().enumerate() {
            let old_key = old_keys.and_then(|ks| stored_key(ks, key, i));
            let Some(key) = key.as_object_mut() else {
                continue;
            };
            for (field, v) in key.iter_mut() {
                let before = old_key.and_then(|k| k.get(field));
                match field.as_str() {
                    "value" => visit(v, before, true, f),
                    "name" | "models" | "weight" | "id" => {}
                    _ => visit(v, before, is_secret(field), f),
                }
            }
        }
    }
}

fn visit(
    v: &mut Value,
    old: Option<&Value>,
    secret: bool,
    f: &mut dyn FnMut(&mut String, Option<&str>),
) {
    match v {
        Value::String(s) if secret => f(s, old.and_then(Value::as_str)),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                visit(item, old.and_then(|o| o.get(i)), secret, f);
            }
        }
        Value::Object(map) => {
            for (field, item) in map.iter_mut() {
                visit(item, old.and_then(|o| o.get(field)), is_secret(field), f);
            }
        }
        _ => {}
    }
}

/// A field whose name says it holds a credential (`secret_key`, `auth_credentials`,
/// `authorization`, `x-api-key`, `session_token`, `password`, …).
fn is_secret(field: &str) -> bool {
    let field = field.to_ascii_lowercase();
    ["key", "secret", "token", "password", "credential", "auth"]
        .iter()
        .any(|word| field.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_never_carry_a_secret() {
        let section = json!({
            "keys": [
                {"name": "a", "value": "sk-live-0123456789abcdef", "weight": 2},
                {"name": "b", "value": "short"},
                {"name": "c", "value": "env.OPENAI_KEY"},
                {"name": "d", "value": "x", "bedrock_key_config": {"region": "us-east-1", "secret_key": "aws-secret-0123456789"}}
            ],
            "network_config": {"extra_headers": {"authorization": "Bearer hidden-token-1234567", "x-team": "t"}}
        });
        let v = view("openai", &section);
        let text = v.to_string();
        for secret in ["0123456789abcdef", "short", "aws-secret", "hidden-token"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(v["keys"][0]["value"], "sk-…cdef");
        assert_eq!(v["keys"][1]["value"], "********");
        assert_eq!(v["keys"][2]["value"], "env.OPENAI_KEY");
        assert_eq!(v["keys"][3]["bedrock_key_config"]["region"], "us-east-1");
        assert_eq!(v["network_config"]["extra_headers"]["x-team"], "t");
        assert_eq!(v["name"], "openai");
        assert_eq!(v["source"], "config");
        let env = json!({"keys": [{"name": "OPENAI_API_KEY", "value": "env.OPENAI_API_KEY"}],
                         "source": "env"});
        assert_eq!(view("openai", &env)["source"], "env");
    }

    #[test]
    fn a_replacement_keeps_values_sent_back_redacted_or_left_out() {
        let old = json!({"keys": [
            {"name": "a", "value": "sk-live-0123456789abcdef"},
            {"name": "b", "value": "kept-by-omission"}
        ]});
        let mut new = view("x", &old);
        new["keys"][0]["weight"] = json!(3);
        new["keys"].as_array_mut().unwrap().reverse();
        new["keys"][0].as_object_mut().unwrap().remove("value");
        new["keys"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "n", "value": "sk-…cdef"}));
        keep_secrets(&mut new, &old);
        assert_eq!(new["keys"][0]["value"], "kept-by-omission");
        assert_eq!(new["keys"][1]["value"], "sk-live-0123456789abcdef");
        assert_eq!(new["keys"][1]["weight"], 3);
        // A new key's value is taken as sent.
        assert_eq!(new["keys"][2]["value"], "sk-…cdef");
    }

    #[test]
    fn names_must_route_and_families_must_exist() {
        assert!(check_name("openai", &Map::new()).is_ok());
        assert!(check_name("open/ai", &Map::new()).is_err());
        assert!(check_name("nope", &Map::new()).is_err());
        let custom = json!({"custom_provider_config": {"base_provider_type": "openai"}});
        assert!(check_name("my-llm", custom.as_object().unwrap()).is_ok());
    }
}
