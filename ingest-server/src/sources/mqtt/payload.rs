//! An MQTT payload → the body of a batch request, with every event given a
//! `messageId`.
//!
//! A payload is one Segment event (`{"type":"track",...}`), a batch
//! (`{"batch":[...], "context":..., "sentAt":...}`) or a JSON array of events.
//! An event without a string `messageId` gets one derived from the message:
//! `mqtt-<hex xxh3-128 of (topic, payload bytes, index in the payload)>`, so a
//! broker's redelivery of the same message carries the same ids and dedupes.

use serde_json::{Map, Value};

/// `mqtt-` and 32 hex digits, derived from the message (see the module docs).
pub fn derived_id(topic: &str, payload: &[u8], index: usize) -> String {
    format!("mqtt-{:032x}", message_hash(topic, payload, index as u64))
}

/// The keyless hash of a message (topic, bytes, item index), also naming its
/// dead letter: a redelivery lands on the same object.
pub fn message_hash(topic: &str, payload: &[u8], index: u64) -> u128 {
    let mut h = twox_hash::XxHash3_128::new();
    h.write(&(topic.len() as u64).to_le_bytes());
    h.write(topic.as_bytes());
    h.write(&(payload.len() as u64).to_le_bytes());
    h.write(payload);
    h.write(&index.to_le_bytes());
    h.finish_128()
}

/// The payload as a batch body (`{"batch":[...],...}`), or why it cannot be one.
pub fn to_batch(topic: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err("the payload is empty; publish one Segment event or a batch as JSON".into());
    }
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        format!("the payload is not JSON ({e}); publish one Segment event or a batch as JSON")
    })?;
    let (mut top, items) = match value {
        Value::Object(mut obj) if obj.contains_key("batch") => match obj.remove("batch") {
            Some(Value::Array(items)) => (obj, items),
            _ => {
                return Err(
                    "`batch` must be an array of events, e.g. {\"batch\":[{\"type\":\"track\",...}]}"
                        .into(),
                );
            }
        },
        Value::Object(obj) => (Map::new(), vec![Value::Object(obj)]),
        Value::Array(items) => (Map::new(), items),
        _ => {
            return Err(
                "the payload must be a JSON object (one event or {\"batch\":[...]}) or an array of events"
                    .into(),
            );
        }
    };
    if items.is_empty() {
        return Err("the payload holds no events".into());
    }
    let items: Vec<Value> = items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if let Value::Object(ev) = &mut item
                && !ev.get("messageId").is_some_and(Value::is_string)
            {
                ev.insert(
                    "messageId".into(),
                    Value::String(derived_id(topic, payload, i)),
                );
            }
            item
        })
        .collect();
    top.insert("batch".into(), Value::Array(items));
    serde_json::to_vec(&Value::Object(top))
        .map_err(|e| format!("cannot re-encode the payload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_ids() {
        let one = br#"{"type":"track","event":"E","userId":"u"}"#;
        let b: Value = serde_json::from_slice(&to_batch("t/1", one).unwrap()).unwrap();
        let id = b["batch"][0]["messageId"].as_str().unwrap().to_string();
        assert!(id.starts_with("mqtt-") && id.len() == 37, "{id}");
        // Same message, same id; another topic or payload, another id.
        let again: Value = serde_json::from_slice(&to_batch("t/1", one).unwrap()).unwrap();
        assert_eq!(again["batch"][0]["messageId"], id.as_str());
        let other: Value = serde_json::from_slice(&to_batch("t/2", one).unwrap()).unwrap();
        assert_ne!(other["batch"][0]["messageId"], id.as_str());
        // A given messageId is kept; items of a batch get distinct ids.
        let batch = br#"{"batch":[{"type":"track","event":"A","userId":"u","messageId":"m1"},
            {"type":"track","event":"B","userId":"u"},{"type":"track","event":"C","userId":"u"}],
            "context":{"device":{"id":"d1"}}}"#;
        let b: Value = serde_json::from_slice(&to_batch("t/1", batch).unwrap()).unwrap();
        assert_eq!(b["batch"][0]["messageId"], "m1");
        assert_ne!(b["batch"][1]["messageId"], b["batch"][2]["messageId"]);
        assert_eq!(b["context"]["device"]["id"], "d1");
        let arr = br#"[{"type":"track","event":"A","userId":"u"}]"#;
        assert!(to_batch("t", arr).is_ok());
        for bad in [
            &b""[..],
            b"  ",
            b"not json",
            b"42",
            br#"{"batch":{}}"#,
            b"[]",
        ] {
            assert!(to_batch("t", bad).is_err());
        }
    }
}
