//! Poll-mode chat uploads (reference §4.6, defect 18): the persisted job for one
//! `chat_upload_receive` row, its retry policy, and the file-name sanitiser.
//!
//! The machine turns a job into an [`super::InboxAction::FetchUpload`]; the driver downloads
//! the bytes (capped), stages them under its state directory and answers
//! [`super::InboxInput::UploadDone`]. A job settles as *staged* (then acked and remembered
//! for URI rewriting), *gone* (404, nothing to do) or *failed* after [`MAX_UPLOAD_ATTEMPTS`];
//! a failure is logged at WARN with the file name and the messages keep the
//! `platform-pending:` link. Jobs are part of the persisted state, so a restart resumes them.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::message::UploadRow;
use crate::http::RequestId;

/// Largest file the driver may download (the platform's poll-mode per-file cap, 25 MiB).
pub const MAX_UPLOAD_BYTES: u64 = 25 * 1024 * 1024;
/// Attempts before a transiently failing upload is given up.
pub const MAX_UPLOAD_ATTEMPTS: u32 = 3;
/// Downloads running at once.
pub(crate) const MAX_CONCURRENT_UPLOADS: usize = 4;
/// Longest name [`sanitize_filename`] returns.
const MAX_NAME_CHARS: usize = 100;
/// Longest extension (with its dot) kept when a long name is shortened.
const MAX_KEPT_EXTENSION: usize = 16;

/// How a download ended, as reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Staged on disk; `local_uri` replaces the `platform-pending:` URI in messages
    /// (e.g. `workspace:/home/me/.molecule-workspace/chat-uploads/<hex>-report.pdf`).
    Staged {
        /// The URI the agent should use.
        local_uri: String,
    },
    /// The platform answered 404: expired, already acked, or never ours. Not retried.
    Gone,
    /// Anything else. `retryable` is false for answers that will not change (other 4xx,
    /// body over the cap); transport errors, 5xx and local write errors are retryable.
    Failed {
        /// Human-readable reason (no secrets).
        detail: String,
        /// Whether trying again may help.
        retryable: bool,
    },
}

/// One upload row waiting to be fetched. Persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UploadJob {
    /// Activity row id of the upload row.
    pub(crate) activity_id: String,
    pub(crate) file_id: String,
    /// Sanitised name.
    pub(crate) name: String,
    /// The `platform-pending:` URI messages refer to.
    pub(crate) uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) size: Option<u64>,
    /// Failed attempts so far.
    #[serde(default)]
    pub(crate) attempts: u32,
    /// The download in flight (not persisted: a restart starts over).
    #[serde(skip)]
    pub(crate) in_flight: Option<RequestId>,
    /// Earliest next attempt after a failure (not persisted).
    #[serde(skip)]
    pub(crate) retry_at: Option<Instant>,
}

impl UploadJob {
    pub(crate) fn new(activity_id: String, row: UploadRow) -> Self {
        UploadJob {
            activity_id,
            file_id: row.file_id,
            name: row.name,
            uri: row.uri,
            mime_type: row.mime_type,
            size: row.size,
            attempts: 0,
            in_flight: None,
            retry_at: None,
        }
    }

    /// Ready to (re)start at `now`.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.in_flight.is_none() && self.retry_at.is_none_or(|at| at <= now)
    }
}

/// Delay before retry number `attempts` (1-based): 2 s, 4 s, 8 s …
pub(crate) fn upload_retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(1, 6))
}

/// Makes an uploaded file's name safe to use as the tail of a local file name, with the
/// platform's rules: basename only; every character outside `[A-Za-z0-9._-]` becomes `_`
/// (spaces included); longer than 100 characters ⇒ keep an extension of at most 16
/// characters (dot included) and cut the stem so the total is 100, else cut to 100;
/// `""`, `.` and `..` become `file`.
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mapped: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Only ASCII is left, so byte offsets below are character offsets.
    let shortened = if mapped.len() > MAX_NAME_CHARS {
        match extension_start(&mapped) {
            Some(dot) if mapped.len() - dot <= MAX_KEPT_EXTENSION => {
                let ext = &mapped[dot..];
                format!("{}{ext}", &mapped[..MAX_NAME_CHARS - ext.len()])
            }
            Some(_) | None => mapped[..MAX_NAME_CHARS].to_owned(),
        }
    } else {
        mapped
    };
    match shortened.as_str() {
        "" | "." | ".." => "file".to_owned(),
        _ => shortened,
    }
}

/// Byte offset of the extension's dot, like Python's `os.path.splitext`: the last dot,
/// unless everything before it is dots (`.bashrc` has no extension).
fn extension_start(name: &str) -> Option<usize> {
    let dot = name.rfind('.')?;
    name[..dot].chars().any(|c| c != '.').then_some(dot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_rules() {
        assert_eq!(extension_start("a.tar.gz"), Some(5));
        assert_eq!(extension_start(".bashrc"), None);
        assert_eq!(extension_start("..x"), None);
        assert_eq!(extension_start("noext"), None);
    }

    #[test]
    fn retry_delays_grow() {
        assert_eq!(upload_retry_delay(1), Duration::from_secs(2));
        assert_eq!(upload_retry_delay(2), Duration::from_secs(4));
        assert_eq!(upload_retry_delay(99), Duration::from_secs(64));
    }
}
