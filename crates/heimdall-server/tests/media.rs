//! Images and documents given by URL, fetched by the gateway for upstreams that take bytes
//! (Gemini, Ollama, Bedrock Converse; OpenAI Chat for documents), with the files served by the
//! mock's `/media/…` route: what reaches the upstream, and every refusal (scheme, address,
//! redirect, size, time, type, count).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use heimdall_testkit::{GatewayProcess, MEDIA_TEXT, MockOptions, MockServer, RecordedRequest};
use serde_json::{Value, json};

const GEMINI: &str = "gemini/gemini-2.5-flash";
const OLLAMA: &str = "ollama/llama3.1:8b";
const NOVA: &str = "bedrock/amazon.nova-pro-v1:0";

/// Every provider that takes media at the mock, with `media_fetch` as given.
async fn gateway(mock: &MockServer, media_fetch: Value) -> GatewayProcess {
    let base = mock.base_url();
    let cfg = json!({
        "media_fetch": media_fetch,
        "providers": {
            "gemini": {"keys": [{"value": "mock-gemini-key", "models": ["*"]}],
                       "network_config": {"base_url": base}},
            "ollama": {"network_config": {"base_url": base}},
            "bedrock": {"keys": [{"value": "brk-mock-api-key", "models": ["*"]}],
                        "network_config": {"base_url": base}},
            "openai": {"keys": [{"value": OPENAI_KEY, "models": ["*"]}],
                       "network_config": {"base_url": base}}
        }
    });
    GatewayProcess::start(bin(), Some(&cfg), &[], &[])
        .await
        .unwrap()
}

/// The mock's own address may be fetched, nothing else private; small limits for the tests.
fn trusting_the_mock() -> Value {
    json!({"allowed_private_hosts": ["127.0.0.1"], "max_object_size_mb": 1,
           "timeout_seconds": 1, "max_redirects": 3, "max_objects_per_request": 4})
}

fn image(url: &str) -> Value {
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn document(url: &str) -> Value {
    json!({"type": "document", "source": {"type": "url", "url": url}})
}

fn body(model: &str, blocks: &[Value]) -> Value {
    let mut content = vec![json!({"type": "text", "text": "what is in it?"})];
    content.extend_from_slice(blocks);
    json!({"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": content}]})
}

fn last(mock: &MockServer, path: impl Fn(&str) -> bool) -> RecordedRequest {
    mock.requests()
        .into_iter()
        .rfind(|r| path(&r.path))
        .expect("a matching request")
}

fn media_requests(mock: &MockServer) -> Vec<RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/media/"))
        .collect()
}

