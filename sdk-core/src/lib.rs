//! Tributary's Rust core: records analytics events durably on the device and
//! delivers each one exactly once to a Segment-compatible `/v1/batch` endpoint.
//!
//! The whole exported surface is UniFFI-compatible (records, enums, one object,
//! one error and one foreign trait), so the Kotlin and Swift packages are thin
//! layers over the same behaviour.
//!
//! # How it works
//! - Recording calls (`track`, `identify`, ...) validate and build the event
//!   JSON on the caller's thread (module `event`) and hand it to the writer
//!   thread over a channel bounded in bytes by `Config::max_buffer_bytes`
//!   (module `writer`). No disk I/O happens on the caller's thread, and the
//!   constructor does not open the database: the writer does, retrying
//!   transient errors (`Client::await_ready`).
//! - The writer group-commits everything pending into SQLite in WAL mode with
//!   `synchronous = FULL` (module `queue`, which documents the files and the
//!   schema), and evicts past `max_queue_bytes` (module `evict`). Consent and
//!   identity live in their own file (module `state`).
//! - Every call returns within a stated bound whatever the disk does (module
//!   `client`), and every recorded event is counted in `Stats` wherever it
//!   ends: `restored + recorded = uploaded + queued + buffered + dropped_*`.
//! - The delivery thread (module `delivery`) makes batches with a persisted
//!   membership and idempotency key (module `batch`), sends them in Segment's
//!   `/v1/batch` format (module `upload`), and retries with persisted
//!   exponential backoff and full jitter (module `retry`).
//! - One client per storage directory is enforced with a file lock (module
//!   `store_lock`).
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

mod batch;
mod client;
mod config;
mod delivery;
mod error;
mod event;
mod evict;
mod logger;
mod queue;
mod retry;
mod shared;
mod state;
mod store_lock;
mod supervise;
mod types;
mod upload;
mod writer;

pub use client::Client;
pub use config::Config;
pub use error::TributaryError;
pub use logger::{LogLevel, Logger};
pub use types::{DeviceContext, FlushResult, Stats};
