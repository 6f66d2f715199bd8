//! Public value types of the stub's control API: seeding specs, options, snapshots, the journal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use serde_json::{Value, json};

/// A workspace's lifecycle status, as `GET /workspaces/:id` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkspaceStatus {
    Provisioning,
    Online,
    Offline,
    Degraded,
    Failed,
    Removed,
    Paused,
    Hibernated,
    Hibernating,
    AwaitingAgent,
}

impl WorkspaceStatus {
    /// The wire spelling, e.g. `awaiting_agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceStatus::Provisioning => "provisioning",
            WorkspaceStatus::Online => "online",
            WorkspaceStatus::Offline => "offline",
            WorkspaceStatus::Degraded => "degraded",
            WorkspaceStatus::Failed => "failed",
            WorkspaceStatus::Removed => "removed",
            WorkspaceStatus::Paused => "paused",
            WorkspaceStatus::Hibernated => "hibernated",
            WorkspaceStatus::Hibernating => "hibernating",
            WorkspaceStatus::AwaitingAgent => "awaiting_agent",
        }
    }
}

/// How the platform delivers inbound A2A to a workspace: pushed to its URL, or queued in
/// its activity feed for it to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// The platform POSTs to the workspace's URL (the stub answers with a scripted reply).
    Push,
    /// Inbound traffic becomes rows in the workspace's activity feed.
    Poll,
}

impl DeliveryMode {
    /// `push` / `poll`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Push => "push",
            DeliveryMode::Poll => "poll",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DeliveryMode> {
        match s {
            "push" => Some(DeliveryMode::Push),
            "poll" => Some(DeliveryMode::Poll),
            _ => None,
        }
    }
}

/// What [`PlatformStub::create_workspace`](super::PlatformStub::create_workspace) seeds. The
/// default mirrors `POST /workspaces {"external":true}`: status `awaiting_agent`, runtime
/// `external`, delivery mode **push** (so a client must register with `"delivery_mode":"poll"`).
#[derive(Debug, Clone)]
pub struct WorkspaceSpec {
    /// Fixed id; a random UUID when `None`.
    pub id: Option<String>,
    /// Display name; `workspace-<first 8 chars of id>` when `None`.
    pub name: Option<String>,
    pub role: Option<String>,
    pub parent_id: Option<String>,
    pub status: WorkspaceStatus,
    pub delivery_mode: DeliveryMode,
    pub url: String,
    pub agent_card: Option<Value>,
    pub tier: i64,
}

impl Default for WorkspaceSpec {
    fn default() -> WorkspaceSpec {
        WorkspaceSpec {
            id: None,
            name: None,
            role: None,
            parent_id: None,
            status: WorkspaceStatus::AwaitingAgent,
            delivery_mode: DeliveryMode::Push,
            url: String::new(),
            agent_card: None,
            tier: 1,
        }
    }
}

impl WorkspaceSpec {
    /// A default spec with a display name.
    pub fn named(name: &str) -> WorkspaceSpec {
        WorkspaceSpec {
            name: Some(name.to_string()),
            ..WorkspaceSpec::default()
        }
    }
    pub fn id(mut self, id: &str) -> WorkspaceSpec {
        self.id = Some(id.to_string());
        self
    }
    /// Poll delivery (what molecule-mcp uses).
    pub fn poll(mut self) -> WorkspaceSpec {
        self.delivery_mode = DeliveryMode::Poll;
        self
    }
    /// Push delivery to `url`.
    pub fn push(mut self, url: &str) -> WorkspaceSpec {
        self.delivery_mode = DeliveryMode::Push;
        self.url = url.to_string();
        self
    }
    pub fn parent(mut self, parent_id: &str) -> WorkspaceSpec {
        self.parent_id = Some(parent_id.to_string());
        self
    }
    pub fn role(mut self, role: &str) -> WorkspaceSpec {
        self.role = Some(role.to_string());
        self
    }
    pub fn status(mut self, status: WorkspaceStatus) -> WorkspaceSpec {
        self.status = status;
        self
    }
}

