//! A2A `message/send` through the platform proxy (`POST /workspaces/{target}/a2a`).
//!
//! ## Interpretation table ([`interpret_response`])
//!
//! | HTTP | body | outcome |
//! |---|---|---|
//! | 2xx | JSON-RPC `result` = Message (`parts`) | [`A2aOutcome::Reply`] with the text parts |
//! | 2xx | `result` = Task (`artifacts[].parts`, else `status.message.parts`) | `Reply`; task state `failed`/`rejected`/`canceled` ⇒ `Failed` |
//! | 2xx | reply text starting with `Agent error:` | `Failed` |
//! | 2xx | JSON-RPC `error` | `Failed` (`<message> (code=<code>)`) |
//! | 200 | `{"status":"queued",…}` (poll-mode peer, M2 push-async) | [`A2aOutcome::Queued`] — delivered, reply comes to the inbox |
//! | 202 | `{"queued":true,…}` (busy push peer, queued by the platform) | `Queued` |
//! | 503 | `busy` or `waking` with `Retry-After` (header or `retry_after`) | `Failed` + `retry_after` (provably not delivered) |
//! | other | any | `Failed` (`HTTP <code>: <error>`) |
//! | 2xx | not JSON / no recognised shape | `Failed` |
//!
//! ## Retry policy ([`send_message`])
//!
//! The JSON-RPC `id` and the `messageId` are generated once per tool call and reused on
//! every attempt, so a retried delivery is recognisably the same message. A retry happens
//! only when the request provably did not reach the peer: the connection could not be
//! established, or the platform answered 503 busy/waking with `Retry-After`. Timeouts and
//! broken connections are *not* retried (the peer may be working on it). All attempts share
//! one hard deadline ([`ToolSettings::a2a_deadline`](super::ToolSettings)): each attempt's
//! timeout is the time left, and no wait extends past it.

use std::time::Duration;

use molecule_mcp_core::retry::{Backoff, RetryAfterCap};
use serde_json::{Value, json};

use super::client::{ApiResponse, CallError, PlatformCall};
use super::context::ToolContext;

/// Attempts per tool call, including the first.
pub const MAX_ATTEMPTS: u32 = 5;

/// What one A2A exchange amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum A2aOutcome {
    /// The peer answered synchronously.
    Reply(String),
    /// The platform accepted the message for later delivery; the peer's reply (if any)
    /// arrives in our inbox. `how` says why it was queued.
    Queued {
        /// Human-readable reason (poll-mode peer, busy peer).
        how: String,
    },
    /// Not delivered, or the peer reported an error.
    Failed {
        /// Readable cause.
        detail: String,
        /// Set when the platform said the message was not delivered and when to retry.
        retry_after: Option<Duration>,
    },
}

fn failed(detail: impl Into<String>) -> A2aOutcome {
    A2aOutcome::Failed {
        detail: detail.into(),
        retry_after: None,
    }
}

/// The JSON-RPC `message/send` request body.
pub fn message_send_body(text: &str, message_id: &str, rpc_id: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "message/send",
        "params": {
            "message": {
                "role": "user",
                "messageId": message_id,
                "parts": [{"kind": "text", "text": text}],
            }
        }
    })
}

