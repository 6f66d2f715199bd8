//! One workspace as one machine: its platform session (register → heartbeats → auth
//! escalation) and its inbox (polling, durable queue, uploads) behind **one** input enum,
//! one output enum and one timer view, plus the rules that join them:
//!
//! * a token the platform mints at register is used by the inbox too ([`Output::TokenChanged`]);
//! * a workspace rejected at register stops polling (every poll would fail with the same
//!   token) and is reported once ([`Output::Rejected`]); its queued messages stay readable;
//! * while this runtime uploads files of its own for the workspace, inbound downloads are
//!   held back: the platform also queues our own attachment as an inbound upload row, and
//!   only the upload's answer says which file id that is. Fetching and acking it would
//!   break the canvas's download link, so held downloads start only once the answer named
//!   our file ids ([`Input::OutboundUploadFinished`]);
//! * a pop is answered ([`Output::PopDone`]) only once the queue without the message is on
//!   disk, so a crash right after the answer cannot deliver the message again; if the disk
//!   keeps failing the answer comes after [`POP_SAVE_GRACE`] and says the removal is not
//!   saved (`saved: false`), because a restart before the retried write succeeds delivers
//!   the message again (the message stays handled in memory and the write keeps retrying);
//! * what the agent does ([`Input::Agent`]: waits, pops, tool use) sets the inbox's poll
//!   cadence (`inbox/cadence.rs`); a fleet tells every workspace, and a pop or a
//!   `current_task` report counts as use.
//!
//! Many workspaces form a [`Fleet`], the machine drivers run: it routes outcomes by request
//! id, orders messages across workspaces, and decides when the process should exit.
//!
//! ## Ids
//!
//! The session and the inbox number their requests and writes independently. A workspace
//! id is `2 × local id + part` (part 0: session, 1: inbox) and a fleet id is
//! `workspace id × N + slot` for N workspaces, so routing an outcome is arithmetic, costs
//! no memory, and an id the fleet never issued lands on a machine that ignores it.
//!
//! ## Driver contract
//!
//! The same as every machine in this crate: drain [`Workspace::poll_output`] after every
//! `handle*` call, sleep until [`Workspace::poll_timeout`] or an outcome, and report each
//! request's outcome with its id. The crate docs show the loop.

mod fleet;
mod wake_heap;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub use fleet::{Fleet, FleetPlan};

use crate::action::{Action, FatalReason, LogLevel, LogLine, PersistError, PersistId};
use crate::http::{HttpRequest, RequestId, TransportError};
use crate::inbox::{
    AgentSignal, Inbox, InboxAction, InboxConfig, InboxInput, InboxMessage, InboxStatus,
    InboxTimer, LegacyCursor, UploadFetch, UploadOutcome,
};
use crate::input::Input as SessionInput;
use crate::platform_request::PlatformRequests;
use crate::secret::Secret;
use crate::session::{Session, SessionConfig, SessionStatus};
use crate::state_layout::{StateFile, StateLayout};
use crate::timer::{LastNow, Timer as SessionTimer};

/// Longest a pop waits for its state write before it is answered anyway (a failing disk is
/// logged by the inbox and retried; the tool call must not hang on it).
pub const POP_SAVE_GRACE: Duration = Duration::from_secs(5);

/// Identifies one pop so its answer can be matched (chosen by the driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PopTicket(pub u64);

/// What a pop came to, as the tools report it (built from [`Output::PopDone`]; generic so
/// the tool layer can carry the message as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopOutcome<M> {
    /// Removed, and the removal is on disk.
    Removed(M),
    /// No message with that id was queued.
    NotQueued,
    /// Removed in memory, but the removal could not be written before [`POP_SAVE_GRACE`]
    /// ran out; the write keeps retrying, and a restart before it succeeds delivers the
    /// message again.
    NotSaved(M),
}

impl<M> PopOutcome<M> {
    /// The outcome an [`Output::PopDone`] with these fields stands for.
    pub fn from_answer(message: Option<M>, saved: bool) -> Self {
        match (message, saved) {
            (None, _) => PopOutcome::NotQueued,
            (Some(m), true) => PopOutcome::Removed(m),
            (Some(m), false) => PopOutcome::NotSaved(m),
        }
    }

