//! Storage that fails, transiently or for good, and calls that must stay
//! bounded and accounted for meanwhile: transient open errors, corrupt
//! databases with salvage, a file-size limit (a real child process under
//! `ulimit -f`), byte-bounded memory and shutdown races.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;
use tributary::{Client, FlushResult};

const WAIT: Duration = Duration::from_secs(20);

/// Makes the database's WAL path a directory: SQLite then fails to open the
/// (intact) database with `SQLITE_CANTOPEN`, as it does for a file it may
/// not open yet (iOS data protection before the first unlock).
fn block_the_wal(dir: &Path) {
    let wal = dir.join(format!("{DB_FILE}-wal"));
    let _ = std::fs::remove_file(&wal);
    let _ = std::fs::remove_file(dir.join(format!("{DB_FILE}-shm")));
    std::fs::create_dir(&wal).unwrap();
}

fn unblock_the_wal(dir: &Path) {
    std::fs::remove_dir(dir.join(format!("{DB_FILE}-wal"))).unwrap();
}

/// Records `n` events offline and shuts down, leaving them on disk.
fn leave_events(cfg: &tributary::Config, from: u64, n: u64) {
    let c = Client::new(cfg.clone(), None).unwrap();
    c.set_network_available(false);
    for i in from..from + n {
        c.track("E".into(), props(i, 100)).unwrap();
    }
    assert_eq!(
        c.shutdown(5_000),
        FlushResult::Offline { pending: n },
        "{:?}",
        c.stats()
    );
}

#[test]
fn a_database_that_cannot_be_opened_yet_is_retried_not_replaced() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    leave_events(&cfg, 0, 5);
    block_the_wal(dir.path());

    let logger = Arc::new(MemoryLogger::default());
    // The constructor does not open the database: it succeeds.
    let client = Client::new(cfg, Some(logger.clone())).unwrap();
    client.track("E".into(), props(5, 0)).unwrap();
    assert!(
        poll(WAIT, || client
            .stats()
            .last_error
            .is_some_and(|e| e.contains("opening the queue database"))),
        "the open error is reported: {:?}",
        client.stats()
    );
    assert!(!client.await_ready(0));
    let s = client.stats();
    assert_eq!(s.database_resets, 0, "a transient error is not corruption");
    assert_eq!(s.buffered_events, 1, "the event waits in memory: {s:?}");
    assert!(
        files_under(dir.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".corrupt-")),
        "nothing was moved aside: {:?}",
        files_under(dir.path())
    );

    unblock_the_wal(dir.path());
    assert!(
        client.await_ready(WAIT.as_millis() as u64),
        "opened on retry"
    );
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (0..6).collect::<Vec<_>>());
    let s = client.stats();
    assert_eq!(s.database_resets, 0);
    assert_eq!(s.restored_events, 5);
    assert_accounted(&s);
}

#[test]
fn a_corrupt_database_is_salvaged_and_its_losses_counted() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    leave_events(&cfg, 0, 2_000);
    // Damage the end of the file: the newest rows' pages.
    let db = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    let len = bytes.len();
    for (i, b) in bytes[len - 16 * 4096..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1];
    }
    std::fs::write(&db, bytes).unwrap();

    let logger = Arc::new(MemoryLogger::default());
    let client = Client::new(cfg, Some(logger.clone())).unwrap();
    assert!(client.await_ready(WAIT.as_millis() as u64));
    let s = client.stats();
    assert_eq!(s.database_resets, 1, "{s:?}");
    assert!(s.queued_events > 0, "readable rows are salvaged: {s:?}");
    assert!(
        s.dropped_corrupt > 0,
        "the unreadable ones are counted: {s:?}"
    );
    assert_eq!(s.queued_events + s.dropped_corrupt, 2_000, "{s:?}");
    assert_accounted(&s);
    assert!(
        logger
            .all()
            .iter()
            .any(|(_, m)| m.contains("requeued") && m.contains("dropped_corrupt")),
        "{:#?}",
        logger.all()
    );
    // The salvaged events are delivered, oldest first, with their original ids.
    assert_eq!(client.flush_blocking(20_000), FlushResult::Delivered);
    let seqs = server.accepted_seqs();
    assert_eq!(seqs, (0..s.queued_events).collect::<Vec<_>>());
}

