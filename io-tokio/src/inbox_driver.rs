//! Runs the core [`Inbox`] machines (one per workspace) on one tokio task and serves the
//! inbox tools through an [`InboxHandle`].
//!
//! The task owns every machine; tools reach them through a command channel, so no lock is
//! ever held around a machine. Actions are performed as they are polled:
//!
//! * `SendHttp` (polls, acks) on spawned tasks through the shared pooled [`HttpClient`];
//! * `FetchUpload`: download with the machine's byte cap enforced while the body streams in,
//!   then a private (0600) file `<uploads dir>/<32 hex>-<sanitised name>`; the machine is
//!   told the `workspace:<absolute path>` URI and sends the ack itself. While one of our
//!   own uploads is in flight for the workspace ([`InboxHandle::begin_outbound_upload`]),
//!   downloads are held back: the platform queues our own attachment as an inbound row
//!   too, and only the upload's answer says which file id that is (defect 19);
//! * `Persist`: the whole inbox state written atomically (temp + fsync + rename, 0600);
//! * `Arrived`: forwarded on the arrivals channel (push notifications) and signalled to
//!   every [`InboxHandle::wait_unreturned`] caller;
//! * `Log`: `tracing` on stderr.
//!
//! Across workspaces, "next message" means the oldest by `created_at` (ties: configuration
//! order), so one busy workspace cannot starve another.
//!
//! A pop is answered only once the state without the message is on disk (or, if the disk
//! keeps failing, after [`POP_SAVE_GRACE`]): a crash right after `inbox_pop` returned must
//! not deliver the message again. Shutdown stops polling and fetching but keeps serving
//! state writes until everything is saved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use molecule_mcp_core::inbox::{
    Inbox, InboxAction, InboxConfig, InboxInput, InboxMessage, InboxStatus, UploadFetch,
    UploadOutcome, parse_rfc3339,
};
use molecule_mcp_core::{RequestId, Secret, TransportError};
use tokio::sync::{mpsc, oneshot, watch};

use crate::http_client::{HttpClient, HttpResponse};
use crate::request_queue::{FromHttp, RequestQueue};
use crate::session_driver::now;
use crate::wake_heap::WakeHeap;
use crate::{logging, persist};

/// Longest a pop waits for its state write before it is answered anyway (a failing disk is
/// logged by the machine and retried; the tool call must not hang on it).
pub const POP_SAVE_GRACE: Duration = Duration::from_secs(5);

/// One workspace's inbox to run.
#[derive(Debug, Clone)]
pub struct InboxSpec {
    /// Core config.
    pub config: InboxConfig,
    /// The state file (queue, cursor, handled ids, uploads).
    pub state_file: PathBuf,
    /// Where downloaded chat uploads are staged.
    pub uploads_dir: PathBuf,
}

impl InboxSpec {
    /// The layout under `state_dir`: `.mcp_inbox_state` (suffixed `_<full workspace id>`
    /// in multi-workspace mode, so ids never collide — reference defect 34) and
    /// `chat-uploads/` (defect 18: never a hard-coded `/workspace/...`).
    pub fn in_state_dir(state_dir: &Path, config: InboxConfig, multi: bool) -> Self {
        let suffix = if multi {
            format!("_{}", config.workspace_id)
        } else {
            String::new()
        };
        InboxSpec {
            state_file: state_dir.join(format!(".mcp_inbox_state{suffix}")),
            uploads_dir: state_dir.join("chat-uploads"),
            config,
        }
    }
}

