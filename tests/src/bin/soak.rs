//! `soak`: a long-running fault soak of the real `molecule-mcp` binary against the loopback
//! platform stub. Not part of CI; run it with `bash scripts/soak.sh --minutes 30` (or
//! `cargo run --release -p molecule-mcp-tests --bin soak -- --minutes 30` after
//! `cargo build --release -p molecule-mcp-cli --bin molecule-mcp`; `--minutes 1` for a quick
//! try).
//!
//! The binary runs with a 1 s heartbeat and a 1 s inbox poll while a seeded RNG (seed
//! printed; `--seed N` replays a schedule) scripts faults on the stub — 5xx storms, dropped
//! connections, short and past-the-deadline delays, 429s with `Retry-After`, 410 cursor
//! resets (scripted, and real prunes of already-handled rows) — and now and then SIGKILLs the
//! binary (sometimes right after an `inbox_pop` was confirmed) and restarts it with the same
//! `CONFIGS_DIR`. Each scripted fault is armed for a few seconds only ([`window`]) and a path
//! gets a new one only after its previous one fired or expired, so faults stay random in time
//! and never pile up into a permanent outage while the inbox backs off. Meanwhile
//! messages are injected at random and the soak acts as the agent:
//! `wait_for_message` → `inbox_pop`. No kill happens in the last third of the run, so the
//! final process lives long enough for its memory growth to mean something. After the run,
//! faults stop and the agent drains the inbox (up to 90 s).
//!
//! `--hostile` mixes in the hostile inputs of the hardening tests: platform error bodies that
//! echo the request's Authorization header, a 20 MiB activity page, a 30 MiB error page on a
//! heartbeat, and 1 MiB `commit_memory` calls whose content carries the token. It then also
//! reports (and fails on) the token in any stdout frame, the worst gap between two heartbeats
//! of one process (bound: 5 s, i.e. the 1 s interval plus the longest scripted Retry-After
//! and slack), and the peak RSS (`VmHWM`, bound: 256 MiB).
//!
//! Report: messages injected / delivered / lost (must be 0), deliveries of a message after
//! its pop was confirmed (must be 0), re-offers before a pop (allowed: at-least-once after a
//! crash), injection → first delivery latency, RSS at start and end and growth of the final
//! process, heartbeat success ratio, poll gaps, faults by kind. Exit 1 if anything was lost or duplicated after a pop, a process panicked
//! or logged the token, or a process died without being killed; exit 2 on bad arguments or a
//! missing binary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use molecule_mcp_tests::measure::{percentile, proc_status};
use molecule_mcp_tests::process::{McpProcess, molecule_mcp_bin};
use molecule_mcp_tests::stub::{
    Action, InboundMessage, JournalEntry, PlatformStub, Script, WorkspaceSpec,
};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::json;

const HEARTBEAT: &str = "/registry/heartbeat";
const ACTIVITY: &str = "/workspaces/:id/activity";
const REGISTER: &str = "/registry/register";
/// How long a fault of `n` requests stays armed: about `n` requests' worth of the 1 s cadence
/// plus slack. Faults are random in time, like a real platform's; a fault that waited for the
/// next request however late would turn the inbox's back-off (up to 60 s between polls) into
/// a feedback loop in which every poll fails.
fn window(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) + 2)
}

/// Bound for one MCP round trip that does not wait on purpose.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent's `wait_for_message` blocks.
const WAIT_SECS: f64 = 1.0;
/// After the run: how long the agent may take to drain what is left (inbox backoff ≤ 60 s).
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

#[allow(clippy::print_stdout)] // the report is this program's output
fn say(line: &str) {
    println!("{line}");
}

#[allow(clippy::print_stderr)] // progress goes to stderr so the report stays clean
fn progress(line: &str) {
    eprintln!("{line}");
}

struct Options {
    minutes: f64,
    seed: u64,
    bin: PathBuf,
    hostile: bool,
}

