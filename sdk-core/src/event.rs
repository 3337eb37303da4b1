//! Building one Segment-spec event as a JSON string, on the caller's thread.
//!
//! This is the hot path of `track()`: it validates the caller's JSON without
//! building a tree (`serde_json::value::RawValue`), then writes the event with
//! a handful of appends into one pre-sized buffer. The device context is
//! serialized once per `set_context` and copied in verbatim.
//!
//! Every event carries `type`, `messageId` (UUIDv7), `timestamp` (RFC 3339,
//! UTC, milliseconds), `anonymousId`, `userId` when known, and `context`.

use std::time::SystemTime;

use serde_json::value::RawValue;

use crate::{Config, DeviceContext, TributaryError};

/// The Segment event types this SDK records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Track,
    Identify,
    Screen,
    Page,
    Group,
    Alias,
}

impl Kind {
    /// The Segment `type` field.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Identify => "identify",
            Kind::Screen => "screen",
            Kind::Page => "page",
            Kind::Group => "group",
            Kind::Alias => "alias",
        }
    }
}

/// Who the event is about, as of the moment it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub anonymous_id: String,
    pub user_id: Option<String>,
}

impl Identity {
    /// A fresh identity with a new random anonymous id.
    pub fn fresh() -> Self {
        Self {
            anonymous_id: uuid::Uuid::new_v4().to_string(),
            user_id: None,
        }
    }
}

/// One event ready for the writer: its JSON text, when it was recorded, and
/// whose it is (the writer numbers each anonymous id's events, see `writer`).
#[derive(Debug)]
pub(crate) struct Built {
    /// The event JSON, without its `sequence` (added by the writer).
    pub json: String,
    pub created_ms: i64,
    pub identity: std::sync::Arc<Identity>,
    /// `Shared::opt_outs` when it was recorded: the writer drops an event
    /// recorded before the latest opt-out, even if the user opted in since.
    pub consent_epoch: u64,
}

/// Checks that `json` is a JSON object (or empty, meaning `{}`) and returns its
/// text without surrounding whitespace. `argument` names the parameter in errors.
pub(crate) fn validate_object<'a>(
    argument: &str,
    json: &'a str,
) -> Result<&'a str, TributaryError> {
    if json.trim().is_empty() {
        return Ok("{}");
    }
    let raw: &RawValue = serde_json::from_str(json).map_err(|e| TributaryError::InvalidJson {
        argument: argument.into(),
        line: e.line() as u64,
        column: e.column() as u64,
        reason: e.to_string(),
    })?;
    let text = raw.get();
    if text.starts_with('{') {
        Ok(text)
    } else {
        let (line, column) = position_of_first_token(json);
        Err(TributaryError::InvalidJson {
            argument: argument.into(),
            line,
            column,
            reason: format!("expected a JSON object, found {}", describe_json_kind(text)),
        })
    }
}

fn describe_json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// 1-based line and column of the first non-whitespace character.
fn position_of_first_token(json: &str) -> (u64, u64) {
    let (mut line, mut column) = (1u64, 1u64);
    for c in json.chars() {
        match c {
            '\n' => {
                line += 1;
                column = 1;
            }
            c if c.is_whitespace() => column += 1,
            _ => break,
        }
    }
    (line, column)
}

/// Serializes the `context` object shared by every event: the platform's
/// device details plus `library`. Called once per `set_context`, not per event.
pub(crate) fn context_json(config: &Config, device: &DeviceContext) -> String {
    use serde_json::{Map, Value, json};
    fn put<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
        if let Some(v) = value {
            map.insert(key.into(), v.into());
        }
    }
    let mut ctx = Map::new();
    ctx.insert(
        "library".into(),
        json!({"name": config.library_name, "version": config.library_version}),
    );
    let d = device.clone();
    let mut app = Map::new();
    put(&mut app, "name", d.app_name);
    put(&mut app, "version", d.app_version);
    put(&mut app, "build", d.app_build);
    put(&mut app, "namespace", d.app_namespace);
    let mut dev = Map::new();
    put(&mut dev, "manufacturer", d.device_manufacturer);
    put(&mut dev, "model", d.device_model);
    put(&mut dev, "type", d.device_type);
    let mut os = Map::new();
    put(&mut os, "name", d.os_name);
    put(&mut os, "version", d.os_version);
    let mut network = Map::new();
    put(&mut network, "wifi", d.network_wifi);
    put(&mut network, "cellular", d.network_cellular);
    put(&mut network, "carrier", d.network_carrier);
    let mut screen = Map::new();
    put(&mut screen, "width", d.screen_width);
    put(&mut screen, "height", d.screen_height);
    put(&mut screen, "density", d.screen_density);
    for (key, map) in [
        ("app", app),
        ("device", dev),
        ("os", os),
        ("network", network),
        ("screen", screen),
    ] {
        if !map.is_empty() {
            ctx.insert(key.into(), Value::Object(map));
        }
    }
    put(&mut ctx, "locale", d.locale);
    put(&mut ctx, "timezone", d.timezone);
    Value::Object(ctx).to_string()
}

