//! The `heimdall-mock` binary, and `GatewayProcess` driven against a real child.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use heimdall_testkit::GatewayProcess;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const MOCK_BIN: &str = env!("CARGO_BIN_EXE_heimdall-mock");

#[tokio::test]
async fn mock_binary_prints_its_url_and_serves() {
    let mut child = tokio::process::Command::new(MOCK_BIN)
        .args(["--no-record", "--latency-ms", "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("heimdall-mock listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = heimdall_testkit::http_client();
    let r = client.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("k")
        .body(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"ping pong"}]}"#)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "ping pong");
    // --no-record
    let r = client
        .get(format!("{url}/_mock/requests"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "[]");

    // SIGTERM ends it cleanly.
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "exactly one stdout line"
    );
}

#[tokio::test]
async fn gateway_process_reports_early_exit_with_output() {
    // heimdall-mock rejects `--app-dir`, so it exits at once with a clap error on stderr.
    let err = GatewayProcess::start(Path::new(MOCK_BIN), None, &[], &[])
        .await
        .err()
        .expect("heimdall-mock rejects --app-dir");
    let text = format!("{err:#}");
    assert!(text.contains("exited"), "{text}");
    assert!(text.contains("--app-dir"), "{text}");
}

#[tokio::test]
async fn mock_binary_raw_http_writes_connection_faults() {
    let mut child = tokio::process::Command::new(MOCK_BIN)
        .arg("--raw-http")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = line
        .strip_prefix("heimdall-mock listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"[[mock:status 600]]"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nauthorization: Bearer k\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 600 Mock Status\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with(r#"{"mock_status":600}"#), "{answer}");
}
