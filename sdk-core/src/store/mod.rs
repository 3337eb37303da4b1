//! The durable queue: one SQLite database per storage directory.
//!
//! # Files
//! - `<storage_dir>/tributary.sqlite3` — the database (plus SQLite's `-wal` and `-shm`).
//! - `<storage_dir>/tributary.lock` — the directory lock (see `lock.rs`).
//! - `<storage_dir>/tributary.sqlite3.corrupt-<unix_ms>` — a database found
//!   corrupt and moved aside (its `-wal`/`-shm` get the same suffix); at most
//!   [`MAX_CORRUPT_COPIES`], none older than 7 days; opting out deletes them.
//! - `<storage_dir>/tributary.state.json` — consent and identity (see `state`).
//!
//! # Schema (`PRAGMA user_version = 1`)
//! ```sql
//! CREATE TABLE events (
//!     id            INTEGER PRIMARY KEY,  -- insertion order = record order
//!     created_at_ms INTEGER NOT NULL,     -- wall clock at record time, for the age limit
//!     bytes         INTEGER NOT NULL,     -- length of body in bytes
//!     body          TEXT NOT NULL,        -- the full event JSON (with messageId)
//!     batch_id      INTEGER               -- NULL until the event joins a batch
//! );
//! CREATE INDEX events_by_batch ON events(batch_id) WHERE batch_id IS NOT NULL;
//! CREATE TABLE batches (
//!     id                 INTEGER PRIMARY KEY, -- oldest batch is sent first
//!     idempotency_key    TEXT NOT NULL UNIQUE, -- UUIDv7, sent as Idempotency-Key
//!     created_at_ms      INTEGER NOT NULL,
//!     attempts           INTEGER NOT NULL DEFAULT 0, -- failed retryable attempts so far
//!     next_attempt_at_ms INTEGER NOT NULL DEFAULT 0  -- no send before this wall-clock time
//! );
//! CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
//! -- meta keys: anonymous_id, user_id (absent when none), enabled ("1"/"0"):
//! -- read once to create the state file of an older install; the identity is
//! -- still mirrored here as a fallback, the state file is authoritative.
//! ```
//!
//! # Durability
//! WAL journal with `synchronous = FULL`: every group commit fsyncs the WAL,
//! so an event whose commit returned survives an app kill *and* a power loss.
//! Group commit makes this affordable: under load one fsync covers thousands
//! of events, so FULL costs throughput only when the queue is idle anyway.
//! (`NORMAL` would survive app kills but could lose the last commits on power
//! loss, which breaks the "recorded = delivered" promise.)

mod batch;
mod evict;
mod lock;
mod recovery;

pub(crate) use batch::{Batch, Limits, Removed};
pub(crate) use lock::StoreLock;
use recovery::{move_aside, requeue, salvage};
pub(crate) use recovery::{read_legacy_meta, remove_corrupt_copies};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::counters::Counters;
use crate::event::{Built, Identity};

/// Name of the database file inside the storage directory.
pub(crate) const DB_FILE_NAME: &str = "tributary.sqlite3";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    body          TEXT NOT NULL,
    batch_id      INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_batch ON events(batch_id) WHERE batch_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS batches (
    id                 INTEGER PRIMARY KEY,
    idempotency_key    TEXT NOT NULL UNIQUE,
    created_at_ms      INTEGER NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
PRAGMA user_version = 1;
";

/// Why opening a database file failed.
enum OpenError {
    /// The file is not a database or fails its integrity check: replace it.
    Corrupt(StoreError),
    /// Anything else (the file cannot be opened yet, I/O error, disk full,
    /// locked): transient as far as we can tell, so retried later. On iOS a
    /// file under data protection cannot be opened before the first unlock.
    Transient(StoreError),
}

/// An error of the queue database, with its source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// SQLite refused an operation.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The journal could not be switched to WAL.
    #[error("cannot switch the journal to WAL (got {0})")]
    NotWal(String),
    /// `PRAGMA quick_check` found damage.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A corrupt database could not be moved aside.
    #[error("the database is corrupt ({why}) and cannot be moved aside: {source}")]
    MoveAside {
        /// Why it was judged corrupt.
        why: String,
        /// The rename's error.
        source: std::io::Error,
    },
}

impl OpenError {
    fn into_inner(self) -> StoreError {
        match self {
            OpenError::Corrupt(e) | OpenError::Transient(e) => e,
        }
    }
}

