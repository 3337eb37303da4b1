//! The HTTP front-end (Segment-compatible tracking API).
//!
//! Every error answer is JSON: `{"code": "<machine word>", "error": "<what is wrong
//! and what to do>"}`. A 200 answer is `{"accepted": N, "rejected": [{"index": i,
//! "reason": "..."}]}`: valid events are accepted even when others are refused.
//! 200 is sent only after the accepted events are durable in the log.

// Helpers return the finished error `Response` as their `Err`: it is built once,
// on the (rare) error path, and handed straight back to axum.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures::StreamExt;
use serde_json::json;

use crate::config::Config;
use crate::event::{Endpoint, Limits, Prepared, RequestError, prepare};
use crate::log::{Broker, IdempotencyRecord, Record, lock};
use crate::metrics::Metrics;
use crate::rawjson;
use crate::sink::Sink;
use crate::state::StateDb;
use crate::writer::WriterStatus;

/// A request's accepted events may store at most this many times the batch
/// limit (a top-level `context` is merged into each event).
pub const REQUEST_EXPANSION: usize = 4;

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

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
    /// Connection for idempotency lookups.
    pub idem_db: Mutex<StateDb>,
    /// Idempotency keys of requests in progress.
    pub idem_inflight: Mutex<HashSet<String>>,
    /// Request slots (overload → 429).
    pub inflight: tokio::sync::Semaphore,
    /// Writer health.
    pub writer: Arc<WriterStatus>,
    /// Set on shutdown: new requests get 503.
    pub shutting_down: AtomicBool,
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/batch", post(|s, r| ingest(s, r, Endpoint::Batch)))
        .route("/v1/import", post(|s, r| ingest(s, r, Endpoint::Batch)));
    for kind in crate::event::TYPES {
        r = r.route(
            &format!("/v1/{kind}"),
            post(move |s, r| ingest(s, r, Endpoint::Single(kind))),
        );
    }
    r.fallback(not_found).with_state(state)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
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
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// A JSON error answer.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({"code": code, "error": message}))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        let secs = if status == StatusCode::TOO_MANY_REQUESTS {
            "1"
        } else {
            "5"
        };
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
    }
    r
}

async fn ingest(State(s): State<Arc<AppState>>, req: Request, endpoint: Endpoint) -> Response {
    let resp = ingest_inner(&s, req, endpoint).await;
    s.metrics.request(resp.status().as_u16());
    resp
}

async fn ingest_inner(s: &Arc<AppState>, req: Request, endpoint: Endpoint) -> Response {
    if s.shutting_down.load(Ordering::Acquire) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down; retry later",
        );
    }
    let Ok(_permit) = s.inflight.try_acquire() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many requests in progress; retry after the Retry-After delay",
        );
    };
    if s.log.lag_bytes() > s.cfg.max_log_lag {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_behind",
            "object storage is behind (or down); events are not accepted until it catches up; retry later",
        );
    }
    let (parts, body) = req.into_parts();
    let raw = match read_body(s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    s.metrics
        .bytes_received
        .fetch_add(raw.len() as u64, Ordering::Relaxed);
    let decoded = match decode_body(s, &parts.headers, raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    s.metrics
        .bytes_decoded
        .fetch_add(decoded.len() as u64, Ordering::Relaxed);
    if decoded.iter().all(|b| b.is_ascii_whitespace()) {
        return error(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "the request body is empty; send a JSON object such as {\"batch\":[...]}",
        );
    }
    // Parsed one level deep (a batch's items two): nested values stay raw bytes.
    let body = match rawjson::Body::parse(&decoded, endpoint == Endpoint::Batch) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_json", &e.to_string()),
    };
    let Some(source) = authenticate(s, &parts.headers, body.write_key().as_deref()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or missing write key; send it as the HTTP Basic user name or as `writeKey` in the body",
        );
    };
    let idem = match idempotency_key(&parts.headers) {
        Ok(k) => k.map(|k| format!("{source}\n{k}")),
        Err(r) => return r,
    };
    let fingerprint = idem
        .as_ref()
        .map(|_| crate::event::fingerprint(endpoint, &body));
    let _guard = match (&idem, fingerprint) {
        (Some(key), Some(fingerprint)) => match begin_idempotent(s, key, fingerprint) {
            Ok(g) => Some(g),
            Err(r) => return r,
        },
        _ => None,
    };
    let received = chrono::Utc::now();
    let limits = Limits {
        max_event_bytes: s.cfg.max_event_bytes,
        max_request_bytes: s.cfg.max_batch_bytes * REQUEST_EXPANSION,
    };
    let prepared = match prepare(endpoint, &body, &source, received, limits) {
        Ok(p) => p,
        Err(e @ RequestError::Malformed(_)) => {
            return error(StatusCode::BAD_REQUEST, "malformed_json", &e.to_string());
        }
        // 413, like a body over the limit: a client splits the batch and retries.
        Err(e @ RequestError::Expands { .. }) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                &e.to_string(),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    // The records own their bytes: free the request body before waiting on the log.
    drop(body);
    drop(decoded);
    let idem = idem.zip(fingerprint);
    commit(s, prepared, idem, received.timestamp_millis()).await
}

