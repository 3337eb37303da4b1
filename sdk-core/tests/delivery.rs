//! Delivery over real HTTP to a scripted collector on 127.0.0.1: the wire
//! format, the upload triggers, and the handling of each kind of answer.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::Value;
use support::*;
use tributary::{Client, DeviceContext, FlushResult};

const WAIT: Duration = Duration::from_secs(15);

fn is_rfc3339_ms(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 24 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let date_time = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23);
    let zone = &s[23..];
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && (b[23] == b'+' || b[23] == b'-')
            && digits(24..26)
            && b[26] == b':'
            && digits(27..29));
    date_time && zone_ok
}

fn is_uuid_v7(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 7)
}

fn new_client(server: &TestServer, dir: &std::path::Path) -> Arc<Client> {
    Client::new(test_config(&server.url(), dir), None).unwrap()
}

#[test]
fn rfc3339_checker_is_strict() {
    assert!(is_rfc3339_ms("2026-11-24T14:37:51.123Z"));
    assert!(is_rfc3339_ms("2026-11-24T14:37:51.123+01:00"));
    assert!(!is_rfc3339_ms("2026-11-24T14:37:51Z"));
    assert!(!is_rfc3339_ms("2026-11-24 14:37:51.123Z"));
}

#[test]
fn offline_then_online_delivers_everything_in_segment_wire_format() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    client.set_network_available(false);
    for i in 0..30 {
        client.track("Offline Event".into(), props(i, 10)).unwrap();
    }
    match client.flush_blocking(10_000) {
        FlushResult::Offline { pending } => assert_eq!(pending, 30),
        other => panic!("expected Offline {{ pending: 30 }}, got {other:?}"),
    }
    assert_eq!(client.stats().queued_events, 30);
    client.flush();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.request_count(),
        0,
        "nothing may be sent while offline"
    );

    client.set_network_available(true);
    server.wait_accepted(30, WAIT);
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);

    let reqs = server.requests();
    let anon = client.anonymous_id();
    assert!(!anon.is_empty());
    let mut ids = HashSet::new();
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/batch");
        let auth = r.header("authorization").expect("Authorization header");
        let b64 = auth.strip_prefix("Basic ").expect("Basic auth");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64 credentials");
        assert_eq!(String::from_utf8(decoded).unwrap(), "test-write-key:");
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(
            r.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "content-type: {:?}",
            r.header("content-type")
        );
        assert!(r.header("user-agent").is_some_and(|v| !v.is_empty()));
        assert!(is_uuid_v7(&r.key()), "Idempotency-Key {:?}", r.key());
        let body = r.body.as_ref().expect("gzipped JSON body");
        assert!(
            body["sentAt"].as_str().is_some_and(is_rfc3339_ms),
            "sentAt {:?}",
            body["sentAt"]
        );
        assert!(body["context"].is_object(), "batch context {body}");
        for ev in r.events() {
            assert_eq!(ev["type"], "track");
            assert_eq!(ev["event"], "Offline Event");
            assert_eq!(ev["anonymousId"].as_str(), Some(anon.as_str()));
            assert!(ev.get("userId").is_none_or(Value::is_null));
            let id = message_id(&ev);
            assert!(is_uuid_v7(&id), "messageId {id:?}");
            ids.insert(id);
            assert!(
                ev["timestamp"].as_str().is_some_and(is_rfc3339_ms),
                "timestamp {:?}",
                ev["timestamp"]
            );
            let lib = if ev["context"]["library"].is_object() {
                &ev["context"]["library"]
            } else {
                &body["context"]["library"]
            };
            assert_eq!(lib["name"], "tributary-rust", "context.library in {ev}");
            assert!(lib["version"].is_string());
        }
    }
    assert_eq!(server.accepted_seqs(), (0..30).collect::<Vec<_>>());
    assert_eq!(ids.len(), 30, "every event has its own messageId");
    let stats = client.stats();
    assert_eq!(stats.queued_events, 0);
    assert_eq!(stats.queued_bytes, 0);
    assert_eq!(stats.uploaded_events, 30);
    assert_eq!(stats.in_flight_batch, None);
}

