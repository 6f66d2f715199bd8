//! Logging: `tracing` on **stderr** only (stdout carries MCP frames), with timestamps and
//! level names, and the mapping from core [`LogLine`] outputs.
//!
//! Every byte for stderr — log lines and the operator messages printed before an exit —
//! goes through one bounded queue to one writer thread ([`write_stderr`]). A client that
//! stops reading our stderr, or closes it, can therefore never block the runtime (a
//! blocked heartbeat task would let the platform mark the agent offline) nor make a write
//! panic: when the queue is full a line is dropped and counted, the count is reported once
//! there is room again, and write errors (EPIPE) only end the writing. [`flush`] waits, for
//! a bounded time, until what was queued before an exit is written.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use molecule_mcp_core::{LogLevel, LogLine};

/// Lines the queue holds before new ones are dropped (a few hundred KiB at most).
const QUEUE_LINES: usize = 1_024;

struct Sink {
    tx: SyncSender<Vec<u8>>,
    /// Queued and not yet written.
    pending: AtomicUsize,
    /// Dropped because the queue was full, not yet reported.
    dropped: AtomicU64,
}

static SINK: OnceLock<Sink> = OnceLock::new();
/// Guards the one-time spawn of the writer thread (`OnceLock::get_or_init` cannot fail,
/// and a thread spawn can).
static SPAWN: Mutex<()> = Mutex::new(());

fn sink() -> Option<&'static Sink> {
    if let Some(sink) = SINK.get() {
        return Some(sink);
    }
    let _guard = SPAWN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sink) = SINK.get() {
        return Some(sink);
    }
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LINES);
    std::thread::Builder::new()
        .name("stderr-writer".to_owned())
        .spawn(move || writer_loop(rx))
        .ok()?;
    let _ = SINK.set(Sink {
        tx,
        pending: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
    });
    SINK.get()
}

fn writer_loop(rx: Receiver<Vec<u8>>) {
    let mut broken = false;
    while let Ok(bytes) = rx.recv() {
        if !broken {
            let mut err = std::io::stderr().lock();
            // EPIPE or any other failure: stop writing, keep draining so nobody waits.
            broken = err.write_all(&bytes).and_then(|()| err.flush()).is_err();
        }
        if let Some(sink) = SINK.get() {
            sink.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Queues `bytes` for stderr without ever blocking; drops them (counted) when the queue is
/// full. Every secret the process knows and every secret-looking pattern is redacted here
/// ([`crate::secrets`]): `tracing` formats a whole event before it reaches the writer, so
/// this is the one point every log line and operator message passes.
pub fn write_stderr(bytes: Vec<u8>) {
    let Some(sink) = sink() else {
        return;
    };
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => crate::secrets::redact(&text).into_bytes(),
        Err(e) => crate::secrets::redact(&String::from_utf8_lossy(e.as_bytes())).into_bytes(),
    };
    let dropped = sink.dropped.swap(0, Ordering::AcqRel);
    if dropped > 0 {
        let note =
            format!("molecule-mcp: {dropped} log line(s) dropped: stderr is not being read\n");
        enqueue(sink, note.into_bytes());
    }
    enqueue(sink, bytes);
}

fn enqueue(sink: &Sink, bytes: Vec<u8>) {
    sink.pending.fetch_add(1, Ordering::AcqRel);
    match sink.tx.try_send(bytes) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            sink.pending.fetch_sub(1, Ordering::AcqRel);
            sink.dropped.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Queues one line of text (a newline is added) for stderr.
pub fn write_line(message: &str) {
    let mut bytes = Vec::with_capacity(message.len() + 1);
    bytes.extend_from_slice(message.as_bytes());
    bytes.push(b'\n');
    write_stderr(bytes);
}

/// Waits up to `limit` until everything queued so far is written (or the writer gave up).
pub fn flush(limit: Duration) {
    let Some(sink) = SINK.get() else {
        return;
    };
    let deadline = Instant::now() + limit;
    while sink.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The `tracing` writer: each formatted event becomes one queued write.
struct QueueWriter;

impl std::io::Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
        .with_writer(|| QueueWriter)
        // Its own error reports use `eprintln!`, which panics on a closed stderr.
        .log_internal_errors(false)
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
