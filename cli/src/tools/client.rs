//! The one way tools talk to the platform.
//!
//! [`PlatformCall`] describes a request by *path* (built only from validated UUIDs) and by the
//! registered workspace whose token authenticates it; [`ToolContext::call`] has the core's
//! request builder (`molecule_mcp_core::platform_request`, shared with register, heartbeats
//! and the inbox) turn it into an HTTP request with:
//!
//! * `Authorization: Bearer <token of auth_as>` — an unregistered workspace is an error, never
//!   a fallback token: acting as a workspace with another workspace's token would be wrong
//!   whatever the platform answered;
//! * `Origin: <platform origin>` — `scheme://host[:port]` of the normalised `PLATFORM_URL`
//!   (SaaS tenants reject any other value with 403, and every URL comes from the same
//!   normalised value);
//! * `X-Workspace-ID: <auth_as>` on the calls whose platform routes read it (discover, peers,
//!   A2A; see [`PlatformCall::with_workspace_header`]);
//! * `Content-Type` for JSON or multipart bodies, and a per-call timeout.
//!
//! The transport is a trait so tests can record request shapes without a server; production
//! uses the pooled [`HttpClient`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use molecule_mcp_core::redact::redact_known;
use molecule_mcp_core::sanitize::{Controls, EMPTY_BODY, printable_prefix};
use molecule_mcp_core::{Body, Method, RequestId, RequestKind, TransportError, TransportErrorKind};
use molecule_mcp_io_tokio::http_client::into_request;
use molecule_mcp_io_tokio::{HttpClient, HttpResponse, driver};
use serde_json::Value;

use super::context::ToolContext;

/// A boxed, sendable future (keeps the traits dyn-compatible).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one HTTP request and returns the complete response.
pub trait PlatformTransport: Send + Sync {
    /// Sends `request`, giving up after `timeout`; a response body longer than `max_body`
    /// is refused while it is read ([`TransportErrorKind::BodyTooLarge`]).
    fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> BoxFuture<'_, Result<HttpResponse, TransportError>>;
}

impl PlatformTransport for HttpClient {
    fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> BoxFuture<'_, Result<HttpResponse, TransportError>> {
        Box::pin(HttpClient::send_capped(self, request, timeout, max_body))
    }
}

/// Default timeout for ordinary platform calls; calls that wait longer on purpose (A2A,
/// uploads, activity reports) set their own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request body.
#[derive(Debug, Clone)]
pub enum CallBody {
    /// No body.
    Empty,
    /// `application/json`.
    Json(Value),
    /// `multipart/form-data` with this boundary.
    Multipart {
        /// The boundary used in `bytes`.
        boundary: String,
        /// The encoded body.
        bytes: Vec<u8>,
    },
}

/// One platform request, described independently of HTTP details.
#[derive(Debug, Clone)]
pub struct PlatformCall {
    /// `GET` or `POST`.
    pub method: http::Method,
    /// Path starting with `/`, appended to the platform base URL. Built only from constants
    /// and validated UUIDs, so it needs no escaping.
    pub path: String,
    /// Query parameters (percent-encoded when sent).
    pub query: Vec<(&'static str, String)>,
    /// Registered workspace whose token authenticates the call.
    pub auth_as: String,
    /// Send `X-Workspace-ID: <auth_as>`.
    pub workspace_header: bool,
    /// Body.
    pub body: CallBody,
    /// Give up after this long.
    pub timeout: Duration,
    /// The largest response body accepted: the endpoint's cap from
    /// `molecule_mcp_core::platform_request::response_cap` (default `TOOL`).
    pub max_response_bytes: usize,
}

impl PlatformCall {
    /// A `GET` authenticated as `auth_as`, default timeout.
    pub fn get(path: impl Into<String>, auth_as: &str) -> Self {
        PlatformCall {
            method: http::Method::GET,
            path: path.into(),
            query: Vec::new(),
            auth_as: auth_as.to_owned(),
            workspace_header: false,
            body: CallBody::Empty,
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: RequestKind::Tool.max_response_bytes(),
        }
    }

