//! One workspace's lifecycle with the platform: register once (retrying transient
//! failures), then heartbeat on a fixed cadence, escalating consecutive auth failures and
//! persisting the inbound secret the platform hands out.
//!
//! ```text
//!   new() ──► Running { registered: false } ──register 2xx──► Running { registered: true }
//!                 │   │  register 5xx/429/transport: warn, retry with backoff,
//!                 │   │  heartbeats start anyway
//!                 │   └─ register 401/403 ──► Failed(RegisterRejected)  (Action::Fatal)
//!                 └─ Input::Shutdown (any time) ──► Stopped
//! ```
//!
//! `Failed` and `Stopped` are terminal: they absorb every later input and emit nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::action::{
    Action, FatalReason, LogLevel, LogLine, PersistError, PersistFile, PersistId, PersistRequest,
};
use crate::escalation::{self, AuthFailureLog};
use crate::heartbeat_schedule::HeartbeatSchedule;
use crate::http::{Method, RequestId, RequestKind, TransportError, TransportErrorKind};
use crate::inflight::InFlightTable;
use crate::input::Input;
use crate::platform_request::{Body, PlatformRequests};
use crate::platform_url::PlatformUrl;
use crate::redact::redact_known;
use crate::retry::{Backoff, RetryAfterCap, StatusPolicy};
use crate::rng::Rng;
use crate::sanitize::log_excerpt;
use crate::secret::Secret;
use crate::timer::{LastNow, Timer, TimerTable};

/// Default per-request deadline (register; heartbeats use `min(this, ¾ interval)`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default heartbeat cadence.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(20);
/// Longest `current_task` sent, in characters (a summary line on the canvas).
const MAX_CURRENT_TASK_CHARS: usize = 256;

/// Everything one session needs; built from a validated config (or directly in tests).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Normalised platform URL.
    pub platform: PlatformUrl,
    /// Workspace id.
    pub workspace_id: String,
    /// Bearer token.
    pub token: Secret,
    /// Where the token came from, named in operator messages so the operator knows which
    /// token to replace, e.g.
    /// `MOLECULE_WORKSPACE_TOKEN_FILE ('/run/tok')`.
    pub token_source: String,
    /// Agent card sent at register.
    pub agent_card: Value,
    /// Heartbeat cadence.
    pub heartbeat_interval: Duration,
    /// Per-request deadline.
    pub request_timeout: Duration,
    /// The inbound secret already on disk, so a restart does not rewrite an unchanged file.
    pub known_inbound_secret: Option<Secret>,
    /// A token saved by an earlier run (the platform minted it, see
    /// [`Action::TokenChanged`]) and where it is kept. If register rejects `token`, the
    /// session switches to this one once and registers again before giving up: after a
    /// mint the configured token is stale, and failing with the good one on disk would be
    /// absurd.
    pub fallback_token: Option<(Secret, String)>,
}

impl SessionConfig {
    /// A config with default cadence and timeouts.
    pub fn new(
        platform: PlatformUrl,
        workspace_id: impl Into<String>,
        token: Secret,
        token_source: impl Into<String>,
        agent_card: Value,
    ) -> Self {
        SessionConfig {
            platform,
            workspace_id: workspace_id.into(),
            token,
            token_source: token_source.into(),
            agent_card,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            known_inbound_secret: None,
            fallback_token: None,
        }
    }
}

/// Coarse lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Registering and/or heartbeating.
    Running,
    /// Shut down on request.
    Stopped,
    /// Cannot continue.
    Failed(FatalReason),
}

/// A snapshot for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    /// Phase.
    pub phase: Phase,
    /// Register has succeeded at least once.
    pub registered: bool,
    /// Current run of consecutive heartbeat 401/403 answers.
    pub consecutive_auth_failures: u32,
    /// Heartbeats sent so far.
    pub heartbeats_sent: u64,
    /// Heartbeats answered 2xx.
    pub heartbeats_ok: u64,
    /// Responses that matched no in-flight request (late, duplicate or bogus) and were ignored.
    pub ignored_inputs: u64,
}

