//! The tool catalogue: the closed [`Tool`] enum (in `tools/list` order, the order the
//! Python `molecule-mcp` listed them in, which clients may have cached), each tool's
//! [`ToolSpec`], and the dispatcher [`Tool::call`].
//!
//! Every input schema is a closed JSON Schema object (`additionalProperties: false`), so a
//! client or model reading it learns exactly which arguments exist. The dispatcher is
//! lenient all the same: an argument the schema does not declare is ignored (and logged at
//! debug), as the Python original did, because agents prompted on the original send extra
//! keys and an error for one would cost them a turn.
//! Tools that return a JSON *object* declare an `outputSchema`; `inbox_peek` and
//! `chat_history` return arrays and declare none (MCP structured content must be an object).

use molecule_mcp_core::sanitize::{escape_controls, shorten};
use serde_json::{Map, Value, json};

use super::args::Args;
use super::context::ToolContext;
use super::{chat_history, delegation, inbox, memory, messaging, peers, workspace_info};
use crate::mcp::{CallEnv, ToolOutput, ToolSpec};

/// The 12 tools. Closed: adding a tool means adding a variant, and the compiler then asks
/// for its name, its spec and its dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `delegate_task`.
    DelegateTask,
    /// `delegate_task_async`.
    DelegateTaskAsync,
    /// `check_task_status`.
    CheckTaskStatus,
    /// `list_peers`.
    ListPeers,
    /// `get_workspace_info`.
    GetWorkspaceInfo,
    /// `send_message_to_user`.
    SendMessageToUser,
    /// `wait_for_message`.
    WaitForMessage,
    /// `inbox_peek`.
    InboxPeek,
    /// `inbox_pop`.
    InboxPop,
    /// `chat_history`.
    ChatHistory,
    /// `commit_memory`.
    CommitMemory,
    /// `recall_memory`.
    RecallMemory,
}

impl Tool {
    /// Every tool, in `tools/list` order (keep it stable: clients cache prompts on it).
    pub const ALL: [Tool; 12] = [
        Tool::DelegateTask,
        Tool::DelegateTaskAsync,
        Tool::CheckTaskStatus,
        Tool::ListPeers,
        Tool::GetWorkspaceInfo,
        Tool::SendMessageToUser,
        Tool::WaitForMessage,
        Tool::InboxPeek,
        Tool::InboxPop,
        Tool::ChatHistory,
        Tool::CommitMemory,
        Tool::RecallMemory,
    ];

    /// The tool's MCP name.
    pub const fn name(self) -> &'static str {
        match self {
            Tool::DelegateTask => "delegate_task",
            Tool::DelegateTaskAsync => "delegate_task_async",
            Tool::CheckTaskStatus => "check_task_status",
            Tool::ListPeers => "list_peers",
            Tool::GetWorkspaceInfo => "get_workspace_info",
            Tool::SendMessageToUser => "send_message_to_user",
            Tool::WaitForMessage => "wait_for_message",
            Tool::InboxPeek => "inbox_peek",
            Tool::InboxPop => "inbox_pop",
            Tool::ChatHistory => "chat_history",
            Tool::CommitMemory => "commit_memory",
            Tool::RecallMemory => "recall_memory",
        }
    }

    /// The tool called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == name)
    }
}

/// Tool names in `tools/list` order.
pub const TOOL_NAMES: [&str; 12] = {
    let mut names = [""; 12];
    let mut i = 0;
    while i < names.len() {
        names[i] = Tool::ALL[i].name();
        i += 1;
    }
    names
};

const SOURCE_DESC: &str = "Optional, for runtimes serving several workspaces: which of your workspace IDs acts for this call. Defaults to the workspace that listed this peer in list_peers, else the primary workspace.";

