//! The vector index of one scope: unit vectors (the dot product of unit vectors is their
//! cosine similarity), each with a 256-bit sketch of its direction.
//!
//! A small scope is scanned exactly: below [`EXACT_BELOW`] vectors the scan costs well under
//! a millisecond and is never wrong. A larger one is searched in two steps: the query's sketch
//! against every stored sketch (32 bytes each instead of 6 KiB for 1,536 dimensions, so the
//! pass stays in the CPU's caches), then an exact rescoring of the [`RESCORE`] closest
//! sketches. A hit is still only a vector whose exact similarity reaches the threshold; the
//! approximation can only miss, when the true best is not among the candidates.
//!
//! The sketch is the sign pattern of the vector under a fixed pseudo-random rotation (random
//! sign flips and Walsh–Hadamard transforms, three rounds). Two vectors at angle θ differ in
//! about θ/π of its bits, so the Hamming distance orders candidates by angle.
//!
//! Why written here rather than taken from a crate: the graph indexes (`hnsw_rs`,
//! `instant-distance`, `usearch`) cost a millisecond or more per insert at 1,536 dimensions,
//! cannot delete (`instant-distance` cannot even insert after it is built), and bring
//! threads, memory maps or a C++ build; entries here come and go with their TTL and an
//! admin's clear. A sketch costs microseconds to compute, an insert is an append and a
//! removal a swap, so the index stays exact about its contents under one lock and needs no
//! training, no rebuild and no background builder.

use std::sync::Arc;

/// Vectors at or above this count are searched through their sketches. A scan reads every
/// vector (6 KiB each at 1,536 dimensions) and is bound by memory: at 1,000 vectors it took
/// about 250 µs where the sketch path took about 100 µs at 10,000 (`heimdall-bench --micro`).
pub const EXACT_BELOW: usize = 256;
/// How many sketch candidates are rescored exactly: enough that a neighbour above a useful
/// threshold (0.8 and up) is among them with near certainty, few enough to be cheap.
pub const RESCORE: usize = 64;

const SKETCH_WORDS: usize = 4;
const SKETCH_BITS: usize = SKETCH_WORDS * 64;
/// Rounds of sign flips and transforms: one leaves sparse vectors poorly mixed.
const ROUNDS: u64 = 3;
/// Fixed, so a vector's sketch is the same in every process.
const SEED: u64 = 0x6865_696d_6461_6c6c;

/// The sign pattern of a vector's direction under the fixed rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sketch([u64; SKETCH_WORDS]);

/// A step of the splitmix64 sequence: the pseudo-random signs of the rotation.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The unnormalised Walsh–Hadamard transform, in place; `x.len()` is a power of two.
fn hadamard(x: &mut [f32]) {
    let mut half = 1;
    while half < x.len() {
        for pair in x.chunks_exact_mut(2 * half) {
            let (lo, hi) = pair.split_at_mut(half);
            for (a, b) in lo.iter_mut().zip(hi) {
                let (s, d) = (*a + *b, *a - *b);
                *a = s;
                *b = d;
            }
        }
        half *= 2;
    }
}

impl Sketch {
    /// The sketch of `v` (any length; its scale does not matter).
    pub fn of(v: &[f32]) -> Self {
        let n = v.len().next_power_of_two().max(SKETCH_BITS);
        let mut x = vec![0.0f32; n];
        x[..v.len()].copy_from_slice(v);
        for round in 0..ROUNDS {
            for (c, chunk) in (0u64..).zip(x.chunks_mut(64)) {
                let signs = splitmix64(SEED ^ (round << 48) ^ c);
                for (bit, value) in chunk.iter_mut().enumerate() {
                    if signs >> bit & 1 == 1 {
                        *value = -*value;
                    }
                }
            }
            hadamard(&mut x);
        }
        let mut words = [0u64; SKETCH_WORDS];
        for (i, value) in x[..SKETCH_BITS].iter().enumerate() {
            words[i / 64] |= u64::from(value.is_sign_negative()) << (i % 64);
        }
        Self(words)
    }

    #[inline(always)]
    fn distance(&self, other: &Self) -> u16 {
        let bits: u32 = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        // At most SKETCH_BITS (256).
        u16::try_from(bits).unwrap_or(u16::MAX)
    }
}

/// Every sketch's distance to `query`: the pass over a whole large scope. Compiled for the
/// CPU's `popcnt` (and AVX2, which counts bits in vectors) with a run-time choice, because the
/// baseline x86-64 target counts bits in a dozen instructions a word: at 100,000 sketches the
/// difference is most of a lookup.
#[multiversion::multiversion(targets("x86_64+avx2+popcnt", "x86_64+popcnt"))]
fn distances(sketches: &[Sketch], query: &Sketch) -> Vec<u16> {
    sketches.iter().map(|s| s.distance(query)).collect()
}

/// A vector scaled to length 1; `None` for a zero, non-finite or empty vector.
pub fn normalized(v: &[f32]) -> Option<Vec<f32>> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| v.iter().map(|x| x / norm).collect())
}

