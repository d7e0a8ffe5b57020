//! The semantic cache's vector index at the sizes: lookup time through the sketches
//! and by the exact scan, the cost of an insert, and how often the sketches find what the
//! exact scan finds.
//!
//! The vectors imitate embeddings: every one shares a common direction (unrelated texts are
//! not orthogonal), belongs to one of many topics (cosine about 0.6 within a topic, 0.25
//! across), and a paraphrase is a stored vector moved a little (cosine 0.91 to 0.98). Half
//! the queries are paraphrases (a hit at the threshold), half new members of a topic (a
//! miss).

use std::time::{Duration, Instant};

use heimdall_cache::index::{Sketch, VectorIndex};
use heimdall_cache::normalized;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Bifrost's default threshold.
pub const THRESHOLD: f32 = 0.8;
/// OpenAI's `text-embedding-3-small` and ada-002.
pub const DIMENSION: usize = 1536;
/// The sizes reported: a small scope (exact), and the 10k and 100k.
pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const QUERIES: usize = 400;

/// What one size measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub entries: usize,
    pub dimension: usize,
    /// `VectorIndex::nearest` (sketches from `EXACT_BELOW` entries): p50, p99.
    pub lookup: (Duration, Duration),
    /// The exact scan of every vector: p50, p99.
    pub exact: (Duration, Duration),
    /// Sketch and insert of one vector: mean, p99.
    pub insert: (Duration, Duration),
    /// Paraphrase queries whose nearest entry is the exact scan's.
    pub recall_paraphrases: f64,
    /// Queries (both kinds) with the exact scan's answer at [`THRESHOLD`]: the same hit or
    /// the same miss.
    pub agreement: f64,
    /// Queries without a near neighbour whose nearest entry (below the threshold, so not a
    /// hit) is the exact scan's.
    pub recall_unrelated: f64,
}

struct Corpus {
    rng: SmallRng,
    dimension: usize,
    common: Vec<f32>,
    topics: Vec<Vec<f32>>,
}

impl Corpus {
    fn new(seed: u64, dimension: usize, topics: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let common = random_unit(&mut rng, dimension);
        let topics = (0..topics.max(1))
            .map(|_| random_unit(&mut rng, dimension))
            .collect();
        Self {
            rng,
            dimension,
            common,
            topics,
        }
    }

    /// Weights whose squares are 0.25, 0.35 and 0.4 of the length.
    fn member(&mut self, topic: usize) -> Vec<f32> {
        let noise = random_unit(&mut self.rng, self.dimension);
        let topic = &self.topics[topic % self.topics.len()];
        mix(&[
            (0.5, &self.common[..]),
            (0.59, &topic[..]),
            (0.63, &noise[..]),
        ])
    }

    fn paraphrase(&mut self, of: &[f32]) -> Vec<f32> {
        let noise = random_unit(&mut self.rng, self.dimension);
        let step = self.rng.random_range(0.2f32..0.45);
        mix(&[(1.0, of), (step, &noise[..])])
    }
}

/// Uniform coordinates, normalised: near-orthogonal to any other such vector.
fn random_unit(rng: &mut SmallRng, dimension: usize) -> Vec<f32> {
    let raw: Vec<f32> = (0..dimension)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    normalized(&raw).unwrap_or(raw)
}

fn mix(parts: &[(f32, &[f32])]) -> Vec<f32> {
    let mut sum = vec![0.0f32; parts.first().map_or(0, |p| p.1.len())];
    for (weight, v) in parts {
        for (s, x) in sum.iter_mut().zip(v.iter()) {
            *s += weight * x;
        }
    }
    normalized(&sum).unwrap_or(sum)
}

/// `sorted`'s value at quantile `q`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn p50_p99(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort_unstable();
    (quantile(&times, 0.5), quantile(&times, 0.99))
}

#[allow(clippy::cast_precision_loss)]
fn share(n: usize, of: usize) -> f64 {
    n as f64 / of.max(1) as f64
}

