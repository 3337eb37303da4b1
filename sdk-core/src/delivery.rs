//! The delivery thread: decides when to upload and applies the outcome.
//!
//! At most one request is in flight per client, because this single thread
//! sends them. An upload round starts when:
//! - `flush_at` events are queued (the writer wakes us after its commit);
//! - the `flush_interval_ms` timer ticks while events are queued;
//! - `flush()` / `flush_blocking()` is called;
//! - the network becomes available;
//! - the client starts with events pending.
//!
//! A round sends batch after batch until the queue is empty or an attempt
//! fails. Nothing is sent while the network is marked unavailable, while the
//! write key is refused (401/403), while opted out, or before the persisted
//! `next_attempt_at_ms` of the oldest batch.

use std::time::{Duration, Instant};

use crate::LogLevel;
use crate::event::now_ms;
use crate::retry;
use crate::shared::{Shared, lock};
use crate::store::is_corruption;
use crate::store::{Batch, Limits, Removed, Store};
use crate::upload::{Outcome, Rejection, Uploader};

/// How often the age limit is enforced even when nothing else happens.
const AGE_CHECK_EVERY: Duration = Duration::from_secs(60);

/// What one attempt led to.
enum Step {
    /// Nothing left to send.
    Empty,
    /// Sent and applied; try the next batch.
    Progress,
    /// Wait until this wall-clock time (ms) before the next attempt; the
    /// second figure is the part of it the server asked for (`Retry-After`),
    /// 0 if none, which going back online does not cut short.
    WaitUntil(i64, i64),
    /// The write key was refused.
    Unauthorized,
}