#[test]
fn event_types_identity_reset_and_context() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    let anon1 = client.anonymous_id();
    client.set_context(DeviceContext {
        app_name: Some("Sample".into()),
        app_version: Some("1.2.3".into()),
        os_name: Some("Android".into()),
        locale: Some("fr-FR".into()),
        timezone: Some("Europe/Paris".into()),
        network_wifi: Some(true),
        ..Default::default()
    });
    client
        .identify("user-1".into(), r#"{"seq":0,"plan":"pro"}"#.into())
        .unwrap();
    assert_eq!(client.user_id().as_deref(), Some("user-1"));
    client.track("Clicked".into(), props(1, 0)).unwrap();
    client.screen("Home".into(), props(2, 0)).unwrap();
    client
        .group("group-9".into(), r#"{"seq":3,"size":12}"#.into())
        .unwrap();
    client.alias("user-2".into()).unwrap();
    assert_eq!(client.user_id().as_deref(), Some("user-2"));
    client.reset();
    assert_eq!(client.user_id(), None);
    let anon2 = client.anonymous_id();
    assert_ne!(anon1, anon2, "reset() starts a new anonymous id");
    client.track("After Reset".into(), props(5, 0)).unwrap();
    client.track("No Properties".into(), String::new()).unwrap();
    client.page("Help".into(), props(8, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);

    let events: Vec<Value> = server.accepted_events();
    assert_eq!(events.len(), 8, "{events:#?}");
    let identify = &events[0];
    assert_eq!(identify["type"], "identify");
    assert_eq!(identify["userId"], "user-1");
    assert_eq!(identify["traits"]["plan"], "pro");
    assert_eq!(identify["anonymousId"].as_str(), Some(anon1.as_str()));
    assert_eq!(identify["context"]["app"]["name"], "Sample");
    assert_eq!(identify["context"]["app"]["version"], "1.2.3");
    assert_eq!(identify["context"]["os"]["name"], "Android");
    assert_eq!(identify["context"]["locale"], "fr-FR");
    assert_eq!(identify["context"]["timezone"], "Europe/Paris");
    assert_eq!(identify["context"]["network"]["wifi"], true);
    let track = &events[1];
    assert_eq!(track["type"], "track");
    assert_eq!(track["event"], "Clicked");
    assert_eq!(track["userId"], "user-1");
    let screen = &events[2];
    assert_eq!(screen["type"], "screen");
    assert_eq!(screen["name"], "Home");
    assert_eq!(screen["properties"]["seq"], 2);
    let group = &events[3];
    assert_eq!(group["type"], "group");
    assert_eq!(group["groupId"], "group-9");
    assert_eq!(group["traits"]["size"], 12);
    let alias = &events[4];
    assert_eq!(alias["type"], "alias");
    assert_eq!(alias["userId"], "user-2");
    assert_eq!(alias["previousId"], "user-1");
    let after = &events[5];
    assert_eq!(after["event"], "After Reset");
    assert_eq!(after["anonymousId"].as_str(), Some(anon2.as_str()));
    assert!(after.get("userId").is_none_or(Value::is_null), "{after}");
    assert_eq!(events[6]["event"], "No Properties");
    let page = &events[7];
    assert_eq!(page["type"], "page");
    assert_eq!(page["name"], "Help");
    assert_eq!(page["properties"]["seq"], 8);
}

#[test]
fn flush_at_triggers_an_upload() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.flush_at = 5;
    let client = Client::new(cfg, None).unwrap();
    for i in 0..5 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    // No flush() call: reaching flush_at is the trigger.
    server.wait_accepted(5, WAIT);
    assert_eq!(server.accepted_seqs(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn flush_interval_triggers_an_upload() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.flush_interval_ms = 200;
    let client = Client::new(cfg, None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    server.wait_accepted(1, WAIT);
    client.track("E".into(), props(1, 0)).unwrap();
    server.wait_accepted(2, WAIT);
}

#[test]
fn per_event_rejection_with_400_drops_those_and_resends_the_rest_as_a_new_batch() {
    let server = TestServer::start();
    let logger = Arc::new(MemoryLogger::default());
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), Some(logger.clone())).unwrap();
    server.push([Reply::Rejections {
        status: 400,
        rejected: vec![
            (1, "property seq is invalid here".into()),
            (3, "event name is blocked by schema".into()),
        ],
    }]);
    for i in 0..5 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:#?}", summarize(&reqs));
    assert_eq!(reqs[0].seqs(), vec![0, 1, 2, 3, 4]);
    assert_eq!(reqs[1].seqs(), vec![0, 2, 4]);
    assert_ne!(reqs[0].key(), reqs[1].key(), "the rest goes in a new batch");
    let first = reqs[0].message_ids();
    assert_eq!(
        reqs[1].message_ids(),
        vec![first[0].clone(), first[2].clone(), first[4].clone()],
        "the remaining events keep their messageIds"
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 2);
    assert_eq!(stats.uploaded_events, 3);
    assert_eq!(stats.queued_events, 0);
    let logs = logger.all();
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains("event name is blocked by schema")),
        "the server's reason is logged: {logs:#?}"
    );
}

