//! The distributed mode: HTTP front-ends and object writers on many machines,
//! around NATS JetStream, exactly once to object storage.
//!
//! # What lives where
//!
//! Everything shared lives in the NATS cluster and the object store; no role
//! keeps anything on its disk that another role needs.
//!
//! * One stream per partition, `<prefix>-p<N>` on subject `<prefix>.p.<N>`. A
//!   stream is one replicated log with its own leader, so partitions spread the
//!   load over the cluster's nodes.
//! * KV `<prefix>-meta`: the partition count and the dedupe secret, each written
//!   once, by whichever role starts first (create-if-absent).
//! * KV `<prefix>-answers`: `Idempotency-Key` answers, so a retry that reaches
//!   another front-end gets the same answer.
//! * KV `<prefix>-parts`: per partition, its committed sequence, its recorded cut
//!   and its owner. Every change is a compare-and-set on the entry's revision:
//!   this is the fence.
//! * KV `<prefix>-leases` and `<prefix>-writers`: who holds a partition and who is
//!   alive. A holder renews its entry (compare-and-set) every quarter lease; an
//!   entry whose revision has not moved for a lease, as seen by another writer's
//!   own clock, is stale and may be taken over (compare-and-set again).
//! * In the object store, beside the data: `_keys/p<N>/…keys`, the dedupe keys of
//!   each committed cut (see [`keyfile`]).
//!
//! # Exactly once
//!
//! **Front-end.** An event is routed to partition `hash(source, messageId) mod N`
//! (the keyed hash of the dedupe index, with the shared secret), so every copy of
//! one event lands in the same partition. A request's events of one partition
//! travel in one message (see [`encode_events`]) with `Nats-Msg-Id` = a hash of
//! their keys: JetStream drops a message published again within its duplicate
//! window (a retry of the same request after a lost ack). The front-end answers
//! 200 only after JetStream acknowledged every message of the request, which
//! with R3 means a quorum of nodes stored it (and, with `sync_interval: always`,
//! synced it).
//!
//! **Writer.** A partition's state `S = (committed C, cut K, owner)` lives in one
//! KV entry. Its owner reads messages after `C`, dedupes them against the keys of
//! committed cuts (within the window) and against the cut being built, and
//! buffers the rest per hour directory. To roll, it
//!
//! 1. records the cut `K = [C+1, L]` in `S` (compare-and-set);
//! 2. uploads the cut's objects, named from `K` (see [`object_name`]), each
//!    *only if absent* (`PutMode::Create`, `If-None-Match: *` on S3), then the
//!    cut's key file the same way;
//! 3. sets `C = L`, `K = none` (compare-and-set), then lets JetStream drop the
//!    messages up to `L`.
//!
//! **Invariant:** every message at or below `C` is stored in exactly one
//! object of a committed cut, or is a duplicate of an event stored so. Cuts are
//! contiguous (`K` starts at `C+1`) and recorded in one linear history (every
//! change is a compare-and-set), so every message belongs to exactly one cut.
//! A cut's content is a function of its range and of the key files of the cuts
//! before it. So whoever finishes a recorded cut (its recorder, or the next
//! owner after a crash or a takeover, which finishes `K` before anything else)
//! produces the same objects under the same names, and create-if-absent keeps
//! the first copy of each: an object is never stored twice, never overwritten.
//!
//! **Fencing.** A new owner first writes `S` with its name (compare-and-set on
//! the revision it read), which changes the revision. A paused old owner that
//! wakes up fails its next compare-and-set, so it can neither record a new cut
//! nor move `C`; at most it uploads objects of the cut already recorded, which
//! are the same objects under the same names. Leases only decide who tries;
//! correctness rests on the revisions alone, so clock skew and long pauses
//! cannot break it.
//!
//! **Dedupe over the window without shared disks.** A key file is uploaded
//! before `C` moves past its cut, so every committed cut has one. A writer taking
//! a partition over loads the key files of that partition newer than the window,
//! and has exactly the keys the old owner had.
//!
//! **Why not JetStream consumer acks.** A durable consumer's ack is not fenced: a
//! paused writer could ack messages another writer is about to need. The
//! committed sequence in KV, moved only by compare-and-set, is the acknowledgement;
//! writers read through ordered (ack-less) consumers from `C+1`, and purge the
//! stream below `C+1` once a cut is committed.

