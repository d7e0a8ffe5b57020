//! What one client connection is doing, shared by its socket wrapper, its service and its
//! watchdog, and the deadline that follows from it.
//!
//! A connection waits for a request head (header timeout), serves requests (no connection
//! deadline: the body has its own, responses may stream for long), then waits for the next
//! request (idle timeout). The header timeout starts at accept and, on a kept-alive HTTP/1.1
//! connection, at the first byte of the next request: an idle client gets the idle timeout, a
//! client that started a request and stalls gets the short one.
//!
//! Phase changes only write the phase (several per request, on the hot path); the watchdog
//! never needs waking for them. Every deadline lies at least `check_interval` after the change
//! that set it, so a watchdog that looks again no later than that interval after each look
//! (`next_check`) sees every deadline on time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request head until the deadline.
    Head(Instant),
    /// Serving this many requests (HTTP/1.1: one; HTTP/2: concurrent streams).
    Busy(usize),
    /// HTTP/1.1: the response is complete but not yet flushed to the socket.
    Flushing,
    /// Waiting for the next request until the deadline.
    Idle(Instant),
}

/// Why the watchdog closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Head,
    Idle,
}

pub(crate) struct ConnState {
    phase: Mutex<Phase>,
    header_timeout: Duration,
    idle_timeout: Duration,
    http2: AtomicBool,
    /// HTTP/1.1: the current request's body has not been read to its end.
    body_open: AtomicBool,
    /// HTTP/1.1: an answer went out before the body was read; drain before closing.
    linger: AtomicBool,
}

impl ConnState {
    pub(crate) fn new(header_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now() + header_timeout)),
            header_timeout,
            idle_timeout,
            http2: AtomicBool::new(false),
            body_open: AtomicBool::new(false),
            linger: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        // The critical sections cannot panic; a poisoned lock still holds a valid phase.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A request's head arrived; the returned guard ends it when dropped (with its response).
    pub(crate) fn request_started(self: &Arc<Self>, http2: bool, body_open: bool) -> ActiveGuard {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        } else {
            self.body_open.store(body_open, Ordering::Relaxed);
        }
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        ActiveGuard(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            // HTTP/1.1 goes idle once the response is flushed (see `io_flushed`).
            _ if !self.is_http2() => Phase::Flushing,
            _ => Phase::Idle(Instant::now() + self.idle_timeout),
        };
    }

    /// The socket produced bytes: on an idle HTTP/1.1 connection a request head has begun.
    pub(crate) fn io_read(&self) {
        if self.is_http2() {
            return;
        }
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now() + self.header_timeout);
        }
    }

    /// Everything hyper wrote is on the socket.
    pub(crate) fn io_flushed(&self) {
        let mut phase = self.phase();
        if let Phase::Flushing = *phase {
            *phase = Phase::Idle(Instant::now() + self.idle_timeout);
        }
    }

    /// HTTP/1.1 with no request in flight and every response flushed: anything hyper writes
    /// now is its own answer to a request it could not parse.
    pub(crate) fn between_requests(&self) -> bool {
        !self.is_http2() && matches!(*self.phase(), Phase::Head(_) | Phase::Idle(_))
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Head(at) | Phase::Idle(at) => Some(at),
            Phase::Busy(_) | Phase::Flushing => None,
        }
    }

    pub(crate) fn expired(&self, now: Instant) -> Option<Expired> {
        match *self.phase() {
            Phase::Head(at) if at <= now => Some(Expired::Head),
            Phase::Idle(at) if at <= now => Some(Expired::Idle),
            _ => None,
        }
    }

    /// When the watchdog must look again, at the latest: the current deadline, or one check
    /// interval from `now` if that comes first (a phase change may set a deadline meanwhile,
    /// never nearer than that).
    pub(crate) fn next_check(&self, now: Instant) -> Instant {
        let interval = self.header_timeout.min(self.idle_timeout);
        let soonest_new = now + interval;
        self.deadline()
            .map_or(soonest_new, |at| at.min(soonest_new))
    }

    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    pub(crate) fn body_open(&self) -> bool {
        self.body_open.load(Ordering::Relaxed)
    }

    pub(crate) fn body_done(&self) {
        self.body_open.store(false, Ordering::Relaxed);
    }

    pub(crate) fn linger(&self) -> bool {
        self.linger.load(Ordering::Relaxed)
    }

    pub(crate) fn set_linger(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }
}

/// One request in flight; dropped with its response body (or its unfinished future).
pub(crate) struct ActiveGuard(Arc<ConnState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    /// `at` is `from` plus `d`, give or take the time the test took.
    fn about(at: Option<Instant>, from: Instant, d: Duration) -> bool {
        at.is_some_and(|at| at >= from + d && at <= Instant::now() + d)
    }

    #[test]
    fn header_then_busy_then_idle_then_header_again() {
        let start = Instant::now();
        let s = Arc::new(ConnState::new(HEADER, IDLE));
        assert!(about(s.deadline(), start, HEADER));
        assert!(s.between_requests());

        let guard = s.request_started(false, true);
        assert_eq!(s.deadline(), None);
        assert!(!s.between_requests());
        assert!(s.body_open());
        drop(guard);
        assert_eq!(
            s.deadline(),
            None,
            "not idle before the response is flushed"
        );
        assert!(!s.between_requests());
        let flushed = Instant::now();
        s.io_flushed();
        assert!(about(s.deadline(), flushed, IDLE));
        assert!(s.between_requests());

        let read = Instant::now();
        s.io_read();
        assert!(
            about(s.deadline(), read, HEADER),
            "the first byte of the next request starts the header timeout"
        );
        assert_eq!(s.expired(read + HEADER / 2), None);
        assert_eq!(s.expired(Instant::now() + HEADER), Some(Expired::Head));
    }

    #[test]
    fn the_watchdog_looks_again_before_any_deadline_a_phase_change_could_set() {
        let s = Arc::new(ConnState::new(HEADER, IDLE));
        let now = Instant::now();
        assert_eq!(
            s.next_check(now),
            s.deadline().unwrap(),
            "the header deadline"
        );
        let guard = s.request_started(false, false);
        assert_eq!(s.next_check(now), now + HEADER, "busy: one interval ahead");
        drop(guard);
        s.io_flushed();
        assert_eq!(
            s.next_check(now),
            now + HEADER,
            "idle deadline is further off than the interval"
        );
        let short_idle = Arc::new(ConnState::new(IDLE, HEADER));
        let guard = short_idle.request_started(false, false);
        drop(guard);
        short_idle.io_flushed();
        assert_eq!(short_idle.next_check(now), now + HEADER);
        let later = Instant::now() + IDLE;
        assert_eq!(
            short_idle.next_check(later),
            short_idle.deadline().unwrap(),
            "a deadline nearer than the interval is looked at on time"
        );
    }

    #[test]
    fn http2_goes_idle_when_its_last_stream_ends_and_ignores_reads() {
        let s = Arc::new(ConnState::new(HEADER, IDLE));
        let a = s.request_started(true, false);
        let b = s.request_started(true, false);
        drop(a);
        assert_eq!(s.deadline(), None);
        let idle = Instant::now();
        drop(b);
        assert!(about(s.deadline(), idle, IDLE));
        s.io_read();
        assert!(about(s.deadline(), idle, IDLE));
        assert!(!s.between_requests());
        assert_eq!(s.expired(Instant::now() + IDLE), Some(Expired::Idle));
    }
}
