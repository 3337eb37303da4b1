//! Shared test support: a scripted HTTP collector on 127.0.0.1 and helpers.
//!
//! The server is real HTTP/1.1 (hyper on a small tokio runtime) listening on
//! an ephemeral loopback port. Each test scripts its answers: a queue of
//! replies consumed in order, an optional rule consulted first, and a default
//! reply once the queue is empty. Every request is recorded with its arrival
//! time, headers and gunzipped JSON body.

// Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tributary::{Config, LogLevel, Logger};

/// The queue database's file name inside `Config::storage_dir`.
pub const DB_FILE: &str = "tributary.sqlite3";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with `{"accepted": <events in batch>}`.
    Ok,
    /// This status with an empty JSON object body.
    Status(u16),
    /// This status (200 or 400) listing rejected events by index.
    Rejections {
        /// HTTP status to answer with.
        status: u16,
        /// (index in the batch, reason).
        rejected: Vec<(usize, String)>,
    },
    /// This status (429 or 503) with a `Retry-After` header holding `value`.
    RetryAfter {
        /// HTTP status to answer with.
        status: u16,
        /// Header value: seconds or an HTTP date.
        value: String,
    },
    /// This status, these headers and this body verbatim.
    Raw {
        /// HTTP status to answer with.
        status: u16,
        /// Extra headers (name, value).
        headers: Vec<(String, String)>,
        /// The body text.
        body: String,
    },
    /// Drop the connection without writing any answer.
    Close,
    /// Never answer (until the client gives up or the server is dropped).
    Hang,
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Arrival time (monotonic).
    pub at: Instant,
    /// Arrival time (wall clock), for comparison with HTTP dates.
    pub at_wall: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Request path, e.g. `/v1/batch`.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: HashMap<String, String>,
    /// Body bytes as received on the wire (gzip if the client compressed).
    pub wire_bytes: usize,
    /// The body, decompressed and parsed; `None` if it was not JSON.
    pub body: Option<Value>,
    /// What the server answered (debug text).
    pub reply: String,
}

impl Recorded {
    /// A header by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `Idempotency-Key` header.
    pub fn key(&self) -> String {
        self.header("idempotency-key")
            .unwrap_or_default()
            .to_string()
    }

