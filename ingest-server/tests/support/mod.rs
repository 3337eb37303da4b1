//! Test support: run the real `ingest-server` binary on a loopback port, talk to it
//! over real HTTP, and read back the objects it wrote.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tributary_test_support::{Server as Harness, ServerSpec};

use ingest_server::format::Format;
use serde_json::Value;

/// Write key every test server accepts.
pub const KEY: &str = "test-key";
/// Its source name.
pub const SOURCE: &str = "tsrc";

/// A running server, started by the shared harness ([`tributary_test_support`]).
pub struct Server {
    inner: Harness,
    pub port: u16,
    pub data_dir: PathBuf,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    tributary_test_support::free_port().unwrap()
}

impl Server {
    /// Starts the binary on `data_dir` with extra flags and waits for `/health`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_with(data_dir, extra, None)
    }

    /// Like [`Server::start`], with the process's file-size limit (RLIMIT_FSIZE)
    /// set to `fsize` bytes and SIGXFSZ ignored, so writes past it fail like a full disk.
    pub fn start_with(data_dir: &Path, extra: &[&str], fsize: Option<u64>) -> Server {
        let mut spec = ServerSpec::new(env!("CARGO_BIN_EXE_ingest-server"))
            .data_dir(data_dir)
            .log_file(data_dir.with_extension("log"))
            .args(["--write-key", &format!("{KEY}={SOURCE}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .start_timeout(Duration::from_secs(20));
        if let Some(limit) = fsize {
            spec = spec.configure(move |cmd| {
                use std::os::unix::process::CommandExt;
                // SAFETY: only async-signal-safe libc calls between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                        let rl = libc::rlimit {
                            rlim_cur: limit,
                            rlim_max: libc::RLIM_INFINITY,
                        };
                        if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            });
        }
        let inner = spec.start().unwrap_or_else(|e| panic!("{e}"));
        Server {
            port: inner.port().unwrap(),
            inner,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid().expect("server running")
    }

    /// The harness's handle, for signals and restarts.
    pub fn harness(&mut self) -> &mut Harness {
        &mut self.inner
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), ureq::Error> {
        let mut r = agent().get(self.url(path)).call()?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    /// POSTs a body with headers; returns status, headers we care about, body.
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut req = agent().post(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut r = req.send(body).expect("request failed");
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            retry_after,
        }
    }

    /// POSTs JSON authenticated with the test key.
    pub fn send(&self, path: &str, body: &Value) -> Reply {
        self.post(
            path,
            serde_json::to_vec(body).unwrap().as_slice(),
            &[
                ("Authorization", &basic(KEY)),
                ("Content-Type", "application/json"),
            ],
        )
    }

    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// SIGTERM and wait (bounded).
    pub fn terminate(&mut self) -> ExitStatus {
        self.inner
            .terminate(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.data_dir.join("objects")
    }

    /// Sum of a metric's samples.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics").unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub struct Reply {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub retry_after: Option<String>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn basic(key: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn track(id: &str) -> Value {
    serde_json::json!({"type": "track", "event": "Tapped", "userId": "u1", "messageId": id,
        "properties": {"screen": "home", "n": 1}})
}

/// Every committed-looking object file (`*.ndjson.gz` / `*.parquet`) under `dir`.
pub fn object_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, |p| Format::from_path(&p.to_string_lossy()).is_some())
}

/// Every file under `dir` (recursively) that `keep` accepts, sorted.
pub fn files_under(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every event of every object under `dir`.
pub fn read_events(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for p in object_files(dir) {
        let f = Format::from_path(&p.to_string_lossy()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        out.extend(
            f.decode(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        );
    }
    out
}

/// Waits until `cond` holds (bounded), polling.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lifts the file-size limit of a running process (the "disk" has room again).
pub fn lift_fsize_limit(pid: u32) {
    let rl = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with valid pointers.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &rl,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit failed: {}", std::io::Error::last_os_error());
}
