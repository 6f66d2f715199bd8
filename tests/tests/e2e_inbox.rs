//! End-to-end tests of the durable inbox and multi-workspace mode,
//! with the real `molecule-mcp` binary against the loopback PlatformStub: push
//! notifications, `wait_for_message` / `inbox_peek` / `inbox_pop`, kill -9 and restart, 410
//! recovery, a backlog larger than one page, self-row filtering, file parts, inbound chat
//! uploads, concurrency of `ping` with a blocked wait, and `MOLECULE_WORKSPACES` (one
//! workspace rejected at register while the others work, arrival routing, `via:` peers).

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{
    Reply, Rig, WAIT, answered, assert_clean, base_env, bearer, call_on, hits, peek_ids, send_call,
    set_env, spawn_initialized, temp_dir, wait_peek, wait_reply,
};
use molecule_mcp_core::inbox::saved_state;
use molecule_mcp_tests::process::McpProcess;
use molecule_mcp_tests::stub::{
    InboundMessage, PlatformStub, WorkspaceSpec, WorkspaceStatus, message_send_envelope,
};
use serde_json::{Value, json};

const CHANNEL: &str = "notifications/claude/channel";

fn is_push_for(m: &Value, activity_id: &str) -> bool {
    m["method"] == CHANNEL && m["params"]["meta"]["activity_id"] == json!(activity_id)
}

async fn wait_push(p: &mut McpProcess, activity_id: &str) -> Value {
    match p.wait_for(|m| is_push_for(m, activity_id), WAIT).await {
        Some(m) => m,
        None => panic!("no push for {activity_id}; stderr: {}", p.stderr()),
    }
}

/// The persisted inbox state (`None` while not written yet): the snapshot at `path` and
/// the journal appended after it (`.mcp_inbox_journal…` next to it), as a restart reads them.
fn state(path: &std::path::Path) -> Option<Value> {
    let snapshot = std::fs::read(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let journal_name = name.replacen(".mcp_inbox_state", ".mcp_inbox_journal", 1);
    let journal = std::fs::read(path.with_file_name(journal_name)).unwrap_or_default();
    serde_json::from_slice(&saved_state(&snapshot, &journal)?).ok()
}

fn pending_ids(state: &Value) -> Vec<String> {
    state["pending"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["activity_id"].as_str().map(str::to_owned))
        .collect()
}

fn handled(state: &Value, id: &str) -> bool {
    state["handled"]
        .as_array()
        .is_some_and(|h| h.contains(&json!(id)))
}

/// Waits until the state file on disk records `popped` as handled and not pending.
async fn wait_pop_saved(file: &std::path::Path, popped: &str) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(s) = state(file)
            && handled(&s, popped)
            && !pending_ids(&s).iter().any(|i| i == popped)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("pop of {popped} never reached {}", file.display());
}

fn activity_path(ws: &str) -> String {
    format!("/workspaces/{ws}/activity")
}

/// Number of inbox polls the stub has answered for `ws` (any status).
fn polls(stub: &PlatformStub, ws: &str) -> usize {
    hits(stub, "GET", &activity_path(ws))
        .iter()
        .filter(|e| e.query_param("type").as_deref() == Some("a2a_receive") && e.status.is_some())
        .count()
}

async fn wait_more_polls(stub: &PlatformStub, ws: &str, n: usize) {
    let start = polls(stub, ws);
    assert!(
        stub.wait_until(|s| polls(s, ws) >= start + n, WAIT).await,
        "the inbox stopped polling"
    );
}

