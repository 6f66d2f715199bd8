//! Hostile inputs, class "secrets never leave": the real binary against the stub, with a
//! model that asks to attach credential files and a platform that echoes the request's
//! `Authorization` header back. The workspace token (the canary) must appear in no stdout
//! frame, no stderr line and no upload.

mod e2e_support;

use std::time::Duration;

use e2e_support::{Rig, WAIT, hits};
use serde_json::json;

/// Every way an attachment path can reach a credential file: through `/proc`, the token
/// file itself, and hard links (same inode, another name) to the token file and to the
/// inbound secret in the state directory. Each is refused before any upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_never_upload_credential_files() {
    let outside = e2e_support::temp_dir("hostile-secrets-outside");
    let token_file = outside.join("token");
    let token_file_str = token_file.to_str().expect("utf-8 path").to_owned();
    let mut rig = Rig::start(
        "hostile-secrets-attach",
        &[("MOLECULE_WORKSPACE_TOKEN_FILE", &token_file_str)],
    )
    .await;
    std::fs::write(&token_file, format!("{}\n", rig.token)).expect("token file");
    let inbound = rig.dir.join(".platform_inbound_secret");
    let deadline = std::time::Instant::now() + WAIT;
    while !inbound.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inbound.exists(), "register never stored the inbound secret");
    let secret = std::fs::read_to_string(&inbound).expect("inbound secret");
    let token_link = outside.join("innocent.txt");
    std::fs::hard_link(&token_file, &token_link).expect("hard link to the token file");
    let secret_link = outside.join("notes.txt");
    std::fs::hard_link(&inbound, &secret_link).expect("hard link to the inbound secret");

    let cases = [
        ("/proc/self/environ".to_owned(), "/proc, /sys or /dev"),
        (token_file_str.clone(), "credential files"),
        (token_link.display().to_string(), "credential files"),
        (secret_link.display().to_string(), "credential files"),
    ];
    for (path, needle) in &cases {
        let reply = rig
            .call(
                "send_message_to_user",
                json!({"message": "see attached", "attachments": [path]}),
            )
            .await
            .err(path, &[needle]);
        assert!(
            !reply.0.to_string().contains(&rig.token),
            "{path}: token in the reply"
        );
    }
    let uploads = format!("/workspaces/{}/chat/uploads", rig.ws);
    assert!(
        hits(&rig.stub, "POST", &uploads).is_empty(),
        "a credential file was uploaded"
    );
    for entry in rig.stub.journal() {
        let body = String::from_utf8_lossy(&entry.body);
        assert!(
            !body.contains(&rig.token) && !body.contains(secret.trim()),
            "a secret left in a request body to {}",
            entry.path
        );
    }
    rig.finish().await;
}

/// Counts the canary in `text`.
fn count(text: &str, canary: &str) -> usize {
    text.matches(canary).count()
}

/// A platform that answers 4xx and 5xx with the request echoed back, `Authorization` header
/// included, to register, heartbeats, inbox polls and every tool call, with debug logging
/// on: the token appears in no stdout frame and no stderr line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_echoes_the_token_never_gets_it_shown() {
    use molecule_mcp_tests::stub::{Action, PlatformStub, Script, WorkspaceSpec};
    let stub = PlatformStub::start().await.expect("stub");
    // Register fails twice (echoing the token) before it succeeds.
    stub.script(
        Script::new(
            "POST",
            "/registry/register",
            Action::EchoRequest { status: 500 },
        )
        .times(2),
    );
    let mut rig = Rig::start_on(
        stub,
        "hostile-secrets-echo",
        &[("MOLECULE_MCP_VERBOSE", "1")],
    )
    .await;
    let peer = rig.peer(WorkspaceSpec::named("peer"));
    let mut shown = String::new();
    for status in [400, 401, 403, 404, 500, 502] {
        rig.script(
            Script::new(
                "POST",
                "/registry/heartbeat",
                Action::EchoRequest { status },
            )
            .times(1),
        );
        rig.script(
            Script::new(
                "GET",
                "/workspaces/:id/activity",
                Action::EchoRequest { status },
            )
            .times(1),
        );
        rig.script(Script::new("*", "/workspaces/*", Action::EchoRequest { status }).times(12));
        rig.script(Script::new("*", "/registry/*", Action::EchoRequest { status }).times(4));
        let calls = [
            ("list_peers", json!({})),
            ("get_workspace_info", json!({})),
            (
                "delegate_task_async",
                json!({"workspace_id": peer, "task": "t"}),
            ),
            ("check_task_status", json!({})),
            ("commit_memory", json!({"content": "remember this"})),
            ("recall_memory", json!({"query": "this"})),
            ("chat_history", json!({"workspace_id": peer})),
            ("send_message_to_user", json!({"message": "hello"})),
        ];
        for (tool, args) in calls {
            let reply = rig.call(tool, args).await;
            shown.push_str(&reply.0.to_string());
            shown.push('\n');
        }
        // Let a heartbeat and a poll meet their scripted answers.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
    for frame in rig.p.unclaimed() {
        shown.push_str(&frame.to_string());
        shown.push('\n');
    }
    let echoed = rig
        .stub
        .journal()
        .iter()
        .filter(|e| e.status.is_some_and(|s| s >= 400))
        .count();
    assert!(
        echoed >= 40,
        "the platform echoed the token {echoed} times only"
    );
    let stderr = rig.p.stderr();
    assert!(
        stderr.contains("[REDACTED]"),
        "nothing was redacted: was anything echoed into the log?"
    );
    assert_eq!(count(&shown, &rig.token), 0, "the token in stdout frames");
    assert_eq!(count(&stderr, &rig.token), 0, "the token in stderr");
    rig.finish().await;
}

/// `molecule-mcp doctor` against a platform that echoes the token on every probe (health,
/// token check) with 4xx and 5xx: neither its report (stdout) nor stderr shows the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_never_prints_an_echoed_token() {
    use molecule_mcp_tests::process::molecule_mcp_bin;
    use molecule_mcp_tests::stub::{Action, PlatformStub, Script, WorkspaceSpec};
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("doctor").poll());
    let dir = e2e_support::temp_dir("hostile-secrets-doctor");
    let mut seen = 0;
    for status in [401, 403, 500] {
        stub.clear_scripts();
        stub.script(Script::new("*", "/*", Action::EchoRequest { status }));
        let out = tokio::process::Command::new(molecule_mcp_bin())
            .arg("doctor")
            .env_clear()
            .env("PLATFORM_URL", stub.url())
            .env("WORKSPACE_ID", &ws)
            .env("MOLECULE_WORKSPACE_TOKEN", &token)
            .env("CONFIGS_DIR", dir.as_str())
            .env("HOME", dir.as_str())
            .env("MOLECULE_MCP_VERBOSE", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("doctor ran");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(shown.contains("[FAIL]"), "{status}: {shown}");
        seen += count(&shown, &token);
    }
    let echoed = stub
        .journal()
        .iter()
        .filter(|e| e.status.is_some_and(|s| s >= 400))
        .count();
    assert!(echoed >= 3, "the probes were not echoed ({echoed})");
    assert_eq!(seen, 0, "doctor showed the token");
}
