//! `ingest-server compact`: merges the small objects of each partition into
//! target-sized ones, atomically, losing and duplicating nothing.
//!
//! # What is touched
//!
//! Only data objects (`*.ndjson.gz`, `*.parquet`) smaller than `--target-bytes` whose
//! last modification is older than `--min-age` (default 1h), and never an object the
//! writer has not committed yet: the writer records a write-ahead intent in
//! `<data-dir>/state.sqlite` *before* it uploads, so compaction lists the objects first
//! and reads the pending intents second, and skips every object named by one (an
//! object visible in the listing had its intent recorded before the listing; if the
//! intent is still pending afterwards, the writer may still re-commit or delete that
//! object). Committed objects are never touched by the writer again. Without a
//! `state.sqlite` (e.g. S3 compacted from another machine) only the age rule protects
//! the writer's objects: then keep `--min-age` well above `--roll-interval` plus any
//! restart time. Objects of different formats are never mixed; the output keeps the
//! format. Dedupe keys are unaffected: compaction moves committed events, it never
//! adds or removes one, so the writer still drops replays of them.
//!
//! # Crash safety
//!
//! For each group of inputs merged into one output, in this order:
//! 1. write an **intent** `<root>/_tributary_compaction/<id>.json` naming the output and
//!    the inputs (a `_`-prefixed folder, which Hive, Athena, Spark and DuckDB's hive
//!    globs ignore);
//! 2. write the output object (a single atomic PUT, or a multipart upload that becomes
//!    visible only when completed), then read it back and check its event count;
//! 3. delete the inputs;
//! 4. delete the intent.
//!
//! Each step is durable before the next, power loss included: S3 writes and deletes are;
//! on the local store every `put` `fsync`s the file and its directories (see
//! `crate::storage`), and the input deletes are made durable
//! ([`ObjectSink::sync_deletes`]) before the intent goes, so the intent never vanishes
//! while an input could come back.
//!
//! Every run first resolves leftover intents: if the output exists it is complete (object
//! PUTs are atomic), so it is made durable and the inputs are deleted (roll forward); if it does not, nothing was
//! changed and the intent is dropped (roll back). A crash at any point therefore leaves,
//! after the next run, each event in exactly one object. Between steps 2 and 3 a reader
//! can see an event twice; that window is as short as the deletes.
//!
//! The output name is `c-<first>-<last>-<hash>.<ext>` (see `crate::storage`): the log
//! range covered by the inputs and a hash of the sorted input names, so a rerun of the
//! same group writes the same object and never a second copy. Only one `compact` may
//! run at a time against one storage root.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ClusterArgs};
use crate::config::{StoreArgs, parse_size};
use crate::state::{STATE_FILE, StateDb};
use crate::storage::ObjectSink;
use crate::storage::format::Format;

/// Folder (under the storage root) that holds compaction intents.
pub const INTENT_DIR: &str = "_tributary_compaction";

/// Arguments of `ingest-server compact`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where the objects are (`--storage`, `--s3-endpoint`, `--format` is ignored:
    /// each object keeps its own format).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only compact partitions under this path, relative to the storage root,
    /// e.g. `source=ios/dt=2026-11-24` [default: every partition].
    #[arg(long, value_name = "PREFIX")]
    pub partition: Option<String>,
    /// Size to aim for: small objects are merged until a group reaches it.
    #[arg(long, value_name = "SIZE", default_value = "128MiB")]
    pub target_bytes: String,
    /// Leave objects younger than this alone (the writer's recent output).
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub min_age: String,
    /// Print what would be merged, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The distributed deployment whose writers made the objects: objects of a
    /// cut a writer recorded but has not committed are left alone.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// What a compaction run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CompactReport {
    /// Leftover intents from an interrupted run that were rolled forward.
    pub rolled_forward: usize,
    /// Leftover intents whose output was never written (nothing to undo).
    pub rolled_back: usize,
    /// Objects merged away.
    pub inputs: usize,
    /// Objects written.
    pub outputs: usize,
    /// Events copied.
    pub events: usize,
}

/// A write-ahead record of one merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Intent {
    output: String,
    inputs: Vec<String>,
    events: usize,
}

