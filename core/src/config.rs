//! Start-up configuration: a pure function from an environment snapshot (plus what the
//! shell read from the token files) to a [`ValidConfig`] or a list of [`ConfigError`]s
//! that renders the operator help text ([`crate::help`]). The variables are listed in
//! [`VARIABLES`] and documented in the README's configuration table.
//!
//! The shell does all file reading *before* calling [`validate`]: it reads the file named by
//! `MOLECULE_WORKSPACE_TOKEN_FILE` (see [`token_file_path`]) and `<state dir>/.auth_token`,
//! and passes the outcomes as [`FileRead`] values. Validation itself never touches the disk.
//!
//! Rules, in one place:
//!
//! * **Blank is missing.** A variable that is empty or whitespace-only counts as unset,
//!   for every variable.
//! * **All errors at once.** [`validate`] reports every problem it finds (ordered
//!   `WORKSPACE_ID`, `PLATFORM_URL`, token, then the rest) so the operator fixes everything
//!   in one go instead of one restart per mistake.
//! * **Single workspace** (`MOLECULE_WORKSPACES` blank): `WORKSPACE_ID` must be a UUID; the
//!   token is the first of `MOLECULE_WORKSPACE_TOKEN` → `MOLECULE_WORKSPACE_TOKEN_FILE` →
//!   `<state dir>/.auth_token`. A token-file failure is terminal (no fallback to
//!   `.auth_token`), because silently using a different token than the one the operator
//!   pointed at is worse than refusing to start.
//! * **Several workspaces** (`MOLECULE_WORKSPACES` non-blank): a JSON array of
//!   `{"id": "<uuid>", "token": "<token>"}`; `id`/`token` must be JSON strings (a number
//!   or `null` is an error, not coerced to text), ids UUIDs and unique. The single-workspace variables are then ignored.
//! * **Tokens** are trimmed and must not be blank or contain whitespace or control
//!   characters (they become an `Authorization` header). No token value ever appears in an
//!   error or in the rendered text; errors name where the token came from instead.
//! * **Flags** follow a [`FlagRule`]: the `MOLECULE_MCP_*` switches are on unless
//!   `0`/`false`/`no`/`off`; `DELEGATION_SYNC_VIA_INBOX` is on only for `1`/`true`/`yes`/`on`.
//! * **Tool settings** (`WORKSPACE_TIER`, `DELEGATION_*`) fall back to their defaults when
//!   unusable: they only tune the tools.
//!
//! The operator-facing text for [`ConfigErrors`] lives in [`crate::help`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::ids::normalize_uuid;
use crate::inbox::{DEFAULT_POLL_INTERVAL, InboxConfig};
use crate::platform_url::{PlatformUrl, PlatformUrlError};
use crate::sanitize::json_type;
use crate::secret::Secret;
use crate::session::{DEFAULT_HEARTBEAT_INTERVAL, SessionConfig};
use crate::tool_settings::{MAX_DELEGATION_TIMEOUT, ToolSettings};

/// `PLATFORM_URL`.
pub const PLATFORM_URL: &str = "PLATFORM_URL";
/// `WORKSPACE_ID`.
pub const WORKSPACE_ID: &str = "WORKSPACE_ID";
/// `MOLECULE_WORKSPACE_TOKEN`.
pub const WORKSPACE_TOKEN: &str = "MOLECULE_WORKSPACE_TOKEN";
/// `MOLECULE_WORKSPACE_TOKEN_FILE`.
pub const WORKSPACE_TOKEN_FILE: &str = "MOLECULE_WORKSPACE_TOKEN_FILE";
/// `MOLECULE_WORKSPACES`.
pub const WORKSPACES: &str = "MOLECULE_WORKSPACES";
/// `MOLECULE_MCP_DISABLE_HEARTBEAT`.
pub const DISABLE_HEARTBEAT: &str = "MOLECULE_MCP_DISABLE_HEARTBEAT";
/// `MOLECULE_MCP_DISABLE_INBOX`.
pub const DISABLE_INBOX: &str = "MOLECULE_MCP_DISABLE_INBOX";
/// `MOLECULE_MCP_VERBOSE`.
pub const VERBOSE: &str = "MOLECULE_MCP_VERBOSE";
/// `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS`.
pub const HEARTBEAT_INTERVAL_SECS: &str = "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS";
/// `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS`.
pub const INBOX_POLL_INTERVAL_SECS: &str = "MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS";
/// `MOLECULE_MCP_POLL_TIMEOUT_SECS`.
pub const POLL_TIMEOUT_SECS: &str = "MOLECULE_MCP_POLL_TIMEOUT_SECS";
/// `MOLECULE_AGENT_NAME`.
pub const AGENT_NAME: &str = "MOLECULE_AGENT_NAME";
/// `MOLECULE_AGENT_DESCRIPTION`.
pub const AGENT_DESCRIPTION: &str = "MOLECULE_AGENT_DESCRIPTION";
/// `MOLECULE_AGENT_SKILLS`.
pub const AGENT_SKILLS: &str = "MOLECULE_AGENT_SKILLS";
/// `WORKSPACE_TIER`.
pub const WORKSPACE_TIER: &str = "WORKSPACE_TIER";
/// `DELEGATION_SYNC_VIA_INBOX`.
pub const DELEGATION_SYNC_VIA_INBOX: &str = "DELEGATION_SYNC_VIA_INBOX";
/// `DELEGATION_TIMEOUT`.
pub const DELEGATION_TIMEOUT: &str = "DELEGATION_TIMEOUT";
/// `MOLECULE_MCP_PROGRESS_INTERVAL_MS`.
pub const PROGRESS_INTERVAL_MS: &str = "MOLECULE_MCP_PROGRESS_INTERVAL_MS";
/// `MOLECULE_MCP_CALL_BUDGET_MS`.
pub const CALL_BUDGET_MS: &str = "MOLECULE_MCP_CALL_BUDGET_MS";

