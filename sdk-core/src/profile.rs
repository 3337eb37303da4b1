//! What the core remembers about the user between events: super-properties,
//! traits and the session. Shared by every platform, persisted in the state
//! file (see `state`) next to the identity.
//!
//! - **Super-properties** (`register` / `unregister`) are merged into the
//!   `properties` of every later `track`, `screen` and `page`; a property the
//!   call passes itself wins.
//! - **Traits**: every `identify` merges its traits into the stored ones; the
//!   identify event carries the merged set, and every event carries them in
//!   `context.traits` (as Segment's mobile libraries do).
//! - **Sessions**: every event carries `context.sessionId`, the session's
//!   start in milliseconds since the Unix epoch (Amplitude's `session_id`
//!   convention: unique per device and sortable). The platform reports the
//!   app going to the foreground and the background; a session ends once the
//!   app has been in the background for `Config::session_timeout_ms`
//!   (30 minutes by default, as Amplitude and PostHog do), checked when the
//!   app comes back and on every event recorded from the background.
//!
//! - **App version**: the version and build the platform reported at the last
//!   launch, from which the core tells an install from an update (Segment's
//!   `Application Installed` / `Application Updated`, see `Client::app_launched`).
//!
//! `reset()` forgets the super-properties, traits and session with the user;
//! the app version belongs to the installation and stays.
//! Everything here takes the time as an argument: nothing reads the clock.
//!
//! Until the writer thread has read the state file (milliseconds after the
//! client starts), changes are kept as a list and replayed over what the file
//! holds when it is read, so nothing registered early is lost and nothing
//! stored is overwritten by an empty default. Events recorded in that window
//! carry only what was registered in this process so far; on a first run (no
//! stored session) the session they started goes on.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The session part of the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// The session id: its start, in ms since the Unix epoch; 0 before the first.
    #[serde(default)]
    pub id: i64,
    /// When the app went to the background, if it is there.
    #[serde(default)]
    pub background_since_ms: Option<i64>,
}

impl Session {
    /// The session id for an event at `now`: starts the first session, and a
    /// new one if the app has been in the background for `timeout_ms`.
    pub fn current(&mut self, now: i64, timeout_ms: i64) -> i64 {
        let expired = self
            .background_since_ms
            .is_some_and(|since| now.saturating_sub(since) >= timeout_ms);
        if self.id == 0 || expired {
            self.id = now.max(1);
            if expired {
                // The new session starts in the background; it lasts until the
                // app has been away for the timeout again, counted from now.
                self.background_since_ms = Some(now);
            }
        }
        self.id
    }

    /// The app came to the foreground at `now`: a new session if it was away
    /// for `timeout_ms` or more. Returns true if the session changed.
    pub fn foreground(&mut self, now: i64, timeout_ms: i64) -> bool {
        let before = self.id;
        self.current(now, timeout_ms);
        self.background_since_ms = None;
        self.id != before
    }

    /// The app went to the background at `now` (a repeated report keeps the
    /// first time).
    pub fn background(&mut self, now: i64) {
        if self.background_since_ms.is_none() {
            self.background_since_ms = Some(now);
        }
    }
}

/// The app's version and build as the platform reports them at launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppVersion {
    /// `CFBundleShortVersionString`, `versionName`.
    pub version: String,
    /// `CFBundleVersion`, `versionCode`; `None` if the platform has none.
    #[serde(default)]
    pub build: Option<String>,
}

/// What a launch is, compared with the version stored at the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Launch {
    /// No version was ever stored: the first launch of this installation.
    Installed,
    /// The version or the build differs from the stored one.
    Updated {
        /// What the last launch reported.
        previous: AppVersion,
    },
    /// The same version and build as the last launch.
    Same,
}

/// Everything remembered about the user besides the identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Profile {
    /// Merged into every `track`, `screen` and `page`.
    #[serde(default)]
    pub super_properties: Map<String, Value>,
    /// Merged by every `identify`; sent in `context.traits`.
    #[serde(default)]
    pub traits: Map<String, Value>,
    /// The current session.
    #[serde(default)]
    pub session: Session,
    /// The app version reported at the last launch; absent before the first
    /// (and in files written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppVersion>,
}

/// A change made before the state file was read, replayed over it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Register(Map<String, Value>),
    Unregister(String),
    Traits(Map<String, Value>),
    Reset,
    Foreground(i64),
    Background(i64),
}

impl Profile {
    /// Applies one change (`timeout_ms` is the session timeout).
    pub fn apply(&mut self, change: &Change, timeout_ms: i64) {
        match change {
            Change::Register(map) => {
                for (k, v) in map {
                    self.super_properties.insert(k.clone(), v.clone());
                }
            }
            Change::Unregister(key) => {
                self.super_properties.remove(key);
            }
            Change::Traits(map) => {
                for (k, v) in map {
                    self.traits.insert(k.clone(), v.clone());
                }
            }
            Change::Reset => {
                // The app version belongs to the installation, not the user.
                let app = self.app.take();
                *self = Profile::default();
                self.app = app;
            }
            Change::Foreground(now) => {
                self.session.foreground(*now, timeout_ms);
            }
            Change::Background(now) => self.session.background(*now),
        }
    }

