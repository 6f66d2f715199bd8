//! The inbox machine (`molecule_mcp_core::inbox`) under simulated time, against the fake
//! activity feed of `testing::inbox` (platform paging semantics). Covers polling, the
//! durable queue and what it guarantees: nothing unacknowledged is lost in a crash, the
//! backlog is paged fully, popped messages are never delivered again (not even after a 410
//! replay), the queue stops fetching instead of evicting when full, polling backs off on
//! errors, our own rows and non-chat methods never become messages, file parts and uploads
//! reach the agent, our own attachments are never downloaded or acked, a waiter gets each
//! message once, and peer labels are sanitised and say where a message arrived; plus a
//! property test over random scripts of feed injections, answers, failures, pops and
//! crashes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use molecule_mcp_core::inbox::{
    EMPTY_MESSAGE_TEXT, FilePart, Inbox, InboxAction, InboxConfig, InboxInput, InboxMessage,
    MAX_BACKOFF, MAX_UPLOAD_BYTES, PeerLabel, REMINDER_EVERY, UploadFetch, UploadOutcome,
    push_content, push_meta, sanitize_filename,
};
use molecule_mcp_core::testing::inbox::{
    FUZZ_WORKSPACE, FakeFeed, InboxOp, PEER, PLATFORM, epoch, message_row, message_with_file_row,
    query_param, run_inbox_ops, test_config, upload_row,
};
use molecule_mcp_core::{
    HttpRequest, LogLevel, LogLine, Method, PersistId, PlatformUrl, RequestId, Secret, StateFile,
    TransportError, TransportErrorKind,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const WS: &str = FUZZ_WORKSPACE;
const TOKEN: &str = "tok-inbox-core-test-0123456789abcdef";

/// One inbox, its fake feed, a simulated clock and a "disk" holding the last saved state.
struct H {
    cfg: InboxConfig,
    inbox: Inbox,
    feed: FakeFeed,
    start: Instant,
    now: Instant,
    polls: BTreeMap<RequestId, HttpRequest>,
    /// Every poll URL sent, with its send time.
    poll_log: Vec<(Duration, String)>,
    other_http: Vec<HttpRequest>,
    writes: VecDeque<(PersistId, Vec<u8>)>,
    downloads: Vec<UploadFetch>,
    arrived: Vec<InboxMessage>,
    logs: Vec<LogLine>,
    disk: Option<Vec<u8>>,
    /// The journal file on the "disk".
    journal: Vec<u8>,
    /// Which outstanding writes are journal appends (with their `restart` flag).
    appends: BTreeMap<PersistId, bool>,
    /// `SetAside` actions seen, and their files.
    set_aside: usize,
    set_aside_files: Vec<StateFile>,
}

impl H {
    fn new(cfg: InboxConfig) -> Self {
        Self::with_disk(cfg, FakeFeed::new(WS), None, epoch())
    }

    fn with_disk(cfg: InboxConfig, feed: FakeFeed, disk: Option<Vec<u8>>, now: Instant) -> Self {
        Self::with_files(cfg, feed, disk, Vec::new(), now)
    }

    fn with_files(
        cfg: InboxConfig,
        feed: FakeFeed,
        disk: Option<Vec<u8>>,
        journal: Vec<u8>,
        now: Instant,
    ) -> Self {
        let inbox = Inbox::restore_from(cfg.clone(), disk.as_deref(), Some(&journal), now, 42);
        let mut h = H {
            cfg,
            inbox,
            feed,
            start: epoch(),
            now,
            polls: BTreeMap::new(),
            poll_log: Vec::new(),
            other_http: Vec::new(),
            writes: VecDeque::new(),
            downloads: Vec::new(),
            arrived: Vec::new(),
            logs: Vec::new(),
            disk,
            journal,
            appends: BTreeMap::new(),
            set_aside: 0,
            set_aside_files: Vec::new(),
        };
        h.drain();
        h
    }

    /// Crash and start again from what is on disk (in-flight work is lost).
    fn restart(self) -> Self {
        let now = self.now;
        let start = self.start;
        let mut h = Self::with_files(self.cfg, self.feed, self.disk, self.journal, now);
        h.start = start;
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.inbox.poll_action() {
            assert!(!format!("{a:?}").contains(TOKEN), "token leaked: {a:?}");
            match a {
                InboxAction::SendHttp(req) => {
                    if req.url.contains("/activity?") {
                        self.poll_log.push((self.now - self.start, req.url.clone()));
                        self.polls.insert(req.id, req);
                    } else {
                        self.other_http.push(req);
                    }
                }
                InboxAction::Log(line) => self.logs.push(line),
                InboxAction::Persist { id, bytes } => self.writes.push_back((id, bytes)),
                InboxAction::Append { id, bytes, restart } => {
                    self.appends.insert(id, restart);
                    self.writes.push_back((id, bytes));
                }
                InboxAction::Arrived(m) => self.arrived.push(m),
                InboxAction::FetchUpload(f) => self.downloads.push(f),
                // As a driver does: the file is gone from where the machine reads it.
                InboxAction::SetAside(file) => {
                    self.set_aside += 1;
                    self.set_aside_files.push(file);
                    match file {
                        StateFile::InboxJournal => self.journal.clear(),
                        StateFile::InboxState
                        | StateFile::AuthToken
                        | StateFile::InboundSecret
                        | StateFile::LegacyInboxCursor => self.disk = None,
                    }
                }
            }
        }
    }

    fn handle(&mut self, input: InboxInput) {
        self.inbox.handle(self.now, input);
        self.drain();
    }

    fn poll_in_flight(&self) -> Option<(RequestId, String)> {
        self.polls
            .iter()
            .next_back()
            .map(|(id, r)| (*id, r.url.clone()))
    }

    /// Answers the outstanding poll from the feed; returns its URL.
    fn answer_poll(&mut self) -> String {
        let (id, url) = self.poll_in_flight().expect("a poll is in flight");
        self.polls.remove(&id);
        let (status, body) = self.feed.answer(&url);
        self.handle(InboxInput::HttpResponse {
            id,
            status,
            retry_after: None,
            body,
        });
        url
    }

    fn respond_poll(&mut self, status: u16, body: &[u8], retry_after: Option<Duration>) -> String {
        let (id, url) = self.poll_in_flight().expect("a poll is in flight");
        self.polls.remove(&id);
        self.handle(InboxInput::HttpResponse {
            id,
            status,
            retry_after,
            body: body.to_vec(),
        });
        url
    }

    fn save(&mut self) {
        while let Some((id, bytes)) = self.writes.pop_front() {
            match self.appends.remove(&id) {
                Some(true) => self.journal = bytes,
                Some(false) => self.journal.extend(bytes),
                None => self.disk = Some(bytes),
            }
            self.handle(InboxInput::PersistDone { id, result: Ok(()) });
        }
    }

    /// Answers polls and saves until no poll is due right now.
    fn sync(&mut self) {
        for _ in 0..200 {
            self.save();
            if self.poll_in_flight().is_none() {
                return;
            }
            self.answer_poll();
        }
        panic!("inbox keeps polling immediately");
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.feed.advance_clock(by);
        if self.inbox.poll_timeout().is_some_and(|at| at <= self.now) {
            self.inbox.handle_timeout(self.now);
            self.drain();
        }
    }

    /// Jumps to the next deadline and fires it; returns how far time moved.
    fn next_timeout(&mut self) -> Duration {
        let at = self.inbox.poll_timeout().expect("something is scheduled");
        let by = at.saturating_duration_since(self.now);
        self.advance(by);
        by
    }

    fn peek_ids(&self) -> Vec<String> {
        self.inbox
            .peek(1000)
            .into_iter()
            .map(|m| m.activity_id)
            .collect()
    }

    fn arrived_ids(&self) -> Vec<String> {
        self.arrived.iter().map(|m| m.activity_id.clone()).collect()
    }

    fn logs_at(&self, level: LogLevel) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.message.as_str())
            .collect()
    }
}

