//! [`InboxConfig`]: what one workspace's inbox needs, with the defaults the runtime uses.
//! Out-of-range values are clamped by the machine (never rejected): the inbox is optional
//! plumbing and must not be the reason a runtime refuses to start.

use std::time::Duration;

use crate::platform_url::PlatformUrl;
use crate::secret::Secret;

/// Default poll cadence.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default rows per page (platform default 100, max 500).
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The platform's largest page.
pub const MAX_PAGE_LIMIT: u32 = 500;
/// Default first-start / after-410 backlog window: one day.
pub const DEFAULT_BACKLOG_SECS: u64 = 86_400;
/// The platform clamps `since_secs` to 30 days.
pub const MAX_BACKLOG_SECS: u64 = 30 * 86_400;
/// Default per-poll deadline.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default download deadline for one upload.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on queued messages (plus unsettled uploads).
pub const DEFAULT_MAX_PENDING: usize = 1_000;
/// Default bound on the approximate bytes of queued messages.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;
/// Default number of handled activity ids remembered for de-duplication.
pub const DEFAULT_MAX_HANDLED: usize = 10_000;

/// Configuration of one workspace's inbox.
#[derive(Debug, Clone)]
pub struct InboxConfig {
    /// Normalised platform URL.
    pub platform: PlatformUrl,
    /// The workspace whose feed is polled (also the "self" of the self-row filter).
    pub workspace_id: String,
    /// Bearer token (replace at run time with [`super::Inbox::set_token`]).
    pub token: Secret,
    /// Copied into every message; set in multi-workspace mode only.
    pub arrival_workspace_id: Option<String>,
    /// Poll cadence (jittered ± 20 %).
    pub poll_interval: Duration,
    /// Rows per page, 1–500.
    pub page_limit: u32,
    /// Backlog window on first start and after a 410, in seconds (1 s – 30 days).
    pub backlog_secs: u64,
    /// Deadline of one poll or ack.
    pub request_timeout: Duration,
    /// Deadline of one upload download.
    pub upload_timeout: Duration,
    /// Back-pressure threshold: queued messages plus unsettled uploads.
    pub max_pending: usize,
    /// Back-pressure threshold: approximate bytes of queued messages.
    pub max_pending_bytes: usize,
    /// Handled ids remembered (popped messages, settled uploads).
    pub max_handled: usize,
    /// Emit the per-row DEBUG lines (skipped rows, our own uploads). Off when the process
    /// does not show DEBUG: a 500-row page would otherwise format 500 lines for nothing.
    pub debug_logs: bool,
}

impl InboxConfig {
    /// A config with the default cadence, page size, window and bounds.
    pub fn new(platform: PlatformUrl, workspace_id: impl Into<String>, token: Secret) -> Self {
        InboxConfig {
            platform,
            workspace_id: workspace_id.into(),
            token,
            arrival_workspace_id: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            page_limit: DEFAULT_PAGE_LIMIT,
            backlog_secs: DEFAULT_BACKLOG_SECS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            upload_timeout: DEFAULT_UPLOAD_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_handled: DEFAULT_MAX_HANDLED,
            debug_logs: true,
        }
    }

    /// Every value brought into its working range.
    pub(crate) fn clamped(mut self) -> Self {
        self.poll_interval = self.poll_interval.max(Duration::from_millis(100));
        self.page_limit = self.page_limit.clamp(1, MAX_PAGE_LIMIT);
        self.backlog_secs = self.backlog_secs.clamp(1, MAX_BACKLOG_SECS);
        self.request_timeout = self.request_timeout.max(Duration::from_millis(1));
        self.upload_timeout = self.upload_timeout.max(Duration::from_millis(1));
        self.max_pending = self.max_pending.max(1);
        self.max_pending_bytes = self.max_pending_bytes.max(1);
        self.max_handled = self.max_handled.max(1);
        self.arrival_workspace_id = self.arrival_workspace_id.filter(|w| !w.trim().is_empty());
        self
    }
}
