//! Poll-mode chat uploads (files the canvas user attached, which the platform holds until
//! this runtime downloads and acks them): the persisted job for one
//! `chat_upload_receive` row, its retry policy, and the machine's
//! download / settle / ack steps.
//!
//! The machine turns a job into an [`super::InboxAction::FetchUpload`]; the driver downloads
//! the bytes (capped), stages them under its state directory and answers
//! [`super::InboxInput::UploadDone`]. A job settles as *staged* (then acked and remembered
//! for URI rewriting), *gone* (404, nothing to do) or *failed* after [`MAX_UPLOAD_ATTEMPTS`];
//! a failure is logged at WARN with the file name and the messages keep the
//! `platform-pending:` link. Jobs are part of the persisted state, so a restart resumes them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::action::{InboxAction, UploadFetch};
use super::feed::pending_upload_url;
use super::machine::{InFlight, Inbox, Purpose};
use super::message::{InboxMessage, UploadRow};
use crate::action::LogLevel;
use crate::http::{Method, RequestId, TransportErrorKind};
use crate::redact::redact_known;
use crate::retry::Backoff;
use crate::sanitize::log_excerpt;

/// Extra time the core allows after a download's deadline for the driver to finish
/// writing the file and report.
const UPLOAD_GRACE: Duration = Duration::from_secs(5);
/// Largest file the driver may download (the platform's poll-mode per-file cap, 25 MiB).
pub const MAX_UPLOAD_BYTES: u64 = 25 * 1024 * 1024;
/// Attempts before a transiently failing upload is given up.
pub const MAX_UPLOAD_ATTEMPTS: u32 = 3;
/// Downloads running at once.
pub(crate) const MAX_CONCURRENT_UPLOADS: usize = 4;

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

/// How a download that got no answer ended: a body over the cap will be over it again;
/// every other transport failure may pass.
pub(crate) fn download_failed(kind: TransportErrorKind, detail: &str) -> UploadOutcome {
    let retryable = match kind {
        TransportErrorKind::BodyTooLarge => false,
        TransportErrorKind::Connect
        | TransportErrorKind::Timeout
        | TransportErrorKind::Io
        | TransportErrorKind::Protocol => true,
    };
    UploadOutcome::Failed {
        detail: format!("{kind:?}: {detail}"),
        retryable,
    }
}

impl Inbox {
    pub(super) fn active_downloads(&self) -> usize {
        self.inflight
            .values()
            .filter(|f| matches!(f.purpose, Purpose::UploadFetch { .. }))
            .count()
    }

    pub(super) fn start_uploads(&mut self, now: Instant) {
        if self.stopped {
            return;
        }
        let free = MAX_CONCURRENT_UPLOADS.saturating_sub(self.active_downloads());
        let ready: Vec<usize> = (0..self.state.uploads.len())
            .filter(|&i| self.state.uploads.get(i).is_some_and(|j| j.ready(now)))
            .take(free)
            .collect();
        for i in ready {
            self.send_fetch(now, i);
        }
    }

    fn send_fetch(&mut self, now: Instant, index: usize) {
        let Some(job) = self.state.uploads.get(index) else {
            return;
        };
        let (activity_id, file_id, name, uri, mime_type) = (
            job.activity_id.clone(),
            job.file_id.clone(),
            job.name.clone(),
            job.uri.clone(),
            job.mime_type.clone(),
        );
        let url = pending_upload_url(
            &self.cfg.platform,
            &self.cfg.workspace_id,
            &file_id,
            "content",
        );
        let request = self.request(now, Method::Get, url, self.cfg.upload_timeout);
        let id = request.id;
        let name_for_file = name.clone();
        self.inflight.insert(
            id,
            InFlight {
                purpose: Purpose::UploadFetch { activity_id },
                deadline: request.deadline + UPLOAD_GRACE,
            },
        );
        if let Some(job) = self.state.uploads.get_mut(index) {
            job.in_flight = Some(id);
            job.retry_at = None;
        }
        self.actions
            .push_back(InboxAction::FetchUpload(UploadFetch {
                request,
                file_id,
                name,
                uri,
                mime_type,
                max_bytes: MAX_UPLOAD_BYTES,
                path: crate::state_layout::StateLayout::upload_path(&format!(
                    "{}-{name_for_file}",
                    self.names.hex(2)
                )),
            }));
    }

