//! The writer thread: the only place events reach the disk.
//!
//! Recording calls hand built events to this thread through a bounded
//! `std::sync::mpsc::sync_channel` of [`CHANNEL_CAPACITY`] messages, using
//! `try_send`: a full channel (a stalled disk) drops the event and counts it
//! in `Stats::dropped_backpressure` instead of blocking the caller.
//!
//! The thread blocks on `recv`, then drains everything already pending and
//! commits it in one transaction (group commit): one fsync per group, so the
//! cost per event falls as load rises. Control messages (barriers, opt-out)
//! are processed in channel order, after committing the events before them.
//!
//! If a commit fails, the group is kept in memory and retried (a corrupt
//! database is moved aside and recreated first); the error is logged and
//! shown in `Stats::last_error`. The thread never panics.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use crate::event::Built;
use crate::queue::is_corruption;
use crate::shared::{Shared, lock};

/// Capacity of the recording channel, in events. About 3-4 MB of memory at
/// worst for typical 300-byte events, and more than a second of recording at
/// full speed, which absorbs an fsync stall of a few hundred milliseconds.
pub const CHANNEL_CAPACITY: usize = 10_000;

/// How long the writer keeps retrying a failing commit during shutdown
/// before giving up on the events still in memory.
const STOP_GIVE_UP: Duration = Duration::from_secs(5);

/// A message to the writer.
pub(crate) enum Msg {
    /// A recorded event.
    Event(Built),
    /// Something changed (e.g. the identity); commit soon.
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

/// Runs the writer loop until `Stop` or until every sender is gone.
pub(crate) fn run(shared: &Shared, rx: &Receiver<Msg>, last_id: &mut i64) {
    let mut pending: Vec<Built> = Vec::new();
    loop {
        let Ok(first) = rx.recv() else {
            commit(shared, &mut pending, last_id, true);
            return;
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event(built) => {
                    // Re-check: an opt-out may have raced with the recording call.
                    if shared.is_enabled() {
                        pending.push(built);
                    } else {
                        let c = &shared.counters;
                        c.inc(&c.dropped_opt_out, 1);
                    }
                }
                Msg::Wake => {}
                Msg::Flush => {
                    commit(shared, &mut pending, last_id, false);
                    shared.signal(|s| s.drain = true);
                }
                Msg::Barrier(reply) => {
                    commit(shared, &mut pending, last_id, false);
                    let _ = reply.send(*last_id);
                }
                Msg::Stop => {
                    commit(shared, &mut pending, last_id, true);
                    return;
                }
            }
            if shared.purge_requested.load(Ordering::Acquire) {
                purge(shared, &mut pending);
            }
            next = rx.try_recv().ok();
        }
        commit(shared, &mut pending, last_id, false);
    }
}

/// Commits `pending` (and the identity if it changed), retrying on errors.
fn commit(shared: &Shared, pending: &mut Vec<Built>, last_id: &mut i64, stopping: bool) {
    let started = Instant::now();
    let mut delay = Shared::storage_retry_delay();
    loop {
        let identity_changed = shared.identity_dirty.swap(false, Ordering::AcqRel);
        if pending.is_empty() && !identity_changed {
            return;
        }
        let identity = identity_changed.then(|| shared.identity());
        let mut store = lock(&shared.store);
        let result = store.insert_group(pending, identity.as_deref());
        match result {
            Ok(last) => {
                if let Some(last) = last {
                    *last_id = last;
                }
                pending.clear();
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
                return;
            }
            Err(e) => {
                if identity_changed {
                    shared.identity_dirty.store(true, Ordering::Release);
                }
                let recovered = is_corruption(&e).then(|| store.recover());
                drop(store);
                shared.storage_error("committing recorded events", &e);
                if let Some(recovered) = recovered {
                    log_recovery(shared, recovered);
                    continue;
                }
                if stopping && started.elapsed() > STOP_GIVE_UP {
                    shared.log.error(format!(
                        "giving up on {} events that could not be stored before shutdown",
                        pending.len()
                    ));
                    pending.clear();
                    return;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
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

/// Logs the outcome of moving a corrupt database aside.
pub(crate) fn log_recovery(shared: &Shared, recovered: Result<std::path::PathBuf, String>) {
    match recovered {
        Ok(moved) => shared.log.warn(format!(
            "the queue database was corrupt; moved it to {} and started a fresh one",
            moved.display()
        )),
        Err(e) => shared.storage_error("recreating a corrupt database", &e),
    }
}

/// Opting out: drops what is in memory and deletes everything queued and
/// every corrupt copy, all counted in `Stats::dropped_opt_out`. A storage
/// error leaves the request set, so the next message retries it.
fn purge(shared: &Shared, pending: &mut Vec<Built>) {
    shared.purge_requested.store(false, Ordering::Release);
    let c = &shared.counters;
    c.inc(&c.dropped_opt_out, pending.len() as u64);
    pending.clear();
    let mut delay = Shared::storage_retry_delay();
    for _ in 0..3 {
        let mut store = lock(&shared.store);
        let result = store.purge();
        if let Ok(deleted) = result {
            // Counted under the store lock, like every other removal.
            c.inc(&c.dropped_opt_out, deleted);
        }
        let left = crate::queue::remove_corrupt_copies(store.dir());
        drop(store);
        match result {
            Ok(deleted) => {
                c.set_in_flight(None);
                shared.log.info(format!(
                    "recording disabled: deleted {deleted} queued events"
                ));
                if left > 0 {
                    shared.log.warn(format!(
                        "opting out could not delete {left} corrupt database copies"
                    ));
                }
                return;
            }
            Err(e) => {
                shared.storage_error("deleting the data of an opted-out user", &e);
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
    }
    shared.purge_requested.store(true, Ordering::Release);
}
