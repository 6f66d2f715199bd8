//! Retrying: how long to wait before trying again ([`Backoff`], [`Jitter`]), how much of a
//! server's `Retry-After` to honour ([`RetryAfterCap`]), and which HTTP answers are worth
//! another attempt ([`StatusPolicy`]).
//!
//! Every retry loop of the program picks a named policy here:
//!
//! | loop | backoff | `Retry-After` | statuses retried |
//! |---|---|---|---|
//! | register (core session) | [`Backoff::REGISTER`] | [`RetryAfterCap::BACKGROUND`] | [`StatusPolicy::Register`] |
//! | heartbeat 429 (core session) | the heartbeat grid | [`RetryAfterCap::HEARTBEAT`] | – |
//! | inbox polls and state saves (core inbox) | [`Backoff::inbox`] | [`RetryAfterCap::BACKGROUND`] | every failure |
//! | upload downloads (core inbox) | [`Backoff::UPLOAD`] | – | [`StatusPolicy::UploadAnswer`] |
//! | A2A `message/send`, `/delegate` (cli tools) | [`Backoff::tool_call`] | [`RetryAfterCap::TOOL_CALL`] | 503 busy/waking / [`StatusPolicy::DelegatePost`] |
//!
//! Backoffs count steps from 0 (the delay before the first retry). Jitter draws come from a
//! seeded [`Rng`], so the core's traces stay deterministic.

use std::time::Duration;

use crate::rng::Rng;

/// Longest backoff of the background loops (register retries, inbox polls).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The inbox's jitter, for its normal poll cadence and its error backoff: ± 20 %.
pub const INBOX_JITTER: Jitter = Jitter::PlusMinus { divisor: 5 };

/// How a delay is spread so that many processes started together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the nominal delay: upload retries, which are few and per file.
    None,
    /// Adds a uniform `[0, 1/divisor)` of the delay, in whole milliseconds (register
    /// retries: a quarter).
    AddUpTo {
        /// `4` adds up to 25 %.
        divisor: u32,
    },
    /// Uniform in `[delay − delay/divisor, delay + delay/divisor]`, in whole milliseconds,
    /// never zero (the inbox: a fifth, so polls spread ± 20 %).
    PlusMinus {
        /// `5` spreads ± 20 %.
        divisor: u32,
    },
    /// Scales by a factor uniform in `[0.75, 1.25]` on a 1/10 000 grid. The tools use it
    /// because their delays are short and configurable (tests run them with a 1 ms base), so
    /// rounding to whole milliseconds would remove the jitter.
    QuarterScale,
}

impl Jitter {
    /// The exclusive bound of the one draw this jitter takes for `delay` (`0`: no draw, so
    /// the generator does not advance).
    fn bound(self, delay: Duration) -> u64 {
        match self {
            Jitter::None => 0,
            Jitter::AddUpTo { divisor } => {
                u64::try_from(delay.as_millis() / u128::from(divisor.max(1))).unwrap_or(0)
            }
            Jitter::PlusMinus { divisor } => {
                let ms = millis(delay);
                (ms / u64::from(divisor.max(1)))
                    .saturating_mul(2)
                    .saturating_add(1)
            }
            Jitter::QuarterScale => QUARTER_SCALE_STEPS + 1,
        }
    }

    /// `delay` spread by `draw` (a value in `0..self.bound(delay)`).
    fn apply(self, delay: Duration, draw: u64) -> Duration {
        match self {
            Jitter::None => delay,
            Jitter::AddUpTo { .. } => delay + Duration::from_millis(draw),
            Jitter::PlusMinus { divisor } => {
                let ms = millis(delay);
                let low = ms - ms / u64::from(divisor.max(1));
                Duration::from_millis(low.saturating_add(draw)).max(Duration::from_millis(1))
            }
            Jitter::QuarterScale => {
                let unit = (draw % (QUARTER_SCALE_STEPS + 1)) as f64 / QUARTER_SCALE_STEPS as f64;
                delay.mul_f64(0.75 + unit * 0.5)
            }
        }
    }

    /// `delay` spread with one draw from `rng`.
    pub fn spread(self, delay: Duration, rng: &mut Rng) -> Duration {
        let draw = rng.below(self.bound(delay));
        self.apply(delay, draw)
    }
}

/// Grid of [`Jitter::QuarterScale`].
const QUARTER_SCALE_STEPS: u64 = 10_000;