/// Runs `compact` from the command line and prints a summary.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store_config = args.store.resolve_store()?;
    let target = parse_size(&args.target_bytes).context("--target-bytes")?;
    if target < 1024 * 1024 {
        bail!("--target-bytes {target} is too small; use at least 1MiB (e.g. 128MiB)");
    }
    let min_age = humantime::parse_duration(&args.min_age).map_err(|e| {
        anyhow::anyhow!(
            "--min-age `{}` is not a duration ({e}); use e.g. `1h`",
            args.min_age
        )
    })?;
    // Two compactions of one store would merge the same inputs twice.
    let _lock = match store_config.data_dir.exists() {
        true => Some(crate::dirlock::hold(&store_config.data_dir, "compact")?),
        false => None,
    };
    let sink = ObjectSink::open(&store_config)?;
    let state_file = store_config.data_dir.join(STATE_FILE);
    let state = if state_file.exists() {
        Some(StateDb::open(&store_config.data_dir).with_context(|| {
            format!(
                "cannot open {} to read pending intents",
                state_file.display()
            )
        })?)
    } else {
        eprintln!(
            "compact: no {}; relying on --min-age {} alone to avoid the writer's uncommitted objects",
            state_file.display(),
            args.min_age
        );
        None
    };
    let options = Options {
        partition: args.partition.clone(),
        target_bytes: target,
        min_age,
        dry_run: args.dry_run,
    };
    let cluster = match args.cluster.resolve()? {
        Some(c) => Some(Cluster::connect(c, Duration::from_secs(7 * 86_400)).await?),
        None => None,
    };
    let report = compact(&sink, state.as_ref(), cluster.as_ref(), &options).await?;
    println!(
        "compact: merged {} objects into {} ({} events); intents rolled forward {}, rolled back {}",
        report.inputs, report.outputs, report.events, report.rolled_forward, report.rolled_back
    );
    Ok(())
}

/// Compaction settings (the parsed [`Args`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// Partition prefix relative to the root, or all.
    pub partition: Option<String>,
    /// Target object size in bytes.
    pub target_bytes: u64,
    /// Minimum age of an input object.
    pub min_age: Duration,
    /// Only report.
    pub dry_run: bool,
}

/// Resolves leftover intents, then merges the small objects of every partition.
///
/// `state` is the writer's state database, used to skip objects it has not
/// committed; `cluster`, the distributed deployment, likewise (its recorded cuts).
pub async fn compact(
    sink: &ObjectSink,
    state: Option<&StateDb>,
    cluster: Option<&Cluster>,
    options: &Options,
) -> anyhow::Result<CompactReport> {
    let store = sink.store.as_ref();
    let root = &Path::from(sink.root.as_str());
    let mut report = CompactReport::default();
    if !options.dry_run {
        recover(sink, root, &mut report).await?;
    }
    let scope = match &options.partition {
        Some(p) => child_path(root, p),
        None => root.clone(),
    };
    let objects: Vec<ObjectMeta> = store
        .list(Some(&scope))
        .try_collect()
        .await
        .with_context(|| format!("cannot list objects under `{scope}`"))?;
    // Read after listing: see the module docs for why this order is safe.
    // Objects with a pending rewrite (see `crate::writer::rewrite`) are about to change too.
    let uncommitted: std::collections::HashSet<String> = match state {
        Some(db) => db
            .pending_intents()
            .context("cannot read the writer's pending intents")?
            .into_iter()
            .map(|i| i.path)
            .chain(
                db.pending_rewrites()
                    .context("cannot read pending rewrites")?
                    .into_iter()
                    .map(|(path, _)| path),
            )
            .map(|path| full_path(root, &path))
            .collect(),
        None => Default::default(),
    };
    // Also read after listing: a cut is recorded before its objects are uploaded.
    let recorded = match cluster {
        Some(c) => crate::cluster::recorded_cuts(c)
            .await
            .context("cannot read the writers' recorded cuts from the broker")?,
        None => Vec::new(),
    };
    let now = chrono::Utc::now();
    let mut partitions: BTreeMap<(String, &'static str), Vec<ObjectMeta>> = BTreeMap::new();
    for meta in objects {
        let name = meta.location.as_ref();
        if name.contains(INTENT_DIR)
            || uncommitted.contains(name)
            || recorded.iter().any(|tag| name.contains(tag.as_str()))
        {
            continue;
        }
        let Some(format) = Format::from_path(name) else {
            continue;
        };
        let age = now
            .signed_duration_since(meta.last_modified)
            .to_std()
            .unwrap_or_default();
        if meta.size >= options.target_bytes || age < options.min_age {
            continue;
        }
        let dir = name.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        partitions
            .entry((dir, format.extension()))
            .or_default()
            .push(meta);
    }
    for ((dir, _), mut metas) in partitions {
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        for group in plan_groups(metas, options.target_bytes) {
            if options.dry_run {
                println!("compact: would merge {} objects in {dir}", group.len());
                continue;
            }
            let events = merge(sink, root, &dir, &group).await?;
            report.inputs += group.len();
            report.outputs += 1;
            report.events += events;
        }
    }
    Ok(report)
}

/// Splits a partition's small objects (in name order) into groups of at least two whose
/// sizes add up to about `target` bytes.
fn plan_groups(metas: Vec<ObjectMeta>, target: u64) -> Vec<Vec<ObjectMeta>> {
    let mut groups = Vec::new();
    let mut current: Vec<ObjectMeta> = Vec::new();
    let mut size = 0;
    for meta in metas {
        if !current.is_empty() && size + meta.size > target {
            groups.push(std::mem::take(&mut current));
            size = 0;
        }
        size += meta.size;
        current.push(meta);
    }
    groups.push(current);
    groups.retain(|g| g.len() >= 2);
    groups
}

fn child_path(root: &Path, relative: &str) -> Path {
    relative
        .split('/')
        .filter(|s| !s.is_empty())
        .fold(root.clone(), |p, part| p.join(part))
}

/// A path relative to the storage root, as a full store path.
fn full_path(root: &Path, relative: &str) -> String {
    if root.as_ref().is_empty() {
        relative.to_string()
    } else {
        format!("{root}/{relative}")
    }
}

fn intent_path(root: &Path, output: &str) -> Path {
    let id = output.rsplit('/').next().unwrap_or(output);
    root.clone()
        .join(INTENT_DIR)
        .join(format!("{id}.json").as_str())
}

/// Log range `(first, last)` in a writer (`<first>-<last>.ext`) or compacted
/// (`c-<first>-<last>-<hash>.ext`) object name; `None` for other objects (imports).
fn log_range(name: &str) -> Option<(u64, u64)> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let stem = base.split('.').next().unwrap_or("");
    let stem = stem.strip_prefix("c-").unwrap_or(stem);
    let mut parts = stem.split('-');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    Some((first, last))
}