    /// The events of the batch body (empty if none).
    pub fn events(&self) -> Vec<Value> {
        self.body
            .as_ref()
            .and_then(|b| b.get("batch"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// The `messageId`s of the batch, in order.
    pub fn message_ids(&self) -> Vec<String> {
        self.events().iter().map(message_id).collect()
    }

    /// The `properties.seq` of each event, in order.
    pub fn seqs(&self) -> Vec<u64> {
        self.events().iter().filter_map(seq).collect()
    }
}

/// A rule consulted before the queue; returning `None` falls through.
pub type Rule = Box<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct Script {
    queue: VecDeque<Reply>,
    default: Option<Reply>,
    rule: Option<Rule>,
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The scripted collector. Dropping it stops the server.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 answering 200 to everything.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(Script::default()),
            requests: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    // An error here is how `Reply::Close` drops the socket unanswered.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Base URL to put in `Config::endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues replies, consumed one per request in order.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.script.lock().unwrap().queue.extend(replies);
    }

    /// The reply once the queue is empty (initially `Reply::Ok`).
    pub fn set_default(&self, reply: Reply) {
        self.shared.script.lock().unwrap().default = Some(reply);
    }

    /// A rule consulted before the queue for every request.
    pub fn set_rule(&self, rule: impl Fn(&Recorded) -> Option<Reply> + Send + Sync + 'static) {
        self.shared.script.lock().unwrap().rule = Some(Box::new(rule));
    }

    /// Removes the rule.
    pub fn clear_rule(&self) {
        self.shared.script.lock().unwrap().rule = None;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// The most requests that were ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Events of the requests answered with 200 (the accepted ones), with duplicates.
    pub fn accepted_events(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.reply == "Ok")
            .flat_map(Recorded::events)
            .collect()
    }

    /// `seq`s of the accepted events, sorted, with duplicates.
    pub fn accepted_seqs(&self) -> Vec<u64> {
        let mut seqs: Vec<u64> = self.accepted_events().iter().filter_map(seq).collect();
        seqs.sort_unstable();
        seqs
    }

    /// Polls until `cond` holds on the recorded requests, or panics after `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&[Recorded]) -> bool,
    ) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if cond(&reqs) {
                return reqs;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; server saw {} requests: {:#?}",
                    reqs.len(),
                    summarize(&reqs)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the accepted events cover `n` distinct `seq`s.
    pub fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait_until(timeout, &format!("{n} accepted events"), |reqs| {
            let mut seqs: Vec<u64> = reqs
                .iter()
                .filter(|r| r.reply == "Ok")
                .flat_map(Recorded::seqs)
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            seqs.len() >= n
        })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Hung handlers never finish: do not wait for them.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Short description of requests, for assertion messages.
pub fn summarize(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            format!(
                "{} {} key={} seqs={:?} -> {}",
                r.method,
                r.path,
                r.key(),
                r.seqs(),
                r.reply
            )
        })
        .collect()
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let at = Instant::now();
    let at_wall = SystemTime::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let raw = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let body = decode_body(&raw, gzip);
    let mut recorded = Recorded {
        at,
        at_wall,
        method,
        path,
        headers,
        wire_bytes: raw.len(),
        body,
        reply: String::new(),
    };
    let reply = {
        let mut script = shared.script.lock().unwrap();
        let from_rule = script.rule.as_ref().and_then(|rule| rule(&recorded));
        from_rule
            .or_else(|| script.queue.pop_front())
            .or_else(|| script.default.clone())
            .unwrap_or(Reply::Ok)
    };
    let batch_len = recorded.events().len();
    recorded.reply = reply_name(&reply);
    shared.requests.lock().unwrap().push(recorded);

    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let result = answer(reply, batch_len).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

fn reply_name(reply: &Reply) -> String {
    match reply {
        Reply::Ok => "Ok".into(),
        Reply::Delay(_, inner) => reply_name(inner),
        other => format!("{other:?}"),
    }
}

/// The collector's answer as the protocol crate defines it.
fn answer_body(batch_len: usize, rejected: Vec<tributary_protocol::Rejection>) -> Value {
    let answer = tributary_protocol::BatchResponse {
        accepted: batch_len.saturating_sub(rejected.len()),
        rejected,
    };
    serde_json::to_value(answer).unwrap_or_default()
}

async fn answer(reply: Reply, batch_len: usize) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let mut reply = reply;
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    let json = |status: u16, body: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    Ok(match reply {
        Reply::Ok => json(200, answer_body(batch_len, Vec::new())),
        Reply::Status(s) => json(s, serde_json::json!({})),
        Reply::Rejections { status, rejected } => {
            let list = rejected
                .into_iter()
                .map(|(index, reason)| tributary_protocol::Rejection { index, reason })
                .collect();
            json(status, answer_body(batch_len, list))
        }
        Reply::RetryAfter { status, value } => {
            let mut resp = json(status, serde_json::json!({}));
            resp.headers_mut()
                .insert("retry-after", value.parse().unwrap());
            resp
        }
        Reply::Raw {
            status,
            headers,
            body,
        } => {
            let mut builder = Response::builder().status(status);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.body(Full::new(Bytes::from(body))).unwrap()
        }
        Reply::Close => return Err(std::io::Error::other("scripted close")),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Delay(..) => unreachable!(),
    })
}

fn decode_body(raw: &[u8], gzip: bool) -> Option<Value> {
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        raw.to_vec()
    };
    serde_json::from_slice(&bytes).ok()
}

/// The `messageId` of an event.
pub fn message_id(event: &Value) -> String {
    event["messageId"].as_str().unwrap_or_default().to_string()
}

/// `properties.seq` (or `traits.seq`) of an event.
pub fn seq(event: &Value) -> Option<u64> {
    event["properties"]["seq"]
        .as_u64()
        .or_else(|| event["traits"]["seq"].as_u64())
}

/// A config for tests: uploads only when asked (or on the triggers a test
/// sets), with short retry delays and timeouts so every test stays fast.
pub fn test_config(endpoint: &str, dir: &Path) -> Config {
    let mut c = Config::new(
        endpoint.to_string(),
        "test-write-key".into(),
        dir.to_string_lossy().into_owned(),
    );
    c.flush_at = 10_000;
    c.flush_interval_ms = 3_600_000;
    c.retry_base_delay_ms = 20;
    c.retry_max_delay_ms = 100;
    c.connect_timeout_ms = 2_000;
    c.request_timeout_ms = 5_000;
    c
}

/// Properties JSON with a sequence number and `pad` bytes of filler.
pub fn props(seq: u64, pad: usize) -> String {
    serde_json::json!({ "seq": seq, "pad": "x".repeat(pad) }).to_string()
}

/// Map of `seq` -> set of `messageId`s seen in all requests (accepted or not).
pub fn ids_by_seq(reqs: &[Recorded]) -> BTreeMap<u64, Vec<String>> {
    let mut map: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for ev in reqs.iter().flat_map(Recorded::events) {
        if let Some(s) = seq(&ev) {
            let ids = map.entry(s).or_default();
            let id = message_id(&ev);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    map
}

/// A logger that keeps every message.
#[derive(Default)]
pub struct MemoryLogger {
    /// (level, message) in arrival order.
    pub messages: Mutex<Vec<(LogLevel, String)>>,
}

impl Logger for MemoryLogger {
    fn log(&self, level: LogLevel, message: String) {
        self.messages.lock().unwrap().push((level, message));
    }
}

impl MemoryLogger {
    /// A snapshot of the messages.
    pub fn all(&self) -> Vec<(LogLevel, String)> {
        self.messages.lock().unwrap().clone()
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh temporary storage directory (removed on drop).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tributary-test-")
        .tempdir()
        .unwrap()
}

/// Every file under `dir` (recursive).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
pub fn any_file_contains(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    files_under(dir).into_iter().find(|p| {
        std::fs::read(p)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

/// Normalizes a `Duration` in ms for messages.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The sum of every figure an event can end up in, against where they come
/// from: `restored + recorded = uploaded + queued + buffered + drops`.
/// Returns `(sources, destinations)`.
pub fn accounting(s: &tributary::Stats) -> (u64, u64) {
    let sources = s.restored_events + s.recorded_events;
    let destinations = s.uploaded_events
        + s.queued_events
        + s.buffered_events
        + s.dropped_age
        + s.dropped_byte_cap
        + s.dropped_rejected
        + s.dropped_too_large
        + s.dropped_backpressure
        + s.dropped_shutdown
        + s.dropped_opt_out
        + s.dropped_corrupt;
    (sources, destinations)
}

/// Asserts that every event is accounted for (see [`accounting`]).
pub fn assert_accounted(s: &tributary::Stats) {
    let (sources, destinations) = accounting(s);
    assert_eq!(
        sources, destinations,
        "restored + recorded != uploaded + queued + buffered + drops: {s:#?}"
    );
}
