//! The real `molecule-mcp` binary driven over stdio: the demo's driver
//! ([`molecule_mcp_cli::demo::McpProcess`], which the tests reach through [`Deref`]) plus what
//! only tests need: the binary cargo built for them, and signals.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

/// Path of the `molecule-mcp` binary built by `cargo build`: `$MOLECULE_MCP_BIN` if set,
/// else `target/<profile>/molecule-mcp` next to the running test executable.
pub fn molecule_mcp_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MOLECULE_MCP_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test>-<hash> → target/debug/molecule-mcp
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("molecule-mcp")
}

/// A running `molecule-mcp` process (every method of the demo's driver, plus [`signal`]).
///
/// [`signal`]: McpProcess::signal
pub struct McpProcess(molecule_mcp_cli::demo::McpProcess);

impl McpProcess {
    /// Spawns [`molecule_mcp_bin`] with exactly `env` (plus `PATH` and `HOME` unless given)
    /// and `args`.
    pub fn spawn(env: &[(&str, &str)], args: &[&str]) -> std::io::Result<McpProcess> {
        McpProcess::spawn_bin(&molecule_mcp_bin(), env, args)
    }

    /// [`McpProcess::spawn`] for the binary at `bin`.
    pub fn spawn_bin(
        bin: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> std::io::Result<McpProcess> {
        molecule_mcp_cli::demo::McpProcess::spawn_bin(bin, env, args).map(McpProcess)
    }

    /// Sends a signal by number (15 = SIGTERM) through `kill(1)`.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }
}

impl Deref for McpProcess {
    type Target = molecule_mcp_cli::demo::McpProcess;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for McpProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
