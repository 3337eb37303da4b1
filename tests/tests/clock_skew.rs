//! Scenario 5: device clocks skewed by hours. The SDK stamps events with the
//! system clock, which a test cannot skew, so this scenario posts raw Segment
//! batches (as the SDK would: gzip, Basic auth, Idempotency-Key) through the
//! fault proxy, with `timestamp` and `sentAt` read from a skewed clock. The
//! first response of each batch is cut, so the retry carries a later `sentAt`.
//!
//! The server must store `timestamp = receivedAt − (sentAt − originalTimestamp)`,
//! which recovers the real time of the event, and keep `originalTimestamp`.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::{ServerOptions, WRITE_KEY};

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn field_time(event: &Value, field: &str) -> DateTime<Utc> {
    let text = event
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("stored event has no string `{field}`: {event}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("`{field}` = {text} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn skewed_clocks(format: &str) {
    let mut rig = Rig::start(
        &format!("skew-{format}"),
        ServerOptions::new(format),
        Duration::from_secs(60),
    );
    rig.proxy.set_plan(FaultPlan {
        cut_first_attempt_per_key: true,
        ..FaultPlan::default()
    });
    let agent = tests::http::agent(Duration::from_secs(10));
    let skews_hours: [i64; 4] = [5, -3, 26, 0];
    let mut recorded = BTreeSet::new();
    // For each device: the real time its events happened.
    let mut real_times = Vec::new();
    for skew_h in skews_hours {
        let device = format!("skew{skew_h:+}h");
        let skew = TimeDelta::hours(skew_h);
        // The events happened 2 s ago (real time), while the device was offline.
        let happened = Utc::now() - TimeDelta::seconds(2);
        let events: Vec<Value> = (0..20u64)
            .map(|seq| {
                recorded.insert((device.clone(), seq));
                json!({
                    "type": "track",
                    "event": "Skewed Clock",
                    "anonymousId": format!("anon-{device}"),
                    "messageId": uuid::Uuid::now_v7().to_string(),
                    "timestamp": rfc3339(happened + skew),
                    "properties": { "device": device, "seq": seq },
                })
            })
            .collect();
        let key = uuid::Uuid::now_v7().to_string();
        let mut status = None;
        for _attempt in 0..5 {
            let sent_at = rfc3339(Utc::now() + skew);
            let response = tests::http::post_batch(
                &agent,
                &rig.endpoint(),
                WRITE_KEY,
                &key,
                &events,
                &sent_at,
            );
            status = response.status;
            if status == Some(200) {
                let accepted = response.answer().map(|a| (a.accepted, a.rejected.len()));
                assert_eq!(accepted, Some((events.len(), 0)), "{}", response.body);
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(status, Some(200), "batch for {device} was never accepted");
        real_times.push((device, happened, skew));
    }
    assert_eq!(rig.proxy.stats().cut, skews_hours.len() as u64);
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded, None).assert_exactly_once("skewed clocks");
    for event in &events {
        let (device, _) = tests::storage::event_key(event).expect("harness event");
        let (_, happened, skew) = real_times
            .iter()
            .find(|(d, _, _)| *d == device)
            .expect("known device");
        let stored = field_time(event, "timestamp");
        let original = field_time(event, "originalTimestamp");
        let sent_at = field_time(event, "sentAt");
        let received_at = field_time(event, "receivedAt");
        // Segment's rule, on the stored fields, to the millisecond.
        let rule = received_at - (sent_at - original);
        assert!(
            (stored - rule).num_milliseconds().abs() <= 1,
            "{device}: timestamp {stored} != receivedAt - (sentAt - originalTimestamp) = {rule}"
        );
        // originalTimestamp is what the device sent, skew included.
        assert!(
            (original - (*happened + *skew)).num_milliseconds().abs() <= 1,
            "{device}: originalTimestamp {original} is not the device's timestamp"
        );
        // The corrected timestamp is the real time of the event, within loopback latency.
        assert!(
            (stored - *happened).num_milliseconds().abs() < 1_000,
            "{device}: corrected timestamp {stored} is far from the real time {happened}"
        );
    }
}

#[test]
fn skewed_clocks_ndjson() {
    skewed_clocks("ndjson");
}

#[test]
fn skewed_clocks_parquet() {
    skewed_clocks("parquet");
}
