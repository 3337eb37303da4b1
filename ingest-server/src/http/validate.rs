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
//!
//! The body is never built into a `serde_json::Value` tree: each event is parsed
//! one level deep ([`crate::http::rawjson`]) and written out as compact JSON straight
//! from the raw bytes of its members. Of duplicate keys the last one wins.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;

use crate::http::rawjson::{self, Batch, Body, Fields, Kind, MAX_DEPTH, Root, ScanError, Shallow};
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

pub use tributary_protocol::Rejection;

/// Accepted records and refused events of one request.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Events to append, in request order.
    pub records: Vec<EventRecord>,
    /// Refused events.
    pub rejected: Vec<Rejection>,
    /// Bytes of the accepted events as stored.
    pub stored_bytes: usize,
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
    /// Malformed JSON (also what serde_json's skipping let through but its full
    /// parse refuses: a lone surrogate escape, a number out of range, too deep
    /// nesting).
    #[error("{0}")]
    Malformed(#[from] rawjson::Malformed),
    /// The events expand, with the top-level `context`/`integrations` merged
    /// into each, to more than a request may store.
    #[error(
        "the events expand to more than {limit} bytes once the batch's top-level context and \
         integrations are merged into each; send fewer events per batch, or context in each event"
    )]
    Expands {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Nesting left for a value with `n` containers around it.
const fn depth_under(n: usize) -> usize {
    MAX_DEPTH - n
}

/// Size limits of a request's events.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest event, as compact JSON with the top-level `context` and
    /// `integrations` merged in (the server's own fields, a few hundred bytes,
    /// come on top).
    pub max_event_bytes: usize,
    /// Largest total of a request's accepted events, as stored. A body within
    /// the batch limit can still expand, through a top-level `context` merged
    /// into each of its events; this bounds what one request may cost.
    pub max_request_bytes: usize,
}

/// Normalises, validates and enriches every item of a request.
pub fn prepare(
    endpoint: Endpoint,
    body: &Body<'_>,
    source: &str,
    received: DateTime<Utc>,
    limits: Limits,
) -> Result<Prepared, RequestError> {
    let (fields, batch) = match &body.root {
        Root::Object { fields, batch } => (fields, batch),
        Root::Array(elements) => {
            check_all(body, elements.iter().copied(), depth_under(1))?;
            return Err(RequestError::NotObject);
        }
        Root::Scalar => return Err(RequestError::NotObject),
    };
    let received_str = received.to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut shared = Shared {
        body,
        context: None,
        integrations: None,
        sent_at: None,
        forced_type: None,
        source,
        source_json: {
            let mut j = Vec::with_capacity(source.len() + 2);
            rawjson::write_str(&mut j, source);
            j
        },
        received,
        received_str: &received_str,
        max_event_bytes: limits.max_event_bytes,
    };
    let mut scratch = Scratch::default();
    let mut out = Prepared::default();
    match endpoint {
        Endpoint::Batch => {
            // Every member is checked, stored or not (the full parse refused them
            // too), before `context` and `integrations` are parsed by key.
            check_all(body, fields.iter().map(|(_, v)| *v), depth_under(1))?;
            shared.context = TopObject::new(body, rawjson::last(fields, "context"))?;
            shared.integrations = TopObject::new(body, rawjson::last(fields, "integrations"))?;
            // Parsed once per request, not per event.
            shared.sent_at = rawjson::last(fields, "sentAt")
                .filter(|v| rawjson::kind(v.get()) == Kind::String)
                .map(|v| (v.get(), parse_time(Some(v.get()), "sentAt")));
            let items = match batch {
                Some(Batch::Items(items)) => items,
                Some(Batch::NotArray(other)) => {
                    check_shallow(body, other, depth_under(2))?;
                    return Err(RequestError::NoBatch);
                }
                None => return Err(RequestError::NoBatch),
            };
            for (index, item) in items.iter().enumerate() {
                let result = match item {
                    Shallow::Object(ev) => prepare_one(ev, depth_under(3), &shared, &mut scratch)?,
                    other => {
                        check_shallow(body, other, depth_under(3))?;
                        Err("event must be a JSON object".into())
                    }
                };
                if let Ok(record) = &result {
                    out.stored_bytes += record.json.len();
                }
                push(&mut out, index, result);
                if out.stored_bytes > limits.max_request_bytes {
                    return Err(RequestError::Expands {
                        limit: limits.max_request_bytes,
                    });
                }
            }
        }
        Endpoint::Single(kind) => {
            shared.forced_type = Some(kind);
            let result = prepare_one(fields, depth_under(1), &shared, &mut scratch)?;
            push(&mut out, 0, result);
        }
    }
    Ok(out)
}

/// What a request sends, for telling an `Idempotency-Key` retry (the same
/// events) from a reuse of the key with other events: each item's `messageId`
/// as sent, or, for an item without one, its members except `sentAt` (which
/// changes on every retry). Top-level members other than the items (`sentAt`,
/// `context`) are left out for the same reason.
pub fn fingerprint(endpoint: Endpoint, body: &Body<'_>) -> [u8; 16] {
    let mut h = twox_hash::XxHash3_128::new();
    let mut item = |fields: &Fields<'_>| {
        match rawjson::last(fields, "messageId") {
            Some(id) => {
                h.write(b"i");
                h.write(id.get().as_bytes());
            }
            None => {
                h.write(b"r");
                for (k, v) in fields.iter().filter(|(k, _)| k != "sentAt") {
                    h.write(&(k.len() as u64).to_le_bytes());
                    h.write(k.as_bytes());
                    h.write(&(v.get().len() as u64).to_le_bytes());
                    h.write(v.get().as_bytes());
                }
            }
        }
        h.write(b";");
    };
    match (&body.root, endpoint) {
        (
            Root::Object {
                batch: Some(Batch::Items(items)),
                ..
            },
            Endpoint::Batch,
        ) => {
            for i in items {
                match i {
                    Shallow::Object(fields) => item(fields),
                    _ => item(&Vec::new()),
                }
            }
        }
        (Root::Object { fields, .. }, Endpoint::Single(_)) => item(fields),
        _ => {}
    }
    h.finish_128().to_le_bytes()
}

