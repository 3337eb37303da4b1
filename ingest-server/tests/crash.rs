//! Crash test: load the real server from several client threads, SIGKILL it at
//! random moments, restart it on the same data directory, and check that every
//! acknowledged messageId is in storage exactly once (and no id twice at all).
//!
//! Clients behave like the SDK: a batch that got no answer (the server died) is
//! re-sent unchanged after the restart, so dedupe across crashes is exercised.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use support::*;

const CLIENTS: usize = 4;
const KILLS: usize = 6;

fn crash_run(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let args = ["--roll-interval", "300ms", "--format", format];
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Batches sent but not answered, per client: re-sent after the restart.
    let unanswered: Arc<Mutex<HashMap<usize, Vec<Value>>>> = Arc::default();
    let next_batch = Arc::new(AtomicU64::new(0));
    let mut rng = rand::rng();
    for round in 0..=KILLS {
        let mut server = Server::start(&data, &args);
        let port = server.port;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for c in 0..CLIENTS {
            let (stop, acked, unanswered, next_batch) = (
                stop.clone(),
                acked.clone(),
                unanswered.clone(),
                next_batch.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let agent = agent();
                let url = format!("http://127.0.0.1:{port}/v1/batch");
                while !stop.load(Ordering::Relaxed) {
                    let batch = unanswered.lock().unwrap().remove(&c).unwrap_or_else(|| {
                        let b = next_batch.fetch_add(1, Ordering::Relaxed);
                        (0..40)
                            .map(|i| {
                                json!({"type": "track", "event": "Load", "userId": format!("u{c}"),
                                    "messageId": format!("c{c}-b{b}-e{i}"),
                                    "properties": {"pad": "p".repeat(200)}})
                            })
                            .collect()
                    });
                    let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
                    let res = agent
                        .post(&url)
                        .header("Authorization", &basic(KEY))
                        .send(body.as_slice());
                    match res {
                        Ok(mut r) if r.status() == 200 => {
                            let v: Value =
                                serde_json::from_str(&r.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            assert_eq!(v["accepted"], 40, "{v}");
                            let mut a = acked.lock().unwrap();
                            for e in &batch {
                                a.insert(e["messageId"].as_str().unwrap().to_string());
                            }
                        }
                        Ok(r) if r.status() == 503 || r.status() == 429 => {
                            unanswered.lock().unwrap().insert(c, batch);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => {
                            // Connection died with the server: keep for re-sending.
                            unanswered.lock().unwrap().insert(c, batch);
                            return;
                        }
                    }
                }
            }));
        }
        if round < KILLS {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
            server.kill();
            stop.store(true, Ordering::Relaxed);
        } else {
            std::thread::sleep(Duration::from_millis(800));
            stop.store(true, Ordering::Relaxed);
        }
        for t in threads {
            t.join().unwrap();
        }
        if round == KILLS {
            // Last round: re-send what is still unanswered, then stop gracefully.
            let pending: Vec<Vec<Value>> =
                unanswered.lock().unwrap().drain().map(|(_, b)| b).collect();
            for batch in pending {
                let r = server.send("/v1/batch", &json!({ "batch": batch }));
                assert_eq!(r.status, 200);
                let mut a = acked.lock().unwrap();
                for e in &batch {
                    a.insert(e["messageId"].as_str().unwrap().to_string());
                }
            }
            assert!(server.terminate().success());
        }
    }
    let events = read_events(&data.join("objects"));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *counts
            .entry(e["messageId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(
        dups.is_empty(),
        "duplicated ids: {:?}",
        &dups[..dups.len().min(5)]
    );
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged ids missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Every batch ended up answered, so storage holds exactly the acked ids.
    assert_eq!(counts.len(), acked.len());
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    eprintln!(
        "{format}: recovery paths seen: re-commit {}, intent dropped {}, torn log tail {}",
        log.matches("re-committing").count(),
        log.matches("intent without object").count(),
        log.matches("cutting torn log tail").count()
    );
    eprintln!(
        "{format}: {} acknowledged events in {} objects, exactly once after {KILLS} SIGKILLs",
        acked.len(),
        object_files(&data.join("objects")).len()
    );
}

#[test]
fn sigkill_under_load_keeps_every_acked_event_exactly_once_ndjson() {
    crash_run("ndjson");
}

#[test]
fn sigkill_under_load_keeps_every_acked_event_exactly_once_parquet() {
    crash_run("parquet");
}
