//! `delegate_task`, `delegate_task_async`, `check_task_status`.
//!
//! * `delegate_task` discovers the target (access check + display name), records an
//!   `a2a_send` activity row in the source workspace, then either sends A2A
//!   `message/send` ([`super::a2a`]) or, with `DELEGATION_SYNC_VIA_INBOX`, posts to
//!   `/delegate` and polls `/delegations`. A queued delivery (poll-mode or busy peer) is a
//!   success: the peer has the task and the reply comes to the inbox. The outcome is
//!   recorded as an `a2a_receive` row (summary, status, the reply or the error detail), as
//!   the Python original did; the inbox skips rows whose source is the polled workspace,
//!   so the row does not come back as a message. After each row one extra heartbeat
//!   carries its summary as `current_task` (with `active_tasks: 1`), as the original's did,
//!   but with the real `uptime_seconds` (the original's reset it to 0); the next regular
//!   beat clears it.
//! * `delegate_task_async` posts `/delegate` with an idempotency key that is a fresh random
//!   nonce per tool call, so the same task can be delegated again later, while the key still
//!   makes this call's own retries safe. Both 202 and the idempotent-hit 200 (a retry the
//!   platform recognised) are success.
//! * `check_task_status` routes like the others: explicit source → the workspace that started
//!   this delegation → the peer's cached source → primary, because only the workspace that
//!   delegated lists the delegation; it reads the failure reason from `error`, then
//!   `error_detail`.

use std::time::Duration;

use molecule_mcp_core::ids::short_id;
use molecule_mcp_core::retry::{Backoff, RetryAfterCap, StatusPolicy};
use serde_json::{Value, json};

use super::a2a::{self, A2aOutcome};
use super::args::{Args, parse_registered, parse_workspace_id, resolve_source};
use super::client::{ApiResponse, CallError, PlatformCall};
use super::context::ToolContext;
use super::peers::{Discovery, discover};
use crate::mcp::{CallEnv, ToolOutput};

/// Summary length cap for activity rows.
const MAX_SUMMARY_CHARS: usize = 256;
/// `error_detail` length cap for activity rows (the original's).
const MAX_ERROR_DETAIL_CHARS: usize = 4096;
/// How much of a failure the `a2a_receive` row's summary quotes (the original's).
const FAILURE_SUMMARY_CHARS: usize = 120;
/// Cap on the reply recorded in the `a2a_receive` row's `response_body`: the row is for
/// the canvas feed and `chat_history`, and a reply can be as large as an HTTP body may be.
const MAX_RECORDED_RESULT_CHARS: usize = 64 * 1024;
/// Timeout of the best-effort activity report.
const ACTIVITY_TIMEOUT: Duration = Duration::from_secs(5);
/// Overall budget for posting one `/delegate` request, retries included.
const DELEGATE_POST_BUDGET: Duration = Duration::from_secs(30);
/// Attempts for one `/delegate` post.
const DELEGATE_POST_ATTEMPTS: u32 = 3;

fn required_pair<'a>(args: Args<'a>) -> Result<(String, &'a str), ToolOutput> {
    let target = args.opt_nonblank("workspace_id")?;
    let task = args.opt_str("task")?.filter(|t| !t.trim().is_empty());
    let (Some(target), Some(task)) = (target, task) else {
        return Err(ToolOutput::error(
            "Error: workspace_id and task are required",
        ));
    };
    Ok((parse_workspace_id("workspace_id", target)?, task))
}

fn refuse_self(src: &str, target: &str) -> Result<(), ToolOutput> {
    if src == target {
        return Err(ToolOutput::error(format!(
            "Error: workspace {target} is the workspace sending the task; delegate to a peer (see list_peers), or pass source_workspace_id to send from another of your workspaces"
        )));
    }
    Ok(())
}

/// The marker the Python original put before every A2A failure it returned. Agents and
/// prompts written for it look for this exact text (trailing space included).
const A2A_ERROR_PREFIX: &str = "[A2A_ERROR] ";