fn push(out: &mut Prepared, index: usize, result: Result<EventRecord, String>) {
    match result {
        Ok(record) => out.records.push(record),
        Err(reason) => out.rejected.push(Rejection { index, reason }),
    }
}

/// Runs [`rawjson::minify`]'s checks on values that are not stored.
fn check_all<'a>(
    body: &Body<'_>,
    values: impl Iterator<Item = &'a RawValue>,
    depth: usize,
) -> Result<(), RequestError> {
    let mut sink = Vec::new();
    for v in values {
        sink.clear();
        rawjson::minify(v.get(), &mut sink, depth).map_err(|e| malformed(body, v.get(), e))?;
    }
    Ok(())
}

/// Checks the raw parts of a value parsed one level deep, `depth` being what is
/// left for its members.
fn check_shallow(body: &Body<'_>, v: &Shallow<'_>, depth: usize) -> Result<(), RequestError> {
    match v {
        Shallow::Object(fields) => check_all(body, fields.iter().map(|(_, v)| *v), depth),
        Shallow::Array(elements) => check_all(body, elements.iter().copied(), depth),
        Shallow::Scalar => Ok(()),
    }
}

fn malformed(body: &Body<'_>, raw: &str, e: ScanError) -> RequestError {
    RequestError::Malformed(body.scan_error(raw, e))
}

/// Room for the fields enrichment adds to an event (`receivedAt`, `timestamp`,
/// `originalTimestamp`, `sentAt`, `source`): a capacity hint, not a limit.
const ENRICHED_BYTES: usize = 256;

/// A top-level `context` or `integrations` object, members compacted once per
/// request (duplicates resolved, the last wins).
struct TopObject<'a> {
    members: Vec<(Cow<'a, str>, Range<usize>)>,
    values: Vec<u8>,
}

impl<'a> TopObject<'a> {
    /// `None` when absent or not an object (then it is ignored, as before).
    /// `raw` was already checked with [`check_all`].
    fn new(body: &Body<'a>, raw: Option<&'a RawValue>) -> Result<Option<Self>, RequestError> {
        let Some(raw) = raw else { return Ok(None) };
        if rawjson::kind(raw.get()) != Kind::Object {
            return Ok(None);
        }
        let Ok(Shallow::Object(fields)) = serde_json::from_str::<Shallow<'a>>(raw.get()) else {
            return Ok(None);
        };
        let mut hidden = Vec::new();
        shadowed(&fields, &mut hidden);
        let mut top = TopObject {
            members: Vec::with_capacity(fields.len()),
            values: Vec::with_capacity(raw.get().len()),
        };
        for ((k, v), hidden) in fields.into_iter().zip(hidden) {
            let start = top.values.len();
            rawjson::minify(v.get(), &mut top.values, depth_under(2))
                .map_err(|e| malformed(body, v.get(), e))?;
            if hidden {
                top.values.truncate(start);
            } else {
                top.members.push((k, start..top.values.len()));
            }
        }
        Ok(Some(top))
    }

    fn len(&self) -> usize {
        self.values.len() + self.members.iter().map(|(k, _)| k.len() + 8).sum::<usize>()
    }
}

