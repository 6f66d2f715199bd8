//! `molecule-mcp` (no subcommand): the MCP stdio server with the platform session running
//! in the background.
//!
//! Start-up order (fixes reference defect 4): stdio check → state dir → config validation
//! (exit 2 with help) → logging → MCP server answers `initialize` immediately while the
//! session registers and heartbeats in the background. A register 401/403 still ends the
//! process with exit code 3 (in multi-workspace mode only when every workspace failed).
//! stdin EOF, SIGTERM or SIGINT stop the heartbeats and exit 0 promptly.

use std::process::ExitCode;
use std::time::Duration;

use molecule_mcp_core::config::{ValidConfig, validate};
use molecule_mcp_io_tokio::{
    DriverEvent, HttpClient, PersistPaths, SessionSpec, logging, persist, session_driver, state_dir,
};
use tokio::sync::mpsc;

use crate::app::App;
use crate::tools::ToolSettings;
use crate::{env_snapshot, runtime, stdio_check};

/// How long stopping the sessions and saving the inbox may take before we exit anyway.
/// With the MCP server's own EOF grace (≤ 350 ms) the process is gone well within 1 s.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(400);

/// Runs the server; returns the process exit code.
pub fn run(workspaces_file: Option<&std::path::Path>) -> ExitCode {
    let rt = match runtime::build() {
        Ok(rt) => rt,
        Err(e) => {
            print_fatal(&format!(
                "molecule-mcp: cannot start the async runtime: {e}"
            ));
            return ExitCode::from(1);
        }
    };
    // Before anything else, so SIGTERM/SIGINT at any later point mean a clean exit 0 (a
    // signal that arrives during start-up ends the process once the server loop runs).
    let signal = {
        let _context = rt.enter();
        runtime::termination_signal()
    };
    if let Err(problem) = stdio_check::check() {
        print_fatal(&problem.message());
        return ExitCode::from(2);
    }
    let state_dir = match state_dir::resolve_from_env() {
        Ok(dir) => dir,
        Err(e) => {
            print_fatal(&format!("molecule-mcp: {e}"));
            return ExitCode::from(2);
        }
    };
    let mut raw = env_snapshot::from_process(&state_dir);
    if let Some(path) = workspaces_file
        && let Err(e) = env_snapshot::apply_workspaces_file(&mut raw, path)
    {
        print_fatal(&format!("molecule-mcp: {e}"));
        return ExitCode::from(2);
    }
    let config = match validate(&raw) {
        Ok(c) => c,
        Err(errors) => {
            print_fatal(errors.render(&raw).trim_end());
            return ExitCode::from(2);
        }
    };
    logging::init(config.verbose);
    let settings = config.tool_settings.clone();
    let code = rt.block_on(serve(config, state_dir, settings, signal));
    // Do not wait for the runtime's blocking stdin reader: exit now.
    runtime::exit(code)
}

/// Writes a message for the operator to stderr (the MCP client shows it in its server log).
#[allow(clippy::print_stderr)] // stderr is ours; this runs before/after the logger exists
pub fn print_fatal(message: &str) {
    eprintln!("{message}");
}

/// Session specs for every configured workspace.
pub fn session_specs(config: &ValidConfig, state_dir: &std::path::Path) -> Vec<SessionSpec> {
    (0..config.workspaces.len())
        .filter_map(|i| {
            let mut session = config.session_config(i)?;
            let paths = PersistPaths::for_workspace(
                state_dir,
                &session.workspace_id,
                config.multi_workspace,
            );
            session.known_inbound_secret =
                persist::read_trimmed(&paths.inbound_secret).map(molecule_mcp_core::Secret::new);
            // A token the platform minted on an earlier run (saved there by us): tried if
            // register rejects the configured one, which is then stale.
            session.fallback_token = persist::read_trimmed(&paths.auth_token)
                .map(molecule_mcp_core::Secret::new)
                .filter(|saved| *saved != session.token)
                .map(|saved| (saved, paths.auth_token.display().to_string()));
            Some(SessionSpec {
                config: session,
                paths,
            })
        })
        .collect()
}

async fn serve(
    config: ValidConfig,
    state_dir: std::path::PathBuf,
    settings: ToolSettings,
    mut signal: runtime::Signal,
) -> u8 {
    let http = HttpClient::new();
    let seed = molecule_mcp_io_tokio::entropy::os_seed();
    let app = match App::new(&config, &state_dir, http.clone(), settings, seed) {
        Ok(app) => app,
        Err(e) => {
            print_fatal(&format!("molecule-mcp: {e}"));
            return 2;
        }
    };
    let (driver, mut events) = if config.heartbeat_enabled {
        let specs = session_specs(&config, &state_dir);
        let (handle, events) = session_driver::spawn(specs, http.clone(), seed);
        (Some(handle), events)
    } else {
        tracing::info!("MOLECULE_MCP_DISABLE_HEARTBEAT is set: not registering or heartbeating");
        let (_tx, rx) = mpsc::unbounded_channel();
        (None, rx)
    };
    let mut background = app.start_background();
    let server = app.serve_stdio();
    tokio::pin!(server);
    let mut failed: Vec<String> = Vec::new();
    let total = config.workspaces.len();
    let code = loop {
        tokio::select! {
            end = &mut server => {
                tracing::info!("MCP client went away ({end:?}); shutting down");
                break 0;
            }
            () = &mut signal => {
                tracing::info!("termination signal received; shutting down");
                break 0;
            }
            Some(event) = events.recv() => match event {
                DriverEvent::Fatal { workspace_id, reason, message } => {
                    if !config.multi_workspace {
                        print_fatal(&format!("molecule-mcp: {message}"));
                        break reason.exit_code();
                    }
                    tracing::error!(workspace = %workspace_id, "{message} This workspace is marked failed; the others keep running.");
                    app.mark_failed(&workspace_id, &message);
                    if !failed.contains(&workspace_id) {
                        failed.push(workspace_id);
                    }
                    if failed.len() == total {
                        print_fatal("molecule-mcp: every configured workspace was rejected at register; exiting.");
                        break reason.exit_code();
                    }
                }
                DriverEvent::TokenChanged { workspace_id, token } => app.set_token(&workspace_id, token),
            },
        }
    };
    background.abort_all();
    let stop_sessions = async {
        if let Some(driver) = driver {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, driver.shutdown()).await;
        }
    };
    tokio::join!(stop_sessions, app.shutdown(SHUTDOWN_GRACE));
    code
}
