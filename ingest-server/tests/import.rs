//! `ingest-server import` on real files: NDJSON and NDJSON.gz go to objects through the
//! dedupe index, so a second run imports nothing, and events the server already stored
//! are not stored again.

mod s3_common;

use std::io::Write;
use std::path::Path;

use s3_common::*;
use serde_json::{Value, json};

fn event(id: Option<&str>, n: usize) -> Value {
    let mut e = json!({"type": "track", "event": "Imported", "userId": "u",
                       "receivedAt": format!("{}T10:15:00.000Z", recent_day()), "properties": {"n": n}});
    if let Some(id) = id {
        e["messageId"] = json!(id);
    }
    e
}

fn write_lines(path: &Path, events: &[Value], gzip: bool) {
    let mut text = String::new();
    for e in events {
        text.push_str(&e.to_string());
        text.push('\n');
    }
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        std::fs::write(path, gz.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, text).unwrap();
    }
}

fn import(data: &Path, format: &str, files: &[&Path]) -> (bool, String) {
    let data = data.display().to_string();
    let mut args = vec![
        "import",
        "--data-dir",
        &data,
        "--format",
        format,
        "--source",
        "imp",
    ];
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(files.iter().map(String::as_str));
    run_cli(&args)
}

fn import_twice(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = dir.path().join("a.ndjson");
    let b = dir.path().join("b.ndjson.gz");
    let mut ids: Vec<String> = (0..1000).map(|i| format!("a-{i}")).collect();
    let mut a_events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(Some(id), i))
        .collect();
    a_events.push(a_events[5].clone()); // repeated within a file
    write_lines(&a, &a_events, false);
    // b: 100 ids shared with a, 400 new ones, and 10 events without a messageId.
    let mut b_events: Vec<Value> = (900..1400)
        .map(|i| event(Some(&format!("a-{i}")), i))
        .collect();
    b_events.extend((0..10).map(|i| event(None, 10_000 + i)));
    write_lines(&b, &b_events, true);
    ids.extend((1000..1400).map(|i| format!("a-{i}")));

    let (ok, out) = import(&data, format, &[&a, &b]);
    assert!(ok, "{out}");
    assert!(out.contains("1410 events imported"), "{out}");
    let objects = read_dir_objects(&data.join("objects"));
    let generated: Vec<String> = objects
        .iter()
        .flat_map(|(_, e)| e)
        .filter_map(|e| e["messageId"].as_str())
        .filter(|id| id.starts_with("import-"))
        .map(String::from)
        .collect();
    assert_eq!(generated.len(), 10, "ids assigned to id-less lines");
    ids.extend(generated);
    assert_exactly_once(&ids, objects.iter().flat_map(|(_, e)| e));
    for (name, events) in &objects {
        assert!(
            name.starts_with(&format!("source=imp/dt={}/hour=10/i-", recent_day())),
            "{name}"
        );
        assert!(events.iter().all(|e| e["source"] == "imp"));
    }

    // Again: nothing new, not even the id-less lines (their ids come from their content).
    let (ok, out) = import(&data, format, &[&b, &a]);
    assert!(ok, "{out}");
    assert!(out.contains(" 0 events imported"), "{out}");
    let again = read_dir_objects(&data.join("objects"));
    assert_eq!(again.len(), objects.len());
    assert_exactly_once(&ids, again.iter().flat_map(|(_, e)| e));
}

#[test]
fn import_twice_ndjson_stores_each_event_once() {
    import_twice("ndjson");
}

#[test]
fn import_twice_parquet_stores_each_event_once() {
    import_twice("parquet");
}

