//! Fault injection at the core level, in simulated time: the session and inbox machines
//! at their production cadences (heartbeat every 20 s with a 10 s deadline, inbox poll every
//! 5 s) live through a platform that is down for two full minutes — connections refused,
//! 5xx answers, or requests that hang past their deadline — and then comes back. Hours of
//! simulated time cost milliseconds, so these run the uncompressed scenario that
//! `fault_injection.rs` can only run compressed against the real binary.
//!
//! Checked for the session: every heartbeat (before, during and after the outage) is sent on
//! the fixed 20 s grid (gaps of 19–21 s: the per-tick jitter is < 1 s), the first beat after
//! recovery is accepted within one interval, nothing is fatal, a 429's `Retry-After` is
//! honoured, no token appears in any action. For the inbox: polls back off (doubling, never
//! more than [`MAX_BACKOFF`] apart), resume within one backoff step of recovery, deliver what
//! arrived during the outage exactly once, and return to the 5 s cadence.

use std::time::{Duration, Instant};

use molecule_mcp_core::inbox::{Inbox, InboxAction, InboxInput, MAX_BACKOFF};
use molecule_mcp_core::testing::inbox::{
    FakeFeed, epoch, message_row, test_config as inbox_config,
};
use molecule_mcp_core::testing::session::{Harness, logs, sends, test_config};
use molecule_mcp_core::{
    Action, LogLevel, Phase, RequestId, RequestKind, TransportError, TransportErrorKind,
};

const WS: &str = "5d1c0a2b-0000-4000-8000-00000000fa17";
const TOKEN: &str = "tok-FAULT-CORE-SECRET-9b8a7c6d5e4f";
const REGISTERED: &str = r#"{"status":"registered","delivery_mode":"poll"}"#;
const OK: &str = r#"{"status":"ok"}"#;
const INTERVAL: Duration = Duration::from_secs(20);
const OUTAGE: Duration = Duration::from_secs(120);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ----- session -------------------------------------------------------------------------------

/// How the platform treats heartbeats during a phase.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Healthy,
    /// Connection refused, reported at once.
    Refused,
    /// 500 / 502 / 503 in turn, with an HTML body.
    ServerErrors,
    /// Never answered: the session's own deadline ends each request.
    Hang,
}

/// One heartbeat as sent: when (simulated time since start) and in which phase.
#[derive(Debug, Clone, Copy)]
struct Beat {
    at: Duration,
    fault: Fault,
}

/// A registered session at the production cadence; its first heartbeat was sent and answered.
fn registered(seed: u64) -> (Harness, Vec<Beat>, Vec<Action>) {
    let mut h = Harness::with_seed(test_config(WS, TOKEN), seed);
    let mut all = h.drain();
    all.extend(h.respond_oldest(RequestKind::Register, 200, REGISTERED));
    let mut beats = Vec::new();
    let first = h.oldest(RequestKind::Heartbeat);
    beats.push(Beat {
        at: h.sent_at(first).expect("sent"),
        fault: Fault::Healthy,
    });
    all.extend(h.respond(first, 200, OK));
    (h, beats, all)
}

/// Lets simulated time run for `len`, treating every heartbeat sent meanwhile per `fault`.
/// Appends to `beats` and `all` (every action).
fn run_phase(
    h: &mut Harness,
    len: Duration,
    fault: Fault,
    beats: &mut Vec<Beat>,
    all: &mut Vec<Action>,
) {
    let end = h.elapsed() + len;
    let mut n = 0usize;
    while h.elapsed() < end {
        let next = h
            .session()
            .poll_timeout()
            .expect("the session stays running");
        let wait = next.saturating_duration_since(h.now());
        let step = wait.min(end - h.elapsed()).max(Duration::from_millis(1));
        let actions = h.advance(step);
        let new_beats: Vec<RequestId> = sends(&actions)
            .iter()
            .filter(|r| r.kind == RequestKind::Heartbeat)
            .map(|r| r.id)
            .collect();
        all.extend(actions);
        for id in new_beats {
            beats.push(Beat {
                at: h.elapsed(),
                fault,
            });
            let answer = match fault {
                Fault::Healthy => h.respond(id, 200, OK),
                Fault::Refused => h.fail(
                    id,
                    TransportErrorKind::Connect,
                    "tcp connect error: Connection refused (os error 111)",
                ),
                Fault::ServerErrors => {
                    let status = [500, 502, 503][n % 3];
                    n += 1;
                    h.respond(
                        id,
                        status,
                        "<html><body><h1>502 Bad Gateway</h1></body></html>",
                    )
                }
                Fault::Hang => Vec::new(),
            };
            all.extend(answer);
        }
    }
}

