//! The admin API's governance routes: list, create, get, replace and delete virtual keys,
//! teams, customers, budgets and rate limits under `/api/governance/…`. Changes are checked
//! against the other entities (a key naming a missing team is refused), written to the config
//! store and applied to the running gateway before the answer; other instances pick them up
//! from the store. `GET /api/governance/virtual-keys/{id}` adds the key's usage: spent,
//! reserved, remaining and next reset of every budget and rate limit that applies to it.
//!
//! Every kind works the same way, so the handlers are generic over [`Entity`]; the
//! `governance_routes!` macro gives each kind its documented routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heimdall_core::config::{
    Budget, ConfigError, Customer, GovernanceConfig, RateLimit, Team, VIRTUAL_KEY_PREFIX,
    VirtualKey,
};
use heimdall_governance::LimitUsage;
use heimdall_store::EntityKind;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use crate::App;
use crate::api::{ApiError, ApiErrorKind, api_error};
use crate::governance::Refused;

/// A kind of governance entity.
pub trait Entity: Serialize + DeserializeOwned + Clone + Send + 'static {
    const KIND: EntityKind;
    /// As the API's messages name it.
    const NAME: &'static str;
    fn id(&self) -> Option<&str>;
    fn set_id(&mut self, id: String);
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self>;
    /// Fills what a new entity may leave out (a virtual key's value).
    fn complete(&mut self) {}
}

impl Entity for VirtualKey {
    const KIND: EntityKind = EntityKind::VirtualKey;
    const NAME: &'static str = "virtual key";
    fn id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self> {
        &mut g.virtual_keys
    }
    fn complete(&mut self) {
        if self.value.is_empty() {
            self.value = format!("{VIRTUAL_KEY_PREFIX}{}", random_hex(16));
        }
    }
}

impl Entity for Team {
    const KIND: EntityKind = EntityKind::Team;
    const NAME: &'static str = "team";
    fn id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self> {
        &mut g.teams
    }
}

impl Entity for Customer {
    const KIND: EntityKind = EntityKind::Customer;
    const NAME: &'static str = "customer";
    fn id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self> {
        &mut g.customers
    }
}

impl Entity for Budget {
    const KIND: EntityKind = EntityKind::Budget;
    const NAME: &'static str = "budget";
    fn id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn set_id(&mut self, id: String) {
        self.id = id;
    }
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self> {
        &mut g.budgets
    }
}

impl Entity for RateLimit {
    const KIND: EntityKind = EntityKind::RateLimit;
    const NAME: &'static str = "rate limit";
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn set_id(&mut self, id: String) {
        self.id = Some(id);
    }
    fn all(g: &mut GovernanceConfig) -> &mut Vec<Self> {
        &mut g.rate_limits
    }
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A page of entities of one kind.
#[derive(Serialize, ToSchema)]
pub struct Listing<T> {
    pub data: Vec<T>,
    pub count: usize,
}

/// A virtual key with the usage of every budget and rate limit that applies to it.
#[derive(Serialize, ToSchema)]
pub struct VirtualKeyView {
    pub virtual_key: VirtualKey,
    pub usage: Vec<LimitUsage>,
}

/// Reads a body as an entity: a JSON object only (serde would also take an array as a struct's
/// fields in order), answered 422 like any body that is not such an entity.
fn entity<E: Entity>(body: Value) -> Result<E, String> {
    if !body.is_object() {
        return Err(format!("a {} is a JSON object", E::NAME));
    }
    serde_json::from_value(body).map_err(|e| format!("not a {}: {e}", E::NAME))
}

fn unprocessable(message: &str) -> Response {
    api_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        ApiErrorKind::InvalidRequest,
        message,
    )
}

fn unavailable() -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        ApiErrorKind::InvalidRequest,
        "governance is not available in this server",
    )
}

