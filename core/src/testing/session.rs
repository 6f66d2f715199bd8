//! Test support for [`Session`].
//!
//! Three layers, shared by `tests/tests/session_*.rs`, the proptest properties and the
//! `session_ops` fuzz target:
//!
//! * [`Harness`]: owns one session and a **simulated clock**. Time starts at one real
//!   `Instant` captured once per process and then only moves by `+ Duration`, so hours of
//!   heartbeats run in milliseconds and two runs of the same script see equal `Instant`s.
//!   Every input fed and action drained is recorded as an [`Event`]; [`render_events`]
//!   turns that into the compact transcript the golden tests compare.
//! * [`Op`]: a tiny scripting language (advance time, answer the n-th in-flight request,
//!   fail it, answer an unknown id, finish a persist, shut down, …) decoded positionally
//!   from bytes by [`decode_ops`], so a fuzzer mutation changes one op, not the whole run.
//! * [`run_ops`] / [`session_ops_case`]: apply ops to a fixed session while an independent
//!   model of the contract checks every action. A violated invariant is a `panic!` naming
//!   the op index: that panic is the oracle for proptest and libFuzzer alike.
//!
//! Invariants checked after every op: the drain terminates; with no action queued
//! `poll_timeout()` is `None` or later than `now`; request ids are fresh and increasing;
//! the session's in-flight set equals the model's (answered and expired ids leave it);
//! answers to unknown ids, spurious timeouts and inputs after a terminal state change
//! nothing but the ignored counter; nothing is sent or persisted after `Fatal`/`Shutdown`;
//! no action's `Debug` text (log and fatal messages included) contains a token; the ERROR
//! count equals the escalation points `n ∈ {3, 23, 43, …}` reached (plus failed saves of a
//! minted token); heartbeats start only after register's outcome, one at a time, and a
//! punctual beat is followed by the next one no sooner than 95 % of the interval (after a
//! late wake-up the next grid tick may come sooner: skip, don't drift); secrets are
//! persisted exactly when they change. Finally the whole script is replayed and must give
//! an identical event trace (determinism).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::PersistError;
use crate::action::{Action, FatalReason, LogLevel, PersistFile, PersistId, PersistRequest};
use crate::http::{
    HttpRequest, Method, RequestId, RequestKind, TransportError, TransportErrorKind,
};
use crate::input::Input;
use crate::secret::Secret;
use crate::session::{Phase, Session, SessionConfig, SessionStatus};

pub use super::{PLATFORM, epoch};

/// Seed used by [`Harness::new`] and the op runner: fixed, so the golden transcripts and the
/// corpus replays see the same jitter on every run.
pub const DEFAULT_SEED: u64 = 0x4c8a_ad3b_43c1_511f;
/// A session that queues more actions than this without running dry is a bug.
pub const DRAIN_BOUND: usize = 1000;
/// Longest op script the runner applies (longer fuzz inputs are truncated).
pub const MAX_OPS: usize = 4096;
/// Workspace of the op runner's fixed config.
pub const FUZZ_WORKSPACE: &str = "ws-fuzz-0000-4c8aad3b";
/// Token of the op runner's fixed config: long and distinctive so a leak is unambiguous.
pub const FUZZ_TOKEN: &str = "tok-FUZZ-SECRET-7f3a9c2e1b5d4e6f";

/// A config like the Python seed tests' (`tests/tests/session_seed.rs`): platform
/// [`PLATFORM`], default cadence (20 s) and timeout (10 s), agent card `{"name": "molecule-mcp-<id8>", "skills": []}`.
pub fn test_config(workspace_id: &str, token: &str) -> SessionConfig {
    let platform = super::platform();
    let name: String = workspace_id.chars().take(8).collect();
    let card = json!({ "name": format!("molecule-mcp-{name}"), "skills": [] });
    SessionConfig::new(
        platform,
        workspace_id,
        Secret::new(token),
        "MOLECULE_WORKSPACE_TOKEN",
        card,
    )
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// What happened, for transcripts and determinism checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// An input fed with [`Session::handle`].
    Input(Input),
    /// A [`Session::handle_timeout`] call.
    Timeout,
    /// An action drained from the session.
    Action(Action),
}

/// One recorded event at a simulated time (offset from the harness start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Simulated time since the session was created.
    pub at: Duration,
    /// What happened.
    pub kind: EventKind,
}

/// A session plus a simulated clock, with helpers to answer its requests.
#[derive(Debug)]
pub struct Harness {
    session: Session,
    start: Instant,
    now: Instant,
    sent: BTreeMap<RequestId, HttpRequest>,
    persists: BTreeMap<PersistId, PersistRequest>,
    events: Vec<Event>,
}

impl Harness {
    /// A harness over `Session::new(cfg, epoch(), DEFAULT_SEED)`. Nothing is drained yet:
    /// the first [`Harness::drain`] returns the register request.
    pub fn new(cfg: SessionConfig) -> Self {
        Self::with_seed(cfg, DEFAULT_SEED)
    }

    /// Same with an explicit jitter seed.
    pub fn with_seed(cfg: SessionConfig, seed: u64) -> Self {
        let start = epoch();
        Harness {
            session: Session::new(cfg, start, seed),
            start,
            now: start,
            sent: BTreeMap::new(),
            persists: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The session under test.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Simulated now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Simulated time since the session was created.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// Status snapshot of the session.
    pub fn status(&self) -> SessionStatus {
        self.session.status()
    }

    /// Every event so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Every request the session ever asked to send, by id.
    pub fn sent(&self) -> impl Iterator<Item = &HttpRequest> {
        self.sent.values()
    }

    /// A request sent earlier.
    pub fn request(&self, id: RequestId) -> Option<&HttpRequest> {
        self.sent.get(&id)
    }

    /// A persist request emitted earlier.
    pub fn persist_request(&self, id: PersistId) -> Option<&PersistRequest> {
        self.persists.get(&id)
    }

    /// In-flight ids of `kind`, ascending (oldest first).
    pub fn in_flight(&self, kind: RequestKind) -> Vec<RequestId> {
        self.session
            .in_flight()
            .filter(|id| self.sent.get(id).map(|r| r.kind) == Some(kind))
            .collect()
    }

    /// Pops every queued action (panics if the queue does not run dry within
    /// [`DRAIN_BOUND`]), recording each.
    pub fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.session.poll_action() {
            assert!(
                out.len() < DRAIN_BOUND,
                "poll_action did not run dry after {DRAIN_BOUND} actions"
            );
            match &action {
                Action::SendHttp(req) => {
                    self.sent.insert(req.id, req.clone());
                }
                Action::Persist(p) => {
                    self.persists.insert(p.id, p.clone());
                }
                Action::Log(_) | Action::TokenChanged { .. } | Action::Fatal { .. } => {}
            }
            self.events.push(Event {
                at: self.elapsed(),
                kind: EventKind::Action(action.clone()),
            });
            out.push(action);
        }
        out
    }

    /// Calls `handle_timeout(now)` unconditionally (also when nothing is due) and drains.
    pub fn handle_timeout(&mut self) -> Vec<Action> {
        self.events.push(Event {
            at: self.elapsed(),
            kind: EventKind::Timeout,
        });
        self.session.handle_timeout(self.now);
        self.drain()
    }

    /// Drains, then fires `handle_timeout` if the session's deadline has been reached.
    pub fn fire_due(&mut self) -> Vec<Action> {
        let mut out = self.drain();
        if self.session.poll_timeout().is_some_and(|t| t <= self.now) {
            out.extend(self.handle_timeout());
        }
        out
    }

    /// Moves the clock forward by `by` and fires whatever became due.
    pub fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.fire_due()
    }

