//! `track()` latency on the caller's thread: p50, p99, p99.9 and max.
//! Target: p99 <= 20 µs.
//!
//! Run: `cargo bench -p sdk-core --bench track_latency`
//!
//! The client is offline, so the only work behind `track()` is the writer
//! thread's group commits to SQLite (WAL, synchronous=FULL) on the same two
//! cores. Two runs: a paced one (50,000 events/s, an app's busiest burst) and
//! an unpaced one (as fast as one thread can call), with the backpressure drops
//! reported so a fast-but-dropping run cannot pass for a fast one.

use std::time::{Duration, Instant};

use tributary::{Client, Config, FlushResult};

const WARMUP: usize = 10_000;
const SAMPLES: usize = 200_000;

fn properties(seq: usize) -> String {
    format!(
        r#"{{"seq":{seq},"product_id":"sku-{:05}","price":19.99,"currency":"EUR","category":"books","quantity":2,"coupon":"WINTER"}}"#,
        seq % 100_000
    )
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1_000.0
}

fn run(label: &str, pace: Option<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "http://127.0.0.1:9".into(),
        "bench".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    cfg.max_queue_bytes = 2_000_000_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    for i in 0..WARMUP {
        client
            .track("Product Viewed".into(), properties(i))
            .unwrap();
    }
    client.flush_blocking(60_000);
    let before = client.stats();

    let mut samples = Vec::with_capacity(SAMPLES);
    let start = Instant::now();
    for i in 0..SAMPLES {
        if let Some(pace) = pace {
            // Spin (not sleep) to the next slot: sleeps are too coarse at 20 µs.
            let slot = start + pace * i as u32;
            while Instant::now() < slot {
                std::hint::spin_loop();
            }
        }
        let name = String::from("Product Viewed");
        let props = properties(i);
        let t0 = Instant::now();
        client.track(name, props).unwrap();
        samples.push(t0.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    let result = client.flush_blocking(120_000);
    assert!(matches!(result, FlushResult::Offline { .. }), "{result:?}");
    let after = client.stats();
    samples.sort_unstable();
    println!(
        "track_latency[{label}]: n={SAMPLES} p50={:.2}us p99={:.2}us p99.9={:.2}us max={:.1}us \
         (calls at {:.0}/s; dropped_backpressure={}; target p99<=20us)",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        *samples.last().unwrap() as f64 / 1_000.0,
        SAMPLES as f64 / elapsed.as_secs_f64(),
        after.dropped_backpressure - before.dropped_backpressure,
    );
    client.shutdown(1_000);
}

fn main() {
    run("paced 50k/s", Some(Duration::from_micros(20)));
    run("unpaced", None);
}
