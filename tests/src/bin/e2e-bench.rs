//! Whole-path benchmark: N simulated devices (SDK clients in threads, each
//! with its own storage directory) record M events each against the real
//! ingest server on loopback, through a pass-through proxy that measures.
//!
//! `cargo run --release -p tests --bin e2e-bench -- --devices N --events M
//!  [--rate EVENTS_PER_S] [--format ndjson|parquet] [--flush-at K]`
//!
//! How each figure is measured:
//! - **events/s to storage**: all events, divided by the time from the first
//!   `track()` until the server's `ingest_events_written_total` (events in
//!   committed objects) reaches the total. The server rolls every second.
//! - **track() → durable on the server, p50/p99**: every event carries its
//!   `track()` time (µs since the run began). The server answers 2xx only after
//!   the batch is durable in its log, so when a 2xx response passes the proxy,
//!   each event of that request is durable: the delay is then minus its
//!   track time. This includes queueing on the device, batching (flush_at,
//!   flush_interval), upload and the server's group commit.
//! - **HTTP requests per 1,000 events** and **bytes on the wire per event**:
//!   counted by the proxy (request and response heads and bodies, both ways;
//!   TCP/IP framing not included).
//! - **server CPU s per million events**: utime+stime of the server process
//!   from `/proc/<pid>/stat`, over the run, scaled.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::proxy::{Exchange, FaultProxy};
use tests::server::{Server, ServerOptions, metric_sum};
use tributary::{Client, Config, FlushResult};

/// Whole-path benchmark: simulated devices against the real server on loopback.
#[derive(clap::Parser)]
struct Args {
    /// Simulated devices (SDK clients in threads, each with its own storage).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
    /// Events per device.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Total recording rate in events/s; 0 records as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Object format: ndjson or parquet.
    #[arg(long, default_value = "ndjson")]
    format: String,
    /// The SDK's flush_at.
    #[arg(long, default_value_t = 20)]
    flush_at: u32,
}

