//! Request handling: the platform's middleware chain, in its order (CORS → rate limit →
//! TenantGuard → route auth → handler), and the route table. Handlers are synchronous
//! functions over the locked [`State`]; each returns a [`Reply`].
//!
//! Handlers return `Result<Reply, Reply>` so that validation and auth failures can leave
//! early with `?`; both arms are sent as-is.

mod a2a;
mod activity;
mod delegation;
mod memories;
mod registry;
mod uploads;
mod workspace;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::state::State;

pub(crate) use delegation::finish as finish_delegation;
pub(crate) use uploads::stage as stage_upload;

/// A fully buffered request, as the handlers see it.
pub(crate) struct StubRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl StubRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of a query parameter; empty values count as absent (like gin's `c.Query`
    /// checks in the handlers).
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `Authorization: Bearer <token>` (prefix case-sensitive, token trimmed).
    pub(crate) fn bearer(&self) -> Option<&str> {
        let token = self
            .header("authorization")?
            .strip_prefix("Bearer ")?
            .trim();
        (!token.is_empty()).then_some(token)
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

pub(crate) type Handled = Result<Reply, Reply>;

impl Reply {
    pub(crate) fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: Bytes::from(body.to_string()),
        }
    }

    /// `{"error": msg}`.
    pub(crate) fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, &json!({ "error": msg }))
    }

    pub(crate) fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }
}

/// Runs one request through the middleware chain and the route table.
pub(crate) fn handle(st: &mut State, req: &StubRequest, now: Instant) -> Reply {
    if st.opts.cors && !origin_allowed(st, req) {
        return Reply::empty(403);
    }
    let (limit_headers, limited) = rate_limit(st, now);
    let mut reply = match limited {
        Some(r) => r,
        None if !tenant_guard_passes(st, req) => Reply::empty(404),
        None => route(st, req).unwrap_or_else(|r| r),
    };
    reply.headers.extend(limit_headers);
    reply
}

/// gin-contrib/cors: no `Origin`, same-origin (`http(s)://<Host>`) or allow-listed.
fn origin_allowed(st: &State, req: &StubRequest) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    let host = req.header("host").unwrap_or_default();
    origin == format!("http://{host}")
        || origin == format!("https://{host}")
        || st.opts.cors_allowed_origins.iter().any(|o| o == origin)
}

/// The TenantGuard as the May 2026 platform applies it (only when `tenant_org_id` is configured).
fn tenant_guard_passes(st: &State, req: &StubRequest) -> bool {
    let Some(org) = &st.opts.tenant_org_id else {
        return true;
    };
    let exempt = [
        "/health",
        "/buildinfo",
        "/metrics",
        "/registry/register",
        "/registry/heartbeat",
    ];
    if exempt.contains(&req.path.as_str()) || req.path.starts_with("/cp/") {
        return true;
    }
    if req.header("x-molecule-org-id") == Some(org.as_str()) {
        return true;
    }
    let host = req.header("host").unwrap_or_default();
    let same = |v: &str| {
        ["http://", "https://"]
            .iter()
            .any(|s| v == format!("{s}{host}"))
    };
    let referer_ok = req.header("referer").is_some_and(|r| {
        same(r)
            || ["http://", "https://"]
                .iter()
                .any(|s| r.starts_with(&format!("{s}{host}/")))
    });
    referer_ok || req.header("origin").is_some_and(same)
}

/// Fixed one-minute window; returns the `X-RateLimit-*` headers and a 429 when exhausted.
fn rate_limit(st: &mut State, now: Instant) -> (Vec<(String, String)>, Option<Reply>) {
    let Some(limit) = st.opts.rate_limit_per_minute else {
        return (vec![("x-ratelimit-limit".into(), "unlimited".into())], None);
    };
    const WINDOW: Duration = Duration::from_secs(60);
    if now.saturating_duration_since(st.rate.started) >= WINDOW {
        st.rate.started = now;
        st.rate.count = 0;
    }
    st.rate.count = st.rate.count.saturating_add(1);
    let left = WINDOW.saturating_sub(now.saturating_duration_since(st.rate.started));
    let reset_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let headers = vec![
        ("x-ratelimit-limit".into(), limit.to_string()),
        (
            "x-ratelimit-remaining".into(),
            limit.saturating_sub(st.rate.count).to_string(),
        ),
        ("x-ratelimit-reset".into(), reset_secs.to_string()),
    ];
    if st.rate.count > limit {
        let retry = reset_secs.max(1);
        let reply = Reply::json(
            429,
            &json!({"error": "rate limit exceeded", "retry_after": retry}),
        )
        .with_header("retry-after", retry.to_string());
        return (headers, Some(reply));
    }
    (headers, None)
}

