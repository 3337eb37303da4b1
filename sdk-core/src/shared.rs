//! State shared by the client handle and its two background threads.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use crate::event::Identity;
use crate::logger::Log;
use crate::queue::Store;
use crate::state::{Reservation, State, StateFile};
use crate::store_lock::StoreLock;
use crate::{Config, Stats};

/// Locks a mutex, ignoring poisoning: our threads never panic while holding
/// a lock on purpose, and a poisoned counter is still better than a panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

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

/// Conditions the uploader waits on; guarded by `Shared::signals`.
#[derive(Debug)]
pub(crate) struct Signals {
    /// The platform says the device is online.
    pub network: bool,
    /// Upload everything queued now (flush, going online, startup, interval).
    pub drain: bool,
    /// The server refused the write key; wait for `set_write_key` or a restart.
    pub unauthorized: bool,
    /// The client is shutting down.
    pub stop: bool,
    /// Bumped after every upload attempt, so waiters can tell something happened.
    pub generation: u64,
    /// The queue database is open (see `Client::await_ready`).
    pub ready: bool,
    /// The network went from unavailable to available since the uploader
    /// last looked: a pending backoff wait is cut short (see `delivery`).
    pub network_regained: bool,
}

/// Everything the threads share.
pub(crate) struct Shared {
    pub config: Config,
    pub log: Log,
    pub counters: Arc<Counters>,
    pub store: Mutex<Store>,
    pub identity: RwLock<Arc<Identity>>,
    /// Set when `identity` changed and the writer must persist it.
    pub identity_dirty: AtomicBool,
    /// The identity events carry until the writer has read the state file
    /// (it replaces it in them then; see `writer`).
    pub provisional: Arc<Identity>,
    /// True until the writer has read the consent and identity file.
    pub state_pending: AtomicBool,
    /// The identity the file held, which replaces the provisional one in the
    /// events recorded before it was read.
    pub stored_identity: RwLock<Option<Arc<Identity>>>,
    /// Set by `set_enabled`: a choice made while the file was not read yet
    /// wins over the one it holds.
    pub consent_chosen: AtomicBool,
    /// The pre-serialized `context` object copied into every event.
    pub context: RwLock<Arc<str>>,
    pub enabled: AtomicBool,
    /// The consent and identity file; the mutex orders its rewrites.
    pub state_file: Mutex<StateFile>,
    /// Sequence numbers reserved in the state file (see `writer`).
    pub reservation: Mutex<Reservation>,
    /// How many times the user opted out (see `Built::consent_epoch`).
    pub opt_outs: AtomicU64,
    /// Set by opting out: the writer must delete everything queued.
    pub purge_requested: AtomicBool,
    pub write_key: RwLock<String>,
    pub signals: Mutex<Signals>,
    pub signals_cv: Condvar,
    /// Set by `shutdown` and `Drop`: recording calls refuse from then on.
    pub closed: AtomicBool,
    /// Recording calls between their `closed` check and their send. With
    /// `closed`, both `SeqCst`, it lets the stopping writer know when no
    /// event can arrive any more (see `writer`).
    pub recording: AtomicUsize,
    /// The directory lock, taken by the writer before it touches any file
    /// (retried while another client holds it). It lives as long as any thread
    /// may touch the files: released by `shutdown` once the threads are done,
    /// or when the last of them lets go of this struct.
    pub dir_lock: Mutex<Option<StoreLock>>,
}

impl Shared {
    /// Changes the signals and wakes the uploader and every flush waiter.
    pub fn signal(&self, change: impl FnOnce(&mut Signals)) {
        let mut s = lock(&self.signals);
        change(&mut s);
        drop(s);
        self.signals_cv.notify_all();
    }

    /// The current identity.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the identity and marks it for persistence by the writer.
    pub fn set_identity(&self, identity: Arc<Identity>) {
        *self
            .identity
            .write()
            .unwrap_or_else(PoisonError::into_inner) = identity;
        self.identity_dirty.store(true, Ordering::Release);
    }

    /// The current context JSON.
    pub fn context(&self) -> Arc<str> {
        self.context
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current write key.
    pub fn write_key(&self) -> String {
        self.write_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rewrites the state file with the current consent and identity. Both are
    /// read under the file's lock, so the last rewrite always holds the latest
    /// values whichever thread makes it.
    pub fn persist_state(&self) -> std::io::Result<()> {
        let file = lock(&self.state_file);
        let reservation = lock(&self.reservation).clone();
        let state = State::new(&self.identity(), self.is_enabled(), &reservation);
        file.store(&state)
    }

    /// Reserves `bytes` of the in-memory buffer for one event. False (nothing
    /// reserved) when that would exceed `max_buffer_bytes`.
    pub fn reserve_buffer(&self, bytes: u64) -> bool {
        let c = &self.counters;
        let limit = self.config.max_buffer_bytes;
        let reserved = c
            .buffered_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok();
        if reserved {
            c.buffered_events.fetch_add(1, Ordering::AcqRel);
        }
        reserved
    }

    /// Releases the buffer reservation of `events` events of `bytes` in total
    /// (committed or dropped).
    pub fn release_buffer(&self, events: u64, bytes: u64) {
        self.counters.sub_buffered(events, bytes);
    }

    /// Whether the client is shutting down (threads must not restart).
    pub fn stopping(&self) -> bool {
        lock(&self.signals).stop
    }

    /// Whether recording is enabled (not opted out).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Records a storage error: remembered for stats and logged (no lock held).
    pub fn storage_error(&self, what: &str, error: &dyn std::fmt::Display) {
        let message = format!("storage error while {what}: {error}");
        self.counters.set_last_error(message.clone());
        self.log.error(message);
    }

    /// Configured retry floor for storage errors in background threads.
    pub fn storage_retry_delay() -> Duration {
        Duration::from_millis(200)
    }
}
