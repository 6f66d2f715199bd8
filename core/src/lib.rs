//! # molecule-mcp-core
//!
//! The sans-io heart of `molecule-mcp`: configuration validation and the per-workspace
//! session lifecycle (register → heartbeat ticks → auth-failure escalation), written as a
//! pure state machine. It performs no I/O, reads no clock, spawns nothing and logs nothing
//! itself: time is an argument, log lines are [`Action::Log`]s, requests are
//! [`Action::SendHttp`]s carrying a [`RequestId`] that the driver echoes back.
//!
//! ## Driver contract
//!
//! ```text
//! let mut s = Session::new(cfg, now, seed);
//! loop {
//!     while let Some(action) = s.poll_action() { perform(action) }   // drain fully
//!     match s.poll_timeout() {
//!         None => break,                                             // terminal
//!         Some(deadline) => wait until deadline OR an outcome arrives,
//!     }
//!     on outcome:   s.handle(now, Input::HttpResponse { id, .. })   // or HttpFailed, PersistDone
//!     on deadline:  s.handle_timeout(now)
//! }
//! ```
//!
//! * Drain `poll_action` until `None` after **every** `handle*` call.
//! * `now` should be monotonic; an earlier `now` is treated as the latest one seen.
//! * When no action is queued, `poll_timeout()` is strictly later than the last `now`, so a
//!   correct driver never busy-loops. `handle_timeout` may be called spuriously.
//! * Outcomes for unknown or already-settled ids are counted and ignored. The core enforces
//!   each request's deadline itself, so a late answer after a timeout is harmless.
//! * Environment failures (HTTP errors, timeouts, 401s) are states and actions, never `Err`.
//! * The machine never panics, whatever the input sequence (fuzzed and property-tested).
//!
//! One [`Session`] per workspace; there is no global state, so a multi-workspace runtime
//! simply owns many.

pub mod action;
pub mod config;
pub mod escalation;
mod heartbeat_schedule;
pub mod help;
pub mod http;
pub mod ids;
pub mod inbox;
pub mod input;
pub mod platform_request;
pub mod platform_url;
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
