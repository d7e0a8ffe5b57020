//! Config reload without a restart: the file polled for changes (`--config-poll-ms`) and
//! SIGHUP; an invalid file refused with its JSON path while the running configuration stays;
//! requests in flight finishing on the configuration they started with; no request lost while
//! the configuration changes under load; key circuits and provider slots of unchanged keys and
//! providers carried over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer, RecordedRequest};
use serde_json::{Value, json};

const KEY_A: &str = "reload-key-a";
const KEY_B: &str = "reload-key-b";
const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "config reload refused";
/// How long any change may take to show: far above the poll intervals used here.
const WAIT: Duration = Duration::from_secs(10);
/// Gateways started at once by the tests of the start-up window, which is short.
const RACES: usize = 10;

/// Anthropic alone at `mock_url`, with one key `name` = `value`.
fn anthropic_only(mock_url: &str, name: &str, value: &str) -> Value {
    config(mock_url, |c| {
        c["providers"].as_object_mut().unwrap().remove("openai");
        c["providers"]["anthropic"]["keys"] =
            json!([{"name": name, "value": value, "models": ["*"], "weight": 1}]);
    })
}

/// A mock and the gateway in front of it, started with `--config-poll-ms poll_ms` and the
/// config `cfg` makes from the mock's URL; returns as soon as the gateway listens.
async fn start(poll_ms: u64, cfg: impl FnOnce(&str) -> Value) -> Harness {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = cfg(&mock.base_url());
    let poll = poll_ms.to_string();
    let gateway = GatewayProcess::start(bin(), Some(&cfg), &[], &["--config-poll-ms", &poll])
        .await
        .unwrap();
    Harness {
        mock,
        gateway,
        http: heimdall_testkit::http_client(),
    }
}

fn config_file(h: &Harness) -> std::path::PathBuf {
    h.gateway.app_dir().join("config.json")
}

