//! The `molecule-mcp` binary's code, as a library so tests, fuzz targets and benchmarks can
//! reach every part. `main.rs` only dispatches on the command line.
//!
//! | file / folder | concept |
//! |---|---|
//! | `args.rs` | the command line (clap) |
//! | `serve.rs` | `molecule-mcp` itself: start-up order, session driver, exit codes |
//! | `app.rs` | the running app: tool context, inbox driver, MCP server, push path |
//! | `instructions.rs` | the `initialize` instructions text |
//! | `stdio_check.rs` | refuses to run with stdin/stdout redirected to files |
//! | `env_snapshot.rs` | environment + token files → the core's config input |
//! | `runtime.rs` | tokio runtime, signals, prompt exit |
//! | `doctor.rs` | `molecule-mcp doctor` |
//! | `demo.rs` | `molecule-mcp demo` against the built-in platform stub |
//! | `mcp/` | the MCP protocol over stdio (framing, JSON-RPC, dual-era rules, serve loop) |
//! | `tools/` | the 12 platform tools as plain async functions |

pub mod app;
pub mod args;
pub mod demo;
pub mod doctor;
pub mod env_snapshot;
pub mod instructions;
pub mod mcp;
pub mod runtime;
pub mod serve;
pub mod stdio_check;
pub mod tools;
