//! Hostile inputs, class "inputs are validated where they enter", through the real binary
//! against the stub: a token minted by the platform that is not a bearer token is refused
//! (the configured one stays in use), and a `PLATFORM_URL` with credentials, a query, a
//! non-ASCII host or a bad port is a clear configuration error (exit 2) before anything is
//! sent.

mod e2e_support;

use std::time::Duration;

use e2e_support::{
    WAIT, answered, base_env, bearer, hits, run_binary, spawn_initialized, temp_dir,
};
use molecule_mcp_tests::stub::{Action, PlatformStub, Script, WorkspaceSpec};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_token_with_a_line_break_is_refused_and_the_configured_one_kept() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("minted").poll());
    stub.script(
        Script::new(
            "POST",
            "/registry/register",
            Action::json(200, &json!({"auth_token": "minted\r\nX-Injected: 1"})),
        )
        .times(1),
    );
    let dir = temp_dir("hostile-inputs-minted");
    let env = base_env(&stub.url(), &ws, &token, dir.as_str());
    let mut p = spawn_initialized(&env).await;
    let before = answered(&stub.journal(), "POST", "/registry/heartbeat", 200);
    assert!(
        stub.wait_for(
            |j| answered(j, "POST", "/registry/heartbeat", 200) >= before + 3,
            WAIT
        )
        .await,
        "heartbeats go on; stderr: {}",
        p.stderr()
    );
    let beats = hits(&stub, "POST", "/registry/heartbeat");
    assert!(
        beats
            .iter()
            .all(|b| bearer(b).as_deref() == Some(token.as_str())),
        "every beat carries the configured token"
    );
    assert!(
        p.stderr().contains("cannot be used"),
        "the refusal is logged; stderr: {}",
        p.stderr()
    );
    assert!(
        !dir.path().join(".auth_token").exists(),
        "the refused token is not saved"
    );
    p.close_stdin();
    assert!(p.wait_exit(WAIT).await.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_url_that_is_not_a_plain_host_is_exit_2_before_anything_is_sent() {
    let stub = PlatformStub::start().await.expect("stub");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("urls").poll());
    let port = stub.url().rsplit(':').next().unwrap_or_default().to_owned();
    let dir = temp_dir("hostile-inputs-urls");
    for (url, says) in [
        (format!("http://user:pass@127.0.0.1:{port}"), "credentials"),
        (format!("http://127.0.0.1:{port}/?token=x"), "query"),
        (format!("http://bücher.example:{port}"), "ASCII"),
        ("http://127.0.0.1:99999".to_owned(), "port"),
    ] {
        let env: Vec<(&str, String)> = vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", dir.as_str().to_owned()),
            ("PLATFORM_URL", url.clone()),
            ("WORKSPACE_ID", ws.clone()),
            ("MOLECULE_WORKSPACE_TOKEN", token.clone()),
            ("CONFIGS_DIR", dir.as_str().to_owned()),
        ];
        let (code, _stdout, stderr) = run_binary(&[], &env).await;
        assert_eq!(code, Some(2), "{url}: exit 2; stderr: {stderr}");
        assert!(
            stderr.contains(says),
            "{url}: says {says:?}; stderr: {stderr}"
        );
        assert!(
            !stderr.contains(&token),
            "{url}: the token is never printed"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hits(&stub, "POST", "/registry/register").is_empty(),
        "nothing was sent to the platform"
    );
}