/// True for errors that mean the database file itself is damaged.
pub(crate) fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// The open database plus the counters it keeps current.
pub(crate) struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    pub(crate) counters: Arc<Counters>,
    /// Bumped whenever events or batches are removed or regrouped by anything
    /// other than `finish_batch`, so a batch loaded earlier can tell it may be
    /// stale (see `Store::removals`).
    removals: u64,
    /// False until the database file is open (see `Store::unopened`).
    open: bool,
    /// The largest event id ever handed out, here or in a database this one
    /// replaced. Ids are assigned from it, not by SQLite (which reuses rowids
    /// once the table is empty), so `flush_blocking`'s "every event up to id
    /// N" never covers an event recorded after it.
    last_id: i64,
}

/// Sequence numbers for one group (see `writer`): `seqs[i]` for event `i`,
/// and the state after the group: whose sequence it is and the next number.
#[derive(Debug, Clone, Default)]
pub(crate) struct Numbering {
    pub seqs: Vec<u64>,
    pub owner: String,
    pub next: u64,
}

/// A corrupt database that was replaced, to be logged by the caller
/// (outside any lock).
#[derive(Debug)]
pub(crate) struct Reset {
    /// Where the damaged file was moved.
    pub moved: PathBuf,
    /// Why it was judged corrupt.
    pub why: String,
    /// Events read back from it and queued again.
    pub salvaged: u64,
    /// Events it held that could not be read back (counted in
    /// `Stats::dropped_corrupt`); `None` when not even the count was readable.
    pub lost: Option<u64>,
}

impl Store {
    /// A store for `<dir>/tributary.sqlite3` that is not open yet: every query
    /// fails (the placeholder in-memory database has no tables) until
    /// [`Store::open_file`] succeeds. Does no file I/O.
    pub(crate) fn unopened(dir: &Path, counters: Arc<Counters>) -> rusqlite::Result<Self> {
        Ok(Store {
            conn: Connection::open_in_memory()?,
            path: dir.join(DB_FILE_NAME),
            counters,
            removals: 0,
            open: false,
            last_id: 0,
        })
    }

    /// Whether the database file is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Opens the database file. A corrupt one is salvaged, moved aside and
    /// replaced (returned as `Some(Reset)`); any other error is returned for a
    /// later retry and leaves the file alone.
    pub(crate) fn open_file(&mut self) -> Result<Option<Reset>, StoreError> {
        match open_checked(&self.path) {
            Ok(conn) => {
                self.install(conn)?;
                Ok(None)
            }
            Err(OpenError::Transient(e)) => Err(e),
            Err(OpenError::Corrupt(why)) => self.replace_corrupt(why.to_string()).map(Some),
        }
    }

    /// At run time, after an operation reported corruption: salvages what it
    /// can, moves the file aside and starts a fresh database.
    pub(crate) fn recover(&mut self) -> Result<Reset, StoreError> {
        self.replace_corrupt("SQLite reported corruption".into())
    }

