//! The async half: pumps bytes between a reader/writer pair (stdin/stdout in the binary)
//! and the sans-io [`Protocol`].
//!
//! Shape (one `serve` future, plus one tokio task per running tool call):
//!
//! * **reader loop** — reads chunks of `read_chunk` bytes into the [`LineFramer`], handles
//!   each frame at once and in order. Everything except `tools/call` is answered inline, so
//!   `ping` is never queued behind a tool;
//! * **tool calls** — each runs in its own task (a `JoinSet`); a panic inside a tool becomes
//!   a `-32603` answer, never a dead server. A request id that is still running is refused
//!   with `-32600`. `notifications/cancelled {requestId}` aborts that task, and no response
//!   is ever written for it (even if it had already finished but was not yet written);
//!   At most `max_calls` run at once: one more is refused at once with `-32000` (never
//!   queued), so a flood of calls holds a bounded amount of memory;
//! * **one writer** owns the output: lines arrive over a channel and each is written as one
//!   JSON object + `\n`, after `redact` (the process's secret redaction): every byte sent
//!   to the client passes it. Nothing else is ever written, so stdout stays pure MCP;
//! * **push** — server-initiated notifications (e.g. `notifications/claude/channel`) come in
//!   on the bounded `notifications` channel and go through the same writer, in the order
//!   they were sent, but only once [`Protocol::client_ready`] (a legacy client's
//!   `notifications/initialized`, or a modern request): until then they wait in the channel,
//!   and its bound holds back the sender, so nothing is lost and nothing grows. Each item
//!   must be a JSON object with a string `method` ([`push_notification`] builds one);
//!   `jsonrpc` is forced to `"2.0"` and any `id` removed; other values are dropped with a
//!   warning;
//! * **batches** (2025-03-26 clients only, see [`Protocol`]) — the ready answers and the
//!   calls of one batch go out as one array when its last call finishes; the calls run
//!   concurrently in one task, without progress, and are stopped with it at EOF;
//! * **progress** — a call whose request carried `_meta.progressToken` sends
//!   `notifications/progress` every [`ServeConfig::progress_interval`] from its own task,
//!   so they all precede its response and stop with it (or with its cancellation).
//!
//! Ending ([`ServeEnd`]): on input EOF the final unterminated line is still handled, running
//! calls get `eof_call_grace` to finish (so piped one-shot input gets its quick answers) and
//! are then aborted, queued lines are flushed for at most `flush_grace`, and `serve`
//! returns: at most ~350 ms after EOF with the defaults. A write error (EPIPE: the client closed our stdout) ends `serve` at once with
//! [`ServeEnd::OutputClosed`]; nothing panics.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};

use super::framing::{DEFAULT_MAX_LINE, LineFramer};
use super::handler::{ServerIdentity, ToolFuture, ToolHandler, ToolOutput};
use super::jsonrpc::{RequestId, RpcError, SERVER_BUSY, error_line};
use super::protocol::{
    Batch, CallReply, Outcome, PendingCall, Progress, Protocol, TaskOp, TaskRequest,
};
use super::tasks::Tasks;

/// Tunables of [`serve_with`]; [`serve`] uses the defaults.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Longest accepted line in bytes (default 8 MiB).
    pub max_line: usize,
    /// Bytes per read (default 64 KiB).
    pub read_chunk: usize,
    /// After input EOF, how long running tool calls may still finish and be answered
    /// before they are aborted (default 150 ms). Lets `printf '…' | molecule-mcp` get its
    /// quick answers; zero aborts at once.
    pub eof_call_grace: Duration,
    /// Then, how long queued output may take to flush (default 200 ms). Together the two
    /// keep the exit well within a client's 1–2 s grace even if stdout is stuck.
    pub flush_grace: Duration,
    /// How often a call whose request carried a progress token sends
    /// `notifications/progress` (default 5 s; `MOLECULE_MCP_PROGRESS_INTERVAL_MS`).
    pub progress_interval: Duration,
    /// How long a call without a progress token may wait before it answers "not yet"
    /// (default 50 s; `MOLECULE_MCP_CALL_BUDGET_MS`).
    pub call_budget: Duration,
    /// Most tool calls running at once (default [`DEFAULT_MAX_CALLS`]); one more is refused
    /// with `-32000`.
    pub max_calls: usize,
    /// Applied to every line before it is written (the binary passes its secret redaction;
    /// the default leaves lines as they are).
    pub redact: fn(&str) -> String,
}

