//! [`Inbox`]: the machine's state, the tool-facing queue API, the driver API, timers,
//! back-pressure and persistence. The polling half lives in `poll.rs` and the upload half
//! in `upload.rs` (further `impl Inbox` blocks); the contract is in the module root.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::action::{InboxAction, InboxInput};
use super::cadence::{Attention, Cadence};
use super::config::InboxConfig;
use super::feed::FeedQuery;
use super::message::InboxMessage;
use super::poll::BacklogScan;
use super::schedule::{FailureClass, FailureLog};
use super::state::{self, InboxState, JournalLine, JournalOp, MAX_OUTBOUND};
use super::upload::{MAX_CONCURRENT_UPLOADS, UploadOutcome, download_failed};
use crate::action::{LogLevel, LogLine, PersistError, PersistId};
use crate::http::{HttpRequest, Method, RequestId, RequestKind, TransportError};
use crate::inflight::InFlightTable;
use crate::platform_request::{Body, PlatformRequests};
use crate::redact::redact_known;
use crate::retry::{Backoff, StatusPolicy};
use crate::rng::Rng;
use crate::sanitize::log_excerpt;
use crate::secret::Secret;
use crate::state_layout::StateFile;
use crate::timer::LastNow;

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
    /// The poll cadence at the last `now` seen (`cadence.rs`).
    pub cadence: Cadence,
}

#[derive(Debug, Clone)]
pub(super) enum Purpose {
    Poll(FeedQuery),
    UploadFetch { activity_id: String },
    UploadAck { name: String },
}

#[derive(Debug, Clone)]
pub(super) struct InFlight {
    pub(super) purpose: Purpose,
    pub(super) deadline: Instant,
}

/// The journal is compacted (a snapshot written, the journal restarted) once it holds more
/// bytes than the last snapshot, and never below this. Each journaled byte then pays for at
/// most one snapshot byte, so a change costs the same on average whatever the state's size.
const MIN_COMPACT_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
struct PendingWrite {
    id: PersistId,
    generation: u64,
    cursor: Option<String>,
    /// A snapshot (`Some(size)`) or a journal append (`None`).
    snapshot_len: Option<u64>,
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
    /// Changes made since the last write was emitted, to append as journal lines.
    ops: Vec<JournalOp>,
    /// A change that has no journal record was made, or the journal's tail cannot be
    /// trusted (at start, after a failed write): the next write is a snapshot.
    snapshot_needed: bool,
    /// The first append after a snapshot empties the journal.
    journal_restart: bool,
    /// Sequence number of the last journal record emitted (or restored).
    last_seq: u64,
    /// Bytes appended since the last snapshot, and that snapshot's size.
    journal_bytes: u64,
    snapshot_bytes: u64,
}

/// The cursor file the Python original of molecule-mcp left in the state directory
/// ([`crate::StateFile::LegacyInboxCursor`]): the activity id it last queued, as text.
#[derive(Debug, Clone, Copy)]
pub struct LegacyCursor<'a> {
    /// The file's contents.
    pub bytes: &'a [u8],
    /// Where it is, as the operator should read it in the log.
    pub path: &'a str,
}

/// One workspace's inbox machine. See the module docs for the driver contract.
#[derive(Debug)]
pub struct Inbox {
    pub(super) cfg: InboxConfig,
    pub(super) token: Secret,
    /// Builds every poll, download and ack (headers built once, shared by every request).
    requests: PlatformRequests,
    pub(super) state: InboxState,
    /// Ids handed out by `take_unreturned` in this process, so an agent that forgets to pop
    /// is not handed the same message forever.
    pub(super) returned: BTreeSet<String>,
    pub(super) last_now: LastNow,
    pub(super) rng: Rng,
    /// Random names for staged uploads; separate from `rng` so naming a file never shifts
    /// the poll jitter.
    pub(super) names: Rng,
    pub(super) next_request: u64,
    pub(super) next_persist: u64,
    pub(super) inflight: InFlightTable<InFlight>,
    pub(super) actions: VecDeque<InboxAction>,
    pub(super) poll_at: Instant,
    /// Who waits for messages and when the agent was last active: sets the poll cadence.
    pub(super) attention: Attention,
    pub(super) scan: Option<BacklogScan>,
    pub(super) poll_failures: FailureLog,
    pub(super) bad_cursor_answers: u32,
    persist: Persistence,
    pub(super) backpressure_warned: bool,
    pub(super) stopped: bool,
    pub(super) polls_sent: u64,
    pub(super) ignored_inputs: u64,
}

