//! HTTP API behaviour of the real binary over loopback: bad input, idempotency,
//! dedupe, partition layout, rolling, backpressure and graceful shutdown.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn ids_of(events: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn bad_input_gets_clear_errors_and_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), &["--roll-interval", "1s"]);
    let auth = basic(KEY);
    let h: &[(&str, &str)] = &[("Authorization", &auth)];

    // Malformed JSON: 400 with the position.
    let r = s.post("/v1/batch", b"{\n \"batch\": [ {\"type\": }", h);
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["code"], "malformed_json");
    assert!(
        r.json["error"].as_str().unwrap().contains("line 2 column"),
        "{}",
        r.text
    );

    // Missing body.
    let r = s.post("/v1/batch", b"", h);
    assert_eq!(r.status, 400);
    assert_eq!(r.json["code"], "empty_body");

    // Wrong types: body not an object, batch not an array.
    let r = s.post("/v1/batch", b"[1,2]", h);
    assert_eq!(r.status, 400);
    assert!(r.json["error"].as_str().unwrap().contains("JSON object"));
    let r = s.send("/v1/batch", &json!({"batch": {"type": "track"}}));
    assert_eq!(r.status, 400);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("`batch` must be an array")
    );

    // Per-event validation: valid ones accepted, invalid ones listed by index.
    let r = s.send(
        "/v1/batch",
        &json!({"batch": [
            track("ok-1"),
            {"type": "track", "userId": {"no": 1}, "event": "E"},
            {"type": "track", "userId": "u"},
            {"type": "group", "userId": "u"},
            {"type": "alias", "userId": "u"},
            {"type": "identify", "traits": "x", "userId": "u"},
            {"type": "bogus", "userId": "u"},
            {"type": "page", "anonymousId": "a", "timestamp": "yesterday"},
            {"type": "screen", "anonymousId": "a", "name": "Home", "messageId": "ok-2"},
            {"type": "identify"},
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["accepted"], 2);
    let rejected = r.json["rejected"].as_array().unwrap();
    let idx: Vec<u64> = rejected
        .iter()
        .map(|x| x["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3, 4, 5, 6, 7, 9]);
    for x in rejected {
        assert!(!x["reason"].as_str().unwrap().is_empty());
    }
    assert!(rejected[1]["reason"].as_str().unwrap().contains("`event`"));
    assert!(rejected[2]["reason"].as_str().unwrap().contains("groupId"));

    // Huge event: rejected by index with the limit named; huge batch: 413.
    let big = "x".repeat(40 * 1024);
    let r = s.send(
        "/v1/batch",
        &json!({"batch": [{"type": "track", "event": "E", "userId": "u", "properties": {"b": big}}]}),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.json["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("32768-byte limit")
    );
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"type": "track", "event": "E", "userId": "u", "messageId": format!("big-{i}"), "properties": {"b": "y".repeat(30 * 1024)}}))
        .collect();
    let r = s.send("/v1/batch", &json!({ "batch": events }));
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.json["code"], "batch_too_large");

    // Gzip bomb: 50 MB of zeros compress to ~50 KB; refused without expanding.
    let bomb = gzip(&vec![b' '; 50 * 1024 * 1024]);
    assert!(bomb.len() < 500 * 1024);
    let r = s.post(
        "/v1/batch",
        &bomb,
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
    );
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.json["error"].as_str().unwrap().contains("decompresses"));

    // Not gzip although it says so; unknown encoding.
    let r = s.post(
        "/v1/batch",
        b"plain",
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json["code"], "bad_gzip");
    let r = s.post(
        "/v1/batch",
        b"{}",
        &[("Authorization", &auth), ("Content-Encoding", "br")],
    );
    assert_eq!(r.status, 415);

    // Valid gzip batch.
    let body = serde_json::to_vec(&json!({"batch": [track("gz-1")]})).unwrap();
    let r = s.post(
        "/v1/batch",
        &gzip(&body),
        &[("Authorization", &auth), ("Content-Encoding", "gzip")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["accepted"], 1);

    // Wrong or missing key: 401 JSON; writeKey in the body works.
    let r = s.post(
        "/v1/batch",
        br#"{"batch":[]}"#,
        &[("Authorization", &basic("nope"))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json["code"], "unauthorized");
    let r = s.post("/v1/batch", br#"{"batch":[]}"#, &[]);
    assert_eq!(r.status, 401);
    let r = s.post(
        "/v1/track",
        format!(r#"{{"writeKey":"{KEY}","event":"E","anonymousId":"a","messageId":"body-key"}}"#)
            .as_bytes(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // Unknown endpoint.
    let r = s.send("/v2/nothing", &json!({}));
    assert_eq!(r.status, 404);

    assert_eq!(s.get("/health").unwrap().0, 200);
    wait_for("objects", 20, || read_events(&s.objects_dir()).len() == 4);
    let events = read_events(&s.objects_dir());
    assert_eq!(ids_of(&events), vec!["body-key", "gz-1", "ok-1", "ok-2"]);
    // The write key is never stored.
    for e in &events {
        assert!(!e.to_string().contains(KEY), "{e}");
        assert_eq!(e["source"], SOURCE);
    }
}

#[test]
fn slow_client_gets_408_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), &["--body-timeout", "1s"]);
    let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        sock,
        "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 1000\r\n\r\n{{\"batch\"",
        basic(KEY)
    )
    .unwrap();
    // Meanwhile a normal client is served.
    let r = s.send("/v1/batch", &json!({"batch": [track("fast")]}));
    assert_eq!(r.status, 200);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = sock.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert_eq!(s.get("/health").unwrap().0, 200);
}

#[test]
fn idempotency_key_replays_the_answer_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::start(&data, &["--roll-interval", "1s"]);
    let auth = basic(KEY);
    let body = serde_json::to_vec(&json!({"batch": [
        {"type": "track", "event": "E", "userId": "u"},
        {"type": "track", "userId": "u"}
    ]}))
    .unwrap();
    let h: &[(&str, &str)] = &[("Authorization", &auth), ("Idempotency-Key", "batch-1")];
    let first = s.post("/v1/batch", &body, h);
    assert_eq!(first.status, 200);
    assert_eq!(first.json["accepted"], 1);
    let again = s.post("/v1/batch", &body, h);
    assert_eq!(
        (again.status, again.text.clone()),
        (200, first.text.clone())
    );
    // Crash right away, restart: the key's answer survived.
    s.kill();
    let s = Server::start(&data, &["--roll-interval", "1s"]);
    let third = s.post("/v1/batch", &body, h);
    assert_eq!((third.status, third.text), (200, first.text));
    // The event without messageId got one assigned; it is stored once.
    wait_for("one object event", 20, || {
        read_events(&s.objects_dir()).len() == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(read_events(&s.objects_dir()).len(), 1);
}

/// The same Idempotency-Key with other events is refused with 422, before and
/// after a crash; a retry with the same events and a new `sentAt` (what a client
/// sends on every retry) still gets the stored answer, and the events of the
/// refused request are not stored.
#[test]
fn idempotency_key_reused_with_other_events_gets_422() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::start(&data, &["--roll-interval", "1s"]);
    let auth = basic(KEY);
    let h: &[(&str, &str)] = &[("Authorization", &auth), ("Idempotency-Key", "k-1")];
    let body = |ids: &[&str], sent_at: &str| {
        let batch: Vec<Value> = ids.iter().map(|id| track(id)).collect();
        serde_json::to_vec(&json!({"sentAt": sent_at, "batch": batch})).unwrap()
    };
    let first = s.post("/v1/batch", &body(&["a", "b"], "2020-01-01T00:00:00Z"), h);
    assert_eq!(first.status, 200, "{}", first.text);
    let retry = s.post("/v1/batch", &body(&["a", "b"], "2020-01-01T00:00:09Z"), h);
    assert_eq!((retry.status, &retry.text), (200, &first.text));
    for other in [&["a", "c"][..], &["a"], &["b", "a"], &["a", "b", "c"]] {
        let r = s.post("/v1/batch", &body(other, "2020-01-01T00:00:09Z"), h);
        assert_eq!(r.status, 422, "{other:?}: {}", r.text);
        assert_eq!(r.json["code"], "idempotency_key_reused");
    }
    s.kill();
    let mut s = Server::start(&data, &["--roll-interval", "1s"]);
    let r = s.post("/v1/batch", &body(&["a", "c"], "2020-01-01T00:00:10Z"), h);
    assert_eq!(r.status, 422, "{}", r.text);
    let r = s.post("/v1/batch", &body(&["a", "b"], "2020-01-01T00:00:10Z"), h);
    assert_eq!((r.status, r.text), (200, first.text));
    assert!(s.terminate().success());
    assert_eq!(ids_of(&read_events(&s.objects_dir())), vec!["a", "b"]);
}

#[test]
fn dedupe_by_message_id_across_batches_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::start(&data, &["--roll-interval", "1s"]);
    for _ in 0..3 {
        let r = s.send(
            "/v1/batch",
            &json!({"batch": [track("a"), track("b"), track("a")]}),
        );
        assert_eq!(r.json["accepted"], 3);
    }
    wait_for("2 events", 20, || read_events(&s.objects_dir()).len() == 2);
    s.kill();
    let s = Server::start(&data, &["--roll-interval", "1s"]);
    let r = s.send("/v1/batch", &json!({"batch": [track("b"), track("c")]}));
    assert_eq!(r.status, 200);
    wait_for("3 events", 20, || read_events(&s.objects_dir()).len() == 3);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ids_of(&read_events(&s.objects_dir())), vec!["a", "b", "c"]);
    assert!(s.metric("ingest_events_duplicate_total") >= 1.0);
}

