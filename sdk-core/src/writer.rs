//! The writer thread: the only place events reach the disk.
//!
//! Recording calls hand built events to this thread through an unbounded
//! `std::sync::mpsc` channel whose contents are bounded in *bytes*: a
//! recording call reserves its event's size in `Stats::buffered_bytes` first
//! and drops the event (counted in `Stats::dropped_backpressure`) instead of
//! blocking when that would exceed `Config::max_buffer_bytes`. The reservation
//! covers the event until it is committed, so the channel and the writer's
//! pending list together never hold more than the bound. Control messages are
//! not counted and never block.
//!
//! The thread opens the database itself (the client's constructor does no
//! SQLite I/O), then blocks on `recv`, drains everything already pending and
//! commits it in one transaction (group commit): one fsync per group, so the
//! cost per event falls as load rises. A group is committed early once it
//! holds a quarter of the byte bound, so a burst is written while it arrives.
//!
//! Storage errors never block the thread: a failed open or commit keeps the
//! events in memory and is retried with a growing delay (up to
//! [`MAX_RETRY_DELAY`]) while messages keep being received. A database that
//! fails its integrity check is salvaged and replaced (see `queue`). At
//! shutdown the writer tries for at most [`STOP_GIVE_UP`], then counts what it
//! still holds in `Stats::dropped_shutdown`.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::event::{Built, Identity, push_json_str};
use crate::shared::{Shared, lock};
use crate::state::{Loaded, Reservation, State};
use crate::store::StoreLock;
use crate::store::{Numbering, Reset, Store, StoreError, is_corruption, read_legacy_meta};

/// Sequence numbers are reserved in the state file this many at a time, so
/// the file is rewritten once per this many events, not per commit.
const SEQ_BLOCK: u64 = 10_000;

/// How long the writer keeps retrying a failing commit during shutdown
/// before giving up on the events still in memory (counted).
pub(crate) const STOP_GIVE_UP: Duration = Duration::from_secs(2);

/// The longest pause between two attempts to open or write a failing
/// database. Short enough that an app launched before the first unlock
/// (iOS data protection) starts storing within seconds of the unlock.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Test-only fault injection: the writer of this storage directory panics
/// once, in its next commit (see the supervision test in `client`).
#[cfg(test)]
pub(crate) static PANIC_ONCE_IN: std::sync::Mutex<Option<std::path::PathBuf>> =
    std::sync::Mutex::new(None);

/// A message to the writer.
pub(crate) enum Msg {
    /// A recorded event (its bytes are reserved in `buffered_bytes`).
    Event(Built),
    /// Something changed (identity, opt-out); look at the shared state.
    Wake,
    /// `flush()`: commit everything before this message, then start an upload,
    /// so the upload includes every event recorded before the call.
    Flush,
    /// Reply with the id of the last committed event once everything before
    /// this message is durable.
    Barrier(SyncSender<i64>),
    /// Commit what is pending and exit.
    Stop,
}

/// The writer's state between messages. It outlives a panic of [`run`]:
/// the supervisor runs the loop again with the same state, so the events it
/// held are committed after the restart, not lost.
pub(crate) struct Writer<'a> {
    shared: &'a Shared,
    pending: Vec<Built>,
    pending_bytes: u64,
    /// Barriers waiting for a commit that failed.
    barriers: Vec<SyncSender<i64>>,
    /// A `flush()` waiting for a commit that failed.
    flush_requested: bool,
    /// While the storage fails: when to try again, and the delay after that.
    retry: Option<(Instant, Duration)>,
    /// The id of the last committed event (the barriers' answer).
    last_id: i64,
    /// The event sequence; `None` until read from the open database.
    seq: Option<Sequence>,
}

/// The per-installation event sequence: every committed event gets the next
/// number of its anonymous id's sequence, in commit order, so the numbers
/// are gap-free (dropped events never get one) and a gap downstream means a
/// lost event. `reset()` makes a new anonymous id, whose sequence starts at 1.
#[derive(Debug, Clone, Default)]
struct Sequence {
    owner: Option<String>,
    next: u64,
}

