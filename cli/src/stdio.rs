//! The process's standard streams, which carry MCP.
//!
//! [`check`] is the start-up guard, run *first* so a misconfigured launch registers nothing:
//! stdin and stdout must be a pipe, a socket or a character device, because an MCP client
//! talks to us through them. A regular file (`molecule-mcp > out.txt`,
//! `molecule-mcp < input.json`) means someone ran the server by hand; we explain instead of
//! speaking JSON-RPC into a file.
//!
//! [`streams`] opens them for the MCP server. A pipe (what MCP clients give us) is read and
//! written non-blocking on the runtime's own thread. Anything else, and a stdout that is the
//! same pipe as stderr, goes through tokio's `stdin()`/`stdout()`, which do every read and
//! write on a blocking-pool thread: the start-up profile in BENCHMARKS.md found those threads
//! spawned before the first reply. stdout shares its pipe with stderr only when the client
//! merged them (`2>&1`); non-blocking there would make the log writer's blocking writes fail
//! with `WouldBlock`, so that case keeps the blocking writer.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};

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

/// The MCP input: stdin.
pub type Input = Box<dyn AsyncRead + Send + Unpin>;
/// The MCP output: stdout.
pub type Output = Box<dyn AsyncWrite + Send + Unpin>;

/// Opens stdin and stdout for the MCP server (see the module docs). Needs a tokio runtime
/// with I/O enabled (the pipes register with it).
pub fn streams() -> (Input, Output) {
    (open_input(), open_output())
}

#[cfg(unix)]
fn open_input() -> Input {
    use tokio::net::unix::pipe;
    match dup_fd(&std::io::stdin()).map(pipe::Receiver::from_file) {
        // `from_file` checks that it is a FIFO opened for reading and sets O_NONBLOCK.
        Some(Ok(pipe)) => Box::new(pipe),
        Some(Err(_)) | None => Box::new(tokio::io::stdin()),
    }
}

#[cfg(unix)]
fn open_output() -> Output {
    use tokio::net::unix::pipe;
    if same_pipe(&std::io::stdout(), &std::io::stderr()) {
        return Box::new(tokio::io::stdout());
    }
    match dup_fd(&std::io::stdout()).map(pipe::Sender::from_file) {
        // `from_file` checks that it is a FIFO opened for writing and sets O_NONBLOCK.
        Some(Ok(pipe)) => Box::new(pipe),
        Some(Err(_)) | None => Box::new(tokio::io::stdout()),
    }
}

#[cfg(not(unix))]
fn open_input() -> Input {
    Box::new(tokio::io::stdin())
}

#[cfg(not(unix))]
fn open_output() -> Output {
    Box::new(tokio::io::stdout())
}

/// A duplicate of `stream`'s descriptor as a `File` (the standard stream itself stays open
/// for anything that still uses it, such as the exit path).
#[cfg(unix)]
fn dup_fd(stream: &impl std::os::fd::AsFd) -> Option<std::fs::File> {
    stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(std::fs::File::from)
}

/// Whether `a` and `b` are the same pipe (same device and inode), as after `2>&1`.
#[cfg(unix)]
fn same_pipe(a: &impl std::os::fd::AsFd, b: &impl std::os::fd::AsFd) -> bool {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let id = |s: &dyn std::os::fd::AsFd| {
        let meta = dup_fd(&s.as_fd())?.metadata().ok()?;
        meta.file_type().is_fifo().then(|| (meta.dev(), meta.ino()))
    };
    match (id(a), id(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
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