    /// `properties` (a validated JSON object text) with the super-properties
    /// under it; the text unchanged when there are none.
    pub fn with_super_properties(&self, properties: &str) -> String {
        if self.super_properties.is_empty() {
            return properties.to_string();
        }
        let own: Map<String, Value> = serde_json::from_str(properties).unwrap_or_default();
        let mut merged = self.super_properties.clone();
        merged.extend(own);
        Value::Object(merged).to_string()
    }

    /// Compares `current` with the version stored at the last launch, and
    /// stores it.
    pub fn launch(&mut self, current: AppVersion) -> Launch {
        let launch = match self.app.take() {
            None => Launch::Installed,
            Some(previous) if previous != current => Launch::Updated { previous },
            Some(_) => Launch::Same,
        };
        self.app = Some(current);
        launch
    }

    /// The traits as a JSON object text.
    pub fn traits_json(&self) -> String {
        Value::Object(self.traits.clone()).to_string()
    }
}

/// The profile as the client holds it: the current values, and until the
/// state file is read, the changes to replay over it.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub profile: Profile,
    /// `None` once the stored profile was adopted.
    pub early: Option<Vec<Change>>,
    /// The last event context built: (base context, session id, result). Every
    /// event of a session shares it, so the hot path does not rebuild it (and
    /// serialize the traits) per call; any profile change drops it.
    context: Option<(Arc<str>, i64, Arc<str>)>,
}

impl Held {
    /// A profile not read from the file yet.
    pub fn unloaded() -> Self {
        Self {
            profile: Profile::default(),
            early: Some(Vec::new()),
            context: None,
        }
    }

    /// The context of an event in session `session_id` over `base`: the base
    /// context with `sessionId` and the traits.
    pub fn context_for(&mut self, base: &Arc<str>, session_id: i64) -> Arc<str> {
        if let Some((b, s, ctx)) = &self.context
            && Arc::ptr_eq(b, base)
            && *s == session_id
        {
            return ctx.clone();
        }
        let traits = (!self.profile.traits.is_empty()).then(|| self.profile.traits_json());
        let ctx: Arc<str> =
            crate::event::event_context(base, session_id, traits.as_deref(), None).into();
        self.context = Some((base.clone(), session_id, ctx.clone()));
        ctx
    }

    /// Applies `change` now, and remembers it for the replay if the file is not read yet.
    pub fn change(&mut self, change: Change, timeout_ms: i64) {
        self.context = None;
        self.profile.apply(&change, timeout_ms);
        if let Some(early) = &mut self.early {
            early.push(change);
        }
    }