/// For each member, whether a later member has the same key (serde_json keeps
/// the last). Quadratic for the usual handful of keys, hashed beyond.
fn shadowed(fields: &[(Cow<'_, str>, &RawValue)], out: &mut Vec<bool>) {
    out.clear();
    if fields.len() <= 32 {
        // Length and first and last bytes tell most keys apart without a memcmp.
        let print = |k: &str| {
            let b = k.as_bytes();
            (b.len(), b.first().copied(), b.last().copied())
        };
        out.extend(fields.iter().enumerate().map(|(i, (k, _))| {
            let p = print(k);
            fields
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .any(|(k2, _)| print(k2) == p && k2 == k)
        }));
        return;
    }
    let mut seen = HashSet::with_capacity(fields.len());
    out.extend(fields.iter().rev().map(|(k, _)| !seen.insert(k.as_ref())));
    out.reverse();
}

struct Shared<'a> {
    body: &'a Body<'a>,
    context: Option<TopObject<'a>>,
    integrations: Option<TopObject<'a>>,
    /// The batch's `sentAt` when it is a string: its JSON text and parsed date.
    sent_at: Option<(&'a str, TimeResult)>,
    /// Single-event endpoints: the endpoint's type replaces the event's.
    forced_type: Option<&'static str>,
    source: &'a str,
    /// `source` as a JSON string, escaped once per request.
    source_json: Vec<u8>,
    received: DateTime<Utc>,
    received_str: &'a str,
    max_event_bytes: usize,
}

/// Buffers reused from event to event of a request.
#[derive(Default)]
struct Scratch {
    /// Compacted member values, back to back.
    values: Vec<u8>,
    /// Each member's range in `values`.
    spans: Vec<Range<usize>>,
    /// Each member: whether a later member has the same key.
    shadowed: Vec<bool>,
    /// Each member: its index in [`KNOWN`], `NONE` for other keys.
    slots: Vec<u8>,
}

/// Slot of a member whose key is not in [`KNOWN`].
const NONE: u8 = u8::MAX;
// Slots of the members the writing pass replaces or drops.
const S_TYPE: u8 = 0;
const S_MESSAGE_ID: u8 = 8;
const S_TIMESTAMP: u8 = 9;
const S_SENT_AT: u8 = 10;
const S_CONTEXT: u8 = 11;
const S_INTEGRATIONS: u8 = 12;
const S_WRITE_KEY: u8 = 13;
const S_RECEIVED_AT: u8 = 14;
const S_SOURCE: u8 = 15;
const S_ORIGINAL_TIMESTAMP: u8 = 16;

/// The members validation and enrichment look at, found in one pass.
const KNOWN: [&str; 17] = [
    "type",
    "userId",
    "anonymousId",
    "properties",
    "traits",
    "event",
    "groupId",
    "previousId",
    "messageId",
    "timestamp",
    "sentAt",
    "context",
    "integrations",
    // Not read, but replaced or dropped when the event is written.
    "writeKey",
    "receivedAt",
    "source",
    "originalTimestamp",
];

// Inlined so that lookups of a constant key fold to a constant slot.
#[inline(always)]
fn known_slot(key: &str) -> Option<usize> {
    // A match compiles to a switch on length then one comparison.
    Some(match key {
        "type" => 0,
        "userId" => 1,
        "anonymousId" => 2,
        "properties" => 3,
        "traits" => 4,
        "event" => 5,
        "groupId" => 6,
        "previousId" => 7,
        "messageId" => 8,
        "timestamp" => 9,
        "sentAt" => 10,
        "context" => 11,
        "integrations" => 12,
        "writeKey" => 13,
        "receivedAt" => 14,
        "source" => 15,
        "originalTimestamp" => 16,
        _ => return None,
    })
}

/// One event: its members and their compacted values.
struct Event<'e, 'a> {
    fields: &'e [(Cow<'a, str>, &'a RawValue)],
    values: &'e [u8],
    spans: &'e [Range<usize>],
    shadowed: &'e [bool],
    slots: &'e [u8],
    /// Index of the last member named `KNOWN[i]`.
    known: [Option<usize>; KNOWN.len()],
}

impl<'a> Event<'_, 'a> {
    /// Index of the member named `key` (the last one).
    #[inline(always)]
    fn index(&self, key: &str) -> Option<usize> {
        match known_slot(key) {
            Some(slot) => self.known.get(slot).copied().flatten(),
            None => self.fields.iter().rposition(|(k, _)| k == key),
        }
    }

    /// Raw text of the member named `key`.
    #[inline(always)]
    fn get(&self, key: &str) -> Option<&'a str> {
        let i = self.index(key)?;
        self.fields.get(i).map(|(_, v)| v.get())
    }

    #[inline(always)]
    fn kind(&self, key: &str) -> Option<Kind> {
        self.get(key).map(rawjson::kind)
    }

    #[inline(always)]
    fn string(&self, key: &str) -> Option<Cow<'a, str>> {
        self.get(key).and_then(rawjson::string)
    }

    /// Compacted value of member `i`.
    fn value(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|r| self.values.get(r.clone()))
            .unwrap_or_default()
    }
}

/// Prepares one event; the outer error refuses the whole request (malformed JSON),
/// the inner one refuses the event.
fn prepare_one(
    fields: &Fields<'_>,
    depth: usize,
    s: &Shared<'_>,
    sc: &mut Scratch,
) -> Result<Result<EventRecord, String>, RequestError> {
    sc.values.clear();
    sc.spans.clear();
    sc.slots.clear();
    let mut known = [None; KNOWN.len()];
    // The size as compact JSON: braces, commas, keys, colons and compacted values.
    let mut size = 2 + fields.len().saturating_sub(1);
    for (i, (k, v)) in fields.iter().enumerate() {
        let start = sc.values.len();
        rawjson::minify(v.get(), &mut sc.values, depth)
            .map_err(|e| malformed(s.body, v.get(), e))?;
        sc.spans.push(start..sc.values.len());
        size += rawjson::key_len(k) + 1 + (sc.values.len() - start);
        let slot = known_slot(k);
        sc.slots.push(slot.map_or(NONE, |n| n as u8));
        if let Some(last) = known.get_mut(slot.unwrap_or(usize::MAX)) {
            *last = Some(i);
        }
    }
    if size > s.max_event_bytes {
        return Ok(Err(format!(
            "event is {size} bytes, over the {}-byte limit; send less in properties/traits",
            s.max_event_bytes
        )));
    }
    shadowed(fields, &mut sc.shadowed);
    let ev = Event {
        fields,
        values: &sc.values,
        spans: &sc.spans,
        shadowed: &sc.shadowed,
        slots: &sc.slots,
        known,
    };
    Ok(build(&ev, size, s))
}

/// What to do with the event's `context` or `integrations`.
enum Merge {
    /// Leave the member as it is (or absent).
    Keep,
    /// Write the top-level object, merged under the event's own object if any.
    Write,
}

fn plan_merge(
    ev: &Event<'_, '_>,
    field: &str,
    top: Option<&TopObject<'_>>,
) -> Result<Merge, String> {
    match ev.kind(field) {
        None | Some(Kind::Null) | Some(Kind::Object) => Ok(if top.is_some() {
            Merge::Write
        } else {
            Merge::Keep
        }),
        Some(_) => Err(format!("`{field}` must be an object")),
    }
}

