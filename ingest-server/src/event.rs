//! Per-event normalising, validation and enrichment (Segment's rules).
//!
//! For each item: top-level `context` and `integrations` are merged in (the item's
//! own keys win), a missing `messageId` is assigned (UUID v7), the event is
//! checked, and the server adds:
//!
//! * `receivedAt`: when the request arrived (server clock);
//! * `sentAt`: the item's or the batch's `sentAt`, if any;
//! * `originalTimestamp`: the client's `timestamp`, if any;
//! * `timestamp`: corrected for device clock skew,
//!   `receivedAt − (sentAt − originalTimestamp)` when both are known, else the
//!   client's timestamp, else `receivedAt`;
//! * `source`: the source name of the write key. The write key is never stored.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::log::EventRecord;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/batch` (and `/v1/import`).
    Batch,
    /// A single-event endpoint with its implied `type`.
    Single(&'static str),
}

/// Event types Segment defines.
pub const TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

/// An event refused by validation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    /// Index of the event in the batch (0 for single-event endpoints).
    pub index: usize,
    /// What is wrong and what to do.
    pub reason: String,
}

/// Accepted records and refused events of one request.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Events to append, in request order.
    pub records: Vec<EventRecord>,
    /// Refused events.
    pub rejected: Vec<Rejection>,
}

/// Request-level errors (the whole request is refused with 400).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The body is not a JSON object.
    #[error("the body must be a JSON object")]
    NotObject,
    /// `batch` is missing or not an array.
    #[error("`batch` must be an array of events, e.g. {{\"batch\":[{{\"type\":\"track\",...}}]}}")]
    NoBatch,
}

/// Normalises, validates and enriches every item of a request.
pub fn prepare(
    endpoint: Endpoint,
    body: Value,
    source: &str,
    received: DateTime<Utc>,
    max_event_bytes: usize,
) -> Result<Prepared, RequestError> {
    let Value::Object(mut body) = body else {
        return Err(RequestError::NotObject);
    };
    body.remove("writeKey");
    let (items, context, integrations, sent_at) = match endpoint {
        Endpoint::Batch => {
            let Some(Value::Array(items)) = body.remove("batch") else {
                return Err(RequestError::NoBatch);
            };
            (
                items,
                body.remove("context"),
                body.remove("integrations"),
                body.remove("sentAt"),
            )
        }
        Endpoint::Single(kind) => {
            body.insert("type".into(), Value::String(kind.into()));
            (vec![Value::Object(body)], None, None, None)
        }
    };
    let received_str = received.to_rfc3339_opts(SecondsFormat::Millis, true);
    let batch_sent = sent_at.as_ref().and_then(|v| v.as_str()).map(str::to_owned);
    let mut out = Prepared::default();
    for (index, item) in items.into_iter().enumerate() {
        let ctx = Shared {
            context: context.as_ref(),
            integrations: integrations.as_ref(),
            sent_at: batch_sent.as_deref(),
            source,
            received,
            received_str: &received_str,
            max_event_bytes,
        };
        match prepare_one(item, &ctx) {
            Ok(record) => out.records.push(record),
            Err(reason) => out.rejected.push(Rejection { index, reason }),
        }
    }
    Ok(out)
}

/// Room for the fields enrichment adds to an event (`receivedAt`, `timestamp`,
/// `originalTimestamp`, `sentAt`, `source`): a capacity hint, not a limit.
const ENRICHED_BYTES: usize = 256;

struct Shared<'a> {
    context: Option<&'a Value>,
    integrations: Option<&'a Value>,
    sent_at: Option<&'a str>,
    source: &'a str,
    received: DateTime<Utc>,
    received_str: &'a str,
    max_event_bytes: usize,
}

fn prepare_one(item: Value, s: &Shared<'_>) -> Result<EventRecord, String> {
    let size = json_len(&item);
    let Value::Object(mut ev) = item else {
        return Err("event must be a JSON object".into());
    };
    if size > s.max_event_bytes {
        return Err(format!(
            "event is {size} bytes, over the {}-byte limit; send less in properties/traits",
            s.max_event_bytes
        ));
    }
    ev.remove("writeKey");
    merge_object(&mut ev, "context", s.context)?;
    merge_object(&mut ev, "integrations", s.integrations)?;
    validate(&ev)?;
    let message_id = match ev.get("messageId") {
        None | Some(Value::Null) => {
            let id = uuid::Uuid::now_v7().to_string();
            ev.insert("messageId".into(), Value::String(id.clone()));
            id
        }
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 256 => id.clone(),
        Some(_) => {
            return Err("`messageId` must be a non-empty string of at most 256 characters".into());
        }
    };
    enrich(&mut ev, s)?;
    // Sized once: the item plus what enrichment adds (times, source), instead of
    // the serializer regrowing the buffer several times per event.
    let mut json = Vec::with_capacity(size + ENRICHED_BYTES);
    serde_json::to_writer(&mut json, &ev).map_err(|e| format!("cannot encode event: {e}"))?;
    Ok(EventRecord {
        received_at_ms: s.received.timestamp_millis(),
        source: s.source.to_string(),
        message_id,
        json,
    })
}

