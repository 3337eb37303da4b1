//! Shallow JSON for the ingest front-end.
//!
//! A request body is parsed one level deep: objects become their keys and the raw
//! text of their values ([`RawValue`]), never a `serde_json::Value` tree. Nested
//! values (`properties`, `context`, ...) are validated by serde_json while it skips
//! them and are then copied as bytes by [`minify`].
//!
//! serde_json's skipping checks syntax and UTF-8 but accepts three things its
//! `Value` parser refuses: lone UTF-16 surrogate escapes (`"\ud800"`), numbers out
//! of `f64` range (`1e400`) and nesting deeper than its recursion limit. [`minify`]
//! refuses those too, so every stored event parses back with serde_json (the
//! writer and the output formats rely on that) and a body is refused exactly when
//! the old full parse refused it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Deepest nesting serde_json accepts (it refuses the 128th open container).
pub const MAX_DEPTH: usize = 127;

/// An object's members in source order (duplicates kept), values as raw text.
pub type Fields<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// A JSON value parsed one level deep.
#[derive(Debug)]
pub enum Shallow<'a> {
    /// An object: its members.
    Object(Fields<'a>),
    /// An array: its elements as raw text.
    Array(Vec<&'a RawValue>),
    /// A string, number, boolean or null (fully validated by serde_json).
    Scalar,
}

/// The `batch` member of a batch request.
#[derive(Debug)]
pub enum Batch<'a> {
    /// An array: its items, each parsed one level deep.
    Items(Vec<Shallow<'a>>),
    /// Anything else (the request is refused).
    NotArray(Shallow<'a>),
}

/// The top level of a request body.
#[derive(Debug)]
pub enum Root<'a> {
    /// An object.
    Object {
        /// Its members, except `batch` on batch endpoints.
        fields: Fields<'a>,
        /// The last `batch` member (batch endpoints only).
        batch: Option<Batch<'a>>,
    },
    /// An array (the request is refused): its elements as raw text.
    Array(Vec<&'a RawValue>),
    /// A string, number, boolean or null (the request is refused).
    Scalar,
}

/// A request body parsed one level deep (two for a batch's items).
#[derive(Debug)]
pub struct Body<'a> {
    /// The whole body, to turn positions of later errors into line and column.
    pub input: &'a [u8],
    /// The parsed top level.
    pub root: Root<'a>,
}

impl<'a> Body<'a> {
    /// Parses `input`; with `batch`, the `batch` member's items are parsed one
    /// level deep too. Fails on malformed JSON, with its position.
    pub fn parse(input: &'a [u8], batch: bool) -> Result<Self, Malformed> {
        // One UTF-8 check of the whole body, then serde_json's `str` reader, which
        // does not re-check every string and raw value.
        let text = std::str::from_utf8(input).map_err(|e| {
            let body = Body {
                input,
                root: Root::Scalar,
            };
            body.malformed(e.valid_up_to(), "invalid unicode code point")
        })?;
        let mut de = serde_json::Deserializer::from_str(text);
        let root = RootSeed { batch }
            .deserialize(&mut de)
            .and_then(|root| de.end().map(|()| root))
            .map_err(|e| Malformed {
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            })?;
        Ok(Body { input, root })
    }

    /// The error for `reason` at byte `pos` of the body.
    pub fn malformed(&self, pos: usize, reason: &str) -> Malformed {
        let (line, column) = self.line_column(pos);
        Malformed {
            line,
            column,
            reason: format!("{reason} at line {line} column {column}"),
        }
    }

    /// The error for a [`ScanError`] in `raw`, a slice of the body.
    pub fn scan_error(&self, raw: &str, e: ScanError) -> Malformed {
        self.malformed(self.position(raw, e.offset), e.reason)
    }

    /// The top-level `writeKey`, when it is a string (the last one wins).
    pub fn write_key(&self) -> Option<Cow<'a, str>> {
        match &self.root {
            Root::Object { fields, .. } => last(fields, "writeKey").and_then(|v| string(v.get())),
            _ => None,
        }
    }

    /// Line and column (1-based) of byte `pos` of the body, as serde_json counts them.
    pub fn line_column(&self, pos: usize) -> (usize, usize) {
        let before = self.input.get(..pos).unwrap_or(self.input);
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        (line, before.len() - start + 1)
    }

    /// Position in the body of byte `offset` of `raw` (a slice of the body).
    pub fn position(&self, raw: &str, offset: usize) -> usize {
        let base = (raw.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
        if base <= self.input.len() {
            (base + offset).min(self.input.len())
        } else {
            0
        }
    }
}

/// The last member named `key` (serde_json keeps the last of duplicate keys).
pub fn last<'a>(fields: &[(Cow<'a, str>, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
}