/// Text of an A2A part list: text parts verbatim, file parts as `[file: name <uri>]`, data
/// parts as JSON; joined with newlines. Accepts `kind` or `type` as the discriminator.
pub fn parts_text(parts: &Value) -> String {
    let Some(parts) = parts.as_array() else {
        return String::new();
    };
    let mut out: Vec<String> = Vec::new();
    for part in parts {
        let kind = part
            .get("kind")
            .or_else(|| part.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        match kind {
            "text" => {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    out.push(t.to_owned());
                }
            }
            "file" => {
                let file = part.get("file");
                let name = file
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("file");
                let uri = file
                    .and_then(|f| f.get("uri"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                out.push(if uri.is_empty() {
                    format!("[file: {name}]")
                } else {
                    format!("[file: {name} <{uri}>]")
                });
            }
            "data" => {
                if let Some(d) = part.get("data") {
                    out.push(d.to_string());
                }
            }
            _ => {}
        }
    }
    out.join("\n")
}

/// The peer answered, but with a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFailure {
    /// The task ended `failed`, `rejected` or `canceled`; `text` is whatever it said.
    TaskEnded {
        /// The task state.
        state: String,
        /// The task's text (may be empty).
        text: String,
    },
    /// The reply text starts with `Agent error:` (how agents report their own crashes).
    AgentError(String),
}

impl std::fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerFailure::TaskEnded { state, text } if text.is_empty() => {
                write!(f, "peer task {state}")
            }
            PeerFailure::TaskEnded { state, text } => write!(f, "peer task {state}: {text}"),
            PeerFailure::AgentError(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for PeerFailure {}

/// Text of a JSON-RPC `result` (Message or Task).
pub fn result_text(result: &Value) -> Result<String, PeerFailure> {
    if let Some(s) = result.as_str() {
        return Ok(s.to_owned());
    }
    let mut text = parts_text(result.get("parts").unwrap_or(&Value::Null));
    if text.is_empty()
        && let Some(artifacts) = result.get("artifacts").and_then(Value::as_array)
    {
        let texts: Vec<String> = artifacts
            .iter()
            .map(|a| parts_text(a.get("parts").unwrap_or(&Value::Null)))
            .filter(|t| !t.is_empty())
            .collect();
        text = texts.join("\n");
    }
    let status = result.get("status");
    if text.is_empty() {
        let status_parts = status
            .and_then(|s| s.get("message"))
            .and_then(|m| m.get("parts"))
            .unwrap_or(&Value::Null);
        text = parts_text(status_parts);
    }
    let state = status
        .and_then(|s| s.get("state"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if matches!(state, "failed" | "rejected" | "canceled") {
        return Err(PeerFailure::TaskEnded {
            state: state.to_owned(),
            text,
        });
    }
    if text.starts_with("Agent error:") {
        return Err(PeerFailure::AgentError(text));
    }
    Ok(if text.is_empty() {
        "(no response)".to_owned()
    } else {
        text
    })
}

fn jsonrpc_error_detail(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    let code = error.get("code").filter(|c| !c.is_null());
    match (message, code) {
        (Some(m), Some(c)) => format!("{m} (code={c})"),
        (Some(m), None) => m.to_owned(),
        (None, Some(c)) => format!("JSON-RPC error with no message (code={c})"),
        (None, None) => "JSON-RPC error with no message".to_owned(),
    }
}

/// Applies the interpretation table (module docs) to one response.
pub fn interpret_response(response: &ApiResponse) -> A2aOutcome {
    let body = response.json();
    let obj = body.as_ref().and_then(Value::as_object);
    if response.is_success() {
        let Some(obj) = obj else {
            return failed(format!(
                "HTTP {} with a non-JSON body: {}",
                response.status,
                response.snippet(200)
            ));
        };
        if let Some(result) = obj.get("result") {
            return match result_text(result) {
                Ok(text) => A2aOutcome::Reply(text),
                Err(failure) => failed(failure.to_string()),
            };
        }
        if let Some(error) = obj.get("error") {
            if error.is_object() {
                return failed(jsonrpc_error_detail(error));
            }
            if let Some(s) = error.as_str() {
                return failed(s.to_owned());
            }
        }
        if obj.get("status").and_then(Value::as_str) == Some("queued") {
            let mode = obj
                .get("delivery_mode")
                .and_then(Value::as_str)
                .unwrap_or("");
            let how = match mode {
                "poll" => "the peer runs in poll mode; the platform put the message in its inbox"
                    .to_owned(),
                "" => "the platform queued the message for the peer".to_owned(),
                other => {
                    format!("the platform queued the message for the peer (delivery mode {other})")
                }
            };
            return A2aOutcome::Queued { how };
        }
        if obj.get("queued").and_then(Value::as_bool) == Some(true) {
            return A2aOutcome::Queued { how: "the peer is busy; the platform queued the message and will deliver it when the peer has capacity".to_owned() };
        }
        return failed(format!(
            "unexpected response shape (no result, no error): {}",
            response.snippet(200)
        ));
    }
    if response.status == 503 {
        let flag = |k: &str| obj.and_then(|o| o.get(k)).and_then(Value::as_bool) == Some(true);
        let body_retry = obj
            .and_then(|o| o.get("retry_after"))
            .and_then(Value::as_u64)
            .map(Duration::from_secs);
        if (flag("busy") || flag("waking"))
            && let Some(wait) = response.retry_after().or(body_retry)
        {
            return A2aOutcome::Failed {
                detail: format!("HTTP 503: {}", response.error_message()),
                retry_after: Some(wait),
            };
        }
    }
    failed(format!(
        "HTTP {}: {}",
        response.status,
        response.error_message()
    ))
}

/// Sends `text` from `src` to `target` with the retry policy of the module docs.
pub async fn send_message(ctx: &ToolContext, src: &str, target: &str, text: &str) -> A2aOutcome {
    let start = tokio::time::Instant::now();
    let deadline = start + ctx.settings.a2a_deadline;
    let (message_id, rpc_id) = ctx.with_rng(|rng| (rng.uuid_v4(), rng.uuid_v4()));
    let body = message_send_body(text, &message_id, &rpc_id);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return failed(format!(
                "no answer within the {}s delegation deadline",
                ctx.settings.a2a_deadline.as_secs()
            ));
        }
        let call = PlatformCall::post_json(format!("/workspaces/{target}/a2a"), src, body.clone())
            .with_workspace_header()
            .with_timeout(remaining);
        let (outcome, wait) = match ctx.call(call).await {
            Ok(response) => match interpret_response(&response) {
                A2aOutcome::Failed {
                    detail,
                    retry_after: Some(wait),
                } => (failed(detail), RetryAfterCap::TOOL_CALL.clamp(wait)),
                other @ (A2aOutcome::Reply(_)
                | A2aOutcome::Queued { .. }
                | A2aOutcome::Failed { .. }) => return other,
            },
            Err(e) if e.is_undelivered() && matches!(e, CallError::Transport(_)) => (
                failed(format!("platform unreachable: {e}")),
                ctx.with_rng(|rng| {
                    Backoff::tool_call(ctx.settings.retry_base_delay)
                        .delay(attempt.saturating_sub(1), rng)
                }),
            ),
            Err(e @ CallError::Transport(_)) => {
                return failed(format!(
                    "{e} (not retried: the peer may already have the task — its reply, if any, will arrive in your inbox)"
                ));
            }
            Err(e) => return failed(e.to_string()),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if attempt >= MAX_ATTEMPTS || wait >= remaining {
            return match outcome {
                A2aOutcome::Failed { detail, .. } => {
                    failed(format!("{detail} (gave up after {attempt} attempt(s))"))
                }
                other @ (A2aOutcome::Reply(_) | A2aOutcome::Queued { .. }) => other,
            };
        }
        tracing::warn!(target_workspace = %target, attempt, wait_ms = wait.as_millis() as u64, "A2A message not delivered; retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: http::HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn task_without_text_is_no_response() {
        assert_eq!(
            result_text(&json!({"kind": "task", "status": {"state": "completed"}})).unwrap(),
            "(no response)"
        );
    }

    #[test]
    fn queued_with_unknown_mode_is_still_queued() {
        assert!(matches!(
            interpret_response(&resp(
                200,
                r#"{"status":"queued","delivery_mode":"push-async"}"#
            )),
            A2aOutcome::Queued { .. }
        ));
    }
}
