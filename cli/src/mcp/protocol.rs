//! The MCP method table: one frame in, at most one response out. No I/O, no tokio.
//!
//! **Dual era, decided per request, never locked.** The spec has a *legacy* family
//! (2024-11-05 … 2025-11-25, which starts with `initialize`) and a *modern* revision
//! (2026-07-28: no handshake, every request names its version in
//! `params._meta["io.modelcontextprotocol/protocolVersion"]`). Real clients mix them on one
//! process (Claude Code probes `server/discover`, then sends `initialize`), so [`Protocol`]
//! never refuses a request for what came before it. It remembers two facts only: the legacy
//! version the last `initialize` agreed on (it decides which fields legacy answers carry and
//! whether batches are accepted) and whether the client may receive notifications yet
//! ([`Protocol::client_ready`]):
//!
//! * a request whose `_meta` names a version is *modern*: the version must be 2026-07-28
//!   (else `-32022` with `data: {supported: ["2026-07-28"], requested}`, and the message
//!   names the same list), and its result carries
//!   `resultType: "complete"` and serverInfo in `_meta`, plus `ttlMs`/`cacheScope` for the
//!   cacheable `tools/list` and `server/discover`;
//! * any other request gets legacy semantics, even without a prior `initialize` (lenient:
//!   `notifications/initialized` is accepted but never required), shaped by the negotiated
//!   revision (the latest before any `initialize`): 2024-11-05 clients get no `annotations`,
//!   `outputSchema` or `structuredContent` and progress without `message`; 2025-03-26 clients
//!   get annotations but no `outputSchema`/`structuredContent`, and only they may send
//!   JSON-RPC batches (an array in, an array out, nothing out for a batch of
//!   notifications; at most [`MAX_BATCH`] messages, `initialize` not among them); every
//!   other client's array is `-32600`.
//!
//! | method | answer |
//! |---|---|
//! | `initialize` | echoes a known legacy `protocolVersion`, else `2025-11-25`; never an error on the version |
//! | `ping` | `{}`, in any state and era |
//! | `server/discover` | `supportedVersions` (all five), capabilities, instructions, always in modern shape |
//! | `tools/list` | every tool in the handler's order, one page, no `nextCursor` (a `cursor` is ignored) |
//! | `tools/call` | see [`Protocol::handle_line`]: `-32602` for bad params or an unknown tool; tool failures are `isError: true` results |
//! | `tools/call` with `params.task` (2025-11-25 clients) | [`Outcome::Task`]: answered at once with the new task; `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel` likewise (the store is `tasks.rs`); other revisions get `-32601` for `tasks/*` and a plain call |
//! | anything else (`logging/setLevel`, `resources/list`, `prompts/list`, …) | `-32601` at once: we declare only tools |
//!
//! Checks run in this order: message shape ([`classify`]), modern version, method name,
//! `params` is an object, method-specific params. Notifications are never answered;
//! `notifications/cancelled` becomes [`Outcome::Cancel`]. A `tools/call` does not run here:
//! it becomes [`Outcome::Call`], a future plus the [`CallReply`] that turns its output into
//! the response line, so the caller decides where the future runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::framing::Frame;
use super::handler::{CallEnv, ServerIdentity, ToolFuture, ToolHandler, ToolOutput, ToolSpec};
use super::jsonrpc::{
    INTERNAL_ERROR, Incoming, METHOD_NOT_FOUND, RequestId, RpcError, UNSUPPORTED_PROTOCOL_VERSION,
    classify, error_line, excerpt, result_line,
};