/// `MOLECULE_MCP_MAX_CONCURRENT_CALLS`.
pub const MAX_CONCURRENT_CALLS: &str = "MOLECULE_MCP_MAX_CONCURRENT_CALLS";

/// Every variable [`validate`] (and [`token_file_path`]) looks at. New ones go at the end:
/// the config fuzzer's one-character aliases index this list.
pub const VARIABLES: [&str; 20] = [
    WORKSPACE_ID,
    PLATFORM_URL,
    WORKSPACE_TOKEN,
    WORKSPACE_TOKEN_FILE,
    WORKSPACES,
    DISABLE_HEARTBEAT,
    DISABLE_INBOX,
    VERBOSE,
    HEARTBEAT_INTERVAL_SECS,
    INBOX_POLL_INTERVAL_SECS,
    POLL_TIMEOUT_SECS,
    AGENT_NAME,
    AGENT_DESCRIPTION,
    AGENT_SKILLS,
    WORKSPACE_TIER,
    DELEGATION_SYNC_VIA_INBOX,
    DELEGATION_TIMEOUT,
    PROGRESS_INTERVAL_MS,
    CALL_BUDGET_MS,
    MAX_CONCURRENT_CALLS,
];

/// Highest accepted `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS`: the platform's health sweep
/// marks a workspace offline after ~60 s of silence.
pub const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 60;
/// Highest accepted `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS`.
pub const MAX_INBOX_POLL_INTERVAL_SECS: u64 = 60;
/// `MOLECULE_MCP_POLL_TIMEOUT_SECS` when blank or unusable.
pub const DEFAULT_POLL_TIMEOUT_SECS: u64 = 2;
/// Cap for `MOLECULE_MCP_POLL_TIMEOUT_SECS`.
pub const MAX_POLL_TIMEOUT_SECS: u64 = 60;
/// `MOLECULE_MCP_PROGRESS_INTERVAL_MS` when unset or unusable: a progress notification every
/// 5 s keeps a call alive under any client timeout of 10 s or more, for one short line each.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Accepted range of `MOLECULE_MCP_PROGRESS_INTERVAL_MS` (values outside are clamped): at
/// most 10 s, so even a 10 s client timeout that resets on progress never fires.
pub const PROGRESS_INTERVAL_RANGE_MS: (u64, u64) = (10, 10_000);
/// `MOLECULE_MCP_CALL_BUDGET_MS` when unset or unusable: how long a call without a progress
/// token may wait before answering "nothing yet". 50 s answers before the 60 s default
/// request timeout of the TypeScript SDK and of Codex, with 10 s to spare for the answer.
pub const DEFAULT_CALL_BUDGET: Duration = Duration::from_secs(50);
/// Accepted range of `MOLECULE_MCP_CALL_BUDGET_MS` (values outside are clamped).
pub const CALL_BUDGET_RANGE_MS: (u64, u64) = (100, 50_000);

/// Outcome of the shell reading a file for the config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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

/// Where a workspace's token came from: operator messages name it, so a rejected token can
/// be traced to the variable or file to fix.
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

