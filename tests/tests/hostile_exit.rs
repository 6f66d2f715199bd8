//! Hostile inputs, class "exit paths never block": the real binary against the stub with a
//! client that closed our stderr, or that stopped reading our stdout. EOF, SIGTERM and
//! SIGINT must end the process within 5 s; a closed stderr must never turn an exit code
//! into a panic (101) or a hang.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;

const EXIT_LIMIT: Duration = Duration::from_secs(5);

fn command(url: &str, ws: &str, token: &str, dir: &TempDir) -> Command {
    let mut cmd = Command::new(molecule_mcp_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("PLATFORM_URL", url)
        .env("WORKSPACE_ID", ws)
        .env("MOLECULE_WORKSPACE_TOKEN", token)
        .env("CONFIGS_DIR", dir.path())
        .env("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "1")
        .env("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "1")
        // Verbose: every heartbeat and poll logs, so a stuck stderr is hit at once.
        .env("MOLECULE_MCP_VERBOSE", "1");
    cmd
}

/// Waits for the child to exit, at most `limit`; kills it and fails otherwise.
fn wait_exit(child: &mut std::process::Child, limit: Duration, what: &str) -> i32 {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code().unwrap_or(-1),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: the process did not exit within {limit:?}");
            }
        }
    }
}

/// A pipe whose read end is closed at once: every write to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Stdio::from(writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_401_with_a_closed_stderr_still_exits_3() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, _token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    let dir = TempDir::new("hostile-exit-401").expect("dir");
    let mut child = command(&stub.url(), &ws, "not-the-token", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(closed_pipe())
        .spawn()
        .expect("spawn");
    let code = tokio::task::spawn_blocking(move || {
        wait_exit(&mut child, Duration::from_secs(10), "register 401")
    })
    .await
    .expect("join");
    assert_eq!(code, 3, "exit 3 (re-onboard), not a panic (101) or a hang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_and_signals_end_the_process_with_a_closed_stderr() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    for how in ["eof", "sigterm", "sigint"] {
        let dir = TempDir::new(&format!("hostile-exit-stderr-{how}")).expect("dir");
        let mut child = command(&stub.url(), &ws, &token, &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(closed_pipe())
            .spawn()
            .expect("spawn");
        // Let it register, beat and poll (and log each of them into the closed stderr).
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "{how}: the process died by itself with a closed stderr"
        );
        let started = Instant::now();
        match how {
            "eof" => drop(child.stdin.take()),
            "sigterm" => signal(&child, 15),
            _ => signal(&child, 2),
        }
        let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, EXIT_LIMIT, how))
            .await
            .expect("join");
        assert_eq!(code, 0, "{how}: a clean exit");
        assert!(started.elapsed() < EXIT_LIMIT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_and_signals_end_the_process_when_stdout_is_not_read() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
    for how in ["eof", "sigterm", "sigint"] {
        let dir = TempDir::new(&format!("hostile-exit-stdout-{how}")).expect("dir");
        let mut child = command(&stub.url(), &ws, &token, &dir)
            .stdin(Stdio::piped())
            // Piped but never read: once the pipe buffer (64 KiB) is full, writes block.
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        // ~200 KiB of answers: far more than the pipe holds.
        let ping = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        stdin.write_all(init).expect("init");
        stdin.write_all(b"\n").expect("nl");
        let list = b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n";
        for _ in 0..20 {
            let _ = stdin.write_all(list);
        }
        for _ in 0..2_000 {
            let _ = stdin.write_all(ping);
        }
        let _ = stdin.flush();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let started = Instant::now();
        match how {
            "eof" => drop(stdin),
            "sigterm" => signal(&child, 15),
            _ => signal(&child, 2),
        }
        let code = tokio::task::spawn_blocking(move || wait_exit(&mut child, EXIT_LIMIT, how))
            .await
            .expect("join");
        assert_eq!(code, 0, "{how}: a clean exit");
        assert!(started.elapsed() < EXIT_LIMIT);
    }
}

fn signal(child: &std::process::Child, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}
