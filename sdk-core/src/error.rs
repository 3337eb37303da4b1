//! The one error type of the public API.

/// Every error the SDK returns. Each message says what went wrong and what to do.
///
/// Exported to Kotlin and Swift as a flat error: the variant plus its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum TributaryError {
    /// The properties or traits argument is not a JSON object.
    #[error(
        "invalid JSON in {argument} at line {line}, column {column}: {reason}; pass a JSON object such as {{\"plan\":\"pro\"}}"
    )]
    InvalidJson {
        /// Which argument was wrong (`properties`, `traits`, ...).
        argument: String,
        /// 1-based line of the error.
        line: u64,
        /// 1-based column of the error.
        column: u64,
        /// What the parser found.
        reason: String,
    },
    /// The serialized event exceeds `Config::max_event_bytes`.
    #[error(
        "event is {size} bytes, over the limit of {limit} bytes (max_event_bytes); send fewer or smaller properties"
    )]
    EventTooLarge {
        /// Size of the serialized event in bytes.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The storage directory or database cannot be used.
    #[error(
        "storage unavailable at {path}: {cause}; check that the directory exists, is writable and is not used by another Tributary client"
    )]
    StorageUnavailable {
        /// The path that failed.
        path: String,
        /// The underlying cause.
        cause: String,
    },
    /// A configuration field has a value that cannot work.
    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig {
        /// The field's name, as in [`crate::Config`].
        field: String,
        /// Why it was rejected and what is allowed.
        reason: String,
    },
    /// The client was shut down; create a new one.
    #[error("the client has been shut down; create a new Client to record more events")]
    ShutDown,
}
