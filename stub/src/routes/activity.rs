//! The activity feed: `GET /workspaces/:id/activity` (the poll-mode inbox),
//! `POST /workspaces/:id/activity` (self-report) and `POST /workspaces/:id/notify`
//! (which echoes a `method:"notify"` row into the sender's own feed).

use serde_json::{Value, json};

use super::{Handled, Reply, StubRequest, json_object, opt_int, opt_str};
use crate::ids::is_uuid;
use crate::state::{ActivityRow, State};
use crate::time::{parse_rfc3339, unix_micros_now};
use crate::types::WorkspaceStatus;

const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 100;
const MAX_SINCE_SECS: i64 = 30 * 24 * 3600;
pub(crate) const CURSOR_GONE: &str = "since_id cursor not found (row may have been pruned or belongs to a different workspace); omit since_id to reset";

/// Without `since_id`: newest first. With it: strictly after the cursor row, oldest first.
pub(super) fn list(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    let kind = req.query("type");
    let source = match req.query("source") {
        None => None,
        Some("canvas") => Some(false),
        Some("agent") => Some(true),
        Some(_) => return Err(Reply::error(400, "source must be 'canvas' or 'agent'")),
    };
    let peer = req.query("peer_id");
    if peer.is_some_and(|p| !is_uuid(p)) {
        return Err(Reply::error(400, "peer_id must be a UUID"));
    }
    let limit = req
        .query("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map_or(DEFAULT_LIMIT, |l| {
            usize::try_from(l).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)
        });
    let since = match req.query("since_secs") {
        None => None,
        Some(s) => {
            let secs = s.parse::<i64>().ok().filter(|n| *n > 0);
            let secs =
                secs.ok_or_else(|| Reply::error(400, "since_secs must be a positive integer"))?;
            Some(unix_micros_now().saturating_sub(secs.min(MAX_SINCE_SECS) * 1_000_000))
        }
    };
    let before = match req.query("before_ts") {
        None => None,
        Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
            Reply::error(
                400,
                "before_ts must be an RFC3339 timestamp (e.g. 2026-05-01T00:00:00Z)",
            )
        })?),
    };
    let cursor = match req.query("since_id") {
        None => None,
        Some(c) if !is_uuid(c) => return Err(Reply::error(500, "cursor lookup failed")),
        Some(c) => {
            let row = st
                .activity
                .iter()
                .find(|r| r.workspace_id == ws && r.id.eq_ignore_ascii_case(c));
            Some(row.ok_or_else(|| Reply::error(410, CURSOR_GONE))?.key())
        }
    };
    let mut rows: Vec<&ActivityRow> = st
        .activity
        .iter()
        .filter(|r| r.workspace_id == ws)
        .filter(|r| kind.is_none_or(|k| r.activity_type == k))
        .filter(|r| source.is_none_or(|agent| r.source_id.is_some() == agent))
        .filter(|r| {
            peer.is_none_or(|p| {
                r.source_id.as_deref() == Some(p) || r.target_id.as_deref() == Some(p)
            })
        })
        .filter(|r| since.is_none_or(|t| r.created_at >= t))
        .filter(|r| before.is_none_or(|t| r.created_at < t))
        .filter(|r| cursor.is_none_or(|k| r.key() > k))
        .collect();
    rows.sort_by_key(|r| r.key());
    if cursor.is_none() {
        rows.reverse();
    }
    let out: Vec<Value> = rows
        .into_iter()
        .take(limit)
        .map(ActivityRow::to_json)
        .collect();
    Ok(Reply::json(200, &Value::Array(out)))
}

const ACTIVITY_TYPES: [&str; 7] = [
    "a2a_send",
    "a2a_receive",
    "task_update",
    "agent_log",
    "skill_promotion",
    "memory_write",
    "error",
];