/// The minimal context sent at the top level of every batch: `library` only.
pub(crate) fn library_context_json(config: &Config) -> String {
    serde_json::json!({"library": {"name": config.library_name, "version": config.library_version}})
        .to_string()
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The latest instant RFC 3339 can write with a four-digit year: 9999-12-31T23:59:59.999Z.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-24T14:37:54.123Z`.
///
/// `humantime` panics on a time before 1970 (a device whose clock was reset)
/// and on years past 9999, and this runs inside `track`: the time is clamped
/// into `[1970-01-01T00:00:00.000Z, 9999-12-31T23:59:59.999Z]` first, so a
/// wrong clock yields a wrong but valid timestamp, never a panic.
pub(crate) fn rfc3339_ms(at: SystemTime) -> String {
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(std::time::Duration::ZERO);
    let max = std::time::Duration::from_millis(MAX_RFC3339_MS);
    let clamped = SystemTime::UNIX_EPOCH + since_epoch.min(max);
    humantime::format_rfc3339_millis(clamped).to_string()
}

pub(crate) fn push_json_str(buf: &mut String, value: &str) {
    // Fast path: most names and ids need no escaping.
    if value
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        buf.push('"');
        buf.push_str(value);
        buf.push('"');
    } else {
        // serde_json cannot fail to serialize a &str.
        buf.push_str(&serde_json::Value::from(value).to_string());
    }
}

/// The event-specific fields, already validated.
pub(crate) struct Fields<'a> {
    pub kind: Kind,
    /// `event` for track, `name` for screen, `groupId` for group.
    pub label: Option<&'a str>,
    /// `properties` or `traits` object text.
    pub payload: Option<&'a str>,
    /// `previousId` for alias.
    pub previous_id: Option<&'a str>,
}

/// Per-event additions from the call's `EventOptions`, already validated.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Extras<'a> {
    /// The `timestamp` to write instead of now.
    pub timestamp: Option<SystemTime>,
    /// The `integrations` object text.
    pub integrations: Option<&'a str>,
}

/// `base` (the shared context object text) with the session id, the traits
/// and the call's own top-level keys added.
pub(crate) fn event_context(
    base: &str,
    session_id: i64,
    traits: Option<&str>,
    overrides: Option<&str>,
) -> String {
    let mut out = String::with_capacity(base.len() + 32 + traits.map_or(0, str::len));
    // Every context text is a serialized object, so it ends with `}`.
    out.push_str(base.strip_suffix('}').unwrap_or(base));
    let empty = out.ends_with('{');
    if !empty {
        out.push(',');
    }
    out.push_str("\"sessionId\":");
    out.push_str(&session_id.to_string());
    if let Some(traits) = traits {
        out.push_str(",\"traits\":");
        out.push_str(traits);
    }
    out.push('}');
    let Some(overrides) = overrides else {
        return out;
    };
    use serde_json::{Map, Value};
    let mut merged: Map<String, Value> = serde_json::from_str(&out).unwrap_or_default();
    let own: Map<String, Value> = serde_json::from_str(overrides).unwrap_or_default();
    merged.extend(own);
    Value::Object(merged).to_string()
}

/// Writes the full event JSON.
pub(crate) fn build(
    fields: &Fields<'_>,
    identity: std::sync::Arc<Identity>,
    context: &str,
    extras: Extras<'_>,
) -> Built {
    let now = SystemTime::now();
    let created_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let payload_len = fields.payload.map_or(0, str::len);
    let mut buf = String::with_capacity(256 + payload_len + context.len());
    buf.push_str("{\"type\":\"");
    buf.push_str(fields.kind.type_name());
    buf.push('"');
    let (label_key, payload_key) = match fields.kind {
        Kind::Track => ("event", "properties"),
        Kind::Screen | Kind::Page => ("name", "properties"),
        Kind::Group => ("groupId", "traits"),
        Kind::Identify | Kind::Alias => ("", "traits"),
    };
    if let Some(label) = fields.label {
        buf.push_str(",\"");
        buf.push_str(label_key);
        buf.push_str("\":");
        push_json_str(&mut buf, label);
    }
    if let Some(payload) = fields.payload {
        buf.push_str(",\"");
        buf.push_str(payload_key);
        buf.push_str("\":");
        buf.push_str(payload);
    }
    if let Some(previous) = fields.previous_id {
        buf.push_str(",\"previousId\":");
        push_json_str(&mut buf, previous);
    }
    buf.push_str(",\"messageId\":\"");
    buf.push_str(
        uuid::Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    buf.push_str("\",\"timestamp\":\"");
    buf.push_str(&rfc3339_ms(extras.timestamp.unwrap_or(now)));
    buf.push_str("\",\"anonymousId\":");
    push_json_str(&mut buf, &identity.anonymous_id);
    if let Some(user_id) = &identity.user_id {
        buf.push_str(",\"userId\":");
        push_json_str(&mut buf, user_id);
    }
    buf.push_str(",\"context\":");
    buf.push_str(context);
    if let Some(integrations) = extras.integrations {
        buf.push_str(",\"integrations\":");
        buf.push_str(integrations);
    }
    buf.push('}');
    Built {
        json: buf,
        created_ms,
        identity,
        consent_epoch: 0,
    }
}

/// Writes `json` (one event object) into `out` with `"sequence":seq` as its
/// last field.
pub(crate) fn with_sequence(out: &mut String, json: &str, seq: u64) {
    out.clear();
    // Every built event ends with the `}` of its object.
    let body = json.strip_suffix('}').unwrap_or(json);
    out.push_str(body);
    out.push_str(",\"sequence\":");
    out.push_str(&seq.to_string());
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            anonymous_id: "anon-1".into(),
            user_id: Some("user \"1\"".into()),
        }
    }

    #[test]
    fn track_event_is_valid_json_with_required_fields() {
        let built = build(
            &Fields {
                kind: Kind::Track,
                label: Some("Signed\nUp"),
                payload: Some(r#"{"plan":"pro"}"#),
                previous_id: None,
            },
            std::sync::Arc::new(identity()),
            r#"{"library":{"name":"x","version":"1"}}"#,
            Extras::default(),
        );
        let v: serde_json::Value = serde_json::from_str(&built.json).unwrap();
        assert_eq!(v["type"], "track");
        assert_eq!(v["event"], "Signed\nUp");
        assert_eq!(v["properties"]["plan"], "pro");
        assert_eq!(v["userId"], "user \"1\"");
        assert_eq!(v["anonymousId"], "anon-1");
        assert_eq!(v["context"]["library"]["name"], "x");
        let id = uuid::Uuid::parse_str(v["messageId"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-24T14:37:54.123Z".len(), "{ts}");
        assert!(humantime::parse_rfc3339(ts).is_ok());
    }

    #[test]
    fn timestamps_of_a_clock_outside_1970_to_9999_are_clamped_not_a_panic() {
        use std::time::Duration;
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(rfc3339_ms(before_1970), "1970-01-01T00:00:00.000Z");
        let year_20000 = SystemTime::UNIX_EPOCH + Duration::from_secs(568_000_000_000);
        assert_eq!(rfc3339_ms(year_20000), "9999-12-31T23:59:59.999Z");
        let normal = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(rfc3339_ms(normal), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn validation_reports_position_and_kind() {
        assert_eq!(validate_object("properties", "  ").unwrap(), "{}");
        assert_eq!(
            validate_object("properties", " {\"a\":1} ").unwrap(),
            "{\"a\":1}"
        );
        match validate_object("traits", "{\n \"a\": }") {
            Err(TributaryError::InvalidJson {
                argument,
                line,
                column,
                ..
            }) => {
                assert_eq!(argument, "traits");
                assert_eq!((line, column), (2, 7));
            }
            other => panic!("unexpected {other:?}"),
        }
        match validate_object("properties", "\n  [1]") {
            Err(TributaryError::InvalidJson {
                line,
                column,
                reason,
                ..
            }) => {
                assert_eq!((line, column), (2, 3));
                assert!(reason.contains("array"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn context_includes_library_and_device_fields() {
        let config = Config::new("http://x".into(), "k".into(), "/tmp".into());
        let device = DeviceContext {
            os_name: Some("Android".into()),
            network_wifi: Some(true),
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&context_json(&config, &device)).unwrap();
        assert_eq!(v["library"]["name"], "tributary-rust");
        assert_eq!(v["os"]["name"], "Android");
        assert_eq!(v["network"]["wifi"], true);
        assert!(v.get("app").is_none());
    }
}
