//! The workspace and fleet machines (`molecule_mcp_core::workspace`) under simulated time:
//! the rules that join a workspace's session and inbox (pop durability, upload hold-back,
//! minted tokens, rejection and the exit rule), ordering across workspaces, id routing,
//! and a property test that no input sequence panics or loses the routing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use molecule_mcp_core::inbox::{InboxMessage, UploadFetch};
use molecule_mcp_core::testing::inbox::{
    FakeFeed, PLATFORM, epoch, message_row, test_config, upload_row,
};
use molecule_mcp_core::workspace::{
    Fleet, FleetPlan, Input, Output, POP_SAVE_GRACE, PersistWrite, PopTicket, Restored,
    WorkspacePlan,
};
use molecule_mcp_core::{
    HttpRequest, LogLevel, LogLine, PersistError, PlatformUrl, RequestId, Secret, SessionConfig,
    StateFile, StateLayout, TransportError, TransportErrorKind,
};
use proptest::prelude::*;
use serde_json::json;

const A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const TOKEN: &str = "tok-workspace-core-0123456789";

fn platform() -> PlatformUrl {
    PlatformUrl::parse(PLATFORM).expect("platform")
}

fn plan_for(ids: &[&str], session: bool, inbox: bool) -> FleetPlan {
    let multi = ids.len() > 1;
    FleetPlan {
        multi_workspace: multi,
        workspaces: ids
            .iter()
            .map(|id| WorkspacePlan {
                workspace_id: (*id).to_owned(),
                session: session.then(|| {
                    SessionConfig::new(
                        platform(),
                        *id,
                        Secret::new(TOKEN),
                        "MOLECULE_WORKSPACE_TOKEN",
                        json!({"name": "t"}),
                    )
                }),
                inbox: inbox.then(|| {
                    let mut cfg = test_config(id, TOKEN);
                    cfg.arrival_workspace_id = multi.then(|| (*id).to_owned());
                    cfg
                }),
                layout: StateLayout::new(multi),
                state_dir_display: "/state".to_owned(),
                restored: Restored::default(),
            })
            .collect(),
    }
}

/// A fleet, a fake platform (register/heartbeat always 200 unless scripted, one activity
/// feed per workspace), a disk, and a simulated clock.
struct H {
    fleet: Fleet,
    now: Instant,
    feeds: BTreeMap<String, FakeFeed>,
    /// Requests sent and not answered yet.
    http: BTreeMap<RequestId, HttpRequest>,
    fetches: Vec<UploadFetch>,
    writes: Vec<PersistWrite>,
    /// Paths the fleet asked to move aside, in order.
    set_aside: Vec<String>,
    /// Which of `writes` are journal appends (with their `restart` flag).
    appends: BTreeMap<molecule_mcp_core::PersistId, bool>,
    disk: BTreeMap<String, Vec<u8>>,
    logs: Vec<LogLine>,
    arrived: Vec<InboxMessage>,
    pops: BTreeMap<PopTicket, Option<InboxMessage>>,
    outputs: Vec<Output>,
    register_status: u16,
}

impl H {
    fn new(plan: FleetPlan) -> Self {
        let feeds = plan
            .workspaces
            .iter()
            .map(|w| (w.workspace_id.clone(), FakeFeed::new(&w.workspace_id)))
            .collect();
        let now = epoch();
        let mut h = H {
            fleet: Fleet::new(plan, now, 7),
            now,
            feeds,
            http: BTreeMap::new(),
            fetches: Vec::new(),
            writes: Vec::new(),
            set_aside: Vec::new(),
            appends: BTreeMap::new(),
            disk: BTreeMap::new(),
            logs: Vec::new(),
            arrived: Vec::new(),
            pops: BTreeMap::new(),
            outputs: Vec::new(),
            register_status: 200,
        };
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(output) = self.fleet.poll_output() {
            assert!(
                !format!("{output:?}").contains(TOKEN),
                "token in an output: {output:?}"
            );
            match &output {
                Output::SendHttp(r) => {
                    self.http.insert(r.id, r.clone());
                }
                Output::FetchUpload(f) => self.fetches.push(f.clone()),
                Output::Persist(w) => self.writes.push(w.clone()),
                // Kept with the other writes; `save` appends it instead of replacing.
                Output::Append(a) => {
                    self.appends.insert(a.id, a.restart);
                    self.writes.push(PersistWrite {
                        id: a.id,
                        workspace_id: a.workspace_id.clone(),
                        file: a.file,
                        path: a.path.clone(),
                        contents: a.contents.clone(),
                    });
                }
                Output::SetAside(a) => self.set_aside.push(a.path.clone()),
                Output::Log(l) => self.logs.push(l.clone()),
                Output::Arrived(m) => self.arrived.push(m.clone()),
                Output::PopDone {
                    ticket, message, ..
                } => {
                    self.pops.insert(*ticket, message.clone());
                }
                Output::TokenChanged { .. } | Output::Rejected { .. } | Output::Exit { .. } => {}
            }
            self.outputs.push(output);
        }
    }