    /// A `POST` with a JSON body, authenticated as `auth_as`, default timeout.
    pub fn post_json(path: impl Into<String>, auth_as: &str, body: Value) -> Self {
        PlatformCall {
            method: http::Method::POST,
            body: CallBody::Json(body),
            ..PlatformCall::get(path, auth_as)
        }
    }

    /// Adds `X-Workspace-ID`.
    pub fn with_workspace_header(mut self) -> Self {
        self.workspace_header = true;
        self
    }

    /// Adds a query parameter.
    pub fn with_query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// Sets the timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the endpoint's response cap (see [`PlatformCall::max_response_bytes`]).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }
}

/// Why a call produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// `auth_as` is not one of this runtime's workspaces.
    NotRegistered(String),
    /// The platform rejected `auth_as` at register (its token is not valid for it).
    Rejected {
        /// The workspace.
        workspace_id: String,
        /// The operator message from start-up.
        reason: String,
    },
    /// The request could not be built (bad header value).
    Build(String),
    /// Network failure or timeout.
    Transport(TransportError),
}

impl CallError {
    /// True when the request provably never reached the server (connection not established).
    pub fn is_undelivered(&self) -> bool {
        match self {
            CallError::NotRegistered(_) | CallError::Rejected { .. } | CallError::Build(_) => true,
            CallError::Transport(e) => match e.kind {
                TransportErrorKind::Connect => true,
                TransportErrorKind::Timeout
                | TransportErrorKind::Io
                | TransportErrorKind::Protocol
                | TransportErrorKind::BodyTooLarge => false,
            },
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotRegistered(id) => {
                write!(f, "workspace {id} is not configured in this runtime")
            }
            CallError::Rejected {
                workspace_id,
                reason,
            } => write!(
                f,
                "workspace {workspace_id} was rejected by the platform at start-up, so this runtime does not act as it: {reason}"
            ),
            CallError::Build(why) => write!(f, "could not build the request: {why}"),
            CallError::Transport(e) => {
                let kind = match e.kind {
                    TransportErrorKind::Connect => "cannot connect",
                    TransportErrorKind::Timeout => "timed out",
                    TransportErrorKind::Io => "connection error",
                    TransportErrorKind::Protocol => "protocol error",
                    TransportErrorKind::BodyTooLarge => "response too large",
                };
                write!(f, "{kind}: {}", e.message)
            }
        }
    }
}

/// A platform response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl ApiResponse {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first `max` characters of the body as (lossy) text, for error messages.
    pub fn snippet(&self, max: usize) -> String {
        // `max` characters take at most 4·max bytes: decoding more of a 10 MB error page
        // would cost memory for nothing.
        let head = self
            .body
            .get(..self.body.len().min(max.saturating_mul(4)))
            .unwrap_or_default();
        printable_prefix(
            &String::from_utf8_lossy(head),
            max,
            Controls::KeepNewlineAndTab,
        )
    }

    /// The server's `error` string (plus `hint` when present), else a body snippet.
    pub fn error_message(&self) -> String {
        if let Some(Value::Object(map)) = self.json()
            && let Some(err) = map.get("error").and_then(Value::as_str)
        {
            return match map.get("hint").and_then(Value::as_str) {
                Some(hint) if !hint.is_empty() => format!("{err} ({hint})"),
                Some(_) | None => err.to_owned(),
            };
        }
        let s = self.snippet(200);
        if s.is_empty() {
            EMPTY_BODY.to_owned()
        } else {
            s
        }
    }

    /// `Retry-After` in seconds, if given as a number.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(molecule_mcp_core::http::parse_retry_after_seconds)
    }
}

impl ToolContext {
    /// The absolute URL for `call` (base + path + encoded query).
    pub(crate) fn url_for(&self, call: &PlatformCall) -> String {
        let query: Vec<(&str, &str)> = call.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.requests.url(&call.path, &query)
    }

