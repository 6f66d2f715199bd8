//! When the inbox polls while polling works: the cadence follows the agent.
//!
//! | state | when | next poll after a successful one |
//! |---|---|---|
//! | [`Cadence::Waiting`] | an agent is waiting for the next message: a `wait_for_message` call is in progress, or a client that takes pushed messages is connected | at once when the wait starts, then every [`WAITING_INTERVAL`] ± 20 % (never more than 1 s apart) |
//! | [`Cadence::Active`] | a message arrived or the agent used the inbox (or started) within [`ACTIVE_WINDOW`] | the configured poll interval (default 5 s) ± 20 % |
//! | [`Cadence::Idle`] | otherwise | the interval doubled per quiet poll, up to [`IDLE_MAX`] (or the configured interval if that is longer), ± 20 % |
//!
//! Failed polls do not use this table: they back off by [`crate::retry::Backoff::inbox`]
//! whatever the state, and a new waiter does not cut that back-off short (a failing or
//! rate-limiting platform is not asked more often because an agent is waiting).
//!
//! An agent that becomes active while the inbox is idle does not wait out the idle delay:
//! a wait polls at once, other use brings the next poll forward to the active interval.

use std::time::{Duration, Instant};

use crate::retry::INBOX_JITTER;
use crate::rng::Rng;

/// Poll spacing while someone waits. With ± 20 % jitter polls are at most 0.96 s apart, so
/// a message is seen less than a second after the platform has it.
pub const WAITING_INTERVAL: Duration = Duration::from_millis(800);
/// How long the active cadence lasts after the last activity.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(180);
/// Longest spacing of idle polls (before jitter).
pub const IDLE_MAX: Duration = Duration::from_secs(30);

/// What the agent is doing, as far as the poll cadence is concerned. Drivers send these
/// through [`crate::workspace::Input::Agent`] (every workspace of the process hears them: one agent
/// reads every workspace's messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentSignal {
    /// A `wait_for_message` call started. Every start must be followed by one
    /// [`AgentSignal::WaitEnded`] (also when the call is cancelled).
    WaitStarted,
    /// That call returned or was cancelled.
    WaitEnded,
    /// A client that takes pushed messages connected (`true`) or went away (`false`).
    PushListener(bool),
    /// The agent used the inbox (peek, pop) or another tool.
    Used,
}

/// The cadence state (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Someone waits: poll every [`WAITING_INTERVAL`].
    Waiting,
    /// Recent activity: the configured interval.
    Active,
    /// Quiet for [`ACTIVE_WINDOW`]: backing off to [`IDLE_MAX`].
    Idle,
}

/// What a signal asks of the poll schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reschedule {
    /// Nothing changes.
    Keep,
    /// Poll at once (a wait started).
    Now,
    /// The next poll should come no later than the regular delay from now.
    NoLaterThanRegular,
}

/// One inbox's cadence: who waits, and when the agent was last active.
#[derive(Debug, Clone)]
pub(super) struct Attention {
    waits: u32,
    push_listener: bool,
    last_activity: Instant,
    /// Regular polls since the inbox went idle (the idle delay doubles with each).
    quiet_polls: u32,
}

impl Attention {
    /// A new inbox counts as active: an agent that just started is likely to use it.
    pub(super) fn new(now: Instant) -> Self {
        Attention {
            waits: 0,
            push_listener: false,
            last_activity: now,
            quiet_polls: 0,
        }
    }

    pub(super) fn cadence(&self, now: Instant) -> Cadence {
        if self.waits > 0 || self.push_listener {
            Cadence::Waiting
        } else if now.saturating_duration_since(self.last_activity) < ACTIVE_WINDOW {
            Cadence::Active
        } else {
            Cadence::Idle
        }
    }

    /// Something happened that makes a message likely soon (an arrival, agent use).
    pub(super) fn activity(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
        self.quiet_polls = 0;
    }