    fn handle(&mut self, input: Input) {
        self.fleet.handle(self.now, input);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.fleet.poll_timeout().filter(|at| *at <= end) {
            self.now = at.max(self.now);
            self.fleet.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
        self.fleet.handle_timeout(self.now);
        self.drain();
    }

    /// Answers every outstanding request like the platform would.
    fn answer_all(&mut self) {
        let requests: Vec<HttpRequest> = std::mem::take(&mut self.http).into_values().collect();
        for r in requests {
            let (status, body) = if r.url.ends_with("/registry/register") {
                (self.register_status, b"{}".to_vec())
            } else if r.url.ends_with("/registry/heartbeat") || r.url.ends_with("/ack") {
                (200, b"{}".to_vec())
            } else if r.url.contains("/activity?") {
                let ws = self
                    .feeds
                    .keys()
                    .find(|w| r.url.contains(w.as_str()))
                    .cloned()
                    .unwrap_or_default();
                self.feeds
                    .get(&ws)
                    .map(|f| f.answer(&r.url))
                    .unwrap_or((404, Vec::new()))
            } else {
                (404, Vec::new())
            };
            self.handle(Input::HttpResponse {
                id: r.id,
                status,
                retry_after: None,
                body,
            });
        }
    }

    /// Completes every pending write (or fails them with `fail`).
    fn save(&mut self, fail: bool) {
        for w in std::mem::take(&mut self.writes) {
            let result = if fail {
                Err(PersistError::from("No space left on device"))
            } else {
                match self.appends.remove(&w.id) {
                    Some(false) => self
                        .disk
                        .entry(w.path.clone())
                        .or_default()
                        .extend(&w.contents),
                    Some(true) | None => {
                        self.disk.insert(w.path.clone(), w.contents.clone());
                    }
                }
                Ok(())
            };
            self.handle(Input::PersistDone { id: w.id, result });
        }
    }

    /// Polls, answers and saves until quiet.
    fn settle(&mut self) {
        for _ in 0..10 {
            self.answer_all();
            self.save(false);
        }
    }

    fn requests_to(&self, path_part: &str) -> Vec<HttpRequest> {
        self.http
            .values()
            .filter(|r| r.url.contains(path_part))
            .cloned()
            .collect()
    }
}

#[test]
fn a_pop_is_answered_only_once_its_removal_is_saved() {
    let mut h = H::new(plan_for(&[A], false, true));
    let id = h
        .feeds
        .get_mut(A)
        .expect("feed")
        .push(message_row("hello", None));
    h.settle();
    assert_eq!(h.arrived.len(), 1);
    h.handle(Input::Pop {
        ticket: PopTicket(1),
        activity_id: id.clone(),
    });
    assert!(h.pops.is_empty(), "not answered before the write completes");
    assert_eq!(h.writes.len(), 1, "the removal is written");
    // Appended to the journal: its cost does not grow with the state.
    assert_eq!(h.writes[0].file, StateFile::InboxJournal);
    assert_eq!(h.writes[0].path, ".mcp_inbox_journal");
    h.save(false);
    let answered = h.pops.get(&PopTicket(1)).cloned().flatten();
    assert_eq!(answered.map(|m| m.activity_id), Some(id.clone()));
    h.handle(Input::Pop {
        ticket: PopTicket(2),
        activity_id: id,
    });
    assert_eq!(
        h.pops.get(&PopTicket(2)),
        Some(&None),
        "a second pop of the same id is answered at once: not queued"
    );
}

#[test]
fn a_pop_whose_write_keeps_failing_is_answered_after_the_grace() {
    let mut h = H::new(plan_for(&[A], false, true));
    let id = h
        .feeds
        .get_mut(A)
        .expect("feed")
        .push(message_row("hello", None));
    h.settle();
    h.handle(Input::Pop {
        ticket: PopTicket(9),
        activity_id: id,
    });
    h.save(true);
    h.advance(Duration::from_secs(4));
    h.save(true);
    assert!(h.pops.is_empty(), "still waiting inside the grace");
    h.advance(Duration::from_secs(2));
    assert!(
        h.pops.contains_key(&PopTicket(9)),
        "answered once the grace is over"
    );
}

#[test]
fn an_unusable_inbox_state_is_set_aside_before_anything_writes_it() {
    for bytes in [
        &b""[..],
        b"  \n",
        b"{\"pending\": [",
        b"[1, 2]",
        b"\xff\xfe",
    ] {
        let mut plan = plan_for(&[A, B], false, true);
        plan.workspaces[0]
            .restored
            .files
            .insert(StateFile::InboxState, bytes.to_vec());
        let mut h = H::new(plan);
        let file = format!(".mcp_inbox_state_{A}");
        assert_eq!(h.set_aside, vec![file.clone()], "{bytes:?}");
        let aside_at = h
            .outputs
            .iter()
            .position(|o| matches!(o, Output::SetAside(_)))
            .expect("set aside");
        assert!(
            h.logs.iter().any(|l| l.level == LogLevel::Warn
                && l.workspace_id == A
                && l.message.contains("moving it aside")),
            "{:?}",
            h.logs
        );
        h.feeds
            .get_mut(A)
            .expect("feed")
            .push(message_row("hello", None));
        h.settle();
        let first_write = h
            .outputs
            .iter()
            .position(|o| matches!(o, Output::Persist(w) if w.path == file))
            .expect("the inbox saves again");
        assert!(aside_at < first_write, "moved aside before it is replaced");
        assert_eq!(h.set_aside.len(), 1, "once");
    }
}

#[test]
fn a_pop_answered_after_the_grace_says_its_removal_is_not_saved() {
    let saved_of = |h: &H, ticket: PopTicket| {
        h.outputs.iter().find_map(|o| {
            if let Output::PopDone {
                ticket: t, saved, ..
            } = o
                && *t == ticket
            {
                Some(*saved)
            } else {
                None
            }
        })
    };
    let mut h = H::new(plan_for(&[A], false, true));
    let feed = h.feeds.get_mut(A).expect("feed");
    let failing = feed.push(message_row("hello", None));
    let fine = feed.push(message_row("again", None));
    h.settle();
    h.handle(Input::Pop {
        ticket: PopTicket(9),
        activity_id: failing,
    });
    h.save(true);
    h.advance(POP_SAVE_GRACE + Duration::from_secs(1));
    assert_eq!(
        saved_of(&h, PopTicket(9)),
        Some(false),
        "the answer after the grace says the removal is not on disk"
    );
    // Once the disk works again, a pop is answered as saved.
    h.advance(Duration::from_secs(120));
    h.save(false);
    h.handle(Input::Pop {
        ticket: PopTicket(10),
        activity_id: fine,
    });
    h.save(false);
    assert_eq!(saved_of(&h, PopTicket(10)), Some(true));
    h.handle(Input::Pop {
        ticket: PopTicket(11),
        activity_id: "not-queued".to_owned(),
    });
    assert_eq!(saved_of(&h, PopTicket(11)), Some(true), "nothing to save");
}

#[test]
fn own_uploads_are_held_back_until_the_upload_answer_names_them() {
    let mut h = H::new(plan_for(&[A], false, true));
    h.handle(Input::OutboundUploadStarted {
        workspace_id: A.to_owned(),
    });
    {
        let feed = h.feeds.get_mut(A).expect("feed");
        feed.push(upload_row(A, "own-file", "mine.txt"));
        feed.push(upload_row(A, "their-file", "theirs.txt"));
    }
    h.settle();
    assert!(h.fetches.is_empty(), "no download while our upload is out");
    h.handle(Input::OutboundUploadFinished {
        workspace_id: A.to_owned(),
        file_ids: vec!["own-file".to_owned()],
    });
    let names: Vec<String> = h.fetches.iter().map(|f| f.file_id.clone()).collect();
    assert_eq!(names, ["their-file"], "ours is dropped, theirs starts");
    let fetch = h.fetches.remove(0);
    assert!(
        fetch.path.starts_with("chat-uploads/")
            && fetch.path.ends_with("-theirs.txt")
            && fetch.path.len() == "chat-uploads/".len() + 32 + 1 + 10,
        "{}",
        fetch.path
    );
    h.handle(Input::UploadStaged {
        id: fetch.request.id,
        result: Ok("/state/chat-uploads/x-theirs.txt".to_owned()),
    });
    assert!(
        !h.requests_to("/pending-uploads/their-file/ack").is_empty(),
        "a staged upload is acked by the core"
    );
    assert!(h.requests_to("/pending-uploads/own-file/").is_empty());
}

#[test]
fn download_failures_are_classified_by_the_core() {
    let mut h = H::new(plan_for(&[A], false, true));
    h.feeds
        .get_mut(A)
        .expect("feed")
        .push(upload_row(A, "big", "big.bin"));
    h.settle();
    let fetch = h.fetches.remove(0);
    h.handle(Input::HttpFailed {
        id: fetch.request.id,
        error: TransportError {
            kind: TransportErrorKind::BodyTooLarge,
            message: "response body larger than 26214400 bytes".to_owned(),
        },
    });
    h.advance(Duration::from_secs(120));
    h.settle();
    assert!(h.fetches.is_empty(), "a body over the cap is not retried");
    assert!(
        h.logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("big.bin")),
        "the failure is reported with the file name: {:?}",
        h.logs
    );