/// Name of the merged object: `c-<first>-<last>-<hash of the input names>.<ext>`, so a
/// rerun of the same group is idempotent.
fn output_name(dir: &str, inputs: &[ObjectMeta], format: Format) -> String {
    let mut hasher = twox_hash::XxHash3_128::new();
    let (mut first, mut last) = (u64::MAX, 0);
    for meta in inputs {
        hasher.write(meta.location.as_ref().as_bytes());
        hasher.write(b"\n");
        if let Some((f, l)) = log_range(meta.location.as_ref()) {
            first = first.min(f);
            last = last.max(l);
        }
    }
    if first == u64::MAX {
        first = 0;
    }
    let name = format!(
        "c-{first:020}-{last:020}-{:032x}.{}",
        hasher.finish_128(),
        format.extension()
    );
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// Merges one group: intent, output, verify, delete inputs, clear intent.
async fn merge(
    sink: &ObjectSink,
    root: &Path,
    dir: &str,
    group: &[ObjectMeta],
) -> anyhow::Result<usize> {
    let store = sink.store.as_ref();
    let format = Format::from_path(group[0].location.as_ref())
        .context("compaction input has no known format")?;
    let mut encoder = format.encoder();
    for meta in group {
        // One input decoded at a time: memory is the output plus the largest input.
        let bytes = get_bytes(store, &meta.location).await?;
        let events = format
            .decode(&bytes)
            .with_context(|| format!("cannot read {}; it was left in place", meta.location))?;
        for event in &events {
            encoder.push(event)?;
        }
    }
    let events = encoder.len();
    let output = output_name(dir, group, format);
    let intent = Intent {
        output: output.clone(),
        inputs: group.iter().map(|m| m.location.to_string()).collect(),
        events,
    };
    let intent_at = intent_path(root, &output);
    store
        .put(&intent_at, PutPayload::from(serde_json::to_vec(&intent)?))
        .await
        .with_context(|| format!("cannot write compaction intent {intent_at}"))?;
    let bytes = encoder.finish()?;
    put_bytes(store, &Path::from(output.as_str()), bytes).await?;
    let written = format
        .decode(&get_bytes(store, &Path::from(output.as_str())).await?)
        .with_context(|| format!("cannot read back {output}"))?;
    if written.len() != events {
        // Leave the intent and the inputs: the next run finds the output and the intent;
        // refuse to go on rather than risk losing events.
        bail!(
            "{output} holds {} events, expected {events}; inputs kept, intent {intent_at} kept",
            written.len()
        );
    }
    finish(sink, &intent_at, &intent).await?;
    Ok(events)
}

/// Roll forward: the output is complete and durable, so the inputs go, durably, and then
/// the intent.
async fn finish(sink: &ObjectSink, intent_at: &Path, intent: &Intent) -> anyhow::Result<()> {
    let store = sink.store.as_ref();
    let inputs: Vec<Path> = intent
        .inputs
        .iter()
        .map(|i| Path::from(i.as_str()))
        .collect();
    for input in &inputs {
        delete_if_present(store, input).await?;
    }
    sink.sync_deletes(&inputs)
        .await
        .context("cannot make the deletes of compacted inputs durable; intent kept")?;
    delete_if_present(store, intent_at).await
}

/// Resolves the intents an interrupted run left behind.
async fn recover(sink: &ObjectSink, root: &Path, report: &mut CompactReport) -> anyhow::Result<()> {
    let store = sink.store.as_ref();
    let dir = root.clone().join(INTENT_DIR);
    let intents: Vec<ObjectMeta> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .with_context(|| format!("cannot list compaction intents under {dir}"))?;
    for meta in intents {
        let bytes = get_bytes(store, &meta.location).await?;
        let intent: Intent = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "compaction intent {} is not valid JSON; inspect and delete it",
                meta.location
            )
        })?;
        let output = Path::from(intent.output.as_str());
        match store.head(&output).await {
            Ok(_) => {
                // The interrupted run may have crashed before the output's fsyncs.
                sink.make_durable_full(&output)
                    .await
                    .with_context(|| format!("cannot make {output} durable; intent kept"))?;
                finish(sink, &meta.location, &intent).await?;
                report.rolled_forward += 1;
            }
            Err(object_store::Error::NotFound { .. }) => {
                delete_if_present(store, &meta.location).await?;
                report.rolled_back += 1;
            }
            Err(e) => return Err(e).context(format!("cannot check {}", intent.output)),
        }
    }
    Ok(())
}

