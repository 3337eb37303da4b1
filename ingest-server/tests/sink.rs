//! One test suite for the `Sink` trait, run against every backend: the local
//! store (`file://`) and S3 (moto on 127.0.0.1). What the writer relies on:
//! puts are atomic and replace, large objects go through multipart and come
//! back whole, a missing object reads as `None` (not an error), deletes are
//! idempotent, and `make_durable`/`check` work on what exists.

mod s3_common;

use ingest_server::config::StoreConfig;
use ingest_server::format::Format;
use ingest_server::{MULTIPART_THRESHOLD, ObjectSink, Sink};
use s3_common::*;

fn bytes_of(n: usize, seed: u64) -> bytes::Bytes {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

async fn suite(name: &str, sink: &dyn Sink) {
    let small =
        "source=s/dt=2026-01-01/hour=00/00000000000000000000-00000000000000000009.ndjson.gz";
    let large = "source=s/dt=2026-01-01/hour=01/00000000000000000010-00000000000000000019.parquet";
    sink.check()
        .await
        .unwrap_or_else(|e| panic!("{name}: check: {e}"));
    assert_eq!(
        sink.get(small).await.unwrap(),
        None,
        "{name}: missing reads as None"
    );

    let a = bytes_of(1000, 1);
    sink.put(small, a.clone()).await.unwrap();
    assert_eq!(
        sink.get(small).await.unwrap().as_deref(),
        Some(&a[..]),
        "{name}"
    );
    // A second put replaces the whole object.
    let b = bytes_of(500, 2);
    sink.put(small, b.clone()).await.unwrap();
    assert_eq!(
        sink.get(small).await.unwrap().as_deref(),
        Some(&b[..]),
        "{name}: replaced"
    );
    sink.make_durable(small)
        .await
        .unwrap_or_else(|e| panic!("{name}: make_durable: {e}"));

    // Over the multipart threshold: comes back whole.
    let big = bytes_of(MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17, 3);
    sink.put(large, big.clone()).await.unwrap();
    let back = sink.get(large).await.unwrap().expect("large object");
    assert_eq!(back.len(), big.len(), "{name}: multipart length");
    assert!(back == big[..], "{name}: multipart content");

    sink.delete(small).await.unwrap();
    assert_eq!(sink.get(small).await.unwrap(), None, "{name}: deleted");
    sink.delete(small)
        .await
        .unwrap_or_else(|e| panic!("{name}: deleting twice: {e}"));
    sink.delete(large).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sink_backend_passes_the_same_suite() {
    let dir = tempfile::tempdir().unwrap();
    let local = ObjectSink::open(&StoreConfig {
        data_dir: dir.path().to_path_buf(),
        storage: format!("file://{}", dir.path().join("objects").display()),
        s3_endpoint: None,
        format: Format::Ndjson,
    })
    .unwrap();
    suite("local", &local).await;

    let Some(venv) = venv("sink suite on S3") else {
        return;
    };
    let moto = Moto::start(&venv);
    moto.create_bucket("sink-suite");
    // SAFETY: this test binary holds this one test; nothing else reads the
    // environment concurrently.
    unsafe {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ] {
            std::env::set_var(k, v);
        }
    }
    let s3 = ObjectSink::open(&StoreConfig {
        data_dir: dir.path().to_path_buf(),
        storage: "s3://sink-suite/prefix".into(),
        s3_endpoint: Some(moto.endpoint.clone()),
        format: Format::Ndjson,
    })
    .unwrap();
    suite("s3 (moto)", &s3).await;
}
