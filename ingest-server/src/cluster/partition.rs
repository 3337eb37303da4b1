//! One partition's writer: claim the partition's state, rebuild its dedupe
//! index, finish a recorded cut, then follow the stream and cut objects (the
//! protocol and its proof are in [`crate::cluster`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::kv;
use bytes::Bytes;
use foldhash::HashSet;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Cluster, decode_events, keyfile, object_name};
use crate::log::EventRecord;
use crate::metrics::Metrics;
use crate::state::MessageKey;
use crate::storage::format::{Encoder, Format};
use crate::storage::{ObjectSink, partition_dir};

/// What a partition writer needs.
pub struct Ctx {
    /// The deployment.
    pub cluster: Arc<Cluster>,
    /// Object storage.
    pub sink: Arc<ObjectSink>,
    /// Roll and dedupe settings.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// This writer's name.
    pub owner: String,
    /// Messages not yet committed, per partition (summed into the lag metric).
    pub lag: std::sync::Mutex<HashMap<u32, u64>>,
}

/// When to cut, and the dedupe window.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Object format.
    pub format: Format,
    /// Cut when one object of the cut reaches this size.
    pub roll_bytes: u64,
    /// Cut when the cut's objects hold this much memory together.
    pub max_buffer_bytes: u64,
    /// Cut at this age.
    pub roll_interval: Duration,
    /// Dedupe window.
    pub dedupe_window: Duration,
}

/// Why a partition writer returned.
#[derive(Debug)]
pub enum Ended {
    /// Asked to stop; everything read was committed.
    Stopped,
}

/// A partition's shared state, one KV entry changed only by compare-and-set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct PartState {
    owner: String,
    /// Bumped when the stream was recreated (sequences restart).
    epoch: u64,
    /// Every message at or below it is in a committed cut.
    committed: u64,
    /// A cut recorded but maybe not finished.
    cut: Option<Recorded>,
}

/// A recorded cut: its range and the format its objects are written in (so a
/// writer configured with another `--format` finishes it under the same names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Recorded {
    first: u64,
    last: u64,
    format: String,
}

/// The open cut: messages since the committed sequence.
struct Cut {
    format: Format,
    range: Option<(u64, u64)>,
    objects: BTreeMap<String, Box<dyn Encoder>>,
    keys: HashSet<MessageKey>,
    /// Keys of the events kept, with their receivedAt.
    entries: Vec<(MessageKey, i64)>,
    opened: Option<Instant>,
    duplicates: u64,
}

