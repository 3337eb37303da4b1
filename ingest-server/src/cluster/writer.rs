//! `ingest-server write --broker …`: an object writer. It takes a fair share of
//! the partitions (partitions / live writers), holds each with a lease it
//! renews, and runs one partition writer per partition it holds. A partition
//! whose lease it cannot renew is dropped at once; one it holds beyond its share
//! is committed and handed back, so a new writer gets work within a lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::kv;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::partition::{self, Ctx, Ended, Settings};
use super::{Cluster, ClusterConfig, hex};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::ObjectSink;

struct Held {
    lease_revision: u64,
    renewed: Instant,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Ended>>,
}

/// Runs a writer until SIGTERM/SIGINT, then commits what it read and hands its
/// partitions back.
pub async fn run(cfg: Config, cluster_cfg: ClusterConfig) -> anyhow::Result<()> {
    let sink = Arc::new(ObjectSink::open(&cfg.store)?);
    let cluster = Arc::new(Cluster::connect(cluster_cfg, cfg.dedupe_window).await?);
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let owner = format!("w{}", hex(&random));
    let ctx = Arc::new(Ctx {
        cluster: cluster.clone(),
        sink,
        settings: Settings {
            format: cfg.store.format,
            roll_bytes: cfg.roll_bytes,
            max_buffer_bytes: cfg.max_buffer_bytes,
            roll_interval: cfg.roll_interval,
            dedupe_window: cfg.dedupe_window,
        },
        metrics: Arc::new(Metrics::default()),
        owner: owner.clone(),
        lag: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(listen = %listener.local_addr()?, %owner, partitions = cluster.partitions, "writer ready");
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ctx.clone());
    let http = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the writer's HTTP endpoint stopped");
        }
    });
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut observed = Observed::default();
    let every = (cluster.cfg.lease / 4).max(Duration::from_millis(250));
    let mut shutdown = std::pin::pin!(crate::server::shutdown_signal());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut shutdown => break,
        }
        balance(&ctx, &mut held, &mut observed).await;
        let lag: u64 = crate::log::lock(&ctx.lag)
            .iter()
            .filter(|(p, _)| held.contains_key(p))
            .map(|(_, l)| l)
            .sum();
        ctx.metrics.log_lag_records.set(lag);
    }
    tracing::info!("shutting down: committing and handing back partitions");
    for (p, h) in held {
        release(&ctx, p, h).await;
    }
    let _ = cluster.writers.delete(&owner).await;
    http.abort();
    tracing::info!("shutdown complete");
    Ok(())
}

/// One round: heartbeat, renew, drop what is lost, then take or hand back
/// partitions towards this writer's share.
async fn balance(ctx: &Arc<Ctx>, held: &mut HashMap<u32, Held>, observed: &mut Observed) {
    let cluster = &ctx.cluster;
    if let Err(e) = cluster
        .writers
        .put(&ctx.owner, Bytes::from(ctx.owner.clone()))
        .await
    {
        tracing::warn!(error = %e, "cannot announce this writer; retrying");
    }
    let mut lost = Vec::new();
    for (&p, h) in held.iter_mut() {
        if h.task.is_finished() {
            lost.push(p);
            continue;
        }
        match cluster
            .leases
            .update(
                lease_key(p),
                Bytes::from(ctx.owner.clone()),
                h.lease_revision,
            )
            .await
        {
            Ok(rev) => {
                h.lease_revision = rev;
                h.renewed = Instant::now();
            }
            // Another writer took it (or it lapsed and was deleted).
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(partition = p, error = %e, "lease lost; dropping the partition");
                lost.push(p);
            }
            // The broker is failing over: keep going while nobody could have
            // taken it yet (the compare-and-sets fence us anyway).
            Err(e) if h.renewed.elapsed() < cluster.cfg.lease / 2 => {
                tracing::warn!(partition = p, error = %e, "cannot renew the lease yet; retrying");
            }
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "lease not renewed for half a lease; dropping the partition");
                lost.push(p);
            }
        }
    }
    for p in lost {
        observed
            .cooldown
            .insert(p, Instant::now() + Duration::from_secs(1));
        if let Some(h) = held.remove(&p) {
            h.task.abort();
            if let Ok(Err(e)) = h.task.await {
                tracing::warn!(partition = p, error = %format!("{e:#}"), "partition writer stopped");
            }
            // Ours to give back only if nobody took it yet.
            let _ = cluster
                .leases
                .delete_expect_revision(lease_key(p), Some(h.lease_revision))
                .await;
        }
    }
    let live = live_writers(ctx, observed).await;
    let share = (cluster.partitions as usize).div_ceil(live);
    while held.len() > share {
        let Some(&p) = held.keys().max() else { break };
        if let Some(h) = held.remove(&p) {
            tracing::info!(partition = p, share, "handing a partition back");
            release(ctx, p, h).await;
        }
    }
    if held.len() >= share {
        return;
    }
    // Start where this writer's name points, so writers starting together try
    // different partitions first.
    let start = ctx.owner.bytes().map(u32::from).sum::<u32>() % cluster.partitions;
    for i in 0..cluster.partitions {
        let p = (start + i) % cluster.partitions;
        if held.len() >= share {
            break;
        }
        if held.contains_key(&p)
            || observed
                .cooldown
                .get(&p)
                .is_some_and(|until| Instant::now() < *until)
        {
            continue;
        }
        if let Some(rev) = try_take(ctx, p, observed).await {
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(partition::run(ctx.clone(), p, rx));
            held.insert(
                p,
                Held {
                    lease_revision: rev,
                    renewed: Instant::now(),
                    stop,
                    task,
                },
            );
        }
    }
}

