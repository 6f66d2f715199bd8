//! `list_peers` (`GET /registry/{src}/peers`) and registry discovery
//! (`GET /registry/discover/{id}`), both with `X-Workspace-ID: <src>`.
//!
//! With more than one workspace and no `source_workspace_id`, `list_peers` aggregates over
//! every workspace and tags each line `via: <first 8 chars of the source>`; each listed peer
//! is remembered with the workspace that can reach it, which is how later calls pick their
//! source workspace. Names, roles and statuses are sanitised before they are shown or cached
//! (whoever registered the peer chose them); peer records without a valid UUID id are
//! skipped instead of failing the whole list.

use molecule_mcp_core::ids::{normalize_uuid, short_id};
use molecule_mcp_core::sanitize::{display_field, json_type, sanitize_display};
use serde_json::Value;

use super::args::{Args, parse_registered};
use super::client::{CallError, PlatformCall};
use super::context::ToolContext;
use crate::mcp::ToolOutput;
use molecule_mcp_core::platform_request::response_cap;

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

/// Why one workspace's peer list could not be read (shown to the model per workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeersProblem {
    /// This runtime does not act as that workspace (unknown, or rejected at register).
    NotServed(CallError),
    /// No answer from the platform.
    Unreachable {
        /// The platform's base URL.
        platform: String,
        /// What failed.
        error: CallError,
    },
    /// 200, but not JSON.
    NotJson {
        /// The start of the body.
        body: String,
    },
    /// 200, but not a JSON array.
    NotAList {
        /// The JSON type that came instead.
        got: &'static str,
    },
    /// 401 or 403.
    AuthFailed {
        /// HTTP status.
        status: u16,
    },
    /// 404: the platform does not know the queried workspace (named, so a multi-workspace
    /// runtime shows which of its workspaces is affected).
    NotRegistered {
        /// The workspace that was queried.
        workspace: String,
    },
    /// 5xx.
    PlatformError {
        /// HTTP status.
        status: u16,
    },
    /// Anything else.
    Unexpected {
        /// HTTP status.
        status: u16,
    },
}

impl std::fmt::Display for PeersProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeersProblem::NotServed(e) => write!(f, "{e}"),
            PeersProblem::Unreachable { platform, error } => {
                write!(f, "Cannot reach platform at {platform}: {error}")
            }
            PeersProblem::NotJson { body } => {
                write!(f, "Platform returned 200 but body was not JSON: {body}")
            }
            PeersProblem::NotAList { got } => {
                write!(f, "Platform returned 200 but body was not a list: {got}")
            }
            PeersProblem::AuthFailed { status } => write!(
                f,
                "Authentication to platform failed (HTTP {status}). The workspace bearer token may be invalid — restarting the workspace usually re-mints it."
            ),
            PeersProblem::NotRegistered { workspace } => write!(
                f,
                "Workspace ID {workspace} is not registered with the platform (HTTP 404). Re-registration via the platform's /registry/register endpoint is needed."
            ),
            PeersProblem::PlatformError { status } => write!(f, "Platform error: HTTP {status}."),
            PeersProblem::Unexpected { status } => {
                write!(f, "Unexpected platform response: HTTP {status}.")
            }
        }
    }
}

impl std::error::Error for PeersProblem {}

/// The peer records of a peers call on workspace `src`, or why there are none.
fn peer_records(
    ctx: &ToolContext,
    src: &str,
    result: &Result<super::client::ApiResponse, CallError>,
) -> Result<Vec<Value>, PeersProblem> {
    let response = match result {
        // Not a network problem: this runtime does not act as that workspace at all.
        Err(e @ (CallError::Rejected { .. } | CallError::NotRegistered(_))) => {
            return Err(PeersProblem::NotServed(e.clone()));
        }
        Err(e @ (CallError::Build(_) | CallError::Transport(_))) => {
            return Err(PeersProblem::Unreachable {
                platform: ctx.platform().base().to_owned(),
                error: e.clone(),
            });
        }
        Ok(r) => r,
    };
    match response.status {
        200 => match response.json() {
            None => Err(PeersProblem::NotJson {
                body: response.snippet(120),
            }),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(PeersProblem::NotAList {
                got: json_type(&other),
            }),
        },
        status @ (401 | 403) => Err(PeersProblem::AuthFailed { status }),
        404 => Err(PeersProblem::NotRegistered {
            workspace: src.to_owned(),
        }),
        status @ 500..=599 => Err(PeersProblem::PlatformError { status }),
        status => Err(PeersProblem::Unexpected { status }),
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
        let call = PlatformCall::get(format!("/registry/{src}/peers"), src)
            .with_workspace_header()
            .with_max_response_bytes(response_cap::PEERS);
        let result = ctx.call(call).await;
        let records = match peer_records(ctx, src, &result) {
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
    let call = PlatformCall::get(format!("/registry/discover/{target}"), src)
        .with_workspace_header()
        .with_max_response_bytes(response_cap::PEERS);
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
