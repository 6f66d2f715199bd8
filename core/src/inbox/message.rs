//! Activity rows → inbox messages.
//!
//! [`classify`] decides what one `a2a_receive` row is:
//!
//! | row | outcome |
//! |---|---|
//! | not an object, or no `id` | [`Row::Skip`] (cannot be named, so never delivered) |
//! | `source_id` = the polled workspace (our own activity report) | skip: delivering it would make the agent answer itself |
//! | `method == "chat_upload_receive"` | [`Row::Upload`] (fetched and staged, see `upload.rs`) |
//! | `method == "notify"` with null/empty source (echo of our own `send_message_to_user`) | skip |
//! | `tasks/*` (except `tasks/send*`) and `agent/*` methods | skip: protocol traffic, nothing to answer |
//! | anything else | [`Row::Message`] |
//!
//! Text comes from the first of `params.message.parts`, `params.message.content` (A2A v0.2:
//! a string or a part list), `params.parts`, `parts` that yields non-empty text, else
//! `summary`, else `(empty A2A message)`. File parts are surfaced as [`FilePart`]s instead
//! of being dropped, so the agent learns that a file came with the message.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Placeholder text for a message without any text part or summary.
pub const EMPTY_MESSAGE_TEXT: &str = "(empty A2A message)";
/// Uploads use this method on their activity rows.
pub const UPLOAD_METHOD: &str = "chat_upload_receive";

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A human in the canvas chat (the row has no `source_id`).
    CanvasUser,
    /// Another workspace's agent (`source_id` = its workspace id).
    PeerAgent,
}

impl MessageKind {
    /// `canvas_user` or `peer_agent`, as in the tool output.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::CanvasUser => "canvas_user",
            MessageKind::PeerAgent => "peer_agent",
        }
    }
}

/// A file attached to a message (A2A `{"kind":"file","file":{…}}` part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePart {
    /// Where to get it: `workspace:<local path>` once staged, `platform-pending:<ws>/<id>`
    /// while only the platform has it, or whatever URL the sender gave.
    pub uri: String,
    /// Display name as sent (not sanitised: it is data, shown inside JSON).
    #[serde(default)]
    pub name: String,
    /// MIME type, when given.
    #[serde(default, rename = "mimeType", skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Size in bytes, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One inbound message, as queued, persisted and handed to the tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// The activity row id (the key for `inbox_pop`).
    pub activity_id: String,
    /// Concatenated text parts (or the summary / placeholder).
    #[serde(default)]
    pub text: String,
    /// Sender workspace id; empty for canvas users.
    #[serde(default)]
    pub peer_id: String,
    /// A2A method of the row (`message/send`, …); empty when absent.
    #[serde(default)]
    pub method: String,
    /// Row `created_at` as the platform wrote it; empty when absent.
    #[serde(default)]
    pub created_at: String,
    /// The workspace whose inbox received it (multi-workspace mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_workspace_id: Option<String>,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePart>,
}

impl InboxMessage {
    /// `PeerAgent` when `peer_id` is non-empty.
    pub fn kind(&self) -> MessageKind {
        if self.peer_id.is_empty() {
            MessageKind::CanvasUser
        } else {
            MessageKind::PeerAgent
        }
    }

    /// The tool shape: `activity_id, text, peer_id, kind, method, created_at`, plus
    /// `arrival_workspace_id` only when set and `files` only when there are any.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("activity_id".into(), json!(self.activity_id));
        map.insert("text".into(), json!(self.text));
        map.insert("peer_id".into(), json!(self.peer_id));
        map.insert("kind".into(), json!(self.kind().as_str()));
        map.insert("method".into(), json!(self.method));
        map.insert("created_at".into(), json!(self.created_at));
        if let Some(ws) = self
            .arrival_workspace_id
            .as_deref()
            .filter(|w| !w.is_empty())
        {
            map.insert("arrival_workspace_id".into(), json!(ws));
        }
        if !self.files.is_empty() {
            // FilePart's Serialize cannot fail (strings and integers only).
            map.insert(
                "files".into(),
                serde_json::to_value(&self.files).unwrap_or(Value::Null),
            );
        }
        Value::Object(map)
    }

    /// Rough size in bytes, for the queue's byte budget.
    pub(crate) fn approx_size(&self) -> usize {
        let files: usize = self
            .files
            .iter()
            .map(|f| f.uri.len() + f.name.len() + 32)
            .sum();
        self.activity_id.len()
            + self.text.len()
            + self.peer_id.len()
            + self.method.len()
            + self.created_at.len()
            + files
            + 64
    }
}

