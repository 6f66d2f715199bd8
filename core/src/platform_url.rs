//! `PLATFORM_URL`, normalised once: trimmed, trailing `/` removed, scheme http(s), a host
//! that is a plain ASCII DNS name (letters, digits, `-`, dot-separated labels of 1–63
//! characters), an IPv4 address or a bracketed IPv6 address, an optional numeric port, no
//! credentials, query or fragment. Every tool and machine uses this one value, so a request
//! can never go to a differently spelled host.
//!
//! A host with other characters is refused rather than guessed at: an internationalised
//! name must be given in its ASCII (`xn--…`) form, so the host that is connected to is
//! exactly the one the operator reads in the configuration.
//!
//! Every request URL is `base + path`, and `Origin` is `scheme://authority` (never a path or
//! a trailing slash: the platform's CORS layer answers 403 to anything else).

use std::sync::Arc;

/// A validated platform base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformUrl {
    // Shared: every machine of every workspace holds a copy (sessions, inboxes, their
    // request builders), and a clone must not cost two allocations per copy.
    base: Arc<str>,
    origin: Arc<str>,
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
        check_authority(authority)?;
        let authority = authority.to_ascii_lowercase();
        Ok(PlatformUrl {
            base: Arc::from(format!("{scheme}://{authority}{path}")),
            origin: Arc::from(format!("{scheme}://{authority}")),
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

    /// The host, without port or IPv6 brackets (lower case).
    pub fn host(&self) -> &str {
        let authority = self
            .origin
            .split_once("://")
            .map_or(&*self.origin, |(_, a)| a);
        split_host_port(authority).0
    }

    /// `http://` to a host other than this machine: the token would cross the network in
    /// clear text (a configuration warning, not an error: a private network may be meant).
    pub fn is_plain_http_to_remote(&self) -> bool {
        self.origin.starts_with("http://") && !self.is_loopback()
    }

    /// The host is this machine (`localhost`, `127.0.0.0/8` or `::1`).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host.ends_with(".localhost")
            || host == "::1"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `host[:port]` → (`host` without IPv6 brackets, port text).
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// The host rules of the module docs. Linear in the length of `authority`.
fn check_authority(authority: &str) -> Result<(), PlatformUrlError> {
    let bracketed = authority.starts_with('[');
    let (host, port) = split_host_port(authority);
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65_535).contains(&p));
        if !valid {
            return Err(PlatformUrlError::Malformed(
                "has a port that is not a number from 1 to 65535",
            ));
        }
    }
    if host.is_empty() {
        return Err(PlatformUrlError::MissingHost);
    }
    if bracketed {
        return match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(PlatformUrlError::Malformed(
                "has a bracketed host that is not an IPv6 address",
            )),
        };
    }
    if !host.is_ascii() {
        return Err(PlatformUrlError::Malformed(
            "has a non-ASCII host: write an internationalised name in its ASCII form (xn--…)",
        ));
    }
    let labels_ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err(PlatformUrlError::Malformed(
            "has a host that is not a valid DNS name or IP address",
        ));
    }
    Ok(())
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

    #[test]
    fn hosts_must_be_plain_ascii_names_or_addresses() {
        for good in [
            "https://platform.example.com",
            "http://localhost:8080",
            "http://127.0.0.1:1",
            "https://[::1]:8443/api",
            "https://xn--bcher-kva.example",
            "https://a-b.c0",
        ] {
            assert!(PlatformUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "https://bücher.example",
            "https://exa_mple.com",
            "https://a..b",
            "https://-a.com",
            "https://host:0",
            "https://host:99999",
            "https://host:8o",
            "https://host:",
            "https://[not-ipv6]",
            "https://ex%61mple.com",
            "https://\u{ff0e}example.com",
        ] {
            assert!(PlatformUrl::parse(bad).is_err(), "{bad}");
        }
        let long = format!("https://{}.com", "a".repeat(64));
        assert!(PlatformUrl::parse(&long).is_err());
    }

    #[test]
    fn plain_http_is_flagged_only_for_remote_hosts() {
        let flag = |u: &str| PlatformUrl::parse(u).expect(u).is_plain_http_to_remote();
        assert!(flag("http://platform.example.com"));
        assert!(flag("http://10.0.0.5:8080"));
        assert!(!flag("https://platform.example.com"));
        assert!(!flag("http://localhost:8080"));
        assert!(!flag("http://127.0.0.2"));
        assert!(!flag("http://[::1]:80"));
        assert_eq!(
            PlatformUrl::parse("http://[::1]:80").expect("v6").host(),
            "::1"
        );
    }
}