/// Replaces config.json the way editors save: a new file in the same directory, renamed over
/// the old one.
fn replace_config(h: &Harness, cfg: &Value) {
    let tmp = h.gateway.app_dir().join(".config.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, config_file(h)).unwrap();
}

/// Rewrites config.json in place (truncate, then write).
fn overwrite_config(h: &Harness, text: &str) {
    std::fs::write(config_file(h), text).unwrap();
}

fn log_count(h: &Harness, needle: &str) -> usize {
    h.gateway.output().matches(needle).count()
}

/// The log lines containing `needle`.
fn log_lines(h: &Harness, needle: &str) -> Vec<String> {
    h.gateway
        .output()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Waits until the log holds `needle` at least `n` times.
async fn wait_log(h: &Harness, needle: &str, n: usize) {
    let deadline = Instant::now() + WAIT;
    while log_count(h, needle) < n {
        assert!(
            Instant::now() < deadline,
            "`{needle}` not logged {n} times within {WAIT:?}; log:\n{}",
            h.gateway.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the mock recorded for the request whose text holds `tag`.
fn recorded(mock: &MockServer, tag: &str) -> Vec<RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.body.to_string().contains(tag))
        .collect()
}

/// The credential an upstream request carried: Anthropic's `x-api-key`, or a bearer token.
fn upstream_key(r: &RecordedRequest) -> String {
    r.header("x-api-key")
        .map(str::to_owned)
        .or_else(|| {
            r.header("authorization")
                .map(|v| v.trim_start_matches("Bearer ").to_owned())
        })
        .unwrap_or_default()
}

/// Sends Claude a non-streaming request; asserts it succeeded with exactly one upstream
/// request and returns the key that request carried.
async fn key_used(h: &Harness) -> String {
    let t = unique_tag();
    let res = h.messages(&request(CLAUDE, &t, false)).await;
    let status = res.status();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
    let seen = recorded(&h.mock, &t);
    assert_eq!(seen.len(), 1, "{seen:?}");
    upstream_key(&seen[0])
}

/// Sends requests until one reaches the mock with `key`; panics after [`WAIT`]. Every request
/// on the way must succeed.
async fn until_key(h: &Harness, key: &str) {
    let deadline = Instant::now() + WAIT;
    while key_used(h).await != key {
        assert!(
            Instant::now() < deadline,
            "no request carried `{key}` within {WAIT:?}; log:\n{}",
            h.gateway.output()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends SIGHUP to the gateway (a system call rather than `kill`: at once).
#[cfg(unix)]
fn hangup(h: &Harness) {
    use rustix::process::{Pid, Signal, kill_process};
    let pid = Pid::from_raw(i32::try_from(h.gateway.pid()).unwrap()).unwrap();
    kill_process(pid, Signal::HUP).unwrap();
}

#[tokio::test]
async fn a_file_replaced_by_rename_applies_without_a_restart() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    assert_eq!(key_used(&h).await, KEY_A);
    // An unchanged file is not reloaded at every poll.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(log_count(&h, RELOADED), 0, "{}", h.gateway.output());

    replace_config(&h, &anthropic_only(&h.mock.base_url(), "b", KEY_B));
    until_key(&h, KEY_B).await;
    wait_log(&h, RELOADED, 1).await;
    for _ in 0..5 {
        assert_eq!(key_used(&h).await, KEY_B, "the old key came back");
    }
    let line = &log_lines(&h, RELOADED)[0];
    assert!(line.contains("file changed"), "{line}");

    // Seen once: the new contents are not reloaded again and again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(log_count(&h, RELOADED), 1, "{}", h.gateway.output());
}

#[tokio::test]
async fn a_file_rewritten_in_place_applies_without_a_restart() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    assert_eq!(key_used(&h).await, KEY_A);

    let b = anthropic_only(&h.mock.base_url(), "b", KEY_B);
    overwrite_config(&h, &serde_json::to_string_pretty(&b).unwrap());
    until_key(&h, KEY_B).await;
    wait_log(&h, RELOADED, 1).await;
    let res = h.messages(&request(CLAUDE, "hi", false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-bf-key-name"), "b");
}

#[cfg(unix)]
#[tokio::test]
async fn with_polling_off_only_sighup_reloads() {
    let h = start(0, |url| anthropic_only(url, "a", KEY_A)).await;
    assert_eq!(key_used(&h).await, KEY_A);

    replace_config(&h, &anthropic_only(&h.mock.base_url(), "b", KEY_B));
    // Polling is off: for 1.5 s the changed file changes nothing.
    let quiet = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet {
        assert_eq!(key_used(&h).await, KEY_A, "reloaded without SIGHUP");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(log_count(&h, RELOADED), 0, "{}", h.gateway.output());

    hangup(&h);
    until_key(&h, KEY_B).await;
    wait_log(&h, RELOADED, 1).await;
    let line = &log_lines(&h, RELOADED)[0];
    assert!(line.contains("SIGHUP"), "{line}");

    // SIGHUP reloads even an unchanged file (a forced reload), and the process lives on.
    hangup(&h);
    wait_log(&h, RELOADED, 2).await;
    assert_eq!(key_used(&h).await, KEY_B);
}

#[tokio::test]
async fn an_invalid_file_is_refused_and_the_running_config_stays() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    assert_eq!(key_used(&h).await, KEY_A);
    let b = anthropic_only(&h.mock.base_url(), "b", KEY_B);

    // Broken JSON: refused with the line and column.
    overwrite_config(&h, "{\n  \"providers\": nope\n}\n");
    wait_log(&h, REFUSED, 1).await;
    let line = log_lines(&h, REFUSED).pop().unwrap();
    assert!(line.contains("config.json"), "names the file: {line}");
    assert!(line.contains("line 2 column"), "{line}");
    for _ in 0..3 {
        assert_eq!(key_used(&h).await, KEY_A);
    }

    // Valid JSON of the wrong type, then well-typed but out of range, each carrying the new
    // key: the file is validated in full before anything of it applies.
    for (refusals, weight) in [(2, json!("x")), (3, json!(-1))] {
        let mut invalid = b.clone();
        invalid["providers"]["anthropic"]["keys"][0]["weight"] = weight;
        replace_config(&h, &invalid);
        wait_log(&h, REFUSED, refusals).await;
        let line = log_lines(&h, REFUSED).pop().unwrap();
        assert!(
            line.contains("providers.anthropic.keys[0].weight"),
            "{line}"
        );
        for _ in 0..3 {
            assert_eq!(key_used(&h).await, KEY_A);
        }
    }
    assert_eq!(log_count(&h, RELOADED), 0, "{}", h.gateway.output());

    // A valid file applies again.
    replace_config(&h, &b);
    until_key(&h, KEY_B).await;
    wait_log(&h, RELOADED, 1).await;
}

#[tokio::test]
async fn a_deleted_file_keeps_the_running_config() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    std::fs::remove_file(config_file(&h)).unwrap();
    wait_log(&h, "config file not readable", 1).await;
    for _ in 0..3 {
        assert_eq!(key_used(&h).await, KEY_A);
    }
    // Not an environment-only start: the providers stay those of the file.
    assert_eq!(log_count(&h, RELOADED), 0, "{}", h.gateway.output());

    replace_config(&h, &anthropic_only(&h.mock.base_url(), "b", KEY_B));
    until_key(&h, KEY_B).await;
}

#[tokio::test]
async fn a_header_allowlist_applies_to_the_next_request() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    let send = || async {
        let t = unique_tag();
        let res = h
            .http
            .post(h.url("/anthropic/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "x-test-beta")
            .json(&request(CLAUDE, &t, false))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let seen = recorded(&h.mock, &t);
        assert_eq!(seen.len(), 1);
        seen[0].header("anthropic-beta").map(str::to_owned)
    };
    assert_eq!(send().await, None, "not allowlisted yet");

    let mut allow = anthropic_only(&h.mock.base_url(), "a", KEY_A);
    allow["client"] = json!({"header_filter_config": {"allowlist": ["anthropic-beta"]}});
    replace_config(&h, &allow);
    wait_log(&h, RELOADED, 1).await;
    assert_eq!(send().await.as_deref(), Some("x-test-beta"));

    // And taken back the same way.
    replace_config(&h, &anthropic_only(&h.mock.base_url(), "a", KEY_A));
    wait_log(&h, RELOADED, 2).await;
    assert_eq!(send().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_lose_no_request() {
    let h = Arc::new(start(50, |url| anthropic_only(url, "a", KEY_A)).await);
    let url = h.mock.base_url();
    // Two valid configs: a different Claude key, and openai present or not (the load does
    // not use it).
    let one = anthropic_only(&url, "a", KEY_A);
    let two = config(&url, |c| {
        c["providers"]["anthropic"]["keys"] =
            json!([{"name": "b", "value": KEY_B, "models": ["*"], "weight": 3}]);
    });

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for task in 0..8 {
        let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let kind = (task + sent) % 4;
                let stream = kind % 2 == 1;
                // Half of them slow, so that some are in flight across every swap.
                let text = if kind >= 2 {
                    "slow [[mock:delay 200]]"
                } else {
                    "fast"
                };
                let res = h.messages(&request(CLAUDE, text, stream)).await;
                let status = res.status();
                let body = res.text().await.unwrap();
                assert_eq!(status, 200, "task {task} request {sent}: {body}");
                if stream {
                    assert_grammar(&parse_sse(&body), false);
                } else {
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["type"], "message", "{body}");
                }
                sent += 1;
            }
            sent
        }));
    }

    let mut rewrites = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(280)).await;
        rewrites += 1;
        replace_config(&h, if rewrites % 2 == 1 { &two } else { &one });
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }

    let reloads = log_count(&h, RELOADED);
    assert!(rewrites >= 10, "{rewrites}");
    assert!(reloads >= 5, "{reloads} reloads for {rewrites} rewrites");
    assert!(total >= 100, "only {total} requests");
    assert_eq!(log_count(&h, REFUSED), 0, "{}", h.gateway.output());
    // Both keys served: the load ran across the swaps.
    let keys: std::collections::HashSet<_> = h.mock.requests().iter().map(upstream_key).collect();
    assert!(keys.contains(KEY_A) && keys.contains(KEY_B), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    // Config A: key A at the first mock, one retry. Config B: key B at a second mock.
    let h = Arc::new(
        start(100, |url| {
            let mut c = anthropic_only(url, "a", KEY_A);
            c["providers"]["anthropic"]["network_config"]["max_retries"] = json!(1);
            c["providers"]["anthropic"]["network_config"]["retry_backoff_initial_ms"] = json!(10);
            c["providers"]["anthropic"]["network_config"]["retry_backoff_max_ms"] = json!(10);
            c
        })
        .await,
    );
    let second = MockServer::start(MockOptions::default()).await.unwrap();

    let slow = |text: String, stream: bool| {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let res = h.messages(&request(CLAUDE, &text, stream)).await;
            let status = res.status();
            let (key, attempts) = (header(&res, "x-bf-key-name"), header(&res, "x-bf-attempts"));
            let body = res.text().await.unwrap();
            assert_eq!(status, 200, "{body}");
            if stream {
                assert_grammar(&parse_sse(&body), false);
            }
            (key, attempts)
        })
    };
    let (t1, t2, t3) = (unique_tag(), unique_tag(), unique_tag());
    let plain = slow(format!("{t1} [[mock:delay 1500]]"), false);
    let streamed = slow(format!("{t2} [[mock:delay 1500]]"), true);
    // Fails once after 800 ms, then retried: the retry is sent after the reload.
    let retried = slow(
        format!("{t3} [[mock:delay 800]] [[mock:fail_first 1 503 reload-in-flight-retry]]"),
        false,
    );
    let deadline = Instant::now() + WAIT;
    while h.mock.requests().len() < 3 {
        assert!(Instant::now() < deadline, "the slow requests never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    replace_config(&h, &anthropic_only(&second.base_url(), "b", KEY_B));
    wait_log(&h, RELOADED, 1).await;
    assert!(
        !plain.is_finished() && !streamed.is_finished() && !retried.is_finished(),
        "the reload came too late to test anything"
    );
    // New requests take the new configuration at once.
    let t = unique_tag();
    let res = h.messages(&request(CLAUDE, &t, false)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-bf-key-name"), "b");
    let seen = recorded(&second, &t);
    assert_eq!(seen.len(), 1);
    assert_eq!(upstream_key(&seen[0]), KEY_B);

    assert_eq!(plain.await.unwrap(), ("a".to_owned(), "1".to_owned()));
    assert_eq!(streamed.await.unwrap(), ("a".to_owned(), "1".to_owned()));
    assert_eq!(retried.await.unwrap(), ("a".to_owned(), "2".to_owned()));
    for (t, n) in [(&t1, 1), (&t2, 1), (&t3, 2)] {
        let seen = recorded(&h.mock, t);
        assert_eq!(seen.len(), n, "{t}: {seen:?}");
        assert!(seen.iter().all(|r| upstream_key(r) == KEY_A), "{seen:?}");
        assert!(
            recorded(&second, t).is_empty(),
            "{t} went to the new upstream"
        );
    }
}

#[tokio::test]
async fn a_provider_added_by_reload_is_routable_and_removed_again() {
    let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
    let not_configured = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 400);
        let v: Value = res.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("provider `openai` is not configured"), "{v}");
    };
    not_configured(h.messages(&request(GPT, "hi", false)).await).await;

    replace_config(&h, &config(&h.mock.base_url(), |_| {}));
    wait_log(&h, RELOADED, 1).await;
    let t = unique_tag();
    let res = h.messages(&request(GPT, &t, false)).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let seen = recorded(&h.mock, &t);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(upstream_key(&seen[0]), OPENAI_KEY);

    replace_config(&h, &anthropic_only(&h.mock.base_url(), "a", KEY_A));
    wait_log(&h, RELOADED, 2).await;
    not_configured(h.messages(&request(GPT, "hi", false)).await).await;
    assert_eq!(key_used(&h).await, KEY_A);
}