    /// Jumps the clock to `poll_timeout()` (if later than now) and fires it. Returns no
    /// actions once the session is terminal.
    pub fn advance_to_next_timeout(&mut self) -> Vec<Action> {
        let mut out = self.drain();
        if let Some(at) = self.session.poll_timeout() {
            if at > self.now {
                self.now = at;
            }
            out.extend(self.handle_timeout());
        }
        out
    }

    /// Feeds `input` at the current time and drains.
    pub fn deliver(&mut self, input: Input) -> Vec<Action> {
        self.events.push(Event {
            at: self.elapsed(),
            kind: EventKind::Input(input.clone()),
        });
        self.session.handle(self.now, input);
        self.drain()
    }

    /// Answers request `id` with `status` and `body`.
    pub fn respond(&mut self, id: RequestId, status: u16, body: impl Into<Vec<u8>>) -> Vec<Action> {
        self.deliver(Input::HttpResponse {
            id,
            status,
            retry_after: None,
            body: body.into(),
        })
    }

    /// Answers request `id` with a `Retry-After` delay.
    pub fn respond_retry_after(
        &mut self,
        id: RequestId,
        status: u16,
        retry_after: Duration,
        body: impl Into<Vec<u8>>,
    ) -> Vec<Action> {
        self.deliver(Input::HttpResponse {
            id,
            status,
            retry_after: Some(retry_after),
            body: body.into(),
        })
    }

    /// Reports a transport failure for request `id`.
    pub fn fail(&mut self, id: RequestId, kind: TransportErrorKind, message: &str) -> Vec<Action> {
        self.deliver(Input::HttpFailed {
            id,
            error: TransportError {
                kind,
                message: message.to_owned(),
            },
        })
    }

    /// Oldest in-flight request of `kind`; panics when there is none (a test bug).
    pub fn oldest(&self, kind: RequestKind) -> RequestId {
        match self.in_flight(kind).first() {
            Some(id) => *id,
            None => panic!("no {kind:?} request in flight at {:?}", self.elapsed()),
        }
    }

    /// Most recent in-flight request of `kind`; panics when there is none.
    pub fn latest(&self, kind: RequestKind) -> RequestId {
        match self.in_flight(kind).last() {
            Some(id) => *id,
            None => panic!("no {kind:?} request in flight at {:?}", self.elapsed()),
        }
    }

    /// Answers the oldest in-flight request of `kind`.
    pub fn respond_oldest(
        &mut self,
        kind: RequestKind,
        status: u16,
        body: impl Into<Vec<u8>>,
    ) -> Vec<Action> {
        let id = self.oldest(kind);
        self.respond(id, status, body)
    }

    /// Answers the most recent in-flight request of `kind`.
    pub fn respond_latest(
        &mut self,
        kind: RequestKind,
        status: u16,
        body: impl Into<Vec<u8>>,
    ) -> Vec<Action> {
        let id = self.latest(kind);
        self.respond(id, status, body)
    }

    /// Fails the oldest in-flight request of `kind` with a transport error.
    pub fn fail_oldest(&mut self, kind: RequestKind, error: TransportErrorKind) -> Vec<Action> {
        let id = self.oldest(kind);
        self.fail(id, error, "simulated transport failure")
    }

    /// Reports the outcome of persist `id`.
    pub fn persist_done(&mut self, id: PersistId, result: Result<(), String>) -> Vec<Action> {
        self.deliver(Input::PersistDone {
            id,
            result: result.map_err(PersistError::from),
        })
    }

    /// Requests shutdown.
    pub fn shutdown(&mut self) -> Vec<Action> {
        self.deliver(Input::Shutdown)
    }

    /// The newest in-flight heartbeat, or else lets time pass timer by timer (at most 1000
    /// wake-ups) until one is sent. Returns its id and every action emitted on the way.
    pub fn next_heartbeat(&mut self) -> (RequestId, Vec<Action>) {
        let mut out = self.drain();
        for _ in 0..1000 {
            if let Some(id) = self.in_flight(RequestKind::Heartbeat).last() {
                return (*id, out);
            }
            assert!(
                self.session.poll_timeout().is_some(),
                "session is terminal; no heartbeat will come"
            );
            out.extend(self.advance_to_next_timeout());
        }
        panic!("no heartbeat within 1000 wake-ups");
    }

    /// When request `id` was handed to the driver (simulated time since start).
    pub fn sent_at(&self, id: RequestId) -> Option<Duration> {
        self.events.iter().find_map(|e| match &e.kind {
            EventKind::Action(Action::SendHttp(r)) if r.id == id => Some(e.at),
            EventKind::Action(_) | EventKind::Input(_) | EventKind::Timeout => None,
        })
    }

    /// One heartbeat round trip: answers the outstanding heartbeat, or waits for the next
    /// one and answers it.
    /// Returns every action emitted on the way and by the answer.
    pub fn beat(&mut self, status: u16, body: impl Into<Vec<u8>>) -> Vec<Action> {
        let (id, mut out) = self.next_heartbeat();
        out.extend(self.respond(id, status, body));
        out
    }

    /// The recorded events as a transcript (see [`render_events`]).
    pub fn transcript(&self) -> String {
        render_events(&self.events, &self.sent)
    }
}

// ---------------------------------------------------------------------------------------
// Action helpers
// ---------------------------------------------------------------------------------------

/// The `SendHttp` requests among `actions`.
pub fn sends(actions: &[Action]) -> Vec<&HttpRequest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendHttp(r) => Some(r),
            Action::Log(_)
            | Action::Persist(_)
            | Action::TokenChanged { .. }
            | Action::Fatal { .. } => None,
        })
        .collect()
}

/// Messages of the `Log` actions at exactly `level`.
pub fn logs(actions: &[Action], level: LogLevel) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) if l.level == level => Some(l.message.as_str()),
            Action::Log(_)
            | Action::SendHttp(_)
            | Action::Persist(_)
            | Action::TokenChanged { .. }
            | Action::Fatal { .. } => None,
        })
        .collect()
}

/// The `Persist` requests among `actions`.
pub fn persists(actions: &[Action]) -> Vec<&PersistRequest> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist(p) => Some(p),
            Action::Log(_)
            | Action::SendHttp(_)
            | Action::TokenChanged { .. }
            | Action::Fatal { .. } => None,
        })
        .collect()
}

/// The first `Fatal` among `actions`: reason and message.
pub fn fatal(actions: &[Action]) -> Option<(FatalReason, &str)> {
    actions.iter().find_map(|a| match a {
        Action::Fatal {
            reason, message, ..
        } => Some((*reason, message.as_str())),
        Action::Log(_) | Action::SendHttp(_) | Action::Persist(_) | Action::TokenChanged { .. } => {
            None
        }
    })
}

/// The request body parsed as JSON (`Null` if it is not JSON).
pub fn body_json(req: &HttpRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap_or(Value::Null)
}

/// The value of header `name` (case-insensitive), excluding `Authorization`.
pub fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `Authorization` header value the driver will send (`Bearer <token>`).
pub fn authorization(req: &HttpRequest) -> Option<String> {
    req.bearer
        .as_ref()
        .map(|t| format!("Bearer {}", t.expose()))
}

// ---------------------------------------------------------------------------------------
// Transcripts
// ---------------------------------------------------------------------------------------