    /// The same outcome with the message converted.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> PopOutcome<N> {
        match self {
            PopOutcome::Removed(m) => PopOutcome::Removed(f(m)),
            PopOutcome::NotQueued => PopOutcome::NotQueued,
            PopOutcome::NotSaved(m) => PopOutcome::NotSaved(f(m)),
        }
    }
}

/// An event for a [`Workspace`] or a [`Fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete HTTP response for request `id` (a `SendHttp`, or a `FetchUpload` whose
    /// answer was not a 2xx: the machine classifies the status).
    HttpResponse {
        /// The request's id.
        id: RequestId,
        /// Status code.
        status: u16,
        /// `Retry-After`, already converted to a delay by the driver.
        retry_after: Option<Duration>,
        /// Response body (drivers cap its size).
        body: Vec<u8>,
    },
    /// Request `id` produced no response (the machine classifies the failure).
    HttpFailed {
        /// The request's id.
        id: RequestId,
        /// What went wrong.
        error: TransportError,
    },
    /// Outcome of an [`Output::Persist`].
    PersistDone {
        /// The write's id.
        id: PersistId,
        /// `Err` when the write failed.
        result: Result<(), PersistError>,
    },
    /// A `FetchUpload` answered 2xx: the bytes were written to the staged file (`Ok` with
    /// its absolute path, which the agent is given as `workspace:<path>`) or could not be
    /// (`Err`).
    UploadStaged {
        /// `request.id` of the `FetchUpload`.
        id: RequestId,
        /// The absolute path written, or why the file could not be written.
        result: Result<String, PersistError>,
    },
    /// A tool removes a handled message; answered by [`Output::PopDone`] with `ticket`.
    Pop {
        /// Echoed in the answer.
        ticket: PopTicket,
        /// The message's activity id.
        activity_id: String,
    },
    /// The runtime starts uploading files of its own as `workspace_id`.
    OutboundUploadStarted {
        /// The uploading workspace.
        workspace_id: String,
    },
    /// That upload is over; `file_ids` are the files it created (none if it failed). Every
    /// start must be followed by one finish.
    OutboundUploadFinished {
        /// The uploading workspace.
        workspace_id: String,
        /// Files the platform created for it.
        file_ids: Vec<String>,
    },
    /// What the agent works on, for the canvas: `workspace_id` sends one extra heartbeat
    /// carrying `current_task` ([`crate::Session::report_current_task`]).
    CurrentTask {
        /// The workspace.
        workspace_id: String,
        /// One line, e.g. `Delegating to Reviewer`.
        summary: String,
    },
    /// What the agent is doing, for the inbox's poll cadence (`inbox/cadence.rs`). A fleet
    /// passes it to every workspace: one agent reads the messages of all of them.
    Agent(AgentSignal),
    /// Stop: no more heartbeats or polls; state writes still complete.
    Shutdown,
}

/// A state-file write: replace `<state dir>/<path>` atomically (temp file, fsync, rename,
/// mode 0600), then report [`Input::PersistDone`]. `Debug` never prints the contents.
#[derive(Clone, PartialEq, Eq)]
pub struct PersistWrite {
    /// Echoed in the outcome.
    pub id: PersistId,
    /// The workspace the file belongs to.
    pub workspace_id: String,
    /// Which file.
    pub file: StateFile,
    /// Its name relative to the state directory ([`StateLayout::file_name`]).
    pub path: String,
    /// The complete new contents.
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for PersistWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistWrite")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("file", &self.file)
            .field("path", &self.path)
            .field("contents_len", &self.contents.len())
            .finish()
    }
}

/// A journal append: add `contents` to the end of `<state dir>/<path>` (created 0600 when
/// missing; emptied first when `restart`), fsync it, then report [`Input::PersistDone`].
/// `Debug` never prints the contents.
#[derive(Clone, PartialEq, Eq)]
pub struct AppendWrite {
    /// Echoed in the outcome.
    pub id: PersistId,
    /// The workspace the file belongs to.
    pub workspace_id: String,
    /// Which file.
    pub file: StateFile,
    /// Its name relative to the state directory ([`StateLayout::file_name`]).
    pub path: String,
    /// Whole lines to append.
    pub contents: Vec<u8>,
    /// Empty the file first (a snapshot now holds everything it held).
    pub restart: bool,
}

impl std::fmt::Debug for AppendWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendWrite")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("file", &self.file)
            .field("path", &self.path)
            .field("contents_len", &self.contents.len())
            .field("restart", &self.restart)
            .finish()
    }
}

