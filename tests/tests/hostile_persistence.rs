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