/// Default of [`ServeConfig::max_calls`] (the tool settings' default).
pub const DEFAULT_MAX_CALLS: usize = molecule_mcp_core::tool_settings::DEFAULT_MAX_CONCURRENT_CALLS;

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            read_chunk: 64 * 1024,
            eof_call_grace: Duration::from_millis(150),
            flush_grace: Duration::from_millis(200),
            progress_interval: Duration::from_secs(5),
            call_budget: super::protocol::DEFAULT_CALL_BUDGET,
            max_calls: DEFAULT_MAX_CALLS,
            redact: str::to_owned,
        }
    }
}

/// Why [`serve`] returned.
#[derive(Debug)]
pub enum ServeEnd {
    /// The input reached EOF (the client closed our stdin): the normal end.
    InputClosed,
    /// Writing failed (the client closed our stdout).
    OutputClosed,
    /// Reading failed.
    ReadFailed(io::Error),
}

/// Lines queued for the writer before the reader waits (backpressure on a slow client).
const OUTPUT_QUEUE: usize = 256;

/// Builds a push notification for the `notifications` channel of [`serve`].
pub fn push_notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// Serves MCP over `input`/`output` until EOF or a broken output, with default settings.
pub async fn serve<R, W>(
    input: R,
    output: W,
    handler: Arc<dyn ToolHandler>,
    identity: ServerIdentity,
    notifications: mpsc::Receiver<Value>,
) -> ServeEnd
where
    R: AsyncRead,
    W: AsyncWrite,
{
    serve_with(
        ServeConfig::default(),
        input,
        output,
        handler,
        identity,
        notifications,
    )
    .await
}

/// [`serve`] with explicit [`ServeConfig`].
pub async fn serve_with<R, W>(
    config: ServeConfig,
    input: R,
    output: W,
    handler: Arc<dyn ToolHandler>,
    identity: ServerIdentity,
    notifications: mpsc::Receiver<Value>,
) -> ServeEnd
where
    R: AsyncRead,
    W: AsyncWrite,
{
    let protocol = Protocol::new(handler, identity).with_call_budget(config.call_budget);
    let (lines_tx, lines_rx) = mpsc::channel::<String>(OUTPUT_QUEUE);
    let writer = write_lines(output, lines_rx, config.redact);
    let reader = read_loop(&config, protocol, input, notifications, lines_tx);
    tokio::pin!(writer, reader);
    let end = tokio::select! {
        biased;
        // The writer only stops early when a write fails: the channel stays open while the
        // reader runs.
        written = &mut writer => {
            if let Err(e) = written {
                tracing::debug!("MCP output closed: {e}");
            }
            return ServeEnd::OutputClosed;
        }
        end = &mut reader => end,
    };
    // The reader is done and dropped its sender: let the writer drain, but not forever.
    match tokio::time::timeout(config.flush_grace, writer).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("MCP output failed while flushing: {e}"),
        Err(_) => tracing::warn!(
            "MCP output did not drain within {:?}; exiting anyway",
            config.flush_grace
        ),
    }
    end
}