    let mut h = H::new(plan_for(&[A], false, true));
    h.feeds
        .get_mut(A)
        .expect("feed")
        .push(upload_row(A, "slow", "slow.bin"));
    h.settle();
    let fetch = h.fetches.remove(0);
    h.handle(Input::HttpResponse {
        id: fetch.request.id,
        status: 408,
        retry_after: None,
        body: Vec::new(),
    });
    h.advance(Duration::from_secs(10));
    assert_eq!(h.fetches.len(), 1, "a 408 is retried");
}

#[test]
fn a_minted_token_reaches_the_inbox_and_the_program() {
    let mut h = H::new(plan_for(&[A], true, true));
    let register = h.requests_to("/registry/register").remove(0);
    h.http.remove(&register.id);
    h.handle(Input::HttpResponse {
        id: register.id,
        status: 200,
        retry_after: None,
        body: br#"{"auth_token":"minted-token-value-0000"}"#.to_vec(),
    });
    assert!(h.outputs.iter().any(|o| matches!(
        o,
        Output::TokenChanged { workspace_id, token } if workspace_id == A && token.expose() == "minted-token-value-0000"
    )));
    assert!(
        h.writes
            .iter()
            .any(|w| w.file == StateFile::AuthToken && w.path == ".auth_token"),
        "the minted token is saved under its layout name"
    );
    h.settle();
    h.advance(Duration::from_secs(6));
    let polls = h.requests_to("/activity?");
    assert!(!polls.is_empty());
    assert!(
        polls.iter().all(|p| p
            .wire_headers()
            .any(|(n, v)| n == "Authorization" && v == "Bearer minted-token-value-0000")),
        "the inbox polls with the minted token"
    );
}

#[test]
fn a_single_rejected_workspace_ends_the_process_with_exit_3() {
    let mut h = H::new(plan_for(&[A], true, true));
    h.register_status = 401;
    h.answer_all();
    let exits: Vec<(u8, String)> = h
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Exit { code, message } => Some((*code, message.clone())),
            Output::SendHttp(_)
            | Output::FetchUpload(_)
            | Output::Persist(_)
            | Output::Append(_)
            | Output::SetAside(_)
            | Output::Log(_)
            | Output::Arrived(_)
            | Output::TokenChanged { .. }
            | Output::Rejected { .. }
            | Output::PopDone { .. } => None,
        })
        .collect();
    assert_eq!(exits.len(), 1, "{:?}", h.outputs);
    assert_eq!(exits[0].0, 3);
    assert!(exits[0].1.contains("401"), "{}", exits[0].1);
}

