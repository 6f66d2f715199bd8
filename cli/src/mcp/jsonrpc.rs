//! JSON-RPC 2.0 message classification, ids and error responses.
//!
//! [`classify`] turns one raw line into an [`Incoming`] message, or into the error response
//! the peer must get instead:
//!
//! | input | answer |
//! |---|---|
//! | invalid UTF-8, invalid JSON | `-32700` parse error, `"id": null` |
//! | a JSON array (batch; only 2025-03-26 required them, later revisions removed them; [`Protocol`](super::Protocol) accepts them from a client that negotiated 2025-03-26 before it calls this) | `-32600`, `"id": null` |
//! | a non-object, `jsonrpc` ≠ `"2.0"`, `method` missing or not a string | `-32600`, the id if it is valid, else `null` |
//! | `"id": null`, or an id that is neither a string nor an integer | `-32600`, `"id": null` |
//! | an object with `result`/`error` and no `method` (a response) | ignored: we never send requests, and answering a response could collide with one of the client's own ids |
//!
//! Ids are restricted to strings and integers that fit `i64`/`u64` (the MCP rule); they are
//! echoed exactly. A float or a huge integer could not be echoed verbatim with `serde_json`,
//! so it is rejected as an invalid request rather than answered with a rounded id.
//! Notifications (no `id`) never get any response, not even an error.

use serde_json::{Map, Value, json};

/// `-32700`: the line is not valid UTF-8 JSON.
pub const PARSE_ERROR: i64 = -32700;
/// `-32600`: valid JSON but not a valid request (batch, non-object, bad id, too large…).
pub const INVALID_REQUEST: i64 = -32600;
/// `-32601`: unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// `-32602`: bad params, unknown tool.
pub const INVALID_PARAMS: i64 = -32602;
/// `-32603`: a fault on our side (a tool panicked).
pub const INTERNAL_ERROR: i64 = -32603;
/// `-32000`: the server is busy (too many tool calls in flight); the client may retry.
pub const SERVER_BUSY: i64 = -32000;
/// `-32022`: modern-era request naming a protocol version we do not serve (2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// A request id: a string or an integer, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// An integer in `i64` range.
    Int(i64),
    /// An integer above `i64::MAX`.
    BigUint(u64),
    /// A string id.
    Str(String),
}

impl RequestId {
    /// Reads an id; `None` for null, floats, out-of-range numbers and other JSON types.
    pub fn from_json(value: &Value) -> Option<Self> {
        match value {
            Value::String(s) => Some(RequestId::Str(s.clone())),
            Value::Number(n) => n
                .as_i64()
                .map(RequestId::Int)
                .or_else(|| n.as_u64().map(RequestId::BigUint)),
            Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// The id as JSON, exactly as the peer sent it.
    pub fn to_json(&self) -> Value {
        match self {
            RequestId::Int(n) => Value::from(*n),
            RequestId::BigUint(n) => Value::from(*n),
            RequestId::Str(s) => Value::String(s.clone()),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Int(n) => write!(f, "{n}"),
            RequestId::BigUint(n) => write!(f, "{n}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// One well-formed message from the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: must get exactly one response (unless cancelled).
    Request {
        /// Its id.
        id: RequestId,
        /// Its method.
        method: String,
        /// Its params; `None` when absent or `null`.
        params: Option<Value>,
    },
    /// A notification: never answered.
    Notification {
        /// Its method.
        method: String,
        /// Its params; `None` when absent or `null`.
        params: Option<Value>,
    },
    /// A response or error object from the peer; we send no requests, so it is ignored.
    Response,
}

/// A JSON-RPC error to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// A short human-readable message.
    pub message: String,
    /// Optional structured detail.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without `data`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Adds `data`.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// `-32602` with a message.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// `-32600` with a message.
    pub fn invalid_request(detail: &str) -> Self {
        Self::new(INVALID_REQUEST, format!("Invalid Request: {detail}"))
    }
}

/// A line that did not classify: the error and the id it must carry (`None` = `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The id to echo, when it could be read.
    pub id: Option<RequestId>,
    /// The error.
    pub error: RpcError,
}

/// Classifies one complete line (raw bytes, terminator already stripped).
pub fn classify(line: &[u8]) -> Result<Incoming, Rejected> {
    let parsed = std::str::from_utf8(line)
        .map_err(|_| "the line is not valid UTF-8")
        .and_then(|text| {
            serde_json::from_str::<Value>(text).map_err(|_| "the line is not valid JSON")
        });
    let value = parsed.map_err(|why| Rejected {
        id: None,
        error: RpcError::new(PARSE_ERROR, format!("Parse error: {why}")),
    })?;
    let reject = |id: Option<RequestId>, detail: &str| Rejected {
        id,
        error: RpcError::invalid_request(detail),
    };
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => return Err(reject(None, "batches are not supported")),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            return Err(reject(None, "a message must be a JSON object"));
        }
    };
    let id = match obj.get("id") {
        None => None,
        Some(raw) => match RequestId::from_json(raw) {
            Some(id) => Some(id),
            None => return Err(reject(None, "the id must be a string or an integer")),
        },
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(reject(id, "\"jsonrpc\" must be \"2.0\""));
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err(reject(id, "\"method\" must be a string")),
        None if obj.contains_key("result") || obj.contains_key("error") => {
            return Ok(Incoming::Response);
        }
        None => return Err(reject(id, "\"method\" is missing")),
    };
    let params = take_params(obj);
    Ok(match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    })
}

