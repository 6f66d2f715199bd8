//! End-to-end runtime behaviour of the real `molecule-mcp` binary against the loopback
//! platform stub: start-up failures and their exit codes, register retries, heartbeat
//! cadence and auth escalation, the inbound-secret file, headers and bodies on the wire,
//! secrets in logs, stdout hygiene and shutdown.
//!
//! Every test spawns `target/debug/molecule-mcp` (build it first) with a fresh
//! `CONFIGS_DIR` and a 1 s heartbeat, the way an operator's MCP config would.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    Env, Fixture, HEARTBEAT, REGISTER, WAIT, answered, assert_no_secret, assert_stdout_clean,
    call_tool, entries, initialize, log_lines, ping, run_to_exit, schema, secs_between, spawn,
    temp_dir, wait_answered,
};
use molecule_mcp_tests::process::McpProcess;
use molecule_mcp_tests::stub::{Action, Script};
use serde_json::{Value, json};

/// Workspace id used where no stub is involved.
const SOME_WS: &str = "6f1c2a3b-1111-4000-8000-0000000000e2";

async fn exit_code(p: &mut McpProcess) -> Option<i32> {
    let status = p.wait_exit(WAIT).await;
    status
        .unwrap_or_else(|| panic!("molecule-mcp did not exit; stderr:\n{}", p.stderr()))
        .code()
}

fn heartbeat_auth_warnings(stderr: &str) -> Vec<&str> {
    log_lines(stderr, "WARN")
        .into_iter()
        .filter(|l| l.contains("heartbeat HTTP 40") && l.contains("auth failure"))
        .collect()
}

// ----- start-up failures -----------------------------------------------------------------

