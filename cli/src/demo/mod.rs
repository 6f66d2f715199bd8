//! `molecule-mcp demo`: the real binary against the built-in loopback platform stub, with a
//! readable transcript on stdout. No network, no configuration; exits 0 when every step
//! behaved as it should (non-zero, naming the step, otherwise), within about 20 s.
//!
//! Steps: start the stub and seed a workspace → spawn `molecule-mcp` (this executable) the
//! way an MCP client does, heartbeat every 1 s → MCP handshake and tool list → register and
//! heartbeats seen by the platform → a canvas message arrives (push notification +
//! `wait_for_message`), the agent replies (`send_message_to_user`) and acknowledges it
//! (`inbox_pop`) → the platform revokes the token: WARNING, WARNING, ERROR → the operator
//! restarts with a fresh token: heartbeats accepted again → clean exit on stdin EOF.
//!
//! The demo is also a smoke test: each step checks what it shows.
//!
//! Only in builds with the `demo` cargo feature (on by default), which links in the
//! loopback platform stub (`molecule-mcp-stub`). Its two helpers are public because the
//! end-to-end tests, the bench and the soak drive the binary the same way:
//!
//! * [`process`] — [`McpProcess`], this binary spawned over pipes and spoken to as an MCP
//!   client does;
//! * [`temp_dir`] — [`TempDir`], the private state directory a child runs in.

pub mod process;
pub mod temp_dir;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use molecule_mcp_stub::{InboundMessage, JournalEntry, PlatformStub, WorkspaceSpec};
use serde_json::{Value, json};

pub use process::McpProcess;
pub use temp_dir::TempDir;

/// Why the demo failed, for the `DEMO FAILED: …` line.
#[derive(Debug)]
enum DemoFailure {
    /// The demo could not set itself up: what it was doing, and the OS error.
    Setup {
        /// E.g. `cannot start the platform stub`.
        doing: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// A step did not behave as it should; the text names the step and what was seen.
    Step(String),
}

impl DemoFailure {
    fn setup(doing: impl Into<String>, error: std::io::Error) -> Self {
        DemoFailure::Setup {
            doing: doing.into(),
            error,
        }
    }
}

impl From<&str> for DemoFailure {
    fn from(step: &str) -> Self {
        DemoFailure::Step(step.to_owned())
    }
}

impl std::fmt::Display for DemoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoFailure::Setup { doing, error } => write!(f, "{doing}: {error}"),
            DemoFailure::Step(what) => f.write_str(what),
        }
    }
}