/// Every consecutive pair of heartbeats is one interval apart, give or take the jitter.
fn assert_on_grid(beats: &[Beat]) {
    for pair in beats.windows(2) {
        let gap = secs(pair[1].at - pair[0].at);
        assert!(
            (19.0..21.0).contains(&gap),
            "heartbeats {gap:.3}s apart ({:?} at {:.3}s → {:?} at {:.3}s); all: {:?}",
            pair[0].fault,
            secs(pair[0].at),
            pair[1].fault,
            secs(pair[1].at),
            beats.iter().map(|b| secs(b.at)).collect::<Vec<_>>()
        );
    }
}

fn assert_no_token(all: &[Action]) {
    for a in all {
        assert!(!format!("{a:?}").contains(TOKEN), "token in {a:?}");
    }
}

fn assert_no_fatal(all: &[Action]) {
    assert!(
        !all.iter().any(|a| matches!(a, Action::Fatal { .. })),
        "a fatal action during an outage"
    );
}

/// Healthy for 1 min, `fault` for 2 min, healthy for 2 min.
fn two_minute_outage(fault: Fault, seed: u64) {
    let (mut h, mut beats, mut all) = registered(seed);
    run_phase(
        &mut h,
        Duration::from_secs(60),
        Fault::Healthy,
        &mut beats,
        &mut all,
    );
    let down_at = h.elapsed();
    run_phase(&mut h, OUTAGE, fault, &mut beats, &mut all);
    let up_at = h.elapsed();
    run_phase(
        &mut h,
        Duration::from_secs(120),
        Fault::Healthy,
        &mut beats,
        &mut all,
    );

    assert_on_grid(&beats);
    let during = beats
        .iter()
        .filter(|b| b.at >= down_at && b.at < up_at)
        .count();
    assert!(
        (5..=7).contains(&during),
        "{during} heartbeats attempted during 2 min of {fault:?} (want 6: one per 20 s)"
    );
    let first_after = beats
        .iter()
        .find(|b| b.at >= up_at)
        .expect("a heartbeat after recovery");
    assert!(
        first_after.at - up_at <= INTERVAL + Duration::from_secs(1),
        "first heartbeat {:.1}s after recovery",
        secs(first_after.at - up_at)
    );
    let status = h.status();
    assert_eq!(status.phase, Phase::Running);
    assert_eq!(status.heartbeats_sent, beats.len() as u64);
    assert_eq!(
        status.heartbeats_ok,
        beats
            .iter()
            .filter(|b| matches!(b.fault, Fault::Healthy))
            .count() as u64,
        "every healthy beat accepted"
    );
    assert_eq!(status.consecutive_auth_failures, 0);
    assert_no_fatal(&all);
    assert_no_token(&all);
    // One WARN per failed beat, no ERROR (errors are for auth escalation only).
    let warns = logs(&all, LogLevel::Warn);
    assert_eq!(warns.len(), during, "{warns:#?}");
    assert!(logs(&all, LogLevel::Error).is_empty());
    if matches!(fault, Fault::ServerErrors) {
        assert!(
            warns.iter().any(|w| w.contains("heartbeat HTTP 502")),
            "{warns:#?}"
        );
    }
    if matches!(fault, Fault::Hang) {
        assert!(warns.iter().all(|w| w.contains("Timeout")), "{warns:#?}");
        // Each hung beat was given up at its 10 s deadline, before the next tick.
        assert!(h.in_flight(RequestKind::Heartbeat).len() <= 1);
    }
}

#[test]
fn platform_refusing_connections_for_two_minutes() {
    for seed in [1, 2, 3, 0xfa17] {
        two_minute_outage(Fault::Refused, seed);
    }
}

#[test]
fn platform_answering_5xx_for_two_minutes() {
    for seed in [4, 5, 6] {
        two_minute_outage(Fault::ServerErrors, seed);
    }
}

#[test]
fn platform_hanging_for_two_minutes() {
    for seed in [7, 8, 9] {
        two_minute_outage(Fault::Hang, seed);
    }
}

/// A 429 with `Retry-After: 60` moves the next beat to the first grid tick at least 60 s
/// later; the grid then continues (no drift, no burst of missed beats).
#[test]
fn heartbeat_429_retry_after_is_honoured() {
    let (mut h, _, _) = registered(11);
    let (id, _) = h.next_heartbeat();
    let limited_at = h.elapsed();
    let actions = h.respond_retry_after(
        id,
        429,
        Duration::from_secs(60),
        r#"{"error":"rate limited"}"#,
    );
    assert_eq!(logs(&actions, LogLevel::Warn).len(), 1);
    let (next, _) = h.next_heartbeat();
    let waited = h.sent_at(next).expect("sent") - limited_at;
    assert!(
        waited >= Duration::from_secs(60) && waited < Duration::from_secs(81),
        "next beat {:.1}s after a 429 with Retry-After: 60",
        secs(waited)
    );
    let mut beats = vec![Beat {
        at: h.sent_at(next).expect("sent"),
        fault: Fault::Healthy,
    }];
    let mut all = h.respond(next, 200, OK);
    run_phase(
        &mut h,
        Duration::from_secs(100),
        Fault::Healthy,
        &mut beats,
        &mut all,
    );
    assert_on_grid(&beats);
    assert_no_token(&all);
}

