//! `core_memory`: what one workspace costs in memory in the core, without any driver. Run
//! by the bench (`bash scripts/bench.sh`, section `memory`); standalone:
//! `core_memory [N] [MINUTES] [session|inbox]` (default 10,000 workspaces with both parts, 6
//! simulated minutes).
//!
//! It builds a [`Fleet`] of N workspaces with the production configuration (heartbeats and
//! inbox on) against a fake platform answered in-process (register, heartbeats and empty
//! inbox pages all 200, every state write succeeds), runs it in simulated time, and prints
//! the growth of this process's resident memory (`VmRSS`, so allocator overhead counts) per
//! workspace, from before its configuration was built, at three points: right after construction, at the peak of the start-up burst
//! (`VmHWM`), and in the steady state after MINUTES (past the inbox's active window, so the
//! inboxes are idle). Output: one `key value` line per figure on stdout.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use molecule_mcp_core::inbox::InboxConfig;
use molecule_mcp_core::workspace::{Fleet, FleetPlan, Input, Output, Restored, WorkspacePlan};
use molecule_mcp_core::{PlatformUrl, Secret, SessionConfig, StateLayout};
use molecule_mcp_tests::measure::proc_status;
use serde_json::json;

/// The same shape as a real configuration: a UUID per workspace, a 43-character token.
fn plan(n: usize, session: bool, inbox: bool) -> Result<FleetPlan, String> {
    let platform =
        PlatformUrl::parse("http://127.0.0.1:8080").map_err(|e| format!("platform url: {e:?}"))?;
    let multi = n > 1;
    let workspaces = (0..n)
        .map(|i| {
            let id = format!("{i:08x}-0000-4000-8000-000000000000");
            let token = format!("tok-{i:039}");
            WorkspacePlan {
                workspace_id: id.clone(),
                session: session.then(|| {
                    SessionConfig::new(
                        platform.clone(),
                        id.clone(),
                        Secret::new(token.clone()),
                        "MOLECULE_WORKSPACES",
                        json!({"name": format!("agent-{i}"), "description": "bench"}),
                    )
                }),
                inbox: inbox.then(|| {
                    let mut cfg =
                        InboxConfig::new(platform.clone(), id.clone(), Secret::new(token));
                    cfg.arrival_workspace_id = multi.then(|| id.clone());
                    cfg.debug_logs = false;
                    cfg
                }),
                layout: StateLayout::new(multi),
                state_dir_display: "/state".to_owned(),
                restored: Restored::default(),
            }
        })
        .collect();
    Ok(FleetPlan {
        workspaces,
        multi_workspace: multi,
    })
}

/// Performs every output like a healthy platform and disk, at once.
fn serve(fleet: &mut Fleet, now: Instant) -> usize {
    let mut handled = 0;
    loop {
        let mut inputs = Vec::new();
        while let Some(output) = fleet.poll_output() {
            match output {
                Output::SendHttp(r) => inputs.push(Input::HttpResponse {
                    id: r.id,
                    status: 200,
                    retry_after: None,
                    body: if r.url.contains("/activity?") {
                        b"[]".to_vec()
                    } else {
                        b"{}".to_vec()
                    },
                }),
                Output::Persist(w) => inputs.push(Input::PersistDone {
                    id: w.id,
                    result: Ok(()),
                }),
                Output::Append(w) => inputs.push(Input::PersistDone {
                    id: w.id,
                    result: Ok(()),
                }),
                Output::FetchUpload(_)
                | Output::SetAside(_)
                | Output::Log(_)
                | Output::Arrived(_)
                | Output::TokenChanged { .. }
                | Output::Rejected { .. }
                | Output::PopDone { .. }
                | Output::Exit { .. } => {}
            }
        }
        if inputs.is_empty() {
            return handled;
        }
        handled += inputs.len();
        for input in inputs {
            fleet.handle(now, input);
        }
    }
}

fn rss_kb() -> u64 {
    proc_status(std::process::id(), "VmRSS").unwrap_or(0)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let minutes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(6);
    // `session`, `inbox` or (default) both: what each part of a workspace costs.
    let parts = args.next().unwrap_or_default();
    let before = rss_kb();
    let plan = match plan(n, parts != "inbox", parts != "session") {
        Ok(p) => p,
        Err(e) => {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{e}\n").as_bytes());
            return ExitCode::FAILURE;
        }
    };
    #[allow(clippy::disallowed_methods)] // the simulated clock needs some origin
    let t0 = Instant::now();
    let mut fleet = Fleet::new(plan, t0, 7);
    let built = rss_kb();
    let mut now = t0;
    let end = t0 + Duration::from_secs(minutes * 60);
    let mut events = serve(&mut fleet, now);
    while let Some(at) = fleet.poll_timeout() {
        if at > end {
            break;
        }
        now = now.max(at);
        fleet.handle_timeout(now);
        events += 1 + serve(&mut fleet, now);
    }
    let steady = rss_kb();
    let peak = proc_status(std::process::id(), "VmHWM").unwrap_or(0);
    let per = |kb: u64| kb.saturating_sub(before) as f64 * 1024.0 / n as f64;
    let out = format!(
        "workspaces {n}\nsimulated_secs {}\nevents {events}\nbaseline_kb {before}\n\
         built_bytes_per_workspace {:.0}\npeak_bytes_per_workspace {:.0}\nsteady_bytes_per_workspace {:.0}\n",
        minutes * 60,
        per(built),
        per(peak),
        per(steady),
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    ExitCode::SUCCESS
}
