//! Request logs over time, for the dashboard: a time range cut into equal buckets, each with
//! its request count, errors, latency percentiles, tokens and cost, and the models and virtual
//! keys with the most requests in the range.
//!
//! Both engines run the same SQL. Neither SQLite nor PostgreSQL's `percentile_cont` is
//! available on both, so percentiles are nearest-rank, taken with window functions (which
//! both have): in each bucket the latencies are ranked, and the p-th percentile is the
//! smallest latency whose rank is at least p % of the bucket's count.

use serde::Serialize;
use sqlx::QueryBuilder;
use utoipa::ToSchema;

use crate::{Store, on_engine};

/// A range of `started_at` (milliseconds since the epoch, `from` inclusive, `to` exclusive)
/// cut into `buckets` equal parts.
#[derive(Debug, Clone, Copy)]
pub struct SeriesQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub buckets: u32,
    /// How many models and virtual keys the top lists hold.
    pub top: u32,
}

impl SeriesQuery {
    pub const MAX_BUCKETS: u32 = 1000;
    pub const MAX_TOP: u32 = 100;

    fn span(&self) -> i64 {
        self.to_ms.saturating_sub(self.from_ms).max(1)
    }

    /// Milliseconds per bucket: the range divided evenly, rounded up so that the last bucket
    /// ends at or after `to`; at least 1.
    pub fn bucket_ms(&self) -> i64 {
        let n = i64::from(self.buckets.clamp(1, Self::MAX_BUCKETS));
        ceil_div(self.span(), n)
    }

    /// How many buckets cover the range: `buckets`, or fewer when the rounded-up width covers
    /// it with fewer (a range of 10 ms in 6 buckets is 5 of 2 ms), so none starts past `to`.
    pub fn bucket_count(&self) -> u32 {
        let n = ceil_div(self.span(), self.bucket_ms());
        u32::try_from(n).unwrap_or(Self::MAX_BUCKETS)
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

/// The range's buckets (every one, empty ones included) and its top lists.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimeSeries {
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub buckets: Vec<Bucket>,
    /// By requests, most first; a model is the one that served, else the one asked for.
    pub top_models: Vec<TopEntry>,
    /// By requests, most first; named by the key's id as logs name it (`vk_…`).
    pub top_virtual_keys: Vec<TopEntry>,
}

/// One bucket's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Bucket {
    /// Where the bucket starts, in milliseconds since the epoch.
    pub start_ms: i64,
    pub requests: u64,
    /// Requests with status `error` (a stream that failed midway included).
    pub errors: u64,
    /// Nearest-rank latency percentiles; absent in an empty bucket.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars.
    pub cost: f64,
}

/// A model or virtual key and its share of the range.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TopEntry {
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub tokens: u64,
    /// US dollars.
    pub cost: f64,
}

#[derive(sqlx::FromRow)]
struct BucketRow {
    bucket: i64,
    requests: i64,
    errors: i64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    input_tokens: i64,
    output_tokens: i64,
    cost: f64,
}

#[derive(sqlx::FromRow)]
struct TopRow {
    name: String,
    requests: i64,
    errors: i64,
    tokens: i64,
    cost: f64,
}

/// Per bucket: the aggregates, and the percentiles from each row's rank within its bucket.
/// `$from` and `$width` are bound twice each (positional placeholders in PostgreSQL, `?` in
/// SQLite, so each use is its own bind).
const BUCKETS_HEAD: &str = "WITH ranked AS (SELECT bucket, latency_ms, status, input_tokens, \
     output_tokens, cost, \
     ROW_NUMBER() OVER (PARTITION BY bucket ORDER BY latency_ms) AS rank_in, \
     COUNT(*) OVER (PARTITION BY bucket) AS size \
     FROM (SELECT (started_at - ";

const BUCKETS_TAIL: &str = " GROUP BY bucket ORDER BY bucket";

const BUCKETS_SELECT: &str = "SELECT bucket, \
     CAST(COUNT(*) AS BIGINT) AS requests, \
     CAST(COALESCE(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
     CAST(MIN(CASE WHEN rank_in * 100 >= size * 50 THEN latency_ms END) AS DOUBLE PRECISION) AS p50, \
     CAST(MIN(CASE WHEN rank_in * 100 >= size * 95 THEN latency_ms END) AS DOUBLE PRECISION) AS p95, \
     CAST(MIN(CASE WHEN rank_in * 100 >= size * 99 THEN latency_ms END) AS DOUBLE PRECISION) AS p99, \
     CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
     CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) AS cost \
     FROM ranked";