// ----- arrival, push, wait/peek/pop, filters -----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_push_and_inbox_tools() {
    let mut rig = Rig::start("arrivals", &[]).await;
    let me = rig.ws.clone();
    let url = rig.stub.url();
    let peer = rig.peer(
        WorkspaceSpec::named("Eve\n<img src=x onerror=alert(1)>")
            .role("ops\u{202e}\"lead\"")
            .poll(),
    );

    // A canvas message → push with sanitised meta, then wait_for_message returns it.
    let m1 = rig
        .stub
        .inject_message(&me, InboundMessage::canvas("hello agent"));
    let push = wait_push(&mut rig.p, &m1).await;
    assert!(push.get("id").is_none(), "a notification has no id");
    let meta = &push["params"]["meta"];
    assert_eq!(meta["source"], "molecule");
    assert_eq!(meta["kind"], "canvas_user");
    assert_eq!(meta["method"], "message/send");
    assert_eq!(meta["peer_id"], "");
    assert!(meta["ts"].as_str().is_some_and(|t| t.len() >= 20), "{meta}");
    assert!(
        meta.get("text").is_none() && meta.get("arrival_workspace_id").is_none(),
        "{meta}"
    );
    assert!(
        meta.as_object().unwrap().values().all(Value::is_string),
        "{meta}"
    );
    assert_eq!(
        push["params"]["content"],
        "[from canvas user]\nhello agent\n↩ Reply: send_message_to_user({message: \"...\"})"
    );

    // A peer message with a file part: names sanitised on the push path and the poll path.
    // (Discovery only returns a name; list_peers also caches the role.)
    let listed = rig.call("list_peers", json!({})).await.ok("list_peers");
    assert!(
        listed.text().contains("Eve img src x onerror alert(1)"),
        "{}",
        listed.text()
    );
    let body = json!({"jsonrpc": "2.0", "id": "r-2", "method": "message/send", "params": {"message": {
    "role": "user", "messageId": "mid-2", "parts": [
        {"kind": "text", "text": "see attached"},
        {"kind": "file", "file": {"uri": "https://files.example/r.pdf", "name": "r.pdf", "mimeType": "application/pdf", "size": 10}}
    ]}}});
    let m2 = rig
        .stub
        .inject_message(&me, InboundMessage::with_body(Some(&peer), body));
    let push = wait_push(&mut rig.p, &m2).await;
    let meta = &push["params"]["meta"];
    assert_eq!(meta["kind"], "peer_agent");
    assert_eq!(meta["peer_id"], json!(peer));
    assert_eq!(
        meta["peer_name"], "Eve img src x onerror alert(1)",
        "{meta}"
    );
    assert_eq!(meta["peer_role"], "ops lead", "{meta}");
    assert_eq!(
        meta["agent_card_url"],
        json!(format!("{url}/registry/discover/{peer}"))
    );
    let content = push["params"]["content"].as_str().unwrap();
    assert!(
        content.starts_with(&format!(
            "[from Eve img src x onerror alert(1) (ops lead) · peer_id={peer}]\nsee attached"
        )),
        "{content}"
    );
    assert!(
        content.contains("https://files.example/r.pdf"),
        "file part not surfaced: {content}"
    );
    assert!(!content.contains('<'), "{content}");

    // A sender id that is not a UUID is never echoed into meta, content or a URL.
    let odd = rig
        .stub
        .inject_message(&me, InboundMessage::from_peer("../x\n<evil>", "odd sender"));
    let push = wait_push(&mut rig.p, &odd).await;
    let meta = &push["params"]["meta"];
    assert_eq!(meta["kind"], "peer_agent");
    assert_eq!(meta["peer_id"], "");
    assert!(
        meta.get("agent_card_url").is_none() && meta.get("peer_name").is_none(),
        "{meta}"
    );
    let content = push["params"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("[from peer-agent · peer_id invalid]\nodd sender"),
        "{content}"
    );
    assert!(!content.contains("evil"), "{content}");
    let r = rig
        .call("inbox_peek", json!({"limit": 200}))
        .await
        .ok("peek odd");
    let row = r
        .text_json()
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["activity_id"] == json!(odd))
        .cloned()
        .unwrap();
    assert_eq!(row["agent_card_url"], "", "{row}");
    rig.call("inbox_pop", json!({"activity_id": odd}))
        .await
        .ok("pop odd");

    // Rows that are not messages for us: our own activity report (self-authored), the echo
    // of our own notify, a tasks/get call. Then one more real message.
    rig.stub
        .inject_message(&me, InboundMessage::from_peer(&me, "self-authored row"));
    rig.call("send_message_to_user", json!({"message": "echo me"}))
        .await
        .ok("notify");
    rig.stub.inject_message(
        &me,
        InboundMessage::from_peer(&peer, "get").method("tasks/get"),
    );
    let m6 = rig
        .stub
        .inject_message(&me, InboundMessage::from_peer(&peer, "last one"));
    wait_push(&mut rig.p, &m6).await;
    wait_peek(&mut rig.p, &[&m1, &m2, &m6]).await;
    let pushes: Vec<Value> = rig
        .p
        .unclaimed()
        .into_iter()
        .filter(|m| m["method"] == CHANNEL)
        .collect();
    assert!(pushes.is_empty(), "unexpected pushes: {pushes:?}");

    // wait_for_message returns the next message no earlier call returned.
    let schema_check = |r: &Reply| {
        assert!(r.structured().is_object(), "{}", r.0);
        assert_eq!(&r.text_json(), r.structured());
    };
    let w = rig
        .call("wait_for_message", json!({"timeout_secs": 5}))
        .await
        .ok("wait 1");
    schema_check(&w);
    assert_eq!(w.structured()["activity_id"], json!(m1));
    assert_eq!(w.structured()["text"], "hello agent");
    assert_eq!(w.structured()["kind"], "canvas_user");
    let w = rig
        .call("wait_for_message", json!({"timeout_secs": 5}))
        .await
        .ok("wait 2");
    let msg = w.structured();
    assert_eq!(
        msg["activity_id"],
        json!(m2),
        "the same message was returned twice"
    );
    assert_eq!(msg["text"], "see attached");
    assert_eq!(msg["peer_id"], json!(peer));
    assert_eq!(msg["peer_name"], "Eve img src x onerror alert(1)");
    assert_eq!(msg["peer_role"], "ops lead");
    assert_eq!(
        msg["agent_card_url"],
        json!(format!("{url}/registry/discover/{peer}"))
    );
    assert_eq!(
        msg["files"],
        json!([{"uri": "https://files.example/r.pdf", "name": "r.pdf", "mimeType": "application/pdf", "size": 10}])
    );
    let w = rig
        .call("wait_for_message", json!({"timeout_secs": 5}))
        .await
        .ok("wait 3");
    assert_eq!(w.structured()["activity_id"], json!(m6));
    let t0 = Instant::now();
    let w = rig
        .call("wait_for_message", json!({"timeout_secs": 1}))
        .await
        .ok("wait 4");
    assert_eq!(
        w.structured(),
        &json!({"timeout": true, "timeout_secs": 1.0})
    );
    assert!(t0.elapsed() >= Duration::from_millis(900));
    let w = rig
        .call("wait_for_message", json!({"timeout_secs": -5}))
        .await
        .ok("negative timeout");
    assert_eq!(
        w.structured(),
        &json!({"timeout": true, "timeout_secs": 0.0})
    );
    rig.call("wait_for_message", json!({"timeout_secs": "soon"}))
        .await
        .err("bad timeout", &["`timeout_secs` must be a number"]);

    // Still queued until popped; peek is oldest first with poll-path enrichment.
    let r = rig
        .call("inbox_peek", json!({"limit": 2}))
        .await
        .ok("peek 2");
    let rows = r.text_json();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[0]["activity_id"], json!(m1));
    assert_eq!(rows[1]["peer_name"], "Eve img src x onerror alert(1)");
    let r = rig
        .call("inbox_pop", json!({"activity_id": m1}))
        .await
        .ok("pop");
    assert_eq!(r.structured(), &json!({"removed": true, "activity_id": m1}));
    let r = rig
        .call("inbox_pop", json!({"activity_id": m1}))
        .await
        .ok("pop again");
    assert_eq!(
        r.structured(),
        &json!({"removed": false, "activity_id": m1})
    );
    rig.call("inbox_pop", json!({"activity_id": "  "}))
        .await
        .err("blank", &["activity_id is required."]);
    assert_eq!(peek_ids(&mut rig.p).await, vec![m2.clone(), m6.clone()]);

    // A new arrival wakes a blocked wait at once.
    let waiting = send_call(&mut rig.p, "wait_for_message", json!({"timeout_secs": 20})).await;
    let m7 = rig
        .stub
        .inject_message(&me, InboundMessage::canvas("wake up"));
    let t0 = Instant::now();
    let w = wait_reply(&mut rig.p, waiting, WAIT).await.ok("woken");
    assert_eq!(w.structured()["activity_id"], json!(m7));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "wait not woken by the arrival"
    );

    // ping stays fast while wait_for_message blocks.
    let blocked = send_call(&mut rig.p, "wait_for_message", json!({"timeout_secs": 5})).await;
    let blocked_at = Instant::now();
    let mut rtts = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let pong = rig.p.request(900 + i, "ping", json!({}), WAIT).await;
        rtts.push(t.elapsed());
        assert!(
            pong.is_some_and(|p| p.get("result").is_some()),
            "ping unanswered"
        );
    }
    let pings_done = blocked_at.elapsed();
    let w = wait_reply(&mut rig.p, blocked, WAIT)
        .await
        .ok("blocked wait");
    let waited = blocked_at.elapsed();
    assert_eq!(w.structured()["timeout"], true, "{}", w.0);
    assert!(
        pings_done < Duration::from_secs(4),
        "pings were not answered during the wait"
    );
    assert!(
        waited >= Duration::from_millis(4500),
        "the wait did not block: {waited:?}"
    );
    let mut sorted = rtts.clone();
    sorted.sort();
    eprintln!("ping round trips during a blocked wait_for_message: {rtts:?}");
    assert!(
        sorted[2] < Duration::from_millis(50),
        "median ping {:?} ≥ 50 ms: {rtts:?}",
        sorted[2]
    );
    assert!(
        sorted[4] < Duration::from_millis(500),
        "slowest ping {:?}",
        sorted[4]
    );
    rig.finish().await;
}

