//! A real child process is killed with SIGKILL while it records and while it
//! uploads. Afterwards, every event whose record call returned before the last
//! durable commit the child reported is delivered, with its original
//! `messageId`, and nothing is delivered twice under different batch keys.
//!
//! The child is this test binary itself, re-run with `--ignored --exact
//! child_process` and an environment variable that selects its mode.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use tributary::{Client, FlushResult};

const MODE: &str = "TRIBUTARY_CRASH_CHILD_MODE";
const DIR: &str = "TRIBUTARY_CRASH_CHILD_DIR";
const ENDPOINT: &str = "TRIBUTARY_CRASH_CHILD_ENDPOINT";
const SEQ_BASE: &str = "TRIBUTARY_CRASH_CHILD_SEQ_BASE";

/// Prints one line to the parent and makes sure it left the process.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The child side. Does nothing unless started by a parent test below.
#[test]
#[ignore = "child process of the SIGKILL tests; run by them"]
fn child_process() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let dir = std::env::var(DIR).unwrap();
    let endpoint = std::env::var(ENDPOINT).unwrap();
    let mut cfg = test_config(&endpoint, Path::new(&dir));
    cfg.max_batch_events = 50;
    let client = Client::new(cfg, None).unwrap();
    match mode.as_str() {
        // Offline: record continuously; after each durable commit, report the
        // highest seq whose track() returned before it.
        "writes" => {
            client.set_network_available(false);
            let base: u64 = std::env::var(SEQ_BASE).map_or(0, |v| v.parse().unwrap());
            let mut seq = base;
            loop {
                client.track("Crash".into(), props(seq, 200)).unwrap();
                if seq % 50 == 49 {
                    match client.flush_blocking(30_000) {
                        FlushResult::Offline { .. } => report(&format!("DURABLE {seq}")),
                        other => panic!("offline flush returned {other:?}"),
                    }
                }
                seq += 1;
            }
        }
        // Make a backlog durable offline, then go online (the parent's server
        // hangs or acks) and keep recording while the upload runs.
        "upload" => {
            client.set_network_available(false);
            for seq in 0..300u64 {
                client.track("Crash".into(), props(seq, 200)).unwrap();
            }
            match client.flush_blocking(30_000) {
                FlushResult::Offline { .. } => report("DURABLE 299"),
                other => panic!("offline flush returned {other:?}"),
            }
            client.set_network_available(true);
            client.flush();
            let mut seq = 300u64;
            loop {
                client.track("Crash".into(), props(seq, 200)).unwrap();
                seq += 1;
                if seq.is_multiple_of(20) {
                    client.flush();
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// The seq of a `DURABLE n` report. libtest may print `test child_process ... `
/// without a newline just before it, so the report can start mid-line.
fn durable_in(line: &str) -> Option<u64> {
    let at = line.find("DURABLE ")?;
    Some(line[at + "DURABLE ".len()..].trim().parse().unwrap())
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<()>,
    durable: Option<u64>,
}

fn spawn_child(mode: &str, dir: &Path, endpoint: &str) -> Running {
    spawn_child_at(mode, dir, endpoint, 0)
}

fn spawn_child_at(mode: &str, dir: &Path, endpoint: &str, seq_base: u64) -> Running {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode)
        .env(DIR, dir)
        .env(ENDPOINT, endpoint)
        .env(SEQ_BASE, seq_base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines,
        reader,
        durable: None,
    }
}

impl Running {
    fn take_line(&mut self, line: &str) {
        if let Some(n) = durable_in(line) {
            self.durable = Some(self.durable.map_or(n, |d| d.max(n)));
        }
    }

    /// Waits for `count` durable reports (panics past `timeout`).
    fn wait_durable_reports(&mut self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        while seen < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if durable_in(&line).is_some() {
                        seen += 1;
                    }
                    self.take_line(&line);
                }
                Err(e) => {
                    let status = self.child.try_wait();
                    let _ = self.child.kill();
                    panic!("child gave {seen}/{count} durable reports ({e:?}); status {status:?}");
                }
            }
        }
    }

    /// SIGKILLs the child, then reads every line it wrote before dying.
    fn kill(mut self) -> Option<u64> {
        // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no shutdown.
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            !status.success(),
            "the child must die by the signal: {status:?}"
        );
        let Running {
            lines,
            reader,
            mut durable,
            ..
        } = self;
        reader.join().unwrap();
        while let Ok(line) = lines.try_recv() {
            if let Some(n) = durable_in(&line) {
                durable = Some(durable.map_or(n, |d| d.max(n)));
            }
        }
        durable
    }
}

/// Reopens the killed child's directory in this process and delivers everything.
fn recover(server: &TestServer, dir: &Path) {
    let client = Client::new(test_config(&server.url(), dir), None)
        .expect("the lock of a killed process must not block a new client");
    assert_eq!(client.flush_blocking(30_000), FlushResult::Delivered);
    client.shutdown(1_000);
}

