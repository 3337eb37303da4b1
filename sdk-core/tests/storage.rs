//! The on-disk queue: restarts with pending batches, persisted backoff,
//! eviction, corrupt databases, the directory lock and opting out.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tributary::{Client, Config, FlushResult, TributaryError};

const WAIT: Duration = Duration::from_secs(15);

/// Opens a client, retrying while the previous one in this process is still
/// letting go of the directory lock (its threads may be finishing a request).
fn reopen(cfg: &Config, logger: Option<Arc<MemoryLogger>>) -> Arc<Client> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logger = logger.clone().map(|l| l as Arc<dyn tributary::Logger>);
        match Client::new(cfg.clone(), logger) {
            Ok(c) => return c,
            Err(TributaryError::StorageUnavailable { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("reopening the queue failed: {e}"),
        }
    }
}

#[test]
fn restart_after_server_errors_resends_the_same_batch_key_and_message_ids() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    server.set_default(Reply::Status(500));
    let c1 = Client::new(cfg.clone(), None).unwrap();
    for i in 0..5 {
        c1.track("E".into(), props(i, 0)).unwrap();
    }
    c1.flush();
    let reqs = server.wait_until(WAIT, "two failed attempts", |r| r.len() >= 2);
    let first = reqs[0].clone();
    assert_eq!(first.seqs(), vec![0, 1, 2, 3, 4]);
    assert!(matches!(
        c1.shutdown(500),
        FlushResult::TimedOut { pending: 5 }
    ));
    drop(c1);

    // Keep failing until the new client holds the directory, so the old
    // client's threads cannot be the ones that deliver.
    let c2 = reopen(&cfg, None);
    let before = server.request_count();
    server.set_default(Reply::Ok);
    // No flush(): a client that starts with events pending uploads them.
    let reqs = server.wait_accepted(5, WAIT);
    for r in &reqs[..] {
        assert_eq!(
            r.key(),
            first.key(),
            "every attempt, before and after the restart, uses one key"
        );
        assert_eq!(r.message_ids(), first.message_ids());
    }
    assert!(reqs.len() > before);
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2, 3, 4]);
    assert_eq!(c2.flush_blocking(5_000), FlushResult::Delivered);
    assert_eq!(c2.stats().uploaded_events, 5, "{:?}", c2.stats());
}

#[test]
fn restart_while_a_request_hangs_resends_the_same_batch_key_and_message_ids() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.request_timeout_ms = 2_000;
    server.push([Reply::Hang]);
    let c1 = Client::new(cfg.clone(), None).unwrap();
    for i in 0..4 {
        c1.track("E".into(), props(i, 0)).unwrap();
    }
    c1.flush();
    let reqs = server.wait_until(WAIT, "the hung request", |r| !r.is_empty());
    let first = reqs[0].clone();
    let started = Instant::now();
    let result = c1.shutdown(200);
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "shutdown(200) took {} ms",
        ms(started.elapsed())
    );
    assert!(
        matches!(result, FlushResult::TimedOut { pending: 4 }),
        "{result:?}"
    );
    drop(c1);

    let c2 = reopen(&cfg, None);
    let reqs = server.wait_accepted(4, WAIT);
    let ok = reqs.iter().find(|r| r.reply == "Ok").unwrap();
    assert_eq!(ok.key(), first.key());
    assert_eq!(ok.message_ids(), first.message_ids());
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2, 3]);
    assert_eq!(c2.flush_blocking(5_000), FlushResult::Delivered);
}

