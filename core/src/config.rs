//! Start-up configuration: a pure function from an environment snapshot (plus what the
//! shell read from the token files) to a [`ValidConfig`] or a list of [`ConfigError`]s
//! that renders the operator help text (reference §1.5–1.7).
//!
//! The shell does all file reading *before* calling [`validate`]: it reads the file named by
//! `MOLECULE_WORKSPACE_TOKEN_FILE` (see [`token_file_path`]) and `<state dir>/.auth_token`,
//! and passes the outcomes as [`FileRead`] values. Validation itself never touches the disk.
//!
//! NOTE: implementation in progress (types are final).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::platform_url::{PlatformUrl, PlatformUrlError};
use crate::secret::Secret;

/// Outcome of the shell reading a file for the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    /// No such file.
    Missing,
    /// Exists but is not a regular file (directory, socket, …).
    NotRegularFile,
    /// Permission denied.
    PermissionDenied,
    /// Any other I/O error (message from the OS).
    Unreadable(String),
    /// The file's bytes.
    Contents(Vec<u8>),
}

/// Everything validation looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawConfig {
    /// Environment variables (only the ones this program reads matter).
    pub env: BTreeMap<String, String>,
    /// Read of the `MOLECULE_WORKSPACE_TOKEN_FILE` path; `None` when that variable is blank
    /// (or when it was not read because `MOLECULE_WORKSPACE_TOKEN` was set).
    pub token_file: Option<FileRead>,
    /// Read of `<state dir>/.auth_token`.
    pub state_auth_token: FileRead,
    /// The resolved state directory, for messages (`<dir>/.auth_token`).
    pub state_dir: String,
}

/// Where a workspace's token came from (named in operator messages; reference defect 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `MOLECULE_WORKSPACE_TOKEN`.
    EnvVar,
    /// `MOLECULE_WORKSPACE_TOKEN_FILE`.
    TokenFile {
        /// The path as given.
        path: String,
    },
    /// `<state dir>/.auth_token`.
    StateFile {
        /// Full path.
        path: String,
    },
    /// Entry `index` of `MOLECULE_WORKSPACES`.
    WorkspacesEntry {
        /// Zero-based index.
        index: usize,
    },
}

/// One workspace to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceConfig {
    /// Workspace UUID (lower-cased, trimmed).
    pub id: String,
    /// Bearer token.
    pub token: Secret,
    /// Where the token came from.
    pub token_source: TokenSource,
}

/// Agent-card inputs (`MOLECULE_AGENT_NAME`, `…_DESCRIPTION`, `…_SKILLS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentIdentity {
    /// Name override; `None` means `molecule-mcp-<first 8 chars of id>`.
    pub name: Option<String>,
    /// Description; omitted from the card when `None`.
    pub description: Option<String>,
    /// Skill names, trimmed, empties dropped.
    pub skills: Vec<String>,
}

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    /// Normalised platform URL.
    pub platform: PlatformUrl,
    /// Workspaces, in order; the first is the primary. Never empty.
    pub workspaces: Vec<WorkspaceConfig>,
    /// True when configured through `MOLECULE_WORKSPACES`.
    pub multi_workspace: bool,
    /// Register + heartbeat enabled (`MOLECULE_MCP_DISABLE_HEARTBEAT` off).
    pub heartbeat_enabled: bool,
    /// Inbox polling enabled (`MOLECULE_MCP_DISABLE_INBOX` off).
    pub inbox_enabled: bool,
    /// `MOLECULE_MCP_VERBOSE`.
    pub verbose: bool,
    /// `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS` (default 20, 1..=60).
    pub heartbeat_interval: Duration,
    /// `MOLECULE_MCP_POLL_TIMEOUT_SECS` as advertised in the MCP instructions (default 2,
    /// 0 = polling disabled, capped at 60).
    pub poll_timeout_secs: u64,
    /// Agent card inputs.
    pub agent: AgentIdentity,
}

/// A required item that is absent (blank counts as absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MissingItem {
    /// `WORKSPACE_ID`.
    WorkspaceId,
    /// `PLATFORM_URL`.
    PlatformUrl,
    /// `MOLECULE_WORKSPACE_TOKEN` (or the file alternatives).
    Token,
}

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A required item is missing.
    Missing(MissingItem),
    /// `PLATFORM_URL` is set but unusable.
    InvalidPlatformUrl {
        /// The raw value.
        value: String,
        /// Why.
        reason: PlatformUrlError,
    },
    /// `WORKSPACE_ID` is not a UUID.
    InvalidWorkspaceId {
        /// The raw value.
        value: String,
    },
    /// `MOLECULE_WORKSPACE_TOKEN_FILE` could not be used (reference §1.5 texts).
    TokenFile {
        /// The path as given.
        path: String,
        /// Why.
        problem: TokenFileProblem,
    },
    /// `MOLECULE_WORKSPACES` is invalid; one message per problem.
    InvalidWorkspaces(Vec<String>),
    /// `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS` is not an integer in 1..=60.
    InvalidHeartbeatInterval {
        /// The raw value.
        value: String,
    },
}

/// Why the token file was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFileProblem {
    /// Does not exist.
    Missing,
    /// Permission denied.
    PermissionDenied,
    /// Other I/O error (includes "is a directory").
    Unreadable(String),
    /// Not UTF-8.
    NotUtf8,
    /// Blank content.
    Empty,
    /// Whitespace inside the token.
    InternalWhitespace,
}

/// All validation failures at once, so the operator fixes everything in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);
