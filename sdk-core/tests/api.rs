//! The public API's errors and callbacks: invalid JSON, oversized events,
//! invalid configuration, shut-down clients and the logger.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tributary::{Client, Config, FlushResult, LogLevel, TributaryError};

#[test]
fn invalid_json_reports_argument_and_position() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    match client.track("E".into(), "{\n  \"plan\": pro\n}".into()) {
        Err(TributaryError::InvalidJson {
            argument,
            line,
            column,
            reason,
        }) => {
            assert_eq!(argument, "properties");
            assert_eq!(line, 2);
            assert!(column >= 11, "column {column}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
    match client.identify("u".into(), "{\"a\":1".into()) {
        Err(TributaryError::InvalidJson { argument, line, .. }) => {
            assert_eq!(argument, "traits");
            assert_eq!(line, 1);
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
    for not_object in ["[1,2]", "42", "\"text\"", "null"] {
        let err = client.track("E".into(), not_object.into()).unwrap_err();
        assert!(
            matches!(err, TributaryError::InvalidJson { .. }),
            "{not_object}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("JSON object"), "says what to do: {msg}");
    }
    // Nothing invalid was queued.
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.request_count(), 0);
}

#[test]
fn event_too_large_reports_size_and_limit_and_is_counted() {
    let server = TestServer::start();
    let dir = temp_dir();
    let mut cfg = test_config(&server.url(), dir.path());
    cfg.max_event_bytes = 1_000;
    cfg.max_batch_bytes = 10_000;
    let client = Client::new(cfg, None).unwrap();
    match client.track("E".into(), props(0, 2_000)) {
        Err(TributaryError::EventTooLarge { size, limit }) => {
            assert_eq!(limit, 1_000);
            assert!(size > 2_000, "size {size}");
        }
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    client.track("E".into(), props(1, 100)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![1]);
    assert_eq!(client.stats().dropped_too_large, 1);
}

/// Breaks one field of a valid config.
type Mutation = fn(&mut Config);

#[test]
fn invalid_config_names_the_field() {
    let base = || Config::new("http://127.0.0.1:9".into(), "key".into(), "/tmp/x".into());
    let cases: Vec<(&str, Mutation)> = vec![
        ("endpoint", |c| c.endpoint = "ftp://example.com".into()),
        ("endpoint", |c| c.endpoint = String::new()),
        ("write_key", |c| c.write_key = "  ".into()),
        ("storage_dir", |c| c.storage_dir = String::new()),
        ("flush_at", |c| c.flush_at = 0),
        ("flush_interval_ms", |c| c.flush_interval_ms = 0),
        ("max_batch_events", |c| c.max_batch_events = 0),
        ("max_event_bytes", |c| c.max_event_bytes = 10),
        ("max_batch_bytes", |c| {
            c.max_batch_bytes = c.max_event_bytes - 1
        }),
        ("max_queue_bytes", |c| {
            c.max_queue_bytes = c.max_batch_bytes - 1
        }),
        ("max_event_age_ms", |c| c.max_event_age_ms = 0),
        ("retry_base_delay_ms", |c| c.retry_base_delay_ms = 0),
        ("retry_max_delay_ms", |c| {
            c.retry_max_delay_ms = c.retry_base_delay_ms - 1
        }),
        ("connect_timeout_ms", |c| c.connect_timeout_ms = 0),
        ("request_timeout_ms", |c| c.request_timeout_ms = 0),
        ("library_name", |c| c.library_name = String::new()),
        // u64 values that would overflow as i64 milliseconds or bytes.
        ("max_event_age_ms", |c| c.max_event_age_ms = u64::MAX),
        ("flush_interval_ms", |c| c.flush_interval_ms = u64::MAX),
        ("retry_max_delay_ms", |c| c.retry_max_delay_ms = 1 << 63),
        ("request_timeout_ms", |c| c.request_timeout_ms = u64::MAX),
        ("connect_timeout_ms", |c| c.connect_timeout_ms = u64::MAX),
        ("max_queue_bytes", |c| c.max_queue_bytes = u64::MAX),
        ("max_buffer_bytes", |c| {
            c.max_buffer_bytes = c.max_event_bytes - 1
        }),
    ];
    for (field, mutate) in cases {
        let mut cfg = base();
        mutate(&mut cfg);
        match Client::new(cfg, None) {
            Err(TributaryError::InvalidConfig { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(!reason.is_empty());
                let err = TributaryError::InvalidConfig { field: f, reason };
                assert!(err.to_string().contains(field));
            }
            Err(other) => panic!("{field}: expected InvalidConfig, got {other}"),
            Ok(_) => panic!("{field}: a bad value was accepted"),
        }
    }
    assert!(base().validate().is_ok(), "the defaults are valid");
    let mut never = base();
    never.max_event_age_ms = Config::MAX_DURATION_MS;
    assert!(never.validate().is_ok(), "the maximum means never");
}

#[test]
fn set_write_key_rejects_an_empty_key() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    match client.set_write_key(" ".into()) {
        Err(TributaryError::InvalidConfig { field, .. }) => assert_eq!(field, "write_key"),
        other => panic!("expected InvalidConfig(write_key), got {other:?}"),
    }
}

#[test]
fn a_shut_down_client_refuses_to_record() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.shutdown(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), vec![0]);
    let err = client.track("E".into(), props(1, 0)).unwrap_err();
    assert_eq!(err, TributaryError::ShutDown);
    assert!(err.to_string().contains("new Client"), "{err}");
    assert!(matches!(
        client.identify("u".into(), String::new()),
        Err(TributaryError::ShutDown)
    ));
    assert!(matches!(
        client.page("P".into(), String::new()),
        Err(TributaryError::ShutDown)
    ));
    // Refused after shutdown, yet counted: recorded = delivered + dropped.
    let s = client.stats();
    assert_eq!(
        (s.recorded_events, s.uploaded_events, s.dropped_shutdown),
        (4, 1, 3)
    );
    // A second shutdown is harmless.
    client.shutdown(100);
}

#[test]
fn shutdown_while_offline_keeps_events_durable_for_the_next_client() {
    let server = TestServer::start();
    let dir = temp_dir();
    let cfg = test_config(&server.url(), dir.path());
    let c1 = Client::new(cfg.clone(), None).unwrap();
    c1.set_network_available(false);
    for i in 0..10 {
        c1.track("E".into(), props(i, 0)).unwrap();
    }
    // shutdown makes them durable without any flush_blocking first.
    assert!(matches!(
        c1.shutdown(5_000),
        FlushResult::Offline { pending: 10 }
    ));
    drop(c1);
    let c2 = Client::new(cfg, None).unwrap();
    assert_eq!(c2.flush_blocking(10_000), FlushResult::Delivered);
    assert_eq!(server.accepted_seqs(), (0..10).collect::<Vec<_>>());
}

#[test]
fn logger_receives_messages_from_background_threads() {
    let server = TestServer::start();
    server.push([Reply::Status(500)]);
    let dir = temp_dir();
    let logger = Arc::new(MemoryLogger::default());
    let client = Client::new(test_config(&server.url(), dir.path()), Some(logger.clone())).unwrap();
    client.track("E".into(), props(0, 0)).unwrap();
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    assert!(
        poll(Duration::from_secs(5), || logger
            .all()
            .iter()
            .any(|(l, m)| *l >= LogLevel::Warn && m.contains("500"))),
        "the 500 should be logged at Warn or above with its status: {:#?}",
        logger.all()
    );
}

#[test]
fn flush_blocking_on_an_empty_queue_is_delivered_at_once() {
    let server = TestServer::start();
    let dir = temp_dir();
    let client = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    assert_eq!(client.flush_blocking(5_000), FlushResult::Delivered);
    assert_eq!(server.request_count(), 0);
}
