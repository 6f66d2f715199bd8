//! The state directory's layout: every file name molecule-mcp reads or writes there, in one
//! place. Drivers resolve the directory itself (an environment question) and join these
//! names onto it; nothing else spells a state file's name.
//!
//! | file | single-workspace name | multi-workspace name |
//! |---|---|---|
//! | [`StateFile::AuthToken`] | `.auth_token` | `.auth_token_<workspace id>` |
//! | [`StateFile::InboundSecret`] | `.platform_inbound_secret` | `.platform_inbound_secret_<workspace id>` |
//! | [`StateFile::InboxState`] | `.mcp_inbox_state` | `.mcp_inbox_state_<workspace id>` |
//! | [`StateFile::InboxJournal`] | `.mcp_inbox_journal` | `.mcp_inbox_journal_<workspace id>` |
//! | [`StateFile::LegacyInboxCursor`] (read only) | `.mcp_inbox_cursor` | `.mcp_inbox_cursor_<first 8 characters of the id>` |
//! | staged chat uploads | `chat-uploads/` | `chat-uploads/` (file names are random, never shared) |
//! | a state file set aside as unreadable | `<name>.corrupt-<unix secs>` ([`set_aside_name`]) | the same |
//!
//! Multi-workspace names carry the *full* workspace id: two workspaces whose ids share a
//! prefix must never share a file, so no truncated id is used. The one exception is the
//! legacy cursor: it is the file the Python original of molecule-mcp wrote (the activity id
//! it last queued, as plain text), so its name is the original's. It is only ever read (an
//! upgraded install continues from it when it has no inbox state of its own) and never
//! written or deleted, so a downgrade finds it where the original left it.

/// A per-workspace file in the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateFile {
    /// A token the platform minted at register; read back as the fallback token.
    AuthToken,
    /// The `platform_inbound_secret` register and heartbeats hand out.
    InboundSecret,
    /// The inbox's durable state (queue, cursor, handled ids, unfinished uploads).
    InboxState,
    /// Changes to the inbox state since its last snapshot, one JSON line each (appended).
    InboxJournal,
    /// The Python original's inbox cursor (the last activity id it queued). Read once at
    /// start, when there is no [`StateFile::InboxState`]; never written.
    LegacyInboxCursor,
}

impl StateFile {
    /// Every per-workspace file.
    pub const ALL: [StateFile; 5] = [
        StateFile::AuthToken,
        StateFile::InboundSecret,
        StateFile::InboxState,
        StateFile::InboxJournal,
        StateFile::LegacyInboxCursor,
    ];

    /// The single-workspace file name.
    pub fn base_name(self) -> &'static str {
        match self {
            StateFile::AuthToken => ".auth_token",
            StateFile::InboundSecret => ".platform_inbound_secret",
            StateFile::InboxState => ".mcp_inbox_state",
            StateFile::InboxJournal => ".mcp_inbox_journal",
            StateFile::LegacyInboxCursor => ".mcp_inbox_cursor",
        }
    }

    /// The largest file of this kind a driver reads at start. A token or a cursor is a
    /// line; the inbox snapshot and journal hold at most the queue's bound
    /// (`InboxConfig::max_pending_bytes`, 32 MiB by default) plus handled ids and uploads,
    /// so 256 MiB is far above any real file while keeping a start-up read bounded.
    pub fn max_read_bytes(self) -> u64 {
        match self {
            StateFile::AuthToken | StateFile::InboundSecret | StateFile::LegacyInboxCursor => {
                64 * 1024
            }
            StateFile::InboxState | StateFile::InboxJournal => 256 * 1024 * 1024,
        }
    }

    /// Whether the file holds a secret (the attachment guard and permission checks use it).
    pub fn is_secret(self) -> bool {
        match self {
            StateFile::AuthToken | StateFile::InboundSecret => true,
            StateFile::InboxState | StateFile::InboxJournal | StateFile::LegacyInboxCursor => false,
        }
    }
}

/// The part of a workspace id the original put in its multi-workspace cursor file names:
/// the first 8 characters, as configured.
pub fn legacy_id_prefix(workspace_id: &str) -> &str {
    workspace_id
        .char_indices()
        .nth(8)
        .and_then(|(i, _)| workspace_id.get(..i))
        .unwrap_or(workspace_id)
}

