//! Hostile inputs, class "nothing stalls the runtime": the real binary against the stub,
//! fed single inputs hundreds of times larger than real ones — a 1 MB `commit_memory`, a
//! 1 MB `send_message_to_user`, 300 inbound messages of 20 KB, a list of 5,000 peers, a
//! 15 MB activity page on every poll. While each is processed, heartbeats stay on their
//! 1 s grid (no gap beyond interval + 1 s, from the stub's journal timestamps) and a
//! concurrent `ping` is answered within 1 s.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::{Rig, send_call, wait_reply};
use molecule_mcp_tests::stub::{Action, InboundMessage, Script, WorkspaceSpec};
use serde_json::json;

const INTERVAL: Duration = Duration::from_secs(1);
const PING_LIMIT: Duration = Duration::from_secs(1);

/// Sends `ping` and returns how long the answer took.
async fn ping(rig: &mut Rig, id: i64) -> Duration {
    let started = Instant::now();
    let answer = rig
        .p
        .request(id, "ping", json!({}), Duration::from_secs(30))
        .await;
    assert!(answer.is_some(), "ping {id} unanswered");
    started.elapsed()
}

/// The longest gap between consecutive heartbeats the stub saw.
fn worst_heartbeat_gap(rig: &Rig) -> Duration {
    let mut at: Vec<_> = rig
        .stub
        .journal()
        .into_iter()
        .filter(|e| e.method == "POST" && e.path == "/registry/heartbeat")
        .map(|e| e.at)
        .collect();
    at.sort();
    at.windows(2)
        .filter_map(|w| w[1].duration_since(w[0]).ok())
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_inputs_never_delay_heartbeats_or_pings() {
    let mut rig = Rig::start("hostile-stall", &[]).await;
    for i in 0..5_000 {
        rig.peer(WorkspaceSpec::named(&format!("peer-{i}")));
    }
    let mut worst_ping = Duration::ZERO;
    let mut id = 50_000;
    // Secret-shaped runs make the redaction scanners do real work on the 1 MB text.
    let memory = "note sk-abcdefghijklmnopqrstuvwx token = ".repeat(25_000);
    let text = "é".repeat(500_000);
    let calls = [
        ("commit_memory", json!({"content": memory})),
        ("send_message_to_user", json!({"message": text})),
        ("list_peers", json!({})),
    ];
    for (tool, args) in calls {
        let call = send_call(&mut rig.p, tool, args).await;
        id += 1;
        worst_ping = worst_ping.max(ping(&mut rig, id).await);
        wait_reply(&mut rig.p, call, Duration::from_secs(30))
            .await
            .ok(tool);
    }
    // 300 inbound messages of 20 KB: polled, queued, pushed to the client.
    let me = rig.ws.clone();
    for i in 0..300 {
        rig.stub.inject_message(
            &me,
            InboundMessage::canvas(&format!("{i} {}", "m".repeat(20_000))),
        );
    }
    for _ in 0..3 {
        id += 1;
        worst_ping = worst_ping.max(ping(&mut rig, id).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then a 15 MB page (within the 16 MiB cap, so it is read and parsed) on every poll.
    let item = format!("\"{}\",", "x".repeat(1_000));
    let mut page = String::from("[");
    while page.len() < 15 * 1024 * 1024 {
        page.push_str(&item);
    }
    page.pop();
    page.push(']');
    rig.script(Script::new(
        "GET",
        "/workspaces/:id/activity",
        Action::body(200, "application/json", page),
    ));
    for _ in 0..6 {
        id += 1;
        worst_ping = worst_ping.max(ping(&mut rig, id).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let gap = worst_heartbeat_gap(&rig);
    eprintln!("worst heartbeat gap {gap:?}, worst ping {worst_ping:?}");
    assert!(
        gap <= INTERVAL + Duration::from_secs(1),
        "heartbeat gap {gap:?}"
    );
    assert!(worst_ping <= PING_LIMIT, "ping took {worst_ping:?}");
    rig.finish().await;
}