fn cfg() -> InboxConfig {
    test_config(WS, TOKEN)
}

fn cfg_limit(limit: u32) -> InboxConfig {
    let mut c = cfg();
    c.page_limit = limit;
    c
}

fn msg(text: &str) -> Value {
    message_row(text, None)
}

// ----- polling and paging --------------------------------------------------------------

#[test]
fn first_poll_is_immediate_authenticated_and_asks_for_the_backlog() {
    let h = H::new(cfg());
    let (_, req) = h.polls.iter().next().expect("first poll sent at once");
    assert_eq!(req.method, Method::Get);
    assert_eq!(
        req.url,
        format!("{PLATFORM}/workspaces/{WS}/activity?type=a2a_receive&limit=100&since_secs=86400")
    );
    assert_eq!(req.bearer.as_ref().map(Secret::expose), Some(TOKEN));
    assert_eq!(&*req.headers, [("Origin", PLATFORM.to_owned())]);
    assert_eq!(req.deadline, h.now + Duration::from_secs(10));
}

#[test]
fn cold_start_pages_through_a_backlog_larger_than_a_page_oldest_first() {
    let mut h = H::new(cfg_limit(4));
    let ids: Vec<String> = (0..11)
        .map(|i| h.feed.push(msg(&format!("m{i}"))))
        .collect();
    h.sync();
    assert_eq!(
        h.arrived_ids(),
        ids,
        "every row delivered exactly once, oldest first"
    );
    assert_eq!(h.peek_ids(), ids);
    let texts: Vec<String> = h.inbox.peek(100).into_iter().map(|m| m.text).collect();
    assert_eq!(texts.first().map(String::as_str), Some("m0"));
    // Paged backwards with before_ts, then forwards with since_id.
    let urls: Vec<&str> = h.poll_log.iter().map(|(_, u)| u.as_str()).collect();
    assert!(
        query_param(urls[0], "before_ts").is_none() && query_param(urls[0], "since_secs").is_some()
    );
    assert!(query_param(urls[1], "before_ts").is_some());
    assert!(urls.iter().any(|u| query_param(u, "since_id").is_some()));
    assert_eq!(h.inbox.status().cursor.as_deref(), Some(ids[10].as_str()));
}

#[test]
fn backlog_rows_sharing_a_timestamp_across_a_page_boundary_are_not_lost() {
    let mut h = H::new(cfg_limit(3));
    let mut ids = vec![
        h.feed.push(msg("a")),
        h.feed.push(msg("b")),
        h.feed.push(msg("c")),
    ];
    ids.push(h.feed.push_same_time(msg("d")));
    ids.push(h.feed.push_same_time(msg("e")));
    ids.push(h.feed.push(msg("f")));
    ids.push(h.feed.push(msg("g")));
    h.sync();
    assert_eq!(h.arrived_ids(), ids);
    assert_eq!(h.peek_ids(), ids);
}

#[test]
fn a_backlog_page_entirely_at_one_instant_is_asked_again_in_a_bigger_page() {
    let mut h = H::new(cfg_limit(3));
    let mut ids = vec![h.feed.push(msg("first"))];
    for i in 0..6 {
        ids.push(h.feed.push_same_time(msg(&format!("burst{i}"))));
    }
    h.sync();
    assert_eq!(h.arrived_ids(), ids);
    assert!(
        h.poll_log
            .iter()
            .any(|(_, u)| query_param(u, "limit").as_deref() == Some("500"))
    );
    assert!(h.logs_at(LogLevel::Warn).is_empty(), "{:?}", h.logs);
}

#[test]
fn steady_polls_use_since_id_at_a_jittered_interval() {
    let mut h = H::new(cfg());
    let first = h.feed.push(msg("one"));
    h.sync();
    let mut gaps = Vec::new();
    let mut last = h.poll_log.last().unwrap().0;
    for i in 0..30 {
        let id = h.feed.push(msg(&format!("n{i}")));
        h.next_timeout();
        let (at, url) = h.poll_log.last().unwrap().clone();
        gaps.push(at - last);
        last = at;
        let cursor = query_param(&url, "since_id").expect("since_id poll");
        h.answer_poll();
        h.save();
        assert!(h.arrived_ids().contains(&id));
        assert_ne!(cursor, id);
    }
    assert_eq!(h.arrived_ids()[0], first);
    assert!(
        gaps.iter()
            .all(|g| *g >= Duration::from_secs(4) && *g <= Duration::from_secs(6)),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().collect::<BTreeSet<_>>().len() > 5,
        "jitter varies: {gaps:?}"
    );
}

#[test]
fn a_full_page_is_followed_at_once_but_only_after_it_is_saved() {
    let mut h = H::new(cfg_limit(2));
    h.respond_poll(200, b"[]", None);
    h.next_timeout();
    for i in 0..2 {
        h.feed.push(msg(&format!("x{i}")));
    }
    h.answer_poll(); // backlog: full page of 2 -> next backlog page at once
    h.answer_poll(); // short page -> cursor set, write queued
    assert!(
        h.poll_in_flight().is_none(),
        "no poll before the cursor is saved"
    );
    h.feed.push(msg("x2"));
    h.feed.push(msg("x3"));
    h.save();
    let url = h.answer_poll();
    assert!(query_param(&url, "since_id").is_some());
    assert!(h.poll_in_flight().is_none());
    h.save();
    assert!(
        h.poll_in_flight().is_some(),
        "full since_id page -> drain fast"
    );
}

#[test]
fn cursor_410_replays_the_backlog_without_redelivering_popped_or_queued_messages() {
    let mut h = H::new(cfg());
    let a = h.feed.push(msg("a"));
    let b = h.feed.push(msg("b"));
    h.sync();
    assert!(h.inbox.pop(&a).is_some());
    h.drain();
    h.save();
    let c = h.feed.push(msg("c"));
    // The platform pruned the cursor row: the next since_id poll gets a real 410.
    h.feed.remove(&b);
    h.next_timeout();
    h.answer_poll();
    assert!(
        h.logs_at(LogLevel::Info)
            .iter()
            .any(|l| l.contains("(410)")),
        "{:?}",
        h.logs
    );
    h.sync();
    assert_eq!(
        h.peek_ids(),
        vec![b.clone(), c.clone()],
        "b stays queued once, c is new, a is not back"
    );
    assert_eq!(h.arrived_ids(), vec![a, b, c], "nothing announced twice");
}

