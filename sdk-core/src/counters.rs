//! The counters behind `Stats`: atomics the threads bump, read as one
//! snapshot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Stats;
use crate::sync::lock;

/// Counters behind [`Stats`]. Queued figures mirror the database; the others
/// count since the client was created.
#[derive(Default)]
pub(crate) struct Counters {
    queued_events: AtomicU64,
    queued_bytes: AtomicU64,
    pub uploaded: AtomicU64,
    pub dropped_age: AtomicU64,
    pub dropped_byte_cap: AtomicU64,
    pub dropped_rejected: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_backpressure: AtomicU64,
    pub retries: AtomicU64,
    pub database_resets: AtomicU64,
    pub dropped_corrupt: AtomicU64,
    pub dropped_shutdown: AtomicU64,
    pub dropped_opt_out: AtomicU64,
    pub recorded: AtomicU64,
    pub restored: AtomicU64,
    pub buffered_events: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub thread_restarts: AtomicU64,
    last_error: Mutex<Option<String>>,
    in_flight: Mutex<Option<(String, u64)>>,
}

impl Counters {
    /// Adds `n` to one counter.
    pub fn inc(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Overwrites the queued figures (after a recount).
    pub fn set_queued(&self, events: u64, bytes: u64) {
        self.queued_events.store(events, Ordering::Relaxed);
        self.queued_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Adds newly committed events.
    pub fn add_queued(&self, events: u64, bytes: u64) {
        self.queued_events.fetch_add(events, Ordering::Relaxed);
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Removes deleted events.
    pub fn sub_queued(&self, events: u64, bytes: u64) {
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.queued_events, events);
        sub(&self.queued_bytes, bytes);
    }

    /// Removes events that left the in-memory buffer.
    pub fn sub_buffered(&self, events: u64, bytes: u64) {
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub(&self.buffered_events, events);
        sub(&self.buffered_bytes, bytes);
    }

    /// Events on disk.
    pub fn queued_events(&self) -> u64 {
        self.queued_events.load(Ordering::Relaxed)
    }

    /// Bytes on disk.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Remembers the latest error for `Stats::last_error`.
    pub fn set_last_error(&self, error: impl Into<String>) {
        *lock(&self.last_error) = Some(error.into());
    }

    /// Records the batch being sent or retried.
    pub fn set_in_flight(&self, batch: Option<(String, u64)>) {
        *lock(&self.in_flight) = batch;
    }

    #[cfg(test)]
    pub fn snapshot_resets(&self) -> u64 {
        self.database_resets.load(Ordering::Relaxed)
    }

    /// A consistent-enough snapshot for `Client::stats`.
    pub fn snapshot(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let in_flight = lock(&self.in_flight).clone();
        Stats {
            queued_events: get(&self.queued_events),
            queued_bytes: get(&self.queued_bytes),
            in_flight_events: in_flight.as_ref().map_or(0, |(_, n)| *n),
            in_flight_batch: in_flight.map(|(key, _)| key),
            uploaded_events: get(&self.uploaded),
            dropped_age: get(&self.dropped_age),
            dropped_byte_cap: get(&self.dropped_byte_cap),
            dropped_rejected: get(&self.dropped_rejected),
            dropped_too_large: get(&self.dropped_too_large),
            dropped_backpressure: get(&self.dropped_backpressure),
            retries: get(&self.retries),
            last_error: lock(&self.last_error).clone(),
            database_resets: get(&self.database_resets),
            dropped_corrupt: get(&self.dropped_corrupt),
            dropped_shutdown: get(&self.dropped_shutdown),
            dropped_opt_out: get(&self.dropped_opt_out),
            recorded_events: get(&self.recorded),
            restored_events: get(&self.restored),
            buffered_events: get(&self.buffered_events),
            buffered_bytes: get(&self.buffered_bytes),
            thread_restarts: get(&self.thread_restarts),
        }
    }
}
