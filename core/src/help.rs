//! Operator-facing text for configuration errors: what `molecule-mcp` prints on stderr
//! before exiting 2, and what the doctor's env check summarises.
//!
//! Layout of [`ConfigErrors::render`]:
//!
//! 1. When anything required is missing, the help block: the
//!    `molecule-mcp: missing required environment.` headline, one line per required
//!    variable, and `Currently missing: <names>` (names exactly `WORKSPACE_ID`,
//!    `PLATFORM_URL`, `MOLECULE_WORKSPACE_TOKEN`, in that order).
//! 2. One `molecule-mcp: <message>` line per other error (token-file problems name the
//!    path and what is wrong with it; `invalid MOLECULE_WORKSPACES:` followed by `  - <problem>` lines; bad values
//!    quoted, with what was expected).
//! 3. When a token is involved, a last line pointing at the canvas Tokens tab.
//!
//! The text never contains a token: errors carry where a token came from, never its value.
//! Echoed values (URL, id, path) are quoted with control characters escaped so a hostile
//! value cannot rewrite the terminal, and userinfo in a URL is masked.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::config::{
    ConfigError, ConfigErrors, HEARTBEAT_INTERVAL_SECS, INBOX_POLL_INTERVAL_SECS,
    MAX_HEARTBEAT_INTERVAL_SECS, MAX_INBOX_POLL_INTERVAL_SECS, MissingItem, PLATFORM_URL,
    RawConfig, TokenFileProblem, WORKSPACE_ID, WORKSPACE_TOKEN, WORKSPACE_TOKEN_FILE, WORKSPACES,
    auth_token_path,
};
use crate::inbox::DEFAULT_POLL_INTERVAL;
use crate::sanitize::{escape_controls, quote};
use crate::session::DEFAULT_HEARTBEAT_INTERVAL;

/// Last line whenever a token problem is reported.
pub const TOKENS_TAB_POINTER: &str =
    "Get (or regenerate) a workspace token in the canvas → Tokens tab.";

/// Prefix of every error line.
const PREFIX: &str = "molecule-mcp: ";

/// Column where the explanations of the help block start.
const HELP_COLUMN: usize = 28;

impl ConfigError {
    /// True for problems about a token (missing, unreadable, malformed, or
    /// `MOLECULE_WORKSPACES`, which is where tokens live in multi-workspace mode).
    pub fn involves_token(&self) -> bool {
        match self {
            ConfigError::Missing(item) => *item == MissingItem::Token,
            ConfigError::TokenFile { .. }
            | ConfigError::MalformedToken { .. }
            | ConfigError::InvalidWorkspaces(_) => true,
            ConfigError::InvalidPlatformUrl { .. }
            | ConfigError::InvalidWorkspaceId { .. }
            | ConfigError::InvalidHeartbeatInterval { .. }
            | ConfigError::InvalidInboxPollInterval { .. } => false,
        }
    }