#[test]
fn backoff_survives_a_restart() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    server.push([Reply::RetryAfter {
        status: 429,
        value: "3".into(),
    }]);
    let c1 = Client::new(cfg.clone(), None).unwrap();
    c1.track("E".into(), props(0, 0)).unwrap();
    c1.flush();
    let reqs = server.wait_until(WAIT, "the 429", |r| !r.is_empty());
    assert!(poll(WAIT, || c1.stats().retries >= 1), "{:?}", c1.stats());
    c1.shutdown(300);
    drop(c1);

    let c2 = reopen(&cfg, None);
    c2.flush();
    c2.set_network_available(true);
    let done = server.wait_accepted(1, WAIT);
    let gap = done[1].at - reqs[0].at;
    assert_eq!(done.len(), 2, "{:#?}", summarize(&done));
    assert!(
        gap >= Duration::from_millis(2_900),
        "the restarted client sent after {} ms, before next_attempt_at (Retry-After: 3)",
        ms(gap)
    );
    assert_eq!(done[1].key(), reqs[0].key());
}

#[test]
fn byte_cap_evicts_the_oldest_events_and_counts_them() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_bytes = 1_000;
    cfg.max_batch_bytes = 2_000;
    cfg.max_queue_bytes = 10_000;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    for i in 0..100 {
        client.track("E".into(), props(i, 300)).unwrap();
    }
    client.flush_blocking(10_000);
    assert!(
        poll(WAIT, || client.stats().dropped_byte_cap > 0),
        "{:?}",
        client.stats()
    );
    let s = client.stats();
    assert!(
        s.queued_bytes <= 10_000,
        "queued_bytes {} over the cap",
        s.queued_bytes
    );
    assert_eq!(s.queued_events + s.dropped_byte_cap, 100, "{s:?}");
    assert!(s.queued_events > 0);

    client.set_network_available(true);
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let kept = s.queued_events;
    assert_eq!(
        server.accepted_seqs(),
        ((100 - kept)..100).collect::<Vec<_>>(),
        "the oldest events are the ones evicted"
    );
    assert_eq!(client.stats().dropped_byte_cap, s.dropped_byte_cap);
}

/// A restart with a smaller `max_queue_bytes` evicts the oldest events on the
/// delivery thread (not in `Client::new`), counted, before anything is sent.
#[test]
fn restart_with_a_smaller_byte_cap_evicts_the_oldest_at_startup() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_bytes = 1_000;
    cfg.max_batch_bytes = 2_000;
    let first = Client::new(cfg.clone(), None).unwrap();
    first.set_network_available(false);
    for i in 0..50 {
        first.track("E".into(), props(i, 300)).unwrap();
    }
    first.shutdown(5_000);
    drop(first);
    assert!(
        server.requests().is_empty(),
        "nothing may be sent while offline"
    );

    cfg.max_queue_bytes = 10_000;
    let client = Client::new(cfg, None).unwrap();
    assert!(
        poll(WAIT, || client.stats().dropped_byte_cap > 0),
        "{:?}",
        client.stats()
    );
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let s = client.stats();
    assert!(s.dropped_byte_cap > 0 && s.dropped_byte_cap < 50, "{s:?}");
    let kept = 50 - s.dropped_byte_cap;
    assert_eq!(
        server.accepted_seqs(),
        ((50 - kept)..50).collect::<Vec<_>>(),
        "the oldest events are the ones evicted"
    );
}

#[test]
fn age_limit_evicts_old_events_and_counts_them() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_age_ms = 1_500;
    let client = Client::new(cfg, None).unwrap();
    client.set_network_available(false);
    for i in 0..10 {
        client.track("Old".into(), props(i, 0)).unwrap();
    }
    client.flush_blocking(10_000);
    std::thread::sleep(Duration::from_millis(1_700));
    for i in 10..15 {
        client.track("New".into(), props(i, 0)).unwrap();
    }
    client.set_network_available(true);
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (10..15).collect::<Vec<_>>());
    let s = client.stats();
    assert_eq!(s.dropped_age, 10, "{s:?}");
    assert_eq!(s.uploaded_events, 5);
}

