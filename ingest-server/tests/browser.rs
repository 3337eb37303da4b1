//! Browser sources against the real binary: the CORS and origin rules over
//! plain HTTP, then Segment's analytics.js in headless Chromium (Debian's
//! `chromium`, driven by npm `playwright-core` through `tests/browser/driver.cjs`)
//! from pages on other origins, every event read back from storage.
//!
//! The Chromium test needs node, chromium and the npm packages that
//! `scripts/setup-apt.sh` and `scripts/setup-web.sh` install. Without them it
//! is skipped with a message, unless `TRIBUTARY_REQUIRE_BROWSER=1` (set by
//! `scripts/test.sh`), where it fails.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::*;

const OTHER_KEY: &str = "other-key";
const PAGE_ORIGIN_HOST: &str = "127.0.0.1";

/// An OPTIONS or GET with an Origin; returns status, the ACAO header, the body.
fn with_origin(
    method: &str,
    url: &str,
    origin: &str,
    extra: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let agent = agent();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Origin", origin);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let mut r = agent.run(req.body(()).unwrap()).unwrap();
    let acao = r
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        r.status().as_u16(),
        acao,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn post_with_origin(
    s: &Server,
    path: &str,
    origin: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut r = agent()
        .post(s.url(path))
        .header("Origin", origin)
        .header("Content-Type", "text/plain;charset=UTF-8")
        .send(serde_json::to_vec(body).unwrap().as_slice())
        .unwrap();
    let acao = r
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        r.status().as_u16(),
        acao,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[test]
fn cors_settings_and_origin_rules_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = "http://shop.example.com";
    let s = Server::start(
        &dir.path().join("d"),
        &[
            "--roll-interval",
            "1s",
            "--write-key",
            &format!("{OTHER_KEY}=osrc"),
            "--allowed-origin",
            &format!("{KEY}={allowed}"),
        ],
    );

    // Preflight: answered by the CORS layer (no body read, no 405), with the
    // headers analytics.js's batching mode and our SDK send.
    let (status, acao, _) = with_origin(
        "OPTIONS",
        &s.url("/v1/b"),
        allowed,
        &[
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type,x-retry-count",
            ),
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(acao.as_deref(), Some(allowed));
    // A preflight from an origin no key allows gets no ACAO: the browser stops.
    let (status, acao, _) = with_origin(
        "OPTIONS",
        &s.url("/v1/t"),
        "http://evil.example",
        &[("Access-Control-Request-Method", "POST")],
    );
    assert_eq!(status, 200);
    assert_eq!(acao, None);

    // Settings for analytics.js, pointing it back at the host it used.
    let (status, acao, body) = with_origin(
        "GET",
        &s.url(&format!("/v1/projects/{KEY}/settings")),
        allowed,
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(acao.as_deref(), Some(allowed));
    let settings: Value = serde_json::from_str(&body).unwrap();
    let seg = &settings["integrations"]["Segment.io"];
    assert_eq!(seg["apiKey"], KEY);
    assert_eq!(seg["apiHost"], format!("127.0.0.1:{}/v1", s.port));
    assert_eq!(seg["protocol"], "http");
    let (status, _, body) = with_origin("GET", &s.url("/v1/projects/nope/settings"), allowed, &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("unknown write key"), "{body}");

    // Every letter route takes a text/plain body with the key inside.
    let letters = [
        ("t", json!({"event": "E", "properties": {"testId": "t"}})),
        ("p", json!({"name": "Home", "properties": {"testId": "p"}})),
        ("i", json!({"traits": {"testId": "i"}})),
        ("g", json!({"groupId": "g1", "traits": {"testId": "g"}})),
        (
            "a",
            json!({"previousId": "old", "properties": {"testId": "a"}}),
        ),
        ("s", json!({"name": "Main", "properties": {"testId": "s"}})),
    ];
    for (letter, fields) in &letters {
        let mut ev = fields.clone();
        ev["writeKey"] = json!(KEY);
        ev["userId"] = json!("u1");
        ev["messageId"] = json!(format!("letter-{letter}"));
        let (status, acao, answer) = post_with_origin(&s, &format!("/v1/{letter}"), allowed, &ev);
        assert_eq!(status, 200, "/v1/{letter}: {answer}");
        assert_eq!(answer["accepted"], 1, "/v1/{letter}: {answer}");
        assert_eq!(acao.as_deref(), Some(allowed));
    }
    // /b with Basic auth, as the batching mode sends it.
    let r = s.post(
        "/v1/b",
        &serde_json::to_vec(&json!({"batch": [track("b-1"), track("b-2")]})).unwrap(),
        &[("Authorization", &basic(KEY)), ("Origin", allowed)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["accepted"], 2);
    // RudderStack's beacon route: the key in the query string.
    let r = s.post(
        &format!("/beacon/v1/batch?writeKey={KEY}"),
        &serde_json::to_vec(&json!({"batch": [track("beacon-1")]})).unwrap(),
        &[("Origin", allowed), ("Content-Type", "text/plain")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // analytics.js's own metrics: answered, not stored.
    let (status, acao, _) = post_with_origin(&s, "/v1/m", allowed, &json!({"series": []}));
    assert_eq!(status, 200);
    assert_eq!(acao.as_deref(), Some(allowed));

    // Refused, with nothing appended: a disallowed origin, and an origin allowed
    // for another key than the one used.
    let (status, acao, answer) = post_with_origin(
        &s,
        "/v1/t",
        "http://evil.example",
        &json!({"writeKey": KEY, "event": "E", "userId": "u", "messageId": "evil-1"}),
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["code"], "origin_not_allowed");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--allowed-origin"),
        "{answer}"
    );
    assert_eq!(acao, None);
    let (status, _, answer) = post_with_origin(
        &s,
        "/v1/t",
        allowed,
        &json!({"writeKey": OTHER_KEY, "event": "E", "userId": "u", "messageId": "evil-2"}),
    );
    assert_eq!(status, 403, "{answer}");
    let (status, _, body) = with_origin(
        "GET",
        &s.url(&format!("/v1/projects/{OTHER_KEY}/settings")),
        allowed,
        &[],
    );
    assert_eq!(status, 403, "{body}");
    // No Origin (the mobile SDK, servers): the key alone decides.
    let r = s.post(
        "/v1/t",
        &serde_json::to_vec(
            &json!({"writeKey": OTHER_KEY, "event": "E", "userId": "u", "messageId": "server-1"}),
        )
        .unwrap(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.metric("ingest_origin_refused_total"), 3.0);

    let expected = [
        "letter-t", "letter-p", "letter-i", "letter-g", "letter-a", "letter-s", "b-1", "b-2",
        "beacon-1", "server-1",
    ];
    wait_for("the accepted events in objects", 30, || {
        read_events(&s.objects_dir()).len() >= expected.len()
    });
    let mut s = s;
    assert!(s.terminate().success());
    let events = read_events(&s.objects_dir());
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(ids, want);
    for e in &events {
        assert!(e.get("writeKey").is_none(), "the write key was stored: {e}");
    }
    let types: BTreeMap<&str, &str> = events
        .iter()
        .map(|e| {
            (
                e["messageId"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
            )
        })
        .collect();
    for (letter, kind) in [
        ("t", "track"),
        ("p", "page"),
        ("i", "identify"),
        ("g", "group"),
        ("a", "alias"),
        ("s", "screen"),
    ] {
        assert_eq!(types[format!("letter-{letter}").as_str()], kind);
    }
}

/// What the Chromium test needs, or why it cannot run.
struct BrowserEnv {
    node_modules: PathBuf,
    chromium: PathBuf,
}

fn browser_env() -> Result<BrowserEnv, String> {
    let cache = std::env::var_os("TRIBUTARY_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tributary")))
        .ok_or("neither TRIBUTARY_CACHE nor HOME is set")?;
    let node_modules = cache.join("npm-web/node_modules");
    let chromium = std::env::var_os("TRIBUTARY_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        return Err("`node` is not on PATH (Debian: apt-get install -y nodejs)".into());
    }
    if !chromium.exists() {
        return Err(format!(
            "{} does not exist; run scripts/setup-apt.sh (Debian's chromium)",
            chromium.display()
        ));
    }
    for pkg in ["playwright-core", "@segment/analytics-next/dist/umd"] {
        if !node_modules.join(pkg).exists() {
            return Err(format!(
                "{} is missing; run scripts/setup-web.sh",
                node_modules.join(pkg).display()
            ));
        }
    }
    Ok(BrowserEnv {
        node_modules,
        chromium,
    })
}

/// The driver process, killed if the test fails early.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The id a page gave an event (`properties.testId`, `traits.testId`, an
/// identify's `context.traits.testId` (RudderStack puts traits there), or for
/// an alias, which has none, `alias:<page path>`).
fn test_id(e: &Value) -> Option<String> {
    if e["type"] == "alias" {
        return e["context"]["page"]["path"]
            .as_str()
            .map(|p| format!("alias:{p}"));
    }
    e["properties"]["testId"]
        .as_str()
        .or_else(|| e["traits"]["testId"].as_str())
        .or_else(|| {
            (e["type"] == "identify")
                .then(|| e["context"]["traits"]["testId"].as_str())
                .flatten()
        })
        .map(str::to_owned)
}

fn stored_ids(s: &Server) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in read_events(&s.objects_dir()) {
        if let Some(id) = test_id(&e) {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

#[test]
fn analytics_next_in_chromium_stores_each_event_once_and_refuses_other_origins() {
    let env = match browser_env() {
        Ok(env) => env,
        Err(why) if std::env::var("TRIBUTARY_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("TRIBUTARY_REQUIRE_BROWSER=1 but the browser test cannot run: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: the Chromium test cannot run: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let page_port = free_port();
    let evil_port = free_port();
    let page_origin = format!("http://{PAGE_ORIGIN_HOST}:{page_port}");
    let s = Server::start(
        &dir.path().join("d"),
        &[
            "--roll-interval",
            "1s",
            "--allowed-origin",
            &format!("{KEY}={page_origin}"),
        ],
    );
    let mut driver = Driver(
        Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/browser/driver.cjs"
            ))
            .env("SERVER", s.url(""))
            .env("WRITE_KEY", KEY)
            .env("PAGE_PORT", page_port.to_string())
            .env("EVIL_PORT", evil_port.to_string())
            .env("NODE_MODULES", &env.node_modules)
            .env("CHROMIUM", &env.chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start node"),
    );
    let stdout = driver.0.stdout.take().unwrap();
    let mut expect: Vec<String> = Vec::new();
    let mut evil = Value::Null;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(j) = line.strip_prefix("EXPECT ") {
            expect = serde_json::from_str(j).unwrap();
        } else if let Some(j) = line.strip_prefix("EVIL ") {
            evil = serde_json::from_str(j).unwrap();
        } else if line == "READY" {
            break;
        }
    }
    assert!(
        !expect.is_empty(),
        "the driver stopped before the pages ran (its output is above)"
    );

    // The disallowed page: the browser itself blocked what CORS covers, and
    // what it sends regardless (a beacon, a no-cors fetch) reached the server
    // and was refused there.
    assert_eq!(evil["beacon"], true, "{evil}");
    assert_eq!(evil["corsFetch"], "blocked", "{evil}");
    assert_eq!(evil["settings"], "blocked", "{evil}");
    wait_for("the disallowed page's requests to be refused", 30, || {
        s.metric("ingest_origin_refused_total") >= 3.0
    });

    // Every expected event arrives (the persisted queues of analytics.js may
    // send some again on the next page: that is what dedupe is for).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = stored_ids(&s);
        if expect.iter().all(|id| got.contains_key(id)) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<&String> = expect.iter().filter(|id| !got.contains_key(*id)).collect();
            panic!("events never stored: {missing:?} (stored: {got:?})");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The pages load analytics.js with cdnURL pointed at the server (the next
    // pages may take the settings from the browser's HTTP cache).
    assert!(
        s.metric("ingest_browser_settings_total") >= 1.0,
        "analytics.js did not load its settings from the server"
    );
    // The page sent one event twice (two 200s): both copies were made durable,
    // so dedupe, not the client, kept it to one object row.
    assert!(
        s.metric("ingest_events_accepted_total") >= (expect.len() + 1) as f64,
        "the retried event was not accepted twice"
    );
    // Close the browser (no more retries), then stop the server gracefully so
    // that every open object is committed, and count.
    let _ = writeln!(driver.0.stdin.take().unwrap(), "close");
    let status = driver.0.wait().unwrap();
    assert!(status.success(), "the driver failed: {status}");
    let mut s = s;
    assert!(s.terminate().success());
    let got = stored_ids(&s);
    for id in &expect {
        assert_eq!(got.get(id), Some(&1), "{id} stored {:?} times", got.get(id));
    }
    let stray: Vec<&String> = got.keys().filter(|id| !expect.contains(id)).collect();
    assert!(stray.is_empty(), "events nobody expected: {stray:?}");
    let events = read_events(&s.objects_dir());
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "a messageId is stored twice");
    for e in &events {
        assert_eq!(e["source"], SOURCE);
        assert!(e.get("writeKey").is_none(), "the write key was stored: {e}");
    }
}
