//! A small HTTP client for the harness: health checks, metrics, and raw
//! Segment batches (for what the SDK cannot do, such as a skewed clock).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

/// An agent that returns 4xx/5xx as responses, not errors (the harness's).
pub use tributary_test_support::agent;

/// The outcome of posting one raw batch.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status, or `None` if the connection failed or was cut.
    pub status: Option<u16>,
    /// The body (empty on failure).
    pub body: String,
}

impl RawResponse {
    /// The body read as a batch answer, when it is one.
    pub fn answer(&self) -> Option<tributary_protocol::BatchResponse> {
        serde_json::from_str(&self.body).ok()
    }
}

/// POSTs `{"batch": events, "sentAt": sent_at}` gzip-compressed to
/// `{endpoint}/v1/batch` with Basic auth and an `Idempotency-Key`, as the SDK does.
pub fn post_batch(
    agent: &ureq::Agent,
    endpoint: &str,
    write_key: &str,
    idempotency_key: &str,
    events: &[Value],
    sent_at: &str,
) -> RawResponse {
    let body = serde_json::json!({ "batch": events, "sentAt": sent_at });
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(body.to_string().as_bytes()).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let auth = basic_auth(write_key);
    let result = agent
        .post(format!("{endpoint}{}", tributary_protocol::BATCH_PATH))
        .header("Authorization", &auth)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header(tributary_protocol::header::IDEMPOTENCY_KEY, idempotency_key)
        .send(&bytes[..]);
    match result {
        Ok(mut resp) => RawResponse {
            status: Some(resp.status().as_u16()),
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        },
        Err(_) => RawResponse {
            status: None,
            body: String::new(),
        },
    }
}

/// `Basic base64(write_key:)`.
pub fn basic_auth(write_key: &str) -> String {
    format!("Basic {}", base64(format!("{write_key}:").as_bytes()))
}

fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_rfc7617() {
        assert_eq!(super::basic_auth("key"), "Basic a2V5Og==");
    }
}