/// Stub-wide switches. Change them at runtime with
/// [`PlatformStub::update_options`](super::PlatformStub::update_options).
#[derive(Debug, Clone)]
pub struct StubOptions {
    /// Global fixed-window limit per minute; `None` = unlimited (`X-RateLimit-Limit: unlimited`).
    pub rate_limit_per_minute: Option<u32>,
    /// CORS origin check, the first step of every request: a request whose `Origin` is neither
    /// `http(s)://<Host>` nor in `cors_allowed_origins` gets 403 with an empty body. On by
    /// default, like the real server; a client that builds `Origin` correctly never notices.
    pub cors: bool,
    pub cors_allowed_origins: Vec<String>,
    /// The SaaS TenantGuard (as the May 2026 platform applies it): when set, routes other than health/register/heartbeat
    /// answer 404 with an empty body unless `Origin` matches the Host or `X-Molecule-Org-Id`
    /// equals this org id.
    pub tenant_org_id: Option<String>,
    /// Accepted as a bearer on every strict (`/workspaces/:id/*`) route.
    pub admin_token: Option<String>,
    /// `GET /healthz` answers 200 (the real server has no such route; the doctor probes it).
    pub healthz: bool,
    /// Poll-mode chat upload per-file cap (the platform's is 25 MiB, the default here).
    pub upload_file_cap: u64,
    /// Requests with a larger body get 413 before any other processing.
    pub max_body_bytes: usize,
    /// `DELEGATION_RESULT_INBOX_PUSH=1`: terminal delegation results also land in the
    /// source's feed as `delegate_result` rows.
    pub delegate_result_inbox_push: bool,
}

impl Default for StubOptions {
    fn default() -> StubOptions {
        StubOptions {
            rate_limit_per_minute: None,
            cors: true,
            cors_allowed_origins: vec![
                "http://localhost:3000".into(),
                "http://localhost:3001".into(),
            ],
            tenant_org_id: None,
            admin_token: None,
            healthz: true,
            upload_file_cap: 25 * 1024 * 1024,
            max_body_bytes: 64 * 1024 * 1024,
            delegate_result_inbox_push: false,
        }
    }
}

/// The stub's row for one workspace, as returned by
/// [`PlatformStub::workspace`](super::PlatformStub::workspace) (a copy).
#[derive(Debug, Clone)]
pub struct WorkspaceSnapshot {
    pub id: String,
    pub name: String,
    pub role: Option<String>,
    pub parent_id: Option<String>,
    pub tier: i64,
    pub status: WorkspaceStatus,
    /// Always `external` for workspaces the stub knows.
    pub runtime: String,
    pub delivery_mode: DeliveryMode,
    pub url: String,
    pub agent_card: Option<Value>,
    pub active_tasks: i64,
    pub max_concurrent_tasks: i64,
    pub current_task: String,
    pub uptime_seconds: i64,
    pub error_rate: f64,
    pub sample_error: String,
    pub runtime_state: String,
    pub runtime_metadata: Option<Value>,
    pub monthly_spend: i64,
    /// The current `platform_inbound_secret` (lazily minted on register/heartbeat).
    pub inbound_secret: Option<String>,
    /// When true, register/heartbeat responses omit the secret (a failed "heal" read).
    pub inbound_secret_withheld: bool,
    /// Body of the last heartbeat that updated this row, and how many did.
    pub last_heartbeat: Option<Value>,
    pub last_heartbeat_at: Option<i64>,
    pub heartbeat_count: u64,
    /// Body of the last successful register, and how many there were.
    pub last_register: Option<Value>,
    pub register_count: u64,
    /// Unix micros of deletion.
    pub removed_at: Option<i64>,
}

impl WorkspaceSnapshot {
    pub(crate) fn new(
        id: &str,
        name: &str,
        status: WorkspaceStatus,
        mode: DeliveryMode,
    ) -> WorkspaceSnapshot {
        WorkspaceSnapshot {
            id: id.to_string(),
            name: name.to_string(),
            role: None,
            parent_id: None,
            tier: 1,
            status,
            runtime: "external".into(),
            delivery_mode: mode,
            url: String::new(),
            agent_card: None,
            active_tasks: 0,
            max_concurrent_tasks: 1,
            current_task: String::new(),
            uptime_seconds: 0,
            error_rate: 0.0,
            sample_error: String::new(),
            runtime_state: String::new(),
            runtime_metadata: None,
            monthly_spend: 0,
            inbound_secret: None,
            inbound_secret_withheld: false,
            last_heartbeat: None,
            last_heartbeat_at: None,
            heartbeat_count: 0,
            last_register: None,
            register_count: 0,
            removed_at: None,
        }
    }
}