/// The legacy (handshake) revisions we speak, oldest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What `initialize` answers when the client asks for a version we do not know.
pub const LATEST_LEGACY_VERSION: &str = "2025-11-25";
/// The modern (per-request `_meta`) revision.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Every revision served, oldest first (`server/discover`, `-32022` data).
pub const SUPPORTED_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    MODERN_VERSION,
];
/// The versions a request may name in `_meta` (the `-32022` error's `supported`, which a
/// client retries with). The legacy revisions are not among them: they are negotiated by
/// `initialize`, and a modern request naming one would be refused again.
pub const META_VERSIONS: [&str; 1] = [MODERN_VERSION];
/// `_meta` key naming a modern request's protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying serverInfo on modern results.
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `ttlMs` on cacheable modern results. Zero: instructions reflect live configuration, and
/// re-listing a dozen tools over a pipe is cheap.
pub const CACHE_TTL_MS: u64 = 0;
/// The push method announced as an experimental capability.
pub const CHANNEL_NOTIFICATION: &str = "notifications/claude/channel";
/// The method of progress notifications.
pub const PROGRESS_NOTIFICATION: &str = "notifications/progress";
/// How long a call without a progress token may wait unless [`Protocol::with_call_budget`]
/// says otherwise (the same default as `MOLECULE_MCP_CALL_BUDGET_MS`).
pub const DEFAULT_CALL_BUDGET: Duration = Duration::from_secs(50);

/// The experimental capability of Claude's channel push (we declare it; a client that
/// declares it too is taken to show pushed messages to its model).
pub const CHANNEL_CAPABILITY: &str = "claude/channel";

/// The capabilities we declare: tools (a fixed list) and Claude's channel push.
pub fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}, "experimental": {CHANNEL_CAPABILITY: {}}})
}

/// What to do with one frame.
pub enum Outcome {
    /// Write this line (one JSON-RPC message, no newline).
    Reply(String),
    /// Nothing to write (a notification, or a response from the peer).
    Silent,
    /// The peer cancelled this request: stop it and never answer it.
    Cancel(RequestId),
    /// Run a tool; answer with [`CallReply`] when it finishes.
    Call(PendingCall),
    /// A task operation (2025-11-25 clients): the server owns the task store.
    Task(TaskRequest),
    /// A JSON-RPC batch (served only to a client that negotiated 2025-03-26): answer with one
    /// array of every reply and every call's response once the calls finish; write nothing
    /// when there is nothing to answer (a batch of notifications).
    Batch(Batch),
}

/// A request about tasks, answered by the server's task store.
pub struct TaskRequest {
    /// The request id to answer.
    pub id: RequestId,
    /// What it asks.
    pub op: TaskOp,
}

/// The task requests (2025-11-25): a task-augmented `tools/call`, `tasks/get`,
/// `tasks/result`, `tasks/list`, `tasks/cancel`.
pub enum TaskOp {
    /// Run `call` as a task and answer at once with the task; `ttl` is the client's wish
    /// for how long (ms) the result stays available.
    Create {
        /// The call (no progress: the client polls the task instead).
        call: PendingCall,
        /// `params.task.ttl`, if given.
        ttl: Option<u64>,
    },
    /// `tasks/get {taskId}`.
    Get(String),
    /// `tasks/result {taskId}`: the call's result once the task ends.
    Result(String),
    /// `tasks/list`.
    List,
    /// `tasks/cancel {taskId}`.
    Cancel(String),
}

/// The parts of a batch. Its calls have no progress and run under the call budget: the
/// batch is answered as a whole, so nothing could keep one call's request alive.
pub struct Batch {
    /// Answers that are ready now (errors, `ping`, `tools/list`, …).
    pub replies: Vec<String>,
    /// Tool calls to run; their responses join `replies`.
    pub calls: Vec<PendingCall>,
    /// Cancellations carried by the batch.
    pub cancels: Vec<RequestId>,
}

/// The most messages one batch may carry; a longer batch is refused whole (`-32600`), so one
/// line cannot start an unbounded number of calls.
pub const MAX_BATCH: usize = 64;

/// What a revision defines, for the fields and messages a client of that revision gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Features {
    /// Tool `annotations` (2025-03-26 on).
    annotations: bool,
    /// `outputSchema` and `structuredContent` (2025-06-18 on).
    structured: bool,
    /// Receiving JSON-RPC batches (2025-03-26 only).
    batches: bool,
    /// The progress notification's `message` (2025-03-26 on).
    progress_message: bool,
    /// Task-augmented `tools/call` and the `tasks/*` methods (2025-11-25).
    tasks: bool,
}

impl Features {
    /// What the modern revision's answers carry (tasks are not served to it).
    const MODERN: Features = Features {
        annotations: true,
        structured: true,
        batches: false,
        progress_message: true,
        tasks: false,
    };

