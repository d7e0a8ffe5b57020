//! The guard that hands a request's record over exactly once, whether the request succeeded,
//! failed, was refused before routing, or was cancelled by a client that left mid-stream.

use std::sync::Arc;
use std::time::Duration;

use heimdall_protocol::canonical::Usage;
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
        Self {
            record: RequestRecord {
                request_id: ctx.request_id.clone(),
                endpoint,
                front_door: ctx.front_door.dialect().0,
                provider: None,
                model: None,
                served_model: None,
                key_name: None,
                attempts: 0,
                stream: false,
                pass_through: false,
                usage: Usage::default(),
                stop_reason: None,
                outcome: Outcome::Cancelled,
                error_message: None,
                latency: Duration::ZERO,
            },
            admission: Admission::default(),
            ctx,
            policy,
            sink,
        }
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
        let admission = std::mem::take(&mut self.admission);
        self.policy.settle(&self.ctx, admission, &self.record);
        // The guard is being dropped: its record moves to the sink instead of being copied.
        let empty = RequestRecord {
            request_id: String::new(),
            provider: None,
            model: None,
            served_model: None,
            key_name: None,
            stop_reason: None,
            error_message: None,
            ..self.record
        };
        let record = std::mem::replace(&mut self.record, empty);
        self.sink.record(record);
    }
}
