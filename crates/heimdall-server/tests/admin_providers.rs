//! Providers and client settings through the admin API (`/api/providers`, `/api/config`):
//! changes apply to the running gateway at once, key values never come back, changes persist
//! in the config store across a restart (SQLite and PostgreSQL), config.json's reload keeps
//! the API's edits of what the file did not change, an open stream outlives a change, `null`
//! unsets a client setting, and without a config file the providers enabled from environment
//! variables are listed and can be replaced but not deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{CLAUDE, GPT, PgDatabase, ask_and_find, bin, config, request, terminate};
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use reqwest::Method;
use serde_json::{Value, json};

/// Long enough to be redacted with a head and a tail; never to appear in an answer.
const SECRET: &str = "sk-admin-api-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(10);

/// Anthropic from the file; OpenAI left to the API.
fn anthropic_only(mock: &MockServer, tweak: impl FnOnce(&mut Value)) -> Value {
    config(&mock.base_url(), |c| {
        c["providers"].as_object_mut().unwrap().remove("openai");
        tweak(c);
    })
}

async fn start(cfg: &Value) -> GatewayProcess {
    GatewayProcess::start(
        bin(),
        Some(cfg),
        &[],
        &["--shutdown-grace-seconds", "2", "--config-poll-ms", "100"],
    )
    .await
    .unwrap()
}

/// Calls the admin API; answers the status and the body's text (every answer is checked for
/// the secret by the callers through [`no_secret`]).
async fn call(method: Method, base: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let mut req = heimdall_testkit::http_client().request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

fn no_secret(text: &str) -> Value {
    assert!(!text.contains(SECRET), "the key value came back: {text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn api(method: Method, base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (s, text) = call(method, base, path, body).await;
    (s, no_secret(&text))
}

fn openai(mock: &MockServer) -> Value {
    json!({"provider": "openai",
           "keys": [{"name": "api", "value": SECRET, "models": ["*"], "weight": 1}],
           "network_config": {"base_url": mock.base_url(), "max_retries": 1},
           "concurrency_and_buffer_size": {"concurrency": 4, "buffer_size": 8}})
}

#[tokio::test]
async fn a_provider_created_through_the_api_serves_at_once_and_its_key_never_shows() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&anthropic_only(&mock, |_| {})).await;
    let base = gw.base_url();

    let (s, _) = ask_and_find(base, &mock, GPT).await;
    assert_ne!(s, 200, "openai is not configured yet");

    let (s, created) = api(Method::POST, base, "/api/providers", Some(openai(&mock))).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["name"], "openai");
    assert_eq!(created["keys"][0]["value"], "sk-…cdef");
    assert_eq!(created["concurrency_and_buffer_size"]["concurrency"], 4);

    let (s, seen) = ask_and_find(base, &mock, GPT).await;
    assert_eq!(s, 200);
    assert_eq!(
        seen.unwrap().header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );

    let (s, list) = api(Method::GET, base, "/api/providers", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["total"], 2, "{list}");
    let (s, one) = api(Method::GET, base, "/api/providers/openai", None).await;
    assert_eq!(s, 200);
    assert_eq!(one["keys"][0]["name"], "api");

    // What was read goes back changed elsewhere: the redacted value keeps the stored key.
    let mut changed = one.clone();
    changed["keys"][0]["weight"] = json!(3);
    changed["network_config"]["max_retries"] = json!(2);
    let (s, updated) = api(Method::PUT, base, "/api/providers/openai", Some(changed)).await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["keys"][0]["weight"], 3);
    let (s, seen) = ask_and_find(base, &mock, GPT).await;
    assert_eq!(s, 200);
    assert_eq!(
        seen.unwrap().header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );

    // Refusals: each says what and where.
    let (s, e) = api(Method::POST, base, "/api/providers", Some(openai(&mock))).await;
    assert_eq!(s, 409, "{e}");
    let mut bad = openai(&mock);
    bad["provider"] = json!("groq");
    bad["keys"][0]["weight"] = json!(-1);
    let (s, e) = api(Method::POST, base, "/api/providers", Some(bad)).await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("providers.groq.keys[0].weight"),
        "{e}"
    );
    let (s, e) = api(
        Method::POST,
        base,
        "/api/providers",
        Some(json!({"provider": "no-such-family", "keys": []})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, e) = api(
        Method::PUT,
        base,
        "/api/providers/openai",
        Some(json!({"keys": [{"name": "new-key-without-value"}]})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    // A setting Heimdall would ignore although it changes security is refused.
    let mut proxied = openai(&mock);
    proxied["provider"] = json!("groq");
    proxied["proxy_config"] = json!({"type": "http", "url": "http://127.0.0.1:9"});
    let (s, e) = api(Method::POST, base, "/api/providers", Some(proxied)).await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy_config"),
        "{e}"
    );
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({"keys": []}));
        let (s, e) = api(method.clone(), base, "/api/providers/mistral", body).await;
        assert_eq!(s, 404, "{method} {e}");
    }

    let (s, doc) = api(Method::GET, base, "/api/openapi.json", None).await;
    assert_eq!(s, 200);
    for path in ["/api/providers", "/api/providers/{provider}", "/api/config"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }

    let (s, _) = api(Method::DELETE, base, "/api/providers/openai", None).await;
    assert_eq!(s, 204);
    let (s, _) = ask_and_find(base, &mock, GPT).await;
    assert_ne!(s, 200);
    let (s, _) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(s, 200);
    assert!(!gw.output().contains(SECRET), "the key value was logged");
}

