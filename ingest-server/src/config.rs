//! Command line, environment and TOML configuration.
//!
//! Every option is declared once, as a field of [`StoreArgs`] or [`ServeArgs`]
//! with its flag, its `TRIBUTARY_*` variable, its type and its default in the
//! clap attributes. The TOML file given with `--config` (or `TRIBUTARY_CONFIG`)
//! uses the flag names as keys; [`parse`] feeds its values to clap as the
//! defaults of the command being run, so clap itself applies the precedence,
//! highest first: command-line flag, environment variable, the TOML file, the
//! built-in default. [`ServerCli::resolve`] then checks what no single option
//! can check alone and builds the [`Config`].
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data-dir = "/var/lib/tributary"
//! write-key = ["k1=ios", "k2=android"]
//! storage = "s3://bucket/events"
//! roll-bytes = "64MiB"
//! roll-interval = "5m"
//! ```
//!
//! `compact` and `import` read the same file: each command takes the keys it has
//! as options (the storage keys, and e.g. `roll-bytes` for `import`) and leaves
//! the others. A key that is no option of any command is an error that names it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::error::ErrorKind;
use clap::{ArgAction, Command};

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

/// A size in bytes, written `64MiB`, `512KiB`, `1GiB` or as a byte count
/// (see [`parse_size`]), and shown in the largest unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_size(s).map(ByteSize).map_err(|e| e.to_string())
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

/// `--listen`'s parser: an `IP:PORT`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an address; use IP:PORT, e.g. 127.0.0.1:8080"))
}

/// The parser of every duration option: `30s`, `5m`, `7d`, ...
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); use e.g. `30s`, `5m`, `7d`"))
}

/// Options shared by the server and the `compact`/`import` subcommands: where the
/// state and the objects live, and the object format.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Directory for the durable log, the dedupe index and the generated write key.
    #[arg(long, env = "TRIBUTARY_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where objects go: `file:///abs/path` or `s3://bucket/prefix`
    /// (default: `file://<data-dir>/objects`). For S3, region and credentials come from
    /// the usual AWS_* environment variables.
    #[arg(long, env = "TRIBUTARY_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:5000` (plain http is allowed).
    #[arg(long, env = "TRIBUTARY_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Object format: `ndjson` (gzip NDJSON) or `parquet`.
    #[arg(
        long,
        env = "TRIBUTARY_FORMAT",
        value_name = "FORMAT",
        default_value = "ndjson"
    )]
    pub format: Format,
}

/// Options of the server (the default command).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TRIBUTARY_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Accepted write key, `KEY` or `KEY=SOURCE_NAME`; repeat for several (the
    /// environment variable takes a comma-separated list). Without any, a key is
    /// generated on first start, printed, and kept in `<data-dir>/write-key` (mode 0600).
    #[arg(
        long = "write-key",
        env = "TRIBUTARY_WRITE_KEY",
        value_name = "KEY[=SOURCE]",
        value_delimiter = ','
    )]
    pub write_key: Vec<String>,
    /// Roll an object when it reaches this size, 1MiB..1GiB.
    #[arg(
        long,
        env = "TRIBUTARY_ROLL_BYTES",
        value_name = "SIZE",
        default_value = "128MiB"
    )]
    pub roll_bytes: ByteSize,
    /// Memory for open objects across all partitions; past it the largest one is
    /// rolled early, so many sources cannot add up to more, 1MiB..64GiB.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_BUFFER_BYTES",
        value_name = "SIZE",
        default_value = "1GiB"
    )]
    pub max_buffer_bytes: ByteSize,
    /// Roll an object when it has been open this long, e.g. `30s`, `5m`.
    #[arg(long, env = "TRIBUTARY_ROLL_INTERVAL", value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub roll_interval: Duration,
    /// Drop an event whose messageId was seen within this window, and replay the
    /// answer of an Idempotency-Key seen within it.
    #[arg(long, env = "TRIBUTARY_DEDUPE_WINDOW", value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub dedupe_window: Duration,
    /// Largest event, after decompression.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_EVENT_BYTES",
        value_name = "SIZE",
        default_value_t = ByteSize(tributary_protocol::limits::SERVER_MAX_EVENT_BYTES as u64)
    )]
    pub max_event_bytes: ByteSize,
    /// Largest request body, after decompression; also the gzip expansion cap.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_BATCH_BYTES",
        value_name = "SIZE",
        default_value_t = ByteSize(tributary_protocol::limits::SERVER_MAX_BATCH_BYTES as u64)
    )]
    pub max_batch_bytes: ByteSize,
    /// Time allowed to receive a request body before answering 408.
    #[arg(long, env = "TRIBUTARY_BODY_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Requests handled at once; more get 429 with Retry-After.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_INFLIGHT",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_inflight: usize,
    /// Open client connections at most; further ones wait in the kernel's
    /// accept queue until one closes.
    #[arg(
        long,
        env = "TRIBUTARY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from the moment
    /// the connection is open or idle: slow or idle connections are closed.
    #[arg(long, env = "TRIBUTARY_HEADER_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Log bytes not yet in committed objects above which the server answers 503
    /// with Retry-After (the sink is behind).
    #[arg(
        long,
        env = "TRIBUTARY_MAX_LOG_LAG",
        value_name = "SIZE",
        default_value = "4GiB"
    )]
    pub max_log_lag: ByteSize,
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
    pub mqtt_topic: Vec<String>,
    /// MQTT user name.
    #[arg(long, env = "TRIBUTARY_MQTT_USERNAME", value_name = "NAME")]
    pub mqtt_username: Option<String>,
    /// MQTT password (prefer the environment variable to the flag).
    #[arg(long, env = "TRIBUTARY_MQTT_PASSWORD", value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,
    /// MQTT client id, which names the persistent session; must differ per
    /// server (default: generated at first start, kept in `<data-dir>/mqtt-client-id`).
    #[arg(long, env = "TRIBUTARY_MQTT_CLIENT_ID", value_name = "ID")]
    pub mqtt_client_id: Option<String>,
    /// Share the subscription among servers: subscribe to `$share/GROUP/FILTER`,
    /// so the broker gives each message to one of them.
    #[arg(long, env = "TRIBUTARY_MQTT_SHARE_GROUP", value_name = "GROUP")]
    pub mqtt_share_group: Option<String>,
}

