//! `chat_history`: `GET /workspaces/{src}/activity?peer_id=…&limit=…[&before_ts=…]`, rows
//! returned oldest first.
//!
//! `peer_id` must be a UUID and `before_ts` an RFC 3339 timestamp (both checked here, so the
//! model gets a precise error without a round trip, and nothing unvalidated reaches the
//! query). The source workspace is routed like delegation: explicit → the peer's cached
//! source → primary.

use serde_json::Value;

use super::args::{Args, parse_workspace_id, quote, resolve_source};
use super::client::PlatformCall;
use super::context::ToolContext;
use crate::mcp::ToolOutput;
use molecule_mcp_core::platform_request::response_cap;

/// Default number of rows.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest `limit` (the platform's cap).
pub const MAX_LIMIT: i64 = 500;

/// True for `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`/`z` accepted too).
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10)) {
        return false;
    }
    if !(matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3) && at(i + 3, b':') && digits(i + 4..i + 6) && i + 6 == b.len()
        }
        Some(_) | None => false,
    }
}

/// `chat_history`.
pub(crate) async fn chat_history(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let peer = match args.opt_nonblank("peer_id") {
        Ok(Some(raw)) => match parse_workspace_id("peer_id", raw) {
            Ok(p) => p,
            Err(e) => return e,
        },
        Ok(None) => return ToolOutput::error("Error: peer_id is required"),
        Err(e) => return e,
    };
    let limit = match args.opt_int("limit") {
        Ok(Some(n)) if n > 0 => n.min(MAX_LIMIT),
        Ok(_) => DEFAULT_LIMIT,
        Err(e) => return e,
    };
    let before = match args.opt_nonblank("before_ts") {
        Ok(Some(ts)) if is_rfc3339(ts) => Some(ts),
        Ok(Some(ts)) => {
            return ToolOutput::error(format!(
                "Error: before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z), got {}",
                quote(ts)
            ));
        }
        Ok(None) => None,
        Err(e) => return e,
    };
    let src = match resolve_source(ctx, args, Some(&peer)) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut call = PlatformCall::get(format!("/workspaces/{src}/activity"), &src)
        .with_max_response_bytes(response_cap::ACTIVITY_PAGE)
        .with_query("peer_id", peer)
        .with_query("limit", limit.to_string());
    if let Some(ts) = before {
        call = call.with_query("before_ts", ts);
    }
    let response = match ctx.call(call).await {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("Error: chat_history request failed: {e}")),
    };
    if response.status == 400 {
        let msg = response
            .json()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "bad request".to_owned());
        return ToolOutput::error(format!("Error: {msg}"));
    }
    if response.status >= 400 {
        return ToolOutput::error(format!(
            "Error: chat_history returned HTTP {}",
            response.status
        ));
    }
    match response.json() {
        None => ToolOutput::error("Error: chat_history response was not JSON"),
        Some(Value::Array(mut rows)) => {
            rows.reverse();
            ToolOutput::Json(Value::Array(rows))
        }
        Some(_) => ToolOutput::error("Error: chat_history response was not a list"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_validation() {
        for ok in [
            "2026-05-01T00:00:00Z",
            "2026-05-01T00:00:00.123456Z",
            "2026-05-01t10:20:30+02:00",
            "2026-05-01T10:20:30-00:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-05-01",
            "2026-05-01T00:00:00",
            "2026-05-01T00:00:00.Z",
            "2026-05-01 00:00:00Z",
            "2026-05-01T00:00:00Z&x=1",
            "2026-05-01T00:00:00+0200",
            "٢٠٢٦-05-01T00:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
