//! Start-up, configuration, models, cancellation and shutdown of the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::time::Duration;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};

#[tokio::test]
async fn starts_without_config_and_names_the_missing_provider() {
    let gw = GatewayProcess::start(bin(), None, &[], &[]).await.unwrap();
    let http = heimdall_testkit::http_client();
    let health = http
        .get(format!("{}/health", gw.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    for (model, name) in [(CLAUDE, "anthropic"), (GPT, "openai")] {
        let res = post_messages(gw.base_url(), &request(model, "hi", false)).await;
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("provider `{name}` is not configured")),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn environment_keys_enable_providers_without_config() {
    let gw = GatewayProcess::start(bin(), None, &[("OPENAI_API_KEY", "sk-env")], &[])
        .await
        .unwrap();
    let out = gw.output();
    assert!(
        out.contains("providers enabled from the environment"),
        "{out}"
    );
    assert!(out.contains("openai") && !out.contains("sk-env"), "{out}");
}

#[tokio::test]
async fn bifrost_config_fields_warn_once_and_bad_config_names_the_path() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), |c| {
        c["client"] = json!({"enable_logging": true});
        c["providers"]["openai"]["keys"][0]["value"] = json!("env.HEIMDALL_TEST_OPENAI");
    });
    let gw = GatewayProcess::start(
        bin(),
        Some(&cfg),
        &[("HEIMDALL_TEST_OPENAI", "k-from-env")],
        &[],
    )
    .await
    .unwrap();
    let out = gw.output();
    assert_eq!(out.matches("not supported yet").count(), 1, "{out}");
    assert!(out.contains("client.enable_logging"), "{out}");
    let res = post_messages(gw.base_url(), &request(GPT, "hi", false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        mock.requests()[0].header("authorization"),
        Some("Bearer k-from-env")
    );

    let bad = json!({"providers": {"openai": {"keys": [{"value": "k", "weight": "heavy"}]}}});
    let err = GatewayProcess::start(bin(), Some(&bad), &[], &[]).await;
    let msg = format!("{:#}", err.err().expect("must not start"));
    assert!(msg.contains("providers.openai.keys[0].weight"), "{msg}");
}

#[tokio::test]
async fn accepts_bifrost_single_dash_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args([
            "-app-dir",
            dir.path().to_str().unwrap(),
            "-port",
            "0",
            "-host",
            "127.0.0.1",
            "-log-level",
            "warn",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        line.starts_with("heimdall listening on http://127.0.0.1:"),
        "{line}"
    );
}

#[tokio::test]
async fn models_list_both_providers_with_prefixes_and_pagination() {
    let h = Harness::start().await;
    let page = h.get_json("/anthropic/v1/models?limit=1000").await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"openai/gpt-4o-mini"), "{ids:?}");
    assert!(
        ids.contains(&CLAUDE),
        "Anthropic models are listed bare: {ids:?}"
    );
    assert_eq!(page["has_more"], false);
    assert_eq!(page["first_id"], ids[0]);
    for m in page["data"].as_array().unwrap() {
        assert_eq!(m["type"], "model");
        assert!(m["created_at"].as_str().unwrap().ends_with('Z'));
    }
    let first = h.get_json("/anthropic/v1/models?limit=1").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    assert_eq!(first["has_more"], true);
    let next = h
        .get_json(&format!(
            "/anthropic/v1/models?limit=1&after_id={}",
            first["last_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(next["first_id"], ids[1]);

    let one = h.get_json("/anthropic/v1/models/openai/gpt-4o-mini").await;
    assert_eq!(one["id"], "openai/gpt-4o-mini");
    let encoded = h
        .http
        .get(h.url("/anthropic/v1/models/openai%2Fgpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(encoded.status(), 200);
    for id in [CLAUDE.to_owned(), format!("anthropic/{CLAUDE}")] {
        let m = h.get_json(&format!("/anthropic/v1/models/{id}")).await;
        assert_eq!(m["id"], id.as_str(), "answered under the id asked for");
    }
    let missing = h
        .http
        .get(h.url("/anthropic/v1/models/openai/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_disconnecting_client_cancels_the_upstream_request() {
    let h = Harness::start().await;
    for (model, stream) in [(GPT, false), (CLAUDE, true)] {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let sent = client
            .post(h.url("/anthropic/v1/messages"))
            .json(&request(model, "[[mock:delay 5000]]", stream))
            .send()
            .await;
        assert!(sent.is_err(), "the client gave up first");
        let mut cancelled = false;
        for _ in 0..40 {
            if h.gateway
                .output()
                .matches("upstream request cancelled")
                .count()
                >= if stream { 2 } else { 1 }
            {
                cancelled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            cancelled,
            "no cancellation logged for {model}:\n{}",
            h.gateway.output()
        );
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut h = Harness::start().await;
    let http = h.http.clone();
    let url = h.url("/anthropic/v1/messages");
    let in_flight = tokio::spawn(async move {
        http.post(url)
            .json(&request(GPT, "slow one [[mock:delay 800]]", false))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &h.gateway.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "slow one");
    let status = h
        .gateway
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("exited");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn shutdown_waits_no_longer_than_the_grace_period() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), |_| {});
    let mut gw = GatewayProcess::start(bin(), Some(&cfg), &[], &["--shutdown-grace-seconds", "1"])
        .await
        .unwrap();
    let res = post_messages(
        gw.base_url(),
        &request(CLAUDE, "a b c [[mock:stall 20000]]", true),
    )
    .await;
    assert_eq!(res.status(), 200, "the stream is open");
    // A plain request still waiting when the grace period ends gets a 503, not an empty reply.
    let waiting = tokio::spawn({
        let url = gw.base_url().to_owned();
        async move { post_messages(&url, &request(GPT, "[[mock:delay 20000]]", false)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = gw.wait_exit(Duration::from_secs(6)).await.unwrap();
    let status = status.expect("still running 6 s after SIGTERM with a 1 s grace period");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "exited before the grace period"
    );
    assert_eq!(
        status.code(),
        Some(75),
        "the exit code says the grace ran out"
    );
    // The open stream ended with an error event, not a cut.
    let text = res.text().await.unwrap();
    let events = parse_sse(&text);
    assert_grammar(&events, true);
    assert_eq!(
        events.last().unwrap().data["error"]["type"],
        "overloaded_error"
    );
    let res = waiting.await.unwrap();
    assert_eq!(res.status(), 503);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert!(
        gw.output().contains("grace period exceeded"),
        "{}",
        gw.output()
    );
}

#[tokio::test]
async fn config_flag_overrides_the_app_dir_file() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("elsewhere.json");
    let cfg = config(&mock.base_url(), |c| {
        c["providers"]["openai"]["network_config"]["extra_headers"] = json!({"x-team": "search"});
    });
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let gw = GatewayProcess::start(bin(), None, &[], &["--config", path.to_str().unwrap()])
        .await
        .unwrap();
    let res = post_messages(gw.base_url(), &request(GPT, "hi", false)).await;
    assert_eq!(res.status(), 200);
    let seen = &mock.requests()[0];
    assert_eq!(
        seen.header("x-team"),
        Some("search"),
        "extra_headers go upstream"
    );

    let missing = dir.path().join("missing.json");
    let err =
        GatewayProcess::start(bin(), None, &[], &["--config", missing.to_str().unwrap()]).await;
    let msg = format!(
        "{:#}",
        err.err()
            .expect("an explicit config that is missing is an error")
    );
    assert!(msg.contains("missing.json"), "{msg}");
}