/// Move an unusable state file aside: rename `<state dir>/<path>` to
/// [`crate::state_layout::set_aside_name`] next to it (the driver supplies the time), and log
/// the backup's name at WARN. Performed before any later output writes that file; no outcome
/// is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The workspace the file belongs to.
    pub workspace_id: String,
    /// Which file.
    pub file: StateFile,
    /// Its name relative to the state directory ([`StateLayout::file_name`]).
    pub path: String,
}

/// An instruction from a [`Workspace`] or a [`Fleet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this request; report [`Input::HttpResponse`] or [`Input::HttpFailed`].
    SendHttp(HttpRequest),
    /// Download an upload: send `request` refusing bodies over `max_bytes`; on a 2xx write
    /// the body to `<state dir>/<path>` (0600) and report
    /// [`Input::UploadStaged`]; otherwise report the answer or failure as for `SendHttp`.
    FetchUpload(UploadFetch),
    /// Write a state file.
    Persist(PersistWrite),
    /// Append to a state file (the inbox journal).
    Append(AppendWrite),
    /// Move an unusable state file aside before it is written again.
    SetAside(SetAside),
    /// A log line for stderr.
    Log(LogLine),
    /// A message arrived (first time in this process): push it to the MCP client and wake
    /// `wait_for_message` callers.
    Arrived(InboxMessage),
    /// The platform minted a token for this workspace: tools must use it from now on (the
    /// inbox already does).
    TokenChanged {
        /// The workspace.
        workspace_id: String,
        /// The new token.
        token: Secret,
    },
    /// The platform rejected this workspace at register: its heartbeats and polls stopped;
    /// tools acting as it should fail with `message`.
    Rejected {
        /// The workspace.
        workspace_id: String,
        /// Why.
        reason: FatalReason,
        /// The operator message (no secrets).
        message: String,
    },
    /// The answer to [`Input::Pop`]: the removed message (`None`: it was not queued).
    PopDone {
        /// The pop's ticket.
        ticket: PopTicket,
        /// The removed message.
        message: Option<InboxMessage>,
        /// The removal is on disk (always true when nothing was removed). False when the
        /// grace ran out first: the message is handled in memory and the write is retried,
        /// but a restart before that write succeeds would deliver it again.
        saved: bool,
    },
    /// The process should end: print `molecule-mcp: <message>` to stderr and exit with
    /// `code` (only a [`Fleet`] emits this).
    Exit {
        /// Process exit code.
        code: u8,
        /// The operator message (no secrets).
        message: String,
    },
}

/// Why a [`Workspace`] wants to be woken: one table over its session and inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Next heartbeat.
    Heartbeat,
    /// Retry a register that failed transiently.
    RegisterRetry,
    /// A session request's deadline.
    SessionDeadline,
    /// Next inbox poll.
    InboxPoll,
    /// An inbox request's or download's deadline.
    InboxDeadline,
    /// Retry a failed inbox state write.
    PersistRetry,
    /// Retry a failed upload download.
    UploadRetry,
    /// A pop's save grace ran out.
    PopGrace,
}

/// What a workspace restores from the state directory at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Contents of each state file that exists (unreadable files are absent).
    pub files: BTreeMap<StateFile, Vec<u8>>,
}

impl Restored {
    fn trimmed(&self, file: StateFile) -> Option<Secret> {
        let bytes = self.files.get(&file)?;
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        (!text.is_empty()).then(|| Secret::new(text))
    }
}

/// Everything one workspace needs at start.
#[derive(Debug, Clone)]
pub struct WorkspacePlan {
    /// The workspace id.
    pub workspace_id: String,
    /// Register + heartbeats (`None` when heartbeats are disabled).
    pub session: Option<SessionConfig>,
    /// The inbox (`None` when it is disabled).
    pub inbox: Option<InboxConfig>,
    /// File names in the state directory.
    pub layout: StateLayout,
    /// The state directory as the operator should read it in messages.
    pub state_dir_display: String,
    /// What the state directory held.
    pub restored: Restored,
}

