//! Scripted real client: the official Python `mcp` SDK (`tests/python/mcp_client_check.py`)
//! drives the real `molecule-mcp` binary against the loopback platform stub, once per connect
//! mode (`legacy` handshake, pinned `2026-07-28`, and `auto` = discover probe with fallback).
//!
//! Per mode the stub holds its own poll-mode agent workspace, a child of its own "lead"
//! workspace, so `list_peers` returns exactly that one peer and no run sees another run's
//! feed. The `legacy` run gets its canvas message before the client starts (first-start
//! backlog path); the other two get it while `wait_for_message` is blocking (steady-state
//! polling path). Before either happens the test waits until the platform saw two heartbeats
//! of that workspace, so the journal checks do not depend on how fast the client is.
//!
//! Needs `.venv` from `bash scripts/setup-python-client.sh`; without it the test is skipped
//! with a note, except under `CI`, where it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use molecule_mcp_tests::process::molecule_mcp_bin;
use molecule_mcp_tests::stub::{InboundMessage, JournalEntry, PlatformStub, WorkspaceSpec};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const MODES: [&str; 3] = ["legacy", "2026-07-28", "auto"];
const TOOLS: [&str; 12] = [
    "delegate_task",
    "delegate_task_async",
    "check_task_status",
    "list_peers",
    "get_workspace_info",
    "send_message_to_user",
    "wait_for_message",
    "inbox_peek",
    "inbox_pop",
    "chat_history",
    "commit_memory",
    "recall_memory",
];
/// Bound for the whole script (three client sessions); it normally takes a few seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for any one platform-side condition.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, or why it cannot be used. Under `CI` a missing venv is a failure.
fn python() -> Result<PathBuf, String> {
    let python = workspace_root().join(".venv/bin/python");
    let usable = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import mcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if usable {
        return Ok(python);
    }
    let hint = format!(
        "{} with the `mcp` package is missing: run `bash scripts/setup-python-client.sh` first",
        python.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but {hint} (.ci/run does this before the tests)");
    }
    Err(hint)
}

/// One mode's seeded workspaces.
struct Run {
    mode: &'static str,
    ws: String,
    token: String,
    lead: String,
    lead_name: String,
    attachment: String,
    state: TempDir,
}

fn for_workspace<'a>(
    journal: &'a [JournalEntry],
    path: &str,
    key: &str,
    ws: &str,
) -> Vec<&'a JournalEntry> {
    journal
        .iter()
        .filter(|e| e.path == path && e.json().is_some_and(|b| b[key] == json!(ws)))
        .collect()
}

