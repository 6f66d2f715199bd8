#![no_main]
//! Config validation never panics and never leaks a token: see `molecule_mcp_core::config_fuzz`.

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| molecule_mcp_core::config_fuzz::config_validate_case(data)
);
