//! Helpers for the `e2e_*.rs` tests: the real `molecule-mcp` binary (spawned
//! over pipes by [`McpProcess`]) against the loopback [`PlatformStub`].
//!
//! * [`TempDir`] — a private state directory (`CONFIGS_DIR`), removed on drop;
//! * [`Rig`] — stub + one seeded poll-mode workspace + a running, initialised process, with
//!   [`Rig::call`] for `tools/call` and [`Rig::finish`] for a clean exit that also checks
//!   stdout hygiene and that no token reached stderr;
//! * [`Reply`] — a `tools/call` response with accessors for `isError`, the text block and
//!   `structuredContent`;
//! * journal helpers ([`hits`], [`answered`]).
//!
//! Included with `mod e2e_support;`; not every file uses every helper.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use molecule_mcp_tests::process::{McpProcess, molecule_mcp_bin};
use molecule_mcp_tests::stub::{
    JournalEntry, PlatformStub, Script, WorkspaceSpec, WorkspaceStatus,
};
use serde_json::{Value, json};

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(15);

// ----- temp dir -----------------------------------------------------------------------------

pub use molecule_mcp_tests::temp_dir::TempDir;

/// A fresh private state directory (panics when the temp dir is unusable: a test setup error).
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("e2e-{tag}")).expect("create temp dir")
}

// ----- tools/call replies -------------------------------------------------------------------

/// One `tools/call` JSON-RPC response.
#[derive(Debug, Clone)]
pub struct Reply(pub Value);

impl Reply {
    /// `result.isError == true`.
    pub fn is_error(&self) -> bool {
        self.0["result"]["isError"] == json!(true)
    }

