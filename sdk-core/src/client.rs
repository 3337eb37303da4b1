//! The client object: the public entry point.
//!
//! A client owns two background threads: the writer (see `writer`), which
//! opens the database and is the only one to insert events, and the delivery
//! thread (see `delivery`), which sends batches. Recording methods only
//! validate, build and hand over.
//!
//! # Time bounds
//! No call waits on the disk without a bound, whatever the disk does:
//! - recording calls, `flush`, `set_enabled`, `reset` and the setters never
//!   wait for the writer (`set_enabled` writes one small file, see `state`);
//! - `flush_blocking(t)` returns within `max(t, DURABLE_GRACE)`;
//! - `shutdown(t)` within `max(t, DURABLE_GRACE) + STOP_GIVE_UP + STOP_GRACE`
//!   (1 s, 2 s and 3 s: `max(t, 1 s) + 5 s`), and `Drop` within 5 s: a writer
//!   that cannot store its events in time counts them in
//!   `Stats::dropped_shutdown` and is left to exit on its own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::{self, Fields, Identity, Kind};
use crate::logger::Log;
use crate::profile::{AppVersion, Change, Held, Launch};
use crate::shared::{Counters, Shared, Signals, lock};
use crate::state::{Reservation, StateFile};
use crate::store::Store;
use crate::supervise::supervise;
use crate::writer::{self, Msg, STOP_GIVE_UP};
use crate::{
    Config, DeviceContext, EventOptions, FlushResult, Logger, Stats, Transport, TributaryError,
};

/// How long `flush_blocking` and `shutdown` wait for earlier events to become
/// durable when their own timeout is shorter: a group commit takes
/// milliseconds, so only a failing storage (or one not open yet) reaches it;
/// then the result is `TimedOut` with the cause in `Stats::last_error`.
pub const DURABLE_GRACE: Duration = Duration::from_secs(1);

/// How long stopping waits for the writer beyond its own give-up time
/// ([`STOP_GIVE_UP`]), for a commit already in progress to return.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// `EventOptions`, validated.
#[derive(Debug, Default)]
struct Resolved {
    timestamp: Option<std::time::SystemTime>,
    context: Option<String>,
    integrations: Option<String>,
}

impl Resolved {
    fn from(options: &EventOptions) -> Result<Self, TributaryError> {
        let object = |argument: &str, json: &Option<String>| {
            json.as_deref()
                .map(|j| event::validate_object(argument, j).map(str::to_string))
                .transpose()
        };
        Ok(Self {
            timestamp: options
                .timestamp_ms
                .map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
            context: object("context", &options.context_json)?,
            integrations: object("integrations", &options.integrations_json)?,
        })
    }
}

/// How long [`Client::app_launched`] waits for the state file.
const APP_LAUNCH_STATE_WAIT: Duration = Duration::from_secs(2);

/// A Tributary client bound to one storage directory.
///
/// Recording methods validate and build the event on the caller's thread,
/// then hand it to a background writer; they never touch the disk.
#[derive(uniffi::Object)]
pub struct Client {
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[uniffi::export]
impl Client {
    /// Starts a client on `config.storage_dir` and returns at once.
    ///
    /// On the caller's thread it only validates the config, takes the
    /// directory lock (creating the directory if needed; a second client on
    /// the same directory fails here with `StorageUnavailable`) and reads the
    /// small consent file (see `state`; an install from before that file also
    /// reads the old database's identity, once). The database is opened,
    /// checked and migrated on the writer thread; events recorded meanwhile
    /// wait in memory (see [`Client::await_ready`]).
    ///
    /// Requests go through the built-in ureq transport (cargo feature
    /// `ureq-transport`, on by default). A build without it returns
    /// `InvalidConfig { field: "transport" }`: use [`Client::with_transport`].
    #[uniffi::constructor]
    pub fn new(
        config: Config,
        logger: Option<Arc<dyn Logger>>,
    ) -> Result<Arc<Self>, TributaryError> {
        config.validate()?;
        let transport = crate::transport::built_in(&config)?;
        Self::open(config, Log::new(logger), transport).map(Arc::new)
    }