#[test]
fn bad_lines_are_reported_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("mixed.ndjson");
    std::fs::write(
        &file,
        format!(
            "{}\nnot json\n[1,2]\n\n{}\n",
            event(Some("ok-1"), 1),
            event(Some("ok-2"), 2)
        ),
    )
    .unwrap();
    let (ok, out) = import(&data, "ndjson", &[&file]);
    assert!(!ok, "bad lines must fail the run:\n{out}");
    assert!(out.contains("mixed.ndjson:2: invalid JSON"), "{out}");
    assert!(out.contains("mixed.ndjson:3: not a JSON object"), "{out}");
    assert!(out.contains("2 events imported"), "{out}");
    let objects = read_dir_objects(&data.join("objects"));
    let ids = vec!["ok-1".to_string(), "ok-2".to_string()];
    assert_exactly_once(&ids, objects.iter().flat_map(|(_, e)| e));
    let data = data.display().to_string();
    let (ok, out) = run_cli(&["import", "--data-dir", &data, "/no/such/file.ndjson"]);
    assert!(!ok && out.contains("/no/such/file.ndjson"), "{out}");
}

/// Events the server stored (via HTTP) are in the same dedupe index: importing them
/// again afterwards stores only the new ones.
#[test]
fn import_skips_events_the_server_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args: Vec<String> = ["--roll-interval", "1s", "--roll-bytes", "1MiB"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut server = Server::start(&data, &args, &[]);
    let sent: Vec<String> = (0..300).map(|i| format!("srv-{i}")).collect();
    for chunk in sent.chunks(100) {
        let events: Vec<Value> = chunk.iter().map(|id| track(id, "x")).collect();
        server.post_batch(&events);
    }
    let status = server.terminate();
    assert!(status.success(), "{}", server.log_tail());
    // Export what the server stored (as stored, with `source`), plus 200 new events.
    let stored: Vec<Value> = read_dir_objects(&data.join("objects"))
        .into_iter()
        .flat_map(|(_, e)| e)
        .collect();
    assert_eq!(stored.len(), 300);
    let mut lines = stored.clone();
    let new: Vec<String> = (0..200).map(|i| format!("new-{i}")).collect();
    lines.extend(new.iter().map(|id| {
        let mut e = track(id, "y");
        e["source"] = json!(SOURCE);
        e
    }));
    let file = dir.path().join("export.ndjson");
    write_lines(&file, &lines, false);
    let (ok, out) = import(&data, "ndjson", &[&file]);
    assert!(ok, "{out}");
    assert!(
        out.contains("200 events imported") && out.contains("300 duplicates"),
        "{out}"
    );
    let all: Vec<String> = sent.iter().chain(&new).cloned().collect();
    let objects = read_dir_objects(&data.join("objects"));
    assert_exactly_once(&all, objects.iter().flat_map(|(_, e)| e));
}

fn server_args(roll_interval: &str) -> Vec<String> {
    ["--roll-interval", roll_interval, "--roll-bytes", "1MiB"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Lines as the server would store them: `source` set, so import keys them alike.
fn lines_for(ids: &[String], padding: &str) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            let mut e = track(id, padding);
            e["source"] = json!(SOURCE);
            e
        })
        .collect()
}

fn post_ids(server: &Server, ids: &[String]) {
    for chunk in ids.chunks(100) {
        let events: Vec<Value> = chunk.iter().map(|id| track(id, "srv")).collect();
        server.post_batch(&events);
    }
}

/// `import` commits events the server holds in an open (uncommitted) object: the
/// writer's commit then finds their keys taken and removes them from its object.
#[test]
fn import_beside_a_live_server_wins_the_race_and_the_writer_removes_its_copies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A long roll interval: the server's events stay in an open object.
    let mut server = Server::start(&data, &server_args("10m"), &[]);
    let race: Vec<String> = (0..300).map(|i| format!("race-{i}")).collect();
    post_ids(&server, &race);
    let new: Vec<String> = (0..100).map(|i| format!("imp-{i}")).collect();
    let file = dir.path().join("race.ndjson");
    write_lines(
        &file,
        &lines_for(&race.iter().chain(&new).cloned().collect::<Vec<_>>(), "imp"),
        false,
    );
    let (ok, out) = import(&data, "ndjson", &[&file]);
    assert!(ok, "{out}");
    assert!(out.contains("400 events imported"), "{out}");
    // SIGTERM rolls the open object; its commit finds the 300 keys taken.
    assert!(server.terminate().success(), "{}", server.log_tail());
    let objects = read_dir_objects(&data.join("objects"));
    let all: Vec<String> = race.iter().chain(&new).cloned().collect();
    assert_exactly_once(&all, objects.iter().flat_map(|(_, e)| e));
    // The import's copies were kept (committed first); the writer's were removed.
    for (name, events) in &objects {
        let base = name.rsplit('/').next().unwrap();
        assert!(
            base.starts_with("i-") || events.is_empty(),
            "{name} still holds {} events",
            events.len()
        );
    }
    assert!(
        server
            .log_tail()
            .contains("removed events another process stored first"),
        "{}",
        server.log_tail()
    );
}