#[test]
fn in_multi_mode_a_rejected_workspace_stops_and_the_others_go_on() {
    let mut h = H::new(plan_for(&[A, B], true, true));
    // Only A's register is rejected.
    let register_a = h
        .requests_to("/registry/register")
        .into_iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains(A))
        .expect("register of A");
    h.http.remove(&register_a.id);
    h.handle(Input::HttpResponse {
        id: register_a.id,
        status: 403,
        retry_after: None,
        body: Vec::new(),
    });
    assert!(
        h.outputs
            .iter()
            .any(|o| matches!(o, Output::Rejected { workspace_id, .. } if workspace_id == A))
    );
    assert!(!h.outputs.iter().any(|o| matches!(o, Output::Exit { .. })));
    assert!(h.logs.iter().any(|l| l.level == LogLevel::Error
        && l.workspace_id == A
        && l.message.contains("the others keep running")));
    h.settle();
    h.http.clear();
    h.advance(Duration::from_secs(30));
    let polls = h.requests_to("/activity?");
    assert!(polls.iter().all(|p| p.url.contains(B)), "A polls no more");
    assert!(polls.iter().any(|p| p.url.contains(B)), "B keeps polling");
    let status = h.fleet.status();
    assert!(status[0].rejected && !status[1].rejected);
}

#[test]
fn in_multi_mode_the_process_exits_when_every_workspace_is_rejected() {
    let mut h = H::new(plan_for(&[A, B], true, false));
    h.register_status = 401;
    h.answer_all();
    let exits: Vec<&Output> = h
        .outputs
        .iter()
        .filter(|o| matches!(o, Output::Exit { .. }))
        .collect();
    assert_eq!(exits.len(), 1);
    assert!(
        matches!(exits[0], Output::Exit { code: 3, message } if message.contains("every configured workspace"))
    );
}

#[test]
fn the_next_message_is_the_oldest_across_workspaces() {
    let mut h = H::new(plan_for(&[A, B], false, true));
    // Distinct activity ids for B (each fake feed numbers its rows from 1).
    {
        let b = h.feeds.get_mut(B).expect("feed b");
        for _ in 0..100 {
            let id = b.push(message_row("filler", None));
            b.remove(&id);
        }
    }
    let b_old = {
        let b = h.feeds.get_mut(B).expect("feed b");
        b.push(message_row("b-old", None))
    };
    let a_new = {
        let a = h.feeds.get_mut(A).expect("feed a");
        a.advance_clock(Duration::from_secs(60));
        a.push(message_row("a-new", None))
    };
    h.settle();
    let peeked: Vec<String> = h
        .fleet
        .peek(10)
        .into_iter()
        .map(|m| m.activity_id)
        .collect();
    assert_eq!(peeked, [b_old.clone(), a_new.clone()]);
    let first = h.fleet.take_unreturned().map(|m| m.activity_id);
    let second = h.fleet.take_unreturned().map(|m| m.activity_id);
    assert_eq!(first, Some(b_old));
    assert_eq!(second, Some(a_new));
    assert!(h.fleet.take_unreturned().is_none(), "each message once");
}

#[test]
fn restored_files_seed_the_session_and_the_inbox() {
    let mut plan = plan_for(&[A], true, true);
    let files = plan.files_to_restore();
    let names: Vec<&str> = files.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            ".platform_inbound_secret",
            ".auth_token",
            ".mcp_inbox_state",
            ".mcp_inbox_journal",
            ".mcp_inbox_cursor"
        ]
    );
    plan.restore(0, StateFile::InboundSecret, b"secret-on-disk\n".to_vec());
    plan.restore(0, StateFile::AuthToken, b"saved-token-0000\n".to_vec());
    let mut h = H::new(plan);
    // The configured token is rejected; the saved one is tried once.
    let register = h.requests_to("/registry/register").remove(0);
    h.http.remove(&register.id);
    h.handle(Input::HttpResponse {
        id: register.id,
        status: 401,
        retry_after: None,
        body: Vec::new(),
    });
    assert!(
        h.logs
            .iter()
            .any(|l| l.message.contains("/state/.auth_token")),
        "the fallback names the saved file: {:?}",
        h.logs
    );
    let again = h.requests_to("/registry/register");
    assert_eq!(again.len(), 1, "register again with the saved token");
    // The inbound secret already on disk is not written again.
    h.http.remove(&again[0].id);
    h.handle(Input::HttpResponse {
        id: again[0].id,
        status: 200,
        retry_after: None,
        body: br#"{"platform_inbound_secret":"secret-on-disk"}"#.to_vec(),
    });
    assert!(
        !h.writes.iter().any(|w| w.file == StateFile::InboundSecret),
        "{:?}",
        h.writes
    );
}

/// Three messages in A's feed; the Python original's cursor file names the second one.
/// A workspace restored from its own snapshot and journal (if any) beside the original's
/// cursor file, as a restart reads them.
fn upgrade_harness(own_state: Option<&[u8]>, own_journal: Option<&[u8]>, legacy: &[u8]) -> H {
    let mut plan = plan_for(&[A], false, true);
    if let Some(own) = own_state {
        plan.restore(0, StateFile::InboxState, own.to_vec());
    }
    if let Some(journal) = own_journal {
        plan.restore(0, StateFile::InboxJournal, journal.to_vec());
    }
    plan.restore(0, StateFile::LegacyInboxCursor, legacy.to_vec());
    let mut h = H::new(plan);
    let feed = h.feeds.get_mut(A).expect("feed");
    for text in ["old one", "old two", "new three"] {
        feed.push(message_row(text, None));
    }
    h
}

fn legacy_cursor_of_second_row() -> String {
    let mut scratch = FakeFeed::new(A);
    scratch.push(message_row("x", None));
    scratch.push(message_row("y", None))
}