#[test]
fn restart_from_saved_state_keeps_the_queue_and_the_cursor() {
    let mut h = H::new(cfg());
    let ids: Vec<String> = (0..3).map(|i| h.feed.push(msg(&format!("r{i}")))).collect();
    h.sync();
    h.inbox.pop(&ids[0]);
    h.drain();
    h.save();
    let mut h = h.restart();
    assert_eq!(h.peek_ids(), ids[1..].to_vec());
    assert!(
        h.arrived.is_empty(),
        "restored messages are not announced again"
    );
    let url = h.poll_in_flight().unwrap().1;
    assert_eq!(
        query_param(&url, "since_id").as_deref(),
        Some(ids[2].as_str())
    );
    h.answer_poll();
    assert_eq!(h.peek_ids(), ids[1..].to_vec());
}

#[test]
fn crash_before_the_write_completes_refetches_and_dedupes() {
    let mut h = H::new(cfg());
    let a = h.feed.push(msg("a"));
    h.sync();
    let b = h.feed.push(msg("b"));
    h.next_timeout();
    h.answer_poll();
    assert_eq!(h.peek_ids(), vec![a.clone(), b.clone()]);
    assert_eq!(h.writes.len(), 1, "b is only in an unfinished write");
    // Also pop a before the crash, without the write finishing: at least once means a is back.
    h.inbox.pop(&a);
    h.drain();
    let mut h = h.restart();
    assert_eq!(h.peek_ids(), vec![a.clone()]);
    let url = h.poll_in_flight().unwrap().1;
    assert_eq!(query_param(&url, "since_id").as_deref(), Some(a.as_str()));
    h.sync();
    assert_eq!(h.peek_ids(), vec![a, b.clone()]);
    assert_eq!(h.arrived_ids(), vec![b]);
}

#[test]
fn failed_writes_pause_polling_and_are_retried() {
    let mut h = H::new(cfg());
    h.feed.push(msg("a"));
    h.answer_poll();
    let (id, _) = h.writes.pop_front().unwrap();
    h.handle(InboxInput::PersistDone {
        id,
        result: Err("No space left on device".into()),
    });
    assert_eq!(h.logs_at(LogLevel::Error).len(), 1);
    assert!(h.poll_in_flight().is_none());
    for _ in 0..3 {
        h.next_timeout();
        let (id, _) = h.writes.pop_front().expect("write retried");
        h.handle(InboxInput::PersistDone {
            id,
            result: Err("No space left on device".into()),
        });
        assert!(
            h.poll_in_flight().is_none(),
            "never poll past an unsaved cursor"
        );
    }
    assert_eq!(
        h.logs_at(LogLevel::Error).len(),
        1,
        "repeated failures are not re-logged at ERROR every time"
    );
    h.next_timeout();
    h.save();
    assert!(
        h.logs_at(LogLevel::Info)
            .iter()
            .any(|l| l.contains("saved again"))
    );
    h.next_timeout();
    assert!(h.poll_in_flight().is_some());
}

// ----- rows -> messages --------------------------------------------------------------

#[test]
fn self_rows_notify_echoes_and_non_message_methods_are_skipped_but_passed() {
    let mut h = H::new(cfg());
    let keep1 = h.feed.push(msg("hello"));
    h.feed.push(message_row("my own activity report", Some(WS)));
    h.feed
        .push(message_row("uppercase self id", Some(&WS.to_uppercase())));
    h.feed
        .push(json!({"method": "notify", "source_id": null, "response_body": {"result": "echo"}}));
    h.feed
        .push(json!({"method": "notify", "source_id": "", "summary": "echo"}));
    h.feed.push(
        json!({"method": "tasks/get", "source_id": PEER, "request_body": {"params": {"id": "t"}}}),
    );
    h.feed
        .push(json!({"method": "tasks/cancel", "source_id": PEER}));
    h.feed
        .push(json!({"method": "agent/getAuthenticatedExtendedCard", "source_id": PEER}));
    let keep2 = h.feed.push(message_row("from peer", Some(PEER)));
    let last = h.feed.push(json!({"method": "notify", "source_id": null}));
    h.sync();
    assert_eq!(h.peek_ids(), vec![keep1, keep2]);
    assert_eq!(
        h.inbox.status().cursor,
        Some(last),
        "the cursor moves past skipped rows"
    );
    let peer = &h.inbox.peek(10)[1];
    assert_eq!(peer.to_json()["kind"], "peer_agent");
    assert_eq!(peer.peer_id, PEER);
}

#[test]
fn odd_rows_do_not_break_a_page() {
    let mut h = H::new(cfg());
    h.respond_poll(200, b"[]", None);
    h.next_timeout();
    let body = json!([
        {"id": "00000000-0000-4000-8000-0000000000a3", "method": "message/send", "summary": "third", "created_at": "2026-05-05T00:00:03Z"},
        42, "text", null,
        {"method": "message/send", "summary": "no id"},
        {"id": "00000000-0000-4000-8000-0000000000a1", "method": "message/send", "summary": "first", "created_at": "2026-05-05T00:00:01Z"}
    ]);
    h.respond_poll(200, body.to_string().as_bytes(), None);
    let texts: Vec<String> = h.inbox.peek(10).into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["first", "third"]);
}

fn deliver(rows: Vec<Value>) -> Vec<InboxMessage> {
    let mut h = H::new(cfg());
    for r in rows {
        h.feed.push(r);
    }
    h.sync();
    h.inbox.peek(100)
}

#[test]
fn text_extraction_variants() {
    let rows = vec![
        json!({"method": "message/send", "request_body": {"params": {"message": {"parts": [{"kind": "text", "text": "kind "}, {"kind": "text", "text": "parts"}]}}}}),
        json!({"method": "message/send", "request_body": {"params": {"message": {"parts": [{"type": "text", "text": "type parts"}]}}}}),
        json!({"method": "message/send", "request_body": {"params": {"message": {"content": "v0.2 string"}}}}),
        json!({"method": "message/send", "request_body": {"params": {"message": {"content": [{"type": "text", "text": "v0.2 list"}]}}}}),
        json!({"method": "message/send", "request_body": {"params": {"parts": [{"kind": "text", "text": "params.parts"}]}}}),
        json!({"method": "message/send", "request_body": {"parts": [{"kind": "text", "text": "top parts"}]}}),
        json!({"method": "message/send", "request_body": "{\"params\":{\"message\":{\"parts\":[{\"kind\":\"text\",\"text\":\"string body\"}]}}}"}),
        json!({"method": "message/send", "summary": "the summary", "request_body": {"params": {"message": {"parts": [{"kind": "data", "data": {}}]}}}}),
        json!({"method": "message/send", "summary": "undecodable", "request_body": "{not json"}),
        json!({"method": "message/send", "request_body": {"params": {"message": {"parts": []}}}}),
        json!({"request_body": {"parts": [{"kind": "text", "text": "no method"}]}}),
    ];
    let texts: Vec<String> = deliver(rows).into_iter().map(|m| m.text).collect();
    assert_eq!(
        texts,
        vec![
            "kind parts",
            "type parts",
            "v0.2 string",
            "v0.2 list",
            "params.parts",
            "top parts",
            "string body",
            "the summary",
            "undecodable",
            EMPTY_MESSAGE_TEXT,
            "no method"
        ]
    );
}