#[derive(Debug, Clone)]
struct InFlight {
    kind: RequestKind,
    deadline: Instant,
    /// A `current_task` report beat ([`Session::report_current_task`]): it never holds a
    /// regular beat back (a report is held behind any beat instead, see `held_report`).
    report: bool,
}

#[derive(Debug, Clone, Default)]
struct SecretTracker {
    /// Last value known to be on disk.
    on_disk: Option<Secret>,
    /// A write in progress.
    pending: Option<(PersistId, Secret)>,
}

/// The per-workspace session machine. See the crate docs for the driver contract.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    token: Secret,
    phase: Phase,
    started_at: Instant,
    last_now: LastNow,
    rng: Rng,
    next_request: u64,
    next_persist: u64,
    inflight: InFlightTable<InFlight>,
    timers: TimerTable,
    actions: VecDeque<Action>,
    registered: bool,
    register_attempts: u32,
    heartbeat: Option<HeartbeatSchedule>,
    beat_template: BeatTemplate,
    auth_failures: u32,
    secret: SecretTracker,
    token_persist: Option<PersistId>,
    heartbeats_sent: u64,
    heartbeats_ok: u64,
    ignored_inputs: u64,
    /// The latest `current_task` summary asked for while a heartbeat was still out. Beats
    /// travel on separate connections, so two beats out at once can reach the platform in
    /// either order and the canvas would keep the older task (or lose the newer one to a
    /// regular beat that arrives after it); held here, it goes once no beat is out, and a
    /// newer summary replaces an older one still held.
    held_report: Option<Box<str>>,
}

impl Session {
    /// Creates the session and queues the register request.
    pub fn new(cfg: SessionConfig, now: Instant, seed: u64) -> Self {
        let requests = PlatformRequests::new(cfg.platform.clone());
        Self::with_requests(cfg, requests, now, seed)
    }

    /// [`Session::new`] with a request builder shared with other machines of the same
    /// platform (`PlatformRequests::reuse`).
    pub(crate) fn with_requests(
        mut cfg: SessionConfig,
        requests: PlatformRequests,
        now: Instant,
        seed: u64,
    ) -> Self {
        let token = cfg.token.clone();
        let secret = SecretTracker {
            on_disk: cfg.known_inbound_secret.clone(),
            pending: None,
        };
        let beat_template = BeatTemplate::new(&cfg, requests);
        // Rendered into the register body above; nothing else reads it.
        cfg.agent_card = Value::Null;
        let mut s = Session {
            cfg,
            token,
            phase: Phase::Running,
            started_at: now,
            last_now: LastNow::new(now),
            rng: Rng::new(seed),
            next_request: 0,
            next_persist: 0,
            inflight: InFlightTable::default(),
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            registered: false,
            register_attempts: 0,
            heartbeat: None,
            beat_template,
            auth_failures: 0,
            secret,
            token_persist: None,
            heartbeats_sent: 0,
            heartbeats_ok: 0,
            ignored_inputs: 0,
            held_report: None,
        };
        s.send_register(now);
        // Arm the register's deadline now: without it `poll_timeout()` would be `None`
        // (the "terminal" signal) while the register is in flight.
        s.refresh_deadline_timer();
        s
    }

    /// The workspace this session serves.
    pub fn workspace_id(&self) -> &str {
        &self.cfg.workspace_id
    }

