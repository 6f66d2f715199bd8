//! The 12 platform tools as plain async functions over a [`ToolContext`].
//!
//! This module knows nothing about MCP framing: [`catalog::tool_defs`] describes the tools
//! (name, description, JSON Schemas, annotations) in the reference's `tools/list` order, and
//! [`catalog::call_tool`] runs one and returns a [`ToolResult`]. The MCP layer maps
//! `ToolResult::Error` to `isError: true`, `ToolResult::Json` to `structuredContent` plus a
//! text copy (only for objects: MCP requires `structuredContent` to be an object, so arrays
//! are rendered as text only), and `ToolResult::Text` to one text block.
//!
//! | file | concept |
//! |---|---|
//! | `context.rs` | [`ToolContext`]: workspaces + tokens, peer cache, settings, inbox handle, the random-id generator |
//! | `client.rs` | the one request builder every tool uses (auth, `Origin`, `X-Workspace-ID`, timeouts) |
//! | `args.rs` | argument extraction and workspace-id routing (UUID + registered-only; the UUID rule is `molecule_mcp_core::ids`) |
//! | `a2a.rs` | A2A `message/send`: retry policy and the response interpretation table |
//! | `delegation.rs` | `delegate_task`, `delegate_task_async`, `check_task_status` |
//! | `peers.rs` | `list_peers` and registry discovery |
//! | `workspace_info.rs` | `get_workspace_info` |
//! | `messaging.rs` | `send_message_to_user` with attachments (MIME sniffing, multipart) |
//! | `inbox.rs` | `wait_for_message`, `inbox_peek`, `inbox_pop` over [`InboxAccess`] |
//! | `chat_history.rs` | `chat_history` |
//! | `memory.rs` | `commit_memory`, `recall_memory`, RBAC and tier checks |
//! | `catalog.rs` | tool definitions and the dispatcher |
//!
//! Reference defects fixed here (numbers from reference-behaviour §8): 21 (queued A2A
//! answers are deliveries), 22 (stable message ids, retry only when undelivered, hard
//! deadline), 23 (idempotent-hit 200 accepted, per-call nonce in the idempotency key), 24
//! (`error` read from delegation rows, full result preferred), 25 (`check_task_status`
//! routing), 26 (no self-reported `a2a_receive` rows, no fake heartbeat), 27 (workspace ids
//! validated and restricted to registered workspaces; no fallback token), 28 (attachment
//! hardening), 29 (peer names sanitised everywhere), 30 (invalid `scope` rejected; the
//! `list_peers` 404 names the queried workspace), 32 (one normalised platform URL).
//!
//! RBAC roles come from `config.yaml` in the reference; this runtime does not read
//! `config.yaml`: every workspace has the `operator` role and the tier comes from
//! `WORKSPACE_TIER` (default 1).

pub mod a2a;
mod args;
pub mod catalog;
pub mod chat_history;
pub mod client;
pub mod context;
pub mod delegation;
pub mod inbox;
pub mod memory;
pub mod messaging;
pub mod peers;
pub mod workspace_info;

pub use catalog::{ToolDef, call_tool, tool_defs};
pub use client::{BoxFuture, PlatformTransport};
pub use context::{
    InboxAccess, PeerCache, PeerInfo, Rbac, ToolContext, ToolSettings, WorkspaceRegistry,
};

/// What a tool call produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolResult {
    /// Plain text for the model.
    Text(String),
    /// A JSON value. Objects become `structuredContent` (plus a text copy); other values are
    /// sent as text only.
    Json(serde_json::Value),
    /// A tool failure with a readable explanation (`isError: true`).
    Error(String),
}

impl ToolResult {
    /// The text an MCP text block should carry: the string itself, or the JSON pretty-printed
    /// with two-space indentation.
    pub fn to_text(&self) -> String {
        match self {
            ToolResult::Text(s) | ToolResult::Error(s) => s.clone(),
            ToolResult::Json(v) => {
                serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
            }
        }
    }

    /// True for [`ToolResult::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, ToolResult::Error(_))
    }

    /// Shorthand for an error result.
    pub(crate) fn error(text: impl Into<String>) -> Self {
        ToolResult::Error(text.into())
    }
}