#[test]
fn file_parts_are_surfaced_in_the_message_and_its_json() {
    let row = json!({"method": "message/send", "source_id": PEER, "request_body": {"params": {"message": {"parts": [
        {"kind": "text", "text": "see attached"},
        {"kind": "file", "file": {"uri": "https://files.example/r.pdf", "name": "r.pdf", "mimeType": "application/pdf", "size": 1234}},
        {"type": "file", "file": {"uri": "workspace:/x/y.png", "name": "y.png"}}
    ]}}}});
    let m = deliver(vec![row]).remove(0);
    assert_eq!(
        m.files,
        vec![
            FilePart {
                uri: "https://files.example/r.pdf".into(),
                name: "r.pdf".into(),
                mime_type: Some("application/pdf".into()),
                size: Some(1234)
            },
            FilePart {
                uri: "workspace:/x/y.png".into(),
                name: "y.png".into(),
                mime_type: None,
                size: None
            },
        ]
    );
    let j = m.to_json();
    assert_eq!(j["files"][0]["mimeType"], "application/pdf");
    assert_eq!(j["files"][0]["size"], 1234);
    assert!(j["files"][1].get("size").is_none());
    assert_eq!(j["text"], "see attached");
    let keys: BTreeSet<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "activity_id",
            "text",
            "peer_id",
            "kind",
            "method",
            "created_at",
            "files"
        ])
    );
}

#[test]
fn message_json_has_the_tool_shape_and_arrival_workspace_only_in_multi_mode() {
    let single = deliver(vec![msg("hi")]).remove(0).to_json();
    assert_eq!(single["kind"], "canvas_user");
    assert_eq!(single["peer_id"], "");
    assert_eq!(single["method"], "message/send");
    assert!(
        single["created_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-05-05T")
    );
    assert!(single.get("arrival_workspace_id").is_none());
    assert!(single.get("files").is_none());

    let mut c = cfg();
    c.arrival_workspace_id = Some(WS.to_owned());
    let mut h = H::new(c);
    h.feed.push(msg("hi"));
    h.sync();
    assert_eq!(h.inbox.peek(1)[0].to_json()["arrival_workspace_id"], WS);
}

// ----- uploads -------------------------------------------------------------------------

#[test]
fn sanitize_filename_matches_the_platform_rules() {
    for (raw, want) in [
        ("../../etc/passwd", "passwd"),
        ("hello world.pdf", "hello_world.pdf"),
        ("weird;chars!?.txt", "weird_chars__.txt"),
        ("中文.docx", "__.docx"),
        ("file (1).pdf", "file__1_.pdf"),
        ("", "file"),
        (".", "file"),
        ("..", "file"),
        ("dir/", "file"),
        ("C:\\Users\\me\\a b.txt", "a_b.txt"),
        (".bashrc", ".bashrc"),
    ] {
        assert_eq!(sanitize_filename(raw), want, "{raw:?}");
    }
    let long = format!("{}.tar.gz", "x".repeat(150));
    let s = sanitize_filename(&long);
    assert_eq!(s.len(), 100);
    assert!(s.ends_with("xx.gz"));
    let long_ext = format!("a.{}", "e".repeat(40));
    assert_eq!(
        sanitize_filename(&long_ext),
        long_ext[..long_ext.len().min(100)]
    );
    let very_long_ext = format!("name.{}", "e".repeat(120));
    assert_eq!(sanitize_filename(&very_long_ext), very_long_ext[..100]);
}

const PENDING_URI: &str = "platform-pending:aaaaaaaa-0000-4000-8000-00000000f022/file-1";

fn upload_scenario() -> (H, String, String) {
    let mut h = H::new(cfg());
    h.feed.push(upload_row(WS, "file-1", "my report.pdf"));
    let with_file = h.feed.push(message_with_file_row(
        "see file",
        PENDING_URI,
        "my report.pdf",
    ));
    let plain = h.feed.push(msg("unrelated"));
    h.sync();
    (h, with_file, plain)
}

#[test]
fn uploads_are_fetched_staged_acked_and_rewritten_into_messages() {
    let (mut h, with_file, plain) = upload_scenario();
    assert_eq!(h.downloads.len(), 1);
    let f = h.downloads[0].clone();
    assert_eq!(
        f.request.url,
        format!("{PLATFORM}/workspaces/{WS}/pending-uploads/file-1/content")
    );
    assert_eq!(f.request.method, Method::Get);
    assert_eq!(f.name, "my_report.pdf");
    assert_eq!(f.uri, PENDING_URI);
    assert_eq!(f.max_bytes, MAX_UPLOAD_BYTES);
    assert_eq!(
        h.peek_ids(),
        vec![plain.clone()],
        "the message waits for its upload; others do not"
    );
    assert_eq!(h.arrived_ids(), vec![plain.clone()]);
    assert_eq!(
        h.inbox.take_unreturned().map(|m| m.activity_id),
        Some(plain.clone())
    );

    let local = "workspace:/home/me/.molecule-workspace/chat-uploads/0f0f-my_report.pdf";
    h.handle(InboxInput::UploadDone {
        id: f.request.id,
        outcome: UploadOutcome::Staged {
            local_uri: local.into(),
        },
    });
    let ack = h.other_http.last().expect("ack sent");
    assert_eq!(ack.method, Method::Post);
    assert_eq!(
        ack.url,
        format!("{PLATFORM}/workspaces/{WS}/pending-uploads/file-1/ack")
    );
    assert_eq!(h.arrived_ids(), vec![plain.clone(), with_file.clone()]);
    assert_eq!(h.arrived[1].files[0].uri, local);
    assert_eq!(h.peek_ids(), vec![with_file.clone(), plain]);
    assert_eq!(
        h.inbox.take_unreturned().map(|m| m.activity_id),
        Some(with_file)
    );
    let ack_id = ack.id;
    h.handle(InboxInput::HttpResponse {
        id: ack_id,
        status: 200,
        retry_after: None,
        body: br#"{"acked":true}"#.to_vec(),
    });
    h.save();

    // The rewrite is remembered (and survives a restart) for later messages.
    let mut h = h.restart();
    h.feed
        .push(message_with_file_row("again", PENDING_URI, "my report.pdf"));
    h.sync();
    assert_eq!(h.arrived.last().unwrap().files[0].uri, local);
    assert!(
        h.downloads.is_empty(),
        "a settled upload is not fetched again"
    );
}