/// The content of a raw JSON string, or `None` when `raw` is not a string.
pub fn string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// The JSON type of a raw value, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// The JSON type of `raw` (a value serde_json validated: no leading whitespace).
pub fn kind(raw: &str) -> Kind {
    match raw.as_bytes().first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'n') => Kind::Null,
        Some(b't' | b'f') => Kind::Bool,
        _ => Kind::Number,
    }
}

/// Malformed JSON in a request body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed JSON at line {line} column {column}: {reason}")]
pub struct Malformed {
    /// 1-based line in the body.
    pub line: usize,
    /// 1-based column in the body.
    pub column: usize,
    /// What is wrong (serde_json's wording, ending with the position).
    pub reason: String,
}

/// Why [`minify`] refused a value, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset in the value's text.
    pub offset: usize,
    /// serde_json's wording for the same error.
    pub reason: &'static str,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Appends `raw` (JSON serde_json validated) to `out` without whitespace outside
/// strings, so the result never contains a newline. Refuses what serde_json's
/// `Value` parser refuses but its skipping does not: lone surrogate escapes,
/// numbers out of `f64` range, and more than `max_depth` nested containers.
pub fn minify(raw: &str, out: &mut Vec<u8>, max_depth: usize) -> Result<(), ScanError> {
    let b = raw.as_bytes();
    let mut i = 0;
    // Start of the bytes not yet copied: runs are copied in one go.
    let mut run = 0;
    let mut depth = 0usize;
    while let Some(&c) = b.get(i) {
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.extend_from_slice(b.get(run..i).unwrap_or_default());
                i += 1;
                run = i;
            }
            b'"' => i = skip_string(b, i + 1)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ScanError {
                        offset: i,
                        reason: "recursion limit exceeded",
                    });
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = b
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(b.len(), |n| i + n);
                check_number(raw.get(i..end).unwrap_or_default(), i)?;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.extend_from_slice(b.get(run..).unwrap_or_default());
    Ok(())
}

/// Checks a number token: only an exponent or a very long integer part can put it
/// out of `f64` range, and then serde_json itself decides (same code as `Value`).
fn check_number(token: &str, offset: usize) -> Result<(), ScanError> {
    let risky = token.len() >= 300 || token.bytes().any(|c| c == b'e' || c == b'E');
    if risky && serde_json::from_str::<f64>(token).is_err() {
        return Err(ScanError {
            offset,
            reason: "number out of range",
        });
    }
    Ok(())
}

/// Skips a string body starting after its opening quote; returns the index after
/// the closing quote. Checks that `\u` surrogate escapes come in pairs.
fn skip_string(b: &[u8], mut i: usize) -> Result<usize, ScanError> {
    let lone = |offset| ScanError {
        offset,
        reason: "lone leading surrogate in hex escape",
    };
    loop {
        i = memchr::memchr2(b'"', b'\\', b.get(i..).unwrap_or_default()).map_or(b.len(), |n| i + n);
        match b.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(_) => match b.get(i + 1) {
                Some(b'u') => {
                    let n = hex4(b, i + 2)?;
                    if (0xDC00..=0xDFFF).contains(&n) {
                        return Err(lone(i));
                    }
                    if (0xD800..=0xDBFF).contains(&n) {
                        if b.get(i + 6) != Some(&b'\\') || b.get(i + 7) != Some(&b'u') {
                            return Err(ScanError {
                                offset: i + 6,
                                reason: "unexpected end of hex escape",
                            });
                        }
                        if !(0xDC00..=0xDFFF).contains(&hex4(b, i + 8)?) {
                            return Err(lone(i + 6));
                        }
                        i += 12;
                    } else {
                        i += 6;
                    }
                }
                Some(_) => i += 2,
                None => return Err(unterminated(i)),
            },
            None => return Err(unterminated(i)),
        }
    }
}

fn unterminated(offset: usize) -> ScanError {
    ScanError {
        offset,
        reason: "EOF while parsing a string",
    }
}

fn hex4(b: &[u8], i: usize) -> Result<u16, ScanError> {
    let invalid = ScanError {
        offset: i,
        reason: "invalid escape",
    };
    let digits = b.get(i..i + 4).ok_or(invalid)?;
    let text = std::str::from_utf8(digits).map_err(|_| invalid)?;
    u16::from_str_radix(text, 16).map_err(|_| invalid)
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(b.get(run..i).unwrap_or_default());
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        run = i + 1;
    }
    out.extend_from_slice(b.get(run..).unwrap_or_default());
    out.push(b'"');
}

