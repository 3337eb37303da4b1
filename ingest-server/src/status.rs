//! Flags shared between stages: the writer's health, read by the front-end's
//! `/ready` and its 503s, and the request to stop.

use std::sync::atomic::AtomicBool;

/// Shared flags between the writer and the front-end.
#[derive(Default)]
pub struct WriterStatus {
    /// Set to ask the writer to drain the log, roll everything and stop.
    pub stop: AtomicBool,
    /// False while uploads or commits are failing.
    pub sink_healthy: AtomicBool,
}
