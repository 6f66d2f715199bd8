//! [`Fleet`]: every workspace of one process as one machine — the thing a driver runs.
//!
//! It routes each outcome to its workspace by id (module docs of `workspace`), wakes only
//! the workspaces that are due (a heap of deadlines: thousands of idle workspaces cost
//! nothing), orders messages across workspaces, and decides when the process ends:
//!
//! * one workspace rejected at register → [`Output::Exit`] with its message and code 3;
//! * several workspaces: a rejected one is logged at ERROR and reported
//!   ([`Output::Rejected`]) while the others keep running; when every one is rejected →
//!   [`Output::Exit`].
//!
//! "Next message" across workspaces means the oldest by `created_at` (ties and unparsable
//! timestamps: configuration order), so one busy workspace cannot starve another.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::wake_heap::WakeHeap;
use super::{Input, Output, Restored, Workspace, WorkspacePlan, WorkspaceStatus};
use crate::action::{LogLevel, PersistId};
use crate::config::ValidConfig;
use crate::http::RequestId;
use crate::inbox::{AgentSignal, InboxMessage, parse_rfc3339};
use crate::state_layout::{StateFile, StateLayout};
use crate::timer::LastNow;

/// What a fleet starts from: one plan per workspace, in configuration order.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// The workspaces.
    pub workspaces: Vec<WorkspacePlan>,
    /// Several workspaces in one process (changes file names and the exit rule).
    pub multi_workspace: bool,
}

impl FleetPlan {
    /// The plan for a validated configuration. `state_dir_display` names the state
    /// directory in operator messages. Fill in what the state directory holds with
    /// [`FleetPlan::restore`] before [`Fleet::new`].
    pub fn from_config(config: &ValidConfig, state_dir_display: &str) -> Self {
        let layout = StateLayout::new(config.multi_workspace);
        let workspaces = (0..config.workspaces.len())
            .filter_map(|i| {
                let ws = config.workspaces.get(i)?;
                Some(WorkspacePlan {
                    workspace_id: ws.id.clone(),
                    session: config
                        .heartbeat_enabled
                        .then(|| config.session_config(i))
                        .flatten(),
                    inbox: config
                        .inbox_enabled
                        .then(|| config.inbox_config(i))
                        .flatten(),
                    layout,
                    state_dir_display: state_dir_display.to_owned(),
                    restored: Restored::default(),
                })
            })
            .collect();
        FleetPlan {
            workspaces,
            multi_workspace: config.multi_workspace,
        }
    }

    /// Every state file to read: `(workspace index, file, name relative to the state dir)`.
    ///
    /// The original's cursor files are named after the first 8 characters of the id only:
    /// when two workspaces share that prefix, the file cannot be told apart (either could
    /// have written it last), so neither takes it and both read the backlog instead.
    pub fn files_to_restore(&self) -> Vec<(usize, StateFile, String)> {
        let all: Vec<(usize, StateFile, String)> = self
            .workspaces
            .iter()
            .enumerate()
            .flat_map(|(i, w)| {
                w.files_to_restore()
                    .into_iter()
                    .map(move |(file, name)| (i, file, name))
            })
            .collect();
        let mut legacy_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, file, name) in &all {
            if *file == StateFile::LegacyInboxCursor {
                *legacy_names.entry(name.as_str()).or_default() += 1;
            }
        }
        let shared = |name: &str| legacy_names.get(name).is_some_and(|n| *n > 1);
        all.iter()
            .filter(|(_, file, name)| *file != StateFile::LegacyInboxCursor || !shared(name))
            .cloned()
            .collect()
    }

    /// Records what file `file` of workspace `index` holds.
    pub fn restore(&mut self, index: usize, file: StateFile, contents: Vec<u8>) {
        if let Some(w) = self.workspaces.get_mut(index) {
            w.restored.files.insert(file, contents);
        }
    }
}

/// Every workspace of the process. See the module docs; the driver contract is the crate's.
#[derive(Debug)]
pub struct Fleet {
    workspaces: Vec<Workspace>,
    wakes: WakeHeap,
    out: VecDeque<Output>,
    multi_workspace: bool,
    rejected: usize,
    exited: bool,
    last_now: LastNow,
}

impl Fleet {
    /// Starts every workspace (workspace `i` gets jitter seed `seed + i`).
    pub fn new(plan: FleetPlan, now: Instant, seed: u64) -> Self {
        let mut requests = None;
        let workspaces: Vec<Workspace> = plan
            .workspaces
            .into_iter()
            .enumerate()
            .map(|(i, w)| Workspace::sharing(w, &mut requests, now, seed.wrapping_add(i as u64)))
            .collect();
        let mut fleet = Fleet {
            wakes: WakeHeap::new(workspaces.len()),
            workspaces,
            out: VecDeque::new(),
            multi_workspace: plan.multi_workspace,
            rejected: 0,
            exited: false,
            last_now: LastNow::new(now),
        };
        for idx in 0..fleet.workspaces.len() {
            fleet.drain(idx);
        }
        fleet.wakes.prune();
        fleet
    }