/// Whole milliseconds of `d`, saturating far below `u64::MAX` so jitter arithmetic cannot
/// overflow.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// Exponential backoff: step `n` waits `first · 2^min(n, max_doublings)`, at most `cap`,
/// then [`Jitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry (step 0), before jitter.
    pub first: Duration,
    /// Steps after this many stop doubling (at most 31).
    pub max_doublings: u32,
    /// Upper bound of the delay before jitter.
    pub cap: Duration,
    /// How the delay is spread.
    pub jitter: Jitter,
    /// Whether `cap` also bounds the delay after jitter.
    pub cap_after_jitter: bool,
}

impl Backoff {
    /// Register retries: 1 s, 2 s, 4 s … capped at 60 s, plus up to 25 %. The jitter may
    /// take a capped delay past 60 s, so a fleet whose platform came back still spreads out.
    pub const REGISTER: Backoff = Backoff {
        first: Duration::from_secs(1),
        max_doublings: 6,
        cap: MAX_BACKOFF,
        jitter: Jitter::AddUpTo { divisor: 4 },
        cap_after_jitter: false,
    };

    /// Downloads of uploaded files: 2 s, 4 s … 64 s, no jitter (a job gives up after
    /// `MAX_UPLOAD_ATTEMPTS`, so the cap is never reached in practice).
    pub const UPLOAD: Backoff = Backoff {
        first: Duration::from_secs(2),
        max_doublings: 5,
        cap: Duration::MAX,
        jitter: Jitter::None,
        cap_after_jitter: false,
    };

    /// Inbox polls and inbox state saves after failures: the poll interval doubled per
    /// failure, capped at 60 s, ± 20 %, and never more than 60 s even after jitter (the
    /// inbox promises to look again within a minute once the platform is back).
    pub const fn inbox(interval: Duration) -> Backoff {
        Backoff {
            first: interval,
            max_doublings: 16,
            cap: MAX_BACKOFF,
            jitter: INBOX_JITTER,
            cap_after_jitter: true,
        }
    }

    /// The tools' retries of undelivered requests: `base` doubled per attempt up to 16 ×,
    /// ± 25 %; the tool's own deadline bounds the total.
    pub const fn tool_call(base: Duration) -> Backoff {
        Backoff {
            first: base,
            max_doublings: 4,
            cap: Duration::MAX,
            jitter: Jitter::QuarterScale,
            cap_after_jitter: false,
        }
    }

    /// The delay of step `step` before jitter.
    pub fn nominal(&self, step: u32) -> Duration {
        let doublings = step.min(self.max_doublings).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// The delay before retry `step` (0 = the first retry), jittered with `rng`.
    pub fn delay(&self, step: u32, rng: &mut Rng) -> Duration {
        let nominal = self.nominal(step);
        let draw = rng.below(self.jitter.bound(nominal));
        self.finish(nominal, draw)
    }

    fn finish(&self, nominal: Duration, draw: u64) -> Duration {
        let spread = self.jitter.apply(nominal, draw);
        if self.cap_after_jitter {
            spread.min(self.cap)
        } else {
            spread
        }
    }
}

/// How much of a server's `Retry-After` a loop honours; larger values are clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterCap(Duration);

impl RetryAfterCap {
    /// The background loops (register, heartbeat, inbox poll): nobody waits on them, so a
    /// long pause the platform asks for is honoured, but a bogus huge value must not silence
    /// a workspace for hours: 10 minutes at most.
    pub const BACKGROUND: RetryAfterCap = RetryAfterCap(Duration::from_secs(600));

    /// Heartbeats: the platform's health sweep marks a workspace offline after about a
    /// minute without a beat (see `MAX_HEARTBEAT_INTERVAL_SECS` in `config.rs`), so a
    /// heartbeat never waits longer than that for a `Retry-After`, whatever the platform
    /// asked; polls and registers keep [`RetryAfterCap::BACKGROUND`].
    pub const HEARTBEAT: RetryAfterCap = RetryAfterCap(Duration::from_secs(60));

    /// The tools: the model is waiting for the call, so one wait is at most a minute (and
    /// the tool's deadline still ends the call when the wait would pass it).
    pub const TOOL_CALL: RetryAfterCap = RetryAfterCap(Duration::from_secs(60));

    /// The cap itself.
    pub const fn max(self) -> Duration {
        self.0
    }

