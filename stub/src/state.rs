//! The stub's in-memory database: workspaces, tokens, the activity log, uploads, delegations,
//! memories, notifications, scripts and the request journal — plus the platform rules that
//! are shared by several routes (token validity, inbound-secret healing, `CanCommunicate`).
//!
//! Everything lives behind one mutex (see `server.rs`); nothing here blocks or awaits.
//!
//! Workspace and token lookups go through small caches (see `Lookup`) so that a stub
//! seeded with thousands of workspaces (the scale benchmark) answers in O(1) instead of
//! scanning every row per request; every answer is the same as the plain scan's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::ids::Rng;
use super::script::Script;
use super::time::{format_rfc3339_micros, unix_micros_now};
use super::types::{
    DelegationSnapshot, JournalEntry, PendingUpload, StubOptions, WorkspaceSnapshot, WorkspaceSpec,
    WorkspaceStatus,
};

pub(crate) struct TokenRow {
    pub token: String,
    pub workspace_id: String,
    pub revoked: bool,
}

/// One `activity_logs` row: what `GET /workspaces/:id/activity` returns.
#[derive(Debug, Clone)]
pub(crate) struct ActivityRow {
    pub id: String,
    pub workspace_id: String,
    pub activity_type: String,
    pub source_id: Option<String>,
    pub target_id: Option<String>,
    pub method: Option<String>,
    pub summary: Option<String>,
    pub duration_ms: Option<i64>,
    pub status: String,
    pub error_detail: Option<String>,
    pub created_at: i64,
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    pub seq: u64,
}

impl ActivityRow {
    /// A row to be filled in and passed to [`State::insert_activity`] (which assigns
    /// `id`, `seq` and, unless already set, `created_at`).
    pub(crate) fn blank(workspace_id: &str, activity_type: &str) -> ActivityRow {
        ActivityRow {
            id: String::new(),
            workspace_id: workspace_id.to_string(),
            activity_type: activity_type.to_string(),
            source_id: None,
            target_id: None,
            method: None,
            summary: None,
            duration_ms: None,
            status: "ok".into(),
            error_detail: None,
            created_at: 0,
            request_body: None,
            response_body: None,
            seq: 0,
        }
    }

    /// Wire shape: `request_body`/`response_body` are omitted (not null) when absent.
    pub(crate) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("workspace_id".into(), json!(self.workspace_id));
        m.insert("activity_type".into(), json!(self.activity_type));
        m.insert("source_id".into(), json!(self.source_id));
        m.insert("target_id".into(), json!(self.target_id));
        m.insert("method".into(), json!(self.method));
        m.insert("summary".into(), json!(self.summary));
        m.insert("duration_ms".into(), json!(self.duration_ms));
        m.insert("status".into(), json!(self.status));
        m.insert("error_detail".into(), json!(self.error_detail));
        m.insert(
            "created_at".into(),
            json!(format_rfc3339_micros(self.created_at)),
        );
        if let Some(b) = &self.request_body {
            m.insert("request_body".into(), b.clone());
        }
        if let Some(b) = &self.response_body {
            m.insert("response_body".into(), b.clone());
        }
        m.insert("seq".into(), json!(self.seq));
        Value::Object(m)
    }

    /// Sort key: the platform orders by `created_at`, ties broken by `seq`.
    pub(crate) fn key(&self) -> (i64, u64) {
        (self.created_at, self.seq)
    }
}

pub(crate) struct Delegation {
    pub snap: DelegationSnapshot,
    pub created_at: i64,
    pub origin_activity_id: String,
    /// Activity id and time of the `delegate_result` entry, once terminal.
    pub result: Option<(String, i64)>,
}

pub(crate) struct Memory {
    pub id: String,
    pub workspace_id: String,
    pub content: String,
    pub scope: String,
    pub namespace: String,
    pub created_at: i64,
}

/// Fixed one-minute window shared by every caller (the platform keys it by client IP, and
/// every caller of the stub is on loopback).
pub(crate) struct RateWindow {
    pub started: Instant,
    pub count: u32,
}

