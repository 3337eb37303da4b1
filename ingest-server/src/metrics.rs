//! Counters and gauges, rendered in the Prometheus text format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::log::lock;

/// Every metric of the server.
#[derive(Default)]
pub struct Metrics {
    /// Requests by HTTP status.
    pub requests: Mutex<BTreeMap<u16, u64>>,
    /// Events accepted by the front-end (durable in the log).
    pub events_accepted: AtomicU64,
    /// Events rejected by validation.
    pub events_rejected: AtomicU64,
    /// Events dropped by the writer as duplicates.
    pub events_duplicate: AtomicU64,
    /// Events written to committed objects.
    pub events_written: AtomicU64,
    /// Events the writer has read from the log and settled in memory: buffered
    /// into an open object or dropped as a duplicate (its read position, in events).
    pub events_read: AtomicU64,
    /// Request body bytes received (as sent, maybe compressed).
    pub bytes_received: AtomicU64,
    /// Request body bytes after decompression.
    pub bytes_decoded: AtomicU64,
    /// Objects committed.
    pub objects_written: AtomicU64,
    /// Bytes of committed objects.
    pub object_bytes: AtomicU64,
    /// Roll latency (finish + upload + commit), sum in microseconds and count.
    pub roll_micros_sum: AtomicU64,
    /// Number of rolls measured.
    pub roll_count: AtomicU64,
    /// Objects by size bucket (upper bounds in bytes).
    pub object_size_buckets: [AtomicU64; 8],
    /// Log offsets not yet settled by the writer.
    pub log_lag_records: AtomicU64,
    /// Log bytes not yet settled.
    pub log_lag_bytes: AtomicU64,
    /// Memory held by the writer's open objects (see `--max-buffer-bytes`).
    pub writer_buffered_bytes: AtomicU64,
    /// Ids in the dedupe index.
    pub dedupe_ids: AtomicU64,
    /// Bytes of the state database.
    pub dedupe_bytes: AtomicU64,
    /// Sink failures (retried).
    pub sink_errors: AtomicU64,
    /// Browser requests refused because their `Origin` is not allowed for the key.
    pub origin_refused: AtomicU64,
    /// analytics.js settings served.
    pub browser_settings: AtomicU64,
    /// analytics.js metrics posts received (and dropped).
    pub browser_metrics: AtomicU64,
    /// MQTT messages received (redeliveries included).
    pub mqtt_received: AtomicU64,
    /// MQTT messages acknowledged (PUBACK sent after their events were durable).
    pub mqtt_acked: AtomicU64,
    /// MQTT messages with a bad payload or refused events, kept as dead letters.
    pub mqtt_rejected: AtomicU64,
    /// 1 while connected to the MQTT broker.
    pub mqtt_connected: AtomicU64,
    /// 1 once the broker has granted every subscription of the current connection.
    pub mqtt_subscribed: AtomicU64,
}

