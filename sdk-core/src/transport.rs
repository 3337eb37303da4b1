//! The HTTP transport: a foreign trait that only moves bytes.
//!
//! The core builds every request itself (URL, `Authorization`,
//! `Content-Encoding: gzip`, `Idempotency-Key`, `User-Agent`, the gzipped
//! body) and classifies every answer itself (module `upload`, with
//! `tributary-protocol`'s `classify`), so batching, idempotency, gzip,
//! classification and backoff are the same on every platform. A
//! [`TributaryTransport`] only sends the request it is given and reports what came
//! back: the status, the headers and the body, or a [`TransportError`] when
//! no complete answer arrived (no route, a refused or cut connection, a
//! timeout, an unreadable body).
//!
//! The Kotlin library implements it with `HttpURLConnection` and the Swift
//! library with `URLSession`, so the app's proxy, its trusted CAs and any
//! certificate pinning apply. Rust callers get a built-in transport over
//! `ureq` (rustls) with the cargo feature `ureq-transport`, on by default;
//! the mobile library is built without it, which leaves ureq, rustls, ring
//! and webpki out of the binary.
//!
//! A transport that panics, throws an exception it does not declare, or
//! returns nonsense (a status outside 100..=599) is a failed attempt,
//! retried with backoff like a cut connection: nothing crosses back over the
//! FFI boundary as a panic.

use std::sync::Arc;

#[cfg(feature = "ureq-transport")]
pub(crate) mod ureq;

/// One HTTP header, as a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    /// The header name. Names in a response are matched case-insensitively.
    pub name: String,
    /// The header value.
    pub value: String,
}

/// A request the core wants sent: always a `POST` of a gzipped JSON batch.
///
/// Send it exactly as given: the body is already gzipped (do not compress it
/// again, and do not decompress it), every header listed must be sent as is,
/// and no redirect may be followed (report the 30x; the core treats it as a
/// failed attempt).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpRequest {
    /// The HTTP method: `POST`.
    pub method: String,
    /// The full URL, e.g. `https://ingest.example.com/v1/batch`.
    pub url: String,
    /// Headers to send: `Authorization`, `Content-Type`, `Content-Encoding`,
    /// `Idempotency-Key` and `User-Agent`.
    pub headers: Vec<HttpHeader>,
    /// The request body, already gzipped.
    pub body: Vec<u8>,
    /// Time allowed to connect (TCP and TLS), from `Config::connect_timeout_ms`.
    pub connect_timeout_ms: u64,
    /// Time allowed for the whole exchange, response body included, from
    /// `Config::request_timeout_ms`. A transport must give up after it: the
    /// upload thread waits for the answer.
    pub timeout_ms: u64,
}

/// What the server answered, whatever the status.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpResponse {
    /// The HTTP status code, 100..=599.
    pub status: u16,
    /// The response headers; at least `Retry-After` and `Location` when
    /// present. Several values of one header may be given as several entries.
    pub headers: Vec<HttpHeader>,
    /// The response body, decoded from any `Content-Encoding`. The core reads
    /// at most its first 1 MiB; a transport may stop reading there.
    pub body: Vec<u8>,
}

/// Why a request got no complete answer. Every variant is a failed attempt,
/// retried with backoff; the message goes to the log and `Stats::last_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum TransportError {
    /// No complete answer: no route, a refused, reset or cut connection, a
    /// TLS failure, a timeout, or a body that could not be read.
    #[error("{reason}")]
    Failed {
        /// What went wrong, for the log. (Not `message`: Kotlin's
        /// exceptions already have one.)
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for TransportError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            reason: format!("the transport threw an unexpected error: {}", e.reason),
        }
    }
}

/// Sends HTTP requests for the core. Implemented by the platform layers
/// (`HttpURLConnection` on Android, `URLSession` on Apple platforms), or by
/// the built-in ureq transport for Rust callers.
///
/// Called only from the client's upload thread, one request at a time, so
/// blocking in `send` is expected; it must return within the request's
/// `timeout_ms` (plus a little) so that `flush_blocking` and `shutdown` keep
/// their time bounds.
///
/// Named `TributaryTransport` so that the foreign type collides with no app's own
/// `Transport`; Rust code may use the alias [`crate::Transport`].
#[uniffi::export(with_foreign)]
pub trait TributaryTransport: Send + Sync {
    /// Sends `request` and returns the server's answer, or why there is none.
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;
}

/// Calls the transport, turning a panic (a Rust transport's, or a foreign
/// one surfacing as one) into a failed attempt.
pub(crate) fn send_guarded(
    transport: &Arc<dyn TributaryTransport>,
    request: HttpRequest,
) -> Result<HttpResponse, TransportError> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| transport.send(request)));
    match result {
        Ok(Ok(response)) if (100..=599).contains(&response.status) => Ok(response),
        Ok(Ok(response)) => Err(TransportError::Failed {
            reason: format!(
                "the transport reported HTTP status {}, which is not a status code",
                response.status
            ),
        }),
        Ok(Err(e)) => Err(e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(TransportError::Failed {
                reason: format!("the transport panicked: {what}"),
            })
        }
    }
}

/// The built-in transport used by [`crate::Client::new`], if this build has one.
#[cfg(feature = "ureq-transport")]
pub(crate) fn built_in(
    config: &crate::Config,
) -> Result<Arc<dyn TributaryTransport>, crate::TributaryError> {
    Ok(Arc::new(ureq::UreqTransport::new(config)))
}

/// The built-in transport used by [`crate::Client::new`], if this build has one.
#[cfg(not(feature = "ureq-transport"))]
pub(crate) fn built_in(
    _config: &crate::Config,
) -> Result<Arc<dyn TributaryTransport>, crate::TributaryError> {
    Err(crate::TributaryError::InvalidConfig {
        field: "transport".into(),
        reason: "this build of the library has no built-in HTTP transport (cargo feature \
                 `ureq-transport` is off); create the client with Client::with_transport"
            .into(),
    })
}