fn refused<E: Entity>(e: Refused, id: &str) -> Response {
    match e {
        Refused::Invalid(ConfigError { path, message }) => api_error(
            StatusCode::BAD_REQUEST,
            ApiErrorKind::InvalidRequest,
            &format!("{path}: {message}"),
        ),
        Refused::NotFound => not_found::<E>(id),
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

fn not_found<E: Entity>(id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        ApiErrorKind::NotFound,
        &format!("no {} with id `{id}`", E::NAME),
    )
}

fn find<E: Entity>(app: &App, id: &str) -> Option<E> {
    let mut g = app.governance.as_ref()?.entities();
    E::all(&mut g).iter().find(|e| e.id() == Some(id)).cloned()
}

async fn list<E: Entity>(app: App) -> Response {
    let Some(gov) = &app.governance else {
        return unavailable();
    };
    let mut g = gov.entities();
    let data = std::mem::take(E::all(&mut g));
    Json(Listing {
        count: data.len(),
        data,
    })
    .into_response()
}

async fn get<E: Entity>(app: App, id: String) -> Response {
    if app.governance.is_none() {
        return unavailable();
    }
    match find::<E>(&app, &id) {
        Some(e) => Json(e).into_response(),
        None => not_found::<E>(&id),
    }
}

/// Creates (`create`: the id must be new) or replaces (the id must exist) one entity.
async fn put<E: Entity>(app: App, id: Option<String>, mut entity: E, create: bool) -> Response {
    let Some(gov) = &app.governance else {
        return unavailable();
    };
    let id = id
        .or_else(|| {
            entity
                .id()
                .filter(|i| !i.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| random_hex(8));
    entity.set_id(id.clone());
    if create {
        entity.complete();
    }
    let result = gov
        .put(E::KIND, |g| {
            let list = E::all(g);
            let at = list.iter().position(|e| e.id() == Some(id.as_str()));
            match (at, create) {
                (Some(_), true) => {
                    return Err(ConfigError {
                        path: "id".into(),
                        message: format!("a {} with id `{id}` exists already", E::NAME),
                    });
                }
                (None, false) => {
                    return Err(ConfigError {
                        path: "id".into(),
                        message: format!("no {} with id `{id}`", E::NAME),
                    });
                }
                (Some(i), false) => list[i] = entity.clone(),
                (None, true) => list.push(entity.clone()),
            }
            serde_json::to_value(&entity).map_err(|e| ConfigError {
                path: String::new(),
                message: e.to_string(),
            })
        })
        .await;
    match result {
        Ok(stored) if create => (StatusCode::CREATED, Json(stored)).into_response(),
        Ok(stored) => Json(stored).into_response(),
        Err(Refused::Invalid(e)) if !create && e.path == "id" => not_found::<E>(&id),
        Err(Refused::Invalid(e)) if create && e.path == "id" => {
            api_error(StatusCode::CONFLICT, ApiErrorKind::Conflict, &e.message)
        }
        Err(e) => refused::<E>(e, &id),
    }
}

async fn delete<E: Entity>(app: App, id: String) -> Response {
    let Some(gov) = &app.governance else {
        return unavailable();
    };
    let result = gov
        .delete(E::KIND, &id, |g| {
            let list = E::all(g);
            let before = list.len();
            list.retain(|e| e.id() != Some(id.as_str()));
            list.len() < before
        })
        .await;
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        // What is left would name the deleted entity.
        Err(Refused::Invalid(ConfigError { path, message })) => api_error(
            StatusCode::CONFLICT,
            ApiErrorKind::Conflict,
            &format!("{} `{id}` is still in use ({path}: {message})", E::NAME),
        ),
        Err(e) => refused::<E>(e, &id),
    }
}

/// The usage view of one virtual key.
async fn get_virtual_key_view(app: App, id: String) -> Response {
    let Some(gov) = &app.governance else {
        return unavailable();
    };
    let Some(key) = find::<VirtualKey>(&app, &id) else {
        return not_found::<VirtualKey>(&id);
    };
    match gov.policy.usage(&id).await {
        Some(Ok(usage)) => Json(VirtualKeyView {
            virtual_key: key,
            usage,
        })
        .into_response(),
        // Just deleted by another request.
        None => not_found::<VirtualKey>(&id),
        Some(Err(e)) => {
            tracing::error!(error = %e, "governance counters could not be read");
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ApiErrorKind::Api,
                "the governance counters could not be read; see the gateway's log",
            )
        }
    }
}

/// The five documented routes of one kind, as thin handlers over the generic ones.
macro_rules! governance_routes {
    (
        $module:ident, $ty:ty, $name:literal,
        collection = $collection:literal, item = $item:literal,
        ids = [$list_id:literal, $create_id:literal, $get_id:literal, $update_id:literal, $delete_id:literal],
        get = $get:path, view = $view:ty $(,)?
    ) => {
        pub mod $module {
            use super::*;

            #[utoipa::path(get, path = $collection, tag = "governance", operation_id = $list_id,
                responses((status = 200, description = concat!("Every ", $name), body = Listing<$ty>)))]
            pub async fn list(State(app): State<App>) -> Response {
                super::list::<$ty>(app).await
            }

            #[utoipa::path(post, path = $collection, tag = "governance", operation_id = $create_id,
                request_body = $ty,
                responses(
                    (status = 201, description = concat!("The ", $name, " as stored (an id is given when absent)"), body = $ty),
                    (status = 400, description = "It does not hold together with the other entities", body = ApiError),
                    (status = 409, description = "The id is taken", body = ApiError),
                    (status = 415, description = "The body is not sent as `application/json`", body = ApiError),
                    (status = 422, description = "The body is not such an entity", body = ApiError),
                    (status = 500, description = "The config store failed", body = ApiError),
                ))]
            pub async fn create(State(app): State<App>, Json(body): Json<Value>) -> Response {
                match super::entity::<$ty>(body) {
                    Ok(entity) => super::put::<$ty>(app, None, entity, true).await,
                    Err(message) => super::unprocessable(&message),
                }
            }

            #[utoipa::path(get, path = $item, tag = "governance", operation_id = $get_id,
                params(("id" = String, Path, description = "Its id")),
                responses(
                    (status = 200, description = concat!("The ", $name), body = $view),
                    (status = 404, description = "No such id", body = ApiError),
                ))]
            pub async fn get(State(app): State<App>, Path(id): Path<String>) -> Response {
                $get(app, id).await
            }

            #[utoipa::path(put, path = $item, tag = "governance", operation_id = $update_id,
                params(("id" = String, Path, description = "Its id")),
                request_body = $ty,
                responses(
                    (status = 200, description = concat!("The ", $name, " as stored"), body = $ty),
                    (status = 400, description = "It does not hold together with the other entities", body = ApiError),
                    (status = 404, description = "No such id", body = ApiError),
                    (status = 415, description = "The body is not sent as `application/json`", body = ApiError),
                    (status = 422, description = "The body is not such an entity", body = ApiError),
                    (status = 500, description = "The config store failed", body = ApiError),
                ))]
            pub async fn update(
                State(app): State<App>,
                Path(id): Path<String>,
                Json(body): Json<Value>,
            ) -> Response {
                match super::entity::<$ty>(body) {
                    Ok(entity) => super::put::<$ty>(app, Some(id), entity, false).await,
                    Err(message) => super::unprocessable(&message),
                }
            }

            #[utoipa::path(delete, path = $item, tag = "governance", operation_id = $delete_id,
                params(("id" = String, Path, description = "Its id")),
                responses(
                    (status = 204, description = "Deleted"),
                    (status = 404, description = "No such id", body = ApiError),
                    (status = 409, description = "Another entity still names it", body = ApiError),
                    (status = 500, description = "The config store failed", body = ApiError),
                ))]
            pub async fn delete(State(app): State<App>, Path(id): Path<String>) -> Response {
                super::delete::<$ty>(app, id).await
            }
        }
    };
}