fn source_prop() -> Value {
    json!({"type": "string", "description": SOURCE_DESC})
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    let mut schema =
        json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn annotations(
    title: &str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
) -> Option<Value> {
    Some(json!({
        "title": title,
        "readOnlyHint": read_only,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
        "openWorldHint": open_world,
    }))
}

fn spec(
    name: &'static str,
    description: &str,
    input_schema: Value,
    output_schema: Option<Value>,
    annotations: Option<Value>,
) -> ToolSpec {
    ToolSpec {
        name,
        description: description.to_owned(),
        input_schema,
        output_schema,
        annotations,
    }
}

impl Tool {
    /// How `tools/list` advertises this tool.
    pub fn spec(self) -> ToolSpec {
        let target =
            json!({"type": "string", "description": "Target workspace ID (from list_peers)."});
        let task =
            json!({"type": "string", "description": "Task description to send to the peer."});
        let name = self.name();
        match self {
            Tool::DelegateTask => spec(
                name,
                "Delegate a task to a peer workspace via A2A and WAIT for the response (synchronous). Use for quick questions and small sub-tasks; for long work use delegate_task_async + check_task_status. If the peer cannot answer inline (poll-mode or busy peer) the task is still delivered and its reply arrives in your inbox. If the peer takes longer than your MCP client waits for a tool, the call returns early and says how to get the outcome.",
                object_schema(
                    json!({"workspace_id": target, "task": task, "source_workspace_id": source_prop()}),
                    &["workspace_id", "task"],
                ),
                None,
                annotations("Delegate task (wait for reply)", false, false, false, true),
            ),
            Tool::DelegateTaskAsync => spec(
                name,
                "Send a task to a peer and return immediately with a task_id (non-blocking). Poll with check_task_status to retrieve the result.",
                object_schema(
                    json!({"workspace_id": target, "task": task, "source_workspace_id": source_prop()}),
                    &["workspace_id", "task"],
                ),
                Some(json!({
                    "type": "object",
                    "properties": {
                        "delegation_id": {"type": "string"},
                        "workspace_id": {"type": "string"},
                        "status": {"type": "string"},
                        "note": {"type": "string"},
                        "idempotent_hit": {"type": "boolean"}
                    },
                    "required": ["delegation_id", "workspace_id", "status"]
                })),
                annotations("Delegate task (background)", false, false, false, true),
            ),
            Tool::CheckTaskStatus => spec(
                name,
                "Poll the status of a task started with delegate_task_async; returns result when done. Statuses: pending/dispatched/in_progress (still working — wait), queued (peer busy — do not resend), completed (result available), failed (fall back to another peer or handle it yourself).",
                object_schema(
                    json!({
                        "task_id": {"type": "string", "description": "task_id (delegation_id) returned by delegate_task_async. Omit to list recent delegations."},
                        "workspace_id": {"type": "string", "description": "Workspace ID the task was sent to. Used to route to the right source workspace; when task_id is omitted, only delegations to this peer are listed."},
                        "source_workspace_id": source_prop()
                    }),
                    &[],
                ),
                Some(json!({"type": "object", "additionalProperties": true})),
                annotations("Check delegated task", true, false, true, true),
            ),
            Tool::ListPeers => spec(
                name,
                "List the workspaces this agent can communicate with — name, ID, status, role for each. Access control applies: you see siblings, parent and direct children.",
                object_schema(
                    json!({"source_workspace_id": {"type": "string", "description": "Optional: list the peers of only this one of your workspaces. By default every configured workspace is queried and each line is tagged with the workspace that can reach the peer."}}),
                    &[],
                ),
                None,
                annotations("List peers", true, false, true, true),
            ),
            Tool::GetWorkspaceInfo => spec(
                name,
                "Get this workspace's own info — ID, name, role, tier, parent, status.",
                object_schema(
                    json!({"source_workspace_id": {"type": "string", "description": "Optional: which of your workspaces to describe (default: the primary workspace)."}}),
                    &[],
                ),
                Some(json!({"type": "object", "additionalProperties": true})),
                annotations("Workspace info", true, false, true, true),
            ),
            Tool::SendMessageToUser => spec(
                name,
                "Send a message directly to the user's canvas chat — pushed instantly via WebSocket. Use this to: (1) acknowledge a task immediately ('Got it, I'll start on this'), (2) send interim progress updates during long work, (3) deliver follow-up results after delegation completes, (4) attach files (zip, pdf, csv, image) for the user to download via the `attachments` field (NEVER paste file URLs in `message`). The message appears in the user's chat as if you're proactively reaching out.",
                object_schema(
                    json!({
                        "message": {
                            "type": "string",
                            "description": "Text of the chat bubble. Required even when sending attachments — a short caption such as 'Here is the report:' is enough.\n\nDO NOT paste file URLs, download links or file paths in this text. Files go through the `attachments` field, which renders as a download chip and also works on SaaS deployments, where external file-host links and local paths are unreachable from the user's browser."
                        },
                        "attachments": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "REQUIRED for any file delivery. Paths of regular files on this machine (e.g. ['/tmp/build.zip', '/home/me/report.pdf']); each file is uploaded to the platform and shown as a download chip with icon, name and size.\n\nUse this instead of pasting URLs in `message`, base64-encoding content in the text, or telling the user to look at a path on disk. If the file does not exist yet, write it first, then pass its path here. 25 MB per file cap; symbolic links are not followed."
                        },
                        "workspace_id": {"type": "string", "description": "Optional, for runtimes serving several workspaces: the workspace whose canvas receives the message — use the arrival_workspace_id of the message you are answering. Defaults to the primary workspace."}
                    }),
                    &["message"],
                ),
                None,
                annotations("Message the user", false, false, false, false),
            ),
            Tool::WaitForMessage => spec(
                name,
                "Block until the next inbound message (canvas user OR peer agent) arrives, or until ``timeout_secs`` elapses. Returns the oldest pending message that no earlier wait_for_message call returned; it stays in the inbox (inbox_peek still lists it) until you call inbox_pop with its activity_id after handling it. A result with \"call_again\": true means nothing has arrived yet and the call returned early so that your MCP client does not time out: call wait_for_message again to keep waiting.",
                object_schema(
                    json!({"timeout_secs": {"type": "number", "minimum": 0, "description": "Max seconds to block. Capped at 300. Default 60."}}),
                    &[],
                ),
                Some(json!({"type": "object", "additionalProperties": true})),
                // Not read-only or idempotent: it marks the message it returns, so the next
                // call returns the next message (see the description).
                annotations("Wait for inbox message", false, false, false, false),
            ),
            Tool::InboxPeek => spec(
                name,
                "List pending inbound messages without removing them.",
                object_schema(
                    json!({"limit": {"type": "integer", "minimum": 1, "description": "Max messages to return. Default 10."}}),
                    &[],
                ),
                None,
                annotations("Peek at inbox", true, false, true, false),
            ),
            Tool::InboxPop => spec(
                name,
                "Remove a handled message from the inbox queue by activity_id.",
                object_schema(
                    json!({"activity_id": {"type": "string", "description": "activity_id of the message to remove."}}),
                    &["activity_id"],
                ),
                Some(json!({
                    "type": "object",
                    "properties": {"removed": {"type": "boolean"}, "activity_id": {"type": "string"}},
                    "required": ["removed", "activity_id"]
                })),
                annotations("Acknowledge inbox message", false, true, true, false),
            ),
            Tool::ChatHistory => spec(
                name,
                "Fetch the prior conversation with one peer (both sides, chronological).",
                object_schema(
                    json!({
                        "peer_id": {"type": "string", "description": "Workspace ID of the peer."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 500, "description": "Max rows (default 20, cap 500)."},
                        "before_ts": {"type": "string", "description": "Only rows older than this RFC3339 timestamp, for paging back (e.g. 2026-05-01T00:00:00Z)."},
                        "source_workspace_id": source_prop()
                    }),
                    &["peer_id"],
                ),
                None,
                annotations("Chat history with a peer", true, false, true, true),
            ),
            Tool::CommitMemory => spec(
                name,
                "Save a fact to persistent memory; survives across sessions and restarts. Scopes: LOCAL (private, default), TEAM (parent + siblings), GLOBAL (whole org; root workspaces only). Secrets are redacted before saving.",
                object_schema(
                    json!({
                        "content": {"type": "string", "description": "What to remember — be specific."},
                        "scope": {"type": "string", "enum": ["LOCAL", "TEAM", "GLOBAL"], "description": "Memory scope (default LOCAL)."},
                        "source_workspace_id": {"type": "string", "description": "Optional: which of your workspaces owns the memory (default: the primary workspace)."}
                    }),
                    &["content"],
                ),
                Some(json!({
                    "type": "object",
                    "properties": {"success": {"type": "boolean"}, "id": {"type": ["string", "integer", "null"], "description": "The platform's id of the saved memory (null when it named none)."}, "scope": {"type": "string"}},
                    "required": ["success", "scope"]
                })),
                annotations("Save memory", false, false, false, true),
            ),
            Tool::RecallMemory => spec(
                name,
                "Search persistent memory; returns matching LOCAL + TEAM + GLOBAL rows.",
                object_schema(
                    json!({
                        "query": {"type": "string", "description": "Search query (empty returns all)."},
                        "scope": {"type": "string", "enum": ["LOCAL", "TEAM", "GLOBAL", ""], "description": "Filter by scope (empty = all accessible)."},
                        "source_workspace_id": {"type": "string", "description": "Optional: which of your workspaces to search (default: the primary workspace)."}
                    }),
                    &[],
                ),
                None,
                annotations("Recall memory", true, false, true, true),
            ),
        }
    }

    /// Runs the tool with no time budget ([`CallEnv::unlimited`]).
    pub async fn call(self, ctx: &ToolContext, args: &Map<String, Value>) -> ToolOutput {
        self.call_in(ctx, args, &CallEnv::unlimited()).await
    }

    /// [`Tool::call`] under the server's [`CallEnv`]: the tools that wait (`wait_for_message`,
    /// `delegate_task`) answer "not yet" within its budget and name what they wait for.
    /// Arguments the input schema does not declare are ignored (logged at debug; see the
    /// module docs).
    pub async fn call_in(
        self,
        ctx: &ToolContext,
        args: &Map<String, Value>,
        env: &CallEnv,
    ) -> ToolOutput {
        log_unknown_arguments(&self.spec(), args);
        let a = Args(args);
        match self {
            Tool::DelegateTask => delegation::delegate_task(ctx, a, env).await,
            Tool::DelegateTaskAsync => delegation::delegate_task_async(ctx, a).await,
            Tool::CheckTaskStatus => delegation::check_task_status(ctx, a).await,
            Tool::ListPeers => peers::list_peers(ctx, a).await,
            Tool::GetWorkspaceInfo => workspace_info::get_workspace_info(ctx, a).await,
            Tool::SendMessageToUser => messaging::send_message_to_user(ctx, a).await,
            Tool::WaitForMessage => inbox::wait_for_message(ctx, a, env).await,
            Tool::InboxPeek => inbox::inbox_peek(ctx, a).await,
            Tool::InboxPop => inbox::inbox_pop(ctx, a).await,
            Tool::ChatHistory => chat_history::chat_history(ctx, a).await,
            Tool::CommitMemory => memory::commit_memory(ctx, a).await,
            Tool::RecallMemory => memory::recall_memory(ctx, a).await,
        }
    }
}

