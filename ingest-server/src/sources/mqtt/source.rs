//! The subscriber: a persistent MQTT session with manual acks.
//!
//! Two tasks. The *connection* task polls rumqttc's event loop (which also
//! reconnects), subscribes after every connect, and hands each PUBLISH, tagged
//! with the connection it arrived on, to the *processor*. The processor takes
//! everything that is waiting (up to [`MAX_GROUP`] messages), turns each
//! message into events with the front-end's validation, writes dead letters,
//! appends all events in one durable append (one fsync for the group), and only
//! then acks the messages, in arrival order. Nothing is acked that is not
//! durable: a failed append or dead-letter write is retried, the messages stay
//! unacked meanwhile, and a message of an earlier connection is never acked on
//! a later one (its packet id may name another message by then: the broker
//! resends it instead, and dedupe keeps one copy).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, SubscribeReasonCode};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::config::MqttConfig;
use super::payload;
use crate::http::rawjson;
use crate::http::validate::{self, Endpoint, Limits};
use crate::log::{Broker, Record};
use crate::metrics::Metrics;
use crate::storage::Sink;

/// Messages made durable together (one append, one fsync).
pub const MAX_GROUP: usize = 500;
/// Largest MQTT packet the broker may send us (see `spawn`).
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// How long the broker keeps the session (and its queued messages) while the
/// server is away: 7 days, like the default dedupe window.
pub const SESSION_EXPIRY_SECS: u32 = 7 * 24 * 60 * 60;
/// Storage prefix of MQTT dead letters (readers skip folders starting with `_`).
pub const DEAD_LETTER_PREFIX: &str = "_dead_letters/mqtt";

/// A running MQTT source.
pub struct MqttSource {
    stop_processor: watch::Sender<bool>,
    stop_connection: watch::Sender<bool>,
    processor: tokio::task::JoinHandle<()>,
    connection: tokio::task::JoinHandle<()>,
}

impl MqttSource {
    /// Stops taking messages and disconnects. The processor stops first, after
    /// acking the group it is making durable, so its PUBACKs still go out over
    /// the connection; what is left unacked the broker delivers at the next start.
    pub async fn stop(self) {
        let _ = self.stop_processor.send(true);
        let _ = self.processor.await;
        let _ = self.stop_connection.send(true);
        let _ = self.connection.await;
    }
}

/// What the source needs from the server.
pub struct Deps {
    /// The log the events go to (the same as HTTP's).
    pub log: Arc<dyn Broker>,
    /// Where dead letters go.
    pub sink: Arc<dyn Sink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The front-end's event limits.
    pub limits: Limits,
    /// Largest payload accepted (the HTTP batch limit).
    pub max_payload: usize,
}

/// Starts the source with a fixed `client_id` (the persistent session's name).
pub fn spawn(cfg: MqttConfig, client_id: String, deps: Deps) -> MqttSource {
    let mut opts = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
    // Persistent session (MQTT 5: clean start off and a session expiry): QoS 1
    // messages published while we are away are kept by the broker and
    // delivered when we come back, for up to SESSION_EXPIRY.
    opts.set_clean_start(false);
    opts.set_session_expiry_interval(Some(SESSION_EXPIRY_SECS));
    opts.set_manual_acks(true);
    opts.set_keep_alive(Duration::from_secs(30));
    // MQTT 5's Maximum Packet Size: the broker does not send us a packet over
    // it (it drops it), so no message can break the connection and come back
    // forever. Below it, a payload over `--max-batch-bytes` is a dead letter.
    let max_packet = MAX_PACKET.max(deps.max_payload + 64 * 1024);
    opts.set_max_packet_size(Some(u32::try_from(max_packet).unwrap_or(u32::MAX)));
    if let Some((user, pass)) = &cfg.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    let (client, eventloop) = AsyncClient::new(opts, 1024);
    let (stop_processor, stop_proc_rx) = watch::channel(false);
    let (stop_connection, stop_conn_rx) = watch::channel(false);
    let (msg_tx, msg_rx) = mpsc::unbounded_channel();
    let connection = Arc::new(AtomicU64::new(0));
    let cfg = Arc::new(cfg);
    let conn_task = tokio::spawn(connection_loop(
        eventloop,
        client.clone(),
        cfg.clone(),
        connection.clone(),
        deps.metrics.clone(),
        msg_tx,
        stop_conn_rx,
    ));
    let proc_task = tokio::spawn(processor(
        client,
        cfg,
        connection,
        deps,
        msg_rx,
        stop_proc_rx,
    ));
    MqttSource {
        stop_processor,
        stop_connection,
        processor: proc_task,
        connection: conn_task,
    }
}