impl Cut {
    fn new(format: Format) -> Self {
        Self {
            format,
            range: None,
            objects: BTreeMap::new(),
            keys: HashSet::default(),
            entries: Vec::new(),
            opened: None,
            duplicates: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// Takes in the message at `seq`. The cut's content depends only on the
    /// messages and on `index`, so whoever replays a recorded range builds the same.
    fn push(&mut self, seq: u64, payload: &[u8], ctx: &Ctx, index: &HashMap<MessageKey, i64>) {
        let first = self.range.map_or(seq, |r| r.0);
        self.range = Some((first, seq));
        self.opened.get_or_insert_with(Instant::now);
        let Some(events) = decode_events(payload) else {
            tracing::error!(
                seq,
                "skipping a message that is not a Tributary event batch"
            );
            return;
        };
        for ev in events {
            self.push_event(seq, ev, ctx, index);
        }
    }

    fn push_event(
        &mut self,
        seq: u64,
        ev: EventRecord,
        ctx: &Ctx,
        index: &HashMap<MessageKey, i64>,
    ) {
        let key = ctx.cluster.keys.key(&ev.source, &ev.message_id);
        if index.contains_key(&key) || !self.keys.insert(key) {
            self.duplicates += 1;
            return;
        }
        let dir = partition_dir(&ev.source, ev.received_at_ms);
        let format = self.format;
        let encoder = self.objects.entry(dir).or_insert_with(|| format.encoder());
        match encoder.push_json(&ev.json) {
            Ok(()) => self.entries.push((key, ev.received_at_ms)),
            Err(e) => {
                tracing::error!(error = %e, seq, "dropping an event the format cannot encode");
                self.keys.remove(&key);
            }
        }
    }

    fn due(&self, s: &Settings) -> bool {
        if self.opened.is_some_and(|t| t.elapsed() >= s.roll_interval) {
            return true;
        }
        let largest = self.objects.values().map(|e| e.approx_bytes()).max();
        let memory: u64 = self.objects.values().map(|e| e.memory_bytes()).sum();
        largest.is_some_and(|b| b >= s.roll_bytes) || memory >= s.max_buffer_bytes
    }
}

/// Runs partition `p` until `stop` turns true (then commits what it read) or
/// an error (a lost compare-and-set: another writer took it; or the broker).
pub async fn run(ctx: Arc<Ctx>, p: u32, mut stop: watch::Receiver<bool>) -> anyhow::Result<Ended> {
    let mut w = Writer::claim(ctx.clone(), p).await?;
    w.load_index().await?;
    if let Some(r) = w.state.cut.clone() {
        tracing::info!(
            partition = p,
            r.first,
            r.last,
            "finishing a cut recorded before a crash or takeover"
        );
        let format = Format::from_path(&format!("x.{}", r.format)).with_context(|| {
            format!(
                "the recorded cut of partition {p} names an unknown format `{}`",
                r.format
            )
        })?;
        let cut = w.read_range(r.first, r.last, format).await?;
        w.finish(cut, true).await?;
    }
    let format = ctx.settings.format;
    let mut cut = Cut::new(format);
    let mut messages = w.follow(w.state.committed + 1).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_lag = Instant::now();
    loop {
        tokio::select! {
            m = messages.next() => match m {
                Some(Ok(msg)) => {
                    let seq = msg.info().map_err(|e| anyhow!("message without stream info: {e}"))?.stream_sequence;
                    let expected = cut.range.map_or(w.state.committed + 1, |r| r.1 + 1);
                    if seq < expected {
                        continue;
                    }
                    cut.push(seq, &msg.payload, &ctx, &w.index);
                    if cut.due(&ctx.settings) {
                        w.finish(std::mem::replace(&mut cut, Cut::new(format)), false).await?;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(partition = p, error = %e, "reading the stream failed; resuming");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let next = cut.range.map_or(w.state.committed + 1, |r| r.1 + 1);
                    messages = w.follow(next).await?;
                }
                None => {
                    let next = cut.range.map_or(w.state.committed + 1, |r| r.1 + 1);
                    messages = w.follow(next).await?;
                }
            },
            _ = tick.tick() => {
                if !cut.is_empty() && cut.due(&ctx.settings) {
                    w.finish(std::mem::replace(&mut cut, Cut::new(format)), false).await?;
                }
                if last_lag.elapsed() >= Duration::from_secs(1) {
                    last_lag = Instant::now();
                    w.report_lag().await;
                    w.prune();
                }
            }
            _ = stop.changed() => {
                if !cut.is_empty() {
                    w.finish(cut, false).await?;
                }
                return Ok(Ended::Stopped);
            }
        }
    }
}

struct Writer {
    ctx: Arc<Ctx>,
    p: u32,
    key: String,
    state: PartState,
    revision: u64,
    stream: async_nats::jetstream::stream::Stream,
    index: HashMap<MessageKey, i64>,
}

impl Writer {
    /// Writes this writer's name into the partition's state: from here on, a
    /// previous owner's compare-and-sets fail.
    async fn claim(ctx: Arc<Ctx>, p: u32) -> anyhow::Result<Self> {
        let key = format!("p{p}");
        let parts = &ctx.cluster.parts;
        let (mut state, mut revision) = loop {
            match parts.entry(&key).await? {
                Some(e) if e.operation == kv::Operation::Put => {
                    let mut s: PartState = serde_json::from_slice(&e.value)
                        .with_context(|| format!("the state of partition {p} is unreadable"))?;
                    s.owner = ctx.owner.clone();
                    if let Ok(rev) = parts.update(&key, to_bytes(&s), e.revision).await {
                        break (s, rev);
                    }
                }
                _ => {
                    let s = PartState {
                        owner: ctx.owner.clone(),
                        ..Default::default()
                    };
                    if let Ok(rev) = parts.create(&key, to_bytes(&s)).await {
                        break (s, rev);
                    }
                }
            }
            // Someone else changed it meanwhile: read again.
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut stream = ctx.cluster.stream(p).await?;
        let info = stream.info().await?;
        if info.state.last_sequence < state.committed {
            // The stream was recreated: its sequences start again, so names get a new epoch.
            tracing::warn!(
                partition = p,
                committed = state.committed,
                last = info.state.last_sequence,
                "the stream is behind the committed sequence: it was recreated; starting a new epoch"
            );
            state.epoch += 1;
            state.committed = 0;
            state.cut = None;
            revision = parts
                .update(&key, to_bytes(&state), revision)
                .await
                .context("lost the partition while starting a new epoch")?;
        } else if info.state.messages > 0 && info.state.first_sequence > state.committed + 1 {
            tracing::error!(
                partition = p,
                committed = state.committed,
                first = info.state.first_sequence,
                "messages after the committed sequence are gone from the stream (removed by a limit?)"
            );
        }
        tracing::info!(
            partition = p,
            epoch = state.epoch,
            committed = state.committed,
            "partition claimed"
        );
        Ok(Self {
            ctx,
            p,
            key,
            state,
            revision,
            stream,
            index: HashMap::new(),
        })
    }

    fn horizon_ms(&self) -> i64 {
        let window = self.ctx.settings.dedupe_window.as_millis() as i64;
        chrono::Utc::now().timestamp_millis() - window - (window / 10).min(60_000)
    }

    async fn load_index(&mut self) -> anyhow::Result<()> {
        let loaded = keyfile::load(&self.ctx.sink, self.p, self.horizon_ms()).await?;
        self.index = loaded.keys;
        for path in loaded.expired {
            if let Err(e) = crate::storage::Sink::delete(self.ctx.sink.as_ref(), &path).await {
                tracing::warn!(%path, error = %e, "cannot delete an expired key file");
            }
        }
        Ok(())
    }

    fn prune(&mut self) {
        let horizon = self.horizon_ms();
        self.index.retain(|_, at| *at >= horizon);
    }

    /// An ordered (ack-less) consumer of the partition from `start`.
    async fn follow(&self, start: u64) -> anyhow::Result<pull::Ordered> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.ctx.cluster.subject(self.p),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start.max(1),
                },
                ..Default::default()
            })
            .await
            .context("cannot create a consumer")?;
        consumer
            .messages()
            .await
            .context("cannot read the partition stream")
    }

