//! The admin API against the real binary: `client.admin_auth` (Basic and bearer) guarding
//! `/api/*` and `/metrics` but neither `/health` nor inference, applied again by a reload, and
//! never echoing a credential; the OpenAPI document at `/api/openapi.json`, which must describe
//! exactly the admin routes the router serves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "s3cret-admin-password";
const TOKEN: &str = "admin-token-from-the-environment";
/// The admin routes every test knocks on.
const GUARDED: [&str; 3] = ["/api/logs", "/api/openapi.json", "/metrics"];

/// A mock and a gateway in front of it, with `client` as the config's client section, `env`
/// set for the gateway and config.json polled every 50 ms.
async fn start(client: Value, env: &[(&str, &str)]) -> Harness {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), |c| c["client"] = client);
    let gateway = GatewayProcess::start(bin(), Some(&cfg), env, &["--config-poll-ms", "50"])
        .await
        .unwrap();
    Harness {
        mock,
        gateway,
        http: heimdall_testkit::http_client(),
    }
}

async fn get(h: &Harness, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut req = h.http.get(h.url(path));
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    req.send().await.unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Asserts a 401 in the admin API's error shape, with `challenge` and no credential in it.
async fn assert_refused(res: reqwest::Response, challenge: &str, context: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{context}");
    assert_eq!(res.headers()["www-authenticate"], challenge, "{context}");
    let text = res.text().await.unwrap();
    for secret in [PASSWORD, TOKEN, "wrong"] {
        assert!(!text.contains(secret), "{context}: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["type"], "error", "{context}: {body}");
    assert_eq!(
        body["error"]["type"], "authentication_error",
        "{context}: {body}"
    );
}

/// `/health` and inference answer without admin credentials.
async fn assert_open_routes_stay_open(h: &Harness) {
    let health = get(h, "/health", None).await;
    assert_eq!(health.status(), 200);
    let answer = h.messages(&request(CLAUDE, "hello", false)).await;
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn basic_auth_guards_the_admin_api_and_nothing_else() {
    let h = start(
        json!({"admin_auth": {"type": "basic", "username": "admin", "password": PASSWORD}}),
        &[],
    )
    .await;
    let challenge = r#"Basic realm="heimdall""#;
    for path in GUARDED {
        assert_refused(get(&h, path, None).await, challenge, path).await;
        for wrong in [
            basic("admin", "wrong"),
            basic("wrong", PASSWORD),
            format!("Bearer {PASSWORD}"),
            "Basic !!!".to_owned(),
        ] {
            let res = get(&h, path, Some(&wrong)).await;
            assert_refused(res, challenge, &format!("{path} with {wrong}")).await;
        }
        let ok = get(&h, path, Some(&basic("admin", PASSWORD))).await;
        assert_eq!(ok.status(), 200, "{path}");
    }
    assert_open_routes_stay_open(&h).await;
    assert!(!h.gateway.output().contains(PASSWORD));
}

#[tokio::test]
async fn bearer_auth_reads_its_token_from_the_environment() {
    let h = start(
        json!({"admin_auth": {"type": "bearer", "token": "env.HEIMDALL_TEST_ADMIN_TOKEN"}}),
        &[("HEIMDALL_TEST_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    for path in GUARDED {
        assert_refused(get(&h, path, None).await, "Bearer", path).await;
        for wrong in [
            "Bearer wrong".to_owned(),
            format!("Bearer {TOKEN}x"),
            basic("admin", TOKEN),
            TOKEN.to_owned(),
        ] {
            let res = get(&h, path, Some(&wrong)).await;
            assert_refused(res, "Bearer", &format!("{path} with {wrong}")).await;
        }
        let ok = get(&h, path, Some(&format!("Bearer {TOKEN}"))).await;
        assert_eq!(ok.status(), 200, "{path}");
    }
    assert_open_routes_stay_open(&h).await;
    assert!(!h.gateway.output().contains(TOKEN));
}

#[tokio::test]
async fn an_unset_token_variable_stops_the_start_without_naming_a_secret() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), |c| {
        c["client"] = json!({"admin_auth": {"type": "bearer", "token": "env.HEIMDALL_TEST_UNSET"}});
    });
    let err = GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .err()
        .expect("the gateway must not start with the admin API's token missing");
    let text = format!("{err:#}");
    assert!(text.contains("client.admin_auth.token"), "{text}");
    assert!(text.contains("HEIMDALL_TEST_UNSET"), "{text}");
}

/// Polls `path` with `authorization` until it answers `want`.
async fn until_status(h: &Harness, path: &str, authorization: Option<&str>, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = get(h, path, authorization).await.status();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {status}, not {want}; log:\n{}",
            h.gateway.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rewrite(h: &Harness, client: Value) {
    let cfg = config(&h.mock.base_url(), |c| c["client"] = client);
    let file = h.gateway.app_dir().join("config.json");
    let tmp = h.gateway.app_dir().join(".config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[tokio::test]
async fn a_reload_sets_changes_and_removes_admin_auth() {
    let h = start(json!({}), &[]).await;
    until_status(&h, "/api/logs", None, 200).await;

    rewrite(
        &h,
        json!({"admin_auth": {"type": "bearer", "token": "first-token"}}),
    );
    until_status(&h, "/api/logs", None, 401).await;
    until_status(&h, "/api/logs", Some("Bearer first-token"), 200).await;

    rewrite(
        &h,
        json!({"admin_auth": {"type": "basic", "username": "ops", "password": PASSWORD}}),
    );
    until_status(&h, "/api/logs", Some("Bearer first-token"), 401).await;
    until_status(&h, "/metrics", Some(&basic("ops", PASSWORD)), 200).await;

    // An invalid section is refused as a whole: the running credentials stay.
    rewrite(&h, json!({"admin_auth": {"type": "bearer"}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.gateway.output().contains("client.admin_auth.token") {
        assert!(Instant::now() < deadline, "{}", h.gateway.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let still = get(&h, "/api/logs", Some(&basic("ops", PASSWORD))).await;
    assert_eq!(still.status(), 200);

    rewrite(&h, json!({}));
    until_status(&h, "/api/logs", None, 200).await;
    assert!(!h.gateway.output().contains(PASSWORD));
}

/// The paths the router serves under `/api` and `/metrics`, read from its route table (axum
/// shows every route's path template in the router's `Debug` output).
fn served_admin_paths() -> BTreeSet<String> {
    let gateway =
        heimdall_core::Gateway::new(heimdall_core::config::Config::from_env(&|_| None)).unwrap();
    let router = heimdall_server::router(heimdall_server::App::without_store(Arc::new(gateway)));
    let table = format!("{router:?}");
    let paths: BTreeSet<String> = table
        .split('"')
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .collect();
    // The route table is where we think it is: the other routes are in it too.
    assert!(paths.contains("/health"), "{table}");
    assert!(paths.contains("/anthropic/v1/messages"), "{table}");
    paths
        .into_iter()
        .filter(|p| p == "/metrics" || p == "/api" || p.starts_with("/api/"))
        .collect()
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_admin_route() {
    let h = start(
        json!({"admin_auth": {"type": "bearer", "token": "doc-token"}}),
        &[],
    )
    .await;
    let auth = Some("Bearer doc-token");
    let res = get(&h, "/api/openapi.json", auth).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0", "{doc}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["scheme"], "basic", "{schemes}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");

    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(
        documented,
        served_admin_paths(),
        "every admin route must be documented, and only those"
    );
    assert!(documented.contains("/api/logs/{id}"));

    // Each documented operation is served by its handler (not the router's 404), and says
    // what it answers without credentials.
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            if method != "get" {
                // Writes are exercised by tests/governance_admin.rs and schemathesis.
                continue;
            }
            let concrete = path
                .replace("{id}", "req_unknown")
                .replace("{provider}", "req_unknown");
            let res = get(&h, &concrete, auth).await;
            let status = res.status();
            let text = res.text().await.unwrap();
            let unknown = text.contains("with id") || text.contains("no provider `req_unknown`");
            assert!(
                status == 200 || (status == 404 && unknown),
                "{path}: {status} {text}"
            );
            assert_eq!(get(&h, &concrete, None).await.status(), 401, "{path}");
        }
    }

    // Every documented parameter of the listing is one the handler reads: a value its schema
    // refuses is a 400, a filter nothing matches empties the page.
    let logged = h.messages(&request(CLAUDE, "to be listed", false)).await;
    assert_eq!(logged.status(), 200);
    let total = |page: &Value| page["pagination"]["total_count"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page: Value = get(&h, "/api/logs", auth).await.json().await.unwrap();
        if total(&page) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let params = paths["/api/logs"]["get"]["parameters"].as_array().unwrap();
    assert_eq!(params.len(), 9, "{params:?}");
    for param in params {
        let name = param["name"].as_str().unwrap();
        assert_eq!(param["in"], "query", "{param}");
        let schema = &param["schema"];
        let free_text = *schema == json!({"type": "string"})
            || *schema == json!({"type": "array", "items": {"type": "string"}});
        let res = get(&h, &format!("/api/logs?{name}=zz-no-match"), auth).await;
        if !free_text {
            assert_eq!(res.status(), 400, "{name}: {schema}");
        } else {
            assert_eq!(res.status(), 200, "{name}");
            let page: Value = res.json().await.unwrap();
            assert_eq!(total(&page), 0, "{name} is not read as a filter: {page}");
        }
    }
}
