//! When the inbox polls again, and how loudly it complains (defect 14).
//!
//! * Normal cadence: the poll interval ± 20 %, seeded, so a fleet started together spreads out.
//! * Errors: exponential backoff from the interval (5 s, 10 s, 20 s, 40 s, 60 s …, capped
//!   at [`MAX_BACKOFF`], same jitter), reset by the next success; a 429's `Retry-After` is
//!   honoured up to [`MAX_RETRY_AFTER`].
//! * Logs: the first failure of a streak is a WARN, as is a change of failure class; after
//!   that a WARN reminder at most every [`REMINDER_EVERY`], DEBUG in between. A streak that
//!   was warned about ends with an INFO when things work again.

use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Longest error backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured; larger values are clamped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Minimum spacing of repeated WARN lines for one ongoing failure.
pub const REMINDER_EVERY: Duration = Duration::from_secs(300);

/// `base` ± 20 %, uniformly, never zero.
pub(crate) fn jittered(base: Duration, rng: &mut Rng) -> Duration {
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX / 2);
    let low = ms - ms / 5;
    let span = (ms / 5).saturating_mul(2);
    Duration::from_millis(low.saturating_add(rng.below(span.saturating_add(1))))
        .max(Duration::from_millis(1))
}

/// Delay after the `consecutive`-th failure in a row (1-based).
pub(crate) fn error_backoff(consecutive: u32, interval: Duration, rng: &mut Rng) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    let base = interval.saturating_mul(1u32 << doublings).min(MAX_BACKOFF);
    jittered(base, rng).min(MAX_BACKOFF)
}

/// Coarse kinds of failure; a change of kind is worth a fresh WARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// 401/403.
    Auth,
    /// 429.
    RateLimited,
    /// Any other non-2xx answer, or a body that is not a JSON array.
    Http,
    /// No answer (connect, timeout, I/O).
    Transport,
}

/// Log throttling for one kind of recurring failure.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureLog {
    streak: u32,
    last_warn: Option<(Instant, FailureClass)>,
    warned_this_streak: bool,
}

impl FailureLog {
    /// Counts a failure; true when it should be logged at WARN (else DEBUG).
    pub(crate) fn record(&mut self, now: Instant, class: FailureClass) -> bool {
        self.streak = self.streak.saturating_add(1);
        let warn = match self.last_warn {
            None => true,
            Some((at, last_class)) => {
                last_class != class || now.saturating_duration_since(at) >= REMINDER_EVERY
            }
        };
        if warn {
            self.last_warn = Some((now, class));
            self.warned_this_streak = true;
        }
        warn
    }

    /// Failures in the current streak.
    pub(crate) fn streak(&self) -> u32 {
        self.streak
    }

    /// Ends the streak. Returns its length when a WARN was logged during it (so the
    /// recovery deserves an INFO line).
    pub(crate) fn recover(&mut self) -> Option<u32> {
        let warned = self.warned_this_streak.then_some(self.streak);
        *self = FailureLog::default();
        warned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(5), &mut rng);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let mut rng = Rng::new(1);
        let i = Duration::from_secs(5);
        let third = error_backoff(3, i, &mut rng);
        assert!(third >= Duration::from_secs(16) && third <= Duration::from_secs(24));
        for n in 5..40 {
            let d = error_backoff(n, i, &mut rng);
            assert!(
                d >= Duration::from_secs(48) && d <= MAX_BACKOFF,
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some Instant as its origin
    fn failure_log_throttles_and_rewarns_on_class_change() {
        let t0 = Instant::now();
        let mut log = FailureLog::default();
        assert!(log.record(t0, FailureClass::Auth));
        assert!(!log.record(t0 + Duration::from_secs(60), FailureClass::Auth));
        assert!(log.record(t0 + Duration::from_secs(61), FailureClass::Transport));
        assert!(log.record(
            t0 + Duration::from_secs(61) + REMINDER_EVERY,
            FailureClass::Transport
        ));
        assert_eq!(log.recover(), Some(4));
        assert_eq!(log.recover(), None);
    }
}
