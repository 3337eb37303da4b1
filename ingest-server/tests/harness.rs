//! The shared test harness (`tributary-test-support`) against the real binary:
//! a port held by another server is detected and left, SIGSTOP / SIGCONT,
//! restart on the same data directory, a role without an HTTP port, and a clear
//! error when the process cannot start.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{KEY, SOURCE, agent, basic, read_events, wait_for};
use tributary_test_support::{Error, Readiness, ServerSpec, owns_listener};

fn spec(data: &std::path::Path) -> ServerSpec {
    ServerSpec::new(env!("CARGO_BIN_EXE_ingest-server"))
        .data_dir(data)
        .args(["--write-key", &format!("{KEY}={SOURCE}")])
        .start_timeout(Duration::from_secs(20))
}

#[test]
fn a_port_held_by_another_server_is_left_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = spec(&dir.path().join("a")).start().unwrap();
    let taken = first.port().unwrap();
    // The race a parallel test can cause: our port is taken by another ingest
    // server, which answers /health with 200 before ours has even tried to bind.
    let second = spec(&dir.path().join("b")).port(taken).start().unwrap();
    let port = second.port().unwrap();
    assert_ne!(port, taken, "ready on a port another server holds");
    assert!(second.starts() >= 2, "started {} times", second.starts());
    assert_eq!(owns_listener(second.pid().unwrap(), port), Some(true));
    assert_eq!(owns_listener(first.pid().unwrap(), taken), Some(true));
    assert_eq!(second.get("/health").unwrap().0, 200);
    assert_eq!(first.get("/health").unwrap().0, 200);
}

#[test]
fn paused_server_answers_nothing_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = spec(&dir.path().join("d")).start().unwrap();
    server.pause().unwrap();
    let url = format!("{}/health", server.url().unwrap());
    let quick = tributary_test_support::agent(Duration::from_millis(300));
    assert!(
        quick.get(&url).call().is_err(),
        "a stopped process answered"
    );
    server.resume().unwrap();
    wait_for("answer after SIGCONT", 10, || {
        quick.get(&url).call().is_ok_and(|r| r.status() == 200)
    });
}

#[test]
fn restart_after_sigkill_keeps_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = spec(&data).args(["--roll-interval", "1h"]).start().unwrap();
    let r = agent()
        .post(format!("{}/v1/track", server.url().unwrap()))
        .header("Authorization", &basic(KEY))
        .send(
            json!({"event": "E", "userId": "u", "messageId": "kept-1"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status(), 200);
    // Durable in the log, not yet in an object (1 h roll): SIGKILL, then restart.
    server.kill();
    assert!(!server.is_running());
    server.restart().unwrap();
    let status = server.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
    let ids: Vec<_> = read_events(&data.join("objects"))
        .iter()
        .map(|e| e["messageId"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["kept-1"]);
    assert!(matches!(
        server.terminate(Duration::ZERO),
        Err(Error::NotRunning)
    ));
}

#[test]
fn a_role_without_an_http_port_is_ready_by_its_log() {
    let dir = tempfile::tempdir().unwrap();
    // The harness gives no address; the server takes any port and says so.
    let mut server = spec(&dir.path().join("d"))
        .args(["--listen", "127.0.0.1:0"])
        .readiness(Readiness::LogLine("ingest-server ready".into()))
        .start()
        .unwrap();
    assert_eq!(server.port(), None);
    assert!(matches!(server.url(), Err(Error::NoHttp)));
    assert!(server.log_tail(4000).contains("ingest-server ready"));
    let status = server.terminate(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_server_that_cannot_start_fails_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let err = spec(&dir.path().join("d"))
        .args(["--format", "csv"])
        .attempts(2)
        .start()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Start { attempts: 2, .. }), "{text}");
    assert!(text.contains("use `ndjson` or `parquet`"), "{text}");
}
