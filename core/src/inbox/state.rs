//! The inbox's durable state: one JSON value, written whole (atomically, by the driver) and
//! read back at start.
//!
//! ```json
//! {"version": 1,
//!  "cursor": "<activity id or null>",
//!  "pending": [<message>, …],            // oldest first, not yet popped
//!  "uploads": [<upload job>, …],         // upload rows not yet settled
//!  "handled": ["<activity id>", …],      // popped messages and settled uploads, oldest first
//!  "staged": [["platform-pending:…", "workspace:…"], …],
//!  "outbound_uploads": ["<file id>", …]} // our own attachments, never downloaded back
//! ```
//!
//! Everything the cursor has moved past is in `pending`, `uploads` or `handled` (or was a
//! row that is never delivered), so a restart from this value loses nothing.
//!
//! ## The journal
//!
//! The file above is a snapshot. The frequent changes (a pop, a batch of arrivals) are
//! appended to a journal instead, one JSON line each, so their cost does not grow with the
//! history: `{"seq": 7, "op": "pop", "id": "<activity id>"}`,
//! `{"seq": 8, "op": "arrived", "cursor": "<id>", "messages": […], "uploads": […]}`. The
//! snapshot carries `journal_seq`, the last record it already contains; a restart applies
//! the journal's later records in order ([`InboxState::replay`]). A line that does not parse
//! (the tail of a write cut short by a crash) is skipped; the machine never appends after
//! one, because every write that follows a failed append or a restart is a snapshot, and
//! the first append after a snapshot starts the journal afresh.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::message::InboxMessage;
use super::upload::UploadJob;

/// Format version written by this build.
const VERSION: u32 = 1;
/// Remembered `platform-pending:` → local URI rewrites.
pub(crate) const MAX_STAGED: usize = 1024;
/// Remembered outbound upload file ids.
pub(crate) const MAX_OUTBOUND: usize = 1024;
/// Longest cursor accepted from disk (ids are 36-character UUIDs).
const MAX_CURSOR_LEN: usize = 128;

/// `text` when it can be sent as `since_id`: not blank, at most [`MAX_CURSOR_LEN`] bytes,
/// no control characters.
pub(crate) fn usable_cursor(text: &str) -> Option<&str> {
    let ok = !text.trim().is_empty()
        && text.len() <= MAX_CURSOR_LEN
        && !text.chars().any(char::is_control);
    ok.then_some(text)
}

/// An insertion-ordered set that forgets its oldest members beyond a capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RecentSet {
    order: VecDeque<String>,
    index: BTreeSet<String>,
}

impl RecentSet {
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.index.contains(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Adds `key` (no-op when present) and evicts the oldest beyond `cap`.
    pub(crate) fn insert(&mut self, key: &str, cap: usize) -> bool {
        if self.index.contains(key) {
            return false;
        }
        self.index.insert(key.to_owned());
        self.order.push_back(key.to_owned());
        while self.order.len() > cap.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.index.remove(&old);
            }
        }
        true
    }
}

impl Serialize for RecentSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.order.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RecentSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        let mut set = RecentSet::default();
        for item in items {
            set.insert(&item, usize::MAX);
        }
        Ok(set)
    }
}

/// `platform-pending:` URI → local URI, oldest forgotten first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StagedMap {
    order: VecDeque<String>,
    map: BTreeMap<String, String>,
}

impl StagedMap {
    pub(crate) fn get(&self, pending_uri: &str) -> Option<&str> {
        self.map.get(pending_uri).map(String::as_str)
    }

    pub(crate) fn insert(&mut self, pending_uri: &str, local_uri: &str) {
        if self
            .map
            .insert(pending_uri.to_owned(), local_uri.to_owned())
            .is_none()
        {
            self.order.push_back(pending_uri.to_owned());
        }
        while self.order.len() > MAX_STAGED {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

impl Serialize for StagedMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(&str, &str)> = self
            .order
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k.as_str(), v.as_str())))
            .collect();
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StagedMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = Vec::<(String, String)>::deserialize(d)?;
        let mut m = StagedMap::default();
        for (k, v) in pairs {
            m.insert(&k, &v);
        }
        Ok(m)
    }
}

/// The persisted value (see module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InboxState {
    #[serde(default)]
    pub(crate) version: u32,
    #[serde(default)]
    pub(crate) cursor: Option<String>,
    #[serde(default)]
    pub(crate) pending: VecDeque<InboxMessage>,
    #[serde(default)]
    pub(crate) uploads: Vec<UploadJob>,
    #[serde(default)]
    pub(crate) handled: RecentSet,
    #[serde(default)]
    pub(crate) staged: StagedMap,
    #[serde(default)]
    pub(crate) outbound_uploads: RecentSet,
    /// The last journal record this snapshot contains (see the module docs).
    #[serde(default)]
    pub(crate) journal_seq: u64,
}