/// The whole command line of `ingest-server` (without a subcommand: serve).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerCli {
    /// TOML file with any of the options (flag names as keys), read by every
    /// command; flags and TRIBUTARY_* variables take precedence over it.
    #[arg(long, env = "TRIBUTARY_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    /// Storage options.
    pub store: StoreArgs,
    #[command(flatten)]
    /// Server options.
    pub serve: ServeArgs,
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
    /// Checks what no single option can check alone (ranges, keys against
    /// origins, MQTT topics against a broker) and builds the [`Config`].
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let store = self.store.resolve_store()?;
        let s = &self.serve;
        let write_keys = parse_write_keys(&s.write_key)?;
        let roll_bytes = s.roll_bytes.0;
        if !(MIB..=1024 * MIB).contains(&roll_bytes) {
            bail!("--roll-bytes {roll_bytes} is out of range; use a size from 1MiB to 1GiB");
        }
        let max_buffer_bytes = s.max_buffer_bytes.0;
        if !(MIB..=64 * 1024 * MIB).contains(&max_buffer_bytes) {
            bail!(
                "--max-buffer-bytes {max_buffer_bytes} is out of range; use a size from 1MiB to 64GiB"
            );
        }
        if s.roll_interval.is_zero() {
            bail!("--roll-interval must be more than zero, e.g. `30s` or `5m`");
        }
        let (max_event_bytes, max_batch_bytes) = (s.max_event_bytes.0, s.max_batch_bytes.0);
        if max_event_bytes == 0 || max_batch_bytes < max_event_bytes {
            bail!("--max-batch-bytes must be at least --max-event-bytes, and both above zero");
        }
        let allowed_origins = parse_allowed_origins(&s.allowed_origin, &write_keys)?;
        let mqtt = match &s.mqtt {
            Some(url) => Some(MqttConfig::parse(
                url,
                &s.mqtt_topic,
                s.mqtt_username.clone(),
                s.mqtt_password.clone(),
                s.mqtt_client_id.clone(),
                s.mqtt_share_group.clone(),
            )?),
            None if !s.mqtt_topic.is_empty() => {
                bail!("--mqtt-topic is set without --mqtt; add --mqtt mqtt://host[:port]")
            }
            None => None,
        };
        Ok(Config {
            store,
            listen: s.listen,
            write_keys,
            roll_bytes,
            max_buffer_bytes,
            roll_interval: s.roll_interval,
            dedupe_window: s.dedupe_window,
            max_event_bytes: usize::try_from(max_event_bytes)
                .context("--max-event-bytes is too large")?,
            max_batch_bytes: usize::try_from(max_batch_bytes)
                .context("--max-batch-bytes is too large")?,
            body_timeout: s.body_timeout,
            max_inflight: s.max_inflight.max(1),
            max_connections: s.max_connections.max(1),
            header_timeout: s.header_timeout,
            max_log_lag: s.max_log_lag.0,
            allowed_origins,
            mqtt,
        })
    }
}