enum Command {
    Peek {
        limit: usize,
        reply: oneshot::Sender<Vec<InboxMessage>>,
    },
    TakeUnreturned {
        reply: oneshot::Sender<Option<InboxMessage>>,
    },
    Pop {
        activity_id: String,
        reply: oneshot::Sender<Option<InboxMessage>>,
    },
    SetToken {
        workspace_id: String,
        token: Secret,
    },
    BeginOutbound {
        workspace_id: String,
    },
    StopWorkspace {
        workspace_id: String,
    },
    EndOutbound {
        workspace_id: String,
        file_ids: Vec<String>,
    },
    Status {
        reply: oneshot::Sender<Vec<(String, InboxStatus)>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Tool-side handle to the running inboxes. Cheap to clone; when every clone is dropped the
/// driver shuts down.
#[derive(Debug, Clone)]
pub struct InboxHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Bumped on every arrival.
    arrivals: watch::Receiver<u64>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Peek { .. } => "Peek",
            Command::TakeUnreturned { .. } => "TakeUnreturned",
            Command::Pop { .. } => "Pop",
            Command::SetToken { .. } => "SetToken",
            Command::BeginOutbound { .. } => "BeginOutbound",
            Command::StopWorkspace { .. } => "StopWorkspace",
            Command::EndOutbound { .. } => "EndOutbound",
            Command::Status { .. } => "Status",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

impl InboxHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Up to `limit` deliverable messages, oldest first, not removed.
    pub async fn peek(&self, limit: usize) -> Vec<InboxMessage> {
        self.ask(|reply| Command::Peek { limit, reply })
            .await
            .unwrap_or_default()
    }

    /// The oldest message not yet returned by this call (it stays queued until popped).
    pub async fn take_unreturned(&self) -> Option<InboxMessage> {
        self.ask(|reply| Command::TakeUnreturned { reply })
            .await
            .flatten()
    }

    /// Waits up to `timeout` for a message not returned before (reference defect 20: an
    /// agent that forgets `inbox_pop` is not handed the same message forever).
    pub async fn wait_unreturned(&self, timeout: Duration) -> Option<InboxMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut arrivals = self.arrivals.clone();
        loop {
            // Mark the current count seen *before* asking, so an arrival between the answer
            // and the wait below still wakes us.
            arrivals.borrow_and_update();
            if let Some(message) = self.take_unreturned().await {
                return Some(message);
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the driver is gone.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Removes a handled message (persisted as handled, never delivered again). Returns once
    /// the removal is on disk, so a crash after it cannot re-deliver the message (at most
    /// [`POP_SAVE_GRACE`] if the disk keeps failing).
    pub async fn pop(&self, activity_id: &str) -> Option<InboxMessage> {
        let activity_id = activity_id.to_owned();
        self.ask(|reply| Command::Pop { activity_id, reply })
            .await
            .flatten()
    }

    /// The platform minted a new token for `workspace_id`.
    pub fn set_token(&self, workspace_id: &str, token: Secret) {
        let _ = self.commands.send(Command::SetToken {
            workspace_id: workspace_id.to_owned(),
            token,
        });
    }

    /// `workspace_id` is about to upload files itself: hold inbound downloads back until
    /// [`InboxHandle::end_outbound_upload`] says which file ids were ours. Every begin must be
    /// followed by one end (also when the upload failed: with no ids).
    pub fn begin_outbound_upload(&self, workspace_id: &str) {
        let _ = self.commands.send(Command::BeginOutbound {
            workspace_id: workspace_id.to_owned(),
        });
    }

    /// The upload is over; `file_ids` are the files it created (never fetched or acked as
    /// inbound uploads). Held downloads of other files start now.
    pub fn end_outbound_upload(&self, workspace_id: &str, file_ids: Vec<String>) {
        let _ = self.commands.send(Command::EndOutbound {
            workspace_id: workspace_id.to_owned(),
            file_ids,
        });
    }

    /// Stops polling `workspace_id` (the platform rejected it at register: every poll would
    /// fail). Its queued messages stay readable and poppable.
    pub fn stop_workspace(&self, workspace_id: &str) {
        let _ = self.commands.send(Command::StopWorkspace {
            workspace_id: workspace_id.to_owned(),
        });
    }

    /// Status of every inbox, in spec order.
    pub async fn status(&self) -> Vec<(String, InboxStatus)> {
        self.ask(|reply| Command::Status { reply })
            .await
            .unwrap_or_default()
    }

    /// Stops polling and waits until the state of every inbox is on disk (bound it with a
    /// timeout: a failing disk retries forever).
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// Starts the driver task. Returns the tool handle and the stream of newly arrived messages
/// (for push notifications). `seed` makes jitter reproducible (inbox `i` gets `seed + i`).
pub fn spawn(
    specs: Vec<InboxSpec>,
    http: HttpClient,
    seed: u64,
) -> (InboxHandle, mpsc::UnboundedReceiver<InboxMessage>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (arrived_tx, arrived_rx) = mpsc::unbounded_channel();
    let (count_tx, count_rx) = watch::channel(0u64);
    let start = now();
    let slots: Vec<Slot> = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let restored = read_state(&spec.state_file);
            Slot {
                inbox: Inbox::new(
                    spec.config,
                    restored.as_deref(),
                    start,
                    seed.wrapping_add(i as u64),
                ),
                state_file: spec.state_file,
                uploads_dir: spec.uploads_dir,
                outbound_uploads: 0,
                held_fetches: Vec::new(),
            }
        })
        .collect();
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        requests: RequestQueue::new(http.clone(), MAX_IN_FLIGHT, outcome_tx.clone()),
        wakes: WakeHeap::new(slots.len()),
        slots,
        http,
        outcome_tx,
        outcome_rx,
        commands: cmd_rx,
        arrived: arrived_tx,
        arrival_count: count_tx,
        stopping: None,
        pending_pops: Vec::new(),
    };
    tokio::spawn(driver.run());
    (
        InboxHandle {
            commands: cmd_tx,
            arrivals: count_rx,
        },
        arrived_rx,
    )
}

fn read_state(path: &Path) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            // The machine treats a missing state as "first start" and re-reads the backlog.
            tracing::warn!(
                "inbox: cannot read {}: {e}; starting with an empty inbox",
                path.display()
            );
            None
        }
    }
}