/// One journaled change (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum JournalOp {
    /// A message was popped: it leaves the queue and its id is remembered as handled.
    Pop {
        /// The activity id.
        id: String,
    },
    /// A poll's rows were taken: messages queued, upload rows to fetch, the new cursor.
    Arrived {
        /// The cursor after the batch.
        cursor: Option<String>,
        /// Queued messages, in order.
        #[serde(default)]
        messages: Vec<InboxMessage>,
        /// Upload rows to fetch, in order.
        #[serde(default)]
        uploads: Vec<UploadJob>,
    },
}

/// A journal line: a change and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalLine {
    pub(crate) seq: u64,
    #[serde(flatten)]
    pub(crate) op: JournalOp,
}

impl JournalLine {
    /// The line as appended: JSON and a newline.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising plain strings, integers and sequences cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

impl InboxState {
    /// An empty state in the current format.
    pub(crate) fn new() -> Self {
        InboxState {
            version: VERSION,
            ..InboxState::default()
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising plain strings, integers and sequences cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Applies one change, the same way the machine made it live. Idempotent, so a record
    /// applied twice (or one the snapshot already had) changes nothing more.
    pub(crate) fn apply(&mut self, op: &JournalOp, max_handled: usize) {
        match op {
            JournalOp::Pop { id } => {
                self.pending.retain(|m| m.activity_id != *id);
                self.handled.insert(id, max_handled);
            }
            JournalOp::Arrived {
                cursor,
                messages,
                uploads,
            } => {
                for job in uploads {
                    if !self.handled.contains(&job.activity_id)
                        && !self
                            .uploads
                            .iter()
                            .any(|u| u.activity_id == job.activity_id)
                    {
                        self.uploads.push(job.clone());
                    }
                }
                for msg in messages {
                    if !msg.activity_id.is_empty()
                        && !self.handled.contains(&msg.activity_id)
                        && !self
                            .pending
                            .iter()
                            .any(|m| m.activity_id == msg.activity_id)
                    {
                        self.pending.push_back(msg.clone());
                    }
                }
                if let Some(c) = cursor
                    && !c.trim().is_empty()
                    && c.len() <= MAX_CURSOR_LEN
                    && !c.chars().any(char::is_control)
                {
                    self.cursor = Some(c.clone());
                }
            }
        }
    }

    /// Applies the journal records newer than the snapshot, in order. Returns the highest
    /// sequence number seen (the next record must be numbered above it), notes for the log
    /// about lines that were skipped (none: the journal can be appended to as it is), and
    /// whether an unreadable line came before a readable one (more than a torn tail).
    pub(crate) fn replay(
        &mut self,
        journal: &[u8],
        max_handled: usize,
    ) -> (u64, Vec<String>, bool) {
        let mut last = self.journal_seq;
        let mut applied = 0usize;
        let mut skipped = 0usize;
        let mut corrupt = false;
        for line in journal.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<JournalLine>(line) {
                Ok(record) => {
                    corrupt |= skipped > 0;
                    // Older ones are already in the snapshot (the journal was not restarted
                    // after it).
                    if record.seq > last {
                        self.apply(&record.op, max_handled);
                        last = record.seq;
                        applied += 1;
                    }
                }
                Err(_) => skipped += 1,
            }
        }
        self.journal_seq = last;
        let mut notes = Vec::new();
        if !journal.is_empty() && !journal.ends_with(b"\n") && skipped == 0 {
            // A last line that parsed but lacks its newline: the next append would join it.
            skipped = 1;
        }
        if skipped > 0 {
            notes.push(format!(
                "skipped {skipped} unreadable journal line(s) (a write cut short by a crash); {applied} change(s) replayed"
            ));
        }
        (last, notes, corrupt)
    }

    /// Reads a state file and repairs what a hand edit or an older build could have left
    /// behind. Returns notes for the log about anything that was repaired.
    pub(crate) fn decode(
        bytes: &[u8],
        max_handled: usize,
    ) -> Result<(InboxState, Vec<String>), serde_json::Error> {
        let mut state: InboxState = serde_json::from_slice(bytes)?;
        let mut notes = Vec::new();
        if state.version > VERSION {
            notes.push(format!(
                "state file has format version {} (this build writes {VERSION}); reading it anyway",
                state.version
            ));
        }
        state.version = VERSION;
        if let Some(c) = &state.cursor
            && usable_cursor(c).is_none()
        {
            notes.push("ignoring an unusable cursor; the backlog will be replayed (already-handled messages are not delivered again)".to_owned());
            state.cursor = None;
        }
        let mut seen = BTreeSet::new();
        let before = state.pending.len();
        state
            .pending
            .retain(|m| !m.activity_id.is_empty() && seen.insert(m.activity_id.clone()));
        let mut seen_uploads = BTreeSet::new();
        state.uploads.retain(|u| {
            !u.activity_id.is_empty()
                && !u.file_id.is_empty()
                && seen_uploads.insert(u.activity_id.clone())
        });
        if state.pending.len() != before {
            notes.push(format!(
                "dropped {} duplicate or id-less queued message(s)",
                before - state.pending.len()
            ));
        }
        if state.handled.len() > max_handled {
            let mut trimmed = RecentSet::default();
            for id in state
                .handled
                .order
                .iter()
                .skip(state.handled.len() - max_handled)
            {
                trimmed.insert(id, max_handled);
            }
            state.handled = trimmed;
        }
        Ok((state, notes))
    }
}

/// The inbox state a restart would see, from the bytes of the snapshot file (empty when
/// missing) and of the journal file (empty when missing), encoded as a snapshot; `None`
/// when the snapshot cannot be decoded. For tools and tests that inspect the state dir.
pub fn saved_state(snapshot: &[u8], journal: &[u8]) -> Option<Vec<u8>> {
    let mut state = if snapshot.iter().all(u8::is_ascii_whitespace) {
        InboxState::new()
    } else {
        InboxState::decode(snapshot, usize::MAX).ok()?.0
    };
    let _ = state.replay(journal, usize::MAX);
    Some(state.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_set_evicts_oldest() {
        let mut s = RecentSet::default();
        for i in 0..5 {
            s.insert(&i.to_string(), 3);
        }
        assert!(!s.contains("1") && s.contains("2") && s.contains("4"));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"["2","3","4"]"#);
    }

    #[test]
    fn decode_repairs_and_round_trips() {
        let raw = br#"{"cursor":"  ","pending":[{"activity_id":"a"},{"activity_id":"a"},{"activity_id":""}],"handled":["x","y","z"]}"#;
        let (state, notes) = InboxState::decode(raw, 2).unwrap();
        assert_eq!(state.cursor, None);
        assert_eq!(state.pending.len(), 1);
        assert!(!state.handled.contains("x") && state.handled.contains("z"));
        assert_eq!(notes.len(), 2);
        let (again, notes) = InboxState::decode(&state.encode(), 10).unwrap();
        assert!(notes.is_empty());
        assert_eq!(again.pending, state.pending);
        assert!(InboxState::decode(b"[1,2]", 10).is_err());
    }

    #[test]
    fn replay_applies_newer_records_in_order_and_skips_torn_lines() {
        let raw = br#"{"pending":[{"activity_id":"a"},{"activity_id":"b"}],"journal_seq":2}"#;
        let (mut state, _) = InboxState::decode(raw, 10).unwrap();
        let line = |seq, op| JournalLine { seq, op }.encode();
        let mut journal = Vec::new();
        // Seq 2 is already in the snapshot: it would re-queue "x".
        journal.extend(line(
            2,
            JournalOp::Arrived {
                cursor: Some("old".into()),
                messages: vec![serde_json::from_str(r#"{"activity_id":"x"}"#).unwrap()],
                uploads: Vec::new(),
            },
        ));
        journal.extend(line(3, JournalOp::Pop { id: "a".into() }));
        journal.extend(line(
            4,
            JournalOp::Arrived {
                cursor: Some("c".into()),
                messages: vec![serde_json::from_str(r#"{"activity_id":"a"}"#).unwrap()],
                uploads: Vec::new(),
            },
        ));
        journal.extend(b"{\"seq\":5,\"op\":\"po");
        let (last, notes, corrupt) = state.replay(&journal, 10);
        assert_eq!(last, 4);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(!corrupt, "a torn last line is what a crash leaves");
        let ids: Vec<&str> = state
            .pending
            .iter()
            .map(|m| m.activity_id.as_str())
            .collect();
        assert_eq!(ids, ["b"], "popped a stays handled; x was in the snapshot");
        assert_eq!(state.cursor.as_deref(), Some("c"));
        // Replaying again changes nothing.
        let before = state.clone();
        state.replay(&journal, 10);
        assert_eq!(state, before);
        // Garbage followed by a readable record is more than a torn tail.
        let mut broken = b"not json\n".to_vec();
        broken.extend(line(9, JournalOp::Pop { id: "b".into() }));
        let (last, _, corrupt) = state.replay(&broken, 10);
        assert!(corrupt);
        assert_eq!(last, 9);
        assert!(
            state.pending.is_empty(),
            "the readable record is still applied"
        );
    }
}