    /// The token currently in use (changes if the platform mints one at register).
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// Status snapshot.
    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            phase: self.phase,
            registered: self.registered,
            consecutive_auth_failures: self.auth_failures,
            heartbeats_sent: self.heartbeats_sent,
            heartbeats_ok: self.heartbeats_ok,
            ignored_inputs: self.ignored_inputs,
        }
    }

    /// Ids of requests currently awaiting an outcome, ascending.
    pub fn in_flight(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.inflight.iter().map(|(id, _)| id)
    }

    /// Feeds one input. Never fails: unknown ids are counted and ignored, terminal states
    /// absorb everything.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let now = self.clamp(now);
        if self.is_terminal() {
            self.ignored_inputs += 1;
            return;
        }
        match input {
            Input::HttpResponse {
                id,
                status,
                retry_after,
                body,
            } => match self.take_inflight(id) {
                Some(RequestKind::Register) => {
                    self.on_register_response(now, status, retry_after, &body)
                }
                Some(RequestKind::Heartbeat) => {
                    self.on_heartbeat_response(now, status, retry_after, &body)
                }
                Some(RequestKind::InboxPoll | RequestKind::Tool) | None => self.ignored_inputs += 1,
            },
            Input::HttpFailed { id, error } => match self.take_inflight(id) {
                Some(RequestKind::Register) => self.on_register_failed(now, &error),
                Some(RequestKind::Heartbeat) => self.on_heartbeat_failed(&error),
                Some(RequestKind::InboxPoll | RequestKind::Tool) | None => self.ignored_inputs += 1,
            },
            Input::PersistDone { id, result } => self.on_persist_done(id, result),
            Input::Shutdown => {
                self.log(
                    LogLevel::Info,
                    "shutting down: heartbeats stopped".to_owned(),
                );
                self.phase = Phase::Stopped;
                self.timers.clear();
                self.inflight.clear();
                self.held_report = None;
            }
        }
        self.send_held_report(now);
        self.refresh_deadline_timer();
    }

    /// Lets time pass: fires every expired timer. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.is_terminal() {
            return;
        }
        // Deadlines first, so a request that timed out is settled before a new one of the
        // same kind is considered.
        if self.timers.take_expired(Timer::RequestDeadline, now) {
            let expired: Vec<RequestId> = self
                .inflight
                .iter()
                .filter(|(_, f)| f.deadline <= now)
                .map(|(id, _)| id)
                .collect();
            for id in expired {
                let error = TransportError {
                    kind: TransportErrorKind::Timeout,
                    message: "request deadline exceeded".to_owned(),
                };
                match self.take_inflight(id) {
                    Some(RequestKind::Register) => self.on_register_failed(now, &error),
                    Some(RequestKind::Heartbeat) => self.on_heartbeat_failed(&error),
                    Some(RequestKind::InboxPoll | RequestKind::Tool) | None => {}
                }
                if self.is_terminal() {
                    return;
                }
            }
        }
        if self.timers.take_expired(Timer::RegisterRetry, now) {
            self.send_register(now);
        }
        if self.timers.take_expired(Timer::Heartbeat, now) {
            self.beat(now, None);
        }
        self.send_held_report(now);
        self.refresh_deadline_timer();
    }

    /// Next queued action, if any. Drain until `None` after every `handle*` call.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        crate::queue::pop_or_release(&mut self.actions)
    }

    /// When to call [`Session::handle_timeout`] next. While actions are queued this is the
    /// last `now` seen (handle them first); otherwise it is strictly later than that `now`.
    /// `None` once terminal.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_terminal() {
            return None;
        }
        if !self.actions.is_empty() {
            return Some(self.last_now.get());
        }
        self.timers.next().map(|(_, at)| at)
    }

    /// Which timer [`Session::poll_timeout`] refers to (for logs and tests).
    pub fn next_timer(&self) -> Option<Timer> {
        self.timers.next().map(|(t, _)| t)
    }

    fn is_terminal(&self) -> bool {
        match self.phase {
            Phase::Running => false,
            Phase::Stopped | Phase::Failed(_) => true,
        }
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now.advance(now)
    }

    /// Redacts both the configured and the current token: they differ once the platform
    /// has minted one, and the operator's original token must not reach a log either.
    fn redact(&self, text: &str) -> String {
        redact_known(&redact_known(text, &self.token), &self.cfg.token)
    }

    /// [`log_excerpt`] of a response body, token-free for both tokens (see [`Session::redact`]).
    fn body_excerpt(&self, body: &[u8]) -> String {
        if self.cfg.token == self.token {
            return log_excerpt(body, &self.token);
        }
        let text = redact_known(&String::from_utf8_lossy(body), &self.cfg.token);
        log_excerpt(text.as_bytes(), &self.token)
    }

    fn take_inflight(&mut self, id: RequestId) -> Option<RequestKind> {
        self.inflight.remove(id).map(|f| f.kind)
    }

    fn refresh_deadline_timer(&mut self) {
        match self.inflight.values().map(|f| f.deadline).min() {
            Some(at) if !self.is_terminal() => self.timers.set(Timer::RequestDeadline, at),
            Some(_) | None => self.timers.stop(Timer::RequestDeadline),
        }
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.actions.push_back(Action::Log(LogLine {
            level,
            workspace_id: self.cfg.workspace_id.clone(),
            message,
        }));
    }

    fn send(
        &mut self,
        now: Instant,
        kind: RequestKind,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let deadline = now + timeout.max(Duration::from_millis(1));
        self.inflight.insert(
            id,
            InFlight {
                kind,
                deadline,
                report: false,
            },
        );
        let request = self.beat_template.requests.build(
            id,
            kind,
            Method::Post,
            url,
            &self.token,
            Body::Json(body),
            &[],
            deadline,
        );
        self.actions.push_back(Action::SendHttp(request));
    }

    fn send_register(&mut self, now: Instant) {
        let body = self.beat_template.register_body.to_vec();
        let url = self.beat_template.requests.url("/registry/register", &[]);
        self.send(
            now,
            RequestKind::Register,
            url,
            body,
            self.cfg.request_timeout,
        );
    }

    /// Sends a heartbeat now (unless one is still outstanding) and schedules the next.
    fn beat(&mut self, now: Instant, not_before: Option<Instant>) {
        let outstanding = self
            .inflight
            .values()
            .any(|f| f.kind == RequestKind::Heartbeat && !f.report);
        if !outstanding {
            let uptime = now.saturating_duration_since(self.started_at).as_secs();
            let body = self.beat_template.body(uptime);
            let timeout = self.beat_timeout();
            let url = self.beat_template.url.clone();
            self.send(now, RequestKind::Heartbeat, url, body, timeout);
            self.heartbeats_sent += 1;
        }
        self.schedule_next_beat(now, not_before);
    }

    /// Sends one extra heartbeat saying what the agent is working on (`current_task`, with
    /// `active_tasks: 1`), as the Python original did after recording a delegation: the
    /// canvas shows it until the next regular beat, which omits the field and so clears it.
    /// Unlike the original's extra beat, this one carries the real uptime. Its answer counts
    /// like any beat's (a 401 escalates); the regular grid is not moved. While any beat is
    /// out the report is held and goes when none is (see `held_report`), so reports reach
    /// the platform in the order they were made.
    pub fn report_current_task(&mut self, now: Instant, summary: &str) {
        let now = self.clamp(now);
        let summary: String = summary
            .trim()
            .chars()
            .take(MAX_CURRENT_TASK_CHARS)
            .collect();
        if self.is_terminal() || summary.is_empty() {
            return;
        }
        self.held_report = Some(summary.into_boxed_str());
        self.send_held_report(now);
        self.refresh_deadline_timer();
    }

    /// Sends the held `current_task` report once no heartbeat is out.
    fn send_held_report(&mut self, now: Instant) {
        // Called after every input: the common case (nothing held) costs one check.
        if self.held_report.is_none()
            || self.is_terminal()
            || self
                .inflight
                .values()
                .any(|f| f.kind == RequestKind::Heartbeat)
        {
            return;
        }
        let Some(summary) = self.held_report.take() else {
            return;
        };
        let uptime = now.saturating_duration_since(self.started_at).as_secs();
        let mut body = beat_body_value(&self.cfg.workspace_id, uptime);
        if let Some(map) = body.as_object_mut() {
            map.insert("current_task".to_owned(), Value::String(summary.into()));
            map.insert("active_tasks".to_owned(), json!(1));
        }
        // serde_json::to_vec on a Value cannot fail (no non-string keys, no custom Serialize).
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let timeout = self.beat_timeout();
        let url = self.beat_template.url.clone();
        self.send(now, RequestKind::Heartbeat, url, body, timeout);
        if let Some(last) = self.inflight.last_mut() {
            last.report = true;
        }
        self.heartbeats_sent += 1;
    }

    /// Deadline of any heartbeat, regular or report: well inside the interval, because a hung
    /// beat must be settled before the next tick (which jitter may bring a little early), or
    /// that tick would be skipped.
    fn beat_timeout(&self) -> Duration {
        self.cfg
            .request_timeout
            .min(self.cfg.heartbeat_interval.mul_f64(0.75))
    }

    fn schedule_next_beat(&mut self, now: Instant, not_before: Option<Instant>) {
        let interval = self.cfg.heartbeat_interval;
        let schedule = self
            .heartbeat
            .get_or_insert_with(|| HeartbeatSchedule::new(now, interval));
        let at = schedule.advance(now, not_before, &mut self.rng);
        self.timers.set(Timer::Heartbeat, at);
    }

    /// Heartbeats start after the first register outcome that is not fatal; the first
    /// beat goes out immediately.
    fn start_heartbeats(&mut self, now: Instant) {
        if self.heartbeat.is_none() {
            self.beat(now, None);
        }
    }

    fn on_register_response(
        &mut self,
        now: Instant,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) {
        let ws = self.cfg.workspace_id.clone();
        if (200..300).contains(&status) {
            self.registered = true;
            self.log(
                LogLevel::Info,
                format!("registered workspace {ws} with platform"),
            );
            if let Some(obj) = json_object(body) {
                if let Some(token) = non_empty_str(&obj, "auth_token") {
                    self.adopt_minted_token(Secret::new(token));
                }
                if let Some(secret) = non_empty_str(&obj, "platform_inbound_secret") {
                    self.maybe_persist_secret(&secret);
                }
            }
            self.start_heartbeats(now);
            return;
        }
        let excerpt = self.body_excerpt(body);
        if escalation::is_auth_failure(status) && self.try_fallback_token(now, status) {
            return;
        }
        if escalation::is_auth_failure(status) {
            let message =
                escalation::register_rejected_text(status, &ws, &self.cfg.token_source, &excerpt);
            let reason = FatalReason::RegisterRejected { status };
            self.phase = Phase::Failed(reason);
            self.timers.clear();
            self.inflight.clear();
            self.actions.push_back(Action::Fatal {
                reason,
                workspace_id: ws,
                message,
            });
            return;
        }
        if StatusPolicy::Register.is_retryable(status) {
            let backoff = Backoff::REGISTER.delay(self.register_attempts, &mut self.rng);
            let delay = RetryAfterCap::BACKGROUND.at_least(backoff, retry_after);
            self.register_attempts = self.register_attempts.saturating_add(1);
            self.log(
                LogLevel::Warn,
                format!("register POST returned HTTP {status}: {excerpt}; retrying in {}s (heartbeats continue meanwhile)", delay.as_secs().max(1)),
            );
            self.timers.set(Timer::RegisterRetry, now + delay);
        } else {
            self.log(
                LogLevel::Warn,
                format!("register POST returned HTTP {status}: {excerpt}; not retrying (the platform rejected the request itself)"),
            );
        }
        self.start_heartbeats(now);
    }

    /// After a register 401/403: switches to the saved fallback token (once, if it differs)
    /// and registers again at once. False when there is nothing left to try.
    fn try_fallback_token(&mut self, now: Instant, status: u16) -> bool {
        let Some((token, source)) = self.cfg.fallback_token.take() else {
            return false;
        };
        if token == self.token || token.is_empty() {
            return false;
        }
        self.log(
            LogLevel::Warn,
            format!(
                "register rejected the token from {} (HTTP {status}); retrying with the token saved in {source} \
                 (the platform minted it on an earlier run). Update your MCP config to use it.",
                self.cfg.token_source
            ),
        );
        // Later operator messages must name the token actually in use.
        self.cfg.token_source = format!(
            "{source} (used after the token from {} was rejected)",
            self.cfg.token_source
        );
        self.token = token.clone();
        self.actions.push_back(Action::TokenChanged {
            workspace_id: self.cfg.workspace_id.clone(),
            token,
        });
        self.send_register(now);
        true
    }

    fn on_register_failed(&mut self, now: Instant, error: &TransportError) {
        let delay = Backoff::REGISTER.delay(self.register_attempts, &mut self.rng);
        self.register_attempts = self.register_attempts.saturating_add(1);
        let detail = self.redact(&error.message);
        self.log(
            LogLevel::Warn,
            format!("register POST failed ({:?}: {detail}); retrying in {}s (heartbeats continue meanwhile)", error.kind, delay.as_secs().max(1)),
        );
        self.timers.set(Timer::RegisterRetry, now + delay);
        self.start_heartbeats(now);
    }

    fn on_heartbeat_response(
        &mut self,
        now: Instant,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) {
        if (200..300).contains(&status) {
            self.heartbeats_ok += 1;
            if self.auth_failures > 0 {
                self.log(
                    LogLevel::Info,
                    format!(
                        "heartbeat accepted again after {} auth failure(s)",
                        self.auth_failures
                    ),
                );
            }
            self.auth_failures = 0;
            // Only the secret matters; reading just that field (borrowed) instead of a whole
            // `Value` tree is most of a beat's cost. Anything but an object whose
            // `platform_inbound_secret` is a string counts as "no secret".
            if let Some(reply) = BeatReply::parse(body)
                && let Some(secret) = reply
                    .platform_inbound_secret
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            {
                self.maybe_persist_secret(secret);
            }
            return;
        }
        let ws = self.cfg.workspace_id.clone();
        if escalation::is_auth_failure(status) {
            self.auth_failures = self.auth_failures.saturating_add(1);
            let n = self.auth_failures;
            match escalation::classify(n) {
                AuthFailureLog::Warning => {
                    self.log(LogLevel::Warn, escalation::warning_text(n, status, &ws))
                }
                AuthFailureLog::Error => {
                    let text = escalation::error_text(n, status, &ws, &self.cfg.token_source);
                    self.log(LogLevel::Error, text);
                }
                AuthFailureLog::Silent => {}
            }
            return;
        }
        let excerpt = self.body_excerpt(body);
        if status == 429 {
            let wait = match retry_after {
                Some(ra) => RetryAfterCap::HEARTBEAT.clamp(ra),
                None => self.cfg.heartbeat_interval,
            };
            self.log(
                LogLevel::Warn,
                format!(
                    "heartbeat HTTP 429 (rate limited); next beat in ≥{}s: {excerpt}",
                    wait.as_secs()
                ),
            );
            self.schedule_next_beat_after(now, now + wait);
            return;
        }
        self.log(
            LogLevel::Warn,
            format!("heartbeat HTTP {status}: {excerpt}"),
        );
    }

    /// Re-plans the pending heartbeat so it fires no earlier than `not_before`.
    fn schedule_next_beat_after(&mut self, now: Instant, not_before: Instant) {
        if let Some(at) = self.timers.get(Timer::Heartbeat)
            && at >= not_before
        {
            return;
        }
        self.schedule_next_beat(now, Some(not_before));
    }

    fn on_heartbeat_failed(&mut self, error: &TransportError) {
        let detail = self.redact(&error.message);
        self.log(
            LogLevel::Warn,
            format!("heartbeat failed ({:?}): {detail}", error.kind),
        );
    }

    fn maybe_persist_secret(&mut self, secret: &str) {
        let already = self
            .secret
            .on_disk
            .as_ref()
            .is_some_and(|s| s.expose() == secret)
            || self
                .secret
                .pending
                .as_ref()
                .is_some_and(|(_, s)| s.expose() == secret);
        if already {
            return;
        }
        let secret = Secret::new(secret);
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        self.secret.pending = Some((id, secret.clone()));
        self.actions.push_back(Action::Persist(PersistRequest {
            id,
            workspace_id: self.cfg.workspace_id.clone(),
            file: PersistFile::InboundSecret,
            value: secret,
        }));
    }

    fn adopt_minted_token(&mut self, token: Secret) {
        if token == self.token {
            return;
        }
        if let Some(problem) = crate::secret::bearer_token_problem(token.expose()) {
            // Adopting it would break every later request until a restart.
            let ws = self.cfg.workspace_id.clone();
            self.log(
                LogLevel::Warn,
                format!(
                    "register for workspace {ws} returned a new token that cannot be used ({problem}); \
                     ignoring it and keeping the token from {}",
                    self.cfg.token_source
                ),
            );
            return;
        }
        self.token = token.clone();
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        self.token_persist = Some(id);
        let ws = self.cfg.workspace_id.clone();
        self.log(
            LogLevel::Warn,
            format!(
                "the platform minted a new token for workspace {ws} (it had no live token); using it from now on \
                 and saving it to the state directory. The token from {} is no longer the one to use.",
                self.cfg.token_source
            ),
        );
        self.actions.push_back(Action::TokenChanged {
            workspace_id: ws.clone(),
            token: token.clone(),
        });
        self.actions.push_back(Action::Persist(PersistRequest {
            id,
            workspace_id: ws,
            file: PersistFile::AuthToken,
            value: token,
        }));
    }

    fn on_persist_done(&mut self, id: PersistId, result: Result<(), PersistError>) {
        if let Some((pending_id, value)) = self.secret.pending.take() {
            if pending_id == id {
                match result {
                    Ok(()) => self.secret.on_disk = Some(value),
                    // Leave `on_disk` as it was, so the next delivery retries the write.
                    Err(e) => self.log(
                        LogLevel::Warn,
                        format!("persist inbound secret failed: {e}"),
                    ),
                }
                return;
            }
            self.secret.pending = Some((pending_id, value));
        }
        if self.token_persist == Some(id) {
            self.token_persist = None;
            if let Err(e) = result {
                self.log(
                    LogLevel::Error,
                    format!("could not save the platform-minted token: {e}. It is in use for this run only; the next start will need a fresh token from the canvas → Tokens tab."),
                );
            }
            return;
        }
        self.ignored_inputs += 1;
    }
}