/// The other order: `import` looks the events up before the server commits them
/// and commits after, so the import removes its own copies. The import reads a
/// FIFO, which makes the interleaving exact: lines in, server rolls, then EOF.
#[test]
fn import_beside_a_live_server_loses_the_race_and_removes_its_copies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &server_args("10m"), &[]);
    let race: Vec<String> = (0..300).map(|i| format!("late-{i}")).collect();
    post_ids(&server, &race);
    let fifo = dir.path().join("late.ndjson");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let import = {
        let data = data.display().to_string();
        let fifo = fifo.display().to_string();
        std::thread::spawn(move || {
            run_cli(&["import", "--data-dir", &data, "--source", "imp", &fifo])
        })
    };
    let mut pipe = std::fs::File::options().write(true).open(&fifo).unwrap();
    let new: Vec<String> = (0..50).map(|i| format!("late-new-{i}")).collect();
    for e in lines_for(&race.iter().chain(&new).cloned().collect::<Vec<_>>(), "imp") {
        writeln!(pipe, "{e}").unwrap();
    }
    pipe.flush().unwrap();
    // Give import time to read and look up every line (none is committed yet).
    std::thread::sleep(std::time::Duration::from_secs(2));
    // The server commits its copies now.
    assert!(server.terminate().success(), "{}", server.log_tail());
    drop(pipe); // EOF: import writes and commits its object, finding 300 keys taken.
    let (ok, out) = import.join().unwrap();
    assert!(ok, "{out}");
    assert!(
        out.contains("300 of them stored by the server meanwhile"),
        "{out}"
    );
    assert!(out.contains("50 events imported"), "{out}");
    let objects = read_dir_objects(&data.join("objects"));
    let all: Vec<String> = race.iter().chain(&new).cloned().collect();
    assert_exactly_once(&all, objects.iter().flat_map(|(_, e)| e));
}

/// SIGKILL `import` at several points of a long run, re-run it each time, and
/// finish: every line is stored exactly once, and a last run imports nothing.
#[test]
fn import_killed_at_random_points_then_rerun_stores_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("big.ndjson.gz");
    // 4 partitions (hours) so several objects are open and rolled (1 MiB) at once.
    let ids: Vec<String> = (0..60_000).map(|i| format!("k-{i:06}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut e = event(Some(id), i);
            e["receivedAt"] = json!(format!("{}T1{}:15:00.000Z", recent_day(), i % 4));
            e["properties"]["pad"] = json!(format!("{i:x}").repeat(8));
            e
        })
        .collect();
    write_lines(&file, &events, true);
    let bin = env!("CARGO_BIN_EXE_ingest-server");
    let data_s = data.display().to_string();
    let file_s = file.display().to_string();
    let args = [
        "import",
        "--data-dir",
        &data_s,
        "--source",
        "imp",
        "--roll-bytes",
        "1MiB",
        &file_s,
    ];
    let mut killed = 0;
    for delay_ms in [150u64, 400, 700, 1000, 1500] {
        let mut child = std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            signal(child.id(), "KILL");
            killed += 1;
        }
        let _ = child.wait();
    }
    assert!(killed >= 2, "import finished too fast to be killed mid-run");
    let (ok, out) = run_cli(&args);
    assert!(ok, "{out}");
    let objects = read_dir_objects(&data.join("objects"));
    assert_exactly_once(&ids, objects.iter().flat_map(|(_, e)| e));
    let (ok, out) = run_cli(&args);
    assert!(ok && out.contains(" 0 events imported"), "{out}");
}
