//! Process plumbing shared by the subcommands: the tokio runtime, termination signals and a
//! prompt exit.

/// A single-threaded runtime. The work is I/O bound and everything that blocks (stdin,
/// file writes, attachment reads) runs on tokio's blocking pool, so one thread keeps up;
/// hopping wake-ups between two worker threads cost 15 % CPU per heartbeat and 26 % per
/// poll in an A/B run of the scale benchmark (BENCHMARKS.md).
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Resolves when the process is asked to terminate.
pub type Signal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A future that resolves on SIGTERM or SIGINT (Ctrl-C). On Unix the handlers are
/// installed when this is *called* (inside the runtime), not when the future is first
/// polled, so a signal during start-up still means "exit 0", not death by signal.
pub fn termination_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            return Box::pin(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
        }
    }
    Box::pin(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Exits now. Dropping a tokio runtime would wait for the blocking thread stuck reading
/// stdin, and the MCP client expects us gone within a second. Stdout is not flushed: our
/// MCP writer already flushed what it could within its grace, and a client that stopped
/// reading would make that flush wait forever (the stdout lock is held by the blocked
/// write). Stderr gets a bounded second to drain its queue.
pub fn exit(code: u8) -> ! {
    molecule_mcp_io_tokio::logging::flush(std::time::Duration::from_secs(1));
    std::process::exit(i32::from(code))
}
