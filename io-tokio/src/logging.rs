//! Logging: `tracing` on **stderr** only (stdout carries MCP frames), with timestamps and
//! level names (reference defect 5), and the mapping from core [`LogLine`] actions.

use molecule_mcp_core::{LogLevel, LogLine};

/// Installs the global subscriber. `verbose` shows our INFO and DEBUG; otherwise WARN and
/// ERROR. Dependencies (hyper's connection pool, rustls) stay at WARN even when verbose:
/// their DEBUG lines ("connecting to …", "pooling idle connection …", two per request)
/// would drown the operator-facing messages. Calling it twice is harmless (the second call
/// is ignored).
pub fn init(verbose: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let ours = if verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    // Every molecule-mcp crate's target starts with `molecule_mcp` (the binary, `_cli`, `_core`, `_io_tokio`).
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("molecule_mcp", ours);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(ours)
        .with_target(false)
        .with_ansi(ansi)
        .finish()
        .with(filter)
        .try_init();
}

/// Emits a core log line through `tracing`.
pub fn emit(line: &LogLine) {
    let ws = line.workspace_id.as_str();
    let msg = line.message.as_str();
    match line.level {
        LogLevel::Debug => tracing::debug!(workspace = ws, "{msg}"),
        LogLevel::Info => tracing::info!(workspace = ws, "{msg}"),
        LogLevel::Warn => tracing::warn!(workspace = ws, "{msg}"),
        LogLevel::Error => tracing::error!(workspace = ws, "{msg}"),
    }
}