impl StoreArgs {
    /// Checks the storage options and fills in the storage URL's default, which
    /// depends on `--data-dir` (used by `compact` and `import` too).
    pub fn resolve_store(&self) -> anyhow::Result<StoreConfig> {
        let data_dir = self.data_dir.clone();
        let storage = match &self.storage {
            Some(url) => url.clone(),
            None => default_storage(&data_dir)?,
        };
        if !(storage.starts_with("file://") || storage.starts_with("s3://")) {
            bail!("--storage `{storage}` is not supported; use file:///path or s3://bucket/prefix");
        }
        Ok(StoreConfig {
            data_dir,
            storage,
            s3_endpoint: self.s3_endpoint.clone(),
            format: self.format,
        })
    }
}

/// Parses the process's command line as `P`, with the TOML file named by
/// `--config` or `TRIBUTARY_CONFIG` (see the module documentation); prints the
/// error and exits, as clap does, when something is wrong.
pub fn parse<P: clap::Parser>() -> P {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// [`parse`] of the given arguments (the first one is the program name).
pub fn try_parse_from<P, I, T>(args: I) -> Result<P, clap::Error>
where
    P: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = P::command();
    let first = cmd.clone().try_get_matches_from(&args)?;
    // The command being run, as the chain of subcommand names from the top.
    let mut chain = Vec::new();
    let mut file = config_path(&first);
    let mut m = &first;
    while let Some((name, sub)) = m.subcommand() {
        chain.push(name.to_string());
        m = sub;
        file = config_path(m).or(file);
    }
    let Some(file) = file else {
        return P::from_arg_matches(&first);
    };
    let table = load_file(&file).map_err(|e| cmd.error(ErrorKind::Io, format!("{e:#}")))?;
    let cmd = with_file_defaults(cmd, &chain, &table, &file)?;
    P::from_arg_matches(&cmd.try_get_matches_from(&args)?)
}

/// The `--config` path given at this level, if this command has the option.
fn config_path(m: &clap::ArgMatches) -> Option<PathBuf> {
    m.try_get_one::<PathBuf>("config").ok().flatten().cloned()
}

fn load_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "config file {} is not valid TOML: use the flag names as keys (e.g. roll-bytes = \"64MiB\")",
            path.display()
        )
    })
}

/// `cmd` with the TOML file's values as the defaults of the options of the
/// command at `chain`.
fn with_file_defaults(
    mut cmd: Command,
    chain: &[String],
    table: &toml::Table,
    file: &Path,
) -> Result<Command, clap::Error> {
    let target = chain
        .iter()
        .try_fold(&cmd, |c, name| c.find_subcommand(name));
    let defaults = match target {
        Some(target) => file_defaults(&cmd, target, table, file),
        None => Err(format!("no subcommand `{}`", chain.join(" "))),
    };
    let defaults = defaults.map_err(|message| cmd.error(ErrorKind::InvalidValue, message))?;
    let apply = move |mut c: Command| {
        for (id, values) in defaults {
            c = c.mut_arg(id, |a| a.default_values(values));
        }
        c
    };
    // Down to the subcommand, apply, and rebuild the chain on the way back.
    fn down(c: Command, chain: &[String], apply: impl FnOnce(Command) -> Command) -> Command {
        match chain.split_first() {
            None => apply(c),
            Some((name, rest)) => c.mut_subcommand(name, |sub| down(sub, rest, apply)),
        }
    }
    Ok(down(cmd, chain, apply))
}

/// The defaults the file gives to the options of `target` (a command of
/// `root`), each value checked by the option's own parser.
fn file_defaults(
    root: &Command,
    target: &Command,
    table: &toml::Table,
    file: &Path,
) -> Result<Vec<(clap::Id, Vec<String>)>, String> {
    let mut owners = BTreeMap::new();
    collect_options(root, &mut owners);
    let mut defaults = Vec::new();
    for (key, value) in table {
        let fail = |why: String| format!("config file {}: key `{key}` {why}", file.display());
        let Some(owner) = owners.get(key.as_str()).filter(|_| key != "config") else {
            return Err(fail(
                "is not an option; the keys are the flag names of `ingest-server --help` \
                 without the dashes (e.g. roll-bytes)"
                    .into(),
            ));
        };
        // The value is checked even when it belongs to another command (e.g.
        // `listen` while compacting), which then leaves it alone.
        let arg = target
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()));
        let checked = arg.unwrap_or(owner);
        let many = matches!(checked.get_action(), ArgAction::Append);
        let values = toml_values(value, many).map_err(fail)?;
        check_values(checked, &values).map_err(fail)?;
        let Some(arg) = arg else {
            continue;
        };
        defaults.push((arg.get_id().clone(), values));
    }
    Ok(defaults)
}

