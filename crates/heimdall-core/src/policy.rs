//! The policy seam: every request is admitted before its upstream call and settled after it,
//! refusals included. Governance (virtual keys, budgets, rate limits) plugs in here.

use std::any::Any;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use heimdall_protocol::dialect::Endpoint;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::record::RequestRecord;

/// What is about to be sent where.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub endpoint: Endpoint,
    /// The configured provider name.
    pub provider: &'a str,
    /// The model as the client named it.
    pub model: &'a str,
    pub upstream_model: &'a str,
    pub pass_through: bool,
    pub stream: bool,
    /// The request's `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Size of the client's body, for a cheap estimate of its input tokens.
    pub body_bytes: usize,
}

/// What a policy decided at admission.
#[derive(Default)]
pub struct Admission {
    /// The provider keys (by name) the request may use; `None`: any of them.
    pub keys: Option<Arc<[String]>>,
    /// Whatever the policy reserved (a budget hold, a rate-limit slot), handed back to it at
    /// settlement or release.
    pub hold: Option<Box<dyn Any + Send + Sync>>,
}

pub trait Policy: Send + Sync {
    /// The provider for `model` when it is named without a `provider/` prefix, if the policy
    /// chooses one (a virtual key's weighted providers); `None` leaves the default route.
    fn provider_for(&self, _ctx: &RequestContext, _model: &str) -> Option<String> {
        None
    }
    /// Decides before the upstream call; a refusal is answered in the front door's shape.
    fn admit<'a>(
        &'a self,
        ctx: &'a RequestContext,
        plan: Plan<'a>,
    ) -> BoxFuture<'a, Result<Admission, GatewayError>>;
    /// Called once per request when it is over, whatever the outcome (the record says what
    /// happened), also for requests refused before admission (with an empty admission).
    /// Must not block: it runs where the request ended.
    fn settle(&self, ctx: &RequestContext, admission: Admission, record: &RequestRecord);
    /// Gives back an admission unused: its model failed before answering and the request
    /// moved on to a fallback, which is admitted in turn. Must not block.
    fn release(&self, _ctx: &RequestContext, _admission: Admission) {}
}

/// Admits everything; the policy until governance exists.
pub struct AllowAll;

impl Policy for AllowAll {
    fn admit<'a>(
        &'a self,
        _ctx: &'a RequestContext,
        _plan: Plan<'a>,
    ) -> BoxFuture<'a, Result<Admission, GatewayError>> {
        Box::pin(std::future::ready(Ok(Admission::default())))
    }

    fn settle(&self, _ctx: &RequestContext, _admission: Admission, _record: &RequestRecord) {}
}
