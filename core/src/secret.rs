//! A string that must never reach a log line or a `Debug` dump: bearer tokens and the
//! platform's inbound secret.
//!
//! `Debug` and `Display` print a fixed placeholder; the only way to read the value is
//! [`Secret::expose`], which makes every place that handles the raw value easy to audit.
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

    /// Replaces every occurrence of this secret in `text` with `[REDACTED]`, so text that
    /// came from the network (an error body that echoes the bearer) can be logged safely.
    pub fn redact_in(&self, text: &str) -> String {
        // Very short values would redact ordinary words; real tokens are 43 chars.
        if self.0.len() < 4 {
            return text.to_owned();
        }
        text.replace(&*self.0, "[REDACTED]")
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
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("super-secret-token-value");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{:?}", Some(&s)).contains("super"));
    }

    #[test]
    fn redact_in_replaces_every_occurrence() {
        let s = Secret::new("abcdef");
        assert_eq!(
            s.redact_in("x abcdef y abcdef"),
            "x [REDACTED] y [REDACTED]"
        );
    }
}
