//! `Client::with_transport`: a transport that only moves bytes, over real
//! loopback HTTP to the scripted collector, and transports that fail, throw
//! or panic (each a failed attempt, retried with the same idempotency key).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tributary::{
    Client, FlushResult, HttpHeader, HttpRequest, HttpResponse, Transport, TransportError,
};

/// A minimal HTTP/1.1 client over `std::net`: one request per connection,
/// the body read to its `Content-Length` (or to the end). It stands for a
/// platform's HTTP stack: it sends what it is given and reports what came back.
#[derive(Default)]
struct StdTransport {
    requests: Mutex<Vec<HttpRequest>>,
}

impl StdTransport {
    fn exchange(request: &HttpRequest) -> std::io::Result<HttpResponse> {
        let rest = request
            .url
            .strip_prefix("http://")
            .ok_or_else(|| std::io::Error::other("only http:// here"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_millis(request.timeout_ms)))?;
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            request.method,
            request.body.len()
        );
        for h in &request.headers {
            head.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&request.body)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut length = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other("connection cut in the headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
                headers.push(HttpHeader {
                    name: name.into(),
                    value: value.trim().into(),
                });
            }
        }
        let mut body = Vec::new();
        match length {
            Some(n) => {
                body.resize(n, 0);
                reader.read_exact(&mut body)?;
            }
            None => {
                reader.read_to_end(&mut body)?;
            }
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl Transport for StdTransport {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        self.requests.lock().unwrap().push(request.clone());
        Self::exchange(&request).map_err(|e| TransportError::Failed {
            reason: e.to_string(),
        })
    }
}

#[test]
fn a_foreign_transport_moves_the_bytes_the_core_prepared() {
    let server = TestServer::start();
    let dir = temp_dir();
    let transport = Arc::new(StdTransport::default());
    let client = Client::with_transport(
        test_config(&server.url(), dir.path()),
        None,
        transport.clone(),
    )
    .unwrap();
    for i in 0..3 {
        client.track("E".into(), props(i, 10)).unwrap();
    }
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2]);
    let sent = transport.requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, format!("{}/v1/batch", server.url()));
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
    };
    assert_eq!(header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert!(header("authorization").unwrap().starts_with("Basic "));
    let recorded = &server.requests()[0];
    assert_eq!(
        header("idempotency-key").as_deref(),
        Some(recorded.key().as_str())
    );
    assert_eq!(
        req.body[..2],
        [0x1f, 0x8b],
        "gzip magic: the core gzipped it"
    );
    assert_eq!(req.connect_timeout_ms, 2_000);
    assert_eq!(req.timeout_ms, 5_000);
}

#[test]
fn retry_after_and_redirects_are_decided_by_the_core_for_any_transport() {
    let server = TestServer::start();
    server.push([
        Reply::Raw {
            status: 307,
            headers: vec![("Location".into(), format!("{}/elsewhere", server.url()))],
            body: String::new(),
        },
        Reply::RetryAfter {
            status: 503,
            value: "1".into(),
        },
    ]);
    let dir = temp_dir();
    let logger = Arc::new(MemoryLogger::default());
    let client = Client::with_transport(
        test_config(&server.url(), dir.path()),
        Some(logger.clone()),
        Arc::new(StdTransport::default()),
    )
    .unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{:?}", summarize(&reqs));
    assert!(
        reqs.iter().all(|r| r.path == "/v1/batch"),
        "redirect not followed"
    );
    assert!(reqs.iter().all(|r| r.key() == reqs[0].key()), "same batch");
    let gap = reqs[2].at.duration_since(reqs[1].at);
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After honoured: {gap:?}"
    );
    assert_eq!(client.stats().retries, 2);
    let logs = logger.all();
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains("307") && m.contains("not followed")),
        "{logs:#?}"
    );
}

/// Fails in a chosen way for the first `failures` calls, then sends for real.
struct Flaky {
    how: &'static str,
    failures: usize,
    calls: AtomicUsize,
    inner: StdTransport,
}

impl Transport for Flaky {
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            match self.how {
                "panic" => panic!("transport bug"),
                "error" => {
                    return Err(TransportError::Failed {
                        reason: "connection reset by peer".into(),
                    });
                }
                _ => {
                    return Ok(HttpResponse {
                        status: 0,
                        headers: vec![],
                        body: vec![],
                    });
                }
            }
        }
        self.inner.send(request)
    }
}

#[test]
fn a_transport_that_fails_panics_or_lies_is_a_retryable_failure() {
    for (how, expected) in [
        ("panic", "the transport panicked: transport bug"),
        ("error", "connection reset by peer"),
        ("status 0", "HTTP status 0"),
    ] {
        let server = TestServer::start();
        let dir = temp_dir();
        let transport = Arc::new(Flaky {
            how,
            failures: 2,
            calls: AtomicUsize::new(0),
            inner: StdTransport::default(),
        });
        let logger = Arc::new(MemoryLogger::default());
        let client = Client::with_transport(
            test_config(&server.url(), dir.path()),
            Some(logger.clone()),
            transport.clone(),
        )
        .unwrap();
        client.track("E".into(), props(0, 0)).unwrap();
        assert_eq!(
            client.flush_blocking(10_000),
            FlushResult::Delivered,
            "{how}"
        );
        assert_eq!(transport.calls.load(Ordering::SeqCst), 3, "{how}");
        let stats = client.stats();
        assert_eq!(stats.retries, 2, "{how}");
        assert_eq!(stats.uploaded_events, 1, "{how}");
        assert!(
            logger.all().iter().any(|(_, m)| m.contains(expected)),
            "{how}: {:#?}",
            logger.all()
        );
        assert_eq!(server.accepted_seqs(), vec![0], "{how}");
        assert_accounted(&stats);
    }
}

#[test]
fn a_cut_connection_through_a_foreign_transport_is_retried_under_the_same_key() {
    let server = TestServer::start();
    server.push([Reply::Close]);
    let dir = temp_dir();
    let client = Client::with_transport(
        test_config(&server.url(), dir.path()),
        None,
        Arc::new(StdTransport::default()),
    )
    .unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:?}", summarize(&reqs));
    assert_eq!(reqs[0].key(), reqs[1].key());
    assert!(client.stats().retries >= 1);
}

/// The mobile build (`--no-default-features`) has no built-in transport:
/// `Client::new` says what to use instead, and touches nothing.
#[cfg(not(feature = "ureq-transport"))]
#[test]
fn without_the_ureq_feature_client_new_asks_for_a_transport() {
    let dir = temp_dir();
    let storage = dir.path().join("store");
    let err = Client::new(test_config("http://127.0.0.1:9", &storage), None)
        .err()
        .expect("no built-in transport in this build");
    assert!(
        matches!(&err, tributary::TributaryError::InvalidConfig { field, reason }
            if field == "transport" && reason.contains("with_transport")),
        "{err:?}"
    );
    assert!(!storage.exists(), "nothing created");
}
