//! The client-facing edge of the real binary: timeouts, connection cap, oversized and
//! half-closed requests, errors produced below the router, unknown routes, log injection.
//! Raw sockets on loopback; every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

/// The gateway with `args` in front of the mock.
async fn gateway(args: &[&str], tweak: impl FnOnce(&mut Value)) -> (MockServer, GatewayProcess) {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let cfg = config(&mock.base_url(), tweak);
    let gw = GatewayProcess::start(bin(), Some(&cfg), &[], args)
        .await
        .unwrap();
    (mock, gw)
}

fn addr(gw: &GatewayProcess) -> String {
    gw.base_url().trim_start_matches("http://").to_owned()
}

async fn connect(gw: &GatewayProcess) -> TcpStream {
    TcpStream::connect(addr(gw)).await.unwrap()
}

#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an Anthropic error answer with `status` and `kind`; returns its message.
    fn anthropic_error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let id = self.header("request-id").expect("request-id header");
        assert!(id.starts_with("req_"), "{id}");
        let v = self.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert_eq!(v["request_id"], id, "{v}");
        v["error"]["message"].as_str().unwrap().to_owned()
    }
}

/// Reads one HTTP/1.1 response (content-length or chunked body) within `limit`.
async fn read_response(s: &mut TcpStream, limit: Duration) -> RawResponse {
    timeout(limit, read_response_inner(s))
        .await
        .expect("no complete response in time")
}