/// Appends a key as a JSON string. A key serde_json borrowed from the input had
/// no escape sequence (and no control character, which it refuses), so it needs
/// no escaping.
#[expect(
    clippy::ptr_arg,
    reason = "the variant matters: a borrowed key needs no escaping"
)]
pub fn write_key(out: &mut Vec<u8>, key: &Cow<'_, str>) {
    match key {
        Cow::Borrowed(k) => {
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(k) => write_str(out, k),
    }
}

/// Length of `key` written by [`write_key`].
#[expect(
    clippy::ptr_arg,
    reason = "the variant matters: a borrowed key needs no escaping"
)]
pub fn key_len(key: &Cow<'_, str>) -> usize {
    match key {
        Cow::Borrowed(k) => k.len() + 2,
        Cow::Owned(k) => str_len(k),
    }
}

/// Length of `s` written by [`write_str`].
pub fn str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|c| match c {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// A key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn read_fields<'de, A: MapAccess<'de>>(mut map: A) -> Result<Fields<'de>, A::Error> {
    let mut fields = Vec::with_capacity(16);
    while let Some(Key(k)) = map.next_key()? {
        fields.push((k, map.next_value::<&'de RawValue>()?));
    }
    Ok(fields)
}

fn read_elements<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<&'de RawValue>, A::Error> {
    let mut items = Vec::new();
    while let Some(v) = seq.next_element::<&'de RawValue>()? {
        items.push(v);
    }
    Ok(items)
}

/// Implements the scalar visits of a one-level visitor as "not a container".
macro_rules! scalars {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

impl<'de> Deserialize<'de> for Shallow<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shallow<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_fields(map).map(Shallow::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                read_elements(seq).map(Shallow::Array)
            }
            scalars!(Shallow::Scalar);
        }
        d.deserialize_any(V)
    }
}

/// The `batch` member: items parsed one level deep when it is an array.
struct BatchSeed;

impl<'de> DeserializeSeed<'de> for BatchSeed {
    type Value = Batch<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Batch<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(64));
                while let Some(item) = seq.next_element::<Shallow<'de>>()? {
                    items.push(item);
                }
                Ok(Batch::Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_fields(map).map(|f| Batch::NotArray(Shallow::Object(f)))
            }
            scalars!(Batch::NotArray(Shallow::Scalar));
        }
        d.deserialize_any(V)
    }
}

struct RootSeed {
    batch: bool,
}

impl<'de> DeserializeSeed<'de> for RootSeed {
    type Value = Root<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V {
            batch: bool,
        }
        impl<'de> Visitor<'de> for V {
            type Value = Root<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(8);
                let mut batch = None;
                while let Some(Key(k)) = map.next_key()? {
                    if self.batch && k == "batch" {
                        batch = Some(map.next_value_seed(BatchSeed)?);
                    } else {
                        fields.push((k, map.next_value::<&'de RawValue>()?));
                    }
                }
                Ok(Root::Object { fields, batch })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                read_elements(seq).map(Root::Array)
            }
            scalars!(Root::Scalar);
        }
        d.deserialize_any(V { batch: self.batch })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(s: &str) -> Result<String, ScanError> {
        let raw: &RawValue = serde_json::from_str(s).unwrap();
        let mut out = Vec::new();
        minify(raw.get(), &mut out, MAX_DEPTH)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn minify_removes_whitespace_outside_strings_only() {
        assert_eq!(
            min("{ \"a b\" :\n [ 1 ,\t2.5e3 , \"x \\\" y\\n\" ] }").unwrap(),
            "{\"a b\":[1,2.5e3,\"x \\\" y\\n\"]}"
        );
        assert_eq!(min("\"\\ud83d\\ude00 \"").unwrap(), "\"\\ud83d\\ude00 \"");
    }

    #[test]
    fn minify_refuses_what_value_refuses() {
        for bad in [
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\\ud800\\n\"",
            "1e400",
            "-1e400",
            "[1E309]",
        ] {
            assert!(min(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        let long = "9".repeat(400);
        assert!(min(&long).is_err());
        assert!(min("1e-400").is_ok());
        assert!(min(&"9".repeat(300)).is_ok());
        let deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(min(&deep).unwrap_err().reason, "recursion limit exceeded");
    }

    #[test]
    fn write_str_matches_serde_json() {
        for s in [
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
            "é😀",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap());
            assert_eq!(str_len(s), out.len());
        }
    }
}
