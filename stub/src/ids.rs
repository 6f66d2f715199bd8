//! Random identifiers the stub hands out: bearer tokens, inbound secrets and UUIDs.
//!
//! No crypto crate: a stub only needs values that are unpredictable enough not to collide
//! across runs and that have the exact *shape* of the real ones (43-char base64url tokens,
//! lower-case v4 UUIDs). `RandomState` is seeded from the OS once per process, so hashing a
//! counter with it gives a cheap, well-mixed stream.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Counter-hashing PRNG; see the module docs for why this is enough.
pub(crate) struct Rng {
    keys: RandomState,
    counter: u64,
}

impl Rng {
    pub(crate) fn new() -> Rng {
        Rng {
            keys: RandomState::new(),
            counter: 0,
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        self.counter = self.counter.wrapping_add(1);
        h.finish()
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            for (dst, src) in chunk.iter_mut().zip(word.iter()) {
                *dst = *src;
            }
        }
    }

    /// 32 random bytes, base64url without padding: the platform's token/secret format (43 chars).
    pub(crate) fn token(&mut self) -> String {
        let mut raw = [0u8; 32];
        self.fill(&mut raw);
        base64url(&raw)
    }

    /// A random (version 4) UUID in canonical lower-case form.
    pub(crate) fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            hex.get(0..8).unwrap_or_default(),
            hex.get(8..12).unwrap_or_default(),
            hex.get(12..16).unwrap_or_default(),
            hex.get(16..20).unwrap_or_default(),
            hex.get(20..32).unwrap_or_default()
        )
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        }
    }
    out
}

/// True for a canonical 8-4-4-4-12 hex UUID (either case), which is what the platform's
/// handlers accept in paths, cursors and body fields.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_platform_shape_and_differ() {
        let mut rng = Rng::new();
        let a = rng.token();
        let b = rng.token();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn uuids_are_v4_and_valid() {
        let mut rng = Rng::new();
        let u = rng.uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        assert_ne!(u, rng.uuid());
    }

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn is_uuid_rejects_near_misses() {
        assert!(is_uuid("123e4567-E89B-12d3-a456-426614174000"));
        assert!(!is_uuid("123e4567e89b12d3a456426614174000"));
        assert!(!is_uuid("123e4567-e89b-12d3-a456-42661417400g"));
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid(""));
    }
}