    /// The message without the `molecule-mcp: ` prefix. `InvalidWorkspaces` spans several
    /// lines (`  - <problem>` each).
    pub fn message(&self) -> String {
        match self {
            ConfigError::Missing(item) => format!("{} is not set", item.env_name()),
            ConfigError::InvalidPlatformUrl { value, reason } => format!(
                "{PLATFORM_URL} {} {reason} — expected the base URL of your Molecule platform, e.g. https://your-tenant.staging.moleculesai.app",
                quote(&mask_userinfo(value))
            ),
            ConfigError::InvalidWorkspaceId { value } => format!(
                "{WORKSPACE_ID} {} is not a workspace UUID — expected 8-4-4-4-12 hex digits, e.g. 00000000-0000-0000-0000-000000000000 (copy it from the canvas)",
                quote(value)
            ),
            ConfigError::TokenFile { path, problem } => token_file_message(path, problem),
            ConfigError::MalformedToken { source } => {
                format!(
                    "the token in {} contains whitespace or control characters — expected a single token",
                    escape_controls(&source.describe())
                )
            }
            ConfigError::InvalidWorkspaces(problems) => {
                let mut text = format!("invalid {WORKSPACES}:");
                for problem in problems {
                    let _ = write!(text, "\n  - {}", escape_controls(problem));
                }
                text
            }
            ConfigError::InvalidHeartbeatInterval { value } => format!(
                "{HEARTBEAT_INTERVAL_SECS} {} is invalid — expected a whole number of seconds from 1 to {MAX_HEARTBEAT_INTERVAL_SECS} (default {})",
                quote(value),
                DEFAULT_HEARTBEAT_INTERVAL.as_secs()
            ),
            ConfigError::InvalidInboxPollInterval { value } => format!(
                "{INBOX_POLL_INTERVAL_SECS} {} is invalid — expected a whole number of seconds from 1 to {MAX_INBOX_POLL_INTERVAL_SECS} (default {})",
                quote(value),
                DEFAULT_POLL_INTERVAL.as_secs()
            ),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// What is wrong with the token file, path in single quotes.
fn token_file_message(path: &str, problem: &TokenFileProblem) -> String {
    let path = quote(path);
    match problem {
        TokenFileProblem::Missing => {
            format!("{WORKSPACE_TOKEN_FILE} points to {path} which does not exist")
        }
        TokenFileProblem::PermissionDenied => {
            format!("{WORKSPACE_TOKEN_FILE}={path} is not readable (permission denied)")
        }
        TokenFileProblem::Unreadable(why) => format!(
            "{WORKSPACE_TOKEN_FILE}={path} could not be read: {}",
            escape_controls(why)
        ),
        TokenFileProblem::NotUtf8 => format!("{WORKSPACE_TOKEN_FILE}={path} is not valid UTF-8"),
        TokenFileProblem::Empty => format!("{WORKSPACE_TOKEN_FILE}={path} is empty"),
        TokenFileProblem::InternalWhitespace => {
            format!(
                "{WORKSPACE_TOKEN_FILE}={path} contains internal whitespace — expected a single token"
            )
        }
        TokenFileProblem::ControlCharacters => {
            format!(
                "{WORKSPACE_TOKEN_FILE}={path} contains control characters — expected a single token"
            )
        }
    }
}

impl ConfigErrors {
    /// The missing items, in `Currently missing` order, without repeats.
    pub fn missing(&self) -> Vec<MissingItem> {
        let set: BTreeSet<MissingItem> = self
            .0
            .iter()
            .filter_map(|e| match e {
                ConfigError::Missing(item) => Some(*item),
                ConfigError::InvalidPlatformUrl { .. }
                | ConfigError::InvalidWorkspaceId { .. }
                | ConfigError::TokenFile { .. }
                | ConfigError::MalformedToken { .. }
                | ConfigError::InvalidWorkspaces(_)
                | ConfigError::InvalidHeartbeatInterval { .. }
                | ConfigError::InvalidInboxPollInterval { .. } => None,
            })
            .collect();
        set.into_iter().collect()
    }

    /// The full stderr text (ends with a newline). `raw` supplies the state directory so the
    /// help can name `<state dir>/.auth_token`.
    pub fn render(&self, raw: &RawConfig) -> String {
        self.render_with(Some(&raw.state_dir))
    }

    fn render_with(&self, state_dir: Option<&str>) -> String {
        let mut out = String::new();
        let missing = self.missing();
        if !missing.is_empty() {
            render_help(&mut out, &missing, state_dir);
        }
        let mut first_other = true;
        for error in &self.0 {
            if matches!(error, ConfigError::Missing(_)) {
                continue;
            }
            if first_other && !out.is_empty() {
                out.push('\n');
            }
            first_other = false;
            out.push_str(PREFIX);
            out.push_str(&error.message());
            out.push('\n');
        }
        if self.0.iter().any(ConfigError::involves_token) {
            out.push('\n');
            out.push_str(TOKENS_TAB_POINTER);
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for ConfigErrors {
    /// Same as [`ConfigErrors::render`] minus the `<state dir>/.auth_token` hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_with(None))
    }
}

impl std::error::Error for ConfigErrors {}

/// The help block for missing required variables: each one with what it is for, the token
/// alternatives, and `Currently missing: …`.
fn render_help(out: &mut String, missing: &[MissingItem], state_dir: Option<&str>) {
    let item = |out: &mut String, name: &str, text: &str| {
        let _ = writeln!(out, "  {name:<width$}{text}", width = HELP_COLUMN - 2);
    };
    let more = |out: &mut String, text: &str| {
        let _ = writeln!(out, "{:indent$}  {text}", "", indent = HELP_COLUMN);
    };
    let _ = writeln!(out, "{PREFIX}missing required environment.");
    out.push('\n');
    out.push_str("Set the following before running molecule-mcp:\n");
    item(
        out,
        WORKSPACE_ID,
        &format!("your workspace UUID (from canvas) (or {WORKSPACES} for several)"),
    );
    item(
        out,
        PLATFORM_URL,
        "base URL of your Molecule platform (e.g. https://your-tenant.staging.moleculesai.app)",
    );
    item(
        out,
        WORKSPACE_TOKEN,
        "bearer token for this workspace (canvas → Tokens tab)",
    );
    more(
        out,
        &format!("OR set {WORKSPACE_TOKEN_FILE} to a path that holds the token"),
    );
    more(
        out,
        "(keeps the secret out of shell history and MCP-host config plaintext)",
    );
    if let Some(dir) = state_dir.filter(|d| !d.trim().is_empty()) {
        more(
            out,
            &format!(
                "OR write it to {} (the state directory; CONFIGS_DIR moves it)",
                quote(&auth_token_path(dir))
            ),
        );
    }
    out.push('\n');
    let names: Vec<&str> = missing.iter().map(|m| m.env_name()).collect();
    let _ = writeln!(out, "Currently missing: {}", names.join(", "));
}

/// `https://user:pass@host/x` → `https://***@host/x`: a password pasted into
/// `PLATFORM_URL` must not end up in a log.
fn mask_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end).unwrap_or(rest);
    match authority.rfind('@').and_then(|at| rest.get(at..)) {
        Some(from_at) => format!("{scheme}***{from_at}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked() {
        assert_eq!(
            mask_userinfo("https://u:hunter2@host/p"),
            "https://***@host/p"
        );
        assert_eq!(mask_userinfo("u:hunter2@host"), "***@host");
        assert_eq!(mask_userinfo("https://host/p@x"), "https://host/p@x");
        assert_eq!(mask_userinfo("https://host"), "https://host");
    }

    #[test]
    fn missing_items_are_sorted_and_unique() {
        let errors = ConfigErrors(vec![
            ConfigError::Missing(MissingItem::Token),
            ConfigError::Missing(MissingItem::WorkspaceId),
            ConfigError::Missing(MissingItem::Token),
        ]);
        assert_eq!(
            errors.missing(),
            vec![MissingItem::WorkspaceId, MissingItem::Token]
        );
        assert!(
            errors
                .to_string()
                .contains("Currently missing: WORKSPACE_ID, MOLECULE_WORKSPACE_TOKEN\n")
        );
    }
}