/// At the 1 s test cadence the heartbeat deadline is min(10 s, 1 s) = 1 s, so a hung beat
/// is still outstanding when the next tick comes whenever that tick's jitter is smaller
/// than the previous one's; that tick is skipped (one beat at a time). Hangs thin the beats
/// out but never stop them: over 2 minutes of hangs at least a third of the ticks still
/// send a beat, no two beats are closer than half an interval, and none is more than three
/// intervals after the previous one.
#[test]
fn hangs_at_a_one_second_cadence_thin_beats_but_never_stop_them() {
    let mut cfg = test_config(WS, TOKEN);
    cfg.heartbeat_interval = Duration::from_secs(1);
    let mut h = Harness::with_seed(cfg, 21);
    h.drain();
    h.respond_oldest(RequestKind::Register, 200, REGISTERED);
    let mut beats = vec![Beat {
        at: h.elapsed(),
        fault: Fault::Healthy,
    }];
    let mut all = Vec::new();
    let first = h.oldest(RequestKind::Heartbeat);
    all.extend(h.respond(first, 200, OK));
    let down_at = h.elapsed();
    run_phase(&mut h, OUTAGE, Fault::Hang, &mut beats, &mut all);
    let up_at = h.elapsed();
    run_phase(
        &mut h,
        Duration::from_secs(10),
        Fault::Healthy,
        &mut beats,
        &mut all,
    );
    let hung: Vec<&Beat> = beats
        .iter()
        .filter(|b| b.at >= down_at && b.at < up_at)
        .collect();
    eprintln!(
        "1 s cadence, 120 s of hung heartbeats: {} beats sent for 120 ticks",
        hung.len()
    );
    assert!(
        hung.len() >= 40,
        "only {} beats in 120 s of hangs",
        hung.len()
    );
    for pair in beats.windows(2) {
        let gap = secs(pair[1].at - pair[0].at);
        assert!((0.5..=3.0).contains(&gap), "gap {gap:.3}s");
    }
    let after: Vec<&Beat> = beats.iter().filter(|b| b.at >= up_at).collect();
    assert!(
        after.len() >= 8,
        "beats resume at cadence after the hangs: {after:?}"
    );
    assert_no_fatal(&all);
    assert_no_token(&all);
}

// ----- inbox ---------------------------------------------------------------------------------

/// How the platform treats polls during a phase.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PollFault {
    Healthy,
    Refused,
    Hang,
}

/// One inbox (production defaults: 5 s polls, 10 s deadline) against a fake feed, with a
/// simulated clock and an always-working disk.
struct InboxRig {
    inbox: Inbox,
    feed: FakeFeed,
    start: Instant,
    now: Instant,
    fault: PollFault,
    /// Every poll sent: (time since start, fault at the time).
    polls: Vec<(Duration, PollFault)>,
    arrived: Vec<String>,
    logs: Vec<String>,
}

impl InboxRig {
    fn new() -> InboxRig {
        let start = epoch();
        let inbox = Inbox::new(inbox_config(WS, TOKEN), None, start, 31);
        let mut rig = InboxRig {
            inbox,
            feed: FakeFeed::new(WS),
            start,
            now: start,
            fault: PollFault::Healthy,
            polls: Vec::new(),
            arrived: Vec::new(),
            logs: Vec::new(),
        };
        rig.drain();
        rig
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Performs every queued action at once (answers from the feed or per the fault).
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some(action) = self.inbox.poll_action() else {
                return;
            };
            assert!(
                !format!("{action:?}").contains(TOKEN),
                "token in {action:?}"
            );
            let input = match action {
                InboxAction::SendHttp(req) => {
                    assert!(
                        req.url.contains("/activity?"),
                        "unexpected request {}",
                        req.url
                    );
                    self.polls.push((self.elapsed(), self.fault));
                    match self.fault {
                        PollFault::Healthy => {
                            let (status, body) = self.feed.answer(&req.url);
                            Some(InboxInput::HttpResponse {
                                id: req.id,
                                status,
                                retry_after: None,
                                body,
                            })
                        }
                        PollFault::Refused => Some(InboxInput::HttpFailed {
                            id: req.id,
                            error: TransportError {
                                kind: TransportErrorKind::Connect,
                                message: "tcp connect error: Connection refused (os error 111)"
                                    .into(),
                            },
                        }),
                        PollFault::Hang => None,
                    }
                }
                InboxAction::Persist { id, .. } | InboxAction::Append { id, .. } => {
                    Some(InboxInput::PersistDone { id, result: Ok(()) })
                }
                InboxAction::Arrived(m) => {
                    self.arrived.push(m.activity_id);
                    None
                }
                InboxAction::Log(line) => {
                    self.logs.push(line.message);
                    None
                }
                InboxAction::FetchUpload(f) => panic!("no uploads in this feed: {f:?}"),
                InboxAction::SetAside(_) => panic!("a state this test wrote was set aside"),
            };
            if let Some(input) = input {
                self.inbox.handle(self.now, input);
            }
        }
        panic!("the inbox keeps producing actions");
    }

    /// Lets `len` of simulated time pass under `fault`.
    fn run(&mut self, len: Duration, fault: PollFault) {
        self.fault = fault;
        let end = self.now + len;
        while self.now < end {
            let next = self
                .inbox
                .poll_timeout()
                .expect("the inbox always has a next poll");
            let then = next.max(self.now + Duration::from_millis(1)).min(end);
            self.feed.advance_clock(then - self.now);
            self.now = then;
            self.inbox.handle_timeout(self.now);
            self.drain();
        }
    }
}