    pub(super) fn on_upload_done(
        &mut self,
        now: Instant,
        id: RequestId,
        activity_id: &str,
        outcome: UploadOutcome,
    ) {
        let Some(pos) = self
            .state
            .uploads
            .iter()
            .position(|j| j.activity_id == activity_id && j.in_flight == Some(id))
        else {
            self.ignored_inputs += 1;
            return;
        };
        let Some(job) = self.state.uploads.get_mut(pos) else {
            return;
        };
        job.in_flight = None;
        let (name, uri, file_id) = (job.name.clone(), job.uri.clone(), job.file_id.clone());
        match outcome {
            UploadOutcome::Staged { local_uri } => {
                self.log(
                    LogLevel::Info,
                    format!("inbox: staged uploaded file '{name}' ({uri}) as {local_uri}"),
                );
                self.state.staged.insert(&uri, &local_uri);
                self.settle_upload(pos);
                let url =
                    pending_upload_url(&self.cfg.platform, &self.cfg.workspace_id, &file_id, "ack");
                let request = self.request(now, Method::Post, url, self.cfg.request_timeout);
                self.inflight.insert(
                    request.id,
                    InFlight {
                        purpose: Purpose::UploadAck { name },
                        deadline: request.deadline,
                    },
                );
                self.actions.push_back(InboxAction::SendHttp(request));
            }
            UploadOutcome::Gone => {
                self.log(
                    LogLevel::Info,
                    format!("inbox: uploaded file '{name}' is no longer on the platform (404: expired or already acked); messages keep its link {uri}"),
                );
                self.settle_upload(pos);
            }
            UploadOutcome::Failed { detail, retryable } => {
                let detail = redact_known(&detail, &self.token);
                job.attempts = job.attempts.saturating_add(1);
                let attempts = job.attempts;
                if retryable && attempts < MAX_UPLOAD_ATTEMPTS {
                    let delay = Backoff::UPLOAD.delay(attempts.saturating_sub(1), &mut self.rng);
                    job.retry_at = Some(now + delay);
                    self.touch();
                    self.log(
                        LogLevel::Info,
                        format!("inbox: fetching uploaded file '{name}' failed ({detail}); retrying in {}s", delay.as_secs()),
                    );
                } else {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "inbox: could not fetch uploaded file '{name}' ({detail}) after {attempts} attempt(s); messages keep \
                             its link {uri}, which only the platform can serve"
                        ),
                    );
                    self.settle_upload(pos);
                }
            }
        }
    }

    /// Removes a finished upload job, rewrites the messages that refer to it, and announces
    /// the messages that were waiting for it.
    pub(super) fn settle_upload(&mut self, pos: usize) {
        let held_before: BTreeSet<String> = self
            .state
            .pending
            .iter()
            .filter(|m| self.is_held(m))
            .map(|m| m.activity_id.clone())
            .collect();
        if pos >= self.state.uploads.len() {
            return;
        }
        let job = self.state.uploads.remove(pos);
        self.state
            .handled
            .insert(&job.activity_id, self.cfg.max_handled);
        if let Some(local) = self.state.staged.get(&job.uri).map(str::to_owned) {
            for f in self
                .state
                .pending
                .iter_mut()
                .flat_map(|m| m.files.iter_mut())
            {
                if f.uri == job.uri {
                    f.uri.clone_from(&local);
                }
            }
        }
        let released: Vec<InboxMessage> = self
            .state
            .pending
            .iter()
            .filter(|m| held_before.contains(&m.activity_id) && !self.is_held(m))
            .cloned()
            .collect();
        self.actions
            .extend(released.into_iter().map(InboxAction::Arrived));
        self.touch();
    }

    pub(super) fn on_ack_response(&mut self, name: &str, status: u16, body: &[u8]) {
        match status {
            200..=299 => self.log(
                LogLevel::Debug,
                format!("inbox: acked uploaded file '{name}'"),
            ),
            404 => self.log(
                LogLevel::Debug,
                format!("inbox: uploaded file '{name}' was already acked or expired (404)"),
            ),
            _ => {
                let text = log_excerpt(body, &self.token);
                self.log(
                    LogLevel::Warn,
                    format!("inbox: ack of uploaded file '{name}' answered HTTP {status}: {text}"),
                );
            }
        }
    }
}