impl TokenSource {
    /// Human name of the source for operator messages, e.g. `MOLECULE_WORKSPACE_TOKEN`,
    /// `MOLECULE_WORKSPACE_TOKEN_FILE ('/run/tok')`, `/home/me/.molecule-workspace/.auth_token`
    /// or `MOLECULE_WORKSPACES[1]` (zero-based, like the validation messages).
    pub fn describe(&self) -> String {
        match self {
            TokenSource::EnvVar => WORKSPACE_TOKEN.to_owned(),
            TokenSource::TokenFile { path } => format!("{WORKSPACE_TOKEN_FILE} ('{path}')"),
            TokenSource::StateFile { path } => path.clone(),
            TokenSource::WorkspacesEntry { index } => format!("{WORKSPACES}[{index}]"),
        }
    }
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
    /// `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS` (default 5, 1..=60).
    pub inbox_poll_interval: Duration,
    /// `MOLECULE_MCP_POLL_TIMEOUT_SECS` as advertised in the MCP instructions (default 2,
    /// 0 = polling disabled, capped at 60).
    pub poll_timeout_secs: u64,
    /// `MOLECULE_MCP_PROGRESS_INTERVAL_MS`: how often a long call with a progress token
    /// reports progress (default 5 s, 10 ms..=10 s).
    pub progress_interval: Duration,
    /// `MOLECULE_MCP_CALL_BUDGET_MS`: how long a call without a progress token may wait
    /// (default 50 s, 100 ms..=50 s).
    pub call_budget: Duration,
    /// Agent card inputs.
    pub agent: AgentIdentity,
    /// The tools' settings (`WORKSPACE_TIER`, `DELEGATION_SYNC_VIA_INBOX`,
    /// `DELEGATION_TIMEOUT`; unusable values fall back to the defaults).
    pub tool_settings: ToolSettings,
}

impl ValidConfig {
    /// Things that work but that the operator should know about, one sentence each (the
    /// runtime logs them at WARNING at start-up; `doctor` shows them).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.platform.is_plain_http_to_remote() {
            warnings.push(format!(
                "PLATFORM_URL {} uses plain http to a host that is not this machine: the workspace token crosses the \
                 network unencrypted. Use https:// unless this is a private test network.",
                self.platform.base()
            ));
        }
        warnings
    }

    /// The agent card sent at register for `workspace_id`: exactly
    /// `{"name": …, "skills": [{"name": s}, …]}`, plus `"description"` only when set.
    pub fn agent_card(&self, workspace_id: &str) -> Value {
        let name = match &self.agent.name {
            Some(name) => name.clone(),
            None => format!(
                "molecule-mcp-{}",
                workspace_id.chars().take(8).collect::<String>()
            ),
        };
        let skills: Vec<Value> = self
            .agent
            .skills
            .iter()
            .map(|s| json!({ "name": s }))
            .collect();
        let mut card = Map::new();
        card.insert("name".to_owned(), Value::String(name));
        card.insert("skills".to_owned(), Value::Array(skills));
        if let Some(description) = &self.agent.description {
            card.insert("description".to_owned(), Value::String(description.clone()));
        }
        Value::Object(card)
    }

    /// The inbox config for workspace `index` (`None` when out of range). In
    /// multi-workspace mode messages carry their `arrival_workspace_id`.
    pub fn inbox_config(&self, index: usize) -> Option<InboxConfig> {
        let ws = self.workspaces.get(index)?;
        let mut inbox = InboxConfig::new(self.platform.clone(), ws.id.clone(), ws.token.clone());
        inbox.poll_interval = self.inbox_poll_interval;
        inbox.debug_logs = self.verbose;
        if self.multi_workspace {
            inbox.arrival_workspace_id = Some(ws.id.clone());
        }
        Some(inbox)
    }

    /// The session config for workspace `index` (`None` when out of range).
    pub fn session_config(&self, index: usize) -> Option<SessionConfig> {
        let ws = self.workspaces.get(index)?;
        let mut session = SessionConfig::new(
            self.platform.clone(),
            ws.id.clone(),
            ws.token.clone(),
            ws.token_source.describe(),
            self.agent_card(&ws.id),
        );
        session.heartbeat_interval = self.heartbeat_interval;
        Some(session)
    }
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

impl MissingItem {
    /// The variable named in `Currently missing: …`.
    pub fn env_name(self) -> &'static str {
        match self {
            MissingItem::WorkspaceId => WORKSPACE_ID,
            MissingItem::PlatformUrl => PLATFORM_URL,
            MissingItem::Token => WORKSPACE_TOKEN,
        }
    }
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
    /// `MOLECULE_WORKSPACE_TOKEN_FILE` could not be used (texts in [`crate::help`]).
    TokenFile {
        /// The path as given.
        path: String,
        /// Why.
        problem: TokenFileProblem,
    },
    /// A token from `MOLECULE_WORKSPACE_TOKEN` or `<state dir>/.auth_token` contains
    /// whitespace or control characters, so it cannot be a bearer token. (The token file
    /// reports this as [`TokenFileProblem`]s, `MOLECULE_WORKSPACES` as entry messages.)
    MalformedToken {
        /// Where it came from.
        source: TokenSource,
    },
    /// `MOLECULE_WORKSPACES` is invalid; one message per problem.
    InvalidWorkspaces(Vec<String>),
    /// `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS` is not an integer in 1..=60.
    InvalidHeartbeatInterval {
        /// The raw value.
        value: String,
    },
    /// `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS` is not an integer in 1..=60.
    InvalidInboxPollInterval {
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
    /// A control character (NUL, DEL, escape, …) inside the token: not sendable in a header.
    ControlCharacters,
}

