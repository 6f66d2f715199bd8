//! Start-up guard, run *first* so a misconfigured launch registers nothing: stdin and stdout must be a
//! pipe, a socket or a character device, because an MCP client talks to us through them.
//! A regular file (`molecule-mcp > out.txt`, `molecule-mcp < input.json`) means someone
//! ran the server by hand; we explain instead of speaking JSON-RPC into a file.

use std::path::Path;

/// What is wrong with a standard stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioProblem {
    /// `fstat` failed.
    CannotStat {
        /// `stdin` or `stdout`.
        name: &'static str,
        /// File descriptor.
        fd: u8,
        /// OS error text.
        error: String,
    },
    /// Not a pipe, socket or character device.
    NotAPipe {
        /// `stdin` or `stdout`.
        name: &'static str,
        /// File descriptor.
        fd: u8,
        /// What it is instead.
        kind: &'static str,
    },
}

impl StdioProblem {
    /// The friendly explanation printed before exiting with code 2.
    pub fn message(&self) -> String {
        let guidance = "molecule-mcp is an MCP server: launch it from an MCP-aware client (Claude Code, Codex, \
                        Cursor…) that talks to it over pipes. Examples of what does not work: \
                        `molecule-mcp > out.txt`, `molecule-mcp < input.json`. Its logs go to stderr only (stdout \
                        carries the protocol): to keep them, have the client start \
                        `sh -c 'exec molecule-mcp 2>>/tmp/molecule-mcp.log'`; to check a setup, run \
                        `molecule-mcp doctor` or `molecule-mcp demo`.";
        match self {
            StdioProblem::CannotStat { name, fd, error } => {
                format!("molecule-mcp: cannot stat {name} (fd={fd}): {error}.\n{guidance}")
            }
            StdioProblem::NotAPipe { name, fd, kind } => {
                format!(
                    "molecule-mcp: {name} (fd={fd}) is a {kind}, not a pipe, socket, or character device.\n{guidance}"
                )
            }
        }
    }
}

/// Checks fd 0 then fd 1.
pub fn check() -> Result<(), StdioProblem> {
    check_one("stdin", 0)?;
    check_one("stdout", 1)
}

fn check_one(name: &'static str, fd: u8) -> Result<(), StdioProblem> {
    // /proc/self/fd/N (or /dev/fd/N) resolves to the open file itself, pipes included, which
    // lets us stat a descriptor without unsafe code.
    let proc_path = format!("/proc/self/fd/{fd}");
    let path = if Path::new(&proc_path).exists() {
        proc_path
    } else {
        format!("/dev/fd/{fd}")
    };
    let meta = std::fs::metadata(&path).map_err(|e| StdioProblem::CannotStat {
        name,
        fd,
        error: e.to_string(),
    })?;
    classify(name, fd, &meta.file_type())
}

#[cfg(unix)]
fn classify(name: &'static str, fd: u8, ft: &std::fs::FileType) -> Result<(), StdioProblem> {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() || ft.is_socket() || ft.is_char_device() {
        return Ok(());
    }
    let kind = if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "non-stream file"
    };
    Err(StdioProblem::NotAPipe { name, fd, kind })
}

#[cfg(not(unix))]
fn classify(_name: &'static str, _fd: u8, _ft: &std::fs::FileType) -> Result<(), StdioProblem> {
    Ok(())
}