/// Generous bound for any one step (the binary answers in milliseconds; beats are 1 s apart).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the demo; returns the process exit code.
pub fn run() -> ExitCode {
    let rt = match crate::runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::serve::print_fatal(&format!(
                "molecule-mcp demo: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    let result = rt.block_on(demo(started));
    match result {
        Ok(()) => {
            say(
                started,
                &format!(
                    "demo finished: every step behaved as expected ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ),
            );
            ExitCode::SUCCESS
        }
        Err(step) => {
            say(started, &format!("DEMO FAILED: {step}"));
            ExitCode::from(1)
        }
    }
}

#[allow(clippy::print_stdout)] // the transcript is the demo's output; it never runs as an MCP server
fn say(started: Instant, line: &str) {
    println!("[{:6.2}s] {line}", started.elapsed().as_secs_f64());
}

fn env<'a>(
    stub_url: &'a str,
    ws: &'a str,
    token: &'a str,
    state_dir: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PLATFORM_URL", stub_url),
        ("WORKSPACE_ID", ws),
        ("MOLECULE_WORKSPACE_TOKEN", token),
        ("CONFIGS_DIR", state_dir),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "1"),
        ("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "1"),
        ("MOLECULE_AGENT_NAME", "demo-agent"),
    ]
}

fn heartbeats(journal: &[JournalEntry]) -> Vec<&JournalEntry> {
    journal
        .iter()
        .filter(|e| e.path == "/registry/heartbeat" && e.status.is_some())
        .collect()
}

fn text_of(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn call(p: &mut McpProcess, id: i64, tool: &str, args: Value) -> Result<Value, DemoFailure> {
    p.request(
        id,
        "tools/call",
        json!({"name": tool, "arguments": args}),
        STEP_TIMEOUT,
    )
    .await
    .ok_or_else(|| DemoFailure::Step(format!("no answer to tools/call {tool}")))
}

/// The child's heartbeat-escalation log lines, in order, as `LEVEL message` (the timestamp
/// and the trailing `workspace=` field dropped for readability).
fn escalation_lines(p: &McpProcess) -> Vec<String> {
    p.stderr()
        .lines()
        .filter(|l| l.contains("auth failure") || l.contains("REVOKED"))
        .map(|l| {
            let without_time = l.split_once(' ').map_or(l, |(_, rest)| rest).trim();
            let without_field = without_time
                .rsplit_once(" workspace=")
                .map_or(without_time, |(msg, _)| msg);
            without_field.to_owned()
        })
        .collect()
}

async fn demo(t0: Instant) -> Result<(), DemoFailure> {
    let exe = std::env::current_exe()
        .map_err(|error| DemoFailure::setup("cannot locate this executable", error))?;
    say(
        t0,
        "molecule-mcp demo — the real binary against a loopback platform stub (no network)",
    );
    let stub = PlatformStub::start()
        .await
        .map_err(|error| DemoFailure::setup("cannot start the platform stub", error))?;
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("demo-agent").poll());
    let url = stub.url();
    say(
        t0,
        &format!(
            "platform stub listening on {url}; workspace {ws} created with a token (canvas → Tokens tab)"
        ),
    );
    // A private state directory for the child processes, removed afterwards.
    let state = TempDir::new("demo")
        .map_err(|error| DemoFailure::setup("cannot create a state directory", error))?;
    let state_dir = state.as_str().to_owned();

    // ---- 1. start like an MCP client does ---------------------------------------------
    say(
        t0,
        "starting `molecule-mcp` over pipes, MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS=1",
    );
    let mut p = McpProcess::spawn_bin(&exe, &env(&url, &ws, &token, &state_dir), &[])
        .map_err(|error| DemoFailure::setup(format!("cannot spawn {}", exe.display()), error))?;
    let init = p
        .initialize(STEP_TIMEOUT)
        .await
        .ok_or("no answer to initialize")?;
    say(
        t0,
        &format!(
            "MCP initialize answered: protocol {}, server {} {}",
            init["result"]["protocolVersion"].as_str().unwrap_or("?"),
            init["result"]["serverInfo"]["name"].as_str().unwrap_or("?"),
            init["result"]["serverInfo"]["version"]
                .as_str()
                .unwrap_or("?"),
        ),
    );
    let tools = p
        .request(1, "tools/list", json!({}), STEP_TIMEOUT)
        .await
        .ok_or("no answer to tools/list")?;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    if names.len() != 12 {
        return Err(DemoFailure::Step(format!(
            "expected 12 tools, got {}",
            names.len()
        )));
    }
    say(t0, &format!("tools/list: {}", names.join(", ")));

    // ---- 2. register + heartbeats ---------------------------------------------------------
    let ok = stub
        .wait_for(
            |j| {
                heartbeats(j)
                    .iter()
                    .filter(|e| e.status == Some(200))
                    .count()
                    >= 2
            },
            STEP_TIMEOUT,
        )
        .await;
    let journal = stub.journal();
    let register = journal
        .iter()
        .find(|e| e.path == "/registry/register")
        .ok_or("the platform never saw a register")?;
    say(
        t0,
        &format!(
            "platform ← POST /registry/register → {} (delivery_mode {}, agent card name {})",
            register
                .status
                .map_or("pending".to_owned(), |s| s.to_string()),
            register
                .json()
                .and_then(|b| b["delivery_mode"].as_str().map(str::to_owned))
                .unwrap_or_default(),
            register
                .json()
                .and_then(|b| b["agent_card"]["name"].as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
    );
    if !ok {
        return Err("heartbeats were not accepted".into());
    }
    for beat in heartbeats(&journal).iter().take(2) {
        let uptime = beat
            .json()
            .map(|b| b["uptime_seconds"].clone())
            .unwrap_or(Value::Null);
        say(
            t0,
            &format!(
                "platform ← POST /registry/heartbeat → {} (uptime_seconds {uptime})",
                beat.status.unwrap_or(0)
            ),
        );
    }

    // ---- 3. a message arrives, the agent replies ------------------------------------------
    let activity = stub.inject_message(
        &ws,
        InboundMessage::canvas("Hi agent, can you summarise today's build failures?"),
    );
    say(
        t0,
        "canvas user sends: \"Hi agent, can you summarise today's build failures?\"",
    );
    let push = p
        .wait_for(
            |m| m["method"] == "notifications/claude/channel",
            STEP_TIMEOUT,
        )
        .await
        .ok_or("no push notification for the inbound message")?;
    say(
        t0,
        &format!(
            "MCP push → notifications/claude/channel (kind {}):",
            push["params"]["meta"]["kind"].as_str().unwrap_or("?")
        ),
    );
    for line in push["params"]["content"].as_str().unwrap_or("").lines() {
        say(t0, &format!("    {line}"));
    }
    let waited = call(&mut p, 2, "wait_for_message", json!({"timeout_secs": 5})).await?;
    let message = &waited["result"]["structuredContent"];
    if message["activity_id"] != json!(activity) {
        return Err(DemoFailure::Step(format!(
            "wait_for_message returned {message}, expected activity {activity}"
        )));
    }
    say(
        t0,
        &format!(
            "agent → wait_for_message: {{kind: {}, text: {}}}",
            message["kind"], message["text"]
        ),
    );
    let reply = call(
        &mut p,
        3,
        "send_message_to_user",
        json!({"message": "Two failures today, both flaky network tests; details in #ci."}),
    )
    .await?;
    say(
        t0,
        &format!("agent → send_message_to_user: {}", text_of(&reply)),
    );
    let delivered = stub.notifications(&ws);
    let last = delivered
        .last()
        .ok_or("the platform received no user notification")?;
    say(
        t0,
        &format!("platform ← POST /workspaces/…/notify: {}", last["message"]),
    );
    let popped = call(&mut p, 4, "inbox_pop", json!({"activity_id": activity})).await?;
    if popped["result"]["structuredContent"]["removed"] != json!(true) {
        return Err(DemoFailure::Step(format!(
            "inbox_pop did not remove the message: {popped}"
        )));
    }
    say(
        t0,
        "agent → inbox_pop: acknowledged (saved to the durable inbox; never delivered again)",
    );

    // ---- 4. the token is revoked ----------------------------------------------------------
    let new_token = stub.rotate_token(&ws);
    say(
        t0,
        "platform revokes the token (rotation in the canvas): heartbeats now get HTTP 401",
    );
    let escalated = p.wait_for_stderr("REVOKED", STEP_TIMEOUT).await;
    for line in escalation_lines(&p) {
        say(t0, &format!("molecule-mcp stderr: {line}"));
    }
    if !escalated {
        return Err("no ERROR after three rejected heartbeats".into());
    }
    if p.stderr().contains(&token) || p.stderr().contains(&new_token) {
        return Err("a token appeared in the logs".into());
    }
    let ping = p.request(5, "ping", json!({}), STEP_TIMEOUT).await;
    say(
        t0,
        &format!(
            "meanwhile MCP still answers: ping → {}",
            if ping.is_some() { "ok" } else { "NO ANSWER" }
        ),
    );

    // ---- 5. the operator updates the token and restarts -----------------------------------
    p.close_stdin();
    let closed_at = Instant::now();
    let status = p
        .wait_exit(STEP_TIMEOUT)
        .await
        .ok_or("the server did not exit after stdin EOF")?;
    say(
        t0,
        &format!(
            "MCP client closes stdin → molecule-mcp exits with {status} after {} ms",
            closed_at.elapsed().as_millis()
        ),
    );
    if !status.success() {
        return Err(DemoFailure::Step(format!("exit status {status} after EOF")));
    }
    stub.clear_journal();
    say(
        t0,
        "operator pastes the new token into the MCP config; the client restarts molecule-mcp",
    );
    let mut p2 = McpProcess::spawn_bin(&exe, &env(&url, &ws, &new_token, &state_dir), &[])
        .map_err(|error| DemoFailure::setup("cannot respawn", error))?;
    p2.initialize(STEP_TIMEOUT)
        .await
        .ok_or("no answer to initialize after the restart")?;
    let recovered = stub
        .wait_for(
            |j| heartbeats(j).iter().any(|e| e.status == Some(200)),
            STEP_TIMEOUT,
        )
        .await;
    if !recovered {
        return Err("heartbeats were not accepted with the new token".into());
    }
    say(
        t0,
        "platform ← POST /registry/heartbeat → 200 with the new token: workspace online again",
    );
    let peek = call(&mut p2, 6, "inbox_peek", json!({})).await?;
    say(
        t0,
        &format!(
            "after the restart inbox_peek shows {} (the acknowledged message stays handled)",
            text_of(&peek).replace('\n', "")
        ),
    );
    p2.close_stdin();
    let status = p2
        .wait_exit(STEP_TIMEOUT)
        .await
        .ok_or("the restarted server did not exit")?;
    if !status.success() {
        return Err(DemoFailure::Step(format!(
            "exit status {status} after EOF (restart)"
        )));
    }
    let violations: Vec<String> = p
        .stdout_violations()
        .into_iter()
        .chain(p2.stdout_violations())
        .collect();
    if !violations.is_empty() {
        return Err(DemoFailure::Step(format!(
            "stdout carried non-JSON-RPC output: {violations:?}"
        )));
    }
    say(t0, "stdout carried only JSON-RPC; all logs went to stderr");
    stub.shutdown().await;
    drop(state);
    Ok(())
}
