//! Entries as bytes, for stores that keep an entry as one value (Redis), and vectors as bytes
//! for those that keep them in a column (SQL).
//!
//! Layout, integers little-endian: `HCE1`; flags (bit 0: `stream`, bit 1: has a vector);
//! `created_ms` and `expires_ms` (i64); the direct key and the scope (32 bytes each); `id`,
//! `cache_key`, `provider` and `model` (u32 length, UTF-8); the vector (u32 byte length, f32s);
//! the body (u32 length, bytes). Decoding checks every length against what is there and that
//! the id is the direct key's, so bytes from elsewhere are refused, never trusted.

use bytes::Bytes;

use crate::cache::Entry;
use crate::request::Digest;

const MAGIC: &[u8; 4] = b"HCE1";
const STREAM: u8 = 1;
const VECTOR: u8 = 2;

/// A vector's components, 4 bytes each.
pub fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from [`vector_bytes`]; `None` when the length is not a multiple of 4.
pub fn vector_of(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

impl Entry {
    /// The entry as one value (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let vector = self.vector.as_deref().map(vector_bytes);
        let texts = [&self.id, &self.cache_key, &self.provider, &self.model];
        let mut out = Vec::with_capacity(
            96 + texts.iter().map(|t| t.len() + 4).sum::<usize>()
                + vector.as_ref().map_or(0, Vec::len)
                + self.body.len(),
        );
        out.extend_from_slice(MAGIC);
        let mut flags = 0;
        if self.stream {
            flags |= STREAM;
        }
        if vector.is_some() {
            flags |= VECTOR;
        }
        out.push(flags);
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        out.extend_from_slice(&self.direct);
        out.extend_from_slice(&self.scope);
        for text in texts {
            put(&mut out, text.as_bytes());
        }
        if let Some(v) = &vector {
            put(&mut out, v);
        }
        put(&mut out, &self.body);
        out
    }

    /// An entry from [`Entry::encode`]'s bytes; `None` for anything else. The body shares
    /// `bytes`' buffer.
    pub fn decode(bytes: Bytes) -> Option<Entry> {
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        if r.take(4)? != MAGIC {
            return None;
        }
        let flags = r.take(1)?[0];
        let created_ms = r.i64()?;
        let expires_ms = r.i64()?;
        let direct = r.digest()?;
        let scope = r.digest()?;
        let id = r.text()?;
        let cache_key = r.text()?;
        let provider = r.text()?;
        let model = r.text()?;
        let vector = match flags & VECTOR {
            0 => None,
            _ => Some(vector_of(r.field()?)?.into()),
        };
        let body_len = r.u32_len()?;
        let start = r.at;
        r.take(body_len)?;
        if r.at != bytes.len() || id != Entry::id_for(&direct) {
            return None;
        }
        Some(Entry {
            id,
            cache_key,
            direct,
            scope,
            vector,
            stream: flags & STREAM != 0,
            body: bytes.slice(start..r.at),
            provider,
            model,
            created_ms,
            expires_ms,
        })
    }
}

/// A length-prefixed field.
fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Fields are far below 4 GiB (answers are bounded by the cache stage, texts by headers).
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let taken = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(taken)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn u32_len(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take(4)?.try_into().ok()?)).ok()
    }

    fn digest(&mut self) -> Option<Digest> {
        self.take(32)?.try_into().ok()
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.u32_len()?;
        self.take(len)
    }

    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.field()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(vector: Option<Vec<f32>>, stream: bool) -> Entry {
        let direct = [7; 32];
        Entry {
            id: Entry::id_for(&direct),
            cache_key: "tenant-é".into(),
            direct,
            scope: [9; 32],
            vector: vector.map(Into::into),
            stream,
            body: Bytes::from_static(b"{\"content\":[]}"),
            provider: "anthropic".into(),
            model: "claude".into(),
            created_ms: 1_700_000_000_000,
            expires_ms: 1_700_000_300_000,
        }
    }

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = vec![0.25f32, -1.5, 3.0];
        assert_eq!(vector_of(&vector_bytes(&v)), Some(v));
        assert_eq!(vector_of(&[1, 2, 3]), None);
    }

    #[test]
    fn entries_round_trip_with_and_without_a_vector() {
        for e in [entry(Some(vec![0.6, -0.8]), false), entry(None, true)] {
            assert_eq!(Entry::decode(Bytes::from(e.encode())), Some(e));
        }
    }

    #[test]
    fn anything_but_a_whole_entry_is_refused() {
        let bytes = entry(Some(vec![1.0]), false).encode();
        for end in 0..bytes.len() {
            assert_eq!(
                Entry::decode(Bytes::copy_from_slice(&bytes[..end])),
                None,
                "{end}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Entry::decode(Bytes::from(longer)), None);
        let mut other_id = entry(None, false);
        other_id.id = "ce_00".into();
        assert_eq!(Entry::decode(Bytes::from(other_id.encode())), None);
        let mut huge_length = bytes;
        huge_length[85..89].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Entry::decode(Bytes::from(huge_length)), None);
    }
}