fn kind_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::Register => "register",
        RequestKind::Heartbeat => "heartbeat",
        RequestKind::InboxPoll => "inbox",
        RequestKind::Tool => "tool",
    }
}

fn first_words(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let head = words.iter().take(n).copied().collect::<Vec<_>>().join(" ");
    if words.len() > n {
        format!("{head} …")
    } else {
        head
    }
}

fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .and_then(|i| after_scheme.get(i..))
        .unwrap_or("/")
}

/// One line for an action: kind, url path, level, first words of messages.
pub fn render_action(action: &Action) -> String {
    match action {
        Action::SendHttp(r) => format!(
            "SEND #{} {} {} {}",
            r.id.0,
            r.method.as_str(),
            url_path(&r.url),
            kind_name(r.kind)
        ),
        Action::Log(l) => format!("LOG {} {}", l.level.as_str(), first_words(&l.message, 10)),
        Action::Persist(p) => format!("PERSIST #{} {:?}", p.id.0, p.file),
        Action::TokenChanged { .. } => "TOKEN_CHANGED".to_owned(),
        Action::Fatal {
            reason, message, ..
        } => format!(
            "FATAL exit={} {}",
            reason.exit_code(),
            first_words(message, 10)
        ),
    }
}

fn render_input(input: &Input, sent: &BTreeMap<RequestId, HttpRequest>) -> String {
    let kind_of = |id: &RequestId| sent.get(id).map_or("unknown", |r| kind_name(r.kind));
    match input {
        Input::HttpResponse {
            id,
            status,
            retry_after,
            ..
        } => match retry_after {
            Some(ra) => format!(
                "<- #{} {} {status} retry-after={}s",
                id.0,
                kind_of(id),
                ra.as_secs()
            ),
            None => format!("<- #{} {} {status}", id.0, kind_of(id)),
        },
        Input::HttpFailed { id, error } => {
            format!("<- #{} {} failed {:?}", id.0, kind_of(id), error.kind)
        }
        Input::PersistDone { id, result } => match result {
            Ok(()) => format!("<- persist #{} ok", id.0),
            Err(_) => format!("<- persist #{} error", id.0),
        },
        Input::Shutdown => "<- shutdown".to_owned(),
    }
}

/// A compact transcript, one line per input and action, prefixed with whole simulated
/// seconds (jitter is below one second, so grid times read as multiples of the interval).
/// Timeouts are not listed; the actions they cause carry their time.
pub fn render_events(events: &[Event], sent: &BTreeMap<RequestId, HttpRequest>) -> String {
    let mut out = String::new();
    for e in events {
        let line = match &e.kind {
            EventKind::Input(i) => render_input(i, sent),
            EventKind::Timeout => continue,
            EventKind::Action(a) => format!("-> {}", render_action(a)),
        };
        out.push_str(&format!("{:>5}s {line}\n", e.at.as_secs()));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Ops and their byte encoding
// ---------------------------------------------------------------------------------------

/// A canned response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Zero bytes.
    Empty,
    /// `{"status":"ok"}`.
    StatusOk,
    /// `{"status":"ok","platform_inbound_secret":"inbound-secret-<n % 4>"}`.
    Secret(u8),
    /// The secret field is `""`.
    EmptySecret,
    /// The secret field is whitespace.
    BlankSecret,
    /// The secret field is a number.
    NonStringSecret,
    /// Not JSON at all.
    NonJson,
    /// A JSON list.
    JsonList,
    /// A register answer minting `minted-token-<n % 3>-…` plus a secret.
    Minted(u8),
    /// An error body echoing both the configured and the current token, with control chars.
    EchoToken,
    /// Invalid UTF-8 and control bytes.
    Garbage(u8),
    /// `190 + n % 20` four-byte characters, then the current token, then filler: probes the
    /// excerpt window's redaction at its boundary.
    Large(u8),
}

impl BodyKind {
    /// The body bytes, given the configured and the current token.
    pub fn bytes(self, configured_token: &str, current_token: &str) -> Vec<u8> {
        match self {
            BodyKind::Empty => Vec::new(),
            BodyKind::StatusOk => br#"{"status":"ok"}"#.to_vec(),
            BodyKind::Secret(_) | BodyKind::Minted(_) => {
                let mut v = json!({ "status": "ok" });
                if let (Some(obj), Some(s)) = (v.as_object_mut(), self.inbound_secret()) {
                    obj.insert("platform_inbound_secret".to_owned(), Value::String(s));
                    if let Some(t) = self.minted_token() {
                        obj.insert("auth_token".to_owned(), Value::String(t));
                    }
                }
                v.to_string().into_bytes()
            }
            BodyKind::EmptySecret => br#"{"status":"ok","platform_inbound_secret":""}"#.to_vec(),
            BodyKind::BlankSecret => br#"{"status":"ok","platform_inbound_secret":"   "}"#.to_vec(),
            BodyKind::NonStringSecret => br#"{"status":"ok","platform_inbound_secret":42}"#.to_vec(),
            BodyKind::NonJson => b"<html>502 Bad Gateway</html>".to_vec(),
            BodyKind::JsonList => br#"["unexpected","list"]"#.to_vec(),
            BodyKind::EchoToken => {
                format!("{{\"error\":\"invalid token {configured_token}\",\r\n\t\"bearer\":\"{current_token}\"}}\u{7}").into_bytes()
            }
            BodyKind::Garbage(n) => {
                let mut v = vec![0xff, 0xfe, 0x00, 0x1b, b'[', b'2', b'J', 0xc3];
                v.extend(std::iter::repeat_n(n, usize::from(n % 32)));
                v
            }
            BodyKind::Large(n) => {
                let mut s = "🦀".repeat(190 + usize::from(n % 20));
                s.push_str(current_token);
                s.push_str(&"x".repeat(4096));
                s.into_bytes()
            }
        }
    }

    /// The inbound secret a 2xx answer with this body delivers.
    pub fn inbound_secret(self) -> Option<String> {
        match self {
            BodyKind::Secret(n) | BodyKind::Minted(n) => Some(format!("inbound-secret-{}", n % 4)),
            BodyKind::Empty
            | BodyKind::StatusOk
            | BodyKind::EmptySecret
            | BodyKind::BlankSecret
            | BodyKind::NonStringSecret
            | BodyKind::NonJson
            | BodyKind::JsonList
            | BodyKind::EchoToken
            | BodyKind::Garbage(_)
            | BodyKind::Large(_) => None,
        }
    }

    /// The token a 2xx register answer with this body mints.
    pub fn minted_token(self) -> Option<String> {
        match self {
            BodyKind::Minted(n) => Some(format!("minted-token-{}-9b1e4c7d2a", n % 3)),
            BodyKind::Empty
            | BodyKind::StatusOk
            | BodyKind::Secret(_)
            | BodyKind::EmptySecret
            | BodyKind::BlankSecret
            | BodyKind::NonStringSecret
            | BodyKind::NonJson
            | BodyKind::JsonList
            | BodyKind::EchoToken
            | BodyKind::Garbage(_)
            | BodyKind::Large(_) => None,
        }
    }
}

/// One step of a scripted or fuzzed scenario. `slot` picks among the *currently*
/// in-flight request ids (ascending) modulo their count, so most answers hit live ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Move the clock forward by `ms` milliseconds.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Jump the clock to `poll_timeout()`.
    AdvanceToNextTimeout,
    /// Answer an in-flight request with an HTTP status.
    RespondStatus {
        /// Which in-flight request.
        slot: u8,
        /// Status code.
        status: u16,
        /// `Retry-After` in seconds.
        retry_after: Option<u8>,
        /// Body.
        body: BodyKind,
    },
    /// Answer the newest in-flight request; if none, first advance to the next timeout.
    /// One `Cycle` is one heartbeat round trip once the session is steady.
    Cycle {
        /// Status code.
        status: u16,
        /// Body.
        body: BodyKind,
    },
    /// Fail an in-flight request with a transport error (`kind % 5`).
    RespondTransport {
        /// Which in-flight request.
        slot: u8,
        /// Error kind selector.
        kind: u8,
    },
    /// Answer an id that is not in flight (skipped if it happens to be live).
    RespondBogusId(u64),
    /// Answer a request that was already answered or timed out (a late answer).
    RespondSettled {
        /// Which settled request.
        slot: u8,
        /// Status code.
        status: u16,
    },
    /// Complete a pending persist successfully (an unknown id if none is pending).
    PersistOk {
        /// Which pending persist.
        slot: u8,
    },
    /// Fail a pending persist (an unknown id if none is pending).
    PersistErr {
        /// Which pending persist.
        slot: u8,
    },
    /// `handle_timeout(now)` when nothing is due.
    SpuriousTimeout,
    /// `handle_timeout(now - back_ms)`: a clock that went backwards.
    StaleTimeout {
        /// Milliseconds into the past.
        back_ms: u16,
    },
    /// `Input::Shutdown`.
    Shutdown,
}