async fn get_bytes(store: &dyn ObjectStore, path: &Path) -> anyhow::Result<bytes::Bytes> {
    let result = store
        .get(path)
        .await
        .with_context(|| format!("cannot read {path}"))?;
    result
        .bytes()
        .await
        .with_context(|| format!("cannot read {path}"))
}

/// Writes an object in one PUT, or as a multipart upload when it is large (like the
/// writer's sink, but on a full store path).
async fn put_bytes(store: &dyn ObjectStore, path: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
    if bytes.len() <= crate::storage::MULTIPART_THRESHOLD {
        store
            .put(path, PutPayload::from(bytes))
            .await
            .with_context(|| format!("cannot write {path}"))?;
        return Ok(());
    }
    let upload = store
        .put_multipart(path)
        .await
        .with_context(|| format!("cannot start a multipart upload of {path}"))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
    writer.put(bytes::Bytes::from(bytes));
    writer
        .finish()
        .await
        .with_context(|| format!("cannot complete the multipart upload of {path}"))?;
    Ok(())
}

async fn delete_if_present(store: &dyn ObjectStore, path: &Path) -> anyhow::Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e).context(format!("cannot delete {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(name),
            last_modified: chrono::Utc::now(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn groups_reach_target_and_skip_singletons() {
        let metas = vec![meta("a", 40), meta("b", 40), meta("c", 40), meta("d", 90)];
        let groups = plan_groups(metas, 100);
        let names: Vec<Vec<String>> = groups
            .iter()
            .map(|g| g.iter().map(|m| m.location.to_string()).collect())
            .collect();
        // a+b (80), then c alone would exceed with d: c is a singleton... c+d = 130 > 100.
        assert_eq!(names, vec![vec!["a".to_string(), "b".to_string()]]);
    }

    #[test]
    fn output_name_is_stable_and_input_dependent() {
        let g1 = vec![meta("p/a.ndjson.gz", 1), meta("p/b.ndjson.gz", 1)];
        let g2 = vec![meta("p/a.ndjson.gz", 1), meta("p/c.ndjson.gz", 1)];
        let n1 = output_name("p", &g1, Format::Ndjson);
        assert_eq!(n1, output_name("p", &g1, Format::Ndjson));
        assert_ne!(n1, output_name("p", &g2, Format::Ndjson));
        assert!(
            n1.starts_with("p/c-00000000000000000000-00000000000000000000-"),
            "{n1}"
        );
        assert!(n1.ends_with(".ndjson.gz"), "{n1}");
        let g3 = vec![
            meta("p/00000000000000000005-00000000000000000009.parquet", 1),
            meta(
                "p/c-00000000000000000001-00000000000000000003-ab.parquet",
                1,
            ),
            meta("p/i-ff-3.parquet", 1),
        ];
        let n3 = output_name("p", &g3, Format::Parquet);
        assert!(
            n3.starts_with("p/c-00000000000000000001-00000000000000000009-"),
            "{n3}"
        );
    }
}
