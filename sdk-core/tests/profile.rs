//! Super-properties, traits, sessions, `page()` and per-call options, end to
//! end: recorded into a real SQLite queue in a temporary directory, delivered
//! over real loopback HTTP, read back from the collector, and kept across a
//! restart on the same directory. Sessions run on an injected clock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use support::*;
use tributary::{Client, EventOptions, FlushResult, TributaryError};

const MIN: i64 = 60_000;
const T0: i64 = 1_900_000_000_000;

fn client(server: &TestServer, dir: &std::path::Path, clock: &Arc<AtomicI64>) -> Arc<Client> {
    let client = Client::new(test_config(&server.url(), dir), None).unwrap();
    let c = clock.clone();
    client.set_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    // The state file is read (the stored profile adopted) before the test goes on.
    client.anonymous_id();
    client
}

fn deliver(client: &Client, server: &TestServer) -> Vec<Value> {
    assert_eq!(client.flush_blocking(10_000), FlushResult::Delivered);
    server.accepted_events()
}

#[test]
fn super_properties_are_merged_persisted_and_reset() {
    let server = TestServer::start();
    let dir = temp_dir();
    let clock = Arc::new(AtomicI64::new(T0));
    let c = client(&server, dir.path(), &clock);
    c.register(r#"{"plan":"pro","build":1}"#.into()).unwrap();
    c.track("A".into(), r#"{"build":2}"#.into()).unwrap();
    c.screen("Home".into(), String::new()).unwrap();
    c.page("Docs".into(), r#"{"path":"/docs"}"#.into()).unwrap();
    c.group("g1".into(), r#"{"size":3}"#.into()).unwrap();
    c.unregister("build".into());
    c.track("B".into(), String::new()).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&c.super_properties()).unwrap(),
        json!({"plan": "pro"})
    );
    let events = deliver(&c, &server);
    assert_eq!(
        events[0]["properties"],
        json!({"plan": "pro", "build": 2}),
        "the call's own wins"
    );
    assert_eq!(events[1]["type"], "screen");
    assert_eq!(events[1]["properties"], json!({"plan": "pro", "build": 1}));
    assert_eq!(events[2]["type"], "page");
    assert_eq!(events[2]["name"], "Docs");
    assert_eq!(
        events[2]["properties"],
        json!({"plan": "pro", "build": 1, "path": "/docs"})
    );
    assert_eq!(
        events[3]["traits"],
        json!({"size": 3}),
        "group traits are not merged"
    );
    assert_eq!(events[4]["properties"], json!({"plan": "pro"}));
    assert!(matches!(
        c.register("[1]".into()),
        Err(TributaryError::InvalidJson { .. })
    ));
    c.shutdown(5_000);
    drop(c);

    // A new client on the same directory: still registered.
    let c = client(&server, dir.path(), &clock);
    assert_eq!(
        serde_json::from_str::<Value>(&c.super_properties()).unwrap(),
        json!({"plan": "pro"})
    );
    c.track("C".into(), String::new()).unwrap();
    c.reset();
    c.track("D".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert_eq!(events[5]["properties"], json!({"plan": "pro"}));
    assert_eq!(events[6]["properties"], json!({}), "reset forgets them");
    assert_eq!(c.super_properties(), "{}");
}

#[test]
fn traits_accumulate_go_in_every_context_and_survive_a_restart() {
    let server = TestServer::start();
    let dir = temp_dir();
    let clock = Arc::new(AtomicI64::new(T0));
    let c = client(&server, dir.path(), &clock);
    c.track("Before".into(), String::new()).unwrap();
    c.identify(
        "u1".into(),
        r#"{"email":"a@example.com","plan":"free"}"#.into(),
    )
    .unwrap();
    c.identify("u1".into(), r#"{"plan":"pro"}"#.into()).unwrap();
    c.track("After".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert!(
        events[0]["context"].get("traits").is_none(),
        "{}",
        events[0]
    );
    assert_eq!(
        events[2]["traits"],
        json!({"email": "a@example.com", "plan": "pro"})
    );
    assert_eq!(
        events[3]["context"]["traits"],
        json!({"email": "a@example.com", "plan": "pro"})
    );
    assert_eq!(events[3]["userId"], "u1");
    c.shutdown(5_000);
    drop(c);

    let c = client(&server, dir.path(), &clock);
    assert_eq!(
        serde_json::from_str::<Value>(&c.traits()).unwrap(),
        json!({"email": "a@example.com", "plan": "pro"})
    );
    c.reset();
    assert_eq!(c.traits(), "{}");
}

#[test]
fn sessions_rotate_after_thirty_minutes_in_the_background_and_across_restarts() {
    let server = TestServer::start();
    let dir = temp_dir();
    let clock = Arc::new(AtomicI64::new(T0));
    let c = client(&server, dir.path(), &clock);
    c.app_foregrounded();
    c.track("Open".into(), String::new()).unwrap();
    assert_eq!(c.session_id(), T0);
    // 29 minutes in the background: the same session.
    clock.store(T0 + MIN, Ordering::SeqCst);
    c.app_backgrounded();
    clock.store(T0 + 30 * MIN - 1, Ordering::SeqCst);
    c.app_foregrounded();
    c.track("Back soon".into(), String::new()).unwrap();
    // 30 minutes in the background: a new session.
    clock.store(T0 + 40 * MIN, Ordering::SeqCst);
    c.app_backgrounded();
    clock.store(T0 + 70 * MIN, Ordering::SeqCst);
    c.app_foregrounded();
    c.track("Back late".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    let sessions: Vec<&Value> = events.iter().map(|e| &e["context"]["sessionId"]).collect();
    assert_eq!(sessions, [&json!(T0), &json!(T0), &json!(T0 + 70 * MIN)]);

    // Killed in the background: the next start continues the count.
    clock.store(T0 + 80 * MIN, Ordering::SeqCst);
    c.app_backgrounded();
    c.shutdown(5_000);
    drop(c);
    clock.store(T0 + 85 * MIN, Ordering::SeqCst);
    let c = client(&server, dir.path(), &clock);
    c.app_foregrounded();
    assert_eq!(c.session_id(), T0 + 70 * MIN, "back within the timeout");
    clock.store(T0 + 90 * MIN, Ordering::SeqCst);
    c.app_backgrounded();
    c.shutdown(5_000);
    drop(c);
    clock.store(T0 + 120 * MIN, Ordering::SeqCst);
    let c = client(&server, dir.path(), &clock);
    c.app_foregrounded();
    assert_eq!(
        c.session_id(),
        T0 + 120 * MIN,
        "30 minutes away across a restart"
    );
}

#[test]
fn per_call_options_set_the_timestamp_context_and_integrations() {
    let server = TestServer::start();
    let dir = temp_dir();
    let clock = Arc::new(AtomicI64::new(T0));
    let c = client(&server, dir.path(), &clock);
    let options = EventOptions {
        timestamp_ms: Some(1_700_000_000_123),
        context_json: Some(r#"{"ip":"0.0.0.0","locale":"fr-FR"}"#.into()),
        integrations_json: Some(r#"{"All":false,"Mixpanel":true}"#.into()),
    };
    c.track_with_options("Bought".into(), r#"{"sku":"a"}"#.into(), options.clone())
        .unwrap();
    c.page_with_options("Pricing".into(), String::new(), options.clone())
        .unwrap();
    c.screen_with_options("Cart".into(), String::new(), EventOptions::default())
        .unwrap();
    c.identify_with_options("u9".into(), String::new(), options.clone())
        .unwrap();
    c.group_with_options("g".into(), String::new(), options)
        .unwrap();
    let bad = EventOptions {
        integrations_json: Some("true".into()),
        ..EventOptions::default()
    };
    assert!(matches!(
        c.track_with_options("X".into(), String::new(), bad),
        Err(TributaryError::InvalidJson { argument, .. }) if argument == "integrations"
    ));
    let events = deliver(&c, &server);
    assert_eq!(events.len(), 5);
    for i in [0, 1, 3, 4] {
        let e = &events[i];
        assert_eq!(e["timestamp"], "2023-11-14T22:13:20.123Z", "{e}");
        assert_eq!(e["context"]["ip"], "0.0.0.0");
        assert_eq!(e["context"]["locale"], "fr-FR");
        assert_eq!(
            e["context"]["library"]["name"], "tributary-rust",
            "other keys kept"
        );
        assert_eq!(e["context"]["sessionId"], json!(T0));
        assert_eq!(e["integrations"], json!({"All": false, "Mixpanel": true}));
    }
    assert_eq!(events[1]["type"], "page");
    assert!(events[2].get("integrations").is_none());
    assert_ne!(events[2]["timestamp"], events[0]["timestamp"]);
}

/// Install/update detection is the core's: the platform reports the version at
/// each launch, the state file on disk remembers it across clients, and the
/// events reach a real collector with Segment's names and properties.
#[test]
fn application_installed_then_updated_across_restarts_and_kept_by_reset() {
    let server = TestServer::start();
    let dir = temp_dir();
    let clock = Arc::new(AtomicI64::new(T0));
    let names = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["event"].as_str().unwrap_or_default().to_string())
            .collect()
    };

    // First launch: Installed, before what the app records next.
    let c = client(&server, dir.path(), &clock);
    c.app_launched("1.0".into(), Some("10".into()), true);
    c.track("Application Opened".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert_eq!(
        names(&events),
        ["Application Installed", "Application Opened"]
    );
    assert_eq!(
        events[0]["properties"],
        json!({"version": "1.0", "build": "10"})
    );
    c.reset(); // logging out does not forget the installation
    c.shutdown(5_000);
    drop(c);
    let state = std::fs::read_to_string(dir.path().join("tributary.state.json")).unwrap();
    let state: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(
        state["profile"]["app"],
        json!({"version": "1.0", "build": "10"}),
        "{state}"
    );

    // The same version again: nothing.
    let c = client(&server, dir.path(), &clock);
    c.app_launched("1.0".into(), Some("10".into()), true);
    c.track("Marker".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert_eq!(names(&events[2..]), ["Marker"]);
    c.shutdown(5_000);
    drop(c);

    // A new version: Updated, with the previous one.
    let c = client(&server, dir.path(), &clock);
    c.app_launched("1.1".into(), None, true);
    let events = deliver(&c, &server);
    assert_eq!(names(&events[3..]), ["Application Updated"]);
    assert_eq!(
        events[3]["properties"],
        json!({"previous_version": "1.0", "previous_build": "10", "version": "1.1", "build": null})
    );
    c.shutdown(5_000);
    drop(c);

    // Lifecycle events off: no event, but the version is still remembered, so
    // turning them on later does not report an install or a stale update.
    let c = client(&server, dir.path(), &clock);
    c.app_launched("1.2".into(), Some("12".into()), false);
    c.track("Quiet".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert_eq!(names(&events[4..]), ["Quiet"]);
    c.shutdown(5_000);
    drop(c);
    let c = client(&server, dir.path(), &clock);
    c.app_launched("1.2".into(), Some("12".into()), true);
    c.track("Loud".into(), String::new()).unwrap();
    let events = deliver(&c, &server);
    assert_eq!(names(&events[5..]), ["Loud"]);
    c.shutdown(5_000);
}

/// Reported right after the client starts, before the state file is read on
/// the writer thread: the call waits for it, so an existing installation is
/// not taken for a new one.
#[test]
fn a_launch_reported_at_once_still_sees_the_stored_version() {
    let server = TestServer::start();
    let dir = temp_dir();
    let c = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    c.app_launched("2.0".into(), Some("20".into()), true);
    assert_eq!(c.flush_blocking(10_000), FlushResult::Delivered);
    c.shutdown(5_000);
    drop(c);
    let c = Client::new(test_config(&server.url(), dir.path()), None).unwrap();
    c.app_launched("2.0".into(), Some("20".into()), true);
    c.track("After".into(), String::new()).unwrap();
    assert_eq!(c.flush_blocking(10_000), FlushResult::Delivered);
    let names: Vec<Value> = server
        .accepted_events()
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(names, [json!("Application Installed"), json!("After")]);
    c.shutdown(5_000);
}
