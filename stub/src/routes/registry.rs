//! `/registry/*`: register, heartbeat, discover and peers.

use serde_json::{Map, Value, json};

use super::{
    Handled, Reply, StubRequest, bootstrap_auth, json_object, opt_f64, opt_int, opt_str, req_str,
};
use crate::ids::is_uuid;
use crate::state::State;
use crate::time::unix_micros_now;
use crate::types::{DeliveryMode, WorkspaceSnapshot, WorkspaceStatus};

fn bad_body() -> Reply {
    Reply::error(400, "invalid request body")
}

/// `POST /registry/register` — class R keyed by body `id`; upserts; mints `auth_token` only
/// when the workspace had no live token; `removed` rows stay untouched but still get 200.
pub(super) fn register(st: &mut State, req: &StubRequest) -> Handled {
    let body = json_object(&req.body).ok_or_else(bad_body)?;
    let id = req_str(&body, "id").map_err(|()| bad_body())?;
    let card = body
        .get("agent_card")
        .filter(|c| !c.is_null())
        .cloned()
        .ok_or_else(bad_body)?;
    let url = opt_str(&body, "url")
        .map_err(|()| bad_body())?
        .unwrap_or_default();
    let requested = match opt_str(&body, "delivery_mode")
        .map_err(|()| bad_body())?
        .as_deref()
    {
        None | Some("") => None,
        Some(m) => Some(
            DeliveryMode::parse(m)
                .ok_or_else(|| Reply::error(400, "delivery_mode must be 'push' or 'poll'"))?,
        ),
    };
    bootstrap_auth(st, req, &id)?;
    let mode = requested
        .or_else(|| st.ws(&id).map(|w| w.delivery_mode))
        .unwrap_or(DeliveryMode::Push);
    if mode == DeliveryMode::Push {
        check_push_url(&url)?;
    }
    if !is_uuid(&id) {
        // The real upsert fails on the UUID column.
        return Err(Reply::error(500, "registration failed"));
    }
    let had_live_token = st.live_tokens(&id) > 0;
    let now = unix_micros_now();
    if st.ws(&id).is_none() {
        st.workspaces.push(WorkspaceSnapshot::new(
            &id,
            &id,
            WorkspaceStatus::Online,
            mode,
        ));
    }
    if let Some(w) = st
        .ws_mut(&id)
        .filter(|w| w.status != WorkspaceStatus::Removed)
    {
        if !url.is_empty() {
            w.url = url;
        }
        w.agent_card = Some(card);
        w.status = WorkspaceStatus::Online;
        w.last_heartbeat_at = Some(now);
        w.delivery_mode = mode;
        w.last_register = Some(Value::Object(body.clone()));
        w.register_count += 1;
    }
    let mut out = Map::new();
    out.insert("status".into(), json!("registered"));
    out.insert("delivery_mode".into(), json!(mode.as_str()));
    if !had_live_token {
        out.insert("auth_token".into(), json!(st.mint_token(&id)));
    }
    if let Some(secret) = st.deliver_secret(&id) {
        out.insert("platform_inbound_secret".into(), json!(secret));
    }
    Ok(Reply::json(200, &Value::Object(out)))
}

