//! Running the real `ingest-server` binary: start on a free loopback port,
//! wait for `GET /health`, stop with SIGTERM or SIGKILL, restart on the same
//! data directory, and read its metrics and CPU time.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The write key every harness server accepts, mapped to source [`SOURCE`].
pub const WRITE_KEY: &str = "e2e-write-key";
/// The source name the harness's write key maps to.
pub const SOURCE: &str = "e2e";

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `ndjson` or `parquet`.
    pub format: String,
    /// `--roll-interval`, e.g. `2s`.
    pub roll_interval: String,
    /// `--roll-bytes`, e.g. `1MiB`.
    pub roll_bytes: String,
    /// Any further arguments.
    pub extra_args: Vec<String>,
}

impl ServerOptions {
    /// Defaults for tests: small rolls so objects appear quickly.
    pub fn new(format: &str) -> Self {
        Self {
            format: format.into(),
            roll_interval: "2s".into(),
            roll_bytes: "1MiB".into(),
            extra_args: Vec::new(),
        }
    }
}

/// A running (or stopped) ingest server bound to one data directory.
pub struct Server {
    bin: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    options: ServerOptions,
    addr: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

impl Server {
    /// Starts the server on `data_dir` (created if missing) and waits until it is healthy.
    pub fn start(data_dir: &Path, options: ServerOptions) -> Self {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log_path = data_dir.with_extension("server.log");
        let mut server = Self {
            bin: crate::binaries::ingest_server(),
            data_dir: data_dir.to_path_buf(),
            log_path,
            options,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            child: None,
            starts: 0,
        };
        server.spawn_healthy();
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the server writes its objects (`<data-dir>/objects`).
    pub fn objects_dir(&self) -> PathBuf {
        self.data_dir.join("objects")
    }

    /// The OS process id, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's stdout and stderr so far (for failure messages).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let start = text.len().saturating_sub(max_bytes);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    fn spawn_healthy(&mut self) {
        // A restart on the same port can fail while the old socket lingers:
        // try it a few times, then move to another port (tests re-point the proxy).
        for attempt in 0..6 {
            if attempt >= 3 {
                self.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            }
            self.spawn();
            match self.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return,
                Err(why) => {
                    eprintln!("e2e: server start attempt {attempt} failed: {why}");
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "ingest-server did not become healthy; log:\n{}",
            self.log_tail(4000)
        );
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--write-key")
            .arg(format!("{WRITE_KEY}={SOURCE}"))
            .arg("--format")
            .arg(&self.options.format)
            .arg("--roll-interval")
            .arg(&self.options.roll_interval)
            .arg("--roll-bytes")
            .arg(&self.options.roll_bytes)
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        self.starts += 1;
        self.child = Some(cmd.spawn().expect("spawn ingest-server"));
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let agent = crate::http::agent(Duration::from_millis(500));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("exited with {status}"));
            }
            if let Ok(resp) = agent.get(format!("{}/health", self.url())).call()
                && resp.status() == 200
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("not healthy after {timeout:?}"))
    }

    /// SIGKILL: the process dies at once, wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit (which rolls open buffers to objects).
    /// Returns the exit status; SIGKILLs after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("e2e: server did not exit {timeout:?} after SIGTERM; killing it");
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM, wait for exit 0, and panic with the log otherwise.
    pub fn stop_gracefully(&mut self) {
        let status = self.terminate(Duration::from_secs(30));
        if let Some(status) = status {
            assert!(
                status.success(),
                "server exited with {status} after SIGTERM; log:\n{}",
                self.log_tail(4000)
            );
        }
    }

    /// Starts the server again on the same data directory (and port, if it can).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_healthy();
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        let agent = crate::http::agent(Duration::from_secs(5));
        match agent.get(format!("{}/metrics", self.url())).call() {
            Ok(mut resp) => resp.body_mut().read_to_string().unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// User plus system CPU seconds the server process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// utime + stime of a process, from `/proc/<pid>/stat`, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) are utime and stime; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Sums every sample of a Prometheus metric whose name (before labels) is `name`
/// and whose labels contain every `label_filter` substring.
pub fn metric_sum(metrics: &str, name: &str, label_filter: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match key.find('{') {
                Some(i) => (&key[..i], &key[i..]),
                None => (key, ""),
            };
            (metric == name && label_filter.iter().all(|f| labels.contains(f)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// SIGKILLs every child process of this process (servers, devices), so an
/// aborted run leaves nothing behind.
pub fn kill_all_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(me) {
            signal(pid, libc::SIGKILL);
        }
    }
}