/// Why a row was not turned into anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// Not a JSON object.
    NotObject,
    /// Written by the polled workspace itself (activity report, own upload).
    SelfAuthored,
    /// The platform's echo of our own `/notify`.
    NotifyEcho,
    /// An A2A method that is not a chat message.
    NonMessage(String),
}

/// The parts of an upload row the inbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadRow {
    pub(crate) file_id: String,
    pub(crate) name: String,
    pub(crate) uri: String,
    pub(crate) mime_type: Option<String>,
    pub(crate) size: Option<u64>,
}

/// What a row turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
    Message(InboxMessage),
    Upload(UploadRow),
    /// An upload row without a usable `file_id`.
    BadUpload(String),
    Skip(SkipReason),
}

/// What classification needs to know about the poller.
pub(crate) struct RowContext<'a> {
    /// The polled workspace.
    pub(crate) workspace_id: &'a str,
    /// Copied into every message (multi-workspace mode).
    pub(crate) arrival_workspace_id: Option<&'a str>,
}

/// The row's `id` as a string (`None` when missing or empty).
pub(crate) fn row_id(row: &Value) -> Option<String> {
    match row.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) | None => None,
    }
}

/// Classifies one activity row (see the module table). `activity_id` is [`row_id`].
pub(crate) fn classify(row: &Value, activity_id: &str, ctx: &RowContext<'_>) -> Row {
    let Value::Object(obj) = row else {
        return Row::Skip(SkipReason::NotObject);
    };
    let source = str_field(obj, "source_id").trim().to_owned();
    let method = str_field(obj, "method").trim().to_owned();
    if !source.is_empty() && source.eq_ignore_ascii_case(ctx.workspace_id.trim()) {
        return Row::Skip(SkipReason::SelfAuthored);
    }
    let body = request_body(obj);
    if method == UPLOAD_METHOD {
        return match upload_row(body.as_ref(), ctx.workspace_id) {
            Some(up) => Row::Upload(up),
            None => Row::BadUpload(activity_id.to_owned()),
        };
    }
    if method == "notify" && source.is_empty() {
        return Row::Skip(SkipReason::NotifyEcho);
    }
    if !is_message_method(&method) {
        return Row::Skip(SkipReason::NonMessage(method));
    }
    let summary = str_field(obj, "summary").trim().to_owned();
    let text = body.as_ref().and_then(extract_text).unwrap_or_else(|| {
        if summary.is_empty() {
            EMPTY_MESSAGE_TEXT.to_owned()
        } else {
            summary
        }
    });
    let files = body.as_ref().map(extract_files).unwrap_or_default();
    let created_at = match obj.get("created_at") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    Row::Message(InboxMessage {
        activity_id: activity_id.to_owned(),
        text,
        peer_id: source,
        method,
        created_at,
        arrival_workspace_id: ctx
            .arrival_workspace_id
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
        files,
    })
}

/// Chat-like methods are delivered; `tasks/*` queries and `agent/*` calls are not (the agent
/// has no way to answer them through this inbox). Unknown methods are delivered, because
/// dropping a real message is worse than showing an odd one.
fn is_message_method(method: &str) -> bool {
    if method.starts_with("tasks/") {
        return matches!(method, "tasks/send" | "tasks/sendSubscribe");
    }
    !method.starts_with("agent/")
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `request_body` as an object: given directly or as a JSON string that decodes to one.
fn request_body(obj: &Map<String, Value>) -> Option<Map<String, Value>> {
    match obj.get("request_body") {
        Some(Value::Object(m)) => Some(m.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            Ok(_) | Err(_) => None,
        },
        Some(_) | None => None,
    }
}

/// The candidate part lists in priority order. `content` given as a string is A2A v0.2's
/// single text part.
fn candidate_parts(body: &Map<String, Value>) -> Vec<PartsCandidate<'_>> {
    let params = body.get("params");
    let message = params.and_then(|p| p.get("message"));
    let mut out = Vec::new();
    if let Some(Value::Array(parts)) = message.and_then(|m| m.get("parts")) {
        out.push(PartsCandidate::List(parts));
    }
    match message.and_then(|m| m.get("content")) {
        Some(Value::Array(parts)) => out.push(PartsCandidate::List(parts)),
        Some(Value::String(s)) => out.push(PartsCandidate::Text(s)),
        Some(_) | None => {}
    }
    if let Some(Value::Array(parts)) = params.and_then(|p| p.get("parts")) {
        out.push(PartsCandidate::List(parts));
    }
    if let Some(Value::Array(parts)) = body.get("parts") {
        out.push(PartsCandidate::List(parts));
    }
    out
}