    /// `retry_after`, at most the cap.
    pub fn clamp(self, retry_after: Duration) -> Duration {
        retry_after.min(self.0)
    }

    /// `delay`, lengthened to the (clamped) `retry_after` when the server asked for more.
    pub fn at_least(self, delay: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(ra) => delay.max(self.clamp(ra)),
            None => delay,
        }
    }
}

/// Which HTTP statuses a loop retries (the caller has already handled 2xx success and any
/// status it treats specially, such as 401/403 or 404 "gone").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPolicy {
    /// 5xx, 408 (request timeout), 425 (too early), 429 (rate limited): the answers that
    /// say "not now" rather than "never".
    Transient,
    /// Register: [`StatusPolicy::Transient`] plus 404 and anything below 200. Nothing else
    /// works until the workspace is registered, so register keeps trying unless the platform
    /// rejected the request itself (another 4xx); a 404 here comes from a platform that does
    /// not serve the route yet, and a 1xx is not a final answer.
    Register,
    /// An upload download that did not stage a file: [`StatusPolicy::Transient`] plus 2xx
    /// (a success the driver could not stage is worth another try). 404 is handled before
    /// this (the upload is gone). This is the only rule for downloads: drivers report
    /// answers, they do not classify them.
    UploadAnswer,
    /// `POST /workspaces/{id}/delegate`: 429 and 502–504, the answers of a throttle or of a
    /// proxy whose upstream is briefly unavailable. Retrying is safe (every attempt carries
    /// the same idempotency key), but a 500 is the platform's own error for this request and
    /// is reported to the model rather than repeated within the tool's 30 s budget.
    DelegatePost,
}

