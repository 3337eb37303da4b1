//! The front-end's side of the broker: publish a request's events to their
//! partitions and wait for JetStream's acknowledgements; keep `Idempotency-Key`
//! answers in a KV bucket every front-end reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use std::collections::BTreeMap;

use super::{Cluster, MAX_MESSAGE_BYTES, encode_events, hex};
use crate::log::{Answers, Broker, EventRecord, IdempotencyRecord, LogError, Record, StoredAnswer};
use crate::state::MessageKey;

/// `Broker` over NATS JetStream.
pub struct NatsBroker {
    cluster: Arc<Cluster>,
    rt: Handle,
    closed: AtomicBool,
    /// False after a failed publish until one succeeds.
    ok: Arc<AtomicBool>,
}

impl NatsBroker {
    /// A broker publishing through `cluster`; appends run on `rt`.
    pub fn new(cluster: Arc<Cluster>, rt: Handle) -> Self {
        Self {
            cluster,
            rt,
            closed: AtomicBool::new(false),
            ok: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Broker for NatsBroker {
    fn append(
        &self,
        records: Vec<Record>,
    ) -> Result<oneshot::Receiver<Result<u64, String>>, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        let (cluster, ok) = (self.cluster.clone(), self.ok.clone());
        self.rt.spawn(async move {
            let result = publish(&cluster, records).await;
            ok.store(result.is_ok(), Ordering::Release);
            let _ = tx.send(result.map(|()| 0));
        });
        Ok(rx)
    }

    fn lag_bytes(&self) -> u64 {
        // Bounded by each stream's `--broker-max-bytes` instead: a full stream
        // refuses publishes, and the front-end answers 503.
        0
    }

    fn healthy(&self) -> bool {
        self.cluster.connected() && self.ok.load(Ordering::Acquire)
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// Publishes the events, one message per partition (split at
/// [`MAX_MESSAGE_BYTES`]), then stores the idempotency answers; `Ok` once
/// JetStream acknowledged all of them.
pub async fn publish(cluster: &Cluster, records: Vec<Record>) -> Result<(), String> {
    let mut by_partition: BTreeMap<u32, Vec<(MessageKey, EventRecord)>> = BTreeMap::new();
    let mut answers = Vec::new();
    for record in records {
        match record {
            Record::Event(e) => {
                let key = cluster.keys.key(&e.source, &e.message_id);
                by_partition
                    .entry(cluster.partition_of(&key))
                    .or_default()
                    .push((key, e));
            }
            Record::Idempotency(i) => answers.push(i),
        }
    }
    let mut acks = Vec::new();
    for (p, events) in by_partition {
        for chunk in chunks(&events) {
            let mut id = twox_hash::XxHash3_128::new();
            for (key, _) in chunk {
                id.write(key);
            }
            let msg = Publish::build()
                .message_id(hex(&id.finish_128().to_le_bytes()))
                .payload(encode_events(chunk.iter().map(|(_, e)| e)));
            let ack = cluster
                .js
                .send_publish(cluster.subject(p), msg)
                .await
                .map_err(|e| format!("the broker did not take the events ({e})"))?;
            acks.push(ack);
        }
    }
    // All published before the first wait: the acks arrive in parallel.
    for ack in acks {
        ack.await
            .map_err(|e| format!("the broker did not confirm the events ({e})"))?;
    }
    for a in answers {
        cluster
            .answers
            .put(answer_key(cluster, &a.key), encode_answer(&a))
            .await
            .map_err(|e| format!("the broker did not store the idempotency answer ({e})"))?;
    }
    Ok(())
}

/// Splits a partition's events into runs of at most [`MAX_MESSAGE_BYTES`].
fn chunks(events: &[(MessageKey, EventRecord)]) -> Vec<&[(MessageKey, EventRecord)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, e)) in events.iter().enumerate() {
        let size = e.json.len() + e.source.len() + e.message_id.len() + 16;
        if i > start && bytes + size > MAX_MESSAGE_BYTES {
            out.push(&events[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

/// The KV key of a scoped `Idempotency-Key`: its keyed hash (KV keys allow few
/// characters; the key itself may hold any visible ASCII).
fn answer_key(cluster: &Cluster, scoped: &str) -> String {
    format!("a{}", hex(&cluster.keys.key("\u{0}idempotency", scoped)))
}

/// `[u16 status][u8 has fingerprint][16 fingerprint][i64 seen ms][body]`.
fn encode_answer(a: &IdempotencyRecord) -> Bytes {
    let mut out = Vec::with_capacity(27 + a.body.len());
    out.extend_from_slice(&a.status.to_le_bytes());
    out.push(u8::from(a.fingerprint.is_some()));
    out.extend_from_slice(&a.fingerprint.unwrap_or_default());
    out.extend_from_slice(&a.seen_at_ms.to_le_bytes());
    out.extend_from_slice(&a.body);
    Bytes::from(out)
}

fn decode_answer(b: &[u8]) -> Option<(i64, StoredAnswer)> {
    if b.len() < 27 {
        return None;
    }
    let status = u16::from_le_bytes([b[0], b[1]]);
    let fingerprint = (b[2] == 1).then(|| b[3..19].try_into().ok()).flatten();
    let seen = i64::from_le_bytes(b[19..27].try_into().ok()?);
    Some((
        seen,
        StoredAnswer {
            status,
            body: b[27..].to_vec(),
            fingerprint,
        },
    ))
}

/// `Answers` in the deployment's KV bucket.
pub struct KvAnswers(pub Arc<Cluster>);

impl Answers for KvAnswers {
    fn lookup<'a>(
        &'a self,
        key: &'a str,
        since_ms: i64,
    ) -> BoxFuture<'a, Result<Option<StoredAnswer>, String>> {
        Box::pin(async move {
            let found = self
                .0
                .answers
                .get(answer_key(&self.0, key))
                .await
                .map_err(|e| format!("the broker's answer store is unavailable: {e}"))?;
            Ok(found
                .as_deref()
                .and_then(decode_answer)
                .filter(|(seen, _)| *seen >= since_ms)
                .map(|(_, a)| a))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip() {
        let a = IdempotencyRecord {
            key: "k".into(),
            seen_at_ms: 42,
            status: 200,
            fingerprint: Some([7; 16]),
            body: b"{}".to_vec(),
        };
        let (seen, back) = decode_answer(&encode_answer(&a)).unwrap();
        assert_eq!(seen, 42);
        assert_eq!(back.fingerprint, Some([7; 16]));
        assert_eq!(back.body, b"{}");
        assert!(decode_answer(b"short").is_none());
    }
}