struct Slot {
    inbox: Inbox,
    state_file: PathBuf,
    uploads_dir: PathBuf,
    /// Our own uploads in flight from this workspace.
    outbound_uploads: u32,
    /// Downloads held back meanwhile.
    held_fetches: Vec<UploadFetch>,
}

struct Driver {
    slots: Vec<Slot>,
    wakes: WakeHeap,
    http: HttpClient,
    outcome_tx: mpsc::UnboundedSender<(usize, InboxInput)>,
    outcome_rx: mpsc::UnboundedReceiver<(usize, InboxInput)>,
    commands: mpsc::UnboundedReceiver<Command>,
    arrived: mpsc::UnboundedSender<InboxMessage>,
    arrival_count: watch::Sender<u64>,
    /// Set once shutdown was asked for: answered when everything is saved.
    stopping: Option<oneshot::Sender<()>>,
    /// Pops whose removal is not on disk yet.
    pending_pops: Vec<PendingPop>,
    /// Polls and acks (downloads run outside the bound: few, and long).
    requests: RequestQueue<InboxInput>,
}

/// Most polls and acks this driver has out at once (see `request_queue.rs`). 512 still
/// sustains 10,000 inboxes' polls (2,000/s) up to ~250 ms round trips; steady state is far
/// below it. Upload downloads are not counted (few, and long).
const MAX_IN_FLIGHT: usize = 512;

/// A pop answered once slot `idx` has saved its state (or at `deadline`).
struct PendingPop {
    idx: usize,
    message: InboxMessage,
    reply: oneshot::Sender<Option<InboxMessage>>,
    deadline: tokio::time::Instant,
}

/// Sort key for "oldest first" across inboxes: parsed `created_at`, unparsable last.
fn age_key(message: &InboxMessage, slot: usize) -> (i128, usize) {
    (
        parse_rfc3339(&message.created_at).unwrap_or(i128::MAX),
        slot,
    )
}

