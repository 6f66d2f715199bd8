//! The one place the program reads operating-system randomness.
//!
//! Everything random is drawn from a seeded [`molecule_mcp_core::rng::Rng`] (not
//! cryptographic; see its docs); this module only provides the seeds, so that two
//! processes started together (a fleet of agents) get different jitter and different ids.
//!
//! Source: `/dev/urandom`. Where it cannot be read (exotic platforms, a sandbox without
//! `/dev`), std's `RandomState` (SipHash keys drawn from the OS once per thread) mixed with
//! a process-wide counter, the wall clock and the process id: not as good, but still
//! different per process and per call.

use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

/// Fills `buf` with OS randomness (see the module docs for the fallback).
pub fn fill_os_random(buf: &mut [u8]) {
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok();
    if !from_os {
        for chunk in buf.chunks_mut(8) {
            let bytes = fallback_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A 64-bit seed for [`molecule_mcp_core::rng::Rng`] from OS randomness.
pub fn os_seed() -> u64 {
    let mut bytes = [0u8; 8];
    fill_os_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// 64 bits from `RandomState`, a counter, the clock and the pid.
fn fallback_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ() {
        assert_ne!(os_seed(), os_seed());
    }

    #[test]
    fn fills_odd_lengths_and_the_fallback_differs_per_call() {
        let mut a = [0u8; 13];
        let mut b = [0u8; 13];
        fill_os_random(&mut a);
        fill_os_random(&mut b);
        assert_ne!(a, b);
        assert_ne!(fallback_u64(), fallback_u64());
    }
}