    fn install(&mut self, conn: Connection) -> Result<(), StoreError> {
        let stored: i64 = conn
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM events), 0), \
                 COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_event_id'), 0))",
                [],
                |r| r.get(0),
            )?;
        self.last_id = self.last_id.max(stored);
        self.conn = conn;
        self.open = true;
        self.note_removal();
        Ok(self.refresh_counts()?)
    }

    /// The sequence state stored with the last group: its owner (an anonymous
    /// id) and the next number. `None` before any numbered event.
    pub(crate) fn sequence(&self) -> rusqlite::Result<Option<(String, u64)>> {
        let get = |key: &str| {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                    r.get::<_, String>(0)
                })
                .optional()
        };
        let owner = get("seq_owner")?;
        let next = get("seq_next")?.and_then(|v| v.parse().ok());
        Ok(owner.zip(next))
    }

    /// The largest event id ever handed out (see the field).
    pub(crate) fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Salvage, move aside, reopen, requeue the salvaged rows, count the rest.
    fn replace_corrupt(&mut self, why: String) -> Result<Reset, StoreError> {
        // Events this handle knew to be queued (0 before the first open).
        let was_open = self.open;
        let known = self.counters.queued_events();
        // Close our handle first so nothing writes to the moved file.
        let placeholder = Connection::open_in_memory()?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        self.open = false;
        let (rows, counted, last_written) = salvage(&self.path);
        let base = self.last_id.max(last_written.unwrap_or(0));
        let moved = move_aside(&self.path).map_err(|source| StoreError::MoveAside {
            why: why.clone(),
            source,
        })?;
        let conn = open_checked(&self.path).map_err(OpenError::into_inner)?;
        let salvaged = requeue(&conn, &rows, base)?;
        // At run time the counters know what was queued; at open, only the
        // damaged file can tell.
        let before = if was_open { Some(known) } else { counted };
        let lost = before.map(|n| n.saturating_sub(salvaged));
        self.counters.inc(&self.counters.database_resets, 1);
        if !was_open {
            // Found at open: they were queued when this client started.
            self.counters
                .inc(&self.counters.restored, lost.unwrap_or(0));
        }
        self.counters
            .inc(&self.counters.dropped_corrupt, lost.unwrap_or(0));
        self.install(conn)?;
        Ok(Reset {
            moved,
            why,
            salvaged,
            lost,
        })
    }

    /// Closes the database (after shutdown); later calls fail harmlessly
    /// against an empty in-memory database.
    pub(crate) fn close(&mut self) {
        // Fold the WAL back into the database so a stopped client leaves one
        // compact file behind. Best effort: the WAL is just as durable.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        if let Ok(placeholder) = Connection::open_in_memory() {
            drop(std::mem::replace(&mut self.conn, placeholder));
            self.open = false;
        }
    }

    /// How many times events or batches were removed or regrouped outside
    /// `finish_batch`. A batch loaded while this was `n` is exactly as
    /// persisted as long as it is still `n` (only the store lock holder
    /// changes either).
    pub(crate) fn removals(&self) -> u64 {
        self.removals
    }

    /// Marks that events or batches were removed or regrouped.
    pub(crate) fn note_removal(&mut self) {
        self.removals = self.removals.wrapping_add(1);
    }

    /// Recomputes queued events and bytes from the table.
    pub(crate) fn refresh_counts(&mut self) -> rusqlite::Result<()> {
        let (n, b): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.counters.set_queued(n as u64, b as u64);
        Ok(())
    }

    /// Group commit: inserts every event (and the identity, if it changed) in
    /// one transaction. With `numbering`, event `i` gets `"sequence":
    /// seqs[i]` and the sequence state is stored in the same transaction, so
    /// a number is on disk exactly when its event is. Returns the id of the
    /// last event inserted, if any.
    pub(crate) fn insert_group(
        &mut self,
        events: &[Built],
        numbering: Option<&Numbering>,
        identity: Option<&Identity>,
    ) -> rusqlite::Result<Option<i64>> {
        let tx = self.conn.transaction()?;
        let mut bytes = 0u64;
        let mut id = self.last_id;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (id, created_at_ms, bytes, body) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut numbered = String::new();
            for (i, event) in events.iter().enumerate() {
                id += 1;
                let body = match numbering.and_then(|n| n.seqs.get(i)) {
                    Some(seq) => {
                        crate::event::with_sequence(&mut numbered, &event.json, *seq);
                        numbered.as_str()
                    }
                    None => event.json.as_str(),
                };
                insert.execute(params![id, event.created_ms, body.len() as i64, body])?;
                bytes += body.len() as u64;
            }
        }
        if let Some(n) = numbering {
            let mut put =
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
            put.execute(["seq_owner", n.owner.as_str()])?;
            put.execute(["seq_next", n.next.to_string().as_str()])?;
        }
        let last = (!events.is_empty()).then_some(id);
        if let Some(last) = last {
            // Persists the id counter (ids must never repeat, see `last_id`),
            // apart from the events' pages: if those are damaged, it also
            // tells how many rows a salvage could not read (see `salvage`).
            tx.prepare_cached(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_event_id', ?1)",
            )?
            .execute([last.to_string()])?;
        }
        if let Some(identity) = identity {
            write_identity(&tx, identity)?;
        }
        tx.commit()?;
        self.last_id = id;
        self.counters.add_queued(events.len() as u64, bytes);
        Ok(last)
    }

    /// The storage directory.
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Opting out: deletes every event and batch (one transaction), then
    /// scrubs the files. Returns how many events it deleted.
    pub(crate) fn purge(&mut self) -> rusqlite::Result<u64> {
        // Opted-out data must be gone from the files, not just unlinked:
        // secure_delete zeroes the freed content.
        self.conn.execute_batch("PRAGMA secure_delete = ON;")?;
        self.note_removal();
        let tx = self.conn.transaction()?;
        let deleted = tx.execute("DELETE FROM events", [])? as u64;
        tx.execute("DELETE FROM batches", [])?;
        tx.commit()?;
        self.scrub()?;
        self.refresh_counts()?;
        Ok(deleted)
    }

    /// Rewrites the database without free pages and empties the WAL, so no
    /// copy of deleted events remains in any file of the storage directory.
    fn scrub(&mut self) -> rusqlite::Result<()> {
        self.conn
            .execute_batch("PRAGMA secure_delete = OFF; VACUUM;")?;
        // TRUNCATE copies the WAL into the database and cuts it to 0 bytes.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// True while any event with `id <= up_to` is still queued.
    pub(crate) fn has_pending_up_to(&self, up_to: i64) -> rusqlite::Result<bool> {
        self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE id <= ?1)",
            [up_to],
            |r| r.get(0),
        )
    }
}