// ----- crash / restart ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_loses_nothing() {
    let stub = PlatformStub::start().await.unwrap();
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("crashy").poll());
    let dir = temp_dir("crash");
    let env = base_env(&stub.url(), &ws, &token, dir.as_str());
    let file = dir.join(".mcp_inbox_state");
    let m: Vec<String> = (1..=3)
        .map(|i| stub.inject_message(&ws, InboundMessage::canvas(&format!("before start {i}"))))
        .collect();
    let mut p = spawn_initialized(&env).await;
    wait_peek(&mut p, &[&m[0], &m[1], &m[2]]).await;
    call_on(&mut p, "inbox_pop", json!({"activity_id": m[0]}))
        .await
        .ok("pop");
    wait_pop_saved(&file, &m[0]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "state file mode {mode:o}");
    }
    // kill -9: no shutdown path runs.
    p.signal(9);
    let status = p.wait_exit(WAIT).await.expect("killed");
    assert!(!status.success());
    let m4 = stub.inject_message(&ws, InboundMessage::canvas("while down"));

    let last_before = stub.journal().last().map_or(0, |e| e.id);
    let mut p = spawn_initialized(&env).await;
    wait_peek(&mut p, &[&m[1], &m[2], &m4]).await;
    // It resumed from the durable cursor (since_id), not from a fresh backlog scan.
    let resumed = hits(&stub, "GET", &activity_path(&ws))
        .into_iter()
        .find(|e| e.id > last_before && e.query_param("type").is_some())
        .expect("a poll after the restart");
    assert_eq!(
        resumed.query_param("since_id").as_deref(),
        Some(m[2].as_str()),
        "{:?}",
        resumed.query
    );
    // More polls: the popped message never comes back.
    wait_more_polls(&stub, &ws, 2).await;
    assert_eq!(
        peek_ids(&mut p).await,
        vec![m[1].clone(), m[2].clone(), m4.clone()]
    );
    let w = call_on(&mut p, "wait_for_message", json!({"timeout_secs": 5}))
        .await
        .ok("wait");
    assert_eq!(w.structured()["activity_id"], json!(m[1]));
    assert!(
        !p.unclaimed().iter().any(|x| is_push_for(x, &m[0])),
        "popped message re-announced"
    );
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token]);
}

