//! A tiny HTTP/1.1 client for tests (hyper-util legacy client, no connection pooling so that
//! every request gets a fresh connection and scripted connection faults stay deterministic).
//!
//! ```no_run
//! # async fn demo(url: &str, token: &str) {
//! use molecule_mcp_tests::http::TestClient;
//! let client = TestClient::new(url);
//! let resp = client.post("/registry/heartbeat").bearer(token).json(&serde_json::json!({"workspace_id": "…"})).send().await;
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Default per-request deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client bound to a base URL such as `http://127.0.0.1:PORT`.
#[derive(Clone)]
pub struct TestClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a request produced no complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestError {
    /// The deadline passed (the server hung, or was too slow).
    Timeout,
    /// No response head at all: refused, reset or closed before answering.
    NoResponse(String),
    /// The head arrived but the body broke off.
    Body { status: u16, error: String },
    /// The request could not be built (bad method, URL or header).
    Build(String),
}

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestError::Timeout => write!(f, "timed out"),
            TestError::NoResponse(e) => write!(f, "no response: {e}"),
            TestError::Body { status, error } => {
                write!(f, "body of a {status} response broke off: {error}")
            }
            TestError::Build(e) => write!(f, "bad request: {e}"),
        }
    }
}

impl std::error::Error for TestError {}

impl TestResponse {
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl TestClient {
    pub fn new(base_url: &str) -> TestClient {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        TestClient {
            base: base_url.trim_end_matches('/').to_string(),
            client,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> TestRequest {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> TestRequest {
        self.request("POST", path)
    }

    /// `path` includes any query string, e.g. `/workspaces/x/activity?limit=5`.
    pub fn request(&self, method: &str, path: &str) -> TestRequest {
        TestRequest {
            client: self.client.clone(),
            method: method.to_string(),
            url: format!("{}{}", self.base, path),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// A request being built; finish with [`TestRequest::send`].
pub struct TestRequest {
    client: Client<HttpConnector, Full<Bytes>>,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    timeout: Duration,
}

impl TestRequest {
    pub fn header(mut self, name: &str, value: &str) -> TestRequest {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> TestRequest {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// `X-Workspace-ID: <id>`.
    pub fn workspace(self, id: &str) -> TestRequest {
        self.header("x-workspace-id", id)
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> TestRequest {
        self.body(body.to_string(), "application/json")
    }

    /// Raw body bytes with the given content type.
    pub fn body(mut self, body: impl Into<Bytes>, content_type: &str) -> TestRequest {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    pub fn timeout(mut self, timeout: Duration) -> TestRequest {
        self.timeout = timeout;
        self
    }

    pub async fn send(self) -> Result<TestResponse, TestError> {
        let method = Method::from_bytes(self.method.as_bytes())
            .map_err(|e| TestError::Build(e.to_string()))?;
        let mut builder = Request::builder().method(method).uri(&self.url);
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        let req = builder
            .body(Full::new(self.body))
            .map_err(|e| TestError::Build(e.to_string()))?;
        let client = self.client;
        let exchange = async move {
            let resp = client
                .request(req)
                .await
                .map_err(|e| TestError::NoResponse(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| TestError::Body {
                    status,
                    error: error_chain(&e),
                })?;
            Ok(TestResponse {
                status,
                headers,
                body: body.to_bytes(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(TestError::Timeout))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Builds a `multipart/form-data` body: returns `(content type, body)`. Each file is
/// `(field name, file name, content type, bytes)`.
pub fn multipart_body(files: &[(&str, &str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----molecule-test-boundary-7d3f";
    let mut body = Vec::new();
    for (field, name, ctype, bytes) in files {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(format!("Content-Type: {ctype}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