async fn connection_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    cfg: Arc<MqttConfig>,
    connection: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    tx: mpsc::UnboundedSender<(u64, Publish)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    // One SUBACK per filter (each is subscribed on its own).
    let wanted = cfg.topics.len();
    let mut granted = 0;
    loop {
        let polled = tokio::select! {
            _ = stop.changed() => break,
            p = eventloop.poll() => p,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let n = connection.fetch_add(1, Ordering::AcqRel) + 1;
                metrics.mqtt_connected.set(1);
                granted = 0;
                backoff = Duration::from_millis(200);
                tracing::info!(
                    connection = n,
                    session_present = ack.session_present,
                    "MQTT source connected"
                );
                // Subscribing again on a kept session is harmless and covers a
                // broker that lost it (or a changed topic list).
                for filter in cfg.subscriptions() {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(filter, error = %e, "MQTT subscribe could not be queued");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics.mqtt_received.inc_by(1);
                if tx.send((connection.load(Ordering::Acquire), p)).is_err() {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if let Some(code) = ack
                    .return_codes
                    .iter()
                    .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                {
                    tracing::error!(
                        ?code,
                        "the MQTT broker refused a subscription; check --mqtt-topic, \
                         --mqtt-share-group and the broker's ACLs"
                    );
                } else {
                    granted += 1;
                    if granted == wanted {
                        metrics.mqtt_subscribed.set(1);
                        tracing::info!("MQTT subscriptions granted");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_connected.set(0);
                metrics.mqtt_subscribed.set(0);
                tracing::warn!(error = %e, host = %cfg.host, port = cfg.port, "MQTT connection lost; reconnecting");
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    metrics.mqtt_connected.set(0);
    metrics.mqtt_subscribed.set(0);
    // DISCONNECT keeps the session (it has an expiry): what the broker
    // still holds is delivered at the next start.
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

/// One received message, prepared.
struct Prepared {
    connection: u64,
    publish: Publish,
    records: Vec<Record>,
    dead_letter: Option<(String, Vec<u8>)>,
}

async fn processor(
    client: AsyncClient,
    cfg: Arc<MqttConfig>,
    connection: Arc<AtomicU64>,
    deps: Deps,
    mut rx: mpsc::UnboundedReceiver<(u64, Publish)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut group: Vec<(u64, Publish)> = Vec::new();
    loop {
        group.clear();
        let first = tokio::select! {
            _ = stop.changed() => None,
            m = rx.recv() => m,
        };
        let Some(first) = first else { break };
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let prepared: Vec<Prepared> = group
            .drain(..)
            .map(|(conn, p)| prepare(&cfg, &deps, conn, p))
            .collect();
        if !make_durable(&deps, &prepared, &mut stop).await {
            // Stopping with messages not durable: they stay unacked and the
            // broker delivers them again at the next start.
            break;
        }
        let events: usize = prepared.iter().map(|p| p.records.len()).sum();
        deps.metrics.events_accepted.inc_by(events as u64);
        let current = connection.load(Ordering::Acquire);
        for p in &prepared {
            if p.connection != current {
                // Received on a connection that has since dropped: the broker
                // resends it on this one; dedupe keeps one copy.
                continue;
            }
            match client.ack(&p.publish).await {
                Ok(()) => {
                    deps.metrics.mqtt_acked.inc_by(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT ack could not be queued; the broker will redeliver")
                }
            }
        }
    }
}

/// Appends the group's events and writes its dead letters, retrying until both
/// are durable. `false` if asked to stop first.
async fn make_durable(deps: &Deps, group: &[Prepared], stop: &mut watch::Receiver<bool>) -> bool {
    let mut delay = Duration::from_millis(100);
    let records: Vec<Record> = group.iter().flat_map(|p| p.records.clone()).collect();
    let mut letters: Vec<&(String, Vec<u8>)> = group
        .iter()
        .filter_map(|p| p.dead_letter.as_ref())
        .collect();
    let mut appended = records.is_empty();
    loop {
        if !appended {
            match deps.log.append(records.clone()) {
                Ok(rx) => match rx.await {
                    Ok(Ok(_)) => appended = true,
                    Ok(Err(e)) => tracing::warn!(error = %e, "MQTT events not durable; retrying"),
                    Err(_) => tracing::warn!("the log stopped; MQTT events not durable"),
                },
                Err(e) => tracing::warn!(error = %e, "MQTT events not appended; retrying"),
            }
        }
        let mut failed = Vec::new();
        for letter in letters.drain(..) {
            if let Err(e) = deps
                .sink
                .put(&letter.0, bytes::Bytes::from(letter.1.clone()))
                .await
            {
                tracing::warn!(path = %letter.0, error = %e, "MQTT dead letter not written; retrying");
                failed.push(letter);
            }
        }
        letters = failed;
        if appended && letters.is_empty() {
            return true;
        }
        tokio::select! {
            _ = stop.changed() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A message → its events (validated as HTTP's) and, when the payload or some
/// of its events are refused, a dead letter.
fn prepare(cfg: &MqttConfig, deps: &Deps, connection: u64, publish: Publish) -> Prepared {
    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
    let received = chrono::Utc::now();
    let mut records = Vec::new();
    let mut reasons: Vec<serde_json::Value> = Vec::new();
    let source = cfg.source_of(&topic).map(str::to_owned);
    match &source {
        None => reasons.push(json!({"reason": "no --mqtt-topic filter matches the topic"})),
        Some(_) if publish.payload.len() > deps.max_payload => reasons.push(json!({
            "reason": format!(
                "the payload is {} bytes, over the {}-byte limit (--max-batch-bytes); publish fewer events per message",
                publish.payload.len(),
                deps.max_payload
            )
        })),
        Some(source) => match events(&topic, &publish.payload, source, received, deps.limits) {
            Ok((recs, rejected)) => {
                records = recs;
                reasons.extend(rejected);
            }
            Err(reason) => reasons.push(json!({ "reason": reason })),
        },
    }
    let dead_letter = if reasons.is_empty() {
        None
    } else {
        deps.metrics.mqtt_rejected.inc_by(1);
        tracing::warn!(topic, reasons = %serde_json::Value::Array(reasons.clone()), "MQTT message refused; kept as a dead letter");
        let hash = payload::message_hash(&topic, &publish.payload, u64::MAX);
        // Named by the message, not the time: a redelivery overwrites its own
        // dead letter instead of adding another.
        let path = format!(
            "{DEAD_LETTER_PREFIX}/source={}/{hash:032x}.json",
            source.as_deref().unwrap_or("_unmatched"),
        );
        let body = json!({
            "topic": topic,
            "receivedAt": received.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "errors": reasons,
            // Text as text; anything else as base64, so no byte is lost.
            "payload": std::str::from_utf8(&publish.payload).ok(),
            "payloadBase64": std::str::from_utf8(&publish.payload)
                .is_err()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&publish.payload)),
        });
        Some((path, serde_json::to_vec_pretty(&body).unwrap_or_default()))
    };
    Prepared {
        connection,
        publish,
        records,
        dead_letter,
    }
}

type Events = (Vec<Record>, Vec<serde_json::Value>);

/// The events of a payload through the front-end's validation, and the reasons
/// of the refused ones.
fn events(
    topic: &str,
    payload_bytes: &[u8],
    source: &str,
    received: chrono::DateTime<chrono::Utc>,
    limits: Limits,
) -> Result<Events, String> {
    let body = payload::to_batch(topic, payload_bytes)?;
    let parsed = rawjson::Body::parse(&body, true).map_err(|e| e.to_string())?;
    let prepared = validate::prepare(Endpoint::Batch, &parsed, source, received, limits)
        .map_err(|e| e.to_string())?;
    let rejected = prepared
        .rejected
        .iter()
        .map(|r| json!({"index": r.index, "reason": r.reason}))
        .collect();
    Ok((
        prepared.records.into_iter().map(Record::Event).collect(),
        rejected,
    ))
}
