//! The sink stage: object storage through `object_store`, and the object naming scheme.
//!
//! # Naming scheme
//!
//! Every object lives under the store root given by `--storage` (the `file://`
//! directory, or the `s3://bucket/prefix`), Hive-partitioned by `receivedAt` (UTC):
//!
//! ```text
//! source=<source>/dt=<YYYY-MM-DD>/hour=<HH>/<first>-<last>.<ext>
//! ```
//!
//! * `<first>`/`<last>`: first and last log offsets of the events in the object,
//!   20-digit zero-padded decimal (names sort by log order). One object holds the
//!   events of one partition read from the log range `[first, last]`, in log order
//!   (not every offset in the range: the others belong to other partitions or were
//!   duplicates).
//! * `<ext>`: [`Format::extension`] (`ndjson.gz` or `parquet`).
//! * Objects written by other producers must use another name shape so they never
//!   collide with the writer's, e.g. compaction `c-<first>-<last>-<hash>.<ext>`,
//!   import `i-<hash>-<n>.<ext>`: readers take every `*.ndjson.gz` / `*.parquet`
//!   under a partition.
//!
//! Paths passed to [`ObjectSink`] are relative to the root ([`object_path`] builds them).
//!
//! # Sink API
//!
//! [`Sink`] is the swappable stage (object_store here); methods return futures.
//! [`ObjectSink::open`] builds one from a [`StoreConfig`]: `file:///abs/dir` →
//! `LocalFileSystem` rooted there (created if missing); `s3://bucket/prefix` →
//! `AmazonS3` from the usual `AWS_*` variables, with `--s3-endpoint` (plain http
//! allowed, path-style requests). `put` uses multipart upload above
//! [`MULTIPART_THRESHOLD`]. An object appears atomically under its name (local: a
//! staged file renamed into place; S3: PUT or CompleteMultipartUpload).
//!
//! # Durability
//!
//! A successful `put` is durable: on S3 a completed PUT is; locally the store is
//! opened with `LocalFileSystem::with_fsync(true)`, so the staged file is
//! `fsync`ed before its rename and every directory whose entries changed (the
//! object's parent and the partition directories it created) is `fsync`ed before
//! `put` returns. Without that, a power loss after the writer committed an
//! object's dedupe keys and truncated the log could leave the object missing or
//! empty while the log no longer holds its events.
//!
//! [`Sink::make_durable`] makes an object that is already there durable: recovery
//! calls it before committing an object found after a crash (the crash may have
//! hit between the rename and the directory `fsync`). [`ObjectSink::sync_deletes`]
//! makes deletes durable (object_store does not `fsync` for a delete), which
//! compaction needs before it drops its intent.

pub use tributary_formats as format;

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::future::BoxFuture;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::config::StoreConfig;
use crate::storage::format::Format;

/// Objects above this size are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;
const PART_SIZE: usize = 8 * 1024 * 1024;

