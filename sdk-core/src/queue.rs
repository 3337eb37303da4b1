//! The durable queue: one SQLite database per storage directory.
//!
//! # Files
//! - `<storage_dir>/tributary.sqlite3` — the database (plus SQLite's `-wal` and `-shm`).
//! - `<storage_dir>/tributary.lock` — the directory lock (see `store_lock`).
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::TributaryError;
use crate::event::{Built, Identity};
use crate::shared::Counters;

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
    /// The file exists but cannot be used as a database: move it aside.
    Unusable(String),
    /// Something else (directory not writable, disk full, ...).
    Other(String),
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
}

/// What `Store::open` found, to be logged by the caller (outside any lock).
pub(crate) struct Opened {
    pub store: Store,
    /// Set when a damaged database was moved aside: its new path and why.
    pub reset: Option<(PathBuf, String)>,
}

impl Store {
    /// Opens `<dir>/tributary.sqlite3`, moving a damaged file aside.
    pub(crate) fn open(dir: &Path, counters: Arc<Counters>) -> Result<Opened, TributaryError> {
        let path = dir.join(DB_FILE_NAME);
        let unavailable = |cause: String| TributaryError::StorageUnavailable {
            path: path.display().to_string(),
            cause,
        };
        let existed = path.exists();
        let (conn, reset) = match open_checked(&path) {
            Ok(conn) => (conn, None),
            Err(OpenError::Unusable(why)) if existed => {
                let moved = move_aside(&path).map_err(|e| {
                    unavailable(format!(
                        "the database is unusable ({why}) and cannot be moved aside: {e}"
                    ))
                })?;
                let conn = open_checked(&path).map_err(|e| match e {
                    OpenError::Unusable(m) | OpenError::Other(m) => unavailable(m),
                })?;
                (conn, Some((moved, why)))
            }
            Err(OpenError::Unusable(m) | OpenError::Other(m)) => return Err(unavailable(m)),
        };
        let mut store = Store {
            conn,
            path: path.clone(),
            counters,
            removals: 0,
        };
        if reset.is_some() {
            store.counters.inc(&store.counters.database_resets, 1);
        }
        store
            .refresh_counts()
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Opened { store, reset })
    }

    /// Moves the current (damaged) file aside and starts a fresh database.
    /// Returns the path it was moved to. Queued counts drop to zero.
    pub(crate) fn recover(&mut self) -> Result<PathBuf, String> {
        // Close our handle first so nothing writes to the moved file.
        let placeholder = Connection::open_in_memory().map_err(|e| e.to_string())?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        drop(old);
        let moved = move_aside(&self.path).map_err(|e| e.to_string())?;
        self.conn = open_checked(&self.path).map_err(|e| match e {
            OpenError::Unusable(m) | OpenError::Other(m) => m,
        })?;
        self.counters.inc(&self.counters.database_resets, 1);
        self.note_removal();
        self.refresh_counts().map_err(|e| e.to_string())?;
        Ok(moved)
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

    /// Reads the identity and opt-out flag kept in `meta` by versions before the
    /// state file (see `state`), creating an identity if none.
    pub(crate) fn load_meta(&mut self) -> rusqlite::Result<(Identity, bool)> {
        let anonymous_id = self.get_meta("anonymous_id")?;
        let user_id = self.get_meta("user_id")?;
        let enabled = self.get_meta("enabled")?.as_deref() != Some("0");
        let identity = match anonymous_id {
            Some(anonymous_id) => Identity {
                anonymous_id,
                user_id,
            },
            None => {
                let fresh = Identity::fresh();
                let tx = self.conn.transaction()?;
                write_identity(&tx, &fresh)?;
                tx.commit()?;
                fresh
            }
        };
        Ok((identity, enabled))
    }

    fn get_meta(&self, key: &str) -> rusqlite::Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// Group commit: inserts every event (and the identity, if it changed) in
    /// one transaction. Returns the id of the last event inserted, if any.
    pub(crate) fn insert_group(
        &mut self,
        events: &[Built],
        identity: Option<&Identity>,
    ) -> rusqlite::Result<Option<i64>> {
        let tx = self.conn.transaction()?;
        let mut bytes = 0u64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (created_at_ms, bytes, body) VALUES (?1, ?2, ?3)",
            )?;
            for event in events {
                insert.execute(params![
                    event.created_ms,
                    event.json.len() as i64,
                    event.json
                ])?;
                bytes += event.json.len() as u64;
            }
        }
        let last = (!events.is_empty()).then(|| tx.last_insert_rowid());
        if let Some(identity) = identity {
            write_identity(&tx, identity)?;
        }
        tx.commit()?;
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

    /// The largest event id ever handed out (0 for an empty table).
    pub(crate) fn max_event_id(&self) -> rusqlite::Result<i64> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))
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
        let unreadable = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure)
        ) && path.exists();
        if is_corruption(&e) || unreadable {
            OpenError::Unusable(e.to_string())
        } else {
            OpenError::Other(e.to_string())
        }
    };
    let conn = Connection::open(path).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(classify)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Other(format!(
            "cannot switch the journal to WAL (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(classify)?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(OpenError::Unusable(format!(
            "integrity check failed: {check}"
        )));
    }
    conn.execute_batch(SCHEMA).map_err(classify)?;
    Ok(conn)
}

