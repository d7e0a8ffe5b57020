//! Reading request logs: filtered pages with totals, one log in full, pruning.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Type};
use utoipa::ToSchema;

use crate::{Store, millis, on_engine};

/// Filters and page of a logs listing (the server reads them from the query string).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub providers: Vec<String>,
    /// Matches the model asked for or the one that served.
    pub models: Vec<String>,
    /// `success`, `error` or `cancelled`.
    pub status: Vec<String>,
    /// The virtual key's fingerprint id.
    pub virtual_key: Option<String>,
    pub start_time: Option<SystemTime>,
    /// Inclusive.
    pub end_time: Option<SystemTime>,
    /// Case-insensitive substring of the request or answer content.
    pub search: Option<String>,
    /// Default [`LogQuery::DEFAULT_LIMIT`], at most [`LogQuery::MAX_LIMIT`].
    pub limit: Option<u32>,
    pub offset: Option<u64>,
}

impl LogQuery {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 1000;

    fn limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }
}

/// One page of logs (without their content), the page's place, and totals over everything
/// the filters match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogPage {
    pub logs: Vec<LogEntry>,
    pub pagination: Pagination,
    pub stats: LogStats,
}

/// Where the page lies among all matches.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    pub limit: u32,
    pub offset: u64,
    pub total_count: u64,
}

/// Totals over every log the filters match, not only the page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogStats {
    pub total_requests: u64,
    /// Percent of requests that succeeded (0 to 100).
    pub success_rate: f64,
    pub average_latency_ms: f64,
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars.
    pub total_cost: f64,
}

/// One request as the logs API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogEntry {
    pub id: String,
    /// RFC 3339 with milliseconds.
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub front_door: String,
    pub endpoint: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub served_model: Option<String>,
    pub fallback_index: u32,
    pub key_name: Option<String>,
    pub virtual_key: Option<String>,
    /// `success`, `error` (a stream that failed midway included) or `cancelled`.
    pub status: String,
    pub status_code: u16,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub latency_ms: f64,
    pub first_byte_ms: Option<f64>,
    pub overhead_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub cost: Option<f64>,
    pub stop_reason: Option<String>,
    pub stream: bool,
    pub pass_through: bool,
    pub attempts: u32,
    /// The upstream attempts that failed, in order (empty when none did): each one a retry,
    /// another key or the next model of the fallback chain followed, and, when the request
    /// failed before its answer started, those that ended it. Who answered, or the error the
    /// client got, is the log's own fields.
    pub attempt_trail: Vec<AttemptEntry>,
    pub is_async: bool,
    /// The request body: its JSON, or the body as a string when it is not JSON.
    pub input: Option<Value>,
    /// The answer: its JSON (a stream collected into the document it amounts to), or a
    /// string when it is not JSON.
    pub output: Option<Value>,
    pub content_truncated: bool,
}

/// One upstream attempt that failed, as the logs API shows it; also the shape of the stored
/// `attempt_trail` column (a JSON array of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AttemptEntry {
    pub provider: String,
    /// The model as the client names it (a fallback's own name when a fallback was tried).
    pub model: String,
    /// The key's name, never its value (`direct`: the client's own key).
    pub key_name: String,
    /// The upstream's HTTP status; null when none came (a timeout, a connection failure).
    pub status: Option<u16>,
    pub error_type: String,
    /// At most 500 characters.
    pub error_message: String,
    /// From the attempt's start to its failure.
    pub elapsed_ms: f64,
}

/// Columns of a listing; a full log adds the content.
const COLUMNS: &str = "id, started_at, front_door, endpoint, provider, model, served_model, \
     fallback_index, key_name, virtual_key, status, status_code, error_type, error_message, \
     latency_ms, first_byte_ms, overhead_ms, input_tokens, output_tokens, cache_read_tokens, \
     cache_write_tokens, cost, stop_reason, stream, pass_through, attempts, attempt_trail, \
     is_async, content_truncated";

#[derive(sqlx::FromRow)]
struct LogRow {
    id: String,
    started_at: i64,
    front_door: String,
    endpoint: String,
    provider: Option<String>,
    model: Option<String>,
    served_model: Option<String>,
    fallback_index: i64,
    key_name: Option<String>,
    virtual_key: Option<String>,
    status: String,
    status_code: i64,
    error_type: Option<String>,
    error_message: Option<String>,
    latency_ms: f64,
    first_byte_ms: Option<f64>,
    overhead_ms: f64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cost: Option<f64>,
    stop_reason: Option<String>,
    stream: bool,
    pass_through: bool,
    attempts: i64,
    attempt_trail: Option<String>,
    is_async: bool,
    content_truncated: bool,
    #[sqlx(default)]
    input: Option<String>,
    #[sqlx(default)]
    output: Option<String>,
}

