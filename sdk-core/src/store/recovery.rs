//! Corruption, after the fact: moving a damaged database aside, salvaging
//! what rows can still be read, capping the copies kept for diagnosis, and
//! reading the identity an older version kept in the database.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::DB_FILE_NAME;
use crate::event::Identity;

/// At most this many corrupt databases are kept aside (for diagnosis); older
/// ones are deleted, so a device that keeps hitting corruption cannot fill up.
pub(crate) const MAX_CORRUPT_COPIES: usize = 2;

/// Corrupt copies older than this are deleted (7 days).
pub(crate) const MAX_CORRUPT_COPY_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// The files of corrupt copies in `dir`, with the time in their name:
/// `tributary.sqlite3[-wal|-shm].corrupt-<unix_ms>`.
pub(super) fn corrupt_copies(dir: &Path) -> Vec<(i64, PathBuf)> {
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

/// The identity and opt-out flag an older version kept in the database's
/// `meta` table, read once when the state file does not exist yet. `None`
/// when there is no database (a new install) or it cannot be read.
pub(crate) fn read_legacy_meta(dir: &Path) -> Option<(Identity, bool)> {
    use rusqlite::OpenFlags;
    let path = dir.join(DB_FILE_NAME);
    if !path.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let get = |key: &str| {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
            r.get::<_, String>(0)
        })
        .optional()
    };
    let anonymous_id = get("anonymous_id").ok()??;
    let user_id = get("user_id").ok()?;
    let enabled = get("enabled").ok()?.as_deref() != Some("0");
    Some((
        Identity {
            anonymous_id,
            user_id,
        },
        enabled,
    ))
}

/// Reads what it can from a corrupt database: the events in id order until
/// the first unreadable row, and how many events it held (`None` if that
/// cannot be told).
///
/// The count is `COUNT(*)` when the table can still be counted; otherwise
/// the rows read plus those after the last one read, from the id of the last
/// event ever inserted (kept in `meta`, on other pages): events are only
/// deleted oldest first, so every id after the damage was still queued.
pub(super) fn salvage(path: &Path) -> (Vec<(i64, String)>, Option<u64>, Option<i64>) {
    use rusqlite::OpenFlags;
    let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) else {
        return (Vec::new(), None, None);
    };
    let counted = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
        .ok()
        .map(|n| n as u64);
    let last_written: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'last_event_id'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .and_then(|v| v.parse().ok());
    let mut rows = Vec::new();
    let mut last_read = None;
    if let Ok(mut stmt) = conn.prepare("SELECT id, created_at_ms, body FROM events ORDER BY id")
        && let Ok(mut it) = stmt.query([])
    {
        // Stop at the first damaged page: everything before it is intact.
        while let Ok(Some(row)) = it.next() {
            match (
                row.get::<_, i64>(0),
                row.get::<_, i64>(1),
                row.get::<_, String>(2),
            ) {
                (Ok(id), Ok(created), Ok(body)) => {
                    last_read = Some(id);
                    rows.push((created, body));
                }
                _ => break,
            }
        }
    }
    let estimated = match (last_written, last_read) {
        (Some(written), Some(read)) => {
            Some(rows.len() as u64 + written.saturating_sub(read) as u64)
        }
        _ => None,
    };
    (rows, counted.or(estimated), last_written.max(last_read))
}

/// Queues salvaged events in a fresh database (one transaction), with ids
/// after `base` (ids never repeat); they keep their `messageId`, so one
/// already delivered is deduplicated downstream.
pub(super) fn requeue(
    conn: &Connection,
    rows: &[(i64, String)],
    base: i64,
) -> rusqlite::Result<u64> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let mut insert = conn.prepare_cached(
            "INSERT INTO events (id, created_at_ms, bytes, body) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut id = base;
        for (created, body) in rows {
            id += 1;
            insert.execute(params![id, created, body.len() as i64, body])?;
        }
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_event_id', ?1)",
            [id.to_string()],
        )?;
        Ok(rows.len() as u64)
    })();
    conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    result
}

/// Renames the database and its WAL/SHM files to `*.corrupt-<unix_ms>`, then
/// prunes older copies.
pub(super) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
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
