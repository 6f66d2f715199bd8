//! `list_peers` (`GET /registry/{src}/peers`) and registry discovery
//! (`GET /registry/discover/{id}`), both with `X-Workspace-ID: <src>`.
//!
//! With more than one workspace and no `source_workspace_id`, `list_peers` aggregates over
//! every workspace and tags each line `via: <first 8 chars of the source>`; each listed peer
//! is remembered with the workspace that can reach it, which is how later calls route
//! (reference §6.1). Names, roles and statuses are sanitised before they are shown or cached
//! (defect 29); peer records without a valid UUID id are skipped instead of crashing.

use molecule_mcp_core::ids::{normalize_uuid, short_id};
use molecule_mcp_core::sanitize::{display_field, sanitize_display};
use serde_json::Value;

use super::args::{Args, parse_registered};
use super::client::{CallError, PlatformCall};
use super::context::ToolContext;
use crate::mcp::ToolOutput;

/// One peer as shown to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLine {
    /// Normalised UUID.
    pub id: String,
    /// Sanitised name (falls back to the short id).
    pub name: String,
    /// Sanitised status or `unknown`.
    pub status: String,
    /// Sanitised role or empty.
    pub role: String,
}

/// Parses one platform peer record; `None` when it has no valid id.
pub fn parse_peer(record: &Value) -> Option<PeerLine> {
    let id = normalize_uuid(record.get("id")?.as_str()?)?;
    let name = display_field(record.get("name")).unwrap_or_else(|| short_id(&id).to_owned());
    let status = display_field(record.get("status")).unwrap_or_else(|| "unknown".to_owned());
    let role = display_field(record.get("role")).unwrap_or_default();
    Some(PeerLine {
        id,
        name,
        status,
        role,
    })
}

/// The diagnostic for a failed peers call on workspace `src` (reference texts; the 404 names
/// the queried workspace, defect 30).
fn diagnostic(
    ctx: &ToolContext,
    src: &str,
    result: &Result<super::client::ApiResponse, CallError>,
) -> Result<Vec<Value>, String> {
    let response = match result {
        // Not a network problem: this runtime does not act as that workspace at all.
        Err(e @ (CallError::Rejected { .. } | CallError::NotRegistered(_))) => {
            return Err(e.to_string());
        }
        Err(e @ (CallError::Build(_) | CallError::Transport(_))) => {
            return Err(format!(
                "Cannot reach platform at {}: {e}",
                ctx.platform.base()
            ));
        }
        Ok(r) => r,
    };
    match response.status {
        200 => match response.json() {
            None => Err(format!(
                "Platform returned 200 but body was not JSON: {}",
                response.snippet(120)
            )),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!(
                "Platform returned 200 but body was not a list: {}",
                json_type(&other)
            )),
        },
        401 | 403 => Err(format!(
            "Authentication to platform failed (HTTP {}). The workspace bearer token may be invalid — restarting the workspace usually re-mints it.",
            response.status
        )),
        404 => Err(format!(
            "Workspace ID {src} is not registered with the platform (HTTP 404). Re-registration via the platform's /registry/register endpoint is needed."
        )),
        500..=599 => Err(format!("Platform error: HTTP {}.", response.status)),
        other => Err(format!("Unexpected platform response: HTTP {other}.")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `list_peers`.
pub(crate) async fn list_peers(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let sources = match args.opt_nonblank("source_workspace_id") {
        Err(e) => return e,
        Ok(Some(raw)) => match parse_registered(ctx, "source_workspace_id", raw) {
            Ok(id) => vec![id],
            Err(e) => return e,
        },
        Ok(None) => ctx.workspaces.ids(),
    };
    let aggregate = sources.len() > 1;
    let mut lines: Vec<String> = Vec::new();
    let mut diagnostics: Vec<String> = Vec::new();
    for src in &sources {
        let call = PlatformCall::get(format!("/registry/{src}/peers"), src).with_workspace_header();
        let result = ctx.call(call).await;
        let records = match diagnostic(ctx, src, &result) {
            Ok(records) => records,
            Err(diag) => {
                diagnostics.push(format!("[{}] {diag}", short_id(src)));
                continue;
            }
        };
        for record in &records {
            let Some(peer) = parse_peer(record) else {
                continue;
            };
            ctx.peers.set_source(&peer.id, src);
            ctx.peers.set_display(
                &peer.id,
                Some(peer.name.clone()),
                (!peer.role.is_empty()).then(|| peer.role.clone()),
            );
            let via = if aggregate {
                format!(", via: {}", short_id(src))
            } else {
                String::new()
            };
            lines.push(format!(
                "- {} (ID: {}, status: {}, role: {}{via})",
                peer.name, peer.id, peer.status, peer.role
            ));
        }
    }
    if lines.is_empty() {
        if diagnostics.is_empty() {
            return ToolOutput::Text("You have no peers in the platform registry. (No parent, no children, no siblings registered.)".to_owned());
        }
        return ToolOutput::error(format!("No peers found. {}", diagnostics.join("; ")));
    }
    if !diagnostics.is_empty() {
        lines.push(format!(
            "(Some workspaces could not list peers: {})",
            diagnostics.join("; ")
        ));
    }
    ToolOutput::Text(lines.join("\n"))
}

/// What discovery said about a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// 200: the sanitised name, if any.
    Found(Option<String>),
    /// 403/404: the caller may not talk to the target (or it does not exist).
    NotAccessible(u16),
    /// 401: our token was rejected.
    AuthFailed,
    /// Anything else (5xx, transport, odd body): not conclusive; the A2A call decides.
    Inconclusive(String),
}

/// `GET /registry/discover/{target}` as `src`.
pub async fn discover(ctx: &ToolContext, src: &str, target: &str) -> Discovery {
    let call =
        PlatformCall::get(format!("/registry/discover/{target}"), src).with_workspace_header();
    match ctx.call(call).await {
        Err(e) => Discovery::Inconclusive(e.to_string()),
        Ok(r) => match r.status {
            200 => {
                let name = r.json().and_then(|v| {
                    v.get("name")
                        .and_then(Value::as_str)
                        .and_then(sanitize_display)
                });
                if name.is_some() {
                    ctx.peers.set_display(target, name.clone(), None);
                }
                Discovery::Found(name)
            }
            401 => Discovery::AuthFailed,
            403 | 404 => Discovery::NotAccessible(r.status),
            other => Discovery::Inconclusive(format!("HTTP {other}: {}", r.error_message())),
        },
    }
}
