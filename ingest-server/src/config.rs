//! Command line, environment and TOML configuration.
//!
//! Precedence, highest first: command-line flag, `TRIBUTARY_*` environment
//! variable, the TOML file given with `--config`, the embedded default. Every
//! option of [`ServeArgs`] is an `Option` so that the three sources can be
//! merged; `resolve` turns them into a checked [`Config`].
//!
//! The TOML file uses the flag names as keys, e.g.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data-dir = "/var/lib/tributary"
//! write-key = ["k1=ios", "k2=android"]
//! storage = "s3://bucket/events"
//! roll-bytes = "64MiB"
//! roll-interval = "5m"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::sources::mqtt::MqttConfig;
use crate::storage::format::Format;

/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `--data-dir`.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Source name given to a write key configured without `=SOURCE_NAME`.
pub const DEFAULT_SOURCE: &str = "default";
/// Name of the generated write key file inside the data directory.
pub const WRITE_KEY_FILE: &str = "write-key";

const MIB: u64 = 1024 * 1024;

/// Options shared by the server and the `compact`/`import` subcommands: where the
/// state and the objects live, and the object format.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreArgs {
    /// Directory for the durable log, the dedupe index and the generated write key
    /// [default: ./data].
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where objects go: `file:///abs/path` or `s3://bucket/prefix`
    /// [default: file://<data-dir>/objects]. For S3, region and credentials come from
    /// the usual AWS_* environment variables.
    #[arg(long, env = "TRIBUTARY_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:5000` (plain http is allowed).
    #[arg(long, env = "TRIBUTARY_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Object format: `ndjson` (gzip NDJSON) or `parquet` [default: ndjson].
    #[arg(long, env = "TRIBUTARY_FORMAT", value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Options of the server (the default command).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "TRIBUTARY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Accepted write key, `KEY` or `KEY=SOURCE_NAME`; repeat for several (the
    /// environment variable takes a comma-separated list). Without any, a key is
    /// generated on first start, printed, and kept in <data-dir>/write-key (mode 0600).
    #[arg(
        long = "write-key",
        env = "TRIBUTARY_WRITE_KEY",
        value_name = "KEY[=SOURCE]",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub write_key: Vec<String>,
    /// Roll an object when it reaches this size, 1MiB..1GiB [default: 128MiB].
    #[arg(long, env = "TRIBUTARY_ROLL_BYTES", value_name = "SIZE")]
    pub roll_bytes: Option<String>,
    /// Memory for open objects across all partitions; past it the largest one is
    /// rolled early, so many sources cannot add up to more, 1MiB..64GiB [default: 1GiB].
    #[arg(long, env = "TRIBUTARY_MAX_BUFFER_BYTES", value_name = "SIZE")]
    pub max_buffer_bytes: Option<String>,
    /// Roll an object when it has been open this long, e.g. `30s`, `5m` [default: 5m].
    #[arg(long, env = "TRIBUTARY_ROLL_INTERVAL", value_name = "DURATION")]
    pub roll_interval: Option<String>,
    /// Drop an event whose messageId was seen within this window, and replay the
    /// answer of an Idempotency-Key seen within it [default: 7d].
    #[arg(long, env = "TRIBUTARY_DEDUPE_WINDOW", value_name = "DURATION")]
    pub dedupe_window: Option<String>,
    /// Largest event, after decompression [default: 32KiB].
    #[arg(long, env = "TRIBUTARY_MAX_EVENT_BYTES", value_name = "SIZE")]
    pub max_event_bytes: Option<String>,
    /// Largest request body, after decompression; also the gzip expansion cap
    /// [default: 500KiB].
    #[arg(long, env = "TRIBUTARY_MAX_BATCH_BYTES", value_name = "SIZE")]
    pub max_batch_bytes: Option<String>,
    /// Time allowed to receive a request body before answering 408 [default: 10s].
    #[arg(long, env = "TRIBUTARY_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,
    /// Requests handled at once; more get 429 with Retry-After [default: 1024].
    #[arg(long, env = "TRIBUTARY_MAX_INFLIGHT", value_name = "N")]
    pub max_inflight: Option<usize>,
    /// Open client connections at most; further ones wait in the kernel's
    /// accept queue until one closes [default: 10000].
    #[arg(long, env = "TRIBUTARY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, counted from the moment
    /// the connection is open or idle: slow or idle connections are closed
    /// [default: 30s].
    #[arg(long, env = "TRIBUTARY_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Log bytes not yet in committed objects above which the server answers 503
    /// with Retry-After (the sink is behind) [default: 4GiB].
    #[arg(long, env = "TRIBUTARY_MAX_LOG_LAG", value_name = "SIZE")]
    pub max_log_lag: Option<String>,
    /// Web page origin allowed to send with a write key, `KEY=ORIGIN` where ORIGIN
    /// is `scheme://host[:port]` (e.g. `k1=https://shop.example.com`) or `*` for any
    /// page; repeat for several (the environment variable takes a comma-separated
    /// list). A request with an `Origin` header not allowed for its key is refused
    /// (403); without any entry for a key, no web page may use it.
    #[arg(
        long = "allowed-origin",
        env = "TRIBUTARY_ALLOWED_ORIGIN",
        value_name = "KEY=ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origin: Vec<String>,
    /// Subscribe to an MQTT broker, `mqtt://[user:pass@]host[:port]`: devices
    /// publish Segment events (one or a batch per message, QoS 1).
    #[arg(long, env = "TRIBUTARY_MQTT", value_name = "URL")]
    pub mqtt: Option<String>,
    /// MQTT topic filter and the source name its events get, `FILTER=SOURCE`
    /// (e.g. `devices/+/events=devices`); repeat for several.
    #[arg(
        long = "mqtt-topic",
        env = "TRIBUTARY_MQTT_TOPIC",
        value_name = "FILTER=SOURCE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub mqtt_topic: Vec<String>,
    /// MQTT user name.
    #[arg(long, env = "TRIBUTARY_MQTT_USERNAME", value_name = "NAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password (prefer the environment variable to the flag).
    #[arg(long, env = "TRIBUTARY_MQTT_PASSWORD", value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,
    /// MQTT client id, which names the persistent session; must differ per
    /// server [default: generated at first start, kept in <data-dir>/mqtt-client-id].
    #[arg(long, env = "TRIBUTARY_MQTT_CLIENT_ID", value_name = "ID")]
    pub mqtt_client_id: Option<String>,
    /// Share the subscription among servers: subscribe to `$share/GROUP/FILTER`,
    /// so the broker gives each message to one of them.
    #[arg(long, env = "TRIBUTARY_MQTT_SHARE_GROUP", value_name = "GROUP")]
    pub mqtt_share_group: Option<String>,
}