/// Worst heartbeat gap allowed in `--hostile` mode (see the module docs).
const HOSTILE_MAX_BEAT_GAP: Duration = Duration::from_secs(5);
/// Peak RSS allowed in `--hostile` mode, in kB (256 MiB).
const HOSTILE_MAX_HWM_KB: u64 = 256 * 1024;

fn usage() -> &'static str {
    "usage: soak [--minutes N (default 30)] [--seed N (default: from the clock)] [--bin PATH (default: molecule-mcp next to this executable)] [--hostile]"
}

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        minutes: 30.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        bin: molecule_mcp_bin(),
        hostile: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--minutes" => {
                opts.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?;
                if !(opts.minutes > 0.0 && opts.minutes <= 24.0 * 60.0) {
                    return Err("--minutes must be in (0, 1440]".into());
                }
            }
            "--seed" => {
                opts.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--bin" => opts.bin = PathBuf::from(value("--bin")?),
            "--hostile" => opts.hostile = true,
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(opts)
}

/// xorshift64* (seeded, reproducible schedule).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Everything the report needs.
#[derive(Default)]
struct Tally {
    injected: Vec<(String, String)>,
    /// activity id → injected text.
    texts: HashMap<String, String>,
    delivered: HashSet<String>,
    /// activity id → when it was injected (removed at its first delivery).
    injected_at: HashMap<String, Instant>,
    /// Injection → first delivery, per message.
    latencies: Vec<Duration>,
    deliveries: u64,
    /// Delivered again before its pop was confirmed (allowed after a crash).
    reoffers_before_pop: u64,
    /// Delivered again after its pop was confirmed (a bug).
    dup_after_pop: Vec<String>,
    popped: HashSet<String>,
    /// A delivery whose text did not match what was injected under that id (a bug).
    wrong_text: Vec<String>,
    faults: BTreeMap<&'static str, u64>,
    kills: u64,
    kills_after_pop: u64,
    kills_before_pop: u64,
    unexpected_exits: Vec<String>,
    panics: u64,
    token_leaks: u64,
    heartbeats: u64,
    heartbeats_ok: u64,
    polls: u64,
    polls_ok: u64,
    /// Arrival of the latest inbox poll, for the longest gap between two polls.
    last_poll: Option<SystemTime>,
    max_poll_gap: Duration,
    /// Consecutive failed polls now, and the longest such run.
    failed_poll_run: u32,
    max_failed_poll_run: u32,
    failed_calls: u64,
    /// The token in an MCP answer the agent received (a leak).
    stdout_leaks: u64,
    /// Arrival of the current process's latest heartbeat (reset at every kill).
    last_beat: Option<SystemTime>,
    max_beat_gap: Duration,
    /// Highest `VmHWM` of any process, kB.
    peak_hwm: u64,
    hostile: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Folds the journal into the counters (the journal is cleared afterwards).
    fn absorb(&mut self, journal: &[JournalEntry]) {
        for e in journal {
            if e.method == "POST" && e.path == HEARTBEAT {
                if let Some(gap) = self
                    .last_beat
                    .and_then(|last| e.at.duration_since(last).ok())
                {
                    self.max_beat_gap = self.max_beat_gap.max(gap);
                }
                self.last_beat = Some(e.at);
                self.heartbeats += 1;
                self.heartbeats_ok += u64::from(e.status == Some(200));
            } else if e.method == "GET" && e.path.ends_with("/activity") {
                self.polls += 1;
                let ok = e.status == Some(200);
                self.polls_ok += u64::from(ok);
                if let Some(gap) = self
                    .last_poll
                    .and_then(|last| e.at.duration_since(last).ok())
                {
                    self.max_poll_gap = self.max_poll_gap.max(gap);
                }
                self.last_poll = Some(e.at);
                self.failed_poll_run = if ok { 0 } else { self.failed_poll_run + 1 };
                self.max_failed_poll_run = self.max_failed_poll_run.max(self.failed_poll_run);
            }
        }
    }

