#![no_main]
//! Random op scripts against one session, every contract invariant checked after each op,
//! then replayed for determinism: see `molecule_mcp_core::testing::session::session_ops_case`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molecule_mcp_core::testing::session::session_ops_case(data));
