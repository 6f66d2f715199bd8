//! Test support for [`Inbox`].
//!
//! * [`FakeFeed`]: an in-memory activity feed that pages like the platform's
//!   `GET /workspaces/:id/activity`: `since_id` → rows strictly after the cursor row, oldest
//!   first, 410 for an unknown cursor; no cursor → rows of the `since_secs` window older than
//!   `before_ts`, newest first; `limit` honoured. Rows get UUID ids and microsecond
//!   `created_at` values that may repeat (several rows at one instant).
//! * [`InboxOp`] + [`run_inbox_ops`]: a script of feed injections, answers, failures, pops,
//!   waits, crashes and time steps applied to one inbox, with a model that checks after
//!   every step. [`inbox_ops_case`] decodes the script from bytes (the fuzz target shim);
//!   the proptest in `tests/tests/inbox_core.rs` generates scripts directly.
//!
//! Invariants (a violation panics, naming the op): the drain terminates; no action text
//! contains the token; at most one state write is outstanding; after a `handle*` with no
//! action queued, `poll_timeout()` is `None` or later than `now`; the queue holds no
//! duplicate ids and only rows that are deliverable messages; a message popped in this
//! process, or popped before a restart *and saved*, is never queued, announced or handed
//! out again; `Arrived` fires at most once per message per process; `take_unreturned`
//! never returns the same id twice per process; `pop` is idempotent. Finally a settle phase
//! answers everything truthfully and pops what arrives: every injected message must end up
//! popped or queued (nothing lost), and a second run of the same script must produce the
//! same trace (determinism).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::action::PersistId;
use crate::http::{Method, RequestId, TransportError, TransportErrorKind};
use crate::inbox::{
    AgentSignal, Cadence, Inbox, InboxAction, InboxConfig, InboxInput, InboxTimer, UploadFetch,
    UploadOutcome, format_rfc3339_micros, parse_rfc3339,
};
use crate::secret::Secret;

pub use super::{PLATFORM, epoch};

/// Workspace polled by the op runner.
pub const FUZZ_WORKSPACE: &str = "aaaaaaaa-0000-4000-8000-00000000f022";
/// A peer that sends messages.
pub const PEER: &str = "bbbbbbbb-0000-4000-8000-0000000000b1";
/// Token of the op runner: long and distinctive so a leak is unambiguous.
pub const FUZZ_TOKEN: &str = "tok-INBOX-FUZZ-SECRET-5e1d9b7c3a";
/// Longest script the runner applies.
pub const MAX_INBOX_OPS: usize = 400;
/// An inbox that queues more actions than this without running dry is a bug.
const DRAIN_BOUND: usize = 2_000;
/// First row timestamp of a fresh feed: 2026-05-05T00:00:00Z.
const FEED_START_NANOS: i128 = 1_777_939_200 * 1_000_000_000;

/// An inbox config against [`PLATFORM`] with the default cadence and bounds.
pub fn test_config(workspace_id: &str, token: &str) -> InboxConfig {
    InboxConfig::new(super::platform(), workspace_id, Secret::new(token))
}

/// `00000000-0000-4000-8000-<n>`: a valid, ordered-looking UUID for row `n`.
pub fn row_uuid(n: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        n >> 48,
        n & 0xffff_ffff_ffff
    )
}

/// An `a2a_receive` `message/send` row body (no `id`/`created_at`; the feed adds them).
pub fn message_row(text: &str, source: Option<&str>) -> Value {
    json!({
        "activity_type": "a2a_receive",
        "source_id": source,
        "method": "message/send",
        "summary": format!("summary of {text}"),
        "status": "ok",
        "request_body": {"jsonrpc": "2.0", "method": "message/send", "params": {"message": {
            "role": "user", "parts": [{"kind": "text", "text": text}]
        }}},
    })
}

/// A `chat_upload_receive` row for `file_id`.
pub fn upload_row(workspace_id: &str, file_id: &str, name: &str) -> Value {
    json!({
        "activity_type": "a2a_receive",
        "source_id": null,
        "method": "chat_upload_receive",
        "summary": format!("upload {name}"),
        "request_body": {"file_id": file_id, "name": name, "mimeType": "text/plain", "size": 5,
                         "uri": format!("platform-pending:{workspace_id}/{file_id}")},
    })
}

