//! Batches with a stable identity.
//!
//! A batch is made from the oldest unbatched events, up to `max_batch_events`
//! and `max_batch_bytes`. Its membership (`events.batch_id`) and its UUIDv7
//! idempotency key are committed *before* the first send, so every retry, even
//! after a restart, sends the same key with the same events. Only one batch
//! is sent at a time, oldest first.
//!
//! Outcomes rewrite batches in single transactions:
//! - delivered: its events are deleted (minus any the server rejected, which
//!   are deleted too and counted as rejected);
//! - per-event rejection on 400: the rejected events are deleted, the rest
//!   move to a new batch with a new key;
//! - 413: the batch is split into two new batches (first half first), each
//!   with a new key;
//! - retryable failure: `attempts` and `next_attempt_at_ms` are updated.

use rusqlite::{OptionalExtension, params};

use super::Store;

/// A persisted batch, loaded with its events in send order.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub id: i64,
    pub key: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    /// `(event id, event JSON)` in id order; index = position in the request.
    pub events: Vec<(i64, String)>,
}

/// Limits for a new batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_events: u32,
    pub max_bytes: u64,
    /// Bytes of the request envelope around the events.
    pub envelope_bytes: u64,
}

/// How many events a rewrite deleted as delivered and as dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed {
    pub delivered: u64,
    pub dropped: u64,
}

fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Store {
    /// The oldest persisted batch, or a new one made from the oldest events.
    /// `None` when nothing is queued.
    pub(crate) fn current_batch(
        &mut self,
        limits: Limits,
        now_ms: i64,
    ) -> rusqlite::Result<Option<Batch>> {
        let tx = self.conn.transaction()?;
        let batch = oldest_or_new(&tx, limits, now_ms)?;
        tx.commit()?;
        Ok(batch)
    }

    /// The wall-clock time before which the oldest batch must not be sent.
    pub(crate) fn next_attempt_at(&self) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT next_attempt_at_ms FROM batches ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
    }

    /// 2xx: deletes the batch. Events at `rejected` indices count as dropped.
    ///
    /// With `next`, the same transaction also makes (or loads) the next batch
    /// and returns it: its membership and key are committed by the one fsync
    /// that also makes the delivery durable, instead of a second transaction.
    pub(crate) fn finish_batch(
        &mut self,
        batch: &Batch,
        rejected: &[usize],
        next: Option<(Limits, i64)>,
    ) -> rusqlite::Result<(Removed, Option<Batch>)> {
        let tx = self.conn.transaction()?;
        let mut removed = Removed::default();
        let mut bytes = 0u64;
        if rejected.is_empty() {
            // The common case: two statements instead of one per event.
            let (n, b): (i64, i64) = tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM events WHERE batch_id = ?1",
                [batch.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            tx.execute("DELETE FROM events WHERE batch_id = ?1", [batch.id])?;
            removed.delivered = n as u64;
            bytes = b as u64;
        } else {
            let mut del = tx.prepare_cached("DELETE FROM events WHERE id = ?1 RETURNING bytes")?;
            for (index, (event_id, _)) in batch.events.iter().enumerate() {
                let b: Option<i64> = del.query_row([event_id], |r| r.get(0)).optional()?;
                if let Some(b) = b {
                    bytes += b as u64;
                    if rejected.contains(&index) {
                        removed.dropped += 1;
                    } else {
                        removed.delivered += 1;
                    }
                }
            }
        }
        tx.execute("DELETE FROM batches WHERE id = ?1", [batch.id])?;
        let next = match next {
            Some((limits, now_ms)) => oldest_or_new(&tx, limits, now_ms)?,
            None => None,
        };
        tx.commit()?;
        self.counters
            .sub_queued(removed.delivered + removed.dropped, bytes);
        Ok((removed, next))
    }

    /// 400 with a list: deletes the rejected events and moves the others to a
    /// new batch with a new key.
    pub(crate) fn reject_and_rebatch(
        &mut self,
        batch: &Batch,
        rejected: &[usize],
        now_ms: i64,
    ) -> rusqlite::Result<Removed> {
        let groups = [batch
            .events
            .iter()
            .enumerate()
            .filter(|(i, _)| !rejected.contains(i))
            .map(|(_, (id, _))| *id)
            .collect::<Vec<_>>()];
        self.rewrite(batch, rejected, &groups, now_ms)
    }

    /// 413: replaces the batch with two halves, each with a new key. A batch of
    /// one event is dropped instead (counted).
    pub(crate) fn split_batch(&mut self, batch: &Batch, now_ms: i64) -> rusqlite::Result<Removed> {
        if batch.events.len() <= 1 {
            return self.drop_batch(batch);
        }
        let ids: Vec<i64> = batch.events.iter().map(|(id, _)| *id).collect();
        let (a, b) = ids.split_at(ids.len() / 2);
        self.rewrite(batch, &[], &[a.to_vec(), b.to_vec()], now_ms)
    }

    /// 422 `idempotency_key_reused`: the same events as one new batch with a
    /// new key. Those the server stored the first time are dropped there by
    /// their `messageId`.
    pub(crate) fn rekey_batch(&mut self, batch: &Batch, now_ms: i64) -> rusqlite::Result<Removed> {
        let ids: Vec<i64> = batch.events.iter().map(|(id, _)| *id).collect();
        self.rewrite(batch, &[], &[ids], now_ms)
    }

    /// 400 without a list: drops every event of the batch (counted).
    pub(crate) fn drop_batch(&mut self, batch: &Batch) -> rusqlite::Result<Removed> {
        let all: Vec<usize> = (0..batch.events.len()).collect();
        self.rewrite(batch, &all, &[], 0)
    }

    /// Retryable failure: remembers the attempt count and when to try again.
    pub(crate) fn schedule_retry(
        &mut self,
        batch: &Batch,
        attempts: u32,
        next_attempt_at_ms: i64,
    ) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE batches SET attempts = ?2, next_attempt_at_ms = ?3 WHERE id = ?1",
            params![batch.id, attempts, next_attempt_at_ms],
        )?;
        Ok(())
    }

    /// Moves the wait of every persisted batch to at most `at_ms` (the network
    /// came back; see `delivery`).
    pub(crate) fn cut_wait(&mut self, at_ms: i64) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE batches SET next_attempt_at_ms = ?1 WHERE next_attempt_at_ms > ?1",
            [at_ms],
        )?;
        Ok(())
    }

    /// In one transaction: deletes the events at `drop_indices`, deletes the
    /// batch, and creates one new batch per non-empty group of event ids.
    fn rewrite(
        &mut self,
        batch: &Batch,
        drop_indices: &[usize],
        groups: &[Vec<i64>],
        now_ms: i64,
    ) -> rusqlite::Result<Removed> {
        self.note_removal();
        let tx = self.conn.transaction()?;
        let mut removed = Removed::default();
        let mut bytes = 0u64;
        {
            let mut del = tx.prepare_cached("DELETE FROM events WHERE id = ?1 RETURNING bytes")?;
            for &index in drop_indices {
                if let Some((event_id, _)) = batch.events.get(index) {
                    let b: Option<i64> = del.query_row([event_id], |r| r.get(0)).optional()?;
                    if let Some(b) = b {
                        bytes += b as u64;
                        removed.dropped += 1;
                    }
                }
            }
        }
        tx.execute(
            "UPDATE events SET batch_id = NULL WHERE batch_id = ?1",
            [batch.id],
        )?;
        tx.execute("DELETE FROM batches WHERE id = ?1", [batch.id])?;
        for group in groups.iter().filter(|g| !g.is_empty()) {
            tx.execute(
                "INSERT INTO batches (idempotency_key, created_at_ms) VALUES (?1, ?2)",
                params![new_key(), now_ms],
            )?;
            let new_id = tx.last_insert_rowid();
            let mut set = tx.prepare_cached("UPDATE events SET batch_id = ?1 WHERE id = ?2")?;
            for event_id in group {
                set.execute(params![new_id, event_id])?;
            }
        }
        tx.commit()?;
        self.counters.sub_queued(removed.dropped, bytes);
        Ok(removed)
    }
}

