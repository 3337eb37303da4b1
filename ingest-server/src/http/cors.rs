//! Which web pages may send events: CORS headers for browsers, and the
//! server-side check that actually keeps a disallowed page's data out.
//!
//! Origins are allowed per write key (`--allowed-origin KEY=ORIGIN`). CORS
//! alone cannot enforce that, for two reasons:
//!
//! * a preflight (`OPTIONS`) carries neither the body nor the `Authorization`
//!   header, so it cannot say which key the request will use: the preflight is
//!   answered for an origin allowed for *any* key;
//! * analytics.js's `text/plain` posts and `sendBeacon` are "simple" requests,
//!   which the browser sends whatever the CORS answer says; CORS only hides the
//!   answer from the page.
//!
//! So tower-http's [`CorsLayer`] writes the headers (for the union of all
//! allowed origins), and the handlers refuse, after authenticating the key, any
//! request whose `Origin` header is not allowed for that key
//! ([`BrowserOrigins::allows`]). Requests without `Origin` (the mobile SDK,
//! servers, curl) are not browsers and are not affected.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Write key → origins allowed to use it.
#[derive(Debug, Default)]
pub struct BrowserOrigins {
    per_key: BTreeMap<String, BTreeSet<String>>,
    /// Every origin allowed for some key, for answering preflights.
    union: HashSet<String>,
    /// Some key allows any origin (`*`).
    any: bool,
}

impl BrowserOrigins {
    /// From the checked configuration (origins already in lower case).
    pub fn new(per_key: &BTreeMap<String, BTreeSet<String>>) -> Self {
        let union: HashSet<String> = per_key.values().flatten().cloned().collect();
        let any = union.contains("*");
        Self {
            per_key: per_key.clone(),
            union,
            any,
        }
    }

    /// Whether a page of `origin` may send with `key`. Browsers send the
    /// `Origin` of a page in lower-case ASCII, but compare case-insensitively
    /// anyway, as RFC 6454 does for scheme and host.
    pub fn allows(&self, key: &str, origin: &HeaderValue) -> bool {
        let Some(set) = self.per_key.get(key) else {
            return false;
        };
        set.contains("*")
            || origin
                .to_str()
                .is_ok_and(|o| set.contains(&o.to_ascii_lowercase()))
    }

    /// Whether some key allows `origin` (what a preflight can know).
    fn allows_some_key(&self, origin: &HeaderValue) -> bool {
        self.any
            || origin
                .to_str()
                .is_ok_and(|o| self.union.contains(&o.to_ascii_lowercase()))
    }
}

/// The CORS layer of the browser-facing routes. A preflight is answered here,
/// before any handler and without reading a body; a preflight from an origin
/// no key allows gets no `Access-Control-Allow-Origin`, so the browser does not
/// send the request.
pub fn layer(origins: Arc<BrowserOrigins>) -> CorsLayer {
    CorsLayer::new()
        // Mirrors the request's Origin when allowed (never a literal `*`, so the
        // answer is the same whether a key allows one origin or any).
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.allows_some_key(origin)
        }))
        .allow_methods([Method::GET, Method::POST])
        // analytics.js sends Authorization and X-Retry-Count; RudderStack's SDK
        // sends JSON with Authorization and the headers below; the rest are what
        // our own protocol defines (header names are case-insensitive). A list,
        // not a mirror of Access-Control-Request-Headers: only what is known.
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            HeaderName::from_static("x-retry-count"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("anonymousid"),
            // RudderStack's delivery and retry bookkeeping.
            HeaderName::from_static("sentat"),
            HeaderName::from_static("rsa-recovered"),
            HeaderName::from_static("rsa-retry-attempt"),
            HeaderName::from_static("rsa-retry-reason"),
            HeaderName::from_static("rsa-since-first-attempt"),
            HeaderName::from_static("rsa-since-last-attempt"),
        ])
        .expose_headers([
            header::RETRY_AFTER,
            HeaderName::from_static("idempotent-replayed"),
        ])
        // Browsers cap this (Chromium at 2 h); it saves a preflight per event.
        .max_age(Duration::from_secs(2 * 60 * 60))
}