/// Lookup caches over `State::workspaces` and `State::tokens`. Those vectors are also
/// changed outside this file (register appends a workspace row, purge `retain`s both), so
/// nothing here is trusted blindly:
///
/// * `ws`: id → position, verified on every hit (the row at that position must carry the
///   id); a miss or a stale entry falls back to the plain scan and refreshes the entry.
///   Workspace ids are unique (every insert path removes or checks for the id first), so the
///   verified position is the one the scan would find.
/// * tokens: rows are appended only by [`State::mint_token`] (which keeps the index current)
///   and removed only by `retain` (which changes the length), so the token index is valid
///   exactly while `tokens_len` equals `tokens.len()`; otherwise it is rebuilt. If two rows
///   ever carried the same token string, token lookups use the plain scan.
#[derive(Default)]
struct Lookup {
    ws: HashMap<String, usize>,
    token_pos: HashMap<String, usize>,
    tokens_of: HashMap<String, Vec<usize>>,
    tokens_len: usize,
    duplicate_tokens: bool,
}

impl Lookup {
    fn add_token(&mut self, pos: usize, row: &TokenRow) {
        if self.token_pos.contains_key(&row.token) {
            self.duplicate_tokens = true;
        } else {
            self.token_pos.insert(row.token.clone(), pos);
        }
        self.tokens_of
            .entry(row.workspace_id.clone())
            .or_default()
            .push(pos);
        self.tokens_len = pos + 1;
    }

    /// Rebuilds the token index if `tokens` changed behind its back.
    fn sync_tokens(&mut self, tokens: &[TokenRow]) {
        if self.tokens_len == tokens.len() {
            return;
        }
        self.token_pos.clear();
        self.tokens_of.clear();
        self.duplicate_tokens = false;
        self.tokens_len = 0;
        for (pos, row) in tokens.iter().enumerate() {
            self.add_token(pos, row);
        }
        self.tokens_len = tokens.len();
    }
}

pub(crate) struct State {
    pub opts: StubOptions,
    pub rng: Rng,
    pub workspaces: Vec<WorkspaceSnapshot>,
    pub tokens: Vec<TokenRow>,
    /// In insertion (= `seq`) order.
    pub activity: Vec<ActivityRow>,
    next_seq: u64,
    last_created_at: i64,
    pub uploads: Vec<PendingUpload>,
    pub delegations: Vec<Delegation>,
    pub memories: Vec<Memory>,
    /// `(workspace id, body)` of every accepted `/notify`.
    pub notifications: Vec<(String, Value)>,
    pub scripts: Vec<Script>,
    pub journal: Vec<JournalEntry>,
    next_journal_id: u64,
    pub rate: RateWindow,
    lookup: RefCell<Lookup>,
}

impl State {
    pub(crate) fn new(opts: StubOptions) -> State {
        State {
            opts,
            rng: Rng::new(),
            workspaces: Vec::new(),
            tokens: Vec::new(),
            activity: Vec::new(),
            next_seq: 1,
            last_created_at: 0,
            uploads: Vec::new(),
            delegations: Vec::new(),
            memories: Vec::new(),
            notifications: Vec::new(),
            scripts: Vec::new(),
            journal: Vec::new(),
            next_journal_id: 1,
            rate: RateWindow {
                started: Instant::now(),
                count: 0,
            },
            lookup: RefCell::new(Lookup::default()),
        }
    }

    // ----- workspaces -----------------------------------------------------------------

    /// Position of the workspace row with this id (see `Lookup`).
    fn ws_pos(&self, id: &str) -> Option<usize> {
        let cached = self.lookup.borrow().ws.get(id).copied();
        if let Some(pos) = cached
            && self.workspaces.get(pos).is_some_and(|w| w.id == id)
        {
            return Some(pos);
        }
        let found = self.workspaces.iter().position(|w| w.id == id);
        let mut lookup = self.lookup.borrow_mut();
        match found {
            Some(pos) => {
                lookup.ws.insert(id.to_string(), pos);
            }
            None => {
                lookup.ws.remove(id);
            }
        }
        found
    }

    pub(crate) fn ws(&self, id: &str) -> Option<&WorkspaceSnapshot> {
        self.ws_pos(id).and_then(|pos| self.workspaces.get(pos))
    }

    pub(crate) fn ws_mut(&mut self, id: &str) -> Option<&mut WorkspaceSnapshot> {
        let pos = self.ws_pos(id)?;
        self.workspaces.get_mut(pos)
    }