/// What the mock serves at `path`, base64, read directly.
async fn served_base64(mock: &MockServer, path: &str) -> String {
    let bytes = heimdall_testkit::http_client()
        .get(format!("{}{path}", mock.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn ok(gw: &GatewayProcess, body: &Value) {
    let res = post_messages(gw.base_url(), body).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

/// Asserts a 400 `invalid_request_error` whose message starts with `path` and contains
/// `detail`, and that no upstream call was made.
async fn refused(mock: &MockServer, gw: &GatewayProcess, body: &Value, path: &str, detail: &str) {
    let calls = |m: &MockServer| {
        m.requests()
            .iter()
            .filter(|r| !r.path.starts_with("/media/"))
            .count()
    };
    let before = calls(mock);
    let res = post_messages(gw.base_url(), body).await;
    assert_eq!(res.status(), 400);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(path), "{message}");
    assert!(message.contains(detail), "want {detail:?} in {message}");
    assert_eq!(calls(mock), before, "no upstream call: {message}");
}

#[tokio::test]
async fn urls_arrive_upstream_as_inline_bytes_with_their_media_type() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&mock, trusting_the_mock()).await;
    let media = |name: &str| format!("{}/media/{name}", mock.base_url());
    let png = served_base64(&mock, "/media/image.png").await;
    let jpeg = served_base64(&mock, "/media/image.jpg").await;
    let gif = served_base64(&mock, "/media/image.gif").await;
    let pdf = served_base64(&mock, "/media/doc.pdf").await;
    mock.clear();

    // Gemini: images and PDFs as inlineData, a text document as a text part.
    ok(
        &gw,
        &body(
            GEMINI,
            &[
                image(&media("image.png")),
                document(&media("doc.pdf")),
                document(&media("doc.txt")),
            ],
        ),
    )
    .await;
    let parts = &last(&mock, |p| p.ends_with(":generateContent")).body["contents"][0]["parts"];
    assert_eq!(
        parts[1],
        json!({"inlineData": {"mimeType": "image/png", "data": png}})
    );
    assert_eq!(
        parts[2],
        json!({"inlineData": {"mimeType": "application/pdf", "data": pdf}})
    );
    assert_eq!(parts[3], json!({"text": MEDIA_TEXT}));
    // The fetcher's own request: no provider key, no client header.
    let fetches = media_requests(&mock);
    assert_eq!(fetches.len(), 3);
    for f in &fetches {
        for header in [
            "authorization",
            "x-api-key",
            "x-goog-api-key",
            "anthropic-version",
        ] {
            assert!(f.header(header).is_none(), "{header} sent to {}", f.path);
        }
        assert!(f.header("user-agent").unwrap().starts_with("heimdall/"));
    }
    let png_fetch = fetches
        .iter()
        .find(|f| f.path == "/media/image.png")
        .unwrap();
    assert!(png_fetch.header("accept").unwrap().contains("image/png"));

    // Ollama: bare base64 in `images`; a text document joins the text.
    ok(
        &gw,
        &body(
            OLLAMA,
            &[image(&media("image.jpg")), document(&media("doc.txt"))],
        ),
    )
    .await;
    let message = &last(&mock, |p| p == "/api/chat").body["messages"][0];
    assert_eq!(message["images"], json!([jpeg]));
    assert!(
        message["content"].as_str().unwrap().contains(MEDIA_TEXT),
        "{message}"
    );

    // Bedrock Converse: an image with a generic content-type gets its type from its bytes;
    // a PDF becomes a document block.
    ok(
        &gw,
        &body(
            NOVA,
            &[
                image(&media("image.gif?type=application/octet-stream")),
                document(&media("doc.pdf")),
            ],
        ),
    )
    .await;
    let content = &last(&mock, |p| p.ends_with("/converse")).body["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"image": {"format": "gif", "source": {"bytes": gif}}})
    );
    assert_eq!(
        content[2],
        json!({"document": {"format": "pdf", "name": "document-1", "source": {"bytes": pdf}}})
    );

    // Redirects within the limit are followed; every hop goes to an allowed address.
    mock.clear();
    ok(
        &gw,
        &body(GEMINI, &[image(&media("image.png?redirects=3"))]),
    )
    .await;
    assert_eq!(media_requests(&mock).len(), 4);
}

#[tokio::test]
async fn openai_keeps_image_urls_and_gets_documents_as_bytes() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&mock, trusting_the_mock()).await;
    let pdf = served_base64(&mock, "/media/doc.pdf").await;
    mock.clear();
    let image_url = format!("{}/media/image.png", mock.base_url());
    let pdf_url = format!("{}/media/doc.pdf", mock.base_url());
    ok(&gw, &body(GPT, &[image(&image_url), document(&pdf_url)])).await;
    let content = &last(&mock, |p| p == "/v1/chat/completions").body["messages"][0]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image_url", "image_url": {"url": image_url}})
    );
    assert_eq!(
        content[2]["file"]["file_data"],
        format!("data:application/pdf;base64,{pdf}")
    );
    let fetched: Vec<String> = media_requests(&mock).into_iter().map(|r| r.path).collect();
    assert_eq!(fetched, ["/media/doc.pdf"], "the image URL is not fetched");
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let url = format!("{}/media/image.png", mock.base_url());
    let request = body(GEMINI, &[image(&url)]);

    let strict = gateway(&mock, json!({})).await;
    refused(
        &mock,
        &strict,
        &request,
        "messages.0.content.1.source: ",
        "127.0.0.1 is not a public address (loopback)",
    )
    .await;
    // The cloud metadata address and a name for loopback, likewise.
    for (url, detail) in [
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "(link-local (cloud metadata))",
        ),
        (
            format!("http://localhost:{}/media/image.png", mock.addr().port()),
            "`localhost` resolves to",
        ),
        ("http://[::ffff:127.0.0.1]/a.png".to_owned(), "(loopback)"),
    ] {
        refused(
            &mock,
            &strict,
            &body(OLLAMA, &[image(&url)]),
            "messages.0.content.1.source: ",
            detail,
        )
        .await;
    }
    assert!(media_requests(&mock).is_empty(), "nothing was fetched");

    let open = gateway(&mock, json!({"allow_private_addresses": true})).await;
    ok(&open, &request).await;
    assert_eq!(media_requests(&mock).len(), 1);

    // Off: the URL reaches the encoder, which refuses it as before.
    let off = gateway(
        &mock,
        json!({"enabled": false, "allow_private_addresses": true}),
    )
    .await;
    refused(
        &mock,
        &off,
        &request,
        "messages.0.content.1.source: ",
        "send the image as base64",
    )
    .await;
    assert_eq!(media_requests(&mock).len(), 1);
}