    /// Number of workspaces.
    pub fn len(&self) -> usize {
        self.workspaces.len()
    }

    /// True without workspaces.
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
    }

    /// Feeds one input. Outcome ids are the fleet's ([`Output`]s carry them); inputs naming
    /// a workspace go to it. Never fails: unknown ids and workspaces are ignored.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let now = self.clamp(now);
        match input {
            Input::HttpResponse {
                id,
                status,
                retry_after,
                body,
            } => {
                let (idx, local) = self.split(id.0);
                self.feed_workspace(
                    now,
                    idx,
                    Input::HttpResponse {
                        id: RequestId(local),
                        status,
                        retry_after,
                        body,
                    },
                );
            }
            Input::HttpFailed { id, error } => {
                let (idx, local) = self.split(id.0);
                let input = Input::HttpFailed {
                    id: RequestId(local),
                    error,
                };
                self.feed_workspace(now, idx, input);
            }
            Input::PersistDone { id, result } => {
                let (idx, local) = self.split(id.0);
                let input = Input::PersistDone {
                    id: PersistId(local),
                    result,
                };
                self.feed_workspace(now, idx, input);
            }
            Input::UploadStaged { id, result } => {
                let (idx, local) = self.split(id.0);
                let input = Input::UploadStaged {
                    id: RequestId(local),
                    result,
                };
                self.feed_workspace(now, idx, input);
            }
            Input::Pop {
                ticket,
                activity_id,
            } => {
                self.broadcast(now, AgentSignal::Used);
                let mut found = false;
                for idx in 0..self.workspaces.len() {
                    found = self
                        .workspaces
                        .get_mut(idx)
                        .is_some_and(|w| w.pop(now, ticket, &activity_id));
                    if found {
                        self.drain(idx);
                        break;
                    }
                }
                if !found {
                    self.out.push_back(Output::PopDone {
                        ticket,
                        message: None,
                        saved: true,
                    });
                }
            }
            Input::CurrentTask {
                workspace_id,
                summary,
            } => {
                self.broadcast(now, AgentSignal::Used);
                if let Some(idx) = self.index_of(&workspace_id) {
                    let input = Input::CurrentTask {
                        workspace_id,
                        summary,
                    };
                    self.feed_workspace(now, idx, input);
                }
            }
            Input::OutboundUploadStarted { workspace_id } => {
                if let Some(idx) = self.index_of(&workspace_id) {
                    self.feed_workspace(now, idx, Input::OutboundUploadStarted { workspace_id });
                }
            }
            Input::OutboundUploadFinished {
                workspace_id,
                file_ids,
            } => {
                if let Some(idx) = self.index_of(&workspace_id) {
                    let input = Input::OutboundUploadFinished {
                        workspace_id,
                        file_ids,
                    };
                    self.feed_workspace(now, idx, input);
                }
            }
            Input::Agent(signal) => self.broadcast(now, signal),
            Input::Shutdown => {
                for idx in 0..self.workspaces.len() {
                    self.feed_workspace(now, idx, Input::Shutdown);
                }
            }
        }
        self.wakes.prune();
    }

    /// Lets time pass: wakes every workspace that is due. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        while let Some(idx) = self.wakes.pop_due(now) {
            if let Some(w) = self.workspaces.get_mut(idx) {
                w.handle_timeout(now);
            }
            self.drain(idx);
        }
        self.wakes.prune();
    }

    /// The next instruction. Drain until `None` after every `handle*` call.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        crate::queue::pop_or_release(&mut self.out)
    }

    /// When to call [`Fleet::handle_timeout`] next: the last `now` while outputs are queued,
    /// else the earliest workspace deadline; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.is_empty() {
            return Some(self.last_now.get());
        }
        self.wakes.next()
    }

    /// Status of every workspace, in configuration order.
    pub fn status(&self) -> Vec<WorkspaceStatus> {
        self.workspaces.iter().map(Workspace::status).collect()
    }

    /// Every write asked for has completed and every inbox change is on disk.
    pub fn all_saved(&self) -> bool {
        self.workspaces.iter().all(Workspace::all_saved)
    }

    /// Up to `limit` deliverable messages across workspaces, oldest first, not removed.
    pub fn peek(&self, limit: usize) -> Vec<InboxMessage> {
        let per_workspace = i64::try_from(limit).unwrap_or(i64::MAX).max(1);
        let mut all: Vec<((i128, usize), InboxMessage)> = Vec::new();
        for (idx, w) in self.workspaces.iter().enumerate() {
            all.extend(
                w.peek(per_workspace)
                    .into_iter()
                    .map(|m| (age_key(&m, idx), m)),
            );
        }
        // Stable: each workspace's own order is kept among equal keys.
        all.sort_by_key(|(key, _)| *key);
        all.into_iter().take(limit).map(|(_, m)| m).collect()
    }

    /// The oldest message, across workspaces, not returned by this call before; it stays
    /// queued until popped (an agent that forgets to pop is not handed it forever).
    pub fn take_unreturned(&mut self) -> Option<InboxMessage> {
        let idx = self
            .workspaces
            .iter()
            .enumerate()
            .filter_map(|(idx, w)| w.peek_unreturned().map(|m| (age_key(m, idx), idx)))
            .min()
            .map(|(_, idx)| idx)?;
        self.workspaces.get_mut(idx)?.take_unreturned()
    }

    // ----- internals -----------------------------------------------------------------

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now.advance(now)
    }

    fn slots(&self) -> u64 {
        u64::try_from(self.workspaces.len())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Fleet id → (workspace index, workspace-local id).
    fn split(&self, id: u64) -> (usize, u64) {
        let n = self.slots();
        (usize::try_from(id % n).unwrap_or(usize::MAX), id / n)
    }

    /// Workspace-local id of workspace `idx` → fleet id.
    fn join(&self, idx: usize, local: u64) -> u64 {
        local
            .wrapping_mul(self.slots())
            .wrapping_add(u64::try_from(idx).unwrap_or(0))
    }

    fn index_of(&self, workspace_id: &str) -> Option<usize> {
        self.workspaces
            .iter()
            .position(|w| w.workspace_id() == workspace_id)
    }

    /// Every workspace hears what the agent does (it reads all their messages).
    fn broadcast(&mut self, now: Instant, signal: AgentSignal) {
        for idx in 0..self.workspaces.len() {
            self.feed_workspace(now, idx, Input::Agent(signal));
        }
    }

    fn feed_workspace(&mut self, now: Instant, idx: usize, input: Input) {
        if let Some(w) = self.workspaces.get_mut(idx) {
            w.handle(now, input);
            self.drain(idx);
        }
    }

    /// Moves workspace `idx`'s outputs into the fleet's queue (fleet ids), applying the
    /// exit rule, then records its next deadline.
    fn drain(&mut self, idx: usize) {
        while let Some(output) = self
            .workspaces
            .get_mut(idx)
            .and_then(Workspace::poll_output)
        {
            match output {
                Output::SendHttp(mut request) => {
                    request.id = RequestId(self.join(idx, request.id.0));
                    self.out.push_back(Output::SendHttp(request));
                }
                Output::FetchUpload(mut fetch) => {
                    fetch.request.id = RequestId(self.join(idx, fetch.request.id.0));
                    self.out.push_back(Output::FetchUpload(fetch));
                }
                Output::Persist(mut write) => {
                    write.id = PersistId(self.join(idx, write.id.0));
                    self.out.push_back(Output::Persist(write));
                }
                Output::Append(mut write) => {
                    write.id = PersistId(self.join(idx, write.id.0));
                    self.out.push_back(Output::Append(write));
                }
                Output::Rejected {
                    workspace_id,
                    reason,
                    message,
                } => self.rejected(idx, workspace_id, reason, message),
                other @ (Output::Log(_)
                | Output::SetAside(_)
                | Output::Arrived(_)
                | Output::TokenChanged { .. }
                | Output::PopDone { .. }
                | Output::Exit { .. }) => self.out.push_back(other),
            }
        }
        let next = self.workspaces.get(idx).and_then(Workspace::poll_timeout);
        self.wakes.set(idx, next);
    }

    fn rejected(
        &mut self,
        idx: usize,
        workspace_id: String,
        reason: crate::action::FatalReason,
        message: String,
    ) {
        self.rejected += 1;
        if !self.multi_workspace {
            self.out.push_back(Output::Rejected {
                workspace_id,
                reason,
                message: message.clone(),
            });
            self.exit(reason.exit_code(), message);
            return;
        }
        if let Some(w) = self.workspaces.get(idx) {
            let line = w.log_line(
                LogLevel::Error,
                format!("{message} This workspace is marked failed; the others keep running."),
            );
            self.out.push_back(Output::Log(line));
        }
        self.out.push_back(Output::Rejected {
            workspace_id,
            reason,
            message,
        });
        if self.rejected >= self.workspaces.len() {
            self.exit(
                reason.exit_code(),
                "every configured workspace was rejected at register; exiting.".to_owned(),
            );
        }
    }

    fn exit(&mut self, code: u8, message: String) {
        if !self.exited {
            self.exited = true;
            self.out.push_back(Output::Exit { code, message });
        }
    }
}

/// Sort key for "oldest first" across workspaces: parsed `created_at`, unparsable last.
fn age_key(message: &InboxMessage, slot: usize) -> (i128, usize) {
    (
        parse_rfc3339(&message.created_at).unwrap_or(i128::MAX),
        slot,
    )
}
