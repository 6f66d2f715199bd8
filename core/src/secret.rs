//! A string that must never reach a log line or a `Debug` dump: bearer tokens and the
//! platform's inbound secret.
//!
//! `Debug` and `Display` print a fixed placeholder; the only way to read the value is
//! [`Secret::expose`], which makes every place that handles the raw value easy to audit.
//! Text that may echo a secret is cleaned with [`crate::redact::redact_known`].
//!
//! Shared (`Arc<str>`): every request carries the bearer, and cloning one must not allocate.

use std::sync::Arc;

/// A secret value (workspace token, inbound secret). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value. The caller is responsible for having trimmed it.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The raw value. Use only to build an `Authorization` header or write a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Longest bearer token accepted from the platform (real tokens are 43 characters).
pub const MAX_BEARER_LEN: usize = 4_096;

/// Why `value` cannot be used as a bearer token minted by the platform, if it cannot: it
/// must be an RFC 6750 `b64token` (`A-Z a-z 0-9 - . _ ~ + /`, then optional `=` padding) of
/// at most [`MAX_BEARER_LEN`] characters. Anything else (a CR/LF, a space, a quote) would
/// corrupt or split every later request's `Authorization` header.
pub fn bearer_token_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("it is empty");
    }
    if value.len() > MAX_BEARER_LEN {
        return Some("it is longer than 4096 characters");
    }
    let body = value.trim_end_matches('=');
    let valid = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if valid {
        None
    } else {
        Some("it contains characters a bearer token cannot have")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_be_b64tokens() {
        assert_eq!(bearer_token_problem("abc-._~+/DEF0=="), None);
        for bad in ["", "a b", "tok\r\nX-Evil: 1", "tok\"", "==", "é", "a=b"] {
            assert!(bearer_token_problem(bad).is_some(), "{bad:?}");
        }
        assert!(bearer_token_problem(&"a".repeat(MAX_BEARER_LEN + 1)).is_some());
        assert_eq!(bearer_token_problem(&"a".repeat(MAX_BEARER_LEN)), None);
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("super-secret-token-value");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{:?}", Some(&s)).contains("super"));
    }
}