/// All validation failures at once, so the operator fixes everything in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// How a boolean variable's value is read. Both rules trim the value and ignore case, and a
/// blank or absent value is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagRule {
    /// On for anything but `0`, `false`, `no` and `off`: the `MOLECULE_MCP_*` switches. An
    /// operator who sets one at all means it (`1`, `yes`, `y`, `true` …), and the off-words
    /// make `=0` or `=false` mean off, as anyone would expect.
    OnUnlessOffWord,
    /// On only for `1`, `true`, `yes` and `on`: `DELEGATION_SYNC_VIA_INBOX`, which sends
    /// `delegate_task` down a different platform path, so only an unmistakable yes switches
    /// it and any other value keeps the default path.
    OnlyOnWord,
}

impl FlagRule {
    /// True when `value` turns the flag on under this rule.
    pub fn is_on(self, value: Option<&str>) -> bool {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return false;
        };
        let is_any = |words: [&str; 4]| words.iter().any(|w| value.eq_ignore_ascii_case(w));
        match self {
            FlagRule::OnUnlessOffWord => !is_any(["0", "false", "no", "off"]),
            FlagRule::OnlyOnWord => is_any(["1", "true", "yes", "on"]),
        }
    }
}

/// True when a `MOLECULE_MCP_*` flag is on ([`FlagRule::OnUnlessOffWord`]).
pub fn is_flag_on(value: Option<&str>) -> bool {
    FlagRule::OnUnlessOffWord.is_on(value)
}

/// The path the shell must read for `MOLECULE_WORKSPACE_TOKEN_FILE` (trimmed), or `None`
/// when validation will not look at it: the variable is blank, `MOLECULE_WORKSPACE_TOKEN`
/// is set (it wins), or `MOLECULE_WORKSPACES` is set (multi-workspace mode).
pub fn token_file_path(env: &BTreeMap<String, String>) -> Option<&str> {
    let env = Env(env);
    if env.get(WORKSPACES).is_some() || env.get(WORKSPACE_TOKEN).is_some() {
        return None;
    }
    env.get(WORKSPACE_TOKEN_FILE)
}

/// Validates a snapshot. Pure: same input, same output; never panics.
pub fn validate(raw: &RawConfig) -> Result<ValidConfig, ConfigErrors> {
    let env = Env(&raw.env);
    // Buckets keep the documented order whatever order the checks run in.
    let mut id_errors = Vec::new();
    let mut platform_errors = Vec::new();
    let mut token_errors = Vec::new();
    let mut other_errors = Vec::new();

    let platform = match env.get_raw(PLATFORM_URL) {
        None => {
            platform_errors.push(ConfigError::Missing(MissingItem::PlatformUrl));
            None
        }
        Some(value) => match PlatformUrl::parse(value) {
            Ok(url) => Some(url),
            Err(reason) => {
                platform_errors.push(ConfigError::InvalidPlatformUrl {
                    value: value.to_owned(),
                    reason,
                });
                None
            }
        },
    };

    let multi_workspace = env.get(WORKSPACES).is_some();
    let workspaces = match env.get(WORKSPACES) {
        Some(json) => match parse_workspaces(json) {
            Ok(list) => Some(list),
            Err(messages) => {
                other_errors.push(ConfigError::InvalidWorkspaces(messages));
                None
            }
        },
        None => {
            let id = match env.get_raw(WORKSPACE_ID) {
                None => Err(ConfigError::Missing(MissingItem::WorkspaceId)),
                Some(value) => {
                    normalize_uuid(value).ok_or_else(|| ConfigError::InvalidWorkspaceId {
                        value: value.to_owned(),
                    })
                }
            };
            let token = resolve_single_token(raw, &env);
            match (id, token) {
                (Ok(id), Ok((token, token_source))) => Some(vec![WorkspaceConfig {
                    id,
                    token,
                    token_source,
                }]),
                (id, token) => {
                    id_errors.extend(id.err());
                    token_errors.extend(token.err());
                    None
                }
            }
        }
    };

    let heartbeat_interval = match heartbeat_interval(&env) {
        Ok(interval) => Some(interval),
        Err(e) => {
            other_errors.push(e);
            None
        }
    };
    let inbox_poll_interval = match inbox_poll_interval(&env) {
        Ok(interval) => Some(interval),
        Err(e) => {
            other_errors.push(e);
            None
        }
    };

    match (
        platform,
        workspaces,
        heartbeat_interval,
        inbox_poll_interval,
    ) {
        (Some(platform), Some(workspaces), Some(heartbeat_interval), Some(inbox_poll_interval))
            if !workspaces.is_empty() =>
        {
            Ok(ValidConfig {
                platform,
                workspaces,
                multi_workspace,
                heartbeat_enabled: !is_flag_on(env.get(DISABLE_HEARTBEAT)),
                inbox_enabled: !is_flag_on(env.get(DISABLE_INBOX)),
                verbose: is_flag_on(env.get(VERBOSE)),
                heartbeat_interval,
                inbox_poll_interval,
                poll_timeout_secs: poll_timeout_secs(env.get(POLL_TIMEOUT_SECS)),
                progress_interval: clamped_millis(
                    env.get(PROGRESS_INTERVAL_MS),
                    DEFAULT_PROGRESS_INTERVAL,
                    PROGRESS_INTERVAL_RANGE_MS,
                ),
                call_budget: clamped_millis(
                    env.get(CALL_BUDGET_MS),
                    DEFAULT_CALL_BUDGET,
                    CALL_BUDGET_RANGE_MS,
                ),
                agent: agent_identity(&env),
                tool_settings: tool_settings(&env),
            })
        }
        _ => {
            let mut errors = id_errors;
            errors.append(&mut platform_errors);
            errors.append(&mut token_errors);
            errors.append(&mut other_errors);
            if errors.is_empty() {
                // Unreachable by construction (parse_workspaces never returns an empty
                // list); kept so a future change cannot turn into an empty error report.
                errors.push(ConfigError::InvalidWorkspaces(vec![
                    workspaces_shape_message(),
                ]));
            }
            Err(ConfigErrors(errors))
        }
    }
}