impl Driver {
    async fn run(mut self) {
        for idx in 0..self.slots.len() {
            self.drain(idx);
        }
        self.requests.pump();
        // One timer for the whole run, moved only when the earliest wake-up changes.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<tokio::time::Instant> = None;
        loop {
            let machine_wake = self.wakes.next().map(tokio::time::Instant::from_std);
            let pop_deadline = self.pending_pops.iter().map(|p| p.deadline).min();
            let next_wake = match (machine_wake, pop_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if next_wake != armed {
                if let Some(at) = next_wake {
                    sleep.as_mut().reset(at);
                }
                armed = next_wake;
            }
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.command(command);
                        self.requests.pump();
                    }
                    // Every handle is gone: nobody can pop any more. Stop and save.
                    None if self.stopping.is_none() => self.begin_shutdown(None),
                    None => {}
                },
                Some((idx, input)) = self.outcome_rx.recv() => {
                    self.outcome(idx, input);
                    // Take whatever else has arrived before going back to sleep.
                    while let Ok((idx, input)) = self.outcome_rx.try_recv() {
                        self.outcome(idx, input);
                    }
                    self.requests.pump();
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.fire_due();
                }
            }
            self.release_pops();
            if self.stopping.is_some() && self.all_saved() {
                if let Some(reply) = self.stopping.take() {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }

    /// Answers every pending pop whose slot has saved its state, or whose grace is over.
    fn release_pops(&mut self) {
        if self.pending_pops.is_empty() {
            return;
        }
        let t = tokio::time::Instant::now();
        let (ready, waiting): (Vec<PendingPop>, Vec<PendingPop>) =
            std::mem::take(&mut self.pending_pops)
                .into_iter()
                .partition(|p| {
                    p.deadline <= t
                        || self
                            .slots
                            .get(p.idx)
                            .is_none_or(|s| !s.inbox.status().unsaved_changes)
                });
        self.pending_pops = waiting;
        for pop in ready {
            let _ = pop.reply.send(Some(pop.message));
        }
    }

    fn outcome(&mut self, idx: usize, input: InboxInput) {
        match input {
            InboxInput::HttpResponse { .. } | InboxInput::HttpFailed { .. } => {
                self.requests.settled()
            }
            InboxInput::PersistDone { .. }
            | InboxInput::UploadDone { .. }
            | InboxInput::Shutdown => {}
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.inbox.handle(now(), input);
            self.drain(idx);
        }
    }

    fn all_saved(&self) -> bool {
        self.slots.iter().all(|s| !s.inbox.status().unsaved_changes)
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<()>>) {
        // Stopped inboxes send nothing more; what is already out may finish.
        self.requests.clear();
        let t = now();
        for idx in 0..self.slots.len() {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.inbox.handle(t, InboxInput::Shutdown);
            }
            self.drain(idx);
        }
        // Without a reply channel (all handles dropped) a dummy receiver is fine.
        self.stopping = Some(reply.unwrap_or_else(|| oneshot::channel().0));
    }

