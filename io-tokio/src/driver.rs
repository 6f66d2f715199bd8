//! Runs the core [`Fleet`] (every workspace of the process) on one tokio task.
//!
//! The task owns the fleet: tools reach it through a command channel ([`FleetHandle`]), so
//! no lock is ever held around a machine. The loop sleeps until `poll_timeout`, performs
//! each output as it is polled, and feeds every outcome back by id:
//!
//! * `SendHttp` on spawned tasks through the pooled [`HttpClient`], at most
//!   [`MAX_IN_FLIGHT`] at once (`request_queue.rs`);
//! * `FetchUpload`: download with the core's byte cap enforced while the body streams in;
//!   a 2xx body is written (0600) to the file the core named under the uploads directory,
//!   anything else goes back to the core as the answer or failure it was;
//! * `Persist`: the contents written atomically to the state file the core named;
//! * `Append`: the lines appended to the journal the core named (O_APPEND, fsync), on the
//!   blocking pool like `Persist` (the core keeps one write outstanding, so they stay in order);
//! * `SetAside`: the unusable state file renamed to a timestamped backup, at once (so it
//!   happens before any later write of that file);
//! * `Log` through `tracing` (stderr); `PopDone` to the waiting tool call; `Arrived`,
//!   `TokenChanged`, `Rejected` and `Exit` are forwarded as they are to the embedding
//!   program, which reacts to them (push notifications, tool tokens, exit).
//!
//! Every decision (what to send, when, what a status means, when a pop is durable, which
//! workspace's message is next) is the core's; this file only moves bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use molecule_mcp_core::PersistError;
use molecule_mcp_core::inbox::{AgentSignal, InboxMessage, UploadFetch};
use molecule_mcp_core::workspace::{
    AppendWrite, Fleet, FleetPlan, Input, Output, PersistWrite, PopOutcome, PopTicket,
    WorkspaceStatus,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::http_client::HttpClient;
use crate::request_queue::RequestQueue;
use crate::{logging, persist};

/// Most requests the driver has out at once (see `request_queue.rs`). Steady state needs
/// far fewer: 10,000 workspaces with their inbox send ~2,500 requests/s, a few milliseconds
/// each on a healthy platform, so about a dozen are out at a time. The bound matters at
/// start-up, when every workspace registers and polls at once: each open request holds
/// connection buffers the allocator keeps afterwards (768 instead of 256 kept ~20 MiB more
/// resident at 1,000 workspaces in the A/B scale run of BENCHMARKS.md). 256 still sustains
/// 2,500 requests/s up to ~100 ms round trips. Upload downloads are not counted (few, and
/// long).
pub const MAX_IN_FLIGHT: usize = 256;

/// Shortest spacing of [`AgentSignal::Used`] signals passed to the fleet. Far below the
/// core's active window (minutes), so coalescing changes no cadence.
pub const USED_EVERY: Duration = Duration::from_secs(1);

/// The current time in the form the core expects. Taken from tokio's clock so tests with
/// paused time stay consistent.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Reads every state file the plan asks for from `state_dir`. A missing file is simply
/// absent; an unreadable one is logged and treated as absent (the core then starts that
/// part fresh, e.g. re-reads the inbox backlog).
pub fn restore(plan: &mut FleetPlan, state_dir: &Path) {
    for (idx, file, name) in plan.files_to_restore() {
        let path = state_dir.join(&name);
        match persist::read_bounded(&path, file.max_read_bytes()) {
            Ok(Some(bytes)) => {
                if file.is_secret() {
                    crate::secrets::remember(&String::from_utf8_lossy(&bytes));
                }
                plan.restore(idx, file, bytes)
            }
            Ok(None) => {}
            // Starting without it would overwrite it with the next save: keep it aside.
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                tracing::warn!("{} is {e}; starting without it", path.display());
                set_aside(&path);
            }
            Err(e) => tracing::warn!("cannot read {}: {e}; starting without it", path.display()),
        }
    }
}

/// Performs [`Output::SetAside`] and logs where the file went (or why it could not move).
fn set_aside(path: &Path) {
    match persist::set_aside(path) {
        Ok(backup) => tracing::warn!(
            "the unusable state file {} was moved aside to {}; inspect or delete it",
            path.display(),
            backup.display()
        ),
        Err(e) => tracing::error!(
            "the unusable state file {} could not be moved aside ({e}); copy it elsewhere now if its contents \
             matter: the next save replaces it",
            path.display()
        ),
    }
}

