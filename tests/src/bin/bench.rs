//! `bench`: the benchmark behind `BENCHMARKS.md`. Run it with `bash scripts/bench.sh`
//! (release build of this binary and of `molecule-mcp`, then the full run; `--quick` for a
//! smoke run). It prints a Markdown report on stdout and progress on stderr, needs no manual
//! step, and exits 0 when every section ran (a missing Python venv only skips the baseline).
//!
//! Sections (each compares against a baseline measured in the same run, so the report can
//! state ratios even on a noisy shared machine):
//!
//! 1. **startup** — cold start of the release binary: spawn → `initialize` reply and spawn →
//!    `tools/list` reply, median and p90, with everything on (heartbeat and inbox against
//!    the loopback stub), with an `https://` platform URL, and with
//!    `MOLECULE_MCP_DISABLE_HEARTBEAT=1`; peak RSS (VmHWM) after `tools/list` and after the
//!    first platform traffic; binary size. Baselines: the **floor** (`src/bin/floor.rs`, a
//!    std-only stdio server: the least a process can do to answer `initialize`), to which
//!    the start-up goals are ratios, and `tests/python/baseline_server.py` (official Python
//!    `mcp` SDK, 12 trivial tools) run by `.venv/bin/python`; every server measured the same
//!    way, runs interleaved. With `--shipped PATH --shipped-floor PATH` (scripts/bench.sh
//!    passes the static musl builds) the section runs a second time, 1b, for the build users
//!    install against a floor built the same way.
//! 2. **core** — events per second through one `molecule_mcp_core::Session` with simulated
//!    time (every `handle`/`handle_timeout` call counts): a steady heartbeat loop, and a mix
//!    with 401 escalation; plus the `Inbox` machine polling (idle and with messages that are
//!    peeked and popped); and the inbox state's cost at 10 and 10,000 handled ids: one pop
//!    and one arrival with its write settled, p50/p99 µs and bytes written (journal append
//!    or compaction snapshot), amortised over many messages, the ratio 10,000 ÷ 10, and the
//!    disk side (`persist::append_private` vs `write_private_atomic` of the snapshot).
//! 3. **tools** — `tools/call list_peers` round trip through the binary to the loopback stub,
//!    p50/p99; baseline: the same `GET /registry/:id/peers` sent directly with the pooled
//!    `HttpClient`, interleaved in blocks of 100.
//! 4. **scale** — one multi-workspace process (`--workspaces-file`) keeping N workspaces alive
//!    against the stub; CPU (utime+stime of the molecule-mcp process only) over a window after
//!    every workspace registered, VmRSS/VmHWM; heartbeats only and with the inbox. Faster
//!    cadences are scaled to the real one (20 s heartbeat, 5 s inbox poll) by the request
//!    rates the stub actually saw.
//!
//! Options: `--quick`, `--only startup,core,tools,scale,latency`, `--bin PATH` (molecule-mcp, default
//! next to this executable), `--python PATH` (default `<repo>/.venv/bin/python`), `--repo DIR`,
//! and for the scale section `--sizes 1000` (accelerated cadence), `--real-sizes 10000` (the
//! real 20 s / 5 s cadence; `none` to skip) and `--window SECS` (accelerated windows).
//! `--serve-stub` runs no section: it starts the loopback stub with one poll-mode workspace,
//! prints its `PLATFORM_URL`, `WORKSPACE_ID` and `MOLECULE_WORKSPACE_TOKEN` as shell
//! assignments and serves until stdin closes (for profiling the binary by hand, see
//! BENCHMARKS.md "Start-up profile").

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use molecule_mcp_core::inbox::{
    ACTIVE_WINDOW, AgentSignal, IDLE_MAX, Inbox, InboxAction, InboxConfig, InboxInput,
};
use molecule_mcp_core::workspace::{
    Fleet, FleetPlan, Input as WsInput, Output, Restored, WorkspacePlan,
};
use molecule_mcp_core::{
    Action, Input, PersistId, PlatformUrl, RequestId, Secret, Session, SessionConfig, StateLayout,
};
use molecule_mcp_io_tokio::{HttpClient, persist};
use molecule_mcp_tests::measure::{percentile, proc_status};
use molecule_mcp_tests::process::{McpProcess, molecule_mcp_bin};
use molecule_mcp_tests::stub::{
    InboundMessage, JournalEntry, PlatformStub, WorkspaceSpec, format_rfc3339_micros,
    unix_micros_now,
};
use molecule_mcp_tests::temp_dir::TempDir;
use serde_json::{Value, json};

/// Generous bound for one protocol step on a loaded machine.
const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------

#[allow(clippy::print_stdout)] // the report is this program's output
fn emit(text: &str) {
    println!("{text}");
}

#[allow(clippy::print_stderr)] // progress for whoever watches the run
fn progress(text: &str) {
    eprintln!("[bench] {text}");
}

/// The Markdown report, built section by section.
#[derive(Default)]
struct Report(String);

impl Report {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    fn blank(&mut self) {
        self.0.push('\n');
    }

    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.0, "| {} |", header.join(" | "));
        let _ = writeln!(
            self.0,
            "|{}|",
            header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        );
        for row in rows {
            let _ = writeln!(self.0, "| {} |", row.join(" | "));
        }
        self.0.push('\n');
    }
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

const USAGE: &str = "usage: bench [--quick] [--only startup,core,tools,scale,latency] [--bin PATH] [--floor PATH] [--python PATH] [--repo DIR]
             [--shipped PATH --shipped-floor PATH]
             [--sizes 1000] [--real-sizes 10000|none] [--window SECS]
       bench --serve-stub";

struct Options {
    quick: bool,
    bin: PathBuf,
    python: PathBuf,
    repo: PathBuf,
    only: Option<Vec<String>>,
    /// Scale sizes at the accelerated cadence (default 1,000; quick: 200).
    sizes: Option<Vec<usize>>,
    /// Scale sizes at the real cadence (default 10,000; quick: none).
    real_sizes: Option<Vec<usize>>,
    /// Scale-section window for the accelerated cadences.
    window: Option<Duration>,
    /// `--serve-stub`: only serve the loopback stub (see [`serve_stub`]).
    serve_stub: bool,
    /// `--floor PATH`: the floor server to compare with (default: `floor` next to this program).
    floor: Option<PathBuf>,
    /// `--shipped PATH --shipped-floor PATH`: the build users install (`scripts/dist.sh`:
    /// static musl) and the floor built the same way; the start-up section is measured for
    /// them too, so the goals are judged like for like.
    shipped: Option<(PathBuf, PathBuf)>,
    command: String,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let repo_default = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut opts = Options {
            quick: false,
            bin: molecule_mcp_bin(),
            python: PathBuf::new(),
            repo: repo_default,
            only: None,
            sizes: None,
            real_sizes: None,
            window: None,
            serve_stub: false,
            floor: None,
            shipped: None,
            command: std::env::var("BENCH_COMMAND")
                .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" ")),
        };
        let mut python = None;
        let (mut shipped, mut shipped_floor) = (None, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--full" => opts.quick = false,
                "--serve-stub" => opts.serve_stub = true,
                "--bin" => opts.bin = PathBuf::from(value("--bin")?),
                "--floor" => opts.floor = Some(PathBuf::from(value("--floor")?)),
                "--shipped" => shipped = Some(PathBuf::from(value("--shipped")?)),
                "--shipped-floor" => shipped_floor = Some(PathBuf::from(value("--shipped-floor")?)),
                "--python" => python = Some(PathBuf::from(value("--python")?)),
                "--repo" => opts.repo = PathBuf::from(value("--repo")?),
                "--only" => {
                    opts.only = Some(
                        value("--only")?
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .collect(),
                    )
                }
                "--sizes" => opts.sizes = Some(parse_sizes("--sizes", &value("--sizes")?)?),
                "--real-sizes" => {
                    opts.real_sizes = Some(parse_sizes("--real-sizes", &value("--real-sizes")?)?)
                }
                "--window" => {
                    let secs = value("--window")?;
                    opts.window = Some(Duration::from_secs(
                        secs.parse()
                            .map_err(|e| format!("--window {secs:?}: {e}"))?,
                    ));
                }
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?} (try --help)")),
            }
        }
        opts.python = python.unwrap_or_else(|| opts.repo.join(".venv/bin/python"));
        opts.shipped = match (shipped, shipped_floor) {
            (Some(bin), Some(floor)) => Some((bin, floor)),
            (None, None) => None,
            _ => return Err("--shipped and --shipped-floor go together".to_owned()),
        };
        Ok(opts)
    }

    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|list| list.iter().any(|s| s == section))
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers: statistics, /proc, temp dirs, machine facts
// ---------------------------------------------------------------------------------------

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fmt_ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.0} ms")
    }
}

fn fmt_mib(kb: f64) -> String {
    format!("{:.1} MiB", kb / 1024.0)
}

fn fmt_rate(per_sec: f64) -> String {
    if per_sec >= 100_000.0 {
        format!("{:.2} M/s", per_sec / 1e6)
    } else {
        format!("{:.1} k/s", per_sec / 1e3)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.1}×")
    } else {
        "n/a".to_owned()
    }
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        )
}

/// A private temporary directory for one measurement, removed on drop.
fn temp_dir(label: &str) -> Result<TempDir, String> {
    TempDir::new(&format!("bench-{label}")).map_err(|e| format!("cannot create a temp dir: {e}"))
}

/// Counts journal entries under the stub's lock without cloning the journal.
async fn journal_count(stub: &PlatformStub, pred: impl Fn(&JournalEntry) -> bool) -> u64 {
    let count = Mutex::new(0u64);
    stub.wait_for(
        |j| {
            let n = j.iter().filter(|e| pred(e)).count() as u64;
            *count
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = n;
            true
        },
        Duration::ZERO,
    )
    .await;
    count
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn init_params() -> Value {
    json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}})
}

// ---------------------------------------------------------------------------------------
// 1. Cold start
// ---------------------------------------------------------------------------------------

/// What a cold-start run waits for, after the `tools/list` reply, before it reads the peak
/// RSS a second time ("settled").
#[derive(Clone, Copy)]
enum Settle<'a> {
    /// Nothing: the settled figure is the one at `tools/list`.
    Now,
    /// The stub saw this process register, heartbeat and poll its inbox (a 2xx answer to
    /// each): the peak then includes the first round of platform traffic, which is what
    /// "heartbeat and inbox on" costs.
    Traffic(&'a PlatformStub),
    /// stderr says the first register failed: the https run against the stub's plain-http
    /// port, whose TLS handshake fails after the client config (webpki roots) was built and
    /// a ClientHello sent.
    RegisterFailed,
}

struct StartSample {
    init: Duration,
    list: Duration,
    /// VmHWM right after the `tools/list` reply.
    hwm_kb: u64,
    /// VmHWM once the run's [`Settle`] condition held.
    settled_hwm_kb: u64,
    /// Threads of the process at that point.
    threads: u64,
    /// Its resident anonymous memory (heap, stacks, arenas) and file-backed pages (the
    /// mapped binary and shared libraries) at that point, kB: which of the two a change can
    /// reduce.
    anon_kb: u64,
    file_kb: u64,
}

