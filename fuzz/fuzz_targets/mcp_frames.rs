#![no_main]
//! Framing and request handling of the MCP stdio server; see `molecule_mcp_cli::mcp::fuzz`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molecule_mcp_cli::mcp::fuzz::frames_case(data));
