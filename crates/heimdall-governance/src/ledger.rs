//! Where budgets and rate limits are counted: one trait, kept in memory by one instance or in
//! Redis by many.
//!
//! A counter, named by its key, holds the start of its window, what was spent in it (`used`)
//! and what requests in flight have reserved. Admission reserves on every counter a request
//! draws on, all or none, in one step; settlement replaces each reservation with what the
//! request really cost. The same rules, in one place for each engine:
//!
//! - Before a counter is read, its window is brought up to date: a rolling window that has
//!   run its length, or an aligned one whose start moved on, starts over with nothing used
//!   and nothing reserved (an aligned start never moves back, so instances whose clocks
//!   disagree a little do not reset each other).
//! - A draw that must fit whole (a request of a request limit) is refused when `used +
//!   reserved + amount` exceeds the maximum. Other draws (dollars, tokens) are refused only
//!   when nothing remains, and otherwise reserve their amount capped by what remains, so a
//!   request is never refused for a large `max_tokens` while a budget still has room; what
//!   such a request may overspend is bounded by its cost above its reservation.
//! - Settling a hold made in the counter's current window gives back its reservation and
//!   adds the actual amount; a hold from a window since ended adds the actual amount to the
//!   current one (its reservation went with the old window).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::window::Span;

/// Amounts within this of a limit count as at it: dollar sums are floating point.
const EPSILON: f64 = 1e-9;

/// One counter a request draws on.
#[derive(Debug, Clone)]
pub struct Draw {
    pub key: Arc<str>,
    pub max: f64,
    pub span: Span,
    pub amount: f64,
    /// The amount must fit whole (a request slot); otherwise what remains is enough.
    pub whole: bool,
}

/// What a granted draw reserved, in the window that began at `start_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub key: Arc<str>,
    pub start_ms: i64,
    pub reserved: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reservation {
    /// One hold per draw, in the draws' order.
    Granted(Vec<Hold>),
    /// Draw `index` did not fit; its window began at `start_ms`. Nothing was reserved.
    Refused { index: usize, start_ms: i64 },
}

/// A hold replaced by what was really spent.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub hold: Hold,
    pub span: Span,
    pub actual: f64,
}

/// A counter as it stands; a counter never used reads as empty, with no window yet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub start_ms: Option<i64>,
    pub used: f64,
    pub reserved: f64,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LedgerError(pub String);

pub trait Ledger: Send + Sync {
    /// Reserves every draw or none, at `now_ms`.
    fn reserve<'a>(
        &'a self,
        now_ms: i64,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>>;

    /// Settles holds; the future owns what it needs, so that it can run detached.
    fn settle(
        &self,
        now_ms: i64,
        settlements: Vec<Settlement>,
    ) -> BoxFuture<'static, Result<(), LedgerError>>;

    /// Reads counters as they stand at `now_ms` (windows brought up to date, not written).
    fn read<'a>(
        &'a self,
        now_ms: i64,
        counters: &'a [(Arc<str>, Span)],
    ) -> BoxFuture<'a, Result<Vec<Reading>, LedgerError>>;

    /// `"memory"` or `"redis"`.
    fn engine(&self) -> &'static str;
}

/// A counter's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    pub start_ms: i64,
    pub used: f64,
    pub reserved: f64,
}

impl Tally {
    fn new(span: Span, now_ms: i64) -> Self {
        Self {
            start_ms: match span {
                Span::Rolling { .. } => now_ms,
                Span::Aligned { start_ms } => start_ms,
            },
            used: 0.0,
            reserved: 0.0,
        }
    }

    /// Starts the window over when it has ended.
    fn bring_up_to_date(&mut self, span: Span, now_ms: i64) {
        let ended = match span {
            Span::Rolling { length_ms } => now_ms >= self.start_ms.saturating_add(length_ms),
            Span::Aligned { start_ms } => start_ms > self.start_ms,
        };
        if ended {
            *self = Self::new(span, now_ms);
        }
    }

    /// What `draw` would reserve, or `None` when it does not fit.
    fn take(&self, draw: &Draw) -> Option<f64> {
        let room = draw.max - self.used - self.reserved;
        if draw.whole {
            (draw.amount <= room + EPSILON).then_some(draw.amount)
        } else {
            (room > EPSILON).then(|| draw.amount.min(room).max(0.0))
        }
    }

    fn settle(&mut self, s: &Settlement) {
        if s.hold.start_ms == self.start_ms {
            self.reserved = (self.reserved - s.hold.reserved).max(0.0);
        }
        self.used += s.actual;
    }
}

/// Counters of one instance, behind one lock: reserving on several counters at once is then
/// atomic by construction, and each step is a few map lookups.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    tallies: Mutex<HashMap<Arc<str>, Tally>>,
}