/// Upper bounds of [`Metrics::object_size_buckets`].
pub const SIZE_BOUNDS: [u64; 8] = [
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    u64::MAX,
];

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, status: u16) {
        *lock(&self.requests).entry(status).or_default() += 1;
    }

    /// Counts one committed object.
    pub fn object(&self, bytes: u64, events: u64, roll_micros: u64) {
        self.objects_written.fetch_add(1, Ordering::Relaxed);
        self.object_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.events_written.fetch_add(events, Ordering::Relaxed);
        self.roll_micros_sum
            .fetch_add(roll_micros, Ordering::Relaxed);
        self.roll_count.fetch_add(1, Ordering::Relaxed);
        let i = SIZE_BOUNDS.iter().position(|&b| bytes <= b).unwrap_or(7);
        self.object_size_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP ingest_requests_total HTTP requests answered, by status."
        );
        let _ = writeln!(s, "# TYPE ingest_requests_total counter");
        for (status, n) in lock(&self.requests).iter() {
            let _ = writeln!(s, "ingest_requests_total{{status=\"{status}\"}} {n}");
        }
        let counters = [
            (
                "ingest_events_accepted_total",
                "Events made durable and acknowledged.",
                &self.events_accepted,
            ),
            (
                "ingest_events_rejected_total",
                "Events rejected by validation.",
                &self.events_rejected,
            ),
            (
                "ingest_origin_refused_total",
                "Browser requests refused: Origin not allowed for the write key.",
                &self.origin_refused,
            ),
            (
                "ingest_browser_settings_total",
                "analytics.js settings answers served.",
                &self.browser_settings,
            ),
            (
                "ingest_browser_library_metrics_total",
                "analytics.js metrics posts received and dropped.",
                &self.browser_metrics,
            ),
            (
                "ingest_events_duplicate_total",
                "Events dropped as duplicates by messageId.",
                &self.events_duplicate,
            ),
            (
                "ingest_events_written_total",
                "Events in committed objects.",
                &self.events_written,
            ),
            (
                "ingest_writer_events_read_total",
                "Events the writer has read from the log (buffered or dropped as duplicates).",
                &self.events_read,
            ),
            (
                "ingest_bytes_received_total",
                "Request body bytes as received.",
                &self.bytes_received,
            ),
            (
                "ingest_bytes_decoded_total",
                "Request body bytes after decompression.",
                &self.bytes_decoded,
            ),
            (
                "ingest_objects_written_total",
                "Objects committed to storage.",
                &self.objects_written,
            ),
            (
                "ingest_object_bytes_total",
                "Bytes of committed objects.",
                &self.object_bytes,
            ),
            (
                "ingest_mqtt_messages_received_total",
                "MQTT messages received (broker redeliveries included).",
                &self.mqtt_received,
            ),
            (
                "ingest_mqtt_messages_acked_total",
                "MQTT messages acknowledged after their events were durable.",
                &self.mqtt_acked,
            ),
            (
                "ingest_mqtt_messages_rejected_total",
                "MQTT messages with a bad payload or refused events (kept as dead letters).",
                &self.mqtt_rejected,
            ),
            (
                "ingest_sink_errors_total",
                "Failed sink operations (retried).",
                &self.sink_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                g(v)
            );
        }
        let gauges = [
            (
                "ingest_log_lag_records",
                "Log records not yet settled into objects.",
                &self.log_lag_records,
            ),
            (
                "ingest_log_lag_bytes",
                "Log bytes not yet settled into objects.",
                &self.log_lag_bytes,
            ),
            (
                "ingest_writer_buffered_bytes",
                "Memory held by open objects, all partitions together.",
                &self.writer_buffered_bytes,
            ),
            (
                "ingest_mqtt_connected",
                "1 while the MQTT source is connected to its broker.",
                &self.mqtt_connected,
            ),
            (
                "ingest_mqtt_subscribed",
                "1 once the broker granted every subscription of the current MQTT connection.",
                &self.mqtt_subscribed,
            ),
            (
                "ingest_dedupe_index_ids",
                "Ids in the dedupe index.",
                &self.dedupe_ids,
            ),
            (
                "ingest_dedupe_index_bytes",
                "Bytes of the state database holding the dedupe index.",
                &self.dedupe_bytes,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                g(v)
            );
        }
        let _ = writeln!(
            s,
            "# HELP ingest_object_size_bytes Sizes of committed objects."
        );
        let _ = writeln!(s, "# TYPE ingest_object_size_bytes histogram");
        let mut cum = 0;
        for (i, bound) in SIZE_BOUNDS.iter().enumerate() {
            cum += g(&self.object_size_buckets[i]);
            let le = if *bound == u64::MAX {
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            let _ = writeln!(s, "ingest_object_size_bytes_bucket{{le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(s, "ingest_object_size_bytes_sum {}", g(&self.object_bytes));
        let _ = writeln!(
            s,
            "ingest_object_size_bytes_count {}",
            g(&self.objects_written)
        );
        let _ = writeln!(
            s,
            "# HELP ingest_roll_seconds Time to finish, upload and commit an object."
        );
        let _ = writeln!(s, "# TYPE ingest_roll_seconds summary");
        let _ = writeln!(
            s,
            "ingest_roll_seconds_sum {}",
            g(&self.roll_micros_sum) as f64 / 1e6
        );
        let _ = writeln!(s, "ingest_roll_seconds_count {}", g(&self.roll_count));
        s
    }
}
