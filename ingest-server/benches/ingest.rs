//! End-to-end ingest benchmark (harness = false; prints figures, asserts nothing about
//! speed). Run with `scripts/bench-server.sh` or `cargo bench -p ingest-server --bench ingest`.
//!
//! Load: HTTP/1.1 keep-alive POST /v1/batch, 100 events of ~300 bytes per batch
//! with UUID v7 messageIds like the SDK's (`BENCH_IDS=v4` for random v4 ids),
//! gzip, Basic auth and a unique Idempotency-Key, over `BENCH_CONNECTIONS` (default 64)
//! connections on loopback. Bodies are built before timing so the load generator only
//! sends bytes; it runs on one thread, the server gets the rest of the machine.
//!
//! `TRIBUTARY_BENCH_SERVER_BIN=/path/to/ingest-server` benchmarks another build of the
//! server (A/B comparisons on a machine whose load varies: compare the CPU per event).
//!
//! Phases:
//! 1. **baseline**: a minimal hyper server (a child process running this binary) that
//!    reads and discards bodies; closed loop for `BENCH_SECONDS` (default 8 s).
//! 2. **throughput**: the real `ingest-server` (release) writing NDJSON.gz to local
//!    disk, closed loop for `BENCH_SECONDS`. Events/s = acknowledged events / seconds
//!    (a burst: durable in the log, not yet in objects).
//! 3. **sustained**: after the load stops, wait until the writer has read every
//!    acknowledged event (`ingest_writer_events_read_total`), then SIGTERM, which
//!    rolls and commits the open objects at once; events / (load + time to exit) is
//!    the end-to-end rate into committed objects. The objects are then counted: each
//!    acknowledged event must be there exactly once. Also printed: the writer's own
//!    rate while catching up, server CPU per event and per thread, peak RSS.
//! 4. **latency**: the server restarted on the same data, open loop at half the
//!    sustained rate for 5 s, latency measured from each request's scheduled start
//!    (no coordinated omission): p50, p99. Then counted again.
//! 5. **dedupe index bytes per million ids** (state.sqlite pages in use / ids).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

mod load;

use load::*;
const BASELINE_ENV: &str = "TRIBUTARY_BENCH_BASELINE_PORT";

