//! The MCP server: JSON-RPC 2.0 over newline-delimited stdio, hand-rolled, serving both
//! protocol eras (legacy `initialize` handshake 2024-11-05…2025-11-25 and the stateless
//! 2026-07-28 revision) on the same process.
//!
//! | file | concept |
//! |---|---|
//! | `framing.rs` | [`LineFramer`]: bytes → lines, bounded memory, UTF-8-safe splitting (sans-io) |
//! | `jsonrpc.rs` | message classification, ids, error codes and response lines |
//! | `protocol.rs` | [`Protocol`]: the method table and the dual-era rules (sans-io) |
//! | `handler.rs` | what the application plugs in: [`ToolHandler`], [`ToolSpec`], [`ToolOutput`], [`ServerIdentity`] |
//! | `server.rs` | [`serve`]: reader loop, concurrent tool tasks, cancellation, the single writer |
//! | `tasks.rs` | the task store of 2025-11-25 task-augmented `tools/call` (`tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`) |
//! | `fuzz.rs` | `fuzz::frames_case`, the body of the `mcp_frames` fuzz target (cargo feature `fuzzing` only) |
//!
//! What this layer guarantees: requests run concurrently, `ping` never waits for a tool,
//! cancellation is honoured and one writer owns stdout; bad input gets a JSON-RPC error or
//! an `isError` result and never kills the server; `ping` is answered in every state,
//! notifications never are, an unparsable line is `-32700` and an invalid request `-32600`,
//! the protocol version is negotiated, a failing tool is an `isError` result and an unknown
//! tool is `-32602`; input bytes are split on `\n` and decoded line by line, and a final
//! line without `\n` is still processed.

pub mod framing;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
pub mod handler;
pub mod jsonrpc;
pub mod protocol;
pub mod server;
mod tasks;

pub use framing::{DEFAULT_MAX_LINE, Frame, LineFramer};
pub use handler::{CallEnv, ServerIdentity, Stage, ToolFuture, ToolHandler, ToolOutput, ToolSpec};
pub use protocol::{
    Batch, CHANNEL_NOTIFICATION, Outcome, PROGRESS_NOTIFICATION, Progress, Protocol,
};
pub use server::{ServeConfig, ServeEnd, push_notification, serve, serve_with};
