//! Test support for molecule-mcp, shared by the integration tests, the bench and the soak:
//!
//! * [`blocking_driver`] — the core's fleet run on std threads, without an async runtime;
//! * [`stub`] — [`PlatformStub`], the loopback fake of the Molecule platform: the
//!   `molecule-mcp-stub` package, re-exported so tests name it `molecule_mcp_tests::stub`;
//! * [`http`] — [`http::TestClient`], a tiny HTTP client for asserting on raw responses;
//! * [`process`] — [`process::McpProcess`], the real binary driven over stdio (the demo's
//!   driver from `molecule-mcp-cli`, plus the test-only extras);
//! * [`temp_dir`] — [`temp_dir::TempDir`], a private state directory removed on drop (the
//!   demo's, re-exported);
//! * [`measure`] — `/proc/<pid>/status` fields and percentiles for the reports.

pub mod blocking_driver;
pub mod http;
pub mod measure;
pub mod process;

pub use molecule_mcp_cli::demo::temp_dir;
pub use molecule_mcp_stub as stub;

pub use stub::{
    Action, InboundMessage, JournalEntry, PlatformStub, Script, StubOptions, WorkspaceSpec,
};
