//! The `molecule-mcp` binary's code, as a library so tests, fuzz targets and benchmarks can
//! reach every part. `main.rs` only dispatches on the command line.
//!
//! | file / folder | concept |
//! |---|---|
//! | `args.rs` | the command line (clap) |
//! | `serve.rs` | `molecule-mcp` itself: start-up order, session driver, exit codes |
//! | `app.rs` | the running app: tool context, inbox driver, MCP server, push path |
//! | `instructions.rs` | the `initialize` instructions text |
//! | `stdio.rs` | the standard streams: refuses files, opens pipes non-blocking for MCP |
//! | `env_snapshot.rs` | environment + token files → the core's config input |
//! | `runtime.rs` | tokio runtime, signals, prompt exit |
//! | `doctor.rs` | `molecule-mcp doctor` |
//! | `demo/` | `molecule-mcp demo` against the built-in platform stub (cargo feature `demo`) |
//! | `mcp/` | the MCP protocol over stdio (framing, JSON-RPC, dual-era rules, serve loop) |
//! | `tools/` | the 12 platform tools as plain async functions |

pub mod app;
pub mod args;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(not(feature = "demo"))]
pub mod demo {
    //! This build has no demo: it was made without the `demo` cargo feature, so the
    //! loopback platform stub is not linked in.

    use std::process::ExitCode;

    /// Says that this build has no demo and how to get one; exit code 2.
    pub fn run() -> ExitCode {
        crate::serve::print_fatal(
            "molecule-mcp demo: this build has no demo (it was built without the `demo` \
             cargo feature, so the platform stub is not linked in). Build with default \
             features, e.g. `cargo run -p molecule-mcp-cli -- demo`.",
        );
        ExitCode::from(2)
    }
}
pub mod doctor;
pub mod env_snapshot;
pub mod instructions;
pub mod mcp;
pub mod runtime;
pub mod serve;
pub mod stdio;
pub mod tools;
