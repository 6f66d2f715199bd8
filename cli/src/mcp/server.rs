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
//!   on the `notifications` channel and go through the same writer. Each item must be a JSON
//!   object with a string `method` ([`push_notification`] builds one); `jsonrpc` is forced
//!   to `"2.0"` and any `id` removed; other values are dropped with a warning.
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
use super::protocol::{Outcome, PendingCall, Protocol};

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
    notifications: mpsc::UnboundedReceiver<Value>,
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
    notifications: mpsc::UnboundedReceiver<Value>,
) -> ServeEnd
where
    R: AsyncRead,
    W: AsyncWrite,
{
    let protocol = Protocol::new(handler, identity);
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
    mut pushes: mpsc::UnboundedReceiver<Value>,
    lines: mpsc::Sender<String>,
) -> ServeEnd {
    tokio::pin!(input);
    let mut framer = LineFramer::new(config.max_line);
    let mut chunk = vec![0u8; config.read_chunk.max(1)];
    let mut calls = InFlight::new(config.max_calls);
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
                            calls.start(call)
                        }
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
            push = pushes.recv(), if pushes_open => match push {
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

/// A call's task result: the id, its ticket and the response line.
type Finished = (RequestId, u64, String);

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

    /// Spawns the call; returns an error line instead if its id is already running or
    /// `max` calls already run (the refused future is dropped unpolled: it did nothing).
    fn start(&mut self, call: PendingCall) -> Option<String> {
        let PendingCall { id, future, reply } = call;
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
        let handle = self.tasks.spawn(async move {
            let line = match CatchUnwind(future).await {
                Ok(output) => reply.output(output),
                Err(()) => {
                    tracing::error!("tool call {task_id} panicked");
                    reply.internal_error("the tool failed unexpectedly")
                }
            };
            (task_id, ticket, line)
        });
        self.running.insert(id, (ticket, handle));
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

/// Turns a panic inside a tool future into `Err(())`.
struct CatchUnwind(ToolFuture);

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
