//! `concurrency_and_buffer_size`: at most `concurrency` upstream calls of a provider in flight,
//! and `buffer_size` requests queued for a slot. A request past the queue waits as well, or,
//! with `client.drop_excess_requests`, is answered 529 `overloaded_error` at once. No wait
//! outlasts the attempt's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use heimdall_protocol::error::ErrorType;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::GatewayError;

#[derive(Debug)]
pub struct Limiter {
    /// One permit per upstream call in flight; a stream holds its permit until it ends.
    slots: Arc<Semaphore>,
    concurrency: usize,
    /// Requests waiting for a slot now.
    waiting: AtomicUsize,
    buffer_size: usize,
}

/// A slot; the call holds it until its answer (or stream) is over.
pub type Slot = OwnedSemaphorePermit;

impl Limiter {
    pub fn new(concurrency: usize, buffer_size: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            waiting: AtomicUsize::new(0),
            buffer_size,
        }
    }

    pub fn settings(&self) -> (usize, usize) {
        (self.concurrency, self.buffer_size)
    }

    /// A slot for one upstream call of `provider`, waiting until `deadline` at most.
    pub async fn acquire(
        &self,
        provider: &str,
        drop_excess: bool,
        deadline: Instant,
    ) -> Result<Slot, GatewayError> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _leave = Leave(&self.waiting);
        if queued >= self.buffer_size && drop_excess {
            return Err(GatewayError::new(
                ErrorType::OverloadedError,
                format!(
                    "{provider} is at its limit of {} requests in flight with {} waiting (concurrency_and_buffer_size; client.drop_excess_requests is on)",
                    self.concurrency, self.buffer_size
                ),
            ));
        }
        match tokio::time::timeout_at(deadline, Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            // The semaphore is never closed; answer as a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(GatewayError::new(
                ErrorType::TimeoutError,
                format!(
                    "no free {provider} slot within the request timeout ({} requests in flight; concurrency_and_buffer_size)",
                    self.concurrency
                ),
            )
            .with_status(504)),
        }
    }
}

/// Leaves the queue however the wait ends (slot, refusal, timeout, cancellation).
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn excess_is_dropped_at_once_when_asked() {
        let l = Limiter::new(1, 1);
        let held = l.acquire("p", true, soon(1000)).await.unwrap();
        // One may wait in the buffer...
        let l = Arc::new(l);
        let waiter = {
            let l = Arc::clone(&l);
            tokio::spawn(async move { l.acquire("p", true, soon(5000)).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...the next is refused at once with 529.
        let started = std::time::Instant::now();
        let err = l.acquire("p", true, soon(5000)).await.unwrap_err();
        assert_eq!((err.status, err.kind), (529, ErrorType::OverloadedError));
        assert!(started.elapsed() < Duration::from_millis(500));
        drop(held);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_dropping_the_wait_ends_at_the_deadline() {
        let l = Limiter::new(1, 0);
        let _held = l.acquire("p", false, soon(1000)).await.unwrap();
        let err = l.acquire("p", false, soon(100)).await.unwrap_err();
        assert_eq!((err.status, err.kind), (504, ErrorType::TimeoutError));
        assert_eq!(l.waiting.load(Ordering::Acquire), 0, "the queue is left");
    }
}
