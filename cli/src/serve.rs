//! `molecule-mcp` (no subcommand): the MCP stdio server with the platform session running
//! in the background.
//!
//! Start-up order (the stdio check comes first, so a misconfigured launch has no side effects
//! on the platform): stdio check → state dir (resolved, then a real write probe: exit 2 with
//! the path and the fix when it cannot be written) → config validation
//! (exit 2 with help) → logging → MCP server answers `initialize` immediately while the
//! session registers and heartbeats in the background. A register 401/403 still ends the
//! process with exit code 3 (in multi-workspace mode only when every workspace failed).
//! stdin EOF, SIGTERM or SIGINT stop the heartbeats and exit 0 promptly.

use std::process::ExitCode;
use std::time::Duration;

use molecule_mcp_core::config::{ValidConfig, validate};
use molecule_mcp_core::workspace::{FleetPlan, Output};
use molecule_mcp_io_tokio::{HttpClient, driver, logging, state_dir};

use crate::app::App;
use crate::tools::ToolSettings;
use crate::{env_snapshot, runtime, stdio};

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
    if let Err(problem) = stdio::check() {
        print_fatal(&problem.message());
        return ExitCode::from(2);
    }
    // A state dir that cannot be written would make every pop an unsaved one; say so now.
    let state_dir = match state_dir::resolve_from_env()
        .and_then(|dir| state_dir::check_writable(&dir).map(|()| dir))
    {
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
    remember_secrets(&config);
    logging::init(config.verbose);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let token_file =
        molecule_mcp_core::config::token_file_path(&raw.env).map(std::path::PathBuf::from);
    for warning in state_dir::permission_warnings(&state_dir, token_file.as_deref()) {
        tracing::warn!("{warning}");
    }
    let settings = config.tool_settings.clone();
    // The token file stays a secret even when `MOLECULE_WORKSPACE_TOKEN` wins over it.
    let secret_files: Vec<std::path::PathBuf> = raw
        .env
        .get(molecule_mcp_core::config::WORKSPACE_TOKEN_FILE)
        .map(|p| std::path::PathBuf::from(p.trim()))
        .into_iter()
        .collect();
    let code = rt.block_on(serve(config, state_dir, secret_files, settings, signal));
    // Do not wait for the runtime's blocking stdin reader: exit now.
    runtime::exit(code)
}

/// Registers every configured token with the process's redaction
/// (`molecule_mcp_io_tokio::secrets`), before anything can echo one.
pub fn remember_secrets(config: &ValidConfig) {
    for workspace in &config.workspaces {
        molecule_mcp_io_tokio::secrets::remember(workspace.token.expose());
    }
}

/// Writes a message for the operator to stderr (the MCP client shows it in its server log)
/// through the same non-blocking queue as the log, so a closed or unread stderr can neither
/// panic nor block the exit that usually follows.
pub fn print_fatal(message: &str) {
    logging::write_line(message);
}

async fn serve(
    config: ValidConfig,
    state_dir: std::path::PathBuf,
    secret_files: Vec<std::path::PathBuf>,
    settings: ToolSettings,
    mut signal: runtime::Signal,
) -> u8 {
    let http = HttpClient::new();
    if !config.heartbeat_enabled {
        tracing::info!("MOLECULE_MCP_DISABLE_HEARTBEAT is set: not registering or heartbeating");
    }
    let mut settings = settings;
    let budget = molecule_mcp_core::fd_budget::fd_budget(
        state_dir::open_files_limit(),
        settings.max_concurrent_calls,
    );
    if budget.tool_calls < settings.max_concurrent_calls {
        tracing::warn!(
            "the open-files limit allows {} tool calls at once (MOLECULE_MCP_MAX_CONCURRENT_CALLS is {}); \
             more are refused so that heartbeats always get a connection. Raise the limit (ulimit -n) to allow more.",
            budget.tool_calls,
            settings.max_concurrent_calls
        );
        settings.max_concurrent_calls = budget.tool_calls;
    }
    let mut plan = FleetPlan::from_config(&config, &state_dir.display().to_string());
    driver::restore(&mut plan, &state_dir);
    let (fleet, mut outputs) = driver::spawn_bounded(
        plan,
        state_dir.clone(),
        http.clone(),
        molecule_mcp_io_tokio::entropy::os_seed(),
        budget.platform_requests,
    );
    let app = match App::new(
        &config,
        &state_dir,
        &secret_files,
        http,
        settings,
        fleet.clone(),
    ) {
        Ok(app) => app,
        Err(e) => {
            print_fatal(&format!("molecule-mcp: {e}"));
            return 2;
        }
    };
    let mut background = app.start_background();
    let server = app.serve_stdio();
    tokio::pin!(server);
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
            Some(output) = outputs.recv() => match output {
                Output::Arrived(message) => app.arrived(message),
                Output::TokenChanged { workspace_id, token } => app.set_token(&workspace_id, token),
                Output::Rejected { workspace_id, message, .. } => app.mark_failed(&workspace_id, &message),
                Output::Exit { code, message } => {
                    print_fatal(&format!("molecule-mcp: {message}"));
                    break code;
                }
                // The driver performs these itself and never forwards them.
                Output::SendHttp(_) | Output::FetchUpload(_) | Output::Persist(_) | Output::Append(_) | Output::SetAside(_) | Output::Log(_) | Output::PopDone { .. } => {}
            },
        }
    };
    background.abort_all();
    if tokio::time::timeout(SHUTDOWN_GRACE, fleet.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "inbox state was not saved within {SHUTDOWN_GRACE:?}; the next start re-reads what is missing"
        );
    }
    code
}