    /// Seeds a workspace (replacing one with the same id) and mints its first token.
    pub(crate) fn create_workspace(&mut self, spec: WorkspaceSpec) -> (String, String) {
        let id = spec.id.unwrap_or_else(|| self.rng.uuid());
        let name = spec
            .name
            .unwrap_or_else(|| format!("workspace-{}", id.get(..8).unwrap_or(&id)));
        let mut row = WorkspaceSnapshot::new(&id, &name, spec.status, spec.delivery_mode);
        row.role = spec.role;
        row.parent_id = spec.parent_id;
        row.url = spec.url;
        row.agent_card = spec.agent_card;
        row.tier = spec.tier;
        if spec.status == WorkspaceStatus::Removed {
            row.removed_at = Some(unix_micros_now());
        }
        self.workspaces.retain(|w| w.id != id);
        self.workspaces.push(row);
        let pos = self.workspaces.len() - 1;
        self.lookup.get_mut().ws.insert(id.clone(), pos);
        let token = self.mint_token(&id);
        (id, token)
    }

    /// Marks the workspace and all its descendants `removed` and revokes all their tokens.
    pub(crate) fn delete_workspace(&mut self, id: &str) -> bool {
        if self.ws(id).is_none() {
            return false;
        }
        let mut doomed = vec![id.to_string()];
        let mut i = 0;
        while let Some(cur) = doomed.get(i).cloned() {
            for w in &self.workspaces {
                if w.parent_id.as_deref() == Some(cur.as_str()) && !doomed.contains(&w.id) {
                    doomed.push(w.id.clone());
                }
            }
            i += 1;
        }
        let now = unix_micros_now();
        for d in &doomed {
            if let Some(w) = self.ws_mut(d) {
                w.status = WorkspaceStatus::Removed;
                w.removed_at.get_or_insert(now);
            }
            self.revoke_all(d);
        }
        true
    }

    /// Chain of ancestors (parent first), cut at the first repeat so a cyclic seed cannot loop.
    fn ancestors(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut cur = self.ws(id).and_then(|w| w.parent_id.clone());
        while let Some(p) = cur {
            if out.contains(&p) || p == id {
                break;
            }
            cur = self.ws(&p).and_then(|w| w.parent_id.clone());
            out.push(p);
        }
        out
    }

    /// The platform's `CanCommunicate` rule: same id; siblings; ancestor ↔ descendant at
    /// any depth; any two root workspaces. Unknown rows never communicate; removed rows do.
    pub(crate) fn can_communicate(&self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let (Some(wa), Some(wb)) = (self.ws(a), self.ws(b)) else {
            return false;
        };
        match (&wa.parent_id, &wb.parent_id) {
            (None, None) => return true,
            (Some(pa), Some(pb)) if pa == pb => return true,
            _ => {}
        }
        self.ancestors(a).iter().any(|x| x == b) || self.ancestors(b).iter().any(|x| x == a)
    }

    // ----- tokens & secrets -------------------------------------------------------------

    pub(crate) fn mint_token(&mut self, workspace_id: &str) -> String {
        let token = self.rng.token();
        let row = TokenRow {
            token: token.clone(),
            workspace_id: workspace_id.to_string(),
            revoked: false,
        };
        let lookup = self.lookup.get_mut();
        lookup.sync_tokens(&self.tokens);
        lookup.add_token(self.tokens.len(), &row);
        self.tokens.push(row);
        token
    }

    pub(crate) fn revoke_all(&mut self, workspace_id: &str) {
        for t in self
            .tokens
            .iter_mut()
            .filter(|t| t.workspace_id == workspace_id)
        {
            t.revoked = true;
        }
    }

    fn removed(&self, workspace_id: &str) -> bool {
        self.ws(workspace_id)
            .is_some_and(|w| w.status == WorkspaceStatus::Removed)
    }

    /// Live tokens: not revoked and the owning workspace is not removed.
    pub(crate) fn live_tokens(&self, workspace_id: &str) -> usize {
        if self.removed(workspace_id) {
            return 0;
        }
        let mut lookup = self.lookup.borrow_mut();
        lookup.sync_tokens(&self.tokens);
        lookup.tokens_of.get(workspace_id).map_or(0, |rows| {
            rows.iter()
                .filter_map(|pos| self.tokens.get(*pos))
                .filter(|t| t.workspace_id == workspace_id && !t.revoked)
                .count()
        })
    }

