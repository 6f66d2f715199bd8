//! `commit_memory` (`POST /workspaces/{src}/memories`) and `recall_memory`
//! (`GET /workspaces/{src}/memories`).
//!
//! Content is secret-redacted before it leaves the process ([`molecule_mcp_core::redact`]).
//! `scope` is one of `LOCAL`, `TEAM`, `GLOBAL` (any case); anything else is rejected with a
//! clear error instead of being silently stored as `LOCAL`, where the model would not look
//! for it. Client-side checks: RBAC `memory.write` / `memory.read`
//! ([`Rbac`](molecule_mcp_core::tool_settings::Rbac)), and GLOBAL writes only from tier 0
//! (`WORKSPACE_TIER`; the platform enforces the real rule: root workspaces only).

use molecule_mcp_core::redact::redact_secrets;
use serde_json::{Value, json};

use super::args::{Args, quote, resolve_source};
use super::client::PlatformCall;
use super::context::ToolContext;
use crate::mcp::ToolOutput;

/// Valid scopes.
pub const SCOPES: [&str; 3] = ["LOCAL", "TEAM", "GLOBAL"];

/// Parses a scope argument: blank ⇒ `None`, otherwise one of [`SCOPES`] (case-insensitive).
pub fn parse_scope(raw: Option<&str>) -> Result<Option<&'static str>, ToolOutput> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    SCOPES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(raw))
        .copied()
        .map(Some)
        .ok_or_else(|| {
            ToolOutput::error(format!(
                "Error: invalid scope {} — expected one of LOCAL, TEAM, GLOBAL",
                quote(raw)
            ))
        })
}

fn rbac_denied(action: &str) -> ToolOutput {
    ToolOutput::error(format!(
        "Error: RBAC — this workspace does not have the '{action}' permission for this operation."
    ))
}

/// `commit_memory`.
pub(crate) async fn commit_memory(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let content = match args.opt_str("content") {
        Ok(Some(c)) if !c.trim().is_empty() => c,
        Ok(_) => return ToolOutput::error("Error: content is required"),
        Err(e) => return e,
    };
    let scope = match args.opt_str("scope").and_then(parse_scope) {
        Ok(s) => s.unwrap_or("LOCAL"),
        Err(e) => return e,
    };
    if !ctx.settings.rbac.permits("memory.write") {
        return rbac_denied("memory.write");
    }
    if scope == "GLOBAL" && ctx.settings.tier != 0 {
        return ToolOutput::error(
            "Error: RBAC — only root workspaces (tier 0) can write to GLOBAL scope. Non-root workspaces may use LOCAL or TEAM scope.",
        );
    }
    let src = match resolve_source(ctx, args, None) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let body = json!({"content": redact_secrets(content), "scope": scope, "workspace_id": src});
    let response = match ctx
        .call(PlatformCall::post_json(
            format!("/workspaces/{src}/memories"),
            &src,
            body,
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("Error saving memory: {e}")),
    };
    if matches!(response.status, 200 | 201) {
        let parsed = response.json();
        let id = parsed
            .as_ref()
            .and_then(|v| v.get("id"))
            .cloned()
            .unwrap_or(Value::Null);
        // The output schema types `id` as a string, an integer or null; any other shape the
        // platform sends is passed on as its JSON text rather than breaking the schema.
        let id = match id {
            Value::String(_) | Value::Null => id,
            Value::Number(n) if n.is_i64() || n.is_u64() => Value::Number(n),
            Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                Value::String(id.to_string())
            }
        };
        return ToolOutput::Json(json!({"success": true, "id": id, "scope": scope}));
    }
    ToolOutput::error(format!(
        "Error: saving memory failed (HTTP {}): {}",
        response.status,
        response.error_message()
    ))
}

/// One recalled row as a line: `[<scope or ?>] <content>`.
fn memory_line(row: &Value) -> String {
    let scope = row
        .get("scope")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("?");
    let content = match row.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    format!("[{scope}] {content}")
}

/// `recall_memory`.
pub(crate) async fn recall_memory(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let query = match args.opt_nonblank("query") {
        Ok(q) => q,
        Err(e) => return e,
    };
    let scope = match args.opt_str("scope").and_then(parse_scope) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if !ctx.settings.rbac.permits("memory.read") {
        return rbac_denied("memory.read");
    }
    let src = match resolve_source(ctx, args, None) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut call = PlatformCall::get(format!("/workspaces/{src}/memories"), &src)
        .with_query("workspace_id", src.clone());
    if let Some(q) = query {
        call = call.with_query("q", q);
    }
    if let Some(s) = scope {
        call = call.with_query("scope", s);
    }
    let response = match ctx.call(call).await {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("Error recalling memory: {e}")),
    };
    if !response.is_success() {
        return ToolOutput::error(format!(
            "Error recalling memory: HTTP {}: {}",
            response.status,
            response.error_message()
        ));
    }
    match response.json() {
        Some(Value::Array(rows)) if rows.is_empty() => {
            ToolOutput::Text("No memories found.".to_owned())
        }
        Some(Value::Array(rows)) => {
            ToolOutput::Text(rows.iter().map(memory_line).collect::<Vec<_>>().join("\n"))
        }
        Some(other) => ToolOutput::Text(other.to_string()),
        None => ToolOutput::error(format!(
            "Error recalling memory: response was not JSON: {}",
            response.snippet(200)
        )),
    }
}
