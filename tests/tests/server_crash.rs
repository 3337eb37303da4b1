//! Scenario 3: the server is SIGKILLed and restarted several times while
//! devices record and upload. Acknowledged batches must survive; the rest are
//! retried by the SDK; storage ends with each recorded event exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::ServerOptions;
use tests::sim::{SimDevice, drain_all, recorded};

fn crashes_under_load(format: &str) {
    let mut options = ServerOptions::new(format);
    options.roll_interval = "1s".into();
    let mut rig = Rig::start(
        &format!("crash-{format}"),
        options,
        Duration::from_secs(120),
    );
    // Some cut responses too, so batches are in every state when the kill lands.
    rig.proxy.set_plan(FaultPlan {
        cut: 0.1,
        ..FaultPlan::default()
    });
    let root = rig.devices_root();
    let endpoint = rig.endpoint();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let (root, endpoint, stop) = (root.clone(), endpoint.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut device =
                    SimDevice::new(&format!("crash-{i}"), &endpoint, &root, |c| c.flush_at = 10);
                while !stop.load(Ordering::SeqCst) {
                    device.track(15);
                    device.confirm(1);
                    std::thread::sleep(Duration::from_millis(40));
                }
                device
            })
        })
        .collect();
    for kill in 0..4 {
        std::thread::sleep(Duration::from_millis(700 + fastrand::u64(0..600)));
        tests::note(&format!("SIGKILL server #{kill}"));
        rig.crash_and_restart_server();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let mut devices: Vec<SimDevice> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    rig.proxy.set_plan(FaultPlan::pass());
    drain_all(&mut devices, Duration::from_secs(40));
    for device in &devices {
        device.assert_nothing_dropped();
    }
    let recorded = recorded(&devices);
    let (_, events) = rig.finish();
    tests::storage::verify(&events, &recorded, None)
        .assert_exactly_once(&format!("server SIGKILLed 4 times, {format}"));
    tests::note(&format!(
        "{} events survived 4 server crashes",
        recorded.len()
    ));
}

#[test]
fn server_sigkill_under_load_ndjson() {
    crashes_under_load("ndjson");
}

#[test]
fn server_sigkill_under_load_parquet() {
    crashes_under_load("parquet");
}