    pub(crate) fn token_valid_for(&self, token: &str, workspace_id: &str) -> bool {
        self.token_owner(token) == Some(workspace_id)
    }

    /// Workspace a live token belongs to.
    pub(crate) fn token_owner(&self, token: &str) -> Option<&str> {
        let indexed = {
            let mut lookup = self.lookup.borrow_mut();
            lookup.sync_tokens(&self.tokens);
            (!lookup.duplicate_tokens).then(|| lookup.token_pos.get(token).copied())
        };
        let row = match indexed {
            // Tokens are unique: the indexed row is the only candidate.
            Some(pos) => pos
                .and_then(|pos| self.tokens.get(pos))
                .filter(|t| t.token == token && !t.revoked)?,
            None => self
                .tokens
                .iter()
                .find(|t| t.token == token && !t.revoked)?,
        };
        (!self.removed(&row.workspace_id)).then_some(row.workspace_id.as_str())
    }

    /// The inbound secret to return from register/heartbeat: lazily minted ("healed") when the
    /// row has none, omitted when withheld or when the row does not exist.
    pub(crate) fn deliver_secret(&mut self, workspace_id: &str) -> Option<String> {
        let fresh = self.rng.token();
        let w = self.ws_mut(workspace_id)?;
        if w.inbound_secret_withheld {
            return None;
        }
        Some(w.inbound_secret.get_or_insert(fresh).clone())
    }

    // ----- activity -----------------------------------------------------------------------

    /// Appends a row, assigning a random UUID `id`, the next `seq`, and `created_at` (now, but
    /// never earlier than the previous row, unless the caller fixed it). Returns the id.
    pub(crate) fn insert_activity(&mut self, mut row: ActivityRow) -> String {
        row.id = self.rng.uuid();
        row.seq = self.next_seq;
        self.next_seq += 1;
        if row.created_at == 0 {
            row.created_at = unix_micros_now().max(self.last_created_at);
        }
        self.last_created_at = self.last_created_at.max(row.created_at);
        let id = row.id.clone();
        self.activity.push(row);
        id
    }

    // ----- journal ------------------------------------------------------------------------

    pub(crate) fn journal_push(&mut self, mut entry: JournalEntry) -> u64 {
        entry.id = self.next_journal_id;
        self.next_journal_id += 1;
        let id = entry.id;
        self.journal.push(entry);
        id
    }

