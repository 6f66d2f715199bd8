//! `GET /workspaces/:id` (auth class O: no auth).

use serde_json::json;

use super::{Handled, Reply, StubRequest};
use crate::ids::is_uuid;
use crate::state::State;
use crate::time::format_rfc3339_micros;
use crate::types::WorkspaceStatus;

pub(super) fn get(st: &mut State, req: &StubRequest, id: &str) -> Handled {
    if !is_uuid(id) {
        return Err(Reply::error(400, "invalid workspace ID"));
    }
    let w = st
        .ws(id)
        .ok_or_else(|| Reply::error(404, "workspace not found"))?;
    if w.status == WorkspaceStatus::Removed && req.query("include_removed") != Some("true") {
        return Err(Reply::json(
            410,
            &json!({
                "error": "workspace removed",
                "id": w.id,
                "removed_at": w.removed_at.map(format_rfc3339_micros),
                "hint": "this workspace was deleted; create a new one and re-run the agent with its credentials",
            }),
        ));
    }
    Ok(Reply::json(
        200,
        &json!({
            "id": w.id, "name": w.name, "role": w.role, "tier": w.tier, "status": w.status.as_str(),
            "agent_card": w.agent_card, "url": w.url, "parent_id": w.parent_id,
            "active_tasks": w.active_tasks, "max_concurrent_tasks": w.max_concurrent_tasks,
            "last_error_rate": w.error_rate, "uptime_seconds": w.uptime_seconds, "runtime": w.runtime,
            "x": 0, "y": 0, "collapsed": false, "last_outbound_at": null,
        }),
    ))
}
