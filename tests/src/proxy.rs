//! A fault-injecting HTTP/1.1 proxy on loopback, scriptable while it runs.
//!
//! It parses each request and response just enough to find where they end
//! (Content-Length or chunked), so a fault applies to one whole exchange:
//! - **drop**: close the client's connection without forwarding the request;
//! - **delay**: wait, then forward;
//! - **cut**: forward the request, read the server's full response, then close
//!   the client's connection without sending it. The server has processed
//!   the batch but the client never sees the 200: the duplicate maker;
//! - **503**: answer `503 Service Unavailable` with `Retry-After` itself.
//!
//! It also counts requests and bytes both ways, and can hand every forwarded
//! exchange to an observer (the benchmark uses it to time acknowledgements).

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do with one exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward it untouched.
    Pass,
    /// Close the client's connection without forwarding.
    Drop,
    /// Forward after this delay.
    Delay(Duration),
    /// Forward, read the response, close the client's connection without it.
    Cut,
    /// Answer 503 with `Retry-After: <secs>` without forwarding.
    Unavailable {
        /// The `Retry-After` value in seconds.
        retry_after_secs: u32,
    },
}

/// Random faults applied to each exchange not taken by the script.
/// Probabilities are checked in order drop, unavailable, cut; the rest pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Probability of [`Fault::Drop`].
    pub drop: f64,
    /// Probability of [`Fault::Unavailable`] (with `Retry-After: 1`).
    pub unavailable: f64,
    /// Probability of [`Fault::Cut`].
    pub cut: f64,
    /// Added delay before forwarding every passing exchange.
    pub delay: Option<Duration>,
    /// Cut the first response for every new `Idempotency-Key`, pass the
    /// retries: every batch is then processed, lost, and retried.
    pub cut_first_attempt_per_key: bool,
}

impl FaultPlan {
    /// Everything passes.
    pub fn pass() -> Self {
        Self::default()
    }

    /// Every connection is dropped (the server looks unreachable).
    pub fn unreachable() -> Self {
        Self {
            drop: 1.0,
            ..Self::default()
        }
    }

    /// Every request gets 503 with `Retry-After: 1`.
    pub fn unavailable() -> Self {
        Self {
            unavailable: 1.0,
            ..Self::default()
        }
    }
}

/// What one forwarded exchange looked like, for an observer.
pub struct Exchange<'a> {
    /// The request line and headers.
    pub request_head: &'a str,
    /// The request body as sent (still gzip if the client gzipped it).
    pub request_body: &'a [u8],
    /// The upstream's response status.
    pub status: u16,
    /// Whether the client received the response (false when cut).
    pub delivered: bool,
}

/// Called for every exchange that reached the upstream.
pub type Observer = Arc<dyn Fn(&Exchange<'_>) + Send + Sync>;

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received from clients.
    pub requests: u64,
    /// Requests forwarded to the upstream.
    pub forwarded: u64,
    /// Responses the upstream answered with 2xx.
    pub upstream_2xx: u64,
    /// Exchanges dropped.
    pub dropped: u64,
    /// Responses cut after the upstream processed the request.
    pub cut: u64,
    /// 503s answered by the proxy itself.
    pub unavailable: u64,
    /// Forwards that failed because the upstream was unreachable.
    pub upstream_errors: u64,
    /// Responses marked `idempotent-replayed: true`: the server recognised a
    /// retried batch by its `Idempotency-Key` and answered without storing it again.
    pub replayed: u64,
    /// Bytes read from clients (request heads and bodies).
    pub bytes_from_clients: u64,
    /// Bytes written to clients (response heads and bodies).
    pub bytes_to_clients: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    upstream_2xx: AtomicU64,
    dropped: AtomicU64,
    cut: AtomicU64,
    unavailable: AtomicU64,
    upstream_errors: AtomicU64,
    replayed: AtomicU64,
    bytes_from_clients: AtomicU64,
    bytes_to_clients: AtomicU64,
}

struct Shared {
    upstream: Mutex<SocketAddr>,
    plan: Mutex<FaultPlan>,
    script: Mutex<VecDeque<Fault>>,
    seen_keys: Mutex<HashSet<String>>,
    observer: Mutex<Option<Observer>>,
    counters: Counters,
    stopping: AtomicBool,
}