#[allow(clippy::print_stderr)] // the measured backoff, shown with --nocapture
fn two_minute_inbox_outage(fault: PollFault) {
    let mut rig = InboxRig::new();
    let before = rig.feed.push(message_row("before the outage", None));
    rig.run(Duration::from_secs(30), PollFault::Healthy);
    assert_eq!(rig.arrived, vec![before.clone()]);
    let down_at = rig.elapsed();
    rig.run(Duration::from_secs(40), fault);
    let during = rig
        .feed
        .push(message_row("sent while the platform was down", None));
    rig.run(OUTAGE - Duration::from_secs(40), fault);
    let up_at = rig.elapsed();
    rig.run(Duration::from_secs(120), PollFault::Healthy);

    assert_eq!(
        rig.arrived,
        vec![before, during.clone()],
        "delivered once each"
    );
    let failed: Vec<Duration> = rig
        .polls
        .iter()
        .filter(|(_, f)| *f == fault)
        .map(|(at, _)| *at)
        .collect();
    assert!(
        failed.len() >= 4,
        "{fault:?}: {} failed polls in 2 min",
        failed.len()
    );
    // Gaps between polls that failed: growing backoff, capped. A hung poll occupies its
    // 10 s deadline before the backoff starts.
    let deadline = if fault == PollFault::Hang { 10.0 } else { 0.0 };
    for pair in failed.windows(2) {
        let gap = secs(pair[1] - pair[0]);
        assert!(
            gap <= secs(MAX_BACKOFF) + deadline + 0.01,
            "{fault:?}: polls {gap:.1}s apart during the outage: {failed:?}"
        );
    }
    let first_after = rig
        .polls
        .iter()
        .find(|(at, _)| *at >= up_at)
        .expect("a poll after recovery")
        .0;
    assert!(
        first_after - up_at <= MAX_BACKOFF + Duration::from_secs_f64(deadline),
        "first poll {:.1}s after recovery",
        secs(first_after - up_at)
    );
    // Back to the 5 s ± 20 % cadence once a poll succeeded.
    let healthy_after: Vec<Duration> = rig
        .polls
        .iter()
        .filter(|(at, f)| *at >= first_after && *f == PollFault::Healthy)
        .map(|(at, _)| *at)
        .collect();
    assert!(healthy_after.len() >= 10, "{healthy_after:?}");
    for pair in healthy_after.windows(2).skip(1) {
        let gap = secs(pair[1] - pair[0]);
        assert!(
            (3.99..=6.01).contains(&gap),
            "cadence after recovery: {gap:.2}s"
        );
    }
    let status = rig.inbox.status();
    assert_eq!(status.consecutive_poll_failures, 0);
    assert!(!status.unsaved_changes);
    assert!(
        rig.logs.iter().any(|l| l.contains("polling works again")),
        "{:#?}",
        rig.logs
    );
    eprintln!(
        "inbox, 2 min {fault:?}: {} failed polls at {:?} s; first poll {:.1}s after recovery",
        failed.len(),
        failed
            .iter()
            .map(|d| (secs(*d - down_at) * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        secs(first_after - up_at)
    );
}

#[test]
fn inbox_survives_two_minutes_of_refused_connections() {
    two_minute_inbox_outage(PollFault::Refused);
}

#[test]
fn inbox_survives_two_minutes_of_hung_polls() {
    two_minute_inbox_outage(PollFault::Hang);
}