#[tokio::test]
async fn missing_env_exits_2_with_help() {
    let dir = temp_dir("missing");
    let mut p = spawn(&Env::empty().set("CONFIGS_DIR", dir.as_str()), &[]);
    assert_eq!(exit_code(&mut p).await, Some(2));
    let err = p.stderr();
    for needle in [
        "WORKSPACE_ID",
        "PLATFORM_URL",
        "MOLECULE_WORKSPACE_TOKEN",
        "Currently missing: WORKSPACE_ID, PLATFORM_URL, MOLECULE_WORKSPACE_TOKEN",
        "canvas → Tokens tab",
        "OR set MOLECULE_WORKSPACE_TOKEN_FILE",
    ] {
        assert!(err.contains(needle), "help lacks {needle:?}:\n{err}");
    }
    assert_stdout_clean(&mut p);
    assert!(p.unclaimed().is_empty(), "nothing may be written to stdout");

    // Only the token missing: the help names just that one.
    let only_token = Env::empty()
        .set("CONFIGS_DIR", dir.as_str())
        .set("PLATFORM_URL", "http://127.0.0.1:9")
        .set("WORKSPACE_ID", SOME_WS);
    let mut p = spawn(&only_token, &[]);
    assert_eq!(exit_code(&mut p).await, Some(2));
    let err = p.stderr();
    assert!(
        err.lines()
            .any(|l| l == "Currently missing: MOLECULE_WORKSPACE_TOKEN"),
        "{err}"
    );
    assert!(
        err.contains("MOLECULE_WORKSPACE_TOKEN_FILE") && err.contains("Tokens tab"),
        "{err}"
    );
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn bad_token_from_env_exits_3_naming_workspace_and_source() {
    let f = Fixture::start("badtoken-env").await;
    let wrong = "wrong-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut p = f.spawn(&f.env().set("MOLECULE_WORKSPACE_TOKEN", wrong));
    assert_eq!(exit_code(&mut p).await, Some(3));
    let err = p.stderr();
    assert!(err.contains("register rejected with HTTP 401"), "{err}");
    assert!(
        err.contains(&format!(
            "the token from MOLECULE_WORKSPACE_TOKEN is invalid for workspace {}",
            f.ws
        )),
        "{err}"
    );
    assert!(err.contains("Tokens tab"), "{err}");
    assert_no_secret(&err, &[wrong, &f.token]);
    assert_eq!(answered(&f.stub.journal(), REGISTER, 401), 1);
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn a_token_minted_on_an_earlier_run_is_used_when_the_configured_one_is_stale() {
    // An earlier run registered while the workspace had no live token; the platform minted
    // one and we saved it to <state>/.auth_token. The operator's config still holds the old
    // token: register rejects it, the saved one is tried, and the session carries on.
    let f = Fixture::start("fallback").await;
    let stale = "stale-configured-token-aaaaaaaaaaaaaaaaaaaaaa";
    std::fs::write(f.dir.join(".auth_token"), &f.token).expect("saved token");
    let mut p = f.spawn(&f.env().set("MOLECULE_WORKSPACE_TOKEN", stale));
    initialize(&mut p).await;
    assert!(
        wait_answered(&f.stub, REGISTER, 200, 1).await,
        "register succeeds with the saved token; stderr:\n{}",
        p.stderr()
    );
    assert!(
        wait_answered(&f.stub, HEARTBEAT, 200, 2).await,
        "heartbeats use it too"
    );
    let journal = f.stub.journal();
    assert_eq!(
        answered(&journal, REGISTER, 401),
        1,
        "the stale token was tried exactly once"
    );
    let bearer = format!("Bearer {}", f.token);
    assert!(
        entries(&journal, HEARTBEAT)
            .iter()
            .all(|e| e.header("authorization") == Some(bearer.as_str()))
    );
    // Tools act with it as well (list_peers needs a valid bearer).
    let peers = call_tool(&mut p, 7, "list_peers", json!({})).await;
    assert_ne!(peers["result"]["isError"], json!(true), "{peers}");
    let text = peers["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("no peers in the platform registry"),
        "authenticated and answered: {peers}"
    );
    let err = p.stderr();
    assert!(err.contains("retrying with the token saved in"), "{err}");
    assert_no_secret(&err, &[stale, &f.token]);
    ping(&mut p, 8).await;
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn bad_token_from_file_exits_3_naming_the_file() {
    let f = Fixture::start("badtoken-file").await;
    let wrong = "wrong-token-from-file-bbbbbbbbbbbbbbbbbbbbbbbb";
    let token_dir = temp_dir("tokenfile");
    let token_file = token_dir.join("workspace.token");
    std::fs::write(&token_file, format!("{wrong}\n")).expect("write token file");
    let env = f.env().unset("MOLECULE_WORKSPACE_TOKEN").set(
        "MOLECULE_WORKSPACE_TOKEN_FILE",
        token_file.to_str().expect("utf-8"),
    );
    let mut p = f.spawn(&env);
    assert_eq!(exit_code(&mut p).await, Some(3));
    let err = p.stderr();
    let source = format!("MOLECULE_WORKSPACE_TOKEN_FILE ('{}')", token_file.display());
    assert!(
        err.contains(&format!(
            "the token from {source} is invalid for workspace {}",
            f.ws
        )),
        "{err}"
    );
    assert_no_secret(&err, &[wrong, &f.token]);
    // The request carried the file's token (trimmed).
    let journal = f.stub.journal();
    let reg = entries(&journal, REGISTER);
    assert_eq!(reg.len(), 1);
    assert_eq!(
        reg[0].header("authorization"),
        Some(format!("Bearer {wrong}").as_str())
    );
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn register_401_and_403_both_exit_3() {
    let run = |status: u16| async move {
        let f = Fixture::start(&format!("reg{status}")).await;
        f.stub.script(
            Script::new(
                "POST",
                REGISTER,
                Action::json(status, &json!({"error": "nope"})),
            )
            .times(1),
        );
        let mut p = f.spawn(&f.env());
        let code = exit_code(&mut p).await;
        let err = p.stderr();
        assert_eq!(code, Some(3), "status {status}; stderr:\n{err}");
        assert!(
            err.contains(&format!("register rejected with HTTP {status}")),
            "{err}"
        );
        assert!(err.contains(&f.ws), "{err}");
        assert_no_secret(&err, &[&f.token]);
        let journal = f.stub.journal();
        assert_eq!(
            entries(&journal, REGISTER).len(),
            1,
            "no register retry after {status}"
        );
        assert_eq!(
            entries(&journal, HEARTBEAT).len(),
            0,
            "no heartbeat after a rejected register"
        );
        assert_stdout_clean(&mut p);
    };
    tokio::join!(run(401), run(403));
}

// ----- register transient failures: keep serving, retry -----------------------------------

#[tokio::test]
async fn register_5xx_keeps_serving_and_retries() {
    let run = |status: u16| async move {
        let f = Fixture::start(&format!("reg{status}")).await;
        f.stub.script(
            Script::new(
                "POST",
                REGISTER,
                Action::json(status, &json!({"error": "down"})),
            )
            .times(2),
        );
        let mut p = f.spawn_initialized().await;
        ping(&mut p, 1).await;
        assert!(wait_answered(&f.stub, REGISTER, status, 1).await);
        ping(&mut p, 2).await;
        let ok = f
            .stub
            .wait_for(|j| answered(j, REGISTER, 200) >= 1, WAIT)
            .await;
        assert!(
            ok,
            "register was not retried to success after {status}; stderr:\n{}",
            p.stderr()
        );
        ping(&mut p, 3).await;
        let journal = f.stub.journal();
        let statuses: Vec<Option<u16>> = entries(&journal, REGISTER)
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(statuses, vec![Some(status), Some(status), Some(200)]);
        // Heartbeats continue while register is being retried.
        let first_ok = entries(&journal, REGISTER)
            .iter()
            .find(|e| e.status == Some(200))
            .map(|e| e.id)
            .expect("a 200");
        assert!(
            entries(&journal, HEARTBEAT).iter().any(|e| e.id < first_ok),
            "no heartbeat while register was failing"
        );
        let err = p.stderr();
        assert!(
            err.contains(&format!("register POST returned HTTP {status}")),
            "{err}"
        );
        assert!(log_lines(&err, "ERROR").is_empty(), "{err}");
        assert_no_secret(&err, &[&f.token]);
        p.close_stdin();
        assert_eq!(exit_code(&mut p).await, Some(0));
        assert_stdout_clean(&mut p);
    };
    tokio::join!(run(500), run(503));
}

#[tokio::test]
async fn register_timeout_keeps_serving_and_retries() {
    let f = Fixture::start("regtimeout").await;
    // Past the 10 s register deadline.
    f.stub
        .script(Script::new("POST", REGISTER, Action::Delay(Duration::from_secs(14))).times(1));
    let mut p = f.spawn_initialized().await;
    assert!(
        f.stub
            .wait_for(|j| !entries(j, REGISTER).is_empty(), WAIT)
            .await
    );
    // While the register hangs, MCP keeps answering.
    for id in 1..=3 {
        ping(&mut p, id).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        entries(&f.stub.journal(), REGISTER).len(),
        1,
        "retried before the deadline"
    );
    let retried = f
        .stub
        .wait_for(|j| entries(j, REGISTER).len() >= 2, Duration::from_secs(25))
        .await;
    assert!(
        retried,
        "register was not retried after its deadline; stderr:\n{}",
        p.stderr()
    );
    assert!(wait_answered(&f.stub, REGISTER, 200, 1).await);
    ping(&mut p, 4).await;
    let journal = f.stub.journal();
    let reg = entries(&journal, REGISTER);
    let gap = secs_between(reg[0], reg[1]);
    assert!(
        (9.5..=14.0).contains(&gap),
        "retry {gap:.2}s after the first attempt (deadline 10 s + ~1 s backoff)"
    );
    let err = p.stderr();
    assert!(err.contains("register POST failed (Timeout"), "{err}");
    assert!(log_lines(&err, "ERROR").is_empty(), "{err}");
    assert!(
        wait_answered(&f.stub, HEARTBEAT, 200, 1).await,
        "heartbeats after the retry"
    );
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn register_connection_refused_keeps_serving_and_retries() {
    let dir = temp_dir("refused");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }; // closed again: connections are refused
    let url = format!("http://127.0.0.1:{port}");
    let mut p = spawn(
        &Env::operator(
            &url,
            SOME_WS,
            "tok-refused-cccccccccccccccccccccccc",
            dir.as_str(),
        ),
        &[],
    );
    initialize(&mut p).await;
    let failures = |p: &McpProcess| p.stderr().matches("register POST failed (Connect").count();
    let deadline = Instant::now() + WAIT;
    let mut id = 1;
    while failures(&p) < 2 {
        assert!(
            Instant::now() < deadline,
            "register was not retried; stderr:\n{}",
            p.stderr()
        );
        ping(&mut p, id).await;
        id += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ping(&mut p, id).await;
    // The platform comes up on that port: the next register retry reaches it.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the port");
    let saw_register = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 256];
            let n = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::io::AsyncReadExt::read(&mut sock, &mut buf),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
            if String::from_utf8_lossy(&buf[..n]).starts_with("POST /registry/register ") {
                return;
            }
        }
    })
    .await;
    assert!(
        saw_register.is_ok(),
        "no register retry reached the port; stderr:\n{}",
        p.stderr()
    );
    ping(&mut p, id + 1).await;
    let err = p.stderr();
    assert!(log_lines(&err, "ERROR").is_empty(), "{err}");
    assert_no_secret(&err, &["tok-refused-cccccccccccccccccccccccc"]);
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

// ----- heartbeats -------------------------------------------------------------------------

#[tokio::test]
async fn heartbeat_cadence_is_one_second_without_drift() {
    let f = Fixture::start("cadence").await;
    // Every beat takes 400 ms to answer: a schedule that waited a full interval after each
    // response would fall 0.4 s behind per beat.
    f.stub.script(Script::new(
        "POST",
        HEARTBEAT,
        Action::Delay(Duration::from_millis(400)),
    ));
    let mut p = f.spawn_initialized().await;
    const BEATS: usize = 7;
    let ok = f
        .stub
        .wait_for(
            |j| answered(j, HEARTBEAT, 200) >= BEATS,
            Duration::from_secs(20),
        )
        .await;
    assert!(ok, "fewer than {BEATS} heartbeats; stderr:\n{}", p.stderr());
    let journal = f.stub.journal();
    let beats: Vec<_> = entries(&journal, HEARTBEAT)
        .into_iter()
        .take(BEATS)
        .collect();
    let intervals: Vec<f64> = beats.windows(2).map(|w| secs_between(w[0], w[1])).collect();
    let span = secs_between(beats[0], beats[BEATS - 1]);
    let n = (BEATS - 1) as f64;
    eprintln!("heartbeat intervals {intervals:.3?}, {n} intervals over {span:.3}s");
    // One late beat (a loaded machine) makes its interval long and the next one short, but
    // the grid keeps the total: N intervals take N seconds.
    for (i, d) in intervals.iter().enumerate() {
        assert!(
            (0.25..=1.9).contains(d),
            "interval {i} was {d:.3}s: {intervals:.3?}"
        );
    }
    assert!(
        (n - 0.5..=n + 1.0).contains(&span),
        "{n} beats took {span:.3}s (drift?): {intervals:.3?}"
    );
    // uptime_seconds grows with the beats.
    let uptimes: Vec<i64> = beats
        .iter()
        .map(|b| {
            b.json().expect("json")["uptime_seconds"]
                .as_i64()
                .expect("int")
        })
        .collect();
    assert!(uptimes.windows(2).all(|w| w[0] <= w[1]), "{uptimes:?}");
    assert!(uptimes[BEATS - 1] >= 4, "{uptimes:?}");
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn revoked_token_escalates_to_exactly_one_error() {
    let f = Fixture::start("revoked").await;
    let mut p = f.spawn_initialized().await;
    assert!(wait_answered(&f.stub, HEARTBEAT, 200, 1).await);
    let new_token = f.stub.rotate_token(&f.ws);
    let escalated = p.wait_for_stderr("REVOKED", WAIT).await;
    let rejected_at_error = answered(&f.stub.journal(), HEARTBEAT, 401);
    assert!(escalated, "no ERROR; stderr:\n{}", p.stderr());
    assert!(
        (3..=4).contains(&rejected_at_error),
        "ERROR after {rejected_at_error} rejected beats"
    );
    let err = p.stderr();
    let lines: Vec<&str> = err.lines().collect();
    let error_at = lines
        .iter()
        .position(|l| l.contains("REVOKED"))
        .expect("error line");
    let warn1 = lines
        .iter()
        .position(|l| l.contains("(auth failure 1/3)"))
        .expect("first warning");
    let warn2 = lines
        .iter()
        .position(|l| l.contains("(auth failure 2/3)"))
        .expect("second warning");
    assert!(
        warn1 < warn2 && warn2 < error_at,
        "warnings must precede the ERROR:\n{err}"
    );
    assert_eq!(lines[warn1].split_whitespace().nth(1), Some("WARN"));
    assert_eq!(lines[error_at].split_whitespace().nth(1), Some("ERROR"));
    // Later failures stay quiet (next re-log is at the 23rd).
    assert!(
        wait_answered(&f.stub, HEARTBEAT, 401, 6).await,
        "stderr:\n{}",
        p.stderr()
    );
    ping(&mut p, 1).await;
    let err = p.stderr();
    let errors = log_lines(&err, "ERROR");
    assert_eq!(errors.len(), 1, "exactly one ERROR expected:\n{err}");
    assert!(
        errors[0].contains(&format!("for workspace {}", f.ws)),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("the token from MOLECULE_WORKSPACE_TOKEN has been REVOKED"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("Tokens tab"), "{}", errors[0]);
    assert_eq!(heartbeat_auth_warnings(&err).len(), 2, "{err}");
    assert_no_secret(&err, &[&f.token, &new_token]);
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn a_2xx_heartbeat_resets_the_auth_failure_count() {
    let f = Fixture::start("reset").await;
    // 401, 401, (real 200), 401, 401, (real 200), 401 …, then real answers.
    for _ in 0..2 {
        f.stub.script(
            Script::new(
                "POST",
                HEARTBEAT,
                Action::json(401, &json!({"error": "invalid token"})),
            )
            .times(2),
        );
        f.stub
            .script(Script::new("POST", HEARTBEAT, Action::Delay(Duration::ZERO)).times(1));
    }
    f.stub.script(
        Script::new(
            "POST",
            HEARTBEAT,
            Action::json(401, &json!({"error": "invalid token"})),
        )
        .times(1),
    );
    let mut p = f.spawn_initialized().await;
    let done = f
        .stub
        .wait_for(
            |j| {
                entries(j, HEARTBEAT)
                    .iter()
                    .filter(|e| e.status.is_some())
                    .count()
                    >= 9
            },
            Duration::from_secs(20),
        )
        .await;
    assert!(done, "stderr:\n{}", p.stderr());
    let journal = f.stub.journal();
    let statuses: Vec<u16> = entries(&journal, HEARTBEAT)
        .iter()
        .take(9)
        .filter_map(|e| e.status)
        .collect();
    assert_eq!(statuses, vec![401, 401, 200, 401, 401, 200, 401, 200, 200]);
    ping(&mut p, 1).await;
    let err = p.stderr();
    assert!(
        log_lines(&err, "ERROR").is_empty(),
        "a 2xx must reset the count:\n{err}"
    );
    assert!(!err.contains("REVOKED"), "{err}");
    let warnings = heartbeat_auth_warnings(&err);
    let counts: Vec<&str> = warnings
        .iter()
        .map(|l| {
            if l.contains("1/3") {
                "1"
            } else if l.contains("2/3") {
                "2"
            } else {
                "?"
            }
        })
        .collect();
    assert_eq!(counts, vec!["1", "2", "1", "2", "1"], "{err}");
    assert_no_secret(&err, &[&f.token]);
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn heartbeat_5xx_never_escalates() {
    let f = Fixture::start("beat500").await;
    f.stub.script(
        Script::new(
            "POST",
            HEARTBEAT,
            Action::json(500, &json!({"error": "db down"})),
        )
        .times(5),
    );
    f.stub
        .script(Script::new("POST", HEARTBEAT, Action::status(503)).times(1));
    let mut p = f.spawn_initialized().await;
    let ok = f
        .stub
        .wait_for(
            |j| answered(j, HEARTBEAT, 200) >= 1,
            Duration::from_secs(20),
        )
        .await;
    assert!(ok, "stderr:\n{}", p.stderr());
    let journal = f.stub.journal();
    assert_eq!(answered(&journal, HEARTBEAT, 500), 5);
    assert_eq!(answered(&journal, HEARTBEAT, 503), 1);
    ping(&mut p, 1).await;
    let err = p.stderr();
    assert!(
        log_lines(&err, "ERROR").is_empty(),
        "5xx must never escalate:\n{err}"
    );
    assert!(heartbeat_auth_warnings(&err).is_empty(), "{err}");
    assert_eq!(err.matches("heartbeat HTTP 500").count(), 5, "{err}");
    assert_eq!(err.matches("heartbeat HTTP 503").count(), 1, "{err}");
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
}

// ----- the inbound secret file ------------------------------------------------------------

/// (inode, mtime ns, ctime ns) — changes whenever the file is replaced.
fn file_identity(path: &std::path::Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(path).expect("metadata");
    (
        m.ino(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    )
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn inbound_secret_is_private_and_rewritten_only_on_change() {
    let f = Fixture::start("secret").await;
    let path = f.dir.join(".platform_inbound_secret");
    let mut p = f.spawn_initialized().await;
    assert!(wait_answered(&f.stub, REGISTER, 200, 1).await);
    let secret = f
        .stub
        .workspace(&f.ws)
        .and_then(|w| w.inbound_secret)
        .expect("stub delivered a secret");
    let read = || std::fs::read_to_string(&path).ok();
    let written = f
        .stub
        .wait_until(|_| read().as_deref() == Some(secret.as_str()), WAIT)
        .await;
    assert!(
        written,
        "secret file not written ({:?}); stderr:\n{}",
        read(),
        p.stderr()
    );
    assert_eq!(mode(&path), 0o600);
    let first = file_identity(&path);

    // Further deliveries of the same value do not touch the file.
    let beats = answered(&f.stub.journal(), HEARTBEAT, 200);
    assert!(wait_answered(&f.stub, HEARTBEAT, 200, beats + 3).await);
    assert_eq!(
        file_identity(&path),
        first,
        "unchanged secret was rewritten"
    );

    // Rotation: the new value replaces the file, still 0600.
    let rotated = f.stub.rotate_inbound_secret(&f.ws).expect("rotate");
    assert_ne!(rotated, secret);
    let rewritten = f
        .stub
        .wait_until(|_| read().as_deref() == Some(rotated.as_str()), WAIT)
        .await;
    assert!(rewritten, "rotated secret not written ({:?})", read());
    assert_eq!(mode(&path), 0o600);
    let second = file_identity(&path);
    assert_ne!(second, first);
    let beats = answered(&f.stub.journal(), HEARTBEAT, 200);
    assert!(wait_answered(&f.stub, HEARTBEAT, 200, beats + 2).await);
    assert_eq!(
        file_identity(&path),
        second,
        "unchanged secret was rewritten after rotation"
    );
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
    assert_no_secret(&p.stderr(), &[&secret, &rotated, &f.token]);

    // A restart with the same value on disk does not rewrite it either.
    f.stub.clear_journal();
    let mut p2 = f.spawn_initialized().await;
    assert!(wait_answered(&f.stub, REGISTER, 200, 1).await);
    assert!(wait_answered(&f.stub, HEARTBEAT, 200, 2).await);
    assert_eq!(
        file_identity(&path),
        second,
        "restart rewrote an unchanged secret"
    );
    let leftovers: Vec<String> = std::fs::read_dir(f.dir.path())
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
    p2.close_stdin();
    assert_eq!(exit_code(&mut p2).await, Some(0));
    assert_stdout_clean(&mut p2);
}

// ----- secrets in logs --------------------------------------------------------------------

#[tokio::test]
async fn token_never_reaches_stderr() {
    let run = |verbose: bool, minted: bool| async move {
        let f = Fixture::start(&format!("leak-{verbose}-{minted}")).await;
        let echo = |status: u16| {
            Action::json(
                status,
                &json!({"error": format!("token {} is not valid here", f.token)}),
            )
        };
        // Failure bodies that echo the token (a misbehaving proxy), on every logged path.
        f.stub
            .script(Script::new("POST", REGISTER, echo(500)).times(1));
        f.stub
            .script(Script::new("POST", HEARTBEAT, echo(500)).times(1));
        f.stub
            .script(Script::new("POST", HEARTBEAT, echo(401)).times(1));
        f.stub
            .script(Script::new("GET", "/workspaces/:id/activity", echo(500)).times(1));
        if minted {
            // No live token: register mints one, which the binary adopts.
            f.stub.revoke_all_tokens(&f.ws);
        }
        let mut env = f.env();
        if verbose {
            env = env.set("MOLECULE_MCP_VERBOSE", "1");
        }
        let mut p = f.spawn(&env);
        initialize(&mut p).await;
        assert!(
            wait_answered(&f.stub, REGISTER, 200, 1).await,
            "stderr:\n{}",
            p.stderr()
        );
        assert!(
            wait_answered(&f.stub, HEARTBEAT, 200, 2).await,
            "stderr:\n{}",
            p.stderr()
        );
        let info = call_tool(&mut p, 1, "get_workspace_info", json!({})).await;
        assert!(info.get("result").is_some(), "{info}");
        let minted_token = f
            .stub
            .journal()
            .iter()
            .rev()
            .find_map(|e| e.header("authorization").map(str::to_owned))
            .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
            .expect("bearer");
        if minted {
            assert_ne!(minted_token, f.token, "the minted token is in use");
        }
        p.close_stdin();
        assert_eq!(exit_code(&mut p).await, Some(0));
        let err = p.stderr();
        // The failure paths did log (so redaction was exercised) …
        assert!(err.contains("register POST returned HTTP 500"), "{err}");
        assert!(err.contains("heartbeat HTTP 500"), "{err}");
        assert!(err.contains("(auth failure 1/3)"), "{err}");
        assert!(
            err.contains("not valid here"),
            "the body excerpt is quoted: {err}"
        );
        if minted {
            assert!(err.contains("the platform minted a new token"), "{err}");
        }
        // … verbosity is what was asked for …
        let infos = log_lines(&err, "INFO");
        if verbose {
            assert!(
                infos.iter().any(|l| l.contains("registered workspace")),
                "{err}"
            );
            // Verbose is for the operator: no HTTP-client internals (hyper's pool logs two
            // DEBUG lines per request).
            assert!(
                !err.contains("idle connection") && !err.contains("connecting to"),
                "dependency DEBUG noise in verbose output:\n{err}"
            );
        } else {
            assert!(
                infos.is_empty(),
                "INFO without MOLECULE_MCP_VERBOSE:\n{err}"
            );
        }
        // … and no token appears anywhere.
        assert_no_secret(&err, &[&f.token, &minted_token]);
        assert_stdout_clean(&mut p);
    };
    tokio::join!(run(false, false), run(true, false), run(true, true));
}

// ----- the wire -----------------------------------------------------------------------------

#[tokio::test]
async fn every_request_carries_origin_and_exact_bearer() {
    let f = Fixture::start("headers").await;
    let origin = f.stub.url();
    // Configured with a trailing slash, like many pasted URLs.
    let mut p = f.spawn(&f.env().set("PLATFORM_URL", &format!("{origin}/")));
    initialize(&mut p).await;
    assert!(
        wait_answered(&f.stub, HEARTBEAT, 200, 3).await,
        "stderr:\n{}",
        p.stderr()
    );
    assert!(
        f.stub
            .wait_for(
                |j| entries(j, &format!("/workspaces/{}/activity", f.ws)).len() >= 2,
                WAIT
            )
            .await
    );
    call_tool(&mut p, 1, "get_workspace_info", json!({})).await;
    call_tool(&mut p, 2, "list_peers", json!({})).await;
    call_tool(
        &mut p,
        3,
        "send_message_to_user",
        json!({"message": "hello from e2e"}),
    )
    .await;
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    let journal = f.stub.journal();
    assert!(journal.len() >= 8, "{} requests", journal.len());
    let bearer = format!("Bearer {}", f.token);
    for e in &journal {
        let what = format!("{} {} (status {:?})", e.method, e.path, e.status);
        let values = |name: &str| {
            e.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(values("origin"), vec![origin.as_str()], "{what}");
        assert_eq!(values("authorization"), vec![bearer.as_str()], "{what}");
        assert!(!e.path.contains("//"), "{what}");
        assert_ne!(e.status, Some(403), "{what} was refused (CORS?)");
    }
    let paths: Vec<&str> = journal.iter().map(|e| e.path.as_str()).collect();
    assert!(
        paths.contains(&REGISTER) && paths.contains(&HEARTBEAT),
        "{paths:?}"
    );
    assert!(paths.iter().any(|p| p.ends_with("/notify")), "{paths:?}");
    assert_stdout_clean(&mut p);
}

#[tokio::test]
async fn register_and_heartbeat_bodies_match_the_contracts() {
    let register_schema = common::load_contract("register.schema.json");
    let heartbeat_schema = common::load_contract("heartbeat.schema.json");
    let f = Fixture::start("contract").await;
    let env = f
        .env()
        .set("MOLECULE_AGENT_NAME", "contract-agent")
        .set("MOLECULE_AGENT_DESCRIPTION", "checks the wire format")
        .set("MOLECULE_AGENT_SKILLS", "review, triage");
    let mut p = f.spawn(&env);
    initialize(&mut p).await;
    assert!(
        wait_answered(&f.stub, HEARTBEAT, 200, 3).await,
        "stderr:\n{}",
        p.stderr()
    );
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    let journal = f.stub.journal();
    let registers = entries(&journal, REGISTER);
    let beats = entries(&journal, HEARTBEAT);
    assert_eq!(registers.len(), 1);
    assert!(beats.len() >= 3);
    for e in &registers {
        let body = e.json().expect("register body is JSON");
        let errors = schema::validate_at(&register_schema, "/properties/request", &body);
        assert!(
            errors.is_empty(),
            "register body {body} violates the contract: {errors:?}"
        );
        assert_eq!(body["id"], json!(f.ws));
        assert_eq!(body["delivery_mode"], "poll");
        assert_eq!(body["agent_card"]["name"], "contract-agent");
        assert_eq!(body["agent_card"]["description"], "checks the wire format");
        assert_eq!(
            body["agent_card"]["skills"],
            json!([{"name": "review"}, {"name": "triage"}])
        );
        assert_eq!(e.header("content-type"), Some("application/json"));
    }
    for e in &beats {
        let body = e.json().expect("heartbeat body is JSON");
        let errors = schema::validate_at(&heartbeat_schema, "/properties/request", &body);
        assert!(
            errors.is_empty(),
            "heartbeat body {body} violates the contract: {errors:?}"
        );
        assert_eq!(body["workspace_id"], json!(f.ws));
        assert_eq!(e.header("content-type"), Some("application/json"));
    }
    assert_stdout_clean(&mut p);
}

/// The validator used above can fail: it reports each kind of violation the contracts can
/// express, and refuses keywords it does not implement.
#[test]
fn contract_validator_rejects_violations() {
    let hb = common::load_contract("heartbeat.schema.json");
    let reg = common::load_contract("register.schema.json");
    let at = "/properties/request";
    let good = json!({"workspace_id": SOME_WS, "error_rate": 0.0, "sample_error": "", "active_tasks": 0, "uptime_seconds": 3});
    assert_eq!(schema::validate_at(&hb, at, &good), Vec::<String>::new());
    let bad: [(Value, &str); 6] = [
        (json!({"error_rate": 0.0}), "missing required"),
        (json!({"workspace_id": ""}), "shorter than"),
        (
            json!({"workspace_id": SOME_WS, "uptime_seconds": 1.5}),
            "expected type",
        ),
        (
            json!({"workspace_id": SOME_WS, "surprise": true}),
            "unexpected property",
        ),
        (
            json!({"workspace_id": SOME_WS, "runtime_metadata": {"capabilities": {"x": "yes"}}}),
            "expected type",
        ),
        (
            json!({"workspace_id": SOME_WS, "agent_card": {"url": "x"}}),
            "missing required",
        ),
    ];
    for (body, why) in bad {
        let errors = schema::validate_at(&hb, at, &body);
        assert!(errors.iter().any(|e| e.contains(why)), "{body}: {errors:?}");
    }
    let good_reg = json!({"id": SOME_WS, "url": "", "agent_card": {"name": "n", "skills": []}, "delivery_mode": "poll"});
    assert_eq!(
        schema::validate_at(&reg, at, &good_reg),
        Vec::<String>::new()
    );
    let bad_mode =
        json!({"id": SOME_WS, "agent_card": {"name": "n"}, "delivery_mode": "carrier-pigeon"});
    assert!(
        schema::validate_at(&reg, at, &bad_mode)
            .iter()
            .any(|e| e.contains("is not one of"))
    );
    let no_card = json!({"id": SOME_WS});
    assert!(!schema::validate_at(&reg, at, &no_card).is_empty());
    let resp = json!({"status": "ok!"});
    assert!(
        schema::validate_at(&hb, "/properties/response", &resp)
            .iter()
            .any(|e| e.contains("constant"))
    );
    let unknown = json!({"type": "string", "pattern": "^a"});
    assert!(
        schema::validate_at(&unknown, "", &json!("a"))
            .iter()
            .any(|e| e.contains("unsupported"))
    );
}

// ----- stdio and lifecycle ----------------------------------------------------------------

/// How the process is shut down.
#[derive(Debug, Clone, Copy)]
enum Stop {
    StdinEof,
    Sigterm,
}

/// What the process is doing when it is told to stop.
#[derive(Debug, Clone, Copy)]
enum Busy {
    /// Registered and heartbeating, nothing in flight.
    Idle,
    /// The register request never gets an answer.
    RegisterHanging,
    /// A heartbeat never gets an answer.
    HeartbeatHanging,
    /// A long `wait_for_message` tool call is running.
    ToolCall,
}

/// Stops a process in the `busy` situation; asserts exit 0 within 1 s and returns the time.
async fn stop_promptly(stop: Stop, busy: Busy) -> Duration {
    let f = Fixture::start(&format!("{stop:?}-{busy:?}").to_lowercase()).await;
    match busy {
        Busy::RegisterHanging => f.stub.script(Script::new("POST", REGISTER, Action::Hang)),
        Busy::HeartbeatHanging => f.stub.script(Script::new("POST", HEARTBEAT, Action::Hang)),
        Busy::Idle | Busy::ToolCall => {}
    }
    let mut p = f.spawn_initialized().await;
    let ready = match busy {
        Busy::Idle | Busy::ToolCall => wait_answered(&f.stub, HEARTBEAT, 200, 1).await,
        Busy::RegisterHanging => {
            f.stub
                .wait_for(|j| !entries(j, REGISTER).is_empty(), WAIT)
                .await
        }
        Busy::HeartbeatHanging => {
            f.stub
                .wait_for(|j| !entries(j, HEARTBEAT).is_empty(), WAIT)
                .await
        }
    };
    assert!(ready, "{stop:?}/{busy:?}: stderr:\n{}", p.stderr());
    if let Busy::ToolCall = busy {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "wait_for_message", "arguments": {"timeout_secs": 30}}});
        p.send(&call).await.expect("send tools/call");
    }
    // Answered after everything sent before it was read.
    ping(&mut p, 1).await;
    let t = Instant::now();
    match stop {
        Stop::StdinEof => p.close_stdin(),
        Stop::Sigterm => p.signal(15),
    }
    let status = p.wait_exit(WAIT).await;
    let took = t.elapsed();
    let status =
        status.unwrap_or_else(|| panic!("{stop:?}/{busy:?}: no exit; stderr:\n{}", p.stderr()));
    assert_eq!(
        status.code(),
        Some(0),
        "{stop:?}/{busy:?}: {status}; stderr:\n{}",
        p.stderr()
    );
    assert!(
        took < Duration::from_secs(1),
        "{stop:?}/{busy:?}: exit took {took:?}"
    );
    assert_stdout_clean(&mut p);
    let err = p.stderr();
    assert!(log_lines(&err, "ERROR").is_empty(), "{err}");
    assert_no_secret(&err, &[&f.token]);
    if let (Stop::Sigterm, Busy::Idle) = (stop, busy) {
        // Heartbeats end with the process.
        let beats = entries(&f.stub.journal(), HEARTBEAT).len();
        let more = f
            .stub
            .wait_for(
                |j| entries(j, HEARTBEAT).len() > beats,
                Duration::from_millis(1500),
            )
            .await;
        assert!(!more, "a heartbeat arrived after the process exited");
    }
    took
}

/// Stops the process in each of the four states at once (concurrently, to keep the suite
/// short) and reports how long each exit took.
#[allow(clippy::print_stderr)] // exit times for the report, shown with --nocapture
async fn stop_promptly_in_every_state(stop: Stop) {
    let (a, b, c, d) = tokio::join!(
        stop_promptly(stop, Busy::Idle),
        stop_promptly(stop, Busy::RegisterHanging),
        stop_promptly(stop, Busy::HeartbeatHanging),
        stop_promptly(stop, Busy::ToolCall),
    );
    eprintln!(
        "exit after {stop:?}: idle {a:?}, register hanging {b:?}, heartbeat hanging {c:?}, tool call {d:?}"
    );
}

#[tokio::test]
async fn stdin_eof_exits_0_within_1s() {
    stop_promptly_in_every_state(Stop::StdinEof).await;
}

#[tokio::test]
async fn sigterm_exits_0_within_1s() {
    stop_promptly_in_every_state(Stop::Sigterm).await;
}

#[tokio::test]
async fn stdin_from_a_regular_file_exits_2_with_the_stdio_message() {
    let f = Fixture::start("stdinfile").await;
    let input = f.dir.join("input.json");
    std::fs::write(
        &input,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n",
    )
    .expect("write input");
    let mut cmd = f.env().std_command(&[]);
    cmd.stdin(Stdio::from(
        std::fs::File::open(&input).expect("open input"),
    ));
    let out = tokio::task::spawn_blocking(move || run_to_exit(cmd, WAIT))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("stdin (fd=0) is a regular file, not a pipe"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("launch it from an MCP-aware client"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("molecule-mcp doctor"), "{}", out.stderr);
    assert_eq!(out.stdout, "", "nothing may be answered on stdout");
    assert_no_secret(&out.stderr, &[&f.token]);
    // The check runs first: the platform was never contacted.
    assert!(f.stub.journal().is_empty(), "{:?}", f.stub.journal());

    // stdout redirected to a file is refused the same way, and the file stays empty.
    let output = f.dir.join("out.txt");
    let mut cmd = f.env().std_command(&[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(
            std::fs::File::create(&output).expect("create output"),
        ))
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || common::run_to_exit_with(cmd, WAIT))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("stdout (fd=1) is a regular file"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&output).expect("read output"), "");
    assert!(f.stub.journal().is_empty());
}

// ----- the standard streams (cli/src/stdio.rs) ---------------------------------------------

/// Whether descriptor `fd` of process `pid` is non-blocking: `flags:` in
/// `/proc/PID/fdinfo/FD` is octal, O_NONBLOCK is 0o4000 on Linux.
fn nonblocking(pid: u32, fd: u32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(flags.trim(), 8).expect("octal flags") & 0o4000 != 0
}

/// How a [`converse`] run went.
struct Conversation {
    /// The JSON lines read back (others, such as merged log lines, are left out).
    answers: Vec<Value>,
    /// O_NONBLOCK of the child's fd 0 and fd 1 while it was serving.
    stdin_nonblocking: bool,
    stdout_nonblocking: bool,
    /// Every line read back, JSON or not.
    all: String,
    code: Option<i32>,
}

/// Talks to a spawned `child` (whose parent-side copies of its descriptors are already
/// closed; `out` reads what it writes): writes `initialize` and `tools/list` to `input`,
/// reads until the `tools/list` answer, notes the descriptor flags, then closes `input` and
/// waits for the exit.
fn converse(
    mut child: std::process::Child,
    out: impl std::io::Read + Send + 'static,
    mut input: impl std::io::Write,
) -> Conversation {
    use std::io::BufRead as _;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let requests = concat!(
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        "\n"
    );
    input
        .write_all(requests.as_bytes())
        .expect("write requests");
    input.flush().expect("flush");
    let mut answers = Vec::new();
    let mut all = String::new();
    let deadline = Instant::now() + WAIT;
    while !answers.iter().any(|a: &Value| a["id"] == 1) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("no tools/list answer; read so far:\n{all}");
        };
        all.push_str(&line);
        all.push('\n');
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            answers.push(v);
        }
    }
    let stdin_nonblocking = nonblocking(child.id(), 0);
    let stdout_nonblocking = nonblocking(child.id(), 1);
    drop(input);
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after stdin EOF; read:\n{all}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        all.push_str(&line);
        all.push('\n');
    }
    Conversation {
        answers,
        stdin_nonblocking,
        stdout_nonblocking,
        all,
        code,
    }
}

fn assert_served(c: &Conversation) {
    assert_eq!(c.answers[0]["id"], 0, "{}", c.all);
    assert!(
        c.answers[0]["result"]["serverInfo"].is_object(),
        "{}",
        c.all
    );
    let tools = c.answers[1]["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 12, "{}", c.all);
    assert_eq!(c.code, Some(0), "{}", c.all);
}

#[tokio::test]
async fn pipes_are_served_non_blocking_on_the_runtime_thread() {
    let f = Fixture::start("stdiopipes").await;
    let mut cmd = f.env().std_command(&[]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let c = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn");
        let input = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        converse(child, out, input)
    })
    .await
    .expect("join");
    assert_served(&c);
    assert!(c.stdin_nonblocking, "the stdin pipe is read non-blocking");
    assert!(
        c.stdout_nonblocking,
        "the stdout pipe is written non-blocking"
    );
}

/// `2>&1`: stdout and stderr are one pipe. Non-blocking stdout would make the log writer's
/// blocking writes fail, so stdout keeps the blocking writer; replies and logs both arrive.
#[tokio::test]
async fn stdout_merged_with_stderr_keeps_blocking_writes() {
    let f = Fixture::start("stdiomerged").await;
    // Verbose: the INFO lines of the shutdown reach the merged pipe.
    let mut cmd = f.env().set("MOLECULE_MCP_VERBOSE", "1").std_command(&[]);
    let (out, merged) = std::io::pipe().expect("pipe");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(merged.try_clone().expect("clone")))
        .stderr(Stdio::from(merged));
    let c = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("spawn");
        drop(cmd);
        let input = child.stdin.take().expect("stdin");
        converse(child, out, input)
    })
    .await
    .expect("join");
    assert_served(&c);
    assert!(c.stdin_nonblocking, "stdin is still its own pipe");
    assert!(!c.stdout_nonblocking, "stdout shares its pipe with stderr");
    assert!(
        c.all
            .lines()
            .any(|l| !l.starts_with('{') && l.contains("shutting down")),
        "the log reached the merged pipe too:\n{}",
        c.all
    );
}