impl Inbox {
    /// Creates the machine from the bytes of the saved state file (if any) and queues the
    /// first poll plus any upload downloads that were interrupted. An unreadable or empty
    /// file is logged and set aside ([`InboxAction::SetAside`]); the machine starts empty
    /// (the backlog is then read again).
    pub fn new(cfg: InboxConfig, restored: Option<&[u8]>, now: Instant, seed: u64) -> Self {
        Self::upgrading(cfg, restored, None, None, now, seed)
    }

    /// [`Inbox::new`] from the snapshot and the journal (see `state.rs`): the journal's
    /// records newer than the snapshot are applied in order, a torn last line is skipped.
    pub fn restore_from(
        cfg: InboxConfig,
        restored: Option<&[u8]>,
        journal: Option<&[u8]>,
        now: Instant,
        seed: u64,
    ) -> Self {
        Self::upgrading(cfg, restored, journal, None, now, seed)
    }

    /// [`Inbox::restore_from`] for an install that may have been run by the Python original:
    /// with no saved state of its own (no readable snapshot, nothing journaled), the inbox
    /// continues after the original's cursor instead of re-reading the backlog, and saves
    /// that as its own state at once, so the takeover happens (and is logged) on the first
    /// start only.
    pub fn upgrading(
        cfg: InboxConfig,
        restored: Option<&[u8]>,
        journal: Option<&[u8]>,
        legacy: Option<LegacyCursor<'_>>,
        now: Instant,
        seed: u64,
    ) -> Self {
        let requests = PlatformRequests::new(cfg.platform.clone());
        Self::with_requests(cfg, requests, restored, journal, legacy, now, seed)
    }

    /// [`Inbox::upgrading`] with a request builder shared with other machines of the same
    /// platform (`PlatformRequests::reuse`).
    pub(crate) fn with_requests(
        cfg: InboxConfig,
        requests: PlatformRequests,
        restored: Option<&[u8]>,
        journal: Option<&[u8]>,
        legacy: Option<LegacyCursor<'_>>,
        now: Instant,
        seed: u64,
    ) -> Self {
        let cfg = cfg.clamped();
        let token = cfg.token.clone();
        let mut inbox = Inbox {
            cfg,
            token,
            requests,
            state: InboxState::new(),
            returned: BTreeSet::new(),
            last_now: LastNow::new(now),
            rng: Rng::new(seed),
            names: Rng::new(seed ^ 0x5EED_F11E_0000_0001),
            next_request: 0,
            next_persist: 0,
            inflight: InFlightTable::default(),
            actions: VecDeque::new(),
            poll_at: now,
            attention: Attention::new(now),
            scan: None,
            poll_failures: FailureLog::default(),
            bad_cursor_answers: 0,
            persist: Persistence {
                // Until the restore shows that the snapshot and the journal on disk can be
                // continued, the first write is a snapshot.
                snapshot_needed: true,
                ..Persistence::default()
            },
            backpressure_warned: false,
            stopped: false,
            polls_sent: 0,
            ignored_inputs: 0,
        };
        let snapshot_ok = inbox.restore(restored);
        inbox.replay(snapshot_ok, journal);
        let journaled = journal.is_some_and(|j| !j.iter().all(u8::is_ascii_whitespace));
        if let Some(legacy) = legacy
            && !snapshot_ok
            && !journaled
            && inbox.state.cursor.is_none()
        {
            inbox.take_legacy_cursor(legacy);
        }
        inbox.progress(now);
        inbox
    }

