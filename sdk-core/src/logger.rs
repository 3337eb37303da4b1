//! The logger callback interface. Platform layers route it to Logcat or os_log.

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Detailed tracing of internal steps.
    Debug,
    /// Normal lifecycle events (uploads, restarts).
    Info,
    /// Something was dropped or recovered from.
    Warn,
    /// Something failed and needs attention.
    Error,
}

/// Receives the SDK's log messages. It may be called from any of the SDK's
/// background threads, never while holding a lock the caller could need.
/// Without a logger, the SDK is silent.
#[uniffi::export(with_foreign)]
pub trait Logger: Send + Sync {
    /// Called once per message.
    fn log(&self, level: LogLevel, message: String);
}
