//! The README's keyless try-outs, as written there: the one-terminal `--demo` block (the
//! gateway started with the README's own arguments) and the `config.json` variant (pointed at
//! an in-process mock instead of port 9999); every model of the loop answers with the echoed
//! text through the Anthropic front door.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use common::*;
use heimdall_testkit::{GatewayProcess, MockOptions, MockServer};
use serde_json::Value;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap()
}

/// The text between the line that ends with `start` and the next line equal to `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).expect("start marker") + start.len();
    let rest = &text[from..];
    let rest = &rest[rest.find('\n').unwrap() + 1..];
    &rest[..rest.find(&format!("\n{end}")).expect("end marker")]
}

/// The shell block (between ```` ```sh ```` and ```` ``` ````) holding `needle`.
fn sh_block<'a>(readme: &'a str, needle: &str) -> &'a str {
    readme
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .find(|b| b.contains(needle))
        .unwrap_or_else(|| panic!("no sh block with `{needle}`"))
}

/// The models of the README's `for model in …; do` loop.
fn loop_models(text: &str) -> Vec<&str> {
    let models: Vec<&str> = text
        .lines()
        .find_map(|l| l.strip_prefix("for model in "))
        .expect("the README's loop")
        .trim_end_matches("; do")
        .split_whitespace()
        .collect();
    assert_eq!(models.len(), 5, "{models:?}");
    models
}

/// Each model answers 200 with the echoed `hi`, under the name it was asked by.
async fn assert_models_answer(gw: &GatewayProcess, models: &[&str]) {
    for model in models {
        let res = post_messages(gw.base_url(), &request(model, "hi", false)).await;
        assert_eq!(res.status(), 200, "{model}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["content"][0]["text"], "hi", "{model}: {v}");
        assert_eq!(v["model"], *model);
    }
}

#[tokio::test]
async fn the_readme_demo_answers_for_its_five_models() {
    let readme = readme();
    let block = sh_block(&readme, "-- --demo");
    let start = block
        .lines()
        .find(|l| l.contains("--bin heimdall -- "))
        .unwrap();
    assert!(
        start.ends_with('&'),
        "the gateway runs in the background: {start}"
    );
    let args: Vec<&str> = start
        .split_once("--bin heimdall -- ")
        .unwrap()
        .1
        .trim_end_matches('&')
        .split_whitespace()
        .collect();
    assert_eq!(args, ["--demo"]);
    // One terminal: the block waits for the gateway itself, then runs the loop.
    let wait = block
        .find("until curl -sf localhost:8080/health")
        .expect("the wait");
    assert!(wait < block.find("for model in ").expect("the loop"));
    // The demo writes its config under TMPDIR; a killed gateway leaves it in this one.
    let tmp = tempfile::tempdir().unwrap();
    let env = [("TMPDIR", tmp.path().to_str().unwrap())];
    let gw = GatewayProcess::start(bin(), None, &env, &args)
        .await
        .unwrap();
    assert_models_answer(&gw, &loop_models(block)).await;
}

#[tokio::test]
async fn the_readme_config_file_try_out_answers_for_its_five_models() {
    let readme = readme();
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let config = between(&readme, "cat > data/config.json <<'JSON'", "JSON")
        .replace("http://127.0.0.1:9999", &mock.base_url());
    let config: Value = serde_json::from_str(&config).expect("the README's config is JSON");
    // It runs the mock on the port its config names, and the binaries its build made.
    let block = sh_block(&readme, "cat > data/config.json");
    assert!(block.contains("./target/release/heimdall-mock --port 9999 &"));
    assert!(block.contains("cargo build --release -p heimdall-server -p heimdall-testkit"));
    let gw = GatewayProcess::start(bin(), Some(&config), &[], &[])
        .await
        .unwrap();
    // "the same loop": the demo block's.
    assert_models_answer(&gw, &loop_models(&readme)).await;
}

/// Every `config.json` example in the README loads: a setting documented with a typo or a
/// wrong type would stop a user's gateway at start.
#[test]
fn every_config_example_in_the_readme_loads() {
    let readme = readme();
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
