//! Command-line interface (clap). Everything that configures the *server* comes from the
//! environment (that is what MCP client configs set); the command line only picks a mode.

use clap::{Parser, Subcommand};

/// `molecule-mcp`: the Molecule AI universal MCP server.
#[derive(Debug, Parser)]
#[command(
    name = "molecule-mcp",
    version,
    about = "Molecule AI universal MCP server: registers your workspace with the platform, keeps it \
             online with heartbeats, polls its inbox and serves the platform tools over MCP stdio.",
    after_help = "Required env: PLATFORM_URL, WORKSPACE_ID (or MOLECULE_WORKSPACES), \
                  MOLECULE_WORKSPACE_TOKEN (or MOLECULE_WORKSPACE_TOKEN_FILE).\n\
                  Add it to your MCP client's config (see README); run `molecule-mcp doctor` to check a setup."
)]
pub struct Cli {
    /// Read the multi-workspace list (the JSON array MOLECULE_WORKSPACES holds) from this
    /// file instead of the environment: for lists too large for an environment variable
    /// (Linux caps one at 128 KiB, about 1,000 workspaces). Overrides MOLECULE_WORKSPACES.
    /// (Accepted before or after the subcommand: `molecule-mcp serve --workspaces-file f.json`.)
    #[arg(long, value_name = "PATH", global = true)]
    pub workspaces_file: Option<std::path::PathBuf>,

    /// What to do; without a subcommand the MCP stdio server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP stdio server (the default): registers, heartbeats, serves tools.
    Serve,
    /// Onboarding diagnostic: checks the binary, PATH, env, platform reachability and the token; exits 0/1.
    #[command(alias = "--doctor")]
    Doctor,
    /// Demonstration against the built-in loopback platform stub (no network needed); exits 0 on success.
    Demo,
    /// Print a shell completion script to stdout, e.g.
    /// `molecule-mcp completions bash > ~/.local/share/bash-completion/completions/molecule-mcp`.
    Completions {
        /// The shell to generate for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "molecule-mcp", out);
}
