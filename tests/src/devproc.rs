//! `device` child processes: spawn, read their ledger lines, SIGKILL, wait.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::EventKey;

/// What to run.
#[derive(Debug, Clone)]
pub struct DeviceArgs {
    /// The `device` executable (`env!("CARGO_BIN_EXE_device")` in tests).
    pub bin: PathBuf,
    /// Storage directory, kept across restarts.
    pub storage: PathBuf,
    /// Endpoint URL.
    pub endpoint: String,
    /// Device id.
    pub device: String,
    /// First sequence number.
    pub start: u64,
    /// Events to record.
    pub count: u64,
    /// Events per durable confirmation.
    pub chunk: u64,
    /// Pause between chunks.
    pub pace_ms: u64,
    /// How long to keep flushing at the end.
    pub drain_ms: u64,
}

/// A running `device` process.
pub struct DeviceProcess {
    child: Child,
    device: String,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// What a device process reported.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Every event it started to track (a kill may have lost the last ones).
    pub tracked: BTreeSet<EventKey>,
    /// Every event it confirmed durable.
    pub recorded: BTreeSet<EventKey>,
    /// The final `result` line, if it got that far.
    pub result: Option<String>,
    /// The final `stats` line, if any.
    pub stats: Option<String>,
}

impl Ledger {
    /// Adds another run's ledger.
    pub fn merge(&mut self, other: Ledger) {
        self.tracked.extend(other.tracked);
        self.recorded.extend(other.recorded);
        if other.result.is_some() {
            self.result = other.result;
            self.stats = other.stats;
        }
    }
}

impl DeviceProcess {
    /// Starts the process.
    pub fn spawn(args: &DeviceArgs) -> Self {
        std::fs::create_dir_all(&args.storage).expect("device storage");
        let mut child = Command::new(&args.bin)
            .arg("--storage")
            .arg(&args.storage)
            .args(["--endpoint", &args.endpoint, "--device", &args.device])
            .args(["--start", &args.start.to_string()])
            .args(["--count", &args.count.to_string()])
            .args(["--chunk", &args.chunk.to_string()])
            .args(["--pace-ms", &args.pace_ms.to_string()])
            .args(["--drain-ms", &args.drain_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", args.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Self {
            child,
            device: args.device.clone(),
            lines,
            reader: Some(reader),
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it printed `line_prefix` yet.
    pub fn has_said(&self, line_prefix: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.starts_with(line_prefix))
    }

    /// SIGKILL, then the ledger of what it said before dying.
    pub fn kill(mut self) -> Ledger {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.ledger()
    }

    /// Waits for a normal exit (panics after `timeout`), then the ledger.
    pub fn wait(mut self, timeout: Duration) -> Ledger {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "device {} exited with {status}",
                    self.device
                );
                return self.ledger();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("device {} did not finish within {timeout:?}", self.device);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ledger(&mut self) -> Ledger {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut ledger = Ledger::default();
        for line in lines.iter() {
            let mut parts = line.split_whitespace();
            let kind = parts.next().unwrap_or("");
            let range = || -> Option<(u64, u64)> {
                let mut p = line.split_whitespace().skip(1);
                Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
            };
            match kind {
                "tracking" => {
                    if let Some((from, to)) = range() {
                        ledger
                            .tracked
                            .extend((from..to).map(|s| (self.device.clone(), s)));
                    }
                }
                "durable" => {
                    if let Some((from, to)) = range() {
                        ledger
                            .recorded
                            .extend((from..to).map(|s| (self.device.clone(), s)));
                    }
                }
                "result" => ledger.result = Some(line["result ".len()..].to_string()),
                "stats" => ledger.stats = Some(line["stats ".len()..].to_string()),
                _ => {}
            }
        }
        ledger
    }
}

/// The path of a device's storage directory under `root`.
pub fn storage_for(root: &Path, device: &str) -> PathBuf {
    root.join(device)
}