fn corrupt_database_is_moved_aside(garbage: &[u8]) {
    let server = TestServer::start();
    let dir = temp_dir();
    std::fs::write(dir.path().join(DB_FILE), garbage).unwrap();
    let logger = Arc::new(MemoryLogger::default());
    let client = Client::new(test_config(&server.url(), dir.path()), Some(logger.clone()))
        .expect("a corrupt database must not stop the app");
    for i in 0..3 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2]);
    let s = client.stats();
    assert_eq!(s.database_resets, 1, "{s:?}");
    let logs = logger.all();
    assert!(
        logs.iter().any(|(l, _)| *l >= tributary::LogLevel::Warn),
        "the reset is logged: {logs:#?}"
    );
    // The damaged file is kept aside (for diagnosis), not silently deleted.
    let marker = &garbage[garbage.len() - 64..];
    let aside = any_file_contains(dir.path(), marker);
    assert!(
        aside
            .as_ref()
            .is_some_and(|p| p.file_name().unwrap() != DB_FILE),
        "the corrupt file should be moved aside, found {aside:?} in {:?}",
        files_under(dir.path())
    );
}

#[test]
fn a_garbage_database_file_is_moved_aside_and_recording_continues() {
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    corrupt_database_is_moved_aside(&garbage);
}

#[test]
fn a_database_with_a_valid_header_and_garbage_pages_is_moved_aside() {
    let mut garbage = b"SQLite format 3\0".to_vec();
    garbage.extend((0..32 * 1024u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8));
    corrupt_database_is_moved_aside(&garbage);
}

/// The directory lock is taken on the writer thread (the constructor does no
/// disk I/O): a second client on the same directory is created, reports the
/// problem (logger, `Stats::last_error`, `await_ready` false), keeps what it
/// records in memory, and takes over once the first one shuts down.
#[test]
fn a_second_client_on_one_directory_waits_for_it_and_says_why() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let first = Client::new(cfg.clone(), None).unwrap();
    assert!(first.await_ready(10_000));
    let second = Client::new(cfg.clone(), None).unwrap();
    second.track("Second".into(), props(0, 0)).unwrap();
    assert!(!second.await_ready(500));
    let why = second.stats().last_error.unwrap_or_default();
    assert!(why.contains("another Tributary client"), "{why}");
    assert!(why.contains(&*dir.path().to_string_lossy()), "{why}");
    // The first one is unaffected; once it is shut down the second takes over.
    first.track("First".into(), props(1, 0)).unwrap();
    assert_eq!(first.shutdown(10_000), FlushResult::Delivered);
    assert!(second.await_ready(10_000));
    assert_eq!(second.flush_blocking(10_000), FlushResult::Delivered);
    let events: Vec<_> = server.requests().iter().flat_map(|r| r.events()).collect();
    let names: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["First", "Second"]);
}

#[test]
fn clients_on_different_directories_are_independent() {
    let server_a = TestServer::start();
    let server_b = TestServer::start();
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let a = Client::new(test_config(&server_a.url(), dir_a.path()), None).unwrap();
    let b = Client::new(test_config(&server_b.url(), dir_b.path()), None).unwrap();
    b.set_network_available(false);
    for i in 0..3 {
        a.track("A".into(), props(i, 0)).unwrap();
        b.track("B".into(), props(100 + i, 0)).unwrap();
    }
    assert_eq!(a.flush_blocking(10_000), FlushResult::Delivered);
    assert!(matches!(
        b.flush_blocking(10_000),
        FlushResult::Offline { pending: 3 }
    ));
    assert_eq!(server_a.accepted_seqs(), vec![0, 1, 2]);
    assert_eq!(server_b.request_count(), 0);
    b.set_network_available(true);
    assert_eq!(b.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server_b.accepted_seqs(), vec![100, 101, 102]);
    assert_eq!(server_a.request_count(), 1);
}

