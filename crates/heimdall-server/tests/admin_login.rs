//! The web UI's login (`POST /api/session`) against the real binary: past 5 failed logins
//! from an address within a minute, its logins are answered 429 with `retry-after`, the right
//! credentials included; the submitted passwords are never logged; Basic credentials on the
//! other admin routes are not limited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Harness;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "login-limit-password-2718";

async fn login(h: &Harness, password: &str) -> reqwest::Response {
    h.http
        .post(h.url("/api/session"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_answered_429_past_the_limit() {
    let h = Harness::with_config(|c| {
        c["client"] =
            json!({"admin_auth": {"type": "basic", "username": "admin", "password": PASSWORD}});
    })
    .await;
    for i in 0..5 {
        let res = login(&h, &format!("guess-{i}-0451")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {i}");
    }
    for password in ["guess-5-0451", PASSWORD] {
        let res = login(&h, password).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(res.headers().get("set-cookie").is_none());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    }

    // Scripts with Basic credentials are not locked out.
    let res = h
        .http
        .get(h.url("/api/providers"))
        .basic_auth("admin", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let log = h.gateway.output();
    assert!(log.contains("too many failed logins"), "{log}");
    assert!(!log.contains("guess-") && !log.contains(PASSWORD), "{log}");
}
