//! How loudly the inbox complains about failures: an outage of the platform must show up
//! in the log at once, without one WARN line per failed poll for as long as it lasts.
//!
//! * The first failure of a streak is a WARN, as is a change of failure class; after that a
//!   WARN reminder at most every [`REMINDER_EVERY`], DEBUG in between. A streak that was
//!   warned about ends with an INFO when things work again.
//!
//! When the inbox polls again is [`crate::retry`]: the normal cadence is the poll interval
//! ± 20 % ([`INBOX_JITTER`](crate::retry::INBOX_JITTER)), seeded, so a fleet
//! started together spreads out; after errors [`Backoff::inbox`](crate::retry::Backoff::inbox)
//! (5 s, 10 s, 20 s, 40 s, 60 s …, capped at [`MAX_BACKOFF`](crate::retry::MAX_BACKOFF)),
//! reset by the next success, and a 429's `Retry-After` is honoured up to
//! [`RetryAfterCap::BACKGROUND`](crate::retry::RetryAfterCap::BACKGROUND).

use std::time::{Duration, Instant};

/// Minimum spacing of repeated WARN lines for one ongoing failure.
pub const REMINDER_EVERY: Duration = Duration::from_secs(300);

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