/// Reads frames, answers them, runs tool calls, forwards pushes; returns on EOF or error.
async fn read_loop<R: AsyncRead>(
    config: &ServeConfig,
    protocol: Protocol,
    input: R,
    mut pushes: mpsc::Receiver<Value>,
    lines: mpsc::Sender<String>,
) -> ServeEnd {
    tokio::pin!(input);
    let mut framer = LineFramer::new(config.max_line);
    let mut chunk = vec![0u8; config.read_chunk.max(1)];
    let mut calls = InFlight::new(config.max_calls);
    // Dropped when serving ends, which aborts the task runs still going.
    let mut tasks = Tasks::default();
    let mut pushes_open = true;
    // Input read while an answer waited for room in the output queue (see `send_line`).
    let mut stash = InputStash::new(config.max_line);
    let end = 'serve: loop {
        tokio::select! {
            read = stash.read(input.as_mut(), &mut chunk) => {
                let eof = match read {
                    Ok(0) => true,
                    Ok(n) => {
                        framer.push(chunk.get(..n).unwrap_or_default());
                        false
                    }
                    Err(e) => break ServeEnd::ReadFailed(e),
                };
                if eof {
                    framer.finish();
                }
                while let Some(frame) = framer.next_frame() {
                    let line = match protocol.handle_frame(&frame) {
                        Outcome::Reply(line) => Some(line),
                        Outcome::Silent => None,
                        Outcome::Cancel(id) => {
                            calls.cancel(&id);
                            None
                        }
                        Outcome::Call(call) => {
                            if calls.is_full() {
                                // A burst read in one chunk starts its calls before any
                                // of them ran: let those that finish at once (bad
                                // arguments, quick answers) finish and be answered before
                                // the cap refuses the next one.
                                tokio::task::yield_now().await;
                                while let Some(joined) = calls.tasks.try_join_next() {
                                    if let Some(line) = calls.finished(joined) {
                                        match send_line(&lines, line, input.as_mut(), &mut stash).await {
                                            Sent::Queued => {}
                                            Sent::OutputClosed => break 'serve ServeEnd::OutputClosed,
                                            Sent::InputEnded => break 'serve ServeEnd::InputClosed,
                                        }
                                    }
                                }
                            }
                            calls.start(call, config.progress_interval, &lines)
                        }
                        Outcome::Batch(batch) => calls.start_batch(batch),
                        Outcome::Task(TaskRequest { id, op }) => match op {
                            TaskOp::Create { call, ttl } => Some(tasks.create(call, ttl)),
                            TaskOp::Get(task) => Some(tasks.get(&id, &task)),
                            TaskOp::List => Some(tasks.list(&id)),
                            TaskOp::Cancel(task) => Some(tasks.cancel(&id, &task)),
                            TaskOp::Result(task) => match tasks.result(&id, &task) {
                                Ok(line) => Some(line),
                                Err(wait) => calls.start_line(id, wait),
                            },
                        },
                    };
                    if let Some(line) = line {
                        match send_line(&lines, line, input.as_mut(), &mut stash).await {
                            Sent::Queued => {}
                            Sent::OutputClosed => break 'serve ServeEnd::OutputClosed,
                            Sent::InputEnded => break 'serve ServeEnd::InputClosed,
                        }
                    }
                }
                if eof {
                    break ServeEnd::InputClosed;
                }
                if lines.is_closed() {
                    break ServeEnd::OutputClosed;
                }
            }
            Some(joined) = calls.tasks.join_next() => {
                if let Some(line) = calls.finished(joined) {
                    match send_line(&lines, line, input.as_mut(), &mut stash).await {
                        Sent::Queued => {}
                        Sent::OutputClosed => break ServeEnd::OutputClosed,
                        Sent::InputEnded => break ServeEnd::InputClosed,
                    }
                }
            }
            Some(done) = tasks.running.join_next() => {
                // A cancelled task's run ends in a JoinError: its state is already recorded.
                if let Ok(done) = done {
                    tasks.finished(done);
                }
            }
            // Pushes wait in their (bounded) channel until the client may receive them.
            push = pushes.recv(), if pushes_open && protocol.client_ready() => match push {
                None => pushes_open = false,
                Some(message) => {
                    if let Some(line) = push_line(message) {
                        match send_line(&lines, line, input.as_mut(), &mut stash).await {
                            Sent::Queued => {}
                            Sent::OutputClosed => break ServeEnd::OutputClosed,
                            Sent::InputEnded => break ServeEnd::InputClosed,
                        }
                    }
                }
            },
        }
    };
    if matches!(end, ServeEnd::InputClosed) {
        let deadline = tokio::time::Instant::now() + config.eof_call_grace;
        calls.finish_until(deadline, &lines).await;
    }
    // Whatever still runs will never be answered: stop it now.
    calls.tasks.abort_all();
    end
}

