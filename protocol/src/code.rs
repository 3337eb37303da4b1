//! Error codes, each with the status it is sent with.

use serde::{Deserialize, Serialize};

/// The `code` of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON (the message gives line and column).
    MalformedJson,
    /// 400: the body is empty.
    EmptyBody,
    /// 400: the JSON has the wrong shape.
    BadRequest,
    /// 400: `Content-Encoding: gzip` with a body that is not gzip.
    BadGzip,
    /// 400: the `Idempotency-Key` is empty, too long or not ASCII.
    BadIdempotencyKey,
    /// 400: the body could not be read.
    BodyError,
    /// 401: unknown or missing write key.
    Unauthorized,
    /// 403: a browser request whose `Origin` is not allowed for its write key.
    OriginNotAllowed,
    /// 404: no such endpoint.
    NotFound,
    /// 408: the body arrived too slowly.
    BodyTimeout,
    /// 409: a request with the same `Idempotency-Key` is in progress.
    IdempotencyInProgress,
    /// 413: the body, or what it expands to, is over the limit.
    BatchTooLarge,
    /// 415: unsupported `Content-Encoding`.
    UnsupportedEncoding,
    /// 422: the `Idempotency-Key` was used before with other events.
    IdempotencyKeyReused,
    /// 429: too many requests in progress.
    Overloaded,
    /// 503: object storage is behind or down.
    StorageBehind,
    /// 503: the durable log cannot take events.
    LogUnavailable,
    /// 503: the server is shutting down.
    ShuttingDown,
    /// 503: the idempotency answers cannot be read.
    StateUnavailable,
}

impl ErrorCode {
    /// Every code, in the order of `docs/PROTOCOL.md`'s table.
    pub const ALL: [ErrorCode; 19] = [
        Self::MalformedJson,
        Self::EmptyBody,
        Self::BadRequest,
        Self::BadGzip,
        Self::BadIdempotencyKey,
        Self::BodyError,
        Self::Unauthorized,
        Self::OriginNotAllowed,
        Self::NotFound,
        Self::BodyTimeout,
        Self::IdempotencyInProgress,
        Self::BatchTooLarge,
        Self::UnsupportedEncoding,
        Self::IdempotencyKeyReused,
        Self::Overloaded,
        Self::StorageBehind,
        Self::LogUnavailable,
        Self::ShuttingDown,
        Self::StateUnavailable,
    ];

    /// The machine word, as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::EmptyBody => "empty_body",
            Self::BadRequest => "bad_request",
            Self::BadGzip => "bad_gzip",
            Self::BadIdempotencyKey => "bad_idempotency_key",
            Self::BodyError => "body_error",
            Self::Unauthorized => "unauthorized",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::NotFound => "not_found",
            Self::BodyTimeout => "body_timeout",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::BatchTooLarge => "batch_too_large",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Overloaded => "overloaded",
            Self::StorageBehind => "storage_behind",
            Self::LogUnavailable => "log_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::StateUnavailable => "state_unavailable",
        }
    }

    /// The HTTP status the code is sent with.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson
            | Self::EmptyBody
            | Self::BadRequest
            | Self::BadGzip
            | Self::BadIdempotencyKey
            | Self::BodyError => 400,
            Self::Unauthorized => 401,
            Self::OriginNotAllowed => 403,
            Self::NotFound => 404,
            Self::BodyTimeout => 408,
            Self::IdempotencyInProgress => 409,
            Self::BatchTooLarge => 413,
            Self::UnsupportedEncoding => 415,
            Self::IdempotencyKeyReused => 422,
            Self::Overloaded => 429,
            Self::StorageBehind
            | Self::LogUnavailable
            | Self::ShuttingDown
            | Self::StateUnavailable => 503,
        }
    }

    /// Seconds sent in `Retry-After` with this code, if any.
    pub fn retry_after_secs(self) -> Option<u32> {
        match self.status() {
            429 => Some(1),
            503 => Some(5),
            _ => None,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
