//! Counters, gauges and histograms, rendered in the Prometheus text format
//! (version 0.0.4) at `GET /metrics`.
//!
//! Kept in `prometheus-client` metrics: counters and gauges are one atomic each
//! (an `inc_by` is one relaxed `fetch_add`), so the hot path costs what the
//! hand-written atomics cost before. The registry holds clones of the same
//! handles and renders them; names, help texts and types are declared once, in
//! [`Metrics::new`].

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A gauge of a non-negative count (bytes, records, a 0/1 flag).
pub type CountGauge = Gauge<u64, AtomicU64>;

/// The label of `ingest_requests_total`: the answer's HTTP status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status code of the answer.
    pub status: u16,
}

/// Upper bounds in bytes of the `ingest_object_size_bytes` buckets (`+Inf` is added).
pub const SIZE_BOUNDS: [u64; 7] = [
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
];

/// Upper bounds in seconds of the `ingest_roll_seconds` buckets (`+Inf` is added).
pub const ROLL_BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Every metric of the server, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    /// Requests by HTTP status.
    pub requests: Family<StatusLabel, Counter>,
    /// The counters of `requests` by status (100..=599), taken from the family
    /// at their first use: counting a request is then one atomic load and one
    /// add, with no lock and no hashing of the label.
    by_status: Box<[OnceLock<Counter>]>,
    /// Events accepted by the front-end (durable in the log).
    pub events_accepted: Counter,
    /// Events rejected by validation.
    pub events_rejected: Counter,
    /// Events dropped by the writer as duplicates.
    pub events_duplicate: Counter,
    /// Events written to committed objects (less those a rewrite removed again).
    pub events_written: Counter,
    /// Events the writer has read from the log and settled in memory: buffered
    /// into an open object or dropped as a duplicate (its read position, in events).
    pub events_read: Counter,
    /// Request body bytes received (as sent, maybe compressed).
    pub bytes_received: Counter,
    /// Request body bytes after decompression.
    pub bytes_decoded: Counter,
    /// Objects committed.
    pub objects_written: Counter,
    /// Bytes of committed objects.
    pub object_bytes: Counter,
    /// Sizes of committed objects, in bytes.
    pub object_sizes: Histogram,
    /// Roll latency (finish + upload + commit), in seconds.
    pub roll_seconds: Histogram,
    /// Log offsets not yet settled by the writer.
    pub log_lag_records: CountGauge,
    /// Log bytes not yet settled.
    pub log_lag_bytes: CountGauge,
    /// Memory held by the writer's open objects (see `--max-buffer-bytes`).
    pub writer_buffered_bytes: CountGauge,
    /// Ids in the dedupe index.
    pub dedupe_ids: CountGauge,
    /// Bytes of the state database.
    pub dedupe_bytes: CountGauge,
    /// Sink failures (retried).
    pub sink_errors: Counter,
    /// Browser requests refused because their `Origin` is not allowed for the key.
    pub origin_refused: Counter,
    /// analytics.js settings served.
    pub browser_settings: Counter,
    /// analytics.js metrics posts received (and dropped).
    pub browser_metrics: Counter,
    /// MQTT messages received (redeliveries included).
    pub mqtt_received: Counter,
    /// MQTT messages acknowledged (PUBACK sent after their events were durable).
    pub mqtt_acked: Counter,
    /// MQTT messages with a bad payload or refused events, kept as dead letters.
    pub mqtt_rejected: Counter,
    /// 1 while connected to the MQTT broker.
    pub mqtt_connected: CountGauge,
    /// 1 once the broker has granted every subscription of the current connection.
    pub mqtt_subscribed: CountGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under its name (counters get `_total`
    /// appended when rendered).
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            by_status: (0..600).map(|_| OnceLock::new()).collect(),
            events_accepted: Counter::default(),
            events_rejected: Counter::default(),
            events_duplicate: Counter::default(),
            events_written: Counter::default(),
            events_read: Counter::default(),
            bytes_received: Counter::default(),
            bytes_decoded: Counter::default(),
            objects_written: Counter::default(),
            object_bytes: Counter::default(),
            object_sizes: Histogram::new(SIZE_BOUNDS.map(|b| b as f64)),
            roll_seconds: Histogram::new(ROLL_BOUNDS),
            log_lag_records: CountGauge::default(),
            log_lag_bytes: CountGauge::default(),
            writer_buffered_bytes: CountGauge::default(),
            dedupe_ids: CountGauge::default(),
            dedupe_bytes: CountGauge::default(),
            sink_errors: Counter::default(),
            origin_refused: Counter::default(),
            browser_settings: Counter::default(),
            browser_metrics: Counter::default(),
            mqtt_received: Counter::default(),
            mqtt_acked: Counter::default(),
            mqtt_rejected: Counter::default(),
            mqtt_connected: CountGauge::default(),
            mqtt_subscribed: CountGauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "ingest_requests",
            "HTTP requests answered, by status.",
            m.requests.clone(),
        );
        let counters = [
            (
                "ingest_events_accepted",
                "Events made durable and acknowledged.",
                &m.events_accepted,
            ),
            (
                "ingest_events_rejected",
                "Events rejected by validation.",
                &m.events_rejected,
            ),
            (
                "ingest_origin_refused",
                "Browser requests refused: Origin not allowed for the write key.",
                &m.origin_refused,
            ),
            (
                "ingest_browser_settings",
                "analytics.js settings answers served.",
                &m.browser_settings,
            ),
            (
                "ingest_browser_library_metrics",
                "analytics.js metrics posts received and dropped.",
                &m.browser_metrics,
            ),
            (
                "ingest_events_duplicate",
                "Events dropped as duplicates by messageId.",
                &m.events_duplicate,
            ),
            (
                "ingest_events_written",
                "Events in committed objects.",
                &m.events_written,
            ),
            (
                "ingest_writer_events_read",
                "Events the writer has read from the log (buffered or dropped as duplicates).",
                &m.events_read,
            ),
            (
                "ingest_bytes_received",
                "Request body bytes as received.",
                &m.bytes_received,
            ),
            (
                "ingest_bytes_decoded",
                "Request body bytes after decompression.",
                &m.bytes_decoded,
            ),
            (
                "ingest_objects_written",
                "Objects committed to storage.",
                &m.objects_written,
            ),
            (
                "ingest_object_bytes",
                "Bytes of committed objects.",
                &m.object_bytes,
            ),
            (
                "ingest_mqtt_messages_received",
                "MQTT messages received (broker redeliveries included).",
                &m.mqtt_received,
            ),
            (
                "ingest_mqtt_messages_acked",
                "MQTT messages acknowledged after their events were durable.",
                &m.mqtt_acked,
            ),
            (
                "ingest_mqtt_messages_rejected",
                "MQTT messages with a bad payload or refused events (kept as dead letters).",
                &m.mqtt_rejected,
            ),
            (
                "ingest_sink_errors",
                "Failed sink operations (retried).",
                &m.sink_errors,
            ),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        let gauges = [
            (
                "ingest_log_lag_records",
                "Log records not yet settled into objects.",
                &m.log_lag_records,
            ),
            (
                "ingest_log_lag_bytes",
                "Log bytes not yet settled into objects.",
                &m.log_lag_bytes,
            ),
            (
                "ingest_writer_buffered_bytes",
                "Memory held by open objects, all partitions together.",
                &m.writer_buffered_bytes,
            ),
            (
                "ingest_mqtt_connected",
                "1 while the MQTT source is connected to its broker.",
                &m.mqtt_connected,
            ),
            (
                "ingest_mqtt_subscribed",
                "1 once the broker granted every subscription of the current MQTT connection.",
                &m.mqtt_subscribed,
            ),
            (
                "ingest_dedupe_index_ids",
                "Ids in the dedupe index.",
                &m.dedupe_ids,
            ),
            (
                "ingest_dedupe_index_bytes",
                "Bytes of the state database holding the dedupe index.",
                &m.dedupe_bytes,
            ),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
        r.register(
            "ingest_object_size_bytes",
            "Sizes of committed objects.",
            m.object_sizes.clone(),
        );
        r.register(
            "ingest_roll_seconds",
            "Time to finish, upload and commit an object.",
            m.roll_seconds.clone(),
        );
        m
    }

    /// Counts one answered request.
    pub fn request(&self, status: u16) {
        let label = StatusLabel { status };
        match self.by_status.get(usize::from(status)) {
            Some(slot) => {
                slot.get_or_init(|| self.requests.get_or_create_owned(&label))
                    .inc();
            }
            None => {
                self.requests.get_or_create(&label).inc();
            }
        }
    }

    /// Counts one committed object of `bytes` holding `events` events, which
    /// took `roll_micros` to finish, upload and commit.
    pub fn object(&self, bytes: u64, events: u64, roll_micros: u64) {
        self.objects_written.inc();
        self.object_bytes.inc_by(bytes);
        self.events_written.inc_by(events);
        self.object_sizes.observe(bytes as f64);
        self.roll_seconds.observe(roll_micros as f64 / 1e6);
    }

    /// The Prometheus text exposition (version 0.0.4) of every metric.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        // Writing into a String cannot fail, and every metric encodes infallibly;
        // an error here would only cut the text short, so it is logged, not raised.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry)
        {
            tracing::error!(error = %e, "rendering the metrics failed");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `sample` (name and labels, exactly).
    fn sample(text: &str, sample: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_every_metric_under_its_name_and_type() {
        let m = Metrics::new();
        m.request(200);
        m.request(200);
        m.request(503);
        m.request(700); // past the cached statuses: straight through the family
        m.events_accepted.inc_by(7);
        m.events_written.inc_by(5);
        m.log_lag_records.set(42);
        m.mqtt_connected.set(1);
        m.object(100 << 10, 3, 1_500_000);
        let t = m.render();
        assert_eq!(
            sample(&t, "ingest_requests_total{status=\"200\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&t, "ingest_requests_total{status=\"503\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "ingest_requests_total{status=\"700\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&t, "ingest_events_accepted_total"), Some(7.0));
        assert_eq!(sample(&t, "ingest_events_written_total"), Some(8.0));
        assert_eq!(sample(&t, "ingest_objects_written_total"), Some(1.0));
        assert_eq!(sample(&t, "ingest_object_bytes_total"), Some(102400.0));
        assert_eq!(sample(&t, "ingest_log_lag_records"), Some(42.0));
        assert_eq!(sample(&t, "ingest_mqtt_connected"), Some(1.0));
        assert_eq!(sample(&t, "ingest_mqtt_subscribed"), Some(0.0));
        assert_eq!(sample(&t, "ingest_sink_errors_total"), Some(0.0));
        // 100 KiB: above the 64 KiB bucket, in the 256 KiB one and all above it.
        assert_eq!(
            sample(&t, "ingest_object_size_bytes_bucket{le=\"65536\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&t, "ingest_object_size_bytes_bucket{le=\"262144\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&t, "ingest_object_size_bytes_bucket{le=\"+Inf\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&t, "ingest_object_size_bytes_sum"), Some(102400.0));
        assert_eq!(sample(&t, "ingest_roll_seconds_sum"), Some(1.5));
        assert_eq!(sample(&t, "ingest_roll_seconds_count"), Some(1.0));
        for (name, kind) in [
            ("ingest_requests_total", "counter"),
            ("ingest_writer_events_read_total", "counter"),
            ("ingest_browser_library_metrics_total", "counter"),
            ("ingest_dedupe_index_bytes", "gauge"),
            ("ingest_writer_buffered_bytes", "gauge"),
            ("ingest_object_size_bytes", "histogram"),
            ("ingest_roll_seconds", "histogram"),
        ] {
            assert!(
                t.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is not a {kind} in:\n{t}"
            );
        }
    }
}