    /// The first text block (tool output or error text).
    pub fn text(&self) -> String {
        self.0["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// `result.structuredContent` (Null when absent).
    pub fn structured(&self) -> &Value {
        &self.0["result"]["structuredContent"]
    }

    /// The JSON-RPC error code, if the call was rejected as a protocol error.
    pub fn rpc_error_code(&self) -> Option<i64> {
        self.0["error"]["code"].as_i64()
    }

    /// The text block parsed as JSON (tools that return arrays send them as text).
    pub fn text_json(&self) -> Value {
        serde_json::from_str(&self.text()).unwrap_or(Value::Null)
    }

    /// Asserts success (a result without `isError`) and returns self.
    #[track_caller]
    pub fn ok(self, what: &str) -> Reply {
        assert!(
            self.0.get("result").is_some() && !self.is_error(),
            "{what}: expected success, got {}",
            self.0
        );
        self
    }

    /// Asserts an `isError: true` result whose text contains every needle.
    #[track_caller]
    pub fn err(self, what: &str, needles: &[&str]) -> Reply {
        assert!(self.is_error(), "{what}: expected isError, got {}", self.0);
        let text = self.text();
        assert!(!text.trim().is_empty(), "{what}: error text is empty");
        for n in needles {
            assert!(text.contains(n), "{what}: error text lacks {n:?}: {text}");
        }
        self
    }
}

// ----- the rig --------------------------------------------------------------------------------

/// The environment an operator would give the binary for one workspace.
pub fn base_env(url: &str, ws: &str, token: &str, dir: &str) -> Vec<(String, String)> {
    [
        ("PLATFORM_URL", url),
        ("WORKSPACE_ID", ws),
        ("MOLECULE_WORKSPACE_TOKEN", token),
        ("CONFIGS_DIR", dir),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "1"),
        ("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "1"),
        ("MOLECULE_AGENT_NAME", "e2e-agent"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Replaces or adds `key`.
pub fn set_env(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

/// Spawns the binary with `env` and runs the MCP handshake.
pub async fn spawn_initialized(env: &[(String, String)]) -> McpProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut p = McpProcess::spawn(&pairs, &[]).unwrap_or_else(|e| {
        panic!(
            "cannot spawn {} (run `cargo build -p molecule-mcp-cli --bin molecule-mcp` first): {e}",
            molecule_mcp_bin().display()
        )
    });
    let init = p.initialize(WAIT).await;
    assert!(
        init.as_ref().is_some_and(|r| r.get("result").is_some()),
        "initialize failed: {init:?}; stderr: {}",
        p.stderr()
    );
    p
}

/// Request ids unique within a test binary.
pub fn next_id() -> i64 {
    static ID: AtomicU64 = AtomicU64::new(1000);
    i64::try_from(ID.fetch_add(1, Ordering::Relaxed)).unwrap_or(i64::MAX)
}

/// `tools/call` on any process.
pub async fn call_on(p: &mut McpProcess, tool: &str, args: Value) -> Reply {
    let id = next_id();
    let r = p
        .request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": args}),
            Duration::from_secs(40),
        )
        .await;
    match r {
        Some(v) => Reply(v),
        None => panic!("no answer to tools/call {tool}; stderr: {}", p.stderr()),
    }
}

/// Sends `tools/call` without waiting; returns the request id (collect with [`wait_reply`]).
pub async fn send_call(p: &mut McpProcess, tool: &str, args: Value) -> i64 {
    let id = next_id();
    p.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
        .await
        .expect("write to molecule-mcp stdin");
    id
}

/// Waits for the response to request `id`.
pub async fn wait_reply(p: &mut McpProcess, id: i64, timeout: Duration) -> Reply {
    match p
        .wait_for(|m| m.get("id") == Some(&json!(id)), timeout)
        .await
    {
        Some(v) => Reply(v),
        None => panic!("no answer to request {id}; stderr: {}", p.stderr()),
    }
}

/// One seeded workspace (poll mode, online) and a running binary acting as it.
pub struct Rig {
    pub stub: PlatformStub,
    pub ws: String,
    pub token: String,
    pub dir: TempDir,
    pub env: Vec<(String, String)>,
    pub p: McpProcess,
}

impl Rig {
    /// New stub, a workspace named `name`, the binary started with `extra` env on top of the
    /// operator environment; returns once the platform answered the register with 200.
    pub async fn start(name: &str, extra: &[(&str, &str)]) -> Rig {
        let stub = PlatformStub::start().await.expect("start stub");
        Rig::start_on(stub, name, extra).await
    }

    pub async fn start_on(stub: PlatformStub, name: &str, extra: &[(&str, &str)]) -> Rig {
        let (ws, token) = stub.create_workspace(WorkspaceSpec::named(name).poll());
        let dir = temp_dir(name);
        let mut env = base_env(&stub.url(), &ws, &token, dir.as_str());
        for (k, v) in extra {
            set_env(&mut env, k, v);
        }
        let p = spawn_initialized(&env).await;
        let rig = Rig {
            stub,
            ws,
            token,
            dir,
            env,
            p,
        };
        rig.wait_registered().await;
        rig
    }

    pub async fn wait_registered(&self) {
        let ok = self
            .stub
            .wait_for(|j| answered(j, "POST", "/registry/register", 200) > 0, WAIT)
            .await;
        assert!(ok, "no successful register; stderr: {}", self.p.stderr());
    }

    /// Seeds an online root peer (siblings of the agent in M1 terms).
    pub fn peer(&self, spec: WorkspaceSpec) -> String {
        self.stub
            .create_workspace(spec.status(WorkspaceStatus::Online))
            .0
    }

    pub async fn call(&mut self, tool: &str, args: Value) -> Reply {
        call_on(&mut self.p, tool, args).await
    }

    pub fn script(&self, s: Script) {
        self.stub.script(s);
    }

    /// Closes stdin, expects exit 0 promptly, no stdout violations, no token in stderr.
    pub async fn finish(mut self) {
        self.p.close_stdin();
        let status = self.p.wait_exit(WAIT).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "exit after EOF: {status:?}; stderr: {}",
            self.p.stderr()
        );
        assert_clean(&self.p, &[&self.token]);
    }
}

/// No non-JSON on stdout; none of `secrets` in stderr.
pub fn assert_clean(p: &McpProcess, secrets: &[&str]) {
    let v = p.stdout_violations();
    assert!(v.is_empty(), "stdout carried non-JSON-RPC lines: {v:?}");
    let err = p.stderr();
    for s in secrets {
        assert!(
            !s.is_empty() && !err.contains(s),
            "a token leaked into stderr"
        );
    }
}

// ----- journal --------------------------------------------------------------------------------

/// Journal entries with this method and exact path.
pub fn hits(stub: &PlatformStub, method: &str, path: &str) -> Vec<JournalEntry> {
    stub.journal()
        .into_iter()
        .filter(|e| e.method == method && e.path == path)
        .collect()
}

/// How many requests with this method and path were answered with `status`.
pub fn answered(j: &[JournalEntry], method: &str, path: &str, status: u16) -> usize {
    j.iter()
        .filter(|e| e.method == method && e.path == path && e.status == Some(status))
        .count()
}

/// Any request whose path contains `needle`.
pub fn any_path_contains(stub: &PlatformStub, needle: &str) -> bool {
    stub.journal().iter().any(|e| e.path.contains(needle))
}

/// `Authorization: Bearer <token>` of an entry.
pub fn bearer(e: &JournalEntry) -> Option<String> {
    e.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// A UUID the stub has never seen.
pub fn unknown_uuid() -> String {
    "0badc0de-0000-4000-8000-00000000beef".to_owned()
}

// ----- inbox ------------------------------------------------------------------------------

/// Activity ids of `inbox_peek` (limit 200).
pub async fn peek_ids(p: &mut McpProcess) -> Vec<String> {
    let r = call_on(p, "inbox_peek", json!({"limit": 200}))
        .await
        .ok("peek");
    r.text_json()
        .as_array()
        .expect("peek returns an array")
        .iter()
        .map(|m| m["activity_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `inbox_peek` until it equals `want`.
pub async fn wait_peek(p: &mut McpProcess, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = peek_ids(p).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "peek {got:?}, want {want:?}; stderr: {}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- one-shot commands --------------------------------------------------------------------

/// Runs the binary with `args` and exactly `env`; returns (exit code, stdout, stderr).
pub async fn run_binary(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String, String) {
    let mut cmd = tokio::process::Command::new(molecule_mcp_bin());
    cmd.args(args)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("finished")
        .expect("ran");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
