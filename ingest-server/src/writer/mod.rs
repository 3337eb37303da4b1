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
//!    [`crate::sink`]), so the commit below never names bytes still only in the
//!    page cache;
//! 3. one SQLite transaction: insert O's dedupe keys, delete the intent, and set
//!    `C = min(first offset of every still-open object, next offset to read)`,
//!    both taken when `O` was rolled.
//!
//! Steps 2 and 3 run on the committer thread ([`crate::committer`]), one object
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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use foldhash::HashSet;
use tokio::runtime::Handle;

use crate::committer::{Committed, Committer, Parts, Rolled, retry};
use crate::format::{Encoder, Format};
use crate::log::{Broker, EventRecord, LogReader, Record};
use crate::metrics::Metrics;
use crate::sink::{Sink, object_path, partition_dir};
use crate::state::{Intent, MessageKey, ObjectCommit, StateDb, message_key};

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

/// Shared flags between the writer and the front-end.
#[derive(Default)]
pub struct WriterStatus {
    /// Set to ask the writer to drain the log, roll everything and stop.
    pub stop: AtomicBool,
    /// False while uploads or commits are failing.
    pub sink_healthy: AtomicBool,
}

struct OpenObject {
    encoder: Box<dyn Encoder>,
    first: u64,
    last: u64,
    opened: Instant,
    keys: Vec<MessageKey>,
    max_received_ms: i64,
    /// Memory this object holds, as last measured (part of `Writer::buffered`).
    memory: u64,
}

/// Memory per buffered event besides the encoder: its key in `keys` and in the
/// `pending` set.
const KEY_OVERHEAD: u64 = 48;

/// The writer, run on its own thread by [`spawn`].
pub struct Writer {
    cfg: WriterConfig,
    log: Arc<dyn Broker>,
    db: StateDb,
    sink: Arc<dyn Sink>,
    rt: Handle,
    metrics: Arc<Metrics>,
    status: Arc<WriterStatus>,
    open: HashMap<String, OpenObject>,
    /// Keys of events in open objects and in objects not yet committed.
    pending: HashSet<MessageKey>,
    committer: Committer,
    checkpoint: u64,
    last_partition: PartitionCache,
    /// Memory of all open objects together.
    buffered: u64,
}

/// The partition directory of the last event (source, hour since the epoch).
#[derive(Default)]
struct PartitionCache {
    source: String,
    hour: i64,
    dir: String,
}

/// Most records deduped with one index transaction.
const CHUNK: usize = 1024;

