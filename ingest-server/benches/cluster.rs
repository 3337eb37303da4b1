//! Distributed-mode benchmark (harness = false; prints figures, asserts nothing
//! about speed). Run with `scripts/bench-cluster.sh` or
//! `cargo bench -p ingest-server --bench cluster`.
//!
//! 1. **local**: the single process with its local log, as the `ingest` bench
//!    loads it: closed loop for `BENCH_SECONDS` (default 8), then until every
//!    acknowledged event is in a committed object.
//! 2. **jetstream**: the same load through one front-end (`serve --broker`), a
//!    JetStream of `BENCH_NATS_NODES` nodes (default 1; 3 runs R3), with
//!    `sync_interval: always` unless `BENCH_NATS_SYNC=default`, and one writer
//!    (`write --broker`), objects on
//!    local disk. Printed: events/s acknowledged and end to end, and CPU per
//!    event of the front-end, nats-server and the writer, beside the local
//!    mode's, measured in the same run (compare ratios on a noisy machine).
//! 3. **takeover**: how long a writer taking a partition over needs to load its
//!    dedupe keys, per million keys (key files on local disk).

mod load;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use load::*;

fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", 8);
    let connections: usize = env_or("BENCH_CONNECTIONS", 32);
    let batches: usize = env_or("BENCH_BATCHES", 20_000);
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bodies = Arc::new(build_batches(batches));
    println!("bench: {batches} batches of {EVENTS_PER_BATCH} events built");

    let local = run_local(&rt, tmp.path(), &bodies, seconds, connections);
    local.print("local log");
    match nats_server() {
        Some(bin) => {
            let js = run_jetstream(&rt, &bin, tmp.path(), &bodies, seconds, connections);
            js.print("jetstream");
            println!(
                "ratio jetstream/local: end-to-end rate {:.2}, CPU per event {:.2}",
                js.end_to_end() / local.end_to_end(),
                js.cpu_per_event() / local.cpu_per_event()
            );
        }
        None => println!("jetstream: skipped (no nats-server; run scripts/setup-python.sh)"),
    }
    takeover(&rt, tmp.path());
}

struct Figures {
    acked: u64,
    load: Duration,
    total: Duration,
    /// (role, CPU seconds).
    cpu: Vec<(&'static str, f64)>,
}

impl Figures {
    fn end_to_end(&self) -> f64 {
        self.acked as f64 / self.total.as_secs_f64()
    }

    fn cpu_per_event(&self) -> f64 {
        self.cpu.iter().map(|c| c.1).sum::<f64>() / self.acked.max(1) as f64
    }

    fn print(&self, name: &str) {
        println!(
            "{name}: {} events acknowledged in {:.1} s ({:.0}/s), all in objects after {:.1} s ({:.0}/s end to end)",
            self.acked,
            self.load.as_secs_f64(),
            self.acked as f64 / self.load.as_secs_f64(),
            self.total.as_secs_f64(),
            self.end_to_end()
        );
        for (role, cpu) in &self.cpu {
            println!(
                "{name}:   {role:<10} {:.2} µs CPU per event ({cpu:.1} s)",
                cpu * 1e6 / self.acked.max(1) as f64
            );
        }
        println!(
            "{name}:   total      {:.2} µs CPU per event",
            self.cpu_per_event() * 1e6
        );
    }
}

fn bin() -> String {
    env!("CARGO_BIN_EXE_ingest-server").to_string()
}

fn spawn(args: &[String], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn ingest-server")
}

fn cpu_of(pid: u32) -> f64 {
    thread_cpu(pid).iter().map(|t| t.1).sum()
}

/// Waits until `written(port)` reaches `acked` (at most 120 s).
fn wait_written(port: u16, acked: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let done = metric(port, "ingest_events_written_total").unwrap_or(0)
            + metric(port, "ingest_events_duplicate_total").unwrap_or(0);
        if done >= acked {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("bench: the writer did not catch up within 120 s");
}

fn load_phase(
    rt: &tokio::runtime::Runtime,
    port: u16,
    bodies: &Arc<Vec<bytes::Bytes>>,
    seconds: u64,
    connections: usize,
) -> Closed {
    let cursor = Arc::new(AtomicUsize::new(0));
    let closed = rt.block_on(closed_loop(
        port,
        connections,
        Duration::from_secs(seconds),
        bodies.clone(),
        cursor,
        false,
    ));
    if closed.errors > 0 {
        println!("bench: {} requests failed", closed.errors);
    }
    closed
}

fn run_local(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    bodies: &Arc<Vec<bytes::Bytes>>,
    seconds: u64,
    connections: usize,
) -> Figures {
    let port = free_port();
    let data = dir.join("local");
    let mut child = spawn(
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data.display().to_string(),
            "--write-key".into(),
            format!("{WRITE_KEY}=bench"),
            "--roll-interval".into(),
            "2s".into(),
        ],
        &dir.join("local.log"),
    );
    wait_port(port);
    let started = Instant::now();
    let closed = load_phase(rt, port, bodies, seconds, connections);
    wait_written(port, closed.events);
    let total = started.elapsed();
    let cpu = vec![("server", cpu_of(child.id()))];
    let _ = child.kill();
    let _ = child.wait();
    Figures {
        acked: closed.events,
        load: closed.elapsed,
        total,
        cpu,
    }
}

fn nats_server() -> Option<PathBuf> {
    let cache = std::env::var_os("TRIBUTARY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary")))?;
    let bin = cache.join("venv/bin/nats-server");
    bin.exists().then_some(bin)
}

