//! [`Inbox`]: the poll loop, the durable queue and the upload jobs of one workspace.
//! The contract is documented in the module root ([`super`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::action::{InboxAction, InboxInput, UploadFetch};
use super::config::{InboxConfig, MAX_PAGE_LIMIT};
use super::feed::{FeedQuery, NextPage, activity_url, next_before_ts, pending_upload_url};
use super::message::{InboxMessage, Row, RowContext, SkipReason, classify, row_id};
use super::schedule::{FailureClass, FailureLog, MAX_RETRY_AFTER, error_backoff, jittered};
use super::state::{InboxState, MAX_OUTBOUND};
use super::upload::{
    MAX_CONCURRENT_UPLOADS, MAX_UPLOAD_ATTEMPTS, MAX_UPLOAD_BYTES, UploadJob, UploadOutcome,
    upload_retry_delay,
};
use crate::action::{LogLevel, LogLine, PersistId};
use crate::http::{HttpRequest, Method, RequestId, RequestKind, TransportError};
use crate::rng::Rng;
use crate::secret::Secret;
use crate::session::excerpt;

/// Extra time the core allows after a download's deadline for the driver to finish
/// writing the file and report.
const UPLOAD_GRACE: Duration = Duration::from_secs(5);
/// Longest backlog scan, in pages (500 rows each at most).
const MAX_SCAN_PAGES: u32 = 1_000;
/// Consecutive `500 cursor lookup failed` answers after which the cursor is dropped.
const BAD_CURSOR_RESET_AFTER: u32 = 3;
/// Default `peek` size.
const DEFAULT_PEEK: usize = 10;

/// Why the inbox wants to be woken (see [`Inbox::next_timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InboxTimer {
    /// Next poll of the activity feed.
    Poll,
    /// Earliest deadline among in-flight requests and downloads.
    RequestDeadline,
    /// Retry a failed state write.
    PersistRetry,
    /// Retry a failed upload download.
    UploadRetry,
}

/// A snapshot for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxStatus {
    /// Current cursor (in memory; see `unsaved_changes`).
    pub cursor: Option<String>,
    /// Queued messages (including ones waiting for an upload).
    pub pending: usize,
    /// Upload rows not settled yet.
    pub uploads: usize,
    /// Handled ids remembered.
    pub handled: usize,
    /// Polling paused because the queue is full.
    pub backpressured: bool,
    /// Paging through the backlog (no cursor yet).
    pub scanning_backlog: bool,
    /// Polls failed in a row.
    pub consecutive_poll_failures: u32,
    /// Polls sent so far.
    pub polls_sent: u64,
    /// The state in memory is newer than the last successful write.
    pub unsaved_changes: bool,
    /// Outcomes that matched nothing in flight and were ignored.
    pub ignored_inputs: u64,
    /// `Shutdown` was received.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
enum Purpose {
    Poll(FeedQuery),
    UploadFetch { activity_id: String },
    UploadAck { name: String },
}

#[derive(Debug, Clone)]
struct InFlight {
    purpose: Purpose,
    deadline: Instant,
}

/// Progress through the newest-first backlog (no cursor yet).
#[derive(Debug, Clone, Default)]
struct BacklogScan {
    before_ts: Option<String>,
    /// Page size override: raised to the platform maximum when a whole page shares one
    /// `created_at` (a strict bound would skip the rest of that instant).
    limit: Option<u32>,
    /// The previous (full) page, used if the next one comes back empty.
    prev_page: Option<Vec<Value>>,
    pages: u32,
    warned_strict: bool,
}

#[derive(Debug, Clone)]
struct PendingWrite {
    id: PersistId,
    generation: u64,
    cursor: Option<String>,
}

/// Which version of the state is safely on disk.
#[derive(Debug, Clone, Default)]
struct Persistence {
    /// Bumped by every change to the persisted state.
    generation: u64,
    saved_generation: u64,
    /// The cursor of the last successful write: polls only ever continue from here.
    committed_cursor: Option<String>,
    in_flight: Option<PendingWrite>,
    retry_at: Option<Instant>,
    failures: FailureLog,
}

#[derive(Debug, Clone, Copy, Default)]
struct IngestOutcome {
    advanced: bool,
    truncated: bool,
}

/// One workspace's inbox machine. See the module docs for the driver contract.
#[derive(Debug)]
pub struct Inbox {
    cfg: InboxConfig,
    token: Secret,
    state: InboxState,
    /// Ids handed out by `take_unreturned` in this process (defect 20).
    returned: BTreeSet<String>,
    last_now: Instant,
    rng: Rng,
    next_request: u64,
    next_persist: u64,
    inflight: BTreeMap<RequestId, InFlight>,
    actions: VecDeque<InboxAction>,
    poll_at: Instant,
    scan: Option<BacklogScan>,
    poll_failures: FailureLog,
    bad_cursor_answers: u32,
    persist: Persistence,
    backpressure_warned: bool,
    stopped: bool,
    polls_sent: u64,
    ignored_inputs: u64,
}