#[test]
fn per_event_rejection_with_200_drops_those_and_does_not_resend_the_accepted() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    server.push([Reply::Rejections {
        status: 200,
        rejected: vec![(0, "too old".into())],
    }]);
    for i in 0..4 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    let result = client.flush_blocking(10_000);
    assert_eq!(result, FlushResult::Delivered);
    std::thread::sleep(Duration::from_millis(200));
    let reqs = server.requests();
    assert_eq!(
        reqs.len(),
        1,
        "accepted events must not be sent again under a new key: {:#?}",
        summarize(&reqs)
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 1);
    assert_eq!(stats.uploaded_events, 3);
    assert_eq!(stats.queued_events, 0);
}

#[test]
fn whole_batch_400_is_dropped_and_counted() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    server.push([Reply::Status(400)]);
    for i in 0..3 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    client.flush_blocking(10_000);
    assert!(
        poll(WAIT, || client.stats().queued_events == 0),
        "{:?}",
        client.stats()
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 3);
    assert_eq!(stats.uploaded_events, 0);
    assert_eq!(server.request_count(), 1, "a rejected batch is not retried");
    // Later events still flow.
    client.track("E".into(), props(3, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![3]);
}

#[test]
fn unauthorized_pauses_uploads_and_keeps_data_until_the_write_key_changes() {
    for status in [401u16, 403] {
        let server = TestServer::start();
        let dir = temp_dir();
        let mut cfg = test_config(&server.url(), dir.path());
        cfg.write_key = "bad-key".into();
        let client = Client::new(cfg, None).unwrap();
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bad-key:")
        );
        server.set_rule(move |r| {
            (r.header("authorization") == Some(&bad)).then_some(Reply::Status(status))
        });
        for i in 0..3 {
            client.track("E".into(), props(i, 0)).unwrap();
        }
        match client.flush_blocking(10_000) {
            FlushResult::Unauthorized { pending } => assert_eq!(pending, 3),
            other => panic!("{status}: expected Unauthorized {{ pending: 3 }}, got {other:?}"),
        }
        let seen = server.request_count();
        assert!(seen >= 1);
        client.flush();
        client.track("E".into(), props(3, 0)).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            server.request_count(),
            seen,
            "{status}: no uploads while unauthorized: {:#?}",
            summarize(&server.requests())
        );
        assert_eq!(client.stats().queued_events, 4, "{status}: data is kept");
        assert_eq!(client.stats().dropped_rejected, 0);

        client.set_write_key("good-key".into()).unwrap();
        assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
        assert_eq!(server.accepted_seqs(), vec![0, 1, 2, 3]);
        let last = server.requests().pop().unwrap();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("good-key:")
        );
        assert_eq!(last.header("authorization"), Some(good.as_str()));
    }
}