    /// Takes in what the file holds, with the early changes replayed over it.
    /// Returns true if the result differs from what is stored.
    pub fn adopt(&mut self, stored: Profile, timeout_ms: i64) -> bool {
        self.context = None;
        let early = self.early.take().unwrap_or_default();
        let mut profile = stored.clone();
        // No stored session (a first run): the one the early events carry goes on,
        // with the foreground/background reports already applied to it.
        let keep_session = stored.session.id == 0;
        if keep_session {
            profile.session = self.profile.session.clone();
        }
        for change in &early {
            let session_change = matches!(change, Change::Foreground(_) | Change::Background(_));
            if !(keep_session && session_change) {
                profile.apply(change, timeout_ms);
            }
        }
        let changed = profile != stored;
        self.profile = profile;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: i64 = 60_000;
    const TIMEOUT: i64 = 30 * MIN;
    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn a_session_rotates_after_thirty_minutes_in_the_background_only() {
        let mut s = Session::default();
        let first = s.current(T0, TIMEOUT);
        assert_eq!(first, T0);
        // Two hours in the foreground: the same session.
        assert_eq!(s.current(T0 + 120 * MIN, TIMEOUT), first);
        // 29 minutes away: the same session.
        s.background(T0 + 121 * MIN);
        assert!(!s.foreground(T0 + 150 * MIN - 1, TIMEOUT));
        assert_eq!(s.id, first);
        // A repeated background report keeps the first time.
        s.background(T0 + 200 * MIN);
        s.background(T0 + 220 * MIN);
        assert!(s.foreground(T0 + 230 * MIN, TIMEOUT), "30 minutes away");
        assert_eq!(s.id, T0 + 230 * MIN);
        assert_eq!(s.background_since_ms, None);
    }

    #[test]
    fn an_event_recorded_long_after_going_to_the_background_starts_a_session() {
        let mut s = Session::default();
        s.current(T0, TIMEOUT);
        s.background(T0 + MIN);
        assert_eq!(s.current(T0 + 10 * MIN, TIMEOUT), T0);
        let bg = s.current(T0 + 31 * MIN, TIMEOUT);
        assert_eq!(bg, T0 + 31 * MIN);
        // The background session goes on for the next events...
        assert_eq!(s.current(T0 + 40 * MIN, TIMEOUT), bg);
        // ...and coming back soon after keeps it.
        assert!(!s.foreground(T0 + 45 * MIN, TIMEOUT));
        assert_eq!(s.id, bg);
    }

    #[test]
    fn super_properties_merge_under_the_call_s_own() {
        let mut p = Profile::default();
        assert_eq!(p.with_super_properties(r#"{"a":1}"#), r#"{"a":1}"#);
        let reg = |v: Value| Change::Register(v.as_object().cloned().unwrap_or_default());
        p.apply(&reg(json!({"plan": "pro", "a": 0})), TIMEOUT);
        let merged: Value = serde_json::from_str(&p.with_super_properties(r#"{"a":1}"#)).unwrap();
        assert_eq!(merged, json!({"plan": "pro", "a": 1}));
        p.apply(&Change::Unregister("plan".into()), TIMEOUT);
        let merged: Value = serde_json::from_str(&p.with_super_properties("{}")).unwrap();
        assert_eq!(merged, json!({"a": 0}));
        p.apply(&Change::Reset, TIMEOUT);
        assert_eq!(p, Profile::default());
    }

    #[test]
    fn a_launch_is_an_install_then_the_same_then_an_update_and_reset_keeps_it() {
        let v = |version: &str, build: Option<&str>| AppVersion {
            version: version.into(),
            build: build.map(Into::into),
        };
        let mut p = Profile::default();
        assert_eq!(p.launch(v("1.0", Some("1"))), Launch::Installed);
        assert_eq!(p.launch(v("1.0", Some("1"))), Launch::Same);
        // Logging out does not make the next launch an install.
        p.apply(&Change::Reset, TIMEOUT);
        assert_eq!(p.launch(v("1.0", Some("1"))), Launch::Same);
        // A new build of the same version is an update too.
        assert_eq!(
            p.launch(v("1.0", Some("2"))),
            Launch::Updated {
                previous: v("1.0", Some("1"))
            }
        );
        assert_eq!(
            p.launch(v("1.1", None)),
            Launch::Updated {
                previous: v("1.0", Some("2"))
            }
        );
        assert_eq!(p.launch(v("1.1", None)), Launch::Same);
        // A profile stored before the field existed reads as never launched.
        let old: Profile = serde_json::from_str(r#"{"super_properties":{},"traits":{}}"#).unwrap();
        assert_eq!(old.app, None);
    }

    #[test]
    fn early_changes_are_replayed_over_the_stored_profile() {
        let mut stored = Profile::default();
        stored.super_properties.insert("kept".into(), json!(1));
        stored.super_properties.insert("dropped".into(), json!(2));
        stored.traits.insert("email".into(), json!("a@example.com"));
        stored.session = Session {
            id: T0,
            background_since_ms: Some(T0 + MIN),
        };
        let mut held = Held::unloaded();
        held.change(Change::Unregister("dropped".into()), TIMEOUT);
        held.change(
            Change::Register(json!({"new": true}).as_object().cloned().unwrap()),
            TIMEOUT,
        );
        held.change(Change::Foreground(T0 + 2 * MIN), TIMEOUT);
        assert!(held.adopt(stored.clone(), TIMEOUT));
        let p = &held.profile;
        assert_eq!(
            Value::Object(p.super_properties.clone()),
            json!({"kept": 1, "new": true})
        );
        assert_eq!(p.traits, stored.traits);
        assert_eq!(p.session.id, T0, "back within the timeout: same session");
        assert_eq!(p.session.background_since_ms, None);
        // Later changes are not kept for a replay.
        held.change(Change::Reset, TIMEOUT);
        assert!(held.early.is_none());
        // A first run: the session the early events carry is kept, not restarted.
        let mut first = Held::unloaded();
        let early_id = first.profile.session.current(T0, TIMEOUT);
        first.change(Change::Background(T0 + MIN), TIMEOUT);
        first.change(Change::Foreground(T0 + 2 * MIN), TIMEOUT);
        assert!(first.adopt(Profile::default(), TIMEOUT));
        assert_eq!(first.profile.session.id, early_id);
        assert_eq!(first.profile.session.background_since_ms, None);
        // Nothing changed early: nothing to rewrite.
        let mut quiet = Held::unloaded();
        assert!(!quiet.adopt(stored.clone(), TIMEOUT));
        assert_eq!(quiet.profile, stored);
    }
}
