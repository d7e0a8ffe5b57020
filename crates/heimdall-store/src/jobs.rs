//! Async jobs: a request submitted with `x-bf-async` runs in the background under its
//! instance's lease; its result stays readable until it expires.
//!
//! Every state change is one conditional `UPDATE` (`… WHERE state = 'pending'`), so that two
//! instances sharing a database never both finish the same job: whichever update lands first
//! wins and the other changes nothing.

use std::time::{Duration, SystemTime};

use sqlx::QueryBuilder;

use crate::{Store, duration_ms, from_millis, millis, on_engine};

/// A job to create, pending.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    /// The instance running it; it renews the lease while alive.
    pub owner: String,
    pub virtual_key: Option<String>,
    pub model: Option<String>,
    pub request_id: String,
    /// How long the result stays readable once finished.
    pub ttl: Duration,
    pub created_at: SystemTime,
    pub lease_until: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Completed,
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    pub virtual_key: Option<String>,
    pub model: Option<String>,
    pub created_at: SystemTime,
    pub completed_at: Option<SystemTime>,
    pub expires_at: Option<SystemTime>,
    /// The answer's HTTP status, once finished.
    pub status: Option<u16>,
    /// The answer's body, once finished.
    pub body: Option<Vec<u8>>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// `Completed` or `Failed`.
    pub state: JobState,
    pub status: u16,
    pub body: Vec<u8>,
    /// The job expires its stored ttl after this.
    pub completed_at: SystemTime,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    state: String,
    virtual_key: Option<String>,
    model: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
    expires_at: Option<i64>,
    status: Option<i64>,
    body: Option<Vec<u8>>,
}

impl Store {
    pub async fn create_job(&self, job: &NewJob) -> anyhow::Result<()> {
        on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new(
                "INSERT INTO async_jobs (id, owner, virtual_key, model, request_id, state, \
                 ttl_ms, created_at, lease_until) ",
            );
            q.push_values([job], |mut row, job| {
                row.push_bind(job.id.as_str())
                    .push_bind(job.owner.as_str())
                    .push_bind(job.virtual_key.as_deref())
                    .push_bind(job.model.as_deref())
                    .push_bind(job.request_id.as_str())
                    .push_bind(JobState::Pending.as_str())
                    .push_bind(duration_ms(job.ttl))
                    .push_bind(millis(job.created_at))
                    .push_bind(millis(job.lease_until));
            });
            q.build().execute(pool).await?;
        });
        Ok(())
    }

    /// The job, unless it does not exist or has expired.
    pub async fn job(&self, id: &str) -> anyhow::Result<Option<Job>> {
        let now = millis(SystemTime::now());
        let row = on_engine!(self, read, DB, pool => {
            let mut q = QueryBuilder::<DB>::new(
                "SELECT id, state, virtual_key, model, created_at, completed_at, expires_at, \
                 status, body FROM async_jobs WHERE id = ",
            );
            q.push_bind(id)
                .push(" AND (expires_at IS NULL OR expires_at > ")
                .push_bind(now)
                .push(")");
            q.build_query_as::<JobRow>().fetch_optional(pool).await?
        });
        Ok(row.map(|r| Job {
            id: r.id,
            state: JobState::parse(&r.state),
            virtual_key: r.virtual_key,
            model: r.model,
            created_at: from_millis(r.created_at),
            completed_at: r.completed_at.map(from_millis),
            expires_at: r.expires_at.map(from_millis),
            status: r.status.and_then(|s| u16::try_from(s).ok()),
            body: r.body,
        }))
    }

    /// Records how a pending job ended; `false` (nothing changed) when the job is not pending
    /// any more or does not exist.
    pub async fn finish_job(&self, id: &str, result: &JobResult) -> anyhow::Result<bool> {
        let completed_at = millis(result.completed_at);
        let n = on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("UPDATE async_jobs SET state = ");
            q.push_bind(result.state.as_str())
                .push(", status = ")
                .push_bind(i64::from(result.status))
                .push(", body = ")
                .push_bind(result.body.as_slice())
                .push(", completed_at = ")
                .push_bind(completed_at)
                .push(", expires_at = ")
                .push_bind(completed_at)
                .push(" + ttl_ms WHERE id = ")
                .push_bind(id)
                .push(" AND state = 'pending'");
            q.build().execute(pool).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Extends the lease of `owner`'s pending jobs; returns how many.
    pub async fn renew_jobs(&self, owner: &str, lease_until: SystemTime) -> anyhow::Result<u64> {
        Ok(on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("UPDATE async_jobs SET lease_until = ");
            q.push_bind(millis(lease_until))
                .push(" WHERE owner = ")
                .push_bind(owner)
                .push(" AND state = 'pending'");
            q.build().execute(pool).await?.rows_affected()
        }))
    }

    /// Fails the pending jobs whose lease ran out by `now` (their instance is gone) with
    /// `status` and `body`; they expire their ttl after `now`. Returns how many.
    pub async fn fail_abandoned_jobs(
        &self,
        now: SystemTime,
        status: u16,
        body: &[u8],
    ) -> anyhow::Result<u64> {
        let now = millis(now);
        Ok(on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("UPDATE async_jobs SET state = ");
            q.push_bind(JobState::Failed.as_str())
                .push(", status = ")
                .push_bind(i64::from(status))
                .push(", body = ")
                .push_bind(body)
                .push(", completed_at = ")
                .push_bind(now)
                .push(", expires_at = ")
                .push_bind(now)
                .push(" + ttl_ms WHERE state = 'pending' AND lease_until <= ")
                .push_bind(now);
            q.build().execute(pool).await?.rows_affected()
        }))
    }

    /// Deletes jobs expired by `now`; returns how many.
    pub async fn prune_jobs(&self, now: SystemTime) -> anyhow::Result<u64> {
        Ok(on_engine!(self, write, DB, pool => {
            let mut q = QueryBuilder::<DB>::new("DELETE FROM async_jobs WHERE expires_at <= ");
            q.push_bind(millis(now));
            q.build().execute(pool).await?.rows_affected()
        }))
    }
}
