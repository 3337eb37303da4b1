//! The client object: the public entry point. (SKELETON: the sdk-core implementer replaces the bodies.)

use std::sync::Arc;

use crate::{Config, DeviceContext, FlushResult, Logger, Stats, TributaryError};

/// A Tributary client bound to one storage directory.
///
/// Recording methods validate and build the event on the caller's thread,
/// then hand it to a background writer; they never touch the disk.
#[derive(uniffi::Object)]
pub struct Client {
    config: Config,
    _logger: Option<Arc<dyn Logger>>,
}

#[uniffi::export]
impl Client {
    /// Opens (or creates) the queue in `config.storage_dir` and starts the background threads.
    /// Fails if the config is invalid or another client holds the directory.
    #[uniffi::constructor]
    pub fn new(
        config: Config,
        logger: Option<Arc<dyn Logger>>,
    ) -> Result<Arc<Self>, TributaryError> {
        config.validate()?;
        Ok(Arc::new(Self {
            config,
            _logger: logger,
        }))
    }

    /// Records a `track` event. `properties_json` must be a JSON object (or empty for none).
    pub fn track(&self, name: String, properties_json: String) -> Result<(), TributaryError> {
        let _ = (name, properties_json, &self.config);
        Err(TributaryError::ShutDown)
    }

    /// Records an `identify` event and remembers `user_id` for later events.
    pub fn identify(&self, user_id: String, traits_json: String) -> Result<(), TributaryError> {
        let _ = (user_id, traits_json);
        Err(TributaryError::ShutDown)
    }

    /// Records a `screen` event.
    pub fn screen(&self, name: String, properties_json: String) -> Result<(), TributaryError> {
        let _ = (name, properties_json);
        Err(TributaryError::ShutDown)
    }

    /// Records a `group` event.
    pub fn group(&self, group_id: String, traits_json: String) -> Result<(), TributaryError> {
        let _ = (group_id, traits_json);
        Err(TributaryError::ShutDown)
    }

    /// Records an `alias` event from the current id to `new_id`, which becomes the user id.
    pub fn alias(&self, new_id: String) -> Result<(), TributaryError> {
        let _ = new_id;
        Err(TributaryError::ShutDown)
    }

    /// Asks for an upload soon; returns at once.
    pub fn flush(&self) {}

    /// Waits until every event recorded before the call is durable, then until it
    /// is delivered, delivery is impossible (offline, unauthorized), or `timeout_ms` passes.
    pub fn flush_blocking(&self, timeout_ms: u64) -> FlushResult {
        FlushResult::TimedOut {
            pending: timeout_ms * 0,
        }
    }

    /// Tells the SDK whether the device is online. Going online triggers an upload.
    pub fn set_network_available(&self, available: bool) {
        let _ = available;
    }

    /// Replaces the device context copied into every later event.
    pub fn set_context(&self, context: DeviceContext) {
        let _ = context;
    }

    /// Replaces the write key, and resumes uploads paused by a 401 or 403.
    pub fn set_write_key(&self, write_key: String) -> Result<(), TributaryError> {
        let _ = write_key;
        Ok(())
    }

    /// Forgets the user id and traits and starts a new anonymous id.
    pub fn reset(&self) {}

    /// Opting out (`false`) stops recording and deletes all queued data; `true` resumes.
    pub fn set_enabled(&self, enabled: bool) {
        let _ = enabled;
    }

    /// The current anonymous id.
    pub fn anonymous_id(&self) -> String {
        String::new()
    }

    /// The current user id, if `identify` or `alias` set one.
    pub fn user_id(&self) -> Option<String> {
        None
    }

    /// A snapshot of the queue and the counters.
    pub fn stats(&self) -> Stats {
        Stats::default()
    }

    /// Makes every recorded event durable, tries one last upload within `timeout_ms`,
    /// and stops the threads. Later calls return `TributaryError::ShutDown`.
    pub fn shutdown(&self, timeout_ms: u64) -> FlushResult {
        let _ = timeout_ms;
        FlushResult::TimedOut { pending: 0 }
    }
}
