//! The vector index of one scope: unit vectors side by side in one buffer, searched by an exact
//! scan (the dot product of unit vectors is their cosine similarity). One contiguous buffer
//! keeps the scan a stream through memory the compiler vectorises; removal moves the last
//! vector into the hole, so the buffer never has gaps.

/// Vectors of one length, each with its entry's slot number and expiry.
#[derive(Debug, Default)]
pub struct VectorIndex {
    dimension: usize,
    vectors: Vec<f32>,
    /// Per vector: the owner's id and when it stops answering (Unix ms).
    owners: Vec<(u64, i64)>,
}

/// A vector scaled to length 1; `None` for a zero, non-finite or empty vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

impl VectorIndex {
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Adds `owner`'s unit vector; a vector of another length is refused.
    pub fn insert(&mut self, owner: u64, expires_ms: i64, unit: &[f32]) -> bool {
        if unit.len() != self.dimension {
            return false;
        }
        self.vectors.extend_from_slice(unit);
        self.owners.push((owner, expires_ms));
        true
    }

    /// Keeps the vectors whose owner and expiry pass `keep`, in one pass over the buffer.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, i64) -> bool) {
        let d = self.dimension;
        let mut kept = 0;
        for i in 0..self.owners.len() {
            let (owner, expires) = self.owners[i];
            if !keep(owner, expires) {
                continue;
            }
            if kept != i {
                self.owners[kept] = self.owners[i];
                self.vectors.copy_within(i * d..(i + 1) * d, kept * d);
            }
            kept += 1;
        }
        self.owners.truncate(kept);
        self.vectors.truncate(kept * d);
    }

    /// The most similar live vector to `unit` with a similarity of at least `threshold`.
    pub fn nearest(&self, unit: &[f32], threshold: f32, now_ms: i64) -> Option<(u64, f32)> {
        if unit.len() != self.dimension || self.dimension == 0 {
            return None;
        }
        let mut best: Option<(u64, f32)> = None;
        for (v, &(owner, expires)) in self.vectors.chunks_exact(self.dimension).zip(&self.owners) {
            if expires <= now_ms {
                continue;
            }
            let s = dot(v, unit);
            if s >= threshold && best.is_none_or(|(_, b)| s > b) {
                best = Some((owner, s));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_closest_live_vector_above_the_threshold() {
        let mut ix = VectorIndex::new(3);
        let a = normalized(&[1.0, 0.0, 0.0]).unwrap();
        let b = normalized(&[1.0, 1.0, 0.0]).unwrap();
        let c = normalized(&[0.0, 0.0, 1.0]).unwrap();
        assert!(ix.insert(1, 100, &a));
        assert!(ix.insert(2, 100, &b));
        assert!(ix.insert(3, 100, &c));
        assert!(!ix.insert(4, 100, &[1.0]), "wrong length");
        let q = normalized(&[1.0, 0.2, 0.0]).unwrap();
        assert_eq!(ix.nearest(&q, 0.5, 0).map(|h| h.0), Some(1));
        assert_eq!(ix.nearest(&q, 0.99, 0), None);
        assert_eq!(ix.nearest(&q, 0.5, 100), None, "expired");
        ix.retain(|owner, _| owner != 1);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.nearest(&q, 0.5, 0).map(|h| h.0), Some(2));
        assert_eq!(
            ix.nearest(&c, 0.99, 0).map(|h| h.0),
            Some(3),
            "moved, still found"
        );
        ix.retain(|_, _| false);
        assert!(ix.is_empty());
    }

    #[test]
    fn dot_matches_the_plain_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.05).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
        assert_eq!(normalized(&[0.0, 0.0]), None);
    }
}