/// Read-only view of the environment where blank means absent.
struct Env<'a>(&'a BTreeMap<String, String>);

impl<'a> Env<'a> {
    /// The value trimmed, or `None` when unset or blank.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.get_raw(key).map(str::trim)
    }

    /// The value as given, or `None` when unset or blank.
    fn get_raw(&self, key: &str) -> Option<&'a str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Why a trimmed, non-empty token cannot be used as a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenShape {
    /// Whitespace inside (a multi-line file, two tokens pasted together, …).
    InternalWhitespace,
    /// NUL, DEL, escape, …: not sendable in an HTTP header.
    ControlCharacters,
}

impl TokenShape {
    /// The problem with `token` (already trimmed), if any.
    fn check(token: &str) -> Option<TokenShape> {
        if token.chars().any(char::is_whitespace) {
            Some(TokenShape::InternalWhitespace)
        } else if token.chars().any(char::is_control) {
            Some(TokenShape::ControlCharacters)
        } else {
            None
        }
    }

    /// Wording shared by the token-file and `MOLECULE_WORKSPACES` messages.
    fn describe(self) -> &'static str {
        match self {
            TokenShape::InternalWhitespace => {
                "contains internal whitespace — expected a single token"
            }
            TokenShape::ControlCharacters => {
                "contains control characters — expected a single token"
            }
        }
    }
}

/// The single-workspace token: env var → token file (failures terminal) → `.auth_token`.
fn resolve_single_token(
    raw: &RawConfig,
    env: &Env<'_>,
) -> Result<(Secret, TokenSource), ConfigError> {
    if let Some(token) = env.get(WORKSPACE_TOKEN) {
        let source = TokenSource::EnvVar;
        return match TokenShape::check(token) {
            None => Ok((Secret::new(token), source)),
            Some(_) => Err(ConfigError::MalformedToken { source }),
        };
    }
    if let Some(path) = token_file_path(&raw.env) {
        let token = match &raw.token_file {
            Some(read) => token_from_file(read),
            // The shell must read the file whenever `token_file_path` names one; refusing
            // is safer than silently falling back to another token.
            None => Err(TokenFileProblem::Unreadable(
                "the file was not read (internal error)".to_owned(),
            )),
        };
        return match token {
            Ok(token) => Ok((
                Secret::new(token),
                TokenSource::TokenFile {
                    path: path.to_owned(),
                },
            )),
            Err(problem) => Err(ConfigError::TokenFile {
                path: path.to_owned(),
                problem,
            }),
        };
    }
    if let FileRead::Contents(bytes) = &raw.state_auth_token {
        // Anything unreadable here counts as "no token" (this file is only a fallback the
        // operator did not name); only a non-blank token that cannot be sent is an error, so
        // it is not silently skipped.
        if let Some(token) = std::str::from_utf8(bytes)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let source = TokenSource::StateFile {
                path: auth_token_path(&raw.state_dir),
            };
            return match TokenShape::check(token) {
                None => Ok((Secret::new(token), source)),
                Some(_) => Err(ConfigError::MalformedToken { source }),
            };
        }
    }
    Err(ConfigError::Missing(MissingItem::Token))
}