    /// Rebuilds the cut `[first, last]` from the stream.
    async fn read_range(&self, first: u64, last: u64, format: Format) -> anyhow::Result<Cut> {
        let mut cut = Cut::new(format);
        let mut messages = self.follow(first).await?;
        while cut.range.is_none_or(|r| r.1 < last) {
            let msg = messages
                .next()
                .await
                .context("the stream ended inside a recorded cut")?
                .map_err(|e| anyhow!("reading a recorded cut failed: {e}"))?;
            let seq = msg
                .info()
                .map_err(|e| anyhow!("message without stream info: {e}"))?
                .stream_sequence;
            if seq > last {
                break;
            }
            if seq >= cut.range.map_or(first, |r| r.1 + 1) {
                cut.push(seq, &msg.payload, &self.ctx, &self.index);
            }
        }
        // A recorded cut keeps its recorded range even if its last messages are gone.
        cut.range = Some((first, last));
        Ok(cut)
    }

    async fn save(&mut self, state: PartState) -> anyhow::Result<()> {
        self.revision = self
            .ctx
            .cluster
            .parts
            .update(&self.key, to_bytes(&state), self.revision)
            .await
            .map_err(|e| {
                anyhow!(
                    "partition {} was taken over or the broker failed ({e}); stopping it",
                    self.p
                )
            })?;
        self.state = state;
        Ok(())
    }

