//! Hostile inputs, class "everything is bounded": the real binary against the stub, fed
//! inputs far larger than any real one. Each is refused (or capped) at a documented bound
//! (`docs/limits.md`) and peak memory (`VmHWM`) stays below [`PEAK_RSS_KB`].

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{Rig, WAIT, answered, hits};
use molecule_mcp_tests::measure::proc_status;
use molecule_mcp_tests::process::McpProcess;
use molecule_mcp_tests::stub::{Action, Script};
use serde_json::json;

/// No single input may raise peak RSS above this (256 MB).
const PEAK_RSS_KB: u64 = 256 * 1024;

fn peak_kb(p: &McpProcess) -> u64 {
    p.pid()
        .and_then(|pid| proc_status(pid, "VmHWM"))
        .expect("VmHWM of the running binary")
}

/// 100 000 tool calls at once while every one of them would hang on the platform: the
/// first `MOLECULE_MCP_MAX_CONCURRENT_CALLS` run, every other is refused at once with
/// `-32000` (never queued), heartbeats go on, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tool_calls_is_refused_not_queued() {
    const CALLS: usize = 100_000;
    const CAP: usize = 8;
    let mut rig = Rig::start(
        "hostile-bounds-flood",
        &[("MOLECULE_MCP_MAX_CONCURRENT_CALLS", &CAP.to_string())],
    )
    .await;
    rig.script(Script::new("GET", "/workspaces/:id", Action::Hang));
    let mut flood = Vec::with_capacity(CALLS * 100);
    for i in 0..CALLS {
        flood.extend_from_slice(
            json!({"jsonrpc": "2.0", "id": format!("f{i}"), "method": "tools/call",
                   "params": {"name": "get_workspace_info", "arguments": {}}})
            .to_string()
            .as_bytes(),
        );
        flood.push(b'\n');
    }
    flood.pop();
    let started = Instant::now();
    rig.p.send_raw(&flood).await.expect("flood");
    let ping = rig
        .p
        .request(7, "ping", json!({}), Duration::from_secs(60))
        .await;
    assert!(ping.is_some(), "ping after the flood went unanswered");
    let answered_in = started.elapsed();
    let refused = rig
        .p
        .unclaimed()
        .iter()
        .filter(|m| m["error"]["code"] == json!(-32000))
        .count();
    // A running call ends when its platform request times out (the tools' 10 s,
    // `cli/src/tools/client.rs` DEFAULT_TIMEOUT), which frees its slot for a later call of
    // the flood: on a loaded host reading the flood can outlast that. Never more than CAP
    // at once, so each 10 s started lets at most CAP more in.
    let waves = 1 + usize::try_from(answered_in.as_secs() / 10).unwrap_or(usize::MAX);
    if waves == 1 {
        assert_eq!(
            refused,
            CALLS - CAP,
            "every call past the cap is refused at once"
        );
    } else {
        assert!(
            refused >= CALLS.saturating_sub(CAP.saturating_mul(waves)),
            "{refused} refused in {answered_in:?}: more than {CAP} ran at once"
        );
    }
    let peak = peak_kb(&rig.p);
    assert!(peak < PEAK_RSS_KB, "peak RSS {peak} kB");
    let beats_before = hits(&rig.stub, "POST", "/registry/heartbeat").len();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let beats = answered(&rig.stub.journal(), "POST", "/registry/heartbeat", 200);
    assert!(
        hits(&rig.stub, "POST", "/registry/heartbeat").len() > beats_before && beats > 0,
        "heartbeats stopped under the flood"
    );
    eprintln!("flood of {CALLS}: answered in {answered_in:?}, peak RSS {peak} kB");
    rig.finish().await;
}