#[tokio::test]
async fn redirects_schemes_sizes_times_types_and_counts_are_bounded() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = gateway(&mock, trusting_the_mock()).await;
    let port = mock.addr().port();
    let media = |rest: &str| format!("{}/media/{rest}", mock.base_url());
    let path = "messages.0.content.1.source: ";
    let one = |url: &str| body(GEMINI, &[image(url)]);

    // A redirect is checked like the first URL: another name for loopback, a private
    // address, another scheme, one hop too many.
    for (location, detail) in [
        (
            format!("http://localhost:{port}/media/image.png"),
            "`localhost` resolves to",
        ),
        (
            "http://10.0.0.1/a.png".to_owned(),
            "10.0.0.1 is not a public address (private)",
        ),
        (
            "file:///etc/passwd".to_owned(),
            "only http and https URLs are fetched, not `file:`",
        ),
    ] {
        refused(
            &mock,
            &gw,
            &one(&media(&format!("image.png?location={location}"))),
            path,
            detail,
        )
        .await;
    }
    refused(
        &mock,
        &gw,
        &one(&media("image.png?redirects=4")),
        path,
        "more than 3 redirects",
    )
    .await;

    for url in ["file:///etc/passwd", "ftp://127.0.0.1/image.png"] {
        refused(&mock, &gw, &one(url), path, "only http and https URLs").await;
    }
    refused(&mock, &gw, &one("not a url"), path, "not a valid URL").await;

    // Too large: refused at a declared length, and cut off while streaming an undeclared one.
    let before = mock.media_bytes_served();
    refused(
        &mock,
        &gw,
        &one(&media("image.png?huge_mb=512&declared=true")),
        path,
        "larger than 1 MiB",
    )
    .await;
    refused(
        &mock,
        &gw,
        &one(&media("image.png?huge_mb=512")),
        path,
        "larger than 1 MiB",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = mock.media_bytes_served() - before;
    assert!(
        served < 32 * 1024 * 1024,
        "{served} bytes served: the fetch was not cut off"
    );

    // Slow: the whole fetch has one deadline.
    let started = Instant::now();
    refused(
        &mock,
        &gw,
        &one(&media("image.png?delay_ms=5000")),
        path,
        "no complete answer within 1 s",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));

    // What the server answers must be a usable file.
    refused(
        &mock,
        &gw,
        &one(&media("page.html")),
        path,
        "content-type `text/html` is not an image type",
    )
    .await;
    refused(
        &mock,
        &gw,
        &one(&media("image.png?status=404")),
        path,
        "the server answered HTTP 404",
    )
    .await;
    refused(
        &mock,
        &gw,
        &body(NOVA, &[document(&media("image.png"))]),
        path,
        "content-type `image/png` is not a document type",
    )
    .await;

    // At most four objects by URL per request: the fifth is named.
    let five: Vec<Value> = (0..5).map(|_| image(&media("image.png"))).collect();
    refused(
        &mock,
        &gw,
        &body(GEMINI, &five),
        "messages.0.content.5: ",
        "more than 4 images and documents",
    )
    .await;
}