/// The whole command line of `ingest-server` (without a subcommand: serve).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerCli {
    /// TOML file with any of the options below (flag names as keys).
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    /// Storage options.
    pub store: StoreArgs,
    #[command(flatten)]
    /// Server options.
    pub serve: ServeArgs,
}

/// The TOML file: storage and server options side by side.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    format: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    write_key: Vec<String>,
    roll_bytes: Option<String>,
    max_buffer_bytes: Option<String>,
    roll_interval: Option<String>,
    dedupe_window: Option<String>,
    max_event_bytes: Option<String>,
    max_batch_bytes: Option<String>,
    body_timeout: Option<String>,
    max_inflight: Option<usize>,
    max_connections: Option<usize>,
    header_timeout: Option<String>,
    max_log_lag: Option<String>,
    #[serde(default)]
    allowed_origin: Vec<String>,
    mqtt: Option<String>,
    #[serde(default)]
    mqtt_topic: Vec<String>,
    mqtt_username: Option<String>,
    mqtt_password: Option<String>,
    mqtt_client_id: Option<String>,
    mqtt_share_group: Option<String>,
}

/// Where state and objects live, checked.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// State directory.
    pub data_dir: PathBuf,
    /// Object storage URL (`file://…` or `s3://…`).
    pub storage: String,
    /// Optional S3 endpoint.
    pub s3_endpoint: Option<String>,
    /// Object format.
    pub format: Format,
}

