//! Scenario 2: every batch's first response is cut after the server processed
//! it, so every batch is retried with the same idempotency key and events.
//! Storage must still hold each event once; the server reports the replays.

use std::time::Duration;

use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::ServerOptions;
use tests::sim::{SimDevice, drain_all, recorded};

fn every_batch_retried(format: &str) {
    let mut rig = Rig::start(
        &format!("cut-{format}"),
        ServerOptions::new(format),
        Duration::from_secs(90),
    );
    rig.proxy.set_plan(FaultPlan {
        cut_first_attempt_per_key: true,
        ..FaultPlan::default()
    });
    let root = rig.devices_root();
    let mut devices: Vec<SimDevice> = (0..4)
        .map(|i| SimDevice::new(&format!("cut-{i}"), &rig.endpoint(), &root, |_| {}))
        .collect();
    for round in 0..5 {
        for device in &mut devices {
            device.track(40 + round);
            device.confirm(1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drain_all(&mut devices, Duration::from_secs(40));
    let proxy = rig.proxy.stats();
    assert!(proxy.cut > 0, "no response was cut: {proxy:?}");
    // Every cut batch came back: at least as many 2xx upstream answers as twice the cuts.
    assert!(
        proxy.upstream_2xx >= 2 * proxy.cut,
        "some cut batch was not retried: {proxy:?}"
    );
    // The retries were recognised by their Idempotency-Key and answered from
    // the server's record rather than stored again.
    assert!(
        proxy.replayed > 0,
        "the server replayed no answer: {proxy:?}"
    );
    let retries: u64 = devices.iter().map(|d| d.client.stats().retries).sum();
    assert!(
        retries >= proxy.cut,
        "SDK retries {retries} < cuts {}",
        proxy.cut
    );
    let metrics = rig.server.metrics();
    for device in &devices {
        device.assert_nothing_dropped();
    }
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded(&devices), None)
        .assert_exactly_once(&format!("responses cut, {format}"));
    tests::note(&format!(
        "cut {} responses, {} answered as idempotent replays; server duplicate metrics: {}",
        proxy.cut,
        proxy.replayed,
        metrics
            .lines()
            .filter(|l| l.contains("duplicate") && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
}

#[test]
fn every_batch_retried_ndjson() {
    every_batch_retried("ndjson");
}

#[test]
fn every_batch_retried_parquet() {
    every_batch_retried("parquet");
}
