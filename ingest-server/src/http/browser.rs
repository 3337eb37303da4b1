//! What Segment's analytics.js needs besides the event routes: the settings
//! it GETs at load (`<cdnURL>/v1/projects/<writeKey>/settings`) and the sink for
//! its own metrics (`<apiHost>/m`).
//!
//! The event routes themselves (`/v1/t`, `/p`, `/i`, `/g`, `/a`, `/s`, `/b`) are
//! the ordinary ingest handler (see `mod.rs`): nothing about a browser's events
//! is special after the front-end.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tributary_protocol::ErrorCode;

use super::error::ApiError;
use super::{AppState, auth, body};

/// `GET /v1/projects/{writeKey}/settings`: the settings analytics.js loads when
/// its `cdnURL` points here. They send events to this server (`apiHost` is the
/// host the page reached us at, plus `/v1`) and enable no other destination.
pub async fn settings(
    State(s): State<Arc<AppState>>,
    Path(write_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let resp = match settings_answer(&s, &write_key, &headers) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    s.metrics.request(resp.status().as_u16());
    resp
}

fn settings_answer(s: &AppState, key: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    if auth::source_of_key(&s.keys, key).is_none() {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "unknown write key in /v1/projects/<writeKey>/settings; use a key given with --write-key",
        ));
    }
    check_origin(s, key, headers)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "the settings request has no valid Host header; it names the host events are sent to",
            )
        })?;
    // The server speaks plain HTTP; pages reach it over https through a
    // TLS-terminating proxy. Say https when the proxy says so, or when the page
    // itself is https (its browser would block http requests as mixed content).
    let header_is = |name: &str, prefix: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with(prefix))
    };
    let protocol = if header_is("x-forwarded-proto", "https") || header_is("origin", "https://") {
        "https"
    } else {
        "http"
    };
    let api_host = format!("{host}/v1");
    // The shape analytics.js reads (CDNSettings): the Segment.io destination
    // pointed here, a plan that lets every event through, no remote plugins,
    // middleware or legacy destinations (nothing else is loaded), and its own
    // metrics sent here rather than to Segment.
    let body = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": true, "integrations": {}}},
            "identify": {"__default": {"enabled": true}},
            "group": {"__default": {"enabled": true}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"host": api_host},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    s.metrics.browser_settings.inc_by(1);
    let mut r = (StatusCode::OK, axum::Json(body)).into_response();
    // Short, so a changed key or host reaches pages soon; private, because the
    // answer depends on the Host the page used.
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(r)
}

/// `POST /v1/m`: analytics.js's own metrics (`{"series":[...]}`, text/plain,
/// no write key). Read within the body limits, counted, and dropped: they are
/// not events, and answering keeps the library from logging errors.
pub async fn library_metrics(State(s): State<Arc<AppState>>, req: Request) -> Response {
    // Unauthenticated (the libraries send no key), so it shares the request
    // slots and the body limits of the event routes.
    let Ok(_permit) = s.inflight.try_acquire() else {
        let resp = ApiError::new(
            ErrorCode::Overloaded,
            "too many requests in progress; retry after the Retry-After delay",
        )
        .into_response();
        s.metrics.request(resp.status().as_u16());
        return resp;
    };
    let resp = match body::read(&s, req.into_body()).await {
        Ok(raw) => {
            s.metrics.browser_metrics.inc_by(1);
            s.metrics.bytes_received.inc_by(raw.len() as u64);
            (StatusCode::OK, axum::Json(json!({}))).into_response()
        }
        Err(e) => e.into_response(),
    };
    s.metrics.request(resp.status().as_u16());
    resp
}

/// Refuses a browser request whose `Origin` is not allowed for `key`. A
/// request without `Origin` does not come from a web page's script and passes.
pub fn check_origin(s: &AppState, key: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    if s.origins.allows(key, origin) {
        return Ok(());
    }
    s.metrics.origin_refused.inc_by(1);
    let shown = origin.to_str().unwrap_or("(not ASCII)");
    tracing::warn!(
        origin = shown,
        "request from an origin not allowed for its write key refused"
    );
    Err(ApiError::new(
        ErrorCode::OriginNotAllowed,
        format!(
            "web pages of origin `{shown}` may not send with this write key; \
             the operator allows one with --allowed-origin KEY={shown}"
        ),
    ))
}
