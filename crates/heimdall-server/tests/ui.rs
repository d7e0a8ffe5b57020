//! The web UI's server side against the real binary: the embedded assets with their types,
//! cache tags and content security policy; the login (`POST /api/session`) and its cookie,
//! accepted by the admin API beside Basic and bearer credentials and refused once logged out;
//! and the dashboard's `GET /api/logs/timeseries`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const PASSWORD: &str = "ui-admin-pass-271828";

/// A client that does not follow redirects, so that they can be checked.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn assert_policy(headers: &HeaderMap, what: &str) {
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{what}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
}

#[tokio::test]
async fn assets_are_served_with_their_types_cache_tags_and_policy() {
    let h = Harness::start().await;
    let http = client();

    for path in ["/", "/ui"] {
        let res = http.get(h.url(path)).send().await.unwrap();
        assert!(res.status().is_redirection(), "{path}: {}", res.status());
        assert_eq!(res.headers()["location"], "/ui/", "{path}");
    }

    for (path, kind) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/pages/dashboard.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let res = http.get(h.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["content-type"], kind, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-cache", "{path}");
        assert_policy(res.headers(), path);
        let etag = res.headers()["etag"].clone();
        assert!(!res.bytes().await.unwrap().is_empty(), "{path}");
        // A browser revalidating what it has gets a 304 without the body.
        let again = http
            .get(h.url(path))
            .header("if-none-match", etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], etag, "{path}");
    }

    let page = http
        .get(h.url("/ui/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // No inline script or style (the policy would block them), and nothing from elsewhere.
    assert!(page.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(!page.contains("<style") && !page.contains("style=\""));
    assert!(!page.contains("http://") && !page.contains("https://"));

    let missing = http.get(h.url("/ui/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_policy(missing.headers(), "404");
    let escape = http.get(h.url("/ui/../Cargo.toml")).send().await.unwrap();
    assert_ne!(escape.status(), StatusCode::OK);
}

/// The `heimdall_session=…` pair of a `Set-Cookie`, and its attributes.
fn session_cookie(res: &reqwest::Response) -> (String, String) {
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().trim().to_owned();
    assert!(pair.starts_with("heimdall_session="), "{set}");
    (pair, set)
}

/// The status of `GET path` sent as the web UI sends it (`x-heimdall-ui`), with `cookie`.
async fn status_with(h: &Harness, path: &str, cookie: Option<&str>) -> StatusCode {
    let mut req = client().get(h.url(path)).header("x-heimdall-ui", "1");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn a_login_gives_a_session_cookie_the_admin_api_takes_until_logout() {
    let h = Harness::with_config(|c| {
        c["client"] =
            json!({"admin_auth": {"type": "basic", "username": "admin", "password": PASSWORD}});
    })
    .await;
    let http = client();

    // The assets are public (they hold no data); the API is not.
    assert_eq!(status_with(&h, "/ui/", None).await, StatusCode::OK);
    for path in [
        "/api/logs",
        "/api/logs/timeseries",
        "/api/config",
        "/metrics",
    ] {
        assert_eq!(
            status_with(&h, path, None).await,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    // The UI's own requests learn the scheme without the browser's password dialog.
    let res = http
        .get(h.url("/api/logs"))
        .header("x-heimdall-ui", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["x-heimdall-auth"], "Basic");
    assert!(res.headers().get("www-authenticate").is_none());
    let plain = http.get(h.url("/api/logs")).send().await.unwrap();
    assert_eq!(
        plain.headers()["www-authenticate"],
        r#"Basic realm="heimdall""#
    );

    // Wrong credentials: 401, no cookie, nothing echoed.
    for body in [
        json!({"username": "admin", "password": "guess-0451"}),
        json!({"username": "Admin", "password": PASSWORD}),
        json!({"token": PASSWORD}),
        json!({}),
    ] {
        let res = http
            .post(h.url("/api/session"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{body}");
        assert!(res.headers().get("set-cookie").is_none(), "{body}");
        let text = res.text().await.unwrap();
        assert!(
            !text.contains(PASSWORD) && !text.contains("guess-0451"),
            "{text}"
        );
    }
    let res = http
        .post(h.url("/api/session"))
        .header("content-type", "text/plain")
        .body("admin:pw")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // The right ones, as JSON: a cookie a script cannot read and another site cannot send.
    let res = http
        .post(h.url("/api/session"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (cookie, set) = session_cookie(&res);
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(cookie.len() > "heimdall_session=".len() + 32, "{cookie}");
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["auth"], "basic");

    for path in [
        "/api/logs",
        "/api/logs/timeseries",
        "/api/config",
        "/metrics",
    ] {
        assert_eq!(
            status_with(&h, path, Some(&cookie)).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // Beside other cookies, as a browser sends it.
    let among = format!("theme=dark; {cookie}; other=1");
    assert_eq!(
        status_with(&h, "/api/logs", Some(&among)).await,
        StatusCode::OK
    );
    // Without the UI's header the cookie is not enough: another page of the same site (another
    // port of this host) could make the browser send the cookie, but not that header.
    let bare = http
        .get(h.url("/api/logs"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    // A made-up token is nothing.
    let forged = "heimdall_session=00000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(
        status_with(&h, "/api/logs", Some(forged)).await,
        StatusCode::UNAUTHORIZED
    );

    // An HTML form works too.
    let res = http
        .post(h.url("/api/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username=admin&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (second, set) = session_cookie(&res);
    assert_ne!(second, cookie, "each login has its own token");
    assert!(!set.contains("Secure"), "{set}");
    // Behind a proxy that ends TLS, the cookie is kept to HTTPS.
    let res = http
        .post(h.url("/api/session"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(session_cookie(&res).1.contains("; Secure"));

    // Logging out ends that session (and clears the cookie), not the other.
    let res = http
        .delete(h.url("/api/session"))
        .header("cookie", &cookie)
        .header("x-heimdall-ui", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let cleared = res.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("heimdall_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(
        status_with(&h, "/api/logs", Some(&cookie)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with(&h, "/api/logs", Some(&second)).await,
        StatusCode::OK
    );
    // Logging out needs to be logged in (it is an admin route like the others).
    let res = http.delete(h.url("/api/session")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bearer_token_logs_in_and_no_auth_needs_no_session() {
    let h = Harness::with_config(|c| {
        c["client"] = json!({"admin_auth": {"type": "bearer", "token": PASSWORD}});
    })
    .await;
    let http = client();
    let wrong = http
        .post(h.url("/api/session"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let res = http
        .post(h.url("/api/session"))
        .json(&json!({"token": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (cookie, _) = session_cookie(&res);
    assert_eq!(
        status_with(&h, "/api/config", Some(&cookie)).await,
        StatusCode::OK
    );

    let open = Harness::start().await;
    let res = http
        .post(open.url("/api/session"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("set-cookie").is_none());
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["auth"], "none");
}

#[tokio::test]
async fn the_time_series_counts_the_requests_sent() {
    let h = Harness::start().await;
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1000;
    assert_eq!(
        h.messages(&request(CLAUDE, "hello", false)).await.status(),
        200
    );
    assert_eq!(
        h.messages(&request(GPT, "hello", false)).await.status(),
        200
    );
    let failed = h
        .messages(&request(GPT, "[[mock:error 500]] no", false))
        .await;
    assert!(failed.status().is_server_error());

    let to = from + 120_000;
    let path = format!("/api/logs/timeseries?from={from}&to={to}&buckets=4");
    let series = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let v = h.get_json(&path).await;
            let total: u64 = v["buckets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["requests"].as_u64().unwrap())
                .sum();
            if total >= 3 {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the three requests in the series");
    assert_eq!(series["bucket_ms"], 30_000);
    assert_eq!(series["buckets"].as_array().unwrap().len(), 4);
    let first = &series["buckets"][0];
    assert_eq!(first["requests"], 3);
    assert_eq!(first["errors"], 1);
    assert!(first["latency_p50_ms"].as_f64().unwrap() > 0.0);
    let models: Vec<&str> = series["top_models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(models[0], GPT, "{series}");

    for bad in [
        "from=10&to=5",
        "buckets=0",
        "buckets=5000",
        "from=-1",
        "top=abc",
    ] {
        let res = h
            .http
            .get(h.url(&format!("/api/logs/timeseries?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{bad}");
    }
}