    /// The features of a legacy revision (an unknown one gets the latest's).
    fn legacy(version: &str) -> Features {
        match version {
            "2024-11-05" => Features {
                annotations: false,
                structured: false,
                batches: false,
                progress_message: false,
                tasks: false,
            },
            "2025-03-26" => Features {
                annotations: true,
                structured: false,
                batches: true,
                progress_message: true,
                tasks: false,
            },
            "2025-06-18" => Features::MODERN,
            _ => Features {
                tasks: true,
                ..Features::MODERN
            },
        }
    }
}

/// A `tools/call` ready to run.
pub struct PendingCall {
    /// The request id (the in-flight key).
    pub id: RequestId,
    /// The tool's work.
    pub future: ToolFuture,
    /// Turns the outcome into the response line.
    pub reply: CallReply,
    /// Set when the request carried `_meta.progressToken`: the server then sends its
    /// progress notifications while the call runs.
    pub progress: Option<Progress>,
}

/// The progress notifications of one call whose request carried `_meta.progressToken`
/// (a string or an integer; any other token is ignored and the call gets no progress).
///
/// `progress` is the number of seconds the call has run (so it increases with every
/// notification, as the spec requires), `total` the tool's own limit when it named one and
/// it is not yet exceeded, `message` what the tool waits for ("waiting for a message: 30 s
/// of 120 s").
#[derive(Debug, Clone)]
pub struct Progress {
    token: RequestId,
    env: CallEnv,
    last: f64,
    /// False for 2024-11-05 clients, whose progress notification has no `message`.
    with_message: bool,
}

impl Progress {
    /// The notification for a call that has run `elapsed`; `None` when `progress` would not
    /// increase (two ticks within one millisecond).
    pub fn line(&mut self, elapsed: Duration) -> Option<String> {
        // Milliseconds are enough precision and keep the numbers short.
        let progress = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        if progress <= self.last {
            return None;
        }
        self.last = progress;
        let stage = self.env.stage();
        let what = if stage.what.is_empty() {
            "working"
        } else {
            stage.what.as_str()
        };
        let total = stage
            .total
            .map(|t| t.as_secs_f64())
            .filter(|t| *t >= progress);
        let message = match total {
            Some(t) => format!("{what}: {} s of {} s", elapsed.as_secs(), t.round()),
            None => format!("{what}: {} s", elapsed.as_secs()),
        };
        let mut params = json!({
            "progressToken": self.token.to_json(),
            "progress": progress,
        });
        if self.with_message {
            params["message"] = json!(message);
        }
        if let Some(t) = total {
            params["total"] = json!(t);
        }
        Some(
            json!({"jsonrpc": "2.0", "method": PROGRESS_NOTIFICATION, "params": params})
                .to_string(),
        )
    }
}

/// Builds the response of one `tools/call` once its future has finished.
#[derive(Debug, Clone)]
pub struct CallReply {
    id: RequestId,
    era: Era,
    features: Features,
    server_info: Value,
}

impl CallReply {
    /// The response for a finished call.
    pub fn output(self, output: ToolOutput) -> String {
        let id = self.id.clone();
        result_line(&id, self.result(output))
    }

    /// The `result` object for a finished call (what `tasks/result` hands back later).
    pub fn result(self, output: ToolOutput) -> Value {
        let result = tool_result(output, self.features);
        decorate(result, self.era, false, &self.server_info)
    }

    /// A `-32603` response, for a tool that panicked.
    pub fn internal_error(self, detail: &str) -> String {
        error_line(
            Some(&self.id),
            &RpcError::new(INTERNAL_ERROR, format!("Internal error: {detail}")),
        )
    }
}

/// Which rules a request is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// No modern `_meta`: plain results.
    Legacy,
    /// Modern `_meta` with a supported version: `resultType`, cache hints, serverInfo.
    Modern,
}

/// The requests we answer; everything else is `-32601`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Initialize,
    Ping,
    Discover,
    ToolsList,
    ToolsCall,
    TasksGet,
    TasksResult,
    TasksList,
    TasksCancel,
}

