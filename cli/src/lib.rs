//! Library half of the `molecule-mcp` binary (MCP protocol, tools), so fuzz targets and
//! tests can reach it.

pub mod mcp;
pub mod tools;