/// Appends the accepted events (and the idempotency answer) durably, then answers.
async fn commit(
    s: &Arc<AppState>,
    p: Prepared,
    idem: Option<(String, [u8; 16])>,
    now_ms: i64,
) -> Response {
    let accepted = p.records.len();
    let rejected = p.rejected.len() as u64;
    let body = json!({"accepted": accepted, "rejected": p.rejected});
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut records: Vec<Record> = p.records.into_iter().map(Record::Event).collect();
    if let Some((key, fingerprint)) = idem {
        records.push(Record::Idempotency(IdempotencyRecord {
            key,
            seen_at_ms: now_ms,
            status: 200,
            fingerprint: Some(fingerprint),
            body: body.clone(),
        }));
    }
    if !records.is_empty() {
        let rx = match s.log.append(records) {
            Ok(rx) => rx,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log_unavailable",
                    &format!("{e}; nothing was accepted, retry later"),
                );
            }
        };
        match rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log_unavailable",
                    &format!(
                        "the durable log could not store the events ({e}); nothing was accepted, retry later"
                    ),
                );
            }
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "log_unavailable",
                    "the durable log stopped; nothing was accepted, retry later",
                );
            }
        }
    }
    s.metrics
        .events_accepted
        .fetch_add(accepted as u64, Ordering::Relaxed);
    s.metrics
        .events_rejected
        .fetch_add(rejected, Ordering::Relaxed);
    json_response(StatusCode::OK, body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn read_body(s: &AppState, body: Body) -> Result<Vec<u8>, Response> {
    let limit = s.cfg.max_batch_bytes;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    "body_error",
                    &format!("cannot read the request body: {e}"),
                )
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    &format!(
                        "the request body is over the {limit}-byte batch limit; send fewer events per batch"
                    ),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    match tokio::time::timeout(s.cfg.body_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            &format!(
                "the request body did not arrive within {:?}; send it faster or smaller",
                s.cfg.body_timeout
            ),
        )),
    }
}

fn decode_body(s: &AppState, headers: &HeaderMap, raw: Vec<u8>) -> Result<Vec<u8>, Response> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => {
            let cap = s.cfg.max_batch_bytes;
            let mut out = Vec::with_capacity(raw.len() * 4);
            let res = flate2::read::MultiGzDecoder::new(raw.as_slice())
                .take(cap as u64 + 1)
                .read_to_end(&mut out);
            match res {
                Err(e) => Err(error(
                    StatusCode::BAD_REQUEST,
                    "bad_gzip",
                    &format!(
                        "the body is not valid gzip ({e}); send gzip or drop Content-Encoding"
                    ),
                )),
                Ok(_) if out.len() > cap => Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    &format!(
                        "the body decompresses to more than the {cap}-byte batch limit; send fewer events per batch"
                    ),
                )),
                Ok(_) => Ok(out),
            }
        }
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            &format!("Content-Encoding `{other}` is not supported; use gzip or none"),
        )),
    }
}

fn authenticate(s: &AppState, headers: &HeaderMap, body_key: Option<&str>) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|userpass| userpass.split(':').next().unwrap_or("").to_string());
    let key = from_header.or_else(|| body_key.map(str::to_owned))?;
    source_of(&s.keys, &key)
}

/// The source of a write key, compared in constant time with every configured
/// key: how long the answer takes must not tell how much of a key was right.
fn source_of(keys: &BTreeMap<String, String>, key: &str) -> Option<String> {
    use subtle::ConstantTimeEq;
    let mut found = None;
    for (known, source) in keys {
        if bool::from(known.as_bytes().ct_eq(key.as_bytes())) {
            found = Some(source);
        }
    }
    found.cloned()
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Response> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => {
            Ok(Some(k.trim().to_string()))
        }
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_idempotency_key",
            &format!("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

/// Marks an idempotency key as in progress until dropped.
struct IdemGuard {
    state: Arc<AppState>,
    key: String,
}

impl Drop for IdemGuard {
    fn drop(&mut self) {
        lock(&self.state.idem_inflight).remove(&self.key);
    }
}

/// Returns the stored answer for a key seen before with the same events (as an
/// `Err` response), 422 for a key seen before with other events (the IETF
/// Idempotency-Key draft's answer to a reused key), or a guard for a new key.
fn begin_idempotent(
    s: &Arc<AppState>,
    key: &str,
    fingerprint: [u8; 16],
) -> Result<IdemGuard, Response> {
    if !lock(&s.idem_inflight).insert(key.to_string()) {
        return Err(error(
            StatusCode::CONFLICT,
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still in progress; retry it shortly",
        ));
    }
    let guard = IdemGuard {
        state: s.clone(),
        key: key.to_string(),
    };
    let since = chrono::Utc::now().timestamp_millis() - s.cfg.dedupe_window.as_millis() as i64;
    let found = lock(&s.idem_db).lookup_idempotency(key, since);
    match found {
        Ok(Some(stored)) if stored.fingerprint.is_some_and(|f| f != fingerprint) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for other events; send these events with a new key",
        )),
        Ok(Some(stored)) => {
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            let mut r = json_response(status, stored.body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Err(r)
        }
        Ok(None) => Ok(guard),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "state_unavailable",
            &format!("cannot check the Idempotency-Key ({e}); retry later"),
        )),
    }
}
