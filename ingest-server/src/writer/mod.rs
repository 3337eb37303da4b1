//! The writer stage: log → dedupe → partition buffers → objects, exactly once.
//!
//! # How exactly-once holds
//!
//! State (all in `state.sqlite`, see [`crate::state`]): the dedupe index, the
//! write-ahead intents, and the log checkpoint `C`.
//!
//! The writer reads the log in offset order from `C`. For each event it computes
//! the dedupe key (source, messageId). If the key is in the index (committed
//! objects) or in an open buffer, the event is a duplicate and is dropped.
//! Otherwise it goes into the open object of its partition. Several partitions may
//! be open at once, so their offset ranges interleave.
//!
//! Rolling an object `O` holding offsets `first..=last` of partition `P`:
//!
//! 1. encode, then record the intent `P/<first>-<last>.<ext>` (committed to SQLite);
//! 2. upload the object under that name (atomic: visible whole or not at all);
//!    retried until it succeeds. A successful upload is durable, power loss
//!    included: S3 acknowledges a PUT once it is stored, and the local store
//!    `fsync`s the file and the directories it changed before returning (see
//!    [`crate::storage`]), so the commit below never names bytes still only in the
//!    page cache;
//! 3. one SQLite transaction: insert O's dedupe keys, delete the intent, and set
//!    `C = min(first offset of every still-open object, next offset to read)`,
//!    both taken when `O` was rolled.
//!
//! Steps 2 and 3 run on the committer thread ([`crate::writer::committer`]), one object
//! at a time in roll order, while this thread reads on. `O`'s keys stay in the
//! in-memory `pending` set until the committer reports the commit, so an event
//! read meanwhile is still recognised as a duplicate; after the report the index
//! has them. Objects rolled later are committed later, so `C` taken at roll time
//! stays valid: objects opened after the roll start at or after that read
//! position. With objects in flight, the idle advance of `C` waits for them.
//!
//! **Invariant:** every event at an offset below `C` is in a committed object, or
//! is a duplicate of an event in a committed object (or is not an event). Proof
//! sketch: an event below `C` was read; if it was kept it went to some object whose
//! `first` is ≤ its offset, and that object is not open (else `C ≤ first`), so it
//! was committed; if it was dropped as a duplicate of a committed key, fine; if it
//! was dropped as a duplicate of an event `e'` in an open object `O'`, then
//! `C ≤ first(O') ≤ offset(e') < offset`, a contradiction. `C` only grows: each new
//! open object starts at or after the read position, which is ≥ the old `C`.
//!
//! **Crash at any point, then restart:**
//!
//! * Intents left over are settled first. If the object exists, it is complete
//!   (uploads are atomic), so it is *re-committed*: read back, made durable
//!   ([`Sink::make_durable`]: the crash may have hit between the rename and the
//!   directory `fsync`), its dedupe keys inserted, the intent deleted. If it does not exist (crash before or during the
//!   upload), the intent is dropped. If it cannot be decoded, it is deleted and the
//!   intent dropped.
//! * Then the writer replays the log from `C`. Events of committed objects (including
//!   re-committed ones) are now in the dedupe index and are dropped; the others are
//!   buffered and written again into new objects. So every acknowledged event
//!   (durable in the log before its 200) ends up in exactly one committed object.
//! * Replayed objects need not be byte-identical to lost ones (roll timing differs);
//!   correctness rests on the dedupe keys, not on names. Names never collide: an
//!   object's `first` offset is an event it holds, and each event is kept in one
//!   object only, so two objects of one partition never share a `first`.
//! * The log is truncated only below `C`, after the commit that moved `C`.
//!
//! The dedupe window (`--dedupe-window`) prunes keys older than the window; the
//! checkpoint lag is bounded by `--roll-interval`, far below any sane window.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::log::{Log, LogReader, Record};
use crate::metrics::Metrics;
use crate::state::{Intent, KeyDeriver, MessageKey, ObjectCommit, StateDb};
use crate::storage::format::{Format, FormatError};
use crate::storage::{Sink, object_path};
use crate::writer::committer::{Committed, Committer, Parts, retry};

pub mod committer;
pub mod placement;
pub mod rewrite;

use crate::status::WriterStatus;

use placement::{Placement, RollLimits, Rolled};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Object format.
    pub format: Format,
    /// Roll at this size.
    pub roll_bytes: u64,
    /// Roll the largest open object when all of them hold more than this.
    pub max_buffer_bytes: u64,
    /// Roll at this age.
    pub roll_interval: Duration,
    /// Dedupe window.
    pub dedupe_window: Duration,
}

impl WriterConfig {
    fn limits(&self) -> RollLimits {
        RollLimits {
            format: self.format,
            roll_bytes: self.roll_bytes,
            max_buffer_bytes: self.max_buffer_bytes,
            roll_interval: self.roll_interval,
        }
    }
}

