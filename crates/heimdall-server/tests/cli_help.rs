//! `heimdall --help` tells an operator what the binary reads and serves (environment variables,
//! providers, endpoints, files), from the registry; `--demo` answers every registered provider
//! through the built-in mock, without reading the app dir's config.json.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Helpers outside #[test] fns.

mod common;

use clap::CommandFactory;
use common::*;
use heimdall_server::cli::Cli;
use heimdall_testkit::GatewayProcess;
use serde_json::{Value, json};

/// The endpoints `--help` names, each with a request that reaches it on a running gateway.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/anthropic/v1/messages", "POST"),
    ("/anthropic/v1/messages/count_tokens", "POST"),
    ("/anthropic/v1/models", "GET"),
    ("/api/openapi.json", "GET"),
    ("/metrics", "GET"),
    ("/health", "GET"),
    ("/ui/", "GET"),
];

/// `heimdall --demo` on a free port. The demo writes its config under TMPDIR; the gateway is
/// killed at the end, so it gets a folder of the test's own.
async fn demo(config: Option<&Value>) -> (GatewayProcess, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let env = [("TMPDIR", tmp.path().to_str().unwrap())];
    let gw = GatewayProcess::start(bin(), config, &env, &["--demo"])
        .await
        .unwrap();
    (gw, tmp)
}

fn run(args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_lists_environment_providers_endpoints_and_files() {
    let help = run(&["--help"]);
    for factory in heimdall_providers::factories() {
        assert!(
            help.contains(factory.env_var),
            "{}:\n{help}",
            factory.env_var
        );
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(factory.name)),
            "provider {}:\n{help}",
            factory.name
        );
    }
    // Every flag's environment variable, HEIMDALL_DEMO among them.
    let vars: Vec<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| Some(a.get_env()?.to_string_lossy().into_owned()))
        .collect();
    assert!(vars.iter().any(|v| v == "HEIMDALL_DEMO"), "{vars:?}");
    for var in &vars {
        let listed = help
            .lines()
            .filter(|l| l.trim_start().starts_with(var.as_str()))
            .count();
        // Once in clap's flag list (`[env: …]` is inline, not line-leading) is not enough: the
        // environment section names it at the start of a line.
        assert!(listed >= 1, "{var} not in the environment section:\n{help}");
    }
    assert!(help.contains("/api/*"), "{help}");
    for (path, _) in ENDPOINTS {
        let shown = if path.starts_with("/api/") {
            "/api/*"
        } else {
            path
        };
        assert!(help.contains(shown), "{shown}:\n{help}");
    }
    for file in ["--app-dir", "./data", "config.json", "logs.db", "config.db"] {
        assert!(help.contains(file), "{file}:\n{help}");
    }
    // The short help points at the long one.
    assert!(run(&["-h"]).contains("--help"));
}

/// What `--help` lists is there: every endpoint answers on a running gateway.
#[tokio::test]
async fn the_endpoints_in_the_help_exist() {
    let (gw, _tmp) = demo(None).await;
    let http = heimdall_testkit::http_client();
    for (path, method) in ENDPOINTS {
        let url = format!("{}{path}", gw.base_url());
        let res = if *method == "POST" {
            http.post(url)
                .json(&request("openai/gpt-4o-mini", "hi", false))
                .send()
                .await
        } else {
            http.get(url).send().await
        }
        .unwrap();
        assert_eq!(res.status(), 200, "{method} {path}");
    }
}

/// A model of `provider` the mock answers for; a provider added later gets a made-up one.
fn models_of(provider: &str) -> Vec<String> {
    let models: &[&str] = match provider {
        "anthropic" => &["claude-sonnet-4-5"],
        "openai" => &["gpt-4o-mini"],
        "azure" => &["gpt-4o"],
        "ollama" => &["llama3.1:8b"],
        "gemini" => &["gemini-2.5-flash"],
        // Gemini and Claude publishers.
        "vertex" => &["gemini-pro", "claude-sonnet-4-5"],
        // Converse (Nova) and InvokeModel (Claude), both signed with SigV4.
        "bedrock" => &[
            "amazon.nova-pro-v1:0",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
        ],
        _ => &["demo-model"],
    };
    models.iter().map(|m| format!("{provider}/{m}")).collect()
}

#[tokio::test]
async fn demo_answers_every_registered_provider_and_ignores_the_app_dirs_config() {
    // A config.json that would stop the gateway at start, were it read.
    let broken = json!({"providers": {"opnai": {}}});
    let (gw, _tmp) = demo(Some(&broken)).await;
    let output = gw.output();
    assert!(
        output.contains(
            "demo mode: every provider is answered by the built-in mock upstream (it echoes your message); no request leaves this machine"
        ),
        "{output}"
    );
    let mut checked = 0;
    for factory in heimdall_providers::factories() {
        // The test-only dialect of test builds, which the mock does not speak.
        if factory.name == "dummy" {
            continue;
        }
        for model in models_of(factory.name) {
            let text = format!("hello from {model}");
            let res = post_messages(gw.base_url(), &request(&model, &text, false)).await;
            assert_eq!(res.status(), 200, "{model}");
            let v: Value = res.json().await.unwrap();
            assert_eq!(v["content"][0]["text"], text, "{model}: {v}");
            // Pass-through answers name the model as the upstream was asked (no prefix).
            let bare = model.split_once('/').map_or(model.as_str(), |(_, m)| m);
            assert!(v["model"] == model.as_str() || v["model"] == bare, "{v}");

            let res = post_messages(gw.base_url(), &request(&model, &text, true)).await;
            let events = stream_events(res).await;
            assert_grammar(&events, false);
            assert_eq!(streamed_text(&events), text, "{model} (streaming)");
            checked += 1;
        }
    }
    assert!(checked >= heimdall_providers::factories().len() - 1);
}

#[test]
fn demo_excludes_config() {
    let out = std::process::Command::new(bin())
        .args(["--demo", "--config", "/nonexistent/config.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config"), "{err}");
}