fn main() {
    if let Ok(port) = std::env::var(BASELINE_ENV) {
        baseline_server(port.parse().expect("baseline port"));
        return;
    }
    let seconds: u64 = env_or("BENCH_SECONDS", 8);
    let connections: usize = env_or("BENCH_CONNECTIONS", 64);
    let batches: usize = env_or("BENCH_BATCHES", 40_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    println!("bench: building {batches} gzip batches of {EVENTS_PER_BATCH} events...");
    let started = Instant::now();
    let bodies = Arc::new(build_batches(batches));
    let avg_gz = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    println!(
        "bench: built in {:.1}s; event ~{} bytes JSON, batch ~{} bytes gzip",
        started.elapsed().as_secs_f64(),
        event_json(0, 0).len(),
        avg_gz
    );

    // 1. Baseline.
    let port = free_port();
    let mut baseline = Command::new(std::env::current_exe().unwrap())
        .env(BASELINE_ENV, port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    let cursor = Arc::new(AtomicUsize::new(0));
    let base = rt.block_on(closed_loop(
        port,
        connections,
        Duration::from_secs(seconds),
        bodies.clone(),
        cursor,
        true,
    ));
    let _ = baseline.kill();
    let _ = baseline.wait();
    let base_rate = base.events as f64 / base.elapsed.as_secs_f64();
    println!(
        "baseline (hyper, read+discard): {:.0} events/s ({} batches, {} errors)",
        base_rate, base.batches, base.errors
    );

    // 2. Throughput of the real server.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start_server(&data, port);
    let rss = RssSampler::start(server.id());
    let cursor = Arc::new(AtomicUsize::new(0));
    let run = rt.block_on(closed_loop(
        port,
        connections,
        Duration::from_secs(seconds),
        bodies.clone(),
        cursor.clone(),
        false,
    ));
    let rate = run.events as f64 / run.elapsed.as_secs_f64();
    println!(
        "ingest-server throughput (acked, durable in log): {:.0} events/s ({} events in {:.1}s, {} non-200)",
        rate,
        run.events,
        run.elapsed.as_secs_f64(),
        run.errors
    );
    println!(
        "ratio ingest-server / hyper baseline: {:.2}",
        rate / base_rate
    );

    // The acked rate is a burst the writer has not caught up with yet. Wait until
    // the writer has read every acked event (buffered into open objects or dropped
    // as a duplicate), then SIGTERM: the writer rolls and commits its open objects
    // at once and the server exits. Load + time to that exit is the exact
    // end-to-end rate: every acked event committed in an object, with no wait for
    // the 5 s roll interval.
    let read_at_stop = metric(port, "ingest_writer_events_read_total").unwrap_or(0);
    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs(180);
    while metric(port, "ingest_writer_events_read_total").unwrap_or(0) < run.events
        && Instant::now() < drain_deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = drain_start.elapsed();
    let hwm = vm_hwm(server.id()).unwrap_or(0);
    let (anon, file) = rss.stop();
    let threads = thread_cpu(server.id());
    let cpu_before = children_cpu();
    signal(server.id(), "TERM");
    let status = server.wait().unwrap();
    let to_exit = drain_start.elapsed();
    // The server's whole-life CPU (children's rusage grows when it is reaped): a
    // figure the machine's other load hardly moves, unlike events/s.
    let server_cpu = children_cpu() - cpu_before;
    let (stored, stored_bytes) = count_events(&data.join("objects"));
    let sustained = run.events as f64 / (run.elapsed + to_exit).as_secs_f64();
    println!(
        "ingest-server sustained, load generator to committed NDJSON.gz objects: {:.0} events/s ({:.1}s of load + {:.2}s until all were committed: {:.2}s for the writer to read the backlog, then the final roll on SIGTERM; exit {status})",
        sustained,
        run.elapsed.as_secs_f64(),
        to_exit.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    println!(
        "  writer alone while catching up: {:.0} events/s ({} events behind when the load stopped; a roll falling in that time counts too)",
        (run.events - read_at_stop.min(run.events)) as f64 / caught_up.as_secs_f64().max(1e-3),
        run.events - read_at_stop.min(run.events)
    );
    println!(
        "  events in objects: {stored} (acked {}); {:.1} bytes per event gzip",
        run.events,
        stored_bytes as f64 / stored.max(1) as f64
    );
    if stored != run.events {
        println!(
            "WARNING: objects hold {stored} events but {} were acknowledged",
            run.events
        );
    }
    println!(
        "ingest-server CPU: {:.2} us per acked event ({:.1}s user+sys for {} events, final roll included)",
        server_cpu * 1e6 / run.events.max(1) as f64,
        server_cpu,
        run.events
    );
    let per = |name: &str| {
        threads
            .iter()
            .filter(|(n, _)| n.starts_with(name))
            .map(|(_, s)| s)
            .sum::<f64>()
            * 1e6
            / run.events.max(1) as f64
    };
    println!(
        "  by thread before SIGTERM (us/event): front-end workers {:.2}, writer (reader and committer threads) {:.2}, log {:.2}",
        per("tokio-rt"),
        per("writer"),
        per("log")
    );
    println!(
        "ingest-server peak RSS (VmHWM): {:.1} MiB; sampled every 50 ms, peak anonymous {:.1} MiB, peak file-backed {:.1} MiB (state.sqlite pages read through mmap: page cache, reclaimable)",
        hwm as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );

    // 3. Latency at half the sustained rate, on a restarted server (same data)
    // with an idle writer.
    let port = free_port();
    let mut server = start_server(&data, port);
    let half = sustained / 2.0;
    let lat = rt.block_on(open_loop(
        port,
        connections * 4,
        half / EVENTS_PER_BATCH as f64,
        Duration::from_secs(5),
        bodies.clone(),
        cursor.clone(),
    ));
    println!(
        "latency at {:.0} events/s ({} batches): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} non-200",
        half,
        lat.samples.len(),
        percentile(&lat.samples, 0.50),
        percentile(&lat.samples, 0.99),
        percentile(&lat.samples, 1.0),
        lat.errors
    );
    let acked = run.events + lat.samples.len() as u64 * EVENTS_PER_BATCH as u64
        - lat.errors * EVENTS_PER_BATCH as u64;
    let stop = Instant::now();
    signal(server.id(), "TERM");
    let status = server.wait().unwrap();
    let (stored, _) = count_events(&data.join("objects"));
    println!(
        "after the latency phase: drain {:.2}s, exit {status}; events in objects {stored} (acked {acked})",
        stop.elapsed().as_secs_f64()
    );
    if stored != acked {
        println!("WARNING: objects hold {stored} events but {acked} were acknowledged");
    }
    match dedupe_bytes_per_million(&data) {
        Some((ids, per_million)) => println!(
            "dedupe index (state.sqlite pages in use, incl. idempotency answers): {ids} ids, {:.1} MB per million ids",
            per_million / 1e6
        ),
        None => println!("dedupe index: state.sqlite not readable"),
    }
}

// ---------------------------------------------------------------- load --------------

struct Open {
    samples: Vec<f64>,
    errors: u64,
}

/// Requests scheduled at `per_second` batches/s, spread over `connections`; latency is
/// taken from the scheduled time, so a stalled server shows up in the tail.
async fn open_loop(
    port: u16,
    connections: usize,
    per_second: f64,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
    cursor: Arc<AtomicUsize>,
) -> Open {
    let total = (per_second * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / per_second.max(1.0));
    let start = Instant::now() + Duration::from_millis(50);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, cursor, next) = (bodies.clone(), cursor.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port).await;
            let mut samples = Vec::new();
            let mut errors = 0;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let scheduled = start + interval * k as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                let batch = cursor.fetch_add(1, Ordering::Relaxed);
                if batch >= bodies.len() {
                    break;
                }
                if send(&mut sender, port, &bodies, batch).await {
                    samples.push(scheduled.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                    sender = connect(port).await;
                }
            }
            (samples, errors)
        }));
    }
    let mut all = Open {
        samples: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (s, e) = t.await.unwrap();
        all.samples.extend(s);
        all.errors += e;
    }
    all.samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