/// The writer, run on its own thread by [`spawn`].
pub struct Writer {
    cfg: WriterConfig,
    log: Arc<dyn Log>,
    db: StateDb,
    sink: Arc<dyn Sink>,
    rt: Handle,
    metrics: Arc<Metrics>,
    status: Arc<WriterStatus>,
    placement: Placement,
    keys: KeyDeriver,
    committer: Committer,
    /// The checkpoint as persisted.
    checkpoint: u64,
    /// Objects rolled by the last placement step, to hand to the committer.
    rolled: Vec<Rolled>,
}

/// Most records deduped with one index transaction.
const CHUNK: usize = 1024;

/// Starts the writer thread: settles intents, then follows the log.
/// `db` is the writer's connection to the state database, `commit_db` a second
/// one for its committer thread ([`crate::writer::committer`]).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    cfg: WriterConfig,
    log: Arc<dyn Log>,
    db: StateDb,
    commit_db: StateDb,
    sink: Arc<dyn Sink>,
    rt: Handle,
    metrics: Arc<Metrics>,
    status: Arc<WriterStatus>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let committer = Committer::spawn(Parts {
        db: commit_db,
        sink: sink.clone(),
        rt: rt.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
    })?;
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let checkpoint = read_checkpoint(&db);
            let keys = read_keys(&db);
            let mut w = Writer {
                placement: Placement::new(cfg.limits(), checkpoint),
                keys,
                cfg,
                log,
                db,
                sink,
                rt,
                metrics,
                status,
                committer,
                checkpoint,
                rolled: Vec::new(),
            };
            w.run();
        })
}

