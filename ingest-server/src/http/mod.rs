//! The HTTP front-end (Segment-compatible tracking API).
//!
//! Every error answer is JSON: `{"code": "<machine word>", "error": "<what is wrong
//! and what to do>"}`. A 200 answer is `{"accepted": N, "rejected": [{"index": i,
//! "reason": "..."}]}`: valid events are accepted even when others are refused.
//! 200 is sent only after the accepted events are durable in the log.

mod auth;
mod body;
mod browser;
pub mod cors;
mod error;
mod idempotency;
mod ingest;
pub mod rawjson;
pub mod serve;
pub mod validate;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tributary_protocol::ErrorCode;

use self::error::ApiError;
use self::ingest::ingest;
use self::validate::Endpoint;
use crate::config::Config;
use crate::log::{Answers, Broker};
use crate::metrics::Metrics;
use crate::status::WriterStatus;
use crate::storage::Sink;

/// Everything a request handler needs.
pub struct AppState {
    /// Checked configuration.
    pub cfg: Config,
    /// Write key → source name.
    pub keys: BTreeMap<String, String>,
    /// The durable log.
    pub log: Arc<dyn Broker>,
    /// The sink (readiness).
    pub sink: Arc<dyn Sink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where `Idempotency-Key` answers are looked up.
    pub answers: Arc<dyn Answers>,
    /// Idempotency keys of requests in progress.
    pub idem_inflight: Mutex<HashSet<String>>,
    /// Request slots (overload → 429).
    pub inflight: tokio::sync::Semaphore,
    /// Writer health.
    pub writer: Arc<WriterStatus>,
    /// Set on shutdown: new requests get 503.
    pub shutting_down: AtomicBool,
    /// Web page origins allowed per write key.
    pub origins: Arc<cors::BrowserOrigins>,
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    // Every route a browser may call, behind the CORS layer (which answers
    // preflights itself, so OPTIONS never reaches a handler or reads a body).
    let mut api = Router::new()
        .route("/v1/batch", post(|s, r| ingest(s, r, Endpoint::Batch)))
        .route("/v1/import", post(|s, r| ingest(s, r, Endpoint::Batch)))
        // analytics.js: `<apiHost>/<first letter of the type>`, `/b` for its
        // batching mode, `/m` for its own metrics, and the settings it loads.
        .route("/v1/b", post(|s, r| ingest(s, r, Endpoint::Batch)))
        .route("/v1/m", post(browser::library_metrics))
        .route("/v1/projects/{write_key}/settings", get(browser::settings))
        // RudderStack's JS SDK: its own metrics (dropped like analytics.js's),
        // and its beacon mode (`?writeKey=` in the URL).
        .route("/rsaMetrics", post(browser::library_metrics))
        .route(
            "/beacon/v1/batch",
            post(|s, r| ingest(s, r, Endpoint::Batch)),
        );
    for kind in validate::TYPES {
        api = api.route(
            &format!("/v1/{kind}"),
            post(move |s, r| ingest(s, r, Endpoint::Single(kind))),
        );
        // `screen` shares its letter with nothing else; analytics.js posts
        // `track` to `/t`, `page` to `/p`, and so on.
        api = api.route(
            &format!("/v1/{}", &kind[..1]),
            post(move |s, r| ingest(s, r, Endpoint::Single(kind))),
        );
    }
    let api = api.layer(cors::layer(state.origins.clone()));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; POST events to /v1/batch (or /v1/track, /v1/identify, ...)",
    )
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(s): State<Arc<AppState>>) -> Response {
    let log_ok = s.log.healthy();
    let sink_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), s.sink.check()).await,
        Ok(Ok(()))
    ) && s.writer.sink_healthy.load(Ordering::Acquire);
    let lag_ok = s.log.lag_bytes() <= s.cfg.max_log_lag;
    let body = json!({"log": log_ok, "sink": sink_ok, "lag": lag_ok});
    let status = if log_ok && sink_ok && lag_ok && !s.shutting_down.load(Ordering::Acquire) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
        .into_response()
}

/// A JSON answer with a body already serialized.
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