    fn lost(&self) -> Vec<&str> {
        self.injected
            .iter()
            .filter(|(id, _)| !self.delivered.contains(id))
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

/// One running binary.
struct Proc {
    p: McpProcess,
    pid: u32,
    started: Instant,
    rss_first: Option<(Duration, u64)>,
    rss_last: Option<(Duration, u64)>,
    next_id: i64,
}

struct Soak {
    rng: Rng,
    stub: PlatformStub,
    ws: String,
    peer: String,
    token: String,
    bin: PathBuf,
    /// Kept across restarts, removed at the end.
    state: TempDir,
    proc: Option<Proc>,
    tally: Tally,
    counter: u64,
    /// RSS of the first process, sampled once it settled.
    first_rss: Option<u64>,
    /// `--hostile`.
    hostile: bool,
}

impl Soak {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PLATFORM_URL".into(), self.stub.url()),
            ("WORKSPACE_ID".into(), self.ws.clone()),
            ("MOLECULE_WORKSPACE_TOKEN".into(), self.token.clone()),
            ("CONFIGS_DIR".into(), self.state.as_str().to_owned()),
            ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS".into(), "1".into()),
            ("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS".into(), "1".into()),
            ("MOLECULE_MCP_VERBOSE".into(), "1".into()),
            ("MOLECULE_AGENT_NAME".into(), "soak-agent".into()),
        ]
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut p = McpProcess::spawn_bin(&self.bin, &pairs, &[])
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let pid = p.pid().ok_or("no pid")?;
        if p.initialize(CALL_TIMEOUT).await.is_none() {
            return Err(format!("no answer to initialize; stderr:\n{}", p.stderr()));
        }
        self.proc = Some(Proc {
            p,
            pid,
            started: Instant::now(),
            rss_first: None,
            rss_last: None,
            next_id: 10,
        });
        Ok(())
    }

    /// Checks a finished (or killed) process's stderr.
    fn audit_stderr(&mut self, stderr: &str) {
        if stderr.contains("panicked") {
            self.tally.panics += 1;
            progress(&format!("PANIC in stderr:\n{}", tail(stderr, 40)));
        }
        if stderr.contains(&self.token) {
            self.tally.token_leaks += 1;
            progress("TOKEN found in stderr");
        }
    }

    async fn kill_and_restart(&mut self, why: &'static str) -> Result<(), String> {
        // Beats of the old process are counted before it dies; the new one's gaps start fresh.
        self.fold_journal();
        self.tally.last_beat = None;
        if let Some(mut proc) = self.proc.take() {
            proc.p.signal(9);
            if proc.p.wait_exit(CALL_TIMEOUT).await.is_none() {
                return Err("the binary did not die on SIGKILL".into());
            }
            self.audit_stderr(&proc.p.stderr());
        }
        self.tally.kills += 1;
        self.tally.fault(why);
        // Sometimes stay down a little (messages keep arriving in the feed meanwhile).
        let down = self.rng.between(0.0, 3.0);
        self.inject_some().await;
        tokio::time::sleep(Duration::from_secs_f64(down)).await;
        self.spawn().await
    }

    async fn ensure_alive(&mut self) -> Result<(), String> {
        let Some(proc) = self.proc.as_mut() else {
            return self.spawn().await;
        };
        if let Some(status) = proc.p.wait_exit(Duration::ZERO).await {
            let stderr = proc.p.stderr();
            self.tally.unexpected_exits.push(format!(
                "{status} after {:.1}s: {}",
                proc.started.elapsed().as_secs_f64(),
                tail(&stderr, 20)
            ));
            self.audit_stderr(&stderr);
            self.proc = None;
            return self.spawn().await;
        }
        Ok(())
    }

    fn inject(&mut self) {
        self.counter += 1;
        let text = format!("soak message {} (seeded)", self.counter);
        let msg = if self.rng.below(5) == 0 {
            InboundMessage::from_peer(&self.peer, &text)
        } else {
            InboundMessage::canvas(&text)
        };
        let id = self.stub.inject_message(&self.ws, msg);
        self.tally.texts.insert(id.clone(), text.clone());
        self.tally.injected_at.insert(id.clone(), Instant::now());
        self.tally.injected.push((id, text));
    }