/// The checked server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Storage settings.
    pub store: StoreConfig,
    /// Listen address.
    pub listen: SocketAddr,
    /// Write key -> source name. Empty means "generate one".
    pub write_keys: BTreeMap<String, String>,
    /// Roll size in bytes.
    pub roll_bytes: u64,
    /// Memory bound of all open objects together.
    pub max_buffer_bytes: u64,
    /// Roll age.
    pub roll_interval: Duration,
    /// Dedupe and idempotency window.
    pub dedupe_window: Duration,
    /// Per-event limit in bytes.
    pub max_event_bytes: usize,
    /// Per-request limit in bytes (decompressed).
    pub max_batch_bytes: usize,
    /// Body read timeout.
    pub body_timeout: Duration,
    /// Concurrent requests.
    pub max_inflight: usize,
    /// Open client connections at most.
    pub max_connections: usize,
    /// Time to receive a request's headers on a new or idle connection.
    pub header_timeout: Duration,
    /// Log lag (bytes) above which requests get 503.
    pub max_log_lag: u64,
    /// Write key → web page origins allowed to use it (`*`: any).
    pub allowed_origins: BTreeMap<String, BTreeSet<String>>,
    /// The MQTT source, if `--mqtt` is given.
    pub mqtt: Option<MqttConfig>,
}

impl ServerCli {
    /// Merges flags/env with the TOML file and the defaults, and checks every value.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let store = StoreArgs {
            data_dir: self.store.data_dir.clone().or(file.data_dir),
            storage: self.store.storage.clone().or(file.storage),
            s3_endpoint: self.store.s3_endpoint.clone().or(file.s3_endpoint),
            format: self.store.format.clone().or(file.format),
        }
        .resolve_store()?;
        let s = &self.serve;
        let listen = s.listen.clone().or(file.listen);
        let listen = listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("--listen `{listen}` is not an address; use IP:PORT, e.g. 127.0.0.1:8080")
        })?;
        let keys = if s.write_key.is_empty() {
            file.write_key
        } else {
            s.write_key.clone()
        };
        let write_keys = parse_write_keys(&keys)?;
        let roll_bytes = pick_size(&s.roll_bytes, file.roll_bytes, "roll-bytes", 128 * MIB)?;
        if !(MIB..=1024 * MIB).contains(&roll_bytes) {
            bail!("--roll-bytes {roll_bytes} is out of range; use a size from 1MiB to 1GiB");
        }
        let max_buffer_bytes = pick_size(
            &s.max_buffer_bytes,
            file.max_buffer_bytes,
            "max-buffer-bytes",
            1024 * MIB,
        )?;
        if !(MIB..=64 * 1024 * MIB).contains(&max_buffer_bytes) {
            bail!(
                "--max-buffer-bytes {max_buffer_bytes} is out of range; use a size from 1MiB to 64GiB"
            );
        }
        let roll_interval =
            pick_duration(&s.roll_interval, file.roll_interval, "roll-interval", "5m")?;
        if roll_interval.is_zero() {
            bail!("--roll-interval must be more than zero, e.g. `30s` or `5m`");
        }
        let dedupe_window =
            pick_duration(&s.dedupe_window, file.dedupe_window, "dedupe-window", "7d")?;
        let max_event_bytes = pick_size(
            &s.max_event_bytes,
            file.max_event_bytes,
            "max-event-bytes",
            tributary_protocol::limits::SERVER_MAX_EVENT_BYTES as u64,
        )?;
        let max_batch_bytes = pick_size(
            &s.max_batch_bytes,
            file.max_batch_bytes,
            "max-batch-bytes",
            tributary_protocol::limits::SERVER_MAX_BATCH_BYTES as u64,
        )?;
        if max_event_bytes == 0 || max_batch_bytes < max_event_bytes {
            bail!("--max-batch-bytes must be at least --max-event-bytes, and both above zero");
        }
        let body_timeout =
            pick_duration(&s.body_timeout, file.body_timeout, "body-timeout", "10s")?;
        let max_inflight = s.max_inflight.or(file.max_inflight).unwrap_or(1024).max(1);
        let max_connections = s
            .max_connections
            .or(file.max_connections)
            .unwrap_or(10_000)
            .max(1);
        let header_timeout = pick_duration(
            &s.header_timeout,
            file.header_timeout,
            "header-timeout",
            "30s",
        )?;
        let max_log_lag = pick_size(&s.max_log_lag, file.max_log_lag, "max-log-lag", 4096 * MIB)?;
        let origins = if s.allowed_origin.is_empty() {
            file.allowed_origin
        } else {
            s.allowed_origin.clone()
        };
        let allowed_origins = parse_allowed_origins(&origins, &write_keys)?;
        let mqtt_topics = if s.mqtt_topic.is_empty() {
            file.mqtt_topic
        } else {
            s.mqtt_topic.clone()
        };
        let mqtt = match s.mqtt.clone().or(file.mqtt) {
            Some(url) => Some(MqttConfig::parse(
                &url,
                &mqtt_topics,
                s.mqtt_username.clone().or(file.mqtt_username),
                s.mqtt_password.clone().or(file.mqtt_password),
                s.mqtt_client_id.clone().or(file.mqtt_client_id),
                s.mqtt_share_group.clone().or(file.mqtt_share_group),
            )?),
            None if !mqtt_topics.is_empty() => {
                bail!("--mqtt-topic is set without --mqtt; add --mqtt mqtt://host[:port]")
            }
            None => None,
        };
        Ok(Config {
            store,
            listen,
            write_keys,
            roll_bytes,
            max_buffer_bytes,
            roll_interval,
            dedupe_window,
            max_event_bytes: max_event_bytes as usize,
            max_batch_bytes: max_batch_bytes as usize,
            body_timeout,
            max_inflight,
            max_connections,
            header_timeout,
            max_log_lag,
            allowed_origins,
            mqtt,
        })
    }
}

