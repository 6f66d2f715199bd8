//! Fault injection against the real `molecule-mcp` binary: the loopback [`PlatformStub`]
//! scripts outages, 5xx storms, hung and slow responses, connections reset mid-body, 10 MB,
//! non-UTF-8 and HTML bodies, and 429s with `Retry-After`, on register, heartbeat, the
//! activity feed (inbox) and a tool call. Every scenario then checks the same contract:
//!
//! * the process keeps serving MCP throughout (`ping` answered, also *during* the fault);
//! * memory stays bounded: `VmRSS` from `/proc/<pid>/status` below [`RSS_LIMIT_KB`] after
//!   the storm;
//! * heartbeats resume at cadence once the fault ends (first accepted beat within about two
//!   cadences, then ~1 s apart, never a burst);
//! * the inbox delivers what arrived meanwhile (`wait_for_message` → `inbox_pop`);
//! * nothing panics (`panicked` never in stderr), no token reaches stderr, stdout carries
//!   only JSON-RPC, and stdin EOF still ends the process with exit 0.
//!
//! Cadences are compressed: `MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS=1` and
//! `MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS=1` (production defaults: 20 s and 5 s). Timing
//! assertions use the stub's journal timestamps with wide bounds (a loaded 2-core machine).
//! The whole file runs in well under two minutes (the tests run two at a time).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use molecule_mcp_tests::measure::proc_status;
use molecule_mcp_tests::process::{McpProcess, molecule_mcp_bin};
use molecule_mcp_tests::stub::{
    Action, InboundMessage, JournalEntry, PlatformStub, Script, WorkspaceSpec,
};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Generous bound for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(15);
/// Memory bound checked after every storm (the binary idles at a few MB; debug build).
const RSS_LIMIT_KB: u64 = 64 * 1024;
/// Heartbeat cadence used by every test (seconds).
const CADENCE: f64 = 1.0;
/// How soon after a fault ends the first accepted heartbeat must arrive: two cadences plus
/// two seconds of slack for a loaded machine.
const RESUME_WITHIN: Duration = Duration::from_secs(4);

const HEARTBEAT: &str = "/registry/heartbeat";
const REGISTER: &str = "/registry/register";
const ACTIVITY: &str = "/workspaces/:id/activity";
const WORKSPACE: &str = "/workspaces/:id";

// ----- plumbing ------------------------------------------------------------------------------

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn is_beat(e: &JournalEntry) -> bool {
    e.method == "POST" && e.path == HEARTBEAT
}

fn is_poll(e: &JournalEntry) -> bool {
    e.method == "GET" && e.path.starts_with("/workspaces/") && e.path.ends_with("/activity")
}

/// Heartbeats that arrived strictly after `since`, oldest first.
fn beats_since(j: &[JournalEntry], since: SystemTime) -> Vec<&JournalEntry> {
    j.iter().filter(|e| is_beat(e) && e.at > since).collect()
}

fn count(j: &[JournalEntry], pred: impl Fn(&JournalEntry) -> bool) -> usize {
    j.iter().filter(|e| pred(e)).count()
}

/// A body of `len` bytes that is not UTF-8 anywhere (every byte ≥ 0x80, no valid sequence
/// starts: continuation bytes and 0xFE/0xFF only).
fn non_utf8(len: usize) -> Bytes {
    let pattern = [0x80u8, 0xBF, 0xFE, 0xFF, 0x9C, 0xA0];
    Bytes::from(
        (0..len)
            .map(|i| pattern[i % pattern.len()])
            .collect::<Vec<u8>>(),
    )
}

/// A proxy's idea of a 502 page, padded to about `len` bytes.
fn html_502(len: usize) -> Bytes {
    let mut page = String::from(
        "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>",
    );
    while page.len() < len {
        page.push_str("<p>The upstream server returned an invalid response. nginx/1.25</p>\n");
    }
    page.push_str("</body></html>");
    Bytes::from(page)
}