/// The route table. Unknown routes (and known paths with another method) → 404 JSON.
fn route(st: &mut State, req: &StubRequest) -> Handled {
    let decoded: Vec<String> = req
        .path
        .strip_prefix('/')
        .unwrap_or(&req.path)
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => Ok(Reply::json(200, &json!({"status": "ok"}))),
        ("GET", ["healthz"]) if st.opts.healthz => Ok(Reply::json(200, &json!({"status": "ok"}))),
        ("POST", ["registry", "register"]) => registry::register(st, req),
        ("POST", ["registry", "heartbeat"]) => registry::heartbeat(st, req),
        ("GET", ["registry", "discover", target]) => registry::discover(st, req, target),
        ("GET", ["registry", id, "peers"]) => registry::peers(st, req, id),
        ("GET", ["workspaces", id]) => workspace::get(st, req, id),
        ("POST", ["workspaces", id, "a2a"]) => a2a::proxy(st, req, id),
        ("GET", ["workspaces", id, "activity"]) => {
            strict_auth(st, req, id)?;
            activity::list(st, req, id)
        }
        ("POST", ["workspaces", id, "activity"]) => {
            strict_auth(st, req, id)?;
            activity::report(st, req, id)
        }
        ("POST", ["workspaces", id, "notify"]) => {
            strict_auth(st, req, id)?;
            activity::notify(st, req, id)
        }
        ("POST", ["workspaces", id, "chat", "uploads"]) => {
            strict_auth(st, req, id)?;
            uploads::upload(st, req, id)
        }
        ("GET", ["workspaces", id, "pending-uploads", file_id, "content"]) => {
            strict_auth(st, req, id)?;
            uploads::content(st, id, file_id)
        }
        ("POST", ["workspaces", id, "pending-uploads", file_id, "ack"]) => {
            strict_auth(st, req, id)?;
            uploads::ack(st, id, file_id)
        }
        ("POST", ["workspaces", id, "delegate"]) => {
            strict_auth(st, req, id)?;
            delegation::delegate(st, req, id)
        }
        ("GET", ["workspaces", id, "delegations"]) => {
            strict_auth(st, req, id)?;
            delegation::list(st, id)
        }
        ("POST", ["workspaces", id, "memories"]) => {
            strict_auth(st, req, id)?;
            memories::commit(st, req, id)
        }
        ("GET", ["workspaces", id, "memories"]) => {
            strict_auth(st, req, id)?;
            memories::search(st, req, id)
        }
        _ => Err(Reply::error(404, "not found")),
    }
}

// ----- auth classes (which credentials each group of routes accepts) ------------------------

const MISSING_TOKEN: &str = "missing workspace auth token";
const INVALID_TOKEN: &str = "invalid workspace auth token";

/// Class R / D: a bearer for `workspace_id` is required only while it has a live token.
pub(crate) fn bootstrap_auth(
    st: &State,
    req: &StubRequest,
    workspace_id: &str,
) -> Result<(), Reply> {
    bootstrap_auth_with(st, req, workspace_id, MISSING_TOKEN, INVALID_TOKEN)
}

pub(crate) fn bootstrap_auth_with(
    st: &State,
    req: &StubRequest,
    workspace_id: &str,
    missing: &str,
    invalid: &str,
) -> Result<(), Reply> {
    if st.live_tokens(workspace_id) == 0 {
        return Ok(());
    }
    match req.bearer() {
        None => Err(Reply::error(401, missing)),
        Some(t) if st.token_valid_for(t, workspace_id) => Ok(()),
        Some(_) => Err(Reply::error(401, invalid)),
    }
}

/// Class W: a bearer is always required (the workspace's own token or the admin token).
pub(crate) fn strict_auth(st: &State, req: &StubRequest, workspace_id: &str) -> Result<(), Reply> {
    if workspace_id.is_empty() {
        return Err(Reply::error(401, "missing workspace ID"));
    }
    match req.bearer() {
        None => Err(Reply::error(401, MISSING_TOKEN)),
        Some(t)
            if st.opts.admin_token.as_deref() == Some(t) || st.token_valid_for(t, workspace_id) =>
        {
            Ok(())
        }
        Some(_) => Err(Reply::error(401, INVALID_TOKEN)),
    }
}

// ----- JSON body helpers (gin `ShouldBindJSON` semantics, as the platform parses bodies) ---

/// The body as a JSON object; anything else (including empty) is a bind failure.
pub(crate) fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(m) => Some(m),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {
            None
        }
    }
}

/// A field that must be a string if present (`null` counts as absent). `Err` = type mismatch.
pub(crate) fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_)) => Err(()),
    }
}

/// A field that must be a JSON integer if present (`1.5`, `1.0` and `"1"` are mismatches).
pub(crate) fn opt_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, ()> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_)) => Err(()),
    }
}

pub(crate) fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, ()> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(()),
        Some(Value::Bool(_) | Value::String(_) | Value::Array(_) | Value::Object(_)) => Err(()),
    }
}

/// A required non-empty string (`binding:"required"`).
pub(crate) fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, ()> {
    opt_str(m, key)?.filter(|s| !s.is_empty()).ok_or(())
}

// ----- query strings ------------------------------------------------------------------------

/// `a=1&b=x%20y` → pairs, percent- and `+`-decoded, in order.
pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid escapes are kept literally; invalid UTF-8 is replaced).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|h| char::from(*h).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("a=1&b=x%20y+z&c&&d=%zz&e=%e2%9c%93"));
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz".into()),
                ("e".into(), "✓".into()),
            ]
        );
        assert!(parse_query(None).is_empty());
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn int_fields_reject_floats_and_strings() {
        let m = json_object(br#"{"a":1,"b":1.5,"c":"1","d":null,"e":1.0}"#).unwrap();
        assert_eq!(opt_int(&m, "a"), Ok(Some(1)));
        assert_eq!(opt_int(&m, "b"), Err(()));
        assert_eq!(opt_int(&m, "c"), Err(()));
        assert_eq!(opt_int(&m, "d"), Ok(None));
        assert_eq!(opt_int(&m, "e"), Err(()));
        assert_eq!(opt_int(&m, "missing"), Ok(None));
        assert!(json_object(b"[1]").is_none() && json_object(b"").is_none());
    }
}
