//! The HTTP vocabulary shared by the core and its drivers: requests the core wants sent
//! (each with a [`RequestId`]) and the outcomes a driver reports back.
//!
//! The core never performs I/O. It describes a request completely (absolute URL, headers,
//! body, deadline); the driver sends it and answers with [`crate::Input::HttpResponse`] or
//! [`crate::Input::HttpFailed`] carrying the same id.

use std::time::{Duration, Instant};

use crate::secret::Secret;

/// The non-auth headers of a request, `(name, value)` in send order.
pub type Headers = std::sync::Arc<[(&'static str, String)]>;

/// Identifies one in-flight request. Strictly increasing per machine; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// HTTP methods the platform client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
}

impl Method {
    /// The method name as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// What a request is for; lets drivers and tests classify traffic without parsing URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RequestKind {
    /// `POST /registry/register`
    Register,
    /// `POST /registry/heartbeat`
    Heartbeat,
    /// The inbox's traffic: `GET /workspaces/:id/activity` polls, upload downloads and acks
    InboxPoll,
    /// A tool call (`delegate_task`, `list_peers`, …) or a `doctor` check.
    Tool,
}

impl RequestKind {
    /// The largest response body a request of this kind accepts by default
    /// ([`HttpRequest::max_response_bytes`]); drivers refuse a longer one while reading it
    /// (`TransportErrorKind::BodyTooLarge`). Tool calls set their own per endpoint
    /// (`crate::platform_request::response_cap`).
    pub fn max_response_bytes(self) -> usize {
        use crate::platform_request::response_cap;
        match self {
            RequestKind::Register | RequestKind::Heartbeat => response_cap::SESSION,
            RequestKind::InboxPoll => response_cap::ACTIVITY_PAGE,
            RequestKind::Tool => response_cap::TOOL,
        }
    }
}

/// A fully described HTTP request. `Debug` never prints the bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Echoed back by the driver with the outcome.
    pub id: RequestId,
    /// What the request is for.
    pub kind: RequestKind,
    /// Method.
    pub method: Method,
    /// Absolute URL (`<PLATFORM_URL><path>`; query already encoded).
    pub url: String,
    /// Bearer token for `Authorization: Bearer …`; kept apart from `headers` so it is
    /// redacted in `Debug` and never copied into a log line.
    pub bearer: Option<Secret>,
    /// Other headers (`Origin`, `Content-Type`, …) in send order. Shared: a machine builds
    /// its header list once and every request clones the pointer.
    pub headers: Headers,
    /// Body bytes (JSON for POSTs); empty for GETs.
    pub body: Vec<u8>,
    /// The driver refuses a response body longer than this while reading it
    /// ([`TransportErrorKind::BodyTooLarge`]), so no answer holds more memory than this.
    pub max_response_bytes: usize,
    /// The driver must give up at this instant and report [`TransportErrorKind::Timeout`].
    /// The core enforces the same deadline itself, so a late answer is simply ignored.
    pub deadline: Instant,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("bearer", &self.bearer)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("max_response_bytes", &self.max_response_bytes)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Why a request produced no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// TCP/TLS connection could not be established (refused, DNS, handshake).
    Connect,
    /// The deadline passed before a complete response arrived.
    Timeout,
    /// The connection broke mid-request or mid-body.
    Io,
    /// The peer spoke malformed HTTP.
    Protocol,
    /// The response body exceeded the driver's size cap.
    BodyTooLarge,
}

/// A transport failure reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// Classification.
    pub kind: TransportErrorKind,
    /// Human-readable detail for the log line (must not contain secrets).
    pub message: String,
}

/// Parses a `Retry-After` value given in delta-seconds. HTTP-date values need a wall
/// clock, so drivers convert those to a delay themselves before calling the core.
pub fn parse_retry_after_seconds(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
