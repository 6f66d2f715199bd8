//! Polling the activity feed: when a poll may go out, what it asks for, and what happens to
//! the answer (pages → queue, cursor moves, 410, errors and their backoff). The request
//! shapes and the backlog paging rule are in `feed.rs`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::InboxAction;
use super::cadence::{AgentSignal, Reschedule};
use super::config::MAX_PAGE_LIMIT;
use super::feed::{FeedQuery, NextPage, activity_url, next_before_ts};
use super::machine::{InFlight, Inbox, Purpose, window};
use super::message::{InboxMessage, Row, RowContext, SkipReason, classify, row_id};
use super::schedule::FailureClass;
use super::state::JournalOp;
use super::upload::UploadJob;
use crate::action::LogLevel;
use crate::http::Method;
use crate::retry::{Backoff, RetryAfterCap};
use crate::sanitize::log_excerpt;

/// Longest backlog scan, in pages (500 rows each at most).
const MAX_SCAN_PAGES: u32 = 1_000;
/// Consecutive `500 cursor lookup failed` answers after which the cursor is dropped.
const BAD_CURSOR_RESET_AFTER: u32 = 3;

/// Progress through the newest-first backlog (no cursor yet).
#[derive(Debug, Clone, Default)]
pub(super) struct BacklogScan {
    before_ts: Option<String>,
    /// Page size override: raised to the platform maximum when a whole page shares one
    /// `created_at` (a strict bound would skip the rest of that instant).
    limit: Option<u32>,
    /// The previous (full) page, used if the next one comes back empty.
    prev_page: Option<Vec<Value>>,
    pages: u32,
    warned_strict: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct IngestOutcome {
    advanced: bool,
    truncated: bool,
}

impl Inbox {
    /// A poll may go out: not stopped, none in flight, the cursor it would use is on disk,
    /// and the queue has room.
    pub(super) fn can_poll(&self) -> bool {
        !self.stopped
            && !self
                .inflight
                .values()
                .any(|f| matches!(f.purpose, Purpose::Poll(_)))
            && self.cursor_is_saved()
            && !self.backpressured()
    }

    pub(super) fn maybe_poll(&mut self, now: Instant) {
        if self.poll_at > now || !self.can_poll() {
            return;
        }
        let (query, limit) = match &self.state.cursor {
            Some(c) => (FeedQuery::Since(c.clone()), self.cfg.page_limit),
            None => (
                FeedQuery::Backlog {
                    since_secs: self.cfg.backlog_secs,
                    before_ts: self.scan.as_ref().and_then(|s| s.before_ts.clone()),
                },
                self.scan
                    .as_ref()
                    .and_then(|s| s.limit)
                    .unwrap_or(self.cfg.page_limit),
            ),
        };
        let url = activity_url(&self.cfg.platform, &self.cfg.workspace_id, limit, &query);
        let request = self.request(now, Method::Get, url, self.cfg.request_timeout);
        self.inflight.insert(
            request.id,
            InFlight {
                purpose: Purpose::Poll(query),
                deadline: request.deadline,
            },
        );
        self.polls_sent += 1;
        self.actions.push_back(InboxAction::SendHttp(request));
    }

    /// The next poll after a successful one, at the cadence the agent's attention asks for
    /// (`cadence.rs`).
    fn next_regular_poll(&mut self, now: Instant) {
        self.poll_at = now
            + self
                .attention
                .next_delay(now, self.cfg.poll_interval, &mut self.rng);
    }

    /// Applies an [`AgentSignal`]: a wait that starts polls at once, other activity brings
    /// an idle inbox's next poll forward. A failure back-off is never cut short.
    pub(super) fn on_agent_signal(&mut self, now: Instant, signal: AgentSignal) {
        let reschedule = self.attention.signal(now, signal);
        if self.poll_failures.streak() > 0 {
            return;
        }
        match reschedule {
            Reschedule::Keep => {}
            Reschedule::Now => self.poll_at = self.poll_at.min(now),
            Reschedule::NoLaterThanRegular => {
                let regular = now
                    + self
                        .attention
                        .next_delay(now, self.cfg.poll_interval, &mut self.rng);
                self.poll_at = self.poll_at.min(regular);
            }
        }
    }