/// Merges a top-level object into the item's field of the same name.
fn merge_object(
    ev: &mut Map<String, Value>,
    field: &str,
    top: Option<&Value>,
) -> Result<(), String> {
    match ev.get_mut(field) {
        None | Some(Value::Null) => {
            if let Some(Value::Object(top)) = top {
                ev.insert(field.into(), Value::Object(top.clone()));
            }
        }
        Some(Value::Object(own)) => {
            if let Some(Value::Object(top)) = top {
                for (k, v) in top {
                    own.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Some(_) => return Err(format!("`{field}` must be an object")),
    }
    Ok(())
}

fn non_empty_id(ev: &Map<String, Value>, field: &str) -> bool {
    match ev.get(field) {
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    }
}

fn validate(ev: &Map<String, Value>) -> Result<(), String> {
    let kind = match ev.get("type") {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(t)) => {
            return Err(format!(
                "unknown type `{t}`; use track, identify, page, screen, group or alias"
            ));
        }
        Some(_) => return Err("`type` must be a string".into()),
        None => {
            return Err("missing `type`; use track, identify, page, screen, group or alias".into());
        }
    };
    for field in ["userId", "anonymousId"] {
        if let Some(v) = ev.get(field)
            && !matches!(v, Value::String(_) | Value::Number(_) | Value::Null)
        {
            return Err(format!("`{field}` must be a string"));
        }
    }
    if !non_empty_id(ev, "userId") && !non_empty_id(ev, "anonymousId") {
        return Err("missing `userId` or `anonymousId`; every event needs one of them".into());
    }
    for field in ["properties", "traits"] {
        if let Some(v) = ev.get(field)
            && !matches!(v, Value::Object(_) | Value::Null)
        {
            return Err(format!("`{field}` must be an object"));
        }
    }
    match kind {
        "track" => match ev.get("event") {
            Some(Value::String(e)) if !e.trim().is_empty() => {}
            _ => return Err("track needs `event`, a non-empty string naming the action".into()),
        },
        "group" if !non_empty_id(ev, "groupId") => {
            return Err("group needs `groupId`".into());
        }
        "alias" => {
            if !non_empty_id(ev, "previousId") {
                return Err("alias needs `previousId` (the old id)".into());
            }
            if !non_empty_id(ev, "userId") {
                return Err("alias needs `userId` (the new id)".into());
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_time(ev: &Map<String, Value>, field: &str) -> Result<Option<DateTime<Utc>>, String> {
    match ev.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t)) => DateTime::parse_from_rfc3339(t)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|_| {
                format!("`{field}` must be an ISO-8601 date such as 2024-01-02T03:04:05.678Z")
            }),
        Some(_) => Err(format!("`{field}` must be an ISO-8601 date string")),
    }
}

fn enrich(ev: &mut Map<String, Value>, s: &Shared<'_>) -> Result<(), String> {
    let ts = parse_time(ev, "timestamp")?;
    if ev.get("sentAt").is_none_or(Value::is_null)
        && let Some(batch) = s.sent_at
    {
        ev.insert("sentAt".into(), Value::String(batch.to_owned()));
    }
    let sent = parse_time(ev, "sentAt")?;
    let corrected = match (ts, sent) {
        (Some(ts), Some(sent)) => s.received - (sent - ts),
        (Some(ts), None) => ts,
        (None, _) => s.received,
    };
    if let Some(orig) = ev.remove("timestamp") {
        ev.insert("originalTimestamp".into(), orig);
    }
    ev.insert(
        "timestamp".into(),
        Value::String(corrected.to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    ev.insert(
        "receivedAt".into(),
        Value::String(s.received_str.to_owned()),
    );
    ev.insert("source".into(), Value::String(s.source.to_owned()));
    Ok(())
}

/// Bytes of `v` as compact JSON, without allocating.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T12:00:10Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn batch_merge_validate_enrich() {
        let body = json!({
            "writeKey": "secret",
            "sentAt": "2024-01-01T12:00:05Z",
            "context": {"app": "a", "os": "x"},
            "batch": [
                {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-01-01T12:00:00Z", "context": {"os": "y"}},
                {"type": "track", "userId": "u"},
                {"type": "alias", "userId": "u"},
                {"type": "nope", "userId": "u"},
                {"type": "identify"},
                "str"
            ]
        });
        let p = prepare(Endpoint::Batch, body, "ios", now(), 32 * 1024).unwrap();
        assert_eq!(p.records.len(), 1);
        let idx: Vec<usize> = p.rejected.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4, 5]);
        let ev: Value = serde_json::from_slice(&p.records[0].json).unwrap();
        assert_eq!(ev["context"], json!({"app": "a", "os": "y"}));
        assert_eq!(ev["originalTimestamp"], "2024-01-01T12:00:00Z");
        // received 12:00:10 - (sent 12:00:05 - ts 12:00:00) = 12:00:05
        assert_eq!(ev["timestamp"], "2024-01-01T12:00:05.000Z");
        assert_eq!(ev["receivedAt"], "2024-01-01T12:00:10.000Z");
        assert_eq!(ev["source"], "ios");
        assert!(ev.get("writeKey").is_none());
        assert!(!String::from_utf8_lossy(&p.records[0].json).contains("secret"));
        assert_eq!(ev["messageId"].as_str().unwrap(), p.records[0].message_id);
    }

    #[test]
    fn single_and_limits() {
        let p = prepare(
            Endpoint::Single("group"),
            json!({"anonymousId": "a", "groupId": "g", "messageId": "m1"}),
            "s",
            now(),
            100,
        )
        .unwrap();
        assert_eq!(p.records[0].message_id, "m1");
        let big = json!({"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"x": "y".repeat(200)}}]});
        let p = prepare(Endpoint::Batch, big, "s", now(), 100).unwrap();
        assert!(p.rejected[0].reason.contains("over the 100-byte limit"));
        assert!(prepare(Endpoint::Batch, json!({"batch": 3}), "s", now(), 100).is_err());
    }
}