impl Method {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "server/discover" => Method::Discover,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "tasks/get" => Method::TasksGet,
            "tasks/result" => Method::TasksResult,
            "tasks/list" => Method::TasksList,
            "tasks/cancel" => Method::TasksCancel,
            _ => return None,
        })
    }
}

/// The request → response logic. Stateless, so one instance can serve any mix of eras.
#[derive(Clone)]
pub struct Protocol {
    handler: Arc<dyn ToolHandler>,
    identity: ServerIdentity,
    call_budget: Duration,
    session: Arc<Session>,
}

/// The two facts about the client that outlive one request; both only ever shape legacy
/// answers and notifications, never whether a request is served.
#[derive(Debug, Default)]
struct Session {
    /// 1 + the index in [`LEGACY_VERSIONS`] of the version the last `initialize` agreed on;
    /// 0 before any `initialize`.
    negotiated: AtomicUsize,
    /// The client may now receive notifications (see [`Protocol::client_ready`]).
    ready: AtomicBool,
}

impl Protocol {
    /// A protocol over these tools and this identity.
    pub fn new(handler: Arc<dyn ToolHandler>, identity: ServerIdentity) -> Self {
        Self {
            handler,
            identity,
            call_budget: DEFAULT_CALL_BUDGET,
            session: Arc::new(Session::default()),
        }
    }

    /// True once the client may receive server-initiated notifications: after its
    /// `notifications/initialized` (a legacy client must not get any before it, and sends
    /// it after the `initialize` answer), or after a modern-era request other than
    /// `server/discover` (the 2026-07-28 revision has no handshake; `server/discover` alone
    /// does not count because clients probe it before a legacy `initialize`).
    pub fn client_ready(&self) -> bool {
        self.session.ready.load(Ordering::Relaxed)
    }