/// Largest journal id so far (0 when empty): traffic after it belongs to the next spawn.
async fn journal_last_id(stub: &PlatformStub) -> u64 {
    let last = Mutex::new(0u64);
    stub.wait_for(
        |j| {
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = j.last().map_or(0, |e| e.id);
            true
        },
        Duration::ZERO,
    )
    .await;
    last.into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A register, a heartbeat and an inbox poll, each answered 2xx, after journal id `after`.
fn saw_first_traffic(journal: &[JournalEntry], after: u64) -> bool {
    let ok = |e: &&JournalEntry| e.id > after && e.status.is_some_and(|s| (200..300).contains(&s));
    let seen = |method: &str, matches: &dyn Fn(&str) -> bool| {
        journal
            .iter()
            .filter(ok)
            .any(|e| e.method == method && matches(&e.path))
    };
    seen("POST", &|p| p == "/registry/register")
        && seen("POST", &|p| p == "/registry/heartbeat")
        && seen("GET", &|p| p.ends_with("/activity"))
}

async fn one_start(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    expected_tools: usize,
    settle: Settle<'_>,
) -> Result<StartSample, String> {
    let after = match settle {
        Settle::Traffic(stub) => journal_last_id(stub).await,
        Settle::Now | Settle::RegisterFailed => 0,
    };
    let t0 = Instant::now();
    let mut p = McpProcess::spawn_bin(program, env, args)
        .map_err(|e| format!("cannot spawn {}: {e}", program.display()))?;
    let init = p.request(0, "initialize", init_params(), STEP).await;
    let init_at = t0.elapsed();
    let init = init.ok_or_else(|| {
        format!(
            "no initialize reply from {}; stderr: {}",
            program.display(),
            p.stderr()
        )
    })?;
    if init.get("result").is_none() {
        return Err(format!("initialize failed: {init}"));
    }
    p.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await
        .map_err(|e| e.to_string())?;
    let list = p.request(1, "tools/list", json!({}), STEP).await;
    let list_at = t0.elapsed();
    let list = list.ok_or_else(|| format!("no tools/list reply; stderr: {}", p.stderr()))?;
    let tools = list["result"]["tools"].as_array().map_or(0, Vec::len);
    if tools != expected_tools {
        return Err(format!(
            "expected {expected_tools} tools from {}, got {tools}",
            program.display()
        ));
    }
    let status = |key: &str| p.pid().and_then(|pid| proc_status(pid, key)).unwrap_or(0);
    let hwm_kb = status("VmHWM");
    let settled = match settle {
        Settle::Now => true,
        Settle::Traffic(stub) => stub.wait_for(|j| saw_first_traffic(j, after), STEP).await,
        Settle::RegisterFailed => p.wait_for_stderr("register POST failed", STEP).await,
    };
    if !settled {
        return Err(format!(
            "{}: the first platform traffic was not seen within {STEP:?}; stderr: {}",
            program.display(),
            p.stderr()
        ));
    }
    let (settled_hwm_kb, threads) = (status("VmHWM"), status("Threads"));
    let (anon_kb, file_kb) = (status("RssAnon"), status("RssFile"));
    p.close_stdin();
    if p.wait_exit(Duration::from_secs(10)).await.is_none() {
        return Err(format!(
            "{} did not exit within 10 s of stdin EOF",
            program.display()
        ));
    }
    Ok(StartSample {
        init: init_at,
        list: list_at,
        hwm_kb,
        settled_hwm_kb,
        threads,
        anon_kb,
        file_kb,
    })
}

struct StartSeries {
    label: String,
    samples: Vec<StartSample>,
}

impl StartSeries {
    fn new(label: &str) -> StartSeries {
        StartSeries {
            label: label.to_owned(),
            samples: Vec::new(),
        }
    }
    fn init_ms(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| ms(s.init)).collect())
    }
    fn list_ms(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| ms(s.list)).collect())
    }
    fn hwm_kb(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| s.hwm_kb as f64).collect())
    }
    fn settled_hwm_kb(&self) -> Vec<f64> {
        sorted(
            self.samples
                .iter()
                .map(|s| s.settled_hwm_kb as f64)
                .collect(),
        )
    }
    fn threads(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| s.threads as f64).collect())
    }
    fn anon_kb(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| s.anon_kb as f64).collect())
    }
    fn file_kb(&self) -> Vec<f64> {
        sorted(self.samples.iter().map(|s| s.file_kb as f64).collect())
    }
    fn init_p50(&self) -> f64 {
        percentile(&self.init_ms(), 0.5)
    }
    fn settled_p50(&self) -> f64 {
        percentile(&self.settled_hwm_kb(), 0.5)
    }
}

/// A ratio to the floor, two decimals (the goal is 1.2×).
fn fmt_floor_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "n/a".to_owned()
    }
}

/// The floor server (`tests/src/bin/floor.rs`), built next to this program.
fn floor_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("floor")))
        .unwrap_or_else(|| PathBuf::from("floor"))
}

/// The cold-start variants, in the order of the report.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Floor,
    /// Nothing disabled: heartbeat and inbox on, against the loopback stub (http).
    AllOn,
    /// Nothing disabled, `https://` platform URL at the stub's plain-http port.
    Https,
    /// `MOLECULE_MCP_DISABLE_HEARTBEAT=1` (for reference: the inbox still polls).
    NoHeartbeat,
    Python,
}

const VARIANTS: [Variant; 5] = [
    Variant::Floor,
    Variant::AllOn,
    Variant::Https,
    Variant::NoHeartbeat,
    Variant::Python,
];

/// One build measured by the start-up section: a molecule-mcp binary and the floor it is
/// judged against (built the same way: dynamic glibc for the dev build, static musl for the
/// shipped one, since static linking alone takes the dynamic loader's share off both).
struct StartTarget<'a> {
    title: &'a str,
    bin: &'a Path,
    floor: &'a Path,
    /// Whether the Python baseline runs beside it (once per report is enough).
    python: bool,
}

async fn startup(
    opts: &Options,
    target: &StartTarget<'_>,
    report: &mut Report,
) -> Result<(), String> {
    let runs = if opts.quick { 5 } else { 20 };
    let stub = PlatformStub::start()
        .await
        .map_err(|e| format!("stub: {e}"))?;
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("bench-startup").poll());
    let url = stub.url();
    // The same listener, spoken to in TLS: the handshake fails (it is not a TLS server),
    // after the client built its TLS config and sent a ClientHello.
    let https_url = url.replacen("http://", "https://", 1);
    let python_ok = target.python && opts.python.is_file();
    let floor = target.floor;
    for (what, path) in [("the floor server", floor), ("molecule-mcp", target.bin)] {
        if !path.is_file() {
            return Err(format!(
                "{what} is not at {} (build it: bash scripts/bench.sh)",
                path.display()
            ));
        }
    }
    let script = opts.repo.join("tests/python/baseline_server.py");
    let script_s = script.display().to_string();
    let mut series: Vec<(Variant, StartSeries)> = vec![
        (
            Variant::Floor,
            StartSeries::new("**floor**: std-only Rust stdio server (`floor`, 0 tools)"),
        ),
        (
            Variant::AllOn,
            StartSeries::new(
                "molecule-mcp, **everything on** (heartbeat + inbox, loopback stub, http)",
            ),
        ),
        (
            Variant::Https,
            StartSeries::new(
                "molecule-mcp, everything on, `https://` URL (TLS config built, handshake fails)",
            ),
        ),
        (
            Variant::NoHeartbeat,
            StartSeries::new("molecule-mcp, `MOLECULE_MCP_DISABLE_HEARTBEAT=1` (reference)"),
        ),
    ];
    if python_ok {
        series.push((
            Variant::Python,
            StartSeries::new("Python `mcp` 2.x `MCPServer`, 12 trivial tools"),
        ));
    }
    progress(&format!(
        "startup: {runs} interleaved runs per server (+1 warm-up each)"
    ));
    let registers_before = journal_count(&stub, |e| e.path == "/registry/register").await;
    for i in 0..=runs {
        // Rotate the order every round so no server always runs right after another.
        for k in 0..VARIANTS.len() {
            let variant = VARIANTS[(i + k) % VARIANTS.len()];
            let Some(slot) = series.iter().position(|(v, _)| *v == variant) else {
                continue;
            };
            let dir = temp_dir("start")?;
            let state = dir.as_str().to_owned();
            let mut env = vec![
                ("PLATFORM_URL", url.as_str()),
                ("WORKSPACE_ID", ws.as_str()),
                ("MOLECULE_WORKSPACE_TOKEN", token.as_str()),
                ("CONFIGS_DIR", state.as_str()),
            ];
            let sample = match variant {
                Variant::Floor => one_start(floor, &[], &[], 0, Settle::Now).await?,
                Variant::AllOn => {
                    one_start(target.bin, &[], &env, 12, Settle::Traffic(&stub)).await?
                }
                Variant::Https => {
                    env[0] = ("PLATFORM_URL", https_url.as_str());
                    one_start(target.bin, &[], &env, 12, Settle::RegisterFailed).await?
                }
                Variant::NoHeartbeat => {
                    env.push(("MOLECULE_MCP_DISABLE_HEARTBEAT", "1"));
                    one_start(target.bin, &[], &env, 12, Settle::Now).await?
                }
                Variant::Python => {
                    one_start(&opts.python, &[script_s.as_str()], &[], 12, Settle::Now).await?
                }
            };
            // Run 0 is the warm-up (page cache, Python bytecode cache).
            if i > 0
                && let Some((_, s)) = series.get_mut(slot)
            {
                s.samples.push(sample);
            }
        }
    }
    let registers =
        journal_count(&stub, |e| e.path == "/registry/register").await - registers_before;
    let size = std::fs::metadata(target.bin).map(|m| m.len()).unwrap_or(0);
    let floor_size = std::fs::metadata(floor).map(|m| m.len()).unwrap_or(0);
    let get = |v: Variant| series.iter().find(|(s, _)| *s == v).map(|(_, s)| s);
    let (Some(floor_s), Some(all_on)) = (get(Variant::Floor), get(Variant::AllOn)) else {
        return Err("the floor and everything-on series are always measured".to_owned());
    };
    let (floor_init, floor_hwm) = (floor_s.init_p50(), floor_s.settled_p50());

    report.line(target.title);
    report.blank();
    report.line(&format!(
        "{runs} runs per server after one warm-up, interleaved (the order rotates every round). Time from just before \
         `spawn` to the reply line on the client's end of the stdout pipe; `initialize` (protocol 2025-06-18), then \
         `notifications/initialized` and `tools/list` (12 tools; the floor has none). Peak RSS = `VmHWM`: once right \
         after the `tools/list` reply, and once **settled**: for everything on, after the stub answered this process's \
         register, first heartbeat and first inbox poll; for https, after the first register failed (TLS handshake \
         against the stub's plain-http port); otherwise the same reading. Fresh `CONFIGS_DIR` per run; the runs \
         registered {registers} times with the stub. The ratios divide medians by the floor's medians of the same run. \
         Anon / file-backed = `RssAnon` / `RssFile` at the settled reading (current, not peak): the file-backed part is \
         the mapped pages of the binary and its shared libraries (see BENCHMARKS.md, \"Start-up profile\")."
    ));
    report.blank();
    let mut rows = Vec::new();
    for (_, s) in &series {
        let (init, list, hwm, settled) = (s.init_ms(), s.list_ms(), s.hwm_kb(), s.settled_hwm_kb());
        rows.push(vec![
            s.label.clone(),
            fmt_ms(percentile(&init, 0.5)),
            fmt_ms(percentile(&init, 0.9)),
            fmt_floor_ratio(s.init_p50() / floor_init),
            fmt_ms(percentile(&list, 0.5)),
            fmt_mib(percentile(&hwm, 0.5)),
            fmt_mib(percentile(&settled, 0.5)),
            fmt_mib(percentile(&settled, 1.0)),
            fmt_floor_ratio(s.settled_p50() / floor_hwm),
            format!(
                "{} / {}",
                fmt_mib(percentile(&s.anon_kb(), 0.5)),
                fmt_mib(percentile(&s.file_kb(), 0.5))
            ),
            format!("{:.0}", percentile(&s.threads(), 0.5)),
        ]);
    }
    report.table(
        &[
            "server",
            "→ initialize p50",
            "p90",
            "÷ floor",
            "→ tools/list p50",
            "peak RSS at tools/list p50",
            "settled p50",
            "max",
            "÷ floor",
            "settled anon / file-backed p50",
            "threads",
        ],
        &rows,
    );
    report.line(&format!(
        "Binary `{}`: {:.2} MiB ({size} bytes; profile in the header); floor `{}`: {:.2} MiB.",
        target.bin.display(),
        size as f64 / 1024.0 / 1024.0,
        floor.display(),
        floor_size as f64 / 1024.0 / 1024.0
    ));
    report.blank();
    let init_ratio = all_on.init_p50() / floor_init;
    let rss = all_on.settled_p50();
    let met = |ok: bool| if ok { "**met**" } else { "**missed**" };
    report.table(
        &["start-up goal (everything on)", "measured (p50)", "status"],
        &[
            vec![
                "spawn → `initialize` ≤ 1.2× the floor".to_owned(),
                format!(
                    "{} vs {} = {}",
                    fmt_ms(all_on.init_p50()),
                    fmt_ms(floor_init),
                    fmt_floor_ratio(init_ratio)
                ),
                if init_ratio <= 1.2 {
                    met(true).to_owned()
                } else {
                    format!("{} by {}", met(false), fmt_floor_ratio(init_ratio / 1.2))
                },
            ],
            vec![
                "peak RSS < 4 MiB with heartbeat and inbox on (settled)".to_owned(),
                format!(
                    "{} ({} the floor's {})",
                    fmt_mib(rss),
                    fmt_floor_ratio(rss / floor_hwm),
                    fmt_mib(floor_hwm)
                ),
                if rss < 4096.0 {
                    met(true).to_owned()
                } else {
                    format!("{} by {}", met(false), fmt_mib(rss - 4096.0))
                },
            ],
        ],
    );
    match get(Variant::Python) {
        // The Python baseline runs with the first build only.
        None if !target.python => {}
        Some(py) => {
            let ratio = |f: fn(&StartSeries) -> f64| f(py) / f(all_on);
            report.line(&format!(
                "Ratios Python ÷ molecule-mcp everything on (medians): `initialize` {}, `tools/list` {}, settled peak RSS {}.",
                fmt_ratio(ratio(StartSeries::init_p50)),
                fmt_ratio(ratio(|s| percentile(&s.list_ms(), 0.5))),
                fmt_ratio(ratio(StartSeries::settled_p50)),
            ));
        }
        None => report.line(&format!(
            "Python baseline skipped: `{}` not found (run `bash scripts/setup-python-client.sh` to create the venv); no ratio.",
            opts.python.display()
        )),
    }
    report.blank();
    Ok(())
}

