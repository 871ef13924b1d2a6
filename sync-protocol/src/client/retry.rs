//! When to try a request again: exponential back-off with full jitter, and `Retry-After`.

use std::time::{Duration, SystemTime};

use chrono::DateTime;

/// How a request that failed in a retryable way is tried again: exponential back-off with
/// full jitter ("1 s, 2 s, 4 s … up to 5 minutes", protocol.md section 9), and the server's
/// `Retry-After` honoured when it sends one.
///
/// Retry number `n` (1 for the first retry) waits a random time between zero and
/// `min(max_delay, base_delay × 2ⁿ⁻¹)` ("full jitter": devices that failed together do not
/// come back together). When the server said `Retry-After: s`, the wait is at least `s`; a
/// `Retry-After` longer than `max_delay` ends the retries at once, with the error (which
/// carries the `Retry-After`) for the app to schedule the next attempt itself.
///
/// ```
/// use std::time::Duration;
/// use tsunagi_sync::client::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.backoff_ceiling(1), Duration::from_secs(1));
/// assert_eq!(policy.backoff_ceiling(4), Duration::from_secs(8));
/// // Half-way through the jitter range of the third retry:
/// assert_eq!(policy.delay(3, None, 0.5), Some(Duration::from_secs(2)));
/// // The server asked for 10 s: never less.
/// assert!(policy.delay(1, Some(Duration::from_secs(10)), 0.0).unwrap() >= Duration::from_secs(10));
/// // Out of attempts.
/// assert_eq!(policy.delay(policy.max_attempts, None, 0.5), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is sent at most, the first time included (1: never retry).
    pub max_attempts: u32,
    /// The ceiling of the first retry's random wait; it doubles with every retry.
    pub base_delay: Duration,
    /// The longest wait between two attempts; also the longest `Retry-After` waited for.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, waits drawn from up to 1 s, 2 s, 4 s, 8 s; `Retry-After` honoured up to
    /// 5 minutes.
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// Never retry: every failure is reported at once, as it is (not wrapped in
    /// [`ClientError::RetriesExhausted`](super::ClientError::RetriesExhausted)).
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The ceiling of the random wait before retry number `retry` (1-based):
    /// `base_delay × 2^(retry − 1)`, at most `max_delay`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let nanos = self.base_delay.as_nanos().saturating_mul(u128::from(factor));
        let ceiling = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        ceiling.min(self.max_delay)
    }

    /// The wait before retry number `retry` (1 for the first retry), or `None` when no retry
    /// is left: `retry` reached [`max_attempts`](Self::max_attempts), or the server's
    /// `retry_after` is longer than [`max_delay`](Self::max_delay).
    ///
    /// `jitter` is a random number in `[0, 1)` (values outside are clamped): the wait is that
    /// fraction of [`backoff_ceiling`](Self::backoff_ceiling), and never less than
    /// `retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if retry == 0 || retry >= self.max_attempts.max(1) {
            return None;
        }
        if retry_after.is_some_and(|after| after > self.max_delay) {
            return None;
        }
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        let backoff = self.backoff_ceiling(retry).mul_f64(jitter);
        Some(retry_after.map_or(backoff, |after| backoff.max(after)))
    }
}

/// A random number in `[0, 1)`, for [`RetryPolicy::delay`]. Drawn from the operating system's
/// generator (through a v4 UUID), so that no two devices share a sequence.
pub(crate) fn random_fraction() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u64_pair().0 >> 11;
    // 53 random bits, exactly representable: [0, 1).
    bits as f64 / (1u64 << 53) as f64
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 04 Nov 2026 09:00:00 GMT`, measured from `now`; a date in the past is zero).
/// `None` for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
