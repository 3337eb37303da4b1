//! Crash test: load the real server from several client threads, SIGKILL it at
//! random moments, restart it on the same data directory, and check that every
//! acknowledged event is in storage exactly once (and no event twice at all).
//!
//! Every path that rolls an object is exercised, in both formats: rolls by time,
//! by size (`--roll-bytes`) and by memory (`--max-buffer-bytes`). Clients write
//! incompressible properties, to one source in some rounds and to three (write
//! keys) in others, reusing some messageIds across sources (dedupe is per source). They behave like
//! the SDK: a batch that got no answer (the server died) is re-sent unchanged
//! after the restart, and some acknowledged batches are re-sent too (an answer
//! lost on the way), so dedupe across crashes is exercised.

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
const SOURCES: [(&str, &str); 3] = [
    (KEY, SOURCE),
    ("crash-key-b", "srcb"),
    ("crash-key-c", "srcc"),
];

/// Per client: a batch sent but not answered, with its source index.
type Unanswered = Arc<Mutex<HashMap<usize, (usize, Vec<Value>)>>>;

/// An acknowledged event: (source, messageId).
type Acked = (String, String);

fn crash_run(format: &str, rolls: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut args = vec!["--format", format];
    args.extend_from_slice(rolls);
    let extra_keys: Vec<String> = SOURCES[1..]
        .iter()
        .map(|(k, s)| format!("{k}={s}"))
        .collect();
    for k in &extra_keys {
        args.extend(["--write-key", k.as_str()]);
    }
    let acked: Arc<Mutex<HashSet<Acked>>> = Arc::default();
    // Batches sent but not answered, per client: re-sent after the restart.
    let unanswered: Unanswered = Arc::default();
    let next_batch = Arc::new(AtomicU64::new(0));
    let mut rng = rand::rng();
    for round in 0..=KILLS {
        let mut server = Server::start(&data, &args);
        let port = server.port;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Rounds alternate between one source and three: with one partition open,
        // a roll leaves no other open object to hold the checkpoint back.
        let sources = if round % 2 == 0 { 1 } else { SOURCES.len() };
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
                let mut rng = rand::rng();
                let mut last_acked: Option<(usize, Vec<Value>)> = None;
                while !stop.load(Ordering::Relaxed) {
                    let pending = unanswered.lock().unwrap().remove(&c);
                    let (source, batch) = match (pending, last_acked.take()) {
                        (Some(p), _) => p,
                        // An answer lost on the way: the same batch again.
                        (None, Some(again)) if rng.random_ratio(1, 10) => again,
                        _ => {
                            let b = next_batch.fetch_add(1, Ordering::Relaxed);
                            (rng.random_range(0..sources), new_batch(&mut rng, c, b))
                        }
                    };
                    let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
                    let res = agent
                        .post(&url)
                        .header("Authorization", &basic(SOURCES[source].0))
                        .send(body.as_slice());
                    match res {
                        Ok(mut r) if r.status() == 200 => {
                            let v: Value =
                                serde_json::from_str(&r.body_mut().read_to_string().unwrap())
                                    .unwrap();
                            assert_eq!(v["accepted"], batch.len(), "{v}");
                            ack(&acked, source, &batch);
                            last_acked = Some((source, batch));
                        }
                        Ok(r) if r.status() == 503 || r.status() == 429 => {
                            unanswered.lock().unwrap().insert(c, (source, batch));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => {
                            // Connection died with the server: keep for re-sending.
                            unanswered.lock().unwrap().insert(c, (source, batch));
                            return;
                        }
                    }
                }
            }));
        }
        if round < KILLS {
            std::thread::sleep(Duration::from_millis(rng.random_range(200..3000)));
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
            let pending: Vec<(usize, Vec<Value>)> =
                unanswered.lock().unwrap().drain().map(|(_, b)| b).collect();
            for (source, batch) in pending {
                let body = serde_json::to_vec(&json!({ "batch": batch })).unwrap();
                let r = server.post(
                    "/v1/batch",
                    &body,
                    &[("Authorization", &basic(SOURCES[source].0))],
                );
                assert_eq!(r.status, 200, "{}", r.text);
                ack(&acked, source, &batch);
            }
            assert!(server.terminate().success());
        }
    }
    let events = read_events(&data.join("objects"));
    let mut counts: HashMap<Acked, usize> = HashMap::new();
    for e in &events {
        let id = e["messageId"].as_str().unwrap().to_string();
        let source = e["source"].as_str().unwrap().to_string();
        *counts.entry((source, id)).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|&(_, &n)| n > 1).collect();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    assert!(
        dups.is_empty(),
        "{format} {rolls:?}: {} duplicated ids, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(5)]
    );
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{format} {rolls:?}: {} of {} acknowledged ids missing, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Every batch ended up answered, so storage holds exactly the acked ids.
    assert_eq!(counts.len(), acked.len());
    eprintln!(
        "{format} {rolls:?}: recovery paths seen: re-commit {}, intent dropped {}, torn log tail {}",
        log.matches("re-committing").count(),
        log.matches("intent without object").count(),
        log.matches("cutting torn log tail").count()
    );
    eprintln!(
        "{format} {rolls:?}: kills {KILLS}, acked {}, stored {}, lost 0, duplicated 0, objects {}",
        acked.len(),
        events.len(),
        object_files(&data.join("objects")).len()
    );
}

fn ack(acked: &Mutex<HashSet<Acked>>, source: usize, batch: &[Value]) {
    let mut a = acked.lock().unwrap();
    for e in batch {
        let id = e["messageId"].as_str().unwrap().to_string();
        a.insert((SOURCES[source].1.to_string(), id));
    }
}

/// 50 events of ~450 bytes with incompressible properties (random hex). A
/// quarter of the ids are shared by every client and source (`shared-<b>-<i>`):
/// the same id in two sources is two events.
fn new_batch(rng: &mut impl Rng, c: usize, b: u64) -> Vec<Value> {
    (0..50)
        .map(|i| {
            let id = if i % 4 == 0 {
                format!("shared-{}-{i}", b / 4)
            } else {
                format!("c{c}-b{b}-e{i}")
            };
            let pad: String = (0..25)
                .map(|_| format!("{:016x}", rng.random::<u64>()))
                .collect();
            json!({"type": "track", "event": "Load", "userId": format!("u{c}"),
                "messageId": id, "properties": {"pad": pad}})
        })
        .collect()
}

const TIME_ROLLS: &[&str] = &["--roll-interval", "300ms"];
const SIZE_ROLLS: &[&str] = &["--roll-bytes", "1MiB", "--roll-interval", "5m"];
const MEMORY_ROLLS: &[&str] = &[
    "--roll-bytes",
    "1GiB",
    "--max-buffer-bytes",
    "1MiB",
    "--roll-interval",
    "5m",
];

#[test]
fn sigkill_with_time_rolls_ndjson() {
    crash_run("ndjson", TIME_ROLLS);
}

#[test]
fn sigkill_with_time_rolls_parquet() {
    crash_run("parquet", TIME_ROLLS);
}

#[test]
fn sigkill_with_size_rolls_ndjson() {
    crash_run("ndjson", SIZE_ROLLS);
}

#[test]
fn sigkill_with_size_rolls_parquet() {
    crash_run("parquet", SIZE_ROLLS);
}

#[test]
fn sigkill_with_memory_rolls_ndjson() {
    crash_run("ndjson", MEMORY_ROLLS);
}

#[test]
fn sigkill_with_memory_rolls_parquet() {
    crash_run("parquet", MEMORY_ROLLS);
}