#[test]
fn an_upgrade_continues_after_the_original_cursor_and_saves_it_as_its_own() {
    let cursor = legacy_cursor_of_second_row();
    // The original writes the bare id, no newline.
    let mut h = upgrade_harness(None, None, cursor.as_bytes());
    let upgrade_logs: Vec<&LogLine> = h
        .logs
        .iter()
        .filter(|l| l.message.contains("upgrading from the Python molecule-mcp"))
        .collect();
    assert_eq!(upgrade_logs.len(), 1, "{:?}", h.logs);
    assert!(upgrade_logs[0].message.contains("/state/.mcp_inbox_cursor"));
    let first_poll = h.requests_to("/activity?").remove(0);
    assert!(
        first_poll.url.contains(&format!("since_id={cursor}")),
        "{}",
        first_poll.url
    );
    // The takeover is written as the inbox's own state at once, so a restart does not
    // consult (or log) the original's file again.
    assert_eq!(h.writes.len(), 1, "{:?}", h.writes);
    assert_eq!(h.writes[0].file, StateFile::InboxState);
    assert!(String::from_utf8_lossy(&h.writes[0].contents).contains(&cursor));
    h.settle();
    let texts: Vec<&str> = h.arrived.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["new three"], "nothing at or before the cursor");
    // Nothing ever writes the original's file.
    assert!(
        !h.outputs.iter().any(|o| matches!(o, Output::Persist(w)
            if w.file == StateFile::LegacyInboxCursor || w.path.starts_with(".mcp_inbox_cursor"))),
        "the original's cursor is left for a downgrade"
    );
    // Restarting from what was saved ignores the (older) original cursor.
    let saved = h.disk.get(".mcp_inbox_state").cloned().expect("saved");
    let journal = h.disk.get(".mcp_inbox_journal").cloned();
    let mut again = upgrade_harness(Some(&saved), journal.as_deref(), cursor.as_bytes());
    assert!(
        !again
            .logs
            .iter()
            .any(|l| l.message.contains("upgrading from the Python")),
        "logged once: {:?}",
        again.logs
    );
    again.settle();
    assert!(again.arrived.is_empty(), "{:?}", again.arrived);
}

#[test]
fn an_unusable_original_cursor_is_reported_and_the_backlog_read() {
    let mut h = upgrade_harness(None, None, b"line one\nline two\n");
    assert!(
        h.logs.iter().any(|l| l.level == LogLevel::Warn
            && l.message.contains("ignoring /state/.mcp_inbox_cursor")),
        "{:?}",
        h.logs
    );
    assert!(h.requests_to("since_id").is_empty());
    // A blank file (the original treats it as no cursor) is no news.
    let blank = upgrade_harness(None, None, b"  \n");
    assert!(
        !blank
            .logs
            .iter()
            .any(|l| l.message.contains(".mcp_inbox_cursor")),
        "{:?}",
        blank.logs
    );
    h.settle();
    assert_eq!(h.arrived.len(), 3);
}

#[test]
fn multi_workspace_original_cursors_use_the_id_prefix_unless_it_is_shared() {
    let names = |ids: &[&str]| -> Vec<String> {
        plan_for(ids, true, true)
            .files_to_restore()
            .into_iter()
            .filter(|(_, f, _)| *f == StateFile::LegacyInboxCursor)
            .map(|(_, _, n)| n)
            .collect()
    };
    assert_eq!(
        names(&[A, B]),
        [".mcp_inbox_cursor_aaaaaaaa", ".mcp_inbox_cursor_bbbbbbbb"]
    );
    // Either workspace could have written a shared file last: neither takes it.
    let twin = "aaaaaaaa-1111-4000-8000-00000000000c";
    assert_eq!(names(&[A, twin, B]), [".mcp_inbox_cursor_bbbbbbbb"]);
}

#[test]
fn multi_workspace_files_carry_the_full_id() {
    let plan = plan_for(&[A, B], true, true);
    let names: Vec<String> = plan
        .files_to_restore()
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    assert!(names.contains(&format!(".mcp_inbox_state_{B}")));
    assert!(names.contains(&format!(".auth_token_{A}")));
}