/// Statuses a status byte selects; index 15 means "a raw u16 follows".
const STATUS_TABLE: [u16; 15] = [
    200, 401, 403, 500, 503, 429, 200, 204, 401, 400, 404, 408, 302, 100, 599,
];
const RAW_STATUS: u8 = 15;

/// Positional little-endian reader; past the end it yields zeros, so every byte string
/// decodes to *some* script and a truncated op still means something.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.u8();
        }
        u64::from_le_bytes(bytes)
    }

    fn status(&mut self) -> u16 {
        let b = self.u8() % 16;
        match STATUS_TABLE.get(usize::from(b)) {
            Some(s) => *s,
            None => self.u16(),
        }
    }

    fn retry_after(&mut self) -> Option<u8> {
        let b = self.u8();
        if b < 128 { None } else { Some(b - 128) }
    }

    fn body(&mut self) -> BodyKind {
        match self.u8() % 12 {
            0 => BodyKind::Empty,
            1 => BodyKind::StatusOk,
            2 => BodyKind::Secret(self.u8()),
            3 => BodyKind::EmptySecret,
            4 => BodyKind::BlankSecret,
            5 => BodyKind::NonStringSecret,
            6 => BodyKind::NonJson,
            7 => BodyKind::JsonList,
            8 => BodyKind::Minted(self.u8()),
            9 => BodyKind::EchoToken,
            10 => BodyKind::Garbage(self.u8()),
            _ => BodyKind::Large(self.u8()),
        }
    }

    fn op(&mut self) -> Op {
        match self.u8() % 16 {
            0 => Op::Advance { ms: self.u16() },
            1 | 2 => Op::AdvanceToNextTimeout,
            3..=5 => Op::RespondStatus {
                slot: self.u8(),
                status: self.status(),
                retry_after: self.retry_after(),
                body: self.body(),
            },
            6 | 14 => Op::Cycle {
                status: self.status(),
                body: self.body(),
            },
            7 => Op::RespondTransport {
                slot: self.u8(),
                kind: self.u8(),
            },
            8 => Op::RespondBogusId(self.u64()),
            9 => Op::RespondSettled {
                slot: self.u8(),
                status: self.status(),
            },
            10 => Op::PersistOk { slot: self.u8() },
            11 => Op::PersistErr { slot: self.u8() },
            12 => Op::SpuriousTimeout,
            13 => Op::StaleTimeout {
                back_ms: self.u16(),
            },
            _ => Op::Shutdown,
        }
    }
}

/// Decodes a byte string into at most [`MAX_OPS`] ops. Total: never fails.
pub fn decode_ops(data: &[u8]) -> Vec<Op> {
    let mut r = Reader { data };
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_OPS {
        ops.push(r.op());
    }
    ops
}

fn encode_status(out: &mut Vec<u8>, status: u16) {
    match STATUS_TABLE
        .iter()
        .position(|s| *s == status)
        .and_then(|i| u8::try_from(i).ok())
    {
        Some(i) => out.push(i),
        None => {
            out.push(RAW_STATUS);
            out.extend_from_slice(&status.to_le_bytes());
        }
    }
}

fn encode_body(out: &mut Vec<u8>, body: BodyKind) {
    match body {
        BodyKind::Empty => out.push(0),
        BodyKind::StatusOk => out.push(1),
        BodyKind::Secret(n) => out.extend_from_slice(&[2, n]),
        BodyKind::EmptySecret => out.push(3),
        BodyKind::BlankSecret => out.push(4),
        BodyKind::NonStringSecret => out.push(5),
        BodyKind::NonJson => out.push(6),
        BodyKind::JsonList => out.push(7),
        BodyKind::Minted(n) => out.extend_from_slice(&[8, n]),
        BodyKind::EchoToken => out.push(9),
        BodyKind::Garbage(n) => out.extend_from_slice(&[10, n]),
        BodyKind::Large(n) => out.extend_from_slice(&[11, n]),
    }
}

