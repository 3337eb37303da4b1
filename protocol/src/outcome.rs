//! What a client makes of an answer.

use std::time::Duration;

use crate::{BatchResponse, ErrorBody, ErrorCode, Rejection};

/// What a client does with a batch after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: stored; any listed events were rejected (dropped).
    Delivered {
        /// Events the server refused.
        rejected: Vec<Rejection>,
    },
    /// 400 listing the bad events: drop them, send the rest in a new batch.
    RejectedEvents {
        /// Events the server refused.
        rejected: Vec<Rejection>,
    },
    /// 400 without a usable list: the whole batch is dropped.
    RejectedBatch {
        /// Why, for the log.
        reason: String,
    },
    /// 401/403: keep the data, stop uploading until the key changes.
    Unauthorized {
        /// The status.
        status: u16,
    },
    /// 413: split the batch.
    TooLarge,
    /// 422 `idempotency_key_reused`: the batch's events changed since its key
    /// was first used (some were evicted): send it again under a new key.
    KeyReused,
    /// 408, 429, 5xx, other statuses, a 2xx that is not a collector's answer,
    /// connection errors, timeouts.
    Retry {
        /// Why, for the log.
        reason: String,
        /// The server's `Retry-After`, a floor for the backoff.
        retry_after: Option<Duration>,
    },
}

/// Maps an answer to an outcome.
///
/// A 2xx is an acknowledgement only from a collector: a JSON body (Segment
/// answers `{"success":true}`, Tributary `{"accepted":n}`) or an empty one.
/// Anything else (a captive portal's HTML login page) must not delete the
/// batch. Statuses with no rule of their own are retried: data is never
/// dropped on a guess.
pub fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 if !body.trim().is_empty() && !is_json(body) => Outcome::Retry {
            reason: format!(
                "HTTP {status} with a body that is not JSON (a captive portal?): {}",
                snippet(body)
            ),
            retry_after: None,
        },
        200..=299 => Outcome::Delivered {
            rejected: rejections(body),
        },
        400 => match rejections(body) {
            rejected if rejected.is_empty() => Outcome::RejectedBatch {
                reason: format!("HTTP 400: {}", snippet(body)),
            },
            rejected => Outcome::RejectedEvents { rejected },
        },
        401 | 403 => Outcome::Unauthorized { status },
        413 => Outcome::TooLarge,
        422 if code(body) == Some(ErrorCode::IdempotencyKeyReused) => Outcome::KeyReused,
        _ => Outcome::Retry {
            reason: format!("HTTP {status}: {}", snippet(body)),
            retry_after,
        },
    }
}

fn is_json(body: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok()
}

/// The `rejected` list of an answer, if it has one.
fn rejections(body: &str) -> Vec<Rejection> {
    serde_json::from_str::<BatchResponse>(body)
        .map(|b| b.rejected)
        .unwrap_or_default()
}

fn code(body: &str) -> Option<ErrorCode> {
    serde_json::from_str::<ErrorBody>(body).ok().map(|b| b.code)
}

/// The start of a body, for a log line.
fn snippet(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}