#[test]
fn memory_is_bounded_in_bytes_while_the_database_cannot_be_opened() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    leave_events(&cfg, 0, 1);
    block_the_wal(dir.path());
    cfg.max_buffer_bytes = 64_000;
    let client = Client::new(cfg, None).unwrap();
    for i in 0..5_000 {
        client.track("E".into(), props(i, 200)).unwrap();
    }
    let s = client.stats();
    assert!(s.buffered_bytes <= 64_000, "{s:?}");
    assert!(s.buffered_events > 0 && s.dropped_backpressure > 0, "{s:?}");
    assert_eq!(s.buffered_events + s.dropped_backpressure, 5_000, "{s:?}");
    // Every call stays bounded although nothing can be stored.
    assert!(matches!(
        client.flush_blocking(0),
        FlushResult::TimedOut { .. }
    ));
    client.set_enabled(false);
    client.set_enabled(true);
    assert!(matches!(client.shutdown(0), FlushResult::TimedOut { .. }));
    let s = client.stats();
    assert_eq!(s.buffered_events, 0, "{s:?}");
    assert!(s.dropped_shutdown + s.dropped_opt_out > 0, "{s:?}");
    assert_accounted(&s);
}

#[test]
fn a_burst_that_fits_the_byte_bound_loses_nothing() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    const N: u64 = 30_000;
    // ~300-byte events: the whole burst fits in 16 MB of buffer.
    cfg.max_buffer_bytes = 16_000_000;
    cfg.max_queue_bytes = 100_000_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    for i in 0..N {
        client.track("Burst".into(), props(i, 50)).unwrap();
    }
    assert_eq!(
        client.flush_blocking(60_000),
        FlushResult::Offline { pending: N }
    );
    let s = client.stats();
    assert_eq!(s.dropped_backpressure, 0, "{s:?}");
    assert_eq!(s.queued_events, N);
    assert_accounted(&s);
}

#[test]
fn every_event_is_accounted_for_when_tracking_races_shutdown() {
    for round in 0..5 {
        let server = TestServer::start();
        let dir = temp_dir();
        let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
        client.set_network_available(false);
        let go = AtomicBool::new(true);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (client, go) = (&client, &go);
                s.spawn(move || {
                    let mut i = 0;
                    while go.load(Ordering::Relaxed) {
                        let _ = client.track("Race".into(), props(t * 1_000_000 + i, 20));
                        i += 1;
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(20));
            client.shutdown(0);
            // Keep recording for a moment after the shutdown returned.
            std::thread::sleep(Duration::from_millis(5));
            go.store(false, Ordering::Relaxed);
        });
        let s = client.stats();
        assert_eq!(s.buffered_events, 0, "round {round}: {s:?}");
        assert!(
            s.dropped_shutdown > 0,
            "round {round}: calls after shutdown are counted"
        );
        assert_accounted(&s);
        drop(client);
        // What the stats call queued is really on disk.
        let again = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
        assert!(again.await_ready(10_000));
        assert_eq!(
            again.stats().restored_events,
            s.queued_events,
            "round {round}"
        );
    }
}

// --- A file-size limit, in a real child process -----------------------------

const CHILD_DIR: &str = "TRIBUTARY_FSIZE_CHILD_DIR";

/// The child side: records until the file-size limit makes commits fail,
/// keeps recording from another thread, and calls every blocking API; each
/// must return. Prints `STATS <sources> <destinations> <dropped_shutdown>`.
#[test]
#[ignore = "child process of storage_that_keeps_failing_never_blocks_a_call; run by it"]
fn fsize_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let mut cfg = test_config("http://127.0.0.1:9", Path::new(&dir));
    cfg.max_buffer_bytes = 2_000_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    let mut i = 0u64;
    while !client
        .stats()
        .last_error
        .is_some_and(|e| e.contains("committing"))
    {
        for _ in 0..100 {
            client.track("Fill".into(), props(i, 1_000)).unwrap();
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
        assert!(i < 2_000_000, "the file-size limit never hit");
    }
    println!("FAILING after {i} events");
    let go = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut j = 0u64;
            while go.load(Ordering::Relaxed) {
                let _ = client.track("Meanwhile".into(), props(j, 1_000));
                j += 1;
            }
        });
        let flushed = client.flush_blocking(100);
        println!("FLUSH {flushed:?}");
        let shut = client.shutdown(100);
        println!("SHUTDOWN {shut:?}");
        go.store(false, Ordering::Relaxed);
    });
    let s = client.stats();
    let (sources, destinations) = accounting(&s);
    println!("STATS {sources} {destinations} {}", s.dropped_shutdown);
    drop(client);
    println!("DONE");
}

