//! Scenario 4: SDK processes SIGKILLed mid-upload and restarted on the same
//! storage. Every event a process confirmed durable before it died must be
//! stored exactly once; events it had not yet confirmed may be lost, never
//! duplicated; nothing it never tracked may appear.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tests::devproc::{DeviceArgs, DeviceProcess, Ledger};
use tests::proxy::FaultPlan;
use tests::rig::Rig;
use tests::server::ServerOptions;

const DEVICES: usize = 4;
const KILLS: u64 = 5;

fn sdk_killed_mid_upload(format: &str, crash_server_too: bool) {
    let mut rig = Rig::start(
        &format!("sdk-kill-{format}-{crash_server_too}"),
        ServerOptions::new(format),
        Duration::from_secs(120),
    );
    // Slow exchanges keep uploads in flight when the kill lands; some cut
    // responses leave batches processed but unacknowledged.
    rig.proxy.set_plan(FaultPlan {
        cut: 0.15,
        delay: Some(Duration::from_millis(80)),
        ..FaultPlan::default()
    });
    let root = rig.devices_root();
    let endpoint = rig.endpoint();
    let args = |device: usize, start: u64, count: u64| DeviceArgs {
        bin: env!("CARGO_BIN_EXE_device").into(),
        storage: root.join(format!("proc-{device}")),
        endpoint: endpoint.clone(),
        device: format!("proc-{device}"),
        start,
        count,
        chunk: 10,
        pace_ms: 15,
        drain_ms: 40_000,
    };
    let mut ledgers: Vec<Ledger> = vec![Ledger::default(); DEVICES];
    for run in 0..KILLS {
        let procs: Vec<DeviceProcess> = (0..DEVICES)
            .map(|d| DeviceProcess::spawn(&args(d, run * 10_000, 1_000)))
            .collect();
        // Kill each once it has confirmed some events and uploads are running.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !procs.iter().all(|p| p.has_said("durable")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200 + fastrand::u64(0..500)));
        if crash_server_too {
            // The server dies too, mid-upload, and comes back while devices retry.
            rig.crash_and_restart_server();
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..300)));
        }
        let before = rig.proxy.stats().requests;
        for (d, proc) in procs.into_iter().enumerate() {
            ledgers[d].merge(proc.kill());
        }
        tests::note(&format!(
            "run {run}: killed {DEVICES} devices ({before} requests so far)"
        ));
    }
    // A last run per device: a few more events, then it drains everything
    // left on its storage by the killed runs.
    rig.proxy.set_plan(FaultPlan {
        cut: 0.15,
        ..FaultPlan::default()
    });
    let procs: Vec<DeviceProcess> = (0..DEVICES)
        .map(|d| DeviceProcess::spawn(&args(d, KILLS * 10_000, 30)))
        .collect();
    for (d, proc) in procs.into_iter().enumerate() {
        let ledger = proc.wait(Duration::from_secs(60));
        assert_eq!(
            ledger.result.as_deref(),
            Some("Delivered"),
            "device {d} did not deliver: {:?}",
            ledger.stats
        );
        ledgers[d].merge(ledger);
    }
    let recorded: BTreeSet<_> = ledgers.iter().flat_map(|l| l.recorded.clone()).collect();
    let tracked: BTreeSet<_> = ledgers.iter().flat_map(|l| l.tracked.clone()).collect();
    assert!(rig.proxy.stats().cut > 0, "the proxy cut nothing");
    let (_, events) = rig.finish();
    let verdict = tests::storage::verify(&events, &recorded, Some(&tracked));
    verdict.assert_exactly_once(&format!(
        "SDK processes SIGKILLed {KILLS} times (server too: {crash_server_too}), {format}"
    ));
    tests::note(&format!(
        "recorded {} (tracked {}), stored {}",
        recorded.len(),
        tracked.len(),
        verdict.stored
    ));
}

#[test]
fn sdk_sigkill_mid_upload_ndjson() {
    sdk_killed_mid_upload("ndjson", false);
}

#[test]
fn sdk_sigkill_mid_upload_parquet() {
    sdk_killed_mid_upload("parquet", false);
}

/// Both sides SIGKILLed in every round: devices and the server.
#[test]
fn sdk_and_server_sigkill_together_ndjson() {
    sdk_killed_mid_upload("ndjson", true);
}