/// `bench --serve-stub`: the loopback stub with one poll-mode workspace, for profiling the
/// binary by hand (strace, perf) against the same platform the bench uses. Prints the
/// environment as shell assignments on stdout and serves until stdin reaches EOF.
async fn serve_stub() -> ExitCode {
    let stub = match PlatformStub::start().await {
        Ok(stub) => stub,
        Err(e) => {
            progress(&format!("stub: {e}"));
            return ExitCode::from(1);
        }
    };
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("bench-profile").poll());
    emit(&format!(
        "PLATFORM_URL={}\nWORKSPACE_ID={ws}\nMOLECULE_WORKSPACE_TOKEN={token}",
        stub.url()
    ));
    progress("serving the stub until stdin closes");
    let (mut stdin, mut buf) = (tokio::io::stdin(), [0u8; 256]);
    while let Ok(1..) = tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {}
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------
// 2. Core throughput (simulated time)
// ---------------------------------------------------------------------------------------

const BENCH_WS: &str = "5b0c3c2e-8a11-4c55-9e0e-3d5f6a7b8c9d";
const BENCH_TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";
const REGISTER_OK: &[u8] = br#"{"status":"registered","delivery_mode":"poll","platform_inbound_secret":"inbound-secret-0123456789abcdef"}"#;
const HEARTBEAT_OK: &[u8] =
    br#"{"status":"ok","platform_inbound_secret":"inbound-secret-0123456789abcdef"}"#;
const HEARTBEAT_401: &[u8] = br#"{"error":"invalid workspace auth token"}"#;

fn bench_platform() -> Result<PlatformUrl, String> {
    PlatformUrl::parse("http://127.0.0.1:9").map_err(|e| format!("platform url: {e:?}"))
}

/// Drains a session; returns the last request and persist ids it asked for.
fn drain_session(s: &mut Session) -> (Option<RequestId>, Option<PersistId>) {
    let (mut send, mut persist) = (None, None);
    while let Some(action) = s.poll_action() {
        match action {
            Action::SendHttp(req) => send = Some(req.id),
            Action::Persist(p) => persist = Some(p.id),
            Action::Log(line) => {
                std::hint::black_box(line);
            }
            Action::TokenChanged { .. } | Action::Fatal { .. } => {}
        }
    }
    (send, persist)
}

fn response(id: RequestId, status: u16, body: &[u8]) -> Input {
    Input::HttpResponse {
        id,
        status,
        retry_after: None,
        body: body.to_vec(),
    }
}

struct Throughput {
    events: u64,
    elapsed: Duration,
}

impl Throughput {
    fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    fn ns_per_event(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / self.events as f64
    }
}

/// One session heartbeating `beats` times. With `auth_mix`, beats 40–49 of every 50 are
/// answered 401 (WARN, WARN, ERROR, silent…, then the INFO on recovery).
fn session_loop(beats: u64, auth_mix: bool) -> Result<Throughput, String> {
    let cfg = SessionConfig::new(
        bench_platform()?,
        BENCH_WS,
        Secret::new(BENCH_TOKEN),
        "MOLECULE_WORKSPACE_TOKEN",
        json!({"name": "bench", "skills": []}),
    );
    let origin = Instant::now();
    let mut now = origin;
    let started = Instant::now();
    let mut s = Session::new(cfg, now, 7);
    let mut events = 0u64;
    let (register, _) = drain_session(&mut s);
    let register = register.ok_or("no register request")?;
    now += Duration::from_millis(3);
    s.handle(now, response(register, 200, REGISTER_OK));
    events += 1;
    let (mut pending, persist) = drain_session(&mut s);
    if let Some(id) = persist {
        s.handle(now, Input::PersistDone { id, result: Ok(()) });
        events += 1;
        let _ = drain_session(&mut s);
    }
    for i in 0..beats {
        let id = pending.ok_or_else(|| format!("no heartbeat request at beat {i}"))?;
        now += Duration::from_millis(3);
        let (status, body) = if auth_mix && i % 50 >= 40 {
            (401, HEARTBEAT_401)
        } else {
            (200, HEARTBEAT_OK)
        };
        s.handle(now, response(id, status, body));
        events += 1;
        let _ = drain_session(&mut s);
        let at = s.poll_timeout().ok_or("session went terminal")?;
        now = now.max(at);
        s.handle_timeout(now);
        events += 1;
        pending = drain_session(&mut s).0;
    }
    let elapsed = started.elapsed();
    let status = s.status();
    if status.heartbeats_sent < beats {
        return Err(format!("only {} heartbeats sent", status.heartbeats_sent));
    }
    Ok(Throughput { events, elapsed })
}

/// The activity row the stub would serve for message `n`.
fn activity_row(n: u64, base_micros: i64) -> Value {
    json!({
        "id": format!("00000000-0000-4000-8000-{n:012x}"),
        "workspace_id": BENCH_WS,
        "activity_type": "a2a_receive",
        "source_id": null,
        "target_id": BENCH_WS,
        "method": "message/send",
        "summary": null,
        "duration_ms": null,
        "status": "ok",
        "error_detail": null,
        "created_at": format_rfc3339_micros(base_micros + i64::try_from(n).unwrap_or(0) * 1000),
        "request_body": {"jsonrpc": "2.0", "id": format!("req-{n}"), "method": "message/send",
            "params": {"message": {"role": "user", "messageId": format!("msg-{n}"), "parts": [{"kind": "text", "text": "hello from the canvas, please summarise the latest report"}]}}},
        "seq": n,
    })
}

/// A state write an inbox asked for: journal lines (`Append`) or a whole snapshot (`Persist`).
struct StateWrite {
    bytes: Vec<u8>,
    snapshot: bool,
}

#[derive(Default)]
struct InboxDrain {
    send: Option<RequestId>,
    persist: Option<PersistId>,
    write: Option<StateWrite>,
    arrived: Vec<String>,
}

fn drain_inbox(ib: &mut Inbox) -> InboxDrain {
    let mut out = InboxDrain::default();
    while let Some(action) = ib.poll_action() {
        match action {
            InboxAction::SendHttp(req) => out.send = Some(req.id),
            InboxAction::Persist { id, bytes } => {
                out.persist = Some(id);
                out.write = Some(StateWrite {
                    bytes,
                    snapshot: true,
                });
            }
            InboxAction::Append { id, bytes, .. } => {
                out.persist = Some(id);
                out.write = Some(StateWrite {
                    bytes,
                    snapshot: false,
                });
            }
            InboxAction::Arrived(m) => out.arrived.push(m.activity_id),
            InboxAction::Log(line) => {
                std::hint::black_box(line);
            }
            InboxAction::FetchUpload(_) | InboxAction::SetAside(_) => {}
        }
    }
    out
}

struct InboxRun {
    throughput: Throughput,
    polls: u64,
    messages: u64,
    tool_ops: u64,
    handled: usize,
}

/// Settles every state write at once (as a prompt driver would), counting the events.
fn settle_persists(
    ib: &mut Inbox,
    now: Instant,
    mut d: InboxDrain,
    events: &mut u64,
    arrived: &mut VecDeque<String>,
) -> Option<RequestId> {
    let mut send = d.send;
    arrived.extend(d.arrived.drain(..));
    while let Some(id) = d.persist {
        ib.handle(now, InboxInput::PersistDone { id, result: Ok(()) });
        *events += 1;
        d = drain_inbox(ib);
        send = send.or(d.send);
        arrived.extend(d.arrived.drain(..));
    }
    send
}