impl Sequence {
    /// Where numbering resumes: after the last number stored in the
    /// database; or, when the database lost it (replaced, deleted), after
    /// everything reserved in the state file, so no number is given twice.
    fn resume(stored: Option<(String, u64)>, reserved: &Reservation) -> Self {
        match (stored, &reserved.owner) {
            (Some((owner, next)), _) => Self {
                owner: Some(owner),
                next,
            },
            (None, Some(owner)) => Self {
                owner: Some(owner.clone()),
                next: reserved.up_to.saturating_add(1),
            },
            (None, None) => Self {
                owner: None,
                next: 1,
            },
        }
    }

    fn assign(&mut self, anonymous_id: &str) -> u64 {
        if self.owner.as_deref() != Some(anonymous_id) {
            self.owner = Some(anonymous_id.to_string());
            self.next = 1;
        }
        let n = self.next;
        self.next += 1;
        n
    }
}

impl<'a> Writer<'a> {
    /// A writer with nothing pending; the database is opened by [`run`].
    pub(crate) fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            pending: Vec::new(),
            pending_bytes: 0,
            barriers: Vec::new(),
            flush_requested: false,
            retry: None,
            last_id: 0,
            seq: None,
        }
    }
}

/// Runs the writer loop until `Stop` or until every sender is gone.
pub(crate) fn run(w: &mut Writer<'_>, rx: &Receiver<Msg>) {
    let shared = w.shared;
    // After a panic, numbering resumes from what the database holds.
    w.seq = None;
    // Open the database now, not at the first event: uploads of what an
    // earlier run left wait for it.
    w.commit();
    let early_commit_bytes = (shared.config.max_buffer_bytes / 4).max(1);
    loop {
        let first = match w.retry {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some((at, _)) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        let mut next = match first {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return w.finish(rx),
        };
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(mut built) => {
                    if !shared.state_pending.load(Ordering::SeqCst) {
                        settle_identity(shared, &mut built);
                    }
                    // Re-check: an opt-out may have raced with the recording
                    // call, and the user may even have opted in again since.
                    if shared.is_enabled()
                        && built.consent_epoch == shared.opt_outs.load(Ordering::SeqCst)
                    {
                        w.pending_bytes += built.json.len() as u64;
                        w.pending.push(built);
                        if w.pending_bytes >= early_commit_bytes {
                            w.commit();
                        }
                    } else {
                        let c = &shared.counters;
                        c.inc(&c.dropped_opt_out, 1);
                        shared.release_buffer(1, built.json.len() as u64);
                    }
                }
                Msg::Wake => {}
                Msg::Flush => {
                    w.flush_requested = true;
                    w.commit();
                }
                Msg::Barrier(reply) => {
                    w.barriers.push(reply);
                    w.commit();
                }
                Msg::Stop => return w.finish(rx),
            }
            if shared.purge_requested.load(Ordering::Acquire) {
                w.purge();
            }
            next = rx.try_recv().ok();
        }
        if shared.purge_requested.load(Ordering::Acquire) {
            w.purge();
        }
        w.commit();
    }
}

