//! Server-sent events: an incremental framer for upstream streams and the frame encoder.
//!
//! The framer never copies event bytes it can slice: on the pass-through path the raw bytes of
//! each complete event are forwarded as they came, and only `event:`/`data:` are looked at.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Frame, Framer, FramingError};

/// Splits a byte stream into SSE events.
#[derive(Debug)]
pub struct SseFramer {
    buf: BytesMut,
    /// How far `buf` has been scanned without finding an event end, so a long event arriving
    /// in many small chunks is not rescanned from its start each time.
    scanned: usize,
    /// Largest event accepted; an upstream that never ends its event must not grow memory.
    max_event_bytes: usize,
}

impl SseFramer {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_event_bytes,
        }
    }

    fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }
}

impl Framer for SseFramer {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn finish(&mut self) -> Option<Frame> {
        if !self.has_partial() {
            self.buf.clear();
            return None;
        }
        let raw = self.buf.split().freeze();
        self.scanned = 0;
        Some(parse_event(raw))
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            let Some(end) = find_event_end(&self.buf, self.scanned.saturating_sub(3)) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_event_bytes {
                    return Err(FramingError::TooLarge {
                        limit: self.max_event_bytes,
                    });
                }
                return Ok(None);
            };
            if end > self.max_event_bytes {
                return Err(FramingError::TooLarge {
                    limit: self.max_event_bytes,
                });
            }
            let raw = self.buf.split_to(end).freeze();
            self.scanned = 0;
            // Blank lines between events (keep-alive newlines) are not events.
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(parse_event(raw)));
        }
    }
}

/// Returns the index just past the blank line ending the first event in `buf`.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(pos) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        let p = i + pos;
        // A line ends at p; the event ends if the next line is empty.
        let next = if buf[p] == b'\r' && buf.get(p + 1) == Some(&b'\n') {
            p + 2
        } else {
            p + 1
        };
        match buf.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') => {
                return Some(if buf.get(next + 1) == Some(&b'\n') {
                    next + 2
                } else if next + 1 < buf.len() {
                    next + 1
                } else {
                    // A lone trailing \r may be the first half of \r\n: wait for more.
                    return None;
                });
            }
            Some(_) => i = next,
            None => return None,
        }
    }
    None
}

fn parse_event(raw: Bytes) -> Frame {
    let mut event = None;
    let mut data: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut start = 0;
    let len = raw.len();
    while start < len {
        let rest = &raw[start..];
        let (line_len, skip) = match memchr::memchr2(b'\n', b'\r', rest) {
            Some(p) if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') => (p, 2),
            Some(p) => (p, 1),
            None => (rest.len(), 0),
        };
        let line = raw.slice(start..start + line_len);
        start += line_len + skip;
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match memchr::memchr(b':', &line) {
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (line.slice(..c), line.slice(v..))
            }
            None => (line.clone(), Bytes::new()),
        };
        match &field[..] {
            b"event" => event = Some(value),
            b"data" => match (&mut joined, &data) {
                (Some(j), _) => {
                    j.put_u8(b'\n');
                    j.extend_from_slice(&value);
                }
                (None, Some(first)) => {
                    let mut j = BytesMut::with_capacity(first.len() + value.len() + 1);
                    j.extend_from_slice(first);
                    j.put_u8(b'\n');
                    j.extend_from_slice(&value);
                    joined = Some(j);
                }
                (None, None) => data = Some(value),
            },
            _ => {}
        }
    }
    let data = match joined {
        Some(j) => j.freeze(),
        None => data.unwrap_or_default(),
    };
    Frame {
        raw,
        name: event,
        data,
    }
}

/// Appends one `event: NAME\ndata: DATA\n\n` frame. `data` must be a single line (compact JSON).
pub fn write_event(out: &mut BytesMut, name: &str, data: &[u8]) {
    out.reserve(name.len() + data.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut SseFramer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame().unwrap()).collect()
    }

    #[test]
    fn frames_across_chunk_boundaries() {
        let wire = b"event: ping\ndata: {\"type\":\"ping\"}\n\n: comment\n\ndata: a\ndata: b\n\nevent: x\r\ndata: y\r\n\r\n";
        for split in 0..wire.len() {
            let mut f = SseFramer::new(1 << 20);
            f.push(&wire[..split]);
            let mut got = drain(&mut f);
            f.push(&wire[split..]);
            got.extend(drain(&mut f));
            let names: Vec<_> = got.iter().map(|e| e.name().map(str::to_owned)).collect();
            // The comment-only event parses as an event with neither name nor data.
            assert_eq!(
                names,
                vec![Some("ping".into()), None, None, Some("x".into())],
                "split {split}"
            );
            assert_eq!(&got[0].data[..], b"{\"type\":\"ping\"}");
            assert_eq!(&got[2].data[..], b"a\nb");
            assert_eq!(&got[3].data[..], b"y");
            let raw: Vec<u8> = got.iter().flat_map(|e| e.raw.to_vec()).collect();
            assert_eq!(raw, wire.to_vec());
        }
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let mut f = SseFramer::new(1 << 20);
        f.push(b"data: [DONE]\n");
        assert!(f.next_frame().unwrap().is_none());
        assert!(f.has_partial());
        assert_eq!(&f.finish().unwrap().data[..], b"[DONE]");
        assert!(f.finish().is_none());
    }

    #[test]
    fn an_event_past_the_limit_is_an_error() {
        let mut f = SseFramer::new(16);
        f.push(b"data: 0123456789");
        assert!(f.next_frame().unwrap().is_none());
        f.push(b"abcdef");
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge { limit: 16 }));
        // A complete event over the limit is refused too, even when it arrives at once.
        let mut f = SseFramer::new(16);
        f.push(b"data: 0123456789abcdef\n\n");
        assert!(f.next_frame().is_err());
        let mut f = SseFramer::new(16);
        f.push(b"data: ok\n\n");
        assert_eq!(&f.next_frame().unwrap().unwrap().data[..], b"ok");
    }

    #[test]
    fn encoder_writes_one_frame() {
        let mut out = BytesMut::new();
        write_event(&mut out, "ping", br#"{"type":"ping"}"#);
        assert_eq!(&out[..], b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
    }
}