/// A TCP forwarder in front of the stub, so a test can make the platform *refuse*
/// connections (listener closed) and come back on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Proxy {
            addr,
            upstream,
            accept: Mutex::new(None),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let conns = Arc::clone(&self.conns);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut conns = conns.lock().expect("conns");
                conns.retain(|c| !c.is_finished());
                conns.push(task.abort_handle());
            }
        });
        *self.accept.lock().expect("accept") = Some(task);
    }

    /// Closes the listener (new connections are refused) and cuts every open connection.
    async fn down(&self) {
        let task = self.accept.lock().expect("accept").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        for c in self.conns.lock().expect("conns").drain(..) {
            c.abort();
        }
        // The aborted accept task dropped the listener: nothing listens on the port now.
        assert!(
            TcpStream::connect(self.addr).await.is_err(),
            "the proxy port still accepts connections"
        );
    }

    /// Listens on the same port again.
    async fn up(&self) {
        let mut last = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => return self.serve(listener),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot re-bind the proxy on {}: {last:?}", self.addr);
    }
}

// ----- the rig -------------------------------------------------------------------------------

/// Stub + one poll-mode workspace + the running, initialised binary.
struct Rig {
    stub: PlatformStub,
    ws: String,
    token: String,
    p: McpProcess,
    pid: u32,
    next_id: i64,
    url: String,
    _dir: TempDir,
}

