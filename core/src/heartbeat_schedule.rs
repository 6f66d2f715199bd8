//! When heartbeats fire: a fixed grid anchored at the first beat, so latency never drifts
//! the cadence (a beat that waited for a slow answer does not push every later beat back),
//! with a small seeded jitter per tick so a fleet started
//! together does not beat in lockstep. (Register retries back off with
//! [`crate::retry::Backoff::REGISTER`].)

use std::time::{Duration, Instant};

use crate::rng::Rng;

/// Fraction of the interval used as the maximum per-tick jitter (1/20 = 5 %).
const JITTER_DIVISOR: u32 = 20;

/// Grid position of the heartbeat schedule.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatSchedule {
    anchor: Instant,
    interval: Duration,
    tick: u64,
}

impl HeartbeatSchedule {
    pub(crate) fn new(anchor: Instant, interval: Duration) -> Self {
        HeartbeatSchedule {
            anchor,
            interval,
            tick: 0,
        }
    }

    /// The grid time of tick `k` (no jitter).
    fn grid(&self, k: u64) -> Instant {
        let offset = self
            .interval
            .saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
        self.anchor.checked_add(offset).unwrap_or(self.anchor)
    }

    /// Advances to the first grid tick strictly after `now` that is also at or after
    /// `not_before`, and returns its deadline with jitter. Ticks that were missed (the
    /// driver slept, or a `Retry-After` asked us to wait) are skipped, never burst.
    pub(crate) fn advance(
        &mut self,
        now: Instant,
        not_before: Option<Instant>,
        rng: &mut Rng,
    ) -> Instant {
        let floor = match not_before {
            Some(nb) if nb > now => nb,
            Some(_) | None => now,
        };
        self.tick = self.tick.saturating_add(1);
        if self.grid(self.tick) <= floor {
            // Jump straight to the right tick instead of looping over missed ones.
            let behind = floor.saturating_duration_since(self.anchor);
            let interval_nanos = self.interval.as_nanos().max(1);
            let k = u64::try_from(behind.as_nanos() / interval_nanos).unwrap_or(u64::MAX);
            self.tick = k.saturating_add(1).max(self.tick);
        }
        let max_jitter = (self.interval / JITTER_DIVISOR).as_millis();
        let jitter = Duration::from_millis(rng.below(u64::try_from(max_jitter).unwrap_or(0)));
        let at = self.grid(self.tick) + jitter;
        if at <= now {
            now + Duration::from_millis(1)
        } else {
            at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some Instant as its origin
    fn grid_does_not_drift_and_jitter_is_small() {
        let t0 = Instant::now();
        let mut rng = Rng::new(7);
        let mut s = HeartbeatSchedule::new(t0, Duration::from_secs(20));
        for k in 1..=1000u64 {
            // Pretend every response took 3 s: the next deadline is still on the grid.
            let now = t0 + Duration::from_secs(20 * (k - 1) + 3);
            let at = s.advance(now, None, &mut rng);
            let grid = t0 + Duration::from_secs(20 * k);
            assert!(at >= grid && at < grid + Duration::from_secs(1), "tick {k}");
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test needs some Instant as its origin
    fn missed_ticks_are_skipped_not_burst() {
        let t0 = Instant::now();
        let mut rng = Rng::new(1);
        let mut s = HeartbeatSchedule::new(t0, Duration::from_secs(20));
        let at = s.advance(t0 + Duration::from_secs(95), None, &mut rng);
        assert!(at >= t0 + Duration::from_secs(100) && at < t0 + Duration::from_secs(101));
        let at = s.advance(at, Some(at + Duration::from_secs(30)), &mut rng);
        assert!(at >= t0 + Duration::from_secs(140));
    }
}