/// A socket for stdin and stdout (allowed by the stdio check) goes through tokio's
/// blocking-pool stdio and is served the same.
#[tokio::test]
async fn a_socket_for_stdio_is_served_too() {
    let f = Fixture::start("stdiosocket").await;
    let mut cmd = f.env().std_command(&[]);
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    cmd.stdin(Stdio::from(std::os::fd::OwnedFd::from(
        theirs.try_clone().expect("clone"),
    )))
    .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
    .stderr(Stdio::null());
    let c = tokio::task::spawn_blocking(move || {
        let child = cmd.spawn().expect("spawn");
        drop(cmd);
        let out = ours.try_clone().expect("clone");
        // Closing our writing side is the EOF; shut it down explicitly, as `out` keeps the
        // socket itself open.
        struct HalfClose(std::os::unix::net::UnixStream);
        impl std::io::Write for HalfClose {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.write(b)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.0.flush()
            }
        }
        impl Drop for HalfClose {
            fn drop(&mut self) {
                let _ = self.0.shutdown(std::net::Shutdown::Write);
            }
        }
        converse(child, out, HalfClose(ours))
    })
    .await
    .expect("join");
    assert_served(&c);
    assert!(
        !c.stdin_nonblocking && !c.stdout_nonblocking,
        "a socket is left as it is"
    );
}

