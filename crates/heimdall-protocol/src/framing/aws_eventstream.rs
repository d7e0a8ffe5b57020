//! The AWS event stream (`application/vnd.amazon.eventstream`, Bedrock's streams): binary
//! messages, each
//!
//! ```text
//! total length u32 BE | headers length u32 BE | CRC32 of those 8 bytes
//! headers (name length u8, name, value type u8, value) | payload | CRC32 of all the above
//! ```
//!
//! Both checksums are verified: a stream is binary, so a flipped bit is not visible the way a
//! broken SSE line is, and the prelude's checksum also stops a garbage length from making the
//! framer wait for gigabytes. A frame is named after its `:event-type` header (events),
//! `:exception-type` (exceptions) or `:error-code` (errors); [`header`] reads any other string
//! header of a frame, such as `:message-type`.

use bytes::{Buf, BytesMut};

use super::{Frame, Framer, FramingError};

/// Total length, headers length, prelude CRC.
const PRELUDE: usize = 12;
/// Prelude plus the message CRC: the size of a message with no headers and no payload.
const MIN_MESSAGE: usize = PRELUDE + 4;

/// Value types of a header, by their tag byte.
const BOOL_TRUE: u8 = 0;
const BOOL_FALSE: u8 = 1;
const BYTE: u8 = 2;
const SHORT: u8 = 3;
const INTEGER: u8 = 4;
const LONG: u8 = 5;
const BYTE_ARRAY: u8 = 6;
const STRING: u8 = 7;
const TIMESTAMP: u8 = 8;
const UUID: u8 = 9;

/// The headers that name a frame (the first of them a message carries).
const NAME_HEADERS: [&str; 3] = [":event-type", ":exception-type", ":error-code"];

#[derive(Debug)]
pub struct EventStreamFramer {
    buf: BytesMut,
    max_message_bytes: usize,
}

impl EventStreamFramer {
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_message_bytes,
        }
    }
}

fn malformed(what: &str) -> FramingError {
    FramingError::Malformed(format!("AWS event stream: {what}"))
}

fn be_u32(b: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[..4]);
    u32::from_be_bytes(word)
}

