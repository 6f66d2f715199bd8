//! A newcomer's first hour with the real binary: `doctor` reads `--workspaces-file` like the
//! server does and creates nothing on disk, global options are accepted after the
//! subcommand, and the report wraps into short indented lines.

mod e2e_support;

use e2e_support::{hits, run_binary as run, temp_dir};
use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{PlatformStub, WorkspaceSpec};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_the_workspaces_file_and_creates_nothing() {
    let stub = PlatformStub::start().await.unwrap();
    let (a, token_a) = stub.create_workspace(WorkspaceSpec::named("one").poll());
    let (b, token_b) = stub.create_workspace(WorkspaceSpec::named("two").poll());
    let dir = temp_dir("first-hour");
    let list = dir.join("workspaces.json");
    std::fs::write(
        &list,
        json!([{"id": a, "token": token_a}, {"id": b, "token": token_b}]).to_string(),
    )
    .unwrap();
    let state = dir.join("state-not-yet");
    let env = vec![
        ("PLATFORM_URL", stub.url()),
        ("CONFIGS_DIR", state.display().to_string()),
        ("HOME", dir.as_str().to_owned()),
        ("PATH", String::new()),
    ];
    // The option after the subcommand (clap `global`).
    let (code, out, err) = run(
        &["doctor", "--workspaces-file", &list.display().to_string()],
        &env,
    )
    .await;
    // PATH is empty on purpose, so that check fails; every other one passes.
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("[OK]   Env vars: PLATFORM_URL + --workspaces-file (2 workspaces) set"),
        "{out}"
    );
    // Wrapped lines read as one text once whitespace runs are joined.
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("(created on the first run)"), "{out}");
    assert!(out.contains("[OK]   Token accepted"), "{out}");
    assert_eq!(out.matches("[FAIL]").count(), 1, "{out}");
    for ws in [&a, &b] {
        assert_eq!(
            hits(&stub, "GET", &format!("/workspaces/{ws}/activity")).len(),
            1,
            "one read-only probe per workspace in the file"
        );
    }
    assert!(!state.exists(), "doctor created the state directory");
    assert!(!out.contains(&token_a) && !out.contains(&token_b));
    // Wrapped: no report line is longer than 100 characters, continuation lines indented.
    for line in out.lines() {
        assert!(line.chars().count() <= 100, "long line: {line:?}");
    }
    let fail_at = out
        .lines()
        .position(|l| l.starts_with("  [FAIL]"))
        .expect("the PATH failure");
    let after: Vec<&str> = out.lines().skip(fail_at + 1).take(2).collect();
    assert!(after.iter().all(|l| l.starts_with("        ")), "{out}");

    // A file that cannot be read is a FAIL naming it, not a crash.
    let missing = dir.join("missing.json");
    let (code, out, _) = run(
        &[
            "doctor",
            "--workspaces-file",
            &missing.display().to_string(),
        ],
        &env,
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("[FAIL] Env vars"), "{out}");
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("missing.json"), "{out}");
    assert!(!state.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_accepts_the_workspaces_file_after_the_subcommand() {
    let dir = temp_dir("first-hour-serve");
    let missing = dir.join("nope.json");
    let env = vec![
        ("PLATFORM_URL", "http://127.0.0.1:9".to_owned()),
        ("CONFIGS_DIR", dir.as_str().to_owned()),
    ];
    let (code, _, err) = run(
        &["serve", "--workspaces-file", &missing.display().to_string()],
        &env,
    )
    .await;
    // Parsed (not a usage error): the server reports the unreadable file and exits 2.
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("unexpected argument"), "{err}");
    assert!(err.contains("nope.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_guidance_never_merges_stderr_into_stdout() {
    let dir = temp_dir("first-hour-stdio");
    let out_file = dir.join("out.txt");
    let file = std::fs::File::create(&out_file).unwrap();
    // `molecule-mcp > out.txt`: stdout is a regular file.
    let child = std::process::Command::new(molecule_mcp_bin())
        .env_clear()
        .env("CONFIGS_DIR", dir.as_str())
        .stdin(std::process::Stdio::piped())
        .stdout(file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawned");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("joined")
        .expect("ran");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pipe"), "{err}");
    assert!(!err.contains("2>&1"), "{err}");
    assert!(err.contains("2>>"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_generated_for_the_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell], &[]).await;
        assert_eq!(code, Some(0), "{shell}: {err}");
        for word in ["doctor", "serve", "demo", "completions", "workspaces-file"] {
            assert!(out.contains(word), "{shell} script lacks {word}");
        }
    }
    let (code, _, err) = run(&["completions", "cmd.exe"], &[]).await;
    assert_eq!(code, Some(2), "{err}");
}