#[derive(Debug, Clone)]
enum Op {
    AnswerAll,
    Save(bool),
    Advance(u16),
    Bogus(u64, u16),
    BogusPersist(u64),
    Pop(u8),
    Begin(bool),
    Finish(bool),
    Inject(bool),
    Agent(u8),
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::AnswerAll),
        3 => any::<bool>().prop_map(Op::Save),
        3 => (0u16..30_000).prop_map(Op::Advance),
        1 => (any::<u64>(), 100u16..600).prop_map(|(id, s)| Op::Bogus(id, s)),
        1 => any::<u64>().prop_map(Op::BogusPersist),
        2 => any::<u8>().prop_map(Op::Pop),
        1 => any::<bool>().prop_map(Op::Begin),
        1 => any::<bool>().prop_map(Op::Finish),
        2 => any::<bool>().prop_map(Op::Inject),
        2 => any::<u8>().prop_map(Op::Agent),
        1 => Just(Op::Shutdown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever happens, the fleet never panics, never busy-loops (a timeout is never in
    /// the past once the outputs are drained, except for work already due), every pop is
    /// answered exactly once, and no message is handed out twice by `take_unreturned`.
    #[test]
    fn fleet_survives_any_input_sequence(ops in proptest::collection::vec(op(), 1..120)) {
        let mut h = H::new(plan_for(&[A, B], true, true));
        let mut next_ticket = 0u64;
        let mut asked = 0usize;
        let mut taken = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                Op::AnswerAll => h.answer_all(),
                Op::Save(fail) => h.save(fail),
                Op::Advance(ms) => h.advance(Duration::from_millis(u64::from(ms))),
                Op::Bogus(id, status) => h.handle(Input::HttpResponse {
                    id: RequestId(id), status, retry_after: None, body: b"{".to_vec(),
                }),
                Op::BogusPersist(id) => h.handle(Input::PersistDone {
                    id: molecule_mcp_core::PersistId(id), result: Ok(()),
                }),
                Op::Pop(n) => {
                    next_ticket += 1;
                    asked += 1;
                    let ids: Vec<String> = h.arrived.iter().map(|m| m.activity_id.clone()).collect();
                    let id = ids.get(usize::from(n) % ids.len().max(1)).cloned().unwrap_or_default();
                    h.handle(Input::Pop { ticket: PopTicket(next_ticket), activity_id: id });
                }
                Op::Begin(a) => h.handle(Input::OutboundUploadStarted {
                    workspace_id: if a { A } else { B }.to_owned(),
                }),
                Op::Finish(a) => h.handle(Input::OutboundUploadFinished {
                    workspace_id: if a { A } else { B }.to_owned(), file_ids: vec!["f".to_owned()],
                }),
                Op::Inject(a) => {
                    let ws = if a { A } else { B };
                    if let Some(feed) = h.feeds.get_mut(ws) {
                        feed.push(message_row("m", None));
                    }
                }
                Op::Agent(n) => {
                    use molecule_mcp_core::inbox::AgentSignal;
                    h.handle(Input::Agent(match n % 5 {
                        0 => AgentSignal::WaitStarted,
                        1 => AgentSignal::WaitEnded,
                        2 => AgentSignal::Used,
                        3 => AgentSignal::PushListener(true),
                        _ => AgentSignal::PushListener(false),
                    }));
                }
                Op::Shutdown => h.handle(Input::Shutdown),
            }
            while let Some(m) = h.fleet.take_unreturned() {
                prop_assert!(taken.insert((m.arrival_workspace_id.clone(), m.activity_id.clone())),
                    "{} handed out twice", m.activity_id);
            }
        }
        // Everything settles: saves complete, graces run out, every pop is answered.
        h.save(false);
        h.advance(Duration::from_secs(10));
        h.save(false);
        h.advance(Duration::from_secs(10));
        let answered = h.outputs.iter().filter(|o| matches!(o, Output::PopDone { .. })).count();
        prop_assert_eq!(answered, asked, "every pop answered exactly once");
        prop_assert_eq!(h.pops.len(), asked);
    }
}

#[test]
fn a_minted_token_that_is_not_a_bearer_token_is_refused() {
    let mut h = H::new(plan_for(&[A], true, false));
    let register = h.requests_to("/registry/register").remove(0);
    h.http.remove(&register.id);
    h.handle(Input::HttpResponse {
        id: register.id,
        status: 200,
        retry_after: None,
        body: br#"{"auth_token":"minted\r\nX-Injected: 1"}"#.to_vec(),
    });
    assert!(
        !h.outputs
            .iter()
            .any(|o| matches!(o, Output::TokenChanged { .. })),
        "not adopted"
    );
    assert!(!h.writes.iter().any(|w| w.file == StateFile::AuthToken));
    assert!(
        h.logs
            .iter()
            .any(|l| l.level == LogLevel::Warn && l.message.contains("cannot be used")),
        "{:?}",
        h.logs
    );
    h.answer_all();
    h.advance(Duration::from_secs(25));
    let beats = h.requests_to("/registry/heartbeat");
    assert!(!beats.is_empty());
    assert!(
        beats.iter().all(|b| b
            .wire_headers()
            .any(|(n, v)| n == "Authorization" && v == format!("Bearer {TOKEN}"))),
        "the configured token stays in use"
    );
}

#[test]
fn all_saved_waits_for_session_writes_too() {
    let mut h = H::new(plan_for(&[A], true, false));
    let register = h.requests_to("/registry/register").remove(0);
    h.http.remove(&register.id);
    h.handle(Input::HttpResponse {
        id: register.id,
        status: 200,
        retry_after: None,
        body: br#"{"platform_inbound_secret":"fresh-secret"}"#.to_vec(),
    });
    assert_eq!(h.writes.len(), 1, "the secret is written");
    assert!(!h.fleet.all_saved(), "a pending secret write is not saved");
    h.save(false);
    assert!(h.fleet.all_saved());
    assert_eq!(
        h.disk.get(".platform_inbound_secret").map(Vec::as_slice),
        Some(&b"fresh-secret"[..])
    );
}

#[test]
fn a_current_task_report_is_one_extra_beat_that_never_holds_the_grid_back() {
    let mut h = H::new(plan_for(&[A], true, false));
    h.answer_all();
    h.advance(Duration::from_secs(1));
    h.answer_all();
    h.handle(Input::CurrentTask {
        workspace_id: A.to_owned(),
        summary: "Delegating to Reviewer".to_owned(),
    });
    let beats = h.requests_to("/registry/heartbeat");
    assert_eq!(beats.len(), 1, "one extra beat, sent at once");
    let body: serde_json::Value = serde_json::from_slice(&beats[0].body).expect("json");
    assert_eq!(body["current_task"], "Delegating to Reviewer");
    assert_eq!(body["active_tasks"], 1);
    assert_eq!(body["workspace_id"], A);
    // Unanswered, it must not hold the regular beat back.
    h.advance(Duration::from_secs(21));
    let regular: Vec<serde_json::Value> = h
        .requests_to("/registry/heartbeat")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("json"))
        .filter(|b: &serde_json::Value| b.get("current_task").is_none())
        .collect();
    assert!(!regular.is_empty(), "the regular grid went on");
    // Blank summaries and unknown workspaces send nothing.
    h.answer_all();
    h.handle(Input::CurrentTask {
        workspace_id: A.to_owned(),
        summary: "   ".to_owned(),
    });
    h.handle(Input::CurrentTask {
        workspace_id: B.to_owned(),
        summary: "x".to_owned(),
    });
    assert!(h.requests_to("/registry/heartbeat").is_empty());
}