/// The inbox polling `polls` times; each answer carries `per_poll` new messages, which the
/// "agent" then peeks and pops (each pop is a persisted state change).
fn inbox_loop(polls: u64, per_poll: u64) -> Result<InboxRun, String> {
    let cfg = InboxConfig::new(bench_platform()?, BENCH_WS, Secret::new(BENCH_TOKEN));
    let base = unix_micros_now() - 3_600_000_000;
    // Pages are built before the clock starts: they stand for the network, not the machine.
    let pages: Vec<Vec<u8>> = (0..polls)
        .map(|p| {
            let rows: Vec<Value> = (0..per_poll)
                .map(|k| activity_row(1 + p * per_poll + k, base))
                .collect();
            serde_json::to_vec(&Value::Array(rows)).unwrap_or_default()
        })
        .collect();
    let first_page = serde_json::to_vec(&json!([activity_row(0, base)])).unwrap_or_default();
    let origin = Instant::now();
    let mut now = origin;
    let started = Instant::now();
    let mut ib = Inbox::new(cfg, None, now, 11);
    let (mut events, mut tool_ops, mut messages) = (0u64, 0u64, 0u64);
    let mut arrived = VecDeque::new();
    let first = drain_inbox(&mut ib).send.ok_or("no first poll")?;
    // The backlog answer with one message gives the inbox its cursor.
    now += Duration::from_millis(2);
    ib.handle(
        now,
        InboxInput::HttpResponse {
            id: first,
            status: 200,
            retry_after: None,
            body: first_page,
        },
    );
    events += 1;
    let d = drain_inbox(&mut ib);
    let mut pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived);
    for page in pages {
        // Agent side: peek, then pop everything that arrived.
        if !arrived.is_empty() {
            std::hint::black_box(ib.peek(10));
            tool_ops += 1;
        }
        while let Some(id) = arrived.pop_front() {
            ib.pop(&id).ok_or("pop of an arrived message failed")?;
            tool_ops += 1;
            messages += 1;
            let d = drain_inbox(&mut ib);
            pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived).or(pending);
        }
        if pending.is_none() {
            let at = ib.poll_timeout().ok_or("inbox has nothing scheduled")?;
            now = now.max(at);
            ib.handle_timeout(now);
            events += 1;
            let d = drain_inbox(&mut ib);
            pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived);
        }
        let id = pending.take().ok_or("no poll after the timeout")?;
        now += Duration::from_millis(2);
        ib.handle(
            now,
            InboxInput::HttpResponse {
                id,
                status: 200,
                retry_after: None,
                body: page,
            },
        );
        events += 1;
        let d = drain_inbox(&mut ib);
        pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived);
    }
    let elapsed = started.elapsed();
    let status = ib.status();
    if status.polls_sent < polls {
        return Err(format!("only {} polls sent", status.polls_sent));
    }
    Ok(InboxRun {
        throughput: Throughput { events, elapsed },
        polls: status.polls_sent,
        messages,
        tool_ops,
        handled: status.handled,
    })
}

fn best_of<T>(
    reps: usize,
    mut run: impl FnMut() -> Result<T, String>,
    rate: impl Fn(&T) -> f64,
) -> Result<(T, Vec<f64>), String> {
    let mut best: Option<T> = None;
    let mut rates = Vec::new();
    for _ in 0..reps {
        let r = run()?;
        rates.push(rate(&r));
        if best.as_ref().is_none_or(|b| rate(&r) > rate(b)) {
            best = Some(r);
        }
    }
    best.map(|b| (b, sorted(rates)))
        .ok_or_else(|| "no repetitions".to_owned())
}

/// Per-op costs of one kind (pop or arrival) over a run.
#[derive(Default)]
struct OpCosts {
    /// µs per op: the call, draining its actions, and the `PersistDone` of its write.
    us: Vec<f64>,
    /// Bytes each op asked to write (journal lines, or the whole snapshot of a compaction).
    bytes: Vec<f64>,
    /// µs of the ops whose write was a snapshot.
    snapshot_us: Vec<f64>,
}

impl OpCosts {
    fn record(&mut self, elapsed: Duration, write: Option<&StateWrite>) {
        let us = elapsed.as_secs_f64() * 1e6;
        let bytes = write.map_or(0.0, |w| w.bytes.len() as f64);
        self.us.push(us);
        self.bytes.push(bytes);
        if write.is_some_and(|w| w.snapshot) {
            self.snapshot_us.push(us);
        }
    }

    fn us_at(&self, q: f64) -> f64 {
        percentile(&sorted(self.us.clone()), q)
    }

    /// The typical write: the median op's, a journal append.
    fn append_bytes(&self) -> f64 {
        percentile(&sorted(self.bytes.clone()), 0.5)
    }

    /// "p50 / p99 µs".
    fn us_cell(&self) -> String {
        format!("{:.1} / {:.1}", self.us_at(0.5), self.us_at(0.99))
    }
}

/// One run of [`state_cost_run`].
struct StateCostRun {
    handled: usize,
    pops: OpCosts,
    arrivals: OpCosts,
    /// The last snapshot and a pop's journal line, for the disk measurement.
    snapshot: Vec<u8>,
    pop_line: Vec<u8>,
}

impl StateCostRun {
    /// Mean µs per message (its arrival and its pop), compactions included.
    fn amortised_us(&self) -> f64 {
        mean(&self.pops.us) + mean(&self.arrivals.us)
    }

    /// Mean bytes written per message (its arrival and its pop), compactions included.
    fn amortised_bytes(&self) -> f64 {
        mean(&self.pops.bytes) + mean(&self.arrivals.bytes)
    }

    /// The slowest single op.
    fn worst_us(&self) -> f64 {
        self.pops.us_at(1.0).max(self.arrivals.us_at(1.0))
    }
}

/// The cost of the inbox state at `handled` handled ids: an inbox whose handled-id set is
/// capped at `handled` is filled honestly (that many messages arrive one per poll answer and
/// are popped, untimed), then `measured` more messages each arrive (a poll answer with one
/// new row) and are popped, each op timed with its write settled.
fn state_cost_run(handled: usize, measured: usize) -> Result<StateCostRun, String> {
    let mut cfg = InboxConfig::new(bench_platform()?, BENCH_WS, Secret::new(BENCH_TOKEN));
    cfg.max_handled = handled;
    let base = unix_micros_now() - 3_600_000_000;
    let mut now = Instant::now();
    let mut ib = Inbox::new(cfg, None, now, 13);
    let (mut events, mut arrived) = (0u64, VecDeque::new());
    let mut pending = drain_inbox(&mut ib).send;
    let mut run = StateCostRun {
        handled,
        pops: OpCosts::default(),
        arrivals: OpCosts::default(),
        snapshot: Vec::new(),
        pop_line: Vec::new(),
    };
    for n in 0..handled + measured {
        if pending.is_none() {
            let at = ib.poll_timeout().ok_or("inbox has nothing scheduled")?;
            now = now.max(at);
            ib.handle_timeout(now);
            let d = drain_inbox(&mut ib);
            pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived);
        }
        let id = pending.take().ok_or("no poll after the timeout")?;
        // The page stands for the network: built before the clock starts.
        let row = activity_row(u64::try_from(n).unwrap_or(u64::MAX), base);
        let body = serde_json::to_vec(&json!([row])).map_err(|e| e.to_string())?;
        now += Duration::from_millis(2);
        let started = Instant::now();
        ib.handle(
            now,
            InboxInput::HttpResponse {
                id,
                status: 200,
                retry_after: None,
                body,
            },
        );
        let mut d = drain_inbox(&mut ib);
        let arrival_write = d.write.take();
        pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived);
        let arrival = started.elapsed();
        let msg = arrived.pop_front().ok_or("the new row was not delivered")?;
        let started = Instant::now();
        ib.pop(&msg).ok_or("pop of an arrived message failed")?;
        let mut d = drain_inbox(&mut ib);
        let pop_write = d.write.take();
        pending = settle_persists(&mut ib, now, d, &mut events, &mut arrived).or(pending);
        let pop = started.elapsed();
        if n >= handled {
            run.arrivals.record(arrival, arrival_write.as_ref());
            run.pops.record(pop, pop_write.as_ref());
        }
        if let Some(w) = arrival_write.filter(|w| w.snapshot) {
            run.snapshot = w.bytes;
        }
        if let Some(w) = pop_write {
            if w.snapshot {
                run.snapshot = w.bytes;
            } else {
                run.pop_line = w.bytes;
            }
        }
    }
    let status = ib.status();
    if status.handled != handled || status.pending != 0 {
        return Err(format!(
            "state ended at {} handled ids and {} queued (expected {handled} and 0)",
            status.handled, status.pending
        ));
    }
    Ok(run)
}