fn accepted_heartbeats<'a>(journal: &'a [JournalEntry], ws: &str) -> Vec<&'a JournalEntry> {
    for_workspace(journal, "/registry/heartbeat", "workspace_id", ws)
        .into_iter()
        .filter(|e| e.status == Some(200))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_client_passes_in_every_mode() {
    let python = match python() {
        Ok(python) => python,
        Err(hint) => {
            println!("SKIPPED python_client: {hint}");
            return;
        }
    };
    let bin = molecule_mcp_bin();
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p molecule-mcp-cli --bin molecule-mcp` first",
        bin.display()
    );
    let stub = PlatformStub::start().await.expect("stub starts");
    let home = TempDir::new("pyclient-home").expect("temp dir");

    let mut runs = Vec::new();
    for mode in MODES {
        let lead_name = format!("lead-{}", mode.replace('-', ""));
        let (lead, _) = stub.create_workspace(WorkspaceSpec::named(&lead_name).role("lead"));
        let (ws, token) = stub.create_workspace(
            WorkspaceSpec::named(&format!("agent-{mode}"))
                .poll()
                .parent(&lead),
        );
        runs.push(Run {
            mode,
            ws,
            token,
            lead,
            lead_name,
            attachment: format!("attachment for the {mode} run\nline two\n"),
            state: TempDir::new(&format!("pyclient-{mode}")).expect("temp dir"),
        });
    }
    // The legacy run's message is in the feed before its client starts.
    let prestaged_text = "canvas message waiting before the legacy client connects";
    let mut injected: BTreeMap<&str, String> = BTreeMap::new();
    injected.insert(
        "legacy",
        stub.inject_message(&runs[0].ws, InboundMessage::canvas(prestaged_text)),
    );

    let config = json!({
        "binary": bin.display().to_string(),
        "timeout_secs": 40,
        "env": {
            "PLATFORM_URL": stub.url(),
            "MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS": "1",
            "MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS": "1",
            "MOLECULE_AGENT_NAME": "python-client-check",
            // DEBUG logging, so the no-token-on-stderr check below has lines to look at.
            "MOLECULE_MCP_VERBOSE": "1",
        },
        "runs": runs.iter().map(|r| {
            let mut run = json!({
                "mode": r.mode,
                "env": {"WORKSPACE_ID": r.ws, "MOLECULE_WORKSPACE_TOKEN": r.token, "CONFIGS_DIR": r.state.as_str()},
                "peer_id": r.lead,
                "attachment_text": r.attachment,
                "sync_before_wait": r.mode == "legacy",
            });
            if r.mode == "legacy" {
                run["message_text"] = json!(prestaged_text);
            }
            run
        }).collect::<Vec<_>>(),
    });

    let script = workspace_root().join("tests/python/mcp_client_check.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the python client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{config}\n").as_bytes())
        .await
        .expect("write config");
    stdin.flush().await.expect("flush config");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().expect("stderr");
    let stderr_sink = stderr.clone();
    let stderr_task = tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(n) = err_pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            stderr_sink
                .lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let stderr_text = || stderr.lock().expect("lock").clone();

    let run_of = |ws: &str| {
        runs.iter()
            .find(|r| r.ws == ws)
            .expect("an event names a seeded workspace")
    };
    let started = Instant::now();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    let mut transcript = Vec::new();
    let mut event_problems: Vec<String> = Vec::new();
    loop {
        let next = tokio::time::timeout(
            SCRIPT_TIMEOUT.saturating_sub(started.elapsed()),
            lines.next_line(),
        )
        .await;
        let line = match next {
            Err(_) => panic!(
                "the python client did not finish within {SCRIPT_TIMEOUT:?}; stdout so far {transcript:#?}; stderr:\n{}",
                stderr_text()
            ),
            Ok(Err(e)) => panic!("reading the client's stdout: {e}"),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(line))) => line,
        };
        transcript.push(line.clone());
        let msg: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("client stdout line is not JSON ({e}): {line}"));
        match msg["event"].as_str() {
            Some(event) => {
                let run = run_of(msg["workspace_id"].as_str().unwrap_or_default());
                assert_eq!(msg["mode"], json!(run.mode), "{line}");
                // Register + two accepted heartbeats of this workspace before the message.
                let ws = run.ws.clone();
                // Not asserted here: if the run already failed, its binary is gone and the
                // script's own report (checked first below) says why.
                if !stub
                    .wait_for(|j| accepted_heartbeats(j, &ws).len() >= 2, STEP_TIMEOUT)
                    .await
                {
                    event_problems.push(format!("mode {}: fewer than 2 accepted heartbeats within {STEP_TIMEOUT:?} of the {event} event", run.mode));
                }
                match event {
                    "inject" => {
                        let text = msg["text"].as_str().expect("inject carries the text");
                        injected.insert(
                            run.mode,
                            stub.inject_message(&run.ws, InboundMessage::canvas(text)),
                        );
                    }
                    "checkpoint" => {
                        let answered = async {
                            stdin.write_all(b"go\n").await?;
                            stdin.flush().await
                        };
                        if let Err(e) = answered.await {
                            event_problems.push(format!(
                                "mode {}: cannot answer the checkpoint: {e}",
                                run.mode
                            ));
                        }
                    }
                    other => panic!("unknown event {other}: {line}"),
                }
            }
            None => {
                let mode = msg["mode"]
                    .as_str()
                    .expect("a result line names its mode")
                    .to_owned();
                assert!(
                    results.insert(mode, msg).is_none(),
                    "two result lines for one mode: {transcript:#?}"
                );
            }
        }
    }
    drop(stdin);
    let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
        .await
        .expect("client exits")
        .expect("wait");
    stderr_task.await.expect("stderr reader");
    let stderr_all = stderr_text();
    let elapsed = started.elapsed();

    // ---- the client's verdict --------------------------------------------------------------
    let failed: Vec<&Value> = results
        .values()
        .filter(|r| r["ok"] != json!(true))
        .collect();
    assert!(
        status.success() && failed.is_empty(),
        "python client exited with {status}; failed runs {failed:#?}\nstdout {transcript:#?}\nstderr:\n{stderr_all}"
    );
    assert_eq!(
        results.len(),
        MODES.len(),
        "one result line per mode: {transcript:#?}"
    );
    assert!(
        event_problems.is_empty(),
        "{event_problems:#?}\nstderr:\n{stderr_all}"
    );
    for run in &runs {
        let r = &results[run.mode];
        let expected_version = if run.mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(
            r["protocol_version"],
            json!(expected_version),
            "{}: {r}",
            run.mode
        );
        assert_eq!(r["server_name"], json!("molecule-mcp"), "{}: {r}", run.mode);
        assert_eq!(
            r["server_version"],
            json!(env!("CARGO_PKG_VERSION")),
            "{}: {r}",
            run.mode
        );
        assert_eq!(r["tools"], json!(TOOLS), "{}: tool order", run.mode);
        // Exactly one peer: this run's lead, none of the other runs' workspaces.
        let peers = r["peers_text"].as_str().unwrap_or_default();
        assert!(
            peers.contains(&run.lead) && peers.contains(&run.lead_name),
            "{}: {peers}",
            run.mode
        );
        for other in runs.iter().filter(|o| o.ws != run.ws) {
            assert!(
                !peers.contains(&other.lead) && !peers.contains(&other.ws),
                "{}: lists a foreign workspace: {peers}",
                run.mode
            );
        }
        assert_eq!(
            r["send_text"],
            json!("Message sent to user with 1 attachment(s)"),
            "{}",
            run.mode
        );
        let message = &r["message"];
        assert_eq!(
            message["activity_id"],
            json!(injected[run.mode]),
            "{}: wait_for_message returned another row: {message}",
            run.mode
        );
        assert_eq!(
            (&message["kind"], &message["peer_id"]),
            (&json!("canvas_user"), &json!("")),
            "{}: {message}",
            run.mode
        );
    }

    // The binary's stderr reaches the script's stderr (the SDK's `errlog`), so the token
    // check at the end looks at real log output.
    for run in &runs {
        assert!(
            stderr_all.contains(&format!("registered workspace {}", run.ws)),
            "{}: the binary's verbose log is not on stderr:\n{stderr_all}",
            run.mode
        );
    }

    // ---- what the platform saw --------------------------------------------------------------
    let journal = stub.journal();
    for run in &runs {
        let registers = for_workspace(&journal, "/registry/register", "id", &run.ws);
        assert!(
            registers.iter().any(|e| e.status == Some(200)),
            "{}: no accepted register in the journal",
            run.mode
        );
        let register_at = registers
            .iter()
            .find(|e| e.status == Some(200))
            .map(|e| e.at)
            .expect("register");
        let beats = accepted_heartbeats(&journal, &run.ws);
        assert!(
            beats.len() >= 2,
            "{}: {} accepted heartbeats",
            run.mode,
            beats.len()
        );
        assert!(
            beats.iter().all(|b| b.at >= register_at),
            "{}: a heartbeat before the register",
            run.mode
        );
        // Cadence at MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS=1, with wide bounds for a loaded machine.
        for pair in beats.windows(2) {
            let gap = pair[1].at.duration_since(pair[0].at).unwrap_or_default();
            assert!(
                gap >= Duration::from_millis(500) && gap <= Duration::from_secs(5),
                "{}: heartbeat gap {gap:?}",
                run.mode
            );
        }

        let notes = stub.notifications(&run.ws);
        assert_eq!(notes.len(), 1, "{}: notifications {notes:#?}", run.mode);
        let note = &notes[0];
        assert_eq!(
            note["message"],
            json!(format!("Report from the {} client", run.mode)),
            "{note}"
        );
        let attachments = note["attachments"]
            .as_array()
            .expect("the notify carries attachments");
        assert_eq!(attachments.len(), 1, "{note}");
        let file_name = format!("note-{}.txt", run.mode);
        assert_eq!(attachments[0]["name"], json!(file_name), "{note}");
        assert_eq!(
            attachments[0]["size"],
            json!(run.attachment.len()),
            "{note}"
        );
        let uri = attachments[0]["uri"].as_str().unwrap_or_default();
        assert!(
            uri.starts_with(&format!("platform-pending:{}/", run.ws)),
            "{note}"
        );

        let uploads = stub.pending_uploads(&run.ws);
        assert_eq!(uploads.len(), 1, "{}: uploads {uploads:#?}", run.mode);
        let upload = &uploads[0];
        assert_eq!(
            (upload.name.as_str(), upload.mime_type.as_str()),
            (file_name.as_str(), "text/plain"),
            "{upload:?}"
        );
        assert_eq!(
            upload.bytes.as_ref(),
            run.attachment.as_bytes(),
            "{}: uploaded bytes",
            run.mode
        );
        assert!(uri.ends_with(&upload.file_id), "{uri} vs {upload:?}");
        // Our own attachment is not fetched back as an inbound upload.
        assert!(
            !upload.acked,
            "{}: the runtime acked its own attachment",
            run.mode
        );

        assert!(
            !stderr_all.contains(&run.token),
            "{}: the token appeared on stderr",
            run.mode
        );
    }
    println!(
        "python client: {} modes passed in {:.1} s",
        MODES.len(),
        elapsed.as_secs_f64()
    );
    for run in &runs {
        let r = &results[run.mode];
        println!(
            "  {:<10} protocol {} connect {} ms, run {} ms",
            run.mode, r["protocol_version"], r["connect_ms"], r["elapsed_ms"]
        );
    }
    stub.shutdown().await;
}
