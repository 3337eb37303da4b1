//! The one harness that starts the real `ingest-server` binary for tests, in any
//! role: the default server, a subcommand (`compact`, or a role such as
//! `write --broker nats://…`), with or without an HTTP port.
//!
//! * **Ports without a race.** A port found free by binding `:0` can be taken by a
//!   parallel test before the server binds it. So the server is ready only when
//!   *its own* listener answers: `GET <path>` returns 200 while the process is
//!   alive and, on Linux, the listening socket on that port is one of the
//!   process's file descriptors (`/proc/net/tcp*` and `/proc/<pid>/fd`); a
//!   server that exits or finds its port owned by another process is started
//!   again on a new port.
//! * **Roles without an HTTP port** are ready when a line appears in their output
//!   ([`Readiness::LogLine`]) or when they have stayed up for a while
//!   ([`Readiness::Alive`]).
//! * **Faults:** SIGKILL ([`Server::kill`]), SIGSTOP / SIGCONT ([`Server::pause`],
//!   [`Server::resume`]), SIGTERM with a bounded wait ([`Server::terminate`]),
//!   any signal ([`Server::signal`]), and [`Server::restart`] on the same data
//!   directory (and port, while it can be had).
//!
//! ```no_run
//! use tributary_test_support::{Readiness, ServerSpec};
//! # let dir = std::path::Path::new("/tmp/d");
//! let mut server = ServerSpec::new("target/debug/ingest-server")
//!     .data_dir(dir)
//!     .args(["--write-key", "k=src"])
//!     .env("RUST_LOG", "info")
//!     .readiness(Readiness::http("/health"))
//!     .start()?;
//! let (status, _) = server.get("/ready")?;
//! server.pause()?;
//! server.resume()?;
//! server.kill();
//! server.restart()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A hook run on the [`Command`] before every spawn (first start and restarts),
/// for what the builder does not cover, such as a `pre_exec` resource limit.
pub type Configure = Arc<dyn Fn(&mut Command) + Send + Sync>;

/// When a started process counts as ready.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// It listens on `127.0.0.1:<port>`, given with `--listen`, and is ready when
    /// `GET <path>` answers 200 from this very process (`/health`: the process
    /// serves; `/ready`: it also reaches its log and sink).
    Http {
        /// The path probed, e.g. `/health`.
        path: String,
    },
    /// No HTTP port: ready when its output since this start contains the text.
    LogLine(String),
    /// No HTTP port and no line to wait for: ready once it has stayed up this long.
    Alive(Duration),
}

impl Readiness {
    /// [`Readiness::Http`] on `path`.
    pub fn http(path: &str) -> Self {
        Readiness::Http { path: path.into() }
    }
}

/// How the harness tells the process its address `127.0.0.1:<port>`.
#[derive(Debug, Clone)]
enum Listen {
    /// As a flag and its value, e.g. `--listen 127.0.0.1:8123`.
    Flag(OsString),
    /// As an environment variable, e.g. `TRIBUTARY_LISTEN=127.0.0.1:8123`.
    Env(OsString),
}