fn build(ev: &Event<'_, '_>, size: usize, s: &Shared<'_>) -> Result<EventRecord, String> {
    let context = plan_merge(ev, "context", s.context.as_ref())?;
    let integrations = plan_merge(ev, "integrations", s.integrations.as_ref())?;
    validate(ev, s.forced_type)?;
    let (message_id, generated) = match ev.kind("messageId") {
        None | Some(Kind::Null) => (uuid::Uuid::now_v7().to_string(), true),
        Some(Kind::String) => match ev.string("messageId") {
            Some(id) if !id.is_empty() && id.len() <= 256 => (id.into_owned(), false),
            _ => return Err(MESSAGE_ID.into()),
        },
        Some(_) => return Err(MESSAGE_ID.into()),
    };
    // Enrichment (see the module docs).
    let ts = parse_time(ev.get("timestamp"), "timestamp")?;
    let batch_sent = match (ev.kind("sentAt"), &s.sent_at) {
        (None | Some(Kind::Null), Some(batch)) => Some(batch),
        _ => None,
    };
    let sent = match batch_sent {
        Some((_, parsed)) => parsed.clone()?,
        None => parse_time(ev.get("sentAt"), "sentAt")?,
    };
    let corrected = match (ts, sent) {
        (Some(ts), Some(sent)) => s.received - (sent - ts),
        (Some(ts), None) => ts,
        (None, _) => s.received,
    };
    let original = ev.index("timestamp");

    let extra = [&s.context, &s.integrations]
        .iter()
        .filter_map(|t| t.as_ref().map(TopObject::len))
        .sum::<usize>();
    // Capped: an accepted record never holds more than the limit allows.
    let mut out = Vec::with_capacity((size + extra).min(s.max_event_bytes) + ENRICHED_BYTES);
    out.push(b'{');
    for (i, (((k, _), &hidden), &slot)) in
        ev.fields.iter().zip(ev.shadowed).zip(ev.slots).enumerate()
    {
        // By slot, not by name: the names were matched once, when measuring.
        let dropped = match slot {
            S_WRITE_KEY | S_TIMESTAMP | S_RECEIVED_AT | S_SOURCE => true,
            S_CONTEXT => matches!(context, Merge::Write),
            S_INTEGRATIONS => matches!(integrations, Merge::Write),
            S_MESSAGE_ID => generated,
            S_SENT_AT => batch_sent.is_some(),
            S_ORIGINAL_TIMESTAMP => original.is_some(),
            S_TYPE => s.forced_type.is_some(),
            _ => false,
        };
        if !dropped && !hidden {
            member(&mut out, k, ev.value(i));
        }
    }
    for (field, plan, top) in [
        ("context", &context, &s.context),
        ("integrations", &integrations, &s.integrations),
    ] {
        if let (Merge::Write, Some(top)) = (plan, top) {
            write_merged(&mut out, field, ev.get(field), top, s.max_event_bytes)?;
        }
    }
    // The limit holds for the event with the batch's members merged in (plus its
    // closing brace); the server's own fields below add a bounded few hundred bytes.
    if out.len() + 1 > s.max_event_bytes {
        return Err(too_large_as_stored(out.len() + 1, s.max_event_bytes));
    }
    if let Some(kind) = s.forced_type {
        member_str(&mut out, "type", kind);
    }
    if generated {
        member_str(&mut out, "messageId", &message_id);
    }
    if let Some((raw, _)) = batch_sent {
        member_static(&mut out, "sentAt", raw.as_bytes());
    }
    if let Some(i) = original {
        member_static(&mut out, "originalTimestamp", ev.value(i));
    }
    let corrected = corrected.to_rfc3339_opts(SecondsFormat::Millis, true);
    member_str(&mut out, "timestamp", &corrected);
    member_str(&mut out, "receivedAt", s.received_str);
    member_static(&mut out, "source", &s.source_json);
    out.push(b'}');
    Ok(EventRecord {
        received_at_ms: s.received.timestamp_millis(),
        source: s.source.to_string(),
        message_id,
        json: out,
    })
}

const MESSAGE_ID: &str = "`messageId` must be a non-empty string of at most 256 characters";

fn too_large_as_stored(size: usize, limit: usize) -> String {
    format!(
        "event is over {size} bytes with the batch's top-level context and integrations merged \
         in, over the {limit}-byte limit; send less in properties, traits or context"
    )
}

/// Appends `"key":value` (with a comma unless first in the object).
#[expect(
    clippy::ptr_arg,
    reason = "the variant matters: a borrowed key needs no escaping"
)]
fn member(out: &mut Vec<u8>, key: &Cow<'_, str>, value: &[u8]) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    rawjson::write_key(out, key);
    out.push(b':');
    out.extend_from_slice(value);
}

/// [`member`] for the server's own keys (plain ASCII, nothing to escape).
fn member_static(out: &mut Vec<u8>, key: &'static str, value: &[u8]) {
    member(out, &Cow::Borrowed(key), value);
}

fn member_str(out: &mut Vec<u8>, key: &'static str, value: &str) {
    member_static(out, key, b"");
    rawjson::write_str(out, value);
}

