//! The entries: stored answers by direct key, their vectors by scope, their lifetimes on a
//! clock that tests can move, and a journal that hears of every change so that a store can
//! keep a copy (the index is rebuilt from it at start).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::index::{Sketch, VectorIndex};
use crate::request::{Digest, hex};

/// One stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `ce_` and the first half of the direct key's hex: stable for a request.
    pub id: String,
    pub cache_key: String,
    pub direct: Digest,
    pub scope: Digest,
    /// The unit vector of the embedded text; `None` in direct-only mode or when embedding
    /// failed. Shared with the scope's index.
    pub vector: Option<Arc<[f32]>>,
    /// `body` is a stream's events (`text/event-stream`), not a JSON message.
    pub stream: bool,
    /// The answer exactly as the client got it.
    pub body: Bytes,
    /// Who answered it first.
    pub provider: String,
    pub model: String,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl Entry {
    pub fn id_for(direct: &Digest) -> String {
        let mut id = hex(direct);
        id.truncate(32);
        id.insert_str(0, "ce_");
        id
    }

    /// What the entry holds in memory, roughly: answer, vector and fixed parts.
    pub fn size(&self) -> u64 {
        let vector = self.vector.as_ref().map_or(0, |v| v.len() * 4);
        (self.body.len() + vector + self.cache_key.len() + self.model.len() + 256) as u64
    }
}

/// How a lookup matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitKind {
    Direct,
    Semantic,
}

impl HitKind {
    /// The name in response headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Semantic => "semantic",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: Arc<Entry>,
    pub kind: HitKind,
    /// 1 for a direct hit.
    pub similarity: f32,
}

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What was taken out of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Id(String),
    Key(String),
    All,
}

/// Hears of every change, without blocking (a store queues them).
pub trait Journal: Send + Sync {
    fn stored(&self, entry: &Arc<Entry>);
    fn removed(&self, what: &Removed);
}

/// Why an answer was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// The cache holds its configured maximum.
    Full,
}

/// Entries and their index, shared by every request.
pub struct Cache {
    inner: RwLock<Inner>,
    clock: Arc<dyn Clock>,
    journal: OnceLock<Arc<dyn Journal>>,
}

#[derive(Default)]
struct Inner {
    /// Slot numbers: the index refers to entries by them.
    next: u64,
    entries: HashMap<u64, Arc<Entry>>,
    ids: HashMap<String, u64>,
    direct: HashMap<Digest, u64>,
    scopes: HashMap<Digest, VectorIndex>,
    bytes: u64,
}

impl Inner {
    fn remove_slot(&mut self, slot: u64, unindex: bool) -> Option<Arc<Entry>> {
        let entry = self.entries.remove(&slot)?;
        self.ids.remove(&entry.id);
        self.direct.remove(&entry.direct);
        self.bytes = self.bytes.saturating_sub(entry.size());
        if unindex && entry.vector.is_some() {
            self.unindex(&entry.scope, |owner| owner != slot);
        }
        Some(entry)
    }

    fn unindex(&mut self, scope: &Digest, keep: impl Fn(u64) -> bool) {
        if let Some(ix) = self.scopes.get_mut(scope) {
            ix.retain(|owner, _| keep(owner));
            if ix.is_empty() {
                self.scopes.remove(scope);
            }
        }
    }

