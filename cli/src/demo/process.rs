//! Spawning the real `molecule-mcp` binary the way an MCP client does (pipes on stdin and
//! stdout, a clean environment) and talking newline-delimited JSON-RPC to it.
//!
//! Every stdout line is parsed; anything that is not a JSON object is recorded as a
//! violation, because stdout belongs to MCP alone. stderr is captured in full.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// A running `molecule-mcp` process.
pub struct McpProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<Value>,
    /// Messages received while waiting for a specific response (notifications, other ids).
    backlog: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// The stdout/stderr reader tasks; [`McpProcess::wait_exit`] lets them reach EOF so
    /// everything the process wrote before exiting is visible afterwards.
    readers: Vec<tokio::task::JoinHandle<()>>,
}

impl McpProcess {
    /// Spawns the binary at `bin` with exactly `env` (plus `PATH` and `HOME` unless given)
    /// and `args`.
    pub fn spawn_bin(
        bin: &std::path::Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> std::io::Result<McpProcess> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !env.iter().any(|(k, _)| *k == "PATH") {
            cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        if !env.iter().any(|(k, _)| *k == "HOME") {
            cmd.env("HOME", std::env::temp_dir());
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::unbounded_channel();
        let violations = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let violations = violations.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(v @ Value::Object(_)) => {
                            let _ = tx.send(v);
                        }
                        Ok(_) | Err(_) => lock(&violations).push(line),
                    }
                }
            }));
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let stderr = stderr.clone();
            readers.push(tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    lock(&stderr).push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Ok(McpProcess {
            child,
            stdin,
            stdout: rx,
            backlog: Vec::new(),
            stderr,
            violations,
            readers,
        })
    }

    /// Writes one raw line (a `\n` is appended).
    pub async fn send_raw(&mut self, line: &[u8]) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        stdin.write_all(line).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await
    }

    /// Writes one JSON message.
    pub async fn send(&mut self, message: &Value) -> std::io::Result<()> {
        self.send_raw(message.to_string().as_bytes()).await
    }

    /// Sends a request and waits for the response with the same id.
    pub async fn request(
        &mut self,
        id: i64,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Option<Value> {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(&msg).await.ok()?;
        self.wait_for(|m| m.get("id") == Some(&json!(id)), timeout)
            .await
    }

    /// `initialize` (legacy handshake) + `notifications/initialized`.
    pub async fn initialize(&mut self, timeout: Duration) -> Option<Value> {
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}});
        let resp = self.request(0, "initialize", params, timeout).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .ok()?;
        Some(resp)
    }

    /// Waits for the first message matching `pred` (earlier non-matching messages are kept).
    pub async fn wait_for(
        &mut self,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        if let Some(pos) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(pos));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stdout.recv())
                .await
                .ok()??;
            if pred(&msg) {
                return Some(msg);
            }
            self.backlog.push(msg);
        }
    }

    /// Messages received so far that no `wait_for` consumed.
    pub fn unclaimed(&mut self) -> Vec<Value> {
        while let Ok(m) = self.stdout.try_recv() {
            self.backlog.push(m);
        }
        self.backlog.clone()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Waits until stderr contains `needle`.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stderr().contains(needle)
    }

    /// stdout lines that were not JSON objects (must stay empty).
    pub fn stdout_violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }

    /// Closes stdin (EOF for the server).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit, then (within the same `timeout`) for its stdout and
    /// stderr to be read to EOF, so [`McpProcess::stderr`] and
    /// [`McpProcess::stdout_violations`] include everything it wrote before exiting.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .ok()?
            .ok()?;
        for reader in std::mem::take(&mut self.readers) {
            let _ = tokio::time::timeout_at(deadline, reader).await;
        }
        Some(status)
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
