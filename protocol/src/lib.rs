//! Tributary's wire protocol, defined once for the SDK, the ingest server and the
//! tests: what a client sends (`POST /v1/batch`, Segment's HTTP API), what the
//! server answers, and what a client makes of the answer.
//!
//! `docs/PROTOCOL.md` is the human-readable spec; a test keeps its table of
//! error codes and this crate's [`ErrorCode`] in step.
//!
//! * [`BatchResponse`] and [`Rejection`]: a 200's body;
//! * [`ErrorBody`] and [`ErrorCode`]: every other answer's body, and the status
//!   each code is sent with;
//! * [`header`]: header names; [`limits`]: default limits;
//! * [`classify`]: an answer (status, body, `Retry-After`) to an [`Outcome`].

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod answer;
mod code;
mod outcome;

pub use answer::{BatchResponse, ErrorBody, Rejection};
pub use code::ErrorCode;
pub use outcome::{Outcome, classify};

/// The path a batch is posted to.
pub const BATCH_PATH: &str = "/v1/batch";

/// Header names.
pub mod header {
    /// The batch's idempotency key: the same on every retry of a batch.
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    /// Set to `true` on an answer replayed for an idempotency key seen before.
    pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
    /// Seconds (or an HTTP date) before the client should retry.
    pub const RETRY_AFTER: &str = "Retry-After";
}

/// Default limits. The SDK's own defaults stay inside the server's.
pub mod limits {
    /// Largest event the server accepts, as compact JSON, by default (32 KiB).
    pub const SERVER_MAX_EVENT_BYTES: usize = 32 * 1024;
    /// Largest request body the server accepts, after decompression (500 KiB).
    pub const SERVER_MAX_BATCH_BYTES: usize = 500 * 1024;
    /// A request's accepted events may store at most this many times the batch
    /// limit (the top-level `context` is merged into each event).
    pub const REQUEST_EXPANSION: usize = 4;
    /// Longest `Idempotency-Key`.
    pub const MAX_IDEMPOTENCY_KEY: usize = 255;
    /// Largest event the SDK records (below the server's, which adds a few
    /// hundred bytes of its own fields).
    pub const SDK_MAX_EVENT_BYTES: usize = 32_000;
    /// Largest batch body the SDK sends, before gzip.
    pub const SDK_MAX_BATCH_BYTES: usize = 500_000;
}

#[cfg(test)]
mod tests;