impl MemoryLedger {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Arc<str>, Tally>) -> T) -> T {
        // A panic while holding the lock cannot leave a tally half-written (each is one
        // assignment), so a poisoned lock is used as it is.
        let mut tallies = match self.tallies.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut tallies)
    }

    /// What was spent per counter (reservations left out: they belong to requests of this
    /// process only), to persist.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Tally)> {
        self.with(|t| {
            t.iter()
                .map(|(k, v)| {
                    (
                        Arc::clone(k),
                        Tally {
                            reserved: 0.0,
                            ..*v
                        },
                    )
                })
                .collect()
        })
    }

    /// Takes back counters persisted by [`MemoryLedger::snapshot`].
    pub fn restore(&self, saved: impl IntoIterator<Item = (Arc<str>, Tally)>) {
        self.with(|t| t.extend(saved));
    }

    fn reserve_now(&self, now_ms: i64, draws: &[Draw]) -> Reservation {
        self.with(|tallies| {
            let mut takes = Vec::with_capacity(draws.len());
            for (index, draw) in draws.iter().enumerate() {
                let tally = tallies
                    .entry(Arc::clone(&draw.key))
                    .or_insert_with(|| Tally::new(draw.span, now_ms));
                tally.bring_up_to_date(draw.span, now_ms);
                match tally.take(draw) {
                    Some(take) => takes.push(take),
                    None => {
                        return Reservation::Refused {
                            index,
                            start_ms: tally.start_ms,
                        };
                    }
                }
            }
            let holds = draws
                .iter()
                .zip(takes)
                .map(|(draw, take)| {
                    let tally = tallies
                        .entry(Arc::clone(&draw.key))
                        .or_insert_with(|| Tally::new(draw.span, now_ms));
                    tally.reserved += take;
                    Hold {
                        key: Arc::clone(&draw.key),
                        start_ms: tally.start_ms,
                        reserved: take,
                    }
                })
                .collect();
            Reservation::Granted(holds)
        })
    }

    pub(crate) fn settle_now(&self, now_ms: i64, settlements: &[Settlement]) {
        self.with(|tallies| {
            for s in settlements {
                let tally = tallies
                    .entry(Arc::clone(&s.hold.key))
                    .or_insert_with(|| Tally::new(s.span, now_ms));
                tally.bring_up_to_date(s.span, now_ms);
                tally.settle(s);
            }
        });
    }

    fn read_now(&self, now_ms: i64, counters: &[(Arc<str>, Span)]) -> Vec<Reading> {
        self.with(|tallies| {
            counters
                .iter()
                .map(|(key, span)| match tallies.get(key) {
                    None => Reading::default(),
                    Some(t) => {
                        let mut t = *t;
                        t.bring_up_to_date(*span, now_ms);
                        Reading {
                            start_ms: Some(t.start_ms),
                            used: t.used,
                            reserved: t.reserved,
                        }
                    }
                })
                .collect()
        })
    }
}

impl Ledger for MemoryLedger {
    fn reserve<'a>(
        &'a self,
        now_ms: i64,
        draws: &'a [Draw],
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>> {
        Box::pin(std::future::ready(Ok(self.reserve_now(now_ms, draws))))
    }

    fn settle(
        &self,
        now_ms: i64,
        settlements: Vec<Settlement>,
    ) -> BoxFuture<'static, Result<(), LedgerError>> {
        self.settle_now(now_ms, &settlements);
        Box::pin(std::future::ready(Ok(())))
    }

    fn read<'a>(
        &'a self,
        now_ms: i64,
        counters: &'a [(Arc<str>, Span)],
    ) -> BoxFuture<'a, Result<Vec<Reading>, LedgerError>> {
        Box::pin(std::future::ready(Ok(self.read_now(now_ms, counters))))
    }

    fn engine(&self) -> &'static str {
        "memory"
    }
}