    fn slot_of(&self, workspace_id: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.inbox.workspace_id() == workspace_id)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Peek { limit, reply } => {
                let mut all: Vec<((i128, usize), InboxMessage)> = Vec::new();
                for (idx, slot) in self.slots.iter().enumerate() {
                    let limit = i64::try_from(limit).unwrap_or(i64::MAX).max(1);
                    all.extend(
                        slot.inbox
                            .peek(limit)
                            .into_iter()
                            .map(|m| (age_key(&m, idx), m)),
                    );
                }
                // Stable: each inbox's own order is kept among equal keys.
                all.sort_by_key(|(key, _)| *key);
                let _ = reply.send(all.into_iter().take(limit).map(|(_, m)| m).collect());
            }
            Command::TakeUnreturned { reply } => {
                let oldest = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(idx, slot)| {
                        slot.inbox.peek_unreturned().map(|m| (age_key(m, idx), idx))
                    })
                    .min()
                    .map(|(_, idx)| idx);
                let taken = oldest
                    .and_then(|idx| self.slots.get_mut(idx))
                    .and_then(|slot| slot.inbox.take_unreturned());
                let _ = reply.send(taken);
            }
            Command::Pop { activity_id, reply } => {
                for idx in 0..self.slots.len() {
                    let Some(slot) = self.slots.get_mut(idx) else {
                        continue;
                    };
                    if let Some(message) = slot.inbox.pop(&activity_id) {
                        self.drain(idx);
                        // Answered by `release_pops` once the removal is on disk.
                        let deadline = tokio::time::Instant::now() + POP_SAVE_GRACE;
                        self.pending_pops.push(PendingPop {
                            idx,
                            message,
                            reply,
                            deadline,
                        });
                        return;
                    }
                }
                let _ = reply.send(None);
            }
            Command::SetToken {
                workspace_id,
                token,
            } => {
                if let Some(slot) = self
                    .slot_of(&workspace_id)
                    .and_then(|idx| self.slots.get_mut(idx))
                {
                    slot.inbox.set_token(token);
                }
            }
            Command::BeginOutbound { workspace_id } => {
                if let Some(slot) = self
                    .slot_of(&workspace_id)
                    .and_then(|idx| self.slots.get_mut(idx))
                {
                    slot.outbound_uploads = slot.outbound_uploads.saturating_add(1);
                }
            }
            Command::StopWorkspace { workspace_id } => {
                if let Some(idx) = self.slot_of(&workspace_id) {
                    if let Some(slot) = self.slots.get_mut(idx) {
                        slot.inbox.handle(now(), InboxInput::Shutdown);
                    }
                    self.drain(idx);
                }
            }
            Command::EndOutbound {
                workspace_id,
                file_ids,
            } => {
                let Some(idx) = self.slot_of(&workspace_id) else {
                    return;
                };
                let Some(slot) = self.slots.get_mut(idx) else {
                    return;
                };
                for file_id in &file_ids {
                    slot.inbox.note_outbound_upload(file_id);
                }
                slot.outbound_uploads = slot.outbound_uploads.saturating_sub(1);
                if slot.outbound_uploads == 0 {
                    let held = std::mem::take(&mut slot.held_fetches);
                    for fetch in held {
                        // The machine has dropped the ones that turned out to be ours.
                        if self
                            .slots
                            .get(idx)
                            .is_some_and(|s| s.inbox.upload_wanted(fetch.request.id))
                        {
                            self.start_fetch(idx, fetch);
                        }
                    }
                }
                self.drain(idx);
            }
            Command::Status { reply } => {
                let all = self
                    .slots
                    .iter()
                    .map(|s| (s.inbox.workspace_id().to_owned(), s.inbox.status()))
                    .collect();
                let _ = reply.send(all);
            }
            Command::Shutdown { reply } => match self.stopping.take() {
                // Asked twice: answer the earlier caller too once saved.
                Some(earlier) => {
                    let _ = earlier.send(());
                    self.stopping = Some(reply);
                }
                None => self.begin_shutdown(Some(reply)),
            },
        }
    }

    fn start_fetch(&self, idx: usize, fetch: UploadFetch) {
        if let Some(slot) = self.slots.get(idx) {
            spawn_fetch(
                &self.http,
                &self.outcome_tx,
                idx,
                slot.uploads_dir.clone(),
                fetch,
            );
        }
    }

    fn fire_due(&mut self) {
        let t = now();
        while let Some(idx) = self.wakes.pop_due(t) {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.inbox.handle_timeout(t);
            }
            self.drain(idx);
        }
        self.requests.pump();
    }

    /// Performs every queued action of slot `idx`, then re-registers its wake-up.
    fn drain(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        while let Some(action) = slot.inbox.poll_action() {
            match action {
                InboxAction::SendHttp(request) => self.requests.push(idx, request),
                InboxAction::FetchUpload(fetch) if slot.outbound_uploads > 0 => {
                    slot.held_fetches.push(fetch)
                }
                InboxAction::FetchUpload(fetch) => spawn_fetch(
                    &self.http,
                    &self.outcome_tx,
                    idx,
                    slot.uploads_dir.clone(),
                    fetch,
                ),
                InboxAction::Persist { id, bytes } => {
                    let path = slot.state_file.clone();
                    let tx = self.outcome_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let result = persist::write_private_atomic(&path, &bytes)
                            .map_err(|e| format!("{}: {e}", path.display()));
                        let _ = tx.send((idx, InboxInput::PersistDone { id, result }));
                    });
                }
                InboxAction::Arrived(message) => {
                    let _ = self.arrived.send(message);
                    self.arrival_count.send_modify(|n| *n = n.wrapping_add(1));
                }
                InboxAction::Log(line) => logging::emit(&line),
            }
        }
        let next = slot.inbox.poll_timeout();
        self.wakes.set(idx, next);
    }
}

