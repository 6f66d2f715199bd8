//! Runs many core [`Session`]s on one tokio task.
//!
//! The task owns every session (no locks around the machines). It sleeps until the
//! earliest `poll_timeout` of any session, performs actions as they are polled (HTTP on
//! spawned tasks through the shared pooled [`HttpClient`], file writes on the blocking
//! pool, log lines through `tracing`), and feeds outcomes back by request id. A
//! [`WakeHeap`] keeps the cost per event O(log n), so one process can keep thousands of
//! workspaces alive.

use std::path::PathBuf;
use std::time::Instant;

use molecule_mcp_core::{Action, FatalReason, Input, PersistFile, PersistRequest, Secret, Session, SessionConfig, SessionStatus};
use tokio::sync::{mpsc, oneshot};

use crate::http_client::HttpClient;
use crate::wake_heap::WakeHeap;
use crate::{logging, persist};

/// Where a session's persisted files go.
#[derive(Debug, Clone)]
pub struct PersistPaths {
    /// Inbound secret file.
    pub inbound_secret: PathBuf,
    /// Minted auth token file.
    pub auth_token: PathBuf,
}

impl PersistPaths {
    /// The layout for `workspace_id` in `state_dir`: plain names in single-workspace mode,
    /// suffixed with the full workspace id in multi-workspace mode (no shared files).
    pub fn for_workspace(state_dir: &std::path::Path, workspace_id: &str, multi: bool) -> Self {
        let suffix = if multi { format!("_{workspace_id}") } else { String::new() };
        PersistPaths {
            inbound_secret: state_dir.join(format!(".platform_inbound_secret{suffix}")),
            auth_token: state_dir.join(format!(".auth_token{suffix}")),
        }
    }

    fn path(&self, file: PersistFile) -> &PathBuf {
        match file {
            PersistFile::InboundSecret => &self.inbound_secret,
            PersistFile::AuthToken => &self.auth_token,
        }
    }
}

/// One session to run.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    /// Core config (use `known_inbound_secret` to avoid rewriting an unchanged file).
    pub config: SessionConfig,
    /// Target files for persist actions.
    pub paths: PersistPaths,
}

/// Things the embedding program must react to.
#[derive(Debug, Clone)]
pub enum DriverEvent {
    /// A session cannot continue (e.g. register 401/403). Single-workspace programs exit.
    Fatal {
        /// Which workspace.
        workspace_id: String,
        /// Why.
        reason: FatalReason,
        /// Operator message (no secrets).
        message: String,
    },
    /// The platform minted a token; tools must use it from now on.
    TokenChanged {
        /// Which workspace.
        workspace_id: String,
        /// New token.
        token: Secret,
    },
}

enum Command {
    Shutdown(oneshot::Sender<()>),
    Status(oneshot::Sender<Vec<(String, SessionStatus)>>),
}

/// Control handle for a running driver. Dropping it shuts the driver down.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Shutdown(_) => f.write_str("Shutdown"),
            Command::Status(_) => f.write_str("Status"),
        }
    }
}

impl DriverHandle {
    /// Stops every session (no more heartbeats) and waits for the driver task to finish.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Status of every session, in spec order.
    pub async fn status(&self) -> Vec<(String, SessionStatus)> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Status(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// The current time in the form the core expects. Taken from tokio's clock so tests with
/// paused time stay consistent.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Starts the driver task. `seed` makes jitter reproducible (each session gets `seed + index`).
pub fn spawn(specs: Vec<SessionSpec>, http: HttpClient, seed: u64) -> (DriverHandle, mpsc::UnboundedReceiver<DriverEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let start = now();
    let slots = specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Slot {
            session: Session::new(spec.config, start, seed.wrapping_add(i as u64)),
            paths: spec.paths,
        })
        .collect::<Vec<_>>();
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let driver = Driver { wakes: WakeHeap::new(slots.len()), slots, http, outcome_tx, outcome_rx, events: event_tx, commands: cmd_rx };
    tokio::spawn(driver.run());
    (DriverHandle { commands: cmd_tx }, event_rx)
}

struct Slot {
    session: Session,
    paths: PersistPaths,
}

struct Driver {
    slots: Vec<Slot>,
    wakes: WakeHeap,
    http: HttpClient,
    outcome_tx: mpsc::UnboundedSender<(usize, Input)>,
    outcome_rx: mpsc::UnboundedReceiver<(usize, Input)>,
    events: mpsc::UnboundedSender<DriverEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
}

impl Driver {
    async fn run(mut self) {
        for idx in 0..self.slots.len() {
            self.drain(idx);
        }
        loop {
            let next_wake = self.wakes.next();
            let sleep = async {
                match next_wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Status(reply)) => {
                        let all = self.slots.iter().map(|s| (s.session.workspace_id().to_owned(), s.session.status())).collect();
                        let _ = reply.send(all);
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.shutdown_all();
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        self.shutdown_all();
                        return;
                    }
                },
                Some((idx, input)) = self.outcome_rx.recv() => {
                    if let Some(slot) = self.slots.get_mut(idx) {
                        slot.session.handle(now(), input);
                        self.drain(idx);
                    }
                }
                () = sleep => self.fire_due(),
            }
        }
    }

    fn shutdown_all(&mut self) {
        let t = now();
        for idx in 0..self.slots.len() {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.session.handle(t, Input::Shutdown);
            }
            self.drain(idx);
        }
    }

    /// Fires the timeouts of every slot that is due.
    fn fire_due(&mut self) {
        let t = now();
        while let Some(idx) = self.wakes.pop_due(t) {
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.session.handle_timeout(t);
            }
            self.drain(idx);
        }
    }

    /// Performs every queued action of slot `idx`, then re-registers its wake-up.
    fn drain(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else { return };
        while let Some(action) = slot.session.poll_action() {
            match action {
                Action::SendHttp(request) => {
                    let http = self.http.clone();
                    let tx = self.outcome_tx.clone();
                    tokio::spawn(async move {
                        let input = match http.execute(&request).await {
                            Ok(resp) => Input::HttpResponse {
                                id: request.id,
                                status: resp.status,
                                retry_after: resp.retry_after(),
                                body: resp.body.to_vec(),
                            },
                            Err(error) => Input::HttpFailed { id: request.id, error },
                        };
                        let _ = tx.send((idx, input));
                    });
                }
                Action::Log(line) => logging::emit(&line),
                Action::Persist(request) => {
                    let path = slot.paths.path(request.file).clone();
                    spawn_persist(idx, path, request, self.outcome_tx.clone());
                }
                Action::TokenChanged { workspace_id, token } => {
                    let _ = self.events.send(DriverEvent::TokenChanged { workspace_id, token });
                }
                Action::Fatal { reason, workspace_id, message } => {
                    let _ = self.events.send(DriverEvent::Fatal { workspace_id, reason, message });
                }
            }
        }
        let next = slot.session.poll_timeout();
        self.wakes.set(idx, next);
    }
}

fn spawn_persist(idx: usize, path: PathBuf, request: PersistRequest, tx: mpsc::UnboundedSender<(usize, Input)>) {
    tokio::task::spawn_blocking(move || {
        let result = persist::write_private_atomic(&path, request.value.expose().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()));
        let _ = tx.send((idx, Input::PersistDone { id: request.id, result }));
    });
}