/// Self-report. Rows land in `:id`'s own feed; `a2a_receive` rows therefore show up in its
/// own inbox as messages "from itself" (a client must not report that type, or must skip
/// rows whose `source_id` is itself). A non-UUID `target_id` makes the insert fail silently, as on the platform.
pub(super) fn report(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    let bad = || Reply::error(400, "invalid request body");
    let body = json_object(&req.body).ok_or_else(bad)?;
    let kind = opt_str(&body, "activity_type")
        .map_err(|()| bad())?
        .filter(|k| !k.is_empty())
        .ok_or_else(bad)?;
    let text = |k: &str| opt_str(&body, k).map_err(|()| bad());
    let (method, summary, target, source) = (
        text("method")?,
        text("summary")?,
        text("target_id")?,
        text("source_id")?,
    );
    let (status, error_detail) = (text("status")?, text("error_detail")?);
    let duration_ms = opt_int(&body, "duration_ms").map_err(|()| bad())?;
    if !ACTIVITY_TYPES.contains(&kind.as_str()) {
        return Err(Reply::error(
            400,
            &format!(
                "invalid activity_type, must be one of: {}",
                ACTIVITY_TYPES.join(", ")
            ),
        ));
    }
    let source = source.filter(|s| !s.is_empty());
    if source.as_deref().is_some_and(|s| s != ws) {
        return Err(Reply::error(
            403,
            "source_id must match authenticated workspace",
        ));
    }
    let target = target.filter(|t| !t.is_empty());
    let logged = Reply::json(200, &json!({"status": "logged"}));
    if target.as_deref().is_some_and(|t| !is_uuid(t)) {
        return Ok(logged);
    }
    let present = |k: &str| body.get(k).filter(|v| !v.is_null()).cloned();
    let mut row = ActivityRow::blank(ws, &kind);
    row.source_id = source;
    row.target_id = target;
    row.method = method.filter(|m| !m.is_empty());
    row.summary = summary.filter(|s| !s.is_empty());
    row.duration_ms = duration_ms;
    row.status = status
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ok".into());
    row.error_detail = error_detail.filter(|e| !e.is_empty());
    row.request_body = present("request_body").or_else(|| present("metadata"));
    row.response_body = present("response_body");
    st.insert_activity(row);
    Ok(logged)
}

/// Message to the canvas user; recorded for [`PlatformStub::notifications`] and echoed into
/// the sender's own feed (`a2a_receive`, `method:"notify"`, null source, no request body).
///
/// [`PlatformStub::notifications`]: crate::PlatformStub::notifications
pub(super) fn notify(st: &mut State, req: &StubRequest, ws: &str) -> Handled {
    let required = || Reply::error(400, "message is required");
    let body = json_object(&req.body).ok_or_else(required)?;
    let message = opt_str(&body, "message")
        .map_err(|()| required())?
        .filter(|m| !m.is_empty())
        .ok_or_else(required)?;
    let attachments = match body.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_)) => {
            return Err(required());
        }
    };
    let mut parts = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        let field = |k: &str| a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(uri), Some(name)) = (field("uri"), field("name")) else {
            return Err(Reply::error(
                400,
                &format!("attachment[{i}]: uri and name are required"),
            ));
        };
        let mut file = json!({"uri": uri, "name": name});
        if let Some(m) = a.get("mimeType").filter(|v| v.is_string()) {
            file["mimeType"] = m.clone();
        }
        if let Some(s) = a.get("size").filter(|v| v.is_i64() || v.is_u64()) {
            file["size"] = s.clone();
        }
        parts.push(json!({"kind": "file", "file": file}));
    }
    if st
        .ws(ws)
        .is_none_or(|w| w.status == WorkspaceStatus::Removed)
    {
        return Err(Reply::error(404, "workspace not found"));
    }
    st.notifications
        .push((ws.to_string(), Value::Object(body.clone())));
    let mut response = json!({ "result": message });
    if !parts.is_empty() {
        response["parts"] = Value::Array(parts);
    }
    let preview: String = message.chars().take(80).collect();
    let ellipsis = if message.chars().count() > 80 {
        "…"
    } else {
        ""
    };
    let mut row = ActivityRow::blank(ws, "a2a_receive");
    row.method = Some("notify".into());
    row.summary = Some(format!("Agent message: {preview}{ellipsis}"));
    row.response_body = Some(response);
    st.insert_activity(row);
    Ok(Reply::json(200, &json!({"status": "sent"})))
}
