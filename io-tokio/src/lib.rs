//! Tokio/hyper driver for `molecule-mcp-core` (in progress).