#[test]
fn partition_layout_and_roll_by_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("d"), &["--roll-interval", "1s"]);
    let r = s.send("/v1/batch", &json!({"batch": [track("p1"), track("p2")]}));
    assert_eq!(r.status, 200);
    wait_for("first object", 10, || {
        !object_files(&s.objects_dir()).is_empty()
    });
    let r = s.send(
        "/v1/track",
        &json!({"event": "E", "userId": "u", "messageId": "p3"}),
    );
    assert_eq!(r.status, 200);
    wait_for("second object", 10, || {
        object_files(&s.objects_dir()).len() == 2
    });
    let files = object_files(&s.objects_dir());
    let now = chrono::Utc::now();
    for f in &files {
        let rel = f
            .strip_prefix(s.objects_dir())
            .unwrap()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 4, "{rel}");
        assert_eq!(parts[0], format!("source={SOURCE}"));
        assert!(parts[1].starts_with("dt=") && parts[1].len() == 13, "{rel}");
        assert!(
            parts[2].starts_with("hour=") && parts[2].len() == 7,
            "{rel}"
        );
        let date = now.format("%Y-%m-%d").to_string();
        assert!(parts[1].ends_with(&date) || now.format("%H:%M").to_string() == "00:00");
        let name = parts[3].strip_suffix(".ndjson.gz").unwrap();
        let (a, b) = name.split_once('-').unwrap();
        assert!(a.len() == 20 && b.len() == 20 && a <= b, "{name}");
    }
    let events = read_events(&s.objects_dir());
    assert_eq!(ids_of(&events), vec!["p1", "p2", "p3"]);
    for e in &events {
        for f in ["receivedAt", "timestamp", "messageId", "source", "type"] {
            assert!(e.get(f).is_some(), "{f} missing in {e}");
        }
    }
    assert_eq!(s.metric("ingest_objects_written_total"), 2.0);
}