/// The proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream),
            plan: Mutex::new(FaultPlan::pass()),
            script: Mutex::new(VecDeque::new()),
            seen_keys: Mutex::new(HashSet::new()),
            observer: Mutex::new(None),
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        std::thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .expect("spawn proxy");
        Self { addr, shared }
    }

    /// `http://127.0.0.1:PORT`, the endpoint clients should use.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points the proxy at another upstream (a restarted server's new port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }

    /// Replaces the random fault plan.
    pub fn set_plan(&self, plan: FaultPlan) {
        *lock(&self.shared.plan) = plan;
    }

    /// Queues faults for the next exchanges, before the plan applies again.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared.script).extend(faults);
    }

    /// Sets the observer of forwarded exchanges.
    pub fn set_observer(&self, observer: Observer) {
        *lock(&self.shared.observer) = Some(observer);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            requests: get(&c.requests),
            forwarded: get(&c.forwarded),
            upstream_2xx: get(&c.upstream_2xx),
            dropped: get(&c.dropped),
            cut: get(&c.cut),
            unavailable: get(&c.unavailable),
            upstream_errors: get(&c.upstream_errors),
            replayed: get(&c.replayed),
            bytes_from_clients: get(&c.bytes_from_clients),
            bytes_to_clients: get(&c.bytes_to_clients),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || serve_connection(stream, &shared));
    }
}

/// One HTTP message: its head as text and its raw bytes (head plus framed body).
struct Message {
    head: String,
    raw: Vec<u8>,
    body: Vec<u8>,
}

fn serve_connection(client: TcpStream, shared: &Shared) {
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut client = client;
    let mut upstream: Option<(TcpStream, BufReader<TcpStream>)> = None;
    loop {
        let Ok(Some(request)) = read_message(&mut reader, false, false) else {
            return;
        };
        let c = &shared.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        c.bytes_from_clients
            .fetch_add(request.raw.len() as u64, Ordering::Relaxed);
        match choose_fault(shared, &request.head) {
            Fault::Drop => {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Fault::Unavailable { retry_after_secs } => {
                c.unavailable.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"error":"service unavailable (injected by the e2e proxy)"}"#;
                let response = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after_secs}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = client.write_all(response.as_bytes());
                c.bytes_to_clients
                    .fetch_add(response.len() as u64, Ordering::Relaxed);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Fault::Delay(delay) => {
                std::thread::sleep(delay);
                if !forward(shared, &mut client, &mut upstream, &request, false) {
                    return;
                }
            }
            Fault::Cut => {
                forward(shared, &mut client, &mut upstream, &request, true);
                return;
            }
            Fault::Pass => {
                if !forward(shared, &mut client, &mut upstream, &request, false) {
                    return;
                }
            }
        }
    }
}

fn choose_fault(shared: &Shared, request_head: &str) -> Fault {
    if let Some(fault) = lock(&shared.script).pop_front() {
        return fault;
    }
    let plan = lock(&shared.plan).clone();
    if plan.cut_first_attempt_per_key
        && let Some(key) = header(request_head, "idempotency-key")
        && lock(&shared.seen_keys).insert(key.to_string())
    {
        return Fault::Cut;
    }
    let roll = fastrand::f64();
    if roll < plan.drop {
        Fault::Drop
    } else if roll < plan.drop + plan.unavailable {
        Fault::Unavailable {
            retry_after_secs: 1,
        }
    } else if roll < plan.drop + plan.unavailable + plan.cut {
        Fault::Cut
    } else if let Some(delay) = plan.delay {
        Fault::Delay(delay)
    } else {
        Fault::Pass
    }
}

