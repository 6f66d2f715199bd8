//! Logging: `tracing` on **stderr** only (stdout carries MCP frames), with timestamps and
//! level names (reference defect 5), and the mapping from core [`LogLine`] actions.

use molecule_mcp_core::{LogLevel, LogLine};

/// Installs the global subscriber. `verbose` shows INFO and DEBUG; otherwise WARN and ERROR.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(verbose: bool) {
    let level = if verbose { tracing::Level::DEBUG } else { tracing::Level::WARN };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(ansi)
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