/// The part of a heartbeat answer the session reads (unknown fields are skipped).
#[derive(serde::Deserialize)]
struct BeatReply<'a> {
    #[serde(borrow, default)]
    platform_inbound_secret: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> BeatReply<'a> {
    /// `None` unless `body` is a JSON object (a derived struct would also accept an array
    /// as positional fields).
    fn parse(body: &'a [u8]) -> Option<Self> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        serde_json::from_slice(body).ok()
    }
}

/// Every heartbeat is the same request but for `uptime_seconds`: URL and body are rendered
/// once, by serde_json itself (so key order and escaping are exactly what a `json!` body
/// would give), split around the uptime. The register body never changes either: it is
/// rendered once too, so a session keeps ~100 bytes instead of the agent card's `Value`
/// tree (a map node of ~600 bytes, for every workspace of a fleet).
#[derive(Debug, Clone)]
struct BeatTemplate {
    url: String,
    /// Register and every beat share one request builder (and its header list).
    requests: PlatformRequests,
    body_head: Vec<u8>,
    body_tail: Vec<u8>,
    register_body: Box<[u8]>,
}

impl BeatTemplate {
    /// A number no real uptime reaches, to find where the uptime goes.
    const MARKER: u64 = u64::MAX;

    fn new(cfg: &SessionConfig, requests: PlatformRequests) -> Self {
        let sample = beat_body_value(&cfg.workspace_id, Self::MARKER);
        let rendered = serde_json::to_vec(&sample).unwrap_or_default();
        let marker = Self::MARKER.to_string();
        let at = rendered
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .unwrap_or(rendered.len());
        let register = json!({
            "id": cfg.workspace_id,
            "url": "",
            "agent_card": cfg.agent_card,
            "delivery_mode": "poll",
        });
        // serde_json::to_vec on a Value cannot fail (no non-string keys, no custom Serialize).
        let register_body = serde_json::to_vec(&register)
            .unwrap_or_default()
            .into_boxed_slice();
        BeatTemplate {
            register_body,
            url: requests.url("/registry/heartbeat", &[]),
            requests,
            body_head: rendered.get(..at).unwrap_or_default().to_vec(),
            body_tail: rendered
                .get(at + marker.len()..)
                .unwrap_or_default()
                .to_vec(),
        }
    }