fn run_jetstream(
    rt: &tokio::runtime::Runtime,
    nats_bin: &Path,
    dir: &Path,
    bodies: &Arc<Vec<bytes::Bytes>>,
    seconds: u64,
    connections: usize,
) -> Figures {
    let nodes: usize = env_or("BENCH_NATS_NODES", 1);
    let sync = if std::env::var("BENCH_NATS_SYNC").is_ok_and(|v| v == "default") {
        ""
    } else {
        ", sync_interval: always"
    };
    let ports: Vec<(u16, u16)> = (0..nodes).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|p| format!("nats-route://127.0.0.1:{}", p.1))
        .collect();
    let mut nats: Vec<Child> = Vec::new();
    for (i, (client, route)) in ports.iter().enumerate() {
        let cluster = if nodes > 1 {
            format!(
                "server_name: n{i}\ncluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                routes.join(", ")
            )
        } else {
            String::new()
        };
        let conf = dir.join(format!("nats{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{client}\njetstream {{ store_dir: \"{}\"{sync} }}\n{cluster}",
                dir.join(format!("js{i}")).display()
            ),
        )
        .unwrap();
        nats.push(
            Command::new(nats_bin)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nats-server"),
        );
    }
    for (client, _) in &ports {
        wait_port(*client);
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("nats://127.0.0.1:{c}"))
        .collect();
    let urls = urls.join(",");
    let partitions: u32 = env_or("BENCH_PARTITIONS", 4);
    let broker = |role: &str, port: u16, data: &str| -> Vec<String> {
        vec![
            role.into(),
            "--broker".into(),
            urls.clone(),
            "--replicas".into(),
            nodes.to_string(),
            "--partitions".into(),
            partitions.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.join(data).display().to_string(),
        ]
    };
    let (fe_port, w_port) = (free_port(), free_port());
    let mut fe_args = broker("serve", fe_port, "fe");
    fe_args.extend(["--write-key".into(), format!("{WRITE_KEY}=bench")]);
    let mut fe = spawn(&fe_args, &dir.join("fe.log"));
    let mut w_args = broker("write", w_port, "w");
    w_args.extend([
        "--storage".into(),
        format!("file://{}", dir.join("js-objects").display()),
        "--roll-interval".into(),
        "2s".into(),
    ]);
    let mut writer = spawn(&w_args, &dir.join("w.log"));
    wait_port(fe_port);
    wait_port(w_port);
    // The writer takes its partitions on its first rounds.
    std::thread::sleep(Duration::from_secs(3));
    let nats_cpu = |nats: &[Child]| nats.iter().map(|n| cpu_of(n.id())).sum::<f64>();
    let before = (cpu_of(fe.id()), nats_cpu(&nats), cpu_of(writer.id()));
    let started = Instant::now();
    let closed = load_phase(rt, fe_port, bodies, seconds, connections);
    wait_written(w_port, closed.events);
    let total = started.elapsed();
    let cpu = vec![
        ("front-end", cpu_of(fe.id()) - before.0),
        ("nats", nats_cpu(&nats) - before.1),
        ("writer", cpu_of(writer.id()) - before.2),
    ];
    for c in [&mut fe, &mut writer].into_iter().chain(nats.iter_mut()) {
        let _ = c.kill();
        let _ = c.wait();
    }
    Figures {
        acked: closed.events,
        load: closed.elapsed,
        total,
        cpu,
    }
}

/// Key files of 1 million keys (100 files), loaded as a writer taking the
/// partition over does.
fn takeover(rt: &tokio::runtime::Runtime, dir: &Path) {
    use ingest_server::cluster::keyfile;
    use ingest_server::config::StoreConfig;
    let keys: usize = env_or("BENCH_TAKEOVER_KEYS", 1_000_000);
    let root = dir.join("keys");
    let sink = ingest_server::ObjectSink::open(&StoreConfig {
        data_dir: dir.to_path_buf(),
        storage: format!("file://{}", root.display()),
        s3_endpoint: None,
        format: ingest_server::format::Format::Ndjson,
    })
    .unwrap();
    let per_file = keys / 100;
    let now = chrono::Utc::now().timestamp_millis();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for f in 0..100u64 {
        let entries: Vec<([u8; 16], i64)> = (0..per_file)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&x.to_le_bytes());
                k[8..].copy_from_slice(&x.rotate_left(31).to_le_bytes());
                (k, now)
            })
            .collect();
        let path = root.join(keyfile::name(0, 0, f * 1000 + 1, f * 1000 + 1000));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, keyfile::encode(&entries)).unwrap();
    }
    let started = Instant::now();
    let loaded = rt
        .block_on(keyfile::load(&sink, 0, now - 60_000))
        .expect("load key files");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "takeover: {} keys in {} files loaded in {:.0} ms ({:.0} ms per million keys, local disk)",
        loaded.keys.len(),
        loaded.files,
        secs * 1e3,
        secs * 1e3 * 1e6 / loaded.keys.len().max(1) as f64
    );
}