    /// Starts a client like [`Client::new`], whose requests go through
    /// `transport`: the platform's HTTP stack (`HttpURLConnection`,
    /// `URLSession`), so the app's proxy, trusted CAs and pinning apply.
    /// The core still builds each request and classifies each answer.
    #[uniffi::constructor]
    pub fn with_transport(
        config: Config,
        logger: Option<Arc<dyn Logger>>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Self>, TributaryError> {
        config.validate()?;
        Self::open(config, Log::new(logger), transport).map(Arc::new)
    }

    /// Waits up to `timeout_ms` for the queue database to be open, and says
    /// whether it is. While it is not (a storage error: see
    /// `Stats::last_error` and the logger; the writer keeps retrying),
    /// recording still works: events wait in memory up to `max_buffer_bytes`.
    pub fn await_ready(&self, timeout_ms: u64) -> bool {
        self.shared
            .wait_until(Duration::from_millis(timeout_ms), |s| s.ready)
    }

    /// Records a `track` event. `properties_json` must be a JSON object (or
    /// empty for none); the super-properties are merged into it.
    pub fn track(&self, name: String, properties_json: String) -> Result<(), TributaryError> {
        self.record_track(&name, &properties_json)
    }

    /// Records an `identify` event and remembers `user_id` for later events.
    ///
    /// `traits_json` is merged into the stored traits (persisted, sent with
    /// every later event in `context.traits`); the event carries the merged set.
    pub fn identify(&self, user_id: String, traits_json: String) -> Result<(), TributaryError> {
        self.identify_with_options(user_id, traits_json, EventOptions::default())
    }

    /// [`Client::identify`] with per-call options.
    pub fn identify_with_options(
        &self,
        user_id: String,
        traits_json: String,
        options: EventOptions,
    ) -> Result<(), TributaryError> {
        let traits = event::validate_object("traits", &traits_json)?;
        let options = Resolved::from(&options)?;
        let current = self.shared.identity();
        let identity = Identity {
            anonymous_id: current.anonymous_id.clone(),
            user_id: Some(user_id),
        };
        let fields = Fields {
            kind: Kind::Identify,
            label: None,
            payload: Some(traits),
            previous_id: None,
        };
        self.record(&fields, Some(identity), &options)
    }

    /// Records a `screen` event; the super-properties are merged into its properties.
    pub fn screen(&self, name: String, properties_json: String) -> Result<(), TributaryError> {
        self.screen_with_options(name, properties_json, EventOptions::default())
    }

    /// [`Client::screen`] with per-call options.
    pub fn screen_with_options(
        &self,
        name: String,
        properties_json: String,
        options: EventOptions,
    ) -> Result<(), TributaryError> {
        self.record_labelled(Kind::Screen, &name, &properties_json, &options)
    }

    /// Records a `page` event (for web views and hybrid apps; native screens
    /// use `screen`); the super-properties are merged into its properties.
    pub fn page(&self, name: String, properties_json: String) -> Result<(), TributaryError> {
        self.page_with_options(name, properties_json, EventOptions::default())
    }

    /// [`Client::page`] with per-call options.
    pub fn page_with_options(
        &self,
        name: String,
        properties_json: String,
        options: EventOptions,
    ) -> Result<(), TributaryError> {
        self.record_labelled(Kind::Page, &name, &properties_json, &options)
    }

    /// Records a `group` event.
    pub fn group(&self, group_id: String, traits_json: String) -> Result<(), TributaryError> {
        self.group_with_options(group_id, traits_json, EventOptions::default())
    }

    /// [`Client::group`] with per-call options.
    pub fn group_with_options(
        &self,
        group_id: String,
        traits_json: String,
        options: EventOptions,
    ) -> Result<(), TributaryError> {
        self.record_labelled(Kind::Group, &group_id, &traits_json, &options)
    }

    /// [`Client::track`] with per-call options.
    pub fn track_with_options(
        &self,
        name: String,
        properties_json: String,
        options: EventOptions,
    ) -> Result<(), TributaryError> {
        self.record_labelled(Kind::Track, &name, &properties_json, &options)
    }

    /// Adds super-properties: merged into the properties of every later
    /// `track`, `screen` and `page` (a property the call passes wins), and
    /// persisted. `properties_json` must be a JSON object; its keys replace
    /// registered ones of the same name.
    pub fn register(&self, properties_json: String) -> Result<(), TributaryError> {
        let text = event::validate_object("properties", &properties_json)?;
        let map = serde_json::from_str(text).unwrap_or_default();
        self.change_profile(Change::Register(map));
        Ok(())
    }

    /// Removes one super-property (persisted); an unknown key is ignored.
    pub fn unregister(&self, key: String) {
        self.change_profile(Change::Unregister(key));
    }

    /// The registered super-properties, as a JSON object.
    pub fn super_properties(&self) -> String {
        let held = lock(&self.shared.profile);
        serde_json::Value::Object(held.profile.super_properties.clone()).to_string()
    }

    /// The traits merged from every `identify` since the last `reset`, as a JSON object.
    pub fn traits(&self) -> String {
        lock(&self.shared.profile).profile.traits_json()
    }

    /// The platform reports that the app came to the foreground. A new
    /// session starts if it was in the background for `session_timeout_ms`.
    pub fn app_foregrounded(&self) {
        let now = self.shared.now_ms();
        self.change_profile(Change::Foreground(now));
    }

    /// The platform reports that the app went to the background; the
    /// session's timeout counts from now.
    pub fn app_backgrounded(&self) {
        let now = self.shared.now_ms();
        self.change_profile(Change::Background(now));
    }

    /// Tells the core the app's version and build at launch; the core compares
    /// them with those of the last launch (kept in the state file) and, when
    /// `track_lifecycle_events` is set, records Segment's `Application Installed`
    /// (`version`, `build`) on the first launch of the installation or
    /// `Application Updated` (`previous_version`, `previous_build`, `version`,
    /// `build`) when either changed. The version is stored either way, and
    /// `reset` keeps it. Call it once per process, before `Application Opened`.
    ///
    /// Never fails. It needs the state file, which the writer thread reads just
    /// after the client starts: it waits up to 2 s for it, so call it off the
    /// main thread (the platform layers call it on their lifecycle thread). If
    /// the file is not read by then (storage unavailable), this launch is not
    /// checked (logged); the next one is.
    pub fn app_launched(
        &self,
        version: String,
        build: Option<String>,
        track_lifecycle_events: bool,
    ) {
        self.wait_for_state(APP_LAUNCH_STATE_WAIT);
        if self.shared.state_pending.load(Ordering::SeqCst) {
            self.shared.log.warn(
                "the app version was not checked for Application Installed/Updated: the state file could not be read yet; the next launch checks it"
                    .to_string(),
            );
            return;
        }
        let current = AppVersion {
            version: version.clone(),
            build: build.clone(),
        };
        let launch = lock(&self.shared.profile).profile.launch(current);
        let (name, properties) = match launch {
            Launch::Same => return,
            Launch::Installed => (
                "Application Installed",
                serde_json::json!({"version": version, "build": build}),
            ),
            Launch::Updated { previous } => (
                "Application Updated",
                serde_json::json!({
                    "previous_version": previous.version,
                    "previous_build": previous.build,
                    "version": version,
                    "build": build,
                }),
            ),
        };
        // Persisted by the writer with the next state rewrite.
        self.profile_changed();
        if track_lifecycle_events {
            // A refusal (after shutdown) is already logged and counted.
            let _ = self.record_track(name, &properties.to_string());
        }
    }

    /// The current session id (its start, in ms since the Unix epoch),
    /// starting the first session if none has started.
    pub fn session_id(&self) -> i64 {
        let now = self.shared.now_ms();
        let timeout = self.shared.config.session_timeout_ms as i64;
        let mut held = lock(&self.shared.profile);
        let before = held.profile.session.id;
        let id = held.profile.session.current(now, timeout);
        drop(held);
        if id != before {
            self.profile_changed();
        }
        id
    }

    /// Records an `alias` event from the current id to `new_id`, which becomes the user id.
    pub fn alias(&self, new_id: String) -> Result<(), TributaryError> {
        let current = self.shared.identity();
        let previous = current
            .user_id
            .clone()
            .unwrap_or_else(|| current.anonymous_id.clone());
        let identity = Identity {
            anonymous_id: current.anonymous_id.clone(),
            user_id: Some(new_id),
        };
        let fields = Fields {
            kind: Kind::Alias,
            label: None,
            payload: None,
            previous_id: Some(&previous),
        };
        self.record(&fields, Some(identity), &Resolved::default())
    }

    /// Asks for an upload soon; returns at once.
    pub fn flush(&self) {
        // Through the writer, so the upload starts after every event recorded
        // before this call is committed.
        if self.tx.send(Msg::Flush).is_err() {
            self.shared.signal(|s| s.drain = true);
        }
    }

    /// Waits until every event recorded before the call is durable, then until it
    /// is delivered, delivery is impossible (offline, unauthorized), or `timeout_ms` passes.
    ///
    /// Returns within `max(timeout_ms, 1 s)`: durability gets at least one
    /// second (a commit takes milliseconds), even with a shorter timeout.
    pub fn flush_blocking(&self, timeout_ms: u64) -> FlushResult {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        if self.shared.closed.load(Ordering::SeqCst) {
            return self.current_result();
        }
        self.flush_until(deadline)
    }

    /// Tells the SDK whether the device is online. Going online triggers an upload.
    pub fn set_network_available(&self, available: bool) {
        self.shared.signal(|s| {
            if available && !s.network {
                s.drain = true;
                s.network_regained = true;
            }
            s.network = available;
        });
    }

    /// Replaces the device context copied into every later event.
    pub fn set_context(&self, context: DeviceContext) {
        let json: Arc<str> = event::context_json(&self.shared.config, &context).into();
        *self
            .shared
            .context
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = json;
    }

    /// Replaces the write key, and resumes uploads paused by a 401 or 403.
    pub fn set_write_key(&self, write_key: String) -> Result<(), TributaryError> {
        if write_key.trim().is_empty() {
            return Err(TributaryError::InvalidConfig {
                field: "write_key".into(),
                reason: "must not be empty; copy it from your source settings".into(),
            });
        }
        *self
            .shared
            .write_key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = write_key;
        self.shared.signal(|s| {
            if s.unauthorized {
                s.unauthorized = false;
                s.drain = true;
            }
        });
        Ok(())
    }

    /// Forgets the user id, the traits, the super-properties and the session,
    /// and starts a new anonymous id.
    pub fn reset(&self) {
        lock(&self.shared.profile)
            .change(Change::Reset, self.shared.config.session_timeout_ms as i64);
        self.shared.set_identity(Arc::new(Identity::fresh()));
        // The writer persists it (a send never blocks; after shutdown there
        // is nobody to tell).
        let _ = self.tx.send(Msg::Wake);
    }

    /// Opting out (`false`) stops recording and deletes all queued data; `true` resumes.
    ///
    /// The choice takes effect at once for every later call, and is durable when
    /// this returns: it is stored in its own small file (see the `state` module),
    /// apart from the queue database, so a corrupt or lost queue cannot turn
    /// tracking back on. Deleting the queued data (and any corrupt database
    /// copies) happens on the writer thread; this call does not wait for it.
    /// While opted out, recording calls return `Ok` and record nothing.
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.consent_chosen.store(true, Ordering::SeqCst);
        self.shared.enabled.store(enabled, Ordering::SeqCst);
        if !enabled {
            // Every event recorded before this point is the opted-out user's,
            // and is dropped by the writer even after a quick opt-in.
            self.shared.opt_outs.fetch_add(1, Ordering::SeqCst);
        }
        if self.shared.state_pending.load(Ordering::SeqCst) {
            // The file is not read yet: writing it now would replace the
            // identity it holds. The writer stores this choice once it has.
            self.shared.identity_dirty.store(true, Ordering::Release);
        } else if let Err(e) = self.shared.persist_state() {
            self.shared.storage_error("storing the opt-out choice", &e);
        }
        if !enabled {
            self.shared.purge_requested.store(true, Ordering::Release);
            let _ = self.tx.send(Msg::Wake);
        }
        self.shared.log.info(if enabled {
            "recording enabled"
        } else {
            "recording disabled; deleting queued events"
        });
        self.shared.signal(|s| s.generation += 1);
    }