    fn body(&self, uptime_seconds: u64) -> Vec<u8> {
        use std::io::Write as _;
        let mut body = Vec::with_capacity(self.body_head.len() + 20 + self.body_tail.len());
        body.extend_from_slice(&self.body_head);
        let _ = write!(body, "{uptime_seconds}");
        body.extend_from_slice(&self.body_tail);
        body
    }
}

/// The heartbeat body (`tests/contracts/heartbeat.schema.json`).
fn beat_body_value(workspace_id: &str, uptime_seconds: u64) -> Value {
    json!({
        "workspace_id": workspace_id,
        "error_rate": 0.0,
        "sample_error": "",
        "active_tasks": 0,
        "uptime_seconds": uptime_seconds,
    })
}

/// The body as a JSON object, if it is one.
fn json_object(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        Ok(_) | Err(_) => None,
    }
}

fn non_empty_str(obj: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(_) | None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_exactly_the_json_bodies() {
        let platform = PlatformUrl::parse("https://p.example").expect("url");
        for ws in [
            "aaaaaaaa-0000-4000-8000-000000000001",
            "quote\"and\\slash",
            "ünïcode",
        ] {
            let card = json!({"name": ws, "skills": [{"name": "s"}]});
            let cfg =
                SessionConfig::new(platform.clone(), ws, Secret::new("t"), "env", card.clone());
            let t = BeatTemplate::new(&cfg, PlatformRequests::new(platform.clone()));
            assert_eq!(t.url, "https://p.example/registry/heartbeat");
            let register =
                json!({"id": ws, "url": "", "agent_card": card, "delivery_mode": "poll"});
            assert_eq!(
                *t.register_body,
                *serde_json::to_vec(&register).expect("json"),
                "{ws}"
            );
            for uptime in [0, 7, 86_400, u64::MAX - 1] {
                let expected = serde_json::to_vec(&beat_body_value(ws, uptime)).expect("json");
                assert_eq!(t.body(uptime), expected, "{ws} {uptime}");
            }
        }
    }

    #[test]
    fn beat_reply_reads_only_a_string_secret() {
        let secret = |b: &[u8]| {
            BeatReply::parse(b).and_then(|r| r.platform_inbound_secret.map(|s| s.into_owned()))
        };
        assert_eq!(
            secret(br#"{"status":"ok","platform_inbound_secret":"s1","generation":3}"#).as_deref(),
            Some("s1")
        );
        assert_eq!(
            secret(br#"{"platform_inbound_secret":"s\u0031"}"#).as_deref(),
            Some("s1"),
            "escapes decoded"
        );
        assert_eq!(secret(br#"{"status":"ok"}"#), None);
        assert_eq!(secret(br#"{"platform_inbound_secret":null}"#), None);
        assert_eq!(secret(br#"{"platform_inbound_secret":5}"#), None);
        assert_eq!(secret(br#"["platform_inbound_secret"]"#), None);
        assert_eq!(secret(b"not json"), None);
    }
}