/// Spawns the binary the way an operator's MCP config would (1 s cadences, verbose so the
/// token check covers DEBUG lines too) and completes the MCP handshake.
async fn launch(platform_url: &str, ws: &str, token: &str, dir: &TempDir) -> McpProcess {
    let bin = molecule_mcp_bin();
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p molecule-mcp-cli --bin molecule-mcp` first",
        bin.display()
    );
    let env = [
        ("PLATFORM_URL", platform_url),
        ("WORKSPACE_ID", ws),
        ("MOLECULE_WORKSPACE_TOKEN", token),
        ("CONFIGS_DIR", dir.as_str()),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", "1"),
        ("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", "1"),
        ("MOLECULE_MCP_VERBOSE", "1"),
    ];
    let mut p = McpProcess::spawn_bin(&bin, &env, &[]).expect("spawn molecule-mcp");
    if p.initialize(WAIT).await.is_none() {
        panic!("no answer to initialize; stderr:\n{}", p.stderr());
    }
    p
}

impl Rig {
    /// Starts the binary against `stub` (through `platform_url`), with scripts already in
    /// place if the caller added any. Waits for the MCP handshake only.
    async fn spawn(
        stub: PlatformStub,
        ws: String,
        token: String,
        platform_url: &str,
        tag: &str,
    ) -> Rig {
        let dir = TempDir::new(&format!("fault-{tag}")).expect("create temp dir");
        let p = launch(platform_url, &ws, &token, &dir).await;
        let pid = p.pid().expect("pid");
        Rig {
            stub,
            ws,
            token,
            p,
            pid,
            next_id: 100,
            url: platform_url.to_owned(),
            _dir: dir,
        }
    }

    /// SIGKILLs the binary (no chance to save anything) and starts it again with the same
    /// `CONFIGS_DIR`. Returns the killed process's stderr.
    async fn kill_and_respawn(&mut self) -> String {
        self.p.signal(9);
        let status = self.p.wait_exit(WAIT).await.expect("dies on SIGKILL");
        assert_eq!(status.code(), None, "killed by a signal");
        let stderr = self.p.stderr();
        self.p = launch(&self.url, &self.ws, &self.token, &self._dir).await;
        self.pid = self.p.pid().expect("pid");
        stderr
    }

    /// A fresh stub and workspace; `script` runs before the binary starts.
    async fn start(tag: &str, script: impl FnOnce(&PlatformStub)) -> Rig {
        let stub = PlatformStub::start().await.expect("stub starts");
        let (ws, token) = stub.create_workspace(WorkspaceSpec::named(tag).poll());
        script(&stub);
        let url = stub.url();
        Rig::spawn(stub, ws, token, &url, tag).await
    }

    /// Starts and waits until the session and the inbox work (an accepted heartbeat and an
    /// answered poll), so later faults hit a running process.
    async fn start_healthy(tag: &str) -> Rig {
        let rig = Rig::start(tag, |_| {}).await;
        rig.wait_journal("an accepted heartbeat and an answered poll", |j| {
            j.iter().any(|e| is_beat(e) && e.status == Some(200))
                && j.iter().any(|e| is_poll(e) && e.status == Some(200))
        })
        .await;
        rig
    }

    async fn wait_journal(&self, what: &str, pred: impl Fn(&[JournalEntry]) -> bool) {
        self.wait_journal_for(what, WAIT, pred).await;
    }

    async fn wait_journal_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[JournalEntry]) -> bool,
    ) {
        if !self.stub.wait_for(pred, timeout).await {
            panic!(
                "timed out waiting for {what}; journal:\n{}\nstderr:\n{}",
                self.journal_summary(),
                self.p.stderr()
            );
        }
    }

    fn journal_summary(&self) -> String {
        let j = self.stub.journal();
        let t0 = j.first().map_or(SystemTime::now(), |e| e.at);
        j.iter()
            .map(|e| {
                format!(
                    "{:8.3}s {} {} -> {:?}",
                    secs_between(t0, e.at),
                    e.method,
                    e.path,
                    e.status
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// `ping` must be answered within 5 s (the reader never waits on the platform).
    async fn assert_ping(&mut self, when: &str) {
        let id = self.id();
        let started = std::time::Instant::now();
        let resp = self
            .p
            .request(id, "ping", json!({}), Duration::from_secs(5))
            .await;
        match resp {
            Some(r) if r["result"] == json!({}) => {}
            other => panic!(
                "ping {when}: {other:?} after {:?}; stderr:\n{}",
                started.elapsed(),
                self.p.stderr()
            ),
        }
        assert!(
            self.p.wait_exit(Duration::ZERO).await.is_none(),
            "the process exited {when}"
        );
    }

    async fn call(&mut self, tool: &str, args: Value, timeout: Duration) -> Value {
        let id = self.id();
        let resp = self
            .p
            .request(
                id,
                "tools/call",
                json!({"name": tool, "arguments": args}),
                timeout,
            )
            .await;
        resp.unwrap_or_else(|| panic!("no answer to {tool}; stderr:\n{}", self.p.stderr()))
    }

    fn rss_kb(&self) -> u64 {
        proc_status(self.pid, "VmRSS").expect("VmRSS readable")
    }

    fn assert_rss_bounded(&self, after: &str) -> u64 {
        let rss = self.rss_kb();
        assert!(
            rss < RSS_LIMIT_KB,
            "VmRSS {rss} kB after {after} (limit {RSS_LIMIT_KB} kB)"
        );
        rss
    }

    fn inject(&self, text: &str) -> String {
        self.stub
            .inject_message(&self.ws, InboundMessage::canvas(text))
    }

    /// The agent's loop: `wait_for_message` returns `activity_id` within `within`, then
    /// `inbox_pop` acknowledges it.
    async fn expect_delivery(&mut self, activity_id: &str, text: &str, within: Duration) {
        let resp = self
            .call(
                "wait_for_message",
                json!({"timeout_secs": within.as_secs_f64()}),
                within + WAIT,
            )
            .await;
        let msg = &resp["result"]["structuredContent"];
        assert_eq!(
            msg["activity_id"],
            json!(activity_id),
            "wait_for_message: {resp}\njournal:\n{}\nstderr:\n{}",
            self.journal_summary(),
            self.p.stderr()
        );
        assert_eq!(msg["text"], json!(text), "{resp}");
        let popped = self
            .call("inbox_pop", json!({"activity_id": activity_id}), WAIT)
            .await;
        assert_eq!(
            popped["result"]["structuredContent"]["removed"],
            json!(true),
            "{popped}"
        );
    }

    /// After the fault that ended at `since`: the first accepted heartbeat arrives within
    /// [`RESUME_WITHIN`] (`first_within` if given), and the following `n` accepted beats are
    /// ~1 s apart (0.2–2.5 s: no burst, no stall). Returns the time of the first accepted one.
    #[allow(clippy::print_stderr)] // measurements for the report, shown with --nocapture
    async fn assert_beats_resume(
        &self,
        since: SystemTime,
        first_within: Option<Duration>,
        n: usize,
    ) -> SystemTime {
        let first_within = first_within.unwrap_or(RESUME_WITHIN);
        self.wait_journal_for(
            "accepted heartbeats after the fault",
            first_within + Duration::from_secs_f64(CADENCE * 3.0 * n as f64) + WAIT,
            |j| {
                beats_since(j, since)
                    .iter()
                    .filter(|e| e.status == Some(200))
                    .count()
                    > n
            },
        )
        .await;
        let j = self.stub.journal();
        let ok: Vec<SystemTime> = beats_since(&j, since)
            .iter()
            .filter(|e| e.status == Some(200))
            .map(|e| e.at)
            .collect();
        let first = ok[0];
        let delay = secs_between(since, first);
        assert!(
            delay <= first_within.as_secs_f64(),
            "first accepted heartbeat {delay:.2}s after the fault ended (limit {first_within:?});\n{}",
            self.journal_summary()
        );
        let gaps: Vec<f64> = ok
            .windows(2)
            .take(n)
            .map(|p| secs_between(p[0], p[1]))
            .collect();
        eprintln!("first accepted heartbeat {delay:.2}s after the fault; then gaps {gaps:.2?}");
        for pair in ok.windows(2).take(n) {
            let gap = secs_between(pair[0], pair[1]);
            assert!(
                (0.2..=2.5).contains(&gap),
                "accepted heartbeats {gap:.2}s apart after recovery (want ~{CADENCE}s);\n{}",
                self.journal_summary()
            );
        }
        first
    }

    /// Ping, RSS bound, stdin EOF → exit 0, no panic, no token in stderr, clean stdout.
    /// Returns stderr.
    #[allow(clippy::print_stderr)] // measurements for the report, shown with --nocapture
    async fn finish(mut self, scenario: &str) -> String {
        self.assert_ping(&format!("after {scenario}")).await;
        let rss = self.assert_rss_bounded(scenario);
        let hwm = proc_status(self.pid, "VmHWM").unwrap_or(0);
        eprintln!("[{scenario}] VmRSS after the storm: {rss} kB (peak VmHWM {hwm} kB)");
        self.p.close_stdin();
        let status = self.p.wait_exit(WAIT).await;
        let err = self.p.stderr();
        let status = status.unwrap_or_else(|| panic!("no exit after stdin EOF; stderr:\n{err}"));
        assert_eq!(status.code(), Some(0), "exit after EOF; stderr:\n{err}");
        assert!(!err.contains("panicked"), "a panic in stderr:\n{err}");
        assert!(
            !err.contains(&self.token),
            "the token reached stderr:\n{err}"
        );
        assert!(
            self.p.stdout_violations().is_empty(),
            "stdout carried non-JSON-RPC lines: {:?}",
            self.p.stdout_violations()
        );
        for m in self.p.unclaimed() {
            assert_eq!(m["jsonrpc"], "2.0", "not JSON-RPC 2.0: {m}");
        }
        err
    }
}

// ----- scenarios -----------------------------------------------------------------------------

/// The platform is down, then back. Compression: 2 minutes of outage at the production
/// cadence (20 s heartbeats) is 6 failed beats and 4–5 failed inbox polls (5 s interval,
/// doubling backoff); here 15 s at the 1 s test cadence gives ~15 failed beat attempts and
/// 4–5 failed polls — at least as many of each, in an eighth of the time. The first 7 s
/// every request reaches the stub and has its connection dropped unanswered; the next 8 s
/// the platform's port refuses connections (listener closed, open connections cut). A
/// message arrives in the feed while the platform is unreachable.
#[tokio::test]
async fn outage_then_recovery() {
    let stub = PlatformStub::start().await.expect("stub starts");
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("outage").poll());
    let upstream: SocketAddr = stub
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("stub addr");
    let proxy = Proxy::start(upstream).await;
    let mut rig = Rig::spawn(stub, ws, token, &proxy.url(), "outage").await;
    rig.wait_journal("a healthy start", |j| {
        j.iter().any(|e| is_beat(e) && e.status == Some(200))
            && j.iter().any(|e| is_poll(e) && e.status == Some(200))
    })
    .await;

    // Phase 1: every request is dropped without an answer.
    let outage_start = SystemTime::now();
    rig.stub.script(Script::new("*", "/*", Action::Drop));
    tokio::time::sleep(Duration::from_secs(7)).await;
    rig.assert_ping("while requests are dropped").await;
    let j = rig.stub.journal();
    let dropped_beats = beats_since(&j, outage_start);
    assert!(
        dropped_beats.len() >= 4 && dropped_beats.iter().all(|e| e.status.is_none()),
        "heartbeats must keep being attempted (and dropped) during the outage:\n{}",
        rig.journal_summary()
    );

    // Phase 2: connection refused.
    proxy.down().await;
    rig.stub.clear_scripts();
    let text = "sent while the platform was unreachable";
    let activity = rig.inject(text);
    tokio::time::sleep(Duration::from_secs(8)).await;
    rig.assert_ping("while connections are refused").await;
    let attempts_before_recovery = count(&rig.stub.journal(), is_beat);

    // Recovery.
    proxy.up().await;
    let recovered = SystemTime::now();
    rig.assert_beats_resume(recovered, None, 5).await;
    let stderr = rig.p.stderr();
    assert!(
        stderr.contains("heartbeat failed"),
        "the outage was not noticed:\n{stderr}"
    );
    // Inbox backoff after ~5 failed polls is at most 16 s × 1.2; 40 s covers it.
    rig.expect_delivery(&activity, text, Duration::from_secs(40))
        .await;
    assert!(count(&rig.stub.journal(), is_beat) > attempts_before_recovery);
    rig.finish("a 15 s outage").await;
}

/// 500/502/503 storms: register fails three times (HTML 502 page among them), heartbeats
/// fail nine times in a row and the activity feed three times; a message waiting in the feed
/// is delivered once polls succeed.
#[tokio::test]
async fn server_error_storms() {
    let statuses = [500u16, 502, 503];
    let mut rig = Rig::start("storm", |stub| {
        for s in statuses {
            let body = if s == 502 {
                Action::body(s, "text/html", html_502(64 * 1024))
            } else {
                Action::json(s, &json!({"error": "internal error"}))
            };
            stub.script(Script::new("POST", REGISTER, body.clone()).times(1));
            stub.script(Script::new("GET", ACTIVITY, body).times(1));
        }
        for i in 0..9 {
            let s = statuses[i % 3];
            stub.script(
                Script::new(
                    "POST",
                    HEARTBEAT,
                    Action::json(s, &json!({"error": "upstream"})),
                )
                .times(1),
            );
        }
    })
    .await;
    let text = "waiting out the storm";
    let activity = rig.inject(text);
    rig.assert_ping("during the storm").await;

    // Register: three failures, then accepted (backoff 1 + 2 + 4 s, +25 % jitter).
    rig.wait_journal_for(
        "register accepted after 3 failures",
        Duration::from_secs(30),
        |j| {
            j.iter()
                .any(|e| e.path == REGISTER && e.status == Some(200))
        },
    )
    .await;
    let j = rig.stub.journal();
    let registers: Vec<Option<u16>> = j
        .iter()
        .filter(|e| e.path == REGISTER)
        .map(|e| e.status)
        .collect();
    assert_eq!(
        registers,
        vec![Some(500), Some(502), Some(503), Some(200)],
        "register retries"
    );
    // Heartbeats ran during the register retries (they do not wait for it) and failed 9×.
    rig.wait_journal("nine failed heartbeats", |j| {
        count(j, |e| is_beat(e) && matches!(e.status, Some(500..=599))) == 9
    })
    .await;
    let j = rig.stub.journal();
    let last_failed = j
        .iter()
        .filter(|e| is_beat(e) && matches!(e.status, Some(500..=599)))
        .map(|e| e.at)
        .next_back()
        .expect("a failed beat");
    rig.assert_beats_resume(last_failed, None, 5).await;
    rig.expect_delivery(&activity, text, Duration::from_secs(30))
        .await;
    let polls: Vec<Option<u16>> = rig
        .stub
        .journal()
        .iter()
        .filter(|e| is_poll(e))
        .map(|e| e.status)
        .take(4)
        .collect();
    assert_eq!(
        polls,
        vec![Some(500), Some(502), Some(503), Some(200)],
        "polls"
    );
    let stderr = rig.finish("5xx storms").await;
    for needle in [
        "register POST returned HTTP 502",
        "heartbeat HTTP 503",
        "GET /activity",
    ] {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 2048,
        "a log line of {longest} bytes quotes the HTML page in full"
    );
}

/// Responses that hang past the deadline. A heartbeat's deadline is min(10 s, interval) =
/// 1 s here, so two hung beats and one delayed 12 s must not stop later beats; a poll
/// delayed 12 s (> its 10 s deadline) is abandoned and retried; a tool call whose request
/// hangs fails after its 10 s timeout while `ping` is answered at once.
#[tokio::test]
async fn hung_and_slow_responses() {
    let mut rig = Rig::start_healthy("hang").await;
    let text = "arrived behind a slow poll";
    let fault_start = SystemTime::now();
    rig.stub
        .script(Script::new("POST", HEARTBEAT, Action::Hang).times(2));
    rig.stub
        .script(Script::new("POST", HEARTBEAT, Action::Delay(Duration::from_secs(12))).times(1));
    rig.stub
        .script(Script::new("GET", ACTIVITY, Action::Delay(Duration::from_secs(12))).times(1));
    rig.stub
        .script(Script::new("GET", WORKSPACE, Action::Hang).times(1));
    let activity = rig.inject(text);

    // The tool call hangs in its own task; ping is answered meanwhile.
    let tool_id = rig.id();
    rig.p
        .send(
            &json!({"jsonrpc": "2.0", "id": tool_id, "method": "tools/call",
            "params": {"name": "get_workspace_info", "arguments": {}}}),
        )
        .await
        .expect("send tool call");
    rig.wait_journal("the hung tool request", |j| {
        j.iter()
            .any(|e| e.method == "GET" && e.path == format!("/workspaces/{}", rig.ws))
    })
    .await;
    rig.assert_ping("while a tool call hangs").await;

    // The three slow beats are attempted and abandoned; the next beats are accepted.
    rig.wait_journal("three slow heartbeats", |j| {
        beats_since(j, fault_start).len() >= 3
    })
    .await;
    let third_slow = beats_since(&rig.stub.journal(), fault_start)[2].at;
    rig.assert_beats_resume(third_slow, None, 4).await;

    // The tool call fails cleanly after its 10 s timeout.
    let resp = rig
        .p
        .wait_for(|m| m["id"] == json!(tool_id), Duration::from_secs(25))
        .await
        .expect("the hung tool call is answered");
    assert_eq!(resp["result"]["isError"], json!(true), "{resp}");
    let msg = resp["result"]["content"][0]["text"].as_str().unwrap_or("");
    assert!(msg.contains("could not fetch workspace"), "{msg}");
    // And the next call works.
    let ok = rig.call("get_workspace_info", json!({}), WAIT).await;
    assert_eq!(
        ok["result"]["structuredContent"]["id"],
        json!(rig.ws),
        "{ok}"
    );

    // The delayed poll is abandoned after 10 s and the next one brings the message.
    rig.expect_delivery(&activity, text, Duration::from_secs(30))
        .await;
    rig.finish("hung responses").await;
}

/// Connections reset in the middle of a response body (status line and headers sent, part
/// of the announced `Content-Length`, then the socket closes), on heartbeat, poll and a tool.
#[tokio::test]
async fn connections_reset_mid_body() {
    let mut rig = Rig::start_healthy("reset").await;
    let body = Bytes::from(format!(r#"{{"status":"ok","pad":"{}"}}"#, "p".repeat(8192)));
    let reset = |status| Action::ResetMidBody {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.clone(),
        sent: 100,
    };
    let fault_start = SystemTime::now();
    rig.stub
        .script(Script::new("POST", HEARTBEAT, reset(200)).times(3));
    rig.stub
        .script(Script::new("GET", ACTIVITY, reset(200)).times(2));
    rig.stub
        .script(Script::new("GET", WORKSPACE, reset(200)).times(1));
    let text = "after the resets";
    let activity = rig.inject(text);

    let resp = rig.call("get_workspace_info", json!({}), WAIT).await;
    assert_eq!(resp["result"]["isError"], json!(true), "{resp}");
    rig.assert_ping("after a reset tool response").await;

    rig.wait_journal("three reset heartbeats", |j| {
        beats_since(j, fault_start).len() >= 3
    })
    .await;
    let third = beats_since(&rig.stub.journal(), fault_start)[2].at;
    rig.assert_beats_resume(third, None, 4).await;
    rig.expect_delivery(&activity, text, Duration::from_secs(20))
        .await;
    let ok = rig.call("get_workspace_info", json!({}), WAIT).await;
    assert_eq!(
        ok["result"]["structuredContent"]["id"],
        json!(rig.ws),
        "{ok}"
    );
    let stderr = rig.finish("mid-body resets").await;
    assert!(
        stderr.contains("connection broke while reading the body"),
        "the resets were not seen:\n{stderr}"
    );
}

/// 10 MB bodies, non-UTF-8 bodies and big HTML error pages on heartbeat, activity and a tool
/// call. Nothing is echoed in full (log lines and tool errors quote a short excerpt), memory
/// stays bounded, and service resumes.
#[tokio::test]
async fn huge_binary_and_html_bodies() {
    const TEN_MB: usize = 10 * 1024 * 1024;
    let mut rig = Rig::start_healthy("bodies").await;
    let big_json = Bytes::from(format!(
        r#"{{"status":"ok","pad":"{}"}}"#,
        "j".repeat(TEN_MB)
    ));
    let big_text = Bytes::from(vec![b'x'; TEN_MB]);
    let bodies = [
        Action::body(200, "application/json", big_json),
        Action::body(200, "text/plain", big_text.clone()),
        Action::body(200, "application/json", non_utf8(64 * 1024)),
        Action::body(502, "text/html", html_502(2 * 1024 * 1024)),
        Action::body(500, "application/octet-stream", non_utf8(TEN_MB)),
    ];
    let fault_start = SystemTime::now();
    for b in &bodies {
        rig.stub
            .script(Script::new("POST", HEARTBEAT, b.clone()).times(1));
    }
    for b in [
        Action::body(200, "text/plain", big_text.clone()),
        Action::body(200, "application/json", non_utf8(TEN_MB)),
        Action::body(502, "text/html", html_502(2 * 1024 * 1024)),
    ] {
        rig.stub.script(Script::new("GET", ACTIVITY, b).times(1));
    }
    let text = "after the big bodies";
    let activity = rig.inject(text);

    // Tool calls: each answer is an error quoting a short excerpt, never the whole body.
    for b in [
        Action::body(200, "application/json", big_text.clone()),
        Action::body(200, "application/json", non_utf8(TEN_MB)),
        Action::body(502, "text/html", html_502(2 * 1024 * 1024)),
    ] {
        rig.stub.script(Script::new("GET", WORKSPACE, b).times(1));
        let resp = rig.call("get_workspace_info", json!({}), WAIT).await;
        let line = resp.to_string();
        let head: String = line.chars().take(500).collect();
        assert_eq!(resp["result"]["isError"], json!(true), "{head}");
        let len = line.len();
        assert!(len < 4096, "a tool error of {len} bytes echoes the body");
        rig.assert_ping("between big tool responses").await;
    }

    rig.wait_journal("five odd heartbeat answers", |j| {
        beats_since(j, fault_start).len() >= bodies.len()
    })
    .await;
    let last_odd = beats_since(&rig.stub.journal(), fault_start)[bodies.len() - 1].at;
    rig.assert_beats_resume(last_odd, None, 4).await;
    rig.expect_delivery(&activity, text, Duration::from_secs(25))
        .await;
    let stderr = rig.finish("10 MB / non-UTF-8 / HTML bodies").await;
    assert!(
        stderr.contains("heartbeat HTTP 502"),
        "the 502 page was not seen:\n{stderr}"
    );
    let longest = stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 2048,
        "a log line of {longest} bytes quotes a body in full"
    );
}

/// 429 with `Retry-After: 4`: the heartbeat after the 429 waits at least 4 s (then the
/// cadence resumes); the poll after a 429 waits at least 4 s too.
#[tokio::test]
async fn rate_limited_with_retry_after() {
    let mut rig = Rig::start_healthy("ratelimit").await;
    let limited = Action::Respond {
        status: 429,
        headers: vec![
            ("retry-after".into(), "4".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: Bytes::from_static(br#"{"error":"rate limit exceeded"}"#),
    };
    rig.stub
        .script(Script::new("POST", HEARTBEAT, limited.clone()).times(1));
    rig.stub
        .script(Script::new("GET", ACTIVITY, limited).times(1));
    let text = "after the rate limit";
    let activity = rig.inject(text);

    rig.wait_journal("a rate-limited heartbeat and poll", |j| {
        j.iter().any(|e| is_beat(e) && e.status == Some(429))
            && j.iter().any(|e| is_poll(e) && e.status == Some(429))
    })
    .await;
    rig.assert_ping("while rate limited").await;
    let j = rig.stub.journal();
    let limited_beat = j
        .iter()
        .find(|e| is_beat(e) && e.status == Some(429))
        .expect("429 beat")
        .at;
    let limited_poll = j
        .iter()
        .find(|e| is_poll(e) && e.status == Some(429))
        .expect("429 poll")
        .at;
    // Heartbeat: no beat before the delay, then the cadence again.
    let first = rig
        .assert_beats_resume(limited_beat, Some(Duration::from_secs_f64(4.0 + 3.0)), 4)
        .await;
    let waited = secs_between(limited_beat, first);
    assert!(
        waited >= 3.95,
        "next heartbeat {waited:.2}s after a 429 with Retry-After: 4"
    );
    assert_eq!(
        beats_since(&rig.stub.journal(), limited_beat)
            .iter()
            .filter(|e| e.at > limited_beat && e.at < first)
            .count(),
        0,
        "a heartbeat went out during the Retry-After delay"
    );
    // Inbox: the next poll waits at least Retry-After, then delivers.
    rig.expect_delivery(&activity, text, Duration::from_secs(20))
        .await;
    let j = rig.stub.journal();
    let next_poll = j
        .iter()
        .find(|e| is_poll(e) && e.at > limited_poll)
        .expect("a poll after the 429")
        .at;
    let waited = secs_between(limited_poll, next_poll);
    assert!(
        waited >= 3.95,
        "next poll {waited:.2}s after a 429 with Retry-After: 4"
    );
    rig.finish("429 with Retry-After").await;
}

/// A crash right after `inbox_pop` returned must not deliver the message again: the pop is
/// answered only once the inbox state without it is on disk. Six rounds of deliver → pop →
/// SIGKILL at once → restart with the same `CONFIGS_DIR`; each next round's
/// `wait_for_message` returns the new message, not a popped one (it would come first: oldest
/// first). Before the fix every such crash re-delivered the popped message (found by the soak).
#[tokio::test]
async fn a_pop_survives_sigkill_right_after_it() {
    let mut rig = Rig::start_healthy("popkill").await;
    let mut popped = Vec::new();
    for round in 0..6 {
        let text = format!("round {round}");
        let id = rig.inject(&text);
        rig.expect_delivery(&id, &text, Duration::from_secs(20))
            .await;
        popped.push(id);
        let stderr = rig.kill_and_respawn().await;
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains(&rig.token), "token in stderr");
    }
    let text = "after six crashes";
    let last = rig.inject(text);
    rig.expect_delivery(&last, text, Duration::from_secs(20))
        .await;
    let peek = rig.call("inbox_peek", json!({}), WAIT).await;
    let listed = peek["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    for id in &popped {
        assert!(
            !listed.contains(id.as_str()),
            "popped {id} is queued again: {listed}"
        );
    }
    rig.finish("SIGKILL right after pops").await;
}