governance_routes!(
    virtual_keys,
    VirtualKey,
    "virtual key",
    collection = "/api/governance/virtual-keys",
    item = "/api/governance/virtual-keys/{id}",
    ids = [
        "listVirtualKeys",
        "createVirtualKey",
        "getVirtualKey",
        "updateVirtualKey",
        "deleteVirtualKey"
    ],
    get = super::get_virtual_key_view,
    view = VirtualKeyView
);
governance_routes!(
    teams,
    Team,
    "team",
    collection = "/api/governance/teams",
    item = "/api/governance/teams/{id}",
    ids = [
        "listTeams",
        "createTeam",
        "getTeam",
        "updateTeam",
        "deleteTeam"
    ],
    get = super::get::<Team>,
    view = Team
);
governance_routes!(
    customers,
    Customer,
    "customer",
    collection = "/api/governance/customers",
    item = "/api/governance/customers/{id}",
    ids = [
        "listCustomers",
        "createCustomer",
        "getCustomer",
        "updateCustomer",
        "deleteCustomer"
    ],
    get = super::get::<Customer>,
    view = Customer
);
governance_routes!(
    budgets,
    Budget,
    "budget",
    collection = "/api/governance/budgets",
    item = "/api/governance/budgets/{id}",
    ids = [
        "listBudgets",
        "createBudget",
        "getBudget",
        "updateBudget",
        "deleteBudget"
    ],
    get = super::get::<Budget>,
    view = Budget
);
governance_routes!(
    rate_limits,
    RateLimit,
    "rate limit",
    collection = "/api/governance/rate-limits",
    item = "/api/governance/rate-limits/{id}",
    ids = [
        "listRateLimits",
        "createRateLimit",
        "getRateLimit",
        "updateRateLimit",
        "deleteRateLimit"
    ],
    get = super::get::<RateLimit>,
    view = RateLimit
);