impl StoreArgs {
    /// Applies defaults and checks the storage options (used by `compact` and `import`
    /// too; they do not read the TOML file unless they merge it themselves).
    pub fn resolve_store(&self) -> anyhow::Result<StoreConfig> {
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let storage = match &self.storage {
            Some(url) => url.clone(),
            None => default_storage(&data_dir)?,
        };
        if !(storage.starts_with("file://") || storage.starts_with("s3://")) {
            bail!("--storage `{storage}` is not supported; use file:///path or s3://bucket/prefix");
        }
        let format = match &self.format {
            Some(f) => f.parse::<Format>().map_err(anyhow::Error::msg)?,
            None => Format::Ndjson,
        };
        Ok(StoreConfig {
            data_dir,
            storage,
            s3_endpoint: self.s3_endpoint.clone(),
            format,
        })
    }
}

/// `file://<abs data dir>/objects`.
fn default_storage(data_dir: &Path) -> anyhow::Result<String> {
    let abs = if data_dir.is_absolute() {
        data_dir.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory to place ./data")?
            .join(data_dir)
    };
    // `components()` drops the `.` of `./data`.
    let abs: PathBuf = abs.join("objects").components().collect();
    Ok(format!("file://{}", abs.display()))
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "config file {} is not valid: use the flag names as keys (e.g. roll-bytes = \"64MiB\")",
            path.display()
        )
    })
}

fn pick_size(
    cli: &Option<String>,
    file: Option<String>,
    name: &str,
    default: u64,
) -> anyhow::Result<u64> {
    match cli.clone().or(file) {
        Some(text) => parse_size(&text).with_context(|| format!("--{name}")),
        None => Ok(default),
    }
}

fn pick_duration(
    cli: &Option<String>,
    file: Option<String>,
    name: &str,
    default: &str,
) -> anyhow::Result<Duration> {
    let text = cli.clone().or(file).unwrap_or_else(|| default.to_string());
    humantime::parse_duration(&text).map_err(|e| {
        anyhow::anyhow!("--{name} `{text}` is not a duration ({e}); use e.g. `30s`, `5m`, `7d`")
    })
}

/// Parses `KEY` or `KEY=SOURCE_NAME` entries.
pub fn parse_write_keys(entries: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for entry in entries {
        let (key, source) = match entry.split_once('=') {
            Some((k, s)) => (k.trim(), s.trim()),
            None => (entry.trim(), DEFAULT_SOURCE),
        };
        if key.is_empty() {
            bail!("--write-key `{entry}` has an empty key; use KEY or KEY=SOURCE_NAME");
        }
        check_source_name(source)?;
        keys.insert(key.to_string(), source.to_string());
    }
    Ok(keys)
}

/// Parses `KEY=ORIGIN` entries: each key must be a configured write key, each
/// origin `*` or `http(s)://host[:port]` exactly as a browser sends it in
/// `Origin` (no path, no trailing slash; compared case-insensitively, so kept in
/// lower case).
pub fn parse_allowed_origins(
    entries: &[String],
    write_keys: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in entries {
        let Some((key, origin)) = entry.split_once('=') else {
            bail!(
                "--allowed-origin `{entry}` has no `=`; use KEY=ORIGIN, e.g. k1=https://shop.example.com or k1=*"
            );
        };
        let (key, origin) = (key.trim(), origin.trim());
        if !write_keys.contains_key(key) {
            bail!(
                "--allowed-origin `{entry}` names a write key that is not configured; \
                 give the same key with --write-key KEY[=SOURCE]"
            );
        }
        let origin =
            normalize_origin(origin).with_context(|| format!("--allowed-origin `{entry}`"))?;
        out.entry(key.to_string()).or_default().insert(origin);
    }
    Ok(out)
}

