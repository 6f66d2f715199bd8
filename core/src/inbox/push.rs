//! The `notifications/claude/channel` payload for a new message: `meta` (every value a
//! string, every value validated or sanitised) and `content` (header, text, reply hint).
//!
//! In multi-workspace mode `meta` includes `arrival_workspace_id` and the reply hint names
//! the workspace to answer from, so the agent replies as the workspace that was addressed;
//! `content` lists attached files, so the agent learns that a file came with the message.
//!
//! Peer names and roles come from the caller's peer cache ([`PeerLabel`]); they are chosen
//! by whoever registered the peer, so they go through [`sanitize_display`] before they reach
//! the model, and are only used when the peer id is a valid UUID.

use serde_json::{Map, Value};

use super::message::{InboxMessage, MessageKind};
use super::timestamp::parse_rfc3339;
use crate::ids::{is_normalized_uuid, normalize_uuid};
use crate::platform_url::PlatformUrl;
use crate::sanitize::{sanitize_display, strip_controls};

/// What the caller knows about a message's sender (from discovery / `list_peers`). Raw;
/// sanitised here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerLabel {
    /// Peer name.
    pub name: Option<String>,
    /// Peer role.
    pub role: Option<String>,
}

/// The `params.meta` object of the channel notification.
pub fn push_meta(msg: &InboxMessage, platform: &PlatformUrl, peer: &PeerLabel) -> Value {
    let mut meta = Map::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_owned(), Value::String(v));
    };
    put("source", "molecule".to_owned());
    put("kind", msg.kind().as_str().to_owned());
    let method = match msg.method.as_str() {
        m @ ("message/send" | "tasks/send" | "tasks/get" | "notify" | "") => m.to_owned(),
        _ => String::new(),
    };
    put("method", method);
    put(
        "activity_id",
        if is_normalized_uuid(&msg.activity_id) {
            msg.activity_id.clone()
        } else {
            String::new()
        },
    );
    put(
        "ts",
        if parse_rfc3339(&msg.created_at).is_some() {
            msg.created_at.clone()
        } else {
            String::new()
        },
    );
    let peer_id = normalize_uuid(&msg.peer_id);
    put("peer_id", peer_id.clone().unwrap_or_default());
    if let Some(peer_id) = peer_id {
        if let Some(name) = peer.name.as_deref().and_then(sanitize_display) {
            put("peer_name", name);
        }
        if let Some(role) = peer.role.as_deref().and_then(sanitize_display) {
            put("peer_role", role);
        }
        put(
            "agent_card_url",
            platform.join(&format!("/registry/discover/{peer_id}")),
        );
    }
    if let Some(ws) = msg
        .arrival_workspace_id
        .as_deref()
        .filter(|w| !w.is_empty())
    {
        put(
            "arrival_workspace_id",
            normalize_uuid(ws).unwrap_or_default(),
        );
    }
    Value::Object(meta)
}

/// The notification's `content`: a header naming the sender, the text verbatim, attached
/// files, and how to reply.
pub fn push_content(msg: &InboxMessage, peer: &PeerLabel) -> String {
    let arrival = msg.arrival_workspace_id.as_deref().and_then(normalize_uuid);
    let mut out = String::new();
    let reply = match (msg.kind(), normalize_uuid(&msg.peer_id)) {
        (MessageKind::CanvasUser, _) => {
            out.push_str("[from canvas user]\n");
            match &arrival {
                Some(ws) => format!(
                    "↩ Reply: send_message_to_user({{message: \"...\", workspace_id: \"{ws}\"}})"
                ),
                None => "↩ Reply: send_message_to_user({message: \"...\"})".to_owned(),
            }
        }
        (MessageKind::PeerAgent, Some(peer_id)) => {
            let name = peer.name.as_deref().and_then(sanitize_display);
            let role = peer.role.as_deref().and_then(sanitize_display);
            let identity = match (name, role) {
                (Some(n), Some(r)) => format!("{n} ({r})"),
                (Some(n), None) => n,
                (None, Some(_) | None) => "peer-agent".to_owned(),
            };
            out.push_str(&format!("[from {identity} · peer_id={peer_id}]\n"));
            match &arrival {
                Some(ws) => format!(
                    "↩ Reply: delegate_task({{workspace_id: \"{peer_id}\", task: \"...\", source_workspace_id: \"{ws}\"}})"
                ),
                None => format!(
                    "↩ Reply: delegate_task({{workspace_id: \"{peer_id}\", task: \"...\"}})"
                ),
            }
        }
        // A sender id that is not a UUID is not echoed into the header or an instruction.
        (MessageKind::PeerAgent, None) => {
            out.push_str("[from peer-agent · peer_id invalid]\n");
            String::new()
        }
    };
    out.push_str(&msg.text);
    for f in &msg.files {
        let name = sanitize_display(&f.name).unwrap_or_else(|| "file".to_owned());
        let uri = strip_controls(&f.uri);
        out.push_str(&format!("\n[attachment: {name} — {uri}]"));
    }
    if !reply.is_empty() {
        out.push('\n');
        out.push_str(&reply);
    }
    out
}