#[test]
fn status_413_splits_the_batch_in_two_until_it_fits() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    server.set_rule(|r| (r.events().len() > 2).then_some(Reply::Status(413)));
    for i in 0..8 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(
        server.accepted_seqs(),
        (0..8).collect::<Vec<_>>(),
        "{:#?}",
        summarize(&reqs)
    );
    assert_eq!(reqs[0].events().len(), 8);
    assert_eq!(
        reqs[1].events().len(),
        4,
        "split in two: {:#?}",
        summarize(&reqs)
    );
    let sizes: Vec<usize> = reqs.iter().map(|r| r.events().len()).collect();
    assert!(
        sizes.iter().all(|&n| [8, 4, 2].contains(&n)),
        "halving: {sizes:?}"
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 0);
    assert_eq!(stats.uploaded_events, 8);
    // Each accepted event keeps the messageId it had in the first attempt.
    let ids = ids_by_seq(&reqs);
    assert!(ids.values().all(|v| v.len() == 1), "{ids:#?}");
}

#[test]
fn status_413_for_a_single_event_drops_it_and_counts_it() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    server.set_rule(|r| {
        r.events()
            .iter()
            .any(|e| {
                e["properties"]["pad"]
                    .as_str()
                    .is_some_and(|p| p.len() > 1000)
            })
            .then_some(Reply::Status(413))
    });
    for i in 0..4 {
        let pad = if i == 2 { 3000 } else { 0 };
        client.track("E".into(), props(i, pad)).unwrap();
    }
    client.flush_blocking(15_000);
    assert!(
        poll(WAIT, || client.stats().queued_events == 0),
        "{:?}",
        client.stats()
    );
    assert_eq!(
        server.accepted_seqs(),
        vec![0, 1, 3],
        "{:#?}",
        summarize(&server.requests())
    );
    let stats = client.stats();
    assert_eq!(stats.dropped_rejected, 1);
    assert_eq!(stats.uploaded_events, 3);
}

#[test]
fn retry_after_in_seconds_is_a_floor() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    server.push([Reply::RetryAfter {
        status: 429,
        value: "1".into(),
    }]);
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:#?}", summarize(&reqs));
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {} ms, before Retry-After: 1",
        ms(gap)
    );
    assert_eq!(reqs[0].key(), reqs[1].key(), "a retry carries the same key");
    assert_eq!(reqs[0].message_ids(), reqs[1].message_ids());
    assert!(client.stats().retries >= 1);
}

#[test]
fn retry_after_as_an_http_date_is_a_floor() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    let not_before = SystemTime::now() + Duration::from_secs(2);
    let value = httpdate::fmt_http_date(not_before);
    // The date has whole seconds: that truncated instant is the floor.
    let floor = httpdate::parse_http_date(&value).unwrap();
    server.push([Reply::RetryAfter { status: 503, value }]);
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:#?}", summarize(&reqs));
    // 50 ms of slack for clock reads on two sides of a socket.
    assert!(
        reqs[1].at_wall + Duration::from_millis(50) >= floor,
        "retried {:?} before the Retry-After date",
        floor.duration_since(reqs[1].at_wall).unwrap_or_default()
    );
    assert_eq!(reqs[0].key(), reqs[1].key());
}

#[test]
fn transient_failures_are_retried_with_the_same_key_and_events_and_never_dropped() {
    let server = TestServer::start();
    let dir = temp_dir();
    let logger = Arc::new(MemoryLogger::default());
    let client = Client::new(test_config(&server.url(), dir.path()), Some(logger.clone())).unwrap();
    let mut script = vec![Reply::Status(500); 12];
    script.extend([
        Reply::Close,
        Reply::Status(502),
        Reply::Status(503),
        Reply::Status(408),
        Reply::Status(429),
        Reply::Close,
    ]);
    let failures = script.len();
    server.push(script);
    for i in 0..6 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(30_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), failures + 1, "{:#?}", summarize(&reqs));
    for r in &reqs {
        assert_eq!(
            r.key(),
            reqs[0].key(),
            "same Idempotency-Key on every retry"
        );
        assert_eq!(
            r.message_ids(),
            reqs[0].message_ids(),
            "same events on every retry"
        );
    }
    // sentAt is set per attempt, not when the batch is made.
    let sent: BTreeSet<String> = reqs
        .iter()
        .filter_map(|r| r.body.as_ref()?["sentAt"].as_str().map(String::from))
        .collect();
    assert!(
        sent.len() > 1,
        "sentAt should change between attempts: {sent:?}"
    );
    let stats = client.stats();
    assert_eq!(stats.uploaded_events, 6);
    assert!(
        stats.retries >= failures as u64,
        "retries {}",
        stats.retries
    );
    assert!(stats.last_error.is_some());
    assert_eq!(stats.dropped_rejected, 0);
    assert!(!logger.all().is_empty(), "failures are logged");
}