    pub(crate) fn journal_set_status(&mut self, id: u64, status: u16) {
        if let Some(e) = self.journal.iter_mut().rev().find(|e| e.id == id) {
            e.status = Some(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> (State, [String; 5]) {
        // root ─┬─ a ── a1
        //       └─ b
        // other (second root)
        let mut st = State::new(StubOptions::default());
        let (root, _) = st.create_workspace(WorkspaceSpec::named("root"));
        let (a, _) = st.create_workspace(WorkspaceSpec::named("a").parent(&root));
        let (a1, _) = st.create_workspace(WorkspaceSpec::named("a1").parent(&a));
        let (b, _) = st.create_workspace(WorkspaceSpec::named("b").parent(&root));
        let (other, _) = st.create_workspace(WorkspaceSpec::named("other"));
        (st, [root, a, a1, b, other])
    }

    #[test]
    fn can_communicate_follows_the_m1_rules() {
        let (st, [root, a, a1, b, other]) = seeded();
        assert!(st.can_communicate(&a, &a));
        assert!(st.can_communicate(&a, &b), "siblings");
        assert!(
            st.can_communicate(&root, &a1) && st.can_communicate(&a1, &root),
            "ancestor at depth 2"
        );
        assert!(st.can_communicate(&root, &other), "two roots (M1)");
        assert!(
            !st.can_communicate(&a1, &b),
            "cousin-like: a1's parent is a, b's parent is root"
        );
        assert!(!st.can_communicate(&a, &other));
        assert!(!st.can_communicate(&a, "00000000-0000-4000-8000-000000000000"));
    }

    #[test]
    fn delete_cascades_and_kills_tokens() {
        let (mut st, [root, a, a1, b, other]) = seeded();
        assert!(st.delete_workspace(&a));
        for (id, removed) in [
            (&a, true),
            (&a1, true),
            (&root, false),
            (&b, false),
            (&other, false),
        ] {
            assert_eq!(
                st.ws(id).map(|w| w.status == WorkspaceStatus::Removed),
                Some(removed),
                "{id}"
            );
            assert_eq!(st.live_tokens(id) == 0, removed, "{id}");
        }
    }

    #[test]
    fn cyclic_parents_do_not_hang() {
        let (mut st, [root, a, ..]) = seeded();
        if let Some(w) = st.ws_mut(&root) {
            w.parent_id = Some(a.clone());
        }
        assert!(st.can_communicate(&a, &root));
        assert!(!st.can_communicate(&a, "nope"));
    }

    /// The lookup caches answer exactly like the plain scans, also after the vectors were
    /// changed the way code outside this file changes them (purge `retain`s, register pushes).
    #[test]
    fn cached_lookups_match_plain_scans_after_outside_changes() {
        fn check(st: &State, ids: &[String], tokens: &[String]) {
            for id in ids {
                let scan = st
                    .workspaces
                    .iter()
                    .find(|w| &w.id == id)
                    .map(|w| w.id.clone());
                assert_eq!(st.ws(id).map(|w| w.id.clone()), scan, "ws {id}");
                let removed = st
                    .workspaces
                    .iter()
                    .any(|w| &w.id == id && w.status == WorkspaceStatus::Removed);
                let live = if removed {
                    0
                } else {
                    st.tokens
                        .iter()
                        .filter(|t| &t.workspace_id == id && !t.revoked)
                        .count()
                };
                assert_eq!(st.live_tokens(id), live, "live tokens of {id}");
            }
            for token in tokens {
                let scan = st
                    .tokens
                    .iter()
                    .find(|t| &t.token == token && !t.revoked)
                    .map(|t| t.workspace_id.clone());
                let scan = scan.filter(|ws| {
                    !st.workspaces
                        .iter()
                        .any(|w| &w.id == ws && w.status == WorkspaceStatus::Removed)
                });
                assert_eq!(
                    st.token_owner(token).map(str::to_string),
                    scan,
                    "owner of a token"
                );
            }
        }
        let mut st = State::new(StubOptions::default());
        let mut ids = Vec::new();
        let mut tokens = Vec::new();
        for i in 0..6 {
            let (id, token) = st.create_workspace(WorkspaceSpec::named(&format!("w{i}")));
            ids.push(id);
            tokens.push(token);
        }
        tokens.push(st.mint_token(&ids[1]));
        ids.push("00000000-0000-4000-8000-00000000dead".into());
        tokens.push("no-such-token".into());
        check(&st, &ids, &tokens);
        // Purge as `PlatformStub::purge_workspace` does: both vectors shift.
        let gone = ids[2].clone();
        st.workspaces.retain(|w| w.id != gone);
        st.tokens.retain(|t| t.workspace_id != gone);
        check(&st, &ids, &tokens);
        // Register of a new id pushes a row directly; a re-seed replaces one.
        st.workspaces.push(WorkspaceSnapshot::new(
            &gone,
            &gone,
            WorkspaceStatus::Online,
            crate::DeliveryMode::Poll,
        ));
        tokens.push(st.mint_token(&gone));
        let (again, token) = st.create_workspace(WorkspaceSpec::named("again").id(&ids[0]));
        assert_eq!(again, ids[0]);
        tokens.push(token);
        check(&st, &ids, &tokens);
        // Revocation and removal are read live.
        st.revoke_all(&ids[3]);
        assert!(st.delete_workspace(&ids[4]));
        if let Some(t) = st.tokens.iter_mut().find(|t| t.workspace_id == ids[1]) {
            t.revoked = true;
        }
        check(&st, &ids, &tokens);
    }

    #[test]
    fn inbound_secret_heals_once_and_can_be_withheld() {
        let (mut st, [root, ..]) = seeded();
        let s1 = st.deliver_secret(&root).unwrap();
        assert_eq!(st.deliver_secret(&root).as_deref(), Some(s1.as_str()));
        st.ws_mut(&root).unwrap().inbound_secret_withheld = true;
        assert_eq!(st.deliver_secret(&root), None);
        assert_eq!(st.deliver_secret("unknown"), None);
    }
}