#[derive(sqlx::FromRow)]
struct StatsRow {
    total: i64,
    successes: i64,
    average_latency_ms: Option<f64>,
    input_tokens: i64,
    output_tokens: i64,
    total_cost: f64,
}

const STATS: &str = "SELECT COUNT(*) AS total, \
     CAST(COALESCE(SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), 0) AS BIGINT) AS successes, \
     CAST(AVG(latency_ms) AS DOUBLE PRECISION) AS average_latency_ms, \
     CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
     CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
     CAST(COALESCE(SUM(cost), 0) AS DOUBLE PRECISION) AS total_cost \
     FROM logs";

/// Rows deleted per statement when pruning, so that a large prune does not hold SQLite's
/// writer lock (and the log writer) for long.
const PRUNE_CHUNK: i64 = 5000;

impl Store {
    /// A page of logs matching `q`, newest first, with totals over all matches.
    pub async fn logs(&self, q: &LogQuery) -> anyhow::Result<LogPage> {
        let like = self.like();
        let limit = q.limit();
        let offset = q.offset.unwrap_or(0);
        let (rows, stats) = on_engine!(self, read, DB, pool => {
            let mut page = QueryBuilder::<DB>::new(format!("SELECT {COLUMNS} FROM logs"));
            push_filters(&mut page, q, like);
            page.push(" ORDER BY started_at DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit))
                .push(" OFFSET ")
                .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
            let mut stats = QueryBuilder::<DB>::new(STATS);
            push_filters(&mut stats, q, like);
            tokio::try_join!(
                page.build_query_as::<LogRow>().fetch_all(pool),
                stats.build_query_as::<StatsRow>().fetch_one(pool),
            )?
        });
        let total = to_u64(stats.total);
        let input_tokens = to_u64(stats.input_tokens);
        let output_tokens = to_u64(stats.output_tokens);
        Ok(LogPage {
            logs: rows.into_iter().map(LogRow::into_entry).collect(),
            pagination: Pagination {
                limit,
                offset,
                total_count: total,
            },
            stats: LogStats {
                total_requests: total,
                success_rate: if total == 0 {
                    0.0
                } else {
                    to_u64(stats.successes) as f64 * 100.0 / total as f64
                },
                average_latency_ms: stats.average_latency_ms.unwrap_or(0.0),
                total_tokens: input_tokens.saturating_add(output_tokens),
                input_tokens,
                output_tokens,
                total_cost: stats.total_cost,
            },
        })
    }

    /// One log with its content.
    pub async fn log(&self, id: &str) -> anyhow::Result<Option<LogEntry>> {
        let row = on_engine!(self, read, DB, pool => {
            let mut q = QueryBuilder::<DB>::new(format!(
                "SELECT {COLUMNS}, input, output FROM logs WHERE id = "
            ));
            q.push_bind(id);
            q.build_query_as::<LogRow>().fetch_optional(pool).await?
        });
        Ok(row.map(LogRow::into_entry))
    }

    /// Deletes logs of requests started before `older_than`; returns how many.
    pub async fn prune_logs(&self, older_than: SystemTime) -> anyhow::Result<u64> {
        let cutoff = millis(older_than);
        let mut deleted = 0;
        loop {
            let n = on_engine!(self, write, DB, pool => {
                let mut q = QueryBuilder::<DB>::new(
                    "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE started_at < ",
                );
                q.push_bind(cutoff).push(" LIMIT ").push_bind(PRUNE_CHUNK).push(")");
                q.build().execute(pool).await?.rows_affected()
            });
            deleted += n;
            if n < PRUNE_CHUNK.unsigned_abs() {
                return Ok(deleted);
            }
        }
    }

    /// The case-insensitive `LIKE` of the engine (SQLite's `LIKE` already is, for ASCII).
    fn like(&self) -> &'static str {
        match self.engine() {
            "postgres" => "ILIKE",
            _ => "LIKE",
        }
    }
}