/// What went wrong with a harness process.
#[derive(Debug)]
pub enum Error {
    /// It did not become ready in any attempt.
    Start {
        /// How many processes were started.
        attempts: u32,
        /// Why the last one failed.
        last: String,
        /// The end of its output.
        log_tail: String,
    },
    /// It did not exit within the wait after SIGTERM, and was SIGKILLed.
    StopTimeout {
        /// How long it was given.
        waited: Duration,
        /// The end of its output.
        log_tail: String,
    },
    /// The call needs a running process and there is none.
    NotRunning,
    /// The call needs an HTTP port and this role has none.
    NoHttp,
    /// An I/O error of the harness itself (spawning, the log file, a signal).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start {
                attempts,
                last,
                log_tail,
            } => write!(
                f,
                "the server did not become ready in {attempts} attempts (last: {last}); its output ends with:\n{log_tail}"
            ),
            Error::StopTimeout { waited, log_tail } => write!(
                f,
                "the server did not exit {waited:?} after SIGTERM and was killed; its output ends with:\n{log_tail}"
            ),
            Error::NotRunning => {
                f.write_str("the server is not running; start or restart it first")
            }
            Error::NoHttp => f.write_str(
                "this server role has no HTTP port; give it Readiness::Http to have one",
            ),
            Error::Io(e) => write!(f, "harness I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// How to start a server process. Build it, then [`ServerSpec::start`].
#[derive(Clone)]
pub struct ServerSpec {
    bin: PathBuf,
    command: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    data_dir: Option<PathBuf>,
    log: Option<PathBuf>,
    port: Option<u16>,
    listen: Listen,
    readiness: Readiness,
    timeout: Duration,
    attempts: u32,
    configure: Option<Configure>,
}

impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("bin", &self.bin)
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("data_dir", &self.data_dir)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl ServerSpec {
    /// The binary at `bin` (in a test of the `ingest-server` package,
    /// `env!("CARGO_BIN_EXE_ingest-server")`), ready on `GET /health`.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        ServerSpec {
            bin: bin.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            log: None,
            port: None,
            listen: Listen::Flag("--listen".into()),
            readiness: Readiness::http("/health"),
            timeout: Duration::from_secs(60),
            attempts: 5,
            configure: None,
        }
    }

    /// The subcommand and what must come before the harness's own flags,
    /// e.g. `["write"]` or `["serve"]`.
    pub fn command<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.command = words.into_iter().map(Into::into).collect();
        self
    }

    /// One more argument, after `--listen` and `--data-dir`.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments, after `--listen` and `--data-dir`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable the test process has from the server's.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Passes `--data-dir DIR` (created if missing); its output then goes to
    /// `DIR.server.log` unless [`ServerSpec::log_file`] says otherwise.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Where stdout and stderr go (appended across restarts).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// The HTTP port to try first (a free one by default); if it cannot be had,
    /// the start moves on to free ones.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Gives the address with this flag instead of `--listen`.
    pub fn listen_flag(mut self, flag: impl Into<OsString>) -> Self {
        self.listen = Listen::Flag(flag.into());
        self
    }

    /// Gives the address in this environment variable instead of a flag.
    pub fn listen_env(mut self, var: impl Into<OsString>) -> Self {
        self.listen = Listen::Env(var.into());
        self
    }

    /// When the process counts as ready ([`Readiness::Http`] on `/health` by default).
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// How long one attempt may take to become ready (60 s by default).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many processes a start may try before it fails (5 by default).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// A hook run on the command before every spawn.
    pub fn configure(mut self, hook: impl Fn(&mut Command) + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(hook));
        self
    }

    /// Starts the process and waits until it is ready.
    pub fn start(self) -> Result<Server, Error> {
        if let Some(dir) = &self.data_dir {
            std::fs::create_dir_all(dir)?;
        }
        let log_path = match (&self.log, &self.data_dir) {
            (Some(log), _) => log.clone(),
            (None, Some(dir)) => dir.with_extension("server.log"),
            (None, None) => {
                static N: AtomicU64 = AtomicU64::new(0);
                std::env::temp_dir().join(format!(
                    "ingest-server-{}-{}.log",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ))
            }
        };
        let port = self.port;
        let mut server = Server {
            spec: self,
            log_path,
            child: None,
            port,
            starts: 0,
        };
        server.start_ready(port.is_some())?;
        Ok(server)
    }
}

/// A server process started by the harness, SIGKILLed when dropped.
pub struct Server {
    spec: ServerSpec,
    log_path: PathBuf,
    child: Option<Child>,
    port: Option<u16>,
    starts: u32,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("spec", &self.spec)
            .field("pid", &self.pid())
            .field("port", &self.port)
            .field("starts", &self.starts)
            .finish()
    }
}

/// Why one attempt failed, and whether the same port is worth another try.
struct Failed {
    why: String,
    port_taken: bool,
}