#[test]
fn failed_uploads_are_retried_then_reported_and_the_message_keeps_its_link() {
    let (mut h, with_file, _) = upload_scenario();
    for attempt in 1..=3u32 {
        let f = h.downloads.pop().expect("a download attempt");
        h.handle(InboxInput::UploadDone {
            id: f.request.id,
            outcome: UploadOutcome::Failed {
                detail: "connection reset".into(),
                retryable: true,
            },
        });
        if attempt < 3 {
            assert!(
                !h.peek_ids().contains(&with_file),
                "still waiting for the upload"
            );
            let failed_at = h.now;
            while h.downloads.is_empty() {
                h.next_timeout();
                h.sync();
            }
            assert!(
                h.now - failed_at >= Duration::from_secs(2u64 << (attempt - 1)),
                "retries back off"
            );
        }
    }
    let warns = h.logs_at(LogLevel::Warn);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("my_report.pdf") && w.contains("could not fetch")),
        "{warns:?}"
    );
    let m = h
        .inbox
        .peek(10)
        .into_iter()
        .find(|m| m.activity_id == with_file)
        .expect("released");
    assert_eq!(m.files[0].uri, PENDING_URI);
    assert!(h.arrived_ids().contains(&with_file));
    assert!(h.other_http.is_empty(), "no ack for a file we do not have");
    h.advance(Duration::from_secs(120));
    h.sync();
    assert!(h.downloads.is_empty(), "given up after 3 attempts");

    // A permanent failure is not retried at all.
    let mut h = H::new(cfg());
    h.feed.push(upload_row(WS, "file-2", "big.bin"));
    h.sync();
    let f = h.downloads.pop().unwrap();
    h.handle(InboxInput::UploadDone {
        id: f.request.id,
        outcome: UploadOutcome::Failed {
            detail: "body over 25 MiB".into(),
            retryable: false,
        },
    });
    assert!(
        h.logs_at(LogLevel::Warn)
            .iter()
            .any(|w| w.contains("big.bin"))
    );
    assert_eq!(h.inbox.status().uploads, 0);
}

#[test]
fn gone_uploads_and_download_errors_reported_as_http_release_messages() {
    let (mut h, with_file, _) = upload_scenario();
    let f = h.downloads.pop().unwrap();
    h.handle(InboxInput::HttpResponse {
        id: f.request.id,
        status: 404,
        retry_after: None,
        body: b"{}".to_vec(),
    });
    assert!(h.logs_at(LogLevel::Info).iter().any(|l| l.contains("404")));
    assert!(h.peek_ids().contains(&with_file));
    assert!(h.downloads.is_empty());
}

#[test]
fn our_own_outbound_attachments_are_not_fetched() {
    let mut h = H::new(cfg());
    h.inbox.note_outbound_upload("file-9");
    h.drain();
    h.save();
    h.feed.push(upload_row(WS, "file-9", "build.zip"));
    h.feed.push(upload_row(WS, "file-10", "other.zip"));
    h.sync();
    let fetched: Vec<&str> = h.downloads.iter().map(|d| d.file_id.as_str()).collect();
    assert_eq!(fetched, vec!["file-10"]);
}

#[test]
fn an_own_attachment_noted_after_its_row_was_fetched_is_dropped_and_never_acked() {
    // The race this guards against: the poll sees the platform's inbound copy of our upload
    // before send_message_to_user has read the upload answer that names its file id; acking
    // that copy would break the canvas's download link of our own attachment.
    let mut h = H::new(cfg());
    h.feed.push(upload_row(WS, "file-9", "build.zip"));
    h.sync();
    assert_eq!(
        h.downloads.len(),
        1,
        "the row was picked up as an inbound upload"
    );
    let download = h.downloads[0].clone();
    assert!(h.inbox.upload_wanted(download.request.id));
    let acks_before = h.other_http.len();

    h.inbox.note_outbound_upload("file-9");
    h.drain();
    assert!(
        !h.inbox.upload_wanted(download.request.id),
        "a held-back fetch must not start"
    );
    assert_eq!(h.inbox.status().uploads, 0, "the job is settled");
    // The download that was already under way finishes: ignored, no ack.
    h.handle(InboxInput::UploadDone {
        id: download.request.id,
        outcome: UploadOutcome::Staged {
            local_uri: "workspace:/tmp/x-build.zip".into(),
        },
    });
    assert_eq!(
        h.other_http.len(),
        acks_before,
        "our own attachment is never acked"
    );
    h.save();
    let mut h = h.restart();
    h.sync();
    assert!(h.downloads.is_empty(), "nor fetched again after a restart");
}

#[test]
fn download_deadline_is_enforced_by_the_core() {
    let (mut h, _, _) = upload_scenario();
    let f = h.downloads.pop().unwrap();
    assert_eq!(f.request.deadline, h.now + Duration::from_secs(60));
    h.advance(Duration::from_secs(66));
    assert!(
        h.logs_at(LogLevel::Info)
            .iter()
            .any(|l| l.contains("Timeout")),
        "{:?}",
        h.logs
    );
    // A late answer for the timed-out attempt is ignored.
    let ignored = h.inbox.status().ignored_inputs;
    h.handle(InboxInput::UploadDone {
        id: f.request.id,
        outcome: UploadOutcome::Gone,
    });
    assert_eq!(h.inbox.status().ignored_inputs, ignored + 1);
}

// ----- back-pressure, throttling, backoff ------------------------------------------------

#[test]
fn a_full_queue_stops_fetching_instead_of_evicting() {
    let mut c = cfg_limit(10);
    c.max_pending = 3;
    let mut h = H::new(c);
    let ids: Vec<String> = (0..5).map(|i| h.feed.push(msg(&format!("b{i}")))).collect();
    h.sync();
    assert_eq!(h.peek_ids(), ids[..3].to_vec());
    let warns = h.logs_at(LogLevel::Warn);
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("not fetching more"));
    let polls = h.poll_log.len();
    h.advance(Duration::from_secs(120));
    assert_eq!(h.poll_log.len(), polls, "no polling while full");
    assert_eq!(h.inbox.poll_timeout(), None);

    h.inbox.pop(&ids[0]);
    h.drain();
    h.save();
    h.advance(Duration::from_millis(1));
    h.sync();
    assert_eq!(h.peek_ids(), ids[1..4].to_vec());
    for id in &ids[1..4] {
        h.inbox.pop(id);
    }
    h.drain();
    h.save();
    h.advance(Duration::from_secs(10));
    h.sync();
    assert_eq!(h.peek_ids(), vec![ids[4].clone()], "nothing was dropped");
    assert_eq!(h.logs_at(LogLevel::Warn).len(), 2, "one WARN per episode");
}

