//! Upgrading in place from the Python original of molecule-mcp: the real binary started on a
//! state directory the original wrote (its inbox cursor, `.auth_token`,
//! `.platform_inbound_secret`) continues after the original's cursor, logs the takeover
//! once, and leaves the original's files byte for byte as they were, so a downgrade still
//! reads them.
//!
//! The fixture files are written the way the original writes them: the bare text, no
//! trailing newline (`.mcp_inbox_cursor` holds the last activity id it queued;
//! `.auth_token` and `.platform_inbound_secret` the secret, mode 0600).

mod e2e_support;

use std::path::Path;

use e2e_support::{
    WAIT, assert_clean, base_env, call_on, hits, peek_ids, spawn_initialized, temp_dir, wait_peek,
};
use molecule_mcp_tests::process::McpProcess;
use molecule_mcp_tests::stub::{InboundMessage, PlatformStub, WorkspaceSpec};
use serde_json::json;

const UPGRADE_LOG: &str = "upgrading from the Python molecule-mcp";
const ORIGINAL_SECRET: &str = "inbound-secret-from-the-original-0123";

/// Writes `text` exactly (no newline added), with `mode` when given, as the original does.
fn write_like_the_original(path: &Path, text: &str, mode: Option<u32>) {
    std::fs::write(path, text.as_bytes()).expect("write fixture");
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    #[cfg(not(unix))]
    let _ = mode;
}

/// Waits until `inbox_peek` lists `want`, then checks a few more polls add nothing.
async fn settles_on(stub: &PlatformStub, ws: &str, p: &mut McpProcess, want: &[String]) {
    let want_refs: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_peek(p, &want_refs).await;
    let path = format!("/workspaces/{ws}/activity");
    let polls = |s: &PlatformStub| hits(s, "GET", &path).len();
    let before = polls(stub);
    assert!(stub.wait_until(|s| polls(s) >= before + 2, WAIT).await);
    assert_eq!(peek_ids(p).await, want, "stderr: {}", p.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_original_state_dir_is_continued_not_replayed() {
    let stub = PlatformStub::start().await.unwrap();
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("upgraded").poll());
    assert!(stub.set_inbound_secret(&ws, Some(ORIGINAL_SECRET.to_owned())));
    let dir = temp_dir("upgrade");
    // The original delivered (and moved its cursor past) the first two messages.
    let handled: Vec<String> = ["seen by the original 1", "seen by the original 2"]
        .iter()
        .map(|t| stub.inject_message(&ws, InboundMessage::canvas(t)))
        .collect();
    let fresh = stub.inject_message(&ws, InboundMessage::canvas("arrived while upgrading"));
    let cursor_file = dir.join(".mcp_inbox_cursor");
    let token_file = dir.join(".auth_token");
    let secret_file = dir.join(".platform_inbound_secret");
    write_like_the_original(&cursor_file, &handled[1], None);
    write_like_the_original(&token_file, &token, Some(0o600));
    write_like_the_original(&secret_file, ORIGINAL_SECRET, Some(0o600));

    // The same environment the original ran with in a container: the token comes from
    // `.auth_token`.
    let mut env = base_env(&stub.url(), &ws, &token, dir.as_str());
    env.retain(|(k, _)| k != "MOLECULE_WORKSPACE_TOKEN");
    // The takeover is logged at INFO, which stderr shows with MOLECULE_MCP_VERBOSE.
    env.push(("MOLECULE_MCP_VERBOSE".to_owned(), "1".to_owned()));
    let mut p = spawn_initialized(&env).await;
    settles_on(&stub, &ws, &mut p, std::slice::from_ref(&fresh)).await;
    let first_poll = hits(&stub, "GET", &format!("/workspaces/{ws}/activity"))
        .into_iter()
        .next()
        .expect("a poll");
    assert_eq!(
        first_poll.query_param("since_id").as_deref(),
        Some(handled[1].as_str()),
        "the first poll continues after the original's cursor: {:?}",
        first_poll.query
    );
    assert_eq!(p.stderr().matches(UPGRADE_LOG).count(), 1, "{}", p.stderr());
    call_on(&mut p, "inbox_pop", json!({"activity_id": fresh}))
        .await
        .ok("pop");
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token, ORIGINAL_SECRET]);

    // The original's files are untouched (a downgrade reads them as it left them).
    assert_eq!(std::fs::read(&cursor_file).unwrap(), handled[1].as_bytes());
    assert_eq!(std::fs::read(&token_file).unwrap(), token.as_bytes());
    assert_eq!(
        std::fs::read(&secret_file).unwrap(),
        ORIGINAL_SECRET.as_bytes()
    );
    assert!(dir.join(".mcp_inbox_state").exists(), "own state written");

    // A second start runs from its own state: no second takeover, nothing comes back.
    let later = stub.inject_message(&ws, InboundMessage::canvas("after the upgrade"));
    let mut p = spawn_initialized(&env).await;
    settles_on(&stub, &ws, &mut p, std::slice::from_ref(&later)).await;
    assert!(!p.stderr().contains(UPGRADE_LOG), "{}", p.stderr());
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token, ORIGINAL_SECRET]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_workspace_takes_each_original_per_workspace_cursor() {
    let stub = PlatformStub::start().await.unwrap();
    let (a, token_a) = stub.create_workspace(WorkspaceSpec::named("first").poll());
    let (b, token_b) = stub.create_workspace(WorkspaceSpec::named("second").poll());
    let dir = temp_dir("upgrade-multi");
    let old_a = stub.inject_message(&a, InboundMessage::canvas("old for a"));
    let old_b = stub.inject_message(&b, InboundMessage::canvas("old for b"));
    let new_a = stub.inject_message(&a, InboundMessage::canvas("new for a"));
    let new_b = stub.inject_message(&b, InboundMessage::canvas("new for b"));
    for (ws, cursor) in [(&a, &old_a), (&b, &old_b)] {
        let prefix: String = ws.chars().take(8).collect();
        write_like_the_original(
            &dir.join(&format!(".mcp_inbox_cursor_{prefix}")),
            cursor,
            None,
        );
    }
    let workspaces = json!([{"id": a, "token": token_a}, {"id": b, "token": token_b}]);
    let mut env = base_env(&stub.url(), &a, &token_a, dir.as_str());
    env.retain(|(k, _)| k != "MOLECULE_WORKSPACE_TOKEN" && k != "WORKSPACE_ID");
    env.push(("MOLECULE_WORKSPACES".to_owned(), workspaces.to_string()));
    env.push(("MOLECULE_MCP_VERBOSE".to_owned(), "1".to_owned()));
    let mut p = spawn_initialized(&env).await;
    // Oldest first across workspaces: new_a was injected before new_b.
    settles_on(&stub, &a, &mut p, &[new_a, new_b]).await;
    assert_eq!(p.stderr().matches(UPGRADE_LOG).count(), 2, "{}", p.stderr());
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
    assert_clean(&p, &[&token_a, &token_b]);
}
