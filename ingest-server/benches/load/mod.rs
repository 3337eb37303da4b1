//! The load generator shared by the benchmarks: pre-built gzip batches of SDK-like
//! events, a closed loop over keep-alive HTTP/1.1 connections, and readings of a
//! server's metrics and CPU.
#![allow(dead_code)] // Each benchmark uses a different part.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// A knob from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Events per batch.
pub const EVENTS_PER_BATCH: usize = 100;
/// The write key the load sends (`Basic` auth), mapped to source `bench`.
pub const WRITE_KEY: &str = "bench-key";

/// Milliseconds since the epoch when the bench started: the time part of the UUID
/// v7 messageIds, as a device recording now would stamp them.
pub fn start_ms() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// `BENCH_IDS=v4` sends random (UUID v4) messageIds, as Segment's libraries do;
/// the default is UUID v7, what the Tributary SDK sends.
pub fn random_ids() -> bool {
    std::env::var("BENCH_IDS").is_ok_and(|v| v == "v4")
}

pub fn message_id(n: u64, h: u64) -> String {
    let r = h.rotate_left(29) ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93);
    if random_ids() {
        return format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            0x8000 | (r >> 48) & 0x3fff,
            r & 0xffff_ffff_ffff
        );
    }
    // v7: 48-bit ms timestamp (devices record ~200 events per ms in total), then random.
    let ms = start_ms() + n / 200;
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        ms >> 16,
        ms & 0xffff,
        h & 0xfff,
        0x8000 | (r >> 48) & 0x3fff,
        r & 0xffff_ffff_ffff
    )
}

pub fn event_json(batch: usize, i: usize) -> String {
    // ~300 bytes, shaped like an SDK track event, with per-event varying fields (ids,
    // times, a session hash) so gzip sees realistic, not identical, events.
    let n = (batch * EVENTS_PER_BATCH + i) as u64;
    let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (n >> 7);
    format!(
        concat!(
            r#"{{"type":"track","event":"Product Viewed","messageId":"{}","#,
            r#""anonymousId":"{:016x}","userId":"user-{}","#,
            r#""timestamp":"2026-11-24T10:{:02}:{:02}.{:03}Z","properties":{{"sku":"SKU-{}","price":{}.99,"#,
            r#""currency":"EUR","session":"{:08x}"}},"context":{{"library":{{"name":"tributary","version":"0.1.0"}}}}}}"#
        ),
        message_id(n, h),
        h.rotate_left(17),
        batch % 1000,
        (n / 60_000) % 60,
        (n / 1000) % 60,
        n % 1000,
        h % 100_000,
        i % 50,
        (h >> 32) as u32
    )
}

pub fn build_batches(n: usize) -> Vec<Bytes> {
    let threads = 2;
    let chunks: Vec<Vec<Bytes>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..n)
                        .filter(|b| b % threads == t)
                        .map(|b| {
                            let events: Vec<String> =
                                (0..EVENTS_PER_BATCH).map(|i| event_json(b, i)).collect();
                            let body = format!(
                                r#"{{"batch":[{}],"sentAt":"2026-11-24T10:00:00.500Z"}}"#,
                                events.join(",")
                            );
                            let mut gz = flate2::write::GzEncoder::new(
                                Vec::new(),
                                flate2::Compression::fast(),
                            );
                            gz.write_all(body.as_bytes()).unwrap();
                            (b, Bytes::from(gz.finish().unwrap()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Bytes)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(b, _)| *b);
        vec![all.into_iter().map(|(_, b)| b).collect()]
    });
    chunks.into_iter().flatten().collect()
}

pub fn request(port: u16, body: Bytes, batch: usize) -> Request<Full<Bytes>> {
    Request::post(format!("http://127.0.0.1:{port}/v1/batch"))
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        // base64("bench-key:")
        .header("authorization", "Basic YmVuY2gta2V5Og==")
        .header("idempotency-key", format!("bench-{batch}"))
        .body(Full::new(body))
        .unwrap()
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// Sends one batch; true on 200.
pub async fn send(sender: &mut Sender, port: u16, bodies: &[Bytes], batch: usize) -> bool {
    let body = bodies[batch % bodies.len()].clone();
    match sender.send_request(request(port, body, batch)).await {
        Ok(resp) => {
            let ok = resp.status() == 200;
            let _ = resp.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

pub struct Closed {
    pub events: u64,
    pub batches: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// Each connection sends its next batch as soon as the previous one is answered.
/// `reuse`: wrap around the pre-built bodies (only for the baseline, which discards).
pub async fn closed_loop(
    port: u16,
    connections: usize,
    duration: Duration,
    bodies: Arc<Vec<Bytes>>,
    cursor: Arc<AtomicUsize>,
    reuse: bool,
) -> Closed {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, cursor, ok, errors) =
            (bodies.clone(), cursor.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(port).await;
            while Instant::now() < deadline {
                let batch = cursor.fetch_add(1, Ordering::Relaxed);
                if !reuse && batch >= bodies.len() {
                    eprintln!("bench: out of pre-built batches; raise BENCH_BATCHES");
                    break;
                }
                if send(&mut sender, port, &bodies, batch).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    sender = connect(port).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let batches = ok.load(Ordering::Relaxed);
    Closed {
        events: batches * EVENTS_PER_BATCH as u64,
        batches,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads one counter from the server's Prometheus `/metrics`.
pub fn metric(port: u16, name: &str) -> Option<u64> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// (thread name, user+sys CPU seconds) of each thread of a live process.
pub fn thread_cpu(pid: u32) -> Vec<(String, f64)> {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some((name, ticks / tick))
        })
        .collect()
}
