//! The MQTT source against Debian's `mosquitto` on a random loopback port, with
//! a real MQTT client (rumqttc) publishing QoS 1 events: the server is
//! SIGKILLed mid-stream, publishes go on while it is down, mosquitto is
//! restarted, malformed payloads come in between, and in the end every valid
//! event is stored exactly once and every bad payload is a dead letter.
//!
//! Needs `/usr/sbin/mosquitto` (scripts/setup-apt.sh). Without it the test is
//! skipped with a message, unless `TRIBUTARY_REQUIRE_MQTT=1` (scripts/test.sh).

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use support::*;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const SERVER_USER: &str = "tributary";
const DEVICE_USER: &str = "device";
const PASSWORD: &str = "s3cret-pw";

/// mosquitto from a config written here; SIGTERM (which saves its store) on drop.
struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
}

impl Mosquitto {
    fn start(dir: &Path) -> Mosquitto {
        // mosquitto drops from root to the `mosquitto` user: everything it reads
        // or writes after that must be reachable by that user.
        std::fs::create_dir_all(dir).unwrap();
        for d in [dir.parent().unwrap(), dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let store = dir.join("store");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
        let passwd = dir.join("passwd");
        for (i, user) in [SERVER_USER, DEVICE_USER].iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let st = cmd
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(PASSWORD)
                .stdout(Stdio::null())
                .status()
                .expect("mosquitto_passwd");
            assert!(st.success());
        }
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous false\n\
                 password_file {}\n\
                 persistence true\n\
                 persistence_location {}/\n\
                 autosave_interval 1\n\
                 max_queued_messages 0\n\
                 log_dest stderr\n\
                 log_type error\n\
                 log_type warning\n",
                passwd.display(),
                store.display()
            ),
        )
        .unwrap();
        let mut m = Mosquitto {
            child: None,
            conf,
            port,
        };
        m.run();
        m
    }

    fn run(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("cannot start mosquitto");
        self.child = Some(child);
        let port = self.port;
        wait_for("mosquitto to listen", 20, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGTERM (mosquitto saves its store), wait, start again on the same port.
    fn restart(&mut self) {
        self.stop();
        self.run();
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Publishes every message with QoS 1 and returns once the broker has acked all.
fn publish_all(port: u16, msgs: &[(String, Vec<u8>)], pace: Option<Duration>, done: &AtomicBool) {
    let mut o = MqttOptions::new(
        format!("device-publisher-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    o.set_credentials(DEVICE_USER, PASSWORD);
    o.set_keep_alive(Duration::from_secs(10));
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(o, 64);
    let n = msgs.len();
    let acker = std::thread::spawn(move || {
        let mut acked = 0;
        while acked < n {
            match conn.recv_timeout(Duration::from_secs(30)) {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("publisher connection failed: {e}"),
                Err(e) => panic!("publisher: no broker answer for 30 s ({e:?})"),
            }
        }
        let _ = conn.recv_timeout(Duration::from_millis(1));
    });
    for (topic, payload) in msgs {
        client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .unwrap();
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
    }
    acker.join().expect("publisher failed");
    let _ = client.disconnect();
    done.store(true, Ordering::Release);
}

fn event(n: usize, with_id: bool) -> Value {
    let mut e = json!({"type": "track", "event": "Reading", "userId": format!("dev-{}", n % 5),
        "properties": {"n": n, "celsius": 20 + n % 7}});
    if with_id {
        e["messageId"] = json!(format!("m-{n}"));
    }
    e
}

/// Messages `from..to` (one event each, every seventh without a messageId,
/// some sent twice), a batch payload, and `bad` malformed payloads between them, each distinct.
/// Returns the messages, the valid event numbers, and the bad payload count.
type Messages = Vec<(String, Vec<u8>)>;

fn messages(from: usize, to: usize, tag: &str) -> (Messages, Vec<usize>, usize) {
    let mut out = Vec::new();
    let mut valid = Vec::new();
    let mut bad = 0;
    for n in from..to {
        let topic = format!("dev/d{}/ev", n % 3);
        out.push((
            topic.clone(),
            serde_json::to_vec(&event(n, n % 7 != 0)).unwrap(),
        ));
        valid.push(n);
        if n % 97 == 0 {
            let payloads = [
                format!("not json {tag} {n}").into_bytes(),
                serde_json::to_vec(&json!({"type": "track", "userId": "u", "properties": {"bad": format!("{tag}{n}")}}))
                    .unwrap(),
                serde_json::to_vec(&json!({"batch": format!("not a list {tag}{n}")})).unwrap(),
            ];
            for p in payloads {
                out.push((topic.clone(), p));
                bad += 1;
            }
        }
    }
    // A batch with two valid events (one without an id) and one refused: the
    // valid ones are stored, the message is also a dead letter.
    let b = 1_000_000 + from;
    out.push((
        "dev/batch/ev".into(),
        serde_json::to_vec(&json!({"batch": [event(b, true), event(b + 1, false), {"type": "track", "userId": "u"}],
            "context": {"device": {"id": "gw-1"}}}))
        .unwrap(),
    ));
    valid.extend([b, b + 1]);
    bad += 1;
    (out, valid, bad)
}

fn dead_letters(objects: &Path) -> Vec<Value> {
    files_under(&objects.join("_dead_letters"), |p| {
        p.extension().is_some_and(|x| x == "json")
    })
    .iter()
    .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
    .collect()
}

fn stored_numbers(objects: &Path) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for e in read_events(objects) {
        if let Some(n) = e["properties"]["n"].as_u64() {
            *counts.entry(n).or_default() += 1;
        }
    }
    counts
}

fn start_server(data: &Path, port: u16) -> Server {
    start_server_with(data, port, None)
}

fn start_server_with(data: &Path, port: u16, fsize: Option<u64>) -> Server {
    Server::start_with(
        data,
        &[
            "--roll-interval",
            "1s",
            "--mqtt",
            &format!("mqtt://127.0.0.1:{port}"),
            "--mqtt-topic",
            "dev/+/ev=iot",
            "--mqtt-username",
            SERVER_USER,
            "--mqtt-password",
            PASSWORD,
        ],
        fsize,
    )
}

fn mosquitto_or_skip() -> bool {
    if Path::new(MOSQUITTO).exists() {
        return true;
    }
    if std::env::var("TRIBUTARY_REQUIRE_MQTT").as_deref() == Ok("1") {
        panic!("TRIBUTARY_REQUIRE_MQTT=1 but {MOSQUITTO} is missing; run scripts/setup-apt.sh");
    }
    eprintln!("SKIPPED: {MOSQUITTO} is missing; run scripts/setup-apt.sh");
    false
}

#[test]
fn mqtt_sends_no_puback_for_events_the_log_could_not_keep() {
    if !mosquitto_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosq"));
    let data = dir.path().join("d");
    // Files may not grow past 256 KiB: the log segment soon cannot take more.
    let mut server = start_server_with(&data, broker.port, Some(256 * 1024));
    // Subscribed, not only connected: messages published before the first
    // subscription exists are not kept for the session.
    wait_for("the MQTT source to subscribe", 30, || {
        server.metric("ingest_mqtt_subscribed") == 1.0
    });
    let pad = "x".repeat(1500);
    let total = 400;
    let msgs: Messages = (0..total)
        .map(|n| {
            let mut e = event(n, true);
            e["properties"]["pad"] = json!(pad);
            ("dev/d1/ev".to_string(), serde_json::to_vec(&e).unwrap())
        })
        .collect();
    publish_all(broker.port, &msgs, None, &AtomicBool::new(false));
    wait_for("the log to fail", 60, || {
        server.get("/ready").unwrap().0 == 503
    });
    let acked = server.metric("ingest_mqtt_messages_acked_total");
    assert!(
        acked < total as f64,
        "all {total} messages were acked although the log failed"
    );
    // Had a message been acked without its events durable, the broker would
    // not deliver it again and it would be missing below.
    server.kill();
    let mut server = start_server(&data, broker.port);
    let objects = server.objects_dir();
    wait_for("every event after the restart", 90, || {
        stored_numbers(&objects).len() == total
    });
    assert!(server.terminate().success());
    let got = stored_numbers(&objects);
    for n in 0..total {
        assert_eq!(got.get(&(n as u64)), Some(&1), "event {n}");
    }
    eprintln!("acked before the log failed: {acked} of {total}");
}

#[test]
fn mqtt_qos1_exactly_once_through_server_kill_and_broker_restart() {
    if !mosquitto_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("mosq"));
    let data = dir.path().join("d");
    let server = start_server(&data, broker.port);
    // Subscribed, not only connected: messages published before the first
    // subscription exists are not kept for the session.
    wait_for("the MQTT source to subscribe", 30, || {
        server.metric("ingest_mqtt_subscribed") == 1.0
    });

    let mut expected: Vec<usize> = Vec::new();
    let mut bad_total = 0;

    // 1. A paced stream; the server is SIGKILLed once it has taken part of it.
    let (msgs, valid, bad) = messages(0, 1500, "a");
    expected.extend(&valid);
    bad_total += bad;
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let done = done.clone();
        let port = broker.port;
        std::thread::spawn(move || publish_all(port, &msgs, Some(Duration::from_millis(1)), &done))
    };
    wait_for("the server to take part of the stream", 60, || {
        server.metric("ingest_mqtt_messages_acked_total") >= 200.0
    });
    let mut server = server;
    let acked_before_kill = server.metric("ingest_mqtt_messages_acked_total");
    let publisher_done_at_kill = done.load(Ordering::Acquire);
    server.kill();
    eprintln!(
        "SIGKILL after {acked_before_kill} acks; publisher finished by then: {publisher_done_at_kill}"
    );
    // Publishing goes on while the server is down.
    publisher.join().expect("publisher failed");

    // 2. More while it is down, then the broker restarts (its store is kept).
    let (mut msgs, valid, bad) = messages(1500, 1800, "b");
    expected.extend(&valid);
    bad_total += bad;
    // Over --max-batch-bytes (500 KiB), and not UTF-8: dead letters too.
    let huge = serde_json::to_vec(&json!({"type": "track", "event": "Huge", "userId": "u",
        "properties": {"blob": "z".repeat(600 * 1024)}}))
    .unwrap();
    msgs.insert(10, ("dev/d1/ev".into(), huge));
    msgs.insert(20, ("dev/d2/ev".into(), vec![0xff, 0xfe, 0x00, 0x81]));
    bad_total += 2;
    publish_all(broker.port, &msgs, None, &AtomicBool::new(false));
    broker.restart();
    let (msgs, valid, bad) = messages(1800, 2000, "c");
    expected.extend(&valid);
    bad_total += bad;
    publish_all(broker.port, &msgs, None, &AtomicBool::new(false));

    // 3. The server comes back on the same data directory (same client id, so
    // the same session) and gets everything the broker kept for it.
    let server = start_server(&data, broker.port);
    let objects = server.objects_dir();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = stored_numbers(&objects);
        let letters = dead_letters(&objects).len();
        if expected.iter().all(|n| got.contains_key(&(*n as u64))) && letters >= bad_total {
            break;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<&usize> = expected
                .iter()
                .filter(|n| !got.contains_key(&(**n as u64)))
                .collect();
            panic!(
                "not stored after restart: {} events (first {:?}), {letters} of {bad_total} dead letters",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "after restart: received {}, acked {}, rejected {}, duplicates dropped {}",
        server.metric("ingest_mqtt_messages_received_total"),
        server.metric("ingest_mqtt_messages_acked_total"),
        server.metric("ingest_mqtt_messages_rejected_total"),
        server.metric("ingest_events_duplicate_total"),
    );
    assert!(server.metric("ingest_mqtt_messages_acked_total") > 0.0);
    assert_eq!(server.metric("ingest_mqtt_connected"), 1.0);
    assert!(server.metric("ingest_mqtt_messages_rejected_total") > 0.0);
    let mut server = server;
    assert!(server.terminate().success());

    let got = stored_numbers(&objects);
    for n in &expected {
        assert_eq!(
            got.get(&(*n as u64)),
            Some(&1),
            "event {n} stored {:?} times",
            got.get(&(*n as u64))
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "events nobody published were stored"
    );
    let events = read_events(&objects);
    for e in &events {
        assert_eq!(e["source"], "iot");
        let id = e["messageId"].as_str().unwrap();
        let n = e["properties"]["n"].as_u64().unwrap();
        // Ids as published, or derived from the message for those without one.
        if (n >= 1_000_000 && (n - 1_000_000) % 2 == 0) || (n < 1_000_000 && n % 7 != 0) {
            assert_eq!(id, format!("m-{n}"));
        } else {
            assert!(id.starts_with("mqtt-"), "{id}");
        }
    }
    // Every bad payload is a dead letter, once, with its topic and reason.
    let letters = dead_letters(&objects);
    assert_eq!(letters.len(), bad_total);
    for l in &letters {
        assert!(l["topic"].as_str().unwrap().starts_with("dev/"), "{l}");
        assert!(!l["errors"].as_array().unwrap().is_empty(), "{l}");
    }
    assert!(
        letters.iter().any(|l| l["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("--max-batch-bytes")),
        "no dead letter for the oversized payload"
    );
    assert!(
        letters.iter().any(|l| l["payloadBase64"] == "//4AgQ=="),
        "no dead letter keeping the binary payload's bytes"
    );
}

#[test]
fn mqtt_shared_subscription_splits_messages_between_servers() {
    if !mosquitto_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosq"));
    let port = broker.port.to_string();
    let url = format!("mqtt://{SERVER_USER}:{PASSWORD}@127.0.0.1:{port}");
    // Two servers, each with its own data directory (and so its own generated
    // client id), sharing one subscription.
    let servers: Vec<Server> = ["a", "b"]
        .iter()
        .map(|name| {
            Server::start(
                &dir.path().join(name),
                &[
                    "--roll-interval",
                    "1s",
                    "--mqtt",
                    &url,
                    "--mqtt-topic",
                    "dev/+/ev=iot",
                    "--mqtt-share-group",
                    "ingest",
                ],
            )
        })
        .collect();
    for s in &servers {
        wait_for("the MQTT source to subscribe", 30, || {
            s.metric("ingest_mqtt_subscribed") == 1.0
        });
    }
    let total = 300;
    let msgs: Messages = (0..total)
        .map(|n| {
            (
                format!("dev/d{}/ev", n % 4),
                serde_json::to_vec(&event(n, true)).unwrap(),
            )
        })
        .collect();
    publish_all(broker.port, &msgs, None, &AtomicBool::new(false));
    let dirs: Vec<PathBuf> = servers.iter().map(|s| s.objects_dir()).collect();
    let all = || {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for d in &dirs {
            for (n, c) in stored_numbers(d) {
                *counts.entry(n).or_default() += c;
            }
        }
        counts
    };
    wait_for("every event in one of the two servers", 60, || {
        all().len() == total
    });
    let shares: Vec<usize> = dirs.iter().map(|d| stored_numbers(d).len()).collect();
    for mut s in servers {
        assert!(s.terminate().success());
    }
    let counts = all();
    for n in 0..total {
        assert_eq!(counts.get(&(n as u64)), Some(&1), "event {n}");
    }
    assert!(
        shares.iter().all(|&k| k > 0),
        "the broker gave every message to one server: {shares:?}"
    );
}