impl FromHttp for InboxInput {
    fn from_http(id: RequestId, outcome: Result<HttpResponse, TransportError>) -> Self {
        match outcome {
            Ok(resp) => InboxInput::HttpResponse {
                id,
                status: resp.status,
                retry_after: resp.retry_after(),
                // No copy: a body read into one buffer becomes the Vec as it is.
                body: Vec::from(resp.body),
            },
            Err(error) => InboxInput::HttpFailed { id, error },
        }
    }
}

/// Runs one download on its own task and reports the outcome for slot `idx`.
fn spawn_fetch(
    http: &HttpClient,
    tx: &mpsc::UnboundedSender<(usize, InboxInput)>,
    idx: usize,
    dir: PathBuf,
    fetch: UploadFetch,
) {
    let http = http.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let id = fetch.request.id;
        let outcome = fetch_and_stage(&http, fetch, dir).await;
        let _ = tx.send((idx, InboxInput::UploadDone { id, outcome }));
    });
}

/// Downloads one upload (cap enforced while streaming) and stages it privately.
async fn fetch_and_stage(http: &HttpClient, fetch: UploadFetch, dir: PathBuf) -> UploadOutcome {
    let cap = usize::try_from(fetch.max_bytes).unwrap_or(usize::MAX);
    let response = match http.execute_capped(&fetch.request, cap).await {
        Ok(r) => r,
        Err(e) => {
            let retryable = match e.kind {
                molecule_mcp_core::TransportErrorKind::BodyTooLarge => false,
                molecule_mcp_core::TransportErrorKind::Connect
                | molecule_mcp_core::TransportErrorKind::Timeout
                | molecule_mcp_core::TransportErrorKind::Io
                | molecule_mcp_core::TransportErrorKind::Protocol => true,
            };
            return UploadOutcome::Failed {
                detail: e.message,
                retryable,
            };
        }
    };
    match response.status {
        200..=299 => {}
        404 => return UploadOutcome::Gone,
        status => {
            let retryable = status >= 500 || matches!(status, 408 | 425 | 429);
            return UploadOutcome::Failed {
                detail: format!("download answered HTTP {status}"),
                retryable,
            };
        }
    }
    let path = dir.join(format!("{}-{}", random_hex32(), fetch.name));
    let body = response.body;
    let written = tokio::task::spawn_blocking({
        let path = path.clone();
        move || persist::write_private_atomic(&path, &body)
    })
    .await;
    match written {
        Ok(Ok(())) => {
            let absolute = std::path::absolute(&path).unwrap_or(path);
            UploadOutcome::Staged {
                local_uri: format!("workspace:{}", absolute.display()),
            }
        }
        Ok(Err(e)) => UploadOutcome::Failed {
            detail: format!("cannot write {}: {e}", path.display()),
            retryable: true,
        },
        Err(e) => UploadOutcome::Failed {
            detail: format!("staging task failed: {e}"),
            retryable: true,
        },
    }
}

/// 32 random hex characters for staged file names (unguessable, never colliding).
fn random_hex32() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_os {
        // No /dev/urandom (exotic platforms): std's per-process random hasher keys plus
        // time and a counter still give unique, unpredictable-enough names.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for half in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_names_are_hex_and_distinct() {
        let a = random_hex32();
        let b = random_hex32();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn layout_separates_workspaces_in_multi_mode() {
        let platform = molecule_mcp_core::PlatformUrl::parse("http://127.0.0.1:1").expect("url");
        let cfg = InboxConfig::new(
            platform,
            "aaaaaaaa-0000-4000-8000-000000000001",
            Secret::new("t"),
        );
        let single = InboxSpec::in_state_dir(Path::new("/s"), cfg.clone(), false);
        let multi = InboxSpec::in_state_dir(Path::new("/s"), cfg, true);
        assert_eq!(single.state_file, Path::new("/s/.mcp_inbox_state"));
        assert_eq!(
            multi.state_file,
            Path::new("/s/.mcp_inbox_state_aaaaaaaa-0000-4000-8000-000000000001")
        );
        assert_eq!(multi.uploads_dir, Path::new("/s/chat-uploads"));
    }
}