/// The directory, relative to the state directory, where downloaded chat uploads are staged.
pub const UPLOADS_DIR: &str = "chat-uploads";

/// How file names are chosen: plain in single-workspace mode, suffixed with the full
/// workspace id when one process serves several workspaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLayout {
    /// More than one workspace shares the directory.
    pub multi_workspace: bool,
}

impl StateLayout {
    /// The single-workspace layout.
    pub const SINGLE: StateLayout = StateLayout {
        multi_workspace: false,
    };

    /// The layout for a process serving one (`false`) or several (`true`) workspaces.
    pub fn new(multi_workspace: bool) -> Self {
        StateLayout { multi_workspace }
    }

    /// The file name (relative to the state directory) of `file` for `workspace_id`.
    pub fn file_name(self, file: StateFile, workspace_id: &str) -> String {
        if self.multi_workspace && file == StateFile::LegacyInboxCursor {
            format!("{}_{}", file.base_name(), legacy_id_prefix(workspace_id))
        } else if self.multi_workspace {
            format!("{}_{workspace_id}", file.base_name())
        } else {
            file.base_name().to_owned()
        }
    }

    /// `<dir>/<file name>` as text, for operator messages (`dir` as the operator wrote it;
    /// no separator is doubled when it already ends with one).
    pub fn display_path(self, dir: &str, file: StateFile, workspace_id: &str) -> String {
        let name = self.file_name(file, workspace_id);
        if dir.is_empty() || dir.ends_with('/') || dir.ends_with('\\') {
            format!("{dir}{name}")
        } else {
            format!("{dir}/{name}")
        }
    }

    /// The relative path of a staged upload whose random file name is `name` (the same in
    /// every layout).
    pub fn upload_path(name: &str) -> String {
        format!("{UPLOADS_DIR}/{name}")
    }
}

/// The name a driver gives a state file the core asked to set aside (unreadable or empty),
/// next to it: `<path>.corrupt-<unix secs>`, plus `-<n>` from 2 up when a backup of that
/// second already exists (`attempt` 1 is the plain name). The driver supplies the clock.
pub fn set_aside_name(path: &str, unix_secs: u64, attempt: u32) -> String {
    if attempt <= 1 {
        format!("{path}.corrupt-{unix_secs}")
    } else {
        format!("{path}.corrupt-{unix_secs}-{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_names_are_plain_and_multi_names_carry_the_full_id() {
        let ws = "aaaaaaaa-0000-4000-8000-000000000001";
        assert_eq!(
            StateLayout::SINGLE.file_name(StateFile::InboxState, ws),
            ".mcp_inbox_state"
        );
        assert_eq!(
            StateLayout::new(true).file_name(StateFile::InboxState, ws),
            ".mcp_inbox_state_aaaaaaaa-0000-4000-8000-000000000001"
        );
        assert_eq!(
            StateLayout::new(true).file_name(StateFile::AuthToken, ws),
            ".auth_token_aaaaaaaa-0000-4000-8000-000000000001"
        );
        assert_eq!(
            StateLayout::SINGLE.file_name(StateFile::InboundSecret, ws),
            ".platform_inbound_secret"
        );
        assert_eq!(
            StateLayout::SINGLE.file_name(StateFile::LegacyInboxCursor, ws),
            ".mcp_inbox_cursor"
        );
        assert_eq!(
            StateLayout::new(true).file_name(StateFile::LegacyInboxCursor, ws),
            ".mcp_inbox_cursor_aaaaaaaa"
        );
        assert_eq!(legacy_id_prefix("short"), "short");
        assert_eq!(
            StateLayout::upload_path("ab-x.txt"),
            "chat-uploads/ab-x.txt"
        );
        assert_eq!(
            set_aside_name(".mcp_inbox_state", 1_700_000_000, 1),
            ".mcp_inbox_state.corrupt-1700000000"
        );
        assert_eq!(
            set_aside_name(".mcp_inbox_state", 1_700_000_000, 2),
            ".mcp_inbox_state.corrupt-1700000000-2"
        );
    }
}