/// A 3 GB (sparse) token file is refused from its size, before it is read: exit 2 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_file_is_refused_before_it_is_read() {
    let dir = e2e_support::temp_dir("hostile-bounds-token-file");
    let token = dir.join("token");
    std::fs::File::create(&token)
        .expect("create")
        .set_len(3 * 1024 * 1024 * 1024)
        .expect("sparse 3 GB");
    let path = token.to_str().expect("utf-8").to_owned();
    let env = [
        ("PLATFORM_URL", "http://127.0.0.1:9"),
        ("WORKSPACE_ID", "00000000-0000-4000-8000-000000000001"),
        ("MOLECULE_WORKSPACE_TOKEN_FILE", path.as_str()),
        ("CONFIGS_DIR", dir.as_str()),
    ];
    let started = Instant::now();
    let mut p = McpProcess::spawn(&env, &[]).expect("spawn");
    let status = p.wait_exit(WAIT).await;
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", p.stderr());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(p.stderr().contains("larger than 64 KiB"), "{}", p.stderr());
}

/// `n` bytes of valid JSON (an array of strings), as a huge but well-formed answer.
fn json_of(n: usize) -> bytes::Bytes {
    let item = format!("\"{}\",", "x".repeat(1_000));
    let mut body = String::with_capacity(n + item.len());
    body.push('[');
    while body.len() < n {
        body.push_str(&item);
    }
    body.pop();
    body.push(']');
    bytes::Bytes::from(body)
}

/// Huge platform answers — a 30 MB activity page (inbox polls and `chat_history`), a 10 MB
/// peer list, a 50 MB error page — are refused (or, for the error, cut to its head) while
/// they are read: the tools answer with a clear error, heartbeats go on, memory stays
/// bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_platform_answers_are_capped_while_read() {
    let mut rig = Rig::start("hostile-bounds-answers", &[]).await;
    let page = Action::body(200, "application/json", json_of(30 * 1024 * 1024));
    rig.script(Script::new("GET", "/workspaces/:id/activity", page));
    let peers = Action::body(200, "application/json", json_of(10 * 1024 * 1024));
    rig.script(Script::new("GET", "/registry/:id/peers", peers));
    let error = Action::body(500, "text/plain", vec![b'e'; 50 * 1024 * 1024]);
    rig.script(Script::new("GET", "/workspaces/:id", error));
    rig.call("chat_history", json!({"peer_id": rig.ws.clone()}))
        .await
        .err("30 MB activity page", &["too large"]);
    rig.call("list_peers", json!({}))
        .await
        .err("10 MB peer list", &["too large"]);
    let info = rig.call("get_workspace_info", json!({})).await;
    let text = info.text();
    assert!(info.is_error() && text.contains("500"), "{text}");
    assert!(
        text.len() < 4_096,
        "the error quotes only the head of the page"
    );
    // Inbox polls meet the 30 MB page too; let a few of them and a few heartbeats pass.
    let beats_before = answered(&rig.stub.journal(), "POST", "/registry/heartbeat", 200);
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let beats = answered(&rig.stub.journal(), "POST", "/registry/heartbeat", 200);
    assert!(
        beats >= beats_before + 2,
        "heartbeats stalled: {beats_before} → {beats}"
    );
    let polls = hits(
        &rig.stub,
        "GET",
        &format!("/workspaces/{}/activity", rig.ws),
    )
    .len();
    assert!(polls >= 2, "the inbox did not poll the huge page ({polls})");
    let peak = peak_kb(&rig.p);
    eprintln!("huge answers: peak RSS {peak} kB");
    assert!(peak < PEAK_RSS_KB, "peak RSS {peak} kB");
    rig.finish().await;
}

