//! The distributed mode under faults: a 3-node NATS JetStream cluster (R3
//! streams), 2 front-ends and 2 writers (each with its own data directory, as if
//! on separate machines), moto as the shared S3, and client threads posting
//! batches to two sources with retries and failover. Under load the test SIGKILLs a NATS node,
//! a front-end and a writer (each restarted), and SIGSTOPs the other writer past
//! its lease, then SIGCONTs it. At the end every acknowledged messageId is in S3
//! exactly once (read back by our decoders and by DuckDB), nothing unknown is
//! stored, and replays are answered from the Idempotency-Key record by either
//! front-end.

mod s3_common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use s3_common::{Moto, agent, free_port, signal};
use serde_json::{Value, json};
use tributary_test_support::{Readiness, Server, ServerSpec};

const KEY: &str = "cluster-key";
/// A second source: a cut then spans several hour directories of two sources.
const KEY2: &str = "cluster-key-web";
const SOURCE: &str = "app";
const BUCKET: &str = "cluster";
const LEASE: &str = "3s";

/// The venv's nats-server, or `None` (loudly) when it is missing and neither
/// `TRIBUTARY_REQUIRE_NATS` nor `TRIBUTARY_REQUIRE_S3` asks for it.
fn nats_server() -> Option<(PathBuf, PathBuf)> {
    let venv = s3_common::venv("cluster test")?;
    let bin = venv.join("bin/nats-server");
    if bin.exists() {
        return Some((venv, bin));
    }
    let message = format!("{} is missing; run scripts/setup-python.sh", bin.display());
    if std::env::var_os("TRIBUTARY_REQUIRE_NATS").is_some()
        || std::env::var_os("TRIBUTARY_REQUIRE_S3").is_some()
    {
        panic!("{message}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    None
}

/// One nats-server process of the cluster.
struct Node {
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    client: u16,
    monitor: u16,
}

/// A JetStream cluster (or a single node) on 127.0.0.1, killed when dropped.
struct NatsCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    fn start(bin: &Path, dir: &Path, n: usize) -> Self {
        for _ in 0..5 {
            let ports: Vec<(u16, u16, u16)> = (0..n)
                .map(|_| (free_port(), free_port(), free_port()))
                .collect();
            let routes: Vec<String> = ports
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{}", p.1))
                .collect();
            let mut nodes = Vec::new();
            for (i, (client, cluster, monitor)) in ports.iter().enumerate() {
                let store = dir.join(format!("n{i}"));
                let conf = dir.join(format!("n{i}.conf"));
                // sync_interval: always, as in production (docs/DEPLOYMENT.md).
                std::fs::write(
                    &conf,
                    format!(
                        "server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                         jetstream {{ store_dir: \"{}\", sync_interval: always }}\n{}",
                        store.display(),
                        if n == 1 {
                            String::new()
                        } else {
                            format!(
                                "cluster {{ name: tributary, listen: 127.0.0.1:{cluster}, routes: [{}] }}\n",
                                routes.join(", ")
                            )
                        }
                    ),
                )
                .unwrap();
                nodes.push(Node {
                    log: dir.join(format!("n{i}.log")),
                    conf,
                    child: None,
                    client: *client,
                    monitor: *monitor,
                });
            }
            let mut c = NatsCluster {
                bin: bin.to_path_buf(),
                nodes,
            };
            for i in 0..n {
                c.spawn(i);
            }
            if c.wait_healthy(Duration::from_secs(30)) {
                return c;
            }
            // A port was taken by a parallel test: try others.
        }
        panic!("the NATS cluster did not start on any of 5 port sets");
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        node.child = Some(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&node.conf)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("spawn nats-server"),
        );
    }

    fn wait_healthy(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let agent = agent();
        while Instant::now() < deadline {
            let mut ok = 0;
            for n in &mut self.nodes {
                if let Some(Ok(Some(_))) = n.child.as_mut().map(|c| c.try_wait()) {
                    return false;
                }
                if let Ok(r) = agent
                    .get(format!("http://127.0.0.1:{}/healthz", n.monitor))
                    .call()
                    && r.status() == 200
                {
                    ok += 1;
                }
            }
            if ok == self.nodes.len() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A role of the `ingest-server` binary (`serve` or `write`), started by the
/// shared harness (ready when `/ready` answers 200 from this very process),
/// killed when dropped.
struct Role {
    server: Server,
    url: String,
}

impl Role {
    /// Starts `ingest-server <args>`; `args[0]` is the role.
    fn start(args: Vec<String>, log: PathBuf) -> Self {
        let (role, rest) = args.split_first().expect("a role");
        let server = ServerSpec::new(env!("CARGO_BIN_EXE_ingest-server"))
            .command([role])
            .args(rest)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .log_file(log)
            .readiness(Readiness::http("/ready"))
            .start()
            .unwrap_or_else(|e| panic!("{args:?} did not start: {e}"));
        let url = server.url().expect("an HTTP role");
        Role { server, url }
    }

    fn restart(&mut self) {
        self.server
            .restart()
            .unwrap_or_else(|e| panic!("restart failed: {e}\n{}", self.log_tail()));
        self.url = self.server.url().expect("an HTTP role");
    }

    fn pid(&self) -> u32 {
        self.server.pid().expect("running")
    }

    fn kill(&mut self) {
        self.server.kill();
    }

    fn log_tail(&self) -> String {
        self.server.log_tail(6000)
    }
}

fn uuid7() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Random hex: incompressible padding.
fn padding(rng: &mut impl Rng, len: usize) -> String {
    (0..len / 2)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

struct Load {
    front_ends: Vec<Mutex<String>>,
    stop: AtomicBool,
    sent: Mutex<HashSet<String>>,
    acked: Mutex<HashSet<String>>,
    /// Acknowledged batches: (write key, Idempotency-Key, body, answer), replayed at the end.
    answered: Mutex<Vec<(&'static str, String, String, String)>>,
    retries: AtomicU64,
}

/// Posts `body` with its key until a front-end answers 200, failing over
/// between front-ends; `None` once the load is stopped and 60 s have passed.
fn post_until_done(
    load: &Load,
    first: usize,
    write_key: &str,
    key: &str,
    body: &str,
) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let started = Instant::now();
    for attempt in 0.. {
        let url = load.front_ends[(first + attempt) % load.front_ends.len()]
            .lock()
            .unwrap()
            .clone();
        let resp = agent
            .post(format!("{url}/v1/batch"))
            .header("Content-Type", "application/json")
            .header("Authorization", basic(write_key))
            .header("Idempotency-Key", key)
            .send(body.as_bytes());
        if let Ok(r) = resp {
            let status = r.status().as_u16();
            let text = r.into_body().read_to_string().unwrap_or_default();
            if status == 200 {
                return Some(text);
            }
            assert!(
                status == 503 || status == 429 || status == 409,
                "unexpected {status}: {text}"
            );
        }
        load.retries.fetch_add(1, Ordering::Relaxed);
        if started.elapsed() > Duration::from_secs(90) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn basic(write_key: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"))
    )
}

fn client(load: Arc<Load>, n: usize) {
    let write_key = [KEY, KEY2][n % 2];
    let mut rng = rand::rng();
    let mut mine: Vec<String> = Vec::new();
    let mut batch_no = 0usize;
    while !load.stop.load(Ordering::Acquire) {
        batch_no += 1;
        let events: Vec<Value> = (0..20)
            .map(|_| {
                // Now and then an id sent before, under a new Idempotency-Key:
                // a duplicate only the writers can drop.
                let id = if !mine.is_empty() && rng.random_ratio(1, 15) {
                    mine[rng.random_range(0..mine.len())].clone()
                } else {
                    uuid7()
                };
                json!({"type": "track", "event": "Load", "messageId": id, "userId": format!("u{n}"),
                       "properties": {"pad": padding(&mut rng, 300)}})
            })
            .collect();
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().to_string())
            .collect();
        load.sent.lock().unwrap().extend(ids.iter().cloned());
        let body = json!({"batch": events}).to_string();
        let key = uuid7();
        let Some(answer) = post_until_done(&load, n + batch_no, write_key, &key, &body) else {
            continue;
        };
        assert!(answer.contains("\"accepted\":20"), "{answer}");
        load.acked.lock().unwrap().extend(ids.iter().cloned());
        mine.extend(ids);
        load.answered
            .lock()
            .unwrap()
            .push((write_key, key, body, answer));
    }
}

/// Reads every data object of the bucket: messageId → count.
fn stored(moto: &Moto) -> HashMap<String, usize> {
    let store = moto.store(BUCKET);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects = rt.block_on(s3_common::read_objects(&store, None));
    let mut counts = HashMap::new();
    for (_, events) in objects {
        for e in events {
            *counts
                .entry(e["messageId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    counts
}

#[test]
fn jetstream_cluster_keeps_every_acknowledged_event_exactly_once_through_kills() {
    let Some((venv, bin)) = nats_server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    eprintln!("logs and data under {}", root.display());
    let _tmp = if std::env::var_os("TRIBUTARY_KEEP_TEST_DIR").is_some() {
        // Kept for a post-mortem (the NATS and role logs are there).
        std::mem::forget(tmp);
        None
    } else {
        Some(tmp)
    };
    let dir = root.as_path();
    let moto = Moto::start(&venv);
    moto.create_bucket(BUCKET);
    let mut nats = NatsCluster::start(&bin, dir, 3);
    let prefix = format!("t{}", rand::rng().random::<u32>());
    let common = |role: &str| -> Vec<String> {
        vec![
            role.to_string(),
            "--broker".into(),
            nats.urls(),
            "--broker-prefix".into(),
            prefix.clone(),
            "--partitions".into(),
            "4".into(),
            "--replicas".into(),
            "3".into(),
            "--lease".into(),
            LEASE.into(),
        ]
    };
    let mut fronts: Vec<Role> = (0..2)
        .map(|i| {
            let mut a = common("serve");
            a.extend([
                "--data-dir".into(),
                dir.join(format!("fe{i}")).display().to_string(),
                "--write-key".into(),
                format!("{KEY}={SOURCE}"),
                "--write-key".into(),
                format!("{KEY2}=web"),
            ]);
            Role::start(a, dir.join(format!("fe{i}.log")))
        })
        .collect();
    // The two writers cut differently (by size, by time), so a cut recorded by
    // one and finished by the other is exercised.
    let rolls: [[&str; 6]; 2] = [
        [
            "--roll-bytes",
            "1MiB",
            "--max-buffer-bytes",
            "1MiB",
            "--roll-interval",
            "4s",
        ],
        [
            "--roll-bytes",
            "64MiB",
            "--max-buffer-bytes",
            "64MiB",
            "--roll-interval",
            "1s",
        ],
    ];
    let mut writers: Vec<Role> = (0..2)
        .map(|i| {
            let mut a = common("write");
            a.extend([
                "--data-dir".into(),
                dir.join(format!("w{i}")).display().to_string(),
                "--storage".into(),
                format!("s3://{BUCKET}/events"),
                "--s3-endpoint".into(),
                moto.endpoint.clone(),
            ]);
            a.extend(rolls[i].iter().map(|s| s.to_string()));
            Role::start(a, dir.join(format!("w{i}.log")))
        })
        .collect();
    let load = Arc::new(Load {
        front_ends: fronts.iter().map(|f| Mutex::new(f.url.clone())).collect(),
        stop: AtomicBool::new(false),
        sent: Mutex::default(),
        acked: Mutex::default(),
        answered: Mutex::default(),
        retries: AtomicU64::new(0),
    });
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let load = load.clone();
            std::thread::spawn(move || client(load, n))
        })
        .collect();
    let pause = |secs: u64| std::thread::sleep(Duration::from_secs(secs));
    pause(3);
    eprintln!("fault: SIGKILL NATS node 1");
    nats.kill(1);
    pause(3);
    nats.spawn(1);
    pause(3);
    eprintln!("fault: SIGKILL front-end 0");
    fronts[0].kill();
    pause(3);
    fronts[0].restart();
    *load.front_ends[0].lock().unwrap() = fronts[0].url.clone();
    pause(2);
    eprintln!("fault: SIGKILL writer 0");
    writers[0].kill();
    pause(5);
    writers[0].restart();
    pause(3);
    eprintln!("fault: SIGSTOP writer 1 past its lease");
    signal(writers[1].pid(), "STOP");
    pause(9);
    signal(writers[1].pid(), "CONT");
    pause(4);
    load.stop.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client thread");
    }
    let acked = load.acked.lock().unwrap().clone();
    let sent = load.sent.lock().unwrap().clone();
    eprintln!(
        "load: {} ids sent, {} acknowledged, {} retries",
        sent.len(),
        acked.len(),
        load.retries.load(Ordering::Relaxed)
    );
    assert!(
        acked.len() > 1000,
        "too little load got through: {}",
        acked.len()
    );

    // Every acknowledged id reaches S3 once the writers catch up.
    let deadline = Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let counts = stored(&moto);
        if acked.iter().all(|id| counts.contains_key(id)) || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged ids never stored, e.g. {:?}\nwriter 0:\n{}\nwriter 1:\n{}",
        missing.len(),
        &missing[..missing.len().min(3)],
        writers[0].log_tail(),
        writers[1].log_tail()
    );
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "stored more than once: {:?}",
        &twice[..twice.len().min(5)]
    );
    let unknown: Vec<_> = counts.keys().filter(|id| !sent.contains(*id)).collect();
    assert!(unknown.is_empty(), "ids nobody sent: {unknown:?}");

    // The fenced writer noticed it lost its partitions and committed nothing
    // after (a commit would have needed a compare-and-set it could not win).
    let fenced = writers[1].log_tail();
    assert!(
        fenced.contains("lease lost") || fenced.contains("taken over"),
        "writer 1 did not notice it was fenced:\n{fenced}"
    );

    // Replays get the stored answer from either front-end.
    let answered = load.answered.lock().unwrap().clone();
    let agent = agent();
    for (i, (write_key, key, body, answer)) in
        answered.iter().step_by(answered.len() / 10 + 1).enumerate()
    {
        let url = &fronts[i % 2].url;
        let r = agent
            .post(format!("{url}/v1/batch"))
            .header("Content-Type", "application/json")
            .header("Authorization", basic(write_key))
            .header("Idempotency-Key", key)
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        assert_eq!(&r.into_body().read_to_string().unwrap(), answer);
    }

    duckdb_agrees(&venv, &moto, dir, acked.len());
}

/// Downloads the objects and has DuckDB count rows and distinct messageIds.
fn duckdb_agrees(venv: &Path, moto: &Moto, dir: &Path, acked: usize) {
    let local = dir.join("download");
    let store = moto.store(BUCKET);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects = rt.block_on(s3_common::raw_objects(&store, None));
    for (meta, _, bytes) in objects {
        let file = local.join(meta.location.as_ref());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let script = format!(
        "import duckdb; r = duckdb.sql(\"select count(*), count(distinct messageId) from read_ndjson_auto('{}/**/*.ndjson.gz')\").fetchone(); print(r[0], r[1])",
        local.display()
    );
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<usize> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(nums[0], nums[1], "DuckDB sees duplicate rows");
    assert!(
        nums[0] >= acked,
        "DuckDB sees {} rows for {acked} acknowledged ids",
        nums[0]
    );
}

/// One front-end, one writer on a single JetStream node: a broker that stops
/// answering gets 503s with Retry-After (and `/ready` says so) until it is back,
/// then the front-end recovers by itself; `import --broker` run twice stores
/// each line once, also against ids already posted over HTTP; `compact
/// --broker` beside the running writer loses and duplicates nothing.
#[test]
fn broker_outage_is_a_503_and_import_through_the_broker_is_idempotent() {
    let Some((_venv, bin)) = nats_server() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let nats = NatsCluster::start(&bin, dir, 1);
    let prefix = format!("t{}", rand::rng().random::<u32>());
    let broker = |role: &str| -> Vec<String> {
        [
            role,
            "--broker",
            &nats.urls(),
            "--broker-prefix",
            &prefix,
            "--partitions",
            "3",
            "--broker-timeout",
            "2s",
            "--lease",
            "2s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut fe_args = broker("serve");
    fe_args.extend([
        "--data-dir".into(),
        dir.join("fe").display().to_string(),
        "--write-key".into(),
        format!("{KEY}={SOURCE}"),
    ]);
    let fe = Role::start(fe_args, dir.join("fe.log"));
    let objects = dir.join("objects");
    let mut w_args = broker("write");
    w_args.extend([
        "--data-dir".into(),
        dir.join("w").display().to_string(),
        "--storage".into(),
        format!("file://{}", objects.display()),
        "--roll-interval".into(),
        "1s".into(),
    ]);
    let _writer = Role::start(w_args, dir.join("w.log"));
    let agent = agent();
    let post = |ids: &[String]| {
        let batch: Vec<Value> = ids
            .iter()
            .map(|id| json!({"type": "track", "event": "E", "messageId": id, "userId": "u"}))
            .collect();
        agent
            .post(format!("{}/v1/batch", fe.url))
            .header("Content-Type", "application/json")
            .header("Authorization", basic(KEY))
            .send(json!({ "batch": batch }).to_string().as_bytes())
            .unwrap()
    };
    let posted: Vec<String> = (0..20).map(|_| uuid7()).collect();
    assert_eq!(post(&posted).status(), 200);

    let pid = nats.nodes[0].child.as_ref().unwrap().id();
    signal(pid, "STOP");
    let down: Vec<String> = (0..5).map(|_| uuid7()).collect();
    let r = post(&down);
    assert_eq!(r.status(), 503, "a stopped broker must not get a 200");
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(retry_after.is_some(), "503 without Retry-After");
    let ready = agent.get(format!("{}/ready", fe.url)).call().unwrap();
    assert_eq!(ready.status(), 503, "/ready must report the broker");
    signal(pid, "CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    while post(&down).status() != 200 {
        assert!(Instant::now() < deadline, "the front-end did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A file of 30 lines: 10 ids posted over HTTP already, 20 new.
    let file = dir.join("import.ndjson");
    let new: Vec<String> = (0..20).map(|_| uuid7()).collect();
    let lines: Vec<String> = posted[..10]
        .iter()
        .chain(&new)
        .map(|id| {
            json!({"type": "track", "event": "Imported", "messageId": id, "source": SOURCE})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    for _ in 0..2 {
        let mut args = broker("import");
        args.push(file.display().to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Compaction beside the running writer: objects of a recorded but
    // uncommitted cut are left alone, so nothing is merged and re-uploaded.
    let mut args = broker("compact");
    args.extend([
        "--data-dir".into(),
        dir.join("compact").display().to_string(),
        "--storage".into(),
        format!("file://{}", objects.display()),
        "--min-age".into(),
        "0s".into(),
        "--target-bytes".into(),
        "1MiB".into(),
    ]);
    std::fs::create_dir_all(dir.join("compact")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "compact failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: HashSet<String> = posted.iter().chain(&down).chain(&new).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<Value> = s3_common::read_dir_objects(&objects)
            .into_iter()
            .flat_map(|(_, e)| e)
            .collect();
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().to_string())
            .collect();
        if expected.iter().all(|id| ids.contains(id)) || Instant::now() > deadline {
            s3_common::assert_exactly_once(&expected, &events);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
