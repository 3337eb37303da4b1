//! Where each log record goes, when objects roll, and the log checkpoint: the
//! writer's decisions, with no I/O, so they can be tested exhaustively.
//!
//! # The checkpoint
//!
//! `placed` is the offset after the last record handled (put in an open object,
//! or dropped as a duplicate or a non-event). An object is *uncommitted* from the
//! moment its first event is placed until the committer reports its commit.
//!
//! ```text
//! checkpoint = min(placed, first offset of every uncommitted object)
//! ```
//!
//! **Invariant:** every event below the checkpoint is in a committed object, or
//! is a duplicate of an event in a committed object. An event below the
//! checkpoint was handled (it is below `placed`). If it was kept, it went into an
//! object whose `first` is at or below it, so that object is not uncommitted: it
//! is committed. If it was dropped as a duplicate of a committed key, fine. If it
//! was dropped as a duplicate of a key in an uncommitted object `O`, then
//! `checkpoint ≤ first(O) <` its offset, a contradiction.
//!
//! Nothing else feeds the checkpoint: not the reader's position (it runs ahead
//! of what is placed while a chunk is handled), not the time of a roll, not the
//! committer. The writer alone reads [`Placement::checkpoint`] after taking in
//! the commits the committer reported, and persists it. It only grows: a new
//! object starts at `placed`, which is at or above the old minimum.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use foldhash::HashSet;

use crate::log::EventRecord;
use crate::state::MessageKey;
use crate::storage::format::{Encoder, Format};
use crate::storage::partition_dir;

/// When objects roll.
#[derive(Debug, Clone, Copy)]
pub struct RollLimits {
    /// Object format.
    pub format: Format,
    /// Roll an object at this size.
    pub roll_bytes: u64,
    /// Roll the largest open object when all of them hold more than this.
    pub max_buffer_bytes: u64,
    /// Roll an object at this age.
    pub roll_interval: Duration,
}

/// Memory per buffered event besides the encoder: its key in `keys` and in the
/// `pending` set.
const KEY_OVERHEAD: u64 = 48;

struct OpenObject {
    encoder: Box<dyn Encoder>,
    first: u64,
    last: u64,
    opened: Instant,
    keys: Vec<MessageKey>,
    min_received_ms: i64,
    max_received_ms: i64,
    /// Memory this object holds, as last measured (part of `buffered`).
    memory: u64,
}

/// An object taken out of the open set: finished, uncommitted until
/// [`Placement::committed`] is called with its `first`.
pub struct Rolled {
    /// Partition directory (`source=…/dt=…/hour=…/`).
    pub dir: String,
    /// First log offset it holds.
    pub first: u64,
    /// Last log offset it holds.
    pub last: u64,
    /// Its events' dedupe keys.
    pub keys: Vec<MessageKey>,
    /// Newest `receivedAt` of its events (ms).
    pub max_received_ms: i64,
    /// The finished object, or why the format could not finish it.
    pub bytes: Result<Vec<u8>, crate::storage::format::FormatError>,
}

/// What the writer has placed since its checkpoint (see the module docs).
pub struct Placement {
    limits: RollLimits,
    open: HashMap<String, OpenObject>,
    /// Rolled objects not yet committed: first offset → oldest `receivedAt` (ms).
    rolled: BTreeMap<u64, i64>,
    /// Keys of events in open and rolled (uncommitted) objects.
    pending: HashSet<MessageKey>,
    placed: u64,
    buffered: u64,
    last_partition: PartitionCache,
}

/// The partition directory of the last event (source, hour since the epoch).
#[derive(Default)]
struct PartitionCache {
    source: String,
    hour: i64,
    dir: String,
}