pub mod config;
pub mod frontend;
pub mod keyfile;
mod partition;
pub mod writer;

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;

pub use config::{ClusterArgs, ClusterConfig};
pub use partition::recorded_cuts;

use crate::log::EventRecord;
use crate::state::{KeyDeriver, MessageKey};
use crate::storage::format::Format;

/// JetStream's duplicate window on each partition stream.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A connection to the deployment's streams and buckets.
pub struct Cluster {
    /// The NATS client.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// Settings.
    pub cfg: ClusterConfig,
    /// Partitions (as stored in the meta bucket).
    pub partitions: u32,
    /// The shared dedupe key deriver.
    pub keys: KeyDeriver,
    /// `Idempotency-Key` answers.
    pub answers: kv::Store,
    /// Partition states (committed sequence, cut, owner).
    pub parts: kv::Store,
    /// Partition leases.
    pub leases: kv::Store,
    /// Live writers.
    pub writers: kv::Store,
}

impl Cluster {
    /// Connects, creating the deployment's streams and buckets if absent. Retries
    /// until the broker answers (logging why), so roles can start before it.
    pub async fn connect(cfg: ClusterConfig, dedupe_window: Duration) -> anyhow::Result<Self> {
        let mut delay = Duration::from_millis(200);
        loop {
            match Self::try_connect(&cfg, dedupe_window).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), servers = ?cfg.servers, "cannot reach the broker yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn try_connect(cfg: &ClusterConfig, dedupe_window: Duration) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(3))
            .connect(cfg.servers.as_slice())
            .await
            .context("cannot connect to NATS")?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.timeout);
        let bucket = |name: &str, max_age: Duration| kv::Config {
            bucket: format!("{}-{name}", cfg.prefix),
            history: 1,
            max_age,
            num_replicas: cfg.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let meta = kv_bucket(&js, bucket("meta", Duration::ZERO)).await?;
        let partitions = settle_partitions(&meta, cfg.partitions).await?;
        let keys = settle_secret(&meta).await?;
        let answers = kv_bucket(&js, bucket("answers", dedupe_window)).await?;
        let parts = kv_bucket(&js, bucket("parts", Duration::ZERO)).await?;
        let leases = kv_bucket(&js, bucket("leases", Duration::ZERO)).await?;
        let writers = kv_bucket(&js, bucket("writers", Duration::ZERO)).await?;
        let cluster = Self {
            client,
            js,
            cfg: cfg.clone(),
            partitions,
            keys,
            answers,
            parts,
            leases,
            writers,
        };
        for p in 0..partitions {
            cluster.stream(p).await?;
        }
        Ok(cluster)
    }

    /// The stream of partition `p`, created if absent.
    pub async fn stream(&self, p: u32) -> anyhow::Result<stream::Stream> {
        let config = stream::Config {
            name: self.stream_name(p),
            subjects: vec![self.subject(p)],
            num_replicas: self.cfg.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::New,
            max_bytes: self.cfg.max_bytes.map_or(-1, |b| b as i64),
            ..Default::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .with_context(|| format!("cannot open stream {}", self.stream_name(p)))
    }

    /// Stream name of partition `p`.
    pub fn stream_name(&self, p: u32) -> String {
        format!("{}-p{p}", self.cfg.prefix)
    }

    /// Subject of partition `p`.
    pub fn subject(&self, p: u32) -> String {
        format!("{}.p.{p}", self.cfg.prefix)
    }

    /// The partition of an event's dedupe key.
    pub fn partition_of(&self, key: &MessageKey) -> u32 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&key[8..]);
        (u64::from_le_bytes(head) % u64::from(self.partitions)) as u32
    }

    /// True while the client is connected.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

async fn kv_bucket(js: &jetstream::Context, config: kv::Config) -> anyhow::Result<kv::Store> {
    let name = config.bucket.clone();
    match js.get_key_value(&name).await {
        Ok(store) => Ok(store),
        Err(_) => match js.create_key_value(config).await {
            Ok(store) => Ok(store),
            // Another role created it meanwhile.
            Err(create) => js
                .get_key_value(&name)
                .await
                .with_context(|| format!("cannot create KV bucket {name}: {create}")),
        },
    }
}