impl Server {
    /// The HTTP port, for a role with one (it can change on restart).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `127.0.0.1:<port>`, for a role with an HTTP port.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.port.map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// `http://127.0.0.1:<port>`, or [`Error::NoHttp`].
    pub fn url(&self) -> Result<String, Error> {
        let port = self.port.ok_or(Error::NoHttp)?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// The data directory given with [`ServerSpec::data_dir`].
    pub fn data_dir(&self) -> Option<&Path> {
        self.spec.data_dir.as_deref()
    }

    /// The OS process id, while a process is started (stopped or not).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many processes have been spawned so far (restarts and retries included).
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The file that holds its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `max_bytes` (or fewer) of its output, for failure messages.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let mut start = text.len().saturating_sub(max_bytes);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }

    /// Whether the process is alive (a SIGSTOPped process is).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The exit status, if the process has exited (reaped); `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        let child = self.child.as_mut().ok_or(Error::NotRunning)?;
        Ok(child.try_wait()?)
    }

    /// Sends `sig` (e.g. `libc::SIGUSR1`) to the process.
    pub fn signal(&self, sig: libc::c_int) -> Result<(), Error> {
        let pid = self.pid().ok_or(Error::NotRunning)?;
        signal(pid, sig)?;
        Ok(())
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing is answered).
    pub fn pause(&self) -> Result<(), Error> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT: a paused process goes on.
    pub fn resume(&self) -> Result<(), Error> {
        self.signal(libc::SIGCONT)
    }

    /// SIGKILL and reap: the process dies at once, wherever it is. Does nothing
    /// when no process runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM (and SIGCONT, in case it is paused), then waits up to `timeout`
    /// for it to exit; past that it is SIGKILLed and [`Error::StopTimeout`] returned.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let mut child = self.child.take().ok_or(Error::NotRunning)?;
        signal(child.id(), libc::SIGTERM)?;
        let _ = signal(child.id(), libc::SIGCONT);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(Error::StopTimeout {
            waited: timeout,
            log_tail: self.log_tail(4000),
        })
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let child = self.child.as_mut().ok_or(Error::NotRunning)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the process if it runs, and starts it again on the same data
    /// directory, on the same port while that can be had, and waits until ready.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.start_ready(true)
    }

    /// `GET <path>`: the status and body (4xx and 5xx are answers, not errors).
    pub fn get(&self, path: &str) -> Result<(u16, String), Error> {
        let url = format!("{}{path}", self.url()?);
        let mut r = agent(Duration::from_secs(30))
            .get(url)
            .call()
            .map_err(|e| Error::Io(io::Error::other(e)))?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    /// The `/metrics` text, or an empty string when it cannot be had.
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok((200, text)) => text,
            _ => String::new(),
        }
    }

    /// The sum of the samples of metric `name` (all label sets), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics(), name, &[])
    }

    /// Spawns until one process is ready. With `same_port`, the current port is
    /// tried first (three times, as the old socket may linger), then new ones.
    fn start_ready(&mut self, same_port: bool) -> Result<(), Error> {
        let http = matches!(self.spec.readiness, Readiness::Http { .. });
        let mut last = String::from("no attempt");
        let mut same_port_tries = if same_port && self.port.is_some() {
            3
        } else {
            0
        };
        let total = self.spec.attempts + same_port_tries;
        for attempt in 0..total {
            if http && (same_port_tries == 0 || self.port.is_none()) {
                self.port = Some(free_port()?);
            }
            same_port_tries = same_port_tries.saturating_sub(1);
            self.spawn()?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(failed) => {
                    last = failed.why;
                    eprintln!(
                        "test-support: start attempt {} of {total} failed: {last}",
                        attempt + 1
                    );
                    // Held by another listener: no use trying it again.
                    let held = self
                        .port
                        .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_err());
                    if failed.port_taken || held {
                        same_port_tries = 0;
                    }
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Err(Error::Start {
            attempts: total,
            last,
            log_tail: self.log_tail(4000),
        })
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let spec = &self.spec;
        let mut cmd = Command::new(&spec.bin);
        cmd.args(&spec.command);
        if let (Readiness::Http { .. }, Some(port)) = (&spec.readiness, self.port) {
            let addr = format!("127.0.0.1:{port}");
            match &spec.listen {
                Listen::Flag(flag) => cmd.arg(flag).arg(addr),
                Listen::Env(var) => cmd.env(var, addr),
            };
        }
        if let Some(dir) = &spec.data_dir {
            cmd.arg("--data-dir").arg(dir);
        }
        cmd.args(&spec.args);
        for (k, v) in &spec.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(hook) = &spec.configure {
            hook(&mut cmd);
        }
        let child = cmd.spawn().map_err(|e| {
            Error::Io(io::Error::new(
                e.kind(),
                format!("cannot run {}: {e}", spec.bin.display()),
            ))
        })?;
        self.starts += 1;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<(), Failed> {
        let started = Instant::now();
        let deadline = started + self.spec.timeout;
        let log_start = std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let probe = agent(Duration::from_millis(500));
        let fail = |why: String| Failed {
            why,
            port_taken: false,
        };
        loop {
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| fail("not spawned".into()))?;
            let pid = child.id();
            match child.try_wait() {
                Ok(Some(status)) => return Err(fail(format!("exited with {status}"))),
                Ok(None) => {}
                Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
            }
            match &self.spec.readiness {
                Readiness::Http { path } => {
                    let Some(port) = self.port else {
                        return Err(fail("no port".into()));
                    };
                    let answered = probe
                        .get(format!("http://127.0.0.1:{port}{path}"))
                        .call()
                        .is_ok_and(|r| r.status() == 200);
                    if answered {
                        // The answer counts only if this process is alive and owns
                        // the listener: another test's server may hold the port.
                        let alive = matches!(child.try_wait(), Ok(None));
                        match (alive, owns_listener(pid, port)) {
                            (true, Some(true) | None) => return Ok(()),
                            (true, Some(false)) => {
                                return Err(Failed {
                                    why: format!("port {port} is held by another process"),
                                    port_taken: true,
                                });
                            }
                            (false, _) => {}
                        }
                    }
                }
                Readiness::LogLine(text) => {
                    let log = std::fs::read(&self.log_path).unwrap_or_default();
                    let new = log.get(log_start as usize..).unwrap_or_default();
                    if String::from_utf8_lossy(new).contains(text.as_str()) {
                        return Ok(());
                    }
                }
                Readiness::Alive(d) => {
                    if started.elapsed() >= *d {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(fail(format!("not ready after {:?}", self.spec.timeout)));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1 (another process may take it
/// before it is used: check who answers on it).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An HTTP agent with `timeout` for a whole call, that returns 4xx and 5xx as
/// answers rather than errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
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

/// Whether process `pid` holds the socket listening on TCP `port`: `None` when
/// it cannot be told (no `/proc`, or no listener found yet).
pub fn owns_listener(pid: u32, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        inodes.extend(listening_inodes(&text, port));
    }
    if !readable || inodes.is_empty() {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let owns = fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
    });
    Some(owns)
}

/// The inodes of the sockets in LISTEN state on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let local_port = u16::from_str_radix(local_port, 16).ok()?;
            (local_port == port && *f.get(3)? == LISTEN).then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listener_of_a_port_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n\
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 0x1F90), vec![4242]);
        assert_eq!(listening_inodes(table, 0x1F91), vec![4444]);
        assert!(listening_inodes(table, 80).is_empty());
    }

    #[test]
    fn this_process_owns_its_listener_and_not_another_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(owns_listener(std::process::id(), port), Some(true));
        // Another process does not hold it.
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        let owned_by_other = owns_listener(other.id(), port);
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(owned_by_other, Some(false));
        drop(listener);
        assert_eq!(owns_listener(std::process::id(), port), None);
    }

    #[test]
    fn metric_sum_adds_the_label_sets_that_match() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total{status=\"200\"} 2\nx_total{status=\"503\"} 1\nx_totally 9\n";
        assert_eq!(metric_sum(text, "x_total", &[]), 3.0);
        assert_eq!(metric_sum(text, "x_total", &["\"503\""]), 1.0);
        assert_eq!(metric_sum(text, "y", &[]), 0.0);
    }
}
