//! Child processes under test (mock, gateway, peers) and their resource figures from `/proc`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process killed on drop, with the URL it printed when ready.
pub struct Proc {
    pub name: String,
    child: Child,
    pub pid: u32,
    pub base_url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// Spawns `cmd` and waits up to `timeout` for a stdout line containing `marker`, taking the
    /// URL (`http://…`) from that line. Other output is discarded (stderr inherits when
    /// `HEIMDALL_BENCH_VERBOSE` is set).
    pub async fn spawn_with_marker(
        name: &str,
        mut cmd: Command,
        marker: &str,
        timeout: Duration,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr_mode())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let pid = child.id().context("child has no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(marker)
                    && let Some(i) = line.find("http://")
                {
                    return Ok::<_, anyhow::Error>(Some(line[i..].trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let base_url = match found {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => bail!("{name} exited before printing `{marker}`"),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("{name} did not print `{marker}` within {timeout:?}"),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Proc {
            name: name.to_string(),
            child,
            pid,
            base_url,
            _dir: dir,
        })
    }

    /// Spawns `cmd` and polls `GET health_path` on `port` until it answers 2xx.
    pub async fn spawn_with_health(
        name: &str,
        mut cmd: Command,
        port: u16,
        health_path: &str,
        timeout: Duration,
        dir: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(stderr_mode())
            .stderr(stderr_mode())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let pid = child.id().context("child has no pid")?;
        let deadline = Instant::now() + timeout;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{name} exited during start-up with {status}");
            }
            if crate::load::get_ok(addr, health_path).await {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} did not become healthy on port {port} within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            pid,
            base_url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        })
    }

    pub fn addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        let rest = self
            .base_url
            .strip_prefix("http://")
            .context("base url is not http")?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        hostport
            .parse()
            .with_context(|| format!("parsing address `{hostport}`"))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if still running after five seconds.
    pub async fn stop(mut self) {
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn stderr_mode() -> Stdio {
    if std::env::var_os("HEIMDALL_BENCH_VERBOSE").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// Wraps `program` in `taskset -c CPUS` when `cpus` is set.
pub fn command(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The directory holding the workspace's binaries: `HEIMDALL_BENCH_BIN_DIR`, else the
/// directory of the running executable (so `target/release/heimdall-bench` finds
/// `target/release/heimdall`).
pub fn bin_dir(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HEIMDALL_BENCH_BIN_DIR") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("executable has no parent directory")
}

// ---------------------------------------------------------------------------------------------
// /proc figures

/// Resident set size and CPU time of a process and all its descendants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

fn read_stat(pid: u32) -> Option<(u32, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    Some((ppid, (utime + stime) / ticks))
}

fn read_rss(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = read_stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

/// Current usage of `pid`'s process tree.
pub fn usage(pid: u32) -> Usage {
    let mut u = Usage::default();
    for p in tree(pid) {
        u.rss_bytes += read_rss(p).unwrap_or(0);
        u.cpu_seconds += read_stat(p).map_or(0.0, |(_, c)| c);
    }
    u
}

/// Samples the RSS of a process tree every 100 ms until stopped; keeps the maximum.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let task = tokio::task::spawn_blocking(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(usage(pid).rss_bytes, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
            m.fetch_max(usage(pid).rss_bytes, Ordering::Relaxed);
        });
        Self { stop, max, task }
    }

    /// Stops sampling; the maximum RSS seen in bytes.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.max.load(Ordering::Relaxed)
    }
}

/// Raises this process's open-file limit (inherited by children) to at least `want`.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let cur = getrlimit(Resource::Nofile);
    let have = cur.current.unwrap_or(u64::MAX);
    if have >= want {
        return Ok(have);
    }
    let max = cur.maximum.map_or(want, |m| m.max(want));
    let new = Rlimit {
        current: Some(want),
        maximum: Some(max),
    };
    if setrlimit(Resource::Nofile, new).is_err() {
        // Not allowed to raise the hard limit: go as high as it allows.
        let hard = cur.maximum.unwrap_or(want);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard.min(want)),
                maximum: cur.maximum,
            },
        )?;
        return Ok(hard.min(want));
    }
    Ok(want)
}