/// How [`send_line`] ended.
enum Sent {
    /// The line is in the output queue.
    Queued,
    /// The writer is gone (the client closed our stdout).
    OutputClosed,
    /// The client closed our stdin while the output queue stayed full: it is not reading
    /// our answers either, so waiting for room would only delay the exit.
    InputEnded,
}

/// Queues `line` for output. While the queue is full (the client is not reading our stdout)
/// input is still read into `stash`, up to its bound, so an EOF is noticed at once instead
/// of when the client reads again — which it may never do.
async fn send_line<R: AsyncRead>(
    lines: &mpsc::Sender<String>,
    line: String,
    mut input: Pin<&mut R>,
    stash: &mut InputStash,
) -> Sent {
    let permit = lines.reserve();
    tokio::pin!(permit);
    loop {
        tokio::select! {
            biased;
            permit = &mut permit => {
                return match permit {
                    Ok(permit) => {
                        permit.send(line);
                        Sent::Queued
                    }
                    Err(_) => Sent::OutputClosed,
                };
            }
            more = stash.fill(input.as_mut()), if stash.has_room() => {
                if !more {
                    return Sent::InputEnded;
                }
            }
        }
    }
}

/// Input read ahead while output was blocked, handed back before any new read. Bounded: it
/// never holds more than one maximal line.
struct InputStash {
    bytes: Vec<u8>,
    /// Bytes already handed back.
    taken: usize,
    limit: usize,
    /// EOF or a read error was seen while stashing (reported after the stashed bytes).
    ended: Option<io::Result<()>>,
}

impl InputStash {
    fn new(limit: usize) -> Self {
        InputStash {
            bytes: Vec::new(),
            taken: 0,
            limit: limit.max(1),
            ended: None,
        }
    }

    fn has_room(&self) -> bool {
        self.ended.is_none() && self.bytes.len() < self.limit
    }

    /// Reads once into the stash; false on EOF or error (kept for [`InputStash::read`]).
    async fn fill<R: AsyncRead>(&mut self, input: Pin<&mut R>) -> bool {
        let mut buf = [0u8; 8 * 1024];
        let mut input = input;
        match input.as_mut().read(&mut buf).await {
            Ok(0) => {
                self.ended = Some(Ok(()));
                false
            }
            Ok(n) => {
                self.bytes
                    .extend_from_slice(buf.get(..n).unwrap_or_default());
                true
            }
            Err(e) => {
                self.ended = Some(Err(e));
                false
            }
        }
    }

