//! Circuit breaking per key: after `failure_threshold` consecutive failures a key is skipped
//! for a cool-down; then one request probes it and its outcome closes the circuit or opens it
//! for another cool-down.
//!
//! The state is two atomics per key, read on every key choice without a lock. An open circuit
//! is a deadline (`open_until`); "half-open" is that deadline having passed. The request that
//! moves the deadline forward by one cool-down with a compare-and-swap is the probe, so exactly
//! one request probes per cool-down, and a probe whose client left (no verdict ever comes)
//! simply lets the next cool-down's probe try again.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a key's circuit opens and for how long (`providers.<name>.circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Consecutive failures that open the circuit; 0 turns circuit breaking off.
    pub failure_threshold: u32,
    pub cooldown: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// One key's circuit.
#[derive(Debug, Default)]
pub struct KeyHealth {
    consecutive_failures: AtomicU32,
    /// Milliseconds since [`epoch`] until which the circuit is open; 0: closed.
    open_until: AtomicU64,
}

/// What a failure or a success did to the circuit, for the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

impl KeyHealth {
    /// Whether the circuit is closed (the key is healthy).
    pub fn is_closed(&self) -> bool {
        self.open_until.load(Ordering::Acquire) == 0
    }

    /// Claims the probe of a circuit whose cool-down is over: true for exactly one caller per
    /// cool-down. The circuit stays open for everyone else until the probe's verdict.
    pub fn claim_probe(&self, now: u64, settings: &CircuitSettings) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0
            && now >= until
            && self
                .open_until
                .compare_exchange(
                    until,
                    now + millis(settings.cooldown),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    pub fn success(&self) -> Transition {
        self.consecutive_failures.store(0, Ordering::Release);
        if self.open_until.swap(0, Ordering::AcqRel) == 0 {
            Transition::None
        } else {
            Transition::Closed
        }
    }

    pub fn failure(&self, now: u64, settings: &CircuitSettings) -> Transition {
        if settings.failure_threshold == 0 {
            return Transition::None;
        }
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < settings.failure_threshold {
            return Transition::None;
        }
        // A failed probe (or a failure while open) pushes the deadline out again.
        let previous = self
            .open_until
            .swap(now + millis(settings.cooldown).max(1), Ordering::AcqRel);
        if previous == 0 {
            Transition::Opened
        } else {
            Transition::None
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Acquire)
    }
}

/// Says in the log and the metrics that `key` of `provider` opened or closed:
/// `heimdall_key_circuit_open{provider,key}` (1 open, 0 closed) and
/// `heimdall_key_circuit_transitions_total{provider,key,state}`.
pub fn report(
    transition: Transition,
    provider: &str,
    key: &str,
    health: &KeyHealth,
    settings: &CircuitSettings,
    cause: &dyn std::fmt::Display,
) {
    let state = match transition {
        Transition::None => return,
        Transition::Opened => {
            tracing::warn!(
                provider,
                key,
                failures = health.consecutive_failures(),
                cooldown_s = settings.cooldown.as_secs(),
                error = %cause,
                "key circuit opened: skipped until a probe succeeds"
            );
            "open"
        }
        Transition::Closed => {
            tracing::info!(provider, key, "key circuit closed: the probe succeeded");
            "closed"
        }
    };
    let labels = [("provider", provider.to_owned()), ("key", key.to_owned())];
    metrics::gauge!("heimdall_key_circuit_open", &labels).set(if state == "open" {
        1.0
    } else {
        0.0
    });
    metrics::counter!(
        "heimdall_key_circuit_transitions_total",
        &[
            ("provider", provider.to_owned()),
            ("key", key.to_owned()),
            ("state", state.to_owned()),
        ]
    )
    .increment(1);
}

/// Milliseconds on the process's monotonic clock (never 0, which means "closed").
pub fn now_ms() -> u64 {
    millis(epoch().elapsed()) + 1
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: CircuitSettings = CircuitSettings {
        failure_threshold: 3,
        cooldown: Duration::from_millis(1000),
    };

    #[test]
    fn opens_after_consecutive_failures_and_one_probe_decides() {
        let h = KeyHealth::default();
        assert_eq!(h.failure(10, &S), Transition::None);
        assert_eq!(h.failure(11, &S), Transition::None);
        // A success in between starts the count again.
        assert_eq!(h.success(), Transition::None);
        assert_eq!(h.failure(12, &S), Transition::None);
        assert_eq!(h.failure(13, &S), Transition::None);
        assert_eq!(h.failure(14, &S), Transition::Opened);
        assert!(!h.is_closed());
        assert!(!h.claim_probe(500, &S), "no probe during the cool-down");
        assert!(h.claim_probe(1014, &S));
        assert!(!h.claim_probe(1014, &S), "one probe per cool-down");
        assert!(!h.claim_probe(1500, &S));
        // The probe failed: open for another cool-down.
        assert_eq!(h.failure(1600, &S), Transition::None);
        assert!(!h.claim_probe(2500, &S));
        assert!(h.claim_probe(2600, &S));
        assert_eq!(h.success(), Transition::Closed);
        assert!(h.is_closed());
        assert!(!h.claim_probe(5000, &S), "a closed circuit has no probe");
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_cool_down_probe() {
        let h = KeyHealth::default();
        for t in 0..3 {
            h.failure(t, &S);
        }
        assert!(h.claim_probe(1002, &S));
        // No verdict ever came; one cool-down later another request probes.
        assert!(!h.claim_probe(1500, &S));
        assert!(h.claim_probe(2002, &S));
    }

    #[test]
    fn transitions_reach_the_metrics() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let h = KeyHealth::default();
            report(Transition::Opened, "openai", "k1", &h, &S, &"boom");
            report(Transition::Closed, "openai", "k1", &h, &S, &"");
            report(Transition::None, "openai", "k1", &h, &S, &"");
        });
        let values: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key.key().name().to_owned(), value))
            .collect();
        assert!(values.contains(&(
            "heimdall_key_circuit_open".to_owned(),
            DebugValue::Gauge(0.0.into())
        )));
        let transitions = values
            .iter()
            .filter(|(name, _)| name == "heimdall_key_circuit_transitions_total")
            .count();
        assert_eq!(transitions, 2, "{values:?}");
    }

    #[test]
    fn threshold_zero_never_opens() {
        let off = CircuitSettings {
            failure_threshold: 0,
            ..S
        };
        let h = KeyHealth::default();
        for t in 0..100 {
            assert_eq!(h.failure(t, &off), Transition::None);
        }
        assert!(h.is_closed());
    }
}