/// Starts the writer thread: settles intents, then follows the log.
/// `db` is the writer's connection to the state database, `commit_db` a second
/// one for its committer thread ([`crate::committer`]).
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    cfg: WriterConfig,
    log: Arc<dyn Broker>,
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
        log: log.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
    })?;
    std::thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let checkpoint = read_checkpoint(&db);
            let mut w = Writer {
                cfg,
                log,
                db,
                sink,
                rt,
                metrics,
                status,
                open: HashMap::new(),
                pending: HashSet::default(),
                committer,
                checkpoint,
                last_partition: PartitionCache::default(),
                buffered: 0,
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Writer {
    fn run(&mut self) {
        self.recover_intents();
        self.status.sink_healthy.store(true, Ordering::Release);
        self.prune();
        let mut reader = self.open_reader();
        let mut last_tick = Instant::now();
        let mut last_prune = Instant::now();
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
                    self.handle_chunk(chunk, reader.as_ref());
                    if let Some(e) = failed {
                        tracing::error!(error = %e, "reading the log failed; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        reader = self.reopen(reader.position());
                    }
                }
                Ok(None) => {
                    if stopping && reader.position() >= self.log.durable_end() {
                        let keys: Vec<String> = self.open.keys().cloned().collect();
                        for k in keys {
                            self.roll(&k, reader.as_ref());
                        }
                        let done = self.committer.finish();
                        self.absorb(done);
                        self.advance_idle(reader.as_ref());
                        tracing::info!(checkpoint = self.checkpoint, "writer drained");
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the log failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    reader = self.reopen(reader.position());
                }
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                self.absorb_done();
                self.roll_expired(reader.as_ref());
                self.advance_idle(reader.as_ref());
                self.metrics.log_lag_records.store(
                    self.log.durable_end().saturating_sub(self.checkpoint),
                    Ordering::Relaxed,
                );
                self.metrics
                    .log_lag_bytes
                    .store(self.log.lag_bytes(), Ordering::Relaxed);
                self.metrics
                    .writer_buffered_bytes
                    .store(self.buffered, Ordering::Relaxed);
            }
            if last_prune.elapsed() >= Duration::from_secs(60) {
                last_prune = Instant::now();
                self.prune();
            }
        }
    }

    fn open_reader(&self) -> Box<dyn LogReader> {
        self.reopen(self.checkpoint)
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

    fn handle_chunk(&mut self, chunk: Vec<(u64, Record)>, reader: &dyn LogReader) {
        let keys: Vec<Option<MessageKey>> = chunk
            .iter()
            .map(|(_, r)| match r {
                Record::Event(e) => Some(message_key(&e.source, &e.message_id)),
                Record::Idempotency(_) => None,
            })
            .collect();
        // Objects rolled during this chunk keep their keys in `pending` until the
        // committer reports them (between chunks), so the lookup below misses none.
        let known = self.lookup_many(&keys);
        let mut events = 0;
        for (((offset, record), key), known) in chunk.into_iter().zip(keys).zip(known) {
            if let (Record::Event(ev), Some(key)) = (record, key) {
                self.handle(offset, ev, key, known, reader);
                events += 1;
            }
        }
        self.metrics
            .events_read
            .fetch_add(events, Ordering::Relaxed);
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

    fn handle(
        &mut self,
        offset: u64,
        ev: EventRecord,
        key: MessageKey,
        known: bool,
        reader: &dyn LogReader,
    ) {
        if known || self.pending.contains(&key) {
            self.metrics
                .events_duplicate
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Most events fall in the partition of the one before: reuse its name
        // rather than formatting (and allocating) one per event.
        let hour = ev.received_at_ms.div_euclid(3_600_000);
        let cache = &mut self.last_partition;
        if cache.source != ev.source || cache.hour != hour || cache.dir.is_empty() {
            cache.dir = partition_dir(&ev.source, ev.received_at_ms);
            cache.source.clone_from(&ev.source);
            cache.hour = hour;
        }
        let dir = cache.dir.as_str();
        if !self.open.contains_key(dir) {
            self.open.insert(
                dir.to_string(),
                OpenObject {
                    encoder: self.cfg.format.encoder(),
                    first: offset,
                    last: offset,
                    opened: Instant::now(),
                    keys: Vec::new(),
                    max_received_ms: 0,
                    memory: 0,
                },
            );
        }
        let Some(obj) = self.open.get_mut(dir) else {
            return;
        };
        if let Err(e) = obj.encoder.push_json(&ev.json) {
            // Cannot happen for events the front-end built; never stall on one.
            tracing::error!(error = %e, offset, "dropping an event the format cannot encode");
            return;
        }
        obj.last = offset;
        obj.keys.push(key);
        obj.max_received_ms = obj.max_received_ms.max(ev.received_at_ms);
        let memory = obj.encoder.memory_bytes() + KEY_OVERHEAD * obj.keys.len() as u64;
        self.buffered = self.buffered - obj.memory + memory;
        obj.memory = memory;
        self.pending.insert(key);
        if obj.encoder.approx_bytes() >= self.cfg.roll_bytes {
            let dir = dir.to_string();
            self.roll(&dir, reader);
        }
        if self.buffered > self.cfg.max_buffer_bytes {
            self.roll_largest(reader);
        }
    }

    /// Keeps memory bounded however many partitions are open (many sources):
    /// the largest open object is rolled early.
    fn roll_largest(&mut self, reader: &dyn LogReader) {
        let largest = self
            .open
            .iter()
            .max_by_key(|(_, o)| o.memory)
            .map(|(dir, _)| dir.clone());
        if let Some(dir) = largest {
            tracing::debug!(%dir, buffered = self.buffered, "rolling early: --max-buffer-bytes reached");
            self.roll(&dir, reader);
        }
    }

    fn roll_expired(&mut self, reader: &dyn LogReader) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.opened.elapsed() >= self.cfg.roll_interval)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.roll(&k, reader);
        }
    }

    /// With nothing open, everything read is settled: move the checkpoint.
    fn advance_idle(&mut self, reader: &dyn LogReader) {
        let pos = reader.position();
        if !self.open.is_empty() || self.committer.in_flight() > 0 || pos <= self.checkpoint {
            return;
        }
        match self.db.set_checkpoint(pos) {
            Ok(()) => {
                self.checkpoint = pos;
                if let Err(e) = self.log.truncate_below(pos) {
                    tracing::warn!(error = %e, "log truncation failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint update failed; will retry"),
        }
    }

    fn roll(&mut self, dir: &str, reader: &dyn LogReader) {
        let Some(obj) = self.open.remove(dir) else {
            return;
        };
        self.buffered -= obj.memory;
        self.metrics
            .writer_buffered_bytes
            .store(self.buffered, Ordering::Relaxed);
        let started = Instant::now();
        let events = obj.keys.len() as u64;
        let bytes = match obj.encoder.finish() {
            Ok(b) => b,
            Err(e) => {
                // Only a format bug gets here (every event was pushed fine). Losing
                // silently is worse than loud: count them as rejected.
                tracing::error!(error = %e, events, "encoding an object failed; its events are dropped");
                self.metrics
                    .events_rejected
                    .fetch_add(events, Ordering::Relaxed);
                for k in &obj.keys {
                    self.pending.remove(k);
                }
                return;
            }
        };
        let path = object_path(dir, obj.first, obj.last, self.cfg.format);
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
        // Valid when the committer gets to it: see `crate::committer`.
        let checkpoint = self
            .open
            .values()
            .map(|o| o.first)
            .min()
            .unwrap_or(u64::MAX)
            .min(reader.position());
        self.committer.send(Rolled {
            path,
            payload: bytes::Bytes::from(bytes),
            keys: obj.keys,
            seen_at_ms: obj.max_received_ms,
            checkpoint,
            started,
        });
    }

    /// Takes in the commits the committer reported.
    fn absorb_done(&mut self) {
        let done = self.committer.take_done();
        self.absorb(done);
    }

    fn absorb(&mut self, done: Vec<Committed>) {
        for c in done {
            for k in &c.keys {
                self.pending.remove(k);
            }
            self.checkpoint = self.checkpoint.max(c.checkpoint);
        }
    }

    /// Removes from an object re-committed at start the events `import`
    /// committed first (see [`crate::rewrite`]). They were never counted as
    /// written by this process: only as duplicates.
    fn rewrite(&mut self, path: &str, taken: &[MessageKey]) {
        if taken.is_empty() {
            return;
        }
        let removed = retry(&self.status, &self.metrics, "rewrite", || {
            self.rt
                .block_on(crate::rewrite::apply(
                    self.sink.as_ref(),
                    &self.db,
                    path,
                    taken,
                ))
                .map_err(|e| format!("{e:#}"))
        });
        self.metrics
            .events_duplicate
            .fetch_add(removed, Ordering::Relaxed);
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
                .block_on(crate::rewrite::settle(
                    self.sink.as_ref(),
                    &self.db,
                    is_writer_object,
                ))
                .map_err(|e| format!("{e:#}"))
        });
        self.metrics
            .events_duplicate
            .fetch_add(removed, Ordering::Relaxed);
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
            .and_then(|events| keys_of(&events));
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
                            checkpoint: None,
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

    fn prune(&mut self) {
        let before = now_ms() - self.cfg.dedupe_window.as_millis() as i64;
        if let Err(e) = self.db.prune(before) {
            tracing::warn!(error = %e, "pruning the dedupe index failed");
        }
        if let Ok(n) = self.db.dedupe_len() {
            self.metrics.dedupe_ids.store(n, Ordering::Relaxed);
        }
        if let Ok(n) = self.db.size_bytes() {
            self.metrics.dedupe_bytes.store(n, Ordering::Relaxed);
        }
    }
}

/// Dedupe keys (and newest receivedAt) of decoded events, from their `source` and
/// `messageId` fields.
pub fn keys_of(events: &[serde_json::Value]) -> Result<(Vec<MessageKey>, i64), String> {
    let mut keys = Vec::with_capacity(events.len());
    let mut seen = 0i64;
    for ev in events {
        let source = ev["source"].as_str().ok_or("event without `source`")?;
        let id = ev["messageId"]
            .as_str()
            .ok_or("event without `messageId`")?;
        keys.push(message_key(source, id));
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