/// The deployment's partition count: the first role to start stores its own.
async fn settle_partitions(meta: &kv::Store, wanted: u32) -> anyhow::Result<u32> {
    let _ = meta
        .create("partitions", Bytes::from(wanted.to_string()))
        .await;
    let stored = meta
        .get("partitions")
        .await
        .context("cannot read the partition count")?
        .context("the partition count is missing from the meta bucket")?;
    let n: u32 = std::str::from_utf8(&stored)
        .ok()
        .and_then(|t| t.parse().ok())
        .context("the stored partition count is not a number")?;
    if n != wanted {
        tracing::warn!(
            stored = n,
            wanted,
            "--partitions differs from the deployment's; using the deployment's"
        );
    }
    Ok(n)
}

/// The deployment's dedupe secret: the first role to start draws it.
async fn settle_secret(meta: &kv::Store) -> anyhow::Result<KeyDeriver> {
    let mut fresh = [0u8; 16];
    getrandom::fill(&mut fresh).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let _ = meta
        .create("dedupe-secret", Bytes::copy_from_slice(&fresh))
        .await;
    let stored = meta
        .get("dedupe-secret")
        .await
        .context("cannot read the dedupe secret")?
        .context("the dedupe secret is missing from the meta bucket")?;
    if stored.len() != 16 {
        anyhow::bail!("the stored dedupe secret is not 16 bytes");
    }
    let half = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    Ok(KeyDeriver::new((half(&stored[..8]), half(&stored[8..]))))
}

/// Most bytes of events in one partition message (JetStream's default
/// `max_payload` is 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A partition message's body: `[u8 2]`, then per event `[u32 length][i64
/// receivedAt ms][u16 len][source][u16 len][messageId][event JSON]`
/// (little-endian). One message carries a request's events of one partition, so
/// JetStream stores (and syncs) once per partition per request, not per event.
/// Binary, not headers: ids may hold any character.
pub fn encode_events<'a>(events: impl IntoIterator<Item = &'a EventRecord>) -> Bytes {
    let mut out = vec![2u8];
    for e in events {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&e.received_at_ms.to_le_bytes());
        for s in [&e.source, &e.message_id] {
            let n = s.len().min(u16::MAX as usize);
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..n]);
        }
        out.extend_from_slice(&e.json);
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    Bytes::from(out)
}

/// The inverse of [`encode_events`]; `None` if the body is not one.
pub fn decode_events(b: &[u8]) -> Option<Vec<EventRecord>> {
    let (&version, mut rest) = b.split_first()?;
    if version != 2 {
        return None;
    }
    let mut events = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        events.push(decode_one(rest.get(4..4 + len)?)?);
        rest = &rest[4 + len..];
    }
    Some(events)
}

fn decode_one(b: &[u8]) -> Option<EventRecord> {
    let received_at_ms = i64::from_le_bytes(b.get(..8)?.try_into().ok()?);
    let mut rest = &b[8..];
    let mut strings = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        strings.push(std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_string());
        rest = &rest[2 + len..];
    }
    let message_id = strings.pop()?;
    let source = strings.pop()?;
    Some(EventRecord {
        received_at_ms,
        source,
        message_id,
        json: rest.to_vec(),
    })
}

/// Hex of a key.
pub fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The object of a cut `[first, last]` of partition `p` in one hour directory:
/// `<dir><first>-<last>-p<p>e<epoch>.<ext>` (20-digit sequences). Derived from
/// what it holds, so whoever finishes a recorded cut picks the same name.
pub fn object_name(dir: &str, p: u32, epoch: u64, first: u64, last: u64, format: Format) -> String {
    format!(
        "{dir}{first:020}-{last:020}-p{p}e{epoch}.{}",
        format.extension()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_message_body() {
        let e = EventRecord {
            received_at_ms: 1_700_000_000_123,
            source: "ios".into(),
            message_id: "id\r\nwith: odd \u{e9} chars".into(),
            json: br#"{"a":1}"#.to_vec(),
        };
        let f = EventRecord {
            message_id: "other".into(),
            ..e.clone()
        };
        let body = encode_events([&e, &f]);
        assert_eq!(decode_events(&body), Some(vec![e, f]));
        assert_eq!(decode_events(&body[..body.len() - 1]), None);
        assert_eq!(decode_events(b""), None);
        assert_eq!(decode_events(&[1, 0, 0]), None);
        assert_eq!(decode_events(&[2, 3, 0, 0, 0, 1, 2, 3]), None);
        assert_eq!(decode_events(&[2]), Some(vec![]));
    }
}