#[test]
fn opting_out_deletes_queued_data_and_sends_nothing() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let client = Client::new(cfg.clone(), None).unwrap();
    client.set_network_available(false);
    let marker = "PRIVATE-MARKER-6f1c2a";
    for i in 0..50 {
        let p = serde_json::json!({ "seq": i, "secret": marker }).to_string();
        client.track("E".into(), p).unwrap();
    }
    assert!(matches!(
        client.flush_blocking(10_000),
        FlushResult::Offline { pending: 50 }
    ));
    assert!(
        any_file_contains(dir.path(), marker.as_bytes()).is_some(),
        "the events are on disk"
    );

    client.set_enabled(false);
    assert!(
        poll(WAIT, || client.stats().queued_events == 0),
        "{:?}",
        client.stats()
    );
    assert_eq!(client.stats().queued_bytes, 0);
    // Recording while opted out records nothing.
    let _ = client.track("E".into(), props(999, 0));
    assert_eq!(client.flush_blocking(5_000), FlushResult::Disabled);
    client.set_network_available(true);
    client.flush();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.request_count(),
        0,
        "nothing is sent after opting out"
    );
    assert_eq!(client.stats().queued_events, 0);

    // Opting back in records new events only.
    client.set_enabled(true);
    client.track("E".into(), props(1_000, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![1_000]);
    client.shutdown(1_000);
    drop(client);

    // The deleted events are gone from the files, not just unlinked from a table.
    let leftover = any_file_contains(dir.path(), marker.as_bytes());
    assert!(
        leftover.is_none(),
        "opted-out data still readable in {leftover:?}"
    );
    let again = reopen(&cfg, None);
    assert_eq!(again.stats().queued_events, 0);
}

#[test]
fn a_storage_dir_that_cannot_be_used_is_reported_not_thrown() {
    let server = TestServer::start();
    let dir = temp_dir();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let cfg = test_config(&server.url(), Path::new(&file));
    let client = Client::new(cfg, None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert!(!client.await_ready(500));
    let why = client.stats().last_error.unwrap_or_default();
    assert!(why.contains("not-a-directory"), "{why}");
    assert_eq!(client.stats().buffered_events, 1);
}

#[test]
fn storage_dir_is_created_if_missing() {
    let server = TestServer::start();
    let dir = temp_dir();
    let nested = dir.path().join("a/b/c");
    let client = Client::new(test_config(&server.url(), &nested), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert!(
        nested.join(DB_FILE).exists(),
        "{:?}",
        files_under(dir.path())
    );
}

#[test]
fn opting_out_survives_a_restart() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let c1 = Client::new(cfg.clone(), None).unwrap();
    c1.set_enabled(false);
    assert_eq!(c1.flush_blocking(5_000), FlushResult::Disabled);
    c1.shutdown(1_000);
    drop(c1);
    let c2 = reopen(&cfg, None);
    let _ = c2.track("E".into(), props(0, 0));
    assert_eq!(c2.flush_blocking(5_000), FlushResult::Disabled);
    assert_eq!(c2.stats().queued_events, 0);
    c2.set_enabled(true);
    c2.track("E".into(), props(1, 0)).unwrap();
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![1]);
}

/// Overwrites the queue database (and drops its WAL) with garbage.
fn corrupt_the_database(dir: &Path) {
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join(DB_FILE), garbage).unwrap();
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{DB_FILE}{side}")));
    }
}

fn corrupt_copies_in(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect()
}

#[test]
fn opt_out_and_identity_survive_a_corrupt_database() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let c1 = Client::new(cfg.clone(), None).unwrap();
    c1.identify("u-1".into(), String::new()).unwrap();
    let anonymous_id = c1.anonymous_id();
    c1.set_enabled(false);
    c1.shutdown(1_000);
    drop(c1);

    corrupt_the_database(dir.path());
    let c2 = reopen(&cfg, None);
    assert!(c2.await_ready(10_000));
    assert_eq!(c2.stats().database_resets, 1, "the database was replaced");
    assert_eq!(c2.anonymous_id(), anonymous_id);
    assert_eq!(c2.user_id().as_deref(), Some("u-1"));
    c2.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(
        c2.flush_blocking(5_000),
        FlushResult::Disabled,
        "a replaced database must not re-enable tracking"
    );
    assert_eq!(c2.stats().queued_events, 0);
    assert_eq!(server.request_count(), 0);
}