/// Writes `field`: the event's own object (if any) with the top-level members it
/// lacks added (one level deep: the event's keys win).
fn write_merged(
    out: &mut Vec<u8>,
    field: &'static str,
    own: Option<&str>,
    top: &TopObject<'_>,
    limit: usize,
) -> Result<(), String> {
    member_static(out, field, b"{");
    let own_fields = match own.map(serde_json::from_str::<Shallow<'_>>) {
        Some(Ok(Shallow::Object(fields))) => fields,
        Some(Err(e)) => return Err(format!("cannot encode event: {e}")),
        _ => Vec::new(),
    };
    for (k, v) in &own_fields {
        // Already checked when the event was measured: this only compacts.
        let mut value = Vec::with_capacity(v.get().len());
        rawjson::minify(v.get(), &mut value, MAX_DEPTH)
            .map_err(|e| format!("cannot encode event: {e}"))?;
        member(out, k, &value);
    }
    let many = own_fields.len() * top.members.len() > 1024;
    let own_keys: HashSet<&str> = if many {
        own_fields.iter().map(|(k, _)| k.as_ref()).collect()
    } else {
        HashSet::new()
    };
    for (k, range) in &top.members {
        let present = if many {
            own_keys.contains(k.as_ref())
        } else {
            own_fields.iter().any(|(o, _)| o == k)
        };
        if !present {
            // Refused before it is copied: a large top-level member merged into
            // every event of a batch would otherwise cost its size per event.
            let value = top.values.get(range.clone()).unwrap_or_default();
            if out.len() + k.len() + value.len() > limit {
                return Err(too_large_as_stored(
                    out.len() + k.len() + value.len(),
                    limit,
                ));
            }
            member(out, k, value);
        }
    }
    out.push(b'}');
    Ok(())
}

fn non_empty_id(ev: &Event<'_, '_>, field: &str) -> bool {
    match ev.kind(field) {
        Some(Kind::String) => ev.string(field).is_some_and(|s| !s.trim().is_empty()),
        Some(Kind::Number) => true,
        _ => false,
    }
}

