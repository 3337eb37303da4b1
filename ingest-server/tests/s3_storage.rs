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

/// A TCP forwarder to moto that can drop every connection ("S3 is down").
struct Outage {
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    endpoint: String,
}

impl Outage {
    fn start(target: &str) -> Self {
        use std::sync::atomic::Ordering;
        let target = target.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !flag.load(Ordering::SeqCst) {
                    drop(client); // connection reset: storage unreachable
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Outage { up, endpoint }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}

fn metric(url: &str, name: &str) -> f64 {
    let text = agent()
        .get(format!("{url}/metrics"))
        .call()
        .map(|r| r.into_body().read_to_string().unwrap_or_default())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The writer starts while S3 is unreachable, with a crash's leftovers: log events
/// not yet in objects, and an intent whose object was uploaded but not committed. It
/// must not mistake "unreachable" for "absent" (which would drop the intent), must
/// report the outage (`/ready` 503, sink errors), keep accepting into the log, and
/// once S3 is back store every event exactly once, re-committing the intent's object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_starts_with_s3_down_and_recovers_exactly_once() {
    let Some(venv) = venv("s3_storage::writer_starts_with_s3_down") else {
        return;
    };
    let moto = Moto::start(&venv);
    let bucket = "tributary-outage";
    moto.create_bucket(bucket);
    let outage = Outage::start(&moto.endpoint);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = |roll: &str| -> Vec<String> {
        [
            "--storage",
            &format!("s3://{bucket}/events"),
            "--s3-endpoint",
            &outage.endpoint,
            "--roll-interval",
            roll,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let ids = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    };
    let batch = |ids: &[String]| -> Vec<serde_json::Value> {
        ids.iter().map(|id| track(id, "o")).collect()
    };

    // 1. Events acked into the log, then SIGKILL before any object rolls.
    let logged = ids("logged", 200);
    {
        let server = Server::start(&data, &args("10m"), S3_ENV);
        server.post_batch(&batch(&logged[..100]));
        server.post_batch(&batch(&logged[100..]));
        signal(server.pid().unwrap(), "KILL");
    }
    // 2. An object uploaded but not committed when the crash hit: its intent.
    let uploaded = ids("uploaded", 10);
    let day = recent_day();
    let rel = format!(
        "source=formats/dt={day}/hour=10/00000000000000000000-00000000000000000009.ndjson.gz"
    );
    let rel = rel.as_str();
    {
        let db = ingest_server::StateDb::open(&data).unwrap();
        let intent = ingest_server::Intent {
            path: rel.into(),
            first: 0,
            last: 9,
        };
        db.record_intent(&intent, 0).unwrap();
        let mut encoder = ingest_server::format::Format::Ndjson.encoder();
        for id in &uploaded {
            let mut e = track(id, "u");
            e["source"] = serde_json::json!(SOURCE);
            e["receivedAt"] = serde_json::json!(format!("{day}T10:00:00.000Z"));
            encoder.push(&e).unwrap();
        }
        use object_store::ObjectStoreExt;
        moto.store(bucket)
            .put(
                &ObjectPath::from(format!("events/{rel}")),
                encoder.finish().unwrap().into(),
            )
            .await
            .unwrap();
    }
    // 3. S3 goes down; the server restarts into it.
    outage.set_up(false);
    let mut server = Server::start(&data, &args("1s"), S3_ENV);
    wait_until("/ready to report the outage", 60, || {
        agent()
            .get(format!("{}/ready", server.url))
            .call()
            .ok()
            .map(|r| r.status().as_u16())
            == Some(503)
    });
    wait_until("sink errors to be counted", 60, || {
        metric(&server.url, "ingest_sink_errors_total") >= 1.0
    });
    let during = ids("during", 100);
    server.post_batch(&batch(&during)); // the log still takes events
    assert_eq!(metric(&server.url, "ingest_events_written_total"), 0.0);
    // 4. S3 is back: everything lands, and the server says it is ready again.
    outage.set_up(true);
    let expected: Vec<String> = logged
        .iter()
        .chain(&uploaded)
        .chain(&during)
        .cloned()
        .collect();
    wait_until("every event in S3", 90, || {
        metric(&server.url, "ingest_events_written_total") as usize >= logged.len() + during.len()
    });
    wait_until("/ready", 30, || {
        agent()
            .get(format!("{}/ready", server.url))
            .call()
            .ok()
            .map(|r| r.status().as_u16())
            == Some(200)
    });
    // The re-committed object's keys are in the index: a resend is a duplicate.
    server.post_batch(&batch(&uploaded));
    assert!(server.terminate().success(), "{}", server.log_tail());
    let store = moto.store(bucket);
    let objects = read_objects(&store, Some(&ObjectPath::from("events"))).await;
    assert_exactly_once(&expected, objects.iter().flat_map(|(_, e)| e));
}
