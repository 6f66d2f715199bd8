//! # molecule-mcp-core
//!
//! The sans-io heart of `molecule-mcp`: configuration validation, the per-workspace session
//! lifecycle (register → heartbeat ticks → auth-failure escalation) and inbox, and the
//! [`Fleet`] that runs every workspace of a process, written as pure state machines. It
//! performs no I/O, reads no clock, spawns nothing and logs nothing itself: time is an
//! argument, log lines and requests are outputs, and each request carries an id that the
//! driver echoes back with its outcome.
//!
//! ## Driver contract
//!
//! A driver runs one [`Fleet`]: every workspace of the process, each a [`Workspace`]
//! (platform session + inbox; [`workspace`] has the rules that join them). Two real drivers
//! implement the same loop: `io-tokio/src/driver.rs` (tokio, hyper; the binary's) and
//! `tests/src/blocking_driver.rs` (std threads and a std HTTP/1.1 client, no runtime).
//!
//! ```text
//! let mut fleet = Fleet::new(plan, now, seed);       // plan: FleetPlan, state files restored
//! loop {
//!     while let Some(output) = fleet.poll_output() { // drain fully
//!         perform(output)  // SendHttp, FetchUpload: start it; Persist: write the file; Append: append + fsync;
//!                          // SetAside: rename the unusable file to its backup, now;
//!     }                    // Log, Arrived, PopDone, TokenChanged, Rejected, Exit: to the program
//!     wait until fleet.poll_timeout() (None: no deadline) OR an input arrives;
//!     on input:    fleet.handle(now, input)  // HttpResponse/HttpFailed/PersistDone/UploadStaged
//!                                            // with the output's id; Pop, Shutdown, …
//!     if the deadline passed: fleet.handle_timeout(now)
//! }
//! ```
//!
//! * Drain `poll_output` until `None` after **every** `handle*` call.
//! * `now` should be monotonic; an earlier `now` is treated as the latest one seen.
//! * After `handle_timeout(now)` and a full drain, `poll_timeout()` is later than `now`, so a
//!   correct driver never busy-loops; `handle_timeout` may be called spuriously. A deadline
//!   can also pass while the driver waits: check it after each input too, so a steady
//!   stream of inputs cannot hold the timers back.
//! * Outcomes for unknown or already-settled ids are ignored. The core enforces each
//!   request's deadline itself, so a late answer after a timeout is harmless.
//! * Environment failures (HTTP errors, timeouts, 401s) are states and outputs, never `Err`.
//! * The machines never panic, whatever the input sequence (fuzzed and property-tested).
//!
//! [`Session`] and [`inbox::Inbox`] are machines of the same shape, usable alone.

pub mod action;
pub mod config;
pub mod escalation;
pub mod fd_budget;
mod heartbeat_schedule;
pub mod help;
pub mod http;
pub mod ids;
pub mod inbox;
mod inflight;
pub mod input;
pub mod platform_request;
pub mod platform_url;
mod queue;
pub mod redact;
pub mod retry;
pub mod rng;
pub mod sanitize;
pub mod secret;
pub mod session;
pub mod state_layout;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timer;
pub mod tool_settings;
pub mod workspace;

pub use action::{
    Action, FatalReason, LogLevel, LogLine, PersistError, PersistFile, PersistId, PersistRequest,
};
pub use http::{
    Headers, HttpRequest, Method, RequestId, RequestKind, TransportError, TransportErrorKind,
};
pub use input::Input;
pub use platform_request::{Body, PlatformRequests, USER_AGENT, percent_encode};
pub use platform_url::{PlatformUrl, PlatformUrlError};
pub use secret::Secret;
pub use session::{Phase, Session, SessionConfig, SessionStatus};
pub use state_layout::{StateFile, StateLayout};
pub use timer::Timer;
pub use workspace::{Fleet, FleetPlan, Workspace, WorkspacePlan};
