//! Reading every object the server wrote back, and checking the promise:
//! every recorded event stored exactly once, nothing lost, nothing invented.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tributary_formats::Format;

/// Identifies one event the harness recorded: (device id, sequence number).
pub type EventKey = (String, u64);

/// One object read back.
#[derive(Debug)]
pub struct StoredObject {
    /// Its path on disk.
    pub path: PathBuf,
    /// Its events, in order.
    pub events: Vec<Value>,
}

/// Reads every `.ndjson.gz` and `.parquet` object under `objects_dir`.
/// Panics with the path if one cannot be decoded: a torn object is a bug.
pub fn read_objects(objects_dir: &Path) -> Vec<StoredObject> {
    let mut files = Vec::new();
    collect_files(objects_dir, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let format = Format::from_path(&path.to_string_lossy())?;
            let bytes = std::fs::read(&path).expect("read object");
            let events = format
                .decode(&bytes)
                .unwrap_or_else(|e| panic!("cannot decode object {}: {e}", path.display()));
            Some(StoredObject { path, events })
        })
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// All events of all objects.
pub fn all_events(objects: &[StoredObject]) -> Vec<Value> {
    objects
        .iter()
        .flat_map(|o| o.events.iter().cloned())
        .collect()
}

/// An event's properties as an object, whether stored as JSON (NDJSON) or as a
/// JSON string column (Parquet).
pub fn properties(event: &Value) -> Option<serde_json::Map<String, Value>> {
    match event.get("properties")? {
        Value::Object(map) => Some(map.clone()),
        Value::String(text) => serde_json::from_str(text).ok(),
        _ => None,
    }
}

/// The (device, seq) an event carries in its properties, if any.
pub fn event_key(event: &Value) -> Option<EventKey> {
    let props = properties(event)?;
    let device = props.get("device")?.as_str()?.to_string();
    let seq = props.get("seq")?.as_u64()?;
    Some((device, seq))
}

/// What the check found. `problems()` is empty when the promise held.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Events stored (with a harness key).
    pub stored: usize,
    /// Recorded (confirmed durable on the device) events.
    pub recorded: usize,
    /// Recorded but not stored.
    pub missing: Vec<EventKey>,
    /// Stored more than once, with the count.
    pub duplicated: Vec<(EventKey, usize)>,
    /// `messageId`s stored more than once.
    pub duplicated_message_ids: Vec<(String, usize)>,
    /// Stored but never tracked (a phantom).
    pub unknown: Vec<EventKey>,
    /// Events without a `messageId`.
    pub without_message_id: usize,
}

impl Verdict {
    /// Human-readable problems; empty if every recorded event is stored exactly once.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let sample =
            |v: &dyn std::fmt::Debug| format!("{v:?}").chars().take(400).collect::<String>();
        if !self.missing.is_empty() {
            out.push(format!(
                "{} recorded events missing from storage, e.g. {}",
                self.missing.len(),
                sample(&&self.missing[..self.missing.len().min(5)])
            ));
        }
        if !self.duplicated.is_empty() {
            out.push(format!(
                "{} events stored more than once, e.g. {}",
                self.duplicated.len(),
                sample(&&self.duplicated[..self.duplicated.len().min(5)])
            ));
        }
        if !self.duplicated_message_ids.is_empty() {
            out.push(format!(
                "{} messageIds stored more than once, e.g. {}",
                self.duplicated_message_ids.len(),
                sample(&&self.duplicated_message_ids[..self.duplicated_message_ids.len().min(5)])
            ));
        }
        if !self.unknown.is_empty() {
            out.push(format!(
                "{} stored events were never tracked, e.g. {}",
                self.unknown.len(),
                sample(&&self.unknown[..self.unknown.len().min(5)])
            ));
        }
        if self.without_message_id > 0 {
            out.push(format!(
                "{} stored events have no messageId",
                self.without_message_id
            ));
        }
        out
    }

    /// Panics with every problem (and `context`) unless the promise held.
    pub fn assert_exactly_once(&self, context: &str) {
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "exactly-once violated ({context}): stored {} / recorded {}\n  {}",
            self.stored,
            self.recorded,
            problems.join("\n  ")
        );
    }
}