    /// The current anonymous id. Right after the client is created the
    /// consent and identity file may not be read yet: this waits for it up to
    /// 1 s, then answers with the provisional id (events recorded meanwhile
    /// get the stored one once the file is read).
    pub fn anonymous_id(&self) -> String {
        self.wait_for_state(Duration::from_secs(1));
        self.shared.identity().anonymous_id.clone()
    }

    /// The current user id, if `identify` or `alias` set one (waits like
    /// [`Client::anonymous_id`]).
    pub fn user_id(&self) -> Option<String> {
        self.wait_for_state(Duration::from_secs(1));
        self.shared.identity().user_id.clone()
    }

    fn wait_for_state(&self, timeout: Duration) {
        let pending = &self.shared.state_pending;
        self.shared
            .wait_until(timeout, |_| !pending.load(Ordering::SeqCst));
    }

    /// A snapshot of the queue and the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Makes every recorded event durable, tries one last upload within `timeout_ms`,
    /// and stops the threads. Later recording calls return `TributaryError::ShutDown`
    /// (counted in `Stats::dropped_shutdown`).
    ///
    /// Returns within `max(timeout_ms, 1 s) + 5 s` whatever the disk does;
    /// events that could not be stored by then are counted in
    /// `Stats::dropped_shutdown`.
    pub fn shutdown(&self, timeout_ms: u64) -> FlushResult {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return self.current_result();
        }
        let result = self.flush_until(deadline);
        self.stop_threads(deadline);
        result
    }
}

