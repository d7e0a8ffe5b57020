//! Boots the gateway binary for black-box tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const READY_MARKER: &str = "listening on http://";
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running gateway child process. Killed on drop.
pub struct GatewayProcess {
    child: Child,
    pid: u32,
    base_url: String,
    output: Arc<Mutex<String>>,
    app_dir: PathBuf,
    // Dropped after the child is killed (fields drop after `Drop::drop`).
    _tempdir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Spawns `bin` with `--app-dir <tempdir> --port 0 --host 127.0.0.1 --log-format json` plus
    /// `extra_args`, writes `config` (if any) to `<app-dir>/config.json`, sets `env` (and removes
    /// `ANTHROPIC_API_KEY` / `OPENAI_API_KEY` unless `env` sets them), then waits up to 15 s for
    /// a stdout or stderr line containing `listening on http://` and takes the URL from it.
    pub async fn start(
        bin: &Path,
        config: Option<&serde_json::Value>,
        env: &[(&str, &str)],
        extra_args: &[&str],
    ) -> anyhow::Result<GatewayProcess> {
        let tempdir = tempfile::Builder::new()
            .prefix("heimdall-test-")
            .tempdir()
            .context("creating the app dir")?;
        let app_dir = tempdir.path().to_path_buf();
        if let Some(config) = config {
            let text = serde_json::to_vec_pretty(config)?;
            std::fs::write(app_dir.join("config.json"), text).context("writing config.json")?;
        }
        let mut cmd = Command::new(bin);
        cmd.arg("--app-dir")
            .arg(&app_dir)
            .args(["--port", "0", "--host", "127.0.0.1", "--log-format", "json"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"] {
            if !env.iter().any(|(k, _)| *k == var) {
                cmd.env_remove(var);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().context("the child has no pid")?;
        let output = Arc::new(Mutex::new(String::new()));
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(collect(stdout, output.clone(), ready_tx.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(collect(stderr, output.clone(), ready_tx));
        }
        let mut gateway = GatewayProcess {
            child,
            pid,
            base_url: String::new(),
            output,
            app_dir,
            _tempdir: tempdir,
        };
        let waited = tokio::time::timeout(START_TIMEOUT, async {
            tokio::select! {
                url = ready_rx.recv() => match url {
                    Some(url) => Ok(url),
                    // Both pipes closed without the line: report the exit status.
                    None => {
                        let status = gateway.child.wait().await?;
                        bail!("the gateway exited ({status}) before listening");
                    }
                },
                status = gateway.child.wait() => {
                    let status = status?;
                    // Give the readers a moment to drain what it printed.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    bail!("the gateway exited ({status}) before listening");
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(url)) => {
                gateway.base_url = url;
                Ok(gateway)
            }
            Ok(Err(e)) => Err(e.context(format!("output:\n{}", gateway.output()))),
            Err(_) => bail!(
                "the gateway did not print `{READY_MARKER}` within {START_TIMEOUT:?}; output:\n{}",
                gateway.output()
            ),
        }
    }

    /// e.g. `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn app_dir(&self) -> &Path {
        &self.app_dir
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Lines the process printed so far (stdout and stderr, interleaved as read).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(Some(status?)),
            Err(_) => Ok(None),
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Reads lines into `output`; the first line with the ready marker sends its URL.
async fn collect(
    pipe: impl AsyncRead + Unpin,
    output: Arc<Mutex<String>>,
    ready: mpsc::UnboundedSender<String>,
) {
    let mut lines = BufReader::new(pipe).lines();
    let mut ready = Some(ready);
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = ready.as_ref().and_then(|_| listen_url(&line))
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(url);
        }
        let mut out = output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.push_str(&line);
        out.push('\n');
    }
}

/// The URL after `listening on ` in `line` (stops at whitespace, quotes, or a trailing `/`).
fn listen_url(line: &str) -> Option<String> {
    let start = line.find(READY_MARKER)? + "listening on ".len();
    let url: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | '}' | '\\'))
        .collect();
    let url = url.trim_end_matches('/');
    (url.len() > "http://".len()).then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_lines() {
        assert_eq!(
            listen_url("heimdall listening on http://127.0.0.1:4312").as_deref(),
            Some("http://127.0.0.1:4312")
        );
        assert_eq!(
            listen_url(r#"{"msg":"heimdall listening on http://127.0.0.1:80/","level":"INFO"}"#)
                .as_deref(),
            Some("http://127.0.0.1:80")
        );
        assert_eq!(listen_url("listening soon"), None);
    }

    #[tokio::test]
    async fn boots_a_child_that_prints_the_marker() {
        // A shell script standing in for the gateway: echo the marker, then stay up.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-gateway.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"args: $*\" >&2\necho \"key=${OPENAI_API_KEY:-unset} x=$X\"\necho 'heimdall listening on http://127.0.0.1:5555'\nexec sleep 30\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let config = serde_json::json!({"providers": []});
        let g = GatewayProcess::start(&script, Some(&config), &[("X", "1")], &["--extra"])
            .await
            .unwrap();
        assert_eq!(g.base_url(), "http://127.0.0.1:5555");
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(g.app_dir().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(written, config);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = g.output();
        assert!(out.contains("key=unset x=1"), "{out}");
        assert!(
            out.contains("--port 0 --host 127.0.0.1 --log-format json --extra"),
            "{out}"
        );
        assert!(g.pid() > 0);
        let app_dir = g.app_dir().to_path_buf();
        drop(g);
        assert!(!app_dir.exists());
    }
}
