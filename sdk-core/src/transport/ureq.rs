//! The built-in transport for Rust callers: ureq over rustls with the
//! bundled webpki roots (cargo feature `ureq-transport`, on by default).

use std::time::Duration;

use super::{HttpHeader, HttpRequest, HttpResponse, TransportError, TributaryTransport};
use crate::Config;

/// Most bytes of a response body read (the core reads no more).
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Sends with one ureq agent, configured from the client's timeouts.
pub(crate) struct UreqTransport {
    agent: ::ureq::Agent,
}

impl UreqTransport {
    /// Builds the agent from `connect_timeout_ms` and `request_timeout_ms`.
    pub(crate) fn new(config: &Config) -> Self {
        let agent: ::ureq::Agent = ::ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
            .timeout_global(Some(Duration::from_millis(config.request_timeout_ms)))
            .http_status_as_error(false)
            // Never follow a redirect: ureq would turn the POST into a GET and
            // drop the body, and a collector does not redirect. The core
            // treats a 30x as a failed attempt (see `upload`).
            .max_redirects(0)
            // Mobile apps talk to their collector directly; don't pick up
            // proxies from the environment of a desktop test run.
            .proxy(None)
            .build()
            .into();
        Self { agent }
    }
}

impl TributaryTransport for UreqTransport {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let failed = |e: ::ureq::Error| TransportError::Failed {
            reason: format!("request to {} failed: {e}", request.url),
        };
        let mut builder = self.agent.post(&request.url);
        for header in &request.headers {
            builder = builder.header(&header.name, &header.value);
        }
        let mut response = builder.send(&request.body[..]).map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some(HttpHeader {
                    name: name.as_str().to_string(),
                    value: value.to_str().ok()?.to_string(),
                })
            })
            .collect();
        let body = match response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
        {
            Ok(body) => body,
            // A 2xx whose body cannot be read is not an acknowledgement.
            Err(e) if (200..=299).contains(&status) => {
                return Err(TransportError::Failed {
                    reason: format!("HTTP {status} with an unreadable body: {e}"),
                });
            }
            // Any other status is classified on its status alone.
            Err(_) => Vec::new(),
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
