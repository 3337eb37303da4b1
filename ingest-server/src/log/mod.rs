//! The durable local log (the broker stage), with group commit.
//!
//! The front-end hands a request's records to [`Broker::append`]; a dedicated log
//! thread collects every append that is waiting, writes them with one `write`,
//! makes them durable with one `fdatasync`, and only then completes all of them.
//! So one fsync covers many concurrent requests, and a 200 is only sent for
//! records that survive a crash.
//!
//! Every record gets the next offset (0, 1, 2, …); offsets never repeat. Files
//! are segments named `<first offset, 20 digits>.log` under `<data-dir>/log/`.
//! A record on disk is `[u32 body length][u32 crc32(body)][body]`, body =
//! `[u64 offset][u8 kind][fields]`. On open, the last segment is scanned and
//! cut at the first torn or corrupt record (a crash mid-write), which was never
//! acknowledged. [`Broker::truncate_below`] deletes whole segments below the
//! writer's checkpoint.
//!
//! A failed write (disk full) is cut back off the file, and the cut is made
//! durable before every waiting request is told (it answers 503), so those
//! records cannot reappear after a crash; the next append simply tries again. If
//! the cut itself fails, the log refuses appends until the server restarts.

use std::sync::Mutex;
use std::time::Duration;

mod file;

pub use file::{FileLog, SEGMENT_BYTES};

/// An error of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Disk I/O failed (e.g. disk full); the records were not kept.
    #[error("log I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Too much is waiting to be written.
    #[error("the log is overloaded")]
    Overloaded,
    /// The log thread has stopped (shutdown).
    #[error("the log is closed")]
    Closed,
    /// A record on disk is not what it should be.
    #[error("log is corrupt: {0}")]
    Corrupt(String),
}

/// One accepted event, enriched, as the writer will store it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// `receivedAt` in milliseconds since the epoch (chooses the partition).
    pub received_at_ms: i64,
    /// Source name (chooses the partition, scopes dedupe).
    pub source: String,
    /// The event's `messageId` (dedupe key).
    pub message_id: String,
    /// The event as stored: one JSON object, no newline.
    pub json: Vec<u8>,
}

/// The answer given to an `Idempotency-Key`, kept so a retry gets the same answer.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    /// Scoped key (`<source>\n<Idempotency-Key>`).
    pub key: String,
    /// When it was answered (ms since the epoch).
    pub seen_at_ms: i64,
    /// HTTP status.
    pub status: u16,
    /// What the request sent ([`crate::http::validate::fingerprint`]); `None` in records
    /// written before fingerprints were kept.
    pub fingerprint: Option<[u8; 16]>,
    /// Response body.
    pub body: Vec<u8>,
}

/// A log record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An accepted event.
    Event(EventRecord),
    /// A response to replay for an idempotency key.
    Idempotency(IdempotencyRecord),
}

/// Called by the log thread with the idempotency records of a group right after
/// the group is durable and before the appends complete.
pub type IdempotencyHook = Box<dyn FnMut(&[&IdempotencyRecord]) + Send>;

/// The broker stage as the front-end and the sources see it: a place to append
/// records durably. The local [`FileLog`] is one; the NATS JetStream broker of
/// the distributed mode ([`crate::cluster`]) is another.
pub trait Broker: Send + Sync {
    /// Appends records durably; the returned channel yields once they are
    /// durable (with the first offset, where the broker has offsets), or an
    /// error if they were not kept.
    fn append(
        &self,
        records: Vec<Record>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u64, String>>, LogError>;
    /// Bytes accepted but not yet in committed objects, where the broker knows
    /// it (the front-end refuses events above `--max-log-lag`); 0 otherwise.
    fn lag_bytes(&self) -> u64;
    /// False while appends are expected to fail (a failed write, a lost broker).
    fn healthy(&self) -> bool;
    /// Stops taking appends after every append already queued is written.
    fn close(&self);
}

/// The local log as the writer sees it: ordered offsets to read from and a
/// checkpoint below which records may go.
pub trait Log: Broker {
    /// One past the last durable offset.
    fn durable_end(&self) -> u64;
    /// A reader of durable records, from `offset` on.
    fn reader(&self, offset: u64) -> Result<Box<dyn LogReader>, LogError>;
    /// Records that `offset` is the writer's checkpoint: everything below it may go.
    fn truncate_below(&self, offset: u64) -> Result<(), LogError>;
}

/// A stored `Idempotency-Key` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: Vec<u8>,
    /// What the answered request sent, if known ([`crate::http::validate::fingerprint`]).
    pub fingerprint: Option<[u8; 16]>,
}

/// Where the front-end looks up the answers given to `Idempotency-Key`s: the
/// state database in the single process, a JetStream KV bucket shared by every
/// front-end in the distributed mode.
pub trait Answers: Send + Sync {
    /// The answer stored for the (source-scoped) key since `since_ms`, if any.
    fn lookup<'a>(
        &'a self,
        key: &'a str,
        since_ms: i64,
    ) -> futures::future::BoxFuture<'a, Result<Option<StoredAnswer>, String>>;
}

/// Reads durable records in order.
pub trait LogReader: Send {
    /// The next record, or `None` if none became durable within `timeout`.
    fn next(&mut self, timeout: Duration) -> Result<Option<(u64, Record)>, LogError>;
    /// Offset of the record `next` returns next.
    fn position(&self) -> u64;
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: every critical
/// section here is a plain assignment).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
