//! The committer: the writer's second thread.
//!
//! A roll used to stop the writer for the whole upload and commit (an object of
//! 5 s of traffic is a million keys to insert and tens of MB to fsync). Now the
//! writer only finishes the object and records its intent, then hands it here.
//! The committer uploads it, commits it (dedupe keys and intent removal in one
//! transaction), and carries out a rewrite if another process committed some of
//! its events first, strictly in roll order, while the writer goes on reading.
//! Then it tells the writer, which only then forgets the object's keys from its
//! in-memory `pending` set (a duplicate read in between is still caught there)
//! and lets the object stop holding the log checkpoint back. The committer knows
//! nothing of the checkpoint: the writer alone computes and persists it (see
//! [`crate::writer::placement`]).
//!
//! At most [`IN_FLIGHT`] objects wait here: a slow sink slows the writer down
//! (and then the log lag answers 503), it does not grow memory.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::metrics::Metrics;
use crate::state::{MessageKey, ObjectCommit, StateDb};
use crate::status::WriterStatus;
use crate::storage::Sink;

/// Rolled objects waiting besides the one being committed.
pub const IN_FLIGHT: usize = 1;

/// An object the writer rolled: encoded, its intent recorded.
pub struct Rolled {
    /// Object path (the intent's).
    pub path: String,
    /// The encoded object.
    pub payload: Bytes,
    /// Dedupe keys of its events.
    pub keys: Vec<MessageKey>,
    /// Newest `receivedAt` of its events (ms), for pruning.
    pub seen_at_ms: i64,
    /// Its first log offset (how the writer knows it).
    pub first: u64,
    /// When the roll started (roll latency metric).
    pub started: Instant,
}

/// Sent back once an object is committed.
pub struct Committed {
    /// Its keys, now in the dedupe index.
    pub keys: Vec<MessageKey>,
    /// Its first log offset.
    pub first: u64,
}

/// Everything the committer thread needs.
pub struct Parts {
    /// Its own connection to the state database.
    pub db: StateDb,
    /// The sink.
    pub sink: Arc<dyn Sink>,
    /// Runtime for the sink's futures.
    pub rt: Handle,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Sink health, shared with the front-end.
    pub status: Arc<WriterStatus>,
}

/// The writer's handle on the committer thread.
pub struct Committer {
    tx: Option<SyncSender<Rolled>>,
    done: Receiver<Committed>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
}

impl Committer {
    /// Starts the thread.
    pub fn spawn(parts: Parts) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Rolled>(IN_FLIGHT);
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("writer-commit".into())
            .spawn(move || {
                let mut parts = parts;
                for rolled in rx {
                    let committed = commit(&mut parts, rolled);
                    if done_tx.send(committed).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            done,
            thread: Some(thread),
            in_flight: 0,
        })
    }

    /// Hands over an object; blocks while [`IN_FLIGHT`] others wait.
    pub fn send(&mut self, rolled: Rolled) {
        let path = rolled.path.clone();
        match &self.tx {
            Some(tx) if tx.send(rolled).is_ok() => self.in_flight += 1,
            // Only a bug stops the committer. Nothing is lost: the intent stays,
            // the log is not truncated past the object, and the next start
            // settles it. But say so loudly.
            _ => {
                tracing::error!(%path, "the committer thread is gone; the object is left to recovery at the next start")
            }
        }
    }

    /// Commits reported so far, without waiting.
    pub fn take_done(&mut self) -> Vec<Committed> {
        let mut out = Vec::new();
        while let Ok(c) = self.done.try_recv() {
            out.push(c);
        }
        self.in_flight -= out.len().min(self.in_flight);
        out
    }

    /// Waits for every object handed over, then stops the thread.
    pub fn finish(&mut self) -> Vec<Committed> {
        self.tx = None;
        let mut out = Vec::new();
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(c) => {
                    out.push(c);
                    self.in_flight -= 1;
                }
                Err(_) => break,
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        out
    }
}

fn commit(p: &mut Parts, r: Rolled) -> Committed {
    let size = r.payload.len() as u64;
    let events = r.keys.len() as u64;
    retry(&p.status, &p.metrics, "upload", || {
        p.rt.block_on(p.sink.put(&r.path, r.payload.clone()))
            .map_err(|e| e.to_string())
    });
    let taken = retry(&p.status, &p.metrics, "commit", || {
        p.db.commit_object(&ObjectCommit {
            path: &r.path,
            keys: &r.keys,
            seen_at_ms: r.seen_at_ms,
        })
        .map_err(|e| e.to_string())
    });
    p.status.sink_healthy.store(true, Ordering::Release);
    // Exact count is refreshed by `prune`; in between, count what we add.
    p.metrics.dedupe_ids.inc_by(events);
    let mut removed = 0;
    if !taken.is_empty() {
        removed = retry(&p.status, &p.metrics, "rewrite", || {
            p.rt.block_on(crate::writer::rewrite::apply(
                p.sink.as_ref(),
                &p.db,
                &r.path,
                &taken,
            ))
            .map_err(|e| format!("{e:#}"))
        });
        p.metrics.events_duplicate.inc_by(removed);
    }
    // Counted once the object is final: events another process committed
    // first were removed from it again and count as duplicates, not as written.
    p.metrics.object(
        size,
        events.saturating_sub(removed),
        r.started.elapsed().as_micros() as u64,
    );
    tracing::debug!(path = %r.path, events, size, "object committed");
    Committed {
        keys: r.keys,
        first: r.first,
    }
}

/// Retries a step until it works, with exponential backoff from 100 ms capped
/// at 5 s (backon), marking the sink unhealthy (readiness, 503s) while it
/// fails. Shutdown does not abandon it: an unfinished step would be settled by
/// recovery on the next start, but finishing it keeps the object.
pub fn retry<T>(
    status: &WriterStatus,
    metrics: &Metrics,
    what: &str,
    mut step: impl FnMut() -> Result<T, String>,
) -> T {
    use backon::{BlockingRetryable, ExponentialBuilder};
    let policy = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    loop {
        let attempt = (&mut step)
            .retry(policy)
            .sleep(std::thread::sleep)
            .notify(|e: &String, delay: Duration| {
                status.sink_healthy.store(false, Ordering::Release);
                metrics.sink_errors.inc_by(1);
                tracing::warn!(error = %e, "{what} failed; retrying in {delay:?}");
            })
            .call();
        // Without a limit on attempts, backon only returns on success.
        if let Ok(v) = attempt {
            return v;
        }
    }
}