enum Command {
    Input(Input),
    Pop {
        activity_id: String,
        reply: oneshot::Sender<PopOutcome<InboxMessage>>,
    },
    Peek {
        limit: usize,
        reply: oneshot::Sender<Vec<InboxMessage>>,
    },
    TakeUnreturned {
        reply: oneshot::Sender<Option<InboxMessage>>,
    },
    Status {
        reply: oneshot::Sender<Vec<WorkspaceStatus>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Input(_) => "Input",
            Command::Pop { .. } => "Pop",
            Command::Peek { .. } => "Peek",
            Command::TakeUnreturned { .. } => "TakeUnreturned",
            Command::Status { .. } => "Status",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

/// Handle to the running fleet, for the tools and the program. Cheap to clone; when every
/// clone is dropped the driver stops the fleet and saves its state.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Bumped on every arrival.
    arrivals: watch::Receiver<u64>,
    /// When [`AgentSignal::Used`] was last passed on (see [`FleetHandle::agent`]).
    last_used: Arc<Mutex<Option<Instant>>>,
}

impl FleetHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Up to `limit` deliverable messages, oldest first, not removed.
    pub async fn peek(&self, limit: usize) -> Vec<InboxMessage> {
        self.agent(AgentSignal::Used);
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

    /// Waits up to `timeout` for a message not returned before. While it waits the inbox
    /// polls every second (the core's cadence rule).
    pub async fn wait_unreturned(&self, timeout: Duration) -> Option<InboxMessage> {
        // Ends the wait also when this future is dropped (a cancelled tool call).
        let _waiting = WaitGuard::start(self);
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

    /// Tells the inbox what the agent does (its poll cadence follows it). `Used` is passed
    /// on at most once per [`USED_EVERY`]: every workspace hears it, and the cadence only
    /// keeps the time of the latest use, so a burst of tool calls costs one.
    pub fn agent(&self, signal: AgentSignal) {
        if signal == AgentSignal::Used {
            let now = now();
            let mut last = self
                .last_used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| now.saturating_duration_since(at) < USED_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let _ = self.commands.send(Command::Input(Input::Agent(signal)));
    }

    /// Removes a handled message; answered once the removal is on disk, or as
    /// [`PopOutcome::NotSaved`] when the disk kept failing (the core's rule).
    pub async fn pop(&self, activity_id: &str) -> PopOutcome<InboxMessage> {
        let activity_id = activity_id.to_owned();
        self.ask(|reply| Command::Pop { activity_id, reply })
            .await
            .unwrap_or(PopOutcome::NotQueued)
    }

    /// `workspace_id` is about to upload files itself (see the core's hold-back rule).
    pub fn begin_outbound_upload(&self, workspace_id: &str) {
        let _ = self
            .commands
            .send(Command::Input(Input::OutboundUploadStarted {
                workspace_id: workspace_id.to_owned(),
            }));
    }

    /// That upload is over; `file_ids` are the files it created.
    pub fn end_outbound_upload(&self, workspace_id: &str, file_ids: Vec<String>) {
        let _ = self
            .commands
            .send(Command::Input(Input::OutboundUploadFinished {
                workspace_id: workspace_id.to_owned(),
                file_ids,
            }));
    }

    /// Tells the platform (one extra heartbeat with `current_task`) what `workspace_id` is
    /// working on, for the canvas.
    pub fn report_current_task(&self, workspace_id: &str, summary: &str) {
        let _ = self.commands.send(Command::Input(Input::CurrentTask {
            workspace_id: workspace_id.to_owned(),
            summary: summary.to_owned(),
        }));
    }

    /// Status of every workspace, in configuration order.
    pub async fn status(&self) -> Vec<WorkspaceStatus> {
        self.ask(|reply| Command::Status { reply })
            .await
            .unwrap_or_default()
    }

    /// Stops heartbeats and polling and waits until every state change is on disk (bound
    /// it with a timeout: a failing disk retries forever).
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}

/// A `wait_for_message` in progress: [`AgentSignal::WaitStarted`] when made,
/// [`AgentSignal::WaitEnded`] when dropped, so every start has exactly one end.
struct WaitGuard<'a>(&'a FleetHandle);

impl<'a> WaitGuard<'a> {
    fn start(handle: &'a FleetHandle) -> Self {
        handle.agent(AgentSignal::WaitStarted);
        WaitGuard(handle)
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.agent(AgentSignal::WaitEnded);
    }
}

/// Starts the driver task for `plan` (restored with [`restore`]); state files live in
/// `state_dir`. Returns the handle and the outputs the program must react to (only
/// `Arrived`, `TokenChanged`, `Rejected` and `Exit`; the driver performs every other one).
pub fn spawn(
    plan: FleetPlan,
    state_dir: PathBuf,
    http: HttpClient,
    seed: u64,
) -> (FleetHandle, mpsc::UnboundedReceiver<Output>) {
    spawn_bounded(plan, state_dir, http, seed, MAX_IN_FLIGHT)
}

/// [`spawn`] with at most `max_in_flight` requests out at once (the process's file
/// descriptor budget, `molecule_mcp_core::fd_budget`, may allow fewer than [`MAX_IN_FLIGHT`]).
pub fn spawn_bounded(
    plan: FleetPlan,
    state_dir: PathBuf,
    http: HttpClient,
    seed: u64,
    max_in_flight: usize,
) -> (FleetHandle, mpsc::UnboundedReceiver<Output>) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (count_tx, count_rx) = watch::channel(0u64);
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        fleet: Fleet::new(plan, now(), seed),
        requests: RequestQueue::new(
            http.clone(),
            max_in_flight.clamp(1, MAX_IN_FLIGHT),
            outcome_tx.clone(),
        ),
        http,
        state_dir,
        outcome_tx,
        outcome_rx,
        commands: cmd_rx,
        events: event_tx,
        arrival_count: count_tx,
        pops: HashMap::new(),
        next_ticket: 0,
        stopping: Vec::new(),
        stopped: false,
        handles_gone: false,
    };
    tokio::spawn(driver.run());
    (
        FleetHandle {
            commands: cmd_tx,
            arrivals: count_rx,
            last_used: Arc::new(Mutex::new(None)),
        },
        event_rx,
    )
}

