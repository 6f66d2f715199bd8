//! `molecule-mcp`: see the crate docs in `lib.rs` and the README.

use std::process::ExitCode;

use clap::Parser;
use molecule_mcp_cli::args::{Cli, Command};
use molecule_mcp_cli::{demo, doctor, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        None | Some(Command::Serve) => serve::run(cli.workspaces_file.as_deref()),
        Some(Command::Doctor) => doctor::run(cli.workspaces_file.as_deref()),
        Some(Command::Demo) => demo::run(),
        Some(Command::Completions { shell }) => {
            // An interactive command: stdout is the script, never the MCP stream.
            molecule_mcp_cli::args::write_completions(shell, &mut std::io::stdout().lock());
            ExitCode::SUCCESS
        }
    };
    // Operator messages go to stderr through a non-blocking queue: let it drain (bounded,
    // so an unread stderr cannot hold the exit).
    molecule_mcp_io_tokio::logging::flush(std::time::Duration::from_secs(1));
    code
}
