//! Tributary's ingest server: a Segment-compatible batch API that makes every
//! accepted event durable before it answers, and writes each event exactly once
//! to partitioned objects in object storage.

pub mod format;
