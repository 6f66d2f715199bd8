//! Runs many core [`Session`]s on one tokio task.
//!
//! The task owns every session (no locks around the machines). It sleeps until the
//! earliest `poll_timeout` of any session, performs actions as they are polled (HTTP on
//! spawned tasks through the shared pooled [`HttpClient`], file writes on the blocking
//! pool, log lines through `tracing`), and feeds outcomes back by request id. A
//! [`WakeHeap`] keeps the cost per event O(log n), so one process can keep thousands of
//! workspaces alive; at most [`MAX_IN_FLIGHT`] requests are out at once (the rest queue in
//! order), so thousands of workspaces starting together do not open thousands of connections.

use std::path::PathBuf;
use std::time::Instant;

use molecule_mcp_core::{
    Action, FatalReason, Input, PersistFile, PersistRequest, RequestId, Secret, Session,
    SessionConfig, SessionStatus, TransportError,
};
use tokio::sync::{mpsc, oneshot};

use crate::http_client::{HttpClient, HttpResponse};
use crate::request_queue::{FromHttp, RequestQueue};
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
        let suffix = if multi {
            format!("_{workspace_id}")
        } else {
            String::new()
        };
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
pub fn spawn(
    specs: Vec<SessionSpec>,
    http: HttpClient,
    seed: u64,
) -> (DriverHandle, mpsc::UnboundedReceiver<DriverEvent>) {
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
    let driver = Driver {
        wakes: WakeHeap::new(slots.len()),
        slots,
        requests: RequestQueue::new(http, MAX_IN_FLIGHT, outcome_tx.clone()),
        outcome_tx,
        outcome_rx,
        events: event_tx,
        commands: cmd_rx,
    };
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
    outcome_tx: mpsc::UnboundedSender<(usize, Input)>,
    outcome_rx: mpsc::UnboundedReceiver<(usize, Input)>,
    events: mpsc::UnboundedSender<DriverEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    requests: RequestQueue<Input>,
}

/// Most HTTP requests this driver has out at once (see `request_queue.rs`). 256 still
/// sustains 10,000 workspaces' heartbeats (500/s) up to ~500 ms round trips; steady state is
/// far below it.
const MAX_IN_FLIGHT: usize = 256;

impl Driver {
    async fn run(mut self) {
        for idx in 0..self.slots.len() {
            self.drain(idx);
        }
        self.requests.pump();
        // One timer for the whole run, moved only when the earliest wake-up changes.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            let next_wake = self.wakes.next();
            if next_wake != armed {
                if let Some(at) = next_wake {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                armed = next_wake;
            }
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
        }
    }

    fn outcome(&mut self, idx: usize, input: Input) {
        match input {
            Input::HttpResponse { .. } | Input::HttpFailed { .. } => self.requests.settled(),
            Input::PersistDone { .. } | Input::Shutdown => {}
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.session.handle(now(), input);
            self.drain(idx);
        }
    }

    fn shutdown_all(&mut self) {
        // Stopped sessions send nothing more; what is already out may finish.
        self.requests.clear();
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
        self.requests.pump();
    }

    /// Performs every queued action of slot `idx`, then re-registers its wake-up.
    fn drain(&mut self, idx: usize) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        while let Some(action) = slot.session.poll_action() {
            match action {
                Action::SendHttp(request) => self.requests.push(idx, request),
                Action::Log(line) => logging::emit(&line),
                Action::Persist(request) => {
                    let path = slot.paths.path(request.file).clone();
                    spawn_persist(idx, path, request, self.outcome_tx.clone());
                }
                Action::TokenChanged {
                    workspace_id,
                    token,
                } => {
                    let _ = self.events.send(DriverEvent::TokenChanged {
                        workspace_id,
                        token,
                    });
                }
                Action::Fatal {
                    reason,
                    workspace_id,
                    message,
                } => {
                    let _ = self.events.send(DriverEvent::Fatal {
                        workspace_id,
                        reason,
                        message,
                    });
                }
            }
        }
        let next = slot.session.poll_timeout();
        self.wakes.set(idx, next);
    }
}

impl FromHttp for Input {
    fn from_http(id: RequestId, outcome: Result<HttpResponse, TransportError>) -> Self {
        match outcome {
            Ok(resp) => Input::HttpResponse {
                id,
                status: resp.status,
                retry_after: resp.retry_after(),
                // No copy: a body read into one buffer becomes the Vec as it is.
                body: Vec::from(resp.body),
            },
            Err(error) => Input::HttpFailed { id, error },
        }
    }
}

fn spawn_persist(
    idx: usize,
    path: PathBuf,
    request: PersistRequest,
    tx: mpsc::UnboundedSender<(usize, Input)>,
) {
    tokio::task::spawn_blocking(move || {
        let result = persist::write_private_atomic(&path, request.value.expose().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()));
        let _ = tx.send((
            idx,
            Input::PersistDone {
                id: request.id,
                result,
            },
        ));
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use molecule_mcp_core::{PlatformUrl, Secret, SessionConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts requests that are open (received, not yet answered) and the most at once.
    #[derive(Default)]
    struct Load {
        open: AtomicUsize,
        peak: AtomicUsize,
        registers: AtomicUsize,
    }

    /// A minimal keep-alive HTTP/1.1 server that answers every request with `{}` after 500 ms.
    async fn slow_server(load: Arc<Load>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let load = Arc::clone(&load);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: headers, then Content-Length bytes of body.
                        let head_end = loop {
                            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break pos + 4;
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        while buf.len() < head_end + length {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        if head.starts_with("post /registry/register") {
                            load.registers.fetch_add(1, Ordering::SeqCst);
                        }
                        buf.drain(..head_end + length);
                        let open = load.open.fetch_add(1, Ordering::SeqCst) + 1;
                        load.peak.fetch_max(open, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        load.open.fetch_sub(1, Ordering::SeqCst);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_sessions_starting_together_never_exceed_the_in_flight_bound() {
        let load = Arc::new(Load::default());
        let addr = slow_server(Arc::clone(&load)).await;
        let platform = PlatformUrl::parse(&format!("http://{addr}")).expect("url");
        let dir = std::env::temp_dir().join(format!("mmcp-inflight-{}", std::process::id()));
        let sessions = MAX_IN_FLIGHT * 2 + 50;
        let specs = (0..sessions)
            .map(|i| {
                let id = format!("00000000-0000-4000-8000-{i:012x}");
                let config = SessionConfig::new(
                    platform.clone(),
                    id.clone(),
                    Secret::new("tok"),
                    "test",
                    serde_json::json!({"name": "t"}),
                );
                SessionSpec {
                    config,
                    paths: PersistPaths::for_workspace(&dir, &id, true),
                }
            })
            .collect();
        let (handle, _events) = spawn(specs, HttpClient::new(), 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while load.registers.load(Ordering::SeqCst) < sessions {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {sessions} registers arrived",
                load.registers.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let statuses = handle.status().await;
        handle.shutdown().await;
        let peak = load.peak.load(Ordering::SeqCst);
        // Every session was served, and the server saw a full window but never more.
        assert_eq!(statuses.len(), sessions);
        assert!(
            peak <= MAX_IN_FLIGHT,
            "{peak} requests were open at once (bound {MAX_IN_FLIGHT})"
        );
        assert!(
            peak >= MAX_IN_FLIGHT / 2,
            "only {peak} requests were ever open at once: the bound is not what limits"
        );
    }
}