    /// Records the cut (unless `recorded`), uploads its objects and key file,
    /// then commits it: the steps of [`crate::cluster`].
    async fn finish(&mut self, cut: Cut, recorded: bool) -> anyhow::Result<()> {
        let Some((first, last)) = cut.range else {
            return Ok(());
        };
        let started = Instant::now();
        if !recorded {
            let mut s = self.state.clone();
            s.cut = Some(Recorded {
                first,
                last,
                format: cut.format.extension().to_string(),
            });
            self.save(s).await?;
        }
        let format = cut.format;
        let (mut objects, mut bytes_total) = (0u64, 0u64);
        let events = cut.entries.len() as u64;
        for (dir, encoder) in cut.objects {
            let bytes = match encoder.finish() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, %dir, "encoding an object failed; its events are dropped");
                    continue;
                }
            };
            let name = object_name(&dir, self.p, self.state.epoch, first, last, format);
            bytes_total += bytes.len() as u64;
            let micros = started.elapsed().as_micros() as u64;
            self.ctx.metrics.object(bytes.len() as u64, 0, micros);
            objects += 1;
            self.put_new(&name, Bytes::from(bytes)).await;
        }
        // Keys are kept for the window from when they were stored (not from
        // their receivedAt, which an import may set long ago).
        let now = chrono::Utc::now().timestamp_millis();
        let entries: Vec<(MessageKey, i64)> = cut.entries.iter().map(|(k, _)| (*k, now)).collect();
        if !entries.is_empty() {
            let name = keyfile::name(self.p, self.state.epoch, first, last);
            self.put_new(&name, Bytes::from(keyfile::encode(&entries)))
                .await;
        }
        let mut s = self.state.clone();
        s.committed = last;
        s.cut = None;
        self.save(s).await?;
        self.index.extend(entries);
        let m = &self.ctx.metrics;
        m.events_written.inc_by(events);
        m.events_duplicate.inc_by(cut.duplicates);
        tracing::debug!(
            partition = self.p,
            first,
            last,
            objects,
            bytes = bytes_total,
            events,
            "cut committed"
        );
        // The messages are in committed objects now; JetStream may drop them.
        if let Err(e) = self.stream.purge().sequence(last + 1).await {
            tracing::warn!(partition = self.p, error = %e, "purging committed messages failed");
        }
        Ok(())
    }

    /// Uploads an object if absent, retrying storage failures until they pass
    /// (the coordinator aborts this task if the partition's lease is lost).
    async fn put_new(&self, name: &str, bytes: Bytes) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.ctx.sink.put_new(name, bytes.clone()).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::info!(%name, "object already stored by an earlier owner of this cut");
                    return;
                }
                Err(e) => {
                    self.ctx.metrics.sink_errors.inc();
                    tracing::warn!(%name, error = %e, "upload failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn report_lag(&mut self) {
        if let Ok(info) = self.stream.info().await {
            let lag = info
                .state
                .last_sequence
                .saturating_sub(self.state.committed);
            crate::log::lock(&self.ctx.lag).insert(self.p, lag);
        }
    }
}

/// The name tags (`<first>-<last>-p<N>e<epoch>.`, see [`object_name`]) of the
/// cuts writers recorded but have not committed: their objects may still be
/// uploaded, so `compact` leaves them alone.
pub async fn recorded_cuts(cluster: &Cluster) -> anyhow::Result<Vec<String>> {
    let mut tags = Vec::new();
    for p in 0..cluster.partitions {
        let Some(entry) = cluster.parts.entry(format!("p{p}")).await? else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let state: PartState = serde_json::from_slice(&entry.value)
            .with_context(|| format!("the state of partition {p} is unreadable"))?;
        if let Some(r) = state.cut {
            tags.push(format!(
                "{:020}-{:020}-p{p}e{}.",
                r.first, r.last, state.epoch
            ));
        }
    }
    Ok(tags)
}

fn to_bytes(s: &PartState) -> Bytes {
    Bytes::from(serde_json::to_vec(s).unwrap_or_default())
}
