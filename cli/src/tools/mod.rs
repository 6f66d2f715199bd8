//! The 12 platform tools as plain async functions over a [`ToolContext`].
//!
//! [`Tool`] is the closed list of tools: `Tool::ALL` in `tools/list` order,
//! [`Tool::from_name`], [`Tool::spec`] (name, description, JSON Schemas, annotations, as a
//! [`ToolSpec`](crate::mcp::ToolSpec)) and [`Tool::call`], which returns a
//! [`ToolOutput`](crate::mcp::ToolOutput). Those two types are the MCP layer's own, so
//! nothing converts between the tools and the server. The MCP layer maps
//! `ToolOutput::Error` to `isError: true`, `ToolOutput::Json` to `structuredContent` plus a
//! text copy (only for objects: MCP requires `structuredContent` to be an object, so arrays
//! are rendered as text only), and `ToolOutput::Text` to one text block.
//!
//! | file | concept |
//! |---|---|
//! | `catalog.rs` | [`Tool`]: the 12 tools, their specs and the dispatcher |
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
//!
//! Redaction of memory content, display-name sanitising, UUID rules, retry policies and
//! random ids come from the core (`molecule_mcp_core::{redact, sanitize, ids, retry, rng}`).
//!
//! What the tools guarantee, beyond calling the platform:
//!
//! * a peer that queues an A2A message (poll-mode or busy) has received it: the tool says so
//!   and the reply arrives in the inbox;
//! * A2A retries reuse the message id, happen only when the request provably did not reach
//!   the peer, and stop at one hard deadline;
//! * `delegate_task_async` accepts the platform's idempotent-hit 200 and uses a fresh
//!   idempotency key per call;
//! * `check_task_status` reads `error` from delegation rows, prefers the full result, and
//!   asks the workspace that started the delegation;
//! * no `a2a_receive` activity rows are reported for our own sends (they would come back
//!   into our own inbox);
//! * workspace ids are UUIDs and source workspaces must be configured ones: there is no
//!   fallback token;
//! * attachments are regular files outside the state directory, at most 25 MB each;
//! * peer names and roles are sanitised on every path into the model's context;
//! * an invalid memory `scope` is an error, and the `list_peers` 404 names the workspace
//!   that was queried;
//! * every URL is built from the one normalised `PLATFORM_URL`.
//!
//! RBAC: this runtime does not read a `config.yaml`, so every workspace has the `operator`
//! role, and the tier comes from `WORKSPACE_TIER` (default 1).

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

pub use catalog::{Tool, call_tool, tool_defs};
pub use client::{BoxFuture, PlatformTransport};
pub use context::{
    InboxAccess, PeerCache, PeerInfo, PopOutcome, Rbac, ToolContext, ToolSettings,
    WorkspaceRegistry,
};
