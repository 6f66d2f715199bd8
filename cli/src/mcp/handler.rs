//! What the application plugs into the MCP server: its identity and its tools.
//!
//! The MCP layer knows nothing about the platform; it asks a [`ToolHandler`] for the tool
//! list and for one future per `tools/call`, and reports itself with a [`ServerIdentity`].
//! [`ToolSpec`] and [`ToolOutput`] are also what the platform tools
//! ([`crate::tools::Tool`]) produce, so the glue in the binary converts nothing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

/// The future a tool call runs as. It is spawned on its own task, so it must be `'static`.
pub type ToolFuture = Pin<Box<dyn Future<Output = ToolOutput> + Send + 'static>>;

/// The tools served over MCP.
pub trait ToolHandler: Send + Sync + 'static {
    /// Every tool, in the order `tools/list` must show them (keep it deterministic: clients
    /// cache prompts on it).
    fn tools(&self) -> Vec<ToolSpec>;

    /// Starts a call. `None` means "no such tool" (a JSON-RPC `-32602`); argument problems
    /// belong in the returned [`ToolOutput::Error`] so the model can correct itself.
    fn call(&self, name: &str, arguments: Map<String, Value>) -> Option<ToolFuture>;

    /// [`ToolHandler::call`] with the call's [`CallEnv`]: what the server serves. Handlers
    /// whose tools never wait long need not override it.
    fn call_in(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        env: CallEnv,
    ) -> Option<ToolFuture> {
        let _ = env;
        self.call(name, arguments)
    }

    /// A client completed `initialize`; `takes_pushes` when it declared the
    /// `claude/channel` experimental capability (it shows pushed messages to the model).
    fn client_initialized(&self, takes_pushes: bool) {
        let _ = takes_pushes;
    }
}

/// How long one call may wait, decided by the server from its request: a call whose client
/// sent a progress token is kept alive by progress notifications and may wait as long as it
/// needs; any other call must answer within its budget, before the client's own request
/// timeout fires.
#[derive(Debug, Clone, Default)]
pub struct CallEnv {
    budget: Option<Duration>,
    stage: Option<Arc<Mutex<Stage>>>,
}

/// What a call is waiting for, as its progress notifications describe it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stage {
    /// A short human phrase, e.g. "waiting for a message".
    pub what: String,
    /// How long the wait lasts at most, when the tool knows it.
    pub total: Option<Duration>,
}

impl CallEnv {
    /// No budget and no progress: direct callers (unit tests, embedders) that have no
    /// client timeout to respect.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// A call that reports progress: unbounded by the server, the tool's own limits apply.
    pub fn reported() -> Self {
        Self {
            budget: None,
            stage: Some(Arc::new(Mutex::new(Stage::default()))),
        }
    }

    /// A call without progress: it answers within `budget`.
    pub fn budgeted(budget: Duration) -> Self {
        Self {
            budget: Some(budget),
            stage: None,
        }
    }

    /// The longest this call may wait before it must answer, if there is a limit.
    pub fn budget(&self) -> Option<Duration> {
        self.budget
    }

    /// Caps a wait the tool wants (`wanted`) by the budget; true when the budget is shorter,
    /// i.e. the tool must answer "not yet" when it runs out.
    pub fn cap(&self, wanted: Duration) -> (Duration, bool) {
        match self.budget {
            Some(budget) if budget < wanted => (budget, true),
            Some(_) | None => (wanted, false),
        }
    }

    /// Names what the call now waits for (shown in its progress messages).
    pub fn waiting_for(&self, what: impl Into<String>, total: Option<Duration>) {
        if let Some(stage) = &self.stage {
            *stage.lock().unwrap_or_else(PoisonError::into_inner) = Stage {
                what: what.into(),
                total,
            };
        }
    }

    /// What the call waits for now (empty before the tool names it).
    pub fn stage(&self) -> Stage {
        self.stage
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }
}

/// One tool as `tools/list` advertises it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Tool name (unique, `[A-Za-z0-9_.-]{1,128}`).
    pub name: &'static str,
    /// Description shown to the model.
    pub description: String,
    /// JSON Schema of the arguments; an object schema, never null.
    pub input_schema: Value,
    /// JSON Schema of `structuredContent`, for tools that return a JSON object.
    pub output_schema: Option<Value>,
    /// MCP annotations (`title`, behaviour hints).
    pub annotations: Option<Value>,
}

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutput {
    /// One text block.
    Text(String),
    /// JSON: an object becomes `structuredContent` plus a text copy; any other value is sent
    /// as text only (legacy MCP requires `structuredContent` to be an object).
    Json(Value),
    /// A tool failure: one text block and `isError: true`.
    Error(String),
}

impl ToolOutput {
    /// Shorthand for [`ToolOutput::Error`].
    pub fn error(text: impl Into<String>) -> Self {
        ToolOutput::Error(text.into())
    }
}

/// How the server names itself in `initialize` and `server/discover`.
#[derive(Clone)]
pub struct ServerIdentity {
    /// `serverInfo.name`.
    pub name: String,
    /// `serverInfo.version`.
    pub version: String,
    /// Produces `instructions` on every `initialize`/`server/discover`, so the text can
    /// reflect live configuration.
    pub instructions: Arc<dyn Fn() -> String + Send + Sync>,
}

impl ServerIdentity {
    /// An identity with the given name, version and instructions callback.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        instructions: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            instructions: Arc::new(instructions),
        }
    }

    /// `molecule-mcp` at this crate's version.
    pub fn molecule(instructions: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self::new("molecule-mcp", env!("CARGO_PKG_VERSION"), instructions)
    }
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}