/// Encodes ops so that `decode_ops(&encode_ops(ops)) == ops` (for ops whose `retry_after`
/// is at most 127, which is every op `decode_ops` produces). Used to write fuzz corpora.
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match *op {
            Op::Advance { ms } => {
                out.push(0);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Op::AdvanceToNextTimeout => out.push(1),
            Op::RespondStatus {
                slot,
                status,
                retry_after,
                body,
            } => {
                out.extend_from_slice(&[3, slot]);
                encode_status(&mut out, status);
                out.push(retry_after.map_or(0, |s| 128 | (s & 127)));
                encode_body(&mut out, body);
            }
            Op::Cycle { status, body } => {
                out.push(6);
                encode_status(&mut out, status);
                encode_body(&mut out, body);
            }
            Op::RespondTransport { slot, kind } => out.extend_from_slice(&[7, slot, kind]),
            Op::RespondBogusId(id) => {
                out.push(8);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Op::RespondSettled { slot, status } => {
                out.extend_from_slice(&[9, slot]);
                encode_status(&mut out, status);
            }
            Op::PersistOk { slot } => out.extend_from_slice(&[10, slot]),
            Op::PersistErr { slot } => out.extend_from_slice(&[11, slot]),
            Op::SpuriousTimeout => out.push(12),
            Op::StaleTimeout { back_ms } => {
                out.push(13);
                out.extend_from_slice(&back_ms.to_le_bytes());
            }
            Op::Shutdown => out.push(15),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The checked runner
// ---------------------------------------------------------------------------------------

/// What an op fed to the session, as the model classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Nothing (time moved, or the op had no target).
    Nothing,
    /// An HTTP response; `kind` is `None` when the id was not in flight.
    Response {
        /// Target id.
        id: RequestId,
        /// Kind of the live request answered.
        kind: Option<RequestKind>,
        /// Status.
        status: u16,
        /// Body.
        body: BodyKind,
    },
    /// A transport failure; `kind` is `None` when the id was not in flight.
    Transport {
        /// Target id.
        id: RequestId,
        /// Kind of the live request failed.
        kind: Option<RequestKind>,
    },
    /// A persist outcome; `file` is `None` when the id was not pending.
    Persist {
        /// Target id.
        id: PersistId,
        /// Success?
        ok: bool,
        /// File of the pending persist completed.
        file: Option<PersistFile>,
    },
    /// `handle_timeout`.
    Timeout,
    /// `Input::Shutdown`.
    Shutdown,
}

/// One session call made while applying an op, with what it produced.
#[derive(Debug, Clone)]
pub struct Step {
    /// Index of the op in the script.
    pub op_index: usize,
    /// Simulated time of the call.
    pub at: Duration,
    /// What was fed.
    pub delivered: Delivered,
    /// Actions drained afterwards.
    pub actions: Vec<Action>,
    /// Status after the call.
    pub status: SessionStatus,
    /// `poll_timeout()` after the drain, as an offset from the start.
    pub poll_timeout: Option<Duration>,
}

/// The outcome of [`run_ops`].
#[derive(Debug, Clone)]
pub struct Run {
    /// Every session call, in order.
    pub steps: Vec<Step>,
    /// The harness event trace (inputs, timeouts, actions).
    pub events: Vec<Event>,
    /// Final status.
    pub status: SessionStatus,
}

/// The fixed config of [`run_ops`]: [`FUZZ_WORKSPACE`], [`FUZZ_TOKEN`], 20 s / 10 s.
pub fn fuzz_config() -> SessionConfig {
    test_config(FUZZ_WORKSPACE, FUZZ_TOKEN)
}

/// True for the `n` at which the ladder must log an ERROR (spelled independently of
/// `escalation::classify`, which is what is being checked).
pub fn is_escalation_point(n: u32) -> bool {
    n == 3 || (n > 3 && (n - 3).is_multiple_of(20))
}

struct Checker {
    h: Harness,
    interval: Duration,
    configured_token: String,
    bearer: String,
    forbidden: Vec<String>,
    live: BTreeMap<RequestId, (RequestKind, Instant)>,
    settled: Vec<RequestId>,
    last_id: u64,
    pending_persists: BTreeMap<PersistId, PersistRequest>,
    secret_on_disk: Option<String>,
    secret_pending: Option<(PersistId, String)>,
    token_persist: Option<PersistId>,
    auth_failures: u32,
    expected_errors: u64,
    seen_errors: u64,
    heartbeats_sent: u64,
    heartbeats_ok: u64,
    terminal: bool,
    registered: bool,
    register_outcome: bool,
    /// Last heartbeat send and whether it went out on time (not after a late wake-up).
    last_beat: Option<(Instant, bool)>,
    /// The current `handle_timeout` call came after its deadline (the driver overslept).
    woke_late: bool,
    op_index: usize,
    steps: Vec<Step>,
}

impl Checker {
    fn new() -> Self {
        let cfg = fuzz_config();
        let interval = cfg.heartbeat_interval;
        let mut c = Checker {
            h: Harness::new(cfg),
            interval,
            configured_token: FUZZ_TOKEN.to_owned(),
            bearer: FUZZ_TOKEN.to_owned(),
            forbidden: vec![FUZZ_TOKEN.to_owned()],
            live: BTreeMap::new(),
            settled: Vec::new(),
            last_id: 0,
            pending_persists: BTreeMap::new(),
            secret_on_disk: None,
            secret_pending: None,
            token_persist: None,
            auth_failures: 0,
            expected_errors: 0,
            seen_errors: 0,
            heartbeats_sent: 0,
            heartbeats_ok: 0,
            terminal: false,
            registered: false,
            register_outcome: false,
            last_beat: None,
            woke_late: false,
            op_index: 0,
            steps: Vec::new(),
        };
        let actions = c.h.drain();
        let register_sent = sends(&actions)
            .iter()
            .any(|r| r.kind == RequestKind::Register);
        assert!(
            register_sent,
            "Session::new must queue the register request, got {actions:?}"
        );
        c.check_actions(&Delivered::Nothing, &actions);
        c.check_after_call(Delivered::Nothing, actions);
        c
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "invariant violated at op #{} (t={:?}): {what}",
            self.op_index,
            self.h.elapsed()
        );
    }

    fn ensure(&self, cond: bool, what: impl FnOnce() -> String) {
        if !cond {
            self.fail(&what());
        }
    }

    fn pick_live(&self, slot: u8) -> Option<RequestId> {
        let ids: Vec<RequestId> = self.h.session.in_flight().collect();
        ids.get(usize::from(slot) % ids.len().max(1)).copied()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Advance { ms } => self.h.now += Duration::from_millis(u64::from(ms)),
            Op::AdvanceToNextTimeout => self.jump_to_next_timeout(),
            Op::RespondStatus {
                slot,
                status,
                retry_after,
                body,
            } => {
                if let Some(id) = self.pick_live(slot) {
                    self.respond(
                        id,
                        status,
                        retry_after.map(|s| Duration::from_secs(u64::from(s))),
                        body,
                    );
                }
            }
            Op::Cycle { status, body } => {
                if self.live.is_empty() {
                    self.jump_to_next_timeout();
                    self.settle();
                }
                if let Some(id) = self.live.keys().next_back().copied() {
                    self.respond(id, status, None, body);
                }
            }
            Op::RespondTransport { slot, kind } => {
                if let Some(id) = self.pick_live(slot) {
                    self.transport(id, kind);
                }
            }
            Op::RespondBogusId(raw) => {
                let id = RequestId(raw);
                if !self.live.contains_key(&id) {
                    self.respond(id, 200, None, BodyKind::Secret(0));
                }
            }
            Op::RespondSettled { slot, status } => {
                let pick = self
                    .settled
                    .get(usize::from(slot) % self.settled.len().max(1))
                    .copied();
                if let Some(id) = pick {
                    self.respond(id, status, None, BodyKind::Minted(1));
                }
            }
            Op::PersistOk { slot } => self.persist(slot, true),
            Op::PersistErr { slot } => self.persist(slot, false),
            Op::SpuriousTimeout => self.quiet_timeout(self.h.now),
            Op::StaleTimeout { back_ms } => {
                let at = self
                    .h
                    .now
                    .checked_sub(Duration::from_millis(u64::from(back_ms)))
                    .unwrap_or(self.h.now);
                self.quiet_timeout(at);
            }
            Op::Shutdown => self.shutdown(),
        }
        self.settle();
    }

    fn jump_to_next_timeout(&mut self) {
        if let Some(at) = self.h.session.poll_timeout()
            && at > self.h.now
        {
            self.h.now = at;
        }
    }

    /// Fires `handle_timeout` while the deadline has passed. After one call the deadline
    /// must be in the future (or the session terminal): that is the progress invariant.
    fn settle(&mut self) {
        for round in 0..2 {
            match self.h.session.poll_timeout() {
                Some(at) if at <= self.h.now => {
                    self.ensure(round == 0, || {
                        "poll_timeout still <= now right after handle_timeout(now)".to_owned()
                    });
                    self.timeout();
                }
                Some(_) | None => return,
            }
        }
    }

    fn timeout(&mut self) {
        let now = self.h.now;
        self.woke_late = self.h.session.poll_timeout().is_some_and(|due| due < now);
        if !self.terminal {
            let expired: Vec<RequestId> = self
                .live
                .iter()
                .filter(|(_, (_, d))| *d <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some((kind, _)) = self.live.remove(&id) {
                    self.settled.push(id);
                    if kind == RequestKind::Register {
                        self.register_outcome = true;
                    }
                }
            }
        }
        let actions = self.h.handle_timeout();
        self.check_actions(&Delivered::Timeout, &actions);
        self.woke_late = false;
        self.check_after_call(Delivered::Timeout, actions);
    }

    /// A `handle_timeout` when nothing is due (possibly with a stale `now`) must be a no-op.
    fn quiet_timeout(&mut self, at: Instant) {
        let before = self.snapshot();
        self.h.events.push(Event {
            at: self.h.elapsed(),
            kind: EventKind::Timeout,
        });
        self.h.session.handle_timeout(at);
        let actions = self.h.drain();
        self.ensure(actions.is_empty(), || {
            format!("spurious handle_timeout emitted {actions:?}")
        });
        self.ensure(self.snapshot() == before, || {
            "spurious handle_timeout changed the session".to_owned()
        });
        self.check_after_call(Delivered::Timeout, actions);
    }

    fn snapshot(&self) -> (SessionStatus, Option<Instant>, Vec<RequestId>) {
        (
            self.h.session.status(),
            self.h.session.poll_timeout(),
            self.h.session.in_flight().collect(),
        )
    }

    fn respond(
        &mut self,
        id: RequestId,
        status: u16,
        retry_after: Option<Duration>,
        body: BodyKind,
    ) {
        let kind = if self.terminal {
            None
        } else {
            self.live.remove(&id).map(|(k, _)| k)
        };
        if kind.is_some() {
            self.settled.push(id);
        }
        let bytes = body.bytes(&self.configured_token, &self.bearer);
        let delivered = Delivered::Response {
            id,
            kind,
            status,
            body,
        };
        let input = Input::HttpResponse {
            id,
            status,
            retry_after,
            body: bytes,
        };
        match kind {
            None => self.ignored(input, delivered),
            Some(k) => {
                let ok = (200..300).contains(&status);
                match k {
                    RequestKind::Register => {
                        self.register_outcome = true;
                        if ok {
                            self.registered = true;
                        }
                    }
                    RequestKind::Heartbeat => self.heartbeat_outcome(status),
                    RequestKind::InboxPoll | RequestKind::Tool => {}
                }
                let actions = self.h.deliver(input);
                self.check_response_actions(k, status, body, &actions);
                self.check_actions(&delivered, &actions);
                self.check_after_call(delivered, actions);
            }
        }
    }

    fn heartbeat_outcome(&mut self, status: u16) {
        if (200..300).contains(&status) {
            self.auth_failures = 0;
            self.heartbeats_ok += 1;
        } else if status == 401 || status == 403 {
            self.auth_failures = self.auth_failures.saturating_add(1);
            if is_escalation_point(self.auth_failures) {
                self.expected_errors += 1;
            }
        }
    }

    /// What a live answer must produce beyond the generic checks: the ladder's logs, the
    /// fatal on register 401/403, and exactly the persists the secret model expects.
    fn check_response_actions(
        &mut self,
        kind: RequestKind,
        status: u16,
        body: BodyKind,
        actions: &[Action],
    ) {
        let ok = (200..300).contains(&status);
        let auth = status == 401 || status == 403;
        let fatal_expected = kind == RequestKind::Register && auth;
        let got_fatal = fatal(actions);
        self.ensure(got_fatal.is_some() == fatal_expected, || {
            format!("register {status}: fatal expected={fatal_expected}, got {actions:?}")
        });
        if let Some((reason, message)) = got_fatal {
            self.ensure(reason.exit_code() == 3, || {
                format!("fatal exit code {}", reason.exit_code())
            });
            self.ensure(
                message.contains(&status.to_string())
                    && message.contains(FUZZ_WORKSPACE)
                    && message.contains("Tokens tab"),
                || format!("fatal message not actionable: {message}"),
            );
        }
        if kind == RequestKind::Heartbeat && auth {
            let n = self.auth_failures;
            let warns = logs(actions, LogLevel::Warn).len();
            let errors = logs(actions, LogLevel::Error);
            let (want_warns, want_errors) = if n < 3 {
                (1, 0)
            } else if is_escalation_point(n) {
                (0, 1)
            } else {
                (0, 0)
            };
            self.ensure(warns == want_warns && errors.len() == want_errors && actions.len() == want_warns + want_errors, || {
                format!("auth failure #{n}: expected {want_warns} WARN + {want_errors} ERROR and nothing else, got {actions:?}")
            });
            for e in errors {
                let lower = e.to_lowercase();
                self.ensure(
                    lower.contains("revoked")
                        && lower.contains("tokens tab")
                        && e.contains(FUZZ_WORKSPACE),
                    || format!("escalation ERROR not actionable: {e}"),
                );
            }
        }
        // Expected persists, in the order the session emits them: token first, then secret.
        let mut expected: Vec<(PersistFile, String)> = Vec::new();
        if ok {
            if kind == RequestKind::Register
                && let Some(t) = body.minted_token()
                && t != self.bearer
            {
                expected.push((PersistFile::AuthToken, t));
            }
            if let Some(s) = body.inbound_secret() {
                let unchanged = self.secret_on_disk.as_deref() == Some(s.as_str())
                    || self.secret_pending.as_ref().map(|(_, v)| v.as_str()) == Some(s.as_str());
                if !unchanged {
                    expected.push((PersistFile::InboundSecret, s));
                }
            }
        }
        let got: Vec<(PersistFile, String)> = persists(actions)
            .iter()
            .map(|p| (p.file, p.value.expose().to_owned()))
            .collect();
        self.ensure(got == expected, || {
            format!("{kind:?} {status} {body:?}: persists {got:?}, expected {expected:?}")
        });
        for p in persists(actions) {
            match p.file {
                PersistFile::InboundSecret => {
                    self.secret_pending = Some((p.id, p.value.expose().to_owned()))
                }
                PersistFile::AuthToken => self.token_persist = Some(p.id),
                PersistFile::InboxState | PersistFile::InboxJournal => {
                    self.fail("the session must not write the inbox state")
                }
                PersistFile::LegacyInboxCursor => {
                    self.fail("nothing writes the original's cursor file")
                }
            }
        }
    }

    fn transport(&mut self, id: RequestId, selector: u8) {
        let kind = if self.terminal {
            None
        } else {
            self.live.remove(&id).map(|(k, _)| k)
        };
        let error_kind = match selector % 5 {
            0 => TransportErrorKind::Connect,
            1 => TransportErrorKind::Timeout,
            2 => TransportErrorKind::Io,
            3 => TransportErrorKind::Protocol,
            _ => TransportErrorKind::BodyTooLarge,
        };
        // Drivers must not put secrets in the message; the core redacts anyway. Check it.
        let message = format!(
            "connection reset (request carried {} / {})",
            self.configured_token, self.bearer
        );
        let input = Input::HttpFailed {
            id,
            error: TransportError {
                kind: error_kind,
                message,
            },
        };
        let delivered = Delivered::Transport { id, kind };
        match kind {
            None => self.ignored(input, delivered),
            Some(k) => {
                self.settled.push(id);
                if k == RequestKind::Register {
                    self.register_outcome = true;
                }
                let actions = self.h.deliver(input);
                let warns = logs(&actions, LogLevel::Warn).len();
                self.ensure(warns == 1, || {
                    format!("transport failure must log one WARN, got {actions:?}")
                });
                self.check_actions(&delivered, &actions);
                self.check_after_call(delivered, actions);
            }
        }
    }

    fn persist(&mut self, slot: u8, ok: bool) {
        let pending: Vec<PersistId> = self.pending_persists.keys().copied().collect();
        let unknown = PersistId(1_000_000 + u64::from(slot));
        let id = pending
            .get(usize::from(slot) % pending.len().max(1))
            .copied()
            .unwrap_or(unknown);
        let file = self.pending_persists.remove(&id).map(|p| p.file);
        let result = if ok {
            Ok(())
        } else {
            Err("No space left on device (os error 28)".to_owned())
        };
        let input = Input::PersistDone {
            id,
            result: result.map_err(PersistError::from),
        };
        let delivered = Delivered::Persist { id, ok, file };
        // The session tracks only the newest write of each file; a superseded write's
        // outcome (or any outcome once terminal) is counted and ignored.
        let is_secret =
            !self.terminal && self.secret_pending.as_ref().is_some_and(|(p, _)| *p == id);
        let is_token = !self.terminal && self.token_persist == Some(id);
        if !(is_secret || is_token) {
            self.ignored(input, delivered);
            return;
        }
        if is_secret {
            let value = self.secret_pending.take().map(|(_, v)| v);
            if ok {
                self.secret_on_disk = value;
            }
        } else {
            self.token_persist = None;
            if !ok {
                self.expected_errors += 1;
            }
        }
        let actions = self.h.deliver(input);
        let want_logs = usize::from(!ok);
        self.ensure(actions.len() == want_logs, || {
            format!("persist outcome ok={ok}: expected {want_logs} log line(s), got {actions:?}")
        });
        if is_secret && !ok {
            self.ensure(logs(&actions, LogLevel::Warn).len() == 1, || {
                format!("failed secret write must WARN, got {actions:?}")
            });
        }
        self.check_actions(&delivered, &actions);
        self.check_after_call(delivered, actions);
    }

    fn shutdown(&mut self) {
        if self.terminal {
            self.ignored(Input::Shutdown, Delivered::Shutdown);
            return;
        }
        let actions = self.h.deliver(Input::Shutdown);
        self.ensure(
            actions.len() == 1 && logs(&actions, LogLevel::Info).len() == 1,
            || format!("shutdown must log one INFO line only, got {actions:?}"),
        );
        self.check_actions(&Delivered::Shutdown, &actions);
        self.enter_terminal();
        self.check_after_call(Delivered::Shutdown, actions);
    }

    fn enter_terminal(&mut self) {
        self.terminal = true;
        self.settled.extend(self.live.keys().copied());
        self.live.clear();
    }

    /// Feeds an input the session must ignore: no action, nothing changes but the counter.
    fn ignored(&mut self, input: Input, delivered: Delivered) {
        let (mut status, timeout, in_flight) = self.snapshot();
        let actions = self.h.deliver(input);
        self.ensure(actions.is_empty(), || {
            format!("ignored input {delivered:?} emitted {actions:?}")
        });
        status.ignored_inputs += 1;
        self.ensure(self.snapshot() == (status, timeout, in_flight), || {
            format!("ignored input {delivered:?} changed more than the ignored counter")
        });
        self.check_after_call(delivered, actions);
    }

    /// Checks every action of one drain, in order, against the model.
    fn check_actions(&mut self, ctx: &Delivered, actions: &[Action]) {
        let now = self.h.now;
        for action in actions {
            self.ensure(!self.terminal, || {
                format!("action after the session became terminal: {action:?}")
            });
            let debug = format!("{action:?}");
            for t in &self.forbidden {
                self.ensure(!debug.contains(t.as_str()), || {
                    format!("a token leaked into {debug}")
                });
            }
            match action {
                Action::SendHttp(req) => self.check_send(req, now),
                Action::Log(line) => {
                    self.ensure(line.workspace_id == FUZZ_WORKSPACE, || {
                        format!("log for the wrong workspace: {line:?}")
                    });
                    if line.level == LogLevel::Error {
                        self.seen_errors += 1;
                    }
                }
                Action::Persist(p) => {
                    self.ensure(p.workspace_id == FUZZ_WORKSPACE, || {
                        format!("persist for the wrong workspace: {p:?}")
                    });
                    self.ensure(matches!(ctx, Delivered::Response { .. }), || {
                        format!("persist outside a response: {ctx:?}")
                    });
                    self.pending_persists.insert(p.id, p.clone());
                }
                Action::TokenChanged {
                    workspace_id,
                    token,
                } => {
                    let ok = matches!(
                        ctx,
                        Delivered::Response {
                            kind: Some(RequestKind::Register),
                            status: 200..=299,
                            ..
                        }
                    );
                    self.ensure(ok && workspace_id == FUZZ_WORKSPACE, || {
                        format!("unexpected TokenChanged after {ctx:?}")
                    });
                    self.bearer = token.expose().to_owned();
                    self.forbidden.push(self.bearer.clone());
                }
                Action::Fatal { workspace_id, .. } => {
                    self.ensure(workspace_id == FUZZ_WORKSPACE, || {
                        "fatal for the wrong workspace".to_owned()
                    });
                    self.enter_terminal();
                }
            }
        }
    }

    fn check_send(&mut self, req: &HttpRequest, now: Instant) {
        self.ensure(req.id.0 > self.last_id, || {
            format!("request id {} not fresh (last {})", req.id.0, self.last_id)
        });
        self.last_id = req.id.0;
        let path = match req.kind {
            RequestKind::Register => "/registry/register",
            RequestKind::Heartbeat => "/registry/heartbeat",
            RequestKind::InboxPoll | RequestKind::Tool => {
                self.fail("the session must not poll the inbox or call tools")
            }
        };
        self.ensure(
            req.method == Method::Post && req.url == format!("{PLATFORM}{path}"),
            || format!("bad request line {req:?}"),
        );
        self.ensure(header(req, "Origin") == Some(PLATFORM), || {
            format!("missing Origin: {req:?}")
        });
        self.ensure(
            req.bearer.as_ref().map(Secret::expose) == Some(self.bearer.as_str()),
            || "request carries a stale bearer".to_owned(),
        );
        self.ensure(req.deadline > now, || {
            "request deadline not in the future".to_owned()
        });
        let body = String::from_utf8_lossy(&req.body);
        for t in &self.forbidden {
            self.ensure(!body.contains(t.as_str()), || {
                "a token leaked into a request body".to_owned()
            });
        }
        let json = body_json(req);
        match req.kind {
            RequestKind::Register => {
                self.ensure(!self.registered, || {
                    "register sent again after a 2xx".to_owned()
                });
                let other = self.live.values().any(|(k, _)| *k == RequestKind::Register);
                self.ensure(!other, || "two registers in flight".to_owned());
                self.ensure(
                    json["id"] == FUZZ_WORKSPACE && json["delivery_mode"] == "poll",
                    || format!("bad register body {json}"),
                );
            }
            RequestKind::Heartbeat => {
                self.ensure(self.register_outcome, || {
                    "heartbeat before register's outcome".to_owned()
                });
                let other = self
                    .live
                    .values()
                    .any(|(k, _)| *k == RequestKind::Heartbeat);
                self.ensure(!other, || "two heartbeats in flight".to_owned());
                // A beat sent late (the driver overslept) is followed by the next grid tick,
                // which may be closer than the interval: skip-not-drift by design. Spacing
                // is only owed after a punctual beat.
                if let Some((prev, true)) = self.last_beat {
                    let gap = now.saturating_duration_since(prev);
                    let min = self.interval - self.interval / 20;
                    self.ensure(gap >= min, || {
                        format!(
                            "heartbeats only {gap:?} apart (interval {:?})",
                            self.interval
                        )
                    });
                }
                self.last_beat = Some((now, !self.woke_late));
                self.heartbeats_sent += 1;
                let uptime = self.h.elapsed().as_secs();
                self.ensure(
                    json["workspace_id"] == FUZZ_WORKSPACE && json["uptime_seconds"] == uptime,
                    || format!("bad heartbeat body {json}"),
                );
            }
            RequestKind::InboxPoll | RequestKind::Tool => {}
        }
        self.live.insert(req.id, (req.kind, req.deadline));
    }

    /// Model/session agreement after every call, then the call is recorded.
    fn check_after_call(&mut self, delivered: Delivered, actions: Vec<Action>) {
        let status = self.h.session.status();
        let poll = self.h.session.poll_timeout();
        let now = self.h.now;
        self.ensure(poll.is_none_or(|t| t > now), || {
            format!("poll_timeout {poll:?} not after now with nothing queued")
        });
        self.ensure(poll.is_none() == self.terminal, || {
            format!("poll_timeout {poll:?} but terminal={}", self.terminal)
        });
        let phase_terminal = match status.phase {
            Phase::Running => false,
            Phase::Stopped | Phase::Failed(_) => true,
        };
        self.ensure(phase_terminal == self.terminal, || {
            format!(
                "phase {:?} but model terminal={}",
                status.phase, self.terminal
            )
        });
        let in_flight: Vec<RequestId> = self.h.session.in_flight().collect();
        let model: Vec<RequestId> = self.live.keys().copied().collect();
        self.ensure(in_flight == model, || {
            format!("in flight {in_flight:?}, model {model:?}")
        });
        self.ensure(
            status.consecutive_auth_failures == self.auth_failures,
            || {
                format!(
                    "auth counter {} but model {}",
                    status.consecutive_auth_failures, self.auth_failures
                )
            },
        );
        self.ensure(status.registered == self.registered, || {
            "registered flag disagrees with the model".to_owned()
        });
        self.ensure(
            status.heartbeats_sent == self.heartbeats_sent
                && status.heartbeats_ok == self.heartbeats_ok,
            || {
                format!(
                    "heartbeat counters {status:?} vs model sent={} ok={}",
                    self.heartbeats_sent, self.heartbeats_ok
                )
            },
        );
        self.ensure(self.seen_errors == self.expected_errors, || {
            format!(
                "{} ERROR lines, expected {}",
                self.seen_errors, self.expected_errors
            )
        });
        let poll_timeout = poll.map(|t| t.saturating_duration_since(self.h.start));
        self.steps.push(Step {
            op_index: self.op_index,
            at: self.h.elapsed(),
            delivered,
            actions,
            status,
            poll_timeout,
        });
    }
}

