//! The README's keyless try-out, as written there: its `config.json` (pointed at the mock
//! instead of port 9999) and every model of its loop answer through the Anthropic front door.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::Value;

/// The text between the line that ends with `start` and the next line equal to `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).expect("start marker") + start.len();
    let rest = &text[from..];
    let rest = &rest[rest.find('\n').unwrap() + 1..];
    &rest[..rest.find(&format!("\n{end}")).expect("end marker")]
}

#[tokio::test]
async fn the_readme_try_out_answers_for_its_five_models() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let config = between(&readme, "cat > data/config.json <<'JSON'", "JSON")
        .replace("http://127.0.0.1:9999", &mock.base_url());
    let config: Value = serde_json::from_str(&config).expect("the README's config is JSON");
    let models: Vec<&str> = readme
        .lines()
        .find_map(|l| l.strip_prefix("for model in "))
        .expect("the README's loop")
        .trim_end_matches("; do")
        .split_whitespace()
        .collect();
    assert_eq!(models.len(), 5, "{models:?}");
    let gw = GatewayProcess::start(bin(), Some(&config), &[], &[])
        .await
        .unwrap();
    for model in &models {
        let res = post_messages(gw.base_url(), &request(model, "hi", false)).await;
        assert_eq!(res.status(), 200, "{model}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["content"][0]["text"], "hi", "{model}: {v}");
        assert_eq!(v["model"], *model);
    }
}

/// Every `config.json` example in the README loads: a setting documented with a typo or a
/// wrong type would stop a user's gateway at start.
#[test]
fn every_config_example_in_the_readme_loads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut checked = 0;
    for block in readme.split("```json\n").skip(1) {
        let text = block.split("\n```").next().unwrap();
        if !(text.contains("\"providers\"") || text.contains("\"client\"")) {
            continue;
        }
        let env = |_: &str| Some("from-env".to_owned());
        if let Err(e) = heimdall_core::config::Config::from_json(text, &env) {
            panic!("README example does not load: {e}\n{text}");
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} config examples found");
}
