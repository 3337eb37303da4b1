//! Running the real `ingest-server` binary through the shared harness
//! ([`tributary_test_support`]): start on a loopback port no parallel test holds,
//! wait for `GET /health`, stop with SIGTERM or SIGKILL, restart on the same data
//! directory, and read its metrics and CPU time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tributary_test_support::{Error as HarnessError, Readiness, Server as Harness, ServerSpec};

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

/// A running (or stopped) ingest server bound to one data directory, started by
/// the shared harness ([`tributary_test_support`]).
pub struct Server {
    inner: Harness,
    data_dir: PathBuf,
    addr: SocketAddr,
}

/// A port that was free a moment ago on 127.0.0.1 (another process may take it
/// before it is used).
pub fn free_port() -> u16 {
    tributary_test_support::free_port().expect("bind 127.0.0.1:0")
}

impl Server {
    /// Starts the server on `data_dir` (created if missing) and waits until it is
    /// healthy, on a port no parallel test holds.
    pub fn start(data_dir: &Path, options: ServerOptions) -> Self {
        let spec = ServerSpec::new(crate::binaries::ingest_server())
            .data_dir(data_dir)
            .log_file(data_dir.with_extension("server.log"))
            .args(["--write-key", &format!("{WRITE_KEY}={SOURCE}")])
            .args(["--format", &options.format])
            .args(["--roll-interval", &options.roll_interval])
            .args(["--roll-bytes", &options.roll_bytes])
            .args(&options.extra_args)
            .readiness(Readiness::http("/health"))
            .start_timeout(Duration::from_secs(30))
            .attempts(6);
        let inner = spec
            .start()
            .unwrap_or_else(|e| panic!("ingest-server did not start: {e}"));
        let addr = served_addr(&inner);
        Self {
            inner,
            data_dir: data_dir.to_path_buf(),
            addr,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on (it can change on [`Server::restart`]).
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
        self.inner.pid()
    }

    /// The server's stdout and stderr so far (for failure messages).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.inner.log_tail(max_bytes)
    }

    /// SIGKILL: the process dies at once, wherever it is.
    pub fn kill(&mut self) {
        self.inner.kill();
    }

    /// SIGTERM and wait for a graceful exit (which rolls open buffers to objects).
    /// Returns the exit status; `None` if no server ran, or if it did not exit
    /// within `timeout` (it is then SIGKILLed, and the reason printed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        match self.inner.terminate(timeout) {
            Ok(status) => Some(status),
            Err(HarnessError::NotRunning) => None,
            Err(e) => {
                eprintln!("e2e: {e}");
                None
            }
        }
    }

    /// SIGTERM, wait for exit 0, and panic with the log otherwise.
    pub fn stop_gracefully(&mut self) {
        match self.inner.terminate(Duration::from_secs(30)) {
            Ok(status) => assert!(
                status.success(),
                "server exited with {status} after SIGTERM; log:\n{}",
                self.log_tail(4000)
            ),
            Err(HarnessError::NotRunning) => {}
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts the server again on the same data directory (and port, if it can;
    /// re-point anything that talks to it at [`Server::addr`]).
    pub fn restart(&mut self) {
        self.inner
            .restart()
            .unwrap_or_else(|e| panic!("ingest-server did not restart: {e}"));
        self.addr = served_addr(&self.inner);
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        self.inner.metrics()
    }

    /// User plus system CPU seconds the server process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid()?)
    }
}

/// The address of a started HTTP server (the harness gave it a port).
fn served_addr(server: &Harness) -> SocketAddr {
    server
        .addr()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    let _ = tributary_test_support::signal(pid, sig);
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

pub use tributary_test_support::metric_sum;

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