    fn take_legacy_cursor(&mut self, legacy: LegacyCursor<'_>) {
        let text = String::from_utf8_lossy(legacy.bytes);
        let Some(cursor) = state::usable_cursor(text.trim()) else {
            if !text.trim().is_empty() {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "inbox: ignoring {}: it does not hold an activity id; reading the last {} of activity",
                        legacy.path,
                        window(self.cfg.backlog_secs)
                    ),
                );
            }
            return;
        };
        self.log(
            LogLevel::Info,
            format!(
                "inbox: upgrading from the Python molecule-mcp: continuing after activity {cursor} from {} \
                 (the file is left as it is)",
                legacy.path
            ),
        );
        self.state.cursor = Some(cursor.to_owned());
        self.persist.committed_cursor = self.state.cursor.clone();
        self.touch();
    }

    /// Applies the journal after the snapshot `restore` read (`snapshot_ok`: it decoded).
    fn replay(&mut self, snapshot_ok: bool, journal: Option<&[u8]>) {
        let journal = journal.unwrap_or_default();
        let (last, notes, corrupt) = self.state.replay(journal, self.cfg.max_handled);
        self.persist.last_seq = last;
        if corrupt {
            // Not the tail of a cut-short append: keep the file for inspection instead of
            // letting the journal restart after the next snapshot overwrite it.
            self.log(
                LogLevel::Warn,
                "inbox: the inbox journal has unreadable lines before readable ones; the readable changes were \
                 applied and the file is moved aside to a backup (named in the next warning)"
                    .to_owned(),
            );
            self.actions
                .push_back(InboxAction::SetAside(StateFile::InboxJournal));
        }
        // Appends may continue the journal only after a snapshot this build can read and
        // whole, readable lines; anything else is replaced by a snapshot first.
        self.persist.snapshot_needed = !snapshot_ok || !notes.is_empty();
        self.persist.journal_bytes = u64::try_from(journal.len()).unwrap_or(u64::MAX);
        for note in notes {
            self.log(LogLevel::Warn, format!("inbox: {note}"));
        }
        self.persist.committed_cursor = self.state.cursor.clone();
    }

    /// Reads the snapshot; true when one was read (so the journal may continue after it).
    fn restore(&mut self, restored: Option<&[u8]>) -> bool {
        let Some(bytes) = restored else {
            return false;
        };
        // This machine only ever writes whole encoded states (atomically), so an empty file
        // was left by something else; like an undecodable one it is kept, never overwritten.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            self.set_aside("the file is empty");
            return false;
        }
        match InboxState::decode(bytes, self.cfg.max_handled) {
            Ok((state, notes)) => {
                self.state = state;
                self.persist.snapshot_bytes = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
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
                            None => format!(
                                "reading the last {} of activity",
                                window(self.cfg.backlog_secs)
                            ),
                        }
                    ),
                );
            }
            Err(e) => {
                self.set_aside(&format!("it could not be read: {e}"));
                return false;
            }
        }
        self.persist.committed_cursor = self.state.cursor.clone();
        true
    }

    /// Starts empty from an unusable state file, which the driver moves aside first
    /// ([`InboxAction::SetAside`]) so that nothing it held is overwritten.
    fn set_aside(&mut self, why: &str) {
        self.log(
            LogLevel::Warn,
            format!(
                "inbox: the saved inbox state is unusable ({why}); moving it aside to a backup (named in the next \
                 warning) and starting empty, re-reading the last {} of activity. Messages handled before the \
                 restart may be delivered again; older queued messages are only in the backup.",
                window(self.cfg.backlog_secs)
            ),
        );
        self.actions
            .push_back(InboxAction::SetAside(StateFile::InboxState));
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
            cadence: self.attention.cadence(self.last_now.get()),
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
        self.record(JournalOp::Pop { id: id.to_owned() });
        self.flush_persist();
        self.check_backpressure();
        Some(msg)
    }

    /// The oldest deliverable message not yet returned by this call (an agent
    /// that forgets `inbox_pop` is not handed the same message forever). It stays queued
    /// (and visible to `peek`) until popped.
    pub fn take_unreturned(&mut self) -> Option<InboxMessage> {
        let next = self.peek_unreturned()?.clone();
        self.returned.insert(next.activity_id.clone());
        Some(next)
    }

    /// What [`Inbox::take_unreturned`] would return, without marking it returned (a driver
    /// serving several inboxes compares their candidates before taking one).
    pub fn peek_unreturned(&self) -> Option<&InboxMessage> {
        self.state
            .pending
            .iter()
            .find(|m| !self.returned.contains(&m.activity_id) && !self.is_held(m))
    }

    /// A mark for "the state as it is now": [`Inbox::is_saved`] tells when everything up
    /// to this mark is on disk (later changes do not delay it).
    pub fn save_mark(&self) -> u64 {
        self.persist.generation
    }

    /// Everything up to `mark` ([`Inbox::save_mark`]) has been written successfully.
    pub fn is_saved(&self, mark: u64) -> bool {
        self.persist.saved_generation >= mark
    }

    /// Messages queued (including ones waiting for an upload).
    pub fn pending_len(&self) -> usize {
        self.state.pending.len()
    }

    /// Every queued message, including ones waiting for an upload (test support).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn all_pending(&self) -> Vec<InboxMessage> {
        self.state.pending.iter().cloned().collect()
    }

    /// Records a file this runtime uploaded itself (`send_message_to_user` attachments). In
    /// poll mode the platform stages such uploads as inbound `chat_upload_receive` rows in
    /// our own feed; fetching and acking them would break the canvas's download link
    /// (the platform's download link stops working once the file is acked), so rows for these file ids are skipped. A row that a poll already
    /// picked up before this call (the upload answer and the poll can race) is dropped too,
    /// and the answer of a download already under way is ignored, so it is never acked.
    /// Persisted; drain actions after.
    pub fn note_outbound_upload(&mut self, file_id: &str) {
        let file_id = file_id.trim();
        if file_id.is_empty() {
            return;
        }
        let mut changed = self.state.outbound_uploads.insert(file_id, MAX_OUTBOUND);
        while let Some(pos) = self.state.uploads.iter().position(|j| j.file_id == file_id) {
            if let Some(id) = self.state.uploads.get(pos).and_then(|j| j.in_flight) {
                self.inflight.remove(id);
            }
            self.log(
                LogLevel::Debug,
                format!("inbox: upload {file_id} is our own attachment; dropping the inbound copy"),
            );
            self.settle_upload(pos);
            changed = true;
        }
        if changed {
            self.touch();
            self.flush_persist();
            // A dropped download frees a slot for the next upload.
            self.start_uploads(self.last_now.get());
        }
    }

    /// True while the download request `id` is still wanted (a driver that held a
    /// [`InboxAction::FetchUpload`] back asks before starting it).
    pub fn upload_wanted(&self, id: RequestId) -> bool {
        self.inflight
            .get(id)
            .is_some_and(|f| matches!(f.purpose, Purpose::UploadFetch { .. }))
    }

    /// Waits for an upload it refers to (not peeked, not announced yet).
    pub(super) fn is_held(&self, msg: &InboxMessage) -> bool {
        msg.files
            .iter()
            .any(|f| self.state.uploads.iter().any(|u| u.uri == f.uri))
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
            } => match self.inflight.remove(id) {
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
                            detail: format!("HTTP {status}: {}", log_excerpt(&body, &self.token)),
                            retryable: StatusPolicy::UploadAnswer.is_retryable(status),
                        },
                    };
                    self.on_upload_done(now, id, &activity_id, outcome);
                }
                None => self.ignored_inputs += 1,
            },
            InboxInput::HttpFailed { id, error } => match self.inflight.remove(id) {
                Some(InFlight { purpose, .. }) => self.on_transport_error(now, id, purpose, &error),
                None => self.ignored_inputs += 1,
            },
            InboxInput::UploadDone { id, outcome } => match self.inflight.remove(id) {
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
            InboxInput::Agent(signal) => self.on_agent_signal(now, signal),
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
        crate::queue::pop_or_release(&mut self.actions)
    }

    /// When to call [`Inbox::handle_timeout`] next. While actions are queued this is the
    /// last `now` seen; after a `handle*` call it is otherwise strictly later than that
    /// `now`. A `pop` that ends back-pressure can make it due immediately. `None` when
    /// nothing is scheduled (after `Shutdown`, unless a failed write awaits its retry).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() {
            return Some(self.last_now.get());
        }
        self.next_deadline()
            .map(|(_, at)| at.max(self.last_now.get()))
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
        self.last_now.advance(now)
    }

    pub(super) fn log(&mut self, level: LogLevel, message: String) {
        self.actions.push_back(InboxAction::Log(LogLine {
            level,
            workspace_id: self.cfg.workspace_id.clone(),
            message,
        }));
    }

    /// A DEBUG line, formatted only when [`InboxConfig::debug_logs`] is on.
    pub(super) fn debug(&mut self, message: impl FnOnce() -> String) {
        if self.cfg.debug_logs {
            self.log(LogLevel::Debug, message());
        }
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
            .map(|(id, _)| id)
            .collect();
        for id in expired {
            if let Some(f) = self.inflight.remove(id) {
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
        let detail = redact_known(&error.message, &self.token);
        match purpose {
            Purpose::Poll(_) => {
                self.poll_failed(now, FailureClass::Transport, format!("GET /activity failed ({:?}: {detail})", error.kind), None);
            }
            Purpose::UploadFetch { activity_id } => {
                let outcome = download_failed(error.kind, &detail);
                self.on_upload_done(now, id, &activity_id, outcome);
            }
            Purpose::UploadAck { name } => self.log(
                LogLevel::Warn,
                format!("inbox: ack of uploaded file '{name}' failed ({:?}: {detail}); the platform expires unacked uploads after 24 h", error.kind),
            ),
        }
    }

    pub(super) fn request(
        &mut self,
        now: Instant,
        method: Method,
        url: String,
        timeout: Duration,
    ) -> HttpRequest {
        self.next_request += 1;
        // The shared vocabulary has one kind for the inbox's traffic; FetchUpload is told
        // apart by its action variant.
        self.requests.build(
            RequestId(self.next_request),
            RequestKind::InboxPoll,
            method,
            url,
            &self.token,
            Body::Empty,
            &[],
            now + timeout,
        )
    }

    // ----- back-pressure ---------------------------------------------------------------

    pub(super) fn backpressured(&self) -> bool {
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

    // ----- persistence -------------------------------------------------------------------

    /// The in-memory cursor is the one on disk (polls may continue from it).
    pub(super) fn cursor_is_saved(&self) -> bool {
        self.state.cursor == self.persist.committed_cursor
    }

    /// Marks a change that has no journal record: the next write is a snapshot.
    pub(super) fn touch(&mut self) {
        self.persist.generation += 1;
        self.persist.snapshot_needed = true;
    }

    /// Marks a change made in memory as `op` describes: the next write appends it to the
    /// journal (unless a snapshot is due anyway, which contains it).
    pub(super) fn record(&mut self, op: JournalOp) {
        self.persist.generation += 1;
        self.persist.ops.push(op);
    }

    /// Writes the changes if there are any and no write is outstanding or waiting to
    /// retry: journal lines when that is enough, else a snapshot.
    fn flush_persist(&mut self) {
        let p = &self.persist;
        if p.in_flight.is_some() || p.retry_at.is_some() || p.generation == p.saved_generation {
            return;
        }
        self.next_persist += 1;
        let id = PersistId(self.next_persist);
        let mut lines = Vec::new();
        if !self.persist.snapshot_needed {
            for op in std::mem::take(&mut self.persist.ops) {
                self.persist.last_seq += 1;
                lines.extend(
                    JournalLine {
                        seq: self.persist.last_seq,
                        op,
                    }
                    .encode(),
                );
            }
        }
        let lines_len = u64::try_from(lines.len()).unwrap_or(u64::MAX);
        let compact_at = self.persist.snapshot_bytes.max(MIN_COMPACT_BYTES);
        let snapshot = self.persist.snapshot_needed
            || self.persist.journal_bytes.saturating_add(lines_len) > compact_at;
        let (action, snapshot_len) = if snapshot {
            // The snapshot contains every change so far, journaled or not; later ones are
            // journaled after it (or need the next snapshot, if `touch` marks them).
            self.persist.ops.clear();
            self.persist.snapshot_needed = false;
            self.state.journal_seq = self.persist.last_seq;
            let bytes = self.state.encode();
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            (InboxAction::Persist { id, bytes }, Some(len))
        } else {
            self.persist.journal_bytes = self.persist.journal_bytes.saturating_add(lines_len);
            let restart = self.persist.journal_restart;
            (
                InboxAction::Append {
                    id,
                    bytes: lines,
                    restart,
                },
                None,
            )
        };
        self.persist.in_flight = Some(PendingWrite {
            id,
            generation: self.persist.generation,
            cursor: self.state.cursor.clone(),
            snapshot_len,
        });
        self.actions.push_back(action);
    }

    fn on_persist_done(&mut self, now: Instant, id: PersistId, result: Result<(), PersistError>) {
        let Some(write) = self.persist.in_flight.take_if(|w| w.id == id) else {
            self.ignored_inputs += 1;
            return;
        };
        match result {
            Ok(()) => {
                self.persist.saved_generation = self.persist.saved_generation.max(write.generation);
                self.persist.committed_cursor = write.cursor;
                match write.snapshot_len {
                    Some(len) => {
                        self.persist.snapshot_bytes = len;
                        self.persist.journal_bytes = 0;
                        self.persist.journal_restart = true;
                    }
                    None => self.persist.journal_restart = false,
                }
                if let Some(n) = self.persist.failures.recover() {
                    self.log(
                        LogLevel::Info,
                        format!("inbox: state saved again after {n} failed attempt(s)"),
                    );
                }
            }
            Err(e) => {
                // A failed append may have left a partial line: only a snapshot follows it.
                self.persist.snapshot_needed = true;
                let loud = self.persist.failures.record(now, FailureClass::Transport);
                let n = self.persist.failures.streak();
                let delay = Backoff::inbox(self.cfg.poll_interval)
                    .delay(n.saturating_sub(1), &mut self.rng);
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
pub(super) fn window(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