/// The consent and identity file is read on the writer thread, and a file
/// that cannot be read for now (an I/O error: iOS data protection before the
/// first unlock) is retried, never taken for opted out nor replaced. Made
/// unreadable here by putting a directory in its place. Events recorded
/// meanwhile wait in memory; once the file is readable they get the stored
/// identity, or are dropped (counted) if the user had opted out.
#[test]
fn a_consent_file_that_cannot_be_read_yet_is_retried_not_replaced() {
    for opted_out in [false, true] {
        let server = TestServer::start();
        let dir = temp_dir();
        let cfg = test_config(&server.url(), dir.path());
        let c1 = Client::new(cfg.clone(), None).unwrap();
        c1.identify("u-1".into(), String::new()).unwrap();
        let anonymous_id = c1.anonymous_id();
        if opted_out {
            c1.set_enabled(false);
        }
        assert!(c1.flush_blocking(5_000) != FlushResult::TimedOut { pending: 1 });
        c1.shutdown(1_000);
        drop(c1);
        let requests_before = server.request_count();

        let file = dir.path().join("tributary.state.json");
        let aside = dir.path().join("state.aside");
        std::fs::rename(&file, &aside).unwrap();
        std::fs::create_dir(&file).unwrap();
        let c2 = reopen(&cfg, None);
        for i in 0..3 {
            c2.track("During".into(), props(i, 0)).unwrap();
        }
        assert!(
            !c2.await_ready(300),
            "nothing opens before the consent is known"
        );
        assert_eq!(
            c2.stats().queued_events,
            0,
            "nothing stored before the consent is known"
        );
        std::fs::remove_dir(&file).unwrap();
        std::fs::rename(&aside, &file).unwrap();
        assert!(c2.await_ready(10_000));
        let result = c2.flush_blocking(10_000);
        let s = c2.stats();
        if opted_out {
            assert_eq!(result, FlushResult::Disabled);
            assert_eq!(s.dropped_opt_out, 3, "{s:?}");
            assert_eq!(server.request_count(), requests_before);
        } else {
            assert_eq!(result, FlushResult::Delivered, "{s:?}");
            let events: Vec<_> = server.requests().iter().flat_map(|r| r.events()).collect();
            let during: Vec<_> = events.iter().filter(|e| e["event"] == "During").collect();
            assert_eq!(during.len(), 3);
            for e in during {
                assert_eq!(e["anonymousId"], anonymous_id.as_str(), "{e}");
                assert_eq!(e["userId"], "u-1", "{e}");
            }
        }
        assert_eq!(c2.anonymous_id(), anonymous_id);
        assert_eq!(c2.user_id().as_deref(), Some("u-1"));
        c2.shutdown(1_000);
        let stored = std::fs::read_to_string(&file).unwrap();
        assert!(stored.contains(&anonymous_id), "{stored}");
        assert_eq!(stored.contains("\"enabled\":false"), opted_out, "{stored}");
    }
}

#[test]
fn opting_out_deletes_the_corrupt_copies() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    corrupt_the_database(dir.path());
    let client = Client::new(cfg, None).unwrap();
    assert!(client.await_ready(10_000));
    assert!(
        !corrupt_copies_in(dir.path()).is_empty(),
        "kept for diagnosis"
    );
    client.set_enabled(false);
    assert!(
        poll(WAIT, || corrupt_copies_in(dir.path()).is_empty()),
        "{:?}",
        corrupt_copies_in(dir.path())
    );
}

#[test]
fn unauthorized_data_is_delivered_after_a_restart() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    server.set_default(Reply::Status(401));
    let c1 = Client::new(cfg.clone(), None).unwrap();
    for i in 0..3 {
        c1.track("E".into(), props(i, 0)).unwrap();
    }
    assert!(matches!(
        c1.flush_blocking(10_000),
        FlushResult::Unauthorized { pending: 3 }
    ));
    c1.shutdown(500);
    drop(c1);
    // The key was fixed on the server side; a restart tries again.
    server.set_default(Reply::Ok);
    let c2 = reopen(&cfg, None);
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2]);
}

