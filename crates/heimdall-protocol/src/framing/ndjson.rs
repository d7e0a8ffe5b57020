//! Newline-delimited JSON (Ollama's streams): one message per line.

use bytes::BytesMut;

use super::{Frame, Framer, FramingError};

#[derive(Debug)]
pub struct NdjsonFramer {
    buf: BytesMut,
    /// How far `buf` has been searched for a newline.
    scanned: usize,
    max_line_bytes: usize,
}

impl NdjsonFramer {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scanned: 0,
            max_line_bytes,
        }
    }
}

impl Framer for NdjsonFramer {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        loop {
            let Some(pos) = memchr::memchr(b'\n', &self.buf[self.scanned..]) else {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max_line_bytes {
                    return Err(FramingError::TooLarge {
                        limit: self.max_line_bytes,
                    });
                }
                return Ok(None);
            };
            let end = self.scanned + pos + 1;
            self.scanned = 0;
            if end > self.max_line_bytes {
                return Err(FramingError::TooLarge {
                    limit: self.max_line_bytes,
                });
            }
            let raw = self.buf.split_to(end).freeze();
            let data = raw.slice(..raw.len() - 1);
            let data = data.slice(..data.trim_ascii_end().len());
            // Blank lines carry nothing.
            if data.trim_ascii().is_empty() {
                continue;
            }
            return Ok(Some(Frame {
                raw,
                name: None,
                data,
            }));
        }
    }

    fn finish(&mut self) -> Option<Frame> {
        let raw = self.buf.split().freeze();
        self.scanned = 0;
        if raw.trim_ascii().is_empty() {
            return None;
        }
        let data = raw.slice(..raw.trim_ascii_end().len());
        Some(Frame {
            raw,
            name: None,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_across_chunks_and_limits() {
        let wire = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}";
        for split in 0..wire.len() {
            let mut f = NdjsonFramer::new(1024);
            let mut got = Vec::new();
            f.push(&wire[..split]);
            while let Some(fr) = f.next_frame().unwrap() {
                got.push(fr.data);
            }
            f.push(&wire[split..]);
            while let Some(fr) = f.next_frame().unwrap() {
                got.push(fr.data);
            }
            got.extend(f.finish().map(|fr| fr.data));
            assert_eq!(
                got,
                vec![&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"],
                "split {split}"
            );
        }
        let mut f = NdjsonFramer::new(4);
        f.push(b"{\"too\":\"long\"}");
        assert!(f.next_frame().is_err());
    }
}