#[tokio::test]
async fn key_circuits_carry_over_for_unchanged_keys_only() {
    // Key A takes 9 requests in 10 while its circuit is closed.
    let keys = |a_value: &str| {
        json!([
            {"name": "a", "value": a_value, "models": ["*"], "weight": 9},
            {"name": "b", "value": KEY_B, "models": ["*"], "weight": 1}
        ])
    };
    let with = |url: &str, a_value: &str, openai: bool| {
        let mut c = config(url, |_| {});
        c["providers"]["anthropic"]["keys"] = keys(a_value);
        c["providers"]["anthropic"]["circuit_breaker"] =
            json!({"failure_threshold": 1, "cooldown_seconds": 600});
        if !openai {
            c["providers"].as_object_mut().unwrap().remove("openai");
        }
        c
    };
    let h = start(100, |url| with(url, KEY_A, false)).await;
    let url = h.mock.base_url();

    // A 401 for key A opens its circuit (the request itself is served by B).
    let deadline = Instant::now() + WAIT;
    while log_count(&h, "key circuit opened") == 0 {
        assert!(Instant::now() < deadline, "{}", h.gateway.output());
        let res = h
            .messages(&request(
                CLAUDE,
                &format!("[[mock:key_error {KEY_A} 401]]"),
                false,
            ))
            .await;
        assert_eq!(res.status(), 200);
    }
    for _ in 0..10 {
        assert_eq!(key_used(&h).await, KEY_B, "key A's circuit is open");
    }

    // An unrelated change: key A is the same key, its circuit stays open.
    replace_config(&h, &with(&url, KEY_A, true));
    wait_log(&h, RELOADED, 1).await;
    for _ in 0..10 {
        assert_eq!(
            key_used(&h).await,
            KEY_B,
            "the reload closed key A's circuit"
        );
    }

    // A new value for `a` is a new key, with a closed circuit.
    let fresh = "reload-key-a2";
    replace_config(&h, &with(&url, fresh, true));
    wait_log(&h, RELOADED, 2).await;
    let mut used = Vec::new();
    for _ in 0..10 {
        used.push(key_used(&h).await);
    }
    assert!(used.iter().any(|k| k == fresh), "{used:?}");
}

