//! How every request to the platform is built: register, heartbeats, inbox polls, upload
//! downloads and acks, and every tool call. One place decides the URL, the headers that go
//! on the wire and their order, so no request can miss one.
//!
//! On the wire every request carries, in this order ([`HttpRequest::wire_headers`]):
//!
//! 1. `Authorization: Bearer <token>` when the request has a non-empty token;
//! 2. `User-Agent: molecule-mcp/<version>` ([`USER_AGENT`]), so the platform's logs can
//!    tell this runtime's traffic (and its version) apart;
//! 3. `Origin: <scheme://host[:port]>` of the normalised `PLATFORM_URL`: SaaS tenants answer
//!    403 to a request whose `Origin` is not the platform's own;
//! 4. `Content-Type` for JSON and multipart bodies, then any request-specific header
//!    (`X-Workspace-ID` on the tool calls that name the acting workspace).
//!
//! Drivers copy `wire_headers()` onto their HTTP library's request and add nothing.

use std::time::Instant;

use crate::http::{Headers, HttpRequest, Method, RequestId, RequestKind};
use crate::platform_url::PlatformUrl;
use crate::secret::Secret;

/// The largest response body each endpoint accepts (see `docs/limits.md`): sized well above
/// what the platform sends for that endpoint, far below what would strain memory. Drivers
/// enforce them while reading ([`HttpRequest::max_response_bytes`]).
pub mod response_cap {
    /// Register and heartbeat answers: a few small JSON fields (tokens, status).
    pub const SESSION: usize = 256 * 1024;
    /// One page of `GET /workspaces/:id/activity` (inbox polls and `chat_history`): at
    /// most 500 rows (`inbox::config::MAX_PAGE_LIMIT`) of messages and their metadata.
    pub const ACTIVITY_PAGE: usize = 16 * 1024 * 1024;
    /// Any other tool call: workspace info, memories, delegations, A2A answers.
    pub const TOOL: usize = 8 * 1024 * 1024;
    /// The peer list and discovery answers: names, ids and URLs of workspaces.
    pub const PEERS: usize = 4 * 1024 * 1024;
    /// Non-2xx answers of any endpoint: only the head is kept (the error message is at
    /// the start), the rest is never read.
    pub const ERROR_BODY: usize = 64 * 1024;
}

/// `molecule-mcp/<version>`: sent on every request.
pub const USER_AGENT: &str = concat!("molecule-mcp/", env!("CARGO_PKG_VERSION"));

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (`GET`s, bodiless `POST`s such as upload acks).
    Empty,
    /// Serialised JSON (`Content-Type: application/json`).
    Json(Vec<u8>),
    /// A `multipart/form-data` body encoded with `boundary`.
    Multipart {
        /// The boundary the bytes use.
        boundary: String,
        /// The encoded body.
        bytes: Vec<u8>,
    },
}

/// Builds the requests of one platform: URLs from paths, the shared header lists built once
/// (every request clones a pointer, so a heartbeat allocates no header list).
#[derive(Debug, Clone)]
pub struct PlatformRequests {
    platform: PlatformUrl,
    plain: Headers,
    json: Headers,
}

impl PlatformRequests {
    /// The builder for `platform`.
    pub fn new(platform: PlatformUrl) -> Self {
        let origin = platform.origin().to_owned();
        PlatformRequests {
            plain: Headers::from(vec![("Origin", origin.clone())]),
            json: Headers::from(vec![
                ("Origin", origin),
                ("Content-Type", "application/json".to_owned()),
            ]),
            platform,
        }
    }

    /// A builder for `platform`: a clone of `shared` when that one targets the same
    /// platform (as every workspace of a fleet does), else a new one, kept in `shared` for
    /// the next caller. A clone shares the header lists, so 10,000 workspaces hold one set
    /// instead of two each (one for the session, one for the inbox).
    pub(crate) fn reuse(shared: &mut Option<PlatformRequests>, platform: &PlatformUrl) -> Self {
        match shared {
            Some(requests) if requests.platform == *platform => requests.clone(),
            Some(_) | None => shared
                .insert(PlatformRequests::new(platform.clone()))
                .clone(),
        }
    }

    /// The platform this builder targets.
    pub fn platform(&self) -> &PlatformUrl {
        &self.platform
    }

