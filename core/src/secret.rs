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
}
