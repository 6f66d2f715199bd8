//! `POST /workspaces/:id/delegate` and `GET /workspaces/:id/delegations` (the list is built
//! from the workspace's delegation activity rows, as on the platform).
//!
//! The platform runs the delegation's A2A call in the background. The stub does the
//! synchronous part of that at once — unknown or unreachable targets fail, poll-mode
//! targets get the `message/send` queued in their feed — and then leaves the delegation
//! `dispatched` until the test calls `complete_delegation` / `fail_delegation`.

use serde_json::{Map, Value, json};

use super::{Handled, Reply, StubRequest, json_object, opt_str, req_str};
use crate::ids::is_uuid;
use crate::state::{ActivityRow, Delegation, State};
use crate::time::{format_rfc3339_micros, unix_micros_now};
use crate::types::{DelegationSnapshot, DeliveryMode};

const LIST_MAX: usize = 50;
const PREVIEW_MAX: usize = 300;

pub(super) fn delegate(st: &mut State, req: &StubRequest, source: &str) -> Handled {
    let invalid = || Reply::error(400, "invalid delegation request");
    let body = json_object(&req.body).ok_or_else(invalid)?;
    let target = req_str(&body, "target_id").map_err(|()| invalid())?;
    let task = req_str(&body, "task").map_err(|()| invalid())?;
    let key = opt_str(&body, "idempotency_key")
        .map_err(|()| invalid())?
        .filter(|k| !k.is_empty());
    if !is_uuid(&target) {
        return Err(Reply::error(400, "target_id must be a valid UUID"));
    }
    if target == source {
        return Err(Reply::error(400, "self-delegation not permitted"));
    }
    if let Some(k) = &key {
        let same = |d: &Delegation| {
            d.snap.source_id == source && d.snap.idempotency_key.as_ref() == Some(k)
        };
        // A failed delegation with the same key is deleted and retried.
        st.delegations
            .retain(|d| !(same(d) && d.snap.status == "failed"));
        if let Some(d) = st.delegations.iter().find(|d| same(d)) {
            return Ok(Reply::json(
                200,
                &json!({"delegation_id": d.snap.id, "status": d.snap.status, "target_id": d.snap.target_id, "idempotent_hit": true}),
            ));
        }
    }
    let id = st.rng.uuid();
    let now = unix_micros_now();
    let mut origin = ActivityRow::blank(source, "delegation");
    origin.source_id = Some(source.to_string());
    origin.target_id = Some(target.clone());
    origin.method = Some("delegate".into());
    origin.summary = Some(format!("Delegating to {target}"));
    origin.request_body = Some(json!({"task": task, "delegation_id": id}));
    let origin_activity_id = st.insert_activity(origin);
    let mut d = Delegation {
        snap: DelegationSnapshot {
            id: id.clone(),
            source_id: source.to_string(),
            target_id: target.clone(),
            task: task.clone(),
            idempotency_key: key,
            status: "dispatched".into(),
            error: None,
            response_preview: None,
        },
        created_at: now,
        origin_activity_id,
        result: None,
    };
    let target_mode = st.ws(&target).map(|w| w.delivery_mode);
    match target_mode {
        None => d.snap.status = "failed".into(),
        Some(_) if !st.can_communicate(source, &target) => d.snap.status = "failed".into(),
        Some(DeliveryMode::Poll) => {
            let mut row = ActivityRow::blank(&target, "a2a_receive");
            row.source_id = Some(source.to_string());
            row.target_id = Some(target.clone());
            row.method = Some("message/send".into());
            row.request_body = Some(json!({
                "jsonrpc": "2.0", "id": st.rng.uuid(), "method": "message/send",
                "params": {"message": {
                    "role": "user", "messageId": id, "parts": [{"type": "text", "text": task}],
                    "metadata": {"delegation_id": id},
                }},
            }));
            st.insert_activity(row);
        }
        Some(DeliveryMode::Push) => {}
    }
    let failed = d.snap.status == "failed";
    st.delegations.push(d);
    if failed {
        let reason = if target_mode.is_none() {
            "workspace not found"
        } else {
            "access denied: workspaces cannot communicate per hierarchy rules"
        };
        finish(st, &id, Err(reason.to_string()));
    }
    Ok(Reply::json(
        202,
        &json!({"delegation_id": id, "status": "delegated", "target_id": target}),
    ))
}