async fn read_response_inner(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = buf[head_end..].to_vec();
    let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().unwrap();
        while rest.len() < len {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed inside a body");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest.truncate(len);
        rest
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !rest.ends_with(b"0\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed inside a chunked body");
            rest.extend_from_slice(&chunk[..n]);
        }
        dechunk(&rest)
    } else {
        rest
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// Waits up to `limit` for the peer to close: `Some(elapsed)` if it did (EOF or reset).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

fn post_head(path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{extra}\r\n")
}

#[tokio::test]
async fn slowloris_connections_are_cut_at_the_header_timeout_while_others_are_served() {
    let (_mock, gw) = gateway(&["--header-read-timeout-seconds", "2"], |_| {}).await;
    let started = Instant::now();
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut s = connect(&gw).await;
        slow.spawn(async move {
            s.write_all(b"POST /anthropic/v1/messages HTTP/1.1\r\nhost: x\r\nx-slow: ")
                .await
                .unwrap();
            // One more header byte every 200 ms for at most 8 s, until the server hangs up.
            let mut buf = [0u8; 64];
            for _ in 0..40 {
                if s.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
                match timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                    Ok(Ok(_)) => return None,
                    Err(_) => {}
                }
            }
            None
        });
    }
    sleep(Duration::from_millis(300)).await;
    let res = heimdall_testkit::http_client()
        .get(format!("{}/health", gw.base_url()))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("a normal request is served next to 50 slow ones");
    assert_eq!(res.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "served while the slow connections were still open"
    );
    while let Some(cut) = slow.join_next().await {
        let cut = cut.unwrap().expect("the server closed the slow connection");
        assert!(
            cut >= Duration::from_millis(1900) && cut < Duration::from_secs(5),
            "cut after {cut:?}; the header timeout is 2 s"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_get_the_idle_timeout_and_silent_ones_the_header_timeout() {
    let (_mock, gw) = gateway(
        &[
            "--header-read-timeout-seconds",
            "0.5",
            "--idle-timeout-seconds",
            "2",
        ],
        |_| {},
    )
    .await;
    let mut silent = connect(&gw).await;
    let cut = closed_within(&mut silent, Duration::from_secs(3))
        .await
        .expect("a connection that never sends a request is closed");
    assert!(cut < Duration::from_millis(1500), "{cut:?}");

    let mut s = connect(&gw).await;
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let res = read_response(&mut s, Duration::from_secs(2)).await;
        assert_eq!(res.status, 200);
        // Longer than the header timeout, shorter than the idle timeout: still open.
        sleep(Duration::from_secs(1)).await;
    }
    let cut = closed_within(&mut s, Duration::from_secs(4))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(
        cut >= Duration::from_millis(700) && cut < Duration::from_secs(2),
        "closed {cut:?} after the 1 s pause; the idle timeout is 2 s"
    );
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn http2_connections_are_pinged_and_closed_with_goaway_when_idle() {
    let (_mock, gw) = gateway(
        &[
            "--idle-timeout-seconds",
            "1.5",
            "--http2-keepalive-seconds",
            "0.3",
        ],
        |_| {},
    )
    .await;
    let mut s = connect(&gw).await;
    // GET /health in HPACK: :method GET, :scheme http (static), :path and :authority literal.
    let mut headers = vec![0x82, 0x86, 0x44, 7];
    headers.extend_from_slice(b"/health");
    headers.extend_from_slice(&[0x41, 1, b'x']);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(4, 0, 0, &[]));
    hello.extend(h2_frame(1, 0x5, 1, &headers));
    s.write_all(&hello).await.unwrap();

    let (mut status_200, mut pings, mut goaway_after) = (false, 0, None);
    let mut answered_at = None;
    let outcome = timeout(Duration::from_secs(6), async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return;
            }
            match kind {
                // HEADERS on stream 1: `:status 200` is static index 8.
                1 => {
                    status_200 = payload.first() == Some(&0x88);
                    answered_at = Some(Instant::now());
                }
                4 if flags & 1 == 0 => s.write_all(&h2_frame(4, 1, 0, &[])).await.unwrap(),
                6 if flags & 1 == 0 => {
                    pings += 1;
                    s.write_all(&h2_frame(6, 1, 0, &payload)).await.unwrap();
                }
                7 => goaway_after = answered_at.map(|t| t.elapsed()),
                _ => {}
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "the idle HTTP/2 connection was not closed");
    assert!(status_200, "no 200 for GET /health over HTTP/2");
    assert!(pings > 0, "no keep-alive ping");
    let after = goaway_after.expect("a GOAWAY before the close");
    assert!(
        after >= Duration::from_millis(1200) && after < Duration::from_secs(4),
        "GOAWAY {after:?} after the answer; the idle timeout is 1.5 s"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes() {
    let (mock, gw) = gateway(&["--body-read-timeout-seconds", "1"], |_| {}).await;
    let cases = [
        (
            post_head("/anthropic/v1/messages", "content-length: 100\r\n"),
            "{\"model\":",
        ),
        (
            post_head("/anthropic/v1/messages", "transfer-encoding: chunked\r\n"),
            "9\r\n{\"model\":\r\n",
        ),
    ];
    for (head, partial) in cases {
        let mut s = connect(&gw).await;
        let started = Instant::now();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(partial.as_bytes()).await.unwrap();
        let res = read_response(&mut s, Duration::from_secs(4)).await;
        let msg = res.anthropic_error(408, "invalid_request_error");
        assert!(msg.contains("did not arrive within 1 s"), "{msg}");
        assert!(started.elapsed() >= Duration::from_millis(900));
        assert_eq!(res.header("connection"), Some("close"));
        assert!(
            closed_within(&mut s, Duration::from_secs(2))
                .await
                .is_some(),
            "{head}"
        );
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn oversized_declared_bodies_get_413_at_once_and_close_the_connection() {
    let (_mock, gw) = gateway(&[], |c| {
        c["client"] = json!({"max_request_body_size_mb": 1});
    })
    .await;
    let huge = "content-length: 209715200\r\n";
    for extra in [huge.to_owned(), format!("{huge}expect: 100-continue\r\n")] {
        let mut s = connect(&gw).await;
        s.write_all(post_head("/anthropic/v1/messages", &extra).as_bytes())
            .await
            .unwrap();
        // Not a byte of the body is sent: the answer must not wait for it, and a client
        // that expects `100 Continue` gets the 413 instead.
        let res = read_response(&mut s, Duration::from_secs(2)).await;
        let msg = res.anthropic_error(413, "request_too_large");
        assert!(msg.contains("209715200"), "{msg}");
        assert_eq!(res.header("connection"), Some("close"));
        assert!(
            closed_within(&mut s, Duration::from_secs(2))
                .await
                .is_some()
        );
    }

    // A real client sending an oversized body, then its next request.
    let http = heimdall_testkit::http_client();
    let url = format!("{}/anthropic/v1/messages", gw.base_url());
    let big = request(CLAUDE, &"x".repeat(2 * 1024 * 1024), false);
    let res = http.post(&url).json(&big).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["connection"], "close");
    let next = http
        .post(&url)
        .json(&request(CLAUDE, "after", false))
        .send()
        .await
        .expect("the next request gets a fresh connection");
    assert_eq!(next.status(), 200);
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_whole_answer() {
    let (_mock, gw) = gateway(&["--allow-half-close"], |_| {}).await;
    let body =
        serde_json::to_vec(&request(CLAUDE, "half closed [[mock:delay 300]]", false)).unwrap();
    let mut s = connect(&gw).await;
    let head = post_head(
        "/anthropic/v1/messages",
        &format!("content-length: {}\r\n", body.len()),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    // What `printf … | nc -N` does: nothing more to send.
    s.shutdown().await.unwrap();
    let mut raw = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("the answer and the close come in time")
        .expect("no reset");
    let text = String::from_utf8(raw).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let json_start = text.find("\r\n\r\n").unwrap() + 4;
    let v: Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(v["content"][0]["text"], "half closed");
}

#[tokio::test]
async fn errors_below_the_router_are_anthropic_shaped() {
    let (_mock, gw) = gateway(&[], |_| {}).await;
    let long_uri = format!("/anthropic/v1/models/{}", "a".repeat(9000));
    let big_header = format!("x-big: {}\r\n", "a".repeat(70 * 1024));
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(String, u16, &str)> = vec![
        // hyper's own answers to what it cannot parse.
        ("GARBAGE\r\n\r\n".into(), 400, "malformed"),
        (
            "GET /health HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n".into(),
            400,
            "malformed",
        ),
        (
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{big_header}\r\n"),
            431,
            "exceed 65536 bytes",
        ),
        (
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
            "100 fields",
        ),
        // Refused before the router.
        (
            format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\n\r\n"),
            414,
            "the limit is 8192",
        ),
        // axum's own answers.
        (
            "POST /health HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n".into(),
            405,
            "method POST is not allowed",
        ),
        (
            "GET /anthropic/v1/models/%FF HTTP/1.1\r\nhost: x\r\n\r\n".into(),
            400,
            "UTF-8",
        ),
    ];
    for (raw, status, needle) in cases {
        let mut s = connect(&gw).await;
        s.write_all(raw.as_bytes()).await.unwrap();
        let res = read_response(&mut s, Duration::from_secs(3)).await;
        let msg = res.anthropic_error(status, "invalid_request_error");
        assert!(msg.contains(needle), "{status}: {msg}");
    }
}

#[tokio::test]
async fn unknown_routes_read_the_body_first_and_name_the_full_path() {
    let (_mock, gw) = gateway(&[], |_| {}).await;
    let body = vec![b'x'; 8 * 1024 * 1024];
    let chunked: Vec<u8> = {
        let mut out = Vec::new();
        for piece in body.chunks(1024 * 1024) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let cases = [
        (
            "POST /anthropic/v1/files",
            format!("content-length: {}\r\n", body.len()),
            &body,
            404,
            "not_found_error",
            "no route for POST /anthropic/v1/files",
        ),
        (
            "POST /anthropic/v1/files",
            "transfer-encoding: chunked\r\n".to_owned(),
            &chunked,
            404,
            "not_found_error",
            "no route for POST /anthropic/v1/files",
        ),
        (
            "PUT /anthropic/v1/messages",
            format!("content-length: {}\r\n", body.len()),
            &body,
            405,
            "invalid_request_error",
            "method PUT is not allowed on /anthropic/v1/messages",
        ),
    ];
    for (line, extra, payload, status, kind, needle) in cases {
        let mut s = connect(&gw).await;
        let head = format!("{line} HTTP/1.1\r\nhost: x\r\n{extra}\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        // The whole body goes through (no EPIPE/reset) before the answer is read.
        timeout(Duration::from_secs(5), s.write_all(payload))
            .await
            .unwrap()
            .expect("the gateway reads the body it is going to refuse");
        let res = read_response(&mut s, Duration::from_secs(3)).await;
        let msg = res.anthropic_error(status, kind);
        assert!(msg.contains(needle), "{msg}");
        assert_ne!(res.header("connection"), Some("close"));
        // The connection stays usable.
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_response(&mut s, Duration::from_secs(2)).await.status,
            200
        );
    }
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_instead_of_failing() {
    let (_mock, gw) = gateway(&["--max-connections", "10"], |_| {}).await;
    let mut holders = Vec::new();
    for _ in 0..15 {
        holders.push(connect(&gw).await);
    }
    sleep(Duration::from_millis(200)).await;
    let url = format!("{}/health", gw.base_url());
    let waiting = tokio::spawn(async move {
        heimdall_testkit::http_client()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
    });
    sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the cap was served (or failed) while 10 others were open"
    );
    drop(holders);
    let res = waiting
        .await
        .unwrap()
        .expect("served once the others closed");
    assert_eq!(res.status(), 200);
    assert!(
        gw.output().contains("connection cap reached"),
        "{}",
        gw.output()
    );
}

#[tokio::test]
async fn a_connection_flood_never_stops_the_gateway_answering() {
    let (_mock, gw) = gateway(
        &[
            "--max-connections",
            "20",
            "--header-read-timeout-seconds",
            "1",
        ],
        |_| {},
    )
    .await;
    // 60 connections that send nothing and are never closed by their client.
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(connect(&gw).await);
    }
    let started = Instant::now();
    let res = heimdall_testkit::http_client()
        .get(format!("{}/health", gw.base_url()))
        .timeout(Duration::from_secs(8))
        .send()
        .await
        .expect("answered while the flood holds every slot");
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(6));
    for s in &mut flood {
        assert!(
            closed_within(s, Duration::from_secs(3)).await.is_some(),
            "the gateway closes flood connections that send nothing"
        );
    }
    let again = heimdall_testkit::http_client()
        .get(format!("{}/health", gw.base_url()))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn accept_errors_are_logged_and_the_gateway_recovers() {
    // The real binary under a 48-descriptor limit: accept fails with EMFILE long before the
    // connection cap.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("heimdall-low-nofile.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -n 48 || exit 1\nexec '{}' \"$@\"\n",
            bin().display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let gw = GatewayProcess::start(&script, None, &[], &["--max-connections", "1000"])
        .await
        .unwrap();
    assert!(
        gw.output().contains("open-file limit is below"),
        "{}",
        gw.output()
    );
    let mut flood = Vec::new();
    for _ in 0..80 {
        flood.push(connect(&gw).await);
    }
    let mut logged = false;
    for _ in 0..40 {
        if gw.output().contains("could not accept a connection") {
            logged = true;
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "{}", gw.output());
    assert!(
        gw.output().contains("Too many open files"),
        "{}",
        gw.output()
    );
    drop(flood);
    let res = heimdall_testkit::http_client()
        .get(format!("{}/health", gw.base_url()))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answering again once descriptors are free");
    assert_eq!(res.status(), 200);
}

const EVIL_MODEL: &str = "x\r\nINFO forged line\u{1b}[31m\u{9b}2J";

/// Asserts that the log `text` has no forged line and no terminal control.
fn assert_log_is_clean(text: &str) {
    assert!(
        text.contains("request completed") || text.contains("request failed"),
        "the request was not logged:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "raw ESC in the log:\n{text:?}");
    assert!(!text.contains('\u{9b}'), "raw C1 CSI in the log:\n{text:?}");
    assert!(!text.contains('\r'), "raw CR in the log:\n{text:?}");
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with("INFO forged line"),
            "forged line:\n{text}"
        );
    }
}

async fn wait_for_record(output: impl Fn() -> String) -> String {
    for _ in 0..60 {
        let text = output();
        if text.contains("request completed") || text.contains("request failed") {
            return text;
        }
        sleep(Duration::from_millis(50)).await;
    }
    output()
}

#[tokio::test]
async fn client_strings_cannot_forge_json_log_lines() {
    let (_mock, gw) = gateway(&[], |_| {}).await;
    post_messages(gw.base_url(), &request(EVIL_MODEL, "hi", false)).await;
    let text = wait_for_record(|| gw.output()).await;
    assert_log_is_clean(&text);
    let record = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["fields"]["model"].is_string())
        .expect("a JSON record with the model");
    assert_eq!(
        record["fields"]["model"], EVIL_MODEL,
        "the value round-trips"
    );
}

#[tokio::test]
async fn client_strings_cannot_forge_pretty_log_lines() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_vec(&config(&mock.base_url(), |_| {})).unwrap(),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(bin())
        .args(["--app-dir", dir.path().to_str().unwrap()])
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--log-format",
            "pretty",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let mut err_lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    let mut out_lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(10), out_lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("heimdall listening on ")
        .unwrap()
        .to_owned();

    post_messages(&url, &request(EVIL_MODEL, "hi", false)).await;
    let text = wait_for_record(|| stderr.lock().unwrap().clone()).await;
    assert_log_is_clean(&text);
    assert!(
        text.contains(r"model=x\r\nINFO forged line\u{1b}[31m\u{9b}2J"),
        "the value is escaped, not dropped:\n{text}"
    );
}