/// Collects track→ack delays from the proxy's view of 2xx responses.
fn ack_observer(start: Instant, delays: Arc<Mutex<Vec<u64>>>) -> tests::proxy::Observer {
    Arc::new(move |exchange: &Exchange<'_>| {
        if !(200..300).contains(&exchange.status) || !exchange.delivered {
            return;
        }
        let now = start.elapsed().as_micros() as u64;
        let mut text = Vec::new();
        let gzip = exchange
            .request_head
            .to_ascii_lowercase()
            .contains("content-encoding: gzip");
        let body: &[u8] = if gzip {
            if flate2::read::GzDecoder::new(exchange.request_body)
                .read_to_end(&mut text)
                .is_err()
            {
                return;
            }
            &text
        } else {
            exchange.request_body
        };
        let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let Some(batch) = parsed.get("batch").and_then(Value::as_array) else {
            return;
        };
        let mut sink = delays.lock().unwrap_or_else(|e| e.into_inner());
        for event in batch {
            if let Some(t) = event.pointer("/properties/t").and_then(Value::as_u64) {
                sink.push(now.saturating_sub(t));
            }
        }
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1_000.0
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    tests::binaries::allow_in_place_build();
    let tmp = tempfile::Builder::new()
        .prefix("tributary-e2e-bench-")
        .tempdir()
        .expect("tempdir");
    let mut options = ServerOptions::new(&args.format);
    options.roll_interval = "1s".into();
    options.roll_bytes = "64MiB".into();
    let mut server = Server::start(&tmp.path().join("data"), options);
    let proxy = FaultProxy::start(server.addr());
    let start = Instant::now();
    let delays = Arc::new(Mutex::new(Vec::new()));
    proxy.set_observer(ack_observer(start, delays.clone()));
    let total = args.devices * args.events;
    println!(
        "e2e-bench: {} devices x {} events = {total} events, format {}, flush_at {}, rate {}",
        args.devices,
        args.events,
        args.format,
        args.flush_at,
        if args.rate > 0.0 {
            format!("{} events/s", args.rate)
        } else {
            "unlimited".into()
        }
    );
    let cpu_before = server.cpu_seconds().unwrap_or(0.0);
    let per_device_interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.devices as f64 / args.rate));
    let endpoint = proxy.url();
    let workers: Vec<_> = (0..args.devices)
        .map(|d| {
            let dir = tmp.path().join(format!("device-{d}"));
            let endpoint = endpoint.clone();
            let (events, flush_at) = (args.events, args.flush_at);
            std::thread::spawn(move || {
                std::fs::create_dir_all(&dir).expect("device dir");
                let mut config = Config::new(
                    endpoint,
                    tests::server::WRITE_KEY.into(),
                    dir.to_string_lossy().into_owned(),
                );
                config.flush_at = flush_at;
                let client = Client::new(config, None).expect("Client::new");
                let device = format!("bench-{d}");
                let mut next = Instant::now();
                for seq in 0..events {
                    if let Some(interval) = per_device_interval {
                        next += interval;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let t = start.elapsed().as_micros() as u64;
                    let props = serde_json::json!({
                        "device": device, "seq": seq, "t": t, "pad": tests::sim::PAD,
                    });
                    client
                        .track("Bench Event".into(), props.to_string())
                        .expect("track");
                }
                let mut result = client.flush_blocking(120_000);
                while result != FlushResult::Delivered {
                    eprintln!("device {d}: {result:?}, flushing again");
                    result = client.flush_blocking(60_000);
                }
                let stats = client.stats();
                client.shutdown(1_000);
                stats
            })
        })
        .collect();
    let stats: Vec<_> = workers
        .into_iter()
        .map(|w| w.join().expect("device"))
        .collect();
    let acked_at = start.elapsed();
    // Events the SDK refused (a full writer channel when recording faster than
    // SQLite commits, counted as backpressure drops) never reach the server.
    let dropped: u64 = stats
        .iter()
        .map(|s| s.dropped_backpressure + s.dropped_byte_cap + s.dropped_rejected)
        .sum();
    let backpressure: u64 = stats.iter().map(|s| s.dropped_backpressure).sum();
    let expected = total - dropped;
    // Wait for the server to settle everything into committed objects.
    let mut written = 0.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        written = metric_sum(&server.metrics(), "ingest_events_written_total", &[]);
        if written >= expected as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stored_at = start.elapsed();
    let cpu = server.cpu_seconds().unwrap_or(0.0) - cpu_before;
    let metrics = server.metrics();
    let wire = proxy.stats();
    server.stop_gracefully();

    let mut delays = std::mem::take(&mut *delays.lock().unwrap_or_else(|e| e.into_inner()));
    delays.sort_unstable();
    let received = metric_sum(&metrics, "ingest_bytes_received_total", &[]);
    let totalf = expected as f64;
    println!(
        "events written to objects      {written} of {expected} recorded \
         ({total} tracked; SDK drops {dropped}, of which backpressure {backpressure})"
    );
    println!(
        "events/s delivered to storage   {:.0}   (all acked after {:.2} s, in objects after {:.2} s)",
        totalf / stored_at.as_secs_f64(),
        acked_at.as_secs_f64(),
        stored_at.as_secs_f64()
    );
    println!(
        "track() -> durable on server    p50 {:.1} ms   p99 {:.1} ms   ({} samples)",
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.len()
    );
    println!(
        "HTTP requests per 1,000 events  {:.2}   ({} requests, {:.0} events per request)",
        wire.requests as f64 * 1_000.0 / totalf,
        wire.requests,
        totalf / wire.requests.max(1) as f64
    );
    println!(
        "bytes on the wire per event     {:.1}   (requests {:.1} + responses {:.1}; gzip bodies alone {:.1})",
        (wire.bytes_from_clients + wire.bytes_to_clients) as f64 / totalf,
        wire.bytes_from_clients as f64 / totalf,
        wire.bytes_to_clients as f64 / totalf,
        received / totalf
    );
    println!(
        "server CPU s per million events {:.2}   ({cpu:.2} s of CPU)",
        cpu * 1e6 / totalf
    );
}
