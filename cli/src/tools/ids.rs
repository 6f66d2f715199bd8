//! Random ids for the tools (message ids, nonces, multipart boundaries).
//!
//! Randomness comes from std's `RandomState` (SipHash keyed from OS entropy once per thread)
//! mixed with a process-wide counter and the wall clock. That is unpredictable enough for
//! A2A message ids, idempotency nonces and multipart boundaries, which need uniqueness and
//! unguessability, not cryptographic key material; it avoids a new dependency.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// 64 unpredictable bits.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// `16 × n_words` lower-case hex characters of randomness.
pub fn random_hex(n_words: usize) -> String {
    (0..n_words)
        .map(|_| format!("{:016x}", random_u64()))
        .collect()
}

/// A random (version 4, RFC 4122 variant) UUID, lower-case.
pub fn new_uuid_v4() -> String {
    let hi = (random_u64() & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (random_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let h = format!("{hi:016x}{lo:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_uuids_are_valid_distinct_and_versioned() {
        let a = new_uuid_v4();
        let b = new_uuid_v4();
        assert_ne!(a, b);
        assert_eq!(
            molecule_mcp_core::ids::normalize_uuid(&a).as_deref(),
            Some(a.as_str())
        );
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn random_hex_has_requested_length() {
        let h = random_hex(2);
        assert_eq!(h.len(), 32);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(h, random_hex(2));
    }
}