impl Framer for EventStreamFramer {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let total = be_u32(&self.buf[0..]) as usize;
        let headers_len = be_u32(&self.buf[4..]) as usize;
        if crc32fast::hash(&self.buf[..8]) != be_u32(&self.buf[8..]) {
            return Err(malformed("prelude checksum mismatch"));
        }
        if total < MIN_MESSAGE || headers_len > total - MIN_MESSAGE {
            return Err(malformed("message lengths are inconsistent"));
        }
        if total > self.max_message_bytes {
            return Err(FramingError::TooLarge {
                limit: self.max_message_bytes,
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let raw = self.buf.split_to(total).freeze();
        if crc32fast::hash(&raw[..total - 4]) != be_u32(&raw[total - 4..]) {
            return Err(malformed("message checksum mismatch"));
        }
        let headers = Headers::new(&raw[PRELUDE..PRELUDE + headers_len]);
        // Every header must parse, so a frame handed on is one whose headers can be trusted.
        let mut name = None;
        for h in headers {
            let (key, value) = h?;
            if name.is_none()
                && NAME_HEADERS.contains(&key)
                && let Value::String(s) = value
            {
                name = Some(s);
            }
        }
        let name = name.map(|s| raw.slice_ref(s));
        let data = raw.slice(PRELUDE + headers_len..total - 4);
        Ok(Some(Frame { raw, name, data }))
    }

    fn finish(&mut self) -> Option<Frame> {
        // A message cut short by the end of input cannot be read: it is dropped, and the
        // dialect's decoder reports the stream as unfinished.
        self.buf.clear();
        None
    }
}

/// A header value, as far as Heimdall reads them: strings; the other types are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    String(&'a [u8]),
    Other,
}

/// Walks a headers block.
struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Headers<'a> {
    fn new(block: &'a [u8]) -> Self {
        Self { rest: block }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FramingError> {
        if self.rest.len() < n {
            return Err(malformed("header runs past its block"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn next_header(&mut self) -> Result<(&'a str, Value<'a>), FramingError> {
        let name_len = usize::from(self.take(1)?[0]);
        let name = std::str::from_utf8(self.take(name_len)?)
            .map_err(|_| malformed("header name is not UTF-8"))?;
        let value = match self.take(1)?[0] {
            BOOL_TRUE | BOOL_FALSE => Value::Other,
            BYTE => self.take(1).map(|_| Value::Other)?,
            SHORT => self.take(2).map(|_| Value::Other)?,
            INTEGER => self.take(4).map(|_| Value::Other)?,
            LONG | TIMESTAMP => self.take(8).map(|_| Value::Other)?,
            UUID => self.take(16).map(|_| Value::Other)?,
            kind @ (BYTE_ARRAY | STRING) => {
                let mut len = self.take(2)?;
                let bytes = self.take(usize::from(len.get_u16()))?;
                if kind == STRING {
                    Value::String(bytes)
                } else {
                    Value::Other
                }
            }
            other => return Err(malformed(&format!("unknown header value type {other}"))),
        };
        Ok((name, value))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = Result<(&'a str, Value<'a>), FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_header();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

/// The string header `name` of a frame this framer produced (`:message-type`,
/// `:content-type`, …); `None` when absent, not a string, or not UTF-8.
pub fn header<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
    let raw = &frame.raw[..];
    if raw.len() < MIN_MESSAGE {
        return None;
    }
    let headers_len = be_u32(&raw[4..]) as usize;
    let block = raw.get(PRELUDE..PRELUDE + headers_len)?;
    Headers::new(block)
        .map_while(Result::ok)
        .find_map(|(key, value)| match value {
            Value::String(s) if key == name => std::str::from_utf8(s).ok(),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use heimdall_testkit::eventstream::{self as es, HeaderValue};

    fn drain(f: &mut EventStreamFramer) -> Result<Vec<Frame>, FramingError> {
        let mut out = Vec::new();
        while let Some(frame) = f.next_frame()? {
            out.push(frame);
        }
        Ok(out)
    }

    fn wire() -> Vec<u8> {
        let mut wire = es::event("messageStart", br#"{"role":"assistant"}"#);
        wire.extend(es::event(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        ));
        // Every value type, so skipping the ones Heimdall does not read is exercised.
        wire.extend(es::message(
            &[
                (":message-type", HeaderValue::String("event")),
                ("t", HeaderValue::BoolTrue),
                ("f", HeaderValue::BoolFalse),
                ("b", HeaderValue::Byte(7)),
                ("s", HeaderValue::Short(-2)),
                ("i", HeaderValue::Integer(99)),
                ("l", HeaderValue::Long(1 << 40)),
                ("a", HeaderValue::Bytes(b"\x00\x01")),
                ("ts", HeaderValue::Timestamp(1_700_000_000_000)),
                ("u", HeaderValue::Uuid([9; 16])),
                (":event-type", HeaderValue::String("metadata")),
            ],
            br#"{"usage":{}}"#,
        ));
        wire.extend(es::exception(
            "throttlingException",
            br#"{"message":"slow down"}"#,
        ));
        wire
    }

    #[test]
    fn frames_at_every_split() {
        let wire = wire();
        for split in 0..=wire.len() {
            let mut f = EventStreamFramer::new(1 << 20);
            f.push(&wire[..split]);
            let mut got = drain(&mut f).unwrap();
            f.push(&wire[split..]);
            got.extend(drain(&mut f).unwrap());
            let names: Vec<_> = got.iter().map(|fr| fr.name().unwrap().to_owned()).collect();
            assert_eq!(
                names,
                [
                    "messageStart",
                    "contentBlockDelta",
                    "metadata",
                    "throttlingException"
                ],
                "split {split}"
            );
            assert_eq!(
                &got[1].data[..],
                br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#
            );
            assert_eq!(header(&got[0], ":message-type"), Some("event"));
            assert_eq!(header(&got[2], ":message-type"), Some("event"));
            assert_eq!(header(&got[3], ":message-type"), Some("exception"));
            assert_eq!(header(&got[3], ":missing"), None);
            let raw: Vec<u8> = got.iter().flat_map(|fr| fr.raw.to_vec()).collect();
            assert_eq!(raw, wire);
            assert!(f.finish().is_none());
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let wire = wire();
        let mut f = EventStreamFramer::new(1 << 20);
        let mut n = 0;
        for b in &wire {
            f.push(std::slice::from_ref(b));
            n += drain(&mut f).unwrap().len();
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let one = es::event("contentBlockDelta", br#"{"delta":{"text":"x"}}"#);
        for i in 0..one.len() {
            let mut bad = one.clone();
            bad[i] ^= 0x20;
            let mut f = EventStreamFramer::new(1 << 20);
            f.push(&bad);
            // A corrupted length is caught by the prelude's checksum before it is believed.
            let got = f.next_frame();
            assert!(
                matches!(got, Err(FramingError::Malformed(_))),
                "byte {i}: {got:?}"
            );
        }
    }

    #[test]
    fn oversize_and_inconsistent_lengths() {
        let big = es::event("contentBlockDelta", &[b'x'; 200]);
        let mut f = EventStreamFramer::new(100);
        // The prelude alone tells the message is too large: no waiting for its bytes.
        f.push(&big[..PRELUDE]);
        assert_eq!(f.next_frame(), Err(FramingError::TooLarge { limit: 100 }));
        let mut f = EventStreamFramer::new(big.len());
        f.push(&big);
        assert!(f.next_frame().unwrap().is_some());

        // A prelude with a valid checksum but headers longer than the message.
        let mut prelude = Vec::new();
        prelude.extend(20u32.to_be_bytes());
        prelude.extend(10u32.to_be_bytes());
        prelude.extend(crc32fast::hash(&prelude).to_be_bytes());
        let mut f = EventStreamFramer::new(1 << 20);
        f.push(&prelude);
        assert!(matches!(f.next_frame(), Err(FramingError::Malformed(_))));

        // A message whose header claims more bytes than its block holds.
        let mut bad_header = Vec::new();
        bad_header.extend([5, b':', b'b', b'a', b'd', b'!', STRING, 0, 200]);
        let msg = es::raw_message(&bad_header, b"{}");
        let mut f = EventStreamFramer::new(1 << 20);
        f.push(&msg);
        assert!(matches!(f.next_frame(), Err(FramingError::Malformed(_))));
    }

    #[test]
    fn a_cut_message_is_dropped_at_the_end() {
        let one = es::event("messageStop", br#"{"stopReason":"end_turn"}"#);
        let mut f = EventStreamFramer::new(1 << 20);
        f.push(&one[..one.len() - 3]);
        assert!(f.next_frame().unwrap().is_none());
        assert!(f.finish().is_none());
    }
}