    /// The legacy version the last `initialize` agreed on, if there was one.
    pub fn negotiated_version(&self) -> Option<&'static str> {
        let index = self.session.negotiated.load(Ordering::Relaxed);
        index
            .checked_sub(1)
            .and_then(|i| LEGACY_VERSIONS.get(i))
            .copied()
    }

    /// Sets how long a call without a progress token may wait (see [`CallEnv`]).
    pub fn with_call_budget(mut self, budget: Duration) -> Self {
        self.call_budget = budget;
        self
    }

    /// Handles one frame from the [`LineFramer`](super::framing::LineFramer). An oversized
    /// line is answered with `-32600` and `"id": null` (its id was never read).
    pub fn handle_frame(&self, frame: &Frame) -> Outcome {
        match frame {
            Frame::Line(line) => self.handle_line(line),
            Frame::Oversized { discarded } => Outcome::Reply(error_line(
                None,
                &RpcError::invalid_request(&format!(
                    "request too large ({discarded} bytes on one line)"
                )),
            )),
        }
    }

    /// Handles one complete line.
    ///
    /// `tools/call` needs `params.name` (a string) and, if present and not null,
    /// `params.arguments` must be an object; otherwise `-32602`. An unknown tool is also
    /// `-32602`. Everything else about the arguments is the tool's business.
    pub fn handle_line(&self, line: &[u8]) -> Outcome {
        let is_array = line
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[');
        if is_array && self.legacy_features().batches {
            return self.batch(line);
        }
        self.handle_message(line, false)
    }

    /// The features of the negotiated legacy revision (the latest before any `initialize`).
    fn legacy_features(&self) -> Features {
        Features::legacy(self.negotiated_version().unwrap_or(LATEST_LEGACY_VERSION))
    }

    /// A 2025-03-26 batch: each element is handled as its own message; `initialize` may not
    /// be in one, and an element that is itself an array is an invalid request.
    fn batch(&self, line: &[u8]) -> Outcome {
        let elements = match serde_json::from_slice::<Vec<Value>>(line) {
            Ok(elements) => elements,
            // Not valid JSON after all: the single-message path reports the parse error.
            Err(_) => return self.handle_message(line, false),
        };
        if elements.is_empty() || elements.len() > MAX_BATCH {
            let why = if elements.is_empty() {
                "an empty batch".to_owned()
            } else {
                format!("a batch of more than {MAX_BATCH} messages")
            };
            return Outcome::Reply(error_line(None, &RpcError::invalid_request(&why)));
        }
        let mut batch = Batch {
            replies: Vec::new(),
            calls: Vec::new(),
            cancels: Vec::new(),
        };
        for element in elements {
            if element.get("method").and_then(Value::as_str) == Some("initialize") {
                let id = element.get("id").and_then(RequestId::from_json);
                batch.replies.push(error_line(
                    id.as_ref(),
                    &RpcError::invalid_request("initialize must not be part of a batch"),
                ));
                continue;
            }
            match self.handle_message(element.to_string().as_bytes(), true) {
                Outcome::Reply(line) => batch.replies.push(line),
                Outcome::Silent => {}
                Outcome::Cancel(id) => batch.cancels.push(id),
                Outcome::Call(call) => batch.calls.push(call),
                // Only 2025-03-26 clients batch, and tasks are 2025-11-25's: unreachable, but
                // answered rather than dropped.
                Outcome::Task(TaskRequest { id, .. }) => batch.replies.push(error_line(
                    Some(&id),
                    &RpcError::invalid_request("tasks cannot be part of a batch"),
                )),
                Outcome::Batch(inner) => {
                    // handle_message never batches; keep whatever it says anyway.
                    batch.replies.extend(inner.replies);
                    batch.calls.extend(inner.calls);
                    batch.cancels.extend(inner.cancels);
                }
            }
        }
        Outcome::Batch(batch)
    }

    /// One message (never a batch: an array is `-32600`).
    fn handle_message(&self, line: &[u8], in_batch: bool) -> Outcome {
        match classify(line) {
            Err(rejected) => Outcome::Reply(error_line(rejected.id.as_ref(), &rejected.error)),
            Ok(Incoming::Response) => Outcome::Silent,
            Ok(Incoming::Notification { method, params }) => {
                if method == "notifications/initialized" {
                    self.session.ready.store(true, Ordering::Relaxed);
                }
                notification(&method, params)
            }
            Ok(Incoming::Request { id, method, params }) => self
                .request(&id, &method, params, in_batch)
                .unwrap_or_else(|error| Outcome::Reply(error_line(Some(&id), &error))),
        }
    }

    fn request(
        &self,
        id: &RequestId,
        method: &str,
        params: Option<Value>,
        in_batch: bool,
    ) -> Result<Outcome, RpcError> {
        let era = era_of(params.as_ref())?;
        let Some(method) = Method::parse(method) else {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {}", excerpt(method)),
            ));
        };
        let params = match params {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(RpcError::invalid_params("params must be an object")),
        };
        if era == Era::Modern && method != Method::Discover {
            self.session.ready.store(true, Ordering::Relaxed);
        }
        let server_info = self.server_info();
        let features = match era {
            Era::Modern => Features::MODERN,
            Era::Legacy => self.legacy_features(),
        };
        let task_method = matches!(
            method,
            Method::TasksGet | Method::TasksResult | Method::TasksList | Method::TasksCancel
        );
        if task_method {
            if !features.tasks {
                return Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    "Method not found: tasks are served to 2025-11-25 clients only",
                ));
            }
            let task_id = || match params.get("taskId") {
                Some(Value::String(task)) => Ok(task.clone()),
                Some(_) | None => Err(RpcError::invalid_params("params.taskId must be a string")),
            };
            let op = match method {
                Method::TasksGet => TaskOp::Get(task_id()?),
                Method::TasksResult => TaskOp::Result(task_id()?),
                Method::TasksCancel => TaskOp::Cancel(task_id()?),
                Method::TasksList
                | Method::Initialize
                | Method::Ping
                | Method::Discover
                | Method::ToolsList
                | Method::ToolsCall => TaskOp::List,
            };
            return Ok(Outcome::Task(TaskRequest { id: id.clone(), op }));
        }
        let (result, era, cacheable) = match method {
            Method::TasksGet | Method::TasksResult | Method::TasksList | Method::TasksCancel => {
                return Err(RpcError::new(INTERNAL_ERROR, "Internal error: task method"));
            }
            Method::Initialize => (self.initialize(&params), era, false),
            Method::Ping => (Map::new(), era, false),
            // A discover result is modern by definition, whoever asks.
            Method::Discover => (self.discover(), Era::Modern, true),
            Method::ToolsList => (self.tools_list(features), era, true),
            Method::ToolsCall => {
                let call = CallShape {
                    era,
                    features,
                    in_batch,
                };
                return self.tools_call(id, params, call, server_info);
            }
        };
        let result = decorate(result, era, cacheable, &server_info);
        Ok(Outcome::Reply(result_line(id, result)))
    }

    fn server_info(&self) -> Value {
        json!({"name": self.identity.name, "version": self.identity.version})
    }

    fn instructions(&self) -> String {
        (self.identity.instructions)()
    }

    fn initialize(&self, params: &Map<String, Value>) -> Map<String, Value> {
        let requested = params.get("protocolVersion").and_then(Value::as_str);
        let index = requested
            .and_then(|r| LEGACY_VERSIONS.iter().position(|v| *v == r))
            .unwrap_or(LEGACY_VERSIONS.len() - 1);
        let version = LEGACY_VERSIONS
            .get(index)
            .copied()
            .unwrap_or(LATEST_LEGACY_VERSION);
        self.session.negotiated.store(index + 1, Ordering::Relaxed);
        let takes_pushes = params
            .get("capabilities")
            .and_then(|c| c.get("experimental"))
            .and_then(|e| e.get(CHANNEL_CAPABILITY))
            .is_some();
        self.handler.client_initialized(takes_pushes);
        let mut capabilities = capabilities();
        if Features::legacy(version).tasks {
            capabilities["tasks"] =
                json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}});
        }
        object(json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": self.server_info(),
            "instructions": self.instructions(),
        }))
    }

    fn discover(&self) -> Map<String, Value> {
        object(json!({
            "supportedVersions": SUPPORTED_VERSIONS,
            "capabilities": capabilities(),
            "instructions": self.instructions(),
        }))
    }

    fn tools_list(&self, features: Features) -> Map<String, Value> {
        let tools: Vec<Value> = self
            .handler
            .tools()
            .into_iter()
            .map(|spec| tool_json(spec, features))
            .collect();
        object(json!({"tools": tools}))
    }

    fn tools_call(
        &self,
        id: &RequestId,
        mut params: Map<String, Value>,
        shape: CallShape,
        server_info: Value,
    ) -> Result<Outcome, RpcError> {
        let name = match params.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => return Err(RpcError::invalid_params("params.name must be a string")),
            None => return Err(RpcError::invalid_params("params.name is required")),
        };
        let arguments = match params.remove("arguments") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(args)) => args,
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "params.arguments must be an object",
                ));
            }
        };
        let task = params
            .get("task")
            .filter(|t| t.is_object() && shape.features.tasks && !shape.in_batch)
            .map(|t| t.get("ttl").and_then(Value::as_u64));
        let token = params
            .get("_meta")
            .and_then(|meta| meta.get("progressToken"))
            .and_then(RequestId::from_json)
            .filter(|_| !shape.in_batch && task.is_none());
        // A task has no request timeout to respect: its client polls for the outcome.
        let env = match (&token, &task) {
            (Some(_), _) | (None, Some(_)) => CallEnv::reported(),
            (None, None) => CallEnv::budgeted(self.call_budget),
        };
        let progress = token.map(|token| Progress {
            token,
            env: env.clone(),
            last: 0.0,
            with_message: shape.features.progress_message,
        });
        let Some(future) = self.handler.call_in(&name, arguments, env) else {
            return Err(RpcError::invalid_params(format!(
                "Unknown tool: {}",
                excerpt(&name)
            )));
        };
        let call = PendingCall {
            id: id.clone(),
            future,
            reply: CallReply {
                id: id.clone(),
                era: shape.era,
                features: shape.features,
                server_info,
            },
            progress,
        };
        Ok(match task {
            Some(ttl) => Outcome::Task(TaskRequest {
                id: id.clone(),
                op: TaskOp::Create { call, ttl },
            }),
            None => Outcome::Call(call),
        })
    }
}

