//! Hostile persistence, class "persistence is honest": the real binary against the stub
//! with a state directory or state files that cannot be written or read. Nothing may be
//! reported as saved that is not on disk, and nothing on disk may be dropped silently.
//!
//! The tests run as root in CI containers, where permission bits do not stop writes; they
//! make writes fail in ways root cannot bypass (a directory under `/proc`, a non-empty
//! directory where a state file should be renamed into place).

mod e2e_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::{Rig, WAIT, base_env, spawn_initialized, temp_dir};
use molecule_mcp_core::inbox::{Inbox, InboxAction, InboxInput, saved_state};
use molecule_mcp_core::testing::inbox::{FakeFeed, message_row, test_config};
use molecule_mcp_core::{HttpRequest, PersistError};
use molecule_mcp_io_tokio::persist;
use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{InboundMessage, PlatformStub, WorkspaceSpec};
use serde_json::{Value, json};

const CHANNEL: &str = "notifications/claude/channel";

/// Every inbox state file name the binary may write for a single workspace.
const INBOX_FILES: [&str; 2] = [".mcp_inbox_state", ".mcp_inbox_journal"];

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_dir_is_exit_2_naming_the_path_and_the_fix() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    // Nobody, root included, can create a file in a /proc directory.
    let dir = "/proc/self/fdinfo";
    let out = tokio::task::spawn_blocking(move || {
        Command::new(molecule_mcp_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PLATFORM_URL", stub.url())
            .env("WORKSPACE_ID", ws)
            .env("MOLECULE_WORKSPACE_TOKEN", token)
            .env("CONFIGS_DIR", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("state directory /proc/self/fdinfo is not writable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Fix:") && stderr.contains("CONFIGS_DIR"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_whose_removal_cannot_be_saved_says_so() {
    let mut rig = Rig::start("unsaved-pop", &[]).await;
    let me = rig.ws.clone();
    let id = rig
        .stub
        .inject_message(&me, InboundMessage::canvas("hello"));
    let push = rig
        .p
        .wait_for(
            |m| m["method"] == CHANNEL && m["params"]["meta"]["activity_id"] == json!(id),
            WAIT,
        )
        .await;
    assert!(push.is_some(), "no push; stderr: {}", rig.p.stderr());
    // Wait until the arrival is on disk, then put a non-empty directory where every inbox
    // file would be renamed or appended: no write can succeed, not even as root.
    let state = rig.dir.path().join(INBOX_FILES[0]);
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("hello")) {
        assert!(Instant::now() < deadline, "arrival never saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in INBOX_FILES {
        let path = rig.dir.path().join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::create_dir_all(path.join("blocker")).expect("block");
    }
    let started = Instant::now();
    let r = rig.call("inbox_pop", json!({"activity_id": id})).await;
    assert!(
        r.is_error(),
        "an unsaved removal is not a success: {:?}",
        r.0
    );
    let text = r.text();
    assert!(
        text.contains("could not be saved") && text.contains("Fix:"),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "answered only after the save grace"
    );
    assert!(
        rig.p.stderr().contains(".mcp_inbox_"),
        "the log names the file that cannot be written; stderr: {}",
        rig.p.stderr()
    );
    // Handled in memory: not handed out again, and a second pop finds nothing to remove.
    let r = rig.call("inbox_peek", json!({})).await.ok("peek");
    assert_eq!(r.text_json(), Value::Array(Vec::new()));
    let r = rig
        .call("inbox_pop", json!({"activity_id": id}))
        .await
        .ok("pop again");
    assert_eq!(
        r.structured(),
        &json!({"removed": false, "activity_id": id})
    );
    for name in INBOX_FILES {
        let _ = std::fs::remove_dir_all(rig.dir.path().join(name));
    }
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_empty_state_file_is_moved_aside_with_a_warning() {
    let stub = PlatformStub::start().await.expect("stub");
    for (tag, bytes) in [
        ("corrupt", &b"{\"pending\": [{\"activity_id\": \"old\""[..]),
        ("empty", b""),
    ] {
        let (ws, token) = stub.create_workspace(WorkspaceSpec::named(tag).poll());
        let dir = temp_dir(&format!("aside-{tag}"));
        let state = dir.path().join(INBOX_FILES[0]);
        std::fs::write(&state, bytes).expect("seed");
        let env = base_env(&stub.url(), &ws, &token, dir.as_str());
        let mut p = spawn_initialized(&env).await;
        let id = stub.inject_message(&ws, InboundMessage::canvas("after the backup"));
        let deadline = Instant::now() + WAIT;
        while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains(&id)) {
            assert!(
                Instant::now() < deadline,
                "{tag}: never saved; stderr: {}",
                p.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let backups: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".mcp_inbox_state.corrupt-")
            })
            .collect();
        assert_eq!(backups.len(), 1, "{tag}: one backup");
        let backup = backups[0].path();
        assert_eq!(
            std::fs::read(&backup).expect("backup"),
            bytes,
            "{tag}: kept as it was"
        );
        let stderr = p.stderr();
        assert!(
            stderr.contains("WARN") && stderr.contains(&backup.display().to_string()),
            "{tag}: the warning names the backup; stderr: {stderr}"
        );
        p.close_stdin();
        assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_state_files_are_set_aside_unread_and_the_runtime_starts() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("oversized").poll());
    let dir = temp_dir("oversized");
    // Sparse files: 300 MB of inbox state, 1 GB of inbound secret. Read whole, either would
    // raise the start-up memory by as much; bounded reads refuse them from their size.
    let state = dir.path().join(INBOX_FILES[0]);
    std::fs::File::create(&state)
        .and_then(|f| f.set_len(300 * 1024 * 1024))
        .expect("sparse state");
    let secret = dir.path().join(".platform_inbound_secret");
    std::fs::File::create(&secret)
        .and_then(|f| f.set_len(1024 * 1024 * 1024))
        .expect("sparse secret");
    let env = base_env(&stub.url(), &ws, &token, dir.as_str());
    let mut p = spawn_initialized(&env).await;
    let id = stub.inject_message(&ws, InboundMessage::canvas("after the oversized state"));
    let deadline = Instant::now() + WAIT;
    while !std::fs::read(&state).is_ok_and(|s| String::from_utf8_lossy(&s).contains(&id)) {
        assert!(
            Instant::now() < deadline,
            "never saved a fresh state; stderr: {}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mcp_inbox_state.corrupt-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the oversized state is kept aside: {aside:?}"
    );
    let stderr = p.stderr();
    assert!(
        stderr.contains("larger than"),
        "the warning says why; stderr: {stderr}"
    );
    let hwm = p
        .pid()
        .and_then(|pid| molecule_mcp_tests::measure::proc_status(pid, "VmHWM"))
        .expect("VmHWM");
    assert!(hwm < 64 * 1024, "peak RSS {hwm} kB: nothing was read whole");
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
}

// ----- cost of a pop and of an arrival at 10 and 10,000 handled ids -------------------------

/// The core inbox driven against real files in a temp dir, written by the tokio driver's own
/// functions (temp + fsync + rename for snapshots, O_APPEND + fdatasync for the journal).
struct DiskInbox {
    inbox: Inbox,
    feed: FakeFeed,
    now: Instant,
    dir: molecule_mcp_tests::temp_dir::TempDir,
    polls: Vec<HttpRequest>,
    /// (journal append?, bytes) of every write performed.
    written: Vec<(bool, usize)>,
}

impl DiskInbox {
    fn perform(&mut self) {
        while let Some(action) = self.inbox.poll_action() {
            let done = match action {
                InboxAction::SendHttp(req) => {
                    self.polls.push(req);
                    None
                }
                InboxAction::Persist { id, bytes } => {
                    let path = self.dir.path().join(INBOX_FILES[0]);
                    self.written.push((false, bytes.len()));
                    Some((id, persist::write_private_atomic(&path, &bytes)))
                }
                InboxAction::Append { id, bytes, restart } => {
                    let path = self.dir.path().join(INBOX_FILES[1]);
                    self.written.push((true, bytes.len()));
                    Some((id, persist::append_private(&path, &bytes, restart)))
                }
                InboxAction::Log(_)
                | InboxAction::Arrived(_)
                | InboxAction::FetchUpload(_)
                | InboxAction::SetAside(_) => None,
            };
            if let Some((id, result)) = done {
                let result = result.map_err(|e| PersistError::from(e.to_string()));
                self.inbox
                    .handle(self.now, InboxInput::PersistDone { id, result });
            }
        }
    }

    /// Lets time run to the next poll and answers it from the fake feed.
    fn poll_once(&mut self) {
        if let Some(at) = self.inbox.poll_timeout() {
            self.now = self.now.max(at);
        }
        self.inbox.handle_timeout(self.now);
        self.perform();
        for req in std::mem::take(&mut self.polls) {
            let (status, body) = self.feed.answer(&req.url);
            self.inbox.handle(
                self.now,
                InboxInput::HttpResponse {
                    id: req.id,
                    status,
                    retry_after: None,
                    body,
                },
            );
            self.perform();
        }
    }

    /// An inbox with `queued` messages whose state remembers `handled` handled ids, restored
    /// from disk the way a restart does.
    fn with_history(tag: &str, queued: usize, handled: usize) -> DiskInbox {
        let cfg = test_config(BENCH_WS, "tok-bench-0123456789abcdef0123");
        let now = Instant::now();
        let mut d = DiskInbox {
            inbox: Inbox::new(cfg.clone(), None, now, 1),
            feed: FakeFeed::new(BENCH_WS),
            now,
            dir: temp_dir(tag),
            polls: Vec::new(),
            written: Vec::new(),
        };
        for i in 0..queued {
            d.feed.push(message_row(
                &format!("message {i} {}", "x".repeat(100)),
                None,
            ));
        }
        for _ in 0..50 {
            if d.inbox.pending_len() >= queued {
                break;
            }
            d.poll_once();
        }
        assert_eq!(d.inbox.pending_len(), queued);
        let read = |name: &str| std::fs::read(d.dir.path().join(name)).unwrap_or_default();
        let merged = saved_state(&read(INBOX_FILES[0]), &read(INBOX_FILES[1])).expect("state");
        let mut state: Value = serde_json::from_slice(&merged).expect("json");
        state["handled"] = (0..handled)
            .map(|i| json!(format!("eeeeeeee-0000-4000-8000-{i:012}")))
            .collect();
        let snapshot = serde_json::to_vec(&state).expect("encode");
        std::fs::write(d.dir.path().join(INBOX_FILES[0]), &snapshot).expect("snapshot");
        let _ = std::fs::remove_file(d.dir.path().join(INBOX_FILES[1]));
        d.inbox = Inbox::restore_from(cfg, Some(&snapshot), None, d.now, 2);
        d.perform();
        d.written.clear();
        assert_eq!(d.inbox.status().handled, handled);
        d
    }
}

const BENCH_WS: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Median time of a pop (its state write included), of an arrival (poll answer to write
/// done), and of one whole-state write, plus the bytes each pop wrote.
fn costs(handled: usize) -> (Duration, Duration, Duration, Vec<(bool, usize)>, usize) {
    const POPS: usize = 200;
    let mut d = DiskInbox::with_history(&format!("cost-{handled}"), POPS, handled);
    let ids: Vec<String> = d
        .inbox
        .peek(i64::MAX)
        .into_iter()
        .map(|m| m.activity_id)
        .collect();
    let mut pops = Vec::new();
    for id in &ids {
        let t = Instant::now();
        assert!(d.inbox.pop(id).is_some());
        d.perform();
        pops.push(t.elapsed());
    }
    let pop_writes = std::mem::take(&mut d.written);
    let mut arrivals = Vec::new();
    for i in 0..50 {
        d.feed.push(message_row(&format!("late {i}"), None));
        let t = Instant::now();
        d.poll_once();
        arrivals.push(t.elapsed());
    }
    assert_eq!(d.inbox.pending_len(), 50);
    // What every pop cost before the journal, at least: the whole state replaced (its
    // encoding, which came on top, is left out).
    let read = |name: &str| std::fs::read(d.dir.path().join(name)).unwrap_or_default();
    let whole_state = saved_state(&read(INBOX_FILES[0]), &read(INBOX_FILES[1])).expect("state");
    let mut whole = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        persist::write_private_atomic(&d.dir.path().join("whole"), &whole_state).expect("write");
        whole.push(t.elapsed());
    }
    (
        median(pops),
        median(arrivals),
        median(whole),
        pop_writes,
        whole_state.len(),
    )
}

#[test]
fn a_pop_and_an_arrival_cost_the_same_at_10_and_10000_handled_ids() {
    let (pop_10, arrival_10, whole_10, writes_10, size_10) = costs(10);
    let (pop_10k, arrival_10k, whole_10k, writes_10k, size_10k) = costs(10_000);
    println!(
        "handled ids | state bytes | pop (median) | arrival (median) | whole-state write (median)\n\
         10          | {size_10:>11} | {pop_10:>12.2?} | {arrival_10:>16.2?} | {whole_10:>10.2?}\n\
         10,000      | {size_10k:>11} | {pop_10k:>12.2?} | {arrival_10k:>16.2?} | {whole_10k:>10.2?}"
    );
    let appended = |w: &[(bool, usize)]| -> Vec<usize> {
        w.iter()
            .filter(|(append, _)| *append)
            .map(|(_, n)| *n)
            .collect()
    };
    let (a_10, a_10k) = (appended(&writes_10), appended(&writes_10k));
    assert_eq!(
        a_10.len(),
        200,
        "every pop is one journal append: {writes_10:?}"
    );
    assert_eq!(a_10k.len(), 200, "every pop is one journal append");
    assert_eq!(a_10, a_10k, "the same bytes per pop whatever the history");
    println!(
        "journal bytes per pop: {:?} (first) .. {:?} (last)",
        a_10.first(),
        a_10.last()
    );
    assert!(
        size_10k > 10 * size_10,
        "{size_10} vs {size_10k} bytes of state"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_and_token_file_readable_by_others_are_named_with_the_chmod() {
    use std::os::unix::fs::PermissionsExt;
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("shared").poll());
    let dir = temp_dir("shared-modes");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut env = base_env(&stub.url(), &ws, &token, dir.as_str());
    env.retain(|(k, _)| k != "MOLECULE_WORKSPACE_TOKEN");
    env.push((
        "MOLECULE_WORKSPACE_TOKEN_FILE".to_owned(),
        token_file.display().to_string(),
    ));
    let mut p = spawn_initialized(&env).await;
    let want = [
        format!("chmod 700 {}", dir.path().display()),
        format!("chmod 600 {}", token_file.display()),
    ];
    let deadline = Instant::now() + WAIT;
    while !want.iter().all(|w| p.stderr().contains(w.as_str())) {
        assert!(Instant::now() < deadline, "stderr: {}", p.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.stderr().contains("WARN"));
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
}
