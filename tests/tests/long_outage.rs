//! Scenario 6: an outage longer than the backoff cap. With `retry_max_delay_ms`
//! at 500 ms and 3 s of outage, the SDK keeps retrying at the cap, and once
//! the server is back every event arrives, exactly once. Two outages: the
//! server process stopped, and the proxy answering 503 with Retry-After.

use std::time::{Duration, Instant};

use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::ServerOptions;
use tests::sim::{SimDevice, drain_all, recorded};

fn outage_longer_than_backoff_cap(format: &str) {
    let mut rig = Rig::start(
        &format!("outage-{format}"),
        ServerOptions::new(format),
        Duration::from_secs(90),
    );
    let root = rig.devices_root();
    let tune = |c: &mut tributary::Config| {
        c.retry_base_delay_ms = 100;
        c.retry_max_delay_ms = 500;
    };
    let mut devices: Vec<SimDevice> = (0..3)
        .map(|i| {
            SimDevice::new(
                &format!("outage-{format}-{i}"),
                &rig.endpoint(),
                &root,
                tune,
            )
        })
        .collect();
    for device in &mut devices {
        device.track(30);
    }
    drain_all(&mut devices, Duration::from_secs(20));

    // Outage 1: the server is down (gracefully stopped) for 3 s.
    rig.server.stop_gracefully();
    let outage = Instant::now();
    for device in &mut devices {
        device.track(60);
        device.confirm(1);
    }
    std::thread::sleep(Duration::from_secs(3));
    let retries_during: u64 = devices.iter().map(|d| d.client.stats().retries).sum();
    tests::note(&format!(
        "after {:?} down: {retries_during} retries",
        outage.elapsed()
    ));
    // Without the 500 ms cap, 3 s would allow only ~5 attempts per device.
    assert!(
        retries_during >= 3 * 4,
        "too few retries during a 3 s outage with a 500 ms cap: {retries_during}"
    );
    rig.server.restart();
    rig.proxy.set_upstream(rig.server.addr());
    let back = Instant::now();
    drain_all(&mut devices, Duration::from_secs(20));
    tests::note(&format!(
        "all delivered {:?} after the server came back",
        back.elapsed()
    ));

    // Outage 2: the front answers 503 with Retry-After: 1 for 3 s.
    rig.proxy.set_plan(FaultPlan::unavailable());
    for device in &mut devices {
        device.track(60);
        device.confirm(1);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(rig.proxy.stats().unavailable > 0, "no 503 was answered");
    rig.proxy.set_plan(FaultPlan::pass());
    drain_all(&mut devices, Duration::from_secs(20));

    for device in &devices {
        device.assert_nothing_dropped();
    }
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded(&devices), None)
        .assert_exactly_once("outages longer than the backoff cap");
    assert_eq!(events.len(), 3 * 150);
}

#[test]
fn outage_longer_than_backoff_cap_ndjson() {
    outage_longer_than_backoff_cap("ndjson");
}

#[test]
fn outage_longer_than_backoff_cap_parquet() {
    outage_longer_than_backoff_cap("parquet");
}
