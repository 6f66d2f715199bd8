//! What the inbox asks its driver to do, and what the driver reports back.

use std::time::Duration;

use super::cadence::AgentSignal;
use super::message::InboxMessage;
use super::upload::UploadOutcome;
use crate::action::{LogLine, PersistError, PersistId};
use crate::http::{HttpRequest, RequestId, TransportError};
use crate::state_layout::StateFile;

/// Download one pending upload into the state directory (never a fixed system path, which
/// is usually not writable on a laptop).
///
/// The driver sends `request` (a `GET …/pending-uploads/<file_id>/content`), refuses bodies
/// over `max_bytes` while streaming, writes the bytes to a new private file under its state
/// directory (e.g. `<state dir>/chat-uploads/<random hex>-<name>`; `name` is already
/// sanitised), and answers [`InboxInput::UploadDone`] with `request.id`. It does **not**
/// ack: the machine sends the ack itself once the file is staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFetch {
    /// The download request; its `id` correlates the outcome.
    pub request: HttpRequest,
    /// Platform file id.
    pub file_id: String,
    /// Sanitised file name (see [`super::sanitize_filename`]).
    pub name: String,
    /// The `platform-pending:` URI (for log lines).
    pub uri: String,
    /// MIME type from the row, if any (the response's `Content-Type` wins).
    pub mime_type: Option<String>,
    /// Refuse larger bodies ([`super::upload::MAX_UPLOAD_BYTES`]).
    pub max_bytes: u64,
    /// Where to stage the bytes, relative to the state directory:
    /// `chat-uploads/<32 random hex>-<name>` ([`crate::state_layout::StateLayout::upload_path`]),
    /// so names never collide and cannot be guessed from the upload's own name.
    pub path: String,
}

/// An instruction from the inbox machine.
#[derive(Clone, PartialEq, Eq)]
pub enum InboxAction {
    /// Send this request and report [`InboxInput::HttpResponse`] / [`InboxInput::HttpFailed`].
    SendHttp(HttpRequest),
    /// Emit a log line (stderr).
    Log(LogLine),
    /// Atomically replace this workspace's inbox state file with `bytes` (temp file, fsync,
    /// rename, mode 0600), then report [`InboxInput::PersistDone`]. At most one is
    /// outstanding at a time; each one contains the whole state.
    Persist {
        /// Echoed back in the outcome.
        id: PersistId,
        /// The complete state file.
        bytes: Vec<u8>,
    },
    /// Append `bytes` (whole journal lines) to this workspace's inbox journal file (mode
    /// 0600, created if missing; emptied first when `restart`), fsync it, then report
    /// [`InboxInput::PersistDone`]. Shares the one-write-outstanding rule and the id space
    /// with `Persist`; its cost depends on `bytes` only, never on the state's size.
    Append {
        /// Echoed back in the outcome.
        id: PersistId,
        /// Journal lines, each ending in a newline.
        bytes: Vec<u8>,
        /// Empty the journal before appending: the snapshot written before it contains
        /// every earlier record.
        restart: bool,
    },
    /// A message became available (first time in this process): push it to the MCP client
    /// and wake `wait_for_message` callers. Messages restored from disk are not announced.
    Arrived(InboxMessage),
    /// Download and stage an uploaded file.
    FetchUpload(UploadFetch),
    /// A restored file is unusable: the state file could not be decoded or is empty
    /// ([`StateFile::InboxState`]), or the journal has unreadable lines before readable ones
    /// ([`StateFile::InboxJournal`]; a torn last line alone is normal after a crash). Move it
    /// aside to a backup next to it, before any later write replaces it, and log the
    /// backup's name at WARN. Emitted only at start, ahead of every write; no outcome is
    /// reported (the machine has already started from what it could read).
    SetAside(StateFile),
}

impl std::fmt::Debug for InboxAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboxAction::SendHttp(r) => f.debug_tuple("SendHttp").field(r).finish(),
            InboxAction::Log(l) => f.debug_tuple("Log").field(l).finish(),
            // The state file can be megabytes; its length is what matters in a trace.
            InboxAction::Persist { id, bytes } => f
                .debug_struct("Persist")
                .field("id", id)
                .field("bytes_len", &bytes.len())
                .finish(),
            InboxAction::Append { id, bytes, restart } => f
                .debug_struct("Append")
                .field("id", id)
                .field("bytes_len", &bytes.len())
                .field("restart", restart)
                .finish(),
            InboxAction::Arrived(m) => f.debug_tuple("Arrived").field(m).finish(),
            InboxAction::FetchUpload(u) => f.debug_tuple("FetchUpload").field(u).finish(),
            InboxAction::SetAside(file) => f.debug_tuple("SetAside").field(file).finish(),
        }
    }
}

/// An event for [`super::Inbox::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxInput {
    /// A complete HTTP response for a `SendHttp` request.
    HttpResponse {
        /// The request's id.
        id: RequestId,
        /// Status code.
        status: u16,
        /// `Retry-After`, already converted to a delay by the driver.
        retry_after: Option<Duration>,
        /// Response body (drivers cap its size).
        body: Vec<u8>,
    },
    /// A `SendHttp` request produced no response.
    HttpFailed {
        /// The request's id.
        id: RequestId,
        /// What went wrong.
        error: TransportError,
    },
    /// Outcome of a `Persist` or `Append` action. `Err(detail)` when the write failed.
    PersistDone {
        /// The id from the `Persist` action.
        id: PersistId,
        /// Write result.
        result: Result<(), PersistError>,
    },
    /// Outcome of a `FetchUpload` action.
    UploadDone {
        /// `request.id` of the `FetchUpload`.
        id: RequestId,
        /// How it ended.
        outcome: UploadOutcome,
    },
    /// What the agent is doing: sets the poll cadence (`cadence.rs`).
    Agent(AgentSignal),
    /// Stop polling and fetching. Queue operations and persist outcomes still work, so
    /// a pop during shutdown is saved.
    Shutdown,
}
