//! Session affinity: requests of one session (`x-bf-session-id`, or the session header coding
//! agents send) keep the key, and the place in the fallback chain, that last answered them, so
//! the provider's prompt cache keeps hitting. Bounded: at most `max_sessions` entries, each
//! forgotten after `ttl` without use (or the request's `x-bf-session-ttl`), least recently used
//! first when full.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

/// `client.session_affinity_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffinitySettings {
    /// Idle time after which a session is forgotten.
    pub ttl: Duration,
    /// 0 turns session affinity off.
    pub max_sessions: u64,
}

impl Default for AffinitySettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            max_sessions: 100_000,
        }
    }
}

/// Where a session's last answer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// Position in the request's model chain (0: the model asked for; n: its n-th fallback).
    pub position: usize,
    /// The configured provider and key that answered.
    pub provider: Arc<str>,
    pub key: Arc<str>,
    ttl: Duration,
}

/// Sessions by a keyed hash of (session id, virtual key, model asked for): one session's
/// models each keep their own place, and one tenant's session id never steers another's.
pub struct Affinity {
    sessions: Option<Cache<u64, Sticky>>,
    hasher: std::collections::hash_map::RandomState,
    default_ttl: Duration,
}

struct IdleTtl;

impl Expiry<u64, Sticky> for IdleTtl {
    fn expire_after_create(&self, _: &u64, v: &Sticky, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_read(
        &self,
        _: &u64,
        v: &Sticky,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
    fn expire_after_update(
        &self,
        _: &u64,
        v: &Sticky,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// The longest `x-bf-session-ttl` honoured.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Affinity {
    pub fn new(settings: AffinitySettings) -> Self {
        Self {
            sessions: (settings.max_sessions > 0).then(|| {
                Cache::builder()
                    .max_capacity(settings.max_sessions)
                    .expire_after(IdleTtl)
                    .build()
            }),
            hasher: std::collections::hash_map::RandomState::new(),
            default_ttl: settings.ttl,
        }
    }

    pub fn settings(&self) -> AffinitySettings {
        AffinitySettings {
            ttl: self.default_ttl,
            max_sessions: self
                .sessions
                .as_ref()
                .and_then(|c| c.policy().max_capacity())
                .unwrap_or(0),
        }
    }

    fn slot(&self, session: &str, virtual_key: Option<&str>, model: &str) -> u64 {
        self.hasher.hash_one((session, virtual_key, model))
    }

    pub fn get(&self, session: &str, virtual_key: Option<&str>, model: &str) -> Option<Sticky> {
        self.sessions
            .as_ref()?
            .get(&self.slot(session, virtual_key, model))
    }

    /// Remembers who answered; `ttl` is the request's `x-bf-session-ttl`, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn set(
        &self,
        session: &str,
        virtual_key: Option<&str>,
        model: &str,
        position: usize,
        provider: &str,
        key: &str,
        ttl: Option<Duration>,
    ) {
        let Some(cache) = &self.sessions else { return };
        let slot = self.slot(session, virtual_key, model);
        if let Some(old) = cache.get(&slot)
            && old.position == position
            && &*old.provider == provider
            && &*old.key == key
            && ttl.is_none_or(|t| t == old.ttl)
        {
            // Reading it refreshed its idle time; nothing else changed.
            return;
        }
        cache.insert(
            slot,
            Sticky {
                position,
                provider: Arc::from(provider),
                key: Arc::from(key),
                ttl: ttl.unwrap_or(self.default_ttl).min(MAX_TTL),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.sessions.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_session_tenant_and_model() {
        let a = Affinity::new(AffinitySettings::default());
        a.set("s1", None, "m", 1, "openai", "k2", None);
        let got = a.get("s1", None, "m").unwrap();
        assert_eq!(
            (got.position, &*got.provider, &*got.key),
            (1, "openai", "k2")
        );
        assert!(a.get("s1", Some("vk"), "m").is_none());
        assert!(a.get("s1", None, "other").is_none());
        assert!(a.get("s2", None, "m").is_none());
    }

    #[test]
    fn bounded_and_expiring() {
        let a = Affinity::new(AffinitySettings {
            ttl: Duration::from_millis(50),
            max_sessions: 100,
        });
        for i in 0..1000 {
            a.set(&format!("s{i}"), None, "m", 0, "p", "k", None);
        }
        assert!(a.len() <= 100, "{}", a.len());
        a.set("short", None, "m", 0, "p", "k", None);
        a.set(
            "long",
            None,
            "m",
            0,
            "p",
            "k",
            Some(Duration::from_secs(60)),
        );
        std::thread::sleep(Duration::from_millis(120));
        assert!(a.get("short", None, "m").is_none());
        assert!(a.get("long", None, "m").is_some());
        let off = Affinity::new(AffinitySettings {
            max_sessions: 0,
            ..AffinitySettings::default()
        });
        off.set("s", None, "m", 0, "p", "k", None);
        assert!(off.get("s", None, "m").is_none());
    }
}
