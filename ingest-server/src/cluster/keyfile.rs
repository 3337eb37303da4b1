//! Key files: the dedupe keys of one committed cut, stored beside the data as
//! `_keys/p<N>/e<epoch>-<first>-<last>.keys` (a `_` folder, which Hive-style
//! readers ignore), so a writer on another machine can rebuild a partition's
//! dedupe index from the object store alone.
//!
//! Format: `TRKEYS1\n`, then the entries sorted by key, each `[16-byte key][i64
//! receivedAt ms, little-endian]`. Sorted, so a file is a deterministic
//! function of its cut, and a future loader can merge files instead of hashing.

use std::collections::HashMap;
use std::time::Instant;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;

use crate::state::MessageKey;
use crate::storage::ObjectSink;

const MAGIC: &[u8] = b"TRKEYS1\n";
const ENTRY: usize = 24;

/// The key file's name (relative to the store root) of a cut.
pub fn name(p: u32, epoch: u64, first: u64, last: u64) -> String {
    format!("{}e{epoch}-{first:020}-{last:020}.keys", dir(p))
}

fn dir(p: u32) -> String {
    format!("_keys/p{p}/")
}

/// Encodes entries (sorted here).
pub fn encode(entries: &[(MessageKey, i64)]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(MAGIC.len() + sorted.len() * ENTRY);
    out.extend_from_slice(MAGIC);
    for (k, at) in sorted {
        out.extend_from_slice(&k);
        out.extend_from_slice(&at.to_le_bytes());
    }
    out
}

/// A key file that is not one.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a Tributary key file (bad header or length); delete it only if it is not one")]
pub struct NotAKeyFile(pub String);

/// Decodes a key file into `into`, keeping the newest time per key.
pub fn decode_into(
    path: &str,
    bytes: &[u8],
    into: &mut HashMap<MessageKey, i64>,
) -> Result<usize, NotAKeyFile> {
    let body = bytes
        .strip_prefix(MAGIC)
        .filter(|b| b.len() % ENTRY == 0)
        .ok_or_else(|| NotAKeyFile(path.to_string()))?;
    for e in body.chunks_exact(ENTRY) {
        let mut key = [0u8; 16];
        key.copy_from_slice(&e[..16]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&e[16..]);
        let at = i64::from_le_bytes(at);
        let slot = into.entry(key).or_insert(at);
        *slot = (*slot).max(at);
    }
    Ok(body.len() / ENTRY)
}

/// What loading a partition's key files found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Key → newest receivedAt (ms).
    pub keys: HashMap<MessageKey, i64>,
    /// Files read.
    pub files: usize,
    /// Files skipped as older than the window.
    pub expired: Vec<String>,
}

/// Loads partition `p`'s key files modified after `since_ms`; lists the older
/// ones in [`Loaded::expired`] so the owner can delete them.
pub async fn load(sink: &ObjectSink, p: u32, since_ms: i64) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let prefix = full(sink, &dir(p));
    let metas: Vec<_> = sink
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the key files of partition {p}: {e}"))?;
    let mut loaded = Loaded::default();
    for meta in metas {
        let path = meta.location.to_string();
        if meta.last_modified.timestamp_millis() < since_ms {
            loaded.expired.push(relative(sink, &path));
            continue;
        }
        let bytes = sink
            .store
            .get(&meta.location)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read key file {path}: {e}"))?
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read key file {path}: {e}"))?;
        decode_into(&path, &bytes, &mut loaded.keys)?;
        loaded.files += 1;
    }
    tracing::info!(
        partition = p,
        files = loaded.files,
        keys = loaded.keys.len(),
        millis = started.elapsed().as_millis() as u64,
        "dedupe keys loaded"
    );
    Ok(loaded)
}

fn full(sink: &ObjectSink, rel: &str) -> ObjPath {
    if sink.root.is_empty() {
        ObjPath::from(rel)
    } else {
        ObjPath::from(format!("{}/{rel}", sink.root))
    }
}

fn relative(sink: &ObjectSink, path: &str) -> String {
    if sink.root.is_empty() {
        return path.to_string();
    }
    path.strip_prefix(&format!("{}/", sink.root))
        .unwrap_or(path)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_keep_the_newest_time() {
        let a = ([1u8; 16], 5);
        let b = ([0u8; 16], 7);
        let bytes = encode(&[a, b]);
        // Sorted: b's key comes first.
        assert_eq!(&bytes[MAGIC.len()..MAGIC.len() + 16], &[0u8; 16]);
        let mut into = HashMap::from([([1u8; 16], 9)]);
        assert_eq!(decode_into("f", &bytes, &mut into).unwrap(), 2);
        assert_eq!(into[&[1u8; 16]], 9);
        assert_eq!(into[&[0u8; 16]], 7);
        assert!(decode_into("f", b"TRKEYS1\nxx", &mut into).is_err());
        assert!(decode_into("f", b"nope", &mut into).is_err());
    }
}