#[test]
fn errors_back_off_exponentially_to_a_cap_and_reset_on_success() {
    let mut h = H::new(cfg());
    let mut gaps = Vec::new();
    for _ in 0..8 {
        h.respond_poll(500, br#"{"error":"query failed"}"#, None);
        gaps.push(h.next_timeout());
    }
    let secs: Vec<f64> = gaps.iter().map(Duration::as_secs_f64).collect();
    let bases = [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0];
    for (got, base) in secs.iter().zip(bases) {
        assert!(
            *got >= base * 0.8 - 0.001 && *got <= (base * 1.2).min(60.0) + 0.001,
            "{secs:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= MAX_BACKOFF));
    h.respond_poll(200, b"[]", None);
    let after = h.next_timeout();
    // The back-off is over: the regular cadence follows. Nobody used the inbox during the
    // five-minute outage, so that is the idle cadence's first step (2 × 5 s ± 20 %,
    // core/src/inbox/cadence.rs), not the 60 s of the back-off.
    assert!(
        after >= Duration::from_secs(8) && after <= Duration::from_secs(12),
        "{after:?}"
    );
}

#[test]
fn rate_limits_honour_retry_after() {
    let mut h = H::new(cfg());
    h.respond_poll(
        429,
        br#"{"error":"rate limit exceeded","retry_after":120}"#,
        Some(Duration::from_secs(120)),
    );
    assert!(h.next_timeout() >= Duration::from_secs(120));
    h.respond_poll(429, b"{}", Some(Duration::from_secs(100_000)));
    assert!(h.next_timeout() <= Duration::from_secs(600), "clamped");
}

#[test]
fn auth_failures_warn_once_then_at_most_every_five_minutes() {
    let mut h = H::new(cfg());
    let t0 = h.now;
    let mut polls = 0;
    while h.now - t0 < Duration::from_secs(30 * 60) {
        h.respond_poll(401, br#"{"error":"invalid token"}"#, None);
        polls += 1;
        h.next_timeout();
    }
    let warns: Vec<&LogLine> = h
        .logs
        .iter()
        .filter(|l| l.level == LogLevel::Warn)
        .collect();
    assert!(polls > 30, "kept polling ({polls})");
    assert!(
        warns.len() >= 6 && warns.len() <= 7,
        "{} WARNs for {polls} polls",
        warns.len()
    );
    assert!(warns[0].message.contains("401") && warns[0].message.contains(WS));
    let debug = h.logs_at(LogLevel::Debug).len();
    assert!(debug >= polls - 7);
    assert!(REMINDER_EVERY == Duration::from_secs(300));
    h.respond_poll(200, b"[]", None);
    assert!(
        h.logs_at(LogLevel::Info)
            .iter()
            .any(|l| l.contains("works again"))
    );
}

#[test]
fn transport_errors_and_deadlines_back_off_and_never_log_the_token() {
    let mut h = H::new(cfg());
    let (id, _) = h.poll_in_flight().unwrap();
    h.polls.remove(&id);
    let message = format!("connection reset while sending Bearer {TOKEN}");
    h.handle(InboxInput::HttpFailed {
        id,
        error: TransportError {
            kind: TransportErrorKind::Io,
            message,
        },
    });
    assert!(h.logs_at(LogLevel::Warn)[0].contains("[REDACTED]"));
    h.next_timeout();
    // No answer at all: the core's own deadline fires.
    h.polls.clear();
    let waited = h.next_timeout();
    assert_eq!(waited, Duration::from_secs(10));
    assert!(h.logs.iter().any(|l| l.message.contains("Timeout")));
}

#[test]
fn a_cursor_the_platform_cannot_look_up_is_dropped_after_repeated_500s() {
    let mut h = H::new(cfg());
    h.feed.push(msg("a"));
    h.sync();
    for _ in 0..3 {
        h.next_timeout();
        h.respond_poll(500, br#"{"error":"cursor lookup failed"}"#, None);
    }
    h.save();
    assert_eq!(h.inbox.status().cursor, None);
    h.next_timeout();
    let url = h.poll_in_flight().unwrap().1;
    assert!(query_param(&url, "since_secs").is_some());
    h.sync();
    assert_eq!(h.inbox.pending_len(), 1, "the replay does not duplicate");
}

#[test]
fn set_token_and_shutdown() {
    let mut h = H::new(cfg());
    h.respond_poll(200, b"[]", None);
    h.inbox.set_token(Secret::new("minted-token-value-0000"));
    h.next_timeout();
    let (_, req) = h.polls.iter().next_back().unwrap();
    assert_eq!(
        req.bearer.as_ref().map(Secret::expose),
        Some("minted-token-value-0000")
    );
    h.handle(InboxInput::Shutdown);
    assert_eq!(h.inbox.poll_timeout(), None);
    assert!(h.inbox.status().stopped);
}

#[test]
fn unreadable_state_file_starts_over_with_a_warning() {
    let h = H::with_disk(
        cfg(),
        FakeFeed::new(WS),
        Some(b"{ not json".to_vec()),
        epoch(),
    );
    assert!(
        h.logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("could not be read"))
    );
    let url = h.poll_in_flight().unwrap().1;
    assert!(query_param(&url, "since_secs").is_some());
}

#[test]
fn an_unreadable_or_empty_state_file_is_set_aside_once_before_any_write() {
    for bytes in [&b"{ not json"[..], b"", b" \n\t", b"null"] {
        let mut h = H::with_disk(cfg(), FakeFeed::new(WS), Some(bytes.to_vec()), epoch());
        assert_eq!(h.set_aside, 1, "{bytes:?}");
        assert!(
            h.logs_at(LogLevel::Warn)
                .iter()
                .any(|l| l.contains("moving it aside")),
            "{bytes:?}"
        );
        assert!(h.writes.is_empty(), "nothing written before the file moved");
        let a = h.feed.push(msg("a"));
        h.sync();
        assert_eq!(h.set_aside, 1, "only once");
        assert!(h.inbox.peek(10).iter().any(|m| m.activity_id == a));
        // A state this machine wrote restores without being set aside.
        let h = h.restart();
        assert_eq!(h.set_aside, 0);
        assert!(h.inbox.peek(10).iter().any(|m| m.activity_id == a));
    }
}

// ----- queue API -------------------------------------------------------------------------

#[test]
fn take_unreturned_never_returns_the_same_message_twice() {
    let mut h = H::new(cfg());
    let a = h.feed.push(msg("a"));
    let b = h.feed.push(msg("b"));
    h.sync();
    let take = |h: &mut H| h.inbox.take_unreturned().map(|m| m.activity_id);
    assert_eq!(take(&mut h), Some(a.clone()));
    assert_eq!(take(&mut h), Some(b.clone()));
    assert_eq!(take(&mut h), None);
    assert_eq!(
        h.peek_ids(),
        vec![a.clone(), b.clone()],
        "returned messages stay queued until popped"
    );
    h.inbox.pop(&a);
    h.drain();
    h.save();
    assert_eq!(take(&mut h), None);
    let c = h.feed.push(msg("c"));
    h.next_timeout();
    h.sync();
    assert_eq!(take(&mut h), Some(c));
    // A new process has not returned anything yet.
    let mut h = h.restart();
    assert_eq!(take(&mut h), Some(b));
}

#[test]
fn peek_and_pop_semantics() {
    let mut h = H::new(cfg());
    let ids: Vec<String> = (0..12)
        .map(|i| h.feed.push(msg(&format!("p{i}"))))
        .collect();
    h.sync();
    assert_eq!(h.inbox.peek(0).len(), 10);
    assert_eq!(h.inbox.peek(-5).len(), 10);
    assert_eq!(h.inbox.peek(3).len(), 3);
    assert_eq!(h.inbox.peek(100).len(), 12);
    assert_eq!(
        h.inbox.pop(&format!("  {}  ", ids[3])).map(|m| m.text),
        Some("p3".to_owned())
    );
    assert!(h.inbox.pop(&ids[3]).is_none(), "idempotent");
    assert!(h.inbox.pop("nope").is_none());
    assert_eq!(h.inbox.pending_len(), 11);
    h.drain();
    assert_eq!(h.writes.len(), 1, "a pop is persisted");
}

// ----- push notifications ----------------------------------------------------------------

fn platform() -> PlatformUrl {
    PlatformUrl::parse(PLATFORM).expect("valid test URL")
}

fn sample(peer: &str) -> InboxMessage {
    InboxMessage {
        activity_id: "0a1b2c3d-0000-4000-8000-00000000abcd".into(),
        text: "line one\nline two".into(),
        peer_id: peer.into(),
        method: "message/send".into(),
        created_at: "2026-05-05T15:44:36.123456Z".into(),
        arrival_workspace_id: None,
        files: Vec::new(),
    }
}

#[test]
fn push_meta_validates_and_sanitises_every_value() {
    let peer_upper = PEER.to_uppercase();
    let label = PeerLabel {
        name: Some("Bob\u{7}\n<script>alert(1)</script>".into()),
        role: Some("x".repeat(100)),
    };
    let meta = push_meta(&sample(&format!(" {peer_upper} ")), &platform(), &label);
    assert_eq!(meta["source"], "molecule");
    assert_eq!(meta["kind"], "peer_agent");
    assert_eq!(meta["method"], "message/send");
    assert_eq!(meta["activity_id"], "0a1b2c3d-0000-4000-8000-00000000abcd");
    assert_eq!(meta["ts"], "2026-05-05T15:44:36.123456Z");
    assert_eq!(meta["peer_id"], PEER);
    assert_eq!(meta["peer_name"], "Bob script alert(1) /script");
    let role = meta["peer_role"].as_str().unwrap();
    assert_eq!(role.chars().count(), 64);
    assert!(role.ends_with('…'));
    assert_eq!(
        meta["agent_card_url"],
        format!("{PLATFORM}/registry/discover/{PEER}")
    );
    assert!(meta.get("arrival_workspace_id").is_none());
    assert!(meta.as_object().unwrap().values().all(Value::is_string));

    let mut bad = sample("not-a-uuid");
    bad.activity_id = "0A1B2C3D-0000-4000-8000-00000000ABCD".into();
    bad.created_at = "yesterday".into();
    bad.method = "tasks/cancel".into();
    bad.arrival_workspace_id = Some(WS.into());
    let meta = push_meta(&bad, &platform(), &label);
    assert_eq!(meta["activity_id"], "");
    assert_eq!(meta["ts"], "");
    assert_eq!(meta["method"], "");
    assert_eq!(meta["peer_id"], "");
    assert!(
        meta.get("peer_name").is_none() && meta.get("agent_card_url").is_none(),
        "no enrichment without a valid peer"
    );
    assert_eq!(
        meta["arrival_workspace_id"], WS,
        "routable in multi-workspace mode"
    );

    let blank = PeerLabel {
        name: Some("<<>>".into()),
        role: None,
    };
    let meta = push_meta(&sample(PEER), &platform(), &blank);
    assert!(meta.get("peer_name").is_none());
}

#[test]
fn push_content_names_the_sender_and_how_to_reply() {
    let canvas = push_content(&sample(""), &PeerLabel::default());
    assert_eq!(
        canvas,
        "[from canvas user]\nline one\nline two\n↩ Reply: send_message_to_user({message: \"...\"})"
    );

    let label = PeerLabel {
        name: Some("Researcher".into()),
        role: Some("analyst".into()),
    };
    let peer = push_content(&sample(PEER), &label);
    assert_eq!(
        peer,
        format!(
            "[from Researcher (analyst) · peer_id={PEER}]\nline one\nline two\n↩ Reply: delegate_task({{workspace_id: \"{PEER}\", task: \"...\"}})"
        )
    );
    let anonymous = push_content(&sample(PEER), &PeerLabel::default());
    assert!(anonymous.starts_with(&format!("[from peer-agent · peer_id={PEER}]\n")));

    let mut multi = sample("");
    multi.arrival_workspace_id = Some(WS.into());
    multi.files = vec![FilePart {
        uri: "workspace:/s/a.pdf".into(),
        name: "a.pdf".into(),
        mime_type: None,
        size: None,
    }];
    let text = push_content(&multi, &PeerLabel::default());
    assert!(
        text.contains("[attachment: a.pdf — workspace:/s/a.pdf]"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "send_message_to_user({{message: \"...\", workspace_id: \"{WS}\"}})"
        )),
        "{text}"
    );

    let spoofed = push_content(&sample("evil\"); rm -rf /"), &label);
    assert!(
        !spoofed.contains("rm -rf"),
        "an invalid peer id is not echoed: {spoofed}"
    );
}

// ----- property ----------------------------------------------------------------------------

fn op() -> impl Strategy<Value = InboxOp> {
    prop_oneof![
        4 => (any::<bool>(), any::<bool>()).prop_map(|(peer, same_ts)| InboxOp::Message { peer, same_ts }),
        1 => any::<u8>().prop_map(InboxOp::Noise),
        1 => any::<bool>().prop_map(|with_message| InboxOp::Upload { with_message }),
        5 => Just(InboxOp::AnswerPoll),
        2 => any::<u8>().prop_map(InboxOp::FailPoll),
        4 => prop_oneof![3 => Just(true), 1 => Just(false)].prop_map(|ok| InboxOp::Persist { ok }),
        1 => any::<u8>().prop_map(InboxOp::AnswerUpload),
        3 => any::<u8>().prop_map(InboxOp::Pop),
        1 => Just(InboxOp::TakeUnreturned),
        1 => Just(InboxOp::Restart),
        1 => (0u32..120_000).prop_map(InboxOp::Advance),
        2 => Just(InboxOp::AdvanceToNextTimeout),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Random feeds, failures, pops and crashes: every injected message ends up popped or
    /// queued, a popped (and saved) message is never delivered again, and the runner's
    /// per-step invariants hold (see `testing::inbox`).
    #[test]
    fn random_scripts_never_lose_or_redeliver(ops in prop::collection::vec(op(), 0..60)) {
        run_inbox_ops(&ops);
    }
}

#[test]
fn scripts_are_deterministic() {
    use InboxOp::*;
    let ops = vec![
        Message {
            peer: true,
            same_ts: false,
        },
        Upload { with_message: true },
        AnswerPoll,
        FailPoll(2),
        AdvanceToNextTimeout,
        Persist { ok: true },
        AnswerPoll,
        Pop(0),
        Restart,
        AnswerUpload(0),
    ];
    assert_eq!(run_inbox_ops(&ops), run_inbox_ops(&ops));
}

// ----- journal -----------------------------------------------------------------------------

/// An inbox with three queued messages restored from a snapshot that remembers `handled`
/// handled ids, settled (its first write, a snapshot, is on disk).
fn with_history(handled: usize) -> (H, Vec<String>) {
    let mut h = H::new(cfg());
    let ids: Vec<String> = (0..3).map(|i| h.feed.push(msg(&format!("m{i}")))).collect();
    h.sync();
    let mut state: Value = serde_json::from_slice(h.disk.as_ref().expect("saved")).expect("json");
    state["handled"] = (0..handled)
        .map(|i| json!(format!("ffffffff-0000-4000-8000-{i:012}")))
        .collect();
    let snapshot = serde_json::to_vec(&state).expect("encode");
    let mut h = H::with_files(cfg(), h.feed, Some(snapshot), Vec::new(), h.now);
    h.sync();
    assert_eq!(h.inbox.status().handled, handled);
    (h, ids)
}

#[test]
fn a_pop_appends_the_same_bytes_whatever_the_history() {
    let mut sizes = Vec::new();
    for handled in [10, 10_000] {
        let (mut h, ids) = with_history(handled);
        let snapshot = h.disk.as_ref().map_or(0, Vec::len);
        assert_eq!(h.peek_ids(), ids, "{handled}");
        assert!(h.inbox.pop(&ids[1]).is_some());
        h.drain();
        let (id, bytes) = h.writes.back().cloned().expect("the pop is written");
        assert!(h.appends.contains_key(&id), "a journal append");
        sizes.push((bytes.len(), snapshot));
        h.save();
        // The ring keeps the newest 10,000 ids.
        let remembered = (handled + 1).min(10_000);
        assert_eq!(h.inbox.status().handled, remembered);
        // A restart reads the snapshot and the journal: the pop is not undone.
        let h = h.restart();
        assert_eq!(h.peek_ids(), vec![ids[0].clone(), ids[2].clone()]);
        assert_eq!(h.inbox.status().handled, remembered);
    }
    let (small, small_snapshot) = sizes[0];
    let (large, large_snapshot) = sizes[1];
    assert_eq!(
        small, large,
        "a pop costs the same at 10 and 10,000 handled ids"
    );
    assert!(small < 200, "{small} bytes");
    assert!(
        large_snapshot > 100 * small_snapshot.min(4_000),
        "the whole state is much larger: {small_snapshot} vs {large_snapshot} bytes"
    );
}

#[test]
fn the_journal_is_compacted_into_a_snapshot_once_it_outgrows_it() {
    let mut h = H::new(cfg());
    let mut snapshots = 0;
    let mut appends = 0;
    for round in 0..40 {
        let ids: Vec<String> = (0..20)
            .map(|i| {
                h.feed.push(msg(&format!(
                    "round {round} message {i} {}",
                    "x".repeat(200)
                )))
            })
            .collect();
        h.next_timeout();
        let before = h.disk.clone();
        h.sync();
        snapshots += usize::from(h.disk != before);
        for id in &ids {
            h.inbox.pop(id);
            h.drain();
            appends += usize::from(
                h.writes
                    .back()
                    .is_some_and(|(id, _)| h.appends.contains_key(id)),
            );
            let before = h.disk.clone();
            h.save();
            snapshots += usize::from(h.disk != before);
        }
        assert!(
            h.journal.len() <= 64 * 1024 + 4096,
            "journal bounded: {} bytes",
            h.journal.len()
        );
    }
    assert!(
        snapshots >= 1 && appends > 10 * snapshots,
        "{snapshots} snapshots, {appends} appends"
    );
    // Rows a poll had not fetched yet when their pop came.
    for _ in 0..10 {
        h.next_timeout();
        h.sync();
        for id in h.peek_ids() {
            h.inbox.pop(&id);
            h.drain();
            h.save();
        }
    }
    assert!(h.peek_ids().is_empty());
    let h = h.restart();
    assert!(h.peek_ids().is_empty(), "every pop survives the restart");
    assert_eq!(h.inbox.status().handled, 800);
}

#[test]
fn a_torn_journal_tail_is_skipped_and_never_appended_after() {
    let (mut h, ids) = with_history(10);
    h.inbox.pop(&ids[0]);
    h.drain();
    h.save();
    // A crash in the middle of the next append leaves half a line.
    h.journal.extend(b"{\"seq\":99,\"op\":\"pop\",\"id\":\"");
    let mut h = h.restart();
    assert_eq!(h.peek_ids(), vec![ids[1].clone(), ids[2].clone()]);
    assert!(
        h.logs_at(LogLevel::Warn)
            .iter()
            .any(|l| l.contains("unreadable journal line")),
        "{:?}",
        h.logs
    );
    h.inbox.pop(&ids[1]);
    h.drain();
    let (id, _) = h.writes.back().cloned().expect("written");
    assert!(
        !h.appends.contains_key(&id),
        "the first write after a restart is a snapshot, not an append after the torn line"
    );
    h.save();
    h.inbox.pop(&ids[2]);
    h.drain();
    let (id, _) = h.writes.back().cloned().expect("written");
    assert_eq!(
        h.appends.get(&id),
        Some(&true),
        "then the journal starts afresh"
    );
    h.save();
    let h = h.restart();
    assert!(h.peek_ids().is_empty());
}

#[test]
fn a_failed_append_is_followed_by_a_snapshot() {
    let (mut h, ids) = with_history(10);
    h.inbox.pop(&ids[0]);
    h.drain();
    let (id, _) = h.writes.pop_front().expect("append");
    assert!(h.appends.contains_key(&id));
    h.handle(InboxInput::PersistDone {
        id,
        result: Err("No space left on device".into()),
    });
    h.advance(Duration::from_secs(600));
    let (id, _) = h.writes.back().cloned().expect("retried");
    assert!(!h.appends.contains_key(&id), "the retry is a snapshot");
    h.save();
    let h = h.restart();
    assert_eq!(h.peek_ids(), vec![ids[1].clone(), ids[2].clone()]);
}

#[test]
fn a_journal_with_garbage_before_readable_lines_is_set_aside_after_its_readable_changes() {
    let (mut h, ids) = with_history(10);
    h.inbox.pop(&ids[0]);
    h.drain();
    h.save();
    let mut journal = b"garbage from elsewhere\n".to_vec();
    journal.extend(&h.journal);
    h.journal = journal;
    let mut h = h.restart();
    assert_eq!(h.set_aside_files, vec![StateFile::InboxJournal]);
    assert_eq!(
        h.peek_ids(),
        vec![ids[1].clone(), ids[2].clone()],
        "the pop was replayed"
    );
    // The next write is a snapshot; the journal then starts afresh.
    h.inbox.pop(&ids[1]);
    h.drain();
    let (id, _) = h.writes.back().cloned().expect("written");
    assert!(!h.appends.contains_key(&id));
    h.save();
    let h = h.restart();
    assert_eq!(h.peek_ids(), vec![ids[2].clone()]);
}