    pub(super) fn signal(&mut self, now: Instant, signal: AgentSignal) -> Reschedule {
        let was_waiting = self.cadence(now) == Cadence::Waiting;
        match signal {
            AgentSignal::WaitStarted => self.waits = self.waits.saturating_add(1),
            AgentSignal::WaitEnded => self.waits = self.waits.saturating_sub(1),
            AgentSignal::PushListener(on) => self.push_listener = on,
            AgentSignal::Used => {}
        }
        self.activity(now);
        match (was_waiting, self.cadence(now)) {
            (false, Cadence::Waiting) => Reschedule::Now,
            (true, Cadence::Waiting) => Reschedule::Keep,
            _ => Reschedule::NoLaterThanRegular,
        }
    }

    /// The delay before the next regular poll, jittered with one draw from `rng`.
    pub(super) fn next_delay(
        &mut self,
        now: Instant,
        interval: Duration,
        rng: &mut Rng,
    ) -> Duration {
        let nominal = match self.cadence(now) {
            Cadence::Waiting => WAITING_INTERVAL.min(interval),
            Cadence::Active => interval,
            Cadence::Idle => {
                self.quiet_polls = self.quiet_polls.saturating_add(1);
                let doubled = interval.saturating_mul(1u32 << self.quiet_polls.min(16));
                doubled.min(IDLE_MAX.max(interval))
            }
        };
        INBOX_JITTER.spread(nominal, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some Instant as its origin
    fn states_follow_the_agent() {
        let t0 = Instant::now();
        let mut a = Attention::new(t0);
        let mut rng = Rng::new(7);
        let five = Duration::from_secs(5);
        assert_eq!(a.cadence(t0), Cadence::Active);
        let idle_at = t0 + ACTIVE_WINDOW;
        assert_eq!(a.cadence(idle_at), Cadence::Idle);
        // Idle delays double from the interval up to 30 s, jittered ± 20 %.
        let delays: Vec<Duration> = (0..5)
            .map(|_| a.next_delay(idle_at, five, &mut rng))
            .collect();
        for (d, nominal) in delays.iter().zip([10, 20, 30, 30, 30]) {
            let n = Duration::from_secs(nominal);
            assert!(
                *d >= n.mul_f64(0.8) && *d <= n.mul_f64(1.2),
                "{d:?} vs {n:?}"
            );
        }
        assert_eq!(a.signal(idle_at, AgentSignal::WaitStarted), Reschedule::Now);
        assert_eq!(
            a.signal(idle_at, AgentSignal::WaitStarted),
            Reschedule::Keep
        );
        for _ in 0..100 {
            let d = a.next_delay(idle_at, five, &mut rng);
            assert!(
                d < Duration::from_secs(1) && d >= Duration::from_millis(640),
                "{d:?}"
            );
        }
        assert_eq!(a.signal(idle_at, AgentSignal::WaitEnded), Reschedule::Keep);
        assert_eq!(
            a.signal(idle_at, AgentSignal::WaitEnded),
            Reschedule::NoLaterThanRegular
        );
        // Unbalanced ends cannot underflow into "waiting".
        a.signal(idle_at, AgentSignal::WaitEnded);
        assert_eq!(a.cadence(idle_at), Cadence::Active);
        // The idle doubling starts again after activity.
        let later = idle_at + ACTIVE_WINDOW;
        let d = a.next_delay(later, five, &mut rng);
        assert!(d <= Duration::from_secs(12), "{d:?}");
        assert_eq!(
            a.signal(later, AgentSignal::PushListener(true)),
            Reschedule::Now
        );
        assert_eq!(a.cadence(later + ACTIVE_WINDOW * 10), Cadence::Waiting);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some Instant as its origin
    fn a_longer_configured_interval_is_kept() {
        let t0 = Instant::now();
        let mut a = Attention::new(t0);
        let mut rng = Rng::new(1);
        let sixty = Duration::from_secs(60);
        let d = a.next_delay(t0 + ACTIVE_WINDOW, sixty, &mut rng);
        assert!(
            d >= Duration::from_secs(48) && d <= Duration::from_secs(72),
            "{d:?}"
        );
        a.signal(t0, AgentSignal::WaitStarted);
        assert!(a.next_delay(t0, sixty, &mut rng) < Duration::from_secs(1));
    }
}