// ----- 410 recovery ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_gone_410_recovers_without_redelivery() {
    let mut rig = Rig::start("gone", &[("MOLECULE_MCP_VERBOSE", "1")]).await;
    let me = rig.ws.clone();
    let file = rig.dir.join(".mcp_inbox_state");
    let m1 = rig.stub.inject_message(&me, InboundMessage::canvas("one"));
    let m2 = rig.stub.inject_message(&me, InboundMessage::canvas("two"));
    wait_peek(&mut rig.p, &[&m1, &m2]).await;
    rig.call("inbox_pop", json!({"activity_id": m1}))
        .await
        .ok("pop m1");
    wait_pop_saved(&file, &m1).await;
    // The inbox polls since the newest row it processed.
    let cursor_seen = rig
        .stub
        .wait_for(
            |j| {
                j.iter()
                    .rev()
                    .find(|e| {
                        e.path == activity_path(&me)
                            && e.query
                                .as_deref()
                                .is_some_and(|q| q.contains("a2a_receive"))
                    })
                    .and_then(|e| e.query_param("since_id"))
                    == Some(m2.clone())
            },
            WAIT,
        )
        .await;
    assert!(cursor_seen, "cursor is not m2");
    // The platform prunes the cursor row: the next poll gets 410.
    assert!(rig.stub.prune_activity(&me, &m2));
    let m3 = rig
        .stub
        .inject_message(&me, InboundMessage::canvas("three"));
    let got_410 = rig
        .stub
        .wait_for(|j| answered(j, "GET", &activity_path(&me), 410) > 0, WAIT)
        .await;
    assert!(got_410, "no 410 was served");
    wait_push(&mut rig.p, &m3).await;
    wait_peek(&mut rig.p, &[&m2, &m3]).await;
    // The recovery re-read the backlog (m1 is still in the feed) without delivering it again.
    let rescan = hits(&rig.stub, "GET", &activity_path(&me))
        .into_iter()
        .any(|e| {
            e.status == Some(200)
                && e.query_param("since_secs").is_some()
                && e.query_param("since_id").is_none()
        });
    assert!(rescan, "no backlog re-scan after the 410");
    wait_more_polls(&rig.stub, &me, 2).await;
    assert_eq!(peek_ids(&mut rig.p).await, vec![m2.clone(), m3.clone()]);
    // Each of m1 and m2 was announced exactly once (m3's push was claimed above).
    let pushes = rig.p.unclaimed();
    for id in [&m1, &m2] {
        let n = pushes.iter().filter(|m| is_push_for(m, id)).count();
        assert_eq!(n, 1, "{id} announced {n} times: {pushes:?}");
    }
    assert!(
        rig.p
            .stderr()
            .contains("is no longer known to the platform (410)"),
        "the 410 was not logged"
    );
    rig.finish().await;
}