/// Every option of `cmd` and of its subcommands with a long flag, by that flag
/// (the first command that has it wins).
fn collect_options<'c>(cmd: &'c Command, out: &mut BTreeMap<&'c str, &'c clap::Arg>) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) {
            out.entry(long).or_insert(arg);
        }
    }
    for sub in cmd.get_subcommands() {
        collect_options(sub, out);
    }
}

/// A TOML value as the option's text values: a string, number or boolean, or
/// (for an option that repeats) an array of them.
fn toml_values(value: &toml::Value, many: bool) -> Result<Vec<String>, String> {
    fn scalar(v: &toml::Value) -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match value {
        toml::Value::Array(items) if many => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| format!("has `{v}` in its list; use strings")))
            .collect(),
        toml::Value::Array(_) => Err("takes one value, not a list".into()),
        v => scalar(v)
            .map(|s| vec![s])
            .ok_or_else(|| "must be a string, a number or a boolean".into()),
    }
}

/// Runs `values` through `arg`'s own parser (a command with this option only),
/// so a bad value in the file is reported with the key that holds it.
fn check_values(arg: &clap::Arg, values: &[String]) -> Result<(), String> {
    let probe = Command::new("ingest-server")
        .no_binary_name(true)
        .arg(arg.clone().required(false));
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    let args = values.iter().flat_map(|v| [format!("--{long}"), v.clone()]);
    probe.try_get_matches_from(args).map(|_| ()).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        format!("has a bad value: {}", first.trim_start_matches("error: "))
    })
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

    /// The command line of `ingest-server`, as main.rs builds it.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Option<Sub>,
        #[command(flatten)]
        serve: ServerCli,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Compact(crate::tools::compact::Args),
        Import(crate::tools::import::Args),
    }

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        try_parse_from(std::iter::once("ingest-server").chain(args.iter().copied()))
    }

    /// A TOML file in a temporary directory, and its path as text.
    fn toml(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.to_string_lossy().into_owned();
        (dir, path)
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let cfg = cli(&[]).unwrap().serve.resolve().unwrap();
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(cfg.store.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(
            cfg.store.storage.starts_with("file:///"),
            "{}",
            cfg.store.storage
        );
        assert!(
            cfg.store.storage.ends_with("/data/objects"),
            "{}",
            cfg.store.storage
        );
        assert_eq!(cfg.store.format, Format::Ndjson);
        assert!(cfg.write_keys.is_empty());
        assert_eq!(cfg.roll_bytes, 128 * MIB);
        assert_eq!(cfg.max_buffer_bytes, 1024 * MIB);
        assert_eq!(cfg.roll_interval, Duration::from_secs(300));
        assert_eq!(cfg.dedupe_window, Duration::from_secs(7 * 86_400));
        assert_eq!(
            cfg.max_event_bytes,
            tributary_protocol::limits::SERVER_MAX_EVENT_BYTES
        );
        assert_eq!(
            cfg.max_batch_bytes,
            tributary_protocol::limits::SERVER_MAX_BATCH_BYTES
        );
        assert_eq!(cfg.body_timeout, Duration::from_secs(10));
        assert_eq!(cfg.max_inflight, 1024);
        assert_eq!(cfg.max_connections, 10_000);
        assert_eq!(cfg.header_timeout, Duration::from_secs(30));
        assert_eq!(cfg.max_log_lag, 4096 * MIB);
        assert!(cfg.allowed_origins.is_empty() && cfg.mqtt.is_none());
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let (_dir, path) = toml(
            "roll-bytes = \"64MiB\"\nformat = \"parquet\"\nmax-inflight = 7\nwrite-key = [\"a=x\", \"b=y\"]\n",
        );
        let path = path.as_str();
        let c = cli(&["--config", path, "--roll-bytes", "2MiB"]).unwrap();
        let cfg = c.serve.resolve().unwrap();
        assert_eq!(cfg.roll_bytes, 2 * MIB, "the flag");
        assert_eq!(cfg.store.format, Format::Parquet, "the file");
        assert_eq!(cfg.max_inflight, 7, "the file");
        assert_eq!(cfg.write_keys.len(), 2, "the file's list");
        assert_eq!(cfg.roll_interval, Duration::from_secs(300), "the default");
        // A repeated flag replaces the file's list.
        let c = cli(&["--config", path, "--write-key", "c=z"]).unwrap();
        let cfg = c.serve.resolve().unwrap();
        assert_eq!(cfg.write_keys.keys().collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (text, says) in [
            ("roll-byts = \"1MiB\"\n", "key `roll-byts` is not an option"),
            ("config = \"other.toml\"\n", "key `config` is not an option"),
            (
                "roll-bytes = \"lots\"\n",
                "key `roll-bytes` has a bad value",
            ),
            ("listen = \"nowhere\"\n", "`nowhere` is not an address"),
            ("format = \"csv\"\n", "use `ndjson` or `parquet`"),
            ("listen = [\"a\", \"b\"]\n", "key `listen` takes one value"),
            ("[mqtt]\nurl = \"x\"\n", "key `mqtt` must be a string"),
            ("roll-bytes = ", "is not valid TOML"),
        ] {
            let (_dir, path) = toml(text);
            let path = path.as_str();
            let e = cli(&["--config", path]).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        // A bad value of the server's is refused by `compact` too, which has no such option.
        let (_dir, path) = toml("listen = \"nowhere\"\n");
        let e = cli(&["compact", "--config", &path])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `listen` has a bad value"), "{e}");
        let e = cli(&["--config", "/nonexistent/c.toml"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read config file /nonexistent/c.toml"),
            "{e}"
        );
    }

    #[test]
    fn compact_and_import_read_the_same_file() {
        let (_dir, path) = toml(
            "data-dir = \"/srv/t\"\nstorage = \"s3://b/p\"\nformat = \"parquet\"\nlisten = \"0.0.0.0:1\"\nroll-bytes = \"2MiB\"\n",
        );
        let path = path.as_str();
        // --config after the subcommand, or before it.
        for args in [
            vec!["compact", "--config", path],
            vec!["--config", path, "compact"],
        ] {
            let Some(Sub::Compact(a)) = cli(&args).unwrap().command else {
                panic!("not compact: {args:?}");
            };
            let store = a.store.resolve_store().unwrap();
            assert_eq!(store.data_dir, PathBuf::from("/srv/t"), "{args:?}");
            assert_eq!(store.storage, "s3://b/p");
            assert_eq!(store.format, Format::Parquet);
        }
        let Some(Sub::Import(a)) = cli(&["import", "--config", path, "f.ndjson"])
            .unwrap()
            .command
        else {
            panic!("not import");
        };
        assert_eq!(a.store.data_dir, PathBuf::from("/srv/t"));
        assert_eq!(a.roll_bytes, "2MiB", "import's own --roll-bytes");
        // A flag still beats the file.
        let Some(Sub::Compact(a)) = cli(&["compact", "--config", path, "--data-dir", "/x"])
            .unwrap()
            .command
        else {
            panic!("not compact");
        };
        assert_eq!(a.store.data_dir, PathBuf::from("/x"));
    }

    #[test]
    fn sizes_show_in_their_largest_exact_unit() {
        for text in ["32KiB", "500KiB", "128MiB", "4GiB", "1000"] {
            assert_eq!(text.parse::<ByteSize>().unwrap().to_string(), text);
        }
        assert_eq!(ByteSize(1536 * 1024).to_string(), "1536KiB");
    }

    #[test]
    fn toml_keys_for_browsers_and_mqtt() {
        let (_dir, path) = toml(
            r#"
write-key = ["k1=web"]
allowed-origin = ["k1=https://shop.example.com"]
mqtt = "mqtt://broker:1884"
mqtt-topic = ["devices/+/events=devices"]
mqtt-username = "u"
mqtt-password = "p"
mqtt-share-group = "g"
"#,
        );
        let path = path.as_str();
        let cfg = cli(&["--config", path]).unwrap().serve.resolve().unwrap();
        assert!(cfg.allowed_origins["k1"].contains("https://shop.example.com"));
        let m = cfg.mqtt.unwrap();
        assert_eq!((m.host.as_str(), m.port), ("broker", 1884));
        assert_eq!(m.credentials, Some(("u".into(), "p".into())));
        assert_eq!(
            m.subscriptions(),
            vec!["$share/g/devices/+/events".to_string()]
        );
        // Topics without a broker is a mistake worth saying.
        let e = cli(&["--mqtt-topic", "a=b"])
            .unwrap()
            .serve
            .resolve()
            .unwrap_err();
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