/// The token in a `MOLECULE_WORKSPACE_TOKEN_FILE` read: trimmed, non-blank, one token.
fn token_from_file(read: &FileRead) -> Result<String, TokenFileProblem> {
    match read {
        FileRead::Missing => Err(TokenFileProblem::Missing),
        FileRead::PermissionDenied => Err(TokenFileProblem::PermissionDenied),
        FileRead::NotRegularFile => Err(TokenFileProblem::Unreadable(
            "not a regular file (is it a directory?)".to_owned(),
        )),
        FileRead::Unreadable(why) => Err(TokenFileProblem::Unreadable(why.clone())),
        FileRead::Contents(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|_| TokenFileProblem::NotUtf8)?;
            let token = text.trim();
            if token.is_empty() {
                return Err(TokenFileProblem::Empty);
            }
            match TokenShape::check(token) {
                Some(TokenShape::InternalWhitespace) => Err(TokenFileProblem::InternalWhitespace),
                Some(TokenShape::ControlCharacters) => Err(TokenFileProblem::ControlCharacters),
                None => Ok(token.to_owned()),
            }
        }
    }
}

/// `<state dir>/.auth_token`, for messages.
pub fn auth_token_path(state_dir: &str) -> String {
    crate::state_layout::StateLayout::SINGLE.display_path(
        state_dir,
        crate::state_layout::StateFile::AuthToken,
        "",
    )
}

/// What `MOLECULE_WORKSPACES` must look like, for the error when it does not.
fn workspaces_shape_message() -> String {
    format!(
        r#"{WORKSPACES} must be a non-empty JSON array of {{"id":"...","token":"..."}} objects"#
    )
}

/// Parses `MOLECULE_WORKSPACES`; every problem of every entry is reported. Messages never
/// contain a token value (ids are fine: they are not secret).
fn parse_workspaces(text: &str) -> Result<Vec<WorkspaceConfig>, Vec<String>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's syntax messages name the position, never the input text.
        vec![format!(r#"{WORKSPACES} is not valid JSON ({e}). Expected: '[{{"id":"<wsid>","token":"<tok>"}},{{...}}]'"#)]
    })?;
    let entries = match value {
        Value::Array(entries) if !entries.is_empty() => entries,
        Value::Array(_)
        | Value::Null
        | Value::Bool(_)
        | Value::Number(_)
        | Value::String(_)
        | Value::Object(_) => {
            return Err(vec![workspaces_shape_message()]);
        }
    };
    let mut problems = Vec::new();
    let mut workspaces = Vec::new();
    // Lower-cased id → first index, for duplicate detection.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("{WORKSPACES}[{index}]");
        let Value::Object(fields) = entry else {
            problems.push(format!("{at} is not an object — got {}", json_type(entry)));
            continue;
        };
        let id = match string_field(fields, "id") {
            Err(problem) => {
                problems.push(format!("{at} {problem}"));
                None
            }
            Ok(raw_id) => match normalize_uuid(raw_id) {
                None => {
                    problems.push(format!(
                        "{at} 'id' {} is not a workspace UUID (expected 8-4-4-4-12 hex digits)",
                        crate::sanitize::quote(raw_id)
                    ));
                    None
                }
                Some(id) => match seen.get(&id) {
                    Some(first) => {
                        problems.push(format!(
                            "{at} duplicate workspace id '{id}' (same as {WORKSPACES}[{first}])"
                        ));
                        None
                    }
                    None => {
                        seen.insert(id.clone(), index);
                        Some(id)
                    }
                },
            },
        };
        let token = match string_field(fields, "token") {
            Err(problem) => {
                problems.push(format!("{at} {problem}"));
                None
            }
            Ok(token) => match TokenShape::check(token) {
                Some(shape) => {
                    problems.push(format!("{at} 'token' {}", shape.describe()));
                    None
                }
                None => Some(Secret::new(token)),
            },
        };
        if let (Some(id), Some(token)) = (id, token) {
            workspaces.push(WorkspaceConfig {
                id,
                token,
                token_source: TokenSource::WorkspacesEntry { index },
            });
        }
    }
    if problems.is_empty() {
        Ok(workspaces)
    } else {
        Err(problems)
    }
}

/// Why a required `MOLECULE_WORKSPACES` entry field is unusable. The message names the field
/// and the JSON type, never the value (it may be a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldProblem<'a> {
    /// Absent.
    Missing(&'a str),
    /// A blank string.
    Blank(&'a str),
    /// Not a string.
    NotAString {
        /// The field.
        name: &'a str,
        /// The JSON type it has.
        got: &'static str,
    },
}

impl std::fmt::Display for FieldProblem<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldProblem::Missing(name) => write!(f, "missing '{name}'"),
            FieldProblem::Blank(name) => write!(f, "'{name}' is blank"),
            FieldProblem::NotAString { name, got } => {
                write!(f, "'{name}' must be a JSON string — got {got}")
            }
        }
    }
}

/// A required, non-blank JSON string field, trimmed.
fn string_field<'a, 'n>(
    fields: &'a Map<String, Value>,
    name: &'n str,
) -> Result<&'a str, FieldProblem<'n>> {
    match fields.get(name) {
        None => Err(FieldProblem::Missing(name)),
        Some(Value::String(s)) if s.trim().is_empty() => Err(FieldProblem::Blank(name)),
        Some(Value::String(s)) => Ok(s.trim()),
        Some(other) => Err(FieldProblem::NotAString {
            name,
            got: json_type(other),
        }),
    }
}