fn failure_text(peer_name: &str, detail: &str) -> String {
    format!(
        "DELEGATION FAILED to {peer_name}: {A2A_ERROR_PREFIX}{detail}\nYou should either: (1) try a different peer, (2) handle this task yourself, or (3) inform the user that {peer_name} is unavailable and provide your best answer."
    )
}

fn queued_text(peer_name: &str, target: &str, how: &str) -> String {
    format!(
        "Delivered to {peer_name} ({how}). There is no synchronous reply: the peer's answer, if any, will arrive in your inbox as a peer_agent message with peer_id={target} — use wait_for_message or inbox_peek to receive it. Do not send the task again."
    )
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Best-effort `a2a_send` activity row in `src`'s feed (shown on the canvas).
async fn report_delegation_start(
    ctx: &ToolContext,
    src: &str,
    target: &str,
    peer_name: &str,
    task: &str,
) {
    let summary = truncate_chars(&format!("Delegating to {peer_name}"), MAX_SUMMARY_CHARS);
    let body = json!({
        "activity_type": "a2a_send",
        "source_id": src,
        "target_id": target,
        "method": "message/send",
        "summary": summary,
        "status": "ok",
        "request_body": {"task": task},
    });
    report_activity(ctx, src, body).await;
    report_current_task(ctx, src, &summary);
}

/// How a delegation ended, as its `a2a_receive` activity row records it.
struct DelegationRecord {
    summary: String,
    /// `None`: `ok`; `Some(detail)`: `error` with that `error_detail`.
    error_detail: Option<String>,
    /// The text `delegate_task` returned.
    result: String,
}

/// Best-effort `a2a_receive` activity row in `src`'s feed recording the outcome, as the
/// Python original wrote it: the canvas feed and `chat_history` show the peer's reply from
/// it. The row's `source_id` is `src` itself, and the inbox never delivers rows whose source
/// is the polled workspace (`core/src/inbox/message.rs`), so it does not echo back.
async fn report_delegation_result(
    ctx: &ToolContext,
    src: &str,
    target: &str,
    task: &str,
    record: DelegationRecord,
) {
    let summary = truncate_chars(&record.summary, MAX_SUMMARY_CHARS);
    let mut body = json!({
        "activity_type": "a2a_receive",
        "source_id": src,
        "target_id": target,
        "method": "message/send",
        "summary": summary,
        "status": if record.error_detail.is_some() { "error" } else { "ok" },
        "request_body": {"task": task},
        "response_body": {"result": truncate_chars(&record.result, MAX_RECORDED_RESULT_CHARS)},
    });
    if let (Some(detail), Some(map)) = (record.error_detail, body.as_object_mut()) {
        map.insert(
            "error_detail".to_owned(),
            Value::String(truncate_chars(&detail, MAX_ERROR_DETAIL_CHARS)),
        );
    }
    report_activity(ctx, src, body).await;
    report_current_task(ctx, src, &summary);
}

/// After each recorded row, as the Python original did: one heartbeat carrying the row's
/// summary as `current_task`, so the canvas shows what the agent is doing (see
/// `Session::report_current_task`).
fn report_current_task(ctx: &ToolContext, src: &str, summary: &str) {
    if let Some(runtime) = &ctx.inbox {
        runtime.report_current_task(src, summary);
    }
}

/// Posts one activity row to `src`'s feed; failures are only logged at debug (the
/// delegation itself already has its outcome).
async fn report_activity(ctx: &ToolContext, src: &str, body: Value) {
    let call = PlatformCall::post_json(format!("/workspaces/{src}/activity"), src, body)
        .with_timeout(ACTIVITY_TIMEOUT);
    match ctx.call(call).await {
        Ok(r) if r.is_success() => {}
        Ok(r) => tracing::debug!(status = r.status, "activity report rejected"),
        Err(e) => tracing::debug!(error = %e, "activity report failed"),
    }
}

/// `delegate_task`. Under a budget (a client without a progress token) it stops waiting when
/// the budget runs out: the polling path then names the delegation id to check later, the
/// direct A2A path says the peer has not answered yet.
pub(crate) async fn delegate_task(ctx: &ToolContext, args: Args<'_>, env: &CallEnv) -> ToolOutput {
    // Budgets count from here: discovery and the delegation post spend them too.
    let started = tokio::time::Instant::now();
    let (target, task) = match required_pair(args) {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    let src = match resolve_source(ctx, args, Some(&target)) {
        Ok(src) => src,
        Err(e) => return e,
    };
    if let Err(e) = refuse_self(&src, &target) {
        return e;
    }
    let discovered = match discover(ctx, &src, &target).await {
        Discovery::Found(name) => name,
        Discovery::NotAccessible(code) => {
            return ToolOutput::error(format!(
                "Error: workspace {target} not found or not accessible from {src} (HTTP {code}; check access control — list_peers shows who you can reach)"
            ));
        }
        Discovery::AuthFailed => {
            return ToolOutput::error(format!(
                "Error: the platform rejected the token of workspace {src} (HTTP 401) while looking up {target}"
            ));
        }
        Discovery::Inconclusive(why) => {
            tracing::warn!(target_workspace = %target, "discovery inconclusive ({why}); sending anyway");
            None
        }
    };
    let peer_name = discovered
        .or_else(|| ctx.peers.get(&target).and_then(|p| p.name))
        .unwrap_or_else(|| short_id(&target).to_owned());

    let outcome = if ctx.settings.sync_via_inbox {
        let (wait, _) = env.cap(ctx.settings.delegation_timeout);
        env.waiting_for(
            format!("waiting for {peer_name} to finish the delegated task"),
            Some(wait),
        );
        let (_, outcome) = tokio::join!(
            report_delegation_start(ctx, &src, &target, &peer_name, task),
            delegate_via_polling(ctx, &src, &target, task, started + wait)
        );
        outcome
    } else {
        let (wait, capped) = env.cap(ctx.settings.a2a_deadline);
        env.waiting_for(format!("waiting for {peer_name} to answer"), Some(wait));
        let send = async {
            let send = a2a::send_message(ctx, &src, &target, task);
            if !capped {
                return SyncOutcome::Done(send.await);
            }
            match tokio::time::timeout_at(started + wait, send).await {
                Ok(outcome) => SyncOutcome::Done(outcome),
                Err(_) => SyncOutcome::Unanswered { waited: wait },
            }
        };
        let (_, outcome) = tokio::join!(
            report_delegation_start(ctx, &src, &target, &peer_name, task),
            send
        );
        outcome
    };
    let (output, record) = match outcome {
        SyncOutcome::Done(A2aOutcome::Reply(text)) => {
            let record = DelegationRecord {
                summary: format!("{peer_name} responded ({} chars)", text.chars().count()),
                error_detail: None,
                result: text.clone(),
            };
            (ToolOutput::Text(text), record)
        }
        SyncOutcome::Done(A2aOutcome::Queued { how }) => {
            let text = queued_text(&peer_name, &target, &how);
            let record = DelegationRecord {
                summary: format!("Delivered to {peer_name} ({how})"),
                error_detail: None,
                result: text.clone(),
            };
            (ToolOutput::Text(text), record)
        }
        SyncOutcome::Done(A2aOutcome::Failed { detail, .. }) => {
            let url = ctx.platform().join(&format!("/workspaces/{target}/a2a"));
            let detail = format!("{detail} [target={url}]");
            let record = DelegationRecord {
                summary: format!(
                    "{peer_name} failed: {}",
                    truncate_chars(&detail, FAILURE_SUMMARY_CHARS)
                ),
                result: format!("{A2A_ERROR_PREFIX}{detail}"),
                error_detail: Some(detail.clone()),
            };
            (ToolOutput::error(failure_text(&peer_name, &detail)), record)
        }
        SyncOutcome::StillRunning {
            delegation_id,
            last_status,
            waited,
        } => {
            let text = format!(
                "{peer_name} is still working after {}s (delegation_id={delegation_id}, last_status={last_status}). The platform keeps running it — call check_task_status with task_id \"{delegation_id}\" later to get the result.",
                waited.as_secs()
            );
            let record = DelegationRecord {
                summary: format!("{peer_name} is still working (delegation_id={delegation_id})"),
                error_detail: None,
                result: text.clone(),
            };
            (ToolOutput::Text(text), record)
        }
        // No outcome to record yet: the peer's reply arrives later as a message.
        SyncOutcome::Unanswered { waited } => {
            return ToolOutput::Text(format!(
                "{peer_name} has not answered within {}s. The task was sent to workspace {target}, but this call stopped waiting so that your MCP client's request timeout does not fire (the request carried no progress token); any reply the peer sends later as a message arrives in your inbox. For long work use delegate_task_async, which returns a task_id to poll with check_task_status.",
                waited.as_secs()
            ));
        }
    };
    report_delegation_result(ctx, &src, &target, task, record).await;
    output
}

/// Result of sync-via-polling.
#[derive(Debug, Clone, PartialEq)]
enum SyncOutcome {
    /// Finished (or failed) within the budget.
    Done(A2aOutcome),
    /// Budget exhausted; the delegation continues on the platform.
    StillRunning {
        delegation_id: String,
        last_status: String,
        waited: Duration,
    },
    /// The direct A2A call did not answer within the call's budget.
    Unanswered { waited: Duration },
}

/// A `/delegate` acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateAccepted {
    /// Platform delegation id.
    pub delegation_id: String,
    /// Status reported by the platform (`delegated`, or the current one on an idempotent hit).
    pub status: String,
    /// True when the platform answered 200 `idempotent_hit`.
    pub idempotent_hit: bool,
}

/// Why a `/delegate` post did not start a delegation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DelegateError {
    /// Neither 202 nor an idempotent-hit 200.
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Accepted, but the body is not JSON.
    NotJson {
        /// The start of the body.
        body: String,
    },
    /// Accepted, but without a `delegation_id`.
    NoDelegationId {
        /// The start of the body.
        body: String,
    },
    /// No answer (or the request could not be made).
    Call(CallError),
}