/// Inside `tx`: the oldest persisted batch, or a new one made from the oldest
/// unbatched events (key and membership written in `tx`). `None` when empty.
fn oldest_or_new(
    tx: &rusqlite::Transaction<'_>,
    limits: Limits,
    now_ms: i64,
) -> rusqlite::Result<Option<Batch>> {
    // Batches emptied by eviction or opt-out are useless.
    tx.execute(
        "DELETE FROM batches WHERE NOT EXISTS \
         (SELECT 1 FROM events WHERE events.batch_id = batches.id)",
        [],
    )?;
    let existing: Option<(i64, String, u32, i64)> = tx
        .query_row(
            "SELECT id, idempotency_key, attempts, next_attempt_at_ms \
             FROM batches ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (id, key, attempts, next_attempt_at_ms) = match existing {
        Some(found) => found,
        None => {
            let ids = pick_oldest(tx, limits)?;
            let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
                return Ok(None);
            };
            let key = new_key();
            tx.execute(
                "INSERT INTO batches (idempotency_key, created_at_ms) VALUES (?1, ?2)",
                params![key, now_ms],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE events SET batch_id = ?1 \
                 WHERE id BETWEEN ?2 AND ?3 AND batch_id IS NULL",
                params![id, first, last],
            )?;
            (id, key, 0, 0)
        }
    };
    let events = load_events(tx, id)?;
    Ok(Some(Batch {
        id,
        key,
        attempts,
        next_attempt_at_ms,
        events,
    }))
}

/// Ids of the oldest unbatched events that fit the limits (at least one).
fn pick_oldest(tx: &rusqlite::Transaction<'_>, limits: Limits) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, bytes FROM events WHERE batch_id IS NULL ORDER BY id LIMIT ?1",
    )?;
    let mut rows = stmt.query([limits.max_events])?;
    let mut ids = Vec::new();
    let mut total = limits.envelope_bytes;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        // +1 for the comma between events.
        let size = row.get::<_, i64>(1)? as u64 + 1;
        if !ids.is_empty() && total + size > limits.max_bytes {
            break;
        }
        total += size;
        ids.push(id);
    }
    Ok(ids)
}

fn load_events(
    tx: &rusqlite::Transaction<'_>,
    batch_id: i64,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt =
        tx.prepare_cached("SELECT id, body FROM events WHERE batch_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}