impl Writer<'_> {
    /// Commits what is pending unless a retry is not due yet. On success,
    /// answers waiting barriers and flushes; on failure, schedules a retry.
    fn commit(&mut self) {
        if self.retry.is_some_and(|(at, _)| Instant::now() < at) {
            return;
        }
        match self.try_commit() {
            Ok(()) => {
                self.retry = None;
                for reply in self.barriers.drain(..) {
                    let _ = reply.send(self.last_id);
                }
                if std::mem::take(&mut self.flush_requested) {
                    self.shared.signal(|s| s.drain = true);
                }
            }
            Err(()) => {
                let delay = self.retry.map_or(Shared::storage_retry_delay(), |(_, d)| {
                    (d * 2).min(MAX_RETRY_DELAY)
                });
                self.retry = Some((Instant::now() + delay, delay));
            }
        }
    }

    /// One attempt: open the database if needed, then insert the group (and
    /// the identity if it changed). Errors are reported here.
    fn try_commit(&mut self) -> Result<(), ()> {
        let shared = self.shared;
        // Nothing is stored before the consent file is read.
        self.ensure_state()?;
        self.ensure_open()?;
        // A corrupt database is replaced once per attempt, then written again.
        for _ in 0..2 {
            let identity_changed = shared.identity_dirty.swap(false, Ordering::AcqRel);
            if self.pending.is_empty() && !identity_changed {
                return Ok(());
            }
            let identity = identity_changed.then(|| shared.identity());
            let mut store = lock(&shared.store);
            #[cfg(test)]
            {
                let mut target = lock(&PANIC_ONCE_IN);
                if target.as_deref() == Some(store.dir()) && !self.pending.is_empty() {
                    *target = None;
                    drop(target);
                    drop(store);
                    panic!("injected by a test");
                }
            }
            let numbering = self.number(&store);
            match store.insert_group(&self.pending, numbering.as_ref(), identity.as_deref()) {
                Ok(last) => {
                    if let Some(last) = last {
                        self.last_id = last;
                    }
                    // Released while the store lock is held, with the queued
                    // count going up: the events move from one figure to the other.
                    shared.release_buffer(self.pending.len() as u64, self.pending_bytes);
                    self.pending.clear();
                    self.pending_bytes = 0;
                    let evicted = store.evict_over_cap(shared.config.max_queue_bytes);
                    if let Ok(n) = evicted {
                        shared.counters.inc(&shared.counters.dropped_byte_cap, n);
                    }
                    drop(store);
                    // The state file is where the identity is authoritative (the
                    // copy in `meta` is a fallback should the file be lost).
                    if identity_changed && let Err(e) = shared.persist_state() {
                        shared.identity_dirty.store(true, Ordering::Release);
                        shared.storage_error("storing the identity", &e);
                    }
                    after_commit(shared, evicted);
                    return Ok(());
                }
                Err(e) => {
                    if identity_changed {
                        shared.identity_dirty.store(true, Ordering::Release);
                    }
                    // The numbers were not stored: resume from what the
                    // database holds (or the reservation, if it was replaced).
                    self.seq = None;
                    let recovered = is_corruption(&e).then(|| store.recover());
                    drop(store);
                    shared.storage_error("committing recorded events", &e);
                    match recovered {
                        Some(recovered) => log_recovery(shared, recovered),
                        None => return Err(()),
                    }
                }
            }
        }
        Err(())
    }

    /// Numbers the pending events (see [`Sequence`]), reserving numbers in
    /// the state file first when the reservation is used up.
    fn number(&mut self, store: &Store) -> Option<Numbering> {
        if self.pending.is_empty() {
            return None;
        }
        let shared = self.shared;
        let seq = self.seq.get_or_insert_with(|| {
            let stored = store.sequence().unwrap_or_else(|e| {
                shared.storage_error("reading the event sequence", &e);
                None
            });
            Sequence::resume(stored, &lock(&shared.reservation))
        });
        let seqs: Vec<u64> = self
            .pending
            .iter()
            .map(|b| seq.assign(&b.identity.anonymous_id))
            .collect();
        let used = seq.next - 1;
        let mut reservation = lock(&shared.reservation);
        if reservation.owner != seq.owner || reservation.up_to < used {
            *reservation = Reservation {
                owner: seq.owner.clone(),
                up_to: used + SEQ_BLOCK,
            };
            drop(reservation);
            // Before the numbers are stored with their events.
            if let Err(e) = shared.persist_state() {
                shared.storage_error("reserving event sequence numbers", &e);
            }
        }
        Some(Numbering {
            seqs,
            owner: seq.owner.clone().unwrap_or_default(),
            next: seq.next,
        })
    }

    /// Opens the database if it is not open yet, and reports the outcome.
    /// Reads the consent and identity file once, on this thread (the
    /// constructor does no disk I/O). A file that cannot be read now is retried
    /// like the database; meanwhile events wait in memory.
    fn ensure_state(&mut self) -> Result<(), ()> {
        let shared = self.shared;
        if !shared.state_pending.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.ensure_locked()?;
        let loaded = lock(&shared.state_file).load();
        let (state, rewrite) = match loaded {
            Loaded::Found(state) => (state, false),
            // First run, or the first since the state file exists: take what
            // an older database holds, and write the file.
            Loaded::Missing => {
                let dir = lock(&shared.store).dir().to_path_buf();
                let (identity, enabled) =
                    read_legacy_meta(&dir).unwrap_or_else(|| (Identity::fresh(), true));
                (
                    State::new(&identity, enabled, &Reservation::default()),
                    true,
                )
            }
            Loaded::Unreadable(why) => {
                let dir = lock(&shared.store).dir().to_path_buf();
                let identity =
                    read_legacy_meta(&dir).map_or_else(Identity::fresh, |(identity, _)| identity);
                let message = format!(
                    "the consent file is unreadable ({why}); recording stays disabled until opt-in, as the user may have opted out"
                );
                shared.counters.set_last_error(message.clone());
                shared.log.error(message);
                (State::new(&identity, false, &Reservation::default()), true)
            }
            Loaded::Unavailable(why) => {
                shared.storage_error(
                    "reading the consent file (retrying; events wait in memory, nothing is stored or sent until it is read)",
                    &why,
                );
                return Err(());
            }
        };
        self.adopt_state(&state, rewrite);
        Ok(())
    }

    /// Takes the directory lock (no other client may use these files). Held
    /// by another client, or a directory that cannot be used: reported and
    /// retried like any storage error; events wait in memory.
    fn ensure_locked(&mut self) -> Result<(), ()> {
        let shared = self.shared;
        let mut held = lock(&shared.dir_lock);
        if held.is_some() {
            return Ok(());
        }
        let dir = lock(&shared.store).dir().to_path_buf();
        match StoreLock::acquire(&dir) {
            Ok(taken) => {
                *held = Some(taken);
                Ok(())
            }
            Err(e) => {
                drop(held);
                shared.storage_error(
                    "taking the storage directory (retrying; events wait in memory)",
                    &e,
                );
                Err(())
            }
        }
    }

    /// Takes in the state read from the file: its identity replaces the
    /// provisional one (in the events waiting here too), and its consent
    /// applies unless the app chose since.
    fn adopt_state(&mut self, state: &State, rewrite: bool) {
        let shared = self.shared;
        *lock(&shared.reservation) = Reservation {
            owner: state.seq_owner.clone(),
            up_to: state.seq_reserved,
        };
        let stored = state.identity();
        *shared
            .stored_identity
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(std::sync::Arc::new(stored.clone()));
        let current = shared.identity();
        let identity = if current.anonymous_id == shared.provisional.anonymous_id {
            // identify() may have set a user id meanwhile; reset() would have
            // replaced the provisional id, and then its identity stands.
            Identity {
                anonymous_id: stored.anonymous_id.clone(),
                user_id: current.user_id.clone().or(stored.user_id.clone()),
            }
        } else {
            (*current).clone()
        };
        let changed = identity != stored;
        *shared
            .identity
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(identity);
        let timeout = shared.config.session_timeout_ms as i64;
        let profile_changed = lock(&shared.profile).adopt(state.profile.clone(), timeout);
        let chosen = shared.consent_chosen.load(Ordering::SeqCst);
        if !chosen && !state.enabled {
            shared.enabled.store(false, Ordering::SeqCst);
            shared.opt_outs.fetch_add(1, Ordering::SeqCst);
        }
        if rewrite || changed || chosen || profile_changed {
            shared.identity_dirty.store(true, Ordering::Release);
        }
        shared.state_pending.store(false, Ordering::SeqCst);
        // The events already here: the stored identity, and the consent check
        // they passed on arrival, again.
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        for mut built in pending {
            settle_identity(shared, &mut built);
            if shared.is_enabled() && built.consent_epoch == shared.opt_outs.load(Ordering::SeqCst)
            {
                self.pending_bytes += built.json.len() as u64;
                self.pending.push(built);
            } else {
                let c = &shared.counters;
                c.inc(&c.dropped_opt_out, 1);
                shared.release_buffer(1, built.json.len() as u64);
            }
        }
        shared.signal(|s| s.generation += 1);
    }

    fn ensure_open(&mut self) -> Result<(), ()> {
        let shared = self.shared;
        let mut store = lock(&shared.store);
        if store.is_open() {
            return Ok(());
        }
        let result = store.open_file();
        let restored = store.counters.queued_events();
        if result.is_ok() {
            // A flush covers what earlier runs left too.
            self.last_id = self.last_id.max(store.last_id());
        }
        drop(store);
        match result {
            Ok(reset) => {
                let c = &shared.counters;
                c.inc(&c.restored, restored);
                if let Some(reset) = reset {
                    log_recovery(shared, Ok(reset));
                }
                shared.log.debug("queue database open");
                if restored > 0 {
                    shared
                        .log
                        .info(format!("{restored} events pending from an earlier run"));
                }
                // Deliver whatever a previous run left, now that it is readable.
                shared.signal(|s| {
                    s.ready = true;
                    if restored > 0 {
                        s.drain = true;
                    }
                });
                Ok(())
            }
            Err(why) => {
                shared.storage_error(
                    "opening the queue database (retrying; events wait in memory)",
                    &why,
                );
                Err(())
            }
        }
    }

    /// Shutdown: takes in what recording calls racing the shutdown still
    /// sent, commits for at most [`STOP_GIVE_UP`], and counts what could not
    /// be stored in `Stats::dropped_shutdown`.
    fn finish(&mut self, rx: &Receiver<Msg>) {
        let shared = self.shared;
        let started = Instant::now();
        // Recording calls that passed the shut-down check before it was set
        // are about to send; once none is in progress, every later call sees
        // the flag and refuses (see `Shared::recording`).
        while shared.recording.load(Ordering::SeqCst) > 0 && started.elapsed() < STOP_GIVE_UP {
            std::thread::yield_now();
        }
        let drain = |w: &mut Self| {
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Event(built) = msg {
                    if built.consent_epoch == shared.opt_outs.load(Ordering::SeqCst) {
                        w.pending_bytes += built.json.len() as u64;
                        w.pending.push(built);
                    } else {
                        let c = &shared.counters;
                        c.inc(&c.dropped_opt_out, 1);
                        shared.release_buffer(1, built.json.len() as u64);
                    }
                }
            }
        };
        drain(self);
        if shared.purge_requested.load(Ordering::Acquire) {
            self.purge();
        }
        self.retry = None;
        loop {
            self.commit();
            if self.retry.is_none() {
                break;
            }
            let left = STOP_GIVE_UP.saturating_sub(started.elapsed());
            if left.is_zero() {
                let n = self.pending.len() as u64;
                let c = &shared.counters;
                c.inc(&c.dropped_shutdown, n);
                shared.release_buffer(n, self.pending_bytes);
                self.pending.clear();
                shared.log.error(format!(
                    "gave up on {n} events that could not be stored before shutdown (counted in dropped_shutdown)"
                ));
                break;
            }
            if let Some((at, _)) = self.retry {
                std::thread::sleep(at.saturating_duration_since(Instant::now()).min(left));
            }
        }
    }

    /// Opting out: drops what is in memory and deletes everything queued and
    /// every corrupt copy, all counted in `Stats::dropped_opt_out`. A storage
    /// error leaves the request set, so a later message retries it.
    fn purge(&mut self) {
        let shared = self.shared;
        shared.purge_requested.store(false, Ordering::Release);
        let c = &shared.counters;
        let n = self.pending.len() as u64;
        c.inc(&c.dropped_opt_out, n);
        shared.release_buffer(n, self.pending_bytes);
        self.pending.clear();
        self.pending_bytes = 0;
        // Files are touched only with the directory lock held (another client
        // may own the directory); without it the purge is retried.
        let locked = lock(&shared.dir_lock).is_some();
        let mut store = lock(&shared.store);
        // Corrupt copies hold the user's data too; they go even if the
        // database itself cannot be opened right now.
        let left = if locked {
            crate::store::remove_corrupt_copies(store.dir())
        } else {
            0
        };
        let result = if store.is_open() {
            store.purge()
        } else {
            Err(rusqlite::Error::InvalidQuery)
        };
        if let Ok(deleted) = result {
            // Counted under the store lock, like every other removal.
            c.inc(&c.dropped_opt_out, deleted);
        }
        drop(store);
        if left > 0 {
            shared.log.warn(format!(
                "opting out could not delete {left} corrupt database copies"
            ));
        }
        match result {
            Ok(deleted) => {
                c.set_in_flight(None);
                shared.log.info(format!(
                    "recording disabled: deleted {deleted} queued events"
                ));
            }
            Err(e) => {
                shared.storage_error("deleting the data of an opted-out user (will retry)", &e);
                shared.purge_requested.store(true, Ordering::Release);
                if self.retry.is_none() {
                    let delay = Shared::storage_retry_delay();
                    self.retry = Some((Instant::now() + delay, delay));
                }
            }
        }
    }
}