// ------------------------------------------------------------- servers --------------

/// The baseline: hyper, HTTP/1.1, reads each body fully and answers 200 `{}`.
fn baseline_server(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn start_server(data: &Path, port: u16) -> Child {
    std::fs::create_dir_all(data).unwrap();
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    // TRIBUTARY_BENCH_SERVER_BIN runs another build (A/B comparisons).
    let bin = std::env::var("TRIBUTARY_BENCH_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ingest-server").to_string());
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(["--write-key", &format!("{WRITE_KEY}=bench")])
        .args(["--format", "ndjson", "--roll-interval", "5s"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn ingest-server");
    wait_port(port);
    child
}

/// user+sys CPU seconds of this process's reaped children.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Polls a process's RssAnon and RssFile (the kernel keeps no peak of each).
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut anon, mut file) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                anon = anon.max(status_kib(pid, "RssAnon:").unwrap_or(0));
                file = file.max(status_kib(pid, "RssFile:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            (anon, file)
        });
        RssSampler { stop, handle }
    }

    /// Peak (RssAnon, RssFile) in KiB.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// VmHWM of a process, in KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

// ------------------------------------------------------------- storage --------------

/// Events (lines) in every NDJSON.gz object under `root`.
/// (events, compressed bytes) of the NDJSON.gz objects under `root`.
fn count_events(root: &Path) -> (u64, u64) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.to_string_lossy().ends_with(".ndjson.gz") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let bytes = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let events = files
        .iter()
        .map(|f| {
            let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(f).unwrap());
            std::io::BufReader::new(gz).split(b'\n').count() as u64
        })
        .sum();
    (events, bytes)
}

/// (ids, bytes per million ids) of the dedupe index in `<data>/state.sqlite`.
fn dedupe_bytes_per_million(data: &Path) -> Option<(u64, f64)> {
    let db = ingest_server::StateDb::open(data).ok()?;
    let ids = db.dedupe_len().ok()?;
    let bytes = db.size_bytes().ok()?;
    if ids == 0 {
        return None;
    }
    Some((ids, bytes as f64 * 1e6 / ids as f64))
}