    /// `<PLATFORM_URL><path>` followed by `query`, each value percent-encoded.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = self.platform.join(path);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&percent_encode(value));
        }
        url
    }

    /// A complete request. `extra` headers follow the standard ones (module docs).
    #[allow(clippy::too_many_arguments)] // one call site per kind of traffic; a struct adds nothing
    pub fn build(
        &self,
        id: RequestId,
        kind: RequestKind,
        method: Method,
        url: String,
        token: &Secret,
        body: Body,
        extra: &[(&'static str, String)],
        deadline: Instant,
    ) -> HttpRequest {
        let (headers, bytes) = match body {
            Body::Empty if extra.is_empty() => (self.plain.clone(), Vec::new()),
            Body::Json(bytes) if extra.is_empty() => (self.json.clone(), bytes),
            Body::Empty => (self.with_extra(&self.plain, extra), Vec::new()),
            Body::Json(bytes) => (self.with_extra(&self.json, extra), bytes),
            Body::Multipart { boundary, bytes } => {
                let content_type = (
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                );
                let mut all = self.plain.to_vec();
                all.push(content_type);
                all.extend(extra.iter().cloned());
                (Headers::from(all), bytes)
            }
        };
        HttpRequest {
            id,
            kind,
            method,
            url,
            bearer: (!token.is_empty()).then(|| token.clone()),
            headers,
            body: bytes,
            max_response_bytes: kind.max_response_bytes(),
            deadline,
        }
    }

    fn with_extra(&self, base: &Headers, extra: &[(&'static str, String)]) -> Headers {
        let mut all = base.to_vec();
        all.extend(extra.iter().cloned());
        Headers::from(all)
    }
}

impl HttpRequest {
    /// Every header to send, in wire order (module docs): `Authorization` (from the bearer
    /// token), `User-Agent`, then the request's own headers. The `Authorization` value holds
    /// the token: drivers put it on the wire and never into a log line.
    pub fn wire_headers(&self) -> impl Iterator<Item = (&'static str, std::borrow::Cow<'_, str>)> {
        let auth = self.bearer.as_ref().filter(|t| !t.is_empty()).map(|t| {
            (
                "Authorization",
                std::borrow::Cow::Owned(format!("Bearer {}", t.expose())),
            )
        });
        auth.into_iter()
            .chain(std::iter::once((
                "User-Agent",
                std::borrow::Cow::Borrowed(USER_AGENT),
            )))
            .chain(
                self.headers
                    .iter()
                    .map(|(name, value)| (*name, std::borrow::Cow::Borrowed(value.as_str()))),
            )
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// so ids and timestamps (`+00:00`!) survive as one query value or path segment.
pub fn percent_encode(raw: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> PlatformRequests {
        PlatformRequests::new(PlatformUrl::parse("https://p.example/base/").expect("url"))
    }

    fn names(r: &HttpRequest) -> Vec<&'static str> {
        r.wire_headers().map(|(n, _)| n).collect()
    }

    #[test]
    fn every_request_has_user_agent_origin_and_auth_when_a_token_is_set() {
        let b = builder();
        #[allow(clippy::disallowed_methods)] // any origin will do: the test only adds to it
        let now = Instant::now();
        let url = b.url("/registry/heartbeat", &[]);
        let get = b.build(
            RequestId(1),
            RequestKind::Heartbeat,
            Method::Post,
            url,
            &Secret::new("tok"),
            Body::Json(b"{}".to_vec()),
            &[],
            now,
        );
        assert_eq!(get.url, "https://p.example/base/registry/heartbeat");
        assert_eq!(
            names(&get),
            ["Authorization", "User-Agent", "Origin", "Content-Type"]
        );
        let auth: Vec<String> = get
            .wire_headers()
            .filter(|(n, _)| *n == "Authorization")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(auth, ["Bearer tok"]);
        let anonymous = b.build(
            RequestId(2),
            RequestKind::Tool,
            Method::Get,
            b.url("/x", &[("q", "a b+c")]),
            &Secret::new(""),
            Body::Empty,
            &[("X-Workspace-ID", "w".to_owned())],
            now,
        );
        assert_eq!(anonymous.url, "https://p.example/base/x?q=a%20b%2Bc");
        assert_eq!(
            names(&anonymous),
            ["User-Agent", "Origin", "X-Workspace-ID"]
        );
        assert!(anonymous.bearer.is_none());
        let multipart = b.build(
            RequestId(3),
            RequestKind::Tool,
            Method::Post,
            b.url("/u", &[]),
            &Secret::new("t"),
            Body::Multipart {
                boundary: "bnd".to_owned(),
                bytes: b"--bnd--".to_vec(),
            },
            &[],
            now,
        );
        let ct: Vec<String> = multipart
            .wire_headers()
            .filter(|(n, _)| *n == "Content-Type")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(ct, ["multipart/form-data; boundary=bnd"]);
        assert!(USER_AGENT.starts_with("molecule-mcp/"));
    }

    #[test]
    fn every_request_carries_its_kind_s_response_cap() {
        let b = builder();
        #[allow(clippy::disallowed_methods)] // any origin will do: the test only adds to it
        let now = Instant::now();
        let cap = |kind| {
            b.build(
                RequestId(1),
                kind,
                Method::Get,
                b.url("/x", &[]),
                &Secret::new("t"),
                Body::Empty,
                &[],
                now,
            )
            .max_response_bytes
        };
        assert_eq!(cap(RequestKind::Register), response_cap::SESSION);
        assert_eq!(cap(RequestKind::Heartbeat), response_cap::SESSION);
        assert_eq!(cap(RequestKind::InboxPoll), response_cap::ACTIVITY_PAGE);
        assert_eq!(cap(RequestKind::Tool), response_cap::TOOL);
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("a-Z.0_~"), "a-Z.0_~");
        assert_eq!(
            percent_encode("2026-01-01T00:00:00+00:00"),
            "2026-01-01T00%3A00%3A00%2B00%3A00"
        );
        assert_eq!(percent_encode("é/ "), "%C3%A9%2F%20");
    }
}