/// How a `tools/call` is answered: its era, its revision's features, and whether it came in
/// a batch (no progress then).
#[derive(Debug, Clone, Copy)]
struct CallShape {
    era: Era,
    features: Features,
    in_batch: bool,
}

/// Reads the era from `params._meta`; a modern request with another version is `-32022`.
fn era_of(params: Option<&Value>) -> Result<Era, RpcError> {
    let requested = params
        .and_then(|p| p.get("_meta"))
        .and_then(|meta| meta.get(META_PROTOCOL_VERSION));
    match requested {
        None => Ok(Era::Legacy),
        Some(Value::String(v)) if v == MODERN_VERSION => Ok(Era::Modern),
        Some(Value::String(v)) => Err(RpcError::new(
            UNSUPPORTED_PROTOCOL_VERSION,
            format!(
                "Unsupported protocol version: {} (supported: {})",
                excerpt(v),
                META_VERSIONS.join(", ")
            ),
        )
        .with_data(json!({"supported": META_VERSIONS, "requested": v}))),
        Some(_) => Err(RpcError::invalid_params(format!(
            "_meta[\"{META_PROTOCOL_VERSION}\"] must be a string"
        ))),
    }
}

fn notification(method: &str, params: Option<Value>) -> Outcome {
    if method != "notifications/cancelled" {
        // `notifications/initialized` and anything unknown: accepted, never answered.
        return Outcome::Silent;
    }
    // Invalid cancellations SHOULD be ignored.
    params
        .as_ref()
        .and_then(|p| p.get("requestId"))
        .and_then(RequestId::from_json)
        .map_or(Outcome::Silent, Outcome::Cancel)
}