/// Appends the `WHERE` clause of `q`'s filters.
fn push_filters<'q, DB: Database>(qb: &mut QueryBuilder<DB>, q: &'q LogQuery, like: &str)
where
    &'q str: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    fn any_of<'q, DB: Database>(qb: &mut QueryBuilder<DB>, column: &str, values: &'q [String])
    where
        &'q str: Encode<'q, DB> + Type<DB>,
    {
        qb.push(column).push(" IN (");
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v.as_str());
        }
        qb.push(")");
    }

    qb.push(" WHERE 1 = 1");
    if !q.providers.is_empty() {
        qb.push(" AND ");
        any_of(qb, "provider", &q.providers);
    }
    if !q.models.is_empty() {
        qb.push(" AND (");
        any_of(qb, "model", &q.models);
        qb.push(" OR ");
        any_of(qb, "served_model", &q.models);
        qb.push(")");
    }
    if !q.status.is_empty() {
        qb.push(" AND ");
        any_of(qb, "status", &q.status);
    }
    if let Some(key) = &q.virtual_key {
        qb.push(" AND virtual_key = ").push_bind(key.as_str());
    }
    if let Some(start) = q.start_time {
        qb.push(" AND started_at >= ").push_bind(millis(start));
    }
    if let Some(end) = q.end_time {
        qb.push(" AND started_at <= ").push_bind(millis(end));
    }
    if let Some(search) = q.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = format!("%{}%", escape_like(search));
        qb.push(format_args!(" AND (input {like} "))
            .push_bind(pattern.clone())
            .push(format_args!(" ESCAPE '\\' OR output {like} "))
            .push_bind(pattern)
            .push(" ESCAPE '\\')");
    }
}

/// `s` matched literally by `LIKE … ESCAPE '\'`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Stored text back into JSON; text that is not JSON (a non-JSON body, a cut answer) stays a
/// string.
fn json_or_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// The stored trail back into its entries. The writer alone writes it, so it parses; if it
/// somehow does not, the log is still shown, without its trail.
fn trail(id: &str, text: Option<String>) -> Vec<AttemptEntry> {
    let Some(text) = text else {
        return Vec::new();
    };
    serde_json::from_str(&text).unwrap_or_else(|e| {
        tracing::warn!(id, error = %e, "unreadable attempt trail in the logs store");
        Vec::new()
    })
}

/// RFC 3339 with milliseconds, UTC.
fn timestamp(ms: i64) -> String {
    let secs = heimdall_protocol::time::rfc3339(ms.div_euclid(1000));
    let frac = ms.rem_euclid(1000);
    match secs.strip_suffix('Z') {
        Some(s) => format!("{s}.{frac:03}Z"),
        None => secs,
    }
}

impl LogRow {
    fn into_entry(self) -> LogEntry {
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        let attempt_trail = trail(&self.id, self.attempt_trail);
        LogEntry {
            timestamp: timestamp(self.started_at),
            id: self.id,
            front_door: self.front_door,
            endpoint: self.endpoint,
            provider: self.provider,
            model: self.model,
            served_model: self.served_model,
            fallback_index: small(self.fallback_index),
            key_name: self.key_name,
            virtual_key: self.virtual_key,
            status: self.status,
            status_code: u16::try_from(self.status_code).unwrap_or(0),
            error_type: self.error_type,
            error_message: self.error_message,
            latency_ms: self.latency_ms,
            first_byte_ms: self.first_byte_ms,
            overhead_ms: self.overhead_ms,
            input_tokens: to_u64(self.input_tokens),
            output_tokens: to_u64(self.output_tokens),
            cache_read_tokens: to_u64(self.cache_read_tokens),
            cache_write_tokens: to_u64(self.cache_write_tokens),
            cost: self.cost,
            stop_reason: self.stop_reason,
            stream: self.stream,
            pass_through: self.pass_through,
            attempts: small(self.attempts),
            attempt_trail,
            is_async: self.is_async,
            input: self.input.map(json_or_text),
            output: self.output.map(json_or_text),
            content_truncated: self.content_truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_wildcards() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }

    #[test]
    fn a_trail_reads_back_and_an_unreadable_one_is_left_out() {
        assert!(trail("r", None).is_empty());
        let text = r#"[{"provider":"openai","model":"openai/gpt-4o","key_name":"k1","status":null,
            "error_type":"timeout_error","error_message":"slow","elapsed_ms":1.5}]"#;
        let read = trail("r", Some(text.to_owned()));
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].status, read[0].elapsed_ms), (None, 1.5));
        assert!(trail("r", Some("[{".to_owned())).is_empty());
    }

    #[test]
    fn timestamps_carry_milliseconds() {
        assert_eq!(timestamp(1_730_000_000_123), "2024-10-27T03:33:20.123Z");
        assert_eq!(timestamp(-1), "1969-12-31T23:59:59.999Z");
    }
}
