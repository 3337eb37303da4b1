//! `ingest-server import`: bulk-loads NDJSON files (plain or `.gz`) into object storage
//! through the writer's dedupe index, so running it again changes nothing.
//!
//! # What happens to each line
//!
//! Each non-blank line must be one JSON object (an event as stored by the server, or a
//! Segment event). Missing fields are filled so the event fits the store:
//! `source` from `--source`, `receivedAt` with the import time, and `messageId` with
//! `import-<xxh3-128 of the line>` (so an id-less line gets the same id on every run).
//! Events are partitioned like the writer's (`source=…/dt=…/hour=…/` by `receivedAt`).
//! Lines that are not JSON objects, or whose `receivedAt` is not RFC 3339, are skipped
//! and reported with `file:line`; the command then exits non-zero after importing the
//! rest (re-run it once the lines are fixed: what was imported is not imported twice).
//!
//! # Exactly once
//!
//! An event whose `(source, messageId)` is in the dedupe index of `<data-dir>/state.sqlite`
//! (or earlier in the same run) is skipped. Each object goes through the writer's
//! protocol (`crate::state`): record an intent, upload `i-<hash>-<n>.<ext>` (hash of
//! the object's dedupe keys), then commit the keys and drop the intent in one
//! transaction. A crash leaves at most an intent; the next `import` (or the server's
//! start-up) settles it: if the object exists its keys are committed, else the intent is
//! dropped and the re-run writes those events again. Two imports cannot run at once on
//! one data directory (`import.lock`); the second is refused with an error.
//!
//! `import` may run while the server runs (SQLite WAL). An event that is at that
//! moment both in the import and in the writer's open (uncommitted) object passes
//! both lookups; whichever commits second finds its key taken and removes its copy
//! again (`crate::writer::rewrite`), so it is still stored once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

use crate::cluster::frontend::publish;
use crate::cluster::{Cluster, ClusterArgs, ClusterConfig};
use crate::config::{StoreArgs, parse_size};
use crate::log::{EventRecord, Record};
use crate::state::{Intent, KeyDeriver, MessageKey, ObjectCommit, StateDb};
use crate::storage::format::{Encoder, Format};
use crate::storage::{ObjectSink, Sink, partition_dir};

/// Most partitions buffered at once; past it the largest buffer is written out.
const MAX_OPEN_PARTITIONS: usize = 64;
/// Bad lines reported one by one before only counting.
const MAX_REPORTED: usize = 10;

/// Options of `ingest-server import`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Storage options (same as the server's); `--format` chooses the objects' format.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Source name for events without a `source` field.
    #[arg(long, value_name = "NAME", default_value = "import")]
    pub source: String,
    /// Roll an imported object at this size.
    #[arg(long, value_name = "SIZE", default_value = "128MiB")]
    pub roll_bytes: String,
    /// The deployment to publish to instead of writing objects (distributed mode).
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// NDJSON files to load (`.gz` files are decompressed).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Events written to new objects.
    pub imported: u64,
    /// Events skipped because their messageId was already stored (or repeated).
    pub duplicates: u64,
    /// Lines skipped as invalid.
    pub invalid: u64,
    /// Objects written.
    pub objects: u64,
    /// Intents of an earlier interrupted import settled at start.
    pub settled: u64,
    /// Events removed again from imported objects because the server (or an
    /// earlier import) committed them first (counted in `duplicates` too).
    pub raced: u64,
}

/// Runs `ingest-server import` and prints a summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(cluster) = args.cluster.resolve()? {
        crate::config::check_source_name(&args.source)?;
        return run_distributed(&args, cluster).await;
    }
    let config = args.store.resolve_store()?;
    crate::config::check_source_name(&args.source)?;
    let roll_bytes = parse_size(&args.roll_bytes).context("--roll-bytes")?;
    if roll_bytes < 1024 * 1024 {
        bail!("--roll-bytes {roll_bytes} is too small; use at least 1MiB");
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let _lock = crate::dirlock::hold(&config.data_dir, "import")?;
    let sink = ObjectSink::open(&config)?;
    let db = StateDb::open(&config.data_dir).with_context(|| {
        format!(
            "cannot open the state database in {}",
            config.data_dir.display()
        )
    })?;
    let keys = db.keys().context("cannot read the dedupe secret")?;
    let mut importer = Importer {
        sink: &sink,
        keys,
        db,
        format: config.format,
        roll_bytes,
        default_source: args.source.clone(),
        open: HashMap::new(),
        seen: HashSet::new(),
        report: ImportReport::default(),
    };
    importer.settle_intents().await?;
    for file in &args.files {
        importer.load_file(file).await?;
    }
    importer.flush_all().await?;
    let r = &importer.report;
    println!(
        "import: {} events imported into {} objects, {} duplicates skipped ({} of them stored by the server meanwhile), {} invalid lines, {} interrupted objects settled",
        r.imported, r.objects, r.duplicates, r.raced, r.invalid, r.settled
    );
    if r.invalid > 0 {
        bail!(
            "{} lines were not imported (listed above); fix them and re-run: imported events are not imported twice",
            r.invalid
        );
    }
    Ok(())
}