// ----- backlog > one page -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_of_250_is_delivered_completely_in_order() {
    let stub = PlatformStub::start().await.unwrap();
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("backlog").poll());
    let dir = temp_dir("backlog");
    let expected: Vec<String> = (0..250)
        .map(|i| format!("backlog message {i:03}"))
        .collect();
    let ids: Vec<String> = expected
        .iter()
        .map(|t| stub.inject_message(&ws, InboundMessage::canvas(t)))
        .collect();
    let mut p = spawn_initialized(&base_env(&stub.url(), &ws, &token, dir.as_str())).await;
    let t0 = Instant::now();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let w = call_on(&mut p, "wait_for_message", json!({"timeout_secs": 10}))
            .await
            .ok("wait");
        let m = w.structured().clone();
        assert!(
            m.get("timeout").is_none(),
            "timed out after {} messages; stderr: {}",
            got.len(),
            p.stderr()
        );
        let id = m["activity_id"].as_str().unwrap().to_owned();
        call_on(&mut p, "inbox_pop", json!({"activity_id": id}))
            .await
            .ok("pop");
        got.push((id, m["text"].as_str().unwrap().to_owned()));
    }
    let texts: Vec<String> = got.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(texts, expected, "backlog out of order or incomplete");
    assert_eq!(got.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), ids);
    eprintln!("250-row backlog delivered in {:?}", t0.elapsed());
    // It took more than one page: the backlog was paged with before_ts / since_id, and no
    // request asked for more than the platform's maximum.
    let feed = hits(&stub, "GET", &activity_path(&ws));
    assert!(
        feed.iter().any(|e| e.query_param("before_ts").is_some()),
        "no backward paging"
    );
    assert!(feed.iter().all(|e| {
        e.query_param("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .is_some_and(|l| l <= 500)
    }));
    wait_more_polls(&stub, &ws, 1).await;
    assert!(peek_ids(&mut p).await.is_empty());
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token]);
}

// ----- inbound chat uploads ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_upload_is_staged_acked_and_linked() {
    let mut rig = Rig::start("uploads", &[]).await;
    let me = rig.ws.clone();
    let bytes = b"%PDF-1.4\nquarterly numbers\n".to_vec();
    let (file_id, upload_row) =
        rig.stub
            .inject_upload(&me, "report 2026.pdf", "application/pdf", bytes.clone());
    let pending_uri = format!("platform-pending:{me}/{file_id}");
    let mut envelope = message_send_envelope("here is the report");
    envelope["params"]["message"]["parts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "file", "file": {"uri": pending_uri, "name": "report 2026.pdf", "mimeType": "application/pdf", "size": bytes.len()}}));
    let msg = rig
        .stub
        .inject_message(&me, InboundMessage::with_body(None, envelope));

    let acked = rig
        .stub
        .wait_until(
            |s| s.pending_uploads(&me).first().is_some_and(|u| u.acked),
            WAIT,
        )
        .await;
    assert!(
        acked,
        "the upload was never acked; stderr: {}",
        rig.p.stderr()
    );
    let content = format!("/workspaces/{me}/pending-uploads/{file_id}/content");
    let ack = format!("/workspaces/{me}/pending-uploads/{file_id}/ack");
    assert_eq!(hits(&rig.stub, "GET", &content).len(), 1);
    let acks = hits(&rig.stub, "POST", &ack);
    assert_eq!(acks.len(), 1);
    assert_eq!(bearer(&acks[0]).as_deref(), Some(rig.token.as_str()));

    let w = rig
        .call("wait_for_message", json!({"timeout_secs": 10}))
        .await
        .ok("wait");
    let m = w.structured();
    assert_eq!(
        m["activity_id"],
        json!(msg),
        "the upload row itself must not be a message"
    );
    assert_ne!(m["activity_id"], json!(upload_row));
    assert_eq!(m["text"], "here is the report");
    let uri = m["files"][0]["uri"].as_str().expect("file part").to_owned();
    let uploads_dir = rig.dir.join("chat-uploads");
    let prefix = format!("workspace:{}/", uploads_dir.display());
    assert!(
        uri.starts_with(&prefix) && uri.ends_with("-report_2026.pdf"),
        "{uri}"
    );
    let local = std::path::PathBuf::from(uri.strip_prefix("workspace:").unwrap());
    assert_eq!(std::fs::read(&local).unwrap(), bytes);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&local).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let push = wait_push(&mut rig.p, &msg).await;
    assert!(
        push["params"]["content"].as_str().unwrap().contains(&uri),
        "{push}"
    );
    assert_eq!(peek_ids(&mut rig.p).await, vec![msg.clone()]);
    rig.finish().await;
}