/// `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS`: blank ⇒ 20 s; a whole number 1..=60 ⇒ that.
fn heartbeat_interval(env: &Env<'_>) -> Result<Duration, ConfigError> {
    seconds_in_range(
        env,
        HEARTBEAT_INTERVAL_SECS,
        DEFAULT_HEARTBEAT_INTERVAL,
        MAX_HEARTBEAT_INTERVAL_SECS,
        |value| ConfigError::InvalidHeartbeatInterval { value },
    )
}

/// `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS`: blank ⇒ 5 s; a whole number 1..=60 ⇒ that.
fn inbox_poll_interval(env: &Env<'_>) -> Result<Duration, ConfigError> {
    seconds_in_range(
        env,
        INBOX_POLL_INTERVAL_SECS,
        DEFAULT_POLL_INTERVAL,
        MAX_INBOX_POLL_INTERVAL_SECS,
        |value| ConfigError::InvalidInboxPollInterval { value },
    )
}

/// A whole number of seconds in `1..=max` (blank ⇒ `default`); otherwise the error `invalid`
/// builds from the raw value.
fn seconds_in_range(
    env: &Env<'_>,
    name: &str,
    default: Duration,
    max: u64,
    invalid: fn(String) -> ConfigError,
) -> Result<Duration, ConfigError> {
    let Some(value) = env.get(name) else {
        return Ok(default);
    };
    let secs = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u64>().ok())
        .flatten();
    match secs {
        Some(secs) if (1..=max).contains(&secs) => Ok(Duration::from_secs(secs)),
        Some(_) | None => Err(invalid(env.get_raw(name).unwrap_or(value).to_owned())),
    }
}

/// `MOLECULE_MCP_POLL_TIMEOUT_SECS`: blank, non-integer or negative ⇒ 2; otherwise capped
/// at 60, so a number too large for `u64` is 60 too (it only changes the text of the
/// instructions, so it never stops the start).
fn poll_timeout_secs(value: Option<&str>) -> u64 {
    let Some(value) = value else {
        return DEFAULT_POLL_TIMEOUT_SECS;
    };
    let (negative, digits) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return DEFAULT_POLL_TIMEOUT_SECS;
    }
    let is_zero = digits.bytes().all(|b| b == b'0');
    if negative && !is_zero {
        return DEFAULT_POLL_TIMEOUT_SECS;
    }
    digits
        .parse::<u64>()
        .map_or(MAX_POLL_TIMEOUT_SECS, |n| n.min(MAX_POLL_TIMEOUT_SECS))
}

/// A whole number of milliseconds clamped to `(min, max)`; unset or not a whole number ⇒
/// `default`. Lenient like `poll_timeout_secs`: these only tune how calls are kept alive, so
/// a typo never stops the start.
fn clamped_millis(value: Option<&str>, default: Duration, (min, max): (u64, u64)) -> Duration {
    value
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(default, |ms| Duration::from_millis(ms.clamp(min, max)))
}

