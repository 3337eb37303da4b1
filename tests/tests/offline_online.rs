//! Scenario 1: devices offline for a while, then online.
//!
//! While the SDK is told the network is down it must send nothing, keep every
//! event durable, and deliver all of them exactly once when it comes back.

use std::time::Duration;

use tests::rig::Rig;
use tests::server::ServerOptions;
use tests::sim::{SimDevice, drain_all, recorded};
use tributary::FlushResult;

fn offline_then_online(format: &str) {
    let mut rig = Rig::start(
        &format!("offline-{format}"),
        ServerOptions::new(format),
        Duration::from_secs(90),
    );
    let root = rig.devices_root();
    let mut devices: Vec<SimDevice> = (0..5)
        .map(|i| SimDevice::new(&format!("off-{i}"), &rig.endpoint(), &root, |_| {}))
        .collect();
    for device in &mut devices {
        device.client.set_network_available(false);
        device.track(150);
        let result = device.confirm(200);
        assert!(
            matches!(result, FlushResult::Offline { pending } if pending == 150),
            "offline flush should report 150 pending, got {result:?}"
        );
    }
    // Stay offline past several flush intervals: nothing may be sent.
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(
        rig.proxy.stats().requests,
        0,
        "an offline SDK sent requests"
    );
    for device in &mut devices {
        device.track(50);
        device.confirm(1);
        device.client.set_network_available(true);
    }
    drain_all(&mut devices, Duration::from_secs(30));
    for device in &devices {
        device.assert_nothing_dropped();
        assert_eq!(device.client.stats().queued_events, 0);
    }
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded(&devices), None)
        .assert_exactly_once(&format!("offline then online, {format}"));
    assert_eq!(events.len(), 1_000);
}

#[test]
fn offline_then_online_ndjson() {
    offline_then_online("ndjson");
}

#[test]
fn offline_then_online_parquet() {
    offline_then_online("parquet");
}
