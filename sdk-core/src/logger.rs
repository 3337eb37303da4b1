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
/// background threads, and from a recording call's thread when that call
/// drops its event (too large, or after shutdown); never while holding a lock
/// the caller could need.
/// Without a logger, the SDK is silent.
///
/// Named `TributaryLogger` so that the Swift protocol does not collide with
/// `os.Logger`; Rust code may use the alias [`crate::Logger`].
#[uniffi::export(with_foreign)]
pub trait TributaryLogger: Send + Sync {
    /// Called once per message.
    fn log(&self, level: LogLevel, message: String);
}

/// The SDK's internal handle on the optional foreign logger.
///
/// Callers must not hold any internal lock while calling [`Log::log`]: a
/// foreign logger may call back into the client (e.g. `stats()`).
#[derive(Clone, Default)]
pub(crate) struct Log {
    inner: Option<std::sync::Arc<dyn TributaryLogger>>,
}

impl Log {
    /// Wraps the logger given to `Client::new`; `None` keeps the SDK silent.
    pub(crate) fn new(inner: Option<std::sync::Arc<dyn TributaryLogger>>) -> Self {
        Self { inner }
    }

    /// Sends one message, swallowing any panic from the foreign side so that a
    /// faulty logger can never take down a background thread.
    pub(crate) fn log(&self, level: LogLevel, message: impl Into<String>) {
        if let Some(logger) = &self.inner {
            let message = message.into();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                logger.log(level, message);
            }));
        }
    }

    /// Shorthand for [`LogLevel::Debug`].
    pub(crate) fn debug(&self, message: impl Into<String>) {
        self.log(LogLevel::Debug, message);
    }

    /// Shorthand for [`LogLevel::Info`].
    pub(crate) fn info(&self, message: impl Into<String>) {
        self.log(LogLevel::Info, message);
    }

    /// Shorthand for [`LogLevel::Warn`].
    pub(crate) fn warn(&self, message: impl Into<String>) {
        self.log(LogLevel::Warn, message);
    }

    /// Shorthand for [`LogLevel::Error`].
    pub(crate) fn error(&self, message: impl Into<String>) {
        self.log(LogLevel::Error, message);
    }
}