/// Wake-ups are rounded up to a 10 ms grid, so one wake-up serves every deadline inside a
/// tick. Re-arming tokio's timer earlier than every other timer writes the runtime's eventfd
/// (a syscall and an extra turn of the event loop); with 10,000 workspaces the fleet's
/// earliest deadline moves about once per request, and without the grid the loop re-armed
/// once per request. A machine woken up to 10 ms late is within its contract
/// (`Fleet::handle_timeout` fires whatever is due) and far inside every cadence: the
/// shortest is the 0.8 s ± 20 % poll of a waiting agent.
const WAKE_GRAIN: Duration = Duration::from_millis(10);

/// The grid of [`WAKE_GRAIN`] ticks, counted from the driver's start.
struct WakeGrid {
    origin: Instant,
}

impl WakeGrid {
    fn new(origin: Instant) -> Self {
        WakeGrid { origin }
    }

    /// The first tick at or after `at` (`at` itself when it is before the origin: the
    /// saturating distance is then zero, a tick).
    fn round_up(&self, at: Instant) -> Instant {
        let grain = WAKE_GRAIN.as_nanos();
        let since = at.saturating_duration_since(self.origin).as_nanos();
        let rest = since % grain;
        if rest == 0 {
            return at;
        }
        let pad = u64::try_from(grain - rest).unwrap_or(0);
        at + Duration::from_nanos(pad)
    }
}

struct Driver {
    fleet: Fleet,
    requests: RequestQueue,
    http: HttpClient,
    state_dir: PathBuf,
    outcome_tx: mpsc::UnboundedSender<Input>,
    outcome_rx: mpsc::UnboundedReceiver<Input>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Output>,
    arrival_count: watch::Sender<u64>,
    pops: HashMap<PopTicket, oneshot::Sender<PopOutcome<InboxMessage>>>,
    next_ticket: u64,
    /// Shutdown callers, answered once everything is saved.
    stopping: Vec<oneshot::Sender<()>>,
    stopped: bool,
    /// Every [`FleetHandle`] was dropped: end once everything is saved.
    handles_gone: bool,
}

