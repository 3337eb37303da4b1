//! Retry timing: exponential backoff with full jitter, with the server's
//! `Retry-After` as a floor.
//!
//! The delay before retry number `n` (1-based) is drawn uniformly from
//! `[0, min(cap, base * 2^(n-1))]` ("full jitter"); the exponential ceiling
//! comes from `backon`'s `ExponentialBuilder`. If the server sent
//! `Retry-After` (seconds or an HTTP date), the delay is at least that. The
//! attempt count and the resulting `next_attempt_at_ms` are stored on the
//! batch row, so a restart continues the schedule instead of resetting it.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};

/// A server may not park uploads for longer than this with `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The exponential ceiling for retry number `attempt` (1-based), capped.
pub(crate) fn ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    // Past ~64 doublings every value is the cap; don't iterate further.
    let n = attempt.clamp(1, 64) as usize;
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(cap)
        .without_max_times()
        .build()
        .nth(n - 1)
        .unwrap_or(cap)
        .min(cap)
}

/// The delay before retry number `attempt`: full jitter under the ceiling,
/// never less than `retry_after`.
pub(crate) fn delay(
    attempt: u32,
    base: Duration,
    cap: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let ceiling_ms = ceiling(attempt, base, cap).as_millis() as u64;
    let jittered = Duration::from_millis(fastrand::u64(0..=ceiling_ms));
    match retry_after {
        Some(floor) => jittered.max(floor.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        let got: Vec<u128> = (1..=6).map(|n| ceiling(n, base, cap).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(ceiling(10_000, base, cap), cap);
    }

    #[test]
    fn delay_is_jittered_below_ceiling_and_floored_by_retry_after() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        for _ in 0..100 {
            assert!(delay(3, base, cap, None) <= Duration::from_millis(400));
            assert!(delay(3, base, cap, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