#[test]
fn sigterm_drains_and_rolls_open_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(&dir.path().join("d"), &["--roll-interval", "1h"]);
    let mut ids = Vec::new();
    for b in 0..20 {
        let batch: Vec<Value> = (0..50).map(|i| track(&format!("t-{b}-{i}"))).collect();
        ids.extend(
            batch
                .iter()
                .map(|e| e["messageId"].as_str().unwrap().to_string()),
        );
        assert_eq!(s.send("/v1/batch", &json!({ "batch": batch })).status, 200);
    }
    assert!(
        object_files(&s.objects_dir()).is_empty(),
        "1h roll interval: nothing yet"
    );
    let status = s.terminate();
    assert!(status.success(), "exit status {status:?}");
    let mut got = ids_of(&read_events(&s.objects_dir()));
    got.dedup();
    ids.sort();
    assert_eq!(got, ids);
}

#[test]
fn sink_failure_gives_503_then_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir_all(data.join("objects")).unwrap();
    // A plain file where the partition directory must go: every upload fails.
    let blocker = data.join("objects").join(format!("source={SOURCE}"));
    std::fs::write(&blocker, b"not a directory").unwrap();
    let s = Server::start(&data, &["--roll-interval", "1s", "--max-log-lag", "2KiB"]);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let id = format!("bp-{i}");
        let r = s.send("/v1/batch", &json!({"batch": [track(&id)]}));
        match r.status {
            200 => acked.push(id),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = refused.expect("never got 503 while the sink was down");
    assert_eq!(refused.retry_after.as_deref(), Some("5"));
    assert_eq!(refused.json["code"], "storage_behind");
    assert_eq!(s.get("/ready").unwrap().0, 503);
    wait_for("sink errors counted", 20, || {
        s.metric("ingest_sink_errors_total") >= 1.0
    });
    // Storage comes back: the server recovers by itself.
    std::fs::remove_file(&blocker).unwrap();
    wait_for("recovery", 30, || {
        s.send("/v1/batch", &json!({"batch": [track("after")]}))
            .status
            == 200
    });
    acked.push("after".into());
    wait_for("all acked events stored", 30, || {
        read_events(&s.objects_dir()).len() == acked.len()
    });
    acked.sort();
    assert_eq!(ids_of(&read_events(&s.objects_dir())), acked);
    wait_for("ready", 10, || s.get("/ready").unwrap().0 == 200);
}

