//! Peer gateways run side by side with Heimdall: LiteLLM proxy and the Portkey gateway, each
//! installed from its registry into a git-ignored folder and pointed at the same mock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use http::{HeaderName, HeaderValue};
use tokio::process::Command;

use crate::load::RequestSpec;
use crate::procs::{self, Proc};
use crate::scenario::{self, Target, Upstream};

pub const LITELLM_VERSION: &str = "1.100.5";
pub const PORTKEY_VERSION: &str = "1.15.2";

/// `<workspace>/.bench-peers` (git-ignored).
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.bench-peers")
}

async fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}

/// Installs LiteLLM proxy into `dir/litellm-venv` unless the pinned version is already there.
pub async fn install_litellm(dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join("litellm-venv");
    let python = venv.join("bin/python");
    let check = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ])
        .output()
        .await;
    if let Ok(out) = check
        && String::from_utf8_lossy(&out.stdout).trim() == LITELLM_VERSION
    {
        return Ok(venv);
    }
    eprintln!(
        "[heimdall-bench] installing litellm[proxy]=={LITELLM_VERSION} into {}",
        venv.display()
    );
    std::fs::create_dir_all(dir)?;
    if !python.exists() {
        let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(
            Command::new(py).arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )
        .await?;
    }
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("litellm[proxy]=={LITELLM_VERSION}"),
        ]),
        "pip install litellm[proxy]",
    )
    .await?;
    Ok(venv)
}

/// Installs the Portkey gateway into `dir/portkey` unless the pinned version is already there.
pub async fn install_portkey(dir: &Path) -> anyhow::Result<PathBuf> {
    let root = dir.join("portkey");
    let pkg = root.join("node_modules/@portkey-ai/gateway/package.json");
    if let Ok(text) = std::fs::read_to_string(&pkg)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && v["version"] == PORTKEY_VERSION
    {
        return Ok(root);
    }
    eprintln!(
        "[heimdall-bench] installing @portkey-ai/gateway@{PORTKEY_VERSION} into {}",
        root.display()
    );
    std::fs::create_dir_all(&root)?;
    if !root.join("package.json").exists() {
        std::fs::write(
            root.join("package.json"),
            "{\"name\":\"bench-peers\",\"private\":true}\n",
        )?;
    }
    run(
        Command::new("npm")
            .current_dir(&root)
            .args(["install", "--no-audit", "--no-fund"])
            .arg(format!("@portkey-ai/gateway@{PORTKEY_VERSION}")),
        "npm install @portkey-ai/gateway",
    )
    .await?;
    Ok(root)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Starts LiteLLM proxy (one worker) routing `gpt-4o-mini` to the mock's OpenAI endpoint.
/// LiteLLM 1.100 bridges `/v1/messages` for OpenAI models to the Responses API unless
/// `use_chat_completions_url_for_anthropic_messages` is set; the mock (like Heimdall's
/// translation) speaks Chat Completions, so the setting is on.
pub async fn start_litellm(
    venv: &Path,
    mock_url: &str,
    cpus: Option<&str>,
) -> anyhow::Result<Proc> {
    let dir = tempfile::Builder::new()
        .prefix("heimdall-bench-litellm-")
        .tempdir()?;
    let config = format!(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n      api_base: {mock_url}/v1\n      api_key: k\nlitellm_settings:\n  drop_params: true\n  set_verbose: false\n  use_chat_completions_url_for_anthropic_messages: true\n"
    );
    let path = dir.path().join("litellm.yaml");
    std::fs::write(&path, config)?;
    let port = free_port()?;
    let mut cmd = procs::command(&venv.join("bin/litellm"), cpus);
    cmd.arg("--config")
        .arg(&path)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--num_workers",
            "1",
        ])
        .env("LITELLM_LOG", "ERROR")
        .env("LITELLM_TELEMETRY", "False")
        .env("NO_DOCS", "True");
    Proc::spawn_with_health(
        "litellm",
        cmd,
        port,
        "/health/liveliness",
        Duration::from_secs(120),
        Some(dir),
    )
    .await
}