// ----- multi-workspace ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_workspace_one_process() {
    let stub = PlatformStub::start().await.unwrap();
    let (a, ta) = stub.create_workspace(WorkspaceSpec::named("ws-a").poll());
    let (b, tb) = stub.create_workspace(WorkspaceSpec::named("ws-b").poll());
    let (c, tc) = stub.create_workspace(WorkspaceSpec::named("ws-c").poll());
    let online = |s: WorkspaceSpec| s.status(WorkspaceStatus::Online).poll();
    let (p1, _) = stub.create_workspace(online(WorkspaceSpec::named("child-of-a").parent(&a)));
    let (p2, _) = stub.create_workspace(online(WorkspaceSpec::named("child-of-b").parent(&b)));
    let dir = temp_dir("multi");
    let list = json!([{"id": a, "token": ta}, {"id": b, "token": tb}, {"id": c, "token": "not-the-token-of-c"}]);
    let mut env = base_env(&stub.url(), "", "", dir.as_str());
    env.retain(|(k, _)| k != "WORKSPACE_ID" && k != "MOLECULE_WORKSPACE_TOKEN");
    set_env(&mut env, "MOLECULE_WORKSPACES", &list.to_string());
    let mut p = spawn_initialized(&env).await;

    // A and B register and heartbeat; C is refused at register and marked failed only.
    let beating = stub
        .wait_until(
            |s| {
                [&a, &b].iter().all(|w| {
                    s.workspace(w)
                        .is_some_and(|w| w.register_count >= 1 && w.heartbeat_count >= 2)
                }) && answered(&s.journal(), "POST", "/registry/register", 401) >= 1
            },
            WAIT,
        )
        .await;
    assert!(beating, "stderr: {}", p.stderr());
    assert!(
        p.wait_for_stderr("marked failed", WAIT).await,
        "stderr: {}",
        p.stderr()
    );
    assert!(
        p.request(5, "ping", json!({}), WAIT).await.is_some(),
        "process died"
    );
    assert_eq!(stub.workspace(&c).unwrap().heartbeat_count, 0);
    // C's inbox stops polling with the rejected token once C is marked failed; A's goes on.
    let polls = |ws: &str| {
        let path = format!("/workspaces/{ws}/activity");
        stub.journal()
            .iter()
            .filter(|e| e.path == path && e.status.is_some())
            .count()
    };
    let a_before = polls(&a);
    assert!(
        stub.wait_until(|_| polls(&a) >= a_before + 2, WAIT).await,
        "A keeps polling"
    );
    let c_after_stop = polls(&c);
    assert!(
        stub.wait_until(|_| polls(&a) >= a_before + 4, WAIT).await,
        "A keeps polling"
    );
    assert_eq!(polls(&c), c_after_stop, "C's inbox no longer polls");
    let c_err = [c.as_str(), "rejected by the platform at start-up"];
    call_on(
        &mut p,
        "get_workspace_info",
        json!({"source_workspace_id": c}),
    )
    .await
    .err("as C", &c_err);
    call_on(
        &mut p,
        "commit_memory",
        json!({"content": "x", "source_workspace_id": c}),
    )
    .await
    .err("as C", &c_err);
    call_on(
        &mut p,
        "send_message_to_user",
        json!({"message": "x", "workspace_id": c}),
    )
    .await
    .err("as C", &c_err);
    let r = call_on(
        &mut p,
        "get_workspace_info",
        json!({"source_workspace_id": b}),
    )
    .await
    .ok("as B");
    assert_eq!(r.structured()["id"], json!(b));
    let r = call_on(&mut p, "get_workspace_info", json!({}))
        .await
        .ok("primary");
    assert_eq!(r.structured()["id"], json!(a));

    // Messages say where they arrived; the reply routes by it.
    let mb = stub.inject_message(&b, InboundMessage::canvas("for B"));
    let push = wait_push(&mut p, &mb).await;
    assert_eq!(push["params"]["meta"]["arrival_workspace_id"], json!(b));
    assert!(
        push["params"]["content"]
            .as_str()
            .unwrap()
            .contains(&format!("workspace_id: \"{b}\"")),
        "{push}"
    );
    let ma = stub.inject_message(&a, InboundMessage::from_peer(&p1, "for A from its child"));
    let push = wait_push(&mut p, &ma).await;
    assert_eq!(push["params"]["meta"]["peer_name"], "child-of-a", "{push}");
    // A peer only B can reach is named by asking as B (the arrival workspace), not the
    // primary; the reply hint names B as the source.
    let mb2 = stub.inject_message(&b, InboundMessage::from_peer(&p2, "for B from its child"));
    let push = wait_push(&mut p, &mb2).await;
    assert_eq!(push["params"]["meta"]["peer_name"], "child-of-b", "{push}");
    assert_eq!(push["params"]["meta"]["arrival_workspace_id"], json!(b));
    assert!(
        push["params"]["content"]
            .as_str()
            .unwrap()
            .contains(&format!("source_workspace_id: \"{b}\"")),
        "{push}"
    );
    let discover = hits(&stub, "GET", &format!("/registry/discover/{p2}"));
    assert!(
        !discover.is_empty()
            && discover
                .iter()
                .all(|e| e.header("x-workspace-id") == Some(b.as_str()))
    );
    for (message, workspace) in [(&mb, &b), (&ma, &a), (&mb2, &b)] {
        let w = call_on(&mut p, "wait_for_message", json!({"timeout_secs": 5}))
            .await
            .ok("wait");
        assert_eq!(
            (
                w.structured()["activity_id"].clone(),
                w.structured()["arrival_workspace_id"].clone()
            ),
            (json!(message), json!(workspace))
        );
    }
    // Per-workspace state files carry the full id (inbox state exists once a message came).
    for w in [&a, &b] {
        let secret = dir.join(&format!(".platform_inbound_secret_{w}"));
        let inbox = dir.join(&format!(".mcp_inbox_state_{w}"));
        let ok = stub
            .wait_until(|_| secret.is_file() && inbox.is_file(), WAIT)
            .await;
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            ok,
            "missing state files for {w}: {names:?}; stderr: {}",
            p.stderr()
        );
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap().trim(),
            stub.workspace(w).unwrap().inbound_secret.unwrap()
        );
    }
    for name in std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
    {
        assert!(
            !name.starts_with('.') || [&a, &b, &c].iter().any(|w| name.ends_with(w.as_str())),
            "state file without a full workspace id: {name}"
        );
    }

    call_on(
        &mut p,
        "send_message_to_user",
        json!({"message": "reply for B", "workspace_id": b}),
    )
    .await
    .ok("reply B");
    assert_eq!(
        stub.notifications(&b),
        vec![json!({"message": "reply for B"})]
    );
    assert!(stub.notifications(&a).is_empty());
    let sent = hits(&stub, "POST", &format!("/workspaces/{b}/notify"));
    assert_eq!(bearer(&sent[0]).as_deref(), Some(tb.as_str()));

    // list_peers aggregates over the workspaces, tagging each peer with `via:`.
    let r = call_on(&mut p, "list_peers", json!({})).await.ok("peers");
    let text = r.text();
    assert!(
        text.contains(&format!(
            "- child-of-a (ID: {p1}, status: online, role: , via: {})",
            &a[..8]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "- child-of-b (ID: {p2}, status: online, role: , via: {})",
            &b[..8]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("[{}]", &c[..8])) && text.contains("rejected"),
        "{text}"
    );
    assert!(
        !text.contains("Cannot reach platform"),
        "a rejected workspace is not an unreachable platform: {text}"
    );
    let r = call_on(&mut p, "list_peers", json!({"source_workspace_id": b}))
        .await
        .ok("peers of B");
    assert!(
        r.text().contains("child-of-b")
            && !r.text().contains("child-of-a")
            && !r.text().contains("via:"),
        "{}",
        r.text()
    );

    // Auto-routing through the peer cache: delegation, status checks and history act as B.
    let r = call_on(
        &mut p,
        "delegate_task_async",
        json!({"workspace_id": p2, "task": "job for p2"}),
    )
    .await
    .ok("async");
    let d = r.structured()["delegation_id"].as_str().unwrap().to_owned();
    let posts = hits(&stub, "POST", &format!("/workspaces/{b}/delegate"));
    assert_eq!(posts.len(), 1, "the delegation was not sent as B");
    assert_eq!(bearer(&posts[0]).as_deref(), Some(tb.as_str()));
    assert!(stub.complete_delegation(&d, "p2 done"));
    let r = call_on(&mut p, "check_task_status", json!({"task_id": d}))
        .await
        .ok("status");
    assert_eq!(r.structured()["status"], "completed");
    let r = call_on(&mut p, "check_task_status", json!({"workspace_id": p2}))
        .await
        .ok("by peer");
    assert_eq!(r.structured()["delegations"][0]["delegation_id"], json!(d));
    let lists = hits(&stub, "GET", &format!("/workspaces/{b}/delegations"));
    assert_eq!(lists.len(), 2, "check_task_status did not route to B");
    assert!(hits(&stub, "GET", &format!("/workspaces/{a}/delegations")).is_empty());
    call_on(
        &mut p,
        "delegate_task",
        json!({"workspace_id": p1, "task": "hi p1"}),
    )
    .await
    .ok("to p1");
    call_on(
        &mut p,
        "delegate_task",
        json!({"workspace_id": p2, "task": "hi p2"}),
    )
    .await
    .ok("to p2");
    let a2a = |t: &str| hits(&stub, "POST", &format!("/workspaces/{t}/a2a"));
    assert_eq!(a2a(&p1)[0].header("x-workspace-id"), Some(a.as_str()));
    assert_eq!(a2a(&p2)[0].header("x-workspace-id"), Some(b.as_str()));
    assert_eq!(bearer(&a2a(&p2)[0]).as_deref(), Some(tb.as_str()));
    call_on(&mut p, "chat_history", json!({"peer_id": p2}))
        .await
        .ok("history");
    assert!(
        hits(&stub, "GET", &activity_path(&b))
            .iter()
            .any(|e| e.query_param("peer_id") == Some(p2.clone())),
        "chat_history did not route to B"
    );
    // The C workspace's bad token, and the good ones, stay out of the logs.
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&ta, &tb, "not-the-token-of-c", &tc]);
}