/// One partition's open object.
struct Open {
    encoder: Box<dyn Encoder>,
    keys: Vec<MessageKey>,
}

struct Importer<'a> {
    sink: &'a ObjectSink,
    keys: KeyDeriver,
    db: StateDb,
    format: Format,
    roll_bytes: u64,
    default_source: String,
    open: HashMap<String, Open>,
    /// Keys buffered in open objects (committed ones are in the database).
    seen: HashSet<MessageKey>,
    report: ImportReport,
}

impl Importer<'_> {
    /// Settles intents of import objects left by an interrupted run.
    async fn settle_intents(&mut self) -> anyhow::Result<()> {
        let intents = self
            .db
            .pending_intents()
            .context("cannot read pending intents")?;
        for intent in intents {
            if !is_import_object(&intent.path) {
                continue; // the writer's: it settles them itself at start
            }
            match self.sink.get(&intent.path).await? {
                Some(bytes) => {
                    let format = Format::from_path(&intent.path)
                        .with_context(|| format!("unknown object format: {}", intent.path))?;
                    let events = format.decode(&bytes)?;
                    let (keys, _) =
                        crate::writer::keys_of(&self.keys, &events).map_err(anyhow::Error::msg)?;
                    // An interrupted upload may not have finished its fsyncs.
                    self.sink.make_durable(&intent.path).await?;
                    let taken = self.db.commit_object(&ObjectCommit {
                        path: &intent.path,
                        keys: &keys,
                        seen_at_ms: now_ms(),
                    })?;
                    self.report.raced +=
                        crate::writer::rewrite::apply(self.sink, &self.db, &intent.path, &taken)
                            .await?;
                }
                None => self.db.abandon_intent(&intent.path)?,
            }
            self.report.settled += 1;
        }
        self.report.raced +=
            crate::writer::rewrite::settle(self.sink, &self.db, is_import_object).await?;
        Ok(())
    }

    async fn load_file(&mut self, file: &std::path::Path) -> anyhow::Result<()> {
        let reader = open_lines(file)?;
        for (index, line) in reader.split(b'\n').enumerate() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match self.prepare(&line) {
                Ok((dir, key, event)) => self.add(dir, key, &event).await?,
                Err(reason) => {
                    self.report.invalid += 1;
                    if self.report.invalid <= MAX_REPORTED as u64 {
                        eprintln!("import: {}:{}: {reason}", file.display(), index + 1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses and completes one line: (partition dir, dedupe key, event).
    fn prepare(&self, line: &[u8]) -> Result<(String, MessageKey, Value), String> {
        let (source, id, received_ms, event) = complete_line(line, &self.default_source)?;
        let dir = partition_dir(&source, received_ms);
        Ok((dir, self.keys.key(&source, &id), event))
    }

    async fn add(&mut self, dir: String, key: MessageKey, event: &Value) -> anyhow::Result<()> {
        if self.seen.contains(&key) || self.db.contains(&key)? {
            self.report.duplicates += 1;
            return Ok(());
        }
        if !self.open.contains_key(&dir) && self.open.len() >= MAX_OPEN_PARTITIONS {
            self.flush_largest().await?;
        }
        let format = self.format;
        let open = self.open.entry(dir.clone()).or_insert_with(|| Open {
            encoder: format.encoder(),
            keys: Vec::new(),
        });
        open.encoder.push(event)?;
        open.keys.push(key);
        self.seen.insert(key);
        if open.encoder.approx_bytes() >= self.roll_bytes {
            self.flush(&dir).await?;
        }
        Ok(())
    }

    async fn flush_largest(&mut self) -> anyhow::Result<()> {
        let largest = self
            .open
            .iter()
            .max_by_key(|(_, o)| o.encoder.approx_bytes())
            .map(|(d, _)| d.clone());
        match largest {
            Some(dir) => self.flush(&dir).await,
            None => Ok(()),
        }
    }

    async fn flush_all(&mut self) -> anyhow::Result<()> {
        let dirs: Vec<String> = self.open.keys().cloned().collect();
        for dir in dirs {
            self.flush(&dir).await?;
        }
        Ok(())
    }

    /// Writes one partition's object: intent, upload, commit (see the module docs).
    async fn flush(&mut self, dir: &str) -> anyhow::Result<()> {
        let Some(open) = self.open.remove(dir) else {
            return Ok(());
        };
        if open.keys.is_empty() {
            return Ok(());
        }
        let mut hasher = twox_hash::XxHash3_128::new();
        for key in &open.keys {
            hasher.write(key);
        }
        let path = format!(
            "{dir}i-{:032x}-{}.{}",
            hasher.finish_128(),
            open.keys.len(),
            self.format.extension()
        );
        let bytes = open.encoder.finish()?;
        let intent = Intent {
            path: path.clone(),
            first: 0,
            last: 0,
        };
        self.db
            .record_intent(&intent, now_ms())
            .with_context(|| format!("cannot record the intent for {path}"))?;
        self.sink
            .put(&path, bytes.into())
            .await
            .with_context(|| format!("cannot upload {path}; re-run import to retry"))?;
        let taken = self
            .db
            .commit_object(&ObjectCommit {
                path: &path,
                keys: &open.keys,
                seen_at_ms: now_ms(),
            })
            .with_context(|| format!("cannot commit {path}; re-run import to settle it"))?;
        for key in &open.keys {
            self.seen.remove(key);
        }
        let raced = crate::writer::rewrite::apply(self.sink, &self.db, &path, &taken)
            .await
            .with_context(|| format!("cannot rewrite {path}; re-run import to finish it"))?;
        self.report.raced += raced;
        self.report.duplicates += raced;
        self.report.imported += open.keys.len() as u64 - raced;
        self.report.objects += 1;
        Ok(())
    }
}

/// A buffered reader of an NDJSON file, decompressed if it ends in `.gz`.
fn open_lines(file: &std::path::Path) -> anyhow::Result<BufReader<Box<dyn Read>>> {
    let handle =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let reader: Box<dyn Read> = if file.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(handle))
    } else {
        Box::new(handle)
    };
    Ok(BufReader::with_capacity(1 << 20, reader))
}

/// Parses one line and fills what the store needs: (source, messageId,
/// receivedAt ms, the completed event).
fn complete_line(
    line: &[u8],
    default_source: &str,
) -> Result<(String, String, i64, Value), String> {
    let mut event: Map<String, Value> = match serde_json::from_slice(line) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let source = match event.get("source") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => default_source.to_string(),
        Some(_) => return Err("`source` is not a string".into()),
    };
    event.insert("source".into(), Value::String(source.clone()));
    let id = match event.get("messageId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => format!(
            "import-{:032x}",
            twox_hash::XxHash3_128::oneshot(line.trim_ascii())
        ),
        Some(_) => return Err("`messageId` is not a non-empty string".into()),
    };
    event.insert("messageId".into(), Value::String(id.clone()));
    let received_ms = match event.get("receivedAt") {
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("`receivedAt` `{s}` is not RFC 3339: {e}"))?
            .timestamp_millis(),
        None | Some(Value::Null) => {
            let now = chrono::Utc::now();
            event.insert(
                "receivedAt".into(),
                Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
            now.timestamp_millis()
        }
        Some(_) => return Err("`receivedAt` is not a string".into()),
    };
    Ok((source, id, received_ms, Value::Object(event)))
}