/// `*`, or `scheme://host[:port]` in lower case.
fn normalize_origin(origin: &str) -> anyhow::Result<String> {
    if origin == "*" {
        return Ok(origin.to_string());
    }
    let lower = origin.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let ok = rest.is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if !ok {
        bail!(
            "`{origin}` is not an origin; use scheme://host[:port] as the browser sends it \
             (no path, no trailing slash), e.g. https://shop.example.com, or `*` for any page"
        );
    }
    Ok(lower)
}

/// Source names become a path segment (`source=NAME/`), so they are restricted.
pub fn check_source_name(source: &str) -> anyhow::Result<()> {
    let ok = !source.is_empty()
        && source.len() <= 64
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && source != "."
        && source != "..";
    if !ok {
        bail!("source name `{source}` is not allowed; use 1-64 characters from A-Z a-z 0-9 - _ .");
    }
    Ok(())
}

/// Parses a size such as `128MiB`, `64MB`, `512KiB`, `1GiB` or a plain byte count.
/// `KB`/`MB`/`GB` are read as powers of 1024 too (what people mean for buffer sizes).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| {
        anyhow::anyhow!("`{text}` is not a size; use e.g. 64MiB, 512KiB, 1GiB or a byte count")
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => bail!("`{text}` has an unknown unit; use B, KiB, MiB or GiB"),
    };
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 * MIB);
        assert_eq!(parse_size("1GiB").unwrap(), 1024 * MIB);
        assert_eq!(parse_size("1048576").unwrap(), MIB);
        assert_eq!(parse_size("32KB").unwrap(), 32 * 1024);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn write_keys() {
        let k = parse_write_keys(&["a".into(), "b=ios".into()]).unwrap();
        assert_eq!(k["a"], DEFAULT_SOURCE);
        assert_eq!(k["b"], "ios");
        assert!(parse_write_keys(&["c=../x".into()]).is_err());
        assert!(parse_write_keys(&["=x".into()]).is_err());
    }

    #[test]
    fn toml_keys_for_browsers_and_mqtt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            r#"
write-key = ["k1=web"]
allowed-origin = ["k1=https://shop.example.com"]
mqtt = "mqtt://broker:1884"
mqtt-topic = ["devices/+/events=devices"]
mqtt-username = "u"
mqtt-password = "p"
mqtt-share-group = "g"
"#,
        )
        .unwrap();
        let cli = ServerCli {
            config: Some(path),
            ..Default::default()
        };
        let cfg = cli.resolve().unwrap();
        assert!(cfg.allowed_origins["k1"].contains("https://shop.example.com"));
        let m = cfg.mqtt.unwrap();
        assert_eq!((m.host.as_str(), m.port), ("broker", 1884));
        assert_eq!(m.credentials, Some(("u".into(), "p".into())));
        assert_eq!(
            m.subscriptions(),
            vec!["$share/g/devices/+/events".to_string()]
        );
        // Topics without a broker is a mistake worth saying.
        let cli = ServerCli {
            serve: ServeArgs {
                mqtt_topic: vec!["a=b".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let e = cli.resolve().unwrap_err();
        assert!(format!("{e:#}").contains("without --mqtt"), "{e:#}");
    }

    #[test]
    fn allowed_origins() {
        let keys = parse_write_keys(&["k1=web".into(), "k2=ios".into()]).unwrap();
        let o = parse_allowed_origins(
            &[
                "k1=https://Shop.example.com".into(),
                "k1=http://127.0.0.1:8081".into(),
                "k2=*".into(),
            ],
            &keys,
        )
        .unwrap();
        assert!(o["k1"].contains("https://shop.example.com"));
        assert!(o["k1"].contains("http://127.0.0.1:8081"));
        assert!(o["k2"].contains("*"));
        for bad in [
            "k1",
            "k3=https://a.example",
            "k1=https://a.example/",
            "k1=https://a.example/path",
            "k1=a.example",
            "k1=ftp://a.example",
        ] {
            let e = parse_allowed_origins(&[bad.into()], &keys).unwrap_err();
            assert!(format!("{e:#}").contains(bad), "{e:#}");
        }
    }
}