/// Rust-only conveniences (not exported over FFI).
impl Client {
    /// Records a `track` event from a `serde_json::Value`, which must be an object.
    pub fn track_value(
        &self,
        name: &str,
        properties: &serde_json::Value,
    ) -> Result<(), TributaryError> {
        if !properties.is_object() {
            return Err(TributaryError::InvalidJson {
                argument: "properties".into(),
                line: 1,
                column: 1,
                reason: "expected a JSON object".into(),
            });
        }
        self.record_track(name, &properties.to_string())
    }

    /// Replaces the clock sessions are measured with (ms since the Unix
    /// epoch), for tests and simulations; the default reads the system clock.
    /// Event timestamps and the queue's age limit keep the system clock.
    pub fn set_clock(&self, clock: crate::Clock) {
        *self
            .shared
            .clock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clock;
    }

    fn record_track(&self, name: &str, properties_json: &str) -> Result<(), TributaryError> {
        self.record_labelled(Kind::Track, name, properties_json, &EventOptions::default())
    }

    fn record_labelled(
        &self,
        kind: Kind,
        label: &str,
        payload_json: &str,
        options: &EventOptions,
    ) -> Result<(), TributaryError> {
        let argument = if kind == Kind::Group {
            "traits"
        } else {
            "properties"
        };
        let payload = event::validate_object(argument, payload_json)?;
        let options = Resolved::from(options)?;
        let fields = Fields {
            kind,
            label: Some(label),
            payload: Some(payload),
            previous_id: None,
        };
        self.record(&fields, None, &options)
    }