impl Inbox {
    /// Creates the machine from the bytes of the saved state file (if any) and queues the
    /// first poll plus any upload downloads that were interrupted. An unreadable file is
    /// logged and replaced by an empty state (the backlog is then read again).
    pub fn new(cfg: InboxConfig, restored: Option<&[u8]>, now: Instant, seed: u64) -> Self {
        let cfg = cfg.clamped();
        let token = cfg.token.clone();
        let mut inbox = Inbox {
            cfg,
            token,
            state: InboxState::new(),
            returned: BTreeSet::new(),
            last_now: now,
            rng: Rng::new(seed),
            next_request: 0,
            next_persist: 0,
            inflight: BTreeMap::new(),
            actions: VecDeque::new(),
            poll_at: now,
            scan: None,
            poll_failures: FailureLog::default(),
            bad_cursor_answers: 0,
            persist: Persistence::default(),
            backpressure_warned: false,
            stopped: false,
            polls_sent: 0,
            ignored_inputs: 0,
        };
        inbox.restore(restored);
        inbox.progress(now);
        inbox
    }

    fn restore(&mut self, restored: Option<&[u8]>) {
        let Some(bytes) = restored.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) else {
            return;
        };
        match InboxState::decode(bytes, self.cfg.max_handled) {
            Ok((state, notes)) => {
                self.state = state;
                for note in notes {
                    self.log(LogLevel::Warn, format!("inbox: {note}"));
                }
                self.log(
                    LogLevel::Info,
                    format!(
                        "inbox: restored {} queued message(s) and {} unfinished upload(s); {}",
                        self.state.pending.len(),
                        self.state.uploads.len(),
                        match &self.state.cursor {
                            Some(c) => format!("continuing after activity {c}"),
                            None => format!("reading the last {} of activity", window(self.cfg.backlog_secs)),
                        }
                    ),
                );
            }
            Err(e) => self.log(
                LogLevel::Warn,
                format!(
                    "inbox: the saved inbox state could not be read ({e}); starting empty and re-reading the last {} \
                     of activity (messages handled before the restart may be delivered again)",
                    window(self.cfg.backlog_secs)
                ),
            ),
        }
        self.persist.committed_cursor = self.state.cursor.clone();
    }

    /// The polled workspace.
    pub fn workspace_id(&self) -> &str {
        &self.cfg.workspace_id
    }

    /// Uses `token` for every later request (the platform may mint one at register).
    pub fn set_token(&mut self, token: Secret) {
        self.token = token;
    }

    /// Status snapshot.
    pub fn status(&self) -> InboxStatus {
        InboxStatus {
            cursor: self.state.cursor.clone(),
            pending: self.state.pending.len(),
            uploads: self.state.uploads.len(),
            handled: self.state.handled.len(),
            backpressured: self.backpressured(),
            scanning_backlog: self.state.cursor.is_none(),
            consecutive_poll_failures: self.poll_failures.streak(),
            polls_sent: self.polls_sent,
            unsaved_changes: self.persist.generation != self.persist.saved_generation,
            ignored_inputs: self.ignored_inputs,
            stopped: self.stopped,
        }
    }

    // ----- queue API (tools) -------------------------------------------------------------

    /// Up to `limit` deliverable messages, oldest first, not removed (`limit <= 0` ⇒ 10).
    /// Messages waiting for one of their uploads to settle are not listed yet.
    pub fn peek(&self, limit: i64) -> Vec<InboxMessage> {
        let limit = if limit <= 0 {
            DEFAULT_PEEK
        } else {
            usize::try_from(limit).unwrap_or(usize::MAX)
        };
        self.state
            .pending
            .iter()
            .filter(|m| !self.is_held(m))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Removes the message with this id (idempotent: `None` when it is not queued). The id
    /// is remembered as handled, so no later replay delivers it again, and the change is
    /// persisted — drain [`Inbox::poll_action`] afterwards.
    pub fn pop(&mut self, activity_id: &str) -> Option<InboxMessage> {
        let id = activity_id.trim();
        let pos = self
            .state
            .pending
            .iter()
            .position(|m| m.activity_id == id)?;
        let msg = self.state.pending.remove(pos)?;
        self.state.handled.insert(id, self.cfg.max_handled);
        self.returned.remove(id);
        self.touch();
        self.flush_persist();
        self.check_backpressure();
        Some(msg)
    }

    /// The oldest deliverable message not yet returned by this call (defect 20: an agent
    /// that forgets `inbox_pop` is not handed the same message forever). It stays queued
    /// (and visible to `peek`) until popped.
    pub fn take_unreturned(&mut self) -> Option<InboxMessage> {
        let next = self
            .state
            .pending
            .iter()
            .find(|m| !self.returned.contains(&m.activity_id) && !self.is_held(m))
            .cloned()?;
        self.returned.insert(next.activity_id.clone());
        Some(next)
    }

    /// Messages queued (including ones waiting for an upload).
    pub fn pending_len(&self) -> usize {
        self.state.pending.len()
    }

    /// Every queued message, including ones waiting for an upload (test support).
    #[cfg(feature = "testing")]
    pub fn all_pending(&self) -> Vec<InboxMessage> {
        self.state.pending.iter().cloned().collect()
    }

    /// Records a file this runtime uploaded itself (`send_message_to_user` attachments). In
    /// poll mode the platform stages such uploads as inbound `chat_upload_receive` rows in
    /// our own feed; fetching and acking them would break the canvas's download link
    /// (defect 19), so rows for these file ids are skipped. Persisted; drain actions after.
    pub fn note_outbound_upload(&mut self, file_id: &str) {
        let file_id = file_id.trim();
        if !file_id.is_empty() && self.state.outbound_uploads.insert(file_id, MAX_OUTBOUND) {
            self.touch();
            self.flush_persist();
        }
    }

    // ----- driver API --------------------------------------------------------------------

    /// Feeds one input. Never fails: unknown ids are counted and ignored.
    pub fn handle(&mut self, now: Instant, input: InboxInput) {
        let now = self.clamp(now);
        match input {
            InboxInput::HttpResponse {
                id,
                status,
                retry_after,
                body,
            } => match self.inflight.remove(&id) {
                Some(InFlight {
                    purpose: Purpose::Poll(query),
                    ..
                }) => self.on_poll_response(now, query, status, retry_after, &body),
                Some(InFlight {
                    purpose: Purpose::UploadAck { name },
                    ..
                }) => self.on_ack_response(&name, status, &body),
                // The driver may report a failed download as the plain HTTP answer.
                Some(InFlight {
                    purpose: Purpose::UploadFetch { activity_id },
                    ..
                }) => {
                    let outcome = match status {
                        404 => UploadOutcome::Gone,
                        _ => UploadOutcome::Failed {
                            detail: format!("HTTP {status}: {}", excerpt(&body, &self.token)),
                            retryable: status >= 500
                                || status == 429
                                || (200..300).contains(&status),
                        },
                    };
                    self.on_upload_done(now, id, &activity_id, outcome);
                }
                None => self.ignored_inputs += 1,
            },
            InboxInput::HttpFailed { id, error } => match self.inflight.remove(&id) {
                Some(InFlight { purpose, .. }) => self.on_transport_error(now, id, purpose, &error),
                None => self.ignored_inputs += 1,
            },
            InboxInput::UploadDone { id, outcome } => match self.inflight.remove(&id) {
                Some(InFlight {
                    purpose: Purpose::UploadFetch { activity_id },
                    ..
                }) => {
                    self.on_upload_done(now, id, &activity_id, outcome);
                }
                Some(other) => {
                    // Not a download: put it back and ignore the bogus outcome.
                    self.inflight.insert(id, other);
                    self.ignored_inputs += 1;
                }
                None => self.ignored_inputs += 1,
            },
            InboxInput::PersistDone { id, result } => self.on_persist_done(now, id, result),
            InboxInput::Shutdown => {
                if !self.stopped {
                    self.log(LogLevel::Info, "inbox: stopped polling".to_owned());
                }
                self.stopped = true;
                self.inflight.clear();
                for job in &mut self.state.uploads {
                    job.in_flight = None;
                }
            }
        }
        self.progress(now);
    }

    /// Lets time pass: fires every due timer. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.progress(now);
    }

    /// Next queued action. Drain until `None` after every `handle*`, `pop` and
    /// `note_outbound_upload` call.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<InboxAction> {
        self.actions.pop_front()
    }

    /// When to call [`Inbox::handle_timeout`] next. While actions are queued this is the
    /// last `now` seen; after a `handle*` call it is otherwise strictly later than that
    /// `now`. A `pop` that ends back-pressure can make it due immediately. `None` when
    /// nothing is scheduled (after `Shutdown`, unless a failed write awaits its retry).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() {
            return Some(self.last_now);
        }
        self.next_deadline().map(|(_, at)| at.max(self.last_now))
    }

    /// Which timer [`Inbox::poll_timeout`] refers to (for logs and tests).
    pub fn next_timer(&self) -> Option<InboxTimer> {
        self.next_deadline().map(|(t, _)| t)
    }

    fn next_deadline(&self) -> Option<(InboxTimer, Instant)> {
        let mut candidates: Vec<(InboxTimer, Instant)> = Vec::new();
        if self.can_poll() {
            candidates.push((InboxTimer::Poll, self.poll_at));
        }
        if let Some(at) = self.inflight.values().map(|f| f.deadline).min() {
            candidates.push((InboxTimer::RequestDeadline, at));
        }
        if let Some(at) = self
            .persist
            .retry_at
            .filter(|_| self.persist.in_flight.is_none())
        {
            candidates.push((InboxTimer::PersistRetry, at));
        }
        if !self.stopped && self.active_downloads() < MAX_CONCURRENT_UPLOADS {
            let retry = self
                .state
                .uploads
                .iter()
                .filter(|j| j.in_flight.is_none())
                .filter_map(|j| j.retry_at)
                .min();
            if let Some(at) = retry {
                candidates.push((InboxTimer::UploadRetry, at));
            }
        }
        candidates.into_iter().min_by_key(|(_, at)| *at)
    }

    // ----- internals ---------------------------------------------------------------------

    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.actions.push_back(InboxAction::Log(LogLine {
            level,
            workspace_id: self.cfg.workspace_id.clone(),
            message,
        }));
    }

    /// Everything that may be due at `now`, in dependency order.
    fn progress(&mut self, now: Instant) {
        self.expire_deadlines(now);
        if self.persist.retry_at.is_some_and(|at| at <= now) && self.persist.in_flight.is_none() {
            self.persist.retry_at = None;
        }
        self.start_uploads(now);
        self.maybe_poll(now);
        self.flush_persist();
        self.check_backpressure();
    }

    fn expire_deadlines(&mut self, now: Instant) {
        let expired: Vec<RequestId> = self
            .inflight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(f) = self.inflight.remove(&id) {
                let error = TransportError {
                    kind: crate::http::TransportErrorKind::Timeout,
                    message: "no answer before the deadline".to_owned(),
                };
                self.on_transport_error(now, id, f.purpose, &error);
            }
        }
    }

    fn on_transport_error(
        &mut self,
        now: Instant,
        id: RequestId,
        purpose: Purpose,
        error: &TransportError,
    ) {
        let detail = self.token.redact_in(&error.message);
        match purpose {
            Purpose::Poll(_) => {
                self.poll_failed(now, FailureClass::Transport, format!("GET /activity failed ({:?}: {detail})", error.kind), None);
            }
            Purpose::UploadFetch { activity_id } => {
                let outcome = UploadOutcome::Failed { detail: format!("{:?}: {detail}", error.kind), retryable: true };
                self.on_upload_done(now, id, &activity_id, outcome);
            }
            Purpose::UploadAck { name } => self.log(
                LogLevel::Warn,
                format!("inbox: ack of uploaded file '{name}' failed ({:?}: {detail}); the platform expires unacked uploads after 24 h", error.kind),
            ),
        }
    }

    fn request(
        &mut self,
        now: Instant,
        method: Method,
        url: String,
        timeout: Duration,
    ) -> HttpRequest {
        self.next_request += 1;
        HttpRequest {
            id: RequestId(self.next_request),
            // The shared vocabulary has one kind for the inbox's traffic; FetchUpload is
            // told apart by its action variant.
            kind: RequestKind::InboxPoll,
            method,
            url,
            bearer: (!self.token.is_empty()).then(|| self.token.clone()),
            headers: vec![("Origin", self.cfg.platform.origin().to_owned())],
            body: Vec::new(),
            deadline: now + timeout,
        }
    }

    // ----- polling -----------------------------------------------------------------------

    fn backpressured(&self) -> bool {
        let bytes: usize = self
            .state
            .pending
            .iter()
            .map(InboxMessage::approx_size)
            .sum();
        self.state.pending.len() + self.state.uploads.len() >= self.cfg.max_pending
            || bytes >= self.cfg.max_pending_bytes
    }

    fn check_backpressure(&mut self) {
        let full = self.backpressured();
        if full && !self.backpressure_warned {
            self.backpressure_warned = true;
            self.log(
                LogLevel::Warn,
                format!(
                    "inbox: {} message(s) are waiting (limit {} messages / {} MiB); not fetching more until some are \
                     removed with inbox_pop. Nothing is dropped: the platform keeps the newer rows.",
                    self.state.pending.len(),
                    self.cfg.max_pending,
                    self.cfg.max_pending_bytes / (1024 * 1024)
                ),
            );
        } else if !full && self.backpressure_warned {
            self.backpressure_warned = false;
            self.log(
                LogLevel::Info,
                "inbox: queue has room again; fetching new messages".to_owned(),
            );
        }
    }

    /// A poll may go out: not stopped, none in flight, the cursor it would use is on disk,
    /// and the queue has room.
    fn can_poll(&self) -> bool {
        !self.stopped
            && !self
                .inflight
                .values()
                .any(|f| matches!(f.purpose, Purpose::Poll(_)))
            && self.state.cursor == self.persist.committed_cursor
            && !self.backpressured()
    }

    fn maybe_poll(&mut self, now: Instant) {
        if self.poll_at > now || !self.can_poll() {
            return;
        }
        let (query, limit) = match &self.state.cursor {
            Some(c) => (FeedQuery::Since(c.clone()), self.cfg.page_limit),
            None => (
                FeedQuery::Backlog {
                    since_secs: self.cfg.backlog_secs,
                    before_ts: self.scan.as_ref().and_then(|s| s.before_ts.clone()),
                },
                self.scan
                    .as_ref()
                    .and_then(|s| s.limit)
                    .unwrap_or(self.cfg.page_limit),
            ),
        };
        let url = activity_url(&self.cfg.platform, &self.cfg.workspace_id, limit, &query);
        let request = self.request(now, Method::Get, url, self.cfg.request_timeout);
        self.inflight.insert(
            request.id,
            InFlight {
                purpose: Purpose::Poll(query),
                deadline: request.deadline,
            },
        );
        self.polls_sent += 1;
        self.actions.push_back(InboxAction::SendHttp(request));
    }

    fn next_regular_poll(&mut self, now: Instant) {
        self.poll_at = now + jittered(self.cfg.poll_interval, &mut self.rng);
    }

    fn poll_failed(
        &mut self,
        now: Instant,
        class: FailureClass,
        detail: String,
        retry_after: Option<Duration>,
    ) {
        let warn = self.poll_failures.record(now, class);
        let n = self.poll_failures.streak();
        let mut delay = error_backoff(n, self.cfg.poll_interval, &mut self.rng);
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(MAX_RETRY_AFTER));
        }
        self.poll_at = now + delay;
        let (level, streak) = if warn {
            (
                LogLevel::Warn,
                if n > 1 {
                    format!(" ({n} failed polls in a row; repeated at most every 5 minutes)")
                } else {
                    String::new()
                },
            )
        } else {
            (LogLevel::Debug, String::new())
        };
        self.log(
            level,
            format!(
                "inbox: {detail}{streak}; next poll in {}s",
                delay.as_secs().max(1)
            ),
        );
    }

    fn on_poll_response(
        &mut self,
        now: Instant,
        query: FeedQuery,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) {
        let ws = self.cfg.workspace_id.clone();
        if (200..300).contains(&status) {
            let rows = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(rows)) => rows,
                Ok(_) => {
                    let detail = format!(
                        "GET /activity answered HTTP {status} with JSON that is not a list: {}",
                        excerpt(body, &self.token)
                    );
                    return self.poll_failed(now, FailureClass::Http, detail, None);
                }
                Err(e) => {
                    let detail = format!(
                        "GET /activity answered HTTP {status} with a non-JSON body ({e}): {}",
                        excerpt(body, &self.token)
                    );
                    return self.poll_failed(now, FailureClass::Http, detail, None);
                }
            };
            if let Some(n) = self.poll_failures.recover() {
                self.log(
                    LogLevel::Info,
                    format!("inbox: polling works again after {n} failed attempt(s)"),
                );
            }
            self.bad_cursor_answers = 0;
            match query {
                FeedQuery::Since(c) if self.state.cursor.as_deref() == Some(c.as_str()) => {
                    self.on_steady_page(now, &rows)
                }
                FeedQuery::Backlog { .. } if self.state.cursor.is_none() => {
                    self.on_backlog_page(now, rows)
                }
                // The cursor changed while the poll was out (cannot happen today: polls
                // wait for the cursor to be saved). The page is stale; ask again.
                FeedQuery::Since(_) | FeedQuery::Backlog { .. } => self.poll_at = now,
            }
            return;
        }
        let text = excerpt(body, &self.token);
        match (status, &query) {
            (410, FeedQuery::Since(cursor)) => {
                let cursor = cursor.clone();
                self.reset_cursor(
                    now,
                    LogLevel::Info,
                    format!("cursor {cursor} is no longer known to the platform (410)"),
                );
            }
            (401 | 403, _) => {
                let detail = format!(
                    "GET /activity answered HTTP {status}: the token is not accepted for workspace {ws} ({text}); \
                     inbound messages cannot be received until this is fixed"
                );
                self.poll_failed(now, FailureClass::Auth, detail, None);
            }
            (429, _) => self.poll_failed(
                now,
                FailureClass::RateLimited,
                format!("GET /activity rate limited (429): {text}"),
                retry_after,
            ),
            (500, FeedQuery::Since(cursor)) if text.contains("cursor") => {
                self.bad_cursor_answers += 1;
                if self.bad_cursor_answers >= BAD_CURSOR_RESET_AFTER {
                    self.bad_cursor_answers = 0;
                    let cursor = cursor.clone();
                    self.reset_cursor(now, LogLevel::Warn, format!("the platform keeps failing to look up cursor {cursor} (HTTP 500: {text})"));
                } else {
                    self.poll_failed(
                        now,
                        FailureClass::Http,
                        format!("GET /activity answered HTTP 500: {text}"),
                        None,
                    );
                }
            }
            _ => self.poll_failed(
                now,
                FailureClass::Http,
                format!("GET /activity answered HTTP {status}: {text}"),
                None,
            ),
        }
    }

    fn reset_cursor(&mut self, now: Instant, level: LogLevel, why: String) {
        self.log(
            level,
            format!(
                "inbox: {why}; re-reading the last {} of activity (messages already handled or queued are not delivered again)",
                window(self.cfg.backlog_secs)
            ),
        );
        self.state.cursor = None;
        self.scan = None;
        self.touch();
        self.poll_at = now;
    }

    fn page_is_full(rows: usize, limit: u32) -> bool {
        rows >= usize::try_from(limit).unwrap_or(usize::MAX)
    }

    fn on_steady_page(&mut self, now: Instant, rows: &[Value]) {
        let full = Self::page_is_full(rows.len(), self.cfg.page_limit);
        let outcome = self.ingest(rows.iter());
        if outcome.truncated {
            self.next_regular_poll(now);
        } else if full && outcome.advanced {
            // More rows are waiting: drain fast (once this page is saved).
            self.poll_at = now;
        } else {
            if full {
                self.log(
                    LogLevel::Warn,
                    "inbox: a full page of activity had no usable row id; the cursor cannot move"
                        .to_owned(),
                );
            }
            self.next_regular_poll(now);
        }
    }

    fn on_backlog_page(&mut self, now: Instant, rows: Vec<Value>) {
        let mut scan = self.scan.take().unwrap_or_default();
        let limit = scan.limit.unwrap_or(self.cfg.page_limit);
        let full = Self::page_is_full(rows.len(), limit);
        if full && scan.pages < MAX_SCAN_PAGES {
            let bound = match next_before_ts(&rows) {
                NextPage::Overlap(ts) => Some(ts),
                NextPage::Strict(_) if limit < MAX_PAGE_LIMIT => {
                    // Ask for the same rows again in the biggest page the platform serves.
                    scan.limit = Some(MAX_PAGE_LIMIT);
                    scan.pages += 1;
                    self.scan = Some(scan);
                    self.poll_at = now;
                    return;
                }
                NextPage::Strict(ts) => {
                    if !scan.warned_strict {
                        scan.warned_strict = true;
                        self.log(
                            LogLevel::Warn,
                            format!(
                                "inbox: {MAX_PAGE_LIMIT} or more backlog rows share created_at {ts}; rows at that instant beyond \
                                 one page may be missed"
                            ),
                        );
                    }
                    Some(ts)
                }
                NextPage::Stuck => {
                    self.log(LogLevel::Warn, "inbox: backlog rows carry no usable created_at; older rows cannot be paged".to_owned());
                    None
                }
            };
            if let Some(ts) = bound {
                scan.before_ts = Some(ts);
                scan.pages += 1;
                scan.prev_page = Some(rows);
                self.scan = Some(scan);
                self.poll_at = now;
                return;
            }
        } else if full {
            self.log(
                LogLevel::Warn,
                format!(
                    "inbox: backlog longer than {MAX_SCAN_PAGES} pages; older rows are not read"
                ),
            );
        }
        let rows = if rows.is_empty() {
            scan.prev_page.take().unwrap_or_default()
        } else {
            rows
        };
        // Oldest first; the newest processed row becomes the cursor and `since_id` then
        // walks forward over the newer pages.
        let outcome = self.ingest(rows.iter().rev());
        if self.state.cursor.is_some() && !outcome.truncated {
            self.poll_at = now;
        } else {
            self.next_regular_poll(now);
        }
    }

    /// Adds the rows (in delivery order) to the queue; moves the in-memory cursor to the
    /// last row taken. Stops early, without dropping anything, when the queue is full.
    fn ingest<'a>(&mut self, rows: impl Iterator<Item = &'a Value>) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        let mut candidate: Option<String> = None;
        let mut changed = false;
        for row in rows {
            let Some(id) = row_id(row) else {
                self.log(
                    LogLevel::Debug,
                    "inbox: skipping an activity row without an id".to_owned(),
                );
                continue;
            };
            if self.knows(&id) {
                candidate = Some(id);
                continue;
            }
            let class = {
                let ctx = RowContext {
                    workspace_id: &self.cfg.workspace_id,
                    arrival_workspace_id: self.cfg.arrival_workspace_id.as_deref(),
                };
                classify(row, &id, &ctx)
            };
            if matches!(class, Row::Message(_) | Row::Upload(_)) && self.backpressured() {
                outcome.truncated = true;
                break;
            }
            match class {
                Row::Message(msg) => {
                    self.enqueue(msg);
                    changed = true;
                }
                Row::Upload(up) if self.state.outbound_uploads.contains(&up.file_id) => {
                    self.log(
                        LogLevel::Debug,
                        format!(
                            "inbox: upload row {id} is our own attachment {}; not fetching it",
                            up.file_id
                        ),
                    );
                }
                Row::Upload(up) => {
                    self.state.uploads.push(UploadJob::new(id.clone(), up));
                    changed = true;
                }
                Row::BadUpload(_) => {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "inbox: upload row {id} has no file_id in request_body; cannot fetch it"
                        ),
                    );
                }
                Row::Skip(reason) => {
                    let why = match reason {
                        SkipReason::NotObject => "not an object".to_owned(),
                        SkipReason::SelfAuthored => "written by this workspace itself".to_owned(),
                        SkipReason::NotifyEcho => "echo of our own send_message_to_user".to_owned(),
                        SkipReason::NonMessage(m) => format!("method {m} is not a chat message"),
                    };
                    self.log(
                        LogLevel::Debug,
                        format!("inbox: not delivering activity {id}: {why}"),
                    );
                }
            }
            candidate = Some(id);
        }
        if let Some(c) = candidate
            && self.state.cursor.as_ref() != Some(&c)
        {
            self.state.cursor = Some(c);
            outcome.advanced = true;
            changed = true;
        }
        if changed {
            self.touch();
        }
        outcome
    }

    /// Already queued, waiting as an upload, or handled.
    fn knows(&self, id: &str) -> bool {
        self.state.handled.contains(id)
            || self.state.pending.iter().any(|m| m.activity_id == id)
            || self.state.uploads.iter().any(|u| u.activity_id == id)
    }

    /// Waits for an upload it refers to.
    fn is_held(&self, msg: &InboxMessage) -> bool {
        msg.files
            .iter()
            .any(|f| self.state.uploads.iter().any(|u| u.uri == f.uri))
    }

    fn enqueue(&mut self, mut msg: InboxMessage) {
        for f in &mut msg.files {
            if f.uri.starts_with("platform-pending:")
                && let Some(local) = self.state.staged.get(&f.uri)
            {
                f.uri = local.to_owned();
            }
        }
        let held = self.is_held(&msg);
        self.state.pending.push_back(msg.clone());
        if !held {
            self.actions.push_back(InboxAction::Arrived(msg));
        }
    }

    // ----- uploads -----------------------------------------------------------------------

    fn active_downloads(&self) -> usize {
        self.inflight
            .values()
            .filter(|f| matches!(f.purpose, Purpose::UploadFetch { .. }))
            .count()
    }

    fn start_uploads(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let free = MAX_CONCURRENT_UPLOADS.saturating_sub(self.active_downloads());
        let ready: Vec<usize> = (0..self.state.uploads.len())
            .filter(|&i| self.state.uploads.get(i).is_some_and(|j| j.ready(now)))
            .take(free)
            .collect();
        for i in ready {
            self.send_fetch(now, i);
        }
    }

    fn send_fetch(&mut self, now: Instant, index: usize) {
        let Some(job) = self.state.uploads.get(index) else {
            return;
        };
        let (activity_id, file_id, name, uri, mime_type) = (
            job.activity_id.clone(),
            job.file_id.clone(),
            job.name.clone(),
            job.uri.clone(),
            job.mime_type.clone(),
        );
        let url = pending_upload_url(
            &self.cfg.platform,
            &self.cfg.workspace_id,
            &file_id,
            "content",
        );
        let request = self.request(now, Method::Get, url, self.cfg.upload_timeout);
        let id = request.id;
        self.inflight.insert(
            id,
            InFlight {
                purpose: Purpose::UploadFetch { activity_id },
                deadline: request.deadline + UPLOAD_GRACE,
            },
        );
        if let Some(job) = self.state.uploads.get_mut(index) {
            job.in_flight = Some(id);
            job.retry_at = None;
        }
        self.actions
            .push_back(InboxAction::FetchUpload(UploadFetch {
                request,
                file_id,
                name,
                uri,
                mime_type,
                max_bytes: MAX_UPLOAD_BYTES,
            }));
    }

    fn on_upload_done(
        &mut self,
        now: Instant,
        id: RequestId,
        activity_id: &str,
        outcome: UploadOutcome,
    ) {
        let Some(pos) = self
            .state
            .uploads
            .iter()
            .position(|j| j.activity_id == activity_id && j.in_flight == Some(id))
        else {
            self.ignored_inputs += 1;
            return;
        };
        let Some(job) = self.state.uploads.get_mut(pos) else {
            return;
        };
        job.in_flight = None;
        let (name, uri, file_id) = (job.name.clone(), job.uri.clone(), job.file_id.clone());
        match outcome {
            UploadOutcome::Staged { local_uri } => {
                self.log(
                    LogLevel::Info,
                    format!("inbox: staged uploaded file '{name}' ({uri}) as {local_uri}"),
                );
                self.state.staged.insert(&uri, &local_uri);
                self.settle_upload(pos);
                let url =
                    pending_upload_url(&self.cfg.platform, &self.cfg.workspace_id, &file_id, "ack");
                let request = self.request(now, Method::Post, url, self.cfg.request_timeout);
                self.inflight.insert(
                    request.id,
                    InFlight {
                        purpose: Purpose::UploadAck { name },
                        deadline: request.deadline,
                    },
                );
                self.actions.push_back(InboxAction::SendHttp(request));
            }
            UploadOutcome::Gone => {
                self.log(
                    LogLevel::Info,
                    format!("inbox: uploaded file '{name}' is no longer on the platform (404: expired or already acked); messages keep its link {uri}"),
                );
                self.settle_upload(pos);
            }
            UploadOutcome::Failed { detail, retryable } => {
                let detail = self.token.redact_in(&detail);
                job.attempts = job.attempts.saturating_add(1);
                let attempts = job.attempts;
                if retryable && attempts < MAX_UPLOAD_ATTEMPTS {
                    let delay = upload_retry_delay(attempts);
                    job.retry_at = Some(now + delay);
                    self.touch();
                    self.log(
                        LogLevel::Info,
                        format!("inbox: fetching uploaded file '{name}' failed ({detail}); retrying in {}s", delay.as_secs()),
                    );
                } else {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "inbox: could not fetch uploaded file '{name}' ({detail}) after {attempts} attempt(s); messages keep \
                             its link {uri}, which only the platform can serve"
                        ),
                    );
                    self.settle_upload(pos);
                }
            }
        }
    }

    /// Removes a finished upload job, rewrites the messages that refer to it, and announces
    /// the messages that were waiting for it.
    fn settle_upload(&mut self, pos: usize) {
        let held_before: BTreeSet<String> = self
            .state
            .pending
            .iter()
            .filter(|m| self.is_held(m))
            .map(|m| m.activity_id.clone())
            .collect();
        if pos >= self.state.uploads.len() {
            return;
        }
        let job = self.state.uploads.remove(pos);
        self.state
            .handled
            .insert(&job.activity_id, self.cfg.max_handled);
        if let Some(local) = self.state.staged.get(&job.uri).map(str::to_owned) {
            for f in self
                .state
                .pending
                .iter_mut()
                .flat_map(|m| m.files.iter_mut())
            {
                if f.uri == job.uri {
                    f.uri.clone_from(&local);
                }
            }
        }
        let released: Vec<InboxMessage> = self
            .state
            .pending
            .iter()
            .filter(|m| held_before.contains(&m.activity_id) && !self.is_held(m))
            .cloned()
            .collect();
        self.actions
            .extend(released.into_iter().map(InboxAction::Arrived));
        self.touch();
    }

    fn on_ack_response(&mut self, name: &str, status: u16, body: &[u8]) {
        match status {
            200..=299 => self.log(
                LogLevel::Debug,
                format!("inbox: acked uploaded file '{name}'"),
            ),
            404 => self.log(
                LogLevel::Debug,
                format!("inbox: uploaded file '{name}' was already acked or expired (404)"),
            ),
            _ => {
                let text = excerpt(body, &self.token);
                self.log(
                    LogLevel::Warn,
                    format!("inbox: ack of uploaded file '{name}' answered HTTP {status}: {text}"),
                );
            }
        }
    }

    // ----- persistence -------------------------------------------------------------------

    fn touch(&mut self) {
        self.persist.generation += 1;
    }

    /// Writes the state if it changed and no write is outstanding or waiting to retry.
    fn flush_persist(&mut self) {
        let p = &self.persist;
        if p.in_flight.is_some() || p.retry_at.is_some() || p.generation == p.saved_generation {
            return;
        }
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        let bytes = self.state.encode();
        self.persist.in_flight = Some(PendingWrite {
            id,
            generation: self.persist.generation,
            cursor: self.state.cursor.clone(),
        });
        self.actions.push_back(InboxAction::Persist { id, bytes });
    }

    fn on_persist_done(&mut self, now: Instant, id: PersistId, result: Result<(), String>) {
        let Some(write) = self.persist.in_flight.take_if(|w| w.id == id) else {
            self.ignored_inputs += 1;
            return;
        };
        match result {
            Ok(()) => {
                self.persist.saved_generation = self.persist.saved_generation.max(write.generation);
                self.persist.committed_cursor = write.cursor;
                if let Some(n) = self.persist.failures.recover() {
                    self.log(
                        LogLevel::Info,
                        format!("inbox: state saved again after {n} failed attempt(s)"),
                    );
                }
            }
            Err(e) => {
                let loud = self.persist.failures.record(now, FailureClass::Transport);
                let n = self.persist.failures.streak();
                let delay = error_backoff(n, self.cfg.poll_interval, &mut self.rng);
                self.persist.retry_at = Some(now + delay);
                let level = if loud {
                    LogLevel::Error
                } else {
                    LogLevel::Debug
                };
                self.log(
                    level,
                    format!(
                        "inbox: could not save the inbox state ({e}); not fetching new messages until it can be saved, so \
                         that none can be lost; retrying in {}s",
                        delay.as_secs().max(1)
                    ),
                );
            }
        }
    }
}

/// `86400` → `24h`, `600` → `10m`.
fn window(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