// ----- the poll cadence follows the agent (core/src/inbox/cadence.rs) ----------------------

/// With a 20 s configured interval, an agent blocked in `wait_for_message` still gets a
/// message within about a second: the inbox polls at once when the wait starts and then
/// at least every second, and goes back to the configured interval afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_agent_gets_messages_within_a_second() {
    let mut rig = Rig::start(
        "cadence",
        &[("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "20")],
    )
    .await;
    let me = rig.ws.clone();
    // The first poll (the backlog) happens at start; the next would be ~20 s later.
    assert!(
        rig.stub.wait_until(|s| polls(s, &me) >= 1, WAIT).await,
        "no first poll"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = polls(&rig.stub, &me);
    let id = send_call(&mut rig.p, "wait_for_message", json!({"timeout_secs": 30})).await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let during = polls(&rig.stub, &me) - before;
    assert!(
        during >= 3,
        "{during} polls in 3.2 s of waiting (expected one at once, then ≥ 1/s)"
    );
    let m = rig
        .stub
        .inject_message(&me, InboundMessage::canvas("quick"));
    let put = Instant::now();
    let reply = wait_reply(&mut rig.p, id, WAIT).await;
    let latency = put.elapsed();
    assert_eq!(reply.structured()["activity_id"], json!(m), "{:?}", reply.0);
    // 1 s of cadence plus a generous margin for a loaded CI machine; 20 s without the rule.
    assert!(
        latency < Duration::from_secs(3),
        "delivered after {latency:?}"
    );
    // The wait is over: back to the configured interval (no poll in the next 3 s, allowing
    // one already under way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = polls(&rig.stub, &me);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        polls(&rig.stub, &me) <= after + 1,
        "still polling fast after the wait"
    );
    rig.finish().await;
}

/// A client that declares the `claude/channel` capability takes pushes: someone is always
/// waiting, so the inbox polls every second without any `wait_for_message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_pushes_gets_polls_every_second() {
    let stub = PlatformStub::start().await.expect("start stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("channel").poll());
    let dir = temp_dir("channel");
    let mut env = base_env(&stub.url(), &ws, &token, dir.as_str());
    set_env(&mut env, "MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "20");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut p = McpProcess::spawn(&pairs, &[]).expect("spawn");
    let init = p
        .request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-06-18",
                   "capabilities": {"experimental": {"claude/channel": {}}},
                   "clientInfo": {"name": "channel-client", "version": "0"}}),
            WAIT,
        )
        .await;
    assert!(
        init.is_some_and(|r| r.get("result").is_some()),
        "{}",
        p.stderr()
    );
    p.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .expect("send");
    assert!(
        stub.wait_until(|s| polls(s, &ws) >= 1, WAIT).await,
        "no first poll"
    );
    let before = polls(&stub, &ws);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let during = polls(&stub, &ws) - before;
    assert!(during >= 3, "{during} polls in 3.2 s with a push client");
    let m = stub.inject_message(&ws, InboundMessage::canvas("pushed"));
    let put = Instant::now();
    wait_push(&mut p, &m).await;
    assert!(
        put.elapsed() < Duration::from_secs(3),
        "pushed after {:?}",
        put.elapsed()
    );
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token]);
}