#[test]
fn cli_help_errors_and_toml_config() {
    let bin = env!("CARGO_BIN_EXE_ingest-server");
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--write-key",
        "--storage",
        "--s3-endpoint",
        "--format",
        "--roll-bytes",
        "--roll-interval",
        "--max-buffer-bytes",
        "--dedupe-window",
        "--config",
        "compact",
        "import",
        "TRIBUTARY_ROLL_BYTES",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let out = std::process::Command::new(bin)
        .args(["--roll-bytes", "2TiB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--roll-bytes"));
    let out = std::process::Command::new(bin)
        .args(["--roll-bytes", "512KiB"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("1MiB to 1GiB"));
    let out = std::process::Command::new(bin)
        .args(["--max-buffer-bytes", "100KiB"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-buffer-bytes 102400 is out of range")
    );
    let out = std::process::Command::new(bin)
        .args(["--format", "csv"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("use `ndjson` or `parquet`"));

    // The TOML file sets the key and the roll interval; its format loses to the
    // environment variable, and the address comes from TRIBUTARY_LISTEN (the
    // harness picks the port).
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "write-key = [\"toml-key=fromtoml\"]\nroll-interval = \"1s\"\nformat = \"parquet\"\n",
    )
    .unwrap();
    let server = tributary_test_support::ServerSpec::new(bin)
        .args(["--config".as_ref(), cfg.as_os_str()])
        .args(["--data-dir".as_ref(), dir.path().join("d").as_os_str()])
        .env("TRIBUTARY_FORMAT", "ndjson")
        .log_file(dir.path().join("d.log"))
        .listen_env("TRIBUTARY_LISTEN")
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}/v1/track", server.url().unwrap());
    let r = agent()
        .post(&url)
        .header("Authorization", &basic("toml-key"))
        .send(br#"{"event":"E","userId":"u","messageId":"t1"}"#.as_slice())
        .unwrap();
    assert_eq!(r.status(), 200, "the key from the TOML file is refused");
    let objects = dir.path().join("d").join("objects");
    wait_for("toml object", 20, || !object_files(&objects).is_empty());
    assert!(
        object_files(&objects)[0]
            .to_string_lossy()
            .contains("source=fromtoml")
    );
    assert!(
        object_files(&objects)[0]
            .to_string_lossy()
            .ends_with(".ndjson.gz"),
        "the file's format beat the environment variable"
    );

    // A key that is no option is refused by name, by the subcommands too.
    std::fs::write(&cfg, "roll-bytes = \"1MiB\"\nrol-interval = \"1s\"\n").unwrap();
    for args in [
        &["--config"][..],
        &["compact", "--config"],
        &["import", "x.ndjson", "--config"],
    ] {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains("key `rol-interval` is not an option"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn generated_write_key_is_stored_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let log = dir.path().join("d.log");
    let mut server = tributary_test_support::ServerSpec::new(env!("CARGO_BIN_EXE_ingest-server"))
        .data_dir(&data)
        .log_file(&log)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let key_file = data.join("write-key");
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.len() >= 32);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let url = format!("{}/v1/track", server.url().unwrap());
    let r = agent()
        .post(&url)
        .header("Authorization", &basic(&key))
        .send(br#"{"event":"E","userId":"u"}"#.as_slice())
        .unwrap();
    assert_eq!(r.status(), 200, "the generated key is refused");
    server.kill();
    let first = std::fs::read_to_string(&log).unwrap();
    assert!(first.contains(&key), "key not printed: {first}");

    // Later starts say where the key is, not what it is (on stdout or stderr).
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    server.kill();
    let out = std::fs::read_to_string(&log).unwrap()[first.len()..].to_string();
    assert!(!out.contains(&key), "key printed again: {out}");
    assert!(out.contains("write-key"), "{out}");
}

/// At `--max-connections` the server stops accepting (the kernel queues new
/// connections) until one closes; `--header-timeout` closes connections that
/// send no complete headers, whether new or idle after a request.
#[test]
fn connections_are_capped_and_slow_or_idle_ones_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("d"),
        &["--max-connections", "2", "--header-timeout", "1s"],
    );
    // Two idle connections (one after a request, one that never sends) hold both slots.
    let mut used = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(used, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    assert!(used.read(&mut buf).unwrap() > 0);
    let mut silent = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    // A third connection is not served while they are open...
    let mut third = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    write!(third, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        third.read(&mut buf).is_err(),
        "served beyond --max-connections"
    );
    // ...and is once the header timeout has closed the two idle ones.
    for (what, idle) in [("idle after a request", &mut used), ("silent", &mut silent)] {
        idle.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let t = std::time::Instant::now();
        let n = idle
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{what} connection not closed: {e}"));
        eprintln!("{what}: closed after {:?}", t.elapsed());
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{what}: {text}");
    }
    third
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

#[test]
fn full_disk_for_the_log_gives_503_then_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    // Files may not grow past 256 KiB: the log segment soon cannot take more.
    let mut s = Server::start_with(&data, &["--roll-interval", "1h"], Some(256 * 1024));
    let mut acked = Vec::new();
    let mut refused = None;
    for b in 0..200 {
        let batch: Vec<Value> = (0..20).map(|i| track(&format!("fd-{b}-{i}"))).collect();
        let r = s.send("/v1/batch", &json!({ "batch": batch }));
        match r.status {
            200 => acked.extend(
                batch
                    .iter()
                    .map(|e| e["messageId"].as_str().unwrap().to_string()),
            ),
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    let refused = refused.expect("the log never failed");
    assert_eq!(refused.json["code"], "log_unavailable", "{}", refused.text);
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap()
            .contains("nothing was accepted")
    );
    assert_eq!(refused.retry_after.as_deref(), Some("5"));
    assert_eq!(s.get("/ready").unwrap().0, 503);
    // Room again: the next request works without a restart.
    lift_fsize_limit(s.pid());
    let r = s.send("/v1/batch", &json!({"batch": [track("after-full")]}));
    assert_eq!(r.status, 200, "{}", r.text);
    acked.push("after-full".into());
    wait_for("ready", 10, || s.get("/ready").unwrap().0 == 200);
    assert!(s.terminate().success());
    acked.sort();
    assert_eq!(ids_of(&read_events(&s.objects_dir())), acked);
}

/// A failed append is cut off the log before its 503 is sent: after a SIGKILL
/// and a restart with room on the disk, none of the refused events is stored,
/// and every acknowledged one is, once. (Without the cut, the part of the failed
/// write that landed holds whole records, which the restart would keep.)
#[test]
fn events_answered_503_by_a_failed_append_never_come_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::start_with(&data, &["--roll-interval", "1h"], Some(256 * 1024));
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for b in 0..200 {
        // Large events, so a failed group leaves whole records before the limit.
        let batch: Vec<Value> = (0..20)
            .map(|i| {
                let mut e = track(&format!("rf-{b}-{i}"));
                e["properties"] = json!({"pad": format!("{b}-{i}-").repeat(200)});
                e
            })
            .collect();
        let ids = batch
            .iter()
            .map(|e| e["messageId"].as_str().unwrap().to_string());
        let r = s.send("/v1/batch", &json!({ "batch": batch }));
        match r.status {
            200 => acked.extend(ids),
            503 => {
                refused.extend(ids);
                break;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert!(!refused.is_empty(), "the log never failed");
    s.kill();
    let mut s = Server::start(&data, &["--roll-interval", "1h"]);
    assert!(s.terminate().success());
    let stored = ids_of(&read_events(&s.objects_dir()));
    let back: Vec<_> = refused.iter().filter(|id| stored.contains(id)).collect();
    assert!(
        back.is_empty(),
        "refused events stored after the crash: {back:?}"
    );
    acked.sort();
    assert_eq!(stored, acked);
}

/// Keys are pruned against the events still in the log, not only the clock.
/// Source `b` holds one event in an open object (1 h roll interval), which holds
/// the checkpoint back, while source `tsrc`'s objects roll by size and commit.
/// The server dies and stays down for longer than the dedupe window; at restart
/// it replays the log from the checkpoint, including every committed `tsrc`
/// event, which must still be recognised.
#[test]
fn a_restart_after_more_than_the_window_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let args = [
        "--roll-interval",
        "1h",
        "--roll-bytes",
        "1MiB",
        "--dedupe-window",
        "2s",
        "--write-key",
        "key-b=b",
    ];
    let mut s = Server::start(&data, &args);
    let r = s.post(
        "/v1/batch",
        &serde_json::to_vec(&json!({"batch": [track("held-open")]})).unwrap(),
        &[("Authorization", &basic("key-b"))],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let mut ids = Vec::new();
    for b in 0..120 {
        let batch: Vec<Value> = (0..50)
            .map(|i| {
                let mut e = track(&format!("pr-{b}-{i}"));
                // Incompressible, so 1 MiB objects roll after ~2,000 events.
                let pad: String = (0..20)
                    .map(|_| format!("{:016x}", rand::random::<u64>()))
                    .collect();
                e["properties"] = json!({ "pad": pad });
                e
            })
            .collect();
        ids.extend(
            batch
                .iter()
                .map(|e| e["messageId"].as_str().unwrap().to_string()),
        );
        assert_eq!(s.send("/v1/batch", &json!({ "batch": batch })).status, 200);
    }
    wait_for("objects rolled by size", 30, || {
        !object_files(&s.objects_dir()).is_empty()
    });
    let committed = ids_of(&read_events(&s.objects_dir()));
    assert!(!committed.is_empty());
    s.kill();
    // Down for longer than the window (and the 10% margin). The restart cuts
    // objects elsewhere (another --roll-bytes), so a replayed object cannot
    // simply replace the one committed before under the same name.
    std::thread::sleep(Duration::from_millis(2_500));
    let mut restart = args;
    restart[3] = "2MiB";
    let mut s = Server::start(&data, &restart);
    assert!(s.terminate().success());
    let mut stored = ids_of(&read_events(&s.objects_dir()));
    let twice: Vec<_> = stored
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    assert!(
        twice.is_empty(),
        "{} events stored twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    stored.retain(|id| id != "held-open");
    ids.sort();
    assert_eq!(stored, ids);
}

/// The cut of a failed append is made durable (fsync) before the log does
/// anything else with the file: checked on the real server's system calls,
/// traced with strace (a power cut, which the fsync is for, cannot be made here).
#[test]
fn a_failed_append_is_cut_and_synced_before_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut s = Server::start_with(&data, &["--roll-interval", "1h"], Some(256 * 1024));
    let trace = dir.path().join("trace");
    let mut tracer = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-s",
            "0",
            "-e",
            "trace=pwrite64,ftruncate,fsync,fdatasync",
            "-o",
        ])
        .arg(&trace)
        .args(["-p", &s.pid().to_string()])
        .spawn()
        .expect("strace (scripts/setup-apt.sh installs it)");
    let status = format!("/proc/{}/status", s.pid());
    wait_for("strace attached", 20, || {
        std::fs::read_to_string(&status)
            .unwrap()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
    });
    let mut failed = false;
    for b in 0..200 {
        let batch: Vec<Value> = (0..20).map(|i| track(&format!("tr-{b}-{i}"))).collect();
        let r = s.send("/v1/batch", &json!({ "batch": batch }));
        if r.status == 503 {
            failed = true;
            // One more append after the failure: it must come after the sync.
            s.send("/v1/batch", &json!({"batch": [track("tr-after")]}));
            break;
        }
    }
    assert!(failed, "the log never failed");
    unsafe_signal(tracer.id(), "INT");
    tracer.wait().unwrap();
    s.kill();
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let efbig = lines
        .iter()
        .position(|l| l.contains("pwrite64(") && l.contains("EFBIG"))
        .unwrap_or_else(|| panic!("no failed pwrite64 in the trace:\n{text}"));
    let fd_of = |l: &str| {
        let args = l.split('(').nth(1)?;
        Some(
            args.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>(),
        )
    };
    let fd = fd_of(lines[efbig]).unwrap();
    // The next calls on that file: the cut, then a sync, before any write.
    let next: Vec<&str> = lines[efbig + 1..]
        .iter()
        .filter(|l| fd_of(l).as_deref() == Some(fd.as_str()))
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .unwrap_or("")
                .split('(')
                .next()
                .unwrap_or("")
        })
        .take(2)
        .collect();
    assert_eq!(
        next,
        ["ftruncate", "fsync"],
        "calls on the log file after the failed write:\n{text}"
    );
}

fn unsafe_signal(pid: u32, name: &str) {
    std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A public write key lets anyone send this: a few KB of gzip holding a 200 KB
/// top-level `context` and 2,500 minimal events. Merged into each event it
/// would store 500 MB (the server used to take 1.1 GB of memory and store every
/// event at 200 KB). The per-event limit holds after the merge, and a request's
/// accepted events are bounded as a whole, with bounded memory.
#[test]
fn a_small_request_cannot_expand_into_oversized_events_or_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::start(&data, &["--roll-interval", "1h"]);
    let auth = basic(KEY);
    let headers: &[(&str, &str)] = &[("Authorization", &auth), ("Content-Encoding", "gzip")];
    let minimal = json!({"type": "track", "event": "e", "userId": "u"});
    let body = |context_bytes: usize, events: usize| {
        let batch = vec![minimal.clone(); events];
        let body = json!({"context": {"pad": "x".repeat(context_bytes)}, "batch": batch});
        gzip(&serde_json::to_vec(&body).unwrap())
    };
    assert_eq!(
        s.send("/v1/batch", &json!({"batch": [track("warm")]}))
            .status,
        200
    );
    let (hwm_before, log_before) = (vm_hwm_kib(s.pid()), dir_bytes(&data.join("log")));

    // 1. Every event over the limit once merged: each refused, by index, with the reason.
    let abuse = body(200_000, 2_500);
    let r = s.post("/v1/batch", &abuse, headers);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["accepted"],
        0,
        "{}",
        &r.text[..r.text.len().min(300)]
    );
    let rejected = r.json["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2_500);
    assert_eq!(rejected[7]["index"], 7);
    let reason = rejected[7]["reason"].as_str().unwrap();
    assert!(
        reason.contains("over the 32768-byte limit") && reason.contains("context"),
        "{reason}"
    );

    // 2. Each event under the limit, but together far over what a request may
    // store (20 KB x 2,500 = 50 MB): 413, as for a body over the limit.
    let r = s.post("/v1/batch", &body(20_000, 2_500), headers);
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.json["code"], "batch_too_large");
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("send fewer events per batch")
    );

    // 3. A legitimate shared context is merged as before.
    let r = s.post("/v1/batch", &body(1_000, 100), headers);
    assert_eq!(
        (r.status, r.json["accepted"].as_u64()),
        (200, Some(100)),
        "{}",
        r.text
    );

    let hwm_after = vm_hwm_kib(s.pid());
    let log_growth = dir_bytes(&data.join("log")) - log_before;
    eprintln!(
        "abuse request: {} B of gzip; peak RSS {} MiB -> {} MiB; log grew {} KiB",
        abuse.len(),
        hwm_before / 1024,
        hwm_after / 1024,
        log_growth / 1024
    );
    assert!(
        hwm_after - hwm_before < 64 * 1024,
        "peak RSS grew by {} KiB",
        hwm_after - hwm_before
    );
    // Only the legitimate 100 events (~1.1 KB each) reached the log.
    assert!(
        log_growth < 400 * 1024,
        "the log grew by {log_growth} bytes"
    );
}