enum PartsCandidate<'a> {
    List(&'a [Value]),
    Text(&'a str),
}

fn part_kind(part: &Map<String, Value>) -> (&str, &str) {
    (str_field(part, "kind"), str_field(part, "type"))
}

fn extract_text(body: &Map<String, Value>) -> Option<String> {
    candidate_parts(body).into_iter().find_map(|c| {
        let text = match c {
            PartsCandidate::Text(s) => s.to_owned(),
            PartsCandidate::List(parts) => parts
                .iter()
                .filter_map(Value::as_object)
                .filter(|p| {
                    let (kind, ty) = part_kind(p);
                    kind == "text" || ty == "text"
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        };
        (!text.is_empty()).then_some(text)
    })
}

/// File parts of the first candidate list that has any. Parts that carry inline `bytes`
/// instead of a `uri` cannot be referenced from a message and are left out.
fn extract_files(body: &Map<String, Value>) -> Vec<FilePart> {
    candidate_parts(body)
        .into_iter()
        .map(|c| match c {
            PartsCandidate::List(parts) => parts.iter().filter_map(file_part).collect(),
            PartsCandidate::Text(_) => Vec::new(),
        })
        .find(|files: &Vec<FilePart>| !files.is_empty())
        .unwrap_or_default()
}

fn file_part(part: &Value) -> Option<FilePart> {
    let part = part.as_object()?;
    let (kind, ty) = part_kind(part);
    if kind != "file" && ty != "file" {
        return None;
    }
    let file = part.get("file").and_then(Value::as_object)?;
    let uri = str_field(file, "uri").trim();
    if uri.is_empty() {
        return None;
    }
    Some(FilePart {
        uri: uri.to_owned(),
        name: str_field(file, "name").to_owned(),
        mime_type: file
            .get("mimeType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        size: file.get("size").and_then(Value::as_u64),
    })
}

/// Reads an upload row's body: the file's id, name, MIME type and size. `None` when there is
/// no usable
/// `file_id`.
fn upload_row(body: Option<&Map<String, Value>>, workspace_id: &str) -> Option<UploadRow> {
    let body = body?;
    let file_id = str_field(body, "file_id").trim();
    if file_id.is_empty() {
        return None;
    }
    let uri = match str_field(body, "uri").trim() {
        "" => format!("platform-pending:{workspace_id}/{file_id}"),
        given => given.to_owned(),
    };
    let raw_name = match body.get("name") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) | None => "file",
    };
    Some(UploadRow {
        file_id: file_id.to_owned(),
        name: crate::sanitize::sanitize_filename(raw_name),
        uri,
        mime_type: body
            .get("mimeType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        size: body.get("size").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "11111111-1111-1111-1111-111111111111";

    fn ctx() -> RowContext<'static> {
        RowContext {
            workspace_id: WS,
            arrival_workspace_id: None,
        }
    }

    fn message(row: Value) -> InboxMessage {
        match classify(&row, "a1", &ctx()) {
            Row::Message(m) => m,
            other @ (Row::Upload(_) | Row::BadUpload(_) | Row::Skip(_)) => {
                panic!("expected a message, got {other:?}")
            }
        }
    }

    #[test]
    fn method_filter() {
        assert!(is_message_method("message/send"));
        assert!(is_message_method(""));
        assert!(is_message_method("tasks/send"));
        assert!(is_message_method("notify"));
        assert!(!is_message_method("tasks/get"));
        assert!(!is_message_method("tasks/cancel"));
        assert!(!is_message_method("agent/getAuthenticatedExtendedCard"));
    }

    #[test]
    fn text_candidates_are_tried_in_order() {
        let m = message(json!({"request_body": {
            "params": {"message": {"parts": [{"kind": "data"}]}, "parts": [{"type": "text", "text": "from params.parts"}]},
            "parts": [{"kind": "text", "text": "top"}]
        }}));
        assert_eq!(m.text, "from params.parts");
        let m = message(json!({"request_body": {"params": {"message": {"content": "v0.2 text"}}}}));
        assert_eq!(m.text, "v0.2 text");
    }

    #[test]
    fn files_without_uri_are_not_surfaced() {
        let m = message(json!({"request_body": {"params": {"message": {"parts": [
            {"kind": "file", "file": {"bytes": "aGk=", "name": "inline.txt"}},
            {"kind": "file", "file": {"uri": "https://x/y", "name": "y", "size": 3}}
        ]}}}}));
        assert_eq!(
            m.files,
            vec![FilePart {
                uri: "https://x/y".into(),
                name: "y".into(),
                mime_type: None,
                size: Some(3)
            }]
        );
        assert_eq!(m.text, EMPTY_MESSAGE_TEXT);
    }
}
