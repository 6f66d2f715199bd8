//! The platform HTTP client: one pooled hyper client (keep-alive connection reuse instead of
//! a TLS handshake per beat), https through rustls with the webpki
//! roots, a hard per-request deadline and a cap on response bodies.
//!
//! Both the session driver and the MCP tools use it, so every platform call shares one
//! connection pool.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use molecule_mcp_core::platform_request::response_cap;
use molecule_mcp_core::{HttpRequest, Method, TransportError, TransportErrorKind};

/// Default cap on response bodies (a misbehaving platform must not exhaust memory).
pub const DEFAULT_MAX_BODY: usize = 32 * 1024 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body (at most the client's cap).
    pub body: Bytes,
}

impl HttpResponse {
    /// `Retry-After` in delta-seconds, if present and numeric.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(molecule_mcp_core::http::parse_retry_after_seconds)
    }

    /// The `Content-Type` without parameters, lower-cased.
    pub fn content_type(&self) -> Option<String> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
    }
}

/// Pooled HTTP/1.1 client for http and https URLs.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with the default body cap.
    pub fn new() -> Self {
        Self::with_max_body(DEFAULT_MAX_BODY)
    }

    /// A client whose response bodies are capped at `max_body` bytes.
    pub fn with_max_body(max_body: usize) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(https);
        HttpClient { inner, max_body }
    }

    /// Sends `request`, giving up after `timeout` (connect + headers + body).
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.send_capped(request, timeout, self.max_body).await
    }

    /// [`HttpClient::send`] with its own body cap: the body is refused with
    /// [`TransportErrorKind::BodyTooLarge`] as soon as more than `max_body` bytes arrive
    /// (never buffered beyond that).
    pub async fn send_capped(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<HttpResponse, TransportError> {
        match tokio::time::timeout(timeout, self.send_inner(request, max_body)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError {
                kind: TransportErrorKind::Timeout,
                message: format!("no complete response within {}s", timeout.as_secs_f32()),
            }),
        }
    }

    async fn send_inner(
        &self,
        request: http::Request<Full<Bytes>>,
        max_body: usize,
    ) -> Result<HttpResponse, TransportError> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(classify_client_error)?;
        let (parts, body) = response.into_parts();
        // A failure's body only feeds an error message: its head is enough, and a huge
        // error page must neither fail the call as "too large" nor be read to its end.
        let body = if parts.status.is_success() {
            read_body(body, max_body).await?
        } else {
            read_head(body, max_body.min(response_cap::ERROR_BODY)).await?
        };
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Sends a request described by the core, honouring its deadline and its response cap
    /// ([`HttpRequest::max_response_bytes`], never above the client's own cap).
    pub async fn execute(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        self.execute_capped(request, request.max_response_bytes.min(self.max_body))
            .await
    }

    /// [`HttpClient::execute`] with its own body cap (see [`HttpClient::send_capped`]).
    pub async fn execute_capped(
        &self,
        request: &HttpRequest,
        max_body: usize,
    ) -> Result<HttpResponse, TransportError> {
        let timeout = tokio::time::Instant::from_std(request.deadline)
            .saturating_duration_since(tokio::time::Instant::now());
        let built = build_request(request)?;
        self.send_capped(built, timeout, max_body).await
    }
}

/// Reads a whole response body, refusing it as soon as more than `max_body` bytes arrive.
///
/// Memory is about the body's own size, not a multiple of it: a body that arrives as one
/// chunk is kept as it is; otherwise every chunk is copied into one buffer (pre-sized from
/// `Content-Length`, capped at `max_body`) and freed at once. (`collect().to_bytes()` kept
/// every chunk until the end and then copied them all, twice the body at its peak.) A
/// `Content-Length` above the cap is refused before anything is read.
async fn read_body<B>(body: B, max_body: usize) -> Result<Bytes, TransportError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || TransportError {
        kind: TransportErrorKind::BodyTooLarge,
        message: format!("response body larger than {max_body} bytes"),
    };
    let announced = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if announced > max_body {
        return Err(too_large());
    }
    let body = Limited::new(body, max_body);
    tokio::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                TransportError {
                    kind: TransportErrorKind::Io,
                    message: format!("connection broke while reading the body: {e}"),
                }
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        }; // trailers
        if data.is_empty() {
            continue;
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(head) => {
                joined.reserve_exact(announced.max(head.len() + data.len()));
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// The first `max_body` bytes of a body; the rest is never read.
async fn read_head<B>(body: B, max_body: usize) -> Result<Bytes, TransportError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(body);
    let mut head: Vec<u8> = Vec::new();
    while head.len() < max_body
        && let Some(frame) = body.frame().await
    {
        let frame = frame.map_err(|e| TransportError {
            kind: TransportErrorKind::Io,
            message: format!("connection broke while reading the body: {}", e.into()),
        })?;
        if let Ok(data) = frame.into_data() {
            let room = max_body - head.len();
            head.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        }
    }
    Ok(Bytes::from(head))
}

/// Turns a core request description into a hyper request (the body is copied; see
/// [`into_request`] to move it).
pub fn build_request(request: &HttpRequest) -> Result<http::Request<Full<Bytes>>, TransportError> {
    hyper_request(request, Bytes::from(request.body.clone()))
}

/// [`build_request`] that moves the body instead of copying it: an upload of 100 MiB must
/// not be held twice while it is sent.
pub fn into_request(
    mut request: HttpRequest,
) -> Result<http::Request<Full<Bytes>>, TransportError> {
    let body = Bytes::from(std::mem::take(&mut request.body));
    hyper_request(&request, body)
}

fn hyper_request(
    request: &HttpRequest,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, TransportError> {
    let method = match request.method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(request.url.as_str());
    // The core decides every header (Authorization, User-Agent, Origin, …) and their order.
    for (name, value) in request.wire_headers() {
        builder = builder.header(name, value.as_ref());
    }
    builder.body(Full::new(body)).map_err(|e| TransportError {
        kind: TransportErrorKind::Protocol,
        // The error names the bad part (URL or header) without echoing header values.
        message: format!("could not build request for {}: {e}", request.url),
    })
}

fn classify_client_error(e: hyper_util::client::legacy::Error) -> TransportError {
    let kind = if e.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    };
    // Walk the source chain for a readable cause ("connection refused", "connection reset").
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    TransportError { kind, message }
}
