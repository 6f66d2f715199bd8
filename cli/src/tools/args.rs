//! Tool-argument extraction and workspace routing.
//!
//! Arguments arrive as a JSON object from the model. Absent and `null` mean "not given";
//! a value of the wrong type is a readable tool error the model can correct, never a crash.
//!
//! Routing: every id that ends up in a URL path is validated as a UUID first (so an
//! argument cannot reach another path on the platform), and a *source* workspace (the one whose token authenticates the call) must
//! be one this runtime serves. [`resolve_source`] picks it: explicit argument → the peer
//! cache's entry for the peer → the primary workspace.

use molecule_mcp_core::ids::normalize_uuid;
use serde_json::{Map, Value};

use super::context::ToolContext;
use crate::mcp::ToolOutput;

/// Read-only view of one call's arguments.
#[derive(Clone, Copy)]
pub(crate) struct Args<'a>(pub(crate) &'a Map<String, Value>);

fn type_error(key: &str, expected: &str) -> ToolOutput {
    ToolOutput::error(format!("Error: `{key}` must be {expected}"))
}

impl<'a> Args<'a> {
    fn present(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A string argument; `None` when absent or null.
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, ToolOutput> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(type_error(key, "a string")),
        }
    }

    /// A string argument, trimmed; `None` when absent, null or blank.
    pub(crate) fn opt_nonblank(&self, key: &str) -> Result<Option<&'a str>, ToolOutput> {
        Ok(self.opt_str(key)?.map(str::trim).filter(|s| !s.is_empty()))
    }

    /// An integer argument (integral floats and numeric strings accepted).
    pub(crate) fn opt_int(&self, key: &str) -> Result<Option<i64>, ToolOutput> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    Some(_) | None => Err(type_error(key, "an integer")),
                },
            },
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| type_error(key, "an integer")),
            Some(_) => Err(type_error(key, "an integer")),
        }
    }

    /// A number argument (numeric strings accepted).
    pub(crate) fn opt_number(&self, key: &str) -> Result<Option<f64>, ToolOutput> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| type_error(key, "a number")),
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Some(f)),
                Ok(_) | Err(_) => Err(type_error(key, "a number")),
            },
            Some(_) => Err(type_error(key, "a number")),
        }
    }

    /// An array-of-strings argument.
    pub(crate) fn opt_str_list(&self, key: &str) -> Result<Option<Vec<&'a str>>, ToolOutput> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| type_error(key, "an array of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(type_error(key, "an array of strings")),
        }
    }
}

/// Renders a user-supplied value for an error message: quoted, escaped, at most 80 chars.
pub(crate) fn quote(raw: &str) -> String {
    let cut: String = raw.chars().take(80).collect();
    let more = if raw.chars().count() > 80 { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// Validates a workspace-id argument (target, peer); returns it lower-cased.
pub(crate) fn parse_workspace_id(field: &str, raw: &str) -> Result<String, ToolOutput> {
    normalize_uuid(raw).ok_or_else(|| {
        ToolOutput::error(format!(
            "Error: `{field}` must be a workspace UUID (got {})",
            quote(raw)
        ))
    })
}

/// Validates an explicit source workspace: a UUID that this runtime serves.
pub(crate) fn parse_registered(
    ctx: &ToolContext,
    field: &str,
    raw: &str,
) -> Result<String, ToolOutput> {
    let id = parse_workspace_id(field, raw)?;
    if ctx.workspaces.contains(&id) {
        Ok(id)
    } else {
        Err(ToolOutput::error(format!(
            "Error: `{field}` {id} is not one of this runtime's workspaces (configured: {})",
            ctx.workspaces.ids().join(", ")
        )))
    }
}

/// Picks the workspace to act as: explicit `source_workspace_id` → the cached source for
/// `peer` → the primary workspace.
pub(crate) fn resolve_source(
    ctx: &ToolContext,
    args: Args<'_>,
    peer: Option<&str>,
) -> Result<String, ToolOutput> {
    if let Some(raw) = args.opt_nonblank("source_workspace_id")? {
        return parse_registered(ctx, "source_workspace_id", raw);
    }
    if let Some(source) = peer
        .and_then(|p| ctx.peers.get(p))
        .and_then(|info| info.source)
        && ctx.workspaces.contains(&source)
    {
        return Ok(source);
    }
    Ok(ctx.workspaces.primary())
}
