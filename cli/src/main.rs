//! `molecule-mcp`: see the crate docs in `lib.rs` and the README.

use std::process::ExitCode;

use clap::Parser;
use molecule_mcp_cli::args::{Cli, Command};
use molecule_mcp_cli::{demo, doctor, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve::run(cli.workspaces_file.as_deref()),
        Some(Command::Doctor) => doctor::run(),
        Some(Command::Demo) => demo::run(),
    }
}
