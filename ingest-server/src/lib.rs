//! Tributary's ingest server: a Segment-compatible batch API that makes every
//! accepted event durable before it answers, and writes each event exactly once
//! to partitioned objects in object storage.
//!
//! Stages (each behind a trait so it can be swapped):
//!
//! * [`api`]: HTTP front-end (auth, decode, validate, enrich) → [`log::Broker`];
//! * [`log`]: durable local log with group commit ([`log::FileLog`]);
//! * [`writer`]: log → dedupe ([`state`]) → partition buffers → objects;
//! * [`sink`]: object storage ([`sink::Sink`], `object_store`), naming scheme;
//! * [`format`]: NDJSON.gz and Parquet encoders.
//!
//! The exactly-once argument is in [`writer`]'s module docs.

pub mod api;
pub mod committer;
pub mod compact;
pub mod config;
pub mod dirlock;
pub mod event;
pub mod format;
pub mod import;
pub mod log;
pub mod metrics;
pub mod rawjson;
pub mod rewrite;
pub mod serve;
pub mod server;
pub mod sink;
pub mod state;
pub mod writer;