impl WorkspacePlan {
    /// The state files to read before [`Workspace::new`] (fill [`Restored::files`]).
    pub fn files_to_restore(&self) -> Vec<(StateFile, String)> {
        let mut files = Vec::new();
        if self.session.is_some() {
            files.push(StateFile::InboundSecret);
            files.push(StateFile::AuthToken);
        }
        if self.inbox.is_some() {
            files.push(StateFile::InboxState);
            files.push(StateFile::InboxJournal);
            files.push(StateFile::LegacyInboxCursor);
        }
        files
            .into_iter()
            .map(|f| (f, self.layout.file_name(f, &self.workspace_id)))
            .collect()
    }

    fn display_path(&self, file: StateFile) -> String {
        self.layout
            .display_path(&self.state_dir_display, file, &self.workspace_id)
    }
}

/// A snapshot for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceStatus {
    /// The workspace id.
    pub workspace_id: String,
    /// The session's status (`None`: heartbeats disabled).
    pub session: Option<SessionStatus>,
    /// The inbox's status (`None`: inbox disabled).
    pub inbox: Option<InboxStatus>,
    /// Rejected at register.
    pub rejected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Session,
    Inbox,
}

fn to_local(part: Part, sub: u64) -> u64 {
    let bit = match part {
        Part::Session => 0,
        Part::Inbox => 1,
    };
    sub.wrapping_mul(2).wrapping_add(bit)
}

fn from_local(id: u64) -> (Part, u64) {
    let part = if id.is_multiple_of(2) {
        Part::Session
    } else {
        Part::Inbox
    };
    (part, id / 2)
}

#[derive(Debug)]
struct PendingPop {
    ticket: PopTicket,
    message: InboxMessage,
    mark: u64,
    deadline: Instant,
}

/// One workspace's machine. See the module docs.
#[derive(Debug)]
pub struct Workspace {
    id: String,
    layout: StateLayout,
    session: Option<Session>,
    inbox: Option<Inbox>,
    out: VecDeque<Output>,
    outbound_uploads: u32,
    held_fetches: Vec<UploadFetch>,
    pops: Vec<PendingPop>,
    /// Session writes (secret, minted token) not reported done yet, by session-local id.
    session_writes: Vec<u64>,
    rejected: bool,
    last_now: LastNow,
}

impl Workspace {
    /// Starts the workspace: queues the register request and the first poll.
    pub fn new(plan: WorkspacePlan, now: Instant, seed: u64) -> Self {
        Self::sharing(plan, &mut None, now, seed)
    }

    /// [`Workspace::new`] whose machines take their request builder from `requests` when
    /// it targets their platform (`PlatformRequests::reuse`): the fleet passes one for all.
    pub(crate) fn sharing(
        plan: WorkspacePlan,
        requests: &mut Option<PlatformRequests>,
        now: Instant,
        seed: u64,
    ) -> Self {
        let session = plan.session.clone().map(|mut cfg| {
            cfg.known_inbound_secret = plan.restored.trimmed(StateFile::InboundSecret);
            // A token the platform minted on an earlier run (saved by us): tried once if
            // register rejects the configured one, which is then stale.
            cfg.fallback_token = plan
                .restored
                .trimmed(StateFile::AuthToken)
                .filter(|saved| *saved != cfg.token)
                .map(|saved| (saved, plan.display_path(StateFile::AuthToken)));
            let shared = PlatformRequests::reuse(requests, &cfg.platform);
            Session::with_requests(cfg, shared, now, seed)
        });
        let inbox = plan.inbox.clone().map(|cfg| {
            let state = plan.restored.files.get(&StateFile::InboxState);
            let legacy_path = plan.display_path(StateFile::LegacyInboxCursor);
            let legacy = plan
                .restored
                .files
                .get(&StateFile::LegacyInboxCursor)
                .map(|bytes| LegacyCursor {
                    bytes,
                    path: &legacy_path,
                });
            let journal = plan.restored.files.get(&StateFile::InboxJournal);
            let shared = PlatformRequests::reuse(requests, &cfg.platform);
            Inbox::with_requests(
                cfg,
                shared,
                state.map(Vec::as_slice),
                journal.map(Vec::as_slice),
                legacy,
                now,
                seed,
            )
        });
        let mut ws = Workspace {
            id: plan.workspace_id,
            layout: plan.layout,
            session,
            inbox,
            out: VecDeque::new(),
            outbound_uploads: 0,
            held_fetches: Vec::new(),
            pops: Vec::new(),
            session_writes: Vec::new(),
            rejected: false,
            last_now: LastNow::new(now),
        };
        ws.drain(now);
        ws
    }

