//! Test support for the core: the harnesses, op-script runners and invariant checks shared
//! by the unit and property tests, the golden and corpus-replay tests in `tests/tests/`, and
//! the cargo-fuzz targets in `fuzz/fuzz_targets/`. Compiled only for the core's own tests
//! and with the `testing` feature, so it is never part of the `molecule-mcp` binary.
//!
//! | file | concept |
//! |---|---|
//! | `session.rs` | [`session::Harness`] over a [`Session`](crate::Session) on simulated time, the op language and [`session::session_ops_case`] (fuzz target `session_ops`) |
//! | `config.rs` | [`config::config_validate_case`]: config validation never panics or leaks a token (fuzz target `config_validate`) |
//! | `inbox.rs` | [`inbox::FakeFeed`], the inbox op runner and [`inbox::inbox_ops_case`] (fuzz target `inbox_ops`) |
//!
//! A violated invariant is a `panic!`: that panic is the oracle for proptest and libFuzzer.

pub mod config;
pub mod inbox;
pub mod session;

use std::sync::OnceLock;
use std::time::Instant;

use crate::platform_url::PlatformUrl;

/// The fake platform of every harness.
pub const PLATFORM: &str = "https://test.moleculesai.app";

/// The origin of simulated time: one real `Instant`, read once per process.
// Test-only: the core never reads a clock, but an `Instant` can only be obtained from one.
// Every harness shares this origin, so replays produce identical `Instant`s.
#[allow(clippy::disallowed_methods)]
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// [`PLATFORM`], parsed.
fn platform() -> PlatformUrl {
    match PlatformUrl::parse(PLATFORM) {
        Ok(p) => p,
        Err(e) => panic!("PLATFORM constant is invalid: {e}"),
    }
}
