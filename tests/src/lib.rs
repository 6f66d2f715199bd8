//! Test support for molecule-mcp, shared by the integration tests and `molecule-mcp demo`:
//!
//! * [`stub`] — [`PlatformStub`], a loopback fake of the Molecule platform (M1 contract);
//! * [`http`] — [`http::TestClient`], a tiny HTTP client for asserting on raw responses;
//! * [`process`] — [`process::McpProcess`], the real binary driven over stdio;
//! * [`temp_dir`] — [`temp_dir::TempDir`], a private state directory removed on drop;
//! * [`measure`] — `/proc/<pid>/status` fields and percentiles for the reports.

pub mod http;
pub mod measure;
pub mod process;
pub mod stub;
pub mod temp_dir;

pub use stub::{
    Action, InboundMessage, JournalEntry, PlatformStub, Script, StubOptions, WorkspaceSpec,
};