/// A sink error.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The storage URL or settings are wrong.
    #[error("storage configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A local object or directory could not be synced to disk.
    #[error(
        "cannot make {path} durable ({source}); check that the object exists and the disk is healthy"
    )]
    Durability {
        /// The file or directory that failed.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The partition directory of an event (relative to the store root), with a
/// trailing slash: `source=S/dt=YYYY-MM-DD/hour=HH/`.
pub fn partition_dir(source: &str, received_at_ms: i64) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(received_at_ms).unwrap_or_default();
    format!(
        "source={source}/dt={:04}-{:02}-{:02}/hour={:02}/",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

/// The writer's object name for the log range `[first, last]` in a partition.
pub fn object_path(partition_dir: &str, first: u64, last: u64, format: Format) -> String {
    format!(
        "{partition_dir}{first:020}-{last:020}.{}",
        format.extension()
    )
}

/// The sink stage.
pub trait Sink: Send + Sync {
    /// Writes an object atomically (multipart when large). `Bytes`, so a retry
    /// resends the same buffer instead of copying the whole object again.
    fn put(&self, path: &str, bytes: bytes::Bytes) -> BoxFuture<'_, Result<(), SinkError>>;
    /// The object's bytes, or `None` if it does not exist.
    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, SinkError>>;
    /// Deletes an object (absent is fine).
    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), SinkError>>;
    /// A cheap liveness check of the store.
    fn check(&self) -> BoxFuture<'_, Result<(), SinkError>>;
    /// Makes an existing object durable (data and directory entries), e.g. one
    /// found after a crash that may have hit before its `put` finished syncing.
    /// A no-op where a completed upload is durable by itself (S3). Fails with
    /// [`SinkError::Durability`] if the object is missing or cannot be synced.
    fn make_durable(&self, path: &str) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// [`Sink`] over any `object_store` store, with a root prefix.
#[derive(Clone)]
pub struct ObjectSink {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Root prefix inside the store ("" for local).
    pub root: String,
    /// The same store when it is the local filesystem (for `fsync`s).
    local: Option<Arc<LocalFileSystem>>,
}

impl ObjectSink {
    /// Opens the store named by `--storage` (see the module docs).
    pub fn open(cfg: &StoreConfig) -> Result<Self, SinkError> {
        if let Some(dir) = cfg.storage.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(SinkError::Config(format!(
                    "`{}` must be an absolute path: file:///abs/dir",
                    cfg.storage
                )));
            }
            create_dir_durably(std::path::Path::new(dir))?;
            // fsync the staged file and the changed directories before `put` returns.
            let local = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true));
            return Ok(Self {
                store: local.clone(),
                root: String::new(),
                local: Some(local),
            });
        }
        if let Some(rest) = cfg.storage.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(SinkError::Config(format!(
                    "`{}` has no bucket: use s3://bucket/prefix",
                    cfg.storage
                )));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(ep) = &cfg.s3_endpoint {
                b = b
                    .with_endpoint(ep)
                    .with_allow_http(ep.starts_with("http://"))
                    .with_virtual_hosted_style_request(false);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                b = b.with_region("us-east-1");
            }
            // object_store's default retries one call for up to 3 minutes, during
            // which the writer can neither report the outage (`/ready`, 503s) nor
            // see recovery promptly. A short inner retry rides out blips; the
            // writer's own loop retries outages for as long as they last.
            let store = b
                .with_retry(object_store::RetryConfig {
                    backoff: object_store::BackoffConfig::default(),
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs(10),
                })
                .build()?;
            let root = prefix.trim_matches('/').to_string();
            return Ok(Self {
                store: Arc::new(store),
                root,
                local: None,
            });
        }
        Err(SinkError::Config(format!(
            "`{}` is not supported; use file:///path or s3://bucket/prefix",
            cfg.storage
        )))
    }

    fn full(&self, path: &str) -> ObjPath {
        if self.root.is_empty() {
            ObjPath::from(path)
        } else {
            ObjPath::from(format!("{}/{path}", self.root))
        }
    }

    /// Makes deletes of these full store paths durable: `fsync`s each distinct
    /// parent directory (local store; a no-op on S3, where a delete is durable).
    pub async fn sync_deletes(&self, paths: &[ObjPath]) -> Result<(), SinkError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let mut dirs = std::collections::BTreeSet::new();
        for p in paths {
            let file = local.path_to_filesystem(p)?;
            if let Some(dir) = file.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        blocking(move || dirs.iter().try_for_each(|d| sync_path(d))).await
    }

    /// Writes an object only if no object has that name (`PutMode::Create`:
    /// `If-None-Match: *` on S3, an exclusive create on the local store), in one
    /// PUT whatever its size. `Ok(false)` if it existed already. The distributed
    /// writers name objects by what they hold, so an existing object is the same
    /// cut, finished by another writer.
    pub async fn put_new(&self, path: &str, bytes: bytes::Bytes) -> Result<bool, SinkError> {
        let p = self.full(path);
        let opts = object_store::PutOptions::from(object_store::PutMode::Create);
        match self.store.put_opts(&p, PutPayload::from(bytes), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Sink::make_durable`] for a full store path (compaction works on those).
    pub async fn make_durable_full(&self, path: &ObjPath) -> Result<(), SinkError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let file = local.path_to_filesystem(path)?;
        // The store root is as many levels above the file as the path has parts.
        let root = file
            .ancestors()
            .nth(path.parts().count())
            .unwrap_or(&file)
            .to_path_buf();
        blocking(move || sync_file_and_dirs(&file, &root)).await
    }
}

impl Sink for ObjectSink {
    fn put(&self, path: &str, bytes: bytes::Bytes) -> BoxFuture<'_, Result<(), SinkError>> {
        let p = self.full(path);
        Box::pin(async move {
            if bytes.len() <= MULTIPART_THRESHOLD {
                self.store.put(&p, PutPayload::from(bytes)).await?;
                return Ok(());
            }
            let upload = self.store.put_multipart(&p).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            w.put(bytes);
            w.finish().await?;
            Ok(())
        })
    }

    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, SinkError>> {
        let p = self.full(path);
        Box::pin(async move {
            match self.store.get(&p).await {
                Ok(r) => Ok(Some(r.bytes().await?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), SinkError>> {
        let p = self.full(path);
        Box::pin(async move {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn make_durable(&self, path: &str) -> BoxFuture<'_, Result<(), SinkError>> {
        let p = self.full(path);
        Box::pin(async move { self.make_durable_full(&p).await })
    }

    fn check(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        let p = self.full("_tributary_health");
        Box::pin(async move {
            match self.store.head(&p).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Creates the store root and `fsync`s it and its parent, so the root survives a
/// power loss too.
fn create_dir_durably(dir: &std::path::Path) -> Result<(), SinkError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        SinkError::Config(format!(
            "cannot create object directory {}: {e}",
            dir.display()
        ))
    })?;
    sync_path(dir)?;
    match dir.parent() {
        Some(parent) => sync_path(parent),
        None => Ok(()),
    }
}

/// `fsync`s `file`, then every directory from its parent up to `root` inclusive
/// (the partition directories may have been created for it).
fn sync_file_and_dirs(file: &std::path::Path, root: &std::path::Path) -> Result<(), SinkError> {
    sync_path(file)?;
    let mut dir = file.parent();
    while let Some(d) = dir {
        sync_path(d)?;
        if d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

/// `fsync`s a file or a directory (opened read-only, which Linux allows for both).
fn sync_path(path: &std::path::Path) -> Result<(), SinkError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| SinkError::Durability {
            path: path.display().to_string(),
            source,
        })
}

/// Runs blocking file-system work off the async workers.
async fn blocking(
    work: impl FnOnce() -> Result<(), SinkError> + Send + 'static,
) -> Result<(), SinkError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SinkError::Durability {
            path: "(sync task)".into(),
            source: std::io::Error::other(e),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        // 2024-03-05T07:08:09Z
        let dir = partition_dir("ios", 1_709_622_489_000);
        assert_eq!(dir, "source=ios/dt=2024-03-05/hour=07/");
        assert_eq!(
            object_path(&dir, 1, 42, Format::Ndjson),
            "source=ios/dt=2024-03-05/hour=07/00000000000000000001-00000000000000000042.ndjson.gz"
        );
    }

    fn local_sink(dir: &std::path::Path) -> ObjectSink {
        ObjectSink::open(&StoreConfig {
            data_dir: dir.to_path_buf(),
            storage: format!("file://{}", dir.display()),
            s3_endpoint: None,
            format: Format::Ndjson,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn local_puts_are_durable_and_missing_objects_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        let sink = local_sink(&root);
        let path = object_path(&partition_dir("ios", 0), 1, 2, Format::Ndjson);
        sink.put(&path, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        // The object and the partition directories created for it sync fine.
        sink.make_durable(&path).await.unwrap();
        assert_eq!(std::fs::read(root.join(&path)).unwrap(), b"x");
        // Deleting it, then syncing the delete, works too.
        sink.delete(&path).await.unwrap();
        sink.sync_deletes(&[ObjPath::from(path.as_str())])
            .await
            .unwrap();
        assert!(!root.join(&path).exists());
        // A missing object is an error naming it, not a silent success.
        let err = sink.make_durable(&path).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SinkError::Durability { .. }), "{text}");
        assert!(text.contains(&path), "{text}");
        assert!(text.contains("cannot make"), "{text}");
    }

    #[test]
    fn sync_stops_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"1").unwrap();
        sync_file_and_dirs(&root.join("a/b/f"), &root).unwrap();
        let err = sync_file_and_dirs(&root.join("a/b/missing"), &root).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