/// µs (p50) to append a journal line and to replace the snapshot atomically, with the
/// driver's own `persist` functions on real files (fsync included).
fn disk_write_cost(run: &StateCostRun, appends: usize) -> Result<(f64, f64), String> {
    let dir = temp_dir("inbox-state")?;
    let journal = dir.path().join("inbox.journal");
    let snapshot = dir.path().join("inbox.json");
    let io = |e: std::io::Error| format!("state write: {e}");
    persist::append_private(&journal, &run.pop_line, true).map_err(io)?;
    persist::write_private_atomic(&snapshot, &run.snapshot).map_err(io)?;
    let mut append_us = Vec::new();
    for _ in 0..appends {
        let started = Instant::now();
        persist::append_private(&journal, &run.pop_line, false).map_err(io)?;
        append_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let mut snapshot_us = Vec::new();
    for _ in 0..appends / 10 {
        let started = Instant::now();
        persist::write_private_atomic(&snapshot, &run.snapshot).map_err(io)?;
        snapshot_us.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok((
        percentile(&sorted(append_us), 0.5),
        percentile(&sorted(snapshot_us), 0.5),
    ))
}

/// Issue #15 item 3: an arrival or a pop costs the same at 10 and at 10,000 handled ids.
fn inbox_state_cost(opts: &Options, report: &mut Report) -> Result<(), String> {
    let (messages, reps, appends) = if opts.quick {
        (2_000, 3, 50)
    } else {
        (20_000, 5, 200)
    };
    progress(&format!(
        "core: inbox state cost at 10 and 10,000 handled ids, {messages} messages × {reps} runs"
    ));
    let mut runs = Vec::new();
    for handled in [10, 10_000] {
        let (best, _) = best_of(
            reps,
            || state_cost_run(handled, messages),
            |r| 1.0 / r.amortised_us(),
        )?;
        runs.push(best);
    }
    let [small, large] = &runs[..] else {
        return Err("expected two runs".to_owned());
    };
    report.line("### Inbox state cost at 10 and 10,000 handled ids (simulated time, no I/O)");
    report.blank();
    report.line(&format!(
        "An `Inbox` whose handled-id set is full at N (the cap set to N; the product default is 10,000), reached by \
         feeding N messages through it (one new row per poll answer, then `pop`); then {messages} more messages, each \
         timed twice: the arrival (`handle` of a poll answer with one new row) and the `pop`, each with its actions \
         drained and its write settled (`PersistDone`). Bytes are what the op asked to write: an `Append` of journal \
         lines, or a `Persist` of the whole snapshot when the journal has outgrown the last one (compaction). \
         Amortised = the mean over all {messages} messages of arrival + pop, compactions included (a compaction \
         falls mostly on an arrival: its longer line is the one that crosses the threshold). Best of {reps} runs \
         (by µs per message)."
    ));
    report.blank();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let compactions = r.pops.snapshot_us.len() + r.arrivals.snapshot_us.len();
            let snapshot_us: Vec<f64> = r
                .pops
                .snapshot_us
                .iter()
                .chain(&r.arrivals.snapshot_us)
                .copied()
                .collect();
            vec![
                format!("{}", r.handled),
                r.pops.us_cell(),
                format!("{:.0}", r.pops.append_bytes()),
                r.arrivals.us_cell(),
                format!("{:.0}", r.arrivals.append_bytes()),
                format!("{:.1} µs, {:.0} B", r.amortised_us(), r.amortised_bytes()),
                format!(
                    "{compactions} × {:.1} KB, {:.0} µs each (median)",
                    r.snapshot.len() as f64 / 1e3,
                    percentile(&sorted(snapshot_us), 0.5)
                ),
            ]
        })
        .collect();
    report.table(
        &[
            "N handled",
            "pop µs p50 / p99",
            "bytes per pop (Append)",
            "arrival µs p50 / p99",
            "bytes per arrival (Append)",
            "per message (arrival + pop), amortised incl. compaction",
            "compactions (snapshot)",
        ],
        &rows,
    );
    let ratio = |f: &dyn Fn(&StateCostRun) -> f64| fmt_ratio(f(large) / f(small));
    let pop_ratio = ratio(&|r| r.pops.us_at(0.5));
    report.line(&format!(
        "Ratio 10,000 ÷ 10: pop p50 {pop_ratio}, arrival p50 {}, amortised µs per message {}, amortised bytes per \
         message {} (a snapshot is written once the journal outgrows the last one, so each journaled byte pays for \
         at most one snapshot byte: at most 2× the journal's bytes whatever N).",
        ratio(&|r| r.arrivals.us_at(0.5)),
        ratio(&StateCostRun::amortised_us),
        ratio(&StateCostRun::amortised_bytes),
    ));
    report.blank();
    let (append_us, snapshot_us) = disk_write_cost(large, appends)?;
    report.line(&format!(
        "Disk side (real files in a temp dir, `molecule_mcp_io_tokio::persist`, fsync included, p50 of {appends} \
         appends and {} snapshots): appending a {} B pop line (`append_private`) {append_us:.0} µs; rewriting the \
         {:.1} KB snapshot at 10,000 handled ids atomically (`write_private_atomic`) {snapshot_us:.0} µs ({}).",
        appends / 10,
        large.pop_line.len(),
        large.snapshot.len() as f64 / 1e3,
        fmt_ratio(snapshot_us / append_us)
    ));
    report.blank();
    let p99 = large.pops.us_at(0.99);
    let amortised = large.amortised_us();
    report.line(&format!(
        "Goal: pop at 10,000 handled ids ≤ 100 µs: measured {p99:.1} µs (p99; p50 {:.1} µs; arrival + pop amortised \
         incl. compaction {amortised:.1} µs; slowest single op of the run {:.0} µs) — **{}**.",
        large.pops.us_at(0.5),
        large.worst_us(),
        if p99 <= 100.0 && amortised <= 100.0 {
            "met"
        } else {
            "missed"
        }
    ));
    report.blank();
    report.line(&format!(
        "Goal: the same cost at 10 and 10,000 handled ids: cost ratio 10,000 ÷ 10: {pop_ratio} (pop p50, {:+.2} µs; \
         the handled ids are an ordered set, O(log N) per insert and eviction).",
        large.pops.us_at(0.5) - small.pops.us_at(0.5)
    ));
    report.blank();
    Ok(())
}

fn core_section(opts: &Options, report: &mut Report) -> Result<(), String> {
    let (beats, reps) = if opts.quick {
        (50_000, 3)
    } else {
        (1_000_000, 5)
    };
    let (idle_polls, busy_polls, per_poll) = if opts.quick {
        (20_000, 400, 5)
    } else {
        (500_000, 2_000, 5)
    };
    progress(&format!(
        "core: session {beats} beats × {reps} reps (steady and 401 mix), inbox {idle_polls} idle polls, {busy_polls} polls × {per_poll} messages"
    ));
    let rate = |t: &Throughput| t.per_sec();
    let (steady, steady_rates) = best_of(reps, || session_loop(beats, false), rate)?;
    let (mix, mix_rates) = best_of(reps, || session_loop(beats, true), rate)?;
    let (idle, idle_rates) = best_of(
        reps,
        || inbox_loop(idle_polls, 0),
        |r| r.throughput.per_sec(),
    )?;
    let (busy, busy_rates) = best_of(
        reps.min(3),
        || inbox_loop(busy_polls, per_poll),
        |r| r.throughput.per_sec(),
    )?;

    report.line("## 2. Core throughput (one machine, simulated time, one thread)");
    report.blank();
    report.line(&format!(
        "Every `handle`/`handle_timeout` call is one event; the loop also drains every action (as a driver must) and \
         builds each input (`Vec<u8>` body). Session: register → first beat, then per beat: `handle(200 response)` + \
         `handle_timeout` (next beat: builds the JSON body, URL, headers); bodies carry `platform_inbound_secret` like \
         the stub's. 401 mix: beats 40–49 of every 50 answered 401 (WARN, WARN, ERROR, silent, then INFO on recovery). \
         Best of {reps} repetitions (median in brackets)."
    ));
    report.blank();
    let row = |name: &str, t: &Throughput, rates: &[f64]| {
        vec![
            name.to_owned(),
            format!("{}", t.events),
            format!(
                "{} (median {})",
                fmt_rate(t.per_sec()),
                fmt_rate(percentile(rates, 0.5))
            ),
            format!("{:.0} ns", t.ns_per_event()),
        ]
    };
    let rows = vec![
        row("`Session`, steady heartbeats (200)", &steady, &steady_rates),
        row(
            "`Session`, heartbeats with 401 escalation mix",
            &mix,
            &mix_rates,
        ),
        row(
            &format!("`Inbox`, idle polls (empty pages), {} polls", idle.polls),
            &idle.throughput,
            &idle_rates,
        ),
        row(
            &format!(
                "`Inbox`, {} polls × {per_poll} messages, peek + pop each ({} tool calls)",
                busy.polls, busy.tool_ops
            ),
            &busy.throughput,
            &busy_rates,
        ),
    ];
    report.table(&["workload", "events", "events/s", "ns/event"], &rows);
    let busy_us = busy.throughput.elapsed.as_secs_f64() * 1e6 / busy.messages.max(1) as f64;
    report.line(&format!(
        "Inbox with messages: {} messages in {:.2} s = {busy_us:.1} µs per message end to end (poll answer, arrival, state \
         writes, peek, pop); the handled-id set ended at {} ids. Pops and arrivals append journal lines; the whole state \
         (queue + handled ids, capped at 10,000) is re-encoded only when the journal outgrows the last snapshot.",
        busy.messages,
        busy.throughput.elapsed.as_secs_f64(),
        busy.handled
    ));
    report.blank();
    let goal = 10e6;
    report.line(&format!(
        "Goal ≥ 10 M events/s through one `Session`: steady {:.2} M/s → **{}**.",
        steady.per_sec() / 1e6,
        if steady.per_sec() >= goal {
            "met"
        } else {
            "missed"
        }
    ));
    report.blank();
    inbox_state_cost(opts, report)
}

// ---------------------------------------------------------------------------------------
// 3. Tool-call overhead
// ---------------------------------------------------------------------------------------