/// Every `seq` maps to one `messageId`, and an event that reached the server
/// in two requests did so under one idempotency key (so the server dedups).
fn assert_exactly_once_identity(reqs: &[Recorded]) {
    let ids = ids_by_seq(reqs);
    for (s, v) in &ids {
        assert_eq!(
            v.len(),
            1,
            "seq {s} was sent with several messageIds: {v:?}"
        );
    }
    let mut keys_by_id: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.reply == "Ok") {
        for id in r.message_ids() {
            keys_by_id.entry(id).or_default().insert(r.key());
        }
    }
    for (id, keys) in &keys_by_id {
        assert_eq!(
            keys.len(),
            1,
            "event {id} was accepted under several batch keys {keys:?}: the server could not dedup it"
        );
    }
}

fn assert_durable_delivered(server: &TestServer, durable: u64) {
    assert_range_delivered(server, 0, durable);
}

fn assert_range_delivered(server: &TestServer, from: u64, durable: u64) {
    let mut seqs = server.accepted_seqs();
    seqs.dedup();
    let missing: Vec<u64> = (from..=durable)
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} durable events lost (of {from}..={durable}): first {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
}

#[test]
fn sigkill_during_writes_loses_no_durable_event() {
    let server = TestServer::start();
    let dir = temp_dir();
    // Two crashes in a row on the same directory: the second child starts
    // from whatever the first one left behind.
    let mut durables = Vec::new();
    for round in 0..2u64 {
        let base = round * 1_000_000;
        let mut child = spawn_child_at("writes", dir.path(), &server.url(), base);
        child.wait_durable_reports(4 + round as usize * 3, Duration::from_secs(60));
        // Land the kill somewhere in the middle of the next group of writes.
        std::thread::sleep(Duration::from_millis(3 + 7 * round));
        let durable = child.kill().expect("a durable report");
        assert!(durable >= base + 199);
        durables.push((base, durable));
        if round == 0 {
            // (The second child starts online with the first one's backlog, so
            // it may upload before it goes offline.)
            assert_eq!(server.request_count(), 0, "the child was offline");
        }
    }
    recover(&server, dir.path());
    for (base, durable) in durables {
        assert_range_delivered(&server, base, durable);
    }
    // The second child may have been killed between the server's 200 and its
    // own delete: that batch is then sent again, under the same key, which the
    // server dedups. Anything else sent twice would be a duplicate.
    assert_exactly_once_identity(&server.requests());
    let events = server.accepted_events();
    let ids: HashSet<String> = events.iter().map(message_id).collect();
    let mut seqs = server.accepted_seqs();
    seqs.dedup();
    assert_eq!(ids.len(), seqs.len(), "one messageId per recorded event");
}

#[test]
fn sigkill_during_a_hung_upload_resends_the_same_batch_with_original_message_ids() {
    let server = TestServer::start();
    let dir = temp_dir();
    server.push([Reply::Hang]);
    let mut child = spawn_child("upload", dir.path(), &server.url());
    child.wait_durable_reports(1, Duration::from_secs(60));
    let reqs = server.wait_until(Duration::from_secs(30), "the child's upload", |r| {
        !r.is_empty()
    });
    // Let the child keep writing while the request hangs, then kill it.
    std::thread::sleep(Duration::from_millis(150));
    let durable = child.kill().unwrap();
    assert_eq!(durable, 299);
    let hung = reqs[0].clone();
    assert_eq!(
        hung.seqs(),
        (0..50).collect::<Vec<_>>(),
        "the oldest events first"
    );

    recover(&server, dir.path());
    let reqs = server.requests();
    let retried = reqs
        .iter()
        .find(|r| r.reply == "Ok" && r.key() == hung.key())
        .unwrap_or_else(|| {
            panic!(
                "the hung batch was not retried under its key: {:#?}",
                summarize(&reqs)
            )
        });
    assert_eq!(
        retried.message_ids(),
        hung.message_ids(),
        "same events, same messageIds"
    );
    assert_durable_delivered(&server, durable);
    assert_exactly_once_identity(&reqs);
}

#[test]
fn sigkill_while_uploads_are_being_acknowledged_loses_nothing_and_duplicates_only_under_one_key() {
    let server = TestServer::start();
    let dir = temp_dir();
    server.set_default(Reply::Delay(Duration::from_millis(5), Box::new(Reply::Ok)));
    let mut child = spawn_child("upload", dir.path(), &server.url());
    child.wait_durable_reports(1, Duration::from_secs(60));
    server.wait_until(Duration::from_secs(30), "three acknowledged batches", |r| {
        r.iter().filter(|r| r.reply == "Ok").count() >= 3
    });
    let durable = child.kill().unwrap();
    recover(&server, dir.path());
    let reqs = server.requests();
    assert_durable_delivered(&server, durable);
    assert_exactly_once_identity(&reqs);
}
