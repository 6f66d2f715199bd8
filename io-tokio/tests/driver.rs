//! The fleet driver against the loopback platform stub: our own attachments are held back
//! and never downloaded or acked (acking them would break the canvas's download link), other
//! uploads are, the tool handle's wait / peek / pop work over the real HTTP path, and a
//! workspace rejected at register stops polling while the others go on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use molecule_mcp_core::inbox::{InboxConfig, InboxMessage};
use molecule_mcp_core::workspace::{FleetPlan, Output, PopOutcome, Restored, WorkspacePlan};
use molecule_mcp_core::{PlatformUrl, Secret, SessionConfig, StateLayout};
use molecule_mcp_io_tokio::state_dir::create_private_dir;
use molecule_mcp_io_tokio::{FleetHandle, HttpClient, driver};
use molecule_mcp_stub::{InboundMessage, JournalEntry, PlatformStub, WorkspaceSpec};
use tokio::sync::mpsc;

/// One test's private state directory (created 0700 the way the runtime creates its own),
/// removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let path =
        std::env::temp_dir().join(format!("molecule-mcp-driver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    create_private_dir(&path).expect("temp dir");
    TempDir(path)
}

/// An inbox-only workspace (no heartbeats) polling every 200 ms.
fn spec(stub: &PlatformStub, ws: &str, token: &str) -> WorkspacePlan {
    let platform = PlatformUrl::parse(&stub.url()).expect("stub url");
    let mut cfg = InboxConfig::new(platform, ws, Secret::new(token));
    cfg.poll_interval = Duration::from_millis(200);
    WorkspacePlan {
        workspace_id: ws.to_owned(),
        session: None,
        inbox: Some(cfg),
        layout: StateLayout::SINGLE,
        state_dir_display: String::new(),
        restored: Restored::default(),
    }
}

/// Runs `workspaces` on the fleet driver with `dir` as the state directory.
fn spawn(
    mut workspaces: Vec<WorkspacePlan>,
    dir: &Path,
    seed: u64,
) -> (FleetHandle, mpsc::UnboundedReceiver<Output>) {
    let multi_workspace = workspaces.len() > 1;
    for w in &mut workspaces {
        w.layout = StateLayout::new(multi_workspace);
        w.state_dir_display = dir.display().to_string();
    }
    let mut plan = FleetPlan {
        workspaces,
        multi_workspace,
    };
    driver::restore(&mut plan, dir);
    driver::spawn(plan, dir.to_path_buf(), HttpClient::new(), seed)
}

/// The next message announced on the event stream.
async fn next_arrival(events: &mut mpsc::UnboundedReceiver<Output>) -> Option<InboxMessage> {
    loop {
        match events.recv().await? {
            Output::Arrived(message) => return Some(message),
            Output::SendHttp(_)
            | Output::FetchUpload(_)
            | Output::Persist(_)
            | Output::Append(_)
            | Output::SetAside(_)
            | Output::Log(_)
            | Output::TokenChanged { .. }
            | Output::Rejected { .. }
            | Output::PopDone { .. }
            | Output::Exit { .. } => {}
        }
    }
}

fn polls(j: &[JournalEntry]) -> usize {
    j.iter()
        .filter(|e| e.path.ends_with("/activity") && e.status.is_some())
        .count()
}

/// Waits until the inbox has completed `n` more polls: a window defined by progress, not time.
async fn more_polls(stub: &PlatformStub, n: usize) {
    let target = polls(&stub.journal()) + n;
    assert!(
        stub.wait_for(|j| polls(j) >= target, Duration::from_secs(10))
            .await,
        "the inbox keeps polling"
    );
}

fn downloads_of(stub: &PlatformStub, file_id: &str) -> usize {
    let path = format!("/pending-uploads/{file_id}/content");
    stub.journal()
        .iter()
        .filter(|e| e.path.ends_with(&path))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_uploads_are_held_back_and_dropped_others_are_staged() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    let dir = temp_dir("outbound");
    let (inbox, _events) = spawn(vec![spec(&stub, &ws, &token)], dir.path(), 7);
    // As send_message_to_user does: begin before the upload request goes out…
    inbox.begin_outbound_upload(&ws);
    // …(status() is answered after begin, commands being handled in order)…
    let _ = inbox.status().await;
    // …then the platform queues our own attachment as an inbound row too, next to a real one.
    let (own, _) = stub.inject_upload(&ws, "mine.txt", "text/plain", &b"ours"[..]);
    let (theirs, _) = stub.inject_upload(&ws, "theirs.txt", "text/plain", &b"from the user"[..]);
    more_polls(&stub, 3).await; // nothing may be fetched meanwhile
    assert_eq!(
        downloads_of(&stub, &theirs) + downloads_of(&stub, &own),
        0,
        "downloads are held while our upload is in flight"
    );
    // …and end with the file ids the upload answer named.
    inbox.end_outbound_upload(&ws, vec![own.clone()]);
    let acked = stub
        .wait_until(
            |s| {
                s.pending_uploads(&ws)
                    .iter()
                    .any(|u| u.file_id == theirs && u.acked)
            },
            Duration::from_secs(10),
        )
        .await;
    assert!(acked, "the other upload is downloaded, staged and acked");
    more_polls(&stub, 3).await;
    assert_eq!(
        downloads_of(&stub, &own),
        0,
        "our own attachment is never downloaded"
    );
    assert!(
        stub.pending_uploads(&ws)
            .iter()
            .any(|u| u.file_id == own && !u.acked),
        "nor acked, so the canvas link keeps working"
    );
    let staged: Vec<String> = std::fs::read_dir(dir.join("chat-uploads"))
        .expect("uploads dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(staged[0].ends_with("-theirs.txt"), "{staged:?}");
    inbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_each_message_once_and_pop_is_durable() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    let dir = temp_dir("wait");
    let (inbox, mut events) = spawn(vec![spec(&stub, &ws, &token)], dir.path(), 1);
    assert!(
        inbox
            .wait_unreturned(Duration::from_millis(300))
            .await
            .is_none(),
        "empty inbox times out"
    );
    let first = stub.inject_message(&ws, InboundMessage::canvas("one"));
    let second = stub.inject_message(&ws, InboundMessage::canvas("two"));
    let got = inbox
        .wait_unreturned(Duration::from_secs(10))
        .await
        .expect("first message");
    assert_eq!(got.activity_id, first);
    let pushed = tokio::time::timeout(Duration::from_secs(10), next_arrival(&mut events))
        .await
        .expect("arrival")
        .expect("open");
    assert_eq!(
        pushed.activity_id, first,
        "arrivals are announced for the push path"
    );
    let next = inbox
        .wait_unreturned(Duration::from_secs(10))
        .await
        .expect("second message");
    assert_eq!(
        next.activity_id, second,
        "a message already returned is not returned again"
    );
    assert_eq!(
        inbox.peek(10).await.len(),
        2,
        "both stay queued until popped"
    );
    assert!(matches!(inbox.pop(&first).await, PopOutcome::Removed(_)));
    assert_eq!(
        inbox.pop(&first).await,
        PopOutcome::NotQueued,
        "pop is idempotent"
    );
    inbox.shutdown().await;

    // A restart from the same state: the popped message never comes back.
    let (inbox, _events) = spawn(vec![spec(&stub, &ws, &token)], dir.path(), 2);
    let ids: Vec<String> = inbox
        .peek(10)
        .await
        .into_iter()
        .map(|m| m.activity_id)
        .collect();
    assert_eq!(ids, vec![second]);
    inbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_workspace_stops_polling_and_the_others_go_on() {
    let stub = PlatformStub::start().await.expect("stub");
    let (a, _token_a) = stub.create_workspace(WorkspaceSpec::named("a").poll());
    let (b, token_b) = stub.create_workspace(WorkspaceSpec::named("b").poll());
    let dir = temp_dir("stop");
    let platform = PlatformUrl::parse(&stub.url()).expect("stub url");
    // Workspace `a` registers with a token the platform rejects: the core stops its inbox.
    let mut rejected = spec(&stub, &a, "not-the-token-of-a");
    rejected.session = Some(SessionConfig::new(
        platform,
        a.clone(),
        Secret::new("not-the-token-of-a"),
        "test",
        serde_json::json!({"name": "a"}),
    ));
    let specs = vec![rejected, spec(&stub, &b, &token_b)];
    let (inbox, mut events) = spawn(specs, dir.path(), 3);
    let polls_of = |j: &[JournalEntry], ws: &str| {
        let path = format!("/workspaces/{ws}/activity");
        j.iter()
            .filter(|e| e.path == path && e.status.is_some())
            .count()
    };
    let was_rejected = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(Output::Rejected { workspace_id, .. }) => return workspace_id,
                Some(_) => {}
                None => return String::new(),
            }
        }
    })
    .await
    .expect("a rejection is reported");
    assert_eq!(was_rejected, a);
    assert!(
        stub.wait_for(|j| polls_of(j, &b) >= 1, Duration::from_secs(10))
            .await
    );
    // Let any poll of `a` already in flight land, then count.
    let b_now = polls_of(&stub.journal(), &b);
    assert!(
        stub.wait_for(|j| polls_of(j, &b) >= b_now + 2, Duration::from_secs(10))
            .await
    );
    let a_stopped = polls_of(&stub.journal(), &a);
    assert!(
        stub.wait_for(|j| polls_of(j, &b) >= b_now + 5, Duration::from_secs(10))
            .await,
        "b keeps polling"
    );
    assert_eq!(polls_of(&stub.journal(), &a), a_stopped, "a polls no more");
    inbox.shutdown().await;
}