    /// Stashed bytes first, then the stashed end, then the input itself.
    async fn read<R: AsyncRead>(
        &mut self,
        input: Pin<&mut R>,
        chunk: &mut [u8],
    ) -> io::Result<usize> {
        let rest = self.bytes.get(self.taken..).unwrap_or_default();
        if !rest.is_empty() {
            let n = rest.len().min(chunk.len());
            if let (Some(dst), Some(src)) = (chunk.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.taken += n;
            if self.taken >= self.bytes.len() {
                self.bytes.clear();
                self.taken = 0;
            }
            return Ok(n);
        }
        match self.ended.take() {
            Some(Ok(())) => {
                // Report EOF again on every later read, as a stream would.
                self.ended = Some(Ok(()));
                Ok(0)
            }
            Some(Err(e)) => Err(e),
            None => {
                let mut input = input;
                input.as_mut().read(chunk).await
            }
        }
    }
}

/// Validates one pushed message and serialises it.
fn push_line(message: Value) -> Option<String> {
    let Value::Object(mut obj) = message else {
        tracing::warn!("dropping a push notification that is not a JSON object");
        return None;
    };
    if !matches!(obj.get("method"), Some(Value::String(_))) {
        tracing::warn!("dropping a push notification without a string method");
        return None;
    }
    obj.remove("id");
    obj.insert("jsonrpc".to_owned(), json!("2.0"));
    Some(Value::Object(obj).to_string())
}

/// Writes each line plus `\n`, flushing whenever the queue is empty.
async fn write_lines<W: AsyncWrite>(
    output: W,
    mut lines: mpsc::Receiver<String>,
    redact: fn(&str) -> String,
) -> io::Result<()> {
    const BATCH_BYTES: usize = 1024 * 1024;
    tokio::pin!(output);
    let mut batch = Vec::new();
    while let Some(line) = lines.recv().await {
        batch.clear();
        batch.extend_from_slice(redact(&line).as_bytes());
        batch.push(b'\n');
        while batch.len() < BATCH_BYTES {
            let Ok(more) = lines.try_recv() else { break };
            batch.extend_from_slice(redact(&more).as_bytes());
            batch.push(b'\n');
        }
        output.write_all(&batch).await?;
        output.flush().await?;
    }
    output.shutdown().await
}

/// Tool calls in progress, keyed by request id.
struct InFlight {
    tasks: JoinSet<Finished>,
    /// The ticket tells a cancelled call's late result from a newer call reusing its id.
    running: HashMap<RequestId, (u64, AbortHandle)>,
    next_ticket: u64,
    /// [`ServeConfig::max_calls`].
    max: usize,
}

/// A task's result: the call's id (none for a batch), its ticket and the response line.
type Finished = (Option<RequestId>, u64, String);

impl InFlight {
    fn new(max: usize) -> Self {
        InFlight {
            tasks: JoinSet::new(),
            running: HashMap::new(),
            next_ticket: 0,
            max: max.max(1),
        }
    }

    /// True when one more call would be refused.
    fn is_full(&self) -> bool {
        self.running.len().max(self.tasks.len()) >= self.max
    }

    /// Spawns the call; returns an error line instead if its id is already running. A call
    /// with a progress token reports progress on `lines` every `interval` while it runs.
    fn start(
        &mut self,
        call: PendingCall,
        interval: Duration,
        lines: &mpsc::Sender<String>,
    ) -> Option<String> {
        let PendingCall {
            id,
            future,
            reply,
            progress,
        } = call;
        let task_id = id.clone();
        let lines = lines.clone();
        self.start_line(id, async move {
            let work = CatchUnwind(future);
            let result = match progress {
                None => work.await,
                Some(progress) => with_progress(work, progress, interval, &lines).await,
            };
            answer(task_id, reply, result)
        })
    }

    /// Runs `work`, whose output is the response line of request `id` (cancellable like a
    /// call); returns an error line instead if the id is already running.
    fn start_line<F>(&mut self, id: RequestId, work: F) -> Option<String>
    where
        F: Future<Output = String> + Send + 'static,
    {
        if self.running.contains_key(&id) {
            return Some(error_line(
                Some(&id),
                &RpcError::invalid_request("this request id is already in flight"),
            ));
        }
        // `tasks` also holds cancelled calls until they unwind: count both.
        if self.is_full() {
            return Some(error_line(
                Some(&id),
                &RpcError::new(
                    SERVER_BUSY,
                    format!(
                        "server busy: {} tool calls are already running (MOLECULE_MCP_MAX_CONCURRENT_CALLS); retry when one finishes",
                        self.max
                    ),
                ),
            ));
        }
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        let task_id = id.clone();
        let handle = self
            .tasks
            .spawn(async move { (Some(task_id), ticket, work.await) });
        self.running.insert(id, (ticket, handle));
        None
    }