/// The top list over `column` (an expression of the logs table; never client input).
fn top_select(column: &str) -> String {
    format!(
        "SELECT {column} AS name, \
         CAST(COUNT(*) AS BIGINT) AS requests, \
         CAST(COALESCE(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), 0) AS BIGINT) AS errors, \
         CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens, \
         CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) AS cost \
         FROM logs WHERE {column} IS NOT NULL AND started_at >= "
    )
}

const MODEL: &str = "COALESCE(served_model, model)";

impl Store {
    /// The buckets of `q`'s range and its top models and virtual keys.
    pub async fn timeseries(&self, q: &SeriesQuery) -> anyhow::Result<TimeSeries> {
        let width = q.bucket_ms();
        let (from, to) = (q.from_ms, q.to_ms.max(q.from_ms));
        let top = i64::from(q.top.min(SeriesQuery::MAX_TOP));
        let (rows, models, keys) = on_engine!(self, read, DB, pool => {
            let mut buckets = QueryBuilder::<DB>::new(BUCKETS_HEAD);
            buckets
                .push_bind(from)
                .push(") / ")
                .push_bind(width)
                .push(" AS bucket, latency_ms, status, input_tokens, output_tokens, cost \
                       FROM logs WHERE started_at >= ")
                .push_bind(from)
                .push(" AND started_at < ")
                .push_bind(to)
                .push(") AS in_range) ")
                .push(BUCKETS_SELECT)
                .push(BUCKETS_TAIL);
            let top_list = |column: &str| {
                let mut qb = QueryBuilder::<DB>::new(top_select(column));
                qb.push_bind(from)
                    .push(" AND started_at < ")
                    .push_bind(to)
                    .push(format_args!(
                        " GROUP BY {column} ORDER BY requests DESC, name LIMIT "
                    ))
                    .push_bind(top);
                qb
            };
            let mut models = top_list(MODEL);
            let mut keys = top_list("virtual_key");
            tokio::try_join!(
                buckets.build_query_as::<BucketRow>().fetch_all(pool),
                models.build_query_as::<TopRow>().fetch_all(pool),
                keys.build_query_as::<TopRow>().fetch_all(pool),
            )?
        });
        let n = q.bucket_count();
        let mut buckets: Vec<Bucket> = (0..i64::from(n))
            .map(|i| Bucket {
                start_ms: from.saturating_add(width.saturating_mul(i)),
                ..Bucket::default()
            })
            .collect();
        for row in rows {
            // A row outside the buckets cannot happen (the range filter); skip rather than trust.
            let Some(b) = usize::try_from(row.bucket)
                .ok()
                .and_then(|i| buckets.get_mut(i))
            else {
                continue;
            };
            b.requests = to_u64(row.requests);
            b.errors = to_u64(row.errors);
            b.latency_p50_ms = row.p50;
            b.latency_p95_ms = row.p95;
            b.latency_p99_ms = row.p99;
            b.input_tokens = to_u64(row.input_tokens);
            b.output_tokens = to_u64(row.output_tokens);
            b.cost = row.cost;
        }
        Ok(TimeSeries {
            from_ms: from,
            to_ms: to,
            bucket_ms: width,
            buckets,
            top_models: models.into_iter().map(TopRow::into_entry).collect(),
            top_virtual_keys: keys.into_iter().map(TopRow::into_entry).collect(),
        })
    }
}

impl TopRow {
    fn into_entry(self) -> TopEntry {
        TopEntry {
            name: self.name,
            requests: to_u64(self.requests),
            errors: to_u64(self.errors),
            tokens: to_u64(self.tokens),
            cost: self.cost,
        }
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range() {
        let q = |from_ms, to_ms, buckets| SeriesQuery {
            from_ms,
            to_ms,
            buckets,
            top: 5,
        };
        assert_eq!(q(0, 60_000, 60).bucket_ms(), 1000);
        assert_eq!(q(0, 60_001, 60).bucket_ms(), 1001);
        assert_eq!(q(0, 60_000, 60).bucket_count(), 60);
        assert_eq!(
            (q(0, 10, 60).bucket_ms(), q(0, 10, 60).bucket_count()),
            (1, 10)
        );
        assert_eq!(
            (q(0, 10, 6).bucket_ms(), q(0, 10, 6).bucket_count()),
            (2, 5)
        );
        assert_eq!((q(5, 5, 0).bucket_ms(), q(5, 5, 0).bucket_count()), (1, 1));
        assert!(q(i64::MIN, i64::MAX, 1).bucket_ms() > 0);
        assert_eq!(q(0, i64::MAX, 1000).bucket_count(), 1000);
    }
}
