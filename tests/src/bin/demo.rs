//! A guided run of the whole system for a newcomer:
//! `cargo run --release -p tests --bin demo [-- --data-dir DIR]`.
//!
//! It starts the real ingest server with its defaults (plus a demo write key
//! and a 2 s roll so objects appear quickly) on a free loopback port, puts a
//! flaky "network" (the fault proxy) in front of it, and runs three devices
//! that record events, go offline, come back, while the network cuts a fifth
//! of the server's responses after the server has stored the batch. Then it
//! prints where the objects landed and counts everything.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use tests::proxy::{FaultPlan, FaultProxy};
use tests::server::{Server, ServerOptions, metric_sum};
use tests::sim::SimDevice;

const MARKER: &str = ".tributary-demo";

fn data_dir() -> Result<PathBuf, String> {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (None, _) => PathBuf::from("demo-data"),
        (Some("--data-dir"), Some(dir)) => PathBuf::from(dir),
        _ => return Err("usage: demo [--data-dir DIR] (default ./demo-data)".into()),
    };
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            return Err(format!(
                "{} exists and was not made by the demo; pass --data-dir with a new directory",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by the Tributary demo; safe to delete\n",
    )
    .map_err(|e| format!("writing the marker: {e}"))?;
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// Records `n` events per device, 10 at a time with short pauses, as an app would.
fn record_in_bursts(devices: &mut [SimDevice], n: u64) {
    for _ in 0..n / 10 {
        for d in devices.iter_mut() {
            d.track(10);
            d.confirm(1);
        }
        std::thread::sleep(Duration::from_millis(60));
    }
}

fn step(text: &str) {
    println!("  - {text}");
}

fn main() {
    let root = match data_dir() {
        Ok(dir) => dir,
        Err(why) => {
            eprintln!("demo: {why}");
            std::process::exit(2);
        }
    };
    tests::binaries::allow_in_place_build();
    println!("Tributary demo: 3 devices -> flaky network -> ingest server -> objects\n");
    let mut options = ServerOptions::new("ndjson");
    options.roll_interval = "2s".into();
    options.roll_bytes = "1MiB".into();
    let mut server = Server::start(&root.join("server"), options);
    let proxy = FaultProxy::start(server.addr());
    println!(
        "server     {}  (data in {})",
        server.url(),
        server.data_dir().display()
    );
    println!(
        "network    {}  (a proxy that cuts 20% of responses after the server stored the batch)\n",
        proxy.url()
    );
    proxy.set_plan(FaultPlan {
        cut: 0.2,
        ..FaultPlan::default()
    });

    let devices_root = root.join("devices");
    let names = ["alice-phone", "bob-tablet", "carol-phone"];
    let mut devices: Vec<SimDevice> = names
        .iter()
        .map(|n| {
            SimDevice::new(n, &proxy.url(), &devices_root, |c| {
                c.flush_interval_ms = 500;
                c.flush_at = 10;
            })
        })
        .collect();

    println!("what happens:");
    step("every device records 100 events while online");
    record_in_bursts(&mut devices, 100);
    std::thread::sleep(Duration::from_millis(800));
    step("alice-phone and bob-tablet lose the network and record 150 more each, kept on disk");
    for d in devices.iter_mut().take(2) {
        d.client.set_network_available(false);
        d.track(150);
        d.confirm(1);
    }
    step("carol-phone stays online and records 150 more");
    record_in_bursts(&mut devices[2..], 150);
    std::thread::sleep(Duration::from_millis(1_500));
    let queued: Vec<String> = devices
        .iter()
        .map(|d| format!("{} {}", d.id, d.client.stats().queued_events))
        .collect();
    step(&format!(
        "queued on the devices while offline: {}",
        queued.join(", ")
    ));
    step("the network comes back; every device delivers what it holds");
    for d in &mut devices {
        d.client.set_network_available(true);
    }
    tests::sim::drain_all(&mut devices, Duration::from_secs(60));

    let metrics = server.metrics();
    let wire = proxy.stats();
    step("the server is stopped with SIGTERM: it rolls its open buffers into objects\n");
    server.stop_gracefully();

    let objects = tests::storage::read_objects(&server.objects_dir());
    println!("objects written (Hive-style partitions, by receivedAt):");
    let mut stored = Vec::new();
    for object in &objects {
        let rel = object.path.strip_prefix(&root).unwrap_or(&object.path);
        let bytes = std::fs::metadata(&object.path)
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "  {}  {} events, {bytes} bytes",
            rel.display(),
            object.events.len()
        );
        stored.extend(object.events.iter().cloned());
    }
    let recorded: BTreeSet<_> = tests::sim::recorded(&devices);
    let verdict = tests::storage::verify(&stored, &recorded, None);
    let sdk_retries: u64 = devices.iter().map(|d| d.client.stats().retries).sum();
    let server_dupes = metric_sum(&metrics, "ingest_events_duplicate_total", &[]);
    println!("\ncounts:");
    println!(
        "  events recorded on the devices            {}",
        recorded.len()
    );
    println!(
        "  events stored in objects                  {}",
        stored.len()
    );
    println!(
        "  distinct events stored                    {}",
        verdict.stored - verdict.duplicated.iter().map(|(_, n)| n - 1).sum::<usize>()
    );
    println!(
        "  recorded but missing / stored twice       {} / {}",
        verdict.missing.len(),
        verdict.duplicated.len()
    );
    println!(
        "  HTTP requests sent by the devices         {}",
        wire.requests
    );
    println!("  responses cut by the network              {}", wire.cut);
    println!("  upload retries by the SDKs                {sdk_retries}");
    println!("  retried batches the server answered from");
    println!(
        "    its Idempotency-Key record (not stored) {}",
        wire.replayed
    );
    println!("  events dropped by the server's messageId");
    println!("    dedupe (ingest_events_duplicate_total)  {server_dupes}");
    println!(
        "  data directory                            {}",
        root.display()
    );
    let problems = verdict.problems();
    if problems.is_empty() {
        println!(
            "\nexactly once: every recorded event is stored once, none lost, none duplicated."
        );
    } else {
        println!("\nPROBLEMS:\n  {}", problems.join("\n  "));
        std::process::exit(1);
    }
}