    /// Applies a profile change and has the writer persist it.
    fn change_profile(&self, change: Change) {
        lock(&self.shared.profile).change(change, self.shared.config.session_timeout_ms as i64);
        self.profile_changed();
    }

    /// Marks the state file for a rewrite by the writer (never blocks).
    fn profile_changed(&self) {
        self.shared.identity_dirty.store(true, Ordering::Release);
        let _ = self.tx.send(Msg::Wake);
    }

    /// The hot path: build, check the size, hand over. No disk I/O, no blocking.
    fn record(
        &self,
        fields: &Fields<'_>,
        new_identity: Option<Identity>,
        options: &Resolved,
    ) -> Result<(), TributaryError> {
        // Read before the consent check (both SeqCst, written in the other
        // order by `set_enabled`): a call that still saw recording enabled
        // carries the epoch from before any opt-out it raced with.
        let consent_epoch = self.shared.opt_outs.load(Ordering::SeqCst);
        if !self.shared.enabled.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Announce the call before checking `closed` (both SeqCst): a stopping
        // writer waits for announced calls, then takes in what they sent.
        self.shared.recording.fetch_add(1, Ordering::SeqCst);
        let result = self.record_announced(fields, new_identity, consent_epoch, options);
        self.shared.recording.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn record_announced(
        &self,
        fields: &Fields<'_>,
        new_identity: Option<Identity>,
        consent_epoch: u64,
        options: &Resolved,
    ) -> Result<(), TributaryError> {
        let counters = &self.shared.counters;
        if self.shared.closed.load(Ordering::SeqCst) {
            counters.inc(&counters.recorded, 1);
            counters.inc(&counters.dropped_shutdown, 1);
            // The platform layers swallow this error (recording never throws
            // there), so the logger is where the app developer sees it.
            self.shared.log.warn(format!(
                "a {} event was recorded after shutdown and dropped; create a new client to record more",
                fields.kind.type_name()
            ));
            return Err(TributaryError::ShutDown);
        }
        let base_context = self.shared.context();
        let (context, payload) = self.with_profile(fields, &base_context, options);
        let fields = &Fields {
            payload: payload.as_deref().or(fields.payload),
            ..*fields
        };
        let new_identity = new_identity.map(Arc::new);
        let identity = match &new_identity {
            Some(identity) => identity.clone(),
            None => self.shared.identity(),
        };
        let extras = event::Extras {
            timestamp: options.timestamp,
            integrations: options.integrations.as_deref(),
        };
        let mut built = event::build(fields, identity, &context, extras);
        built.consent_epoch = consent_epoch;
        let size = built.json.len() as u64;
        counters.inc(&counters.recorded, 1);
        if size > self.shared.config.max_event_bytes {
            counters.inc(&counters.dropped_too_large, 1);
            let error = TributaryError::EventTooLarge {
                size,
                limit: self.shared.config.max_event_bytes,
            };
            self.shared.log.warn(format!(
                "a {} event was dropped: {error}",
                fields.kind.type_name()
            ));
            return Err(error);
        }
        if let Some(identity) = new_identity {
            self.shared.set_identity(identity);
        }
        if !self.shared.reserve_buffer(size) {
            // The writer is behind by max_buffer_bytes (a stalled disk or a
            // burst): drop rather than block the app or grow without bound.
            counters.inc(&counters.dropped_backpressure, 1);
            return Ok(());
        }
        match self.tx.send(Msg::Event(built)) {
            Ok(()) => Ok(()),
            Err(_) => {
                self.shared.release_buffer(1, size);
                counters.inc(&counters.dropped_shutdown, 1);
                Err(TributaryError::ShutDown)
            }
        }
    }

    /// The event's context (with the session id and traits) and, when the
    /// profile changes it, its payload: super-properties merged under a
    /// track's, screen's or page's properties, the merged traits for identify.
    fn with_profile(
        &self,
        fields: &Fields<'_>,
        base_context: &Arc<str>,
        options: &Resolved,
    ) -> (Arc<str>, Option<String>) {
        let now = self.shared.now_ms();
        let timeout = self.shared.config.session_timeout_ms as i64;
        let mut held = lock(&self.shared.profile);
        let payload = match (fields.kind, fields.payload) {
            (Kind::Track | Kind::Screen | Kind::Page, Some(own)) => {
                (!held.profile.super_properties.is_empty())
                    .then(|| held.profile.with_super_properties(own))
            }
            (Kind::Identify, Some(own)) => {
                let map = serde_json::from_str(own).unwrap_or_default();
                held.change(Change::Traits(map), timeout);
                Some(held.profile.traits_json())
            }
            _ => None,
        };
        let before = held.profile.session.id;
        let session_id = held.profile.session.current(now, timeout);
        let context = match options.context.as_deref() {
            None => held.context_for(base_context, session_id),
            Some(overrides) => {
                let traits = (!held.profile.traits.is_empty()).then(|| held.profile.traits_json());
                event::event_context(base_context, session_id, traits.as_deref(), Some(overrides))
                    .into()
            }
        };
        drop(held);
        if session_id != before || fields.kind == Kind::Identify {
            // Persisted by the writer with this event's commit.
            self.shared.identity_dirty.store(true, Ordering::Release);
        }
        (context, payload)
    }

    fn open(
        config: Config,
        log: Log,
        transport: Arc<dyn Transport>,
    ) -> Result<Self, TributaryError> {
        let dir = Path::new(&config.storage_dir).to_path_buf();
        let counters = Arc::new(Counters::default());
        let store = Store::unopened(&dir, counters.clone()).map_err(|e| {
            TributaryError::StorageUnavailable {
                path: dir.display().to_string(),
                cause: e.to_string(),
            }
        })?;
        // The consent and identity file is read by the writer thread (no disk
        // I/O here); until then events carry a provisional anonymous id, which
        // the writer replaces, and wait in memory (see `writer::adopt_state`).
        let state_file = StateFile::new(&dir);
        let provisional = Arc::new(Identity::fresh());
        let context: Arc<str> = event::context_json(&config, &DeviceContext::default()).into();
        let write_key = config.write_key.clone();
        let shared = Arc::new(Shared {
            config,
            log,
            counters,
            store: Mutex::new(store),
            identity: RwLock::new(provisional.clone()),
            identity_dirty: AtomicBool::new(false),
            provisional,
            state_pending: AtomicBool::new(true),
            stored_identity: RwLock::new(None),
            consent_chosen: AtomicBool::new(false),
            context: RwLock::new(context),
            enabled: AtomicBool::new(true),
            state_file: Mutex::new(state_file),
            reservation: Mutex::new(Reservation::default()),
            opt_outs: AtomicU64::new(0),
            purge_requested: AtomicBool::new(false),
            write_key: RwLock::new(write_key),
            transport,
            profile: Mutex::new(Held::unloaded()),
            clock: RwLock::new(Arc::new(event::now_ms)),
            signals: Mutex::new(Signals {
                network: true,
                drain: false,
                unauthorized: false,
                stop: false,
                generation: 0,
                ready: false,
                network_regained: false,
            }),
            signals_cv: Condvar::new(),
            closed: AtomicBool::new(false),
            recording: AtomicUsize::new(0),
            // Taken by the writer thread before it touches any file.
            dir_lock: Mutex::new(None),
        });
        let (tx, rx) = channel();
        let spawn_failed = |e: std::io::Error| TributaryError::StorageUnavailable {
            path: dir.display().to_string(),
            cause: format!("cannot start a background thread: {e}"),
        };
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("tributary-writer".into())
            .spawn(move || {
                let s = &writer_shared;
                let mut state = writer::Writer::new(s);
                supervise(
                    "writer",
                    &s.counters,
                    &s.log,
                    || s.stopping(),
                    || {
                        writer::run(&mut state, &rx);
                    },
                );
            })
            .map_err(spawn_failed)?;
        let delivery_shared = shared.clone();
        let delivery = std::thread::Builder::new()
            .name("tributary-upload".into())
            .spawn(move || {
                let s = &delivery_shared;
                supervise(
                    "upload",
                    &s.counters,
                    &s.log,
                    || s.stopping(),
                    || {
                        crate::delivery::run(s);
                    },
                );
            });
        let delivery = match delivery {
            Ok(handle) => handle,
            Err(e) => {
                shared.signal(|s| s.stop = true);
                let _ = tx.send(Msg::Stop);
                let _ = writer.join();
                return Err(spawn_failed(e));
            }
        };
        Ok(Self {
            shared,
            tx,
            threads: Mutex::new(vec![writer, delivery]),
        })
    }

    /// Barrier through the writer, then wait for delivery of everything up to it.
    fn flush_until(&self, deadline: Instant) -> FlushResult {
        // The stored consent decides the answer: wait (bounded) for the writer
        // to have read it, as the barrier below would anyway.
        let grace = deadline.max(Instant::now() + DURABLE_GRACE);
        self.wait_for_state(grace.saturating_duration_since(Instant::now()));
        if !self.shared.is_enabled() {
            return FlushResult::Disabled;
        }
        let (reply_tx, reply_rx) = sync_channel(1);
        if self.tx.send(Msg::Barrier(reply_tx)).is_err() {
            return self.current_result();
        }
        // Durability gets at least DURABLE_GRACE whatever the caller's
        // timeout: a result of this call should mean every earlier event is
        // on disk, and a group commit takes milliseconds.
        let durable_deadline = deadline.max(Instant::now() + DURABLE_GRACE);
        let remaining = durable_deadline.saturating_duration_since(Instant::now());
        let Ok(target) = reply_rx.recv_timeout(remaining) else {
            return FlushResult::TimedOut {
                pending: self.pending(),
            };
        };
        self.shared.signal(|s| s.drain = true);
        loop {
            let generation = lock(&self.shared.signals).generation;
            // try_lock: a writer stuck in a hung fsync holds the store; this
            // call must still return by its deadline.
            let (still_pending, busy) = match self.shared.store.try_lock() {
                Ok(store) => (store.has_pending_up_to(target).unwrap_or(true), false),
                Err(TryLockError::Poisoned(p)) => (
                    p.into_inner().has_pending_up_to(target).unwrap_or(true),
                    false,
                ),
                Err(TryLockError::WouldBlock) => (true, true),
            };
            if !still_pending {
                return FlushResult::Delivered;
            }
            let s = lock(&self.shared.signals);
            if !self.shared.is_enabled() {
                return FlushResult::Disabled;
            }
            let pending = self.pending();
            if !s.network {
                return FlushResult::Offline { pending };
            }
            if s.unauthorized {
                return FlushResult::Unauthorized { pending };
            }
            let now = Instant::now();
            if now >= deadline {
                return FlushResult::TimedOut { pending };
            }
            let wait = if busy { 5 } else { 250 };
            if s.generation == generation {
                let _ = self
                    .shared
                    .signals_cv
                    .wait_timeout(s, (deadline - now).min(Duration::from_millis(wait)));
            }
        }
    }

    fn pending(&self) -> u64 {
        let c = &self.shared.counters;
        c.queued_events() + c.buffered_events.load(Ordering::Acquire)
    }

    /// The state after shutdown: delivered if nothing is queued.
    fn current_result(&self) -> FlushResult {
        if !self.shared.is_enabled() {
            return FlushResult::Disabled;
        }
        match self.pending() {
            0 => FlushResult::Delivered,
            pending => FlushResult::TimedOut { pending },
        }
    }

    /// Stops the delivery thread, then the writer (which commits what it
    /// holds), closes the database and releases the directory lock; all
    /// within bounds (see the module docs).
    ///
    /// The delivery thread may be stuck in a request until `request_timeout_ms`;
    /// it is waited for only until `deadline`, then left to finish on its own.
    /// Once `stop` is set it never applies a late response (the batch stays
    /// persisted and the next run resends it with the same key), and closing
    /// the store under its mutex below guarantees it cannot touch the files
    /// after the directory lock is released. A writer that does not finish
    /// in time (a hung disk) keeps the store and the directory lock: they are
    /// released when it lets go of the shared state.
    fn stop_threads(&self, deadline: Instant) {
        self.shared.signal(|s| s.stop = true);
        let _ = self.tx.send(Msg::Stop);
        let (writer, delivery) = {
            let mut threads = lock(&self.threads);
            let delivery = threads.pop();
            (threads.pop(), delivery)
        };
        let writer_deadline = Instant::now() + STOP_GIVE_UP + STOP_GRACE;
        let mut writer_done = true;
        if let Some(writer) = writer {
            while !writer.is_finished() && Instant::now() < writer_deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if writer.is_finished() {
                let _ = writer.join();
            } else {
                writer_done = false;
                let message = "the writer did not stop in time (the storage is not answering); it is left to finish on its own".to_string();
                self.shared.counters.set_last_error(message.clone());
                self.shared.log.error(message);
            }
        }
        if let Some(delivery) = delivery {
            while !delivery.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if delivery.is_finished() {
                let _ = delivery.join();
            }
        }
        if !writer_done {
            return;
        }
        // The delivery thread holds the store only between requests, for
        // milliseconds, unless its disk hangs too: bounded by the same budget.
        let close_deadline = writer_deadline;
        loop {
            match self.shared.store.try_lock() {
                Ok(mut store) => {
                    store.close();
                    break;
                }
                Err(TryLockError::Poisoned(p)) => {
                    p.into_inner().close();
                    break;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < close_deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TryLockError::WouldBlock) => return,
            }
        }
        lock(&self.shared.dir_lock).take();
    }
}

impl Drop for Client {
    /// Dropping without `shutdown` still commits every recorded event (within
    /// the bounds in the module docs) and releases the directory, but does
    /// not wait for an upload.
    fn drop(&mut self) {
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            self.stop_threads(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        // Port 9 (discard) is never contacted: the tests stay offline.
        Config::new(
            "http://127.0.0.1:9".into(),
            "key".into(),
            dir.display().to_string(),
        )
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tributary-client-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn identity_and_reset_survive_a_restart() {
        let dir = temp_dir();
        let c1 = Client::new(config(&dir), None).unwrap();
        c1.set_network_available(false);
        let first_anon = c1.anonymous_id();
        c1.identify("u-1".into(), String::new()).unwrap();
        c1.shutdown(1_000);
        drop(c1);

        let c2 = Client::new(config(&dir), None).unwrap();
        assert_eq!(c2.anonymous_id(), first_anon);
        assert_eq!(c2.user_id().as_deref(), Some("u-1"));
        // The database is opened on the writer thread.
        assert!(c2.await_ready(10_000));
        assert_eq!(c2.stats().queued_events, 1);
        c2.reset();
        let second_anon = c2.anonymous_id();
        assert_ne!(second_anon, first_anon);
        drop(c2);

        let c3 = Client::new(config(&dir), None).unwrap();
        assert_eq!(c3.anonymous_id(), second_anon);
        assert_eq!(c3.user_id(), None);
        drop(c3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn opt_out_survives_a_restart() {
        let dir = temp_dir();
        let c1 = Client::new(config(&dir), None).unwrap();
        c1.set_network_available(false);
        c1.track("A".into(), String::new()).unwrap();
        c1.set_enabled(false);
        // Deleting happens on the writer thread; dropping waits for it.
        drop(c1);

        let c2 = Client::new(config(&dir), None).unwrap();
        c2.set_network_available(false);
        c2.track("B".into(), String::new()).unwrap();
        assert_eq!(c2.flush_blocking(1_000), FlushResult::Disabled);
        assert_eq!(c2.stats().queued_events, 0);
        c2.set_enabled(true);
        c2.track("C".into(), String::new()).unwrap();
        assert_eq!(
            c2.flush_blocking(1_000),
            FlushResult::Offline { pending: 1 }
        );
        drop(c2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_writer_that_panics_is_restarted_and_keeps_the_events_it_held() {
        let dir = temp_dir();
        let c = Client::new(config(&dir), None).unwrap();
        c.set_network_available(false);
        assert!(c.await_ready(10_000));
        *lock(&writer::PANIC_ONCE_IN) = Some(dir.clone());
        for _ in 0..10 {
            c.track("E".into(), String::new()).unwrap();
        }
        assert_eq!(
            c.flush_blocking(30_000),
            FlushResult::Offline { pending: 10 }
        );
        let s = c.stats();
        assert_eq!(s.thread_restarts, 1, "{s:?}");
        assert_eq!(s.queued_events, 10, "{s:?}");
        assert!(
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("panicked")),
            "{s:?}"
        );
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn alias_sends_previous_id_and_adopts_the_new_one() {
        let dir = temp_dir();
        let c = Client::new(config(&dir), None).unwrap();
        c.set_network_available(false);
        let anon = c.anonymous_id();
        c.alias("new-id".into()).unwrap();
        assert_eq!(c.user_id().as_deref(), Some("new-id"));
        c.flush_blocking(1_000);
        let body: String = lock(&c.shared.store)
            .conn
            .query_row("SELECT body FROM events", [], |r| r.get(0))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "alias");
        assert_eq!(v["previousId"], anon.as_str());
        assert_eq!(v["userId"], "new-id");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