#[test]
fn storage_that_keeps_failing_never_blocks_a_call() {
    let dir = temp_dir();
    // `ulimit -f` (512-byte blocks): writes past 4 MB fail with EFBIG.
    // SIGXFSZ is ignored, as `trap ''` survives exec, so the write fails
    // instead of killing the process.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 8192; exec \"$0\" --ignored --exact fsize_child --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe().unwrap())
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Generous: each call is bounded by seconds; a call blocked on the disk
    // would never print DONE.
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let done = line == "DONE";
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the child did not finish ({e:?}); it printed {seen:#?}");
            }
        }
    }
    assert!(child.wait().unwrap().success(), "{seen:#?}");
    let stats = seen
        .iter()
        .find_map(|l| l.strip_prefix("STATS "))
        .unwrap_or_else(|| panic!("{seen:#?}"));
    let figures: Vec<u64> = stats.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        figures[0], figures[1],
        "every event accounted for: {seen:#?}"
    );
    assert!(
        figures[2] > 0,
        "what could not be stored is counted: {seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("SHUTDOWN TimedOut")),
        "{seen:#?}"
    );
}

// --- A read-only storage directory, in a real child process ----------------
//
// Root ignores file permissions, so the child drops to user `nobody` with
// `setpriv` (util-linux) and owns the directory it then makes read-only.

const RO_DIR: &str = "TRIBUTARY_RO_CHILD_DIR";

/// The child side: leaves 100 events on disk, makes the directory read-only,
/// then starts a client there and calls every API while it fails to open.
#[test]
#[ignore = "child process of a_read_only_storage_directory_never_blocks_a_call; run by it"]
fn readonly_child() {
    use std::os::unix::fs::PermissionsExt;
    let Ok(dir) = std::env::var(RO_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let cfg = test_config("http://127.0.0.1:9", dir);
    leave_events(&cfg, 0, 100);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let client = Client::new(cfg, None).expect("the constructor does not open the database");
    client.set_network_available(false);
    let go = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut j = 100u64;
            while go.load(Ordering::Relaxed) {
                let _ = client.track("Meanwhile".into(), props(j, 100));
                j += 1;
            }
        });
        println!("READY {}", client.await_ready(300));
        println!("FLUSH {:?}", client.flush_blocking(100));
        client.set_enabled(false);
        client.set_enabled(true);
        println!("SHUTDOWN {:?}", client.shutdown(100));
        go.store(false, Ordering::Relaxed);
    });
    let s = client.stats();
    let (sources, destinations) = accounting(&s);
    println!(
        "STATS {sources} {destinations} {} {}",
        s.dropped_shutdown, s.database_resets
    );
    drop(client);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    println!("DONE");
}

#[test]
fn a_read_only_storage_directory_never_blocks_a_call() {
    let dir = temp_dir();
    let nobody = 65_534;
    std::os::unix::fs::chown(dir.path(), Some(nobody), Some(nobody)).unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "readonly_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RO_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("setpriv (util-linux) runs the child as nobody");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let done = line == "DONE";
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(e) => {
                let _ = child.kill();
                panic!("the child did not finish ({e:?}); it printed {seen:#?}");
            }
        }
    }
    assert!(child.wait().unwrap().success(), "{seen:#?}");
    assert!(seen.iter().any(|l| l.ends_with("READY false")), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.starts_with("SHUTDOWN TimedOut")),
        "{seen:#?}"
    );
    let stats = seen
        .iter()
        .find_map(|l| l.strip_prefix("STATS "))
        .unwrap_or_else(|| panic!("{seen:#?}"));
    let figures: Vec<u64> = stats.split(' ').map(|n| n.parse().unwrap()).collect();
    assert_eq!(
        figures[0], figures[1],
        "every event accounted for: {seen:#?}"
    );
    assert!(
        figures[2] > 0,
        "what could not be stored is counted: {seen:#?}"
    );
    assert_eq!(
        figures[3], 0,
        "a read-only directory is not corruption: {seen:#?}"
    );
    // Writable again: the 100 events left before are all there.
    let server = TestServer::start();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    assert!(client.await_ready(20_000));
    assert_eq!(client.stats().restored_events, 100);
    assert_eq!(client.flush_blocking(20_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (0..100).collect::<Vec<_>>());
}
