//! Long tool calls against real client timeouts, with the real binary over raw
//! newline-delimited JSON: a call whose request carries `_meta.progressToken` sends
//! `notifications/progress` at `MOLECULE_MCP_PROGRESS_INTERVAL_MS` (100 ms here), with that
//! token, increasing `progress`, the tool's `total` and a readable `message`, all before its
//! response; a call without a token answers "nothing yet — call again" within
//! `MOLECULE_MCP_CALL_BUDGET_MS`; `notifications/cancelled` stops the waiting call and its
//! progress at once.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{Reply, Rig, WAIT, next_id, send_call, wait_reply};
use molecule_mcp_tests::process::McpProcess;
use molecule_mcp_tests::stub::{Action, Script, WorkspaceSpec};
use serde_json::{Value, json};

const FAST_PROGRESS: (&str, &str) = ("MOLECULE_MCP_PROGRESS_INTERVAL_MS", "100");

/// Sends a `tools/call` whose `_meta` carries `token`; returns the request id.
async fn send_with_token(p: &mut McpProcess, tool: &str, args: Value, token: &Value) -> i64 {
    let id = next_id();
    let params = json!({"name": tool, "arguments": args, "_meta": {"progressToken": token}});
    p.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}))
        .await
        .expect("write to molecule-mcp stdin");
    id
}

fn is_progress(m: &Value) -> bool {
    m["method"] == "notifications/progress"
}

/// Collects every progress notification until the response to `id`; returns both.
async fn progress_until_reply(p: &mut McpProcess, id: i64) -> (Vec<Value>, Reply) {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = p
            .wait_for(|m| is_progress(m) || m.get("id") == Some(&json!(id)), left)
            .await
            .unwrap_or_else(|| panic!("no answer to {id}; stderr: {}", p.stderr()));
        if is_progress(&m) {
            seen.push(m["params"].clone());
        } else {
            return (seen, Reply(m));
        }
    }
}