/// Checks `events` against what the harness knows:
/// - `recorded`: confirmed durable on a device; each must be stored exactly once;
/// - `tracked`: every event `track()` was called for (a superset, including
///   events a SIGKILL may have lost before they were durable); stored events
///   outside it are phantoms. `None` means `tracked == recorded`.
pub fn verify(
    events: &[Value],
    recorded: &BTreeSet<EventKey>,
    tracked: Option<&BTreeSet<EventKey>>,
) -> Verdict {
    let tracked = tracked.unwrap_or(recorded);
    let mut by_key: BTreeMap<EventKey, usize> = BTreeMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut verdict = Verdict {
        recorded: recorded.len(),
        ..Verdict::default()
    };
    for event in events {
        match event.get("messageId").and_then(Value::as_str) {
            Some(id) => *by_id.entry(id.to_string()).or_default() += 1,
            None => verdict.without_message_id += 1,
        }
        if let Some(key) = event_key(event) {
            verdict.stored += 1;
            *by_key.entry(key).or_default() += 1;
        }
    }
    verdict.missing = recorded
        .iter()
        .filter(|k| !by_key.contains_key(*k))
        .cloned()
        .collect();
    verdict.duplicated = by_key
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    verdict.unknown = by_key
        .keys()
        .filter(|k| !tracked.contains(*k) && !recorded.contains(*k))
        .cloned()
        .collect();
    let mut dup_ids: Vec<(String, usize)> = by_id.into_iter().filter(|(_, n)| *n > 1).collect();
    dup_ids.sort();
    verdict.duplicated_message_ids = dup_ids;
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, device: &str, seq: u64, as_string: bool) -> Value {
        let props = json!({ "device": device, "seq": seq });
        let props = if as_string {
            Value::String(props.to_string())
        } else {
            props
        };
        json!({ "messageId": id, "properties": props })
    }

    fn keys(items: &[(&str, u64)]) -> BTreeSet<EventKey> {
        items.iter().map(|(d, s)| (d.to_string(), *s)).collect()
    }

    #[test]
    fn exactly_once_passes() {
        let events = [event("a", "d", 0, false), event("b", "d", 1, true)];
        let verdict = verify(&events, &keys(&[("d", 0), ("d", 1)]), None);
        assert!(verdict.problems().is_empty(), "{:?}", verdict.problems());
    }

    #[test]
    fn finds_missing_duplicated_and_phantom_events() {
        let events = [
            event("a", "d", 0, false),
            event("b", "d", 0, true), // same event stored twice, new messageId
            event("c", "d", 9, false), // never tracked
            event("c", "d", 9, false), // and its messageId twice
        ];
        let verdict = verify(&events, &keys(&[("d", 0), ("d", 1)]), None);
        assert_eq!(
            verdict.missing,
            keys(&[("d", 1)]).into_iter().collect::<Vec<_>>()
        );
        assert_eq!(verdict.duplicated.len(), 2);
        assert_eq!(verdict.unknown.len(), 1);
        assert_eq!(verdict.duplicated_message_ids, vec![("c".to_string(), 2)]);
        assert_eq!(verdict.problems().len(), 4);
    }

    #[test]
    fn tracked_but_unconfirmed_events_are_not_phantoms() {
        let events = [event("a", "d", 0, false), event("b", "d", 1, false)];
        let tracked = keys(&[("d", 0), ("d", 1), ("d", 2)]);
        let verdict = verify(&events, &keys(&[("d", 0)]), Some(&tracked));
        assert!(verdict.problems().is_empty(), "{:?}", verdict.problems());
    }
}