    async fn inject_some(&mut self) {
        for _ in 0..self.rng.below(3) {
            self.inject();
        }
    }

    /// One random fault (or none). `kills` allows SIGKILL restarts.
    async fn fault(&mut self, kills: bool) -> Result<(), String> {
        if self.hostile && self.rng.below(3) == 0 {
            return self.hostile_input().await;
        }
        let r = self.rng.unit();
        // Registers only happen at a restart; without kills a register fault would never fire.
        let path = if kills {
            *self.rng.pick(&[HEARTBEAT, ACTIVITY, REGISTER])
        } else {
            *self.rng.pick(&[HEARTBEAT, ACTIVITY])
        };
        let method = if path == ACTIVITY { "GET" } else { "POST" };
        let n = 1 + self.rng.below(4) as u32;
        let concrete = path.replace(":id", &self.ws);
        if r < 0.53 && self.stub.has_live_script(method, &concrete) {
            // One armed fault per path at a time: stacked ones would add up to one long outage.
            self.tally
                .fault("skipped (previous fault on the path still pending)");
            return Ok(());
        }
        if r < 0.18 {
            let status = *self.rng.pick(&[500u16, 502, 503, 504]);
            let body = if status == 502 {
                Action::body(
                    status,
                    "text/html",
                    Bytes::from("<html><body><h1>502 Bad Gateway</h1>nginx</body></html>"),
                )
            } else {
                Action::json(status, &json!({"error": "soak: internal error"}))
            };
            self.stub
                .script(Script::new(method, path, body).times(n).within(window(n)));
            self.tally.fault("5xx");
        } else if r < 0.28 {
            self.stub.script(
                Script::new(method, path, Action::Drop)
                    .times(n)
                    .within(window(n)),
            );
            self.tally.fault("drop");
        } else if r < 0.31 {
            // A short full outage: every request dropped.
            self.stub.script(
                Script::new("*", "/*", Action::Drop)
                    .times(2 + n * 2)
                    .within(window(n)),
            );
            self.tally.fault("outage");
        } else if r < 0.40 {
            let secs = if self.rng.below(4) == 0 {
                12.0
            } else {
                self.rng.between(0.2, 3.0)
            };
            self.stub.script(
                Script::new(method, path, Action::Delay(Duration::from_secs_f64(secs)))
                    .times(1)
                    .within(window(1)),
            );
            self.tally.fault(if secs > 10.0 {
                "delay past deadline"
            } else {
                "delay"
            });
        } else if r < 0.48 {
            let retry = 1 + self.rng.below(3);
            let limited = Action::Respond {
                status: 429,
                headers: vec![
                    ("retry-after".into(), retry.to_string()),
                    ("content-type".into(), "application/json".into()),
                ],
                body: Bytes::from_static(br#"{"error":"rate limit exceeded"}"#),
            };
            self.stub.script(
                Script::new(method, path, limited)
                    .times(1)
                    .within(window(1)),
            );
            self.tally.fault("429");
        } else if r < 0.53 {
            let gone = Action::json(
                410,
                &json!({"error": "since_id cursor not found (row may have been pruned or belongs to a different workspace); omit since_id to reset"}),
            );
            self.stub.script(
                Script::new("GET", ACTIVITY, gone)
                    .times(1)
                    .within(window(1)),
            );
            self.tally.fault("410 scripted");
        } else if r < 0.58 {
            // Prune the newest row if it is already handled: the cursor (most likely that
            // row) becomes unknown and the next poll gets a real 410.
            let newest = self
                .stub
                .activity(&self.ws)
                .last()
                .and_then(|r| r["id"].as_str().map(str::to_owned));
            if let Some(id) = newest.filter(|id| self.tally.popped.contains(id)) {
                self.stub.prune_activity(&self.ws, &id);
                self.tally.fault("410 prune");
            }
        } else if r < 0.62 && kills {
            self.kill_and_restart("sigkill").await?;
        }
        Ok(())
    }

    /// One of the hardening tests' hostile inputs (`--hostile`).
    async fn hostile_input(&mut self) -> Result<(), String> {
        match self.rng.below(4) {
            0 => {
                let path = *self.rng.pick(&[HEARTBEAT, ACTIVITY]);
                let method = if path == ACTIVITY { "GET" } else { "POST" };
                let status = *self.rng.pick(&[404u16, 500, 502]);
                self.stub.script(
                    Script::new(method, path, Action::EchoRequest { status })
                        .times(2)
                        .within(window(2)),
                );
                *self
                    .tally
                    .hostile
                    .entry("token echoed in an error body")
                    .or_default() += 1;
            }
            1 => {
                let page = Bytes::from(vec![b' '; 20 * 1024 * 1024]);
                self.stub.script(
                    Script::new("GET", ACTIVITY, Action::body(200, "application/json", page))
                        .times(1)
                        .within(window(1)),
                );
                *self
                    .tally
                    .hostile
                    .entry("20 MiB activity page")
                    .or_default() += 1;
            }
            2 => {
                let page = Bytes::from(vec![b'x'; 30 * 1024 * 1024]);
                self.stub.script(
                    Script::new("POST", HEARTBEAT, Action::body(500, "text/html", page))
                        .times(1)
                        .within(window(1)),
                );
                *self
                    .tally
                    .hostile
                    .entry("30 MiB heartbeat error page")
                    .or_default() += 1;
            }
            _ => {
                self.ensure_alive().await?;
                let content = format!("{} {}", "y".repeat(1024 * 1024), self.token);
                let Some(proc) = self.proc.as_mut() else {
                    return Err("no process".into());
                };
                proc.next_id += 1;
                let id = proc.next_id;
                let resp = proc
                    .p
                    .request(
                        id,
                        "tools/call",
                        json!({"name": "commit_memory", "arguments": {"content": content}}),
                        CALL_TIMEOUT,
                    )
                    .await;
                self.audit_answer(resp.as_ref());
                *self
                    .tally
                    .hostile
                    .entry("1 MiB commit_memory with the token")
                    .or_default() += 1;
            }
        }
        Ok(())
    }

    /// Counts the token in an MCP answer.
    fn audit_answer(&mut self, resp: Option<&serde_json::Value>) {
        if let Some(resp) = resp
            && resp.to_string().contains(&self.token)
        {
            self.tally.stdout_leaks += 1;
            progress("TOKEN found in an MCP answer");
        }
    }

    /// One agent step: wait briefly for a message; if one comes, check and pop it (or, when
    /// `kills` allows and the dice say so, crash before popping: the message must be offered
    /// again). Returns whether a pop was confirmed.
    async fn agent_step(&mut self, kills: bool) -> Result<bool, String> {
        self.ensure_alive().await?;
        let Some(proc) = self.proc.as_mut() else {
            return Err("no process".into());
        };
        proc.next_id += 1;
        let id = proc.next_id;
        let resp = proc
            .p
            .request(
                id,
                "tools/call",
                json!({"name": "wait_for_message", "arguments": {"timeout_secs": WAIT_SECS}}),
                Duration::from_secs_f64(WAIT_SECS) + CALL_TIMEOUT,
            )
            .await;
        self.audit_answer(resp.as_ref());
        let Some(resp) = resp else {
            self.tally.failed_calls += 1;
            return Ok(false);
        };
        let msg = &resp["result"]["structuredContent"];
        let Some(activity) = msg["activity_id"].as_str().map(str::to_owned) else {
            if msg["timeout"] != json!(true) {
                self.tally.failed_calls += 1;
                progress(&format!(
                    "odd wait_for_message answer: {}",
                    tail(&resp.to_string(), 5)
                ));
            }
            return Ok(false);
        };
        self.tally.deliveries += 1;
        if self.tally.popped.contains(&activity) {
            progress(&format!("DUPLICATE after pop: {activity}"));
            self.tally.dup_after_pop.push(activity.clone());
        } else if !self.tally.delivered.insert(activity.clone()) {
            self.tally.reoffers_before_pop += 1;
        }
        if let Some(at) = self.tally.injected_at.remove(&activity) {
            self.tally.latencies.push(at.elapsed());
        }
        match self.tally.texts.get(&activity) {
            Some(text) if msg["text"].as_str() == Some(text.as_str()) => {}
            other => {
                progress(&format!(
                    "WRONG message {activity}: got {} want {other:?}",
                    msg["text"]
                ));
                self.tally.wrong_text.push(activity.clone());
            }
        }
        if kills && self.rng.below(12) == 0 {
            self.tally.kills_before_pop += 1;
            self.kill_and_restart("sigkill between delivery and pop")
                .await?;
            return Ok(false);
        }
        let Some(proc) = self.proc.as_mut() else {
            return Err("no process".into());
        };
        proc.next_id += 1;
        let id = proc.next_id;
        let popped = proc
            .p
            .request(
                id,
                "tools/call",
                json!({"name": "inbox_pop", "arguments": {"activity_id": activity}}),
                CALL_TIMEOUT,
            )
            .await;
        match popped {
            Some(r) if r["result"]["structuredContent"]["removed"] == json!(true) => {
                self.tally.popped.insert(activity);
                Ok(true)
            }
            Some(_) | None => {
                self.tally.failed_calls += 1;
                Ok(false)
            }
        }
    }

    fn sample_rss(&mut self) {
        let Some(proc) = self.proc.as_mut() else {
            return;
        };
        let age = proc.started.elapsed();
        if let Some(hwm) = proc_status(proc.pid, "VmHWM") {
            self.tally.peak_hwm = self.tally.peak_hwm.max(hwm);
        }
        if let Some(rss) = proc_status(proc.pid, "VmRSS") {
            // The first sample once start-up has settled (register, backlog read).
            if proc.rss_first.is_none() && age >= Duration::from_secs(5) {
                proc.rss_first = Some((age, rss));
                if self.first_rss.is_none() {
                    self.first_rss = Some(rss);
                }
            }
            proc.rss_last = Some((age, rss));
        }
    }

    fn fold_journal(&mut self) {
        let journal = self.stub.journal();
        self.stub.clear_journal();
        self.tally.absorb(&journal);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn run(opts: Options) -> Result<bool, String> {
    let started = Instant::now();
    let total = Duration::from_secs_f64(opts.minutes * 60.0);
    let kills_until = total.mul_f64(2.0 / 3.0);
    let stub = PlatformStub::start()
        .await
        .map_err(|e| format!("stub: {e}"))?;
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("soak-agent").poll());
    let (peer, _) = stub.create_workspace(WorkspaceSpec::named("soak-peer").poll());
    let state =
        TempDir::new(&format!("soak-{}", opts.seed)).map_err(|e| format!("state dir: {e}"))?;
    let mut soak = Soak {
        rng: Rng::new(opts.seed),
        stub,
        ws,
        peer,
        token,
        bin: opts.bin.clone(),
        state,
        proc: None,
        tally: Tally::default(),
        counter: 0,
        first_rss: None,
        hostile: opts.hostile,
    };
    progress(&format!(
        "soak: seed {} ({} min); binary {}; state dir {}",
        opts.seed,
        opts.minutes,
        opts.bin.display(),
        soak.state.as_str()
    ));
    soak.spawn().await?;
    let mut next_fault = Instant::now() + Duration::from_secs(3);
    let mut next_inject = Instant::now() + Duration::from_secs(1);
    let mut next_fold = Instant::now() + Duration::from_secs(30);
    let mut last_report = Instant::now();
    while started.elapsed() < total {
        let kills = started.elapsed() < kills_until;
        if Instant::now() >= next_inject {
            soak.inject_some().await;
            next_inject = Instant::now() + Duration::from_secs_f64(soak.rng.between(0.5, 3.0));
        }
        if Instant::now() >= next_fault {
            soak.fault(kills).await?;
            next_fault = Instant::now() + Duration::from_secs_f64(soak.rng.between(1.0, 5.0));
        }
        let popped = soak.agent_step(kills).await?;
        if popped && kills && soak.rng.below(6) == 0 {
            // Crash right after a confirmed pop: the pop must survive it.
            soak.tally.kills_after_pop += 1;
            soak.kill_and_restart("sigkill right after a pop").await?;
        }
        soak.sample_rss();
        if Instant::now() >= next_fold {
            soak.fold_journal();
            next_fold = Instant::now() + Duration::from_secs(30);
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let t = &soak.tally;
            progress(&format!(
                "[{:5.0}s] injected {} delivered {} popped {} kills {} dup-after-pop {} rss {:?} kB",
                started.elapsed().as_secs_f64(),
                t.injected.len(),
                t.delivered.len(),
                t.popped.len(),
                t.kills,
                t.dup_after_pop.len(),
                soak.proc.as_ref().and_then(|p| p.rss_last).map(|(_, r)| r)
            ));
        }
    }
    // Drain: no more faults or messages; the agent empties the inbox.
    soak.stub.clear_scripts();
    let drain_start = Instant::now();
    while drain_start.elapsed() < DRAIN_LIMIT && !soak.tally.lost().is_empty() {
        soak.agent_step(false).await?;
        soak.sample_rss();
    }
    let drain = drain_start.elapsed();
    soak.sample_rss();
    soak.fold_journal();
    // Clean exit on EOF.
    let mut clean_exit = false;
    let final_proc = soak.proc.take();
    let (rss_first, rss_last, age) = match &final_proc {
        Some(p) => (p.rss_first, p.rss_last, p.started.elapsed()),
        None => (None, None, Duration::ZERO),
    };
    if let Some(mut proc) = final_proc {
        proc.p.close_stdin();
        match proc.p.wait_exit(CALL_TIMEOUT).await {
            Some(status) if status.success() => clean_exit = true,
            other => progress(&format!(
                "final exit: {other:?}\n{}",
                tail(&proc.p.stderr(), 20)
            )),
        }
        let violations = proc.p.stdout_violations();
        if !violations.is_empty() {
            progress(&format!("stdout violations: {violations:?}"));
            clean_exit = false;
        }
        soak.audit_stderr(&proc.p.stderr());
    }

    let t = &soak.tally;
    let lost = t.lost();
    let ratio = |ok: u64, all: u64| {
        if all == 0 {
            0.0
        } else {
            ok as f64 / all as f64
        }
    };
    let faults: Vec<String> = t.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    say(&format!("# molecule-mcp soak report (seed {})", opts.seed));
    say(&format!(
        "duration: {:.1} min of faults + {:.1} s drain; binary {}",
        started.elapsed().saturating_sub(drain).as_secs_f64() / 60.0,
        drain.as_secs_f64(),
        opts.bin.display()
    ));
    say(&format!("messages injected: {}", t.injected.len()));
    say(&format!(
        "messages delivered: {} ({} deliveries in all)",
        t.delivered.len(),
        t.deliveries
    ));
    say(&format!(
        "messages lost: {}{}",
        lost.len(),
        if lost.is_empty() {
            String::new()
        } else {
            format!(" {:?}", &lost[..lost.len().min(10)])
        }
    ));
    say(&format!(
        "duplicated deliveries after a confirmed pop: {}{}",
        t.dup_after_pop.len(),
        if t.dup_after_pop.is_empty() {
            String::new()
        } else {
            format!(" {:?}", &t.dup_after_pop[..t.dup_after_pop.len().min(10)])
        }
    ));
    say(&format!(
        "re-offers before a pop (allowed, at-least-once after a crash): {}",
        t.reoffers_before_pop
    ));
    say(&format!(
        "deliveries with the wrong text: {}",
        t.wrong_text.len()
    ));
    say(&format!("pops confirmed: {}", t.popped.len()));
    let mut lat: Vec<f64> = t.latencies.iter().map(Duration::as_secs_f64).collect();
    lat.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let secs = percentile(&lat, q);
        if secs.is_nan() {
            "?".to_owned()
        } else {
            format!("{secs:.1} s")
        }
    };
    say(&format!(
        "injection → first delivery: p50 {}, p90 {}, p99 {}, max {} (faults, kills and inbox back-off included)",
        pick(0.5),
        pick(0.9),
        pick(0.99),
        pick(1.0)
    ));
    say(&format!(
        "restarts (SIGKILL, same CONFIGS_DIR): {} ({} right after a confirmed pop, {} between a delivery and its pop); unexpected exits: {}",
        t.kills,
        t.kills_after_pop,
        t.kills_before_pop,
        t.unexpected_exits.len()
    ));
    for e in &t.unexpected_exits {
        say(&format!("  unexpected exit: {e}"));
    }
    say(&format!("faults: {}", faults.join(", ")));
    say(&format!(
        "heartbeat success ratio: {:.3} ({} of {} attempts answered 200)",
        ratio(t.heartbeats_ok, t.heartbeats),
        t.heartbeats_ok,
        t.heartbeats
    ));
    say(&format!(
        "inbox poll success ratio: {:.3} ({} of {}); longest gap between polls {:.1} s; longest run of failed polls {}",
        ratio(t.polls_ok, t.polls),
        t.polls_ok,
        t.polls,
        t.max_poll_gap.as_secs_f64(),
        t.max_failed_poll_run
    ));
    say(&format!(
        "tool calls without a usable answer (mostly across kills): {}",
        t.failed_calls
    ));
    say(&format!(
        "RSS: first process {} kB after start-up; final process {} kB at {:.0}s → {} kB at {:.0}s (growth {} kB over its {:.0}s life)",
        soak.first_rss.map_or("?".into(), |r| r.to_string()),
        rss_first.map_or("?".into(), |(_, r)| r.to_string()),
        rss_first.map_or(0.0, |(a, _)| a.as_secs_f64()),
        rss_last.map_or("?".into(), |(_, r)| r.to_string()),
        rss_last.map_or(0.0, |(a, _)| a.as_secs_f64()),
        match (rss_first, rss_last) {
            (Some((_, a)), Some((_, b))) => (i128::from(b) - i128::from(a)).to_string(),
            _ => "?".into(),
        },
        age.as_secs_f64()
    ));
    say(&format!(
        "panics: {}; token in stderr: {}; clean exit 0 on EOF: {clean_exit}",
        t.panics, t.token_leaks
    ));
    let mut hostile_ok = true;
    if soak.hostile {
        let kinds: Vec<String> = t.hostile.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        say(&format!("hostile inputs: {}", kinds.join(", ")));
        say(&format!(
            "token in an MCP answer: {}; worst gap between two heartbeats of one process: {:.2} s (bound {} s); peak RSS (VmHWM) of any process: {} kB (bound {} kB)",
            t.stdout_leaks,
            t.max_beat_gap.as_secs_f64(),
            HOSTILE_MAX_BEAT_GAP.as_secs(),
            t.peak_hwm,
            HOSTILE_MAX_HWM_KB
        ));
        hostile_ok = t.stdout_leaks == 0
            && t.max_beat_gap <= HOSTILE_MAX_BEAT_GAP
            && t.peak_hwm <= HOSTILE_MAX_HWM_KB;
    }
    let ok = hostile_ok
        && lost.is_empty()
        && t.dup_after_pop.is_empty()
        && t.wrong_text.is_empty()
        && t.panics == 0
        && t.token_leaks == 0
        && t.unexpected_exits.is_empty()
        && clean_exit;
    say(if ok { "RESULT: PASS" } else { "RESULT: FAIL" });
    soak.stub.shutdown().await;
    Ok(ok)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            progress(&e);
            return ExitCode::from(2);
        }
    };
    if !opts.bin.is_file() {
        progress(&format!(
            "soak: {} is missing; build it first: cargo build --release -p molecule-mcp-cli --bin molecule-mcp (or use scripts/soak.sh)",
            opts.bin.display()
        ));
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            progress(&format!("soak: cannot start tokio: {e}"));
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            progress(&format!("soak aborted: {e}"));
            ExitCode::from(1)
        }
    }
}