/// The `current_task` of each heartbeat out now (`None` for a regular beat).
fn beats_out(h: &H) -> Vec<(RequestId, Option<String>)> {
    h.requests_to("/registry/heartbeat")
        .iter()
        .map(|r| {
            let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            let task = body["current_task"].as_str().map(str::to_owned);
            (r.id, task)
        })
        .collect()
}

fn task(workspace: &str, summary: &str) -> Input {
    Input::CurrentTask {
        workspace_id: workspace.to_owned(),
        summary: summary.to_owned(),
    }
}

fn answer_ok(h: &mut H, id: RequestId) {
    h.http.remove(&id);
    h.handle(Input::HttpResponse {
        id,
        status: 200,
        retry_after: None,
        body: b"{}".to_vec(),
    });
}

#[test]
fn current_task_reports_reach_the_platform_in_order_the_latest_held_behind_any_beat_out() {
    let mut h = H::new(plan_for(&[A], true, false));
    h.answer_all();
    h.advance(Duration::from_secs(1));
    h.answer_all();
    // Two beats out at once travel on separate connections and may arrive in either order,
    // so while one is out a newer report waits, and only the newest waiting one goes.
    h.handle(task(A, "Delegating to echo-peer"));
    let first = beats_out(&h);
    assert_eq!(
        first.iter().map(|b| b.1.as_deref()).collect::<Vec<_>>(),
        [Some("Delegating to echo-peer")]
    );
    h.handle(task(A, "superseded"));
    h.handle(task(A, "echo-peer responded (13 chars)"));
    assert_eq!(beats_out(&h).len(), 1, "held while the first report is out");
    answer_ok(&mut h, first[0].0);
    assert_eq!(
        beats_out(&h)
            .iter()
            .map(|b| b.1.as_deref())
            .collect::<Vec<_>>(),
        [Some("echo-peer responded (13 chars)")],
        "the newest held report, once the first is answered"
    );
    h.answer_all();
    // Behind a regular beat too: arriving after the report, it would clear it at once.
    h.advance(Duration::from_secs(21));
    let regular = beats_out(&h);
    assert_eq!(regular.len(), 1);
    assert_eq!(regular[0].1, None);
    h.handle(task(A, "after the regular beat"));
    assert_eq!(beats_out(&h).len(), 1, "held behind the regular beat");
    h.http.remove(&regular[0].0);
    h.handle(Input::HttpFailed {
        id: regular[0].0,
        error: TransportError {
            kind: TransportErrorKind::Connect,
            message: "refused".to_owned(),
        },
    });
    assert_eq!(
        beats_out(&h)
            .iter()
            .map(|b| b.1.as_deref())
            .collect::<Vec<_>>(),
        [Some("after the regular beat")],
        "a failed beat releases it too"
    );
    // A beat that is never answered releases it at its deadline (10 s here, well inside
    // the interval).
    h.handle(task(A, "after a hung beat"));
    assert_eq!(beats_out(&h).len(), 1);
    h.advance(Duration::from_secs(11));
    assert!(
        beats_out(&h)
            .iter()
            .any(|b| b.1.as_deref() == Some("after a hung beat")),
        "{:?}",
        beats_out(&h)
    );
    // A report still held at shutdown is dropped: stopped machines send nothing more.
    h.handle(task(A, "held at shutdown"));
    h.handle(Input::Shutdown);
    assert!(
        !beats_out(&h)
            .iter()
            .any(|b| b.1.as_deref() == Some("held at shutdown")),
        "{:?}",
        beats_out(&h)
    );
}

// ----- the poll cadence follows the agent (core/src/inbox/cadence.rs) --------------------

/// Runs the platform for `by` in 10 ms steps: every request answered at once, every write
/// saved. Returns when each poll went out.
fn live(h: &mut H, by: Duration) -> Vec<Instant> {
    let end = h.now + by;
    let mut polls = Vec::new();
    while h.now < end {
        let n = h.requests_to("/activity?").len();
        polls.extend(std::iter::repeat_n(h.now, n));
        h.answer_all();
        h.save(false);
        let step = Duration::from_millis(10).min(end - h.now);
        h.advance(step);
    }
    let n = h.requests_to("/activity?").len();
    polls.extend(std::iter::repeat_n(h.now, n));
    h.answer_all();
    h.save(false);
    polls
}

fn gaps(polls: &[Instant]) -> Vec<Duration> {
    polls.windows(2).map(|w| w[1] - w[0]).collect()
}

fn assert_gaps_within(polls: &[Instant], low: Duration, high: Duration, what: &str) {
    let g = gaps(polls);
    assert!(!g.is_empty(), "{what}: no polls");
    for d in &g {
        assert!(
            *d >= low && *d <= high,
            "{what}: gap {d:?} outside {low:?}..{high:?} in {g:?}"
        );
    }
}

