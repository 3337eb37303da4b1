//! Tributary's Rust core: records analytics events durably on the device and
//! delivers each one exactly once to a Segment-compatible `/v1/batch` endpoint.
//!
//! The whole exported surface is UniFFI-compatible (records, enums, one object,
//! two errors and two foreign traits: `TributaryLogger` and `TributaryTransport`), so the Kotlin and Swift packages are thin
//! layers over the same behaviour.
//!
//! # How it works
//! - Recording calls (`track`, `identify`, ...) validate and build the event
//!   JSON on the caller's thread (module `event`) and hand it to the writer
//!   thread over a channel bounded in bytes by `Config::max_buffer_bytes`
//!   (module `writer`). No disk I/O happens on the caller's thread, the
//!   constructor's included: the writer takes the directory lock, reads the
//!   consent file and opens the database, retrying transient errors
//!   (`Client::await_ready`).
//! - The writer group-commits everything pending into SQLite in WAL mode with
//!   `synchronous = FULL` (folder `store/`: `mod.rs` documents the files and
//!   the schema; `batch.rs` batches, `evict.rs` eviction, `recovery.rs`
//!   corrupt databases, `lock.rs` the directory lock). Consent and identity
//!   live in their own file (module `state`); the counters behind `Stats` in
//!   module `counters`.
//! - Every call returns within a stated bound whatever the disk does (module
//!   `client`), and every recorded event is counted in `Stats` wherever it
//!   ends: `restored + recorded = uploaded + queued + buffered + dropped_*`.
//! - The delivery thread (module `delivery`) makes batches with a persisted
//!   membership and idempotency key (`store/batch.rs`), sends them in Segment's
//!   `/v1/batch` format (module `upload`) through a `Transport` that only
//!   moves bytes (module `transport`: the platform's HTTP stack, or ureq for
//!   Rust callers; the answer is classified by the
//!   `tributary-protocol` crate), applies each outcome (one method per outcome
//!   in `delivery`), and retries with persisted exponential backoff and full
//!   jitter (module `retry`).
//! - One client per storage directory is enforced with a file lock
//!   (`store/lock.rs`), taken by the writer.
//!
//! ```no_run
//! use tributary::{Client, Config};
//! let config = Config::new("https://ingest.example.com".into(), "WRITE_KEY".into(), "/tmp/tributary".into());
//! let client = Client::new(config, None)?;
//! client.track("Signed Up".into(), r#"{"plan":"pro"}"#.into())?;
//! # Ok::<(), tributary::TributaryError>(())
//! ```

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

uniffi::setup_scaffolding!("tributary");

mod client;
mod config;
mod counters;
mod delivery;
mod error;
mod event;
mod logger;
mod profile;
mod retry;
mod shared;
mod state;
mod store;
mod supervise;
mod sync;
mod transport;
mod types;
mod upload;
mod writer;

pub use client::Client;
pub use config::Config;
pub use error::TributaryError;
/// The logger trait under its short name, for Rust callers.
pub use logger::TributaryLogger as Logger;
pub use logger::{LogLevel, TributaryLogger};
/// The transport trait under its short name, for Rust callers.
pub use transport::TributaryTransport as Transport;
pub use transport::{HttpHeader, HttpRequest, HttpResponse, TransportError, TributaryTransport};
pub use types::{DeviceContext, EventOptions, FlushResult, Stats};

/// A clock in milliseconds since the Unix epoch (see [`Client::set_clock`]).
pub type Clock = std::sync::Arc<dyn Fn() -> i64 + Send + Sync>;