async fn tools(opts: &Options, report: &mut Report) -> Result<(), String> {
    let (calls, warmup, block) = if opts.quick {
        (500usize, 50usize, 50usize)
    } else {
        (5_000, 300, 100)
    };
    let stub = PlatformStub::start()
        .await
        .map_err(|e| format!("stub: {e}"))?;
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("bench-agent").poll());
    for i in 1..=3 {
        stub.create_workspace(WorkspaceSpec::named(&format!("peer-{i}")).poll());
    }
    let url = stub.url();
    let dir = temp_dir("tools")?;
    let state = dir.as_str().to_owned();
    let env = [
        ("PLATFORM_URL", url.as_str()),
        ("WORKSPACE_ID", ws.as_str()),
        ("MOLECULE_WORKSPACE_TOKEN", token.as_str()),
        ("CONFIGS_DIR", state.as_str()),
        ("MOLECULE_MCP_DISABLE_HEARTBEAT", "1"),
        ("MOLECULE_MCP_DISABLE_INBOX", "1"),
    ];
    let mut p = McpProcess::spawn_bin(&opts.bin, &env, &[]).map_err(|e| format!("spawn: {e}"))?;
    p.initialize(STEP)
        .await
        .ok_or_else(|| format!("no initialize reply; stderr: {}", p.stderr()))?;
    let pid = p.pid().ok_or("no pid")?;
    let client = HttpClient::new();
    let platform = PlatformUrl::parse(&url).map_err(|e| format!("{e:?}"))?;
    let peers_url = format!("{url}/registry/{ws}/peers");
    let mut next_id = 10i64;

    progress(&format!(
        "tools: {warmup} warm-up + {calls} list_peers calls through the binary and {calls} direct, blocks of {block}"
    ));
    let mut through = Vec::with_capacity(calls);
    let mut direct = Vec::with_capacity(calls);
    let mut cpu_ticks = 0u64;
    let mut round = 0usize;
    while through.len() < calls {
        let measuring = round * block >= warmup;
        let cpu0 = proc_cpu_ticks(pid).unwrap_or(0);
        for _ in 0..block {
            next_id += 1;
            let t = Instant::now();
            let reply = p
                .request(
                    next_id,
                    "tools/call",
                    json!({"name": "list_peers", "arguments": {}}),
                    STEP,
                )
                .await
                .ok_or_else(|| format!("no list_peers reply; stderr: {}", p.stderr()))?;
            let rtt = t.elapsed();
            let text = reply["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default();
            if reply["result"]["isError"].as_bool() == Some(true) || !text.contains("peer-1") {
                return Err(format!("list_peers did not list the peers: {reply}"));
            }
            if measuring {
                through.push(ms(rtt));
            }
        }
        if measuring {
            cpu_ticks += proc_cpu_ticks(pid).unwrap_or(0).saturating_sub(cpu0);
        }
        for _ in 0..block {
            let t = Instant::now();
            let request = http::Request::get(peers_url.as_str())
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(http::header::ORIGIN, platform.origin())
                .header("X-Workspace-ID", ws.as_str())
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let resp = client
                .send(request, Duration::from_secs(10))
                .await
                .map_err(|e| format!("direct GET: {}", e.message))?;
            let peers = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            let rtt = t.elapsed();
            if resp.status != 200 || peers != 3 {
                return Err(format!(
                    "direct GET answered {} with {peers} peers",
                    resp.status
                ));
            }
            if measuring {
                direct.push(ms(rtt));
            }
        }
        round += 1;
    }
    p.close_stdin();
    let _ = p.wait_exit(Duration::from_secs(10)).await;
    let (through, direct) = (sorted(through), sorted(direct));

    report.line("## 3. Tool-call overhead (`list_peers` → loopback stub)");
    report.blank();
    report.line(&format!(
        "{} sequential `tools/call list_peers` (3 peers) through the release binary (single workspace, heartbeat and inbox \
         disabled so only the tool talks to the stub), timed at the client end of the stdio pipes; baseline: the same \
         `GET /registry/:id/peers` (same headers) sent directly from the bench \
         process with io-tokio's pooled \
         `HttpClient` and its JSON parsed. Interleaved in blocks of {block} after {warmup} warm-up calls of each.",
        through.len()
    ));
    report.blank();
    let row = |name: &str, v: &[f64]| {
        vec![
            name.to_owned(),
            format!("{}", v.len()),
            fmt_ms(percentile(v, 0.5)),
            fmt_ms(percentile(v, 0.9)),
            fmt_ms(percentile(v, 0.99)),
            fmt_ms(mean(v)),
        ]
    };
    report.table(
        &["path", "calls", "p50", "p90", "p99", "mean"],
        &[
            row("through molecule-mcp (MCP stdio → tool → HTTP)", &through),
            row("direct pooled `HttpClient`", &direct),
        ],
    );
    let (b50, d50, b99, d99) = (
        percentile(&through, 0.5),
        percentile(&direct, 0.5),
        percentile(&through, 0.99),
        percentile(&direct, 0.99),
    );
    let cpu_per_call_us =
        cpu_ticks as f64 / clock_ticks_per_sec() as f64 * 1e6 / through.len().max(1) as f64;
    report.line(&format!(
        "Overhead of the binary = binary RTT − direct RTT: p50 {} ({} the direct RTT), p99 {}. molecule-mcp process CPU: \
         {cpu_per_call_us:.0} µs per call. Goal p50 < 1 ms → **{}**.",
        fmt_ms(b50 - d50),
        fmt_ratio(b50 / d50),
        fmt_ms(b99 - d99),
        if b50 < 1.0 { "met" } else { "missed" }
    ));
    report.blank();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Scale
// ---------------------------------------------------------------------------------------

struct ScaleCase {
    workspaces: usize,
    inbox: bool,
    heartbeat_secs: u64,
    poll_secs: u64,
    window: Duration,
    /// At the production cadence, measured after the inboxes went idle (figures as seen,
    /// no projection).
    real: bool,
}

struct ScaleResult {
    case_label: String,
    registered_after: Duration,
    window: Duration,
    heartbeats: u64,
    polls: u64,
    other: u64,
    cpu_secs: f64,
    rss_kb: u64,
    hwm_kb: u64,
    threads: u64,
    open_fds: usize,
    stub_cpu_secs: f64,
    warn_lines: usize,
    warn_window: usize,
    warn_top: Vec<(usize, String)>,
    /// Requests per second at the production cadence, to project an accelerated run to;
    /// `None` for a run at that cadence (its measured share is the figure).
    real_rate: Option<f64>,
}

impl ScaleResult {
    fn requests(&self) -> u64 {
        self.heartbeats + self.polls
    }
    fn share(&self) -> f64 {
        self.cpu_secs / self.window.as_secs_f64()
    }
    /// CPU share at the real cadence: CPU per request × the real request rate.
    fn real_share(&self) -> f64 {
        match self.real_rate {
            Some(rate) => self.cpu_secs / self.requests().max(1) as f64 * rate,
            None => self.share(),
        }
    }
}

async fn scale_case(opts: &Options, case: &ScaleCase) -> Result<ScaleResult, String> {
    let n = case.workspaces;
    let stub = PlatformStub::start()
        .await
        .map_err(|e| format!("stub: {e}"))?;
    let seeded = Instant::now();
    let workspaces: Vec<(String, String)> = (0..n)
        .map(|i| stub.create_workspace(WorkspaceSpec::named(&format!("scale-{i}")).poll()))
        .collect();
    progress(&format!(
        "scale: seeded {n} workspaces in {:.2} s",
        seeded.elapsed().as_secs_f64()
    ));
    let dir = temp_dir("scale")?;
    let list: Vec<Value> = workspaces
        .iter()
        .map(|(id, token)| json!({"id": id, "token": token}))
        .collect();
    let file = dir.join("workspaces.json");
    std::fs::write(&file, serde_json::to_vec(&list).unwrap_or_default())
        .map_err(|e| format!("write {}: {e}", file.display()))?;
    let state_dir = temp_dir("scale-state")?;
    let (url, state, file_s) = (
        stub.url(),
        state_dir.as_str().to_owned(),
        file.display().to_string(),
    );
    let (hb, poll) = (case.heartbeat_secs.to_string(), case.poll_secs.to_string());
    let mut env = vec![
        ("PLATFORM_URL", url.as_str()),
        ("CONFIGS_DIR", state.as_str()),
        ("MOLECULE_MCP_HEARTBEAT_INTERVAL_SECS", hb.as_str()),
    ];
    if case.inbox {
        env.push(("MOLECULE_MCP_INBOX_POLL_INTERVAL_SECS", poll.as_str()));
    } else {
        env.push(("MOLECULE_MCP_DISABLE_INBOX", "1"));
    }
    let started = Instant::now();
    let mut p = McpProcess::spawn_bin(&opts.bin, &env, &["--workspaces-file", file_s.as_str()])
        .map_err(|e| format!("spawn: {e}"))?;
    p.initialize(Duration::from_secs(60))
        .await
        .ok_or_else(|| format!("no initialize reply; stderr: {}", p.stderr()))?;
    let pid = p.pid().ok_or("no pid")?;

    // Wait until the stub has seen every workspace register and heartbeat at least once.
    let mut waiting: Vec<&str> = workspaces.iter().map(|(id, _)| id.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !waiting.is_empty() {
        waiting.retain(|id| {
            stub.workspace(id)
                .is_none_or(|w| w.register_count == 0 || w.heartbeat_count == 0)
        });
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {n} workspaces never registered and heartbeated; stderr tail: {}",
                waiting.len(),
                tail(&p.stderr())
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        stub.clear_journal();
    }
    let registered_after = started.elapsed();
    progress(&format!(
        "scale: all {n} registered and beating after {:.1} s; settling",
        registered_after.as_secs_f64()
    ));
    // Settle: one more beat (and poll) interval plus 5 s, so start-up writes are done and every
    // session is on its steady grid. At the production cadence the inboxes must also have
    // gone idle: the active window after start, then the ramp 10 s, 20 s, 30 s (+ 20 %).
    let settle = Duration::from_secs(
        case.heartbeat_secs
            .max(if case.inbox { case.poll_secs } else { 0 })
            + 5,
    );
    let settle = if case.real && case.inbox {
        settle.max(ACTIVE_WINDOW.saturating_sub(registered_after) + Duration::from_secs(75))
    } else {
        settle
    };
    progress(&format!("scale: settling {:.0} s", settle.as_secs_f64()));
    tokio::time::sleep(settle).await;

    stub.clear_journal();
    let window_start = SystemTime::now();
    let warn_before = count_warns(&p.stderr());
    let cpu0 = proc_cpu_ticks(pid).ok_or("cannot read /proc/<pid>/stat")?;
    let stub_cpu0 = proc_cpu_ticks(std::process::id()).unwrap_or(0);
    let t0 = Instant::now();
    progress(&format!(
        "scale: measuring {:.0} s",
        case.window.as_secs_f64()
    ));
    tokio::time::sleep(case.window).await;
    let cpu1 = proc_cpu_ticks(pid).ok_or("cannot read /proc/<pid>/stat")?;
    let stub_cpu1 = proc_cpu_ticks(std::process::id()).unwrap_or(0);
    let window = t0.elapsed();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0);
    let warn_window = count_warns(&p.stderr()).saturating_sub(warn_before);
    let window_end = SystemTime::now();
    let rss_kb = proc_status(pid, "VmRSS").unwrap_or(0);
    let hwm_kb = proc_status(pid, "VmHWM").unwrap_or(0);
    let threads = proc_status(pid, "Threads").unwrap_or(0);
    let inside = move |e: &JournalEntry| e.at >= window_start && e.at <= window_end;
    let heartbeats = journal_count(&stub, |e| {
        inside(e) && e.path == "/registry/heartbeat" && e.status == Some(200)
    })
    .await;
    let polls = journal_count(&stub, |e| {
        inside(e) && e.path.ends_with("/activity") && e.method == "GET" && e.status == Some(200)
    })
    .await;
    let all = journal_count(&stub, inside).await;
    stub.clear_journal();
    p.close_stdin();
    if p.wait_exit(Duration::from_secs(20)).await.is_none() {
        return Err("molecule-mcp did not exit within 20 s of stdin EOF".to_owned());
    }
    let stderr = p.stderr();
    let warn_lines = count_warns(&stderr);
    let tck = clock_ticks_per_sec() as f64;
    let cpu_secs = cpu1.saturating_sub(cpu0) as f64 / tck;
    let stub_cpu_secs = stub_cpu1.saturating_sub(stub_cpu0) as f64 / tck;
    // Accelerated runs are projected to the production cadence of idle workspaces: a beat
    // every 20 s and, with the inbox, a poll every 30 s (the idle cadence's ceiling).
    let real_rate = (!case.real).then(|| {
        n as f64 / 20.0
            + if case.inbox {
                n as f64 / IDLE_MAX.as_secs_f64()
            } else {
                0.0
            }
    });
    Ok(ScaleResult {
        case_label: format!("{n}"),
        registered_after,
        window,
        heartbeats,
        polls,
        other: all - heartbeats - polls,
        cpu_secs,
        rss_kb,
        hwm_kb,
        threads,
        open_fds,
        stub_cpu_secs,
        warn_lines,
        warn_window,
        warn_top: warn_summary(&stderr),
        real_rate,
    })
}

fn count_warns(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count()
}

fn parse_sizes(flag: &str, list: &str) -> Result<Vec<usize>, String> {
    if list.trim() == "none" || list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse::<usize>()
                .map_err(|e| format!("{flag} {list:?}: {e}"))
        })
        .collect()
}