/// A message row with one text part and one file part pointing at `uri`.
pub fn message_with_file_row(text: &str, uri: &str, name: &str) -> Value {
    json!({
        "activity_type": "a2a_receive",
        "source_id": null,
        "method": "message/send",
        "request_body": {"params": {"message": {"parts": [
            {"kind": "text", "text": text},
            {"kind": "file", "file": {"uri": uri, "name": name, "mimeType": "text/plain", "size": 5}}
        ]}}},
    })
}

/// Value of query parameter `key` in `url`, percent-decoded.
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b.get(i), hex) {
            (Some(b'%'), Some(v)) => {
                out.push(v);
                i += 3;
            }
            (Some(&c), _) => {
                out.push(c);
                i += 1;
            }
            (None, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One row of the fake feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRow {
    /// Activity id.
    pub id: String,
    /// `created_at` in nanoseconds since the epoch (microsecond precision).
    pub created_at: i128,
    /// The full row JSON as served.
    pub json: Value,
}

/// An in-memory activity feed (see module docs).
#[derive(Debug, Clone)]
pub struct FakeFeed {
    workspace_id: String,
    rows: Vec<FeedRow>,
    clock: i128,
    seq: u64,
}

impl FakeFeed {
    /// An empty feed for `workspace_id`.
    pub fn new(workspace_id: &str) -> Self {
        FakeFeed {
            workspace_id: workspace_id.to_owned(),
            rows: Vec::new(),
            clock: FEED_START_NANOS,
            seq: 0,
        }
    }

    /// Appends a row one millisecond after the previous one; returns its id.
    pub fn push(&mut self, row: Value) -> String {
        self.clock += 1_000_000;
        self.push_same_time(row)
    }

    /// Appends a row with the same `created_at` as the previous one; returns its id.
    pub fn push_same_time(&mut self, mut row: Value) -> String {
        self.seq += 1;
        let id = row_uuid(self.seq);
        if let Value::Object(map) = &mut row {
            map.insert("id".into(), json!(id));
            map.insert("workspace_id".into(), json!(self.workspace_id));
            map.insert(
                "created_at".into(),
                json!(format_rfc3339_micros(self.clock)),
            );
        }
        self.rows.push(FeedRow {
            id: id.clone(),
            created_at: self.clock,
            json: row,
        });
        id
    }

    /// Rows in server order (oldest first).
    pub fn rows(&self) -> &[FeedRow] {
        &self.rows
    }

    /// Deletes a row (prunes a cursor, forcing a 410).
    pub fn remove(&mut self, id: &str) {
        self.rows.retain(|r| r.id != id);
    }

    /// Moves the feed's wall clock (rows older than a `since_secs` window drop out of it).
    pub fn advance_clock(&mut self, by: Duration) {
        self.clock += i128::try_from(by.as_nanos()).unwrap_or(0);
    }

    /// The platform's answer to a `GET …/activity?…` URL: `(status, body)`.
    pub fn answer(&self, url: &str) -> (u16, Vec<u8>) {
        let limit = query_param(url, "limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(100)
            .min(500);
        let page: Vec<&FeedRow> = if let Some(cursor) = query_param(url, "since_id") {
            let Some(pos) = self.rows.iter().position(|r| r.id == cursor) else {
                return (410, br#"{"error":"since_id cursor not found (row may have been pruned or belongs to a different workspace); omit since_id to reset"}"#.to_vec());
            };
            self.rows.iter().skip(pos + 1).take(limit).collect()
        } else {
            let since = match query_param(url, "since_secs").map(|s| s.parse::<i128>()) {
                None => i128::MAX / 4,
                Some(Ok(n)) if n > 0 => n.min(30 * 86_400),
                Some(Ok(_) | Err(_)) => {
                    return (
                        400,
                        br#"{"error":"since_secs must be a positive integer"}"#.to_vec(),
                    );
                }
            };
            let floor = self.clock - since.saturating_mul(1_000_000_000);
            let before = match query_param(url, "before_ts").map(|t| parse_rfc3339(&t)) {
                None => None,
                Some(Some(t)) => Some(t),
                Some(None) => {
                    return (
                        400,
                        br#"{"error":"before_ts must be an RFC3339 timestamp"}"#.to_vec(),
                    );
                }
            };
            self.rows
                .iter()
                .rev()
                .filter(|r| r.created_at >= floor && before.is_none_or(|b| r.created_at < b))
                .take(limit)
                .collect()
        };
        let body = Value::Array(page.into_iter().map(|r| r.json.clone()).collect());
        (200, serde_json::to_vec(&body).unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------
// Op runner
// ---------------------------------------------------------------------------------------

/// One step of an inbox script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxOp {
    /// A canvas (`peer == false`) or peer message; `same_ts` reuses the previous timestamp.
    Message {
        /// From a peer agent.
        peer: bool,
        /// Same `created_at` as the previous row.
        same_ts: bool,
    },
    /// A row that must never be delivered: 0 self-authored, 1 notify echo, 2 `tasks/get`,
    /// 3 upload row without `file_id`.
    Noise(u8),
    /// An upload row, optionally followed by a message that attaches the file.
    Upload {
        /// Also inject a message referring to the upload.
        with_message: bool,
    },
    /// Answer the latest poll truthfully from the feed.
    AnswerPoll,
    /// Fail the latest poll: 0 HTTP 500, 1 401, 2 429 + Retry-After, 3 transport error,
    /// 4 410, 5 non-JSON 200, 6 JSON object 200, 7 500 "cursor lookup failed".
    FailPoll(u8),
    /// Complete the oldest state write, successfully or not.
    Persist {
        /// The write succeeded.
        ok: bool,
    },
    /// Answer the oldest download: 0 staged, 1 gone, 2 retryable failure, 3 permanent.
    AnswerUpload(u8),
    /// Pop the n-th visible message (modulo), or an unknown id when none is visible.
    Pop(u8),
    /// `wait_for_message`'s `take_unreturned`.
    TakeUnreturned,
    /// What the agent does (sets the poll cadence).
    Agent(AgentSignal),
    /// Crash: drop the machine and start again from the last saved bytes.
    Restart,
    /// Let this many milliseconds pass, firing due timers.
    Advance(u32),
    /// Jump to the next deadline and fire it.
    AdvanceToNextTimeout,
}

/// Decodes a script positionally: one op byte, plus one parameter byte for some ops.
pub fn decode_inbox_ops(data: &[u8]) -> Vec<InboxOp> {
    let mut ops = Vec::new();
    let mut bytes = data.iter().copied();
    while let Some(b) = bytes.next() {
        if ops.len() >= MAX_INBOX_OPS {
            break;
        }
        let mut param = || bytes.next().unwrap_or(0);
        ops.push(match b % 16 {
            0 | 1 => InboxOp::Message {
                peer: b & 0x10 != 0,
                same_ts: b & 0x20 != 0,
            },
            2 => InboxOp::Noise(param()),
            3 => InboxOp::Upload {
                with_message: b & 0x10 != 0,
            },
            4..=6 => InboxOp::AnswerPoll,
            7 => InboxOp::FailPoll(param()),
            8 | 9 => InboxOp::Persist {
                ok: b & 0x10 == 0 || b & 0x20 == 0,
            },
            10 => InboxOp::AnswerUpload(param()),
            11 => InboxOp::Pop(param()),
            // Bits 4–7 of a 12 choose an agent signal (0: plain `take_unreturned`).
            12 => match (b >> 4) & 3 {
                0 => InboxOp::TakeUnreturned,
                1 => InboxOp::Agent(AgentSignal::WaitStarted),
                2 => InboxOp::Agent(AgentSignal::WaitEnded),
                _ if b & 0x40 != 0 => InboxOp::Agent(AgentSignal::PushListener(b & 0x80 != 0)),
                _ => InboxOp::Agent(AgentSignal::Used),
            },
            13 => InboxOp::Restart,
            14 => InboxOp::Advance(u32::from(param()) * 500),
            _ => InboxOp::AdvanceToNextTimeout,
        });
    }
    ops
}

/// Encodes ops so that `decode_inbox_ops(&encode_inbox_ops(ops)) == ops` for every op
/// `decode_inbox_ops` produces (an `Advance` is rounded down to a multiple of 500 ms and
/// capped at 255 × 500 ms). Used to write the committed `inbox_ops` corpus.
pub fn encode_inbox_ops(ops: &[InboxOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match *op {
            InboxOp::Message { peer, same_ts } => {
                out.push(if peer { 0x10 } else { 0 } | if same_ts { 0x20 } else { 0 });
            }
            InboxOp::Noise(kind) => out.extend_from_slice(&[2, kind]),
            InboxOp::Upload { with_message } => out.push(if with_message { 0x13 } else { 3 }),
            InboxOp::AnswerPoll => out.push(4),
            InboxOp::FailPoll(kind) => out.extend_from_slice(&[7, kind]),
            InboxOp::Persist { ok } => out.push(if ok { 8 } else { 0x38 }),
            InboxOp::AnswerUpload(kind) => out.extend_from_slice(&[10, kind]),
            InboxOp::Pop(n) => out.extend_from_slice(&[11, n]),
            InboxOp::TakeUnreturned => out.push(12),
            InboxOp::Agent(signal) => out.push(match signal {
                AgentSignal::WaitStarted => 0x1C,
                AgentSignal::WaitEnded => 0x2C,
                AgentSignal::Used => 0x3C,
                AgentSignal::PushListener(false) => 0x7C,
                AgentSignal::PushListener(true) => 0xFC,
            }),
            InboxOp::Restart => out.push(13),
            InboxOp::Advance(ms) => {
                out.extend_from_slice(&[14, u8::try_from(ms / 500).unwrap_or(u8::MAX)]);
            }
            InboxOp::AdvanceToNextTimeout => out.push(15),
        }
    }
    out
}

/// Fuzz entry point: decode, run twice, require identical traces.
pub fn inbox_ops_case(data: &[u8]) {
    let ops = decode_inbox_ops(data);
    let first = run_inbox_ops(&ops);
    let second = run_inbox_ops(&ops);
    assert!(
        first == second,
        "same ops, different traces (nondeterminism)"
    );
}

/// Runs a script against a small inbox (page limit 3, queue bound 5) and checks the module
/// invariants; returns the action trace. Panics on a violation.
pub fn run_inbox_ops(ops: &[InboxOp]) -> Vec<String> {
    let mut r = Runner::new();
    for (i, op) in ops.iter().take(MAX_INBOX_OPS).enumerate() {
        r.op_index = i;
        r.apply(*op);
    }
    r.op_index = usize::MAX;
    r.settle();
    r.trace
}

fn fuzz_config() -> InboxConfig {
    let mut cfg = test_config(FUZZ_WORKSPACE, FUZZ_TOKEN);
    cfg.page_limit = 3;
    cfg.max_pending = 5;
    cfg
}

struct Runner {
    cfg: InboxConfig,
    feed: FakeFeed,
    inbox: Inbox,
    now: Instant,
    restarts: u64,
    polls: BTreeMap<RequestId, String>,
    acks: Vec<RequestId>,
    downloads: BTreeMap<RequestId, UploadFetch>,
    /// Outstanding writes: a snapshot (`None`) or a journal append (`Some(restart)`).
    writes: BTreeMap<PersistId, (Option<bool>, Vec<u8>)>,
    durable: Option<Vec<u8>>,
    durable_journal: Vec<u8>,
    uploads_made: u32,
    /// Injected rows that must eventually be popped or queued.
    deliverable: BTreeSet<String>,
    popped_ever: BTreeSet<String>,
    popped_life: BTreeSet<String>,
    popped_unsaved: BTreeSet<String>,
    write_pops: BTreeMap<PersistId, BTreeSet<String>>,
    durably_popped: BTreeSet<String>,
    announced_life: BTreeSet<String>,
    returned_life: BTreeSet<String>,
    trace: Vec<String>,
    op_index: usize,
}

impl Runner {
    fn new() -> Self {
        let cfg = fuzz_config();
        let now = epoch();
        let inbox = Inbox::new(cfg.clone(), None, now, 7);
        let mut r = Runner {
            cfg,
            feed: FakeFeed::new(FUZZ_WORKSPACE),
            inbox,
            now,
            restarts: 0,
            polls: BTreeMap::new(),
            acks: Vec::new(),
            downloads: BTreeMap::new(),
            writes: BTreeMap::new(),
            durable: None,
            durable_journal: Vec::new(),
            uploads_made: 0,
            deliverable: BTreeSet::new(),
            popped_ever: BTreeSet::new(),
            popped_life: BTreeSet::new(),
            popped_unsaved: BTreeSet::new(),
            write_pops: BTreeMap::new(),
            durably_popped: BTreeSet::new(),
            announced_life: BTreeSet::new(),
            returned_life: BTreeSet::new(),
            trace: Vec::new(),
            op_index: 0,
        };
        r.after_handle();
        r
    }

    fn fail(&self, what: &str) -> ! {
        match self.op_index {
            usize::MAX => panic!("inbox invariant violated in the settle phase: {what}"),
            i => panic!("inbox invariant violated at op #{i}: {what}"),
        }
    }

    fn apply(&mut self, op: InboxOp) {
        self.trace.push(format!("op {op:?}"));
        match op {
            InboxOp::Message { peer, same_ts } => {
                let row = message_row(
                    &format!("m{}", self.feed.rows().len()),
                    peer.then_some(PEER),
                );
                let id = if same_ts {
                    self.feed.push_same_time(row)
                } else {
                    self.feed.push(row)
                };
                self.deliverable.insert(id);
            }
            InboxOp::Noise(kind) => {
                let row = match kind % 4 {
                    0 => message_row("self report", Some(FUZZ_WORKSPACE)),
                    1 => {
                        json!({"method": "notify", "source_id": null, "response_body": {"result": "echo"}})
                    }
                    2 => {
                        json!({"method": "tasks/get", "source_id": PEER, "request_body": {"params": {"id": "t1"}}})
                    }
                    _ => {
                        json!({"method": "chat_upload_receive", "source_id": null, "request_body": {"name": "x"}})
                    }
                };
                self.feed.push(row);
            }
            InboxOp::Upload { with_message } => {
                self.uploads_made += 1;
                let file_id = format!("file-{}", self.uploads_made);
                self.feed
                    .push(upload_row(FUZZ_WORKSPACE, &file_id, "a b.txt"));
                if with_message {
                    let uri = format!("platform-pending:{FUZZ_WORKSPACE}/{file_id}");
                    let id = self
                        .feed
                        .push(message_with_file_row("see file", &uri, "a b.txt"));
                    self.deliverable.insert(id);
                }
            }
            InboxOp::AnswerPoll => {
                if let Some((id, url)) = self.polls.pop_last() {
                    let (status, body) = self.feed.answer(&url);
                    self.handle(InboxInput::HttpResponse {
                        id,
                        status,
                        retry_after: None,
                        body,
                    });
                }
            }
            InboxOp::FailPoll(kind) => {
                if let Some((id, _)) = self.polls.pop_last() {
                    let respond = |status: u16, body: &[u8]| InboxInput::HttpResponse {
                        id,
                        status,
                        retry_after: None,
                        body: body.to_vec(),
                    };
                    let input = match kind % 8 {
                        0 => respond(500, br#"{"error":"query failed"}"#),
                        1 => respond(401, br#"{"error":"invalid token"}"#),
                        2 => InboxInput::HttpResponse {
                            id,
                            status: 429,
                            retry_after: Some(Duration::from_secs(30)),
                            body: b"{}".to_vec(),
                        },
                        3 => InboxInput::HttpFailed {
                            id,
                            error: TransportError {
                                kind: TransportErrorKind::Connect,
                                message: "refused".into(),
                            },
                        },
                        4 => respond(410, br#"{"error":"since_id cursor not found"}"#),
                        5 => respond(200, b"<html>"),
                        6 => respond(200, br#"{"rows":[]}"#),
                        _ => respond(500, br#"{"error":"cursor lookup failed"}"#),
                    };
                    self.handle(input);
                }
            }
            InboxOp::Persist { ok } => self.complete_write(ok),
            InboxOp::AnswerUpload(kind) => {
                if let Some((id, fetch)) = self.downloads.pop_first() {
                    let outcome = match kind % 4 {
                        0 => UploadOutcome::Staged {
                            local_uri: format!(
                                "workspace:/state/chat-uploads/{}-{}",
                                fetch.file_id, fetch.name
                            ),
                        },
                        1 => UploadOutcome::Gone,
                        2 => UploadOutcome::Failed {
                            detail: "connection reset".into(),
                            retryable: true,
                        },
                        _ => UploadOutcome::Failed {
                            detail: "HTTP 400".into(),
                            retryable: false,
                        },
                    };
                    self.handle(InboxInput::UploadDone { id, outcome });
                }
            }
            InboxOp::Pop(n) => self.pop_nth(usize::from(n)),
            InboxOp::TakeUnreturned => {
                if let Some(m) = self.inbox.take_unreturned() {
                    let id = m.activity_id;
                    if !self.returned_life.insert(id.clone()) {
                        self.fail(&format!("take_unreturned returned {id} twice"));
                    }
                    if self.popped_life.contains(&id) || self.durably_popped.contains(&id) {
                        self.fail(&format!("take_unreturned returned popped {id}"));
                    }
                }
                self.check_queue();
            }
            InboxOp::Agent(signal) => self.handle(InboxInput::Agent(signal)),
            InboxOp::Restart => self.restart(),
            InboxOp::Advance(ms) => {
                self.now += Duration::from_millis(u64::from(ms));
                self.feed
                    .advance_clock(Duration::from_millis(u64::from(ms)));
                self.fire_due();
            }
            InboxOp::AdvanceToNextTimeout => {
                if let Some(at) = self.inbox.poll_timeout() {
                    if at > self.now {
                        self.feed.advance_clock(at - self.now);
                        self.now = at;
                    }
                    self.inbox.handle_timeout(self.now);
                    self.after_handle();
                }
            }
        }
    }

    fn handle(&mut self, input: InboxInput) {
        self.inbox.handle(self.now, input);
        self.after_handle();
    }

    fn fire_due(&mut self) {
        for _ in 0..8 {
            match self.inbox.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.inbox.handle_timeout(self.now);
                    self.after_handle();
                }
                Some(_) | None => break,
            }
        }
    }

    fn complete_write(&mut self, ok: bool) {
        let Some((id, (append, bytes))) = self.writes.pop_first() else {
            return;
        };
        let covered = self.write_pops.remove(&id).unwrap_or_default();
        if ok {
            match append {
                None => self.durable = Some(bytes),
                Some(true) => self.durable_journal = bytes,
                Some(false) => self.durable_journal.extend(bytes),
            }
            for p in &covered {
                self.popped_unsaved.remove(p);
            }
            self.durably_popped.extend(covered);
            self.handle(InboxInput::PersistDone { id, result: Ok(()) });
        } else {
            self.handle(InboxInput::PersistDone {
                id,
                result: Err("disk full".into()),
            });
        }
    }

    fn pop_nth(&mut self, n: usize) {
        let visible = self.inbox.peek(i64::MAX);
        let Some(target) = visible
            .get(n % visible.len().max(1))
            .map(|m| m.activity_id.clone())
        else {
            if self
                .inbox
                .pop("ffffffff-ffff-4fff-8fff-ffffffffffff")
                .is_some()
            {
                self.fail("pop of an unknown id returned a message");
            }
            return;
        };
        match self.inbox.pop(&target) {
            Some(m) if m.activity_id == target => {}
            Some(_) | None => self.fail(&format!("pop({target}) of a visible message failed")),
        }
        if self.inbox.pop(&target).is_some() {
            self.fail("pop is not idempotent");
        }
        self.popped_ever.insert(target.clone());
        self.popped_life.insert(target.clone());
        self.popped_unsaved.insert(target);
        self.drain();
        self.check_queue();
    }

    fn restart(&mut self) {
        self.restarts += 1;
        self.inbox = Inbox::restore_from(
            self.cfg.clone(),
            self.durable.as_deref(),
            Some(&self.durable_journal),
            self.now,
            7 + self.restarts,
        );
        self.polls.clear();
        self.acks.clear();
        self.downloads.clear();
        self.writes.clear();
        self.write_pops.clear();
        self.popped_unsaved.clear();
        self.popped_life.clear();
        self.announced_life.clear();
        self.returned_life.clear();
        self.after_handle();
    }

    fn drain(&mut self) {
        let mut n = 0;
        while let Some(action) = self.inbox.poll_action() {
            n += 1;
            if n > DRAIN_BOUND {
                self.fail("drain does not terminate");
            }
            let text = format!("{action:?}");
            if text.contains(FUZZ_TOKEN) {
                self.fail(&format!("token leaked in {text}"));
            }
            self.trace.push(text);
            match action {
                InboxAction::SendHttp(req) => {
                    if !req.url.starts_with(PLATFORM)
                        || req.bearer.as_ref().map(Secret::expose) != Some(FUZZ_TOKEN)
                    {
                        self.fail("request to the wrong place or without the token");
                    }
                    match req.method {
                        Method::Post => self.acks.push(req.id),
                        Method::Get => {
                            self.polls.insert(req.id, req.url);
                        }
                    }
                }
                InboxAction::Log(line) => {
                    if line.message.contains(FUZZ_TOKEN) {
                        self.fail("token in a log line");
                    }
                }
                InboxAction::Persist { id, bytes } => {
                    if !self.writes.is_empty() {
                        self.fail("two state writes outstanding");
                    }
                    self.write_pops.insert(id, self.popped_unsaved.clone());
                    self.writes.insert(id, (None, bytes));
                }
                InboxAction::Append { id, bytes, restart } => {
                    if !self.writes.is_empty() {
                        self.fail("two state writes outstanding");
                    }
                    if !bytes.ends_with(b"\n") {
                        self.fail("a journal append that is not whole lines");
                    }
                    self.write_pops.insert(id, self.popped_unsaved.clone());
                    self.writes.insert(id, (Some(restart), bytes));
                }
                InboxAction::Arrived(m) => {
                    let id = m.activity_id;
                    if self.popped_life.contains(&id) || self.durably_popped.contains(&id) {
                        self.fail(&format!("popped message {id} announced again"));
                    }
                    if !self.announced_life.insert(id.clone()) {
                        self.fail(&format!("message {id} announced twice"));
                    }
                    if !self.deliverable.contains(&id) {
                        self.fail(&format!(
                            "announced {id}, which is not a deliverable message"
                        ));
                    }
                }
                // Every restart reads back a state this machine wrote itself.
                InboxAction::SetAside(_) => self.fail("a state the machine wrote was set aside"),
                InboxAction::FetchUpload(f) => {
                    if !f
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    {
                        self.fail("unsanitised upload name");
                    }
                    self.downloads.insert(f.request.id, f);
                }
            }
        }
    }

    /// Drains, answers acks (always 200) and checks the invariants that hold after `handle*`.
    fn after_handle(&mut self) {
        self.drain();
        while let Some(id) = self.acks.pop() {
            self.inbox.handle(
                self.now,
                InboxInput::HttpResponse {
                    id,
                    status: 200,
                    retry_after: None,
                    body: br#"{"acked":true}"#.to_vec(),
                },
            );
            self.drain();
        }
        if let Some(at) = self.inbox.poll_timeout()
            && at <= self.now
        {
            self.fail("poll_timeout() not later than now after handle* with nothing queued");
        }
        // The cadence promise: while someone waits and polling works, the next poll is
        // less than a second away.
        let status = self.inbox.status();
        if status.cadence == Cadence::Waiting
            && status.consecutive_poll_failures == 0
            && self.inbox.next_timer() == Some(InboxTimer::Poll)
            && self
                .inbox
                .poll_timeout()
                .is_some_and(|at| at.saturating_duration_since(self.now) >= Duration::from_secs(1))
        {
            self.fail("a waiting agent's next poll is a second or more away");
        }
        self.check_queue();
    }

    fn check_queue(&self) {
        let pending = self.inbox.all_pending();
        let mut ids = BTreeSet::new();
        for m in &pending {
            if !ids.insert(m.activity_id.clone()) {
                self.fail(&format!("duplicate {} in the queue", m.activity_id));
            }
            if !self.deliverable.contains(&m.activity_id) {
                self.fail(&format!(
                    "{} queued but it is not a deliverable message",
                    m.activity_id
                ));
            }
            if self.popped_life.contains(&m.activity_id)
                || self.durably_popped.contains(&m.activity_id)
            {
                self.fail(&format!("popped {} is queued again", m.activity_id));
            }
        }
    }

    /// Answers everything truthfully until every injected message is popped or queued.
    fn settle(&mut self) {
        let rounds = 200 + 8 * self.feed.rows().len();
        for _ in 0..rounds {
            for _ in 0..64 {
                self.complete_write(true);
                if let Some((id, fetch)) = self.downloads.pop_first() {
                    let local_uri = format!("workspace:/state/chat-uploads/{}", fetch.name);
                    self.handle(InboxInput::UploadDone {
                        id,
                        outcome: UploadOutcome::Staged { local_uri },
                    });
                }
                if let Some((id, url)) = self.polls.pop_last() {
                    self.polls.clear();
                    let (status, body) = self.feed.answer(&url);
                    self.handle(InboxInput::HttpResponse {
                        id,
                        status,
                        retry_after: None,
                        body,
                    });
                }
                self.pop_nth(0);
                let quiet = self.writes.is_empty()
                    && self.downloads.is_empty()
                    && self.polls.is_empty()
                    && self.inbox.peek(1).is_empty();
                if quiet {
                    break;
                }
            }
            let queued: BTreeSet<String> = self
                .inbox
                .all_pending()
                .into_iter()
                .map(|m| m.activity_id)
                .collect();
            if self
                .deliverable
                .iter()
                .all(|id| self.popped_ever.contains(id) || queued.contains(id))
            {
                return;
            }
            match self.inbox.poll_timeout() {
                Some(at) => {
                    if at > self.now {
                        self.feed.advance_clock(at - self.now);
                        self.now = at;
                    }
                    self.inbox.handle_timeout(self.now);
                    self.after_handle();
                }
                None => break,
            }
        }
        let queued: BTreeSet<String> = self
            .inbox
            .all_pending()
            .into_iter()
            .map(|m| m.activity_id)
            .collect();
        let lost: Vec<&String> = self
            .deliverable
            .iter()
            .filter(|id| !self.popped_ever.contains(*id) && !queued.contains(*id))
            .collect();
        if !lost.is_empty() {
            self.fail(&format!(
                "messages lost: {lost:?} (status {:?})",
                self.inbox.status()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_pages_like_the_platform() {
        let mut feed = FakeFeed::new(FUZZ_WORKSPACE);
        let ids: Vec<String> = (0..5)
            .map(|i| feed.push(message_row(&format!("m{i}"), None)))
            .collect();
        let url = |q: &str| {
            format!("{PLATFORM}/workspaces/{FUZZ_WORKSPACE}/activity?type=a2a_receive&{q}")
        };
        let page = |q: &str| -> Vec<String> {
            let (status, body) = feed.answer(&url(q));
            assert_eq!(status, 200);
            let v: Value = serde_json::from_slice(&body).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            page("limit=2&since_secs=60"),
            vec![ids[4].clone(), ids[3].clone()]
        );
        assert_eq!(
            page(&format!("limit=2&since_id={}", ids[1])),
            vec![ids[2].clone(), ids[3].clone()]
        );
        assert_eq!(feed.answer(&url("since_id=nope")).0, 410);
    }

    #[test]
    fn simple_scripts_hold_the_invariants() {
        use InboxOp::*;
        let scripts: Vec<Vec<InboxOp>> = vec![
            vec![],
            vec![
                Message {
                    peer: false,
                    same_ts: false,
                },
                AnswerPoll,
                Persist { ok: true },
                Pop(0),
                Persist { ok: true },
            ],
            vec![
                Message {
                    peer: true,
                    same_ts: false,
                },
                Message {
                    peer: false,
                    same_ts: true,
                },
                AnswerPoll,
                Restart,
            ],
            vec![
                Message {
                    peer: true,
                    same_ts: false,
                },
                AnswerPoll,
                Persist { ok: true },
                AdvanceToNextTimeout,
                FailPoll(4),
                Restart,
            ],
            vec![
                Upload { with_message: true },
                AnswerPoll,
                AnswerUpload(2),
                Persist { ok: false },
                AdvanceToNextTimeout,
                Restart,
            ],
        ];
        for ops in scripts {
            let a = run_inbox_ops(&ops);
            assert_eq!(a, run_inbox_ops(&ops));
        }
    }

    #[test]
    fn encoding_inverts_decoding() {
        let mut x: u64 = 0x9e37_79b9;
        for len in 0..300 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            let ops = decode_inbox_ops(&data);
            assert_eq!(decode_inbox_ops(&encode_inbox_ops(&ops)), ops);
        }
        assert_eq!(
            decode_inbox_ops(&encode_inbox_ops(&[InboxOp::Advance(1_234)])),
            vec![InboxOp::Advance(1_000)]
        );
    }

    #[test]
    fn random_bytes_hold_the_invariants() {
        let mut x: u64 = 0x1234_5678;
        for _ in 0..200 {
            let data: Vec<u8> = (0..120)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            inbox_ops_case(&data);
        }
    }
}