    /// Removes the entries `doomed` picks, each index visited once.
    fn remove_where(&mut self, doomed: impl Fn(&Entry) -> bool) -> usize {
        let slots: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| doomed(e))
            .map(|(s, _)| *s)
            .collect();
        for &slot in &slots {
            self.remove_slot(slot, false);
        }
        let entries = &self.entries;
        self.scopes.retain(|_, ix| {
            ix.retain(|owner, _| entries.contains_key(&owner));
            !ix.is_empty()
        });
        slots.len()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Cache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: RwLock::default(),
            clock,
            journal: OnceLock::new(),
        }
    }

    /// Where changes are reported from now on (set once).
    pub fn set_journal(&self, journal: Arc<dyn Journal>) {
        let _ = self.journal.set(journal);
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry stored under `direct`.
    pub fn direct(&self, direct: &Digest) -> Option<Hit> {
        let now = self.now_ms();
        let inner = self.read();
        let entry = inner.entries.get(inner.direct.get(direct)?)?;
        (entry.expires_ms > now).then(|| Hit {
            entry: Arc::clone(entry),
            kind: HitKind::Direct,
            similarity: 1.0,
        })
    }

    /// The live entry of `scope` whose vector is closest to `unit`, if at least `threshold`.
    pub fn nearest(&self, scope: &Digest, unit: &[f32], threshold: f32) -> Option<Hit> {
        let now = self.now_ms();
        let inner = self.read();
        let (slot, similarity) = inner.scopes.get(scope)?.nearest(unit, threshold, now)?;
        Some(Hit {
            entry: Arc::clone(inner.entries.get(&slot)?),
            kind: HitKind::Semantic,
            similarity,
        })
    }

    /// Stores `entry`, replacing one with the same direct key; refused when the cache would
    /// hold more than `max_bytes`.
    pub fn insert(&self, entry: Entry, max_bytes: u64) -> Result<Arc<Entry>, NotStored> {
        let entry = self.put(entry, max_bytes)?;
        if let Some(j) = self.journal.get() {
            j.stored(&entry);
        }
        Ok(entry)
    }

    /// Entries read back from a store, or stored by another instance sharing one (not
    /// journaled again); expired ones are skipped. Returns how many were taken.
    pub fn restore(&self, entries: impl IntoIterator<Item = Entry>, max_bytes: u64) -> usize {
        let now = self.now_ms();
        entries
            .into_iter()
            .filter(|e| e.expires_ms > now)
            .filter_map(|e| self.put(e, max_bytes).ok())
            .count()
    }

    fn put(&self, entry: Entry, max_bytes: u64) -> Result<Arc<Entry>, NotStored> {
        // Computed before taking the lock, which lookups share.
        let sketch = entry.vector.as_deref().map(Sketch::of);
        let mut inner = self.write();
        if let Some(&old) = inner.direct.get(&entry.direct) {
            inner.remove_slot(old, true);
        }
        if inner.bytes + entry.size() > max_bytes {
            return Err(NotStored::Full);
        }
        let slot = inner.next;
        inner.next += 1;
        let mut entry = entry;
        if let (Some(v), Some(sketch)) = (&entry.vector, sketch) {
            let ix = inner
                .scopes
                .entry(entry.scope)
                .or_insert_with(|| VectorIndex::new(v.len()));
            // A vector of another length (the dimension changed) leaves the entry direct-only.
            if !ix.insert(slot, entry.expires_ms, v, sketch) {
                entry.vector = None;
            }
        }
        let entry = Arc::new(entry);
        inner.bytes += entry.size();
        inner.ids.insert(entry.id.clone(), slot);
        inner.direct.insert(entry.direct, slot);
        inner.entries.insert(slot, Arc::clone(&entry));
        Ok(entry)
    }

    /// Removes the entry `id`; whether there was one.
    pub fn remove_id(&self, id: &str) -> bool {
        let what = Removed::Id(id.to_owned());
        let removed = self.forget(&what) > 0;
        if removed {
            self.journal(&what);
        }
        removed
    }

    /// Removes every entry of `cache_key`; how many there were.
    pub fn remove_key(&self, cache_key: &str) -> usize {
        let what = Removed::Key(cache_key.to_owned());
        let n = self.forget(&what);
        self.journal(&what);
        n
    }

    /// Removes everything; how many entries there were.
    pub fn clear(&self) -> usize {
        let n = self.forget(&Removed::All);
        self.journal(&Removed::All);
        n
    }

    /// Removes what `what` names without telling the journal: a removal another instance
    /// sharing the store made (and journaled). How many entries went.
    pub fn forget(&self, what: &Removed) -> usize {
        let mut inner = self.write();
        match what {
            Removed::Id(id) => match inner.ids.get(id).copied() {
                Some(slot) => usize::from(inner.remove_slot(slot, true).is_some()),
                None => 0,
            },
            Removed::Key(key) => inner.remove_where(|e| e.cache_key == *key),
            Removed::All => {
                let n = inner.entries.len();
                *inner = Inner {
                    next: inner.next,
                    ..Inner::default()
                };
                n
            }
        }
    }

    /// After a shared store was read whole: drops, without journaling, the entries it no
    /// longer holds (not among `held` ids) that were created before `since_ms`, when the
    /// reading began (a newer one may not have reached the store yet). How many went.
    pub fn forget_all_but(&self, held: &HashSet<String>, since_ms: i64) -> usize {
        self.write()
            .remove_where(|e| e.created_ms < since_ms && !held.contains(&e.id))
    }

    /// Drops expired entries from memory (a store prunes its own copy by their expiry).
    pub fn purge_expired(&self) -> usize {
        let now = self.now_ms();
        self.write().remove_where(|e| e.expires_ms <= now)
    }

    /// Entries held and their size in bytes.
    pub fn stats(&self) -> (usize, u64) {
        let inner = self.read();
        (inner.entries.len(), inner.bytes)
    }

    fn journal(&self, what: &Removed) {
        if let Some(j) = self.journal.get() {
            j.removed(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::normalized;
    use std::sync::Mutex;

    fn entry(n: u8, key: &str, vector: Option<&[f32]>, expires_ms: i64) -> Entry {
        let direct = [n; 32];
        Entry {
            id: Entry::id_for(&direct),
            cache_key: key.into(),
            direct,
            scope: [0; 32],
            vector: vector.and_then(normalized).map(Arc::from),
            stream: false,
            body: Bytes::from(format!("answer {n}")),
            provider: "p".into(),
            model: "m".into(),
            created_ms: 0,
            expires_ms,
        }
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl Journal for Log {
        fn stored(&self, e: &Arc<Entry>) {
            self.0.lock().unwrap().push(format!("stored {}", e.id));
        }
        fn removed(&self, what: &Removed) {
            self.0.lock().unwrap().push(format!("removed {what:?}"));
        }
    }

    #[test]
    fn entries_answer_until_they_expire_on_the_clock() {
        let clock = Arc::new(ManualClock::new(1_000));
        let cache = Cache::new(clock.clone());
        cache
            .insert(entry(1, "k", Some(&[1.0, 0.0]), 2_000), u64::MAX)
            .unwrap();
        assert!(cache.direct(&[1; 32]).is_some());
        let q = normalized(&[0.9, 0.1]).unwrap();
        let hit = cache.nearest(&[0; 32], &q, 0.9).unwrap();
        assert_eq!(
            (hit.kind, hit.entry.body.as_ref()),
            (HitKind::Semantic, &b"answer 1"[..])
        );
        assert!(cache.nearest(&[1; 32], &q, 0.9).is_none(), "another scope");
        clock.advance(Duration::from_secs(1));
        assert!(cache.direct(&[1; 32]).is_none());
        assert!(cache.nearest(&[0; 32], &q, 0.9).is_none());
        assert_eq!(cache.stats().0, 1, "still held until purged");
        assert_eq!(cache.purge_expired(), 1);
        assert_eq!(cache.stats(), (0, 0));
    }

    #[test]
    fn removal_by_id_key_and_all_reaches_the_journal() {
        let cache = Cache::default();
        let log = Arc::new(Log::default());
        cache.set_journal(log.clone());
        let far = i64::MAX;
        let a = cache
            .insert(entry(1, "k1", Some(&[1.0, 0.0]), far), u64::MAX)
            .unwrap();
        cache
            .insert(entry(2, "k1", Some(&[0.0, 1.0]), far), u64::MAX)
            .unwrap();
        cache.insert(entry(3, "k2", None, far), u64::MAX).unwrap();
        assert!(cache.remove_id(&a.id));
        assert!(!cache.remove_id(&a.id));
        assert_eq!(cache.remove_key("k1"), 1);
        assert!(cache.nearest(&[0; 32], &[0.0, 1.0], 0.5).is_none());
        assert_eq!(cache.clear(), 1);
        let log = log.0.lock().unwrap();
        assert_eq!(log.len(), 6);
        assert_eq!(log[3], format!("removed Id({:?})", a.id));
        assert_eq!(log[5], "removed All");
    }

    #[test]
    fn changes_of_other_instances_are_not_journaled_again() {
        let cache = Cache::new(Arc::new(ManualClock::new(1_000)));
        let log = Arc::new(Log::default());
        cache.set_journal(log.clone());
        let far = i64::MAX;
        let mut old = entry(1, "k1", Some(&[1.0, 0.0]), far);
        old.created_ms = 500;
        let mut new = entry(2, "k1", None, far);
        new.created_ms = 2_000;
        let gone = entry(3, "k2", None, far);
        assert_eq!(cache.restore([old.clone(), new.clone(), gone], u64::MAX), 3);
        assert_eq!(cache.forget(&Removed::Key("k2".into())), 1);
        assert_eq!(cache.forget(&Removed::Id(new.id.clone())), 1);
        cache.restore([new.clone()], u64::MAX);
        // Read whole at 1,500 holding neither: the older entry goes, the newer stays.
        assert_eq!(cache.forget_all_but(&HashSet::new(), 1_500), 1);
        assert!(cache.direct(&old.direct).is_none());
        assert!(cache.nearest(&[0; 32], &[1.0, 0.0], 0.5).is_none());
        assert!(cache.direct(&new.direct).is_some());
        let held = HashSet::from([new.id.clone()]);
        assert_eq!(cache.forget_all_but(&held, 3_000), 0);
        assert_eq!(cache.forget(&Removed::All), 1);
        assert!(log.0.lock().unwrap().is_empty(), "nothing journaled");
    }

    #[test]
    fn the_size_bound_refuses_and_a_same_key_answer_replaces() {
        let cache = Cache::default();
        let e = entry(1, "k", None, i64::MAX);
        let size = e.size();
        cache.insert(e.clone(), size).unwrap();
        cache.insert(e.clone(), size).unwrap();
        assert_eq!(cache.stats(), (1, size));
        assert_eq!(
            cache.insert(entry(2, "k", None, i64::MAX), size),
            Err(NotStored::Full)
        );
        assert_eq!(
            cache.restore([entry(3, "k", None, 1)], u64::MAX),
            0,
            "expired"
        );
    }
}