/// The most frequent WARN/ERROR messages (digits blanked so ids and counts group), with counts.
fn warn_summary(stderr: &str) -> Vec<(usize, String)> {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        // Drop the timestamp and the workspace field; blank digits; keep it short.
        let text = line.split_once(' ').map_or(line, |(_, rest)| rest);
        let text = text
            .rsplit_once(" workspace=")
            .map_or(text, |(msg, _)| msg)
            .trim();
        let mut key = String::new();
        for c in text.chars().take(160) {
            let c = if c.is_ascii_digit() { '#' } else { c };
            if !(c == '#' && key.ends_with('#')) {
                key.push(c);
            }
        }
        *counts.entry(key).or_default() += 1;
    }
    let mut list: Vec<(usize, String)> = counts.into_iter().map(|(k, v)| (v, k)).collect();
    list.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
    list.truncate(3);
    list
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Runs `core_memory` (built next to this program) and returns its `key value` lines.
fn core_memory(n: usize, parts: &str) -> Result<Vec<(String, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let bin = exe.with_file_name("core_memory");
    let out = std::process::Command::new(&bin)
        .args([n.to_string().as_str(), "6", parts])
        .output()
        .map_err(|e| format!("{}: {e} (build it: bash scripts/bench.sh)", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "core_memory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

/// Memory per workspace in the core alone (no driver, no sockets): the part of the
/// 10,000-workspace figure that is the machines' own state.
fn core_memory_report(report: &mut Report) -> Result<(), String> {
    let n = 10_000;
    let mut rows = Vec::new();
    for parts in ["both", "session", "inbox"] {
        progress(&format!("scale: core memory, {n} workspaces, {parts}"));
        let kv = core_memory(n, parts)?;
        let get = |k: &str| {
            kv.iter()
                .find(|(key, _)| key == k)
                .map_or(f64::NAN, |(_, v)| *v)
        };
        rows.push(vec![
            match parts {
                "both" => "session + inbox (production)",
                "session" => "session only",
                _ => "inbox only",
            }
            .to_owned(),
            format!("{:.0} B", get("built_bytes_per_workspace")),
            format!("{:.0} B", get("peak_bytes_per_workspace")),
            format!("**{:.0} B**", get("steady_bytes_per_workspace")),
            format!(
                "{:.1} MiB",
                get("steady_bytes_per_workspace") * n as f64 / 1_048_576.0
            ),
        ]);
    }
    report.line(&format!(
        "Core state per workspace (`core_memory {n} 6 <parts>`: a `Fleet` of {n} workspaces driven in simulated time \
         by an in-process fake platform for 6 minutes, i.e. past the inbox's active window; growth of `VmRSS` per \
         workspace from before the configuration was built, allocator overhead included; no driver, no sockets):"
    ));
    report.blank();
    report.table(
        &[
            "workspace",
            "after construction",
            "peak",
            "steady (idle)",
            "× 10,000",
        ],
        &rows,
    );
    Ok(())
}

async fn scale(opts: &Options, report: &mut Report) -> Result<(), String> {
    let fast_window = opts.window.unwrap_or(if opts.quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(20)
    });
    let real_window = Duration::from_secs(40);
    let mut cases = Vec::new();
    let sizes = opts
        .sizes
        .clone()
        .unwrap_or(if opts.quick { vec![200] } else { vec![1_000] });
    for &n in &sizes {
        cases.push(ScaleCase {
            workspaces: n,
            inbox: false,
            heartbeat_secs: 2,
            poll_secs: 5,
            window: fast_window,
            real: false,
        });
        cases.push(ScaleCase {
            workspaces: n,
            inbox: true,
            heartbeat_secs: 4,
            poll_secs: 1,
            window: fast_window,
            real: false,
        });
    }
    let real_sizes =
        opts.real_sizes
            .clone()
            .unwrap_or(if opts.quick { Vec::new() } else { vec![10_000] });
    for &n in &real_sizes {
        cases.push(ScaleCase {
            workspaces: n,
            inbox: false,
            heartbeat_secs: 20,
            poll_secs: 5,
            window: real_window,
            real: true,
        });
        cases.push(ScaleCase {
            workspaces: n,
            inbox: true,
            heartbeat_secs: 20,
            poll_secs: 5,
            window: real_window,
            real: true,
        });
    }
    let mut results = Vec::new();
    for case in &cases {
        progress(&format!(
            "scale: {} workspaces, inbox {}, heartbeat {} s{}",
            case.workspaces,
            if case.inbox { "on" } else { "off" },
            case.heartbeat_secs,
            if case.inbox {
                format!(", poll {} s", case.poll_secs)
            } else {
                String::new()
            }
        ));
        results.push(scale_case(opts, case).await?);
    }

    report.line("## 4. Scale: one process, many workspaces");
    report.blank();
    report.line(
        "`molecule-mcp --workspaces-file <json>` against the loopback stub seeded with N poll-mode workspaces (idle feeds: \
         every inbox poll is answered with an empty page). Timing starts once the stub has seen every workspace register \
         and heartbeat, plus a settle time of one interval + 5 s. CPU = utime+stime of the molecule-mcp process only \
         (`/proc/<pid>/stat`) over the window ÷ wall time = share of one core. Request counts = 2xx heartbeats and \
         inbox polls the stub journaled inside the window. **At the real cadence**: for the runs at 20 s heartbeats \
         (the production cadence), the measured share itself, taken after every inbox went idle (settled past the \
         3-minute active window and the ramp to 30 s; no agent is connected, so nothing waits); for the accelerated runs, \
         CPU per request × the production rate of idle workspaces (N/20 heartbeats/s plus N/30 polls/s with the inbox). RSS = `VmRSS` at the end of \
         the window; peak = `VmHWM` (includes the start-up burst: every workspace registers at once). fds = open \
         file descriptors of the process at the end of the window (≈ pooled connections + 10). Stub CPU = the bench \
         process (the stub plus this monitor) over the same window, to show the stub was not the bottleneck.",
    );
    report.blank();
    let mut rows = Vec::new();
    for (case, r) in cases.iter().zip(&results) {
        rows.push(vec![
            r.case_label.clone(),
            if case.inbox {
                format!("on ({} s)", case.poll_secs)
            } else {
                "off".to_owned()
            },
            format!("{} s", case.heartbeat_secs),
            format!("{:.1} s", r.registered_after.as_secs_f64()),
            format!("{:.0} s", r.window.as_secs_f64()),
            format!(
                "{:.0} + {:.0}",
                r.heartbeats as f64 / r.window.as_secs_f64(),
                r.polls as f64 / r.window.as_secs_f64()
            ),
            format!("{:.1} %", r.share() * 100.0),
            format!("{:.1} µs", r.cpu_secs * 1e6 / r.requests().max(1) as f64),
            format!("**{:.2} %**", r.real_share() * 100.0),
            fmt_mib(r.rss_kb as f64),
            fmt_mib(r.hwm_kb as f64),
            format!("{} / {}", r.threads, r.open_fds),
            format!("{:.0} %", r.stub_cpu_secs / r.window.as_secs_f64() * 100.0),
            format!("{} ({} in window)", r.warn_lines, r.warn_window),
        ]);
    }
    report.table(
        &[
            "N",
            "inbox",
            "heartbeat",
            "all beating after",
            "window",
            "req/s seen (hb + poll)",
            "CPU (measured)",
            "CPU per request",
            "CPU at the real cadence",
            "RSS",
            "peak RSS",
            "threads / fds",
            "stub CPU",
            "WARN/ERROR lines (whole run)",
        ],
        &rows,
    );
    for (case, r) in cases.iter().zip(&results) {
        for (count, text) in &r.warn_top {
            report.line(&format!(
                "- N={} inbox {} @ {} s: {count}× `{}`",
                case.workspaces,
                if case.inbox { "on" } else { "off" },
                case.heartbeat_secs,
                text.replace('`', "'")
            ));
        }
    }
    if results.iter().any(|r| !r.warn_top.is_empty()) {
        report.blank();
    }
    let other: u64 = results.iter().map(|r| r.other).sum();
    if other > 0 {
        report.line(&format!(
            "({other} other requests were journaled in the windows, e.g. register retries.)"
        ));
        report.blank();
    }
    let goal_rows: Vec<String> = cases
        .iter()
        .zip(&results)
        .filter(|(c, _)| c.workspaces == 10_000)
        .map(|(c, r)| {
            let cpu_ok = r.real_share() < 0.05;
            // 100 MB = 100·10⁶ bytes (the stricter reading).
            let mem_ok = (r.hwm_kb as f64) * 1024.0 < 100e6;
            format!(
                "10,000 workspaces, inbox {}, measured at {} s heartbeats: CPU at the real cadence {:.2} % ({}), peak RSS {} ({}).",
                if c.inbox { "on" } else { "off" },
                c.heartbeat_secs,
                r.real_share() * 100.0,
                if cpu_ok { "< 5 %: met" } else { "≥ 5 %: missed" },
                fmt_mib(r.hwm_kb as f64),
                if mem_ok { "< 100 MB: met" } else { "≥ 100 MB: missed" }
            )
        })
        .collect();
    for line in goal_rows {
        report.line(&format!("- {line}"));
    }
    report.blank();
    core_memory_report(report)?;
    report.blank();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Message → agent latency per cadence state (core/src/inbox/cadence.rs)
// ---------------------------------------------------------------------------------------

/// The cadence states whose latency is measured.
#[derive(Debug, Clone, Copy)]
enum LatencyState {
    Waiting,
    Active,
    Idle,
}

/// One simulated delivery: a fresh one-workspace fleet (inbox on, production defaults),
/// brought into `state`, a message put on the platform `offset` later; returns how long
/// until the fleet announced it (`Output::Arrived`), with the platform answering at once.
fn simulated_latency(state: LatencyState, offset: Duration, seed: u64) -> Result<Duration, String> {
    let platform = bench_platform()?;
    let plan = FleetPlan {
        workspaces: vec![WorkspacePlan {
            workspace_id: BENCH_WS.to_owned(),
            session: None,
            inbox: Some({
                let mut cfg = InboxConfig::new(platform, BENCH_WS, Secret::new("tok-latency"));
                cfg.debug_logs = false;
                cfg
            }),
            layout: StateLayout::new(false),
            state_dir_display: "/state".to_owned(),
            restored: Restored::default(),
        }],
        multi_workspace: false,
    };
    #[allow(clippy::disallowed_methods)] // the simulated clock needs some origin
    let t0 = Instant::now();
    let mut fleet = Fleet::new(plan, t0, seed);
    let mut now = t0;
    let base = unix_micros_now();
    let mut posted: Option<(Instant, Value)> = None;
    // Before the message: idle needs the active window and the ramp to 30 s behind it.
    let lead = match state {
        LatencyState::Waiting | LatencyState::Active => Duration::ZERO,
        LatencyState::Idle => ACTIVE_WINDOW + Duration::from_secs(120),
    };
    if matches!(state, LatencyState::Waiting) {
        fleet.handle(now, WsInput::Agent(AgentSignal::WaitStarted));
    }
    let post_at = t0 + lead + offset;
    let end = post_at + Duration::from_secs(120);
    let mut row_n = 0u64;
    loop {
        let mut inputs = Vec::new();
        while let Some(output) = fleet.poll_output() {
            match output {
                Output::SendHttp(r) => {
                    let rows: Vec<Value> = match &posted {
                        Some((_, row))
                            if r.url.contains("since_id") || r.url.contains("since_secs") =>
                        {
                            vec![row.clone()]
                        }
                        _ => Vec::new(),
                    };
                    inputs.push(WsInput::HttpResponse {
                        id: r.id,
                        status: 200,
                        retry_after: None,
                        body: serde_json::to_vec(&rows).unwrap_or_default(),
                    });
                }
                Output::Persist(w) => inputs.push(WsInput::PersistDone {
                    id: w.id,
                    result: Ok(()),
                }),
                Output::Append(w) => inputs.push(WsInput::PersistDone {
                    id: w.id,
                    result: Ok(()),
                }),
                Output::Arrived(_) => {
                    if let Some((at, _)) = &posted {
                        return Ok(now.saturating_duration_since(*at));
                    }
                }
                Output::FetchUpload(_)
                | Output::SetAside(_)
                | Output::Log(_)
                | Output::TokenChanged { .. }
                | Output::Rejected { .. }
                | Output::PopDone { .. }
                | Output::Exit { .. } => {}
            }
        }
        for input in inputs.drain(..) {
            fleet.handle(now, input);
        }
        if fleet.poll_timeout().is_some_and(|at| at <= now) {
            fleet.handle_timeout(now);
            continue;
        }
        let next = fleet.poll_timeout().unwrap_or(end);
        if posted.is_none() && post_at <= next {
            now = now.max(post_at);
            row_n += 1;
            posted = Some((now, activity_row(row_n, base)));
            continue;
        }
        if next > end {
            return Err(format!("{state:?}: no arrival within 120 s"));
        }
        now = now.max(next);
        fleet.handle_timeout(now);
    }
}

/// Spreads `samples` offsets evenly over `span` (a message can arrive at any moment).
fn offsets(samples: u64, span: Duration) -> impl Iterator<Item = (u64, Duration)> {
    (0..samples).map(move |i| (i, span.mul_f64(i as f64 / samples as f64)))
}

/// Latency of the real binary while an agent waits in `wait_for_message`: the message is
/// injected into the stub at a spread of moments after the call started.
async fn binary_waiting_latency(opts: &Options, samples: u64) -> Result<Vec<f64>, String> {
    let stub = PlatformStub::start()
        .await
        .map_err(|e| format!("stub: {e}"))?;
    let (ws, token) = stub.create_workspace(WorkspaceSpec::named("latency").poll());
    let dir = temp_dir("latency")?;
    let url = stub.url();
    let env = [
        ("PLATFORM_URL", url.as_str()),
        ("WORKSPACE_ID", ws.as_str()),
        ("MOLECULE_WORKSPACE_TOKEN", token.as_str()),
        ("CONFIGS_DIR", dir.as_str()),
    ];
    let mut p = McpProcess::spawn_bin(&opts.bin, &env, &[]).map_err(|e| format!("spawn: {e}"))?;
    p.initialize(STEP)
        .await
        .ok_or_else(|| format!("no initialize reply; stderr: {}", p.stderr()))?;
    let mut out = Vec::new();
    for (i, offset) in offsets(samples, Duration::from_millis(1_500)) {
        let id = 100 + i64::try_from(i).unwrap_or(0);
        p.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "wait_for_message", "arguments": {"timeout_secs": 30}}}))
            .await
            .map_err(|e| format!("send: {e}"))?;
        tokio::time::sleep(offset).await;
        stub.inject_message(&ws, InboundMessage::canvas("latency probe"));
        let put = Instant::now();
        let reply = p
            .wait_for(|m| m.get("id") == Some(&json!(id)), STEP)
            .await
            .ok_or_else(|| {
                format!(
                    "wait_for_message {id} unanswered; stderr: {}",
                    tail(&p.stderr())
                )
            })?;
        out.push(ms(put.elapsed()));
        if reply["result"]["structuredContent"]["activity_id"].is_null() {
            return Err(format!(
                "wait_for_message {id} returned no message: {reply}"
            ));
        }
    }
    p.close_stdin();
    let _ = p.wait_exit(Duration::from_secs(20)).await;
    Ok(out)
}

