//! Wiring the stages together: start-up, serving, and graceful shutdown.
//!
//! Start-up: open the state database, the sink and the log (repairing a torn log
//! tail and re-storing recent idempotency answers), start the writer (which first
//! settles crash leftovers), then listen. Shutdown on SIGTERM/SIGINT: stop
//! accepting connections, finish in-flight requests, close the log (every queued
//! append is written), let the writer read to the end, roll every open object,
//! commit, and exit 0.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::cluster::frontend::{KvAnswers, NatsBroker};
use crate::cluster::{Cluster, ClusterConfig};
use crate::config::{Config, DEFAULT_SOURCE, WRITE_KEY_FILE, parse_write_keys};
use crate::http::{AppState, router};
use crate::log::{Answers, Broker, FileLog, Log, SEGMENT_BYTES};
use crate::metrics::Metrics;
use crate::state::StateDb;
use crate::status::WriterStatus;
use crate::storage::{ObjectSink, Sink};
use crate::writer::{self, WriterConfig};

/// How long shutdown waits for the writer to roll and commit open objects.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The stages behind the front-end: the local log and writer, or a broker.
struct Backend {
    log: Arc<dyn Broker>,
    answers: Arc<dyn Answers>,
    /// The local writer's thread, stopped after the front-end.
    local: Option<std::thread::JoinHandle<()>>,
}

/// Runs the server until SIGTERM/SIGINT: one process with its local log, or,
/// with `cluster`, a front-end publishing to JetStream.
pub async fn run(cfg: Config, cluster: Option<ClusterConfig>) -> anyhow::Result<()> {
    let data_dir = cfg.store.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let _lock = crate::dirlock::hold(&data_dir, "server")?;
    let keys = if cfg.write_keys.is_empty() {
        generated_key(&data_dir)?
    } else {
        cfg.write_keys.clone()
    };
    let sink: Arc<dyn Sink> = Arc::new(ObjectSink::open(&cfg.store)?);
    let metrics = Arc::new(Metrics::default());
    let status = Arc::new(WriterStatus::default());
    status.sink_healthy.store(true, Ordering::Release);
    let backend = match cluster {
        Some(c) => {
            let cluster = Arc::new(Cluster::connect(c, cfg.dedupe_window).await?);
            tracing::info!(partitions = cluster.partitions, "publishing to the broker");
            Backend {
                log: Arc::new(NatsBroker::new(
                    cluster.clone(),
                    tokio::runtime::Handle::current(),
                )),
                answers: Arc::new(KvAnswers(cluster)),
                local: None,
            }
        }
        None => local_backend(&cfg, sink.clone(), metrics.clone(), status.clone())?,
    };
    let log = backend.log.clone();
    let state = Arc::new(AppState {
        inflight: tokio::sync::Semaphore::new(cfg.max_inflight),
        cfg: cfg.clone(),
        keys,
        log: log.clone(),
        answers: backend.answers,
        sink,
        metrics,
        idem_inflight: Mutex::new(Default::default()),
        writer: status.clone(),
        shutting_down: AtomicBool::new(false),
        origins: Arc::new(crate::http::cors::BrowserOrigins::new(&cfg.allowed_origins)),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        storage = %cfg.store.storage,
        format = ?cfg.store.format,
        "ingest-server ready"
    );
    let mqtt = match &cfg.mqtt {
        Some(mcfg) => {
            let client_id = match &mcfg.client_id {
                Some(id) => id.clone(),
                None => generated_client_id(&data_dir)?,
            };
            tracing::info!(host = %mcfg.host, port = mcfg.port, client_id, "MQTT source starting");
            Some(crate::sources::mqtt::spawn(
                mcfg.clone(),
                client_id,
                crate::sources::mqtt::Deps {
                    log: log.clone(),
                    sink: state.sink.clone(),
                    metrics: state.metrics.clone(),
                    limits: crate::http::validate::Limits {
                        max_event_bytes: cfg.max_event_bytes,
                        max_request_bytes: cfg.max_batch_bytes
                            * tributary_protocol::limits::REQUEST_EXPANSION,
                    },
                    max_payload: cfg.max_batch_bytes,
                },
            ))
        }
        None => None,
    };
    let shutdown_state = state.clone();
    let limits = crate::http::serve::ConnLimits {
        max_connections: cfg.max_connections,
        header_timeout: cfg.header_timeout,
    };
    crate::http::serve::serve(listener, router(state), limits, async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining requests");
        shutdown_state.shutting_down.store(true, Ordering::Release);
    })
    .await;
    // The MQTT source acks what is durable and disconnects (keeping its session).
    if let Some(m) = mqtt {
        m.stop().await;
    }
    // Every in-flight request is answered; write whatever is queued, then stop the log.
    log.close();
    let Some(writer_thread) = backend.local else {
        tracing::info!("shutdown complete");
        return Ok(());
    };
    status.stop.store(true, Ordering::Release);
    let join = tokio::task::spawn_blocking(move || writer_thread.join());
    // With the sink down the writer would retry forever. Everything acknowledged
    // is durable in the log (and intents are settled at the next start), so after
    // the grace period it is safe to exit and leave the rest to the next start.
    match tokio::time::timeout(SHUTDOWN_GRACE, join).await {
        Ok(_) => tracing::info!("shutdown complete"),
        Err(_) => tracing::warn!(
            "storage did not take the last objects within {SHUTDOWN_GRACE:?}; \
             exiting anyway: the events stay in the durable log and are written at the next start"
        ),
    }
    Ok(())
}