#[tokio::test]
async fn provider_slots_carry_over_for_unchanged_limits() {
    // One slot, no queue: a second request while one is in flight is refused at once.
    let with = |url: &str, openai: bool| {
        let mut c = anthropic_only(url, "a", KEY_A);
        c["providers"]["anthropic"]["concurrency_and_buffer_size"] =
            json!({"concurrency": 1, "buffer_size": 0});
        c["client"] = json!({"drop_excess_requests": true});
        if openai {
            c["providers"]["openai"] = json!({
                "keys": [{"name": "o", "value": OPENAI_KEY, "models": ["*"], "weight": 1}],
                "network_config": {"base_url": url}
            });
        }
        c
    };
    let h = Arc::new(start(100, |url| with(url, false)).await);
    let slow = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            h.messages(&request(CLAUDE, "[[mock:delay 1500]]", false))
                .await
                .status()
        })
    };
    let deadline = Instant::now() + WAIT;
    while h.mock.requests().is_empty() {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Same limits after the reload: the slot held by the request in flight is still taken.
    replace_config(&h, &with(&h.mock.base_url(), true));
    wait_log(&h, RELOADED, 1).await;
    assert!(
        !slow.is_finished(),
        "the reload came too late to test anything"
    );
    let res = h.messages(&request(CLAUDE, "hi", false)).await;
    assert_eq!(res.status(), 529, "{}", res.text().await.unwrap());

    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(key_used(&h).await, KEY_A, "the slot is free again");
}

