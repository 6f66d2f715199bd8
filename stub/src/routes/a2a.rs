//! `POST /workspaces/:id/a2a` — the A2A proxy, with the platform's routing rules.
//!
//! Caller = `X-Workspace-ID`, else the bearer's workspace, else the canvas user. Poll-mode
//! targets get the normalised envelope queued as an `a2a_receive` row in their own feed and
//! the caller gets `{"status":"queued",…}`; push-mode targets answer with a default echo
//! (script `POST /workspaces/<id>/a2a` for anything else).

use serde_json::{Map, Value, json};

use super::{Handled, Reply, StubRequest, bootstrap_auth_with};
use crate::ids::Rng;
use crate::state::{ActivityRow, State};
use crate::types::{DeliveryMode, WorkspaceStatus};

pub(super) fn proxy(st: &mut State, req: &StubRequest, target: &str) -> Handled {
    let header_caller = req
        .header("x-workspace-id")
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let caller: Option<String> = match header_caller {
        Some(c) => Some(c.to_string()),
        // A bearer that resolves to no live token is silently ignored (canvas user).
        None => req
            .bearer()
            .and_then(|t| st.token_owner(t))
            .map(str::to_string),
    };
    if let Some(c) = &caller {
        if ["webhook:", "system:", "test:", "channel:"]
            .iter()
            .any(|p| c.starts_with(p))
        {
            return Err(Reply::error(403, "invalid caller ID"));
        }
        if c != target {
            bootstrap_auth_with(
                st,
                req,
                c,
                "missing caller auth token",
                "invalid caller auth token",
            )?;
        }
    }
    let Some(t) = st
        .ws(target)
        .filter(|w| w.status != WorkspaceStatus::Removed)
    else {
        return Err(Reply::error(404, "workspace not found"));
    };
    let mode = t.delivery_mode;
    if let Some(c) = caller.as_deref().filter(|c| *c != target)
        && !st.can_communicate(c, target)
    {
        return Err(Reply::error(
            403,
            "access denied: workspaces cannot communicate per hierarchy rules",
        ));
    }
    let envelope = normalise(&req.body, &mut st.rng)?;
    let method = envelope
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("message/send")
        .to_string();
    match mode {
        DeliveryMode::Poll => {
            let mut row = ActivityRow::blank(target, "a2a_receive");
            row.source_id = caller;
            row.target_id = Some(target.to_string());
            row.method = Some(method.clone());
            row.request_body = Some(envelope);
            st.insert_activity(row);
            Ok(Reply::json(
                200,
                &json!({"status": "queued", "delivery_mode": "poll", "method": method}),
            ))
        }
        DeliveryMode::Push => {
            let text = message_text(&envelope);
            let reply = json!({
                "jsonrpc": "2.0",
                "id": envelope.get("id").cloned().unwrap_or(Value::Null),
                "result": {
                    "kind": "message", "role": "agent", "messageId": st.rng.uuid(),
                    "parts": [{"kind": "text", "text": format!("echo: {text}")}],
                },
            });
            Ok(Reply::json(200, &reply))
        }
    }
}

/// `normalizeA2APayload`: wrap bare bodies in a JSON-RPC envelope, convert v0.2 `content`
/// to `parts`, fill in a missing `messageId`.
pub(crate) fn normalise(body: &[u8], rng: &mut Rng) -> Result<Value, Reply> {
    let invalid = || Reply::error(400, "invalid JSON");
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid());
    };
    if !obj.contains_key("jsonrpc") {
        let mut wrapped = Map::new();
        wrapped.insert("jsonrpc".into(), json!("2.0"));
        wrapped.insert("id".into(), json!(rng.uuid()));
        wrapped.insert(
            "method".into(),
            obj.remove("method")
                .unwrap_or_else(|| json!("message/send")),
        );
        wrapped.insert("params".into(), obj.remove("params").unwrap_or(Value::Null));
        obj = wrapped;
    }
    let hint = "send params.message.parts as a list of {\"kind\":\"text\",\"text\":…} parts";
    if let Some(Value::Object(msg)) = obj.get_mut("params").and_then(|p| p.get_mut("message")) {
        if !msg.contains_key("parts") {
            let parts = match msg.remove("content") {
                None => {
                    return Err(Reply::json(
                        400,
                        &json!({
                            "error": "params.message must contain either 'parts' (v0.3) or 'content' (v0.2 compat)",
                            "hint": hint,
                        }),
                    ));
                }
                Some(Value::String(s)) => json!([{"kind": "text", "text": s}]),
                Some(Value::Array(list)) => Value::Array(list),
                Some(Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_)) => {
                    return Err(Reply::json(
                        400,
                        &json!({"error": "invalid params.message.content type", "hint": hint}),
                    ));
                }
            };
            msg.insert("parts".into(), parts);
        }
        if msg
            .get("messageId")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            msg.insert("messageId".into(), json!(rng.uuid()));
        }
    }
    Ok(Value::Object(obj))
}

/// Concatenated text parts (`kind` or `type` == "text") of `params.message.parts`.
pub(crate) fn message_text(envelope: &Value) -> String {
    let parts = envelope
        .pointer("/params/message/parts")
        .and_then(Value::as_array);
    parts
        .into_iter()
        .flatten()
        .filter(|p| {
            p.get("kind")
                .or_else(|| p.get("type"))
                .and_then(Value::as_str)
                == Some("text")
        })
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(body: &str) -> Result<Value, u16> {
        normalise(body.as_bytes(), &mut Rng::new()).map_err(|r| r.status)
    }

    #[test]
    fn wraps_and_converts_v02_content() {
        let v = norm(
            r#"{"method":"message/send","params":{"message":{"role":"user","content":"hi"}}}"#,
        )
        .unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["id"].is_string());
        assert_eq!(
            v["params"]["message"]["parts"],
            json!([{"kind": "text", "text": "hi"}])
        );
        assert!(v["params"]["message"].get("content").is_none());
        assert_eq!(
            v["params"]["message"]["messageId"].as_str().map(str::len),
            Some(36)
        );
        assert_eq!(message_text(&v), "hi");
    }

    #[test]
    fn keeps_v03_parts_and_ids() {
        let body = r#"{"jsonrpc":"2.0","id":"r1","method":"message/send","params":{"message":{"messageId":"m1","parts":[{"type":"text","text":"a"},{"kind":"text","text":"b"},{"kind":"file"}]}}}"#;
        let v = norm(body).unwrap();
        assert_eq!(v["id"], "r1");
        assert_eq!(v["params"]["message"]["messageId"], "m1");
        assert_eq!(message_text(&v), "ab");
    }

    #[test]
    fn rejects_bad_bodies() {
        assert_eq!(norm("nope"), Err(400));
        assert_eq!(norm("[]"), Err(400));
        assert_eq!(
            norm(r#"{"jsonrpc":"2.0","params":{"message":{"content":true}}}"#),
            Err(400)
        );
        assert_eq!(
            norm(r#"{"jsonrpc":"2.0","params":{"message":{"role":"user"}}}"#),
            Err(400)
        );
    }
}
