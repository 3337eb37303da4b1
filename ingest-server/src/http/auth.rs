//! Write keys: from HTTP Basic auth (the user name) or the body's `writeKey`,
//! compared in constant time.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use base64::Engine;

/// The request's write key and its source, if it is a known key. The key comes
/// from Basic auth, else the body's `writeKey`, else the `writeKey` query
/// parameter (for beacon clients, which can set neither header nor body shape).
pub fn authenticate(
    keys: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body_key: Option<&str>,
    query_key: Option<&str>,
) -> Option<(String, String)> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|userpass| userpass.split(':').next().unwrap_or("").to_string());
    let key = from_header
        .or_else(|| body_key.map(str::to_owned))
        .or_else(|| query_key.map(str::to_owned))?;
    source_of(keys, &key)
}

/// The source of a write key (one given in a URL path, e.g. the settings route).
pub fn source_of_key(keys: &BTreeMap<String, String>, key: &str) -> Option<String> {
    source_of(keys, key).map(|(_, source)| source)
}

/// The source of a write key, compared in constant time with every configured
/// key: how long the answer takes must not tell how much of a key was right.
fn source_of(keys: &BTreeMap<String, String>, key: &str) -> Option<(String, String)> {
    use subtle::ConstantTimeEq;
    let mut found = None;
    for (known, source) in keys {
        if bool::from(known.as_bytes().ct_eq(key.as_bytes())) {
            found = Some((known, source));
        }
    }
    found.map(|(k, s)| (k.clone(), s.clone()))
}
