//! In-process simulated devices: one SDK [`Client`] each, with its own
//! storage directory, recording events that carry `device` and `seq`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary::{Client, Config, FlushResult};

use crate::storage::EventKey;

/// Padding that brings a test event near the typical 300 bytes on the wire.
pub const PAD: &str =
    "lorem-ipsum-dolor-sit-amet-consectetur-adipiscing-elit-sed-do-eiusmod-tempor";

/// The configuration the scenarios use: quick flushes and a short backoff cap,
/// so faults resolve within seconds.
pub fn test_config(endpoint: &str, storage_dir: &Path) -> Config {
    let mut config = Config::new(
        endpoint.to_string(),
        crate::server::WRITE_KEY.to_string(),
        storage_dir.to_string_lossy().into_owned(),
    );
    config.flush_at = 20;
    config.flush_interval_ms = 200;
    config.max_batch_events = 100;
    config.retry_base_delay_ms = 50;
    config.retry_max_delay_ms = 500;
    config.connect_timeout_ms = 2_000;
    config.request_timeout_ms = 5_000;
    config
}

/// The properties of event `seq` of `device`.
pub fn properties_json(device: &str, seq: u64) -> String {
    serde_json::json!({ "device": device, "seq": seq, "pad": PAD }).to_string()
}

/// One simulated device in this process.
pub struct SimDevice {
    /// Device id carried in every event's properties.
    pub id: String,
    /// The SDK client.
    pub client: Arc<Client>,
    /// Its storage directory.
    pub dir: PathBuf,
    next_seq: u64,
    pending: Vec<u64>,
    /// Events confirmed durable on the device.
    pub recorded: BTreeSet<EventKey>,
}

impl SimDevice {
    /// Creates the device's client on `root/<id>` with [`test_config`], adjusted by `tune`.
    pub fn new(id: &str, endpoint: &str, root: &Path, tune: impl FnOnce(&mut Config)) -> Self {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).expect("device dir");
        let mut config = test_config(endpoint, &dir);
        tune(&mut config);
        let client = Client::new(config, None)
            .unwrap_or_else(|e| panic!("Client::new for device {id}: {e}"));
        Self {
            id: id.to_string(),
            client,
            dir,
            next_seq: 0,
            pending: Vec::new(),
            recorded: BTreeSet::new(),
        }
    }

    /// Records `n` events (not yet confirmed durable).
    pub fn track(&mut self, n: u64) {
        for _ in 0..n {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.client
                .track("E2E Event".into(), properties_json(&self.id, seq))
                .unwrap_or_else(|e| panic!("track on device {}: {e}", self.id));
            self.pending.push(seq);
        }
    }

    /// `flush_blocking(timeout_ms)`; every outcome but `Disabled` means the
    /// events recorded before the call are durable on the device.
    pub fn confirm(&mut self, timeout_ms: u64) -> FlushResult {
        let result = self.client.flush_blocking(timeout_ms);
        assert_ne!(
            result,
            FlushResult::Disabled,
            "device {} is disabled",
            self.id
        );
        for seq in self.pending.drain(..) {
            self.recorded.insert((self.id.clone(), seq));
        }
        result
    }

    /// Flushes until `Delivered` or `timeout`; returns the last result.
    pub fn drain(&mut self, timeout: Duration) -> FlushResult {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = self.confirm(left.as_millis().min(2_000) as u64);
            if result == FlushResult::Delivered || Instant::now() >= deadline {
                return result;
            }
        }
    }

    /// Panics if the SDK dropped anything (the scenarios never exceed a limit,
    /// so any drop would be a lost event that the storage check cannot name).
    pub fn assert_nothing_dropped(&self) {
        let s = self.client.stats();
        let dropped = s.dropped_age
            + s.dropped_byte_cap
            + s.dropped_rejected
            + s.dropped_too_large
            + s.dropped_backpressure;
        assert_eq!(dropped, 0, "device {} dropped events: {s:?}", self.id);
    }
}

/// Drains every device in parallel threads; panics naming devices that did
/// not deliver within `timeout`.
pub fn drain_all(devices: &mut [SimDevice], timeout: Duration) {
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter_mut()
            .map(|d| scope.spawn(move || (d.id.clone(), d.drain(timeout), d.client.stats())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("drain thread"))
            .filter(|(_, result, _)| *result != FlushResult::Delivered)
            .map(|(id, result, stats)| format!("{id}: {result:?} {stats:?}"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "devices did not deliver within {timeout:?}:\n{}",
        failures.join("\n")
    );
}

/// The union of every device's recorded events.
pub fn recorded(devices: &[SimDevice]) -> BTreeSet<EventKey> {
    devices
        .iter()
        .flat_map(|d| d.recorded.iter().cloned())
        .collect()
}