#[tokio::test]
async fn an_allowlist_set_through_the_api_forwards_anthropic_beta() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&anthropic_only(&mock, |_| {})).await;
    let base = gw.base_url();
    let (_, seen) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(seen.unwrap().header("anthropic-beta"), None);

    let (s, settings) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {
            "header_filter_config": {"allowlist": ["anthropic-beta"]},
            "log_retention_days": 7
        }})),
    )
    .await;
    assert_eq!(s, 200, "{settings}");
    let c = &settings["client_config"];
    assert_eq!(
        c["header_filter_config"]["allowlist"],
        json!(["anthropic-beta"])
    );
    assert_eq!(c["log_retention_days"], 7);
    assert_eq!(c["max_request_body_size_mb"], 100);

    let (s, seen) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(s, 200);
    assert_eq!(
        seen.unwrap().header("anthropic-beta"),
        Some("test-beta-2025-01-01")
    );
    let (_, now) = api(Method::GET, base, "/api/config", None).await;
    assert_eq!(now, settings);

    for (body, needle) in [
        (
            json!({"client_config": {"max_request_body_size_mb": 0}}),
            "client.max_request_body_size_mb",
        ),
        (
            json!({"client_config": {"header_filter_config": {"allowlist": ["bad header"]}}}),
            "client.header_filter_config.allowlist[0]",
        ),
        (
            json!({"client_config": {"no_such_setting": 1}}),
            "no_such_setting",
        ),
        (
            json!({"client_config": {"allow_direct_keys": "yes"}}),
            "allow_direct_keys",
        ),
    ] {
        let (s, e) = api(Method::PUT, base, "/api/config", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(needle),
            "{body}: {e}"
        );
    }
    // Nothing of a refused change applied.
    let (_, after) = api(Method::GET, base, "/api/config", None).await;
    assert_eq!(after, settings);

    // A virtual key required on inference applies at once too.
    let (s, _) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {"enforce_auth_on_inference": true}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn null_puts_a_client_setting_back_to_its_default() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    // The file sets the allowlist: `null` unsets it over the file's value too.
    let gw = start(&anthropic_only(&mock, |c| {
        c["client"] = json!({"header_filter_config": {"allowlist": ["anthropic-beta"]}});
    }))
    .await;
    let base = gw.base_url();
    let (s, set) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {"log_retention_days": 7, "drop_excess_requests": true}})),
    )
    .await;
    assert_eq!(s, 200, "{set}");
    assert_eq!(set["client_config"]["log_retention_days"], 7);
    let (_, seen) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(
        seen.unwrap().header("anthropic-beta"),
        Some("test-beta-2025-01-01")
    );

    let (s, unset) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {"header_filter_config": null, "log_retention_days": null}})),
    )
    .await;
    assert_eq!(s, 200, "{unset}");
    let c = &unset["client_config"];
    assert_eq!(
        c["header_filter_config"],
        json!({"allowlist": [], "denylist": []})
    );
    assert_eq!(c["log_retention_days"], 365, "the default: a year");
    assert_eq!(c["drop_excess_requests"], true, "left out: stays");
    let (_, now) = api(Method::GET, base, "/api/config", None).await;
    assert_eq!(now, unset);
    let (s, seen) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(s, 200);
    assert_eq!(seen.unwrap().header("anthropic-beta"), None);

    // Unsetting what is unset changes nothing.
    let (s, again) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {"log_retention_days": null}})),
    )
    .await;
    assert_eq!((s, again), (200, unset));
}

/// Long enough to be redacted with a head and a tail; the only key the gateway has.
const ENV_KEY: &str = "sk-ant-from-the-environment-0123456789abcdef";

