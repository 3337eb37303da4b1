//! Eviction: the only two ways queued data is dropped locally.
//!
//! - `max_event_age_ms`: events recorded longer ago are deleted.
//! - `max_queue_bytes`: past the cap, the oldest events are deleted until the
//!   queue fits again.
//!
//! Always oldest first (lowest id), always counted in `Stats`. An evicted
//! event may belong to the persisted batch: the batch then keeps its key and
//! its remaining members, so a retry never sends an event under a second key.

use rusqlite::params;

use super::Store;

impl Store {
    /// Deletes events recorded before `cutoff_ms`. Returns how many.
    pub(crate) fn evict_expired(&mut self, cutoff_ms: i64) -> rusqlite::Result<u64> {
        // Cheap probe: ids follow record order, so the first row is (almost
        // always) the oldest. Only scan when it is actually expired.
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT created_at_ms FROM events ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .ok();
        match oldest {
            Some(t) if t < cutoff_ms => {}
            _ => return Ok(0),
        }
        self.delete_where("created_at_ms < ?1", cutoff_ms)
    }

    /// Deletes the oldest events until at most `max_bytes` are queued.
    pub(crate) fn evict_over_cap(&mut self, max_bytes: u64) -> rusqlite::Result<u64> {
        let queued = self.counters.queued_bytes();
        if queued <= max_bytes {
            return Ok(0);
        }
        let excess = queued - max_bytes;
        let last_id = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, bytes FROM events ORDER BY id")?;
            let mut rows = stmt.query([])?;
            let mut freed = 0u64;
            let mut last = None;
            while let Some(row) = rows.next()? {
                last = Some(row.get::<_, i64>(0)?);
                freed += row.get::<_, i64>(1)? as u64;
                if freed >= excess {
                    break;
                }
            }
            last
        };
        match last_id {
            Some(id) => self.delete_where("id <= ?1", id),
            None => Ok(0),
        }
    }

    /// Deletes the events matching `condition` (one `?1` parameter) in one
    /// transaction, drops batches left empty, and updates the counters.
    fn delete_where(&mut self, condition: &str, value: i64) -> rusqlite::Result<u64> {
        // Only called when something is due for deletion.
        self.note_removal();
        let tx = self.conn.transaction()?;
        let (n, bytes): (i64, i64) = tx.query_row(
            &format!("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM events WHERE {condition}"),
            params![value],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if n == 0 {
            return Ok(0);
        }
        tx.execute(
            &format!("DELETE FROM events WHERE {condition}"),
            params![value],
        )?;
        tx.execute(
            "DELETE FROM batches WHERE NOT EXISTS \
             (SELECT 1 FROM events WHERE events.batch_id = batches.id)",
            [],
        )?;
        tx.commit()?;
        self.counters.sub_queued(n as u64, bytes as u64);
        Ok(n as u64)
    }
}
