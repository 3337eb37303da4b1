//! The ingest handler: a request through auth, decoding, idempotency and
//! validation to a durable append, then the answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tributary_protocol::limits::REQUEST_EXPANSION;
use tributary_protocol::{BatchResponse, ErrorCode};

use super::error::ApiError;
use super::idempotency::{self, Begin};
use super::validate::{self, Endpoint, Limits, Prepared, RequestError, prepare};
use super::{AppState, auth, body, browser, json_response, rawjson};
use crate::log::{IdempotencyRecord, Record};

/// Handles one request to a tracking endpoint.
pub async fn ingest(State(s): State<Arc<AppState>>, req: Request, endpoint: Endpoint) -> Response {
    let resp = match handle(&s, req, endpoint).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    s.metrics.request(resp.status().as_u16());
    resp
}

async fn handle(s: &Arc<AppState>, req: Request, endpoint: Endpoint) -> Result<Response, ApiError> {
    if s.shutting_down.load(Ordering::Acquire) {
        return Err(ApiError::new(
            ErrorCode::ShuttingDown,
            "the server is shutting down; retry later",
        ));
    }
    let Ok(_permit) = s.inflight.try_acquire() else {
        return Err(ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in progress; retry after the Retry-After delay",
        ));
    };
    if s.log.lag_bytes() > s.cfg.max_log_lag {
        return Err(ApiError::new(
            ErrorCode::StorageBehind,
            "object storage is behind (or down); events are not accepted until it catches up; retry later",
        ));
    }
    let (parts, raw) = req.into_parts();
    let raw = body::read(s, raw).await?;
    s.metrics.bytes_received.inc_by(raw.len() as u64);
    let decoded = body::decode(s, &parts.headers, raw)?;
    s.metrics.bytes_decoded.inc_by(decoded.len() as u64);
    if decoded.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "the request body is empty; send a JSON object such as {\"batch\":[...]}",
        ));
    }
    // Parsed one level deep (a batch's items two): nested values stay raw bytes.
    let body = rawjson::Body::parse(&decoded, endpoint == Endpoint::Batch)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.to_string()))?;
    let query_key = query_write_key(&parts.uri);
    let Some((key, source)) = auth::authenticate(
        &s.keys,
        &parts.headers,
        body.write_key().as_deref(),
        query_key.as_deref(),
    ) else {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "unknown or missing write key; send it as the HTTP Basic user name or as `writeKey` in the body",
        ));
    };
    // Before anything is appended: a page of a disallowed origin gets no data in,
    // even through requests the browser sends without asking (text/plain, beacons).
    browser::check_origin(s, &key, &parts.headers)?;
    let idem = idempotency::key(&parts.headers)?.map(|key| {
        (
            format!("{source}\n{key}"),
            validate::fingerprint(endpoint, &body),
        )
    });
    let _guard = match &idem {
        Some((key, fingerprint)) => match idempotency::begin(s, key, *fingerprint).await? {
            Begin::New(guard) => Some(guard),
            Begin::Replay(answer) => return Ok(answer),
        },
        None => None,
    };
    let received = chrono::Utc::now();
    let limits = Limits {
        max_event_bytes: s.cfg.max_event_bytes,
        max_request_bytes: s.cfg.max_batch_bytes * REQUEST_EXPANSION,
    };
    let prepared = prepare(endpoint, &body, &source, received, limits).map_err(|e| {
        let code = match e {
            RequestError::Malformed(_) => ErrorCode::MalformedJson,
            // 413, like a body over the limit: a client splits the batch and retries.
            RequestError::Expands { .. } => ErrorCode::BatchTooLarge,
            RequestError::NotObject | RequestError::NoBatch => ErrorCode::BadRequest,
        };
        ApiError::new(code, e.to_string())
    })?;
    // The records own their bytes: free the request body before waiting on the log.
    drop(body);
    drop(decoded);
    commit(s, prepared, idem, received.timestamp_millis()).await
}

/// The `writeKey` query parameter, for beacon clients (RudderStack's beacon
/// mode puts the key in the URL because `sendBeacon` cannot set headers).
fn query_write_key(uri: &axum::http::Uri) -> Option<String> {
    let axum::extract::Query(q) =
        axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
            .ok()?;
    q.get("writeKey").cloned()
}

/// Appends the accepted events (and the idempotency answer) durably, then answers.
async fn commit(
    s: &Arc<AppState>,
    p: Prepared,
    idem: Option<(String, [u8; 16])>,
    now_ms: i64,
) -> Result<Response, ApiError> {
    let accepted = p.records.len();
    let rejected = p.rejected.len() as u64;
    let answer = BatchResponse {
        accepted,
        rejected: p.rejected,
    };
    let body = serde_json::to_vec(&answer).unwrap_or_default();
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
        let rx = s.log.append(records).map_err(|e| {
            ApiError::new(
                ErrorCode::LogUnavailable,
                format!("{e}; nothing was accepted, retry later"),
            )
        })?;
        let unavailable = |why: String| ApiError::new(ErrorCode::LogUnavailable, why);
        match rx.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(unavailable(format!(
                    "the durable log could not store the events ({e}); nothing was accepted, retry later"
                )));
            }
            Err(_) => {
                return Err(unavailable(
                    "the durable log stopped; nothing was accepted, retry later".into(),
                ));
            }
        }
    }
    s.metrics.events_accepted.inc_by(accepted as u64);
    s.metrics.events_rejected.inc_by(rejected);
    Ok(json_response(StatusCode::OK, body))
}
