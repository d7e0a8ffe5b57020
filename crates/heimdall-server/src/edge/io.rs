//! The client socket as hyper sees it: it tells the connection state about reads and flushes,
//! gives hyper's own HTTP/1.1 error answers an Anthropic body, and drains before closing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::conn::ConnState;

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that closing with unread bytes does not reset the connection before the client has read
/// its answer.
const LINGER: Duration = Duration::from_secs(5);
/// Reads per poll while lingering, so a fast sender cannot monopolise a worker thread.
const LINGER_READS_PER_POLL: usize = 16;

pub(crate) struct EdgeIo {
    tcp: TcpStream,
    conn: Arc<ConnState>,
    max_header_bytes: usize,
    /// Our replacement for hyper's bare error answer, not yet fully written.
    replacement: Option<Bytes>,
    /// hyper answered a request it could not parse; the connection is closing.
    replaced: bool,
    linger: Option<Linger>,
}

struct Linger {
    until: Pin<Box<Sleep>>,
    done: bool,
}

impl EdgeIo {
    pub(crate) fn new(tcp: TcpStream, conn: Arc<ConnState>, max_header_bytes: usize) -> Self {
        Self {
            tcp,
            conn,
            max_header_bytes,
            replacement: None,
            replaced: false,
            linger: None,
        }
    }

    /// When `head` is hyper's automatic answer to an unparseable request (it writes
    /// `HTTP/1.1 400|414|431` with an empty body and closes), our answer in its place.
    fn replace_hyper_error(&mut self, head: &[u8]) -> bool {
        let Some(code) = head.strip_prefix(b"HTTP/1.1 ").and_then(|r| r.get(..4)) else {
            return false;
        };
        if self.replaced || !self.conn.between_requests() {
            return false;
        }
        let (status, message) = match code {
            b"400 " => (
                StatusCode::BAD_REQUEST,
                "malformed HTTP request: the request line or a header could not be parsed"
                    .to_owned(),
            ),
            b"414 " => (
                StatusCode::URI_TOO_LONG,
                "the request URI is too long".to_owned(),
            ),
            b"431 " => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "the request line and headers exceed {} bytes or 100 fields",
                    self.max_header_bytes
                ),
            ),
            _ => return false,
        };
        self.replacement = Some(super::error_bytes(status, &message));
        self.replaced = true;
        true
    }

    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = &mut self.replacement {
            if rest.is_empty() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            rest.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Sends FIN, then reads and discards until the client closes or `LINGER` passes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.linger.is_none() {
            ready!(Pin::new(&mut self.tcp).poll_shutdown(cx))?;
            self.linger = Some(Linger {
                until: Box::pin(tokio::time::sleep(LINGER)),
                done: false,
            });
        }
        let Some(linger) = &mut self.linger else {
            return Poll::Ready(Ok(()));
        };
        if linger.done {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [0u8; 8192];
        let mut waiting = false;
        for _ in 0..LINGER_READS_PER_POLL {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                // EOF or an error: the client is done with this connection.
                Poll::Ready(_) => {
                    linger.done = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {
                    waiting = true;
                    break;
                }
            }
        }
        if linger.until.as_mut().poll(cx).is_ready() {
            linger.done = true;
            return Poll::Ready(Ok(()));
        }
        if !waiting {
            // Data keeps coming: yield, then carry on draining.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.conn.io_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replace_hyper_error(buf) {
            // hyper's bytes are dropped; ours go out from here and from `poll_flush`.
            if let Poll::Ready(Err(e)) = this.poll_replacement(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if let Some(first) = first
            && this.replace_hyper_error(first)
        {
            let total = bufs.iter().map(|b| b.len()).sum();
            if let Poll::Ready(Err(e)) = this.poll_replacement(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(total));
        }
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.replaced {
            // hyper closes right after its error answer without shutting down the socket.
            return this.poll_linger(cx);
        }
        ready!(Pin::new(&mut this.tcp).poll_flush(cx))?;
        this.conn.io_flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if this.replaced || this.conn.linger() {
            return this.poll_linger(cx);
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