/// Opens the state database and the local log (repairing a torn tail and
/// re-storing recent idempotency answers) and starts the writer.
fn local_backend(
    cfg: &Config,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    status: Arc<WriterStatus>,
) -> anyhow::Result<Backend> {
    let data_dir = &cfg.store.data_dir;
    let db = StateDb::open(data_dir).context("cannot open the state database")?;
    let checkpoint = db.checkpoint()?;
    let mut hook_db = StateDb::open(data_dir)?;
    hook_db.relax_sync()?;
    let hook = Box::new(move |recs: &[&crate::log::IdempotencyRecord]| {
        if let Err(e) = hook_db.insert_idempotency(recs) {
            // The records are in the log's last segment; start-up re-inserts them.
            tracing::warn!(error = %e, "storing idempotency answers failed");
        }
    });
    let opened = FileLog::open(&data_dir.join("log"), checkpoint, SEGMENT_BYTES, hook)
        .context("cannot open the durable log")?;
    let mut idem_db = StateDb::open(data_dir)?;
    if !opened.recent_idempotency.is_empty() {
        let refs: Vec<_> = opened.recent_idempotency.iter().collect();
        idem_db.insert_idempotency(&refs)?;
    }
    let log: Arc<dyn Log> = opened.log;
    let writer_thread = writer::spawn(
        WriterConfig {
            format: cfg.store.format,
            roll_bytes: cfg.roll_bytes,
            max_buffer_bytes: cfg.max_buffer_bytes,
            roll_interval: cfg.roll_interval,
            dedupe_window: cfg.dedupe_window,
        },
        log.clone(),
        db,
        StateDb::open(data_dir).context("cannot open the state database")?,
        sink,
        tokio::runtime::Handle::current(),
        metrics,
        status,
    )?;
    Ok(Backend {
        log,
        answers: Arc::new(Mutex::new(idem_db)),
        local: Some(writer_thread),
    })
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The MQTT client id of this data directory: generated at the first start and
/// kept, so the broker's persistent session survives restarts.
fn generated_client_id(data_dir: &Path) -> anyhow::Result<String> {
    use crate::sources::mqtt::config::CLIENT_ID_FILE;
    let path = data_dir.join(CLIENT_ID_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_string());
    }
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|e| anyhow::anyhow!("cannot draw a random MQTT client id: {e}"))?;
    let id: String = format!(
        "tributary-{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{id}")?;
    f.sync_all()?;
    Ok(id)
}

/// Loads the generated write key, creating it (mode 0600) and printing it on first start.
fn generated_key(data_dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = data_dir.join(WRITE_KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim().to_string();
        if !key.is_empty() {
            // Printed on first start only: logs are read by more people than keys.
            println!(
                "write key: the one generated on first start, in {} (source `{DEFAULT_SOURCE}`)",
                path.display()
            );
            return parse_write_keys(&[key]);
        }
    }
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .context("cannot read /dev/urandom to generate a write key")?;
    let key: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{key}")?;
    f.sync_all()?;
    println!(
        "generated write key: {key}  (stored in {}; source name `{DEFAULT_SOURCE}`)",
        path.display()
    );
    parse_write_keys(&[key])
}