impl Driver {
    async fn run(mut self) {
        self.perform();
        // One timer for the whole run, moved only when the (rounded) earliest wake-up
        // changes.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        let grid = WakeGrid::new(now());
        loop {
            let next_wake = self.fleet.poll_timeout().map(|at| grid.round_up(at));
            if next_wake != armed {
                if let Some(at) = next_wake {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                armed = next_wake;
            }
            tokio::select! {
                biased;
                command = self.commands.recv(), if !self.handles_gone => match command {
                    Some(command) => self.command(command),
                    // Every handle is gone: nobody can pop any more. Stop, save, end.
                    None => {
                        self.handles_gone = true;
                        self.stop();
                    }
                },
                Some(input) = self.outcome_rx.recv() => {
                    self.outcome(input);
                    // Take whatever else has arrived before going back to sleep.
                    while let Ok(input) = self.outcome_rx.try_recv() {
                        self.outcome(input);
                    }
                }
                () = &mut sleep, if armed.is_some() => {
                    armed = None;
                    self.fleet.handle_timeout(now());
                }
            }
            self.perform();
            // A steady stream of commands and outcomes must not hold timers back (the select
            // prefers them): fire whatever fell due meanwhile.
            let t = now();
            if self.fleet.poll_timeout().is_some_and(|at| at <= t) {
                self.fleet.handle_timeout(t);
                self.perform();
            }
            if self.stopped && self.fleet.all_saved() {
                for reply in self.stopping.drain(..) {
                    let _ = reply.send(());
                }
                if self.handles_gone {
                    return;
                }
            }
        }
    }

    fn outcome(&mut self, input: Input) {
        match input {
            Input::HttpResponse { .. } | Input::HttpFailed { .. } => self.requests.settled(),
            Input::PersistDone { .. }
            | Input::UploadStaged { .. }
            | Input::Pop { .. }
            | Input::OutboundUploadStarted { .. }
            | Input::OutboundUploadFinished { .. }
            | Input::CurrentTask { .. }
            | Input::Agent(_)
            | Input::Shutdown => {}
        }
        self.fleet.handle(now(), input);
    }

    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            // Stopped machines send nothing more; what is already out may finish.
            self.requests.clear();
            self.fleet.handle(now(), Input::Shutdown);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Input(input) => self.fleet.handle(now(), input),
            Command::Pop { activity_id, reply } => {
                self.next_ticket += 1;
                let ticket = PopTicket(self.next_ticket);
                self.pops.insert(ticket, reply);
                self.fleet.handle(
                    now(),
                    Input::Pop {
                        ticket,
                        activity_id,
                    },
                );
            }
            Command::Peek { limit, reply } => {
                let _ = reply.send(self.fleet.peek(limit));
            }
            Command::TakeUnreturned { reply } => {
                let _ = reply.send(self.fleet.take_unreturned());
            }
            Command::Status { reply } => {
                let _ = reply.send(self.fleet.status());
            }
            Command::Shutdown { reply } => {
                self.stopping.push(reply);
                self.stop();
            }
        }
    }

    /// Performs every queued output of the fleet.
    fn perform(&mut self) {
        while let Some(output) = self.fleet.poll_output() {
            match output {
                Output::SendHttp(request) => self.requests.push(request),
                Output::FetchUpload(fetch) => self.fetch(fetch),
                Output::Persist(write) => self.persist(write),
                Output::Append(write) => self.append(write),
                // On this task, before any later write of the file is spawned.
                Output::SetAside(aside) => set_aside(&self.state_dir.join(&aside.path)),
                Output::Log(line) => logging::emit(&line),
                Output::Arrived(_) => {
                    self.arrival_count.send_modify(|n| *n = n.wrapping_add(1));
                    let _ = self.events.send(output);
                }
                Output::TokenChanged { .. } | Output::Rejected { .. } | Output::Exit { .. } => {
                    let _ = self.events.send(output);
                }
                Output::PopDone {
                    ticket,
                    message,
                    saved,
                } => {
                    if let Some(reply) = self.pops.remove(&ticket) {
                        let _ = reply.send(PopOutcome::from_answer(message, saved));
                    }
                }
            }
        }
        self.requests.pump();
    }

    fn append(&self, write: AppendWrite) {
        let path = self.state_dir.join(&write.path);
        let tx = self.outcome_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = persist::append_private(&path, &write.contents, write.restart)
                .map_err(|e| PersistError::from(format!("{}: {e}", path.display())));
            let _ = tx.send(Input::PersistDone {
                id: write.id,
                result,
            });
        });
    }

    fn persist(&self, write: PersistWrite) {
        // A minted token or an inbound secret is known from the moment it is written.
        if write.file.is_secret() {
            crate::secrets::remember(&String::from_utf8_lossy(&write.contents));
        }
        let path = self.state_dir.join(&write.path);
        let tx = self.outcome_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = persist::write_private_atomic(&path, &write.contents)
                .map_err(|e| PersistError::from(format!("{}: {e}", path.display())));
            let _ = tx.send(Input::PersistDone {
                id: write.id,
                result,
            });
        });
    }

    /// Runs one download on its own task and reports its outcome.
    fn fetch(&self, fetch: UploadFetch) {
        let http = self.http.clone();
        let tx = self.outcome_tx.clone();
        let path = self.state_dir.join(&fetch.path);
        tokio::spawn(async move {
            let input = fetch_and_stage(&http, fetch, path).await;
            let _ = tx.send(input);
        });
    }
}