impl std::fmt::Display for DelegateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DelegateError::Status { status, body } => {
                write!(f, "delegation failed with status {status}: {body}")
            }
            DelegateError::NotJson { body } => write!(f, "delegate returned non-JSON: {body}"),
            DelegateError::NoDelegationId { body } => {
                write!(f, "delegate response is missing delegation_id: {body}")
            }
            DelegateError::Call(e) => write!(f, "delegation failed — {e}"),
        }
    }
}

impl std::error::Error for DelegateError {}

/// Interprets a `/delegate` response: 202, or 200 with `idempotent_hit`, is acceptance.
pub fn parse_delegate_response(r: &ApiResponse) -> Result<DelegateAccepted, DelegateError> {
    let body = r.json();
    let hit = body
        .as_ref()
        .and_then(|b| b.get("idempotent_hit"))
        .and_then(Value::as_bool)
        == Some(true);
    if !(r.status == 202 || (r.status == 200 && hit)) {
        return Err(DelegateError::Status {
            status: r.status,
            body: r.snippet(200),
        });
    }
    let Some(body) = body else {
        return Err(DelegateError::NotJson {
            body: r.snippet(200),
        });
    };
    let Some(id) = body
        .get("delegation_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(DelegateError::NoDelegationId {
            body: r.snippet(200),
        });
    };
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("delegated");
    Ok(DelegateAccepted {
        delegation_id: id.to_owned(),
        status: status.to_owned(),
        idempotent_hit: hit,
    })
}