#[test]
fn a_hanging_server_times_out_and_the_batch_is_retried() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.request_timeout_ms = 800;
    let client = Client::new(cfg, None).unwrap();
    server.push([Reply::Hang]);
    for i in 0..3 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    client.flush();
    let reqs = server.wait_until(WAIT, "the hung request", |r| !r.is_empty());
    // While the request hangs, the batch is in flight.
    assert!(
        poll(Duration::from_secs(2), || client
            .stats()
            .in_flight_batch
            .as_deref()
            == Some(reqs[0].key().as_str())),
        "in_flight_batch should be the hung key: {:?}",
        client.stats()
    );
    let stats = client.stats();
    assert_eq!(stats.in_flight_events, 3);
    assert_eq!(stats.queued_events, 3);
    assert!(stats.queued_bytes > 0);
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:#?}", summarize(&reqs));
    assert_eq!(reqs[0].key(), reqs[1].key());
    assert_eq!(reqs[0].message_ids(), reqs[1].message_ids());
    let stats = client.stats();
    assert_eq!(stats.in_flight_events, 0);
    assert_eq!(stats.in_flight_batch, None);
    assert_eq!(stats.uploaded_events, 3);
    assert!(stats.retries >= 1);
    assert!(stats.last_error.is_some(), "the timeout is the last error");
}

#[test]
fn at_most_one_request_in_flight_and_batches_respect_max_batch_events() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.flush_at = 5;
    cfg.max_batch_events = 5;
    let client = Client::new(cfg, None).unwrap();
    server.set_default(Reply::Delay(Duration::from_millis(30), Box::new(Reply::Ok)));
    for i in 0..60 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(30_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (0..60).collect::<Vec<_>>());
    assert_eq!(server.max_in_flight(), 1);
    assert!(server.requests().iter().all(|r| r.events().len() <= 5));
}

#[test]
fn max_batch_bytes_limits_a_batch() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_bytes = 2_000;
    cfg.max_batch_bytes = 5_000;
    let client = Client::new(cfg, None).unwrap();
    for i in 0..20 {
        client.track("E".into(), props(i, 1_000)).unwrap();
    }
    assert_eq!(client.flush_blocking(15_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (0..20).collect::<Vec<_>>());
    for r in server.requests() {
        let bytes: usize = r.events().iter().map(|e| e.to_string().len()).sum();
        assert!(
            r.events().len() <= 5,
            "{} events of ~1 KB",
            r.events().len()
        );
        assert!(bytes <= 5_000 + 500, "{bytes} bytes of events in one batch");
    }
}

#[test]
fn eight_threads_recording_at_once_deliver_every_event_exactly_once() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.flush_at = 100;
    let client = Client::new(cfg, None).unwrap();
    const PER_THREAD: u64 = 250;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    client
                        .track(format!("thread-{t}"), props(t * 1_000 + i, 20))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(client.flush_blocking(30_000), FlushResult::Delivered);
    let events = server.accepted_events();
    assert_eq!(
        events.len(),
        8 * PER_THREAD as usize,
        "no duplicates, no losses"
    );
    let ids: HashSet<String> = events.iter().map(message_id).collect();
    assert_eq!(ids.len(), events.len(), "distinct messageIds");
    let expected: Vec<u64> = (0..8)
        .flat_map(|t| (0..PER_THREAD).map(move |i| t * 1_000 + i))
        .collect();
    assert_eq!(server.accepted_seqs(), expected);
    // Per thread, events arrive in recording order.
    for t in 0..8u64 {
        let mine: Vec<u64> = events
            .iter()
            .filter(|e| e["event"] == format!("thread-{t}"))
            .filter_map(seq)
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "thread {t} out of order"
        );
    }
    let stats = client.stats();
    assert_eq!(stats.uploaded_events, 8 * PER_THREAD);
    assert_eq!(stats.dropped_backpressure, 0);
}

