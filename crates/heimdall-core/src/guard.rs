//! The guard that hands a request's record over exactly once, whether the request succeeded,
//! failed, was refused before routing, or was cancelled by a client that left mid-stream.

use std::sync::Arc;
use std::time::Duration;

use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::error::ErrorType;

use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::policy::{Admission, Policy};
use crate::record::{Outcome, RecordSink, RequestRecord};

/// Owns a request's record until it is over; on drop it settles the policy and hands the
/// record to the sink, so no path can skip either.
pub(crate) struct RecordGuard {
    pub record: RequestRecord,
    pub admission: Admission,
    ctx: Arc<RequestContext>,
    policy: Arc<dyn Policy>,
    sink: Arc<dyn RecordSink>,
}

impl RecordGuard {
    pub fn new(
        ctx: Arc<RequestContext>,
        endpoint: Endpoint,
        policy: Arc<dyn Policy>,
        sink: Arc<dyn RecordSink>,
    ) -> Self {
        let mut record =
            RequestRecord::new(ctx.request_id.clone(), endpoint, ctx.front_door.dialect().0);
        record.started_at = ctx.started_at;
        record.virtual_key = ctx.virtual_key_id();
        record.is_async = ctx.is_async;
        record.traceparent.clone_from(&ctx.traceparent);
        if let Some(flag) = &ctx.recorded {
            flag.raise();
        }
        Self {
            record,
            admission: Admission::default(),
            ctx,
            policy,
            sink,
        }
    }

    /// Time since the request arrived.
    pub fn since_received(&self) -> Duration {
        self.ctx.received.elapsed()
    }

    pub fn fail(&mut self, err: &GatewayError) {
        self.record.outcome = Outcome::Failed {
            status: err.status,
            kind: err.kind,
        };
        self.record.error_message = Some(err.message.clone());
    }

    pub fn stream_failed(&mut self, kind: ErrorType, message: &str) {
        self.record.outcome = Outcome::StreamError { kind };
        self.record.error_message = Some(message.to_owned());
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        self.record.latency = self.ctx.received.elapsed();
        let r = &mut self.record;
        if let Some(provider) = &r.provider {
            let model = r.served_model.as_deref().or(r.model.as_deref());
            r.cost = model.and_then(|m| self.ctx.config.pricing.cost(provider, m, &r.usage));
        }
        let admission = std::mem::take(&mut self.admission);
        self.policy.settle(&self.ctx, admission, &self.record);
        // The guard is being dropped: its record moves to the sinks instead of being copied.
        let empty = RequestRecord::new(String::new(), self.record.endpoint, self.record.front_door);
        let record = std::mem::replace(&mut self.record, empty);
        self.sink.record(&Arc::new(record));
    }
}
