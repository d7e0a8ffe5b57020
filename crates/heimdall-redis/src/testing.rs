//! Helpers for tests against the machine's Redis.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The machine's Redis; `HEIMDALL_TEST_REDIS_URL` names another.
pub fn server() -> String {
    std::env::var("HEIMDALL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test run shares.
pub fn unique_prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("heimdall-test:{}:{nanos}:{test}:", std::process::id())
}

/// Relays every connection `listener` accepts to [`server`] until aborted; aborting closes
/// the listener (connections already relayed live on until either side closes).
pub fn relay(listener: TcpListener) -> JoinHandle<()> {
    let upstream = server()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    })
}