async fn latency(opts: &Options, report: &mut Report) -> Result<(), String> {
    let samples: u64 = if opts.quick { 200 } else { 2_000 };
    let mut rows = Vec::new();
    let mut waiting_p99 = f64::NAN;
    for (state, span, what) in [
        (
            LatencyState::Waiting,
            Duration::from_secs(3),
            "waiting (a `wait_for_message` in progress)",
        ),
        (
            LatencyState::Active,
            Duration::from_secs(170),
            "active (within 3 min of activity)",
        ),
        (
            LatencyState::Idle,
            Duration::from_secs(60),
            "idle (no activity for 5 min)",
        ),
    ] {
        progress(&format!(
            "latency: simulating {samples} deliveries, {state:?}"
        ));
        let mut v = Vec::new();
        for (i, offset) in offsets(samples, span) {
            v.push(ms(simulated_latency(state, offset, 1 + i)?));
        }
        let v = sorted(v);
        if matches!(state, LatencyState::Waiting) {
            waiting_p99 = percentile(&v, 0.99);
        }
        rows.push(vec![
            what.to_owned(),
            "core, simulated time, platform answers at once".to_owned(),
            format!("{}", v.len()),
            fmt_ms(percentile(&v, 0.50)),
            fmt_ms(percentile(&v, 0.99)),
            fmt_ms(v.last().copied().unwrap_or(f64::NAN)),
        ]);
    }
    let real_samples = if opts.quick { 5 } else { 30 };
    progress(&format!(
        "latency: {real_samples} deliveries to a waiting agent through the binary"
    ));
    let real = sorted(binary_waiting_latency(opts, real_samples).await?);
    let real_p99 = percentile(&real, 0.99);
    rows.push(vec![
        "waiting (a `wait_for_message` in progress)".to_owned(),
        "release binary ↔ loopback stub, message injected → tool result read".to_owned(),
        format!("{}", real.len()),
        fmt_ms(percentile(&real, 0.50)),
        fmt_ms(real_p99),
        fmt_ms(real.last().copied().unwrap_or(f64::NAN)),
    ]);
    report.line("## 5. Message → agent latency per cadence state");
    report.blank();
    report.line(
        "Time from a message being on the platform to the agent having it. The cadence (`core/src/inbox/cadence.rs`): \
         while an agent waits, a poll at once and then every 0.8 s ± 20 %; within 3 minutes of activity the configured \
         5 s ± 20 %; otherwise doubling to 30 s ± 20 %. Simulated rows: a fresh one-workspace fleet per sample, messages \
         put on the platform at evenly spread moments, the platform answering at once (so the figure is the cadence's \
         share of the latency). Binary row: `wait_for_message` called, the message injected into the stub 0–1.5 s later, \
         latency = injection → the tool's result read on stdout.",
    );
    report.blank();
    report.table(&["state", "how", "samples", "p50", "p99", "max"], &rows);
    report.line(&format!(
        "- Goal: message → agent ≤ 1 s p99 while waiting: **{}** (binary p99 {}; simulated p99 {}).",
        if real_p99 <= 1_000.0 && waiting_p99 <= 1_000.0 { "met" } else { "missed" },
        fmt_ms(real_p99),
        fmt_ms(waiting_p99),
    ));
    report.blank();
    Ok(())
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

/// The settings of every `[profile.release…]` section of the workspace's `Cargo.toml` (the
/// profile and its per-package overrides), as `key = value` pairs joined by commas, so the
/// report says what the measured binaries were built with. `CARGO_PROFILE_RELEASE_*`
/// variables set for the build are not seen here.
fn release_profile(repo: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(repo.join("Cargo.toml")) else {
        return "unknown (Cargo.toml not readable)".to_owned();
    };
    let mut parts = Vec::new();
    let mut section: Option<&str> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line
                .strip_prefix("[profile.release")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(|rest| rest.trim_start_matches('.'));
            continue;
        }
        // A trailing comment is not part of the value.
        let setting = line.split('#').next().unwrap_or("").trim();
        match section {
            Some(_) if setting.is_empty() => {}
            Some("") => parts.push(setting.to_owned()),
            Some(package) => parts.push(format!("{package}: {setting}")),
            None => {}
        }
    }
    if parts.is_empty() {
        "Cargo's defaults".to_owned()
    } else {
        parts.join(", ")
    }
}

fn header(opts: &Options, report: &mut Report, load_start: &str) {
    report.line("# molecule-mcp benchmark report");
    report.blank();
    let commit = command_output(
        "git",
        &[
            "-C",
            &opts.repo.display().to_string(),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "unknown".to_owned());
    let rustc = command_output("rustc", &["-V"]).unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(std::num::NonZero::get)
        .unwrap_or(0);
    let mode = if opts.quick {
        "quick (smoke run: fewer runs, smaller N, short windows)"
    } else {
        "full"
    };
    report.line(&format!("- Command: `{}` ({mode})", opts.command));
    report.line(&format!(
        "- Date (UTC): {}",
        format_rfc3339_micros(unix_micros_now())
    ));
    report.line(&format!(
        "- Commit: {commit} (plus any uncommitted changes in the working tree)"
    ));
    report.line(&format!(
        "- Machine: {cores} cores (nproc), CPU `{}`, {} RAM, Linux {kernel}",
        cpu_model(),
        mem_total()
    ));
    report.line(&format!(
        "- Toolchain: {rustc}; release profile: {}",
        release_profile(&opts.repo)
    ));
    report.line(&format!(
        "- Load average at start (1/5/15 min): {load_start}"
    ));
    report.blank();
}

fn main() -> ExitCode {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            progress(&e);
            return ExitCode::from(2);
        }
    };
    if !opts.bin.is_file() {
        progress(&format!(
            "molecule-mcp binary not found at {} (build it: bash scripts/bench.sh)",
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
            progress(&format!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    if opts.serve_stub {
        return rt.block_on(serve_stub());
    }
    let load_start = load_average();
    let started = Instant::now();
    let mut report = Report::default();
    header(&opts, &mut report, &load_start);
    let mut failures = Vec::new();
    let mut note = |name: &str, result: Result<(), String>, report: &mut Report| {
        if let Err(e) = result {
            progress(&format!("{name} FAILED: {e}"));
            report.line(&format!("**Section {name} failed:** {e}"));
            report.blank();
            failures.push(name.to_owned());
        }
    };
    if opts.wants("startup") {
        let floor = opts.floor.clone().unwrap_or_else(floor_bin);
        let dev = StartTarget {
            title: "## 1. Cold start",
            bin: &opts.bin,
            floor: &floor,
            python: true,
        };
        let r = rt.block_on(startup(&opts, &dev, &mut report));
        note("startup", r, &mut report);
        if let Some((bin, floor)) = &opts.shipped {
            let shipped = StartTarget {
                title: "### 1b. Cold start of the shipped build (`scripts/dist.sh`: static musl), against a floor built the same way",
                bin,
                floor,
                python: false,
            };
            let r = rt.block_on(startup(&opts, &shipped, &mut report));
            note("startup (shipped build)", r, &mut report);
        }
    }
    if opts.wants("core") {
        let r = core_section(&opts, &mut report);
        note("core", r, &mut report);
    }
    if opts.wants("tools") {
        let r = rt.block_on(tools(&opts, &mut report));
        note("tools", r, &mut report);
    }
    if opts.wants("scale") {
        let r = rt.block_on(scale(&opts, &mut report));
        note("scale", r, &mut report);
    }
    if opts.wants("latency") {
        let r = rt.block_on(latency(&opts, &mut report));
        note("latency", r, &mut report);
    }
    report.line(&format!(
        "Whole run: {:.0} s. Load average at the end (1/5/15 min): {}.",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    emit(&report.0);
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
