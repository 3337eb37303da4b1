//! Keeps the background threads alive: a panic is caught, reported and the
//! thread's loop started again, so a bug can never make recording or
//! delivery stop silently (and never unwinds across the FFI boundary).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::logger::Log;
use crate::shared::Counters;

/// First pause before restarting a thread that panicked; it doubles per
/// consecutive panic up to [`MAX_RESTART_DELAY`], so a loop that panics at
/// once every time costs a wake-up per minute, not a busy core.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// Runs `body` until it returns. Each panic is counted in
/// `Stats::thread_restarts`, logged at error level with its message, kept in
/// `Stats::last_error`, and `body` runs again after a growing pause, unless
/// `stopping()` says the client is shutting down.
pub(crate) fn supervise(
    name: &str,
    counters: &Counters,
    log: &Log,
    stopping: impl Fn() -> bool,
    mut body: impl FnMut(),
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let Err(payload) = catch_unwind(AssertUnwindSafe(&mut body)) else {
            return;
        };
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        counters.thread_restarts.fetch_add(1, Ordering::Relaxed);
        let stop = stopping();
        let message = format!(
            "internal error: the {name} thread panicked ({why}); {}",
            if stop {
                "not restarted because the client is shutting down"
            } else {
                "restarted"
            }
        );
        counters.set_last_error(message.clone());
        log.error(message);
        if stop {
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{LogLevel, Logger};

    #[derive(Default)]
    struct Lines(Mutex<Vec<(LogLevel, String)>>);
    impl Logger for Lines {
        fn log(&self, level: LogLevel, message: String) {
            self.0.lock().unwrap().push((level, message));
        }
    }

    #[test]
    fn a_panicking_thread_is_reported_counted_and_restarted() {
        let counters = Counters::default();
        let lines = Arc::new(Lines::default());
        let log = Log::new(Some(lines.clone()));
        let mut runs = 0;
        supervise(
            "writer",
            &counters,
            &log,
            || false,
            || {
                runs += 1;
                if runs <= 2 {
                    panic!("boom {runs}");
                }
            },
        );
        assert_eq!(runs, 3);
        let stats = counters.snapshot();
        assert_eq!(stats.thread_restarts, 2);
        let last = stats.last_error.unwrap();
        assert!(last.contains("writer") && last.contains("boom 2"), "{last}");
        let lines = lines.0.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|(l, _)| *l == LogLevel::Error));
    }

    #[test]
    fn a_panic_while_stopping_is_reported_and_not_restarted() {
        let counters = Counters::default();
        let mut runs = 0;
        supervise(
            "upload",
            &counters,
            &Log::default(),
            || true,
            || {
                runs += 1;
                panic!("late");
            },
        );
        assert_eq!(runs, 1);
        assert_eq!(counters.snapshot().thread_restarts, 1);
    }
}
