//! The real Claude Code CLI (`@anthropic-ai/claude-code`, pinned in
//! `tests/claude-code/package.json`, installed by `scripts/setup-node-client.sh`) registers
//! the binary the way the README tells users to (`claude mcp add --scope user molecule --env
//! K=V -- /path/to/molecule-mcp`), with `HOME` pointed at a temporary directory, and
//! `claude mcp list` then starts it against the loopback platform stub and reports it
//! connected.
//!
//! Without `node` or the installed CLI, or when the CLI cannot run here, the test is skipped
//! and says why (printed as `SKIPPED claude_cli: …`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;
use tokio::process::Command;

/// `claude mcp list` starts every server and waits for its handshake; a few seconds normally.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

fn claude() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("claude-code/node_modules/.bin/claude")
}

/// Runs `claude` with `args` and a private `HOME`; (success, stdout + stderr).
async fn run(home: &TempDir, args: &[&str]) -> (bool, String) {
    let child = Command::new(claude())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.as_str())
        // No update checks or telemetry from a test run.
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn claude");
    let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .expect("claude finished in time")
        .expect("claude ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_mcp_add_registers_the_server_and_mcp_list_shows_it_connected() {
    if !claude().exists() {
        println!(
            "SKIPPED claude_cli: {} is missing: run `bash scripts/setup-node-client.sh` first",
            claude().display()
        );
        return;
    }
    let home = TempDir::new("claude-home").expect("temp dir");
    let (ok, version) = run(&home, &["--version"]).await;
    if !ok {
        println!("SKIPPED claude_cli: `claude --version` does not run here: {version}");
        return;
    }
    let bin = molecule_mcp_bin();
    assert!(bin.exists(), "{} not found", bin.display());
    let stub = PlatformStub::start().await.expect("stub starts");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("claude-agent").poll());
    let state = TempDir::new("claude-state").expect("temp dir");
    let env = [
        format!("WORKSPACE_ID={ws}"),
        format!("PLATFORM_URL={}", stub.url()),
        format!("MOLECULE_WORKSPACE_TOKEN={token}"),
        format!("CONFIGS_DIR={}", state.as_str()),
    ];
    let mut args = vec!["mcp", "add", "--scope", "user", "molecule"];
    for kv in &env {
        args.extend(["--env", kv.as_str()]);
    }
    let bin_str = bin.to_string_lossy().into_owned();
    args.extend(["--", bin_str.as_str()]);
    let (ok, added) = run(&home, &args).await;
    assert!(ok, "claude mcp add failed: {added}");
    let config = std::fs::read_to_string(home.join(".claude.json")).expect("~/.claude.json");
    assert!(
        config.contains("\"molecule\"") && config.contains(&ws),
        "{config}"
    );

    let (ok, listed) = run(&home, &["mcp", "list"]).await;
    println!("claude {}: mcp list:\n{listed}", version.trim());
    let line = listed
        .lines()
        .find(|l| l.starts_with("molecule:"))
        .unwrap_or_else(|| panic!("molecule is not listed: {listed}"));
    assert!(ok, "claude mcp list failed: {listed}");
    assert!(line.contains(&bin_str), "{line}");
    assert!(line.contains("Connected"), "not connected: {line}");
    assert!(
        !listed.contains(&token),
        "the token leaked into claude's output"
    );
}
