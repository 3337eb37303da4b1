//! `Idempotency-Key`: a retry with the same events gets the stored answer; the
//! same key with other events gets 422; a key in progress gets 409.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use tributary_protocol::limits::MAX_IDEMPOTENCY_KEY;
use tributary_protocol::{ErrorCode, header};

use super::AppState;
use super::error::ApiError;
use crate::log::lock;

/// The request's key, if any.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(header::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => {
            Ok(Some(k.trim().to_string()))
        }
        _ => Err(ApiError::new(
            ErrorCode::BadIdempotencyKey,
            format!("Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )),
    }
}

/// Marks an idempotency key as in progress until dropped.
pub struct Guard {
    state: Arc<AppState>,
    key: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        lock(&self.state.idem_inflight).remove(&self.key);
    }
}

/// What an idempotency key says about a request.
pub enum Begin {
    /// A new key: go on, holding the guard until answered.
    New(Guard),
    /// Seen before with the same events: send this stored answer.
    Replay(Response),
}

/// Looks the (source-scoped) key up.
pub async fn begin(s: &Arc<AppState>, key: &str, fingerprint: [u8; 16]) -> Result<Begin, ApiError> {
    if !lock(&s.idem_inflight).insert(key.to_string()) {
        return Err(ApiError::new(
            ErrorCode::IdempotencyInProgress,
            "a request with this Idempotency-Key is still in progress; retry it shortly",
        ));
    }
    let guard = Guard {
        state: s.clone(),
        key: key.to_string(),
    };
    let since = chrono::Utc::now().timestamp_millis() - s.cfg.dedupe_window.as_millis() as i64;
    let found = s.answers.lookup(key, since).await;
    match found {
        Ok(Some(stored)) if stored.fingerprint.is_some_and(|f| f != fingerprint) => {
            Err(ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for other events; send these events with a new key",
            ))
        }
        Ok(Some(stored)) => {
            let status = axum::http::StatusCode::from_u16(stored.status)
                .unwrap_or(axum::http::StatusCode::OK);
            let mut r = super::json_response(status, stored.body);
            r.headers_mut().insert(
                header::IDEMPOTENT_REPLAYED,
                HeaderValue::from_static("true"),
            );
            Ok(Begin::Replay(r))
        }
        Ok(None) => Ok(Begin::New(guard)),
        Err(e) => Err(ApiError::new(
            ErrorCode::StateUnavailable,
            format!("cannot check the Idempotency-Key ({e}); retry later"),
        )),
    }
}

/// The single process's answers: its state database.
impl crate::log::Answers for std::sync::Mutex<crate::state::StateDb> {
    fn lookup<'a>(
        &'a self,
        key: &'a str,
        since_ms: i64,
    ) -> futures::future::BoxFuture<'a, Result<Option<crate::log::StoredAnswer>, String>> {
        let found = lock(self)
            .lookup_idempotency(key, since_ms)
            .map_err(|e| e.to_string());
        Box::pin(std::future::ready(found))
    }
}