#[tokio::test]
async fn without_a_config_file_the_environment_s_providers_are_listed_and_can_be_replaced() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = GatewayProcess::start(
        bin(),
        None,
        &[("ANTHROPIC_API_KEY", ENV_KEY)],
        &["--shutdown-grace-seconds", "2"],
    )
    .await
    .unwrap();
    let base = gw.base_url();
    let get = |path: &'static str| async move {
        let (s, text) = call(Method::GET, base, path, None).await;
        assert!(!text.contains(ENV_KEY), "{text}");
        (s, serde_json::from_str::<Value>(&text).unwrap())
    };

    let (s, list) = get("/api/providers").await;
    assert_eq!(s, 200);
    assert_eq!(list["total"], 1, "{list}");
    let listed = &list["providers"][0];
    assert_eq!(listed["name"], "anthropic");
    assert_eq!(listed["source"], "env");
    // The key is shown as where it is read from.
    assert_eq!(listed["keys"][0]["name"], "ANTHROPIC_API_KEY");
    assert_eq!(listed["keys"][0]["value"], "env.ANTHROPIC_API_KEY");
    let (s, one) = get("/api/providers/anthropic").await;
    assert_eq!((s, &one), (200, listed));

    // Only unsetting the variable removes it; creating it again is a conflict too.
    let (s, e) = api(Method::DELETE, base, "/api/providers/anthropic", None).await;
    assert_eq!(s, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY"),
        "{e}"
    );
    let (s, e) = api(
        Method::POST,
        base,
        "/api/providers",
        Some(json!({"provider": "anthropic", "keys": []})),
    )
    .await;
    assert_eq!(s, 409, "{e}");

    // A replacement (the listing sent back, pointed at the mock) is stored and wins; its key
    // is still read from the variable.
    let mut changed = one.clone();
    changed["network_config"] = json!({"base_url": mock.base_url()});
    let (s, stored) = api(Method::PUT, base, "/api/providers/anthropic", Some(changed)).await;
    assert_eq!(s, 200, "{stored}");
    assert_eq!(stored["source"], "config");
    assert_eq!(stored["keys"][0]["value"], "env.ANTHROPIC_API_KEY");
    let (s, seen) = ask_and_find(base, &mock, CLAUDE).await;
    assert_eq!(s, 200);
    assert_eq!(seen.unwrap().header("x-api-key"), Some(ENV_KEY));
    let (_, list) = get("/api/providers").await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["providers"][0]["source"], "config");

    // Deleting the stored one leaves the environment's.
    let (s, _) = api(Method::DELETE, base, "/api/providers/anthropic", None).await;
    assert_eq!(s, 204);
    let (_, one) = get("/api/providers/anthropic").await;
    assert_eq!(one["source"], "env", "{one}");
    assert!(one.get("network_config").is_none(), "{one}");
    assert!(!gw.output().contains(ENV_KEY), "the key was logged");
}

/// Sets settings and adds OpenAI through `first`, stops it, and checks that `second` (same
/// config store) starts with both.
async fn changes_survive_a_restart(mock: &MockServer, cfg: Value) {
    let first = start(&cfg).await;
    let (s, _) = api(
        Method::POST,
        first.base_url(),
        "/api/providers",
        Some(openai(mock)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = api(
        Method::PUT,
        first.base_url(),
        "/api/config",
        Some(json!({"client_config": {
            "header_filter_config": {"allowlist": ["anthropic-beta"]},
            "drop_excess_requests": true
        }})),
    )
    .await;
    assert_eq!(s, 200);
    terminate(&first);
    let mut first = first;
    first.wait_exit(WAIT).await.unwrap();

    let second = start(&cfg).await;
    let base = second.base_url();
    let (_, settings) = api(Method::GET, base, "/api/config", None).await;
    assert_eq!(
        settings["client_config"]["header_filter_config"]["allowlist"],
        json!(["anthropic-beta"]),
        "{settings}"
    );
    assert_eq!(settings["client_config"]["drop_excess_requests"], true);
    let (s, seen) = ask_and_find(base, mock, GPT).await;
    assert_eq!(s, 200);
    let seen = seen.unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    let (_, seen) = ask_and_find(base, mock, CLAUDE).await;
    assert_eq!(
        seen.unwrap().header("anthropic-beta"),
        Some("test-beta-2025-01-01")
    );
}

#[tokio::test]
async fn changes_survive_a_restart_on_sqlite() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = json!({"type": "sqlite", "config": {"path": dir.path().join("config.db")}});
    let cfg = anthropic_only(&mock, |c| c["config_store"] = store);
    changes_survive_a_restart(&mock, cfg).await;
}

#[tokio::test]
async fn changes_survive_a_restart_on_postgres() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let db = PgDatabase::create();
    let cfg = anthropic_only(&mock, |c| c["config_store"] = db.logs_store());
    changes_survive_a_restart(&mock, cfg).await;
}

