//! Sustained recording throughput into SQLite, in events per second, and its
//! ratio to a raw rusqlite baseline that inserts the same rows, 1,000 per
//! transaction. Targets: >= 200,000 events/s and a ratio >= 0.5.
//!
//! Run: `cargo bench -p sdk-core --bench record_throughput`
//! (`TRIBUTARY_BENCH_ROUNDS=N` for N interleaved rounds, default 3; the
//! summary gives the best and the median of each figure).
//!
//! The client is offline; the clock runs from the first `track()` until
//! `flush_blocking` reports every event durable (`Offline`). Events that the
//! full buffer dropped (backpressure) are not counted as recorded.
//!
//! The burst case replays a 200,000-event backlog with no pause (one
//! producer) and prints the events dropped and the process's peak RSS during
//! the burst (`VmHWM`, reset through `/proc/self/clear_refs`; Linux only), with
//! the default `max_buffer_bytes` and with a bound the whole burst fits in
//! (which must drop nothing).
//! The baseline uses the SDK's schema and pragmas (WAL, synchronous=FULL) and
//! rows of the same size as the SDK's serialized events; the ratio uses it.
//! A second baseline line with synchronous=NORMAL is printed for reference.

use std::time::Instant;

use rusqlite::{Connection, params};
use tributary::{Client, Config, FlushResult};

const EVENTS: usize = 400_000;
const PRODUCERS: usize = 2;

fn properties(seq: usize) -> String {
    format!(
        r#"{{"seq":{seq},"product_id":"sku-{:05}","price":19.99,"currency":"EUR","category":"books","quantity":2,"coupon":"WINTER"}}"#,
        seq % 100_000
    )
}

/// Returns (durable events per second, average stored bytes per event).
/// `chunk`: if set, each producer waits for durability (`flush_blocking`)
/// after every `chunk` events, so the channel never overflows (lossless).
fn sdk(producers: usize, chunk: Option<usize>) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "http://127.0.0.1:9".into(),
        "bench".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    cfg.max_queue_bytes = 4_000_000_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    // Properties are built before the clock starts: the app's own work.
    let per = EVENTS / producers;
    let inputs: Vec<Vec<String>> = (0..producers)
        .map(|p| (0..per).map(|i| properties(p * per + i)).collect())
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for chunk_of_inputs in inputs {
            let client = &client;
            s.spawn(move || {
                for (i, props) in chunk_of_inputs.into_iter().enumerate() {
                    client.track("Product Viewed".into(), props).unwrap();
                    if chunk.is_some_and(|c| i % c == c - 1) {
                        client.flush_blocking(600_000);
                    }
                }
            });
        }
    });
    let result = client.flush_blocking(600_000);
    let elapsed = start.elapsed();
    let stats = client.stats();
    let durable = match result {
        FlushResult::Offline { pending } => pending,
        other => panic!("expected Offline, got {other:?}"),
    };
    assert_eq!(durable, stats.queued_events);
    if chunk.is_some() {
        // Lossless runs wait for durability within the channel's capacity.
        assert_eq!(
            stats.dropped_backpressure, 0,
            "a lossless run dropped events"
        );
        assert_eq!(durable as usize, EVENTS, "a lossless run lost events");
    }
    let mode = match chunk {
        Some(c) => format!("durable every {c}"),
        None => "unthrottled".to_string(),
    };
    let rate = durable as f64 / elapsed.as_secs_f64();
    println!(
        "record_throughput[sdk, {producers} producer thread(s), {mode}]: {durable} durable events in {:.3}s = {:.0} events/s \
         (dropped_backpressure={}, {} bytes/event stored; target >= 200000/s)",
        elapsed.as_secs_f64(),
        rate,
        stats.dropped_backpressure,
        stats.queued_bytes / durable.max(1),
    );
    client.shutdown(1_000);
    (rate, stats.queued_bytes / durable.max(1))
}

const BURST: usize = 200_000;

/// Resets the peak RSS figure of this process (Linux; ignored elsewhere).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak RSS since the last reset, in MB (Linux), from `VmHWM`.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A burst of `BURST` track calls with no pause; `buffer` is `max_buffer_bytes`
/// (`None`: the default). Prints dropped events and peak RSS; returns the drops.
fn burst(buffer: Option<u64>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "http://127.0.0.1:9".into(),
        "bench".into(),
        dir.path().to_string_lossy().into_owned(),
    );
    cfg.max_queue_bytes = 4_000_000_000;
    if let Some(bytes) = buffer {
        cfg.max_buffer_bytes = bytes;
    }
    let bound = cfg.max_buffer_bytes;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    client.await_ready(10_000);
    let inputs: Vec<String> = (0..BURST).map(properties).collect();
    reset_peak_rss();
    let base_rss = peak_rss_mb();
    let start = Instant::now();
    for props in inputs {
        client.track("Product Viewed".into(), props).unwrap();
    }
    let recorded = start.elapsed();
    let result = client.flush_blocking(600_000);
    let elapsed = start.elapsed();
    let stats = client.stats();
    let durable = match result {
        FlushResult::Offline { pending } => pending,
        other => panic!("expected Offline, got {other:?}"),
    };
    let rss = match (base_rss, peak_rss_mb()) {
        (Some(before), Some(peak)) => format!("{peak:.1} MB (+{:.1} MB)", peak - before),
        _ => "n/a".into(),
    };
    println!(
        "record_throughput[burst of {BURST}, max_buffer_bytes={bound}]: dropped_backpressure={} ({:.1}%), {durable} durable, \
         track calls took {:.3}s, all durable after {:.3}s, peak RSS {rss}",
        stats.dropped_backpressure,
        100.0 * stats.dropped_backpressure as f64 / BURST as f64,
        recorded.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    client.shutdown(1_000);
    stats.dropped_backpressure
}

