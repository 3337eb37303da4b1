//! State shared by the client handle and its two background threads.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::Config;
pub(crate) use crate::counters::Counters;
use crate::event::Identity;
use crate::logger::Log;
use crate::state::{Reservation, State, StateFile};
use crate::store::Store;
use crate::store::StoreLock;

pub(crate) use crate::sync::lock;

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
    /// Super-properties, traits and the session (see `profile`).
    pub profile: Mutex<crate::profile::Held>,
    /// The clock sessions are measured with (ms since the Unix epoch).
    pub clock: RwLock<crate::Clock>,
    /// Sends the upload thread's requests (see `transport`).
    pub transport: Arc<dyn crate::Transport>,
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

    /// Waits on the signals until `done` holds (true), the client stops or
    /// `timeout` passes (false).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Signals) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.signals);
        loop {
            if done(&s) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || s.stop {
                return false;
            }
            s = self
                .signals_cv
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
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

    /// Now, by the session clock.
    pub fn now_ms(&self) -> i64 {
        let clock = self
            .clock
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        clock()
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
        let mut state = State::new(&self.identity(), self.is_enabled(), &reservation);
        state.profile = lock(&self.profile).profile.clone();
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