/// Commits what the partition writer read, then deletes the lease.
async fn release(ctx: &Arc<Ctx>, p: u32, h: Held) {
    let _ = h.stop.send(true);
    let grace = ctx.cluster.cfg.lease;
    match tokio::time::timeout(grace, h.task).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => {
            tracing::warn!(partition = p, error = %format!("{e:#}"), "partition writer failed")
        }
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!(
            partition = p,
            "partition writer did not finish in time; its next owner finishes its cut"
        ),
    }
    let _ = ctx
        .cluster
        .leases
        .delete_expect_revision(lease_key(p), Some(h.lease_revision))
        .await;
}

/// Revisions of KV entries as this writer last saw them, and since when. An
/// entry whose revision has not moved for a lease is stale: its writer is dead
/// or paused. Measured on this writer's monotonic clock, so clock skew between
/// machines does not matter (and KV entries need no time to live).
/// Also: partitions whose writer failed, not taken again before a moment has
/// passed (a store that keeps failing is not retried in a tight loop).
#[derive(Default)]
struct Observed {
    seen: HashMap<String, (u64, Instant)>,
    cooldown: HashMap<u32, Instant>,
}

impl Observed {
    fn stale(&mut self, key: &str, revision: u64, lease: Duration) -> bool {
        let now = Instant::now();
        let seen = self.seen.entry(key.to_string()).or_insert((revision, now));
        if seen.0 != revision {
            *seen = (revision, now);
        }
        now.duration_since(seen.1) >= lease
    }
}

/// Writers whose heartbeat moved within a lease (this one included).
async fn live_writers(ctx: &Ctx, observed: &mut Observed) -> usize {
    let cluster = &ctx.cluster;
    let Ok(keys) = cluster.writers.keys().await else {
        return 1;
    };
    let keys: Vec<String> = keys
        .filter_map(|k| std::future::ready(k.ok()))
        .collect()
        .await;
    let mut live = 1;
    for key in keys {
        if key == ctx.owner {
            continue;
        }
        let Ok(Some(entry)) = cluster.writers.entry(&key).await else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if !observed.stale(&format!("w/{key}"), entry.revision, cluster.cfg.lease) {
            live += 1;
        } else if observed.stale(&format!("w/{key}"), entry.revision, cluster.cfg.lease * 10) {
            // Long dead: tidy up (only if it did not just come back).
            let _ = cluster
                .writers
                .delete_expect_revision(&key, Some(entry.revision))
                .await;
        }
    }
    live
}

/// Takes partition `p` if its lease is free, or stale (its holder stopped
/// renewing it a lease ago); `Some(revision)` if taken.
async fn try_take(ctx: &Ctx, p: u32, observed: &mut Observed) -> Option<u64> {
    let leases = &ctx.cluster.leases;
    let me = Bytes::from(ctx.owner.clone());
    match leases.entry(lease_key(p)).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => {
            if observed.stale(&format!("l/{p}"), e.revision, ctx.cluster.cfg.lease) {
                tracing::info!(partition = p, holder = %String::from_utf8_lossy(&e.value), "taking over a stale lease");
                leases.update(lease_key(p), me, e.revision).await.ok()
            } else {
                None
            }
        }
        Ok(_) => leases.create(lease_key(p), me).await.ok(),
        Err(_) => None,
    }
}

fn lease_key(p: u32) -> String {
    format!("p{p}")
}

async fn ready(State(ctx): State<Arc<Ctx>>) -> axum::response::Response {
    let broker = ctx.cluster.connected();
    let sink = matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            crate::storage::Sink::check(ctx.sink.as_ref())
        )
        .await,
        Ok(Ok(()))
    );
    let body = serde_json::json!({"broker": broker, "sink": sink});
    let status = if broker && sink {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> axum::response::Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        ctx.metrics.render(),
    )
        .into_response()
}
