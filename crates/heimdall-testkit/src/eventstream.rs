//! An encoder for the AWS event stream (Bedrock's binary stream framing), for the mock and for
//! tests that hand-build streams. Written from the format description, independently of the
//! gateway's decoder, so a bug cannot hide on both sides.

/// A header value of every type the format has.
#[derive(Debug, Clone, Copy)]
pub enum HeaderValue<'a> {
    BoolTrue,
    BoolFalse,
    Byte(i8),
    Short(i16),
    Integer(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One message: prelude, `headers` encoded in order, `payload`, checksums.
pub fn message(headers: &[(&str, HeaderValue<'_>)], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        block.extend_from_slice(name.as_bytes());
        match *value {
            HeaderValue::BoolTrue => block.push(0),
            HeaderValue::BoolFalse => block.push(1),
            HeaderValue::Byte(b) => {
                block.push(2);
                block.extend(b.to_be_bytes());
            }
            HeaderValue::Short(v) => {
                block.push(3);
                block.extend(v.to_be_bytes());
            }
            HeaderValue::Integer(v) => {
                block.push(4);
                block.extend(v.to_be_bytes());
            }
            HeaderValue::Long(v) => {
                block.push(5);
                block.extend(v.to_be_bytes());
            }
            HeaderValue::Bytes(b) => {
                block.push(6);
                block.extend(u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
                block.extend_from_slice(b);
            }
            HeaderValue::String(s) => {
                block.push(7);
                block.extend(u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
                block.extend_from_slice(s.as_bytes());
            }
            HeaderValue::Timestamp(ms) => {
                block.push(8);
                block.extend(ms.to_be_bytes());
            }
            HeaderValue::Uuid(u) => {
                block.push(9);
                block.extend(u);
            }
        }
    }
    raw_message(&block, payload)
}

/// A message around an already encoded headers block (valid checksums, whatever the block).
pub fn raw_message(headers_block: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 12 + headers_block.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend(u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend(
        u32::try_from(headers_block.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend(crc32fast::hash(&out).to_be_bytes());
    out.extend_from_slice(headers_block);
    out.extend_from_slice(payload);
    out.extend(crc32fast::hash(&out).to_be_bytes());
    out
}

/// An event as Bedrock sends it: `:event-type`, `:content-type: application/json`,
/// `:message-type: event`.
pub fn event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    message(
        &[
            (":event-type", HeaderValue::String(event_type)),
            (":content-type", HeaderValue::String("application/json")),
            (":message-type", HeaderValue::String("event")),
        ],
        payload,
    )
}

/// An exception (`throttlingException`, …) with its `{"message": …}` payload.
pub fn exception(exception_type: &str, payload: &[u8]) -> Vec<u8> {
    message(
        &[
            (":exception-type", HeaderValue::String(exception_type)),
            (":content-type", HeaderValue::String("application/json")),
            (":message-type", HeaderValue::String("exception")),
        ],
        payload,
    )
}