/// `MOLECULE_AGENT_NAME`, `…_DESCRIPTION` (trimmed, blank ⇒ `None`) and `…_SKILLS`.
fn agent_identity(env: &Env<'_>) -> AgentIdentity {
    AgentIdentity {
        name: env.get(AGENT_NAME).map(str::to_owned),
        description: env.get(AGENT_DESCRIPTION).map(str::to_owned),
        skills: env
            .get(AGENT_SKILLS)
            .map(|csv| {
                csv.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The tools' settings: `WORKSPACE_TIER` (a `u32`, else 1), `DELEGATION_SYNC_VIA_INBOX`
/// ([`FlagRule::OnlyOnWord`]) and `DELEGATION_TIMEOUT` (seconds, a finite number > 0, cut
/// at 24 h, else 300) and `MOLECULE_MCP_MAX_CONCURRENT_CALLS` (a whole number, cut to
/// 1..=512, else 64). Unusable values fall back to the defaults instead of stopping the
/// start: these only tune the tools, and the README and `docs/limits.md` document the
/// fallbacks.
fn tool_settings(env: &Env<'_>) -> ToolSettings {
    let mut s = ToolSettings::default();
    if let Some(tier) = env.get(WORKSPACE_TIER).and_then(|v| v.parse::<u32>().ok()) {
        s.tier = tier;
    }
    s.sync_via_inbox = FlagRule::OnlyOnWord.is_on(env.get(DELEGATION_SYNC_VIA_INBOX));
    if let Some(secs) = env
        .get(DELEGATION_TIMEOUT)
        .and_then(|v| v.parse::<f64>().ok())
        && secs.is_finite()
        && secs > 0.0
    {
        s.delegation_timeout =
            Duration::from_secs_f64(secs.min(MAX_DELEGATION_TIMEOUT.as_secs_f64()));
    }
    if let Some(calls) = env
        .get(MAX_CONCURRENT_CALLS)
        .and_then(|v| v.parse::<usize>().ok())
    {
        s.max_concurrent_calls = calls.clamp(1, crate::tool_settings::MAX_CONCURRENT_CALLS);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_env() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let from_env = |env: &BTreeMap<String, String>| tool_settings(&Env(env));
        let d = from_env(&env(&[]));
        assert_eq!(d, ToolSettings::default());
        let s = from_env(&env(&[
            ("WORKSPACE_TIER", "0"),
            ("DELEGATION_SYNC_VIA_INBOX", "1"),
            ("DELEGATION_TIMEOUT", "12.5"),
            ("MOLECULE_MCP_MAX_CONCURRENT_CALLS", "5000"),
        ]));
        assert_eq!(
            s.max_concurrent_calls, 512,
            "cut to the highest accepted value"
        );
        assert_eq!(s.tier, 0);
        assert!(s.sync_via_inbox);
        assert_eq!(s.delegation_timeout, Duration::from_millis(12_500));
        let s = from_env(&env(&[
            ("WORKSPACE_TIER", "x"),
            ("DELEGATION_SYNC_VIA_INBOX", "0"),
            ("DELEGATION_TIMEOUT", "-3"),
        ]));
        assert_eq!(s.tier, 1);
        assert!(!s.sync_via_inbox);
        assert_eq!(s.delegation_timeout, Duration::from_secs(300));
    }

    /// The two flag rules differ only on values that are neither an on-word nor an
    /// off-word.
    #[test]
    fn flag_rules() {
        for (value, unless_off, only_on) in [
            (None, false, false),
            (Some("  "), false, false),
            (Some("1"), true, true),
            (Some(" On "), true, true),
            (Some("TRUE"), true, true),
            (Some("yes"), true, true),
            (Some("0"), false, false),
            (Some("off"), false, false),
            (Some("No"), false, false),
            (Some("2"), true, false),
            (Some("y"), true, false),
            (Some("enabled"), true, false),
        ] {
            assert_eq!(
                FlagRule::OnUnlessOffWord.is_on(value),
                unless_off,
                "{value:?}"
            );
            assert_eq!(FlagRule::OnlyOnWord.is_on(value), only_on, "{value:?}");
        }
    }

    #[test]
    fn keepalive_millis_are_clamped_and_unusable_values_fall_back() {
        let d = Duration::from_secs(5);
        for (value, expected) in [
            (None, 5_000),
            (Some("abc"), 5_000),
            (Some("-5"), 5_000),
            (Some("100"), 100),
            (Some("1"), 10),
            (Some("99999999999"), 10_000),
        ] {
            assert_eq!(
                clamped_millis(value, d, PROGRESS_INTERVAL_RANGE_MS),
                Duration::from_millis(expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn flags_follow_the_off_words() {
        for off in [
            None,
            Some(""),
            Some("  "),
            Some("0"),
            Some("false"),
            Some(" FALSE "),
            Some("No"),
            Some("off"),
        ] {
            assert!(!is_flag_on(off), "{off:?} should be off");
        }
        for on in ["1", "true", "yes", "on", "2", "anything", "00"] {
            assert!(is_flag_on(Some(on)), "{on:?} should be on");
        }
    }

    #[test]
    fn poll_timeout_rules() {
        let cases = [
            (None, 2),
            (Some("7"), 7),
            (Some("0"), 0),
            (Some("-0"), 0),
            (Some("+5"), 5),
            (Some("-3"), 2),
            (Some("abc"), 2),
            (Some("1.5"), 2),
            (Some("61"), 60),
            (Some("99999999999999999999999999"), 60),
            (Some("-"), 2),
        ];
        for (value, expected) in cases {
            assert_eq!(poll_timeout_secs(value), expected, "{value:?}");
        }
    }

    #[test]
    fn auth_token_path_joins_once() {
        assert_eq!(auth_token_path("/s"), "/s/.auth_token");
        assert_eq!(auth_token_path("/s/"), "/s/.auth_token");
    }

    #[test]
    fn token_shape() {
        assert_eq!(TokenShape::check("abc"), None);
        assert_eq!(TokenShape::check("ünï-_.~+/="), None);
        assert_eq!(
            TokenShape::check("a b"),
            Some(TokenShape::InternalWhitespace)
        );
        assert_eq!(
            TokenShape::check("a\nb"),
            Some(TokenShape::InternalWhitespace)
        );
        assert_eq!(
            TokenShape::check("a\u{a0}b"),
            Some(TokenShape::InternalWhitespace)
        );
        assert_eq!(
            TokenShape::check("a\u{0}b"),
            Some(TokenShape::ControlCharacters)
        );
        assert_eq!(
            TokenShape::check("a\u{7f}b"),
            Some(TokenShape::ControlCharacters)
        );
    }
}
