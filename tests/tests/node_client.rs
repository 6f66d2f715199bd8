//! Scripted real client: the official TypeScript SDK (`@modelcontextprotocol/sdk`, pinned in
//! `tests/node/package.json`, installed by `scripts/setup-node-client.sh`) drives the real
//! `molecule-mcp` binary against the loopback platform stub through
//! `tests/node/ts_client_check.mjs`: per era (the SDK's own 2025-11-25 handshake, the same
//! client asking for 2024-11-05, and 2026-07-28 requests with the modern `_meta`) it
//! connects, lists the tools, calls one, and makes a long call with a 1 s client timeout
//! that fails without `resetTimeoutOnProgress` and passes with it; at 2025-11-25 it also runs
//! a call as a task (`callToolStream` with `task`, then `tasks/list`).
//!
//! Without `node` or the installed package the test is skipped and says why (printed as
//! `SKIPPED node_client: …`), so a machine without Node still runs the rest of the suite.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::json;
use tokio::process::Command;

/// Bound for the whole script (three client sessions); it normally takes about 15 s.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("node")
}

/// Why the TypeScript client cannot run here, if it cannot.
fn missing() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH".to_owned());
    }
    let sdk = node_dir().join("node_modules/@modelcontextprotocol/sdk/package.json");
    if !sdk.exists() {
        return Some(format!(
            "{} is missing: run `bash scripts/setup-node-client.sh` first",
            sdk.display()
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_client_passes_in_every_era() {
    if let Some(why) = missing() {
        println!("SKIPPED node_client: {why}");
        return;
    }
    let bin = molecule_mcp_bin();
    assert!(bin.exists(), "{} not found", bin.display());
    let stub = PlatformStub::start().await.expect("stub starts");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("ts-agent").poll());
    let state = TempDir::new("tsclient").expect("temp dir");
    let env = json!({
        "PLATFORM_URL": stub.url(),
        "WORKSPACE_ID": ws,
        "MOLECULE_WORKSPACE_TOKEN": token,
        "CONFIGS_DIR": state.as_str(),
        "HOME": state.as_str(),
    });
    let child = Command::new("node")
        .arg("ts_client_check.mjs")
        .current_dir(node_dir())
        .env("MCP_BIN", &bin)
        .env("MCP_ENV", env.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the TypeScript client finished in time")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The matrix, for the test log.
    for line in stdout.lines().filter(|l| l.starts_with("RESULT ")) {
        println!("{line}");
    }
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("RESULT "))
        .collect();
    let failed: Vec<&&str> = results
        .iter()
        .filter(|l| l.split(' ').nth(3) != Some("pass"))
        .collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "TypeScript client failed ({}): {failed:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // 3 eras: 7 (with the task-augmented call) + 6 + 5 scenarios, all of them reported.
    assert_eq!(results.len(), 18, "{stdout}\n{stderr}");
    assert!(!token.is_empty() && !stdout.contains(&token) && !stderr.contains(&token));
}