/// Fills an index with `entries` vectors and runs `queries` lookups both ways.
pub fn measure(entries: usize, dimension: usize, queries: usize) -> Figures {
    let mut corpus = Corpus::new(12, dimension, entries / 100);
    let mut index = VectorIndex::new(dimension);
    // The stored vectors the paraphrases come from, spread over the index.
    let sources = queries.div_ceil(2);
    let stride = (entries / sources.max(1)).max(1);
    let mut kept = Vec::with_capacity(sources);
    let mut inserts = Vec::with_capacity(entries);
    for i in 0..entries {
        let v = corpus.member(i);
        let started = Instant::now();
        let sketch = Sketch::of(&v);
        let v: std::sync::Arc<[f32]> = v.into();
        index.insert(i as u64, i64::MAX, &v, sketch);
        inserts.push(started.elapsed());
        if i % stride == 0 && kept.len() < sources {
            kept.push(v);
        }
    }
    let insert_total: Duration = inserts.iter().sum();
    let insert_mean = insert_total / u32::try_from(entries.max(1)).unwrap_or(u32::MAX);
    let (_, insert_p99) = p50_p99(inserts);

    let (mut lookups, mut exacts) = (Vec::new(), Vec::new());
    let (mut agree, mut paraphrases, mut found, mut unrelated, mut found_unrelated) =
        (0, 0, 0, 0, 0);
    for k in 0..queries {
        let paraphrase = k % 2 == 0 && !kept.is_empty();
        let q = if paraphrase {
            let of = kept[(k / 2) % kept.len()].clone();
            corpus.paraphrase(&of)
        } else {
            corpus.member(k * 7919)
        };
        // Without a threshold, each answer is the best its method sees; at the threshold it
        // is that best if close enough, so one lookup each serves both comparisons.
        let started = Instant::now();
        let approximate = index.nearest(&q, -1.0, 0);
        lookups.push(started.elapsed());
        let started = Instant::now();
        let exact = index.nearest_exact(&q, -1.0, 0);
        exacts.push(started.elapsed());

        let id = |hit: Option<(u64, f32)>| hit.map(|h| h.0);
        let at_threshold = |hit: Option<(u64, f32)>| id(hit.filter(|h| h.1 >= THRESHOLD));
        agree += usize::from(at_threshold(approximate) == at_threshold(exact));
        if paraphrase {
            paraphrases += 1;
            found += usize::from(id(approximate) == id(exact));
        } else {
            unrelated += 1;
            found_unrelated += usize::from(id(approximate) == id(exact));
        }
    }
    Figures {
        entries,
        dimension,
        lookup: p50_p99(lookups),
        exact: p50_p99(exacts),
        insert: (insert_mean, insert_p99),
        recall_paraphrases: share(found, paraphrases),
        agreement: share(agree, queries),
        recall_unrelated: share(found_unrelated, unrelated),
    }
}

fn time(d: Duration) -> String {
    if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

/// The markdown rows of `figures`.
pub fn table(figures: &[Figures]) -> String {
    let mut out = format!(
        "### Semantic cache lookup (threshold {THRESHOLD}, {QUERIES} queries a size)\n\n\
         | entries × dims | lookup p50 | lookup p99 | exact scan p50 | exact scan p99 | insert mean | insert p99 | recall@1, paraphrases | same hit/miss as exact | recall@1, no near neighbour |\n\
         |---|---|---|---|---|---|---|---|---|---|\n"
    );
    for f in figures {
        out.push_str(&format!(
            "| {} × {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
            f.entries,
            f.dimension,
            time(f.lookup.0),
            time(f.lookup.1),
            time(f.exact.0),
            time(f.exact.1),
            time(f.insert.0),
            time(f.insert.1),
            f.recall_paraphrases,
            f.agreement,
            f.recall_unrelated,
        ));
    }
    out
}

/// The report at [`SIZES`] × [`DIMENSION`] (about a minute, most of it the exact scans).
pub fn report() -> String {
    let figures: Vec<Figures> = SIZES
        .iter()
        .map(|&n| measure(n, DIMENSION, QUERIES))
        .collect();
    table(&figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_produces_figures() {
        let f = measure(2_000, 64, 20);
        assert_eq!((f.entries, f.dimension), (2_000, 64));
        assert!(f.lookup.1 >= f.lookup.0 && f.insert.1 > Duration::ZERO);
        assert!((0.0..=1.0).contains(&f.agreement));
        assert!(table(&[f]).contains("| 2000 × 64 |"));
    }
}