/// Forwards one request and relays (or cuts) the response. Returns whether
/// the client connection can carry another request.
fn forward(
    shared: &Shared,
    client: &mut TcpStream,
    upstream: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    request: &Message,
    cut: bool,
) -> bool {
    let c = &shared.counters;
    let response = match exchange_upstream(shared, upstream, request) {
        Ok(response) => response,
        Err(_) => {
            // The server is down: the client sees its connection closed.
            c.upstream_errors.fetch_add(1, Ordering::Relaxed);
            *upstream = None;
            let _ = client.shutdown(Shutdown::Both);
            return false;
        }
    };
    c.forwarded.fetch_add(1, Ordering::Relaxed);
    let status = status_code(&response.head);
    if (200..300).contains(&status) {
        c.upstream_2xx.fetch_add(1, Ordering::Relaxed);
    }
    if header(&response.head, "idempotent-replayed").is_some_and(|v| v == "true") {
        c.replayed.fetch_add(1, Ordering::Relaxed);
    }
    let observer = lock(&shared.observer).clone();
    if cut {
        c.cut.fetch_add(1, Ordering::Relaxed);
        let _ = client.shutdown(Shutdown::Both);
    } else if client.write_all(&response.raw).is_ok() {
        c.bytes_to_clients
            .fetch_add(response.raw.len() as u64, Ordering::Relaxed);
    } else {
        return false;
    }
    if let Some(observer) = observer {
        observer(&Exchange {
            request_head: &request.head,
            request_body: &request.body,
            status,
            delivered: !cut,
        });
    }
    let closes =
        |head: &str| header(head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if closes(&response.head) || closes(&request.head) {
        *upstream = None;
        let _ = client.shutdown(Shutdown::Both);
        return false;
    }
    !cut
}

fn exchange_upstream(
    shared: &Shared,
    upstream: &mut Option<(TcpStream, BufReader<TcpStream>)>,
    request: &Message,
) -> std::io::Result<Message> {
    // A kept-alive upstream connection may have been closed by a server
    // restart: retry once on a fresh connection, but only if nothing came back.
    for attempt in 0..2 {
        if upstream.is_none() {
            let addr = *lock(&shared.upstream);
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let reader = BufReader::new(stream.try_clone()?);
            *upstream = Some((stream, reader));
        }
        let fresh = attempt == 1;
        let (stream, reader) = upstream.as_mut().expect("connected above");
        let sent = stream.write_all(&request.raw);
        let response = sent.and_then(|()| read_message(reader, true, is_head(&request.head)));
        match response {
            Ok(Some(response)) => return Ok(response),
            Ok(None) if !fresh => *upstream = None,
            Err(e) if !fresh && e.kind() != std::io::ErrorKind::TimedOut => *upstream = None,
            Ok(None) => {
                *upstream = None;
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Err(e) => {
                *upstream = None;
                return Err(e);
            }
        }
    }
    Err(std::io::ErrorKind::UnexpectedEof.into())
}

fn is_head(request_head: &str) -> bool {
    request_head.starts_with("HEAD ")
}

fn status_code(response_head: &str) -> u16 {
    response_head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then_some(value.trim())
    })
}

/// Reads one message. `Ok(None)` on a clean EOF before any byte.
fn read_message(
    reader: &mut impl BufRead,
    is_response: bool,
    head_request: bool,
) -> std::io::Result<Option<Message>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        let line = &raw[before..];
        // Skip stray blank lines before a request line (RFC 9112 2.2).
        if before == 0 && (line == b"\r\n" || line == b"\n") {
            raw.clear();
            continue;
        }
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let status = if is_response { status_code(&head) } else { 0 };
    let no_body = is_response
        && (head_request || (100..200).contains(&status) || status == 204 || status == 304);
    let chunked = header(&head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    if no_body {
    } else if chunked {
        read_chunked(reader, &mut raw, &mut body)?;
    } else if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
        raw.extend_from_slice(&body);
    } else if is_response {
        // No framing: the body runs to the end of the connection.
        reader.read_to_end(&mut body)?;
        raw.extend_from_slice(&body);
    }
    Ok(Some(Message { head, raw, body }))
}

fn read_chunked(
    reader: &mut impl BufRead,
    raw: &mut Vec<u8>,
    body: &mut Vec<u8>,
) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        let size_text = text.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "chunk size"))?;
        if size == 0 {
            // Trailers, then the final blank line.
            loop {
                let mut trailer = Vec::new();
                if reader.read_until(b'\n', &mut trailer)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                raw.extend_from_slice(&trailer);
                if trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(());
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        raw.extend_from_slice(&chunk);
        body.extend_from_slice(&chunk[..size]);
    }
}