/// At most this many corrupt databases are kept aside (for diagnosis); older
/// ones are deleted, so a device that keeps hitting corruption cannot fill up.
pub(crate) const MAX_CORRUPT_COPIES: usize = 2;

/// Corrupt copies older than this are deleted (7 days).
pub(crate) const MAX_CORRUPT_COPY_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// The files of corrupt copies in `dir`, with the time in their name:
/// `tributary.sqlite3[-wal|-shm].corrupt-<unix_ms>`.
fn corrupt_copies(dir: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            let rest = name.strip_prefix(DB_FILE_NAME)?;
            let (_, ms) = rest.split_once(".corrupt-")?;
            Some((ms.parse().ok()?, entry.path()))
        })
        .collect()
}

/// Deletes corrupt copies beyond the newest [`MAX_CORRUPT_COPIES`] and those
/// older than [`MAX_CORRUPT_COPY_AGE_MS`] at `now_ms`. Returns how many files
/// it deleted. Best effort: a file that cannot be deleted is left.
pub(crate) fn prune_corrupt_copies(dir: &Path, now_ms: i64) -> usize {
    let copies = corrupt_copies(dir);
    let mut stamps: Vec<i64> = copies.iter().map(|(t, _)| *t).collect();
    stamps.sort_unstable_by(|a, b| b.cmp(a));
    stamps.dedup();
    let keep: Vec<i64> = stamps
        .into_iter()
        .filter(|t| now_ms.saturating_sub(*t) <= MAX_CORRUPT_COPY_AGE_MS)
        .take(MAX_CORRUPT_COPIES)
        .collect();
    copies
        .into_iter()
        .filter(|(t, _)| !keep.contains(t))
        .filter(|(_, path)| std::fs::remove_file(path).is_ok())
        .count()
}

/// Deletes every corrupt copy (opting out deletes all queued data, including
/// what was moved aside). Returns how many files remain undeletable.
pub(crate) fn remove_corrupt_copies(dir: &Path) -> usize {
    corrupt_copies(dir)
        .into_iter()
        .filter(|(_, path)| std::fs::remove_file(path).is_err())
        .count()
}

/// Renames the database and its WAL/SHM files to `*.corrupt-<unix_ms>`, then
/// prunes older copies.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let suffix = format!(".corrupt-{}", crate::event::now_ms());
    let with_suffix = |p: &Path| {
        let mut s = p.as_os_str().to_owned();
        s.push(&suffix);
        PathBuf::from(s)
    };
    let target = with_suffix(path);
    std::fs::rename(path, &target)?;
    for extra in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(extra);
        let side = PathBuf::from(side);
        if side.exists() {
            // Best effort: a stale WAL must not be replayed into the fresh file.
            if std::fs::rename(&side, with_suffix(&side)).is_err() {
                let _ = std::fs::remove_file(&side);
            }
        }
    }
    if let Some(dir) = path.parent() {
        prune_corrupt_copies(dir, crate::event::now_ms());
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
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
        let opened = Store::open(&dir, counters.clone()).unwrap();
        let (moved, _why) = opened.reset.expect("reset");
        assert!(moved.exists());
        assert!(moved.to_string_lossy().contains(".corrupt-"));
        assert_eq!(counters.snapshot_resets(), 1);
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
    fn identity_and_events_persist() {
        let dir = temp_dir();
        let counters = Arc::new(Counters::default());
        let id = {
            let mut store = Store::open(&dir, counters.clone()).unwrap().store;
            let (id, enabled) = store.load_meta().unwrap();
            assert!(enabled);
            let ev = Built {
                json: "{}".into(),
                created_ms: 1,
            };
            assert_eq!(store.insert_group(&[ev], None).unwrap(), Some(1));
            id
        };
        let mut store = Store::open(&dir, counters.clone()).unwrap().store;
        assert_eq!(store.load_meta().unwrap().0, id);
        assert!(store.has_pending_up_to(1).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