/// The stored checkpoint, retried until it can be read: starting from 0 instead
/// would be correct (everything below the real checkpoint is deduped) but could
/// replay a whole retained log.
fn read_checkpoint(db: &StateDb) -> u64 {
    loop {
        match db.checkpoint() {
            Ok(c) => return c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the log checkpoint; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// The data directory's dedupe key deriver, retried until it can be read.
fn read_keys(db: &StateDb) -> KeyDeriver {
    loop {
        match db.keys() {
            Ok(k) => return k,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the dedupe secret; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Writer {
    fn run(&mut self) {
        self.recover_intents();
        self.status.sink_healthy.store(true, Ordering::Release);
        let mut reader = self.reopen(self.checkpoint);
        let mut last_tick = Instant::now();
        let mut last_prune: Option<Instant> = None;
        loop {
            let stopping = self.status.stop.load(Ordering::Acquire);
            let wait = if stopping {
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            match reader.next(wait) {
                Ok(Some(first)) => {
                    // Take what is already durable (bounded) and dedupe it in one go.
                    let mut chunk = vec![first];
                    let mut failed = None;
                    while chunk.len() < CHUNK {
                        match reader.next(Duration::ZERO) {
                            Ok(Some(r)) => chunk.push(r),
                            Ok(None) => break,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    // Commits reported since the last chunk: their keys are in the
                    // index now, so the lookups below find them.
                    self.absorb_done();
                    self.handle_chunk(chunk);
                    if let Some(e) = failed {
                        tracing::error!(error = %e, "reading the log failed; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        reader = self.reopen(self.placement.placed());
                    }
                }
                Ok(None) => {
                    if stopping && reader.position() >= self.log.durable_end() {
                        self.placement.roll_all(&mut self.rolled);
                        self.ship_rolled();
                        let done = self.committer.finish();
                        self.absorb(done);
                        self.save_checkpoint();
                        tracing::info!(checkpoint = self.checkpoint, "writer drained");
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the log failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    reader = self.reopen(self.placement.placed());
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                self.absorb_done();
                self.placement
                    .roll_expired(Instant::now(), &mut self.rolled);
                self.ship_rolled();
                self.save_checkpoint();
                self.metrics
                    .log_lag_records
                    .set(self.log.durable_end().saturating_sub(self.checkpoint));
                self.metrics.log_lag_bytes.set(self.log.lag_bytes());
                self.metrics
                    .writer_buffered_bytes
                    .set(self.placement.buffered());
            }
            // Pruning waits until the writer has caught up with the log once: see
            // `prune` for why.
            let caught_up = reader.position() >= self.log.durable_end();
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) && caught_up {
                last_prune = Some(Instant::now());
                self.prune();
            }
        }
    }

    fn reopen(&self, offset: u64) -> Box<dyn LogReader> {
        loop {
            match self.log.reader(offset) {
                Ok(r) => return r,
                Err(e) => {
                    tracing::error!(error = %e, offset, "cannot open the log reader; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn handle_chunk(&mut self, chunk: Vec<(u64, Record)>) {
        let keys: Vec<Option<MessageKey>> = chunk
            .iter()
            .map(|(_, r)| match r {
                Record::Event(e) => Some(self.keys.key(&e.source, &e.message_id)),
                Record::Idempotency(_) => None,
            })
            .collect();
        // Objects rolled during this chunk keep their keys pending until the
        // committer reports them (between chunks), so the lookup below misses none.
        let known = self.lookup_many(&keys);
        let (mut events, mut duplicates) = (0, 0);
        let now = Instant::now();
        for (((offset, record), key), known) in chunk.into_iter().zip(keys).zip(known) {
            let (Record::Event(ev), Some(key)) = (record, key) else {
                self.placement.skip(offset);
                continue;
            };
            events += 1;
            match self
                .placement
                .place(offset, &ev, key, known, now, &mut self.rolled)
            {
                Ok(true) => {}
                Ok(false) => duplicates += 1,
                // Cannot happen for events the front-end built; never stall on one.
                Err(e) => {
                    tracing::error!(error = %e, offset, "dropping an event the format cannot encode")
                }
            }
            if !self.rolled.is_empty() {
                self.ship_rolled();
            }
        }
        self.metrics.events_read.inc_by(events);
        self.metrics.events_duplicate.inc_by(duplicates);
        self.metrics
            .writer_buffered_bytes
            .set(self.placement.buffered());
    }

    fn lookup_many(&self, keys: &[Option<MessageKey>]) -> Vec<bool> {
        loop {
            match self.db.contains_many(keys) {
                Ok(found) => return found,
                Err(e) => {
                    tracing::error!(error = %e, "dedupe lookup failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Records the intent of each rolled object and hands it to the committer.
    fn ship_rolled(&mut self) {
        for obj in std::mem::take(&mut self.rolled) {
            self.ship(obj);
        }
    }

    fn ship(&mut self, obj: Rolled) {
        let started = Instant::now();
        let bytes = match obj.bytes {
            Ok(b) => b,
            Err(e) => return self.give_up(obj.first, &obj.keys, e),
        };
        let path = object_path(&obj.dir, obj.first, obj.last, self.cfg.format);
        let intent = Intent {
            path: path.clone(),
            first: obj.first,
            last: obj.last,
        };
        retry(&self.status, &self.metrics, "record intent", || {
            self.db
                .record_intent(&intent, now_ms())
                .map_err(|e| e.to_string())
        });
        self.committer.send(crate::writer::committer::Rolled {
            path,
            payload: bytes::Bytes::from(bytes),
            keys: obj.keys,
            seen_at_ms: obj.max_received_ms,
            first: obj.first,
            started,
        });
    }

    /// Only a format bug gets here (every event was pushed fine). Losing
    /// silently is worse than loud: the events are counted as rejected.
    fn give_up(&mut self, first: u64, keys: &[MessageKey], e: FormatError) {
        let events = keys.len() as u64;
        tracing::error!(error = %e, events, "encoding an object failed; its events are dropped");
        self.metrics.events_rejected.inc_by(events);
        self.placement.committed(first, keys);
    }

    /// Takes in the commits the committer reported.
    fn absorb_done(&mut self) {
        let done = self.committer.take_done();
        self.absorb(done);
    }

    fn absorb(&mut self, done: Vec<Committed>) {
        for c in done {
            self.placement.committed(c.first, &c.keys);
        }
    }

    /// Persists the placement's checkpoint if it moved, then lets the log drop
    /// what is below it.
    fn save_checkpoint(&mut self) {
        let c = self.placement.checkpoint();
        if c <= self.checkpoint {
            return;
        }
        match self.db.set_checkpoint(c) {
            Ok(()) => {
                self.checkpoint = c;
                if let Err(e) = self.log.truncate_below(c) {
                    tracing::warn!(error = %e, "log truncation failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint update failed; will retry"),
        }
    }

    /// Removes from an object re-committed at start the events `import`
    /// committed first (see [`crate::writer::rewrite`]). They were never counted as
    /// written by this process: only as duplicates.
    fn rewrite(&mut self, path: &str, taken: &[MessageKey]) {
        if taken.is_empty() {
            return;
        }
        let removed = retry(&self.status, &self.metrics, "rewrite", || {
            self.rt
                .block_on(crate::writer::rewrite::apply(
                    self.sink.as_ref(),
                    &self.db,
                    path,
                    taken,
                ))
                .map_err(|e| format!("{e:#}"))
        });
        self.metrics.events_duplicate.inc_by(removed);
    }

    /// Settles the writer's intents and rewrites left by a crash (see the module
    /// docs). Intents and rewrites of `import` objects are `import`'s to settle: it
    /// may be running right now.
    fn recover_intents(&mut self) {
        let intents = loop {
            match self.db.pending_intents() {
                Ok(i) => break i,
                Err(e) => {
                    tracing::error!(error = %e, "reading intents failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        for intent in intents.iter().filter(|i| is_writer_object(&i.path)) {
            self.settle(intent);
        }
        let removed = retry(&self.status, &self.metrics, "settle rewrites", || {
            self.rt
                .block_on(crate::writer::rewrite::settle(
                    self.sink.as_ref(),
                    &self.db,
                    is_writer_object,
                ))
                .map_err(|e| format!("{e:#}"))
        });
        self.metrics.events_duplicate.inc_by(removed);
    }

    fn settle(&mut self, intent: &Intent) {
        let path = intent.path.clone();
        let found = retry(
            &self.status,
            &self.metrics,
            "read back an uncommitted object",
            || {
                self.rt
                    .block_on(self.sink.get(&path))
                    .map_err(|e| e.to_string())
            },
        );
        let Some(bytes) = found else {
            tracing::info!(%path, "intent without object: dropped, its events will be replayed");
            retry(&self.status, &self.metrics, "drop intent", || {
                self.db.abandon_intent(&path).map_err(|e| e.to_string())
            });
            return;
        };
        let decoded = Format::from_path(&path)
            .ok_or_else(|| "unknown extension".to_string())
            .and_then(|f| f.decode(&bytes).map_err(|e| e.to_string()))
            .and_then(|events| keys_of(&self.keys, &events));
        match decoded {
            Ok((keys, seen)) => {
                tracing::info!(%path, events = keys.len(), "re-committing an object uploaded before a crash");
                let (status, metrics) = (self.status.clone(), self.metrics.clone());
                let taken = retry(&status, &metrics, "re-commit", || {
                    // The crash may have hit before the upload's fsyncs finished.
                    self.rt
                        .block_on(self.sink.make_durable(&path))
                        .map_err(|e| e.to_string())?;
                    self.db
                        .commit_object(&ObjectCommit {
                            path: &path,
                            keys: &keys,
                            seen_at_ms: seen,
                        })
                        .map_err(|e| e.to_string())
                });
                self.rewrite(&path, &taken);
            }
            Err(e) => {
                tracing::warn!(%path, error = %e, "uncommitted object unreadable: deleting it; its events will be replayed");
                retry(&self.status, &self.metrics, "delete", || {
                    self.rt
                        .block_on(self.sink.delete(&path))
                        .map_err(|e| e.to_string())
                });
                retry(&self.status, &self.metrics, "drop intent", || {
                    self.db.abandon_intent(&path).map_err(|e| e.to_string())
                });
            }
        }
    }

    /// Deletes dedupe keys older than the window. The window is measured against
    /// the events still to be settled, not only the clock: after a restart or
    /// while the writer lags, the log above the checkpoint holds events received
    /// long ago, and each of them must still find the keys it could duplicate
    /// (or that are its own, from an object committed before the crash). So the
    /// writer prunes only once it has caught up with the log (the caller's
    /// condition), and never past the oldest event not yet committed. The margin
    /// covers requests whose `receivedAt` order differs from their log order.
    fn prune(&mut self) {
        let window = self.cfg.dedupe_window.as_millis() as i64;
        let margin = (window / 10).min(60_000);
        let horizon = self
            .placement
            .oldest_uncommitted_ms()
            .map_or(now_ms(), |oldest| oldest.min(now_ms()));
        let before = horizon - window - margin;
        if let Err(e) = self.db.prune(before) {
            tracing::warn!(error = %e, "pruning the dedupe index failed");
        }
        if let Ok(n) = self.db.dedupe_len() {
            self.metrics.dedupe_ids.set(n);
        }
        if let Ok(n) = self.db.size_bytes() {
            self.metrics.dedupe_bytes.set(n);
        }
    }
}

/// Dedupe keys (and newest receivedAt) of decoded events, from their `source` and
/// `messageId` fields.
pub fn keys_of(
    deriver: &KeyDeriver,
    events: &[serde_json::Value],
) -> Result<(Vec<MessageKey>, i64), String> {
    let mut keys = Vec::with_capacity(events.len());
    let mut seen = 0i64;
    for ev in events {
        let source = ev["source"].as_str().ok_or("event without `source`")?;
        let id = ev["messageId"]
            .as_str()
            .ok_or("event without `messageId`")?;
        keys.push(deriver.key(source, id));
        if let Some(t) = ev["receivedAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            seen = seen.max(t.timestamp_millis());
        }
    }
    if seen == 0 {
        seen = now_ms();
    }
    Ok((keys, seen))
}

/// Object names the writer produced are `<first>-<last>.<ext>`: true for them.
pub fn is_writer_object(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.split('.').next().unwrap_or("");
    let mut parts = stem.split('-');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
        if a.len() == 20 && b.len() == 20 && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}