    /// Sends `call` and returns the full response (any status).
    pub(crate) async fn call(&self, call: PlatformCall) -> Result<ApiResponse, CallError> {
        let token = self
            .workspaces
            .token(&call.auth_as)
            .ok_or_else(|| CallError::NotRegistered(call.auth_as.clone()))?;
        if let Some(reason) = self.workspaces.failure(&call.auth_as) {
            return Err(CallError::Rejected {
                workspace_id: call.auth_as.clone(),
                reason,
            });
        }
        let method = match call.method {
            http::Method::GET => Method::Get,
            http::Method::POST => Method::Post,
            other => return Err(CallError::Build(format!("unsupported method {other}"))),
        };
        let url = self.url_for(&call);
        let body = match call.body {
            CallBody::Empty => Body::Empty,
            // serde_json::to_vec on a Value cannot fail (no non-string keys).
            CallBody::Json(v) => Body::Json(serde_json::to_vec(&v).unwrap_or_default()),
            CallBody::Multipart { boundary, bytes } => Body::Multipart { boundary, bytes },
        };
        let extra = if call.workspace_header {
            vec![("X-Workspace-ID", call.auth_as.clone())]
        } else {
            Vec::new()
        };
        let mut described = self.requests.build(
            // Tool calls are awaited directly, not routed through a machine: no id needed.
            RequestId(0),
            RequestKind::Tool,
            method,
            url,
            &token,
            body,
            &extra,
            driver::now() + call.timeout,
        );
        described.max_response_bytes = call.max_response_bytes;
        // The error names the failing part without echoing header values (the token).
        let max_body = described.max_response_bytes;
        let request = into_request(described).map_err(|e| CallError::Build(e.message))?;
        match self.transport.send(request, call.timeout, max_body).await {
            Ok(r) => Ok(ApiResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(mut e) => {
                e.message = redact_known(&e.message, &token);
                Err(CallError::Transport(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        use molecule_mcp_core::percent_encode as encode_query_component;
        assert_eq!(
            encode_query_component("a b&c=d/é"),
            "a%20b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(
            encode_query_component("2026-05-01T00:00:00+02:00"),
            "2026-05-01T00%3A00%3A00%2B02%3A00"
        );
        assert_eq!(encode_query_component("safe-._~"), "safe-._~");
    }

    #[test]
    fn error_message_prefers_server_error_and_hint() {
        let r = |body: &str| ApiResponse {
            status: 400,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        };
        assert_eq!(
            r(r#"{"error":"bad","hint":"do x"}"#).error_message(),
            "bad (do x)"
        );
        assert_eq!(r(r#"{"error":"bad"}"#).error_message(), "bad");
        assert_eq!(r("plain\u{1}text").error_message(), "plain text");
        assert_eq!(r("").error_message(), "(empty body)");
    }

    #[test]
    fn undelivered_only_for_connect_failures() {
        let t = |kind| {
            CallError::Transport(TransportError {
                kind,
                message: String::new(),
            })
        };
        assert!(t(TransportErrorKind::Connect).is_undelivered());
        assert!(!t(TransportErrorKind::Timeout).is_undelivered());
        assert!(!t(TransportErrorKind::Io).is_undelivered());
    }

    #[test]
    fn snippets_read_only_the_head_of_a_body() {
        let resp = |body: Vec<u8>| ApiResponse {
            status: 502,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body),
        };
        // Multi-byte characters: 200 of them need 600 bytes, within the 800 read.
        let euros = resp("€".repeat(10_000).into_bytes());
        assert_eq!(euros.snippet(200), "€".repeat(200));
        // A huge non-UTF-8 page: the snippet is still exactly `max` characters.
        let junk = resp(vec![0xff; 10 * 1024 * 1024]);
        assert_eq!(junk.snippet(200).chars().count(), 200);
        assert_eq!(resp(b"short".to_vec()).snippet(200), "short");
    }
}