/// The rules above as checks any ledger must pass; run against each engine (keys under
/// `prefix`, so that runs against a shared server do not meet).
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn draw(key: &str, max: f64, span: Span, amount: f64, whole: bool) -> Draw {
        Draw {
            key: key.into(),
            max,
            span,
            amount,
            whole,
        }
    }

    const MINUTE: Span = Span::Rolling { length_ms: 60_000 };

    fn granted(r: Reservation) -> Vec<Hold> {
        match r {
            Reservation::Granted(h) => h,
            Reservation::Refused { index, .. } => panic!("refused at draw {index}"),
        }
    }

    /// Whole draws fill a request limit exactly; a refusal reserves nothing anywhere.
    pub async fn all_or_nothing(ledger: &dyn Ledger, prefix: &str) {
        let requests = format!("{prefix}req");
        let budget = format!("{prefix}usd");
        let draws = [
            draw(&budget, 10.0, MINUTE, 1.0, false),
            draw(&requests, 2.0, MINUTE, 1.0, true),
        ];
        for _ in 0..2 {
            granted(ledger.reserve(1_000, &draws).await.unwrap());
        }
        let third = ledger.reserve(1_000, &draws).await.unwrap();
        assert!(
            matches!(
                third,
                Reservation::Refused {
                    index: 1,
                    start_ms: 1_000
                }
            ),
            "{third:?}"
        );
        let counters = [(budget.as_str().into(), MINUTE)];
        let r = ledger.read(1_000, &counters).await.unwrap();
        assert!((r[0].reserved - 2.0).abs() < 1e-9, "{r:?}");
    }

    /// Partial draws are capped by what remains and refused only at nothing.
    pub async fn capped_by_what_remains(ledger: &dyn Ledger, prefix: &str) {
        let budget = format!("{prefix}usd");
        let d = [draw(&budget, 1.0, MINUTE, 0.75, false)];
        let first = granted(ledger.reserve(0, &d).await.unwrap());
        let second = granted(ledger.reserve(0, &d).await.unwrap());
        assert!((first[0].reserved - 0.75).abs() < 1e-9);
        assert!((second[0].reserved - 0.25).abs() < 1e-9, "{second:?}");
        assert!(matches!(
            ledger.reserve(0, &d).await.unwrap(),
            Reservation::Refused { index: 0, .. }
        ));
        // Settled below the reservation: the difference is free again.
        ledger
            .settle(
                10,
                vec![Settlement {
                    hold: first[0].clone(),
                    span: MINUTE,
                    actual: 0.1,
                }],
            )
            .await
            .unwrap();
        let again = granted(ledger.reserve(20, &d).await.unwrap());
        assert!((again[0].reserved - 0.65).abs() < 1e-9, "{again:?}");
        let r = ledger
            .read(20, &[(budget.as_str().into(), MINUTE)])
            .await
            .unwrap();
        assert!((r[0].used - 0.1).abs() < 1e-9 && (r[0].reserved - 0.9).abs() < 1e-9);
    }

    /// Windows start over; a hold from an ended window charges the current one.
    pub async fn windows_start_over(ledger: &dyn Ledger, prefix: &str) {
        let rolling = format!("{prefix}rolling");
        let d = [draw(&rolling, 1.0, MINUTE, 1.0, true)];
        let hold = granted(ledger.reserve(0, &d).await.unwrap());
        assert!(matches!(
            ledger.reserve(59_999, &d).await.unwrap(),
            Reservation::Refused { .. }
        ));
        let next = granted(ledger.reserve(60_000, &d).await.unwrap());
        assert_eq!(next[0].start_ms, 60_000);
        ledger
            .settle(
                60_001,
                vec![Settlement {
                    hold: hold[0].clone(),
                    span: MINUTE,
                    actual: 1.0,
                }],
            )
            .await
            .unwrap();
        let r = ledger
            .read(60_002, &[(rolling.as_str().into(), MINUTE)])
            .await
            .unwrap();
        assert_eq!(
            r[0],
            Reading {
                start_ms: Some(60_000),
                used: 1.0,
                reserved: 1.0
            }
        );
        // Aligned: a later start resets, an earlier one (a slow clock) does not.
        let aligned = format!("{prefix}aligned");
        let at = |start_ms| [draw(&aligned, 5.0, Span::Aligned { start_ms }, 5.0, false)];
        granted(ledger.reserve(3_000_500, &at(3_000_000)).await.unwrap());
        assert!(matches!(
            ledger.reserve(2_999_000, &at(2_000_000)).await.unwrap(),
            Reservation::Refused {
                start_ms: 3_000_000,
                ..
            }
        ));
        granted(ledger.reserve(4_000_500, &at(4_000_000)).await.unwrap());
    }

    /// Reading a counter never used gives nothing, and reading does not start a window.
    pub async fn reading_is_side_effect_free(ledger: &dyn Ledger, prefix: &str) {
        let key: Arc<str> = format!("{prefix}unused").into();
        let r = ledger.read(5, &[(Arc::clone(&key), MINUTE)]).await.unwrap();
        assert_eq!(r[0], Reading::default());
        let r = ledger.read(5, &[(key, MINUTE)]).await.unwrap();
        assert_eq!(r[0].start_ms, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> MemoryLedger {
        MemoryLedger::default()
    }

    #[tokio::test]
    async fn memory_ledger_follows_the_rules() {
        conformance::all_or_nothing(&ledger(), "t:").await;
        conformance::capped_by_what_remains(&ledger(), "t:").await;
        conformance::windows_start_over(&ledger(), "t:").await;
        conformance::reading_is_side_effect_free(&ledger(), "t:").await;
    }

    #[test]
    fn snapshots_keep_what_was_spent_only() {
        let l = ledger();
        let span = Span::Rolling { length_ms: 1000 };
        let hold = match l.reserve_now(
            0,
            &[Draw {
                key: "k".into(),
                max: 10.0,
                span,
                amount: 4.0,
                whole: false,
            }],
        ) {
            Reservation::Granted(h) => h,
            other => panic!("{other:?}"),
        };
        l.settle_now(
            1,
            &[Settlement {
                hold: hold[0].clone(),
                span,
                actual: 3.0,
            }],
        );
        let again = ledger();
        again.restore(l.snapshot());
        assert_eq!(
            again.read_now(2, &[("k".into(), span)])[0],
            Reading {
                start_ms: Some(0),
                used: 3.0,
                reserved: 0.0
            }
        );
    }
}
