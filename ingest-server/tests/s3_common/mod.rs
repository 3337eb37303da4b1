//! Test support shared by the S3, Parquet, compaction and import tests: the Python venv
//! from `scripts/setup-python.sh` (moto, duckdb, pyarrow), a moto S3 server on
//! 127.0.0.1, the real `ingest-server` binary, and reading objects back.
#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

/// The write key every test server accepts, mapped to [`SOURCE`].
pub const WRITE_KEY: &str = "formats-test-key";
/// The source name of [`WRITE_KEY`].
pub const SOURCE: &str = "formats";

/// The venv made by `scripts/setup-python.sh`, or `None` (with a loud message) when it is
/// missing and `TRIBUTARY_REQUIRE_S3` is unset. With `TRIBUTARY_REQUIRE_S3` set, a missing
/// venv fails the test: CI must never skip silently.
pub fn venv(what: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("TRIBUTARY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary")))
        .unwrap_or_else(|| PathBuf::from(".cache/tributary"));
    let venv = cache.join("venv");
    if venv.join("bin/moto_server").exists() && venv.join("bin/python").exists() {
        return Some(venv);
    }
    let message = format!(
        "{what}: the Python venv {} is missing; run scripts/setup-python.sh",
        venv.display()
    );
    if std::env::var_os("TRIBUTARY_REQUIRE_S3").is_some() {
        panic!("{message} (TRIBUTARY_REQUIRE_S3 is set, so this is a failure)");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {message} !!!!!!!!\n");
    None
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    tributary_test_support::free_port().expect("bind 127.0.0.1:0")
}

fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within {timeout:?}");
}

