//! The closed set of timers the session uses, stored as a fixed table of deadlines.
//!
//! `poll_timeout` is the minimum over the table; `handle_timeout` fires every expired
//! entry. A closed enum keeps "what can wake the machine" reviewable in one place.

use std::time::Instant;

/// The latest `now` a machine has seen. Every machine treats an earlier `now` as the
/// latest one (drivers' clocks can step back across threads), so time never runs
/// backwards inside a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastNow(Instant);

impl LastNow {
    pub(crate) fn new(now: Instant) -> Self {
        LastNow(now)
    }

    /// Moves forward to `now` if it is later; returns the (possibly unchanged) latest.
    pub(crate) fn advance(&mut self, now: Instant) -> Instant {
        if now > self.0 {
            self.0 = now;
        }
        self.0
    }

    /// The latest `now` seen.
    pub(crate) fn get(self) -> Instant {
        self.0
    }
}

/// Why the session wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Next scheduled heartbeat.
    Heartbeat,
    /// Retry a register that failed transiently.
    RegisterRetry,
    /// Earliest deadline among in-flight requests.
    RequestDeadline,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 3] = [
        Timer::Heartbeat,
        Timer::RegisterRetry,
        Timer::RequestDeadline,
    ];

    fn index(self) -> usize {
        match self {
            Timer::Heartbeat => 0,
            Timer::RegisterRetry => 1,
            Timer::RequestDeadline => 2,
        }
    }
}

/// Deadlines indexed by [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable([Option<Instant>; 3]);

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.0[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer.index()]
    }

    pub(crate) fn clear(&mut self) {
        self.0 = [None; 3];
    }

    /// Earliest deadline and its timer.
    pub(crate) fn next(&self) -> Option<(Timer, Instant)> {
        Timer::ALL
            .iter()
            .filter_map(|t| self.get(*t).map(|at| (*t, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// True (and the entry cleared) when `timer` is due at `now`.
    pub(crate) fn take_expired(&mut self, timer: Timer, now: Instant) -> bool {
        match self.get(timer) {
            Some(at) if at <= now => {
                self.stop(timer);
                true
            }
            Some(_) | None => false,
        }
    }
}
