//! # molecule-mcp-io-tokio
//!
//! Runs `molecule-mcp-core` session machines on tokio: a pooled hyper client (rustls for
//! https), file persistence in the state directory, and log actions mapped to `tracing`
//! on **stderr** (stdout belongs to MCP). Everything tokio-specific lives here, so the
//! core can be driven by any other runtime with the same contract.

pub mod http_client;

pub use http_client::{HttpClient, HttpResponse};