/// Rewrites config.json the way editors do (a new file renamed over the old).
fn replace_config(gw: &GatewayProcess, cfg: &Value) {
    let tmp = gw.app_dir().join(".config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, gw.app_dir().join("config.json")).unwrap();
}

async fn wait_reloads(gw: &GatewayProcess, n: usize) {
    let deadline = Instant::now() + WAIT;
    while gw.output().matches("configuration reloaded").count() < n {
        assert!(
            Instant::now() < deadline,
            "no reload; log:\n{}",
            gw.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_file_reload_keeps_api_edits_and_takes_what_the_file_changed() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let file = anthropic_only(&mock, |c| {
        c["client"] = json!({"header_filter_config": {"allowlist": ["x-from-file"]}});
    });
    let gw = start(&file).await;
    let base = gw.base_url();
    let (s, _) = api(
        Method::PUT,
        base,
        "/api/config",
        Some(json!({"client_config": {"header_filter_config": {"allowlist": ["anthropic-beta"]}}})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = api(Method::POST, base, "/api/providers", Some(openai(&mock))).await;
    assert_eq!(s, 201);

    // The file changes elsewhere: the API's allowlist and provider stay.
    let mut edited = file.clone();
    edited["client"]["drop_excess_requests"] = json!(true);
    replace_config(&gw, &edited);
    wait_reloads(&gw, 1).await;
    let (_, settings) = api(Method::GET, base, "/api/config", None).await;
    let c = &settings["client_config"];
    assert_eq!(
        c["header_filter_config"]["allowlist"],
        json!(["anthropic-beta"])
    );
    assert_eq!(c["drop_excess_requests"], true);
    assert_eq!(ask_and_find(base, &mock, GPT).await.0, 200);

    // The file changes the allowlist itself: the file's now applies, and the log says so.
    edited["client"]["header_filter_config"] = json!({"allowlist": ["x-file-again"]});
    replace_config(&gw, &edited);
    wait_reloads(&gw, 2).await;
    let (_, settings) = api(Method::GET, base, "/api/config", None).await;
    assert_eq!(
        settings["client_config"]["header_filter_config"]["allowlist"],
        json!(["x-file-again"])
    );
    assert!(
        gw.output().contains("admin API had changed too"),
        "{}",
        gw.output()
    );
    assert_eq!(ask_and_find(base, &mock, GPT).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_finishes_across_changes() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&anthropic_only(&mock, |_| {})).await;
    let base = gw.base_url().to_owned();
    let res = heimdall_testkit::http_client()
        .post(format!("{base}/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&request(CLAUDE, "a long one [[mock:hold_open 1500]]", true))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The stream is open (its headers came); change providers and settings meanwhile.
    let (s, _) = api(Method::POST, &base, "/api/providers", Some(openai(&mock))).await;
    assert_eq!(s, 201);
    let mut anthropic = api(Method::GET, &base, "/api/providers/anthropic", None)
        .await
        .1;
    anthropic["network_config"]["max_retries"] = json!(3);
    let (s, _) = api(
        Method::PUT,
        &base,
        "/api/providers/anthropic",
        Some(anthropic),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = api(
        Method::PUT,
        &base,
        "/api/config",
        Some(json!({"client_config": {"drop_excess_requests": true}})),
    )
    .await;
    assert_eq!(s, 200);
    let events = common::stream_events(res).await;
    common::assert_grammar(&events, false);
}

#[tokio::test]
async fn instances_sharing_a_postgres_store_take_each_other_s_changes() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let db = PgDatabase::create();
    let cfg = anthropic_only(&mock, |c| c["config_store"] = db.logs_store());
    let (a, b) = (start(&cfg).await, start(&cfg).await);
    let (s, _) = api(
        Method::POST,
        a.base_url(),
        "/api/providers",
        Some(openai(&mock)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = api(
        Method::PUT,
        a.base_url(),
        "/api/config",
        Some(json!({"client_config": {"header_filter_config": {"allowlist": ["anthropic-beta"]}}})),
    )
    .await;
    assert_eq!(s, 200);
    // The other instance polls the store's revision; the two changes are two revisions, and
    // it may take the first before the second is written.
    let deadline = Instant::now() + WAIT;
    while ask_and_find(b.base_url(), &mock, GPT).await.0 != 200 {
        assert!(Instant::now() < deadline, "{}", b.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let (_, seen) = ask_and_find(b.base_url(), &mock, CLAUDE).await;
        let beta = seen.and_then(|r| r.header("anthropic-beta").map(str::to_owned));
        if beta.as_deref() == Some("test-beta-2025-01-01") {
            break;
        }
        assert!(Instant::now() < deadline, "{beta:?}\n{}", b.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.output().contains("reloaded from the config store"));
}