/// Counts and logs byte-cap evictions, and wakes the uploader at `flush_at`.
fn after_commit(shared: &Shared, evicted: rusqlite::Result<u64>) {
    match evicted {
        Ok(0) => {}
        Ok(n) => {
            shared.log.warn(format!(
                "queue over max_queue_bytes ({}): evicted the {n} oldest events",
                shared.config.max_queue_bytes
            ));
        }
        Err(e) => shared.storage_error("evicting over the byte cap", &e),
    }
    // Wake the delivery thread when it has a reason to send: the queue
    // reached flush_at, or a flush() asked for these events before they were
    // committed (it found nothing to send then).
    let s = lock(&shared.signals);
    let wake = s.drain || shared.counters.queued_events() >= u64::from(shared.config.flush_at);
    drop(s);
    if wake {
        shared.signals_cv.notify_all();
    }
}

/// Logs the outcome of replacing a corrupt database.
pub(crate) fn log_recovery(shared: &Shared, recovered: Result<Reset, StoreError>) {
    match recovered {
        Ok(reset) => {
            let lost = match reset.lost {
                Some(n) => format!(
                    "{n} events could not be read and are lost (counted in dropped_corrupt)"
                ),
                None => "an unknown number of events could not be read".into(),
            };
            let message = format!(
                "the queue database was corrupt ({}); moved it to {}, requeued {} readable events in a fresh one; {lost}",
                reset.why,
                reset.moved.display(),
                reset.salvaged
            );
            shared.counters.set_last_error(message.clone());
            shared.log.warn(message);
        }
        Err(e) => shared.storage_error("replacing a corrupt database", &e),
    }
}

/// An event recorded before the state file was read carries the provisional
/// anonymous id: it gets the stored one (and the stored user id if it had none).
fn settle_identity(shared: &Shared, built: &mut Built) {
    if built.identity.anonymous_id != shared.provisional.anonymous_id {
        return;
    }
    let stored = shared
        .stored_identity
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(stored) = stored else { return };
    let mut from = String::from("\"anonymousId\":");
    push_json_str(&mut from, &shared.provisional.anonymous_id);
    let mut to = String::from("\"anonymousId\":");
    push_json_str(&mut to, &stored.anonymous_id);
    let user_id = match (&built.identity.user_id, &stored.user_id) {
        (Some(own), _) => Some(own.clone()),
        (None, Some(stored_user)) => {
            to.push_str(",\"userId\":");
            push_json_str(&mut to, stored_user);
            Some(stored_user.clone())
        }
        (None, None) => None,
    };
    built.json = built.json.replacen(&from, &to, 1);
    built.identity = std::sync::Arc::new(Identity {
        anonymous_id: stored.anonymous_id.clone(),
        user_id,
    });
}