/// Simplified SSRF check for push URLs: http(s) only, no loopback/link-local literal hosts.
fn check_push_url(url: &str) -> Result<(), Reply> {
    if url.is_empty() {
        return Err(Reply::error(
            400,
            "url is required for push-mode workspaces",
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Reply::error(
            400,
            "url scheme must be http or https, got \"\"",
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(Reply::error(
            400,
            &format!("url scheme must be http or https, got \"{scheme}\""),
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    let host = host.trim_start_matches('[');
    if host.starts_with("127.") || host == "::1" || host == "0.0.0.0" {
        return Err(Reply::error(
            400,
            "url targets a blocked address: loopback address",
        ));
    }
    if host.starts_with("169.254.") {
        return Err(Reply::error(
            400,
            "url targets a blocked address: link-local address",
        ));
    }
    Ok(())
}

/// `POST /registry/heartbeat` — class R keyed by `workspace_id`; strict JSON types; stores
/// the snapshot and applies the status transitions; unknown/removed workspaces get a bare 200.
pub(super) fn heartbeat(st: &mut State, req: &StubRequest) -> Handled {
    let body = json_object(&req.body).ok_or_else(bad_body)?;
    let id = req_str(&body, "workspace_id").map_err(|()| bad_body())?;
    let beat = Beat::parse(&body).ok_or_else(bad_body)?;
    bootstrap_auth(st, req, &id)?;
    if !is_uuid(&id) {
        return Err(Reply::error(500, "failed to update"));
    }
    let now = unix_micros_now();
    let mut out = Map::new();
    out.insert("status".into(), json!("ok"));
    let Some(w) = st.ws_mut(&id) else {
        return Ok(Reply::json(200, &Value::Object(out)));
    };
    if w.status != WorkspaceStatus::Removed {
        beat.apply(w);
        w.last_heartbeat = Some(Value::Object(body.clone()));
        w.last_heartbeat_at = Some(now);
        w.heartbeat_count += 1;
    }
    if let Some(secret) = st.deliver_secret(&id) {
        out.insert("platform_inbound_secret".into(), json!(secret));
    }
    Ok(Reply::json(200, &Value::Object(out)))
}

/// The typed heartbeat fields the platform reads; every one overwrites the snapshot (zero values included).
struct Beat {
    error_rate: f64,
    sample_error: String,
    active_tasks: i64,
    uptime_seconds: i64,
    current_task: String,
    monthly_spend: i64,
    runtime_state: String,
    runtime_metadata: Option<Value>,
}

impl Beat {
    /// `None` on any type mismatch (gin's bind failure → 400). Unknown fields are ignored.
    fn parse(m: &Map<String, Value>) -> Option<Beat> {
        let metadata = match m.get("runtime_metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(md)) => {
                opt_int(md, "idle_timeout_seconds").ok()?;
                match md.get("capabilities") {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(caps)) => {
                        if !caps.values().all(|v| v.is_boolean() || v.is_null()) {
                            return None;
                        }
                    }
                    Some(
                        Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_),
                    ) => return None,
                }
                Some(Value::Object(md.clone()))
            }
            Some(Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_)) => {
                return None;
            }
        };
        Some(Beat {
            error_rate: opt_f64(m, "error_rate").ok()?.unwrap_or(0.0),
            sample_error: opt_str(m, "sample_error").ok()?.unwrap_or_default(),
            active_tasks: opt_int(m, "active_tasks").ok()?.unwrap_or(0),
            uptime_seconds: opt_int(m, "uptime_seconds").ok()?.unwrap_or(0),
            current_task: opt_str(m, "current_task").ok()?.unwrap_or_default(),
            monthly_spend: opt_int(m, "monthly_spend").ok()?.unwrap_or(0),
            runtime_state: opt_str(m, "runtime_state").ok()?.unwrap_or_default(),
            runtime_metadata: metadata,
        })
    }

    fn apply(self, w: &mut WorkspaceSnapshot) {
        w.error_rate = self.error_rate;
        w.sample_error = self.sample_error;
        w.active_tasks = self.active_tasks;
        w.uptime_seconds = self.uptime_seconds;
        w.current_task = self.current_task;
        if self.monthly_spend != 0 {
            w.monthly_spend = self.monthly_spend.clamp(0, 1_000_000_000_000);
        }
        w.runtime_state = self.runtime_state;
        w.runtime_metadata = self.runtime_metadata;
        let unhealthy = w.runtime_state == "wedged" || w.error_rate >= 0.5;
        w.status = match w.status {
            WorkspaceStatus::AwaitingAgent
            | WorkspaceStatus::Offline
            | WorkspaceStatus::Provisioning => WorkspaceStatus::Online,
            WorkspaceStatus::Online if unhealthy => WorkspaceStatus::Degraded,
            WorkspaceStatus::Degraded if w.error_rate < 0.1 && w.runtime_state.is_empty() => {
                WorkspaceStatus::Online
            }
            s @ (WorkspaceStatus::Online
            | WorkspaceStatus::Degraded
            | WorkspaceStatus::Failed
            | WorkspaceStatus::Removed
            | WorkspaceStatus::Paused
            | WorkspaceStatus::Hibernated
            | WorkspaceStatus::Hibernating) => s,
        };
    }
}

/// `GET /registry/discover/:id` — caller from `X-Workspace-ID` (class D), `CanCommunicate`,
/// then `{id,url,name}` only.
pub(super) fn discover(st: &mut State, req: &StubRequest, target: &str) -> Handled {
    let caller = req
        .header("x-workspace-id")
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let caller = caller.ok_or_else(|| Reply::error(400, "X-Workspace-ID header is required"))?;
    bootstrap_auth(st, req, caller)?;
    if !st.can_communicate(caller, target) {
        return Err(Reply::error(
            403,
            "not authorized to discover this workspace",
        ));
    }
    let w = st
        .ws(target)
        .ok_or_else(|| Reply::error(404, "workspace not found"))?;
    let url = if !w.url.is_empty() {
        w.url.clone()
    } else if matches!(
        w.status,
        WorkspaceStatus::Online | WorkspaceStatus::Degraded
    ) {
        // The platform synthesizes a Docker-network URL even for poll-mode peers.
        format!("http://ws-{}:8000", w.id.get(..12).unwrap_or(&w.id))
    } else {
        return Err(Reply::json(
            503,
            &json!({"error": "workspace not available", "status": w.status.as_str()}),
        ));
    };
    Ok(Reply::json(
        200,
        &json!({"id": w.id, "url": url, "name": w.name}),
    ))
}

/// `GET /registry/:id/peers` — class D keyed by `:id`; siblings (every other root for a
/// root), children and parent; `q` filters name/role case-insensitively.
pub(super) fn peers(st: &mut State, req: &StubRequest, id: &str) -> Handled {
    bootstrap_auth(st, req, id)?;
    let me = st
        .ws(id)
        .ok_or_else(|| Reply::error(404, "workspace not found"))?;
    let q = req.query("q").map(str::to_lowercase);
    let live = |w: &&WorkspaceSnapshot| w.status != WorkspaceStatus::Removed;
    let siblings = st
        .workspaces
        .iter()
        .filter(|w| w.id != me.id && w.parent_id == me.parent_id)
        .filter(live);
    let children = st
        .workspaces
        .iter()
        .filter(|w| w.parent_id.as_deref() == Some(me.id.as_str()))
        .filter(live);
    let parent = st
        .workspaces
        .iter()
        .filter(|w| me.parent_id.as_deref() == Some(w.id.as_str()));
    let list: Vec<Value> = siblings
        .chain(children)
        .chain(parent)
        .filter(|w| {
            q.as_deref().is_none_or(|q| {
                w.name.to_lowercase().contains(q) || w.role.as_deref().is_some_and(|r| r.to_lowercase().contains(q))
            })
        })
        .map(|w| {
            json!({
                "id": w.id, "name": w.name, "role": w.role, "tier": w.tier, "status": w.status.as_str(),
                "agent_card": w.agent_card, "url": w.url, "parent_id": w.parent_id, "active_tasks": w.active_tasks,
            })
        })
        .collect();
    Ok(Reply::json(200, &Value::Array(list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_url_checks() {
        assert!(check_push_url("https://agent.example.com/a2a").is_ok());
        assert!(check_push_url("http://localhost:8000").is_ok());
        for bad in [
            "",
            "ftp://x",
            "agent.example.com",
            "http://127.0.0.1:9/",
            "http://[::1]:80",
            "http://u@169.254.169.254/",
        ] {
            assert!(check_push_url(bad).is_err(), "{bad}");
        }
    }
}