#[tokio::test]
async fn disable_heartbeat_skips_the_registry_but_serves_mcp() {
    let f = Fixture::start("noheartbeat").await;
    let mut p = f.spawn(&f.env().set("MOLECULE_MCP_DISABLE_HEARTBEAT", "1"));
    initialize(&mut p).await;
    let tools = p
        .request(1, "tools/list", json!({}), WAIT)
        .await
        .expect("tools/list");
    assert_eq!(
        tools["result"]["tools"].as_array().map(Vec::len),
        Some(12),
        "{tools}"
    );
    ping(&mut p, 2).await;
    let info = call_tool(&mut p, 3, "get_workspace_info", json!({})).await;
    assert!(info.get("result").is_some(), "{info}");
    // The inbox keeps polling for > 1 s: the process is alive and talking to the platform,
    // and a register would have been the very first request.
    let activity = format!("/workspaces/{}/activity", f.ws);
    assert!(
        f.stub
            .wait_for(|j| entries(j, &activity).len() >= 3, WAIT)
            .await,
        "stderr:\n{}",
        p.stderr()
    );
    let journal = f.stub.journal();
    let registry: Vec<&str> = journal
        .iter()
        .filter(|e| e.path.starts_with("/registry/"))
        .map(|e| e.path.as_str())
        .collect();
    assert!(
        registry.is_empty(),
        "registry calls with MOLECULE_MCP_DISABLE_HEARTBEAT=1: {registry:?}"
    );
    ping(&mut p, 4).await;
    p.close_stdin();
    assert_eq!(exit_code(&mut p).await, Some(0));
    assert_stdout_clean(&mut p);
    assert!(log_lines(&p.stderr(), "ERROR").is_empty(), "{}", p.stderr());
}

#[tokio::test]
async fn version_and_help_exit_0() {
    let version = Env::empty().std_command(&["--version"]);
    let out = tokio::task::spawn_blocking(move || run_to_exit(version, WAIT))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        format!("molecule-mcp {}", env!("CARGO_PKG_VERSION"))
    );
    let help = Env::empty().std_command(&["--help"]);
    let out = tokio::task::spawn_blocking(move || run_to_exit(help, WAIT))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    for needle in [
        "doctor",
        "demo",
        "PLATFORM_URL",
        "WORKSPACE_ID",
        "MOLECULE_WORKSPACE_TOKEN",
    ] {
        assert!(
            out.stdout.contains(needle),
            "--help lacks {needle:?}:\n{}",
            out.stdout
        );
    }
}
