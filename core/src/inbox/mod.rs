//! The inbound-message inbox of one workspace, as a
//! sans-io machine: it polls the platform's activity feed, keeps a durable queue of
//! messages the agent has not handled yet, fetches uploaded files, and serves the three
//! inbox tools. Like [`crate::Session`] it performs no I/O and reads no clock.
//!
//! ## Delivery guarantee: at least once
//!
//! The queue, the cursor, the handled-id set, unfinished uploads and the upload URI
//! rewrites form **one** state value, written whole as a snapshot ([`InboxAction::Persist`])
//! with the frequent changes (pops, arrivals) appended to a journal in between
//! ([`InboxAction::Append`]; format and replay rule in `state.rs`). A
//! poll never continues from a cursor that is not on disk yet, so at every instant
//! everything the durable cursor has moved past is in the durable queue, handled set or
//! upload list. A crash at any point loses nothing: the restart re-creates the queue, and at
//! worst re-fetches rows it already had (de-duplicated by id). `pop` records the id as
//! handled (the last [`InboxConfig::max_handled`] ids are kept), so a 410 backlog replay
//! does not deliver it again; only a pop whose write had not completed before a crash can
//! come back.
//!
//! ## Driver contract
//!
//! ```text
//! let mut inbox = Inbox::restore_from(cfg, read_state_file(), read_journal(), now, seed);
//! loop {
//!     while let Some(a) = inbox.poll_action() {
//!         match a {
//!             SendHttp(req)   => send; later inbox.handle(now, HttpResponse{..} | HttpFailed{..}),
//!             FetchUpload(f)  => download f.request (≤ f.max_bytes), stage it privately under the
//!                                state dir, inbox.handle(now, UploadDone{ id: f.request.id, outcome }),
//!             Persist{id, bytes} => write the state file atomically (0600), then
//!                                inbox.handle(now, PersistDone{ id, result }),
//!             Append{id, bytes, restart} => append to the journal (0600; emptied first when
//!                                restart), fsync, then inbox.handle(now, PersistDone{ id, result }),
//!             SetAside        => rename the unusable state file to a timestamped backup, now,
//!             Arrived(msg)    => push notification (push_meta / push_content), wake waiters,
//!             Log(line)       => stderr,
//!         }
//!     }
//!     wait until inbox.poll_timeout() or an outcome; on deadline inbox.handle_timeout(now)
//! }
//! tools: inbox.peek(n), inbox.take_unreturned(), inbox.pop(id)   // then drain poll_action
//! ```
//!
//! * Drain `poll_action` after **every** `handle*`, `pop` and `note_outbound_upload` call.
//! * `now` should be monotonic; an earlier `now` is treated as the latest one seen.
//! * After a `handle*` call with no action queued, `poll_timeout()` is strictly later than
//!   `now` (a `pop` that ends back-pressure may make it due at once).
//! * Outcomes for unknown or settled ids are counted and ignored; the core enforces every
//!   deadline itself. A download may also be answered with `HttpResponse`/`HttpFailed`
//!   (treated as a failed download; 404 as gone).
//! * The machine never panics on any input (property-tested; fuzzed through
//!   `testing::inbox::inbox_ops_case`).
//!
//! ## Polling
//!
//! See `feed.rs` for the URLs and the backlog paging rule, `cadence.rs` for when polls go
//! out (the cadence follows the agent: every second while it waits for a message, the
//! configured interval while it is active, backing off to 30 s when idle), `schedule.rs`
//! for log throttling and [`crate::retry`] for the back-off after failures. A full page is followed by another poll at once (after it is
//! saved). When the queue reaches its bound the inbox stops fetching (WARN once) instead of
//! evicting anything, because an evicted message would be lost; `pop` resumes it.
//!
//! ## Rows, messages, uploads
//!
//! See `message.rs` for what becomes a message (self rows, notify echoes and non-chat
//! methods do not) and `upload.rs` for uploaded files. A message whose file part refers to
//! an upload that is still being fetched is held back (not peeked, not announced) until the
//! upload settles, so the agent sees the local `workspace:` URI; a failed upload is logged
//! at WARN with the file name and the message keeps its `platform-pending:` URI.
//!
//! ## Multi-workspace
//!
//! One `Inbox` per workspace, each with its own state file; set
//! [`InboxConfig::arrival_workspace_id`] so messages say where they arrived.

mod action;
mod cadence;
mod config;
mod feed;
mod machine;
mod message;
mod poll;
mod push;
mod schedule;
mod state;
mod timestamp;
mod upload;

/// The inbox's backoff cap lives in [`crate::retry`]; re-exported for this older path.
pub use crate::retry::MAX_BACKOFF;
/// The file-name rule lives in [`crate::sanitize`]; re-exported for this older path.
pub use crate::sanitize::sanitize_filename;
pub use action::{InboxAction, InboxInput, UploadFetch};
pub use cadence::{ACTIVE_WINDOW, AgentSignal, Cadence, IDLE_MAX, WAITING_INTERVAL};
pub use config::{
    DEFAULT_BACKLOG_SECS, DEFAULT_MAX_HANDLED, DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_PAGE_LIMIT, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_UPLOAD_TIMEOUT,
    InboxConfig, MAX_BACKLOG_SECS, MAX_PAGE_LIMIT,
};
pub use machine::{Inbox, InboxStatus, InboxTimer, LegacyCursor};
pub use message::{EMPTY_MESSAGE_TEXT, FilePart, InboxMessage, MessageKind};
pub use push::{PeerLabel, push_content, push_meta};
pub use schedule::REMINDER_EVERY;
pub use state::saved_state;
pub use timestamp::format_rfc3339_micros;
pub use timestamp::parse_rfc3339;
pub use upload::{MAX_UPLOAD_ATTEMPTS, MAX_UPLOAD_BYTES, UploadOutcome};
