//! Reading a request body within its size and time limits, and gunzipping it
//! within the same size limit (gzip bombs are refused, not expanded).

use std::io::Read;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures::StreamExt;
use tributary_protocol::ErrorCode;

use super::AppState;
use super::error::ApiError;

/// The raw body, at most `max_batch_bytes`, within `body_timeout`.
pub async fn read(s: &AppState, body: Body) -> Result<Vec<u8>, ApiError> {
    let limit = s.cfg.max_batch_bytes;
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    ErrorCode::BodyError,
                    format!("cannot read the request body: {e}"),
                )
            })?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::new(
                    ErrorCode::BatchTooLarge,
                    format!(
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
        Err(_) => Err(ApiError::new(
            ErrorCode::BodyTimeout,
            format!(
                "the request body did not arrive within {:?}; send it faster or smaller",
                s.cfg.body_timeout
            ),
        )),
    }
}

/// The body as sent, or gunzipped (at most `max_batch_bytes`).
pub fn decode(s: &AppState, headers: &HeaderMap, raw: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => gunzip(&raw, s.cfg.max_batch_bytes),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedEncoding,
            format!("Content-Encoding `{other}` is not supported; use gzip or none"),
        )),
    }
}

fn gunzip(raw: &[u8], cap: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(raw.len() * 4);
    let res = flate2::read::MultiGzDecoder::new(raw)
        .take(cap as u64 + 1)
        .read_to_end(&mut out);
    match res {
        Err(e) => Err(ApiError::new(
            ErrorCode::BadGzip,
            format!("the body is not valid gzip ({e}); send gzip or drop Content-Encoding"),
        )),
        Ok(_) if out.len() > cap => Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!(
                "the body decompresses to more than the {cap}-byte batch limit; send fewer events per batch"
            ),
        )),
        Ok(_) => Ok(out),
    }
}