#[test]
fn backpressure_drops_are_counted_exactly() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    client.set_network_available(false);
    const N: u64 = 30_000;
    for i in 0..N {
        client.track("Flood".into(), props(i, 50)).unwrap();
    }
    let pending = match client.flush_blocking(60_000) {
        FlushResult::Offline { pending } => pending,
        other => panic!("expected Offline, got {other:?}"),
    };
    let s = client.stats();
    assert_eq!(
        pending + s.dropped_backpressure,
        N,
        "every event is either queued or counted as dropped: {s:?}"
    );
    assert_eq!(s.queued_events, pending);
}

/// `(anonymousId, sequence)` of every accepted event, in arrival order.
fn sequences(server: &TestServer) -> Vec<(String, u64)> {
    server
        .accepted_events()
        .iter()
        .map(|e| {
            (
                e["anonymousId"].as_str().unwrap().to_string(),
                e["sequence"].as_u64().expect("every event has a sequence"),
            )
        })
        .collect()
}

#[test]
fn every_event_carries_a_gap_free_sequence_kept_across_restarts_and_restarted_by_reset() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_bytes = 1_000;
    let c1 = Client::new(cfg.clone(), None).unwrap();
    let first = c1.anonymous_id();
    c1.set_network_available(false);
    c1.track("E".into(), props(0, 0)).unwrap();
    // Refused events take no number: the sequence stays gap-free.
    let _ = c1.track("Big".into(), props(99, 2_000));
    c1.identify("u-1".into(), String::new()).unwrap();
    c1.screen("S".into(), String::new()).unwrap();
    c1.shutdown(5_000);
    drop(c1);

    let c2 = reopen(&cfg, None);
    c2.track("E".into(), props(1, 0)).unwrap();
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    c2.reset();
    let second = c2.anonymous_id();
    c2.track("E".into(), props(2, 0)).unwrap();
    c2.group("g".into(), String::new()).unwrap();
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(
        sequences(&server),
        vec![
            (first.clone(), 1),
            (first.clone(), 2),
            (first.clone(), 3),
            (first, 4),
            (second.clone(), 1),
            (second, 2),
        ]
    );
}

#[test]
fn sequence_numbers_are_never_given_twice_when_the_database_is_lost() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let c1 = Client::new(cfg.clone(), None).unwrap();
    c1.set_network_available(false);
    for i in 0..3 {
        c1.track("E".into(), props(i, 0)).unwrap();
    }
    c1.shutdown(5_000);
    drop(c1);
    for file in [
        DB_FILE,
        &format!("{DB_FILE}-wal"),
        &format!("{DB_FILE}-shm"),
    ] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    let c2 = reopen(&cfg, None);
    c2.track("E".into(), props(3, 0)).unwrap();
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    let seqs = sequences(&server);
    assert_eq!(seqs.len(), 1);
    assert!(
        seqs[0].1 > 3,
        "numbers 1-3 were given to the lost events: {seqs:?}"
    );
}

#[test]
fn events_recorded_before_an_opt_out_are_never_sent_even_after_a_quick_opt_in() {
    for round in 0..20 {
        let server = TestServer::start();
        let dir = temp_dir();
        let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
        for i in 0..50 {
            client.track("Before".into(), props(i, 0)).unwrap();
        }
        client.set_enabled(false);
        client.set_enabled(true);
        client.track("After".into(), props(1_000, 0)).unwrap();
        assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
        assert_eq!(server.accepted_seqs(), vec![1_000], "round {round}");
        let s = client.stats();
        assert_eq!(s.dropped_opt_out, 50, "round {round}: {s:?}");
        assert_accounted(&s);
    }
}