/// One inbound `a2a_receive` row to put into a workspace's feed with
/// [`PlatformStub::inject_message`](super::PlatformStub::inject_message).
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// Sender workspace; `None` = the canvas user.
    pub source_id: Option<String>,
    pub method: String,
    /// Raw `request_body` (any JSON, including a string that contains JSON); omitted if `None`.
    pub request_body: Option<Value>,
    pub response_body: Option<Value>,
    pub summary: Option<String>,
    /// Fixed `created_at` (Unix micros) — give two rows the same value to test `seq`
    /// tie-breaks. Default: now (never earlier than the previous row).
    pub created_at: Option<i64>,
}

impl InboundMessage {
    /// A canvas-user `message/send` with one `{"kind":"text"}` part.
    pub fn canvas(text: &str) -> InboundMessage {
        InboundMessage::with_body(None, message_send_envelope(text))
    }

    /// A peer agent's `message/send` with one `{"kind":"text"}` part.
    pub fn from_peer(peer_id: &str, text: &str) -> InboundMessage {
        InboundMessage::with_body(Some(peer_id), message_send_envelope(text))
    }

    /// A `message/send` row with an arbitrary `request_body`.
    pub fn with_body(source_id: Option<&str>, request_body: Value) -> InboundMessage {
        InboundMessage {
            source_id: source_id.map(str::to_string),
            method: "message/send".into(),
            request_body: Some(request_body),
            response_body: None,
            summary: None,
            created_at: None,
        }
    }

    pub fn summary(mut self, summary: &str) -> InboundMessage {
        self.summary = Some(summary.to_string());
        self
    }
    pub fn method(mut self, method: &str) -> InboundMessage {
        self.method = method.to_string();
        self
    }
    pub fn at(mut self, unix_micros: i64) -> InboundMessage {
        self.created_at = Some(unix_micros);
        self
    }
}

/// The JSON-RPC `message/send` envelope the platform stores for an inbound text message.
/// Request and message ids are unique per call (`stub-req-<n>` / `stub-msg-<n>`).
pub fn message_send_envelope(text: &str) -> Value {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    json!({
        "jsonrpc": "2.0",
        "id": format!("stub-req-{n}"),
        "method": "message/send",
        "params": {"message": {"role": "user", "messageId": format!("stub-msg-{n}"), "parts": [{"kind": "text", "text": text}]}}
    })
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// Position in arrival order (never reused, survives `clear_journal`).
    pub id: u64,
    pub method: String,
    /// Raw path, without the query string.
    pub path: String,
    /// Raw query string (without `?`), if any.
    pub query: Option<String>,
    /// Every header in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub at: SystemTime,
    /// Status written back; `None` while pending or when no response was sent (drop / hang).
    pub status: Option<u16>,
}

impl JournalEntry {
    /// First value of a header (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`None` if it is not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// First value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        super::routes::parse_query(self.query.as_deref())
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// A delegation as the stub tracks it (`POST /workspaces/:id/delegate`).
#[derive(Debug, Clone)]
pub struct DelegationSnapshot {
    pub id: String,
    pub source_id: String,
    pub target_id: String,
    pub task: String,
    pub idempotency_key: Option<String>,
    /// `pending`, `dispatched`, `completed`, `failed` or `queued`.
    pub status: String,
    pub error: Option<String>,
    pub response_preview: Option<String>,
}

/// A poll-mode upload staged by `POST /workspaces/:id/chat/uploads` (or
/// [`PlatformStub::inject_upload`](super::PlatformStub::inject_upload)).
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub workspace_id: String,
    pub file_id: String,
    pub name: String,
    pub mime_type: String,
    pub bytes: Bytes,
    pub acked: bool,
    /// `chat_upload_receive` row announcing it.
    pub activity_id: String,
}