impl Placement {
    /// Starts placing records at `checkpoint`.
    pub fn new(limits: RollLimits, checkpoint: u64) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            rolled: BTreeMap::new(),
            pending: HashSet::default(),
            placed: checkpoint,
            buffered: 0,
            last_partition: PartitionCache::default(),
        }
    }

    /// The checkpoint: everything below it is settled (see the module docs).
    pub fn checkpoint(&self) -> u64 {
        let open = self.open.values().map(|o| o.first).min();
        let rolled = self.rolled.keys().next().copied();
        [open, rolled]
            .into_iter()
            .flatten()
            .fold(self.placed, u64::min)
    }

    /// The offset after the last record handled.
    pub fn placed(&self) -> u64 {
        self.placed
    }

    /// The oldest `receivedAt` (ms) of the events not yet committed, if any:
    /// dedupe keys they may need must outlive pruning (see the writer's `prune`).
    pub fn oldest_uncommitted_ms(&self) -> Option<i64> {
        let open = self.open.values().map(|o| o.min_received_ms);
        open.chain(self.rolled.values().copied()).min()
    }

    /// Memory held by all open objects together.
    pub fn buffered(&self) -> u64 {
        self.buffered
    }

    /// Handles a record that holds no event (an idempotency answer).
    pub fn skip(&mut self, offset: u64) {
        self.placed = offset + 1;
    }

    /// Handles one event. `known` says the dedupe index already has its key.
    /// Returns false if it was dropped as a duplicate. Objects that reach their
    /// size, or the largest one when memory is over budget, are rolled into `out`.
    pub fn place(
        &mut self,
        offset: u64,
        ev: &EventRecord,
        key: MessageKey,
        known: bool,
        now: Instant,
        out: &mut Vec<Rolled>,
    ) -> Result<bool, crate::storage::format::FormatError> {
        self.placed = offset + 1;
        if known || self.pending.contains(&key) {
            return Ok(false);
        }
        let dir = partition(&mut self.last_partition, ev);
        if !self.open.contains_key(dir) {
            let fresh = OpenObject {
                encoder: self.limits.format.encoder(),
                first: offset,
                last: offset,
                opened: now,
                keys: Vec::new(),
                min_received_ms: i64::MAX,
                max_received_ms: 0,
                memory: 0,
            };
            self.open.insert(dir.to_string(), fresh);
        }
        let Some(obj) = self.open.get_mut(dir) else {
            return Ok(false);
        };
        if let Err(e) = obj.encoder.push_json(&ev.json) {
            if obj.keys.is_empty() {
                self.open.remove(dir);
            }
            return Err(e);
        }
        obj.last = offset;
        obj.keys.push(key);
        obj.min_received_ms = obj.min_received_ms.min(ev.received_at_ms);
        obj.max_received_ms = obj.max_received_ms.max(ev.received_at_ms);
        let memory = obj.encoder.memory_bytes() + KEY_OVERHEAD * obj.keys.len() as u64;
        self.buffered = self.buffered - obj.memory + memory;
        obj.memory = memory;
        self.pending.insert(key);
        if obj.encoder.approx_bytes() >= self.limits.roll_bytes {
            let dir = dir.to_string();
            out.extend(self.roll(&dir));
        }
        if self.buffered > self.limits.max_buffer_bytes {
            let largest = self
                .open
                .iter()
                .max_by_key(|(_, o)| o.memory)
                .map(|(dir, _)| dir.clone());
            if let Some(dir) = largest {
                tracing::debug!(%dir, buffered = self.buffered, "rolling early: --max-buffer-bytes reached");
                out.extend(self.roll(&dir));
            }
        }
        Ok(true)
    }

    /// Rolls every object open for at least the roll interval.
    pub fn roll_expired(&mut self, now: Instant, out: &mut Vec<Rolled>) {
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.opened) >= self.limits.roll_interval)
            .map(|(k, _)| k.clone())
            .collect();
        for dir in due {
            out.extend(self.roll(&dir));
        }
    }

    /// Rolls every open object (shutdown).
    pub fn roll_all(&mut self, out: &mut Vec<Rolled>) {
        let all: Vec<String> = self.open.keys().cloned().collect();
        for dir in all {
            out.extend(self.roll(&dir));
        }
    }

    /// Takes in a committed object (or one given up: its events are then
    /// neither pending nor holding the checkpoint back).
    pub fn committed(&mut self, first: u64, keys: &[MessageKey]) {
        self.rolled.remove(&first);
        for k in keys {
            self.pending.remove(k);
        }
    }

    fn roll(&mut self, dir: &str) -> Option<Rolled> {
        let obj = self.open.remove(dir)?;
        self.buffered -= obj.memory;
        self.rolled.insert(obj.first, obj.min_received_ms);
        Some(Rolled {
            dir: dir.to_string(),
            first: obj.first,
            last: obj.last,
            max_received_ms: obj.max_received_ms,
            bytes: obj.encoder.finish(),
            keys: obj.keys,
        })
    }
}

/// The partition of an event; most fall in the one of the event before, so its
/// name is reused rather than formatted (and allocated) per event.
fn partition<'a>(cache: &'a mut PartitionCache, ev: &EventRecord) -> &'a str {
    let hour = ev.received_at_ms.div_euclid(3_600_000);
    if cache.source != ev.source || cache.hour != hour || cache.dir.is_empty() {
        cache.dir = partition_dir(&ev.source, ev.received_at_ms);
        cache.source.clone_from(&ev.source);
        cache.hour = hour;
    }
    &cache.dir
}

#[cfg(test)]
mod tests;
