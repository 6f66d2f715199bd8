//! Shared helpers for the end-to-end tests that spawn the real `molecule-mcp` binary against
//! the loopback [`PlatformStub`]: a private temp state directory, an operator-style
//! environment builder, spawn helpers (over pipes with [`McpProcess`], or with
//! `std::process::Command` for custom stdio), journal/stderr helpers, and a small JSON-Schema
//! validator for the platform's contract files in `tests/contracts/`.
//!
//! Use it from a test file with `mod common;`. Not every file uses every helper, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use molecule_mcp_tests::process::{McpProcess, molecule_mcp_bin};
use molecule_mcp_tests::stub::{JournalEntry, PlatformStub, WorkspaceSpec};
use serde_json::{Value, json};

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(15);

pub const REGISTER: &str = "/registry/register";
pub const HEARTBEAT: &str = "/registry/heartbeat";

// ----- temp state directory -------------------------------------------------------------

pub use molecule_mcp_tests::temp_dir::TempDir;

/// A fresh private state directory (panics when the temp dir is unusable: a test setup error).
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("e2e-{tag}")).expect("create temp dir")
}

// ----- environment ------------------------------------------------------------------------

/// The environment given to the child, exactly (plus `PATH` and `HOME` unless set: see
/// [`McpProcess::spawn`]). Later `set`s replace earlier values.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    /// An empty environment.
    pub fn empty() -> Env {
        Env::default()
    }

    /// What an operator's MCP config sets for one workspace, with the test cadences
    /// (heartbeat and inbox poll every 1 s) and `CONFIGS_DIR` pointing at `state_dir`.
    pub fn operator(platform_url: &str, workspace_id: &str, token: &str, state_dir: &str) -> Env {
        Env::empty()
            .set("PLATFORM_URL", platform_url)
            .set("WORKSPACE_ID", workspace_id)
            .set("MOLECULE_WORKSPACE_TOKEN", token)
            .set("CONFIGS_DIR", state_dir)
            .set("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "1")
            .set("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "1")
    }

    pub fn set(mut self, key: &str, value: &str) -> Env {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    pub fn unset(mut self, key: &str) -> Env {
        self.vars.retain(|(k, _)| k != key);
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// A `std::process::Command` for the binary with exactly this environment (plus `PATH`
    /// and `HOME` unless set), for tests that need custom stdio.
    pub fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(molecule_mcp_bin());
        cmd.args(args).env_clear();
        if self.get("PATH").is_none() {
            cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        if self.get("HOME").is_none() {
            cmd.env("HOME", std::env::temp_dir());
        }
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }
}

/// Spawns the real binary over pipes with exactly `env`.
pub fn spawn(env: &Env, args: &[&str]) -> McpProcess {
    let bin = molecule_mcp_bin();
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p molecule-mcp-cli --bin molecule-mcp` first",
        bin.display()
    );
    McpProcess::spawn_bin(&bin, &env.pairs(), args).expect("spawn molecule-mcp")
}

/// A stub with one poll-mode workspace and a private state directory.
pub struct Fixture {
    pub stub: PlatformStub,
    pub ws: String,
    pub token: String,
    pub dir: TempDir,
}

impl Fixture {
    pub async fn start(tag: &str) -> Fixture {
        let stub = PlatformStub::start().await.expect("stub starts");
        let (ws, token) = stub.create_workspace(WorkspaceSpec::named(tag).poll());
        Fixture {
            stub,
            ws,
            token,
            dir: temp_dir(tag),
        }
    }

    /// [`Env::operator`] for this fixture.
    pub fn env(&self) -> Env {
        Env::operator(&self.stub.url(), &self.ws, &self.token, self.dir.as_str())
    }

    pub fn spawn(&self, env: &Env) -> McpProcess {
        spawn(env, &[])
    }

    /// Spawns with [`Fixture::env`] and completes the MCP handshake.
    pub async fn spawn_initialized(&self) -> McpProcess {
        let mut p = self.spawn(&self.env());
        initialize(&mut p).await;
        p
    }
}

/// `initialize` + `notifications/initialized`; panics (with stderr) if unanswered.
pub async fn initialize(p: &mut McpProcess) -> Value {
    let resp = p.initialize(WAIT).await;
    resp.unwrap_or_else(|| panic!("no answer to initialize; stderr:\n{}", p.stderr()))
}

/// Sends `ping` and asserts the empty-result answer.
pub async fn ping(p: &mut McpProcess, id: i64) {
    let resp = p.request(id, "ping", json!({}), WAIT).await;
    let resp = resp.unwrap_or_else(|| panic!("no answer to ping {id}; stderr:\n{}", p.stderr()));
    assert_eq!(resp["jsonrpc"], "2.0", "{resp}");
    assert_eq!(resp["result"], json!({}), "{resp}");
}

/// `tools/call`; panics if unanswered.
pub async fn call_tool(p: &mut McpProcess, id: i64, name: &str, args: Value) -> Value {
    let resp = p
        .request(
            id,
            "tools/call",
            json!({"name": name, "arguments": args}),
            WAIT,
        )
        .await;
    resp.unwrap_or_else(|| panic!("no answer to tools/call {name}; stderr:\n{}", p.stderr()))
}

/// stdout carried JSON-RPC 2.0 objects only (checks unclaimed messages too).
pub fn assert_stdout_clean(p: &mut McpProcess) {
    let violations = p.stdout_violations();
    assert!(violations.is_empty(), "non-JSON on stdout: {violations:?}");
    for m in p.unclaimed() {
        assert_eq!(
            m["jsonrpc"], "2.0",
            "stdout message is not JSON-RPC 2.0: {m}"
        );
    }
}

/// `text` never contains any of `secrets`.
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!text.contains(s), "a token leaked into the output:\n{text}");
    }
}

// ----- journal ----------------------------------------------------------------------------

/// Entries for `path` (any method), oldest first.
pub fn entries<'a>(journal: &'a [JournalEntry], path: &str) -> Vec<&'a JournalEntry> {
    journal.iter().filter(|e| e.path == path).collect()
}

/// Entries for `path` answered with `status`.
pub fn answered(journal: &[JournalEntry], path: &str, status: u16) -> usize {
    journal
        .iter()
        .filter(|e| e.path == path && e.status == Some(status))
        .count()
}

/// Waits until at least `n` requests to `path` were answered with `status`.
pub async fn wait_answered(stub: &PlatformStub, path: &str, status: u16, n: usize) -> bool {
    stub.wait_for(|j| answered(j, path, status) >= n, WAIT)
        .await
}

/// Seconds between two journal entries.
pub fn secs_between(a: &JournalEntry, b: &JournalEntry) -> f64 {
    match b.at.duration_since(a.at) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

// ----- stderr -----------------------------------------------------------------------------

/// Log lines at `level` (`ERROR`, `WARN`, `INFO`, `DEBUG`) in the binary's stderr, whose
/// format is `<timestamp> <LEVEL> <message>`.
pub fn log_lines<'a>(stderr: &'a str, level: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(level))
        .collect()
}

// ----- processes with custom stdio --------------------------------------------------------

/// The outcome of a process run to completion.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Spawns `cmd` (stdout and stderr piped unless already configured by the caller) and waits
/// up to `timeout` for it to exit; kills it and panics on timeout. Blocking: call it from
/// `spawn_blocking` in async tests.
pub fn run_to_exit(mut cmd: std::process::Command, timeout: Duration) -> Exited {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    run_to_exit_with(cmd, timeout)
}

/// [`run_to_exit`] without touching the command's stdio settings (capture only what the
/// caller piped).
pub fn run_to_exit_with(mut cmd: std::process::Command, timeout: Duration) -> Exited {
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn molecule-mcp");
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("molecule-mcp did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let join = |h: Option<std::thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Exited {
        status,
        stdout: join(out),
        stderr: join(err),
        elapsed,
    }
}

// ----- JSON Schema ------------------------------------------------------------------------

/// `tests/contracts/`, the in-repo copy of the platform's schemas (override with
/// `MOLECULE_CONTRACTS_DIR`).
pub fn contracts_dir() -> PathBuf {
    match std::env::var_os("MOLECULE_CONTRACTS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"),
    }
}

/// Loads a contract schema by file name; panics with the path when missing.
pub fn load_contract(file: &str) -> Value {
    let path = contracts_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read contract {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A minimal JSON-Schema (draft 2020-12) validator for the keywords the contracts use:
/// `type`, `properties`, `required`, `additionalProperties` (bool or schema), `items`,
/// `enum`, `const`, `minLength` and local `$ref`s (`#/...`, resolved against the root).
/// Annotations (`description`, `title`, `$comment`, `$schema`, `$id`, `$defs`) are ignored.
/// Any other keyword is reported as an error, so a contract that starts using one cannot
/// silently pass.
pub mod schema {
    use serde_json::Value;

    /// Validates `instance` against the subschema of `root` at JSON pointer `pointer` (e.g.
    /// `/properties/request`). Returns every violation (empty = valid).
    pub fn validate_at(root: &Value, pointer: &str, instance: &Value) -> Vec<String> {
        let Some(schema) = root.pointer(pointer) else {
            return vec![format!("schema has nothing at {pointer}")];
        };
        let mut errors = Vec::new();
        check(root, schema, instance, "$", &mut errors, 0);
        errors
    }

    const ANNOTATIONS: [&str; 6] = [
        "description",
        "title",
        "$comment",
        "$schema",
        "$id",
        "$defs",
    ];

    fn check(
        root: &Value,
        schema: &Value,
        v: &Value,
        at: &str,
        errors: &mut Vec<String>,
        depth: u32,
    ) {
        if depth > 64 {
            errors.push(format!("{at}: $ref nesting too deep"));
            return;
        }
        let obj = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                errors.push(format!("{at}: not allowed (schema false)"));
                return;
            }
            Value::Object(o) => o,
            Value::Null | Value::Number(_) | Value::String(_) | Value::Array(_) => {
                errors.push(format!("{at}: invalid schema {schema}"));
                return;
            }
        };
        for (key, kv) in obj {
            match key.as_str() {
                "$ref" => match kv.as_str().and_then(|r| r.strip_prefix('#')) {
                    Some(pointer) => match root.pointer(pointer) {
                        Some(target) => check(root, target, v, at, errors, depth + 1),
                        None => errors.push(format!("{at}: unresolvable $ref {kv}")),
                    },
                    None => errors.push(format!("{at}: only local $refs are supported, got {kv}")),
                },
                "type" => {
                    let types: Vec<&str> = match kv {
                        Value::String(s) => vec![s.as_str()],
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {
                            Vec::new()
                        }
                    };
                    if !types.iter().any(|t| has_type(v, t)) {
                        errors.push(format!("{at}: expected type {kv}, got {v}"));
                    }
                }
                "properties" => {
                    if let (Some(props), Some(map)) = (kv.as_object(), v.as_object()) {
                        for (name, sub) in props {
                            if let Some(child) = map.get(name) {
                                check(root, sub, child, &format!("{at}.{name}"), errors, depth);
                            }
                        }
                    }
                }
                "required" => {
                    if let Some(map) = v.as_object() {
                        for name in kv
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                        {
                            if !map.contains_key(name) {
                                errors.push(format!("{at}: missing required property {name:?}"));
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(map) = v.as_object() {
                        let declared = obj.get("properties").and_then(Value::as_object);
                        for (name, child) in map {
                            if declared.is_some_and(|d| d.contains_key(name)) {
                                continue;
                            }
                            match kv {
                                Value::Bool(false) => {
                                    errors.push(format!("{at}: unexpected property {name:?}"))
                                }
                                other @ (Value::Bool(true)
                                | Value::Object(_)
                                | Value::Null
                                | Value::Number(_)
                                | Value::String(_)
                                | Value::Array(_)) => {
                                    check(
                                        root,
                                        other,
                                        child,
                                        &format!("{at}.{name}"),
                                        errors,
                                        depth,
                                    );
                                }
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(items) = v.as_array() {
                        for (i, item) in items.iter().enumerate() {
                            check(root, kv, item, &format!("{at}[{i}]"), errors, depth);
                        }
                    }
                }
                "enum" => {
                    if !kv.as_array().is_some_and(|a| a.contains(v)) {
                        errors.push(format!("{at}: {v} is not one of {kv}"));
                    }
                }
                "const" => {
                    if kv != v {
                        errors.push(format!("{at}: {v} is not the constant {kv}"));
                    }
                }
                "minLength" => {
                    if let (Some(min), Some(s)) = (kv.as_u64(), v.as_str())
                        && (s.chars().count() as u64) < min
                    {
                        errors.push(format!("{at}: {v} is shorter than {min}"));
                    }
                }
                other if ANNOTATIONS.contains(&other) => {}
                other => errors.push(format!("{at}: unsupported schema keyword {other:?}")),
            }
        }
    }

    fn has_type(v: &Value, t: &str) -> bool {
        match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        }
    }
}
