//! The real ingest-server binary writing to a real S3-compatible server (moto, from the
//! venv of `scripts/setup-python.sh`) on 127.0.0.1: every acknowledged messageId lands
//! exactly once, in both formats, and a large object goes up as a multipart upload.

mod s3_common;

use std::collections::HashSet;

use object_store::path::Path as ObjectPath;
use s3_common::*;

const S3_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

fn server_args(
    moto: &Moto,
    bucket: &str,
    format: &str,
    roll_bytes: &str,
    roll_interval: &str,
) -> Vec<String> {
    [
        "--storage",
        &format!("s3://{bucket}/events"),
        "--s3-endpoint",
        &moto.endpoint,
        "--format",
        format,
        "--roll-bytes",
        roll_bytes,
        "--roll-interval",
        roll_interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends `batches` x `per_batch` events, stops the server with SIGTERM, and checks the
/// bucket holds each messageId exactly once, under Hive-style partitions of the prefix.
async fn round_trip(format: &str) {
    let Some(venv) = venv(&format!("s3_storage::{format}")) else {
        return;
    };
    let moto = Moto::start(&venv);
    let bucket = format!("tributary-{format}");
    moto.create_bucket(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        &server_args(&moto, &bucket, format, "1MiB", "1s"),
        S3_ENV,
    );
    let mut ids = Vec::new();
    for b in 0..20 {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let id = format!("{format}-{b}-{i}");
                ids.push(id.clone());
                track(&id, &"p".repeat(200))
            })
            .collect();
        server.post_batch(&events);
    }
    // A resent batch (same messageIds) must be deduplicated, not stored twice.
    let again: Vec<_> = ids[..100].iter().map(|id| track(id, "again")).collect();
    server.post_batch(&again);
    let status = server.terminate();
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        server.log_tail()
    );

    let store = moto.store(&bucket);
    let prefix = ObjectPath::from("events");
    let objects = read_objects(&store, Some(&prefix)).await;
    assert!(!objects.is_empty(), "no objects in s3://{bucket}/events");
    for (meta, events) in &objects {
        let path = meta.location.as_ref();
        assert!(
            path.starts_with(&format!("events/source={SOURCE}/dt=")) && path.contains("/hour="),
            "object not Hive-partitioned: {path}"
        );
        assert!(
            path.ends_with(
                ingest_server::format::Format::from_path(path)
                    .unwrap()
                    .extension()
            )
        );
        assert!(!events.is_empty(), "empty object {path}");
    }
    assert_exactly_once(&ids, objects.iter().flat_map(|(_, e)| e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_to_s3_exactly_once() {
    round_trip("ndjson").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_to_s3_exactly_once() {
    round_trip("parquet").await;
}

/// One object of ~23 MB (hardly compressible padding) must be uploaded in parts: S3 gives a
/// multipart object an ETag of the form `"<md5>-<parts>"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_uses_multipart_upload() {
    let Some(venv) = venv("s3_storage::large_object_uses_multipart_upload") else {
        return;
    };
    let moto = Moto::start(&venv);
    let bucket = "tributary-large";
    moto.create_bucket(bucket);
    let dir = tempfile::tempdir().unwrap();
    // Only the shutdown roll may cut the object: one big object.
    let args = server_args(&moto, bucket, "ndjson", "256MiB", "10m");
    let mut server = Server::start(&dir.path().join("data"), &args, S3_ENV);
    let mut ids = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for b in 0..150 {
        let events: Vec<_> = (0..100)
            .map(|i| {
                let id = format!("large-{b}-{i}");
                ids.push(id.clone());
                // ~2 KB of pseudo-random base64-alphabet text per event: gzip keeps
                // ~75% of it, so the object ends above the 16 MiB multipart threshold.
                const ALPHABET: &[u8; 64] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let pad: String = (0..2048)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        ALPHABET[(seed >> 58) as usize] as char
                    })
                    .collect();
                track(&id, &pad)
            })
            .collect();
        server.post_batch(&events);
    }
    let status = server.terminate();
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        server.log_tail()
    );

    let store = moto.store(bucket);
    let objects = read_objects(&store, None).await;
    assert_exactly_once(&ids, objects.iter().flat_map(|(_, e)| e));
    let largest = objects
        .iter()
        .map(|(meta, _)| meta)
        .max_by_key(|m| m.size)
        .expect("an object");
    assert!(
        largest.size > 17_000_000,
        "largest object only {} bytes",
        largest.size
    );
    let etag = largest.e_tag.clone().unwrap_or_default();
    assert!(
        etag.trim_matches('"').contains('-'),
        "{} ({} bytes) was not a multipart upload: ETag {etag}",
        largest.location,
        largest.size
    );
    let distinct: HashSet<_> = objects
        .iter()
        .map(|(m, _)| m.location.to_string())
        .collect();
    assert_eq!(distinct.len(), objects.len());
}

/// The server writes several small objects to S3 (a roll per second), then `compact`
/// merges them in the bucket: fewer objects, every messageId still exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_on_s3_keeps_every_event_once() {
    let Some(venv) = venv("s3_storage::compact_on_s3_keeps_every_event_once") else {
        return;
    };
    let moto = Moto::start(&venv);
    let bucket = "tributary-compact";
    moto.create_bucket(bucket);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = server_args(&moto, bucket, "ndjson", "1MiB", "1s");
    let mut server = Server::start(&data, &args, S3_ENV);
    let mut ids = Vec::new();
    for b in 0..4 {
        let events: Vec<_> = (0..50)
            .map(|i| {
                let id = format!("compact-{b}-{i}");
                ids.push(id.clone());
                track(&id, "c")
            })
            .collect();
        server.post_batch(&events);
        // Let the 1 s roll cut an object per batch.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    let status = server.terminate();
    assert!(status.success(), "{}", server.log_tail());
    let store = moto.store(bucket);
    let before = read_objects(&store, None).await;
    assert!(
        before.len() >= 3,
        "only {} objects before compaction",
        before.len()
    );

    let storage = format!("s3://{bucket}/events");
    let data_dir = data.display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(["compact", "--data-dir", &data_dir, "--storage", &storage])
        .args(["--s3-endpoint", &moto.endpoint, "--min-age", "0s"])
        .envs(S3_ENV.iter().copied())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let after = read_objects(&store, None).await;
    assert_exactly_once(&ids, after.iter().flat_map(|(_, e)| e));
    assert_eq!(after.len(), 1, "{text}");
    assert!(after[0].0.location.as_ref().contains("/c-"), "{text}");
}