fn write_identity(tx: &rusqlite::Transaction<'_>, identity: &Identity) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('anonymous_id', ?1)",
        [&identity.anonymous_id],
    )?;
    match &identity.user_id {
        Some(user_id) => tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('user_id', ?1)",
            [user_id],
        )?,
        None => tx.execute("DELETE FROM meta WHERE key = 'user_id'", [])?,
    };
    Ok(())
}

/// Opens and configures the database, and proves it is readable.
fn open_checked(path: &Path) -> Result<Connection, OpenError> {
    let classify = |e: rusqlite::Error| {
        if is_corruption(&e) {
            OpenError::Corrupt(e.into())
        } else {
            OpenError::Transient(e.into())
        }
    };
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Transient(StoreError::NotWal(mode)));
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(classify)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(OpenError::Corrupt(StoreError::Integrity(check)));
    }
    conn.execute_batch(SCHEMA).map_err(classify)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::recovery::{MAX_CORRUPT_COPY_AGE_MS, corrupt_copies, prune_corrupt_copies};
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tributary-q-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn garbage_file_is_moved_aside_and_replaced() {
        let dir = temp_dir();
        std::fs::write(dir.join(DB_FILE_NAME), vec![0xAB; 8192]).unwrap();
        let counters = Arc::new(Counters::default());
        let mut store = Store::unopened(&dir, counters.clone()).unwrap();
        let reset = store.open_file().unwrap().expect("reset");
        assert!(reset.moved.exists());
        assert!(reset.moved.to_string_lossy().contains(".corrupt-"));
        assert_eq!(counters.snapshot_resets(), 1);
        assert!(store.is_open());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_copies_are_capped_in_number_and_age() {
        let dir = temp_dir();
        let now = 10 * MAX_CORRUPT_COPY_AGE_MS;
        let day = 24 * 3600 * 1000;
        let copy = |ms: i64, side: &str| dir.join(format!("{DB_FILE_NAME}{side}.corrupt-{ms}"));
        for ms in [now - 3 * day, now - 2 * day, now - day, now - 8 * day] {
            std::fs::write(copy(ms, ""), b"x").unwrap();
            std::fs::write(copy(ms, "-wal"), b"x").unwrap();
        }
        std::fs::write(dir.join("unrelated.corrupt-1"), b"x").unwrap();
        assert_eq!(prune_corrupt_copies(&dir, now), 4);
        for (ms, kept) in [
            (now - day, true),
            (now - 2 * day, true),
            (now - 3 * day, false),
            (now - 8 * day, false),
        ] {
            assert_eq!(copy(ms, "").exists(), kept, "{ms}");
            assert_eq!(copy(ms, "-wal").exists(), kept, "{ms}");
        }
        assert_eq!(remove_corrupt_copies(&dir), 0);
        assert!(corrupt_copies(&dir).is_empty());
        assert!(dir.join("unrelated.corrupt-1").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn event_ids_never_repeat_even_when_the_table_empties() {
        let dir = temp_dir();
        let counters = Arc::new(Counters::default());
        let ev = || Built {
            json: "{}".into(),
            created_ms: 1,
            identity: Arc::new(Identity::fresh()),
            consent_epoch: 0,
        };
        {
            let mut store = Store::unopened(&dir, counters.clone()).unwrap();
            store.open_file().unwrap();
            assert_eq!(
                store.insert_group(&[ev(), ev(), ev()], None, None).unwrap(),
                Some(3)
            );
            assert_eq!(store.purge().unwrap(), 3);
            // SQLite alone would hand out rowid 1 again here.
            assert_eq!(store.insert_group(&[ev()], None, None).unwrap(), Some(4));
            assert!(!store.has_pending_up_to(3).unwrap());
            assert_eq!(store.purge().unwrap(), 1);
        }
        let mut store = Store::unopened(&dir, counters.clone()).unwrap();
        store.open_file().unwrap();
        assert_eq!(
            store.last_id(),
            4,
            "the counter survives a restart with an empty table"
        );
        assert_eq!(store.insert_group(&[ev()], None, None).unwrap(), Some(5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn identity_and_events_persist() {
        let dir = temp_dir();
        let counters = Arc::new(Counters::default());
        let id = Identity::fresh();
        {
            let mut store = Store::unopened(&dir, counters.clone()).unwrap();
            assert!(store.open_file().unwrap().is_none());
            let ev = Built {
                json: "{}".into(),
                created_ms: 1,
                identity: Arc::new(id.clone()),
                consent_epoch: 0,
            };
            assert_eq!(store.insert_group(&[ev], None, Some(&id)).unwrap(), Some(1));
        }
        assert_eq!(read_legacy_meta(&dir), Some((id, true)));
        let mut store = Store::unopened(&dir, counters.clone()).unwrap();
        assert!(store.open_file().unwrap().is_none());
        assert!(store.has_pending_up_to(1).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
