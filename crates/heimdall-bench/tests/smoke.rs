//! Seconds-long smoke run of the harness: mock and gateway in-process, every scenario kind
//! once, tiny durations. Asserts that figures were produced, never a speed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use heimdall_bench::scenario::{self, Options};
use heimdall_bench::{
    CacheReport, DEFAULT_GATEWAY_CONFIG, cache_config, load, prometheus_counter, report,
};
use heimdall_core::Gateway;
use heimdall_core::config::Config;
use heimdall_testkit::{MockOptions, MockServer};

async fn start_gateway(mock_url: &str) -> SocketAddr {
    start_gateway_with(DEFAULT_GATEWAY_CONFIG, mock_url).await
}

async fn start_gateway_with(template: &str, mock_url: &str) -> SocketAddr {
    let text = template.replace("{{MOCK_URL}}", mock_url);
    let config = Config::from_json(&text, &|_| None).unwrap();
    let gateway = Arc::new(Gateway::new(config).unwrap());
    let app = heimdall_server::router(heimdall_server::App::without_store(gateway));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_produces_figures() {
    let mock = MockServer::start(MockOptions {
        record: false,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start_gateway(&mock.base_url()).await;
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    let mock_addr = mock.addr();
    tokio::spawn(async move { load::relay(relay_listener, mock_addr).await });

    let me = Some(std::process::id());
    let mut targets = scenario::direct_targets(mock.addr(), me);
    targets.push(scenario::relay_target(relay_addr, me));
    targets.extend(scenario::heimdall_targets(gw, me, "Heimdall", true));

    let opts = Options::smoke();
    let reports = scenario::run(&targets, &opts).await;
    assert_eq!(
        reports.len(),
        9,
        "4 direct baselines, the relay, 4 gateway targets"
    );
    for r in &reports {
        let max = r
            .max
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no max run", r.target.name));
        assert!(max.ok > 0, "{}: {:?}", r.target.name, max.first_error);
        assert_eq!(max.errors, 0, "{}: {:?}", r.target.name, max.first_error);
        let run = &r.rates[0];
        let res = run
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("{}: rate skipped: {:?}", r.target.name, run.skipped));
        assert!(res.ok > 0 && !res.latency.is_empty(), "{}", r.target.name);
        assert!(run.rss_bytes.unwrap_or(0) > 0);
        let st = r.stream.as_ref().unwrap();
        assert!(
            st.ok > 0 && st.errors == 0,
            "{}: {:?}",
            r.target.name,
            st.first_error
        );
    }

    let streams = scenario::open_streams(
        "smoke",
        gw,
        std::process::id(),
        50,
        Duration::from_millis(200),
        "openai/gpt-4o-mini",
    )
    .await
    .unwrap();
    assert_eq!(streams.result.ok, 50, "{:?}", streams.result.first_error);

    let table = report::render(&reports, std::slice::from_ref(&streams), opts.connections);
    assert!(
        table.contains("Heimdall /anthropic → OpenAI (translated)"),
        "{table}"
    );
    assert!(table.contains("Concurrent open streams"), "{table}");
    let targets_table = report::targets(&reports, std::slice::from_ref(&streams));
    assert!(targets_table.contains("max req/s"), "{targets_table}");
}

/// The cache scenario's rows measure what they name: after the seed, the direct-hit target
/// only hits, the semantic target only hits semantically, the miss target never hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_scenario_measures_hits_and_misses() {
    let mock = MockServer::start(MockOptions {
        record: false,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let plain = start_gateway(&mock.base_url()).await;
    let cached = start_gateway_with(&cache_config().unwrap(), &mock.base_url()).await;
    load::probe(cached, &scenario::cache_seed()).await.unwrap();
    let me = Some(std::process::id());
    let mut targets = scenario::heimdall_targets(plain, me, "Heimdall", true);
    targets.truncate(2);
    let cache_targets = scenario::cache_targets(cached, me);
    let count = |name: &str| {
        cache_targets
            .iter()
            .filter(|t| t.name.ends_with(name))
            .count()
    };
    assert_eq!(
        (count("direct hit"), count("semantic hit"), count("miss")),
        (1, 1, 1)
    );
    targets.extend(cache_targets);
    let reports = scenario::run(&targets, &Options::smoke()).await;
    let text = load::get_text(cached, "/metrics").await.unwrap();
    let counter = |name: &str| prometheus_counter(&text, name);
    let direct = counter("bifrost_cache_hits_total{cache_type=\"direct\"}");
    let semantic = counter("bifrost_cache_hits_total{cache_type=\"semantic\"}");
    let misses = counter("heimdall_cache_misses_total");
    let sent = |name: &str| -> u64 {
        let r = reports
            .iter()
            .find(|r| r.target.name.ends_with(name))
            .unwrap();
        let max = r.max.as_ref().unwrap();
        assert_eq!(max.errors, 0, "{name}: {:?}", max.first_error);
        max.ok
    };
    assert!(direct >= sent("direct hit"), "{direct} direct hits");
    assert!(semantic >= sent("semantic hit"), "{semantic} semantic hits");
    assert!(misses >= sent("miss"), "{misses} misses");
    let table = report::cache(
        &reports,
        &CacheReport {
            direct_hits: Some(direct),
            semantic_hits: Some(semantic),
            misses: Some(misses),
            embedding_calls: None,
        },
    );
    for row in ["pass-through", "direct hit", "semantic hit", "miss"] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
}

#[test]
fn micro_benchmarks_run() {
    let (_, written) = heimdall_bench::micro::streamed_tool_arguments(64 * 1024, 8);
    // Every argument byte reaches the client (JSON-escaped inside input_json_delta events).
    assert!(written > 64 * 1024, "{written}");
    assert!(heimdall_bench::micro::report().contains("1 MiB"));
}