#[test]
fn stats_count_queued_and_uploaded() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = new_client(&server, dir.path());
    assert_eq!(client.stats(), tributary::Stats::default());
    client.set_network_available(false);
    for i in 0..3 {
        client.track("E".into(), props(i, 100)).unwrap();
    }
    client.flush_blocking(10_000);
    let s = client.stats();
    assert_eq!(s.queued_events, 3);
    assert!(s.queued_bytes >= 300, "queued_bytes {}", s.queued_bytes);
    assert_eq!(s.uploaded_events, 0);
    assert_eq!(s.in_flight_events, 0);
    client.set_network_available(true);
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let s = client.stats();
    assert_eq!(s.queued_events, 0);
    assert_eq!(s.queued_bytes, 0);
    assert_eq!(s.uploaded_events, 3);
    assert_eq!(s.retries, 0);
    assert_eq!(s.last_error, None);
}

/// The scripted server itself: `Close` drops the socket unanswered, `Hang`
/// never answers, and bodies are gunzipped and recorded.
#[test]
fn test_server_scripts_close_hang_and_records_gzip_bodies() {
    use std::io::{Read, Write};
    let server = TestServer::start();
    server.push([Reply::Close, Reply::Hang, Reply::Status(429)]);
    let body = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"batch":[{"messageId":"m1","properties":{"seq":7}}]}"#)
            .unwrap();
        gz.finish().unwrap()
    };
    let send = || {
        let mut s =
            std::net::TcpStream::connect(server.url().trim_start_matches("http://")).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let head = format!(
            "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nIdempotency-Key: k\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        let mut out = Vec::new();
        let res = s.read_to_end(&mut out);
        (
            res.map_err(|e| e.kind()),
            String::from_utf8_lossy(&out).into_owned(),
        )
    };
    let (closed, text) = send();
    assert_eq!(closed, Ok(0), "Close: EOF without a byte of answer");
    assert!(text.is_empty());
    let (hung, text) = send();
    assert!(hung.is_err(), "Hang: no answer within the read timeout");
    assert!(text.is_empty());
    let (_, text) = send();
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].key(), "k");
    assert_eq!(reqs[0].seqs(), vec![7]);
    assert_eq!(reqs[0].message_ids(), vec!["m1".to_string()]);
}

#[test]
fn flush_blocking_times_out_while_the_server_hangs_and_data_stays_queued() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.request_timeout_ms = 10_000;
    let client = Client::new(cfg, None).unwrap();
    server.push([Reply::Hang]);
    for i in 0..4 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    let started = std::time::Instant::now();
    let result = client.flush_blocking(400);
    assert_eq!(result, FlushResult::TimedOut { pending: 4 });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "flush_blocking(400) returned after {} ms",
        ms(started.elapsed())
    );
    assert_eq!(client.stats().queued_events, 4);
    assert_eq!(server.request_count(), 1, "still one request in flight");
}

// --- Answers that are not what they seem -------------------------------------

#[test]
fn a_redirect_is_a_failed_attempt_and_is_never_followed() {
    let server = TestServer::start();
    server.push([Reply::Raw {
        status: 302,
        headers: vec![("location".into(), format!("{}/elsewhere", server.url()))],
        body: String::new(),
    }]);
    let dir = temp_dir();
    let logger = Arc::new(MemoryLogger::default());
    let client = Client::new(test_config(&server.url(), dir.path()), Some(logger.clone())).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .all(|r| r.method == "POST" && r.path == "/v1/batch"),
        "{:?}",
        summarize(&reqs)
    );
    assert_eq!(reqs.len(), 2, "{:?}", summarize(&reqs));
    assert_eq!(reqs[0].key(), reqs[1].key(), "retried as the same batch");
    assert_eq!(client.stats().retries, 1);
    assert!(
        logger
            .all()
            .iter()
            .any(|(_, m)| m.contains("302") && m.contains("not followed")),
        "{:#?}",
        logger.all()
    );
}

