//! Everything the core asks its driver to do. Drained one at a time with
//! [`crate::Session::poll_action`]; the enum is exhaustive on purpose so that adding a
//! variant breaks every driver until it handles it.

use crate::http::HttpRequest;
use crate::secret::Secret;

/// Log severity. Drivers map these onto their logging system (stderr only: stdout is MCP's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Diagnostic detail (shown with `MOLECULE_MCP_VERBOSE`).
    Debug,
    /// Normal progress (shown with `MOLECULE_MCP_VERBOSE`).
    Info,
    /// Something failed but will be retried.
    Warn,
    /// The operator must act.
    Error,
}

impl LogLevel {
    /// Upper-case level name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// A log line. Never contains a token (the core redacts network text before logging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The workspace the line is about.
    pub workspace_id: String,
    /// Text, without a program-name prefix (drivers add their own).
    pub message: String,
}

/// Which state-dir file a [`PersistRequest`] targets; its name comes from
/// [`crate::state_layout::StateLayout`].
pub type PersistFile = crate::state_layout::StateFile;

/// Why a state-file write failed, as the driver describes it (the path and the OS error;
/// never the value being written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistError {
    /// What went wrong.
    pub detail: String,
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for PersistError {}

impl From<String> for PersistError {
    fn from(detail: String) -> Self {
        PersistError { detail }
    }
}

impl From<&str> for PersistError {
    fn from(detail: &str) -> Self {
        PersistError {
            detail: detail.to_owned(),
        }
    }
}

/// Identifies one persist request so its outcome can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PersistId(pub u64);

/// Write `value` to the state-dir file for `file` (0600, temp file + fsync + rename), then
/// report [`crate::Input::PersistDone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRequest {
    /// Echoed back in the outcome.
    pub id: PersistId,
    /// Workspace the value belongs to.
    pub workspace_id: String,
    /// Target file.
    pub file: PersistFile,
    /// The value (redacted in `Debug`).
    pub value: Secret,
}

/// Why a session can no longer run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatalReason {
    /// Register answered 401 or 403: the token is not valid for this workspace.
    RegisterRejected {
        /// 401 or 403.
        status: u16,
    },
}

impl FatalReason {
    /// The process exit code a single-workspace runtime should use.
    pub fn exit_code(self) -> u8 {
        match self {
            FatalReason::RegisterRejected { .. } => 3,
        }
    }
}

/// An instruction from the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this request and report the outcome with the same id.
    SendHttp(HttpRequest),
    /// Emit a log line (stderr).
    Log(LogLine),
    /// Persist a secret to the state directory.
    Persist(PersistRequest),
    /// The platform minted a new token for this workspace: use it for every later call
    /// (tools included).
    TokenChanged {
        /// Workspace whose token changed.
        workspace_id: String,
        /// The new token.
        token: Secret,
    },
    /// The session is over. In single-workspace mode the process prints `message` to stderr
    /// and exits with `reason.exit_code()`; in multi-workspace mode only this workspace stops.
    Fatal {
        /// Why.
        reason: FatalReason,
        /// Workspace that failed.
        workspace_id: String,
        /// The actionable operator message (no secrets).
        message: String,
    },
}