/// True once `endpoint` answers an S3 ListBuckets (moto's answer) while
/// `child` is still running; false if the child exits or time runs out.
fn answers_as_moto(endpoint: &str, child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut r) = agent().get(format!("{endpoint}/")).call() {
            let body = r.body_mut().read_to_string().unwrap_or_default();
            if body.contains("ListAllMyBucketsResult") && matches!(child.try_wait(), Ok(None)) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// moto's S3 server on 127.0.0.1, killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` from the venv on a free port and waits until it
    /// answers as moto. A "free" port can be taken by a server of a test running
    /// in parallel before moto binds it (moto then exits, and the other server
    /// answered the readiness probe): moto is started again on another port.
    pub fn start(venv: &Path) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(venv.join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn moto_server");
            let endpoint = format!("http://127.0.0.1:{port}");
            if answers_as_moto(&endpoint, &mut child, Duration::from_secs(30)) {
                return Moto { child, endpoint };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start on any of 5 ports");
    }

    /// Creates a bucket (moto does not check signatures, so a plain PUT does).
    pub fn create_bucket(&self, bucket: &str) {
        let resp = agent()
            .put(format!("{}/{bucket}", self.endpoint))
            .send(&[] as &[u8])
            .expect("create bucket");
        assert_eq!(resp.status(), 200, "create bucket {bucket}");
    }

    /// An `object_store` client for `bucket` on this server.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("build S3 client")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns 4xx/5xx as responses, not errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// The real `ingest-server` binary, started by the shared harness
/// ([`tributary_test_support`]), killed when dropped.
pub struct Server {
    inner: tributary_test_support::Server,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
}

impl Server {
    /// Starts the binary with `--listen`, `--data-dir`, `--write-key` and `args`, plus
    /// `env`, and waits for `GET /health`.
    pub fn start(data_dir: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        let log = data_dir.with_extension("server.log");
        let mut spec = tributary_test_support::ServerSpec::new(env!("CARGO_BIN_EXE_ingest-server"))
            .data_dir(data_dir)
            .log_file(&log)
            .args(["--write-key", &format!("{WRITE_KEY}={SOURCE}")])
            .args(args);
        for (k, v) in env {
            spec = spec.env(k, v);
        }
        let inner = spec.start().unwrap_or_else(|e| panic!("{e}"));
        let url = inner.url().unwrap_or_else(|e| panic!("{e}"));
        Server { inner, url, log }
    }

    /// The last few KB of the server's output.
    pub fn log_tail(&self) -> String {
        self.inner.log_tail(4000)
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    /// POSTs one gzip batch; panics unless the answer is 200 with no rejected event.
    pub fn post_batch(&self, events: &[Value]) {
        let body = json!({ "batch": events, "sentAt": now_iso() });
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(body.to_string().as_bytes()).unwrap();
        let body = gz.finish().unwrap();
        let resp = agent()
            .post(format!("{}/v1/batch", self.url))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Authorization", basic_auth())
            .send(&body[..])
            .expect("POST /v1/batch");
        let status = resp.status();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        assert_eq!(
            status,
            200,
            "batch refused: {text}\nlog:\n{}",
            self.log_tail()
        );
    }

    /// SIGTERM, then waits (up to 60 s) for a graceful exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.inner
            .terminate(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Sends a signal by name with `kill(1)` (no libc dependency for one call).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// `Basic base64(WRITE_KEY:)`.
pub fn basic_auth() -> String {
    format!("Basic {}", base64(format!("{WRITE_KEY}:").as_bytes()))
}

fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// Yesterday's date (UTC) as `YYYY-MM-DD`: test data stays inside the dedupe
/// window whatever day the tests run on.
pub fn recent_day() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// A valid `track` event with a given messageId and some padding in `properties`.
pub fn track(message_id: &str, padding: &str) -> Value {
    json!({
        "type": "track",
        "event": "Test Event",
        "messageId": message_id,
        "userId": "user-1",
        "timestamp": now_iso(),
        "properties": { "pad": padding, "n": 1 },
    })
}

/// Every data object in `store` under `prefix`, as stored: (meta, format, bytes).
/// Objects that are not data (intents, markers, key files) are left out.
pub async fn raw_objects(
    store: &dyn object_store::ObjectStore,
    prefix: Option<&object_store::path::Path>,
) -> Vec<(
    object_store::ObjectMeta,
    ingest_server::format::Format,
    bytes::Bytes,
)> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let metas: Vec<object_store::ObjectMeta> = store.list(prefix).try_collect().await.unwrap();
    let mut out = Vec::new();
    for meta in metas {
        let Some(format) = ingest_server::format::Format::from_path(meta.location.as_ref()) else {
            continue;
        };
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((meta, format, bytes));
    }
    out
}

/// Every event of every object in `store` under `prefix`, decoded by its file extension.
/// Returns (object path, events) pairs.
pub async fn read_objects(
    store: &dyn object_store::ObjectStore,
    prefix: Option<&object_store::path::Path>,
) -> Vec<(object_store::ObjectMeta, Vec<Value>)> {
    raw_objects(store, prefix)
        .await
        .into_iter()
        .map(|(meta, format, bytes)| {
            let events = format
                .decode(&bytes)
                .unwrap_or_else(|e| panic!("decode {}: {e}", meta.location));
            (meta, events)
        })
        .collect()
}

/// Asserts that every id in `expected` appears exactly once among `events`' messageIds,
/// and nothing else appears.
pub fn assert_exactly_once<'a>(
    expected: impl IntoIterator<Item = &'a String>,
    events: impl IntoIterator<Item = &'a Value>,
) {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for e in events {
        let id = e["messageId"].as_str().expect("stored event has messageId");
        *counts.entry(id.to_string()).or_default() += 1;
    }
    let mut missing = Vec::new();
    let mut expected_n = 0;
    for id in expected {
        expected_n += 1;
        match counts.remove(id) {
            Some(1) => {}
            Some(n) => panic!("messageId {id} stored {n} times"),
            None => missing.push(id.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {expected_n} ids missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        counts.is_empty(),
        "unexpected ids stored: {:?}",
        counts.keys().take(5).collect::<Vec<_>>()
    );
}

/// Every data object under a local storage directory: (path relative to `root`, events).
/// Files that are not data objects (intents, staging files) are left out.
pub fn read_dir_objects(root: &Path) -> Vec<(String, Vec<Value>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let Some(format) = ingest_server::format::Format::from_path(&rel) else {
            continue;
        };
        let bytes = std::fs::read(&file).unwrap();
        let events = format
            .decode(&bytes)
            .unwrap_or_else(|e| panic!("decode {rel}: {e}"));
        out.push((rel, events));
    }
    out
}

/// Runs the `ingest-server` binary with `args` to completion: (success, stdout+stderr).
pub fn run_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ingest-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes `events` as one object at `root/rel` in the format its name says.
pub fn write_object(root: &Path, rel: &str, events: &[Value]) {
    let format = ingest_server::format::Format::from_path(rel).expect("data object name");
    let mut encoder = format.encoder();
    for e in events {
        encoder.push(e).unwrap();
    }
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, encoder.finish().unwrap()).unwrap();
}