/// Dot product in eight independent lanes, which the compiler turns into SIMD. (An AVX2 build
/// of it measured no faster: a scan is bound by memory, 6 KiB a vector.)
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

/// The vectors of one scope, each with its owner's slot number and expiry.
#[derive(Debug)]
pub struct VectorIndex {
    dimension: usize,
    /// Shared with the entries that own them: a vector is held once however many places
    /// need it (at 1,536 dimensions it is 6 KiB, most of an entry).
    rows: Vec<Arc<[f32]>>,
    sketches: Vec<Sketch>,
    /// Per vector: the owner's id and when it stops answering (Unix ms).
    owners: Vec<(u64, i64)>,
    exact_below: usize,
}

impl VectorIndex {
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            rows: Vec::new(),
            sketches: Vec::new(),
            owners: Vec::new(),
            exact_below: EXACT_BELOW,
        }
    }

    /// Moves the size from which lookups go through sketches (tests and benchmarks).
    #[must_use]
    pub fn with_exact_below(mut self, n: usize) -> Self {
        self.exact_below = n;
        self
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Adds `owner`'s unit vector with its sketch (computed by the caller before it locks
    /// anything); a vector of another length is refused.
    pub fn insert(
        &mut self,
        owner: u64,
        expires_ms: i64,
        unit: &Arc<[f32]>,
        sketch: Sketch,
    ) -> bool {
        if unit.len() != self.dimension || unit.is_empty() {
            return false;
        }
        self.rows.push(Arc::clone(unit));
        self.sketches.push(sketch);
        self.owners.push((owner, expires_ms));
        true
    }

    /// Keeps the vectors whose owner and expiry pass `keep`; each removal moves the last
    /// vector into the hole, so the cost is in what is removed, not in what stays.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, i64) -> bool) {
        let mut i = 0;
        while i < self.owners.len() {
            let (owner, expires) = self.owners[i];
            if keep(owner, expires) {
                i += 1;
            } else {
                self.rows.swap_remove(i);
                self.sketches.swap_remove(i);
                self.owners.swap_remove(i);
            }
        }
    }

    /// The most similar live vector to `unit` with a similarity of at least `threshold`:
    /// exact in a small scope, through the sketches in a large one.
    pub fn nearest(&self, unit: &[f32], threshold: f32, now_ms: i64) -> Option<(u64, f32)> {
        if unit.len() != self.dimension || unit.is_empty() {
            return None;
        }
        if self.len() < self.exact_below {
            return self.nearest_exact(unit, threshold, now_ms);
        }
        let candidates = self.candidates(Sketch::of(unit));
        self.best(candidates.into_iter(), unit, threshold, now_ms)
    }

    /// The same answer by scanning every vector: the reference for the sketches' recall.
    pub fn nearest_exact(&self, unit: &[f32], threshold: f32, now_ms: i64) -> Option<(u64, f32)> {
        if unit.len() != self.dimension || unit.is_empty() {
            return None;
        }
        let mut best: Option<(u64, f32)> = None;
        for (v, &(owner, expires)) in self.rows.iter().zip(&self.owners) {
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

    /// The positions of the [`RESCORE`] sketches closest to `query` (ties at the cut broken
    /// by position).
    fn candidates(&self, query: Sketch) -> Vec<usize> {
        let distances = distances(&self.sketches, &query);
        // The cut: the smallest distance with RESCORE sketches at or within it.
        let mut histogram = [0usize; SKETCH_BITS + 1];
        for &d in &distances {
            histogram[usize::from(d)] += 1;
        }
        let mut cut = SKETCH_BITS;
        let mut within = 0;
        for (d, &n) in histogram.iter().enumerate() {
            within += n;
            if within >= RESCORE {
                cut = d;
                break;
            }
        }
        let closer = within - histogram[cut];
        let mut at_cut = RESCORE.saturating_sub(closer);
        let mut picked = Vec::with_capacity(RESCORE);
        for (i, &d) in distances.iter().enumerate() {
            let d = usize::from(d);
            if d < cut {
                picked.push(i);
            } else if d == cut && at_cut > 0 {
                at_cut -= 1;
                picked.push(i);
            }
        }
        picked
    }

    fn best(
        &self,
        positions: impl Iterator<Item = usize>,
        unit: &[f32],
        threshold: f32,
        now_ms: i64,
    ) -> Option<(u64, f32)> {
        let mut best: Option<(u64, f32)> = None;
        for i in positions {
            let (owner, expires) = self.owners[i];
            if expires <= now_ms {
                continue;
            }
            let s = dot(&self.rows[i], unit);
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

    fn put(ix: &mut VectorIndex, owner: u64, expires: i64, v: &[f32]) -> bool {
        ix.insert(owner, expires, &Arc::from(v), Sketch::of(v))
    }

    #[test]
    fn finds_the_closest_live_vector_above_the_threshold() {
        let mut ix = VectorIndex::new(3);
        let a = normalized(&[1.0, 0.0, 0.0]).unwrap();
        let b = normalized(&[1.0, 1.0, 0.0]).unwrap();
        let c = normalized(&[0.0, 0.0, 1.0]).unwrap();
        assert!(put(&mut ix, 1, 100, &a));
        assert!(put(&mut ix, 2, 100, &b));
        assert!(put(&mut ix, 3, 100, &c));
        assert!(!put(&mut ix, 4, 100, &[1.0]), "wrong length");
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

    /// Deterministic pseudo-random unit vectors for the tests below.
    fn unit(seed: u64, dimension: usize) -> Vec<f32> {
        let raw: Vec<f32> = (0..dimension as u64)
            .map(|i| (splitmix64(seed.wrapping_mul(0x1_0000) ^ i) >> 40) as f32 / 8_388_608.0 - 1.0)
            .collect();
        normalized(&raw).unwrap()
    }

    /// `base` moved by `noise` times a random direction, renormalised.
    fn near(base: &[f32], seed: u64, noise: f32) -> Vec<f32> {
        let step = unit(seed, base.len());
        normalized(
            &base
                .iter()
                .zip(&step)
                .map(|(b, s)| b + noise * s)
                .collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn sketch_distance_follows_the_angle() {
        let a = unit(1, 384);
        let (same, close, far) = (a.clone(), near(&a, 2, 0.3), unit(3, 384));
        let (d_same, d_close, d_far) = (
            Sketch::of(&a).distance(&Sketch::of(&same)),
            Sketch::of(&a).distance(&Sketch::of(&close)),
            Sketch::of(&a).distance(&Sketch::of(&far)),
        );
        assert_eq!(d_same, 0);
        // cos ≈ 0.96 → about 0.09 of the bits; orthogonal → about half.
        assert!(d_close < 50, "{d_close}");
        assert!((96..160).contains(&d_far), "{d_far}");
        let scaled: Vec<f32> = a.iter().map(|x| x * 7.0).collect();
        assert_eq!(Sketch::of(&scaled), Sketch::of(&a), "scale does not matter");
    }

    /// 40 well-separated clusters of 50 vectors: the sketch path answers the exact scan's
    /// best for paraphrase-like queries, and nothing below the threshold.
    #[test]
    fn the_sketch_path_finds_the_exact_best_in_separated_clusters() {
        let d = 256;
        let mut ix = VectorIndex::new(d).with_exact_below(0);
        let centres: Vec<Vec<f32>> = (0..40).map(|c| unit(1_000 + c, d)).collect();
        let mut stored = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for m in 0..50u64 {
                let v = near(centre, 10_000 + c as u64 * 100 + m, 0.8);
                let owner = stored.len() as u64;
                assert!(put(&mut ix, owner, i64::MAX, &v));
                stored.push(v);
            }
        }
        for (n, v) in stored.iter().enumerate().step_by(7) {
            let q = near(v, 90_000 + n as u64, 0.2);
            let exact = ix.nearest_exact(&q, 0.9, 0);
            assert_eq!(
                exact.map(|h| h.0),
                Some(n as u64),
                "the paraphrase's source"
            );
            assert_eq!(ix.nearest(&q, 0.9, 0), exact);
        }
        // A fresh vector is far from everything: no hit at 0.9 either way.
        let stranger = unit(5, d);
        assert_eq!(ix.nearest(&stranger, 0.9, 0), None);
        assert!(ix.nearest(&stranger, -1.0, 0).is_some(), "any at -1");
    }

    #[test]
    fn removals_and_expiry_reach_the_sketch_path() {
        let d = 64;
        let mut ix = VectorIndex::new(d).with_exact_below(0);
        // Enough that removals move vectors from far positions into holes.
        let n = 1_324;
        assert_ne!((n - 2) % 3, 0);
        for i in 0..n {
            assert!(put(
                &mut ix,
                i,
                if i % 2 == 0 { 1_000 } else { 2_000 },
                &unit(i, d)
            ));
        }
        let q = unit(7, d);
        assert_eq!(ix.nearest(&q, 0.99, 0).map(|h| h.0), Some(7));
        assert_eq!(ix.nearest(&q, 0.99, 2_000), None, "expired");
        ix.retain(|owner, _| owner % 3 != 0);
        assert_eq!(ix.len(), (n - n.div_ceil(3)) as usize);
        for i in [0, 3, 9] {
            assert_eq!(ix.nearest(&unit(i, d), 0.99, 0), None, "{i} removed");
        }
        for i in [1, 2, 1_000, n - 2] {
            let hit = ix.nearest(&unit(i, d), 0.99, 0);
            assert_eq!(hit.map(|h| h.0), Some(i), "{i} kept, maybe moved");
        }
        ix.retain(|_, _| false);
        assert!(ix.is_empty() && ix.rows.is_empty() && ix.sketches.is_empty());
    }

    #[test]
    fn a_small_scope_is_scanned_exactly() {
        let d = 32;
        let mut ix = VectorIndex::new(d);
        for i in 0..100 {
            put(&mut ix, i, i64::MAX, &unit(i, d));
        }
        // Every query, even one with no close neighbour, gets the exact answer.
        for s in 500..540 {
            let q = unit(s, d);
            assert_eq!(ix.nearest(&q, -1.0, 0), ix.nearest_exact(&q, -1.0, 0));
        }
    }
}
