//! Identifier helpers: UUID validation (every workspace, peer and source id goes through
//! [`normalize_uuid`] before it reaches a URL path) and random ids.
//!
//! Randomness comes from std's `RandomState` (SipHash keyed from OS entropy once per thread)
//! mixed with a process-wide counter and the wall clock. That is unpredictable enough for
//! A2A message ids, idempotency nonces and multipart boundaries, which need uniqueness and
//! unguessability, not cryptographic key material; it avoids a new dependency.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Trims and validates a canonical 8-4-4-4-12 hex UUID; returns it lower-cased.
pub fn normalize_uuid(raw: &str) -> Option<String> {
    let s = raw.trim();
    if s.len() != 36 {
        return None;
    }
    let ok = s.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    ok.then(|| s.to_ascii_lowercase())
}

/// The first 8 characters of an id (for `via:` tags and fallback names).
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

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
    fn normalize_accepts_canonical_uuids_and_lowercases() {
        assert_eq!(
            normalize_uuid("  8F1D2C3B-0000-4AAA-8BBB-0123456789AB \n").as_deref(),
            Some("8f1d2c3b-0000-4aaa-8bbb-0123456789ab")
        );
    }

    #[test]
    fn normalize_rejects_everything_else() {
        for bad in [
            "",
            "not-a-uuid",
            "8f1d2c3b00004aaa8bbb0123456789ab",
            "8f1d2c3b-0000-4aaa-8bbb-0123456789a",
            "8f1d2c3b-0000-4aaa-8bbb-0123456789abc",
            "8f1d2c3b-0000-4aaa-8bbb_0123456789ab",
            "8f1d2c3g-0000-4aaa-8bbb-0123456789ab",
            "../../etc/passwd/aaaaaaaaaaaaaaaaaaaa",
            "8f1d2c3b-0000-4aaa-8bbb-0123456789a/",
            "ﬀ1d2c3b-0000-4aaa-8bbb-0123456789ab",
        ] {
            assert_eq!(normalize_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn v4_uuids_are_valid_distinct_and_versioned() {
        let a = new_uuid_v4();
        let b = new_uuid_v4();
        assert_ne!(a, b);
        assert_eq!(normalize_uuid(&a).as_deref(), Some(a.as_str()));
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

    #[test]
    fn short_id_handles_short_input() {
        assert_eq!(short_id("abcdefghij"), "abcdefgh");
        assert_eq!(short_id("abc"), "abc");
    }
}