fn validate(ev: &Event<'_, '_>, forced_type: Option<&'static str>) -> Result<(), String> {
    let ty = match forced_type {
        Some(kind) => Some(Cow::Borrowed(kind)),
        None => ev.string("type"),
    };
    let kind = match (ty, ev.kind("type")) {
        (Some(t), _) if TYPES.contains(&t.as_ref()) => t,
        (Some(t), _) => {
            return Err(format!(
                "unknown type `{t}`; use track, identify, page, screen, group or alias"
            ));
        }
        (None, Some(_)) => return Err("`type` must be a string".into()),
        (None, None) => {
            return Err("missing `type`; use track, identify, page, screen, group or alias".into());
        }
    };
    for field in ["userId", "anonymousId"] {
        if let Some(k) = ev.kind(field)
            && !matches!(k, Kind::String | Kind::Number | Kind::Null)
        {
            return Err(format!("`{field}` must be a string"));
        }
    }
    if !non_empty_id(ev, "userId") && !non_empty_id(ev, "anonymousId") {
        return Err("missing `userId` or `anonymousId`; every event needs one of them".into());
    }
    for field in ["properties", "traits"] {
        if let Some(k) = ev.kind(field)
            && !matches!(k, Kind::Object | Kind::Null)
        {
            return Err(format!("`{field}` must be an object"));
        }
    }
    match kind.as_ref() {
        "track" => match ev.string("event") {
            Some(e) if !e.trim().is_empty() => {}
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

/// A parsed date member: `None` when absent or null, `Err` with the reason.
type TimeResult = Result<Option<DateTime<Utc>>, String>;

/// Parses a raw member as a date: absent or null is `None`.
fn parse_time(raw: Option<&str>, field: &str) -> TimeResult {
    let Some(raw) = raw else { return Ok(None) };
    match rawjson::kind(raw) {
        Kind::Null => Ok(None),
        Kind::String => rawjson::string(raw)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|d| Some(d.with_timezone(&Utc)))
            .ok_or_else(|| {
                format!("`{field}` must be an ISO-8601 date such as 2024-01-02T03:04:05.678Z")
            }),
        _ => Err(format!("`{field}` must be an ISO-8601 date string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The previous, `Value`-based implementation: the oracle the shallow path is
    /// checked against.
    #[allow(dead_code, clippy::all)]
    mod oracle {
        use chrono::{DateTime, SecondsFormat, Utc};
        use serde_json::{Map, Value};

        use super::super::{Endpoint, Prepared, Rejection, RequestError, TYPES};
        use crate::log::EventRecord;

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
                    return Err(
                        "`messageId` must be a non-empty string of at most 256 characters".into(),
                    );
                }
            };
            enrich(&mut ev, s)?;
            // Sized once: the item plus what enrichment adds (times, source), instead of
            // the serializer regrowing the buffer several times per event.
            let mut json = Vec::with_capacity(size + ENRICHED_BYTES);
            serde_json::to_writer(&mut json, &ev)
                .map_err(|e| format!("cannot encode event: {e}"))?;
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
                    return Err(
                        "missing `type`; use track, identify, page, screen, group or alias".into(),
                    );
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
                return Err(
                    "missing `userId` or `anonymousId`; every event needs one of them".into(),
                );
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
                    _ => {
                        return Err(
                            "track needs `event`, a non-empty string naming the action".into()
                        );
                    }
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

        fn parse_time(
            ev: &Map<String, Value>,
            field: &str,
        ) -> Result<Option<DateTime<Utc>>, String> {
            match ev.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(t)) => DateTime::parse_from_rfc3339(t)
                    .map(|d| Some(d.with_timezone(&Utc)))
                    .map_err(|_| {
                        format!(
                            "`{field}` must be an ISO-8601 date such as 2024-01-02T03:04:05.678Z"
                        )
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
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-01-01T12:00:10Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn run(
        endpoint: Endpoint,
        body: &[u8],
        max: usize,
    ) -> Result<Result<Prepared, RequestError>, rawjson::Malformed> {
        let parsed = Body::parse(body, endpoint == Endpoint::Batch)?;
        let limits = Limits {
            max_event_bytes: max,
            max_request_bytes: usize::MAX,
        };
        Ok(prepare(endpoint, &parsed, "ios", now(), limits))
    }

    fn prep(endpoint: Endpoint, body: &Value, max: usize) -> Result<Prepared, RequestError> {
        run(endpoint, &serde_json::to_vec(body).unwrap(), max).unwrap()
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
        let p = prep(Endpoint::Batch, &body, 32 * 1024).unwrap();
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
        let p = prep(
            Endpoint::Single("group"),
            &json!({"anonymousId": "a", "groupId": "g", "messageId": "m1"}),
            100,
        )
        .unwrap();
        assert_eq!(p.records[0].message_id, "m1");
        let big = json!({"batch": [{"type": "track", "event": "e", "userId": "u", "properties": {"x": "y".repeat(200)}}]});
        let p = prep(Endpoint::Batch, &big, 100).unwrap();
        assert!(p.rejected[0].reason.contains("over the 100-byte limit"));
        assert!(prep(Endpoint::Batch, &json!({"batch": 3}), 100).is_err());
    }

    /// Old and new agree on `body`: the same request error, or the same refused
    /// events and stored JSON that parses back to the same value.
    fn same(endpoint: Endpoint, body: &[u8]) {
        let max = 1 << 20;
        let old = serde_json::from_slice::<Value>(body)
            .map(|v| oracle::prepare(endpoint, v, "ios", now(), max));
        let new = run(endpoint, body, max);
        let text = String::from_utf8_lossy(body);
        match (old, new) {
            (Err(_), Err(_)) | (Err(_), Ok(Err(RequestError::Malformed(_)))) => {}
            (Ok(Err(o)), Ok(Err(n))) => assert_eq!(o.to_string(), n.to_string(), "{text}"),
            (Ok(Ok(o)), Ok(Ok(n))) => {
                assert_eq!(o.rejected, n.rejected, "{text}");
                assert_eq!(o.records.len(), n.records.len(), "{text}");
                for (o, n) in o.records.iter().zip(&n.records) {
                    assert!(!n.json.contains(&b'\n'), "{text}");
                    let mut ov: Value = serde_json::from_slice(&o.json).unwrap();
                    let mut nv: Value = serde_json::from_slice(&n.json).unwrap();
                    assert_eq!(nv["messageId"], n.message_id.as_str(), "{text}");
                    if o.message_id != n.message_id {
                        // Both generated one (UUID v7): ids differ run to run.
                        for id in [&o.message_id, &n.message_id] {
                            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
                        }
                        ov["messageId"] = Value::Null;
                        nv["messageId"] = Value::Null;
                    }
                    assert!(equal(&ov, &nv), "{text}\nold {ov}\nnew {nv}");
                    assert_eq!((&o.source, o.received_at_ms), (&n.source, n.received_at_ms));
                }
            }
            (o, n) => panic!("differ on {text}: old {o:?}, new {n:?}"),
        }
    }

    /// Equal values, floats within a rounding step: the old path stored serde_json's
    /// re-serialisation of a float, whose parse (not correctly rounded without
    /// `float_roundtrip`) can differ in the last bit from the parse of the client's
    /// text, which the new path stores.
    fn equal(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
            }
            _ => a == b,
        }
    }

    const VARIED: &str = r#"{
        "writeKey": "secret", "sentAt": "2024-01-01T12:00:05Z",
        "context": {"app": {"name": "a", "v": [1, 2.50, -0, 1e2, 1.5E-3]}, "os": "x", "os": "dup-last", "lib\u0041": "k"},
        "integrations": {"All": true, "Amp": {"k": null}},
        "unknown": [1, {"a": "b"}],
        "batch": [
            {"type": "track", "event": "E\n\"q\"", "userId": "u", "timestamp": "2024-01-01T12:00:00Z",
             "context": {"os": "y", "nested": {"deep": [[["é", "😀", "\u00e9\ud83d\ude00", "\\", "\/"]]]}},
             "properties": {"price": 12345678901234567890123, "n": -1.25e-7, "big": 1e300, "k\"ey": "v\tal", "": ""},
             "writeKey": "inner-secret", "receivedAt": "client", "source": "client", "originalTimestamp": "o"},
            {
              "type"   :   "identify",
              "userId" : 42 ,
              "traits" : { "a" : [ 1 , 2 ] , "b" : { } , "c" : [ ] },
              "messageId": null, "sentAt": null, "context": null, "integrations": {"Amp": false}
            },
            {"type": "page", "anonymousId": "a", "anonymousId": "b", "type": "screen", "name": "Home",
             "timestamp": null, "originalTimestamp": "kept?", "messageId": "m-1", "messageId": "m-2"},
            {"type": "group", "userId": "u", "groupId": 7, "sentAt": "2024-01-01T11:59:59.5+01:00",
             "timestamp": "2024-01-01T10:59:58Z", "k\u0000ey": "\u0000", "tab\tkey": 1, "traits": null},
            {"type": "alias", "userId": "u", "previousId": "p"},
            {"type": "track", "userId": "u", "event": " "},
            {"type": "track", "userId": {"no": 1}, "event": "E"},
            {"type": "identify", "anonymousId": "   "},
            {"type": "identify", "userId": "u", "properties": []},
            {"type": "identify", "userId": "u", "context": "str"},
            {"type": "identify", "userId": "u", "integrations": 3},
            {"type": "identify", "userId": "u", "messageId": ""},
            {"type": "identify", "userId": "u", "messageId": 5},
            {"type": "identify", "userId": "u", "timestamp": 5},
            {"type": "identify", "userId": "u", "timestamp": "yesterday"},
            {"type": "identify", "userId": "u", "sentAt": "later"},
            {"type": 7, "userId": "u"},
            {"type": "nope", "userId": "u"},
            {"type": "alias", "userId": "u"},
            {"type": "alias", "previousId": "p", "anonymousId": "a"},
            {"type": "group", "userId": "u", "groupId": ""},
            {"userId": "u"},
            [1, "two"], "str", 3, null, true
        ]
    }"#;

    #[test]
    fn same_as_the_value_based_path() {
        same(Endpoint::Batch, VARIED.as_bytes());
        let bodies: &[&str] = &[
            r#"{"batch": []}"#,
            r#"{"batch": [], "batch": [{"type": "track", "event": "e", "userId": "u"}]}"#,
            r#"{"batch": [{"type": "track", "event": "e", "userId": "u"}], "batch": 1}"#,
            r#"{"sentAt": 5, "context": "x", "integrations": [1], "batch": [{"type": "identify", "userId": "u", "context": {"a": 1}}]}"#,
            r#"{"sentAt": "bad", "batch": [{"type": "identify", "userId": "u"}, {"type": "identify", "userId": "u", "sentAt": "2024-01-01T12:00:00Z"}]}"#,
            r#"{"context": {}, "batch": [{"type": "identify", "userId": "u"}, {"type": "identify", "userId": "u", "context": {"a": 1, "a": 2}}]}"#,
            r#"{"batch": {"type": "track"}}"#,
            r#"{"nobatch": []}"#,
            "[1, 2]",
            "\"str\"",
            "null",
            r#"{"batch": [{"type": "track", "event": "e", "userId": "u", "\u00e9\ud83d\ude00": "\ud83d\ude00"}]}"#,
        ];
        for b in bodies {
            same(Endpoint::Batch, b.as_bytes());
        }
        let singles: &[&str] = &[
            r#"{"writeKey": "k", "userId": "u", "event": "E", "type": "identify", "context": {"a": 1}}"#,
            r#"{"userId": "u"}"#,
            r#"{"userId": "u", "batch": [1], "sentAt": null, "timestamp": "2024-01-01T11:00:00Z"}"#,
            "  {\n\"userId\" :\r\n \"u\" , \"event\" : \"E\" }  \n",
            "[]",
        ];
        for b in singles {
            for kind in TYPES {
                same(Endpoint::Single(kind), b.as_bytes());
            }
        }
        // Pretty-printed input: the stored JSON has no newline.
        let pretty =
            serde_json::to_vec_pretty(&serde_json::from_str::<Value>(VARIED).unwrap()).unwrap();
        same(Endpoint::Batch, &pretty);
    }

    #[test]
    fn nesting_limit_matches() {
        for depth in [120, 123, 124, 125, 126, 127, 128, 130] {
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let batch = format!(
                r#"{{"batch": [{{"type": "track", "event": "e", "userId": "u", "p": {deep}}}]}}"#
            );
            same(Endpoint::Batch, batch.as_bytes());
            let item = format!(r#"{{"batch": [{deep}]}}"#);
            same(Endpoint::Batch, item.as_bytes());
            let ctx = format!(
                r#"{{"context": {{"a": {deep}}}, "batch": [{{"type": "track", "event": "e", "userId": "u"}}]}}"#
            );
            same(Endpoint::Batch, ctx.as_bytes());
            let other = format!(r#"{{"x": {deep}, "batch": []}}"#);
            same(Endpoint::Batch, other.as_bytes());
            let single = format!(r#"{{"userId": "u", "event": "e", "p": {deep}}}"#);
            same(Endpoint::Single("track"), single.as_bytes());
            same(Endpoint::Batch, deep.as_bytes());
        }
    }

    #[test]
    fn odd_inputs_never_panic_and_match() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        let big_int = "9".repeat(400);
        let odd: Vec<String> = vec![
            format!(
                r#"{{"batch": [{{"type": "track", "event": "e", "userId": "u", "p": {deep}}}]}}"#
            ),
            format!(
                r#"{{"batch": [{{"type": "track", "event": "e", "userId": "u", "p": {deep_obj}}}]}}"#
            ),
            format!(r#"{{"batch": [{deep}]}}"#),
            deep.clone(),
            format!(
                r#"{{"batch": [{{"type": "track", "event": "e", "userId": "u", "n": {big_int}}}]}}"#
            ),
            format!(
                r#"{{"batch": [{{"type": "track", "event": "e", "userId": "u", "n": {big_int}.5}}]}}"#
            ),
        ];
        for b in &odd {
            same(Endpoint::Batch, b.as_bytes());
        }
        let values = [
            "1e400",
            "-1e400",
            "1e-400",
            "0e99999",
            "1E+308",
            "2e308",
            "-0.0e-0",
            "18446744073709551616",
            "-9223372036854775809",
            r#""\u0000""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\ud800""#,
            r#""\ud800\u0041""#,
            r#""\ud800\n""#,
            r#""\ud800x""#,
            r#""\ud83d\ude00""#,
            r#""\uDBFF\uDFFF""#,
            r#""\u""#,
            r#""\uZZZZ""#,
            r#""\x""#,
        ];
        for v in values {
            for template in [
                r#"{"batch": [{"type": "track", "event": "e", "userId": "u", "p": {"k": V}}]}"#,
                r#"{"batch": [{"type": "track", "event": "e", "userId": "u", "p": V}]}"#,
                r#"{"batch": [{"type": "track", "event": "e", "userId": "u", "p": {V: 1}}]}"#,
                r#"{"batch": [{"type": "track", "event": "e", "userId": "u", V: 1}]}"#,
                r#"{"batch": [{"type": "track", "event": "e", "userId": V}]}"#,
                r#"{"batch": [[V]]}"#,
                r#"{"batch": [V]}"#,
                r#"{"batch": {"k": V}}"#,
                r#"{"context": {"k": V}, "batch": []}"#,
                r#"{"context": {V: 1}, "batch": []}"#,
                r#"{"integrations": {V: {V: V}}, "batch": [{"type": "track", "event": "e", "userId": "u"}]}"#,
                r#"{"batch": [{"type": "track", "event": "e", "userId": "u", "context": {V: 1}}]}"#,
                r#"{"context": [V], "batch": []}"#,
                r#"{"writeKey": V, "batch": []}"#,
                r#"{"other": V, "batch": []}"#,
                r#"[V]"#,
            ] {
                let body = template.replace('V', v);
                same(Endpoint::Batch, body.as_bytes());
                same(Endpoint::Single("track"), body.as_bytes());
            }
        }
        // Invalid UTF-8 in every position of a small body.
        let base = br#"{"context": {"a": "b"}, "batch": [{"type": "track", "event": "e", "userId": "u", "p": {"k": "v"}}]}"#;
        for i in 0..base.len() {
            for bad in [0xff_u8, 0xc3, 0x80] {
                let mut b = base.to_vec();
                b[i] = bad;
                same(Endpoint::Batch, &b);
            }
        }
    }

    #[test]
    fn mutated_bodies_match() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = VARIED.as_bytes();
        let alphabet = b"{}[]\",:\\ \n0123456789eE.-+udDcC8ntrf\x00\x1f\x7f";
        for _ in 0..3000 {
            let mut b = base.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                match rng.random_range(0..3) {
                    0 => b[i] = alphabet[rng.random_range(0..alphabet.len())],
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, alphabet[rng.random_range(0..alphabet.len())]),
                }
            }
            same(Endpoint::Batch, &b);
        }
    }

    #[test]
    fn malformed_positions_point_into_the_body() {
        let at = |body: &[u8]| match run(Endpoint::Batch, body, 1000) {
            Err(m) | Ok(Err(RequestError::Malformed(m))) => m,
            other => panic!("{other:?}"),
        };
        let m = at(b"{\"batch\": [\n{\"type\": \"track\", \"event\": \"e\", \"userId\": \"u\",\n \"p\": [1e999, \"\\ud800\"]}]}");
        assert_eq!((m.line, m.column), (3, 8));
        assert!(
            m.to_string()
                .ends_with("number out of range at line 3 column 8"),
            "{m}"
        );
        let m = at(b"{\"batch\": [\n{\"type\": \"track\", \"event\": \"e\", \"userId\": \"u\",\n \"p\": \"\\udc00\"}]}");
        assert_eq!((m.line, m.column), (3, 8));
        assert!(m.to_string().contains("lone leading surrogate"), "{m}");
        let m = at(b"{\"batch\": [\n\n  \xff]}");
        assert_eq!((m.line, m.column), (3, 3));
        assert!(m.to_string().contains("invalid unicode code point"), "{m}");
        let m = at(b"{\n \"batch\": [ {\"type\": }");
        assert_eq!(m.line, 2);
        assert!(
            m.to_string().starts_with("malformed JSON at line 2 column"),
            "{m}"
        );
    }

    #[test]
    fn known_slots_follow_the_list() {
        for (i, k) in KNOWN.iter().enumerate() {
            assert_eq!(known_slot(k), Some(i));
        }
        for (slot, name) in [
            (S_TYPE, "type"),
            (S_MESSAGE_ID, "messageId"),
            (S_TIMESTAMP, "timestamp"),
            (S_SENT_AT, "sentAt"),
            (S_CONTEXT, "context"),
            (S_INTEGRATIONS, "integrations"),
            (S_WRITE_KEY, "writeKey"),
            (S_RECEIVED_AT, "receivedAt"),
            (S_SOURCE, "source"),
            (S_ORIGINAL_TIMESTAMP, "originalTimestamp"),
        ] {
            assert_eq!(KNOWN[usize::from(slot)], name);
        }
        assert_eq!(known_slot("other"), None);
    }

    #[test]
    fn size_limit_counts_compact_bytes() {
        let item = r#"{"type":"track","event":"e","userId":"u"}"#;
        let spaced = "{ \"type\" : \"track\" ,\n \"event\" : \"e\" , \"userId\" : \"u\" }";
        for (body, max, ok) in [
            (item, item.len(), true),
            (item, item.len() - 1, false),
            (spaced, item.len(), true),
            (spaced, item.len() - 1, false),
        ] {
            let b = format!(r#"{{"batch": [{body}]}}"#);
            let p = run(Endpoint::Batch, b.as_bytes(), max).unwrap().unwrap();
            assert_eq!(p.records.len() == 1, ok, "{body} {max}");
        }
    }
}
