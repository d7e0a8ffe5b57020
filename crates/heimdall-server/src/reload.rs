//! Config reload without a restart: on SIGHUP, or when the config file's contents change
//! (checked every `--config-poll-ms`). The new file is parsed and validated in full, the
//! config store's provider and client-setting changes are laid over it (`config_service`), and
//! only then does it replace the running configuration; requests under way finish on the one
//! they started with.
//! An invalid file changes nothing: the running configuration stays and the log says why,
//! with the JSON path.
//!
//! The file is polled rather than watched with inotify: editors replace files by renaming,
//! and mounted config maps (Kubernetes, Docker) change through symlink swaps, which a poll of
//! the file's contents sees the same way. Reading one small file a second costs nothing.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

/// What the last load saw of the file, so an unchanged file is not parsed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Missing,
    Contents(u64),
}

impl Seen {
    /// The file as start-up read it (`None`: there was none).
    pub(crate) fn of(text: Option<&str>) -> Self {
        text.map_or(Seen::Missing, fingerprint)
    }
}

/// Starts watching `path`, which held `seen` when the running configuration was loaded from it:
/// a change made since then is applied at the first poll. The SIGHUP handler is in place when
/// this returns, so a SIGHUP from then on reloads instead of ending the process.
pub(crate) fn spawn(
    config: Arc<crate::config_service::ConfigService>,
    path: PathBuf,
    poll: Duration,
    mut seen: Seen,
) -> JoinHandle<()> {
    let mut hangup = hangup_signal();
    tokio::spawn(async move {
        loop {
            let forced = tokio::select! {
                () = next_hangup(&mut hangup) => true,
                () = tokio::time::sleep(poll), if !poll.is_zero() => false,
            };
            let Some(text) = read(&path).await else {
                if forced || seen != Seen::Missing {
                    tracing::warn!(path = %path.display(), "config file not readable; the running configuration stays");
                }
                seen = Seen::Missing;
                continue;
            };
            let now = fingerprint(&text);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            let reason = if forced { "SIGHUP" } else { "file changed" };
            // The file with the config store's changes over it (see `config_service`).
            match config.file_changed(&path, &text).await {
                Ok(providers) => {
                    tracing::info!(path = %path.display(), reason, providers = ?crate::logfmt::JsonList(&providers), "configuration reloaded")
                }
                Err(e) => {
                    tracing::error!(
                        reason,
                        error = format!("{e:#}"),
                        "config reload refused; the running configuration stays"
                    )
                }
            }
        }
    })
}

async fn read(path: &std::path::Path) -> Option<String> {
    tokio::fs::read_to_string(path).await.ok()
}

fn fingerprint(text: &str) -> Seen {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    Seen::Contents(h.finish())
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(h: &mut Hangup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
