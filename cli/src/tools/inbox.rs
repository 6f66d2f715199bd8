//! `wait_for_message`, `inbox_peek`, `inbox_pop` over [`InboxAccess`](super::InboxAccess).
//!
//! Messages are passed through as the inbox produced them, plus the same enrichment the push
//! path gives peer messages: `agent_card_url` (`<platform>/registry/discover/<peer>`, empty
//! when the peer id is not a UUID) and `peer_name` / `peer_role` from the peer cache. Names
//! and roles are sanitised, including ones the inbox already attached, because whoever
//! registered the peer chose them and they go into the model's context.

use std::time::Duration;

use molecule_mcp_core::ids::normalize_uuid;
use molecule_mcp_core::sanitize::sanitize_display;
use serde_json::{Value, json};

use super::args::Args;
use super::context::{PopOutcome, ToolContext};
use crate::mcp::{CallEnv, ToolOutput};

/// Returned when the inbox is not running (`MOLECULE_MCP_DISABLE_INBOX`, or an embedder
/// without an inbox).
pub const NOT_ENABLED: &str = "Error: inbox polling is not enabled in this runtime. The standalone molecule-mcp wrapper activates it; in-container runtimes receive messages via push delivery and do not need these tools.";

/// Longest `wait_for_message` block, seconds.
pub const MAX_WAIT_SECS: f64 = 300.0;
/// Default `wait_for_message` block, seconds.
pub const DEFAULT_WAIT_SECS: f64 = 60.0;
/// Default and cap of `inbox_peek`'s `limit`.
pub const DEFAULT_PEEK: usize = 10;
const MAX_PEEK: usize = 200;

/// Adds poll-path enrichment to one message (see module docs).
pub fn enrich(ctx: &ToolContext, message: Value) -> Value {
    let Value::Object(mut map) = message else {
        return message;
    };
    let peer_raw = map
        .get("peer_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if peer_raw.is_empty() {
        return Value::Object(map);
    }
    // Whatever the inbox attached is re-sanitised; unusable values are dropped.
    for key in ["peer_name", "peer_role"] {
        let cleaned = map
            .get(key)
            .and_then(Value::as_str)
            .and_then(sanitize_display);
        match cleaned {
            Some(s) => map.insert(key.to_owned(), Value::String(s)),
            None => map.remove(key),
        };
    }
    match normalize_uuid(&peer_raw) {
        Some(peer) => {
            map.insert(
                "agent_card_url".to_owned(),
                Value::String(ctx.platform().join(&format!("/registry/discover/{peer}"))),
            );
            if let Some(info) = ctx.peers.get(&peer) {
                if let Some(name) = info.name.and_then(|n| sanitize_display(&n)) {
                    map.entry("peer_name").or_insert(Value::String(name));
                }
                if let Some(role) = info.role.and_then(|r| sanitize_display(&r)) {
                    map.entry("peer_role").or_insert(Value::String(role));
                }
            }
        }
        None => {
            map.insert("agent_card_url".to_owned(), Value::String(String::new()));
        }
    }
    Value::Object(map)
}

/// Parses `timeout_secs`: absent ⇒ 60, clamped to [0, 300].
pub(crate) fn wait_timeout(args: Args<'_>) -> Result<f64, ToolOutput> {
    let secs = args
        .opt_number("timeout_secs")?
        .unwrap_or(DEFAULT_WAIT_SECS);
    Ok(secs.clamp(0.0, MAX_WAIT_SECS))
}

/// Parses `limit`: absent or ≤ 0 ⇒ 10, at most 200.
pub(crate) fn peek_limit(args: Args<'_>) -> Result<usize, ToolOutput> {
    Ok(match args.opt_int("limit")? {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(MAX_PEEK).min(MAX_PEEK),
        Some(_) | None => DEFAULT_PEEK,
    })
}

/// `wait_for_message`. Under a budget shorter than `timeout_secs` (a client without a
/// progress token) it waits only for the budget and then says "nothing yet — call again",
/// so the client's request timeout never fires first.
pub(crate) async fn wait_for_message(
    ctx: &ToolContext,
    args: Args<'_>,
    env: &CallEnv,
) -> ToolOutput {
    let Some(inbox) = ctx.inbox.as_ref().filter(|i| i.enabled()) else {
        return ToolOutput::error(NOT_ENABLED);
    };
    let secs = match wait_timeout(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let wanted = Duration::from_secs_f64(secs);
    let (wait, capped) = env.cap(wanted);
    env.waiting_for("waiting for a message", Some(wanted));
    match inbox.wait_next(wait).await {
        // The result is declared as an object (MCP structured content); wrap anything else.
        Some(message @ Value::Object(_)) => ToolOutput::Json(enrich(ctx, message)),
        Some(other) => ToolOutput::Json(json!({"message": other})),
        None if capped => ToolOutput::Json(json!({
            "timeout": true,
            "timeout_secs": secs,
            "waited_secs": wait.as_secs_f64(),
            "call_again": true,
            "note": format!(
                "Nothing yet after {} s. This call returns early so that your MCP client's request timeout does not fire (the request carried no progress token); call wait_for_message again to keep waiting.",
                wait.as_secs()
            ),
        })),
        None => ToolOutput::Json(json!({"timeout": true, "timeout_secs": secs})),
    }
}

/// `inbox_peek`.
pub(crate) async fn inbox_peek(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let Some(inbox) = ctx.inbox.as_ref().filter(|i| i.enabled()) else {
        return ToolOutput::error(NOT_ENABLED);
    };
    let limit = match peek_limit(args) {
        Ok(l) => l,
        Err(e) => return e,
    };
    ToolOutput::Json(Value::Array(
        inbox
            .peek(limit)
            .await
            .into_iter()
            .map(|m| enrich(ctx, m))
            .collect(),
    ))
}

/// `inbox_pop`.
pub(crate) async fn inbox_pop(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let Some(inbox) = ctx.inbox.as_ref().filter(|i| i.enabled()) else {
        return ToolOutput::error(NOT_ENABLED);
    };
    let id = match args.opt_nonblank("activity_id") {
        Ok(Some(id)) => id,
        Ok(None) => return ToolOutput::error("Error: activity_id is required."),
        Err(e) => return e,
    };
    match inbox.pop(id).await {
        PopOutcome::Removed(_) => ToolOutput::Json(json!({"removed": true, "activity_id": id})),
        PopOutcome::NotQueued => ToolOutput::Json(json!({"removed": false, "activity_id": id})),
        PopOutcome::NotSaved(_) => ToolOutput::error(not_saved_text(id)),
    }
}

/// The `inbox_pop` answer when the removal could not be written in time. It is an error
/// because the removal is not durable: a restart before the retried write succeeds hands
/// the message out again.
pub fn not_saved_text(activity_id: &str) -> String {
    format!(
        "Error: message {activity_id} was removed from the queue, but the removal could not be saved to the \
         inbox state file (the write keeps failing; the molecule-mcp log names the file and the error). \
         Treat the message as handled and do not pop it again: it is not handed out again while this process \
         runs, and the save is retried automatically, but if molecule-mcp restarts before a save succeeds the \
         message is delivered again. Fix: free disk space or make the state directory writable."
    )
}