/// Raw rusqlite: the same schema and pragmas, rows of `row_bytes`, 1,000 per transaction.
fn baseline(row_bytes: u64, synchronous: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("baseline.sqlite3")).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         CREATE TABLE events (
             id INTEGER PRIMARY KEY, created_at_ms INTEGER NOT NULL,
             bytes INTEGER NOT NULL, body TEXT NOT NULL, batch_id INTEGER);
         CREATE INDEX events_by_batch ON events(batch_id) WHERE batch_id IS NOT NULL;"
    ))
    .unwrap();
    // Rows like the SDK's: an event JSON with a fresh messageId, padded to size.
    let rows: Vec<String> = (0..EVENTS)
        .map(|i| {
            let head = format!(
                r#"{{"type":"track","event":"Product Viewed","messageId":"{}","timestamp":"2026-11-24T15:00:00.000Z","properties":{}"#,
                uuid::Uuid::now_v7(),
                properties(i)
            );
            let pad = (row_bytes as usize).saturating_sub(head.len() + 12);
            format!(r#"{head},"p":"{}"}}"#, "x".repeat(pad))
        })
        .collect();
    let start = Instant::now();
    for chunk in rows.chunks(1_000) {
        let tx = conn.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (created_at_ms, bytes, body) VALUES (?1, ?2, ?3)",
                )
                .unwrap();
            for row in chunk {
                insert
                    .execute(params![1_764_000_000_000i64, row.len() as i64, row])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let elapsed = start.elapsed();
    let rate = EVENTS as f64 / elapsed.as_secs_f64();
    println!(
        "record_throughput[raw rusqlite, synchronous={synchronous}, 1000 rows/tx, {} bytes/row]: {EVENTS} rows in {:.3}s = {rate:.0} rows/s",
        rows[0].len(),
        elapsed.as_secs_f64()
    );
    rate
}

/// Rounds of every measurement, interleaved so that the SDK and the baseline
/// see the same machine load; `TRIBUTARY_BENCH_ROUNDS` overrides.
fn rounds() -> usize {
    std::env::var("TRIBUTARY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// "best B, median M" of a list of rates.
fn summary(values: &[f64]) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let best = v[v.len() - 1];
    format!("best {best:.0}, median {median:.0}")
}

fn main() {
    // The burst case first, while the process is small.
    burst(None);
    // ~330 bytes per event: 200,000 fit in 96 MB.
    let fitting = burst(Some(96_000_000));
    assert_eq!(
        fitting, 0,
        "a burst that fits the byte bound must lose nothing"
    );
    let n = rounds();
    let (mut one, mut two, mut sat, mut base, mut normal) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut r_one, mut r_two, mut r_sat) = (vec![], vec![], vec![]);
    for round in 1..=n {
        println!("-- round {round}/{n}");
        // Lossless: the producer waits for durability every 5,000 events
        // (~1.6 MB, well within max_buffer_bytes), so nothing is dropped and
        // every event counts.
        let (a, row_bytes) = sdk(1, Some(5_000));
        let (b, _) = sdk(PRODUCERS, Some(2_500));
        // Unthrottled: the writer saturated; what overflows the channel is
        // dropped (reported) and only durable events count.
        let (c, _) = sdk(1, None);
        let raw = baseline(row_bytes, "FULL");
        // For reference only: what WAL with synchronous=NORMAL (safe against
        // process kills, not against power loss) would allow.
        normal.push(baseline(row_bytes, "NORMAL"));
        // Ratios within a round compare runs made under the same load.
        r_one.push(a / raw);
        r_two.push(b / raw);
        r_sat.push(c / raw);
        one.push(a);
        two.push(b);
        sat.push(c);
        base.push(raw);
    }
    println!("-- summary over {n} rounds (events/s; target >= 200000)");
    println!(
        "record_throughput[sdk, lossless, 1 producer]: {}",
        summary(&one)
    );
    println!(
        "record_throughput[sdk, lossless, {PRODUCERS} producers]: {}",
        summary(&two)
    );
    println!(
        "record_throughput[sdk, unthrottled, 1 producer]: {}",
        summary(&sat)
    );
    println!(
        "record_throughput[raw rusqlite, synchronous=FULL]: {}",
        summary(&base)
    );
    println!(
        "record_throughput[raw rusqlite, synchronous=NORMAL, reference]: {}",
        summary(&normal)
    );
    let ratio = |r: &[f64]| {
        let mut v = r.to_vec();
        v.sort_by(f64::total_cmp);
        format!("median {:.2}, best {:.2}", v[v.len() / 2], v[v.len() - 1])
    };
    println!(
        "record_throughput[ratio sdk/raw FULL, same round]: lossless 1 producer {}; lossless {PRODUCERS} producers {}; unthrottled {} (target >= 0.5)",
        ratio(&r_one),
        ratio(&r_two),
        ratio(&r_sat)
    );
}