/// The wait before retry `attempt` (1-based) of a `/delegate` post.
fn backoff(ctx: &ToolContext, attempt: u32) -> Duration {
    ctx.with_rng(|rng| {
        Backoff::tool_call(ctx.settings.retry_base_delay).delay(attempt.saturating_sub(1), rng)
    })
}

/// Posts `/workspaces/{src}/delegate`. The idempotency key is fixed for this call, so
/// retrying after an unreachable platform, 429 or 502–504 cannot create a duplicate.
pub async fn post_delegate(
    ctx: &ToolContext,
    src: &str,
    target: &str,
    task: &str,
) -> Result<DelegateAccepted, DelegateError> {
    let key = ctx.with_rng(|rng| rng.hex(2));
    let body = json!({"target_id": target, "task": task, "idempotency_key": key});
    let deadline = tokio::time::Instant::now() + DELEGATE_POST_BUDGET;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let call =
            PlatformCall::post_json(format!("/workspaces/{src}/delegate"), src, body.clone())
                .with_timeout(remaining.min(super::client::DEFAULT_TIMEOUT));
        let (error, wait) = match ctx.call(call).await {
            Ok(r) if StatusPolicy::DelegatePost.is_retryable(r.status) => (
                DelegateError::Status {
                    status: r.status,
                    body: r.snippet(200),
                },
                match r.retry_after() {
                    Some(wait) => RetryAfterCap::TOOL_CALL.clamp(wait),
                    None => backoff(ctx, attempt),
                },
            ),
            Ok(r) => {
                let accepted = parse_delegate_response(&r)?;
                ctx.peers
                    .set_delegation_source(&accepted.delegation_id, src);
                return Ok(accepted);
            }
            Err(e @ CallError::Transport(_)) => (DelegateError::Call(e), backoff(ctx, attempt)),
            Err(e) => return Err(DelegateError::Call(e)),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if attempt >= DELEGATE_POST_ATTEMPTS || wait >= remaining {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
    }
}

/// What the `/delegations` list says about one delegation.
#[derive(Debug, Clone, PartialEq)]
pub enum DelegationState {
    /// Finished; the best available result text.
    Completed(String),
    /// Failed; the platform's reason.
    Failed(String),
    /// Not finished; the latest status seen.
    Pending(String),
    /// Not in the list (the platform lists the 50 most recent).
    Missing,
}

/// Best result text of a completed row: full bodies when the platform provides them, else
/// the (300-char) `response_preview`.
fn row_result(row: &Value) -> String {
    let body = row.get("response_body");
    let full = body
        .and_then(|b| b.get("text").or_else(|| b.get("result")))
        .and_then(Value::as_str)
        .or_else(|| row.get("result").and_then(Value::as_str))
        .or_else(|| row.get("response").and_then(Value::as_str));
    match full {
        Some(text) => text.to_owned(),
        None => row
            .get("response_preview")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

/// Reads the state of `delegation_id` from a `/delegations` list (newest first). Any
/// terminal row wins over pending ones (M1 writes the result as a separate row).
pub fn delegation_state(rows: &[Value], delegation_id: &str) -> DelegationState {
    let matching: Vec<&Value> = rows
        .iter()
        .filter(|r| r.get("delegation_id").and_then(Value::as_str) == Some(delegation_id))
        .collect();
    let status_of = |r: &Value| {
        r.get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    if let Some(done) = matching.iter().find(|r| status_of(r) == "completed") {
        return DelegationState::Completed(row_result(done));
    }
    if let Some(failed) = matching.iter().find(|r| status_of(r) == "failed") {
        let reason = ["error", "error_detail", "summary"]
            .iter()
            .find_map(|k| {
                failed
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or("delegation failed");
        return DelegationState::Failed(reason.to_owned());
    }
    match matching.first() {
        Some(row) => DelegationState::Pending(status_of(row)),
        None => DelegationState::Missing,
    }
}

/// A completed delegation's text may be the A2A proxy's queued acknowledgement (poll-mode
/// peer): that is a delivery, not the answer.
fn completed_outcome(text: String) -> A2aOutcome {
    if let Ok(v) = serde_json::from_str::<Value>(&text)
        && (v.get("status").and_then(Value::as_str) == Some("queued")
            || v.get("queued").and_then(Value::as_bool) == Some(true))
    {
        return A2aOutcome::Queued {
            how: "the platform queued the message for the peer".to_owned(),
        };
    }
    A2aOutcome::Reply(if text.is_empty() {
        "(no response)".to_owned()
    } else {
        text
    })
}

async fn delegate_via_polling(
    ctx: &ToolContext,
    src: &str,
    target: &str,
    task: &str,
    deadline: tokio::time::Instant,
) -> SyncOutcome {
    let started = tokio::time::Instant::now();
    let accepted = match post_delegate(ctx, src, target, task).await {
        Ok(a) => a,
        Err(e) => {
            return SyncOutcome::Done(A2aOutcome::Failed {
                detail: e.to_string(),
                retry_after: None,
            });
        }
    };
    let id = accepted.delegation_id;
    let mut last_status = accepted.status;
    loop {
        let call = PlatformCall::get(format!("/workspaces/{src}/delegations"), src);
        // Errors and odd bodies are tolerated: keep polling until the budget is spent.
        if let Ok(r) = ctx.call(call).await
            && let Some(Value::Array(rows)) = r.json().filter(|_| r.status == 200)
        {
            match delegation_state(&rows, &id) {
                DelegationState::Completed(text) => {
                    return SyncOutcome::Done(completed_outcome(text));
                }
                DelegationState::Failed(reason) => {
                    return SyncOutcome::Done(A2aOutcome::Failed {
                        detail: reason,
                        retry_after: None,
                    });
                }
                DelegationState::Pending(status) => last_status = status,
                DelegationState::Missing => {}
            }
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return SyncOutcome::StillRunning {
                delegation_id: id,
                last_status,
                waited: deadline.saturating_duration_since(started),
            };
        }
        tokio::time::sleep(ctx.settings.delegation_poll_interval.min(remaining)).await;
    }
}

/// `delegate_task_async`.
pub(crate) async fn delegate_task_async(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let (target, task) = match required_pair(args) {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    let src = match resolve_source(ctx, args, Some(&target)) {
        Ok(src) => src,
        Err(e) => return e,
    };
    if let Err(e) = refuse_self(&src, &target) {
        return e;
    }
    match post_delegate(ctx, &src, &target, task).await {
        Ok(accepted) => {
            let mut out = json!({
                "delegation_id": accepted.delegation_id,
                "workspace_id": target,
                "status": if accepted.idempotent_hit { accepted.status.as_str() } else { "delegated" },
                "note": "Task delegated. The platform runs it in the background. Use check_task_status to poll for results.",
            });
            if accepted.idempotent_hit {
                out["idempotent_hit"] = Value::Bool(true);
            }
            ToolOutput::Json(out)
        }
        Err(e) => ToolOutput::error(format!("Error: {e}")),
    }
}

/// Projection used when listing delegations.
fn summary_row(row: &Value) -> Value {
    let s = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let error = ["error", "error_detail"]
        .iter()
        .find_map(|k| row.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    let mut out = json!({
        "delegation_id": s("delegation_id"),
        "target_id": s("target_id"),
        "status": s("status"),
        "summary": s("summary"),
        "response_preview": s("response_preview"),
    });
    if !error.is_empty() {
        out["error"] = Value::String(error.to_owned());
    }
    out
}

/// `check_task_status`.
pub(crate) async fn check_task_status(ctx: &ToolContext, args: Args<'_>) -> ToolOutput {
    let task_id = match args.opt_nonblank("task_id") {
        Ok(t) => t,
        Err(e) => return e,
    };
    let peer = match args.opt_nonblank("workspace_id") {
        Ok(Some(raw)) => match parse_workspace_id("workspace_id", raw) {
            Ok(id) => Some(id),
            Err(e) => return e,
        },
        Ok(None) => None,
        Err(e) => return e,
    };
    let src = match args.opt_nonblank("source_workspace_id") {
        Err(e) => return e,
        Ok(Some(raw)) => match parse_registered(ctx, "source_workspace_id", raw) {
            Ok(id) => id,
            Err(e) => return e,
        },
        Ok(None) => match task_id.and_then(|t| ctx.peers.delegation_source(t)) {
            Some(src) => src,
            None => match resolve_source(ctx, args, peer.as_deref()) {
                Ok(src) => src,
                Err(e) => return e,
            },
        },
    };
    let response = match ctx
        .call(PlatformCall::get(
            format!("/workspaces/{src}/delegations"),
            &src,
        ))
        .await
    {
        Ok(r) => r,
        Err(e) => return ToolOutput::error(format!("Error checking delegations: {e}")),
    };
    if response.status != 200 {
        return ToolOutput::error(format!(
            "Error: failed to check delegations (HTTP {}): {}",
            response.status,
            response.error_message()
        ));
    }
    let rows = match response.json() {
        Some(Value::Array(rows)) => rows,
        Some(_) | None => {
            return ToolOutput::error(format!(
                "Error checking delegations: expected a JSON list, got: {}",
                response.snippet(200)
            ));
        }
    };
    if let Some(id) = task_id {
        let matching: Vec<&Value> = rows
            .iter()
            .filter(|r| r.get("delegation_id").and_then(Value::as_str) == Some(id))
            .collect();
        let terminal = matching.iter().find(|r| {
            let st = r
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            st == "completed" || st == "failed"
        });
        return match terminal.or(matching.first()) {
            Some(row) if row.is_object() => ToolOutput::Json((*row).clone()),
            Some(row) => ToolOutput::Json(json!({"delegation": row})),
            None => ToolOutput::Json(json!({
                "status": "not_found",
                "delegation_id": id,
                "note": format!("Workspace {src} does not list this delegation (the platform lists only its 50 most recent)."),
            })),
        };
    }
    let selected: Vec<&Value> = match &peer {
        Some(p) => rows
            .iter()
            .filter(|r| {
                r.get("target_id")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                    == Some(p)
            })
            .collect(),
        None => rows.iter().collect(),
    };
    let summary: Vec<Value> = selected.iter().take(10).map(|r| summary_row(r)).collect();
    ToolOutput::Json(json!({"delegations": summary, "count": selected.len()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_row_reads_error_then_error_detail() {
        let rows = vec![
            json!({"delegation_id": "d", "status": "FAILED", "error": "boom", "error_detail": "other"}),
        ];
        assert_eq!(
            delegation_state(&rows, "d"),
            DelegationState::Failed("boom".into())
        );
        let rows =
            vec![json!({"delegation_id": "d", "status": "failed", "error_detail": "detail"})];
        assert_eq!(
            delegation_state(&rows, "d"),
            DelegationState::Failed("detail".into())
        );
        let rows = vec![json!({"delegation_id": "d", "status": "failed"})];
        assert_eq!(
            delegation_state(&rows, "d"),
            DelegationState::Failed("delegation failed".into())
        );
    }

    #[test]
    fn completed_row_wins_and_prefers_full_text() {
        let rows = vec![
            json!({"delegation_id": "d", "status": "dispatched"}),
            json!({"delegation_id": "d", "status": "completed", "response_preview": "short...", "response_body": {"text": "the full answer"}}),
            json!({"delegation_id": "x", "status": "completed", "response_preview": "wrong"}),
        ];
        assert_eq!(
            delegation_state(&rows, "d"),
            DelegationState::Completed("the full answer".into())
        );
        let rows = vec![
            json!({"delegation_id": "d", "status": "completed", "response_preview": "preview"}),
        ];
        assert_eq!(
            delegation_state(&rows, "d"),
            DelegationState::Completed("preview".into())
        );
        assert_eq!(
            delegation_state(&[json!({"delegation_id": "d", "status": "Queued"})], "d"),
            DelegationState::Pending("queued".into())
        );
        assert_eq!(delegation_state(&rows, "zzz"), DelegationState::Missing);
    }

    #[test]
    fn queued_preview_is_a_delivery() {
        assert!(matches!(
            completed_outcome(r#"{"status":"queued","delivery_mode":"poll"}"#.into()),
            A2aOutcome::Queued { .. }
        ));
        assert_eq!(
            completed_outcome("42".into()),
            A2aOutcome::Reply("42".into())
        );
        assert_eq!(
            completed_outcome(String::new()),
            A2aOutcome::Reply("(no response)".into())
        );
    }
}