#[test]
fn the_poll_cadence_follows_the_agent_waiting_active_idle() {
    use molecule_mcp_core::inbox::{ACTIVE_WINDOW, AgentSignal, Cadence};
    let mut h = H::new(plan_for(&[A], false, true));
    let cadence = |h: &H| h.fleet.status()[0].inbox.as_ref().map(|s| s.cadence);
    // Just started: active, the configured 5 s ± 20 %.
    let polls = live(&mut h, ACTIVE_WINDOW - Duration::from_secs(10));
    assert_eq!(cadence(&h), Some(Cadence::Active));
    assert_gaps_within(
        &polls[1..],
        Duration::from_secs(4),
        Duration::from_secs(6),
        "active",
    );
    // Nobody around: the spacing doubles up to 30 s (± 20 %).
    let polls = live(&mut h, Duration::from_secs(600));
    assert_eq!(cadence(&h), Some(Cadence::Idle));
    let idle = gaps(&polls);
    assert!(
        idle.iter()
            .rev()
            .take(10)
            .all(|d| *d >= Duration::from_secs(24) && *d <= Duration::from_secs(36)),
        "idle gaps {idle:?}"
    );
    assert!(polls.len() < 40, "{} polls in 10 idle minutes", polls.len());
    // A wait starts: a poll goes out at once, then less than a second apart.
    let before = h.requests_to("/activity?").len();
    h.handle(Input::Agent(AgentSignal::WaitStarted));
    assert_eq!(
        h.requests_to("/activity?").len(),
        before + 1,
        "a wait polls at once"
    );
    assert_eq!(cadence(&h), Some(Cadence::Waiting));
    let waiting = live(&mut h, Duration::from_secs(60));
    assert_gaps_within(
        &waiting,
        Duration::from_millis(600),
        Duration::from_millis(999),
        "waiting",
    );
    // A message reaches the agent less than a second after the platform has it.
    for offset_ms in [0u64, 137, 455, 801, 990] {
        live(&mut h, Duration::from_millis(offset_ms));
        let id = h
            .feeds
            .get_mut(A)
            .expect("feed")
            .push(message_row("hi", None));
        let put = h.now;
        while !h.arrived.iter().any(|m| m.activity_id == id) {
            live(&mut h, Duration::from_millis(10));
            let waited = h.now - put;
            assert!(
                waited < Duration::from_secs(1),
                "message {id} not delivered after {waited:?}"
            );
        }
    }
    // The wait ends: the active cadence for the next few minutes, then idle again.
    h.handle(Input::Agent(AgentSignal::WaitEnded));
    let polls = live(&mut h, ACTIVE_WINDOW - Duration::from_secs(10));
    assert_eq!(cadence(&h), Some(Cadence::Active));
    assert_gaps_within(
        &polls[1..],
        Duration::from_secs(4),
        Duration::from_secs(6),
        "active after the wait",
    );
    live(&mut h, Duration::from_secs(120));
    assert_eq!(cadence(&h), Some(Cadence::Idle));
    // Other use brings an idle inbox's next poll forward to the active interval.
    live(&mut h, Duration::from_secs(300));
    h.handle(Input::Agent(AgentSignal::Used));
    let polls = live(&mut h, Duration::from_secs(7));
    assert!(
        !polls.is_empty(),
        "use while idle: a poll within the active interval"
    );
}

#[test]
fn a_waiting_agent_never_cuts_a_failure_backoff_short() {
    use molecule_mcp_core::inbox::AgentSignal;
    let mut h = H::new(plan_for(&[A], false, true));
    // The platform fails every poll: the back-off grows (5 s, 10 s, 20 s, 40 s …).
    let mut sent = 0;
    for _ in 0..4 {
        let polls: Vec<HttpRequest> = h.requests_to("/activity?");
        for r in polls {
            sent += 1;
            h.handle(Input::HttpResponse {
                id: r.id,
                status: 503,
                retry_after: None,
                body: b"{}".to_vec(),
            });
            h.http.remove(&r.id);
        }
        let at = h.fleet.poll_timeout().expect("a retry is scheduled");
        h.advance(at - h.now);
    }
    assert!(sent >= 3, "{sent} failed polls");
    h.http.clear();
    let next = h.fleet.poll_timeout().expect("a retry is scheduled");
    h.handle(Input::Agent(AgentSignal::WaitStarted));
    assert!(
        h.requests_to("/activity?").is_empty(),
        "no poll before the back-off ends"
    );
    assert_eq!(
        h.fleet.poll_timeout(),
        Some(next),
        "the back-off is unchanged"
    );
}

#[test]
fn every_workspace_of_a_fleet_hears_the_agent() {
    use molecule_mcp_core::inbox::{ACTIVE_WINDOW, AgentSignal, Cadence};
    let mut h = H::new(plan_for(&[A, B], false, true));
    live(&mut h, ACTIVE_WINDOW + Duration::from_secs(120));
    let cadences = |h: &H| -> Vec<Option<Cadence>> {
        h.fleet
            .status()
            .iter()
            .map(|s| s.inbox.as_ref().map(|i| i.cadence))
            .collect()
    };
    assert_eq!(cadences(&h), [Some(Cadence::Idle), Some(Cadence::Idle)]);
    h.handle(Input::Agent(AgentSignal::WaitStarted));
    assert_eq!(h.requests_to("/activity?").len(), 2, "both poll at once");
    assert_eq!(
        cadences(&h),
        [Some(Cadence::Waiting), Some(Cadence::Waiting)]
    );
    h.handle(Input::Agent(AgentSignal::WaitEnded));
    assert_eq!(cadences(&h), [Some(Cadence::Active), Some(Cadence::Active)]);
    // A pop (of anything) is use too.
    live(&mut h, ACTIVE_WINDOW + Duration::from_secs(60));
    assert_eq!(cadences(&h), [Some(Cadence::Idle), Some(Cadence::Idle)]);
    h.handle(Input::Pop {
        ticket: PopTicket(1),
        activity_id: "nope".to_owned(),
    });
    assert_eq!(cadences(&h), [Some(Cadence::Active), Some(Cadence::Active)]);
}
