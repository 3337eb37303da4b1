//! Scenario 7: 50 simulated devices at once, each with its own storage, over
//! a network that drops, cuts, delays and 503s some exchanges.

use std::time::Duration;

use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::ServerOptions;
use tests::sim::{SimDevice, drain_all, recorded};

fn fifty_devices(format: &str) {
    let mut rig = Rig::start(
        &format!("fifty-{format}"),
        ServerOptions::new(format),
        Duration::from_secs(120),
    );
    rig.proxy.set_plan(FaultPlan {
        drop: 0.05,
        unavailable: 0.05,
        cut: 0.1,
        delay: Some(Duration::from_millis(5)),
        ..FaultPlan::default()
    });
    let root = rig.devices_root();
    let endpoint = rig.endpoint();
    let workers: Vec<_> = (0..50)
        .map(|i| {
            let (root, endpoint) = (root.clone(), endpoint.clone());
            std::thread::spawn(move || {
                let mut device = SimDevice::new(&format!("many-{i:02}"), &endpoint, &root, |_| {});
                for _ in 0..10 {
                    device.track(20);
                    device.confirm(1);
                    std::thread::sleep(Duration::from_millis(fastrand::u64(10..60)));
                }
                device
            })
        })
        .collect();
    let mut devices: Vec<SimDevice> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    drain_all(&mut devices, Duration::from_secs(60));
    rig.proxy.set_plan(FaultPlan::pass());
    for device in &devices {
        device.assert_nothing_dropped();
    }
    let stats = rig.proxy.stats();
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded(&devices), None)
        .assert_exactly_once(&format!("50 devices, {format}"));
    assert_eq!(events.len(), 50 * 200);
    tests::note(&format!("50 devices: {stats:?}"));
}

#[test]
fn fifty_devices_ndjson() {
    fifty_devices("ndjson");
}

#[test]
fn fifty_devices_parquet() {
    fifty_devices("parquet");
}
