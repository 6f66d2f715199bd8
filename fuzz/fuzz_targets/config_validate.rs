#![no_main]
//! Config validation never panics and never leaks a token: see `molecule_mcp_core::testing::config`.

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| molecule_mcp_core::testing::config::config_validate_case(data)
);