#[test]
fn a_2xx_that_is_not_json_does_not_delete_the_batch() {
    let server = TestServer::start();
    server.push([Reply::Raw {
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: "<html><body>Log in to the hotel Wi-Fi</body></html>".into(),
    }]);
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:?}", summarize(&reqs));
    assert_eq!(reqs[0].key(), reqs[1].key());
    let s = client.stats();
    assert_eq!((s.uploaded_events, s.retries), (1, 1), "{s:?}");
}

/// 422 `idempotency_key_reused` (the server saw this key with other events:
/// some were evicted since the first attempt) sends the same events under a new
/// key at once, with no event dropped; a 422 with another code is retried.
#[test]
fn a_reused_idempotency_key_gets_the_batch_a_new_key() {
    let server = TestServer::start();
    let reused = serde_json::to_string(&tributary_protocol::ErrorBody::new(
        tributary_protocol::ErrorCode::IdempotencyKeyReused,
        "used for other events",
    ))
    .unwrap();
    server.push([
        Reply::Raw {
            status: 422,
            headers: vec![("content-type".into(), "application/json".into())],
            body: reused,
        },
        Reply::Ok,
    ]);
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    for i in 0..3 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:?}", summarize(&reqs));
    assert_ne!(reqs[0].key(), reqs[1].key());
    assert_eq!(reqs[0].message_ids(), reqs[1].message_ids());
    let s = client.stats();
    assert_eq!(
        (s.uploaded_events, s.retries, s.dropped_rejected),
        (3, 0, 0),
        "{s:?}"
    );
}

#[test]
fn segment_success_answer_and_an_empty_2xx_are_acknowledgements() {
    let server = TestServer::start();
    server.push([
        Reply::Raw {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: r#"{"success":true}"#.into(),
        },
        Reply::Raw {
            status: 204,
            headers: vec![],
            body: String::new(),
        },
    ]);
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    client.track("E".into(), props(1, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.request_count(), 2);
    let s = client.stats();
    assert_eq!((s.uploaded_events, s.retries), (2, 0), "{s:?}");
}

#[test]
fn a_400_rejecting_only_indices_outside_the_batch_backs_off_and_resends_the_same_batch() {
    let server = TestServer::start();
    server.push([Reply::Rejections {
        status: 400,
        rejected: vec![(7, "no such event".into()), (99, "nor this".into())],
    }]);
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    for i in 0..3 {
        client.track("E".into(), props(i, 0)).unwrap();
    }
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{:?}", summarize(&reqs));
    assert_eq!(reqs[0].key(), reqs[1].key(), "a retry, not a new batch");
    assert_eq!(reqs[1].seqs(), vec![0, 1, 2]);
    let s = client.stats();
    assert_eq!(
        (s.retries, s.dropped_rejected, s.uploaded_events),
        (1, 0, 3),
        "{s:?}"
    );
}

#[test]
fn coming_back_online_retries_at_once_but_honours_retry_after() {
    // Own backoff: a retry delay drawn from [0, 10 min] is cut short.
    let server = TestServer::start();
    server.push([Reply::Status(503)]);
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.retry_base_delay_ms = 600_000;
    cfg.retry_max_delay_ms = 600_000;
    let client = Client::new(cfg.clone(), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    client.flush();
    assert!(poll(Duration::from_secs(10), || client.stats().retries == 1));
    client.set_network_available(false);
    client.set_network_available(true);
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.request_count(), 2);
    drop(client);

    // A wait the server asked for is not cut short.
    let server = TestServer::start();
    server.push([Reply::RetryAfter {
        status: 503,
        value: "3600".into(),
    }]);
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    client.flush();
    assert!(poll(Duration::from_secs(10), || client.stats().retries == 1));
    client.set_network_available(false);
    client.set_network_available(true);
    assert!(matches!(
        client.flush_blocking(300),
        FlushResult::TimedOut { pending: 1 }
    ));
    assert_eq!(server.request_count(), 1);
}