/// `import --broker`: the lines become events published to the deployment's
/// partitions, like a front-end's; the writers dedupe them (a re-run within the
/// dedupe window stores nothing twice) and write the objects.
async fn run_distributed(args: &Args, cluster: ClusterConfig) -> anyhow::Result<()> {
    let window = humantime::parse_duration("7d").unwrap_or_default();
    let cluster = Cluster::connect(cluster, window).await?;
    let (mut published, mut invalid) = (0u64, 0u64);
    for file in &args.files {
        let mut batch = Vec::new();
        for (index, line) in open_lines(file)?.split(b'\n').enumerate() {
            let line = line.with_context(|| format!("cannot read {}", file.display()))?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match complete_line(&line, &args.source) {
                Ok((source, message_id, received_at_ms, event)) => {
                    batch.push(Record::Event(EventRecord {
                        received_at_ms,
                        source,
                        message_id,
                        json: serde_json::to_vec(&event)?,
                    }));
                }
                Err(reason) => {
                    invalid += 1;
                    if invalid <= MAX_REPORTED as u64 {
                        eprintln!("import: {}:{}: {reason}", file.display(), index + 1);
                    }
                }
            }
            if batch.len() >= 1000 {
                published += batch.len() as u64;
                publish(&cluster, std::mem::take(&mut batch))
                    .await
                    .map_err(anyhow::Error::msg)?;
            }
        }
        published += batch.len() as u64;
        publish(&cluster, batch).await.map_err(anyhow::Error::msg)?;
    }
    println!(
        "import: {published} events published to the broker (the writers drop those already stored), {invalid} invalid lines"
    );
    if invalid > 0 {
        bail!(
            "{invalid} lines were not imported (listed above); fix them and re-run: imported events are not stored twice"
        );
    }
    Ok(())
}

/// Objects `import` writes are named `i-<hash>-<count>.<ext>`.
fn is_import_object(path: &str) -> bool {
    path.rsplit('/').next().unwrap_or(path).starts_with("i-")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