/// Starts the Portkey gateway (node, headless).
pub async fn start_portkey(root: &Path, cpus: Option<&str>) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let script = root.join("node_modules/@portkey-ai/gateway/build/start-server.js");
    let node = PathBuf::from("node");
    let mut cmd = procs::command(&node, cpus);
    cmd.arg(script)
        .arg(format!("--port={port}"))
        .arg("--headless")
        .current_dir(root);
    Proc::spawn_with_health("portkey", cmd, port, "/", Duration::from_secs(60), None).await
}

fn h(name: &'static str, value: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    Ok((HeaderName::from_static(name), HeaderValue::from_str(value)?))
}

/// LiteLLM's Anthropic-compatible `/v1/messages`, translated to the mock's OpenAI endpoint.
pub fn litellm_target(addr: SocketAddr, pid: u32) -> Target {
    let mut req = scenario::anthropic_request("/v1/messages", "gpt-4o-mini", false);
    let mut stream = scenario::anthropic_request("/v1/messages", "gpt-4o-mini", true);
    // LiteLLM without a master key needs no auth; don't send a key it might try to check.
    req.headers.retain(|(k, _)| k != "x-api-key");
    stream.headers.retain(|(k, _)| k != "x-api-key");
    Target {
        scenario: "3 (peer)".into(),
        name: format!("LiteLLM {LITELLM_VERSION} /v1/messages → OpenAI (translated)"),
        addr,
        request: req,
        stream_request: Some(stream),
        direct: false,
        upstream: Upstream::OpenAi,
        pid: Some(pid),
    }
}

/// Portkey: its `/v1/messages` route if it translates for the OpenAI provider, else its OpenAI
/// `/v1/chat/completions` route (same dialect both sides). Decided by a probe request.
pub async fn portkey_target(addr: SocketAddr, pid: u32, mock_url: &str) -> anyhow::Result<Target> {
    let extra = [
        h("x-portkey-provider", "openai")?,
        h("x-portkey-custom-host", &format!("{mock_url}/v1"))?,
        h("authorization", "Bearer k")?,
    ];
    let with = |mut spec: RequestSpec| {
        spec.headers
            .retain(|(k, _)| k != "x-api-key" && k != "authorization");
        spec.headers.extend(extra.iter().cloned());
        spec
    };
    let messages = with(scenario::anthropic_request(
        "/v1/messages",
        "gpt-4o-mini",
        false,
    ));
    match crate::load::probe(addr, &messages).await {
        Ok(body)
            if body.contains("\"type\":\"message\"") || body.contains("\"type\": \"message\"") =>
        {
            Ok(Target {
                scenario: "3 (peer)".into(),
                name: format!("Portkey {PORTKEY_VERSION} /v1/messages → OpenAI (translated)"),
                addr,
                request: messages,
                stream_request: Some(with(scenario::anthropic_request(
                    "/v1/messages",
                    "gpt-4o-mini",
                    true,
                ))),
                direct: false,
                upstream: Upstream::OpenAi,
                pid: Some(pid),
            })
        }
        other => {
            eprintln!(
                "[heimdall-bench] Portkey /v1/messages with provider openai did not answer an Anthropic message ({}); using its /v1/chat/completions route",
                match other {
                    Ok(b) => b.chars().take(160).collect::<String>(),
                    Err(e) => e,
                }
            );
            Ok(Target {
                scenario: "3* (peer)".into(),
                name: format!(
                    "Portkey {PORTKEY_VERSION} /v1/chat/completions → OpenAI (same dialect)"
                ),
                addr,
                request: with(scenario::openai_request(
                    "/v1/chat/completions",
                    "gpt-4o-mini",
                    false,
                )),
                stream_request: Some(with(scenario::openai_request(
                    "/v1/chat/completions",
                    "gpt-4o-mini",
                    true,
                ))),
                direct: false,
                upstream: Upstream::OpenAi,
                pid: Some(pid),
            })
        }
    }
}