/// Adds the modern-era fields to a result; legacy results pass through untouched.
fn decorate(
    mut result: Map<String, Value>,
    era: Era,
    cacheable: bool,
    server_info: &Value,
) -> Value {
    match era {
        Era::Legacy => {}
        Era::Modern => {
            result.insert("resultType".to_owned(), json!("complete"));
            if cacheable {
                result.insert("ttlMs".to_owned(), json!(CACHE_TTL_MS));
                result.insert("cacheScope".to_owned(), json!("private"));
            }
            let meta = result
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(META_SERVER_INFO.to_owned(), server_info.clone());
            }
        }
    }
    Value::Object(result)
}

/// A tool as `tools/list` shows it to a client of a revision with `features`: fields the
/// revision does not define are left out.
fn tool_json(spec: ToolSpec, features: Features) -> Value {
    let mut tool = Map::new();
    tool.insert("name".to_owned(), json!(spec.name));
    tool.insert("description".to_owned(), json!(spec.description));
    tool.insert("inputSchema".to_owned(), spec.input_schema);
    if let Some(schema) = spec.output_schema.filter(|_| features.structured) {
        tool.insert("outputSchema".to_owned(), schema);
    }
    if let Some(annotations) = spec.annotations.filter(|_| features.annotations) {
        tool.insert("annotations".to_owned(), annotations);
    }
    if features.tasks {
        // Every tool may run as a task: the client then polls instead of waiting.
        tool.insert("execution".to_owned(), json!({"taskSupport": "optional"}));
    }
    Value::Object(tool)
}

/// The `tools/call` result for a tool's output; `structuredContent` only for revisions that
/// define it (the text copy carries the same JSON for the others).
fn tool_result(output: ToolOutput, features: Features) -> Map<String, Value> {
    let text_block = |text: String| json!([{"type": "text", "text": text}]);
    let mut result = Map::new();
    match output {
        ToolOutput::Text(text) => {
            result.insert("content".to_owned(), text_block(text));
        }
        ToolOutput::Error(text) => {
            result.insert("content".to_owned(), text_block(text));
            result.insert("isError".to_owned(), json!(true));
        }
        ToolOutput::Json(value) => {
            // The text copy is for clients that ignore structuredContent.
            let text = serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string());
            result.insert("content".to_owned(), text_block(text));
            if value.is_object() && features.structured {
                result.insert("structuredContent".to_owned(), value);
            }
        }
    }
    result
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
            Map::new()
        }
    }
}
