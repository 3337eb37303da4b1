//! Removing from an object the events another process committed first.
//!
//! `import` may run beside the server. Each looks an event up in the dedupe index
//! before buffering it, and commits its keys only once its object is durable, so
//! an event present in both (the writer's open buffer and the import file) can pass
//! both lookups and be uploaded twice. The commits are serialized by SQLite:
//! [`StateDb::commit_object`] inserts with `ON CONFLICT DO NOTHING` and returns the
//! keys that were already there, and in the same transaction records a *rewrite*
//! of the object without them. The committer that came second then carries it out
//! here: the object is read back, those events are dropped, and the rest is written
//! again under the same name (an atomic replace), or the object is deleted if
//! nothing is left. A crash in between leaves the rewrite recorded; the owner (the
//! server's writer for its objects, `import` for `i-…` objects) redoes it at its
//! next start. Redoing it is harmless: the filtered object no longer holds the keys.

use std::collections::HashSet;

use anyhow::Context;
use serde_json::Value;

use crate::state::{KeyDeriver, MessageKey, StateDb};
use crate::storage::Sink;
use crate::storage::format::Format;

/// Rewrites `path` without the events whose keys are in `taken`, then marks the
/// rewrite done. Returns how many events were removed.
pub async fn apply(
    sink: &dyn Sink,
    db: &StateDb,
    path: &str,
    taken: &[MessageKey],
) -> anyhow::Result<u64> {
    let removed = match sink
        .get(path)
        .await
        .with_context(|| format!("cannot read {path} back"))?
    {
        // Deleted by an earlier, interrupted run of this rewrite.
        None => 0,
        Some(bytes) => {
            let keys = db.keys().context("cannot read the dedupe secret")?;
            filter(sink, &keys, path, &bytes, taken).await?
        }
    };
    db.finish_rewrite(path)
        .with_context(|| format!("cannot mark the rewrite of {path} done"))?;
    if removed > 0 {
        tracing::info!(%path, removed, "removed events another process stored first");
    }
    Ok(removed)
}

async fn filter(
    sink: &dyn Sink,
    deriver: &KeyDeriver,
    path: &str,
    bytes: &[u8],
    taken: &[MessageKey],
) -> anyhow::Result<u64> {
    let format = Format::from_path(path).with_context(|| format!("unknown format: {path}"))?;
    let events = format
        .decode(bytes)
        .with_context(|| format!("cannot decode {path}"))?;
    let (keys, _) = crate::writer::keys_of(deriver, &events).map_err(anyhow::Error::msg)?;
    let taken: HashSet<&MessageKey> = taken.iter().collect();
    let keep: Vec<&Value> = events
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !taken.contains(k))
        .map(|(e, _)| e)
        .collect();
    let removed = (events.len() - keep.len()) as u64;
    if keep.is_empty() {
        sink.delete(path)
            .await
            .with_context(|| format!("cannot delete {path}"))?;
    } else if removed > 0 {
        let mut encoder = format.encoder();
        for event in keep {
            encoder.push(event)?;
        }
        sink.put(path, encoder.finish()?.into())
            .await
            .with_context(|| format!("cannot replace {path}"))?;
    }
    Ok(removed)
}

/// Carries out the rewrites left by a crash, for the objects `owned` selects
/// (each process settles only its own objects). Returns the events removed.
pub async fn settle(
    sink: &dyn Sink,
    db: &StateDb,
    owned: impl Fn(&str) -> bool,
) -> anyhow::Result<u64> {
    let mut removed = 0;
    let pending = db
        .pending_rewrites()
        .context("cannot read pending rewrites")?;
    for (path, keys) in pending.into_iter().filter(|(p, _)| owned(p)) {
        removed += apply(sink, db, &path, &keys).await?;
    }
    Ok(removed)
}
