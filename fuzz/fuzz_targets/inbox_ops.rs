#![no_main]
//! Random scripts of feed rows, poll answers and failures, state writes, uploads, pops,
//! waits, crashes and time steps against one inbox, every invariant checked after each op,
//! then replayed for determinism: see `molecule_mcp_core::testing::inbox::inbox_ops_case`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| molecule_mcp_core::testing::inbox::inbox_ops_case(data));
