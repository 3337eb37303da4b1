//! Tributary's Rust core: records analytics events durably on the device and
//! delivers each one exactly once to a Segment-compatible `/v1/batch` endpoint.
//!
//! The whole exported surface is UniFFI-compatible (records, enums, one object,
//! one error and one foreign trait), so the Kotlin and Swift packages are thin
//! layers over the same behaviour.
//!
//! ```no_run
//! use tributary::{Client, Config};
//! let config = Config::new("https://ingest.example.com".into(), "WRITE_KEY".into(), "/tmp/tributary".into());
//! let client = Client::new(config, None)?;
//! client.track("Signed Up".into(), r#"{"plan":"pro"}"#.into())?;
//! # Ok::<(), tributary::TributaryError>(())
//! ```

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
mod store_lock;
mod types;
mod upload;
mod writer;

pub use client::Client;
pub use config::Config;
pub use error::TributaryError;
pub use logger::{LogLevel, Logger};
pub use types::{DeviceContext, FlushResult, Stats};