#[test]
fn overload_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("d"),
        // A body timeout far beyond the test: the slot is held until the slow
        // client hangs up, however slow the machine is.
        &["--max-inflight", "1", "--body-timeout", "60s"],
    );
    // A slow client holds the only request slot: headers, then one byte of a
    // 100-byte body. If a probe below took the slot first (the slow request
    // was then answered 429 itself), a new slow client takes it next.
    let slow = || {
        let mut sock = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            sock,
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 100\r\n\r\n{{",
            basic(KEY)
        )
        .unwrap();
        sock.set_nonblocking(true).unwrap();
        sock
    };
    let answered = |sock: &TcpStream| {
        let mut byte = [0u8; 1];
        matches!(sock.peek(&mut byte), Ok(n) if n > 0)
    };
    let mut sock = slow();
    let mut seen = std::collections::BTreeMap::<u16, u32>::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s.send("/v1/batch", &json!({"batch": [track("o1")]}));
        if r.status == 429 {
            assert_eq!(r.retry_after.as_deref(), Some("1"));
            assert_eq!(r.json["code"], "overloaded");
            break;
        }
        *seen.entry(r.status).or_default() += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "no 429 while a slow client holds the only slot; statuses seen: {seen:?}"
        );
        if answered(&sock) {
            sock = slow();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(sock);
    wait_for("slot free again", 10, || {
        s.send("/v1/batch", &json!({"batch": [track("o2")]})).status == 200
    });
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let s = Server::start(&data, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ingest-server"))
        .args(["--listen", "127.0.0.1:0", "--write-key", "k", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("another `ingest-server` is running on the data directory")
            && text.contains("server.lock"),
        "{text}"
    );
    // The first one is unharmed.
    assert_eq!(s.get("/health").unwrap().0, 200);
}

/// Many sources each hold an open object; `--max-buffer-bytes` bounds their memory
/// together by rolling the largest early, and nothing is lost or doubled by it.
#[test]
fn max_buffer_bytes_rolls_the_largest_object_early_across_sources() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("d"),
        &[
            "--roll-interval",
            "10m",
            "--roll-bytes",
            "64MiB",
            "--max-buffer-bytes",
            "1MiB",
            "--write-key",
            "k-a=src-a",
            "--write-key",
            "k-b=src-b",
            "--write-key",
            "k-c=src-c",
        ],
    );
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = || {
        // Hardly compressible padding, so the compressed objects grow fast.
        (0..64)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("{seed:016x}")
            })
            .collect::<String>()
    };
    let mut ids = Vec::new();
    for round in 0..6 {
        for key in ["k-a", "k-b", "k-c"] {
            let batch: Vec<Value> = (0..100)
                .map(|i| {
                    let id = format!("{key}-{round}-{i}");
                    ids.push(id.clone());
                    let mut e = track(&id);
                    e["properties"]["pad"] = json!(noise());
                    e
                })
                .collect();
            let body = gzip(&serde_json::to_vec(&json!({ "batch": batch })).unwrap());
            let r = s.post(
                "/v1/batch",
                &body,
                &[("Authorization", &basic(key)), ("Content-Encoding", "gzip")],
            );
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json["accepted"], 100, "{}", r.text);
        }
    }
    // ~1.8 MB of compressed events against a 1 MiB budget: rolled early, long
    // before the 10-minute interval or the 64 MiB size.
    wait_for("early rolls", 20, || {
        s.metric("ingest_objects_written_total") >= 1.0
    });
    wait_for("buffered gauge within the budget", 10, || {
        s.metric("ingest_writer_buffered_bytes") <= (1 << 20) as f64
    });
    let mut s = s;
    assert!(s.terminate().success());
    let events = read_events(&s.objects_dir());
    let mut got = ids_of(&events);
    ids.sort();
    got.sort();
    assert_eq!(got, ids);
    for src in ["src-a", "src-b", "src-c"] {
        assert!(
            events.iter().any(|e| e["source"] == src),
            "no events of {src}"
        );
    }
}
