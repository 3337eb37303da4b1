//! Tributary's ingest server: a Segment-compatible batch API that makes every
//! accepted event durable before it answers, and writes each event exactly once
//! to partitioned objects in object storage.
//!
//! Stages, each depending only on the ones below it and on their traits:
//!
//! * `http` (private): the front-end: routes, auth, body
//!   decoding, validation and enrichment, idempotency answers, the accept loop;
//!   it appends to a `log::Broker`;
//! * `log`: the durable log behind the `Broker` / `LogReader` traits (the seam a
//!   message broker plugs into), and its local implementation with group commit;
//! * `writer`: log → dedupe → partition buffers → objects, with its committer
//!   thread and rewrites; the exactly-once argument is in its module docs;
//! * `storage`: object storage (`object_store`) and the object formats;
//! * `state`: the state database shared by the stages (dedupe index, intents,
//!   checkpoint, idempotency answers);
//! * `sources`: event sources beside HTTP (MQTT), which validate like the
//!   front-end and append to the same `log::Broker`;
//! * [`tools`]: `compact` and `import`;
//! * [`cluster`]: the distributed mode, where front-ends publish to NATS
//!   JetStream and object writers on other machines consume from it.
//!
//! Only what the binary and the tests use is public.

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod cluster;
pub mod config;
mod dirlock;
mod http;
mod log;
mod metrics;
pub mod server;
mod sources;
mod state;
mod status;
mod storage;
pub mod tools;
mod writer;

pub use state::{Intent, StateDb};
pub use storage::{MULTIPART_THRESHOLD, ObjectSink, Sink, SinkError, format};