/// The spec of the tool called `name`.
pub fn tool_def(name: &str) -> Option<ToolSpec> {
    Tool::from_name(name).map(Tool::spec)
}

/// Every spec, in `tools/list` order.
pub fn tool_defs() -> Vec<ToolSpec> {
    Tool::ALL.into_iter().map(Tool::spec).collect()
}

/// Most unknown argument names one debug line lists (a call may carry any number).
const MAX_LOGGED_UNKNOWN: usize = 8;
/// Longest argument name a debug line shows, in characters.
const MAX_LOGGED_NAME: usize = 64;

/// Logs, at debug, the names (never the values) of arguments the schema does not declare.
fn log_unknown_arguments(spec: &ToolSpec, args: &Map<String, Value>) {
    let Some(props) = spec
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
    else {
        return;
    };
    let unknown: Vec<String> = args
        .keys()
        .filter(|k| !props.contains_key(k.as_str()))
        .take(MAX_LOGGED_UNKNOWN)
        .map(|k| escape_controls(&shorten(k, MAX_LOGGED_NAME)))
        .collect();
    if !unknown.is_empty() {
        tracing::debug!(tool = spec.name, ignored = ?unknown, "ignoring arguments the tool does not declare");
    }
}

/// Runs the tool called `name`; `None` when no such tool exists.
pub async fn call_tool(
    ctx: &ToolContext,
    name: &str,
    args: &Map<String, Value>,
) -> Option<ToolOutput> {
    Some(Tool::from_name(name)?.call(ctx, args).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_specs_and_lookup_agree() {
        for (i, tool) in Tool::ALL.into_iter().enumerate() {
            assert_eq!(Tool::from_name(tool.name()), Some(tool));
            assert_eq!(tool.spec().name, tool.name());
            assert_eq!(TOOL_NAMES[i], tool.name());
            assert!(Tool::ALL[..i].iter().all(|earlier| *earlier != tool));
        }
        assert_eq!(Tool::from_name("nope"), None);
    }

    /// Every schema node that describes a value names its JSON type(s), so clients that
    /// validate structured output (and models reading the schema) know what to expect.
    fn assert_typed(schema: &Value, at: &str) {
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => panic!("{at}: schema without a type: {schema}"),
        };
        let known = [
            "object", "array", "string", "integer", "number", "boolean", "null",
        ];
        assert!(
            !types.is_empty() && types.iter().all(|t| known.contains(t)),
            "{at}: {schema}"
        );
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                assert_typed(prop, &format!("{at}.{name}"));
            }
        }
        if let Some(items) = schema.get("items") {
            assert_typed(items, &format!("{at}[]"));
        }
    }

    #[test]
    fn every_schema_is_typed_and_output_schemas_are_objects() {
        for tool in Tool::ALL {
            let spec = tool.spec();
            assert_typed(&spec.input_schema, spec.name);
            if let Some(out) = &spec.output_schema {
                assert_eq!(out["type"], "object", "{}", spec.name);
                assert_typed(out, &format!("{} output", spec.name));
            }
        }
    }

    #[test]
    fn annotations_claim_read_only_only_where_nothing_changes() {
        let hint = |tool: Tool, key: &str| tool.spec().annotations.unwrap()[key].clone();
        // wait_for_message marks the message it returns: a second call returns another one.
        assert_eq!(hint(Tool::WaitForMessage, "readOnlyHint"), json!(false));
        assert_eq!(hint(Tool::WaitForMessage, "idempotentHint"), json!(false));
        for tool in Tool::ALL {
            let read_only = hint(tool, "readOnlyHint") == json!(true);
            let changes = matches!(
                tool,
                Tool::DelegateTask
                    | Tool::DelegateTaskAsync
                    | Tool::SendMessageToUser
                    | Tool::WaitForMessage
                    | Tool::InboxPop
                    | Tool::CommitMemory
            );
            assert_eq!(read_only, !changes, "{}", tool.name());
            if read_only {
                assert_eq!(
                    hint(tool, "destructiveHint"),
                    json!(false),
                    "{}",
                    tool.name()
                );
            }
        }
    }
}