// The reloader compares the file with the text the configuration was loaded from, so a change
// written the moment the gateway listens is applied, not taken for the starting point.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_made_as_the_gateway_starts_is_not_lost() {
    // Several gateways, each changed the moment it listens.
    let starts: Vec<_> = (0..RACES)
        .map(|_| {
            tokio::spawn(async {
                let h = start(100, |url| anthropic_only(url, "a", KEY_A)).await;
                replace_config(&h, &anthropic_only(&h.mock.base_url(), "b", KEY_B));
                until_key(&h, KEY_B).await;
            })
        })
        .collect();
    for s in starts {
        s.await.unwrap();
    }
}

// The SIGHUP handler is in place before the gateway says it listens: a SIGHUP from then on
// reloads instead of ending the process with the signal's default action.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sighup_as_the_gateway_starts_does_not_end_it() {
    let starts: Vec<_> = (0..RACES)
        .map(|_| {
            tokio::spawn(async {
                let mut h = start(0, |url| anthropic_only(url, "a", KEY_A)).await;
                hangup(&h);
                let exited = h
                    .gateway
                    .wait_exit(Duration::from_millis(300))
                    .await
                    .unwrap();
                assert_eq!(exited, None, "SIGHUP ended the gateway");
                assert_eq!(key_used(&h).await, KEY_A);
            })
        })
        .collect();
    for s in starts {
        s.await.unwrap();
    }
}
