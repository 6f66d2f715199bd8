//! `PLATFORM_URL`, normalised once (reference defect 32): trimmed, trailing `/` removed,
//! scheme http(s), non-empty host, no credentials, query or fragment.
//!
//! Every request URL is `base + path`, and `Origin` is `scheme://authority` (never a path or
//! a trailing slash: the platform's CORS layer answers 403 to anything else).

/// A validated platform base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformUrl {
    base: String,
    origin: String,
}

/// Why a `PLATFORM_URL` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformUrlError {
    /// Blank after trimming.
    Blank,
    /// Not `http://` or `https://`.
    BadScheme,
    /// No host after the scheme.
    MissingHost,
    /// Contains `user:pass@`, whitespace, a query or a fragment.
    Malformed(&'static str),
}

impl std::fmt::Display for PlatformUrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlatformUrlError::Blank => f.write_str("is empty"),
            PlatformUrlError::BadScheme => f.write_str("must start with http:// or https://"),
            PlatformUrlError::MissingHost => f.write_str("has no host"),
            PlatformUrlError::Malformed(why) => f.write_str(why),
        }
    }
}

impl PlatformUrl {
    /// Validates and normalises a raw `PLATFORM_URL`.
    pub fn parse(raw: &str) -> Result<Self, PlatformUrlError> {
        let trimmed = raw.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(PlatformUrlError::Blank);
        }
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((s, r)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
                (s.to_ascii_lowercase(), r)
            }
            Some(_) | None => return Err(PlatformUrlError::BadScheme),
        };
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PlatformUrlError::Malformed("must not contain whitespace"));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(PlatformUrlError::Malformed(
                "must not contain a query or fragment",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.starts_with(':') {
            return Err(PlatformUrlError::MissingHost);
        }
        if authority.contains('@') {
            return Err(PlatformUrlError::Malformed(
                "must not contain credentials (user@host)",
            ));
        }
        let authority = authority.to_ascii_lowercase();
        Ok(PlatformUrl {
            base: format!("{scheme}://{authority}{path}"),
            origin: format!("{scheme}://{authority}"),
        })
    }

    /// Normalised base URL, no trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `scheme://host[:port]`, the value for the `Origin` header.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// `base + path`; `path` must start with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_trailing_slashes_and_whitespace() {
        let u = PlatformUrl::parse("  https://Test.Example.com///  ").unwrap();
        assert_eq!(u.base(), "https://test.example.com");
        assert_eq!(u.origin(), "https://test.example.com");
        assert_eq!(
            u.join("/registry/register"),
            "https://test.example.com/registry/register"
        );
    }

    #[test]
    fn keeps_path_in_base_but_not_in_origin() {
        let u = PlatformUrl::parse("http://localhost:8080/api/").unwrap();
        assert_eq!(u.base(), "http://localhost:8080/api");
        assert_eq!(u.origin(), "http://localhost:8080");
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(PlatformUrl::parse("   "), Err(PlatformUrlError::Blank));
        assert_eq!(
            PlatformUrl::parse("ftp://x"),
            Err(PlatformUrlError::BadScheme)
        );
        assert_eq!(
            PlatformUrl::parse("localhost:8080"),
            Err(PlatformUrlError::BadScheme)
        );
        assert!(PlatformUrl::parse("https://").is_err());
        assert_eq!(
            PlatformUrl::parse("https://:80"),
            Err(PlatformUrlError::MissingHost)
        );
        assert!(PlatformUrl::parse("https://u:p@host").is_err());
        assert!(PlatformUrl::parse("https://host/?q=1").is_err());
        assert!(PlatformUrl::parse("https://ho st").is_err());
    }
}
