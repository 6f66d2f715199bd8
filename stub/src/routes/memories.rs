//! `POST` / `GET /workspaces/:id/memories`. Search is a case-insensitive
//! substring match (the platform uses full-text or embeddings).

use serde_json::{Value, json};

use super::{Handled, Reply, StubRequest, json_object, opt_str, req_str};
use crate::state::{Memory, State};
use crate::time::{format_rfc3339_micros, unix_micros_now};

const SCOPES: [&str; 3] = ["LOCAL", "TEAM", "GLOBAL"];

pub(super) fn commit(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    let invalid = || Reply::error(400, "invalid request body");
    let body = json_object(&req.body).ok_or_else(invalid)?;
    let content = req_str(&body, "content").map_err(|()| invalid())?;
    let scope = req_str(&body, "scope").map_err(|()| invalid())?;
    let namespace = opt_str(&body, "namespace")
        .map_err(|()| invalid())?
        .filter(|n| !n.is_empty());
    let namespace = namespace.unwrap_or_else(|| "general".into());
    if !SCOPES.contains(&scope.as_str()) {
        return Err(Reply::error(400, "scope must be LOCAL, TEAM, or GLOBAL"));
    }
    if namespace.chars().count() > 50 {
        return Err(Reply::error(400, "namespace must be <= 50 characters"));
    }
    let content = if scope == "GLOBAL" {
        if st.ws(ws).is_some_and(|w| w.parent_id.is_some()) {
            return Err(Reply::error(
                403,
                "only root workspaces can write GLOBAL memories",
            ));
        }
        // Prevents a stored memory from forging the wrapper other workspaces see.
        content.replace("[MEMORY ", "[_MEMORY ")
    } else {
        content
    };
    let id = st.rng.uuid();
    st.memories.push(Memory {
        id: id.clone(),
        workspace_id: ws.to_string(),
        content,
        scope: scope.clone(),
        namespace: namespace.clone(),
        created_at: unix_micros_now(),
    });
    Ok(Reply::json(
        201,
        &json!({"id": id, "scope": scope, "namespace": namespace}),
    ))
}

/// `scope=LOCAL` own LOCAL; `TEAM` TEAM memories of self and of workspaces in the same tree
/// it may talk to; `GLOBAL` every GLOBAL memory (wrapped); anything else: all of its own.
pub(super) fn search(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    let scope = req.query("scope").filter(|s| SCOPES.contains(s));
    let q = req.query("q").map(str::to_lowercase);
    let namespace = req.query("namespace");
    let limit = req
        .query("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| (1..50).contains(l))
        .unwrap_or(50);
    let me_root = st.ws(ws).is_none_or(|w| w.parent_id.is_none());
    let visible = |m: &&Memory| match scope {
        Some("LOCAL") => m.workspace_id == ws && m.scope == "LOCAL",
        Some("TEAM") => {
            let other_root = st.ws(&m.workspace_id).is_none_or(|w| w.parent_id.is_none());
            // Two unrelated roots may "communicate" (`State::can_communicate`) but are not a team.
            let same_team = m.workspace_id == ws
                || (st.can_communicate(ws, &m.workspace_id) && !(me_root && other_root));
            m.scope == "TEAM" && same_team
        }
        Some(_) => m.scope == "GLOBAL",
        None => m.workspace_id == ws,
    };
    let mut found: Vec<&Memory> = st
        .memories
        .iter()
        .filter(visible)
        .filter(|m| namespace.is_none_or(|n| m.namespace == n))
        .filter(|m| {
            q.as_deref()
                .is_none_or(|q| m.content.to_lowercase().contains(q))
        })
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.created_at));
    let out: Vec<Value> = found
        .into_iter()
        .take(limit)
        .map(|m| {
            let content = if m.scope == "GLOBAL" {
                format!(
                    "[MEMORY id={} scope=GLOBAL from={}]: {}",
                    m.id, m.workspace_id, m.content
                )
            } else {
                m.content.clone()
            };
            json!({
                "id": m.id, "workspace_id": m.workspace_id, "content": content, "scope": m.scope,
                "namespace": m.namespace, "created_at": format_rfc3339_micros(m.created_at),
            })
        })
        .collect();
    Ok(Reply::json(200, &Value::Array(out)))
}