/// Applies `ops` to a session with the fixed [`fuzz_config`] and [`DEFAULT_SEED`],
/// checking every invariant listed in the module docs after each session call.
/// Panics (naming the op) on the first violation.
pub fn run_ops(ops: &[Op]) -> Run {
    let mut c = Checker::new();
    for (i, op) in ops.iter().enumerate() {
        c.op_index = i;
        c.apply(*op);
    }
    Run {
        steps: c.steps,
        events: c.h.events,
        status: c.h.session.status(),
    }
}

/// The fuzz entry point: decode, run checked, and replay for determinism.
pub fn session_ops_case(data: &[u8]) {
    let ops = decode_ops(data);
    let first = run_ops(&ops);
    let second = run_ops(&ops);
    assert!(
        first.events == second.events,
        "same ops, different event traces (nondeterminism)"
    );
}

/// Named scripts committed as `fuzz/corpus/session_ops/<name>` (see the tests crate).
pub fn corpus_scenarios() -> Vec<(&'static str, Vec<Op>)> {
    let ok = |body| Op::Cycle { status: 200, body };
    let cycles = |status: u16, n: usize| {
        vec![
            Op::Cycle {
                status,
                body: BodyKind::Empty
            };
            n
        ]
    };
    let registered = || vec![ok(BodyKind::StatusOk)];
    let with = |mut head: Vec<Op>, tail: Vec<Op>| {
        head.extend(tail);
        head
    };
    vec![
        (
            "happy_path",
            with(
                registered(),
                vec![
                    ok(BodyKind::Secret(1)),
                    Op::PersistOk { slot: 0 },
                    ok(BodyKind::Secret(1)),
                    ok(BodyKind::StatusOk),
                ],
            ),
        ),
        ("auth_401_x3", with(registered(), cycles(401, 3))),
        ("auth_401_x23", with(registered(), cycles(401, 23))),
        (
            "auth_403_x25_then_200",
            with(
                registered(),
                with(
                    cycles(403, 25),
                    vec![
                        ok(BodyKind::StatusOk),
                        Op::Cycle {
                            status: 401,
                            body: BodyKind::Empty,
                        },
                    ],
                ),
            ),
        ),
        (
            "auth_resets_on_200",
            with(
                registered(),
                with(
                    cycles(401, 2),
                    with(vec![ok(BodyKind::StatusOk)], cycles(401, 2)),
                ),
            ),
        ),
        (
            "rate_limited_retry_after",
            with(
                registered(),
                vec![
                    Op::RespondStatus {
                        slot: 0,
                        status: 429,
                        retry_after: Some(95),
                        body: BodyKind::NonJson,
                    },
                    Op::Cycle {
                        status: 200,
                        body: BodyKind::Empty,
                    },
                ],
            ),
        ),
        (
            "register_401_fatal",
            vec![
                Op::RespondStatus {
                    slot: 0,
                    status: 401,
                    retry_after: None,
                    body: BodyKind::EchoToken,
                },
                Op::Cycle {
                    status: 200,
                    body: BodyKind::Empty,
                },
                Op::AdvanceToNextTimeout,
            ],
        ),
        (
            "register_503_then_retry",
            vec![
                Op::RespondStatus {
                    slot: 0,
                    status: 503,
                    retry_after: None,
                    body: BodyKind::Garbage(7),
                },
                Op::Cycle {
                    status: 500,
                    body: BodyKind::Large(10),
                },
                Op::AdvanceToNextTimeout,
                Op::RespondStatus {
                    slot: 0,
                    status: 200,
                    retry_after: None,
                    body: BodyKind::Minted(0),
                },
                Op::PersistErr { slot: 0 },
                Op::Cycle {
                    status: 500,
                    body: BodyKind::EchoToken,
                },
            ],
        ),
        (
            "transport_failures_and_timeouts",
            vec![
                Op::RespondTransport { slot: 0, kind: 0 },
                Op::RespondTransport { slot: 0, kind: 2 },
                Op::AdvanceToNextTimeout,
                Op::AdvanceToNextTimeout,
                Op::Advance { ms: 30_000 },
                Op::RespondSettled {
                    slot: 1,
                    status: 200,
                },
                Op::RespondBogusId(999),
                Op::SpuriousTimeout,
                Op::StaleTimeout { back_ms: 5000 },
            ],
        ),
        (
            "shutdown_mid_flight",
            vec![
                ok(BodyKind::Secret(2)),
                Op::Shutdown,
                Op::RespondSettled {
                    slot: 1,
                    status: 200,
                },
                Op::PersistOk { slot: 0 },
                Op::AdvanceToNextTimeout,
                Op::Shutdown,
            ],
        ),
    ]
}
