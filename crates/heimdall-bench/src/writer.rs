//! The request-log writer measured alone, run by `heimdall-bench --log-writer N`: N records of
//! a translated request's size pushed through the writer's queue into SQLite (and PostgreSQL,
//! when the local server takes `psql -h 127.0.0.1 -U postgres`), timed by this process's CPU.
//! What a record costs here is what logging takes from the gateway at maximum throughput,
//! without the noise of the load generator and the mock sharing the machine.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use heimdall_core::config::{PostgresConfig, Secret, StoreConfig};
use heimdall_core::{Content, Outcome, RecordSink, RequestRecord};
use heimdall_protocol::canonical::Usage;
use heimdall_protocol::dialect::Endpoint;
use heimdall_protocol::ids;
use heimdall_store::Store;

use crate::BenchDatabase;
use crate::procs::usage;
use crate::scenario::anthropic_body;

/// The answer a translated non-streamed request gets from the mock, in Anthropic's shape.
const ANSWER: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"gpt-4o-mini","content":[{"type":"text","text":"Echo: Say hello to the benchmark and tell a short story about the gateway that routes every request."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":24,"output_tokens":21,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#;

fn record(n: u128) -> Arc<RequestRecord> {
    let now = SystemTime::now();
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut content = Content::of_request(anthropic_body("openai/gpt-4o-mini", false, 20));
    content.push_response(&Bytes::from_static(ANSWER.as_bytes()));
    Arc::new(RequestRecord {
        started_at: now,
        provider: Some("openai".to_owned()),
        model: Some("openai/gpt-4o-mini".to_owned()),
        served_model: Some("openai/gpt-4o-mini".to_owned()),
        key_name: Some("m".to_owned()),
        attempts: 1,
        usage: Usage {
            input_tokens: 24,
            output_tokens: 21,
            ..Usage::default()
        },
        cost: Some(0.000_016_2),
        stop_reason: Some("end_turn".to_owned()),
        outcome: Outcome::Success,
        latency: Duration::from_micros(900),
        first_byte: Some(Duration::from_micros(850)),
        upstream_wait: Duration::from_micros(800),
        content: Some(content),
        ..RequestRecord::new(
            ids::request_id(ids::time_ordered_seed(millis, n)),
            Endpoint::Messages,
            "anthropic",
        )
    })
}

/// CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    usage(std::process::id()).cpu_seconds
}

/// Pushes `records` through a writer into `store` at about `rate` a second, closes it and
/// returns (CPU µs per record, records written).
async fn measure(store: &Store, records: usize, rate: f64) -> anyhow::Result<(f64, u64)> {
    let (writer, handle) = store.start_writer(
        heimdall_store::DEFAULT_QUEUE,
        heimdall_store::DEFAULT_QUEUE_CONTENT_BYTES,
    );
    // Built ahead, as the gateway builds them on the request path, not the writer's.
    let all: Vec<_> = (0..records).map(|n| record(n as u128)).collect();
    let cpu = cpu_seconds();
    // Handed over in bursts a tenth of a second apart: the writer takes what 100 ms brought
    // either way, and a finer pacing would measure this loop's wake-ups, not the writer.
    let per_tick = ((rate / 10.0).ceil() as usize).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for chunk in all.chunks(per_tick) {
        tick.tick().await;
        for r in chunk {
            writer.record(r);
        }
    }
    drop(writer);
    let closed = handle.close(Duration::from_secs(60)).await;
    let spent = cpu_seconds() - cpu;
    anyhow::ensure!(
        closed.dropped == 0 && closed.failed == 0,
        "the writer lost records: {closed:?}"
    );
    Ok((spent * 1e6 / records as f64, closed.written))
}

/// Runs the measurement on each engine and renders a markdown table.
pub async fn report(records: usize, rate: f64, engines: &[String]) -> anyhow::Result<String> {
    let mut out = format!(
        "### Request-log writer alone\n\n{records} records of a translated request \
         (~{} bytes of content each) at {rate:.0}/s; CPU of the whole process \
         (PostgreSQL's server not counted).\n\n\
         | engine | CPU µs per record | written |\n|---|---:|---:|\n",
        record(0).content.as_ref().map_or(0, Content::len)
    );
    let dir = tempfile::tempdir()?;
    let wanted = |engine: &str| engines.iter().any(|e| e == engine);
    if wanted("sqlite") {
        let sqlite = Store::open(
            &StoreConfig::Sqlite {
                path: "logs.db".into(),
            },
            dir.path(),
        )
        .await?;
        let (per, written) = measure(&sqlite, records, rate).await?;
        out.push_str(&format!("| SQLite | {per:.2} | {written} |\n"));
    }
    if !wanted("postgres") {
        return Ok(out);
    }
    match BenchDatabase::create() {
        Ok(db) => {
            let pg = Store::open(
                &StoreConfig::Postgres(PostgresConfig {
                    host: "127.0.0.1".into(),
                    port: 5432,
                    user: "postgres".into(),
                    password: Secret::new(""),
                    db_name: db.name.clone(),
                    ssl_mode: "disable".into(),
                    max_open_conns: 4,
                }),
                dir.path(),
            )
            .await?;
            let (per, written) = measure(&pg, records, rate).await?;
            out.push_str(&format!("| PostgreSQL | {per:.2} | {written} |\n"));
        }
        Err(e) => out.push_str(&format!("\nPostgreSQL skipped: {e:#}\n")),
    }
    Ok(out)
}
