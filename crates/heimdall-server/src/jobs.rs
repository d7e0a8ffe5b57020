//! Async inference (`x-bf-async`, as Bifrost does it on `/anthropic/v1/messages`): a request
//! submitted as a job is answered at once with an empty message whose `id` is the job id; it
//! runs in the background on this instance, and its result (the message, or the error with its
//! status) is kept in the logs store, where any instance sharing the store can read it with
//! `x-bf-async-id` until it expires.
//!
//! Jobs are leased: the instance running a job renews its lease while it runs, and any
//! instance marks a job whose lease ran out (its instance died) as failed, so no job stays
//! pending forever, and none is run twice (a job runs only where it was submitted).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use heimdall_core::{Gateway, GatewayError, Reply, RequestContext, header_text};
use heimdall_protocol::canonical::{Response, Usage};
use heimdall_protocol::dialect::{Endpoint, FrontDoor};
use heimdall_store::{Job, JobResult, JobState, NewJob, Store};
use http::HeaderMap;
use rand::Rng;
use tokio_util::task::TaskTracker;

/// Jobs one instance runs at once; past it a submission answers 529 (`overloaded_error`).
/// Each is a waiting future; the provider's own limits bound the upstream calls.
const MAX_RUNNING: usize = 10_000;
/// Attempts to store a finished job's result before giving up (the lease sweep then fails it).
const STORE_ATTEMPTS: u32 = 5;

/// What a request's `x-bf-async*` headers ask for.
pub enum AsyncRequest {
    /// No async header: an ordinary request.
    None,
    /// `x-bf-async`: run it as a job; the result lives this long after it finishes.
    Submit { ttl: Option<Duration> },
    /// `x-bf-async-id`: the state of that job.
    Poll(String),
}

impl AsyncRequest {
    /// `x-bf-async-id` wins over `x-bf-async`, whatever the body says.
    pub fn of(headers: &HeaderMap) -> Self {
        let text = |name: &str| header_text(headers, name);
        if let Some(id) = text("x-bf-async-id") {
            return Self::Poll(id.to_owned());
        }
        if text("x-bf-async").is_some() {
            // Invalid or not positive: the configured default, as Bifrost does.
            let ttl = text("x-bf-async-job-result-ttl")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s.min(365 * 86_400)));
            return Self::Submit { ttl };
        }
        Self::None
    }
}

/// The jobs this instance runs, and the store that keeps them.
pub struct AsyncJobs {
    store: Option<Store>,
    /// This process, as the owner of the jobs it runs.
    owner: String,
    /// How long a job's lease lasts; its instance renews it three times as often. A job
    /// whose instance stopped renewing is failed by a sweep after the lease ran out.
    lease: Duration,
    running: TaskTracker,
}

impl AsyncJobs {
    pub fn new(store: Option<Store>, lease: Duration) -> Arc<Self> {
        let owner = format!(
            "{}-{}",
            std::process::id(),
            heimdall_protocol::ids::base62(rand::rng().random(), 12)
        );
        Arc::new(Self {
            store,
            owner,
            lease,
            running: TaskTracker::new(),
        })
    }

    fn store(&self) -> Result<&Store, GatewayError> {
        self.store.as_ref().ok_or_else(|| {
            GatewayError::invalid_request(
                "async operations not available: logs store not configured",
            )
        })
    }