    /// Runs a batch: its cancellations at once, its calls concurrently in one task whose
    /// result is the batch's array; returns the array now when there is no call, nothing when
    /// there is nothing to answer.
    fn start_batch(&mut self, batch: Batch) -> Option<String> {
        let Batch {
            replies,
            calls,
            cancels,
        } = batch;
        for id in &cancels {
            self.cancel(id);
        }
        if calls.is_empty() {
            return (!replies.is_empty()).then(|| format!("[{}]", replies.join(",")));
        }
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.tasks.spawn(async move {
            let mut lines = replies;
            // Dropping this set (the batch task aborted at EOF) aborts the calls too.
            let mut running = JoinSet::new();
            for call in calls {
                running.spawn(async move {
                    let result = CatchUnwind(call.future).await;
                    answer(call.id, call.reply, result)
                });
            }
            while let Some(done) = running.join_next().await {
                if let Ok(line) = done {
                    lines.push(line);
                }
            }
            (None, ticket, format!("[{}]", lines.join(",")))
        });
        None
    }

    /// Writes the answers of calls that finish before `deadline`.
    async fn finish_until(&mut self, deadline: tokio::time::Instant, lines: &mpsc::Sender<String>) {
        while !self.tasks.is_empty() {
            let joined = tokio::select! {
                Some(joined) = self.tasks.join_next() => joined,
                () = tokio::time::sleep_until(deadline) => return,
            };
            if let Some(line) = self.finished(joined) {
                match tokio::time::timeout_at(deadline, lines.send(line)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
            }
        }
    }

    fn cancel(&mut self, id: &RequestId) {
        // Unknown or finished ids are ignored, as the spec asks.
        if let Some((_, handle)) = self.running.remove(id) {
            tracing::debug!("request {id} cancelled by the client");
            handle.abort();
        }
    }

    /// The line to write for a finished task; `None` if it was cancelled.
    fn finished(&mut self, joined: Result<Finished, JoinError>) -> Option<String> {
        let (id, ticket, line) = joined.ok()?;
        // A batch is not cancellable as a whole: its answer is always written.
        let Some(id) = id else {
            return Some(line);
        };
        match self.running.get(&id) {
            Some((current, _)) if *current == ticket => {
                self.running.remove(&id);
                Some(line)
            }
            // Cancelled after it finished but before we wrote it: stay silent.
            Some(_) | None => None,
        }
    }
}

/// The response line of a finished call (a panic is `-32603`).
fn answer(id: RequestId, reply: CallReply, result: Result<ToolOutput, ()>) -> String {
    match result {
        Ok(output) => reply.output(output),
        Err(()) => {
            tracing::error!("tool call {id} panicked");
            reply.internal_error("the tool failed unexpectedly")
        }
    }
}

/// Runs `work`, sending a progress notification every `interval` until it finishes. The
/// notifications go straight into the output queue from the call's own task, so every one of
/// them is queued before the call's response (which the read loop queues after the task
/// ends), and aborting the task (cancellation, EOF) stops them with the work.
async fn with_progress<F: Future>(
    work: F,
    mut progress: Progress,
    interval: Duration,
    lines: &mpsc::Sender<String>,
) -> F::Output {
    tokio::pin!(work);
    // `interval` panics on zero; a millisecond is the finest period that makes sense.
    let interval = interval.max(Duration::from_millis(1));
    let start = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(start + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = ticks.tick() => {
                if let Some(line) = progress.line(start.elapsed()) {
                    // A keep-alive is skipped while the output queue is full (the client is
                    // not reading); the next tick sends a newer one, so nothing piles up.
                    let _ = lines.try_send(line);
                }
            }
        }
    }
}

/// Turns a panic inside a tool future into `Err(())`.
pub(super) struct CatchUnwind(pub(super) ToolFuture);

impl Future for CatchUnwind {
    type Output = Result<ToolOutput, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
