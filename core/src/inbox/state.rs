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
}
