//! Governance through the admin API and across instances: entities created, changed and
//! deleted at run time; usage per level; counters kept across a restart; and three gateways
//! sharing one budget and one rate limit through the machine's Redis and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{GPT, PgDatabase, RedisPrefix, bin, config, terminate};
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

fn body() -> Value {
    json!({"model": GPT, "max_tokens": 200,
           "messages": [{"role": "user", "content": "count my tokens please"}]})
}

/// Output tokens at $1 each, input free: costs are whole dollars.
fn priced(c: &mut Value) {
    c["pricing"] = json!({"gpt-4o-mini": {"input": 0.0, "output": 1_000_000.0}});
}

async fn start(mock: &MockServer, tweak: impl FnOnce(&mut Value)) -> GatewayProcess {
    let cfg = config(&mock.base_url(), |c| {
        priced(c);
        tweak(c);
    });
    GatewayProcess::start(bin(), Some(&cfg), &[], &["--shutdown-grace-seconds", "2"])
        .await
        .unwrap()
}

async fn call(
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = heimdall_testkit::http_client().request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn infer(base: &str, vk: &str) -> (u16, Value) {
    let resp = heimdall_testkit::http_client()
        .post(format!("{base}/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("x-bf-vk", vk)
        .json(&body())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

use reqwest::Method;

#[tokio::test]
async fn entities_change_at_run_time_and_usage_is_shown_per_level() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    // One key from the file, so that governance stays in use when the API's key is deleted.
    let gw = start(&mock, |c| {
        c["governance"] = json!({"virtual_keys": [{"id": "keeper", "value": "sk-bf-keeper"}]});
    })
    .await;
    let base = gw.base_url();
    // A customer, a team of it, and a key of the team, each with a budget.
    let (s, _) = call(
        Method::POST,
        base,
        "/api/governance/customers",
        Some(json!({"id": "acme", "name": "Acme",
                    "budgets": [{"max_limit": 1000, "reset_duration": "1M"}]})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(
        Method::POST,
        base,
        "/api/governance/teams",
        Some(json!({"id": "search", "customer_id": "acme",
                    "budgets": [{"max_limit": 500, "reset_duration": "1w"}]})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, vk) = call(
        Method::POST,
        base,
        "/api/governance/virtual-keys",
        Some(json!({"name": "search bot", "team_id": "search",
                    "budgets": [{"max_limit": 100, "reset_duration": "1d"}],
                    "rate_limit": {"request_max_limit": 50, "request_reset_duration": "1h"}})),
    )
    .await;
    assert_eq!(s, 201, "{vk}");
    let id = vk["id"].as_str().unwrap().to_owned();
    let value = vk["value"].as_str().unwrap().to_owned();
    assert!(value.starts_with("sk-bf-"), "a value is made for a new key");
    // A key naming a team that does not exist is refused, saying where.
    let (s, e) = call(
        Method::POST,
        base,
        "/api/governance/virtual-keys",
        Some(json!({"id": "bad", "value": "sk-bf-bad", "team_id": "nope"})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("team_id"));
    let (s, _) = call(
        Method::POST,
        base,
        "/api/governance/teams",
        Some(json!({"id": "search"})),
    )
    .await;
    assert_eq!(s, 409, "ids are unique");

    // The new key works at once; what it spent shows at every level.
    let (s, answer) = infer(base, &value).await;
    assert_eq!(s, 200, "{answer}");
    let cost = answer["usage"]["output_tokens"].as_f64().unwrap();
    let (s, view) = call(
        Method::GET,
        base,
        &format!("/api/governance/virtual-keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let usage = view["usage"].as_array().unwrap();
    let levels: Vec<_> = usage
        .iter()
        .map(|u| (u["level"].as_str().unwrap(), u["measure"].as_str().unwrap()))
        .collect();
    assert_eq!(
        levels,
        [
            ("customer", "dollars"),
            ("team", "dollars"),
            ("virtual_key", "dollars"),
            ("virtual_key", "requests")
        ]
    );
    for u in usage {
        let spent = if u["measure"] == "requests" {
            1.0
        } else {
            cost
        };
        assert_eq!(u["used"].as_f64().unwrap(), spent, "{u}");
        assert_eq!(
            u["remaining"].as_f64().unwrap(),
            u["max"].as_f64().unwrap() - spent
        );
        assert!(u["next_reset_ms"].as_i64().unwrap() > u["window_start_ms"].as_i64().unwrap());
    }

    // Deactivated: refused at once. The team cannot go while the key names it.
    let mut off = view["virtual_key"].clone();
    off["is_active"] = json!(false);
    let (s, _) = call(
        Method::PUT,
        base,
        &format!("/api/governance/virtual-keys/{id}"),
        Some(off),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(infer(base, &value).await.0, 403);
    let (s, e) = call(Method::DELETE, base, "/api/governance/teams/search", None).await;
    assert_eq!(s, 409, "{e}");
    let (s, _) = call(
        Method::DELETE,
        base,
        &format!("/api/governance/virtual-keys/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(infer(base, &value).await.0, 401);
    let (s, _) = call(Method::DELETE, base, "/api/governance/teams/search", None).await;
    assert_eq!(s, 204);
    let (s, list) = call(Method::GET, base, "/api/governance/teams", None).await;
    assert_eq!((s, list["count"].as_u64()), (200, Some(0)));
}

#[tokio::test]
async fn spending_survives_a_restart() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = json!({"type": "sqlite", "config": {"path": dir.path().join("config.db")}});
    let setup = |c: &mut Value| {
        c["config_store"] = store.clone();
        c["governance"] = json!({"virtual_keys": [{"id": "k", "value": "sk-bf-k",
            "budgets": [{"max_limit": 1000, "reset_duration": "1d"}]}]});
    };
    let first = start(&mock, setup).await;
    let (s, answer) = infer(first.base_url(), "sk-bf-k").await;
    assert_eq!(s, 200);
    let cost = answer["usage"]["output_tokens"].as_f64().unwrap();
    terminate(&first);
    let mut first = first;
    first.wait_exit(Duration::from_secs(10)).await.unwrap();

    let second = start(&mock, setup).await;
    let (_, view) = call(
        Method::GET,
        second.base_url(),
        "/api/governance/virtual-keys/k",
        None,
    )
    .await;
    assert_eq!(view["usage"][0]["used"].as_f64(), Some(cost), "{view}");
}

#[tokio::test]
async fn three_instances_share_one_budget_and_one_rate_limit() {
    let db = PgDatabase::create();
    let prefix = RedisPrefix(format!(
        "heimdall-test:{}:{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    // What one request costs, from a gateway without limits.
    let probe = start(&mock, |c| {
        c["governance"] = json!({"virtual_keys": [{"id": "free", "value": "sk-bf-free"}]});
    })
    .await;
    let cost = infer(probe.base_url(), "sk-bf-free").await.1["usage"]["output_tokens"]
        .as_f64()
        .unwrap();
    drop(probe);

    let shared = |c: &mut Value| {
        c["config_store"] = db.logs_store();
        c["redis"] = json!({"url": "redis://127.0.0.1:6379/0", "key_prefix": prefix.0});
        c["governance"] = json!({"virtual_keys": [
            {"id": "money", "value": "sk-bf-money",
             "budgets": [{"max_limit": 12.0 * cost, "reset_duration": "1d"}]},
            {"id": "pace", "value": "sk-bf-pace",
             "rate_limit": {"request_max_limit": 15, "request_reset_duration": "1h"}}
        ]});
    };
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Arc::new(start(&mock, shared).await));
    }
    // Thirty requests at once, spread over the three, against a budget of twelve.
    let burst = |vk: &'static str, n: usize| {
        let gateways = gateways.clone();
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|i| {
                    let gw = Arc::clone(&gateways[i % 3]);
                    tokio::spawn(async move { infer(gw.base_url(), vk).await })
                })
                .collect();
            let mut by_status = std::collections::BTreeMap::new();
            for t in tasks {
                let (s, v) = t.await.unwrap();
                if s != 200 {
                    let kind = v["error"]["type"].as_str().unwrap().to_owned();
                    assert!(
                        (s == 402 && kind == "billing_error")
                            || (s == 429 && kind == "rate_limit_error"),
                        "{s} {v}"
                    );
                }
                *by_status.entry(s).or_insert(0) += 1;
            }
            by_status
        }
    };
    let money = burst("sk-bf-money", 30).await;
    let served = money.get(&200).copied().unwrap_or(0);
    assert!((1..=12).contains(&served), "{money:?}");
    // Then one at a time through each instance in turn: exactly twelve in all, no more.
    let mut total = served;
    for i in 0.. {
        let (s, v) = infer(gateways[i % 3].base_url(), "sk-bf-money").await;
        if s == 402 {
            break;
        }
        assert_eq!(s, 200, "{v}");
        total += 1;
        assert!(total <= 12, "overspent: {total} requests on a budget of 12");
    }
    assert_eq!(total, 12);

    // The rate limit counts requests wherever they land: exactly fifteen of thirty pass.
    let pace = burst("sk-bf-pace", 30).await;
    assert_eq!(pace.get(&200), Some(&15), "{pace:?}");
    assert_eq!(pace.get(&429), Some(&15), "{pace:?}");

    // A key created through one instance is usable on the others once they synchronise
    // with the config store (every 2 s).
    let (s, _) = call(
        Method::POST,
        gateways[0].base_url(),
        "/api/governance/virtual-keys",
        Some(json!({"id": "late", "value": "sk-bf-late"})),
    )
    .await;
    assert_eq!(s, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _) = infer(gateways[2].base_url(), "sk-bf-late").await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 401);
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never reached the other instance"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP relay to the local Redis; aborting its task closes it and every connection through
/// it, which the gateway sees as Redis going away.
async fn redis_relay() -> (String, tokio::task::JoinHandle<()>) {
    redis_relay_on("127.0.0.1:0").await
}

/// The same relay on `addr`.
async fn redis_relay_on(addr: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let url = format!("redis://{}/0", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        // Owned by this task: aborting it drops the set, which aborts every connection.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut redis) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                }
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn when_redis_goes_away_the_configured_policy_decides() {
    let prefix = RedisPrefix(format!("heimdall-test:{}:outage:", std::process::id()));
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let (url, relay) = redis_relay().await;
    let with = |on_failure: &'static str| {
        let url = url.clone();
        let key_prefix = prefix.0.clone();
        move |c: &mut Value| {
            c["redis"] = json!({"url": url, "key_prefix": key_prefix,
                                "on_failure": on_failure, "timeout_ms": 300});
            c["governance"] = json!({"virtual_keys": [{"id": "k", "value": "sk-bf-k",
                "budgets": [{"max_limit": 1000, "reset_duration": "1d"}]}]});
        }
    };
    let closed = start(&mock, with("closed")).await;
    let open = start(&mock, with("open")).await;
    assert_eq!(infer(closed.base_url(), "sk-bf-k").await.0, 200);
    assert_eq!(infer(open.base_url(), "sk-bf-k").await.0, 200);
    relay.abort();
    let _ = relay.await;

    let started = std::time::Instant::now();
    let (s, v) = infer(closed.base_url(), "sk-bf-k").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the timeout"
    );
    let (s, v) = infer(open.base_url(), "sk-bf-k").await;
    assert_eq!(s, 200, "admitted uncounted: {v}");
    let metrics = heimdall_testkit::http_client()
        .get(format!("{}/metrics", open.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("heimdall_governance_ledger_failures_total{mode=\"open\"}")),
        "{metrics}"
    );
}

/// Redis down at start does not keep the gateway down: it starts, answers by `on_failure`
/// (here `closed`: 503), and counts in Redis once Redis answers.
#[tokio::test]
async fn a_gateway_started_before_redis_uses_it_once_it_answers() {
    let prefix = RedisPrefix(format!("heimdall-test:{}:late:", std::process::id()));
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let gw = start(&mock, |c: &mut Value| {
        c["redis"] = json!({"url": format!("redis://{addr}/0"), "key_prefix": prefix.0,
                            "on_failure": "closed", "timeout_ms": 300});
        c["governance"] = json!({"virtual_keys": [{"id": "k", "value": "sk-bf-k",
            "budgets": [{"max_limit": 1000, "reset_duration": "1d"}]}]});
    })
    .await;
    let (s, v) = infer(gw.base_url(), "sk-bf-k").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["type"], "overloaded_error");

    let (_, relay) = redis_relay_on(&addr).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = infer(gw.base_url(), "sk-bf-k").await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 503, "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "never used Redis: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.abort();
}

#[tokio::test]
async fn a_reloaded_file_adds_its_keys_and_keeps_the_api_s() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let with_keys = |keys: Value| {
        config(&mock.base_url(), |c| {
            c["governance"] = json!({"virtual_keys": keys});
        })
    };
    let gw = GatewayProcess::start(
        bin(),
        Some(&with_keys(json!([{"id": "a", "value": "sk-bf-a"}]))),
        &[],
        &["--config-poll-ms", "100"],
    )
    .await
    .unwrap();
    let base = gw.base_url();
    let (s, _) = call(
        Method::POST,
        base,
        "/api/governance/virtual-keys",
        Some(json!({"id": "api", "value": "sk-bf-api"})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(infer(base, "sk-bf-b").await.0, 401);
    let text = serde_json::to_vec_pretty(&with_keys(json!([
        {"id": "a", "value": "sk-bf-a"}, {"id": "b", "value": "sk-bf-b"}
    ])))
    .unwrap();
    std::fs::write(gw.app_dir().join("config.json"), text).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while infer(base, "sk-bf-b").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reloaded key never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The key made through the API is still there: the file defines what it names only.
    assert_eq!(infer(base, "sk-bf-api").await.0, 200);
    assert_eq!(infer(base, "sk-bf-a").await.0, 200);
}