    /// The workspace id.
    pub fn workspace_id(&self) -> &str {
        &self.id
    }

    /// Feeds one input (ids are this workspace's). Never fails: unknown ids are ignored.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let now = self.clamp(now);
        match input {
            Input::HttpResponse {
                id,
                status,
                retry_after,
                body,
            } => match from_local(id.0) {
                (Part::Session, sub) => self.feed_session(
                    now,
                    SessionInput::HttpResponse {
                        id: RequestId(sub),
                        status,
                        retry_after,
                        body,
                    },
                ),
                (Part::Inbox, sub) => self.feed_inbox(
                    now,
                    InboxInput::HttpResponse {
                        id: RequestId(sub),
                        status,
                        retry_after,
                        body,
                    },
                ),
            },
            Input::HttpFailed { id, error } => match from_local(id.0) {
                (Part::Session, sub) => self.feed_session(
                    now,
                    SessionInput::HttpFailed {
                        id: RequestId(sub),
                        error,
                    },
                ),
                (Part::Inbox, sub) => self.feed_inbox(
                    now,
                    InboxInput::HttpFailed {
                        id: RequestId(sub),
                        error,
                    },
                ),
            },
            Input::PersistDone { id, result } => match from_local(id.0) {
                (Part::Session, sub) => {
                    self.session_writes.retain(|w| *w != sub);
                    self.feed_session(
                        now,
                        SessionInput::PersistDone {
                            id: PersistId(sub),
                            result,
                        },
                    )
                }
                (Part::Inbox, sub) => self.feed_inbox(
                    now,
                    InboxInput::PersistDone {
                        id: PersistId(sub),
                        result,
                    },
                ),
            },
            Input::UploadStaged { id, result } => {
                let (_, sub) = from_local(id.0);
                let outcome = match result {
                    Ok(absolute_path) => UploadOutcome::Staged {
                        local_uri: format!("workspace:{absolute_path}"),
                    },
                    // A local write failure may pass (disk space, a transient error).
                    Err(e) => UploadOutcome::Failed {
                        detail: format!("the downloaded file could not be written: {e}"),
                        retryable: true,
                    },
                };
                self.feed_inbox(
                    now,
                    InboxInput::UploadDone {
                        id: RequestId(sub),
                        outcome,
                    },
                );
            }
            Input::Pop {
                ticket,
                activity_id,
            } => {
                if !self.pop(now, ticket, &activity_id) {
                    self.out.push_back(Output::PopDone {
                        ticket,
                        message: None,
                        saved: true,
                    });
                }
            }
            Input::CurrentTask { summary, .. } => {
                if let Some(session) = &mut self.session {
                    session.report_current_task(now, &summary);
                }
            }
            Input::OutboundUploadStarted { .. } => {
                self.outbound_uploads = self.outbound_uploads.saturating_add(1);
            }
            Input::OutboundUploadFinished { file_ids, .. } => self.outbound_finished(&file_ids),
            Input::Agent(signal) => self.feed_inbox(now, InboxInput::Agent(signal)),
            Input::Shutdown => {
                self.feed_session(now, SessionInput::Shutdown);
                self.feed_inbox(now, InboxInput::Shutdown);
                self.held_fetches.clear();
            }
        }
        self.drain(now);
    }

    /// Lets time pass: fires every due timer. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if let Some(session) = &mut self.session
            && session.poll_timeout().is_some_and(|at| at <= now)
        {
            session.handle_timeout(now);
        }
        if let Some(inbox) = &mut self.inbox
            && inbox.poll_timeout().is_some_and(|at| at <= now)
        {
            inbox.handle_timeout(now);
        }
        self.drain(now);
    }

    /// The next instruction, if any. Drain until `None` after every `handle*` call.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        crate::queue::pop_or_release(&mut self.out)
    }

    /// When to call [`Workspace::handle_timeout`] next (the last `now` while outputs are
    /// queued; `None` when nothing is scheduled).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.is_empty() {
            return Some(self.last_now.get());
        }
        self.next_deadline().map(|(_, at)| at)
    }

    /// Which timer [`Workspace::poll_timeout`] refers to (for logs and tests).
    pub fn next_timer(&self) -> Option<Timer> {
        self.next_deadline().map(|(t, _)| t)
    }

    fn next_deadline(&self) -> Option<(Timer, Instant)> {
        let session = self.session.as_ref().and_then(|s| {
            let at = s.poll_timeout()?;
            let timer = match s.next_timer()? {
                SessionTimer::Heartbeat => Timer::Heartbeat,
                SessionTimer::RegisterRetry => Timer::RegisterRetry,
                SessionTimer::RequestDeadline => Timer::SessionDeadline,
            };
            Some((timer, at))
        });
        let inbox = self.inbox.as_ref().and_then(|i| {
            let at = i.poll_timeout()?;
            let timer = match i.next_timer()? {
                InboxTimer::Poll => Timer::InboxPoll,
                InboxTimer::RequestDeadline => Timer::InboxDeadline,
                InboxTimer::PersistRetry => Timer::PersistRetry,
                InboxTimer::UploadRetry => Timer::UploadRetry,
            };
            Some((timer, at))
        });
        let pop = self
            .pops
            .iter()
            .map(|p| p.deadline)
            .min()
            .map(|at| (Timer::PopGrace, at));
        [session, inbox, pop]
            .into_iter()
            .flatten()
            .min_by_key(|(_, at)| *at)
    }

    /// Status snapshot.
    pub fn status(&self) -> WorkspaceStatus {
        WorkspaceStatus {
            workspace_id: self.id.clone(),
            session: self.session.as_ref().map(Session::status),
            inbox: self.inbox.as_ref().map(Inbox::status),
            rejected: self.rejected,
        }
    }

    /// Every write this workspace asked for has completed and every inbox change is on disk
    /// (a driver waits for this before exiting).
    pub fn all_saved(&self) -> bool {
        self.session_writes.is_empty()
            && self
                .inbox
                .as_ref()
                .is_none_or(|i| !i.status().unsaved_changes)
    }

    /// Up to `limit` deliverable messages, oldest first, not removed.
    pub fn peek(&self, limit: i64) -> Vec<InboxMessage> {
        self.inbox
            .as_ref()
            .map(|i| i.peek(limit))
            .unwrap_or_default()
    }

    /// The oldest deliverable message not yet returned by [`Workspace::take_unreturned`].
    pub fn peek_unreturned(&self) -> Option<&InboxMessage> {
        self.inbox.as_ref()?.peek_unreturned()
    }

    /// Returns (and marks returned) the oldest message not returned before; it stays
    /// queued until popped.
    pub fn take_unreturned(&mut self) -> Option<InboxMessage> {
        self.inbox.as_mut()?.take_unreturned()
    }

    // ----- internals -----------------------------------------------------------------

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now.advance(now)
    }

    fn feed_session(&mut self, now: Instant, input: SessionInput) {
        if let Some(session) = &mut self.session {
            session.handle(now, input);
        }
    }

    fn feed_inbox(&mut self, now: Instant, input: InboxInput) {
        if let Some(inbox) = &mut self.inbox {
            inbox.handle(now, input);
        }
    }

    /// Pops `activity_id` if this workspace has it queued (the answer waits for the save;
    /// drain outputs after); false when it is not queued here.
    pub(crate) fn pop(&mut self, now: Instant, ticket: PopTicket, activity_id: &str) -> bool {
        let Some(inbox) = &mut self.inbox else {
            return false;
        };
        let Some(message) = inbox.pop(activity_id) else {
            return false;
        };
        let mark = inbox.save_mark();
        self.pops.push(PendingPop {
            ticket,
            message,
            mark,
            deadline: now + POP_SAVE_GRACE,
        });
        self.drain(now);
        true
    }

    fn outbound_finished(&mut self, file_ids: &[String]) {
        if let Some(inbox) = &mut self.inbox {
            for file_id in file_ids {
                inbox.note_outbound_upload(file_id);
            }
        }
        self.outbound_uploads = self.outbound_uploads.saturating_sub(1);
        if self.outbound_uploads > 0 {
            return;
        }
        let held = std::mem::take(&mut self.held_fetches);
        for fetch in held {
            // The inbox has dropped the downloads that turned out to be our own files.
            let (_, sub) = from_local(fetch.request.id.0);
            if self
                .inbox
                .as_ref()
                .is_some_and(|i| i.upload_wanted(RequestId(sub)))
            {
                self.out.push_back(Output::FetchUpload(fetch));
            }
        }
    }

    /// Moves every sub-machine action into `out` (ids made workspace-wide), applying the
    /// rules that join them, then answers pops whose removal is saved.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.session.as_mut().and_then(Session::poll_action) {
                progressed = true;
                self.session_action(now, action);
            }
            while let Some(action) = self.inbox.as_mut().and_then(Inbox::poll_action) {
                progressed = true;
                self.inbox_action(action);
            }
            // A token handed to the inbox or a stopped inbox can queue more actions.
            if !progressed {
                break;
            }
        }
        self.release_pops(now);
    }

    fn session_action(&mut self, now: Instant, action: Action) {
        match action {
            Action::SendHttp(mut request) => {
                request.id = RequestId(to_local(Part::Session, request.id.0));
                self.out.push_back(Output::SendHttp(request));
            }
            Action::Log(line) => self.out.push_back(Output::Log(line)),
            Action::Persist(request) => {
                self.session_writes.push(request.id.0);
                self.out.push_back(Output::Persist(PersistWrite {
                    id: PersistId(to_local(Part::Session, request.id.0)),
                    workspace_id: request.workspace_id,
                    file: request.file,
                    path: self.layout.file_name(request.file, &self.id),
                    contents: request.value.expose().as_bytes().to_vec(),
                }));
            }
            Action::TokenChanged {
                workspace_id,
                token,
            } => {
                if let Some(inbox) = &mut self.inbox {
                    inbox.set_token(token.clone());
                }
                self.out.push_back(Output::TokenChanged {
                    workspace_id,
                    token,
                });
            }
            Action::Fatal {
                reason,
                workspace_id,
                message,
            } => {
                self.rejected = true;
                // Every poll with the rejected token would fail too.
                self.feed_inbox(now, InboxInput::Shutdown);
                self.out.push_back(Output::Rejected {
                    workspace_id,
                    reason,
                    message,
                });
            }
        }
    }

    fn inbox_action(&mut self, action: InboxAction) {
        match action {
            InboxAction::SendHttp(mut request) => {
                request.id = RequestId(to_local(Part::Inbox, request.id.0));
                self.out.push_back(Output::SendHttp(request));
            }
            InboxAction::FetchUpload(mut fetch) => {
                fetch.request.id = RequestId(to_local(Part::Inbox, fetch.request.id.0));
                if self.outbound_uploads > 0 {
                    self.held_fetches.push(fetch);
                } else {
                    self.out.push_back(Output::FetchUpload(fetch));
                }
            }
            InboxAction::Persist { id, bytes } => {
                self.out.push_back(Output::Persist(PersistWrite {
                    id: PersistId(to_local(Part::Inbox, id.0)),
                    workspace_id: self.id.clone(),
                    file: StateFile::InboxState,
                    path: self.layout.file_name(StateFile::InboxState, &self.id),
                    contents: bytes,
                }))
            }
            InboxAction::Append { id, bytes, restart } => {
                self.out.push_back(Output::Append(AppendWrite {
                    id: PersistId(to_local(Part::Inbox, id.0)),
                    workspace_id: self.id.clone(),
                    file: StateFile::InboxJournal,
                    path: self.layout.file_name(StateFile::InboxJournal, &self.id),
                    contents: bytes,
                    restart,
                }));
            }
            InboxAction::Arrived(message) => self.out.push_back(Output::Arrived(message)),
            InboxAction::Log(line) => self.out.push_back(Output::Log(line)),
            InboxAction::SetAside(file) => self.out.push_back(Output::SetAside(SetAside {
                workspace_id: self.id.clone(),
                file,
                path: self.layout.file_name(file, &self.id),
            })),
        }
    }

    fn release_pops(&mut self, now: Instant) {
        if self.pops.is_empty() {
            return;
        }
        let inbox = self.inbox.as_ref();
        let saved = |p: &PendingPop| inbox.is_none_or(|i| i.is_saved(p.mark));
        let (ready, waiting): (Vec<PendingPop>, Vec<PendingPop>) = std::mem::take(&mut self.pops)
            .into_iter()
            .partition(|p| p.deadline <= now || saved(p));
        self.pops = waiting;
        for pop in ready {
            let saved = saved(&pop);
            self.out.push_back(Output::PopDone {
                ticket: pop.ticket,
                message: Some(pop.message),
                saved,
            });
        }
    }

    /// A log line about this workspace.
    pub(crate) fn log_line(&self, level: LogLevel, message: String) -> LogLine {
        LogLine {
            level,
            workspace_id: self.id.clone(),
            message,
        }
    }
}