/// Progress values strictly increase, and every notification names `token`.
fn assert_monotonic(progress: &[Value], token: &Value) {
    let mut last = 0.0;
    for p in progress {
        assert_eq!(&p["progressToken"], token, "{p}");
        let now = p["progress"].as_f64().expect("numeric progress");
        assert!(now > last, "progress must increase: {progress:?}");
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_message_with_a_token_reports_progress_until_it_answers() {
    let mut rig = Rig::start("progress-wait", &[FAST_PROGRESS]).await;
    let token = json!("wait-1");
    let id = send_with_token(
        &mut rig.p,
        "wait_for_message",
        json!({"timeout_secs": 1.5}),
        &token,
    )
    .await;
    let (progress, reply) = progress_until_reply(&mut rig.p, id).await;
    let reply = reply.ok("wait with progress");
    assert_eq!(reply.structured()["timeout"], true, "{:?}", reply.0);
    // 1.5 s at 100 ms: about 14; a loaded machine may skip some, never all.
    assert!(
        progress.len() >= 3,
        "too few progress notifications: {progress:?}"
    );
    assert_monotonic(&progress, &token);
    let first = &progress[0];
    assert_eq!(first["total"], json!(1.5), "{first}");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("waiting for a message: ") && message.ends_with("of 2 s"),
        "{message}"
    );
    // An integer token is echoed as an integer.
    let token = json!(7);
    let id = send_with_token(
        &mut rig.p,
        "wait_for_message",
        json!({"timeout_secs": 0.5}),
        &token,
    )
    .await;
    let (progress, _) = progress_until_reply(&mut rig.p, id).await;
    assert!(!progress.is_empty());
    assert_monotonic(&progress, &token);
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_no_call_outlives_the_budget_and_none_reports_progress() {
    let mut rig = Rig::start(
        "budget-wait",
        &[FAST_PROGRESS, ("MOLECULE_MCP_CALL_BUDGET_MS", "800")],
    )
    .await;
    let started = Instant::now();
    let id = send_call(&mut rig.p, "wait_for_message", json!({"timeout_secs": 120})).await;
    let reply = wait_reply(&mut rig.p, id, WAIT).await.ok("budgeted wait");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let s = reply.structured();
    assert_eq!(s["timeout"], true, "{s}");
    assert_eq!(s["call_again"], true, "{s}");
    assert!(
        s["note"]
            .as_str()
            .unwrap_or_default()
            .contains("call wait_for_message again"),
        "{s}"
    );
    // A wait shorter than the budget is not marked: it simply timed out.
    let id = send_call(&mut rig.p, "wait_for_message", json!({"timeout_secs": 0.2})).await;
    let reply = wait_reply(&mut rig.p, id, WAIT).await.ok("short wait");
    assert_eq!(reply.structured().get("call_again"), None, "{:?}", reply.0);
    assert!(
        rig.p.unclaimed().iter().all(|m| !is_progress(m)),
        "progress without a token: {:?}",
        rig.p.unclaimed()
    );
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_call_stops_it_and_its_progress_at_once() {
    let mut rig = Rig::start("progress-cancel", &[FAST_PROGRESS]).await;
    let token = json!("c-1");
    let id = send_with_token(
        &mut rig.p,
        "wait_for_message",
        json!({"timeout_secs": 60}),
        &token,
    )
    .await;
    assert!(
        rig.p.wait_for(is_progress, WAIT).await.is_some(),
        "no progress before cancelling; stderr: {}",
        rig.p.stderr()
    );
    rig.p
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id, "reason": "user"}}))
        .await
        .expect("send cancel");
    // A ping round trip orders us after the cancellation; then the output stays quiet.
    let ping = next_id();
    let pong = rig.p.request(ping, "ping", json!({}), WAIT).await;
    assert!(pong.is_some_and(|r| r["result"] == json!({})));
    let _ = rig.p.unclaimed();
    let late = rig
        .p
        .wait_for(
            |m| is_progress(m) || m.get("id") == Some(&json!(id)),
            Duration::from_millis(700),
        )
        .await;
    assert_eq!(late, None, "a cancelled call kept talking");
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_does_not_hold_delegate_task_past_the_budget() {
    let mut rig = Rig::start(
        "budget-delegate",
        &[FAST_PROGRESS, ("MOLECULE_MCP_CALL_BUDGET_MS", "1500")],
    )
    .await;
    let peer = rig.peer(WorkspaceSpec::named("silent-peer").push("http://silent.invalid/a2a"));
    rig.script(Script::new(
        "POST",
        &format!("/workspaces/{peer}/a2a"),
        Action::Hang,
    ));
    let started = Instant::now();
    let id = send_call(
        &mut rig.p,
        "delegate_task",
        json!({"workspace_id": peer, "task": "think hard"}),
    )
    .await;
    let reply = wait_reply(&mut rig.p, id, WAIT)
        .await
        .ok("budgeted delegation");
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = reply.text();
    assert!(
        text.contains("silent-peer has not answered within 1s")
            && text.contains("delegate_task_async"),
        "{text}"
    );
    // With a token the same call reports what it waits for.
    let token = json!("d-1");
    let id = send_with_token(
        &mut rig.p,
        "delegate_task",
        json!({"workspace_id": peer, "task": "think again"}),
        &token,
    )
    .await;
    let m = rig.p.wait_for(is_progress, WAIT).await.expect("progress");
    assert!(
        m["params"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("waiting for silent-peer to answer: "),
        "{m}"
    );
    rig.p
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}))
        .await
        .expect("send cancel");
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegation_via_polling_hands_back_its_id_when_the_budget_runs_out() {
    let mut rig = Rig::start(
        "budget-poll",
        &[
            ("DELEGATION_SYNC_VIA_INBOX", "1"),
            ("MOLECULE_MCP_CALL_BUDGET_MS", "1500"),
        ],
    )
    .await;
    let me = rig.ws.clone();
    let peer = rig.peer(WorkspaceSpec::named("stuck-peer").push("http://stuck.invalid/a2a"));
    let id = send_call(
        &mut rig.p,
        "delegate_task",
        json!({"workspace_id": peer, "task": "long job"}),
    )
    .await;
    let reply = wait_reply(&mut rig.p, id, WAIT).await.ok("still running");
    let delegation = rig
        .stub
        .delegations(&me)
        .into_iter()
        .find(|d| d.target_id == peer)
        .expect("a /delegate post")
        .id;
    let text = reply.text();
    assert!(
        text.contains(&format!("delegation_id={delegation}")) && text.contains("check_task_status"),
        "{text}"
    );
    rig.finish().await;
}