/// Ten `send_message_to_user` calls at once, each with four 25 MB attachments (1 GB in
/// all): they take turns through the shared attachment budget, so peak memory stays about
/// one message's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_messages_with_a_hundred_megabytes_of_attachments_each() {
    let mut rig = Rig::start("hostile-bounds-attachments", &[]).await;
    // The stub stops reading an upload after 1 MiB (413): by then every file was read and
    // the whole body built, which is what costs memory, and the test stays quick.
    rig.stub.update_options(|o| o.max_body_bytes = 1024 * 1024);
    let files = e2e_support::temp_dir("hostile-bounds-files");
    let mut paths = Vec::new();
    for i in 0..4 {
        let path = files.join(&format!("part-{i}.bin"));
        // Binary content: MIME sniffing stops at the first byte (text detection scans the
        // whole file, which an unoptimised test build does slowly).
        std::fs::write(&path, vec![0xf0 + i; 25 * 1024 * 1024]).expect("attachment");
        paths.push(path.to_str().expect("utf-8").to_owned());
    }
    let mut calls = Vec::new();
    for i in 0..10 {
        let args = json!({"message": format!("files {i}"), "attachments": paths});
        calls.push(e2e_support::send_call(&mut rig.p, "send_message_to_user", args).await);
    }
    for call in calls {
        let reply = e2e_support::wait_reply(&mut rig.p, call, Duration::from_secs(120)).await;
        assert!(reply.0.get("result").is_some(), "{}", reply.0);
    }
    let peak = peak_kb(&rig.p);
    eprintln!("10 × 4 × 25 MB attachments: peak RSS {peak} kB");
    assert!(peak < PEAK_RSS_KB, "peak RSS {peak} kB");
    rig.finish().await;
}

/// Under a small open-files limit, tool calls that hold connections cannot starve the
/// heartbeats: the tool share of the limit is refused past its cap, the platform loop keeps
/// its own (`core/src/fd_budget.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_never_take_the_heartbeats_file_descriptors() {
    let prlimit = std::path::Path::new("/usr/bin/prlimit");
    if !prlimit.exists() {
        eprintln!(
            "SKIPPED tool_calls_never_take_the_heartbeats_file_descriptors: no /usr/bin/prlimit"
        );
        return;
    }
    let stub = molecule_mcp_tests::stub::PlatformStub::start()
        .await
        .expect("stub");
    let (ws, token) =
        stub.create_workspace(molecule_mcp_tests::stub::WorkspaceSpec::named("fd-budget").poll());
    let dir = e2e_support::temp_dir("hostile-bounds-fds");
    let env = e2e_support::base_env(&stub.url(), &ws, &token, dir.as_str());
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bin = molecule_mcp_tests::process::molecule_mcp_bin();
    let bin = bin.to_string_lossy();
    let mut p = McpProcess::spawn_bin(prlimit, &pairs, &["--nofile=48:48", bin.as_ref()])
        .expect("spawn under prlimit");
    assert!(p.initialize(WAIT).await.is_some(), "stderr: {}", p.stderr());
    // Every tool call holds its connection open until the end of the test.
    stub.script(Script::new("GET", "/workspaces/:id", Action::Hang));
    let mut flood = Vec::new();
    for i in 0..200 {
        flood.extend_from_slice(
            json!({"jsonrpc": "2.0", "id": format!("f{i}"), "method": "tools/call",
                   "params": {"name": "get_workspace_info", "arguments": {}}})
            .to_string()
            .as_bytes(),
        );
        flood.push(b'\n');
    }
    p.send_raw(&flood).await.expect("flood");
    let ping = p
        .request(7, "ping", json!({}), Duration::from_secs(10))
        .await;
    assert!(ping.is_some(), "ping went unanswered");
    // Heartbeats (1 s) keep being answered over the next 5 s.
    let ok_before = answered(&stub.journal(), "POST", "/registry/heartbeat", 200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ok_after = answered(&stub.journal(), "POST", "/registry/heartbeat", 200);
    assert!(
        ok_after >= ok_before + 3,
        "heartbeats starved: {ok_before} → {ok_after} answered; stderr: {}",
        p.stderr()
    );
    let refused = p
        .unclaimed()
        .iter()
        .filter(|m| m["error"]["code"] == json!(-32000))
        .count();
    assert!(refused >= 190, "only {refused} of 200 calls refused");
    p.close_stdin();
    let _ = p.wait_exit(WAIT).await;
    stub.shutdown().await;
}