impl StatusPolicy {
    /// True when `status` is worth another attempt under this policy.
    pub fn is_retryable(self, status: u16) -> bool {
        let transient = status >= 500 || matches!(status, 408 | 425 | 429);
        match self {
            StatusPolicy::Transient => transient,
            StatusPolicy::Register => transient || status == 404 || status < 200,
            StatusPolicy::UploadAnswer => transient || (200..300).contains(&status),
            StatusPolicy::DelegatePost => matches!(status, 429 | 502 | 503 | 504),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_backoff_grows_and_caps() {
        let mut rng = Rng::new(3);
        assert!(Backoff::REGISTER.delay(0, &mut rng) < Duration::from_millis(1250));
        assert!(Backoff::REGISTER.delay(10, &mut rng) <= Duration::from_secs(75));
        assert_eq!(
            RetryAfterCap::BACKGROUND.at_least(
                Backoff::REGISTER.delay(0, &mut rng),
                Some(Duration::from_secs(9999))
            ),
            RetryAfterCap::BACKGROUND.max()
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let mut rng = Rng::new(9);
        for _ in 0..1000 {
            let d = INBOX_JITTER.spread(Duration::from_secs(5), &mut rng);
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
    }

    #[test]
    fn inbox_backoff_doubles_then_caps() {
        let mut rng = Rng::new(1);
        let i = Duration::from_secs(5);
        let third = Backoff::inbox(i).delay(2, &mut rng);
        assert!(third >= Duration::from_secs(16) && third <= Duration::from_secs(24));
        for n in 5..40 {
            let d = Backoff::inbox(i).delay(n - 1, &mut rng);
            assert!(
                d >= Duration::from_secs(48) && d <= MAX_BACKOFF,
                "{n}: {d:?}"
            );
        }
    }

    #[test]
    fn upload_retry_delays_grow() {
        let mut rng = Rng::new(0);
        assert_eq!(Backoff::UPLOAD.delay(0, &mut rng), Duration::from_secs(2));
        assert_eq!(Backoff::UPLOAD.delay(1, &mut rng), Duration::from_secs(4));
        assert_eq!(Backoff::UPLOAD.delay(98, &mut rng), Duration::from_secs(64));
    }

    #[test]
    fn tool_backoff_grows_caps_and_jitters() {
        // The delay for a given jitter draw (what `rng.below(10_001)` returned).
        let b = Backoff::tool_call(Duration::from_secs(1));
        let delay_with_draw = |step, draw| b.finish(b.nominal(step), draw);
        assert_eq!(delay_with_draw(0, 5_000), Duration::from_secs(1));
        assert_eq!(delay_with_draw(1, 5_000), Duration::from_secs(2));
        assert_eq!(delay_with_draw(8, 5_000), Duration::from_secs(16));
        assert_eq!(delay_with_draw(0, 0), Duration::from_millis(750));
        assert_eq!(delay_with_draw(0, 10_000), Duration::from_millis(1250));
    }

    /// The functions this module replaced, kept to prove the policies give the same delays
    /// and draw from the generator the same way.
    mod before {
        use super::*;

        pub fn register_backoff(
            attempt: u32,
            retry_after: Option<Duration>,
            rng: &mut Rng,
        ) -> Duration {
            let base = Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60));
            let jitter_ms = rng.below(u64::try_from(base.as_millis() / 4).unwrap_or(0));
            let backoff = base + Duration::from_millis(jitter_ms);
            match retry_after {
                Some(ra) => backoff.max(ra.min(Duration::from_secs(600))),
                None => backoff,
            }
        }

        pub fn jittered(base: Duration, rng: &mut Rng) -> Duration {
            let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX / 2);
            let low = ms - ms / 5;
            let span = (ms / 5).saturating_mul(2);
            Duration::from_millis(low.saturating_add(rng.below(span.saturating_add(1))))
                .max(Duration::from_millis(1))
        }

        pub fn error_backoff(consecutive: u32, interval: Duration, rng: &mut Rng) -> Duration {
            let doublings = consecutive.saturating_sub(1).min(16);
            let base = interval
                .saturating_mul(1u32 << doublings)
                .min(Duration::from_secs(60));
            jittered(base, rng).min(Duration::from_secs(60))
        }

        pub fn upload_retry_delay(attempts: u32) -> Duration {
            Duration::from_secs(1u64 << attempts.clamp(1, 6))
        }

        pub fn tool_backoff(base: Duration, attempt: u32, entropy: u64) -> Duration {
            let factor = 1u32 << attempt.saturating_sub(1).min(4);
            let nominal = base.saturating_mul(factor);
            let unit = (entropy % 10_001) as f64 / 10_000.0;
            nominal.mul_f64(0.75 + unit * 0.5)
        }
    }

    #[test]
    fn policies_equal_the_functions_they_replaced() {
        let intervals =
            [1u64, 7, 999, 1_000, 5_000, 20_000, 60_000, 86_400_000].map(Duration::from_millis);
        for seed in 0..50u64 {
            for step in 0..40u32 {
                let (mut a, mut b) = (Rng::new(seed), Rng::new(seed));
                for ra in [None, Some(Duration::ZERO), Some(Duration::from_secs(90))] {
                    let new = RetryAfterCap::BACKGROUND
                        .at_least(Backoff::REGISTER.delay(step, &mut a), ra);
                    assert_eq!(new, before::register_backoff(step, ra, &mut b));
                }
                for interval in intervals {
                    assert_eq!(
                        Backoff::inbox(interval).delay(step, &mut a),
                        before::error_backoff(step + 1, interval, &mut b)
                    );
                    assert_eq!(
                        INBOX_JITTER.spread(interval, &mut a),
                        before::jittered(interval, &mut b)
                    );
                    let entropy = b.next_u64();
                    assert_eq!(
                        Backoff::tool_call(interval).delay(step, &mut a),
                        before::tool_backoff(interval, step + 1, entropy)
                    );
                }
                assert_eq!(
                    Backoff::UPLOAD.delay(step, &mut a),
                    before::upload_retry_delay(step + 1)
                );
                assert_eq!(a.next_u64(), b.next_u64(), "same number of draws");
            }
        }
    }

    #[test]
    fn status_policies() {
        let retried = |p: StatusPolicy| -> Vec<u16> {
            [
                100, 200, 204, 302, 400, 401, 404, 408, 410, 425, 429, 500, 502, 503, 504, 599,
            ]
            .into_iter()
            .filter(|s| p.is_retryable(*s))
            .collect()
        };
        assert_eq!(
            retried(StatusPolicy::Transient),
            [408, 425, 429, 500, 502, 503, 504, 599]
        );
        assert_eq!(
            retried(StatusPolicy::Register),
            [100, 404, 408, 425, 429, 500, 502, 503, 504, 599]
        );
        assert_eq!(
            retried(StatusPolicy::UploadAnswer),
            [200, 204, 408, 425, 429, 500, 502, 503, 504, 599]
        );
        assert_eq!(retried(StatusPolicy::DelegatePost), [429, 502, 503, 504]);
    }
}
