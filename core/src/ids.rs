//! Identifier rules: which strings are workspace, peer and activity UUIDs, and the short
//! form shown next to them.
//!
//! Every id that ends up in a URL path, a state-file name, a log line or the model's context
//! goes through [`normalize_uuid`] first: the configuration (`WORKSPACE_ID`,
//! `MOLECULE_WORKSPACES`), the tools' arguments and routing, the workspace registry and the
//! inbox's push payload all use this one rule, so an id accepted in one place is accepted
//! everywhere. Random ids (A2A message ids) come from [`crate::rng::Rng::uuid_v4`].

/// Length of a canonical UUID in bytes (`8-4-4-4-12` hex digits and four dashes).
const UUID_LEN: usize = 36;

/// Byte offsets of the dashes in a canonical UUID.
const DASHES: [usize; 4] = [8, 13, 18, 23];

/// `raw` trimmed and lower-cased if it is a canonical `8-4-4-4-12` hex UUID (any case),
/// else `None`.
///
/// Any version is accepted, the nil UUID included: the platform is the authority on which
/// ids exist; this only catches typos, swapped variables and path tricks (`../`) before the
/// value reaches a URL or a file name.
pub fn normalize_uuid(raw: &str) -> Option<String> {
    let s = raw.trim();
    let ok = s.len() == UUID_LEN
        && s.char_indices().all(|(i, c)| {
            if DASHES.contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then(|| s.to_ascii_lowercase())
}

/// True when `s` is already exactly what [`normalize_uuid`] returns (lower-case, nothing to
/// trim). For ids that are echoed verbatim, such as activity ids: rewriting one would break
/// the match with the platform's row, so a value that is not already canonical is dropped.
pub fn is_normalized_uuid(s: &str) -> bool {
    normalize_uuid(s).is_some_and(|n| n == s)
}

/// The first 8 characters of an id (for `via:` tags and fallback names).
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
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
    fn uuids_are_checked_and_lower_cased() {
        assert_eq!(
            normalize_uuid(" 0A1B2C3D-0000-4000-8000-ABCDEFabcdef\n").as_deref(),
            Some("0a1b2c3d-0000-4000-8000-abcdefabcdef")
        );
        for bad in [
            "",
            "0a1b2c3d",
            "0a1b2c3d-0000-4000-8000-abcdefabcde",
            "0a1b2c3d-0000-4000-8000-abcdefabcdeg",
            "0a1b2c3d00004000-8000-abcdefabcdef",
            "{0a1b2c3d-0000-4000-8000-abcdefabcdef}",
            "0a1b2c3d-0000-4000-8000-abcdef-bcdef",
            "+a1b2c3d-0000-4000-8000-abcdefabcdef",
        ] {
            assert_eq!(normalize_uuid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn uuid_rules() {
        let u = "0f0e0d0c-0b0a-4908-8706-050403020100";
        assert_eq!(
            normalize_uuid(&format!("  {}  ", u.to_uppercase())).as_deref(),
            Some(u)
        );
        assert!(is_normalized_uuid(u));
        assert!(!is_normalized_uuid(&u.to_uppercase()));
        assert!(normalize_uuid("0f0e0d0c0b0a490887060504030201000000").is_none());
        assert!(normalize_uuid("zf0e0d0c-0b0a-4908-8706-050403020100").is_none());
    }

    /// The split-on-dashes rule `config.rs` used before this module existed accepts exactly
    /// the same strings (checked on every 36-byte string over a small alphabet that covers
    /// each position's cases).
    #[test]
    fn same_as_the_group_length_rule() {
        fn by_groups(value: &str) -> Option<String> {
            let value = value.trim();
            let groups: Vec<&str> = value.split('-').collect();
            let lengths_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
            let hex_ok = groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
            (lengths_ok && hex_ok).then(|| value.to_ascii_lowercase())
        }
        let base: Vec<char> = "0a1b2c3d-0000-4000-8000-abcdefABCDEF".chars().collect();
        for pos in 0..base.len() {
            for c in ['-', 'g', 'F', '0', ' ', 'é', '/'] {
                let mut v = base.clone();
                v[pos] = c;
                let s: String = v.iter().collect();
                assert_eq!(normalize_uuid(&s), by_groups(&s), "{s:?}");
                let padded = format!(" {s}\t");
                assert_eq!(normalize_uuid(&padded), by_groups(&padded), "{padded:?}");
            }
        }
    }

    #[test]
    fn short_id_handles_short_input() {
        assert_eq!(short_id("abcdefghij"), "abcdefgh");
        assert_eq!(short_id("abc"), "abc");
    }
}