fn take_params(mut obj: Map<String, Value>) -> Option<Value> {
    match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(other) => Some(other),
    }
}

/// Serialises a success response (one line, no newline).
pub fn result_line(id: &RequestId, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id.to_json(), "result": result}).to_string()
}

/// Serialises an error response; `id: None` writes `"id": null`.
pub fn error_line(id: Option<&RequestId>, error: &RpcError) -> String {
    let mut body = json!({"code": error.code, "message": error.message});
    if let (Some(data), Some(obj)) = (&error.data, body.as_object_mut()) {
        obj.insert("data".to_owned(), data.clone());
    }
    let id = id.map_or(Value::Null, RequestId::to_json);
    json!({"jsonrpc": "2.0", "id": id, "error": body}).to_string()
}

/// Serialises a notification (one line, no newline).
pub fn notification_line(method: &str, params: Option<Value>) -> String {
    let mut msg = json!({"jsonrpc": "2.0", "method": method});
    if let (Some(params), Some(obj)) = (params, msg.as_object_mut()) {
        obj.insert("params".to_owned(), params);
    }
    msg.to_string()
}

/// Shortens peer-supplied text (a method name) before quoting it in an error message.
pub fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 120;
    molecule_mcp_core::sanitize::shorten(text, MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(line: &str) -> Rejected {
        match classify(line.as_bytes()) {
            Err(r) => r,
            Ok(m) => panic!("{line} classified as {m:?}"),
        }
    }

    #[test]
    fn parse_errors_are_32700_without_id() {
        for line in [&b"{"[..], b"not json", b"{\"id\":1,", b"\xff\xfe{}"] {
            let r = match classify(line) {
                Err(r) => r,
                Ok(m) => panic!("{m:?}"),
            };
            assert_eq!(r.error.code, PARSE_ERROR);
            assert_eq!(r.id, None);
        }
    }

    #[test]
    fn invalid_requests_are_32600() {
        let r = rejected(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#);
        assert_eq!((r.error.code, r.id), (INVALID_REQUEST, None));
        for line in ["1", "\"x\"", "null", "true"] {
            assert_eq!(rejected(line).error.code, INVALID_REQUEST);
        }
        let r = rejected(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        assert_eq!((r.error.code, r.id), (INVALID_REQUEST, None));
        let r = rejected(r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#);
        assert_eq!(
            (r.error.code, r.id),
            (INVALID_REQUEST, Some(RequestId::Str("a".into())))
        );
        let r = rejected(r#"{"jsonrpc":"2.0","id":3}"#);
        assert_eq!(
            (r.error.code, r.id),
            (INVALID_REQUEST, Some(RequestId::Int(3)))
        );
        let r = rejected(r#"{"jsonrpc":"2.0","id":3,"method":7}"#);
        assert_eq!(r.error.code, INVALID_REQUEST);
        for id in [
            "1.5",
            "1e3",
            "123456789012345678901234567890",
            "true",
            "[1]",
            "{}",
        ] {
            let r = rejected(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
            assert_eq!((r.error.code, r.id), (INVALID_REQUEST, None), "id {id}");
        }
    }

    #[test]
    fn requests_notifications_and_responses() {
        let m = classify(
            br#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"m","params":{"a":1}}"#,
        );
        assert_eq!(
            m,
            Ok(Incoming::Request {
                id: RequestId::BigUint(u64::MAX),
                method: "m".into(),
                params: Some(json!({"a": 1})),
            })
        );
        let m = classify(br#"{"jsonrpc":"2.0","method":"n","params":null}"#);
        assert_eq!(
            m,
            Ok(Incoming::Notification {
                method: "n".into(),
                params: None
            })
        );
        let m = classify(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(m, Ok(Incoming::Response));
    }

    #[test]
    fn ids_round_trip_exactly() {
        for raw in [
            "0",
            "-1",
            "-9223372036854775808",
            "18446744073709551615",
            "\"\"",
            "\"é\"",
        ] {
            let v: Value = serde_json::from_str(raw).unwrap();
            let id = RequestId::from_json(&v).unwrap();
            assert_eq!(id.to_json(), v);
            assert_eq!(id.to_json().to_string(), raw);
        }
    }

    #[test]
    fn error_lines_carry_data_and_null_ids() {
        let line = error_line(None, &RpcError::new(-1, "m").with_data(json!({"x": 1})));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m","data":{"x":1}}})
        );
    }

    #[test]
    fn excerpt_bounds_long_text() {
        assert_eq!(excerpt("abc"), "abc");
        assert_eq!(excerpt(&"é".repeat(500)).chars().count(), 121);
    }
}