/// Downloads one upload (cap enforced while streaming); a 2xx body is written privately.
async fn fetch_and_stage(http: &HttpClient, fetch: UploadFetch, path: PathBuf) -> Input {
    let id = fetch.request.id;
    let cap = usize::try_from(fetch.max_bytes).unwrap_or(usize::MAX);
    let response = match http.execute_capped(&fetch.request, cap).await {
        Ok(r) => r,
        Err(error) => return Input::HttpFailed { id, error },
    };
    if !(200..300).contains(&response.status) {
        return Input::HttpResponse {
            id,
            status: response.status,
            retry_after: response.retry_after(),
            body: Vec::from(response.body),
        };
    }
    let body = response.body;
    let written = tokio::task::spawn_blocking({
        let path = path.clone();
        move || persist::write_private_atomic(&path, &body)
    })
    .await;
    let result = match written {
        Ok(Ok(())) => {
            let absolute = std::path::absolute(&path).unwrap_or(path);
            Ok(absolute.display().to_string())
        }
        Ok(Err(e)) => Err(PersistError::from(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
        Err(e) => Err(PersistError::from(format!("staging task failed: {e}"))),
    };
    Input::UploadStaged { id, result }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use molecule_mcp_core::workspace::{Restored, WorkspacePlan};
    use molecule_mcp_core::{PlatformUrl, Secret, SessionConfig, StateLayout};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn wake_ups_round_up_to_the_next_tick_and_never_early() {
        let origin = now();
        let grid = WakeGrid::new(origin);
        let ms = Duration::from_millis;
        assert_eq!(grid.round_up(origin), origin);
        if let Some(before) = origin.checked_sub(ms(3)) {
            assert_eq!(grid.round_up(before), before, "before the origin: as it is");
        }
        assert_eq!(grid.round_up(origin + ms(10)), origin + ms(10));
        assert_eq!(grid.round_up(origin + ms(1)), origin + ms(10));
        assert_eq!(grid.round_up(origin + ms(19)), origin + ms(20));
        assert_eq!(
            grid.round_up(origin + Duration::from_nanos(20_000_001)),
            origin + ms(30)
        );
        // Deadlines inside one tick share one wake-up: the timer is re-armed once.
        let ticks: std::collections::BTreeSet<Instant> = (1..=9)
            .map(|i| grid.round_up(origin + ms(40) + ms(i)))
            .collect();
        assert_eq!(ticks.len(), 1);
        for i in 0..1_000 {
            let at = origin + Duration::from_micros(i * 37);
            let woken = grid.round_up(at);
            assert!(woken >= at && woken - at < WAKE_GRAIN, "{i}");
        }
    }

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
    async fn many_workspaces_starting_together_never_exceed_the_in_flight_bound() {
        let load = Arc::new(Load::default());
        let addr = slow_server(Arc::clone(&load)).await;
        let platform = PlatformUrl::parse(&format!("http://{addr}")).expect("url");
        let dir = std::env::temp_dir().join(format!("mmcp-inflight-{}", std::process::id()));
        let sessions = MAX_IN_FLIGHT * 2 + 50;
        let workspaces = (0..sessions)
            .map(|i| {
                let id = format!("00000000-0000-4000-8000-{i:012x}");
                let config = SessionConfig::new(
                    platform.clone(),
                    id.clone(),
                    Secret::new("tok"),
                    "test",
                    serde_json::json!({"name": "t"}),
                );
                WorkspacePlan {
                    workspace_id: id,
                    session: Some(config),
                    inbox: None,
                    layout: StateLayout::new(true),
                    state_dir_display: dir.display().to_string(),
                    restored: Restored::default(),
                }
            })
            .collect();
        let plan = FleetPlan {
            workspaces,
            multi_workspace: true,
        };
        let (handle, _outputs) = spawn(plan, dir.clone(), HttpClient::new(), 1);
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
