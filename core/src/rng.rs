//! The one pseudo-random generator of the program: jitter in the core's state machines, and
//! the tools' random ids (A2A message ids, idempotency nonces, multipart boundaries).
//!
//! **Not cryptographic.** SplitMix64 is tiny, fast and statistically fine, and its output is
//! a function of its 64-bit seed: anyone who learns the seed can predict every value. That
//! is enough for what it is used for, which needs values that are unique and spread out,
//! never secret: jitter, ids that must not collide, boundaries that must not occur in a
//! file. Never use it for key material or tokens.
//!
//! Seeding: the core never reads OS entropy (the same seed and the same inputs give the
//! same action trace, which the tests rely on); the driver seeds it, in this program from
//! `molecule_mcp_io_tokio::entropy::os_seed`.

/// SplitMix64 (see the module docs: not for cryptography).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (returns 0 when `bound` is 0, without advancing).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// `16 × n_words` lower-case hex characters (one `next_u64` per 16).
    pub fn hex(&mut self, n_words: usize) -> String {
        (0..n_words)
            .map(|_| format!("{:016x}", self.next_u64()))
            .collect()
    }

    /// A random (version 4, RFC 4122 variant) UUID, lower-case, in the form
    /// [`crate::ids::normalize_uuid`] accepts.
    pub fn uuid_v4(&mut self) -> String {
        let hi = (self.next_u64() & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let lo = (self.next_u64() & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::normalize_uuid;

    #[test]
    fn v4_uuids_are_valid_distinct_and_versioned() {
        let mut rng = Rng::new(42);
        let a = rng.uuid_v4();
        let b = rng.uuid_v4();
        assert_ne!(a, b);
        assert_eq!(normalize_uuid(&a).as_deref(), Some(a.as_str()));
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn random_hex_has_requested_length() {
        let mut rng = Rng::new(7);
        let h = rng.hex(2);
        assert_eq!(h.len(), 32);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(h, rng.hex(2));
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(a.below(0), 0);
        assert_eq!(a.next_u64(), b.next_u64(), "below(0) does not advance");
    }
}