/// Moves a delegation to `completed` (with a preview) or `failed` (with an error). Returns
/// false for an unknown id.
pub(crate) fn finish(st: &mut State, delegation_id: &str, outcome: Result<String, String>) -> bool {
    let Some(idx) = st
        .delegations
        .iter()
        .position(|d| d.snap.id == delegation_id)
    else {
        return false;
    };
    let now = unix_micros_now();
    let result_id = st.rng.uuid();
    let push = st.opts.delegate_result_inbox_push;
    let Some(d) = st.delegations.get_mut(idx) else {
        return false;
    };
    d.result = Some((result_id, now));
    let text = match outcome {
        Ok(preview) => {
            d.snap.status = "completed".into();
            d.snap.error = None;
            d.snap.response_preview = Some(preview.clone());
            preview
        }
        Err(error) => {
            d.snap.status = "failed".into();
            d.snap.error = Some(error.clone());
            error
        }
    };
    let source = d.snap.source_id.clone();
    if push {
        let mut row = ActivityRow::blank(&source, "a2a_receive");
        row.source_id = Some(source.clone());
        row.method = Some("delegate_result".into());
        row.request_body = Some(json!({"delegation_id": delegation_id}));
        row.response_body = Some(json!({"text": text, "delegation_id": delegation_id}));
        st.insert_activity(row);
    }
    true
}

/// Newest first, at most 50: one entry per original `delegate`, one per result.
pub(super) fn list(st: &mut State, ws: &str) -> Handled {
    // (time, insertion index) so that a result never sorts before its own origin entry.
    let mut entries: Vec<((i64, usize), Value)> = Vec::new();
    for d in st.delegations.iter().filter(|d| d.snap.source_id == ws) {
        let s = &d.snap;
        let mut origin = entry(
            &d.origin_activity_id,
            s,
            &format!("Delegating to {}", s.target_id),
            &s.status,
            d.created_at,
        );
        origin.insert("delegation_id".into(), json!(s.id));
        if let Some(e) = &s.error {
            origin.insert("error".into(), json!(e));
        }
        entries.push(((d.created_at, entries.len()), Value::Object(origin)));
        if let Some((rid, at)) = &d.result {
            let mut res = entry(rid, s, "", &s.status, *at);
            if s.status == "completed" {
                res.insert("summary".into(), json!("Delegation completed"));
                res.insert("delegation_id".into(), json!(s.id));
                res.insert(
                    "response_preview".into(),
                    json!(preview(s.response_preview.as_deref().unwrap_or_default())),
                );
            } else {
                // As on the platform, the failure result row carries no delegation_id.
                res.insert("summary".into(), json!("Delegation failed"));
                res.insert("error".into(), json!(s.error));
            }
            entries.push(((*at, entries.len()), Value::Object(res)));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let out: Vec<Value> = entries.into_iter().take(LIST_MAX).map(|(_, v)| v).collect();
    Ok(Reply::json(200, &Value::Array(out)))
}

fn entry(
    id: &str,
    s: &DelegationSnapshot,
    summary: &str,
    status: &str,
    at: i64,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("type".into(), json!("delegation"));
    m.insert("source_id".into(), json!(s.source_id));
    m.insert("target_id".into(), json!(s.target_id));
    m.insert("summary".into(), json!(summary));
    m.insert("status".into(), json!(status));
    m.insert("created_at".into(), json!(format_rfc3339_micros(at)));
    m
}

fn preview(text: &str) -> String {
    if text.chars().count() <= PREVIEW_MAX {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(PREVIEW_MAX).collect();
    cut.push_str("...");
    cut
}