/// Runs the delivery loop until `Signals::stop`.
pub(crate) fn run(shared: &Shared) {
    // The writer opens the database; nothing can be sent before.
    {
        let mut s = lock(&shared.signals);
        while !s.ready {
            if s.stop {
                return;
            }
            s = shared
                .signals_cv
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
    startup_housekeeping(shared);
    let next_attempt = lock(&shared.store).next_attempt_at();
    let mut retry_at_ms = match next_attempt {
        Ok(at) => at.unwrap_or(0),
        Err(e) => {
            shared.storage_error("reading the retry schedule", &e);
            0
        }
    };
    let uploader = Uploader::new(&shared.config, shared.transport.clone());
    let interval = Duration::from_millis(shared.config.flush_interval_ms);
    let mut next_tick = Instant::now() + interval;
    let mut last_age_check = Instant::now();
    // The next batch, made in the transaction that deleted the previous one.
    let mut prepared: Option<Prepared> = None;
    // Until when the server itself asked us to wait (Retry-After).
    let mut server_floor_ms: i64 = 0;
    loop {
        {
            let mut s = lock(&shared.signals);
            loop {
                if s.stop {
                    return;
                }
                if std::mem::take(&mut s.network_regained) && retry_at_ms > now_ms() {
                    // Failures while the network was going away say nothing about
                    // the collector: back online, retry at once rather than sit
                    // out a backoff of up to retry_max_delay_ms. The attempt
                    // count is kept (a failure now still backs off further), and
                    // a wait the server asked for (Retry-After) is honoured.
                    retry_at_ms = server_floor_ms.max(now_ms());
                    let mut store = lock(&shared.store);
                    if let Err(e) = store.cut_wait(retry_at_ms) {
                        drop(store);
                        shared.storage_error("rescheduling after the network came back", &e);
                    }
                }
                let now = Instant::now();
                if now >= next_tick {
                    next_tick = now + interval;
                    if shared.counters.queued_events() > 0 {
                        s.drain = true;
                    }
                }
                let queued = shared.counters.queued_events();
                let wanted = s.drain || queued >= u64::from(shared.config.flush_at);
                let allowed = s.network && !s.unauthorized && shared.is_enabled() && queued > 0;
                let wait_ms = retry_at_ms - now_ms();
                if wanted && allowed && wait_ms <= 0 {
                    break;
                }
                let mut timeout = next_tick.saturating_duration_since(now);
                if wanted && allowed && wait_ms > 0 {
                    timeout = timeout.min(Duration::from_millis(wait_ms as u64));
                }
                let age_due = AGE_CHECK_EVERY.saturating_sub(last_age_check.elapsed());
                if age_due.is_zero() {
                    break;
                }
                timeout = timeout.min(age_due).max(Duration::from_millis(1));
                s = shared
                    .signals_cv
                    .wait_timeout(s, timeout)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
        if last_age_check.elapsed() >= AGE_CHECK_EVERY {
            last_age_check = Instant::now();
            evict_expired(shared);
            // The age check alone does not start an upload.
            let s = lock(&shared.signals);
            let go =
                s.drain || shared.counters.queued_events() >= u64::from(shared.config.flush_at);
            let allowed = s.network && !s.unauthorized && retry_at_ms <= now_ms();
            drop(s);
            if !(go && allowed) {
                continue;
            }
        }
        let step = attempt(shared, &uploader, &mut prepared);
        match step {
            Step::Empty => shared.signal(|s| {
                // A flush() whose events were committed after our empty look
                // must not be forgotten: the writer updates the count before
                // it sets `drain`, both visible under this lock.
                if shared.counters.queued_events() == 0 {
                    s.drain = false;
                }
                s.generation += 1;
            }),
            Step::Progress => shared.signal(|s| s.generation += 1),
            Step::WaitUntil(at, server_floor) => {
                retry_at_ms = at;
                server_floor_ms = server_floor;
                // Keep draining once the wait is over.
                shared.signal(|s| {
                    s.drain = true;
                    s.generation += 1;
                });
            }
            Step::Unauthorized => shared.signal(|s| {
                s.unauthorized = true;
                s.generation += 1;
            }),
        }
    }
}

/// Enforces `max_event_age_ms`, counted and logged.
/// Evicts what a previous run left over the age limit or the byte cap, before the
/// first upload. It runs here, off the thread that called `Client::new`.
fn startup_housekeeping(shared: &Shared) {
    evict_expired(shared);
    let evicted = lock(&shared.store).evict_over_cap(shared.config.max_queue_bytes);
    match evicted {
        Ok(0) => {}
        Ok(n) => {
            shared.counters.inc(&shared.counters.dropped_byte_cap, n);
            shared.log.warn(format!(
                "queue over max_queue_bytes ({}) at startup: evicted the {n} oldest events",
                shared.config.max_queue_bytes
            ));
        }
        Err(e) => shared.storage_error("evicting over the byte cap", &e),
    }
}

pub(crate) fn evict_expired(shared: &Shared) {
    let cutoff = now_ms().saturating_sub(shared.config.max_event_age_ms as i64);
    let result = {
        let mut store = lock(&shared.store);
        let result = store.evict_expired(cutoff);
        // Counted before the lock is released, like every other removal.
        if let Ok(n) = result {
            shared.counters.inc(&shared.counters.dropped_age, n);
        }
        result
    };
    match result {
        Ok(0) => {}
        Ok(n) => {
            shared.log.warn(format!(
                "evicted {n} events older than max_event_age_ms ({} ms)",
                shared.config.max_event_age_ms
            ));
        }
        Err(e) => shared.storage_error("evicting expired events", &e),
    }
}

/// A batch made ahead of its send, with `Store::removals` at that time: it is
/// used only if nothing removed or regrouped events since.
struct Prepared {
    batch: Batch,
    removals: u64,
}

/// Loads (or makes) the current batch, sends it, and applies the outcome.
fn attempt(shared: &Shared, uploader: &Uploader, prepared: &mut Option<Prepared>) -> Step {
    evict_expired(shared);
    let limits = Limits {
        max_events: shared.config.max_batch_events,
        max_bytes: shared.config.max_batch_bytes,
        envelope_bytes: uploader.envelope_bytes(),
    };
    let loaded = {
        let mut store = lock(&shared.store);
        let ready = prepared
            .take()
            .filter(|p| p.removals == store.removals())
            .map(|p| p.batch);
        match ready.map_or_else(|| store.current_batch(limits, now_ms()), |b| Ok(Some(b))) {
            Ok(None) => {
                // The table is empty: resynchronise the counters with it,
                // so a drifted count can never keep the loop spinning.
                let _ = store.refresh_counts();
                Ok(None)
            }
            Ok(batch) => Ok(batch),
            Err(e) => {
                let recovered = is_corruption(&e).then(|| store.recover());
                Err((e, recovered))
            }
        }
    };
    let batch = match loaded {
        Ok(Some(batch)) => batch,
        Ok(None) => {
            shared.counters.set_in_flight(None);
            return Step::Empty;
        }
        Err((e, recovered)) => {
            shared.storage_error("preparing a batch", &e);
            if let Some(recovered) = recovered {
                crate::writer::log_recovery(shared, recovered);
            }
            return Step::WaitUntil(now_ms() + 1000, 0);
        }
    };
    shared
        .counters
        .set_in_flight(Some((batch.key.clone(), batch.events.len() as u64)));
    if batch.next_attempt_at_ms > now_ms() {
        // Persisted backoff from an earlier run; never shorten it, but don't
        // trust a clock that jumped back by more than the cap either.
        let cap = shared.config.retry_max_delay_ms.max(24 * 3600 * 1000) as i64;
        return Step::WaitUntil(batch.next_attempt_at_ms.min(now_ms() + cap), 0);
    }
    let payload = uploader.payload(batch.events.iter().map(|(_, e)| e.as_str()));
    shared.log.debug(format!(
        "sending batch {} ({} events, {} bytes, {} gzipped, attempt {})",
        batch.key,
        batch.events.len(),
        payload.raw_len,
        payload.gzipped.len(),
        batch.attempts + 1
    ));
    let outcome = uploader.send(&shared.write_key(), &batch.key, &payload);
    if lock(&shared.signals).stop {
        // Shutting down: the client may already have released the directory.
        // The batch stays persisted; the next run resends it under its key.
        return Step::Empty;
    }
    apply(shared, &batch, outcome, (limits, prepared))
}

/// A 400 whose `rejected` indices all lie outside the batch names nothing we
/// sent: re-batching would resend everything at once, in a loop. It is a
/// failed attempt, retried with backoff like any other.
fn out_of_range_is_a_retry(outcome: Outcome, batch: &Batch) -> Outcome {
    match outcome {
        Outcome::RejectedEvents { rejected }
            if rejected.iter().all(|r| r.index >= batch.events.len()) =>
        {
            let indices: Vec<String> = rejected.iter().map(|r| r.index.to_string()).collect();
            Outcome::Retry {
                reason: format!(
                    "HTTP 400 rejecting indices [{}], none of them in this batch of {} events",
                    indices.join(", "),
                    batch.events.len()
                ),
                retry_after: None,
            }
        }
        other => other,
    }
}

/// Turns an outcome into database changes, counters and log lines. After a
/// delivery that does not end the round, the next batch is made in the same
/// transaction and left in `next.1`.
fn apply(
    shared: &Shared,
    batch: &Batch,
    outcome: Outcome,
    next: (Limits, &mut Option<Prepared>),
) -> Step {
    let now = now_ms();
    let (limits, prepared) = next;
    let outcome = out_of_range_is_a_retry(outcome, batch);
    // The round goes on (see `run`) while draining or at flush_at; only then
    // is the next batch worth freezing now. Read before the store lock.
    let round_goes_on = lock(&shared.signals).drain
        || shared
            .counters
            .queued_events()
            .saturating_sub(batch.events.len() as u64)
            >= u64::from(shared.config.flush_at);
    let mut logs: Vec<(LogLevel, String)> = Vec::new();
    let counters = &shared.counters;
    // The counters are updated before the store lock is released, so a
    // flush_blocking that sees the events gone also sees them counted.
    let mut store = lock(&shared.store);
    let mut ctx = Applying {
        shared,
        batch,
        now,
        logs: &mut logs,
    };
    let (result, step) = match &outcome {
        Outcome::Delivered { rejected } => ctx.delivered(
            &mut store,
            rejected,
            round_goes_on.then_some(limits),
            prepared,
        ),
        Outcome::RejectedEvents { rejected } => ctx.rejected_events(&mut store, rejected),
        Outcome::RejectedBatch { reason } => ctx.rejected_batch(&mut store, reason),
        Outcome::TooLarge => ctx.too_large(&mut store),
        Outcome::KeyReused => ctx.key_reused(&mut store),
        Outcome::Unauthorized { status } => ctx.unauthorized(*status),
        Outcome::Retry {
            reason,
            retry_after,
        } => ctx.retry(&mut store, reason, *retry_after),
    };
    let step = match result {
        Ok(removed) => {
            counters.inc(&counters.uploaded, removed.delivered);
            counters.inc(&counters.dropped_rejected, removed.dropped);
            if removed.delivered > 0 {
                logs.push((
                    LogLevel::Debug,
                    format!(
                        "batch {} delivered ({} events)",
                        batch.key, removed.delivered
                    ),
                ));
            }
            if !matches!(step, Step::WaitUntil(..)) {
                counters.set_in_flight(None);
            }
            step
        }
        Err(e) => {
            logs.push((
                LogLevel::Error,
                format!("storage error while recording the upload outcome: {e}"),
            ));
            counters.set_last_error(e.to_string());
            Step::WaitUntil(now + 1000, 0)
        }
    };
    drop(store);
    for (level, message) in logs {
        shared.log.log(level, message);
    }
    // Opt-out during the request: the data is gone, don't report it in flight.
    if !shared.is_enabled() {
        counters.set_in_flight(None);
    }
    step
}

/// What applying one outcome needs; one method per outcome, each returning
/// the database change and what the uploader does next.
struct Applying<'a> {
    shared: &'a Shared,
    batch: &'a Batch,
    now: i64,
    logs: &'a mut Vec<(LogLevel, String)>,
}

type Applied = (rusqlite::Result<Removed>, Step);

impl Applying<'_> {
    /// 2xx: the batch's events go; the next batch is made in the same
    /// transaction when the round goes on.
    fn delivered(
        &mut self,
        store: &mut Store,
        rejected: &[Rejection],
        next: Option<Limits>,
        prepared: &mut Option<Prepared>,
    ) -> Applied {
        let indices = indices(rejected);
        log_rejections(self.logs, self.batch, rejected);
        let result = store
            .finish_batch(self.batch, &indices, next.map(|limits| (limits, self.now)))
            .map(|(removed, next)| {
                *prepared = next.map(|batch| Prepared {
                    batch,
                    removals: store.removals(),
                });
                removed
            });
        (result, Step::Progress)
    }

    /// 400 listing events: they go, the rest is sent again in a new batch.
    fn rejected_events(&mut self, store: &mut Store, rejected: &[Rejection]) -> Applied {
        let indices = indices(rejected);
        log_rejections(self.logs, self.batch, rejected);
        (
            store.reject_and_rebatch(self.batch, &indices, self.now),
            Step::Progress,
        )
    }

    /// 400 without a list: the whole batch goes (counted).
    fn rejected_batch(&mut self, store: &mut Store, reason: &str) -> Applied {
        self.logs.push((
            LogLevel::Warn,
            format!(
                "server rejected batch {} ({} events dropped): {reason}",
                self.batch.key,
                self.batch.events.len()
            ),
        ));
        (store.drop_batch(self.batch), Step::Progress)
    }

    /// 413: split in two (a single event is dropped, counted).
    fn too_large(&mut self, store: &mut Store) -> Applied {
        let msg = if self.batch.events.len() <= 1 {
            format!(
                "server answered 413 for a single event in batch {}: dropped",
                self.batch.key
            )
        } else {
            format!(
                "server answered 413 for batch {}: splitting it in two",
                self.batch.key
            )
        };
        self.logs.push((LogLevel::Warn, msg));
        (store.split_batch(self.batch, self.now), Step::Progress)
    }

    /// 422 `idempotency_key_reused`: the same events under a new key.
    fn key_reused(&mut self, store: &mut Store) -> Applied {
        self.logs.push((
            LogLevel::Warn,
            format!(
                "server says key {} was used before with other events (some were evicted since): sending the batch under a new key",
                self.batch.key
            ),
        ));
        (store.rekey_batch(self.batch, self.now), Step::Progress)
    }

    /// 401/403: keep everything, pause uploads.
    fn unauthorized(&mut self, status: u16) -> Applied {
        let msg = format!(
            "server refused the write key (HTTP {status}); uploads paused until set_write_key or restart, data kept"
        );
        self.shared.counters.set_last_error(msg.clone());
        self.logs.push((LogLevel::Error, msg));
        (Ok(Removed::default()), Step::Unauthorized)
    }

    /// A failed attempt: the next one after the backoff (and `Retry-After`).
    fn retry(&mut self, store: &mut Store, reason: &str, retry_after: Option<Duration>) -> Applied {
        let (shared, batch, now) = (self.shared, self.batch, self.now);
        let counters = &shared.counters;
        let attempts = batch.attempts.saturating_add(1);
        let delay = retry::delay(
            attempts,
            Duration::from_millis(shared.config.retry_base_delay_ms),
            Duration::from_millis(shared.config.retry_max_delay_ms),
            retry_after,
        );
        let at = now.saturating_add(delay.as_millis() as i64);
        counters.inc(&counters.retries, 1);
        counters.set_last_error(reason.to_string());
        self.logs.push((
            LogLevel::Warn,
            format!(
                "upload of batch {} failed (attempt {attempts}): {reason}; retrying in {} ms",
                batch.key,
                delay.as_millis()
            ),
        ));
        let server_floor = retry_after.map_or(0, |floor| {
            now.saturating_add(floor.min(delay).as_millis() as i64)
        });
        (
            store
                .schedule_retry(batch, attempts, at)
                .map(|_| Removed::default()),
            Step::WaitUntil(at, server_floor),
        )
    }
}

fn indices(rejected: &[Rejection]) -> Vec<usize> {
    rejected.iter().map(|r| r.index).collect()
}

fn log_rejections(logs: &mut Vec<(LogLevel, String)>, batch: &Batch, rejected: &[Rejection]) {
    for r in rejected {
        if r.index < batch.events.len() {
            logs.push((
                LogLevel::Warn,
                format!(
                    "server rejected event {} of batch {}: {}",
                    r.index, batch.key, r.reason
                ),
            ));
        }
    }
}
