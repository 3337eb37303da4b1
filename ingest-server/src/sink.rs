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

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::future::BoxFuture;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::config::StoreConfig;
use crate::format::Format;

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
    /// Writes an object atomically (multipart when large).
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), SinkError>>;
    /// The object's bytes, or `None` if it does not exist.
    fn get(&self, path: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>, SinkError>>;
    /// Deletes an object (absent is fine).
    fn delete(&self, path: &str) -> BoxFuture<'_, Result<(), SinkError>>;
    /// Every object path (relative to the root) under `prefix` (relative, may be "").
    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<String>, SinkError>>;
    /// A cheap liveness check of the store.
    fn check(&self) -> BoxFuture<'_, Result<(), SinkError>>;
}

/// [`Sink`] over any `object_store` store, with a root prefix.
#[derive(Clone)]
pub struct ObjectSink {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Root prefix inside the store ("" for local).
    pub root: String,
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
            std::fs::create_dir_all(dir).map_err(|e| {
                SinkError::Config(format!("cannot create object directory {dir}: {e}"))
            })?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
            return Ok(Self {
                store: Arc::new(store),
                root: String::new(),
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
            let store = b.build()?;
            let root = prefix.trim_matches('/').to_string();
            return Ok(Self {
                store: Arc::new(store),
                root,
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

    fn relative(&self, p: &ObjPath) -> String {
        let s = p.as_ref();
        if self.root.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&format!("{}/", self.root))
                .unwrap_or(s)
                .to_string()
        }
    }
}

impl Sink for ObjectSink {
    fn put(&self, path: &str, bytes: Vec<u8>) -> BoxFuture<'_, Result<(), SinkError>> {
        let p = self.full(path);
        Box::pin(async move {
            if bytes.len() <= MULTIPART_THRESHOLD {
                self.store.put(&p, PutPayload::from(bytes)).await?;
                return Ok(());
            }
            let upload = self.store.put_multipart(&p).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            w.write(&bytes);
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

    fn list(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<String>, SinkError>> {
        let p = if prefix.is_empty() && self.root.is_empty() {
            None
        } else {
            Some(self.full(prefix.trim_end_matches('/')))
        };
        Box::pin(async move {
            use futures::TryStreamExt;
            let metas: Vec<_> = self.store.list(p.as_ref()).try_collect().await?;
            Ok(metas.iter().map(|m| self.relative(&m.location)).collect())
        })
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
}