    /// Renews the leases of this instance's jobs and fails other instances' abandoned ones,
    /// until the process ends.
    pub fn spawn_lease_keeper(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let store = self.store.clone()?;
        let jobs = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(jobs.lease / 3);
            loop {
                tick.tick().await;
                let now = SystemTime::now();
                if let Err(e) = store.renew_jobs(&jobs.owner, now + jobs.lease).await {
                    tracing::warn!(error = %e, "could not renew the leases of running async jobs");
                }
                // No body: a poll writes the error in its own front door's shape.
                match store
                    .fail_abandoned_jobs(now, abandoned().status, &[])
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        jobs = n,
                        "async jobs whose gateway stopped before they finished were marked failed"
                    ),
                    Err(e) => tracing::warn!(error = %e, "could not sweep abandoned async jobs"),
                }
            }
        }))
    }

    /// Stops taking jobs and waits until those running have stored their result. After the
    /// gateway aborted its in-flight requests, running jobs store a failure at once; a job
    /// whose result could not be stored is failed by a lease sweep.
    pub async fn idle(&self) {
        self.running.close();
        self.running.wait().await;
    }

    /// Submits `body` as a job: stored as pending, started, answered with the empty message.
    pub async fn submit(
        &self,
        gateway: Arc<Gateway>,
        ctx: Arc<RequestContext>,
        body: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Bytes, GatewayError> {
        let store = self.store()?;
        let head = ctx.front_door.peek(&body, Endpoint::Messages)?;
        if head.stream {
            return Err(GatewayError::invalid_request(
                "async inference does not support streaming: send `stream: false` with `x-bf-async`",
            ));
        }
        if self.running.is_closed() {
            return Err(GatewayError::shutting_down());
        }
        if self.running.len() >= MAX_RUNNING {
            return Err(GatewayError::new(
                heimdall_protocol::error::ErrorType::OverloadedError,
                "too many async jobs are running on this gateway; retry later",
            ));
        }
        let model = head.model.to_string();
        let id = format!(
            "job_{}",
            heimdall_protocol::ids::base62(rand::rng().random(), 22)
        );
        let now = SystemTime::now();
        store
            .create_job(&NewJob {
                id: id.clone(),
                owner: self.owner.clone(),
                virtual_key: ctx.virtual_key_id(),
                model: Some(model.clone()),
                request_id: ctx.request_id.clone(),
                ttl: ttl.unwrap_or(ctx.config.logging.async_result_ttl),
                created_at: now,
                lease_until: now + self.lease,
            })
            .await
            .map_err(|e| store_error("could not store the async job", &e))?;
        let front = ctx.front_door;
        let store = store.clone();
        let job_id = id.clone();
        self.running.spawn(async move {
            let request_id = ctx.request_id.clone();
            let result = match gateway.messages(ctx, body).await {
                Ok(answered) => match answered.body {
                    Reply::Json(bytes) => JobResult {
                        state: JobState::Completed,
                        status: 200,
                        body: bytes.to_vec(),
                        completed_at: SystemTime::now(),
                    },
                    Reply::Stream(_) => failed(
                        front,
                        &GatewayError::internal("an async job was answered with a stream"),
                        &request_id,
                    ),
                },
                Err(e) => failed(front, &e, &request_id),
            };
            store_result(&store, &job_id, &result).await;
        });
        Ok(pending_message(front, &id, &model))
    }

    /// A job's state as the client sees it: the empty message while it runs, its result when
    /// done. Unknown, expired, or submitted under another virtual key: 404 (its existence is
    /// not revealed).
    pub async fn poll(&self, ctx: &RequestContext, id: &str) -> Result<(u16, Bytes), GatewayError> {
        let store = self.store()?;
        let job = store
            .job(id)
            .await
            .map_err(|e| store_error("could not read the async job", &e))?;
        let Some(job) = job.filter(|j| j.virtual_key == ctx.virtual_key_id()) else {
            return Err(GatewayError::not_found(format!(
                "async job `{id}` not found or expired"
            )));
        };
        Ok(match job {
            Job {
                state: JobState::Pending,
                model,
                ..
            } => (
                200,
                pending_message(ctx.front_door, id, model.as_deref().unwrap_or_default()),
            ),
            // Failed by a lease sweep: its instance stopped; the error is written here, in
            // the poller's front door.
            Job {
                state: JobState::Failed,
                body,
                ..
            } if body.as_ref().is_none_or(Vec::is_empty) => {
                let e = abandoned();
                let body = ctx
                    .front_door
                    .error_body(e.kind, &e.message, &ctx.request_id);
                (e.status, Bytes::from(body))
            }
            Job { status, body, .. } => {
                (status.unwrap_or(200), Bytes::from(body.unwrap_or_default()))
            }
        })
    }
}

/// The answer to a submission, and to a poll while the job runs: a message with no content.
fn pending_message(front: &dyn FrontDoor, id: &str, model: &str) -> Bytes {
    Bytes::from(front.encode_response(&Response {
        id: id.to_owned(),
        model: model.to_owned(),
        content: Vec::new(),
        stop_reason: None,
        stop_sequence: None,
        usage: Usage::default(),
    }))
}

/// A failed job's stored answer: the error as the client would have got it.
fn failed(front: &dyn FrontDoor, e: &GatewayError, request_id: &str) -> JobResult {
    let body = match &e.upstream {
        Some(upstream) => upstream.body.to_vec(),
        None => front.error_body(e.kind, &e.message, request_id),
    };
    JobResult {
        state: JobState::Failed,
        status: e.status,
        body,
        completed_at: SystemTime::now(),
    }
}

/// What a job whose instance stopped before it finished answers.
fn abandoned() -> GatewayError {
    let e = GatewayError::shutting_down();
    GatewayError {
        message: "the gateway running this async job stopped before it finished; submit it again"
            .into(),
        ..e
    }
}

async fn store_result(store: &Store, id: &str, result: &JobResult) {
    let mut wait = Duration::from_millis(50);
    for attempt in 1..=STORE_ATTEMPTS {
        match store.finish_job(id, result).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(job = id, "async job was no longer pending when it finished");
                return;
            }
            Err(e) if attempt == STORE_ATTEMPTS => {
                tracing::error!(job = id, error = %e, "could not store an async job's result");
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

fn store_error(what: &str, e: &anyhow::Error) -> GatewayError {
    tracing::error!(error = %e, "{what}");
    GatewayError::internal(format!("{what}; see the gateway's log"))
}