    pub(super) fn poll_failed(
        &mut self,
        now: Instant,
        class: FailureClass,
        detail: String,
        retry_after: Option<Duration>,
    ) {
        let warn = self.poll_failures.record(now, class);
        let n = self.poll_failures.streak();
        let backoff =
            Backoff::inbox(self.cfg.poll_interval).delay(n.saturating_sub(1), &mut self.rng);
        let delay = RetryAfterCap::BACKGROUND.at_least(backoff, retry_after);
        self.poll_at = now + delay;
        let (level, streak) = if warn {
            (
                LogLevel::Warn,
                if n > 1 {
                    format!(" ({n} failed polls in a row; repeated at most every 5 minutes)")
                } else {
                    String::new()
                },
            )
        } else {
            (LogLevel::Debug, String::new())
        };
        self.log(
            level,
            format!(
                "inbox: {detail}{streak}; next poll in {}s",
                delay.as_secs().max(1)
            ),
        );
    }

    pub(super) fn on_poll_response(
        &mut self,
        now: Instant,
        query: FeedQuery,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) {
        let ws = self.cfg.workspace_id.clone();
        if (200..300).contains(&status) {
            let rows = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(rows)) => rows,
                Ok(_) => {
                    let detail = format!(
                        "GET /activity answered HTTP {status} with JSON that is not a list: {}",
                        log_excerpt(body, &self.token)
                    );
                    return self.poll_failed(now, FailureClass::Http, detail, None);
                }
                Err(e) => {
                    let detail = format!(
                        "GET /activity answered HTTP {status} with a non-JSON body ({e}): {}",
                        log_excerpt(body, &self.token)
                    );
                    return self.poll_failed(now, FailureClass::Http, detail, None);
                }
            };
            if let Some(n) = self.poll_failures.recover() {
                self.log(
                    LogLevel::Info,
                    format!("inbox: polling works again after {n} failed attempt(s)"),
                );
            }
            self.bad_cursor_answers = 0;
            match query {
                FeedQuery::Since(c) if self.state.cursor.as_deref() == Some(c.as_str()) => {
                    self.on_steady_page(now, &rows)
                }
                FeedQuery::Backlog { .. } if self.state.cursor.is_none() => {
                    self.on_backlog_page(now, rows)
                }
                // The cursor changed while the poll was out (cannot happen today: polls
                // wait for the cursor to be saved). The page is stale; ask again.
                FeedQuery::Since(_) | FeedQuery::Backlog { .. } => self.poll_at = now,
            }
            return;
        }
        let text = log_excerpt(body, &self.token);
        match (status, &query) {
            (410, FeedQuery::Since(cursor)) => {
                let cursor = cursor.clone();
                self.reset_cursor(
                    now,
                    LogLevel::Info,
                    format!("cursor {cursor} is no longer known to the platform (410)"),
                );
            }
            (401 | 403, _) => {
                let detail = format!(
                    "GET /activity answered HTTP {status}: the token is not accepted for workspace {ws} ({text}); \
                     inbound messages cannot be received until this is fixed"
                );
                self.poll_failed(now, FailureClass::Auth, detail, None);
            }
            (429, _) => self.poll_failed(
                now,
                FailureClass::RateLimited,
                format!("GET /activity rate limited (429): {text}"),
                retry_after,
            ),
            (500, FeedQuery::Since(cursor)) if text.contains("cursor") => {
                self.bad_cursor_answers += 1;
                if self.bad_cursor_answers >= BAD_CURSOR_RESET_AFTER {
                    self.bad_cursor_answers = 0;
                    let cursor = cursor.clone();
                    self.reset_cursor(now, LogLevel::Warn, format!("the platform keeps failing to look up cursor {cursor} (HTTP 500: {text})"));
                } else {
                    self.poll_failed(
                        now,
                        FailureClass::Http,
                        format!("GET /activity answered HTTP 500: {text}"),
                        None,
                    );
                }
            }
            _ => self.poll_failed(
                now,
                FailureClass::Http,
                format!("GET /activity answered HTTP {status}: {text}"),
                None,
            ),
        }
    }

    fn reset_cursor(&mut self, now: Instant, level: LogLevel, why: String) {
        self.log(
            level,
            format!(
                "inbox: {why}; re-reading the last {} of activity (messages already handled or queued are not delivered again)",
                window(self.cfg.backlog_secs)
            ),
        );
        self.state.cursor = None;
        self.scan = None;
        self.touch();
        self.poll_at = now;
    }

    fn page_is_full(rows: usize, limit: u32) -> bool {
        rows >= usize::try_from(limit).unwrap_or(usize::MAX)
    }

    fn on_steady_page(&mut self, now: Instant, rows: &[Value]) {
        let full = Self::page_is_full(rows.len(), self.cfg.page_limit);
        let outcome = self.ingest(now, rows.iter());
        if outcome.truncated {
            self.next_regular_poll(now);
        } else if full && outcome.advanced {
            // More rows are waiting: drain fast (once this page is saved).
            self.poll_at = now;
        } else {
            if full {
                self.log(
                    LogLevel::Warn,
                    "inbox: a full page of activity had no usable row id; the cursor cannot move"
                        .to_owned(),
                );
            }
            self.next_regular_poll(now);
        }
    }

    fn on_backlog_page(&mut self, now: Instant, rows: Vec<Value>) {
        let mut scan = self.scan.take().unwrap_or_default();
        let limit = scan.limit.unwrap_or(self.cfg.page_limit);
        let full = Self::page_is_full(rows.len(), limit);
        if full && scan.pages < MAX_SCAN_PAGES {
            let bound = match next_before_ts(&rows) {
                NextPage::Overlap(ts) => Some(ts),
                NextPage::Strict(_) if limit < MAX_PAGE_LIMIT => {
                    // Ask for the same rows again in the biggest page the platform serves.
                    scan.limit = Some(MAX_PAGE_LIMIT);
                    scan.pages += 1;
                    self.scan = Some(scan);
                    self.poll_at = now;
                    return;
                }
                NextPage::Strict(ts) => {
                    if !scan.warned_strict {
                        scan.warned_strict = true;
                        self.log(
                            LogLevel::Warn,
                            format!(
                                "inbox: {MAX_PAGE_LIMIT} or more backlog rows share created_at {ts}; rows at that instant beyond \
                                 one page may be missed"
                            ),
                        );
                    }
                    Some(ts)
                }
                NextPage::Stuck => {
                    self.log(LogLevel::Warn, "inbox: backlog rows carry no usable created_at; older rows cannot be paged".to_owned());
                    None
                }
            };
            if let Some(ts) = bound {
                scan.before_ts = Some(ts);
                scan.pages += 1;
                scan.prev_page = Some(rows);
                self.scan = Some(scan);
                self.poll_at = now;
                return;
            }
        } else if full {
            self.log(
                LogLevel::Warn,
                format!(
                    "inbox: backlog longer than {MAX_SCAN_PAGES} pages; older rows are not read"
                ),
            );
        }
        let rows = if rows.is_empty() {
            scan.prev_page.take().unwrap_or_default()
        } else {
            rows
        };
        // Oldest first; the newest processed row becomes the cursor and `since_id` then
        // walks forward over the newer pages.
        let outcome = self.ingest(now, rows.iter().rev());
        if self.state.cursor.is_some() && !outcome.truncated {
            self.poll_at = now;
        } else {
            self.next_regular_poll(now);
        }
    }

    /// Adds the rows (in delivery order) to the queue; moves the in-memory cursor to the
    /// last row taken. Stops early, without dropping anything, when the queue is full.
    fn ingest<'a>(&mut self, now: Instant, rows: impl Iterator<Item = &'a Value>) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        let mut candidate: Option<String> = None;
        let mut changed = false;
        let queued_before = self.state.pending.len();
        let uploads_before = self.state.uploads.len();
        for row in rows {
            let Some(id) = row_id(row) else {
                self.debug(|| "inbox: skipping an activity row without an id".to_owned());
                continue;
            };
            if self.knows(&id) {
                candidate = Some(id);
                continue;
            }
            let class = {
                let ctx = RowContext {
                    workspace_id: &self.cfg.workspace_id,
                    arrival_workspace_id: self.cfg.arrival_workspace_id.as_deref(),
                };
                classify(row, &id, &ctx)
            };
            if matches!(class, Row::Message(_) | Row::Upload(_)) && self.backpressured() {
                outcome.truncated = true;
                break;
            }
            match class {
                Row::Message(msg) => {
                    self.enqueue(msg);
                    changed = true;
                }
                Row::Upload(up) if self.state.outbound_uploads.contains(&up.file_id) => {
                    self.debug(|| {
                        format!(
                            "inbox: upload row {id} is our own attachment {}; not fetching it",
                            up.file_id
                        )
                    });
                }
                Row::Upload(up) => {
                    self.state.uploads.push(UploadJob::new(id.clone(), up));
                    changed = true;
                }
                Row::BadUpload(_) => {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "inbox: upload row {id} has no file_id in request_body; cannot fetch it"
                        ),
                    );
                }
                Row::Skip(reason) => self.debug(|| {
                    let why = match reason {
                        SkipReason::NotObject => "not an object".to_owned(),
                        SkipReason::SelfAuthored => "written by this workspace itself".to_owned(),
                        SkipReason::NotifyEcho => "echo of our own send_message_to_user".to_owned(),
                        SkipReason::NonMessage(m) => format!("method {m} is not a chat message"),
                    };
                    format!("inbox: not delivering activity {id}: {why}")
                }),
            }
            candidate = Some(id);
        }
        if let Some(c) = candidate
            && self.state.cursor.as_ref() != Some(&c)
        {
            self.state.cursor = Some(c);
            outcome.advanced = true;
            changed = true;
        }
        if self.state.pending.len() > queued_before || self.state.uploads.len() > uploads_before {
            // A conversation is under way: replies tend to follow.
            self.attention.activity(now);
        }
        if changed {
            // Journaled as one record: what this batch appended, and where it ends.
            let messages = self
                .state
                .pending
                .iter()
                .skip(queued_before)
                .cloned()
                .collect();
            let uploads = self
                .state
                .uploads
                .iter()
                .skip(uploads_before)
                .cloned()
                .collect();
            self.record(JournalOp::Arrived {
                cursor: self.state.cursor.clone(),
                messages,
                uploads,
            });
        }
        outcome
    }

    /// Already queued, waiting as an upload, or handled.
    fn knows(&self, id: &str) -> bool {
        self.state.handled.contains(id)
            || self.state.pending.iter().any(|m| m.activity_id == id)
            || self.state.uploads.iter().any(|u| u.activity_id == id)
    }

    fn enqueue(&mut self, mut msg: InboxMessage) {
        for f in &mut msg.files {
            if f.uri.starts_with("platform-pending:")
                && let Some(local) = self.state.staged.get(&f.uri)
            {
                f.uri = local.to_owned();
            }
        }
        let held = self.is_held(&msg);
        self.state.pending.push_back(msg.clone());
        if !held {
            self.actions.push_back(InboxAction::Arrived(msg));
        }
    }
}
