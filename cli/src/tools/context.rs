//! [`ToolContext`]: everything a tool needs besides its arguments.
//!
//! * [`WorkspaceRegistry`]: the workspaces this runtime serves, in configuration order (the
//!   first is the primary), each with its current token. Tokens can be replaced at run time
//!   (the platform mints one at register). Looking up an unregistered id is an error — there
//!   is no fallback token, so a call can never act as one workspace with another's token.
//! * [`PeerCache`]: what `list_peers` and discovery learned — which of our workspaces can
//!   reach a peer (multi-workspace routing), its name and role — plus which workspace
//!   started each async delegation, so `check_task_status` asks the right one.
//! * [`ToolSettings`]: tier, RBAC roles and delegation timeouts (parsed with the rest of the
//!   configuration by `molecule_mcp_core::config::validate`).
//! * [`InboxAccess`]: the inbox queue, implemented by the runtime's glue.
//! * A [`Rng`] seeded once from the OS, for random ids and retry jitter.
//!
//! Every piece uses interior mutability behind short `std::sync::Mutex` sections (never held
//! across an `.await`), so one context serves concurrent tool calls.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use molecule_mcp_core::PlatformRequests;
use molecule_mcp_core::ids::normalize_uuid;
use molecule_mcp_core::inbox::AgentSignal;
use molecule_mcp_core::rng::Rng;
/// The settings' home is the core configuration; re-exported for the tools' older paths.
pub use molecule_mcp_core::tool_settings::{Rbac, ToolSettings};
/// What a pop came to; its home is the core's workspace machine.
pub use molecule_mcp_core::workspace::PopOutcome;
use molecule_mcp_core::{PlatformUrl, Secret};
use serde_json::Value;

use super::client::{BoxFuture, PlatformTransport};

/// The inbox queue, as the inbox tools (and `send_message_to_user`) see it. Implemented by
/// the runtime glue over the inbox driver.
pub trait InboxAccess: Send + Sync {
    /// False when inbox polling is not running (the tools then explain how to enable it).
    fn enabled(&self) -> bool;
    /// Waits up to `timeout` for the oldest message no earlier call returned (so an agent
    /// that forgets `inbox_pop` does not get the same message forever); it stays queued
    /// until popped. `None` on timeout.
    fn wait_next(&self, timeout: Duration) -> BoxFuture<'_, Option<Value>>;
    /// Up to `limit` queued messages, oldest first, not removed.
    fn peek(&self, limit: usize) -> BoxFuture<'_, Vec<Value>>;
    /// Removes the message with this `activity_id`; says whether it was queued and whether
    /// its removal is on disk.
    fn pop<'a>(&'a self, activity_id: &'a str) -> BoxFuture<'a, PopOutcome<Value>>;
    /// `workspace_id` starts uploading attachments itself. The platform also queues them as
    /// inbound uploads in our own feed; the inbox holds downloads back until
    /// [`InboxAccess::end_outbound_upload`] names the files, so our own attachments are
    /// never downloaded and acked back.
    fn begin_outbound_upload(&self, workspace_id: &str) {
        let _ = workspace_id;
    }
    /// The upload started by the matching `begin` is over; `file_ids` are the files it
    /// created (empty when it failed). The inbox never downloads or acks those.
    fn end_outbound_upload(&self, workspace_id: &str, file_ids: Vec<String>) {
        let _ = (workspace_id, file_ids);
    }
    /// Tells the platform what `workspace_id` works on (`current_task` on one extra
    /// heartbeat, shown on the canvas until the next regular beat). The runtime's handle
    /// is the one the inbox tools use, so without the inbox nothing is reported.
    fn report_current_task(&self, workspace_id: &str, summary: &str) {
        let _ = (workspace_id, summary);
    }
    /// What the agent does (a tool call, a client that takes pushes), so the inbox polls
    /// at the cadence that follows it (`core/src/inbox/cadence.rs`). `wait_next` reports
    /// its own wait.
    fn agent(&self, signal: AgentSignal) {
        let _ = signal;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a workspace list was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// No workspaces at all.
    Empty,
    /// An id is not a UUID.
    InvalidId(String),
    /// The same id twice.
    Duplicate(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Empty => f.write_str("at least one workspace is required"),
            RegistryError::InvalidId(id) => write!(f, "workspace id {id:?} is not a UUID"),
            RegistryError::Duplicate(id) => write!(f, "workspace id {id} is listed twice"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// The configured workspaces could not form a [`WorkspaceRegistry`] (start-up error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWorkspaceList(pub RegistryError);

impl std::fmt::Display for InvalidWorkspaceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid workspace list: {}", self.0)
    }
}

impl std::error::Error for InvalidWorkspaceList {}

/// The workspaces this runtime serves, in order; the first is the primary.
#[derive(Debug)]
pub struct WorkspaceRegistry {
    entries: Mutex<Vec<(String, Secret)>>,
    /// Workspaces the platform rejected at register (multi-workspace mode keeps serving the
    /// others instead of exiting), with the operator message.
    failed: Mutex<BTreeMap<String, String>>,
}

impl WorkspaceRegistry {
    /// Validates ids (UUIDs, lower-cased, unique) and keeps the order.
    pub fn new(entries: Vec<(String, Secret)>) -> Result<Self, RegistryError> {
        if entries.is_empty() {
            return Err(RegistryError::Empty);
        }
        let mut out: Vec<(String, Secret)> = Vec::with_capacity(entries.len());
        for (raw, token) in entries {
            let id = normalize_uuid(&raw).ok_or(RegistryError::InvalidId(raw))?;
            if out.iter().any(|(existing, _)| *existing == id) {
                return Err(RegistryError::Duplicate(id));
            }
            out.push((id, token));
        }
        Ok(WorkspaceRegistry {
            entries: Mutex::new(out),
            failed: Mutex::new(BTreeMap::new()),
        })
    }

    /// The primary workspace id.
    pub fn primary(&self) -> String {
        lock(&self.entries)
            .first()
            .map(|(id, _)| id.clone())
            .unwrap_or_default()
    }

    /// All ids, in order.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.entries)
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Number of workspaces.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Never true (construction requires one workspace); here for API completeness.
    pub fn is_empty(&self) -> bool {
        lock(&self.entries).is_empty()
    }

    /// True when `id` (already normalised) is registered.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.entries).iter().any(|(known, _)| known == id)
    }

    /// The current token for `id`; `None` when `id` is not registered.
    pub fn token(&self, id: &str) -> Option<Secret> {
        lock(&self.entries)
            .iter()
            .find(|(known, _)| known == id)
            .map(|(_, t)| t.clone())
    }

    /// Marks a registered workspace as rejected by the platform; later calls acting as it
    /// fail at once with `reason`. False when `id` is unknown.
    pub fn mark_failed(&self, id: &str, reason: &str) -> bool {
        let Some(id) = normalize_uuid(id).filter(|id| self.contains(id)) else {
            return false;
        };
        lock(&self.failed).insert(id, reason.to_owned());
        true
    }

    /// Why `id` (normalised) was rejected, if it was.
    pub fn failure(&self, id: &str) -> Option<String> {
        lock(&self.failed).get(id).cloned()
    }

    /// Replaces the token of a registered workspace; false when `id` is unknown.
    pub fn set_token(&self, id: &str, token: Secret) -> bool {
        let Some(id) = normalize_uuid(id) else {
            return false;
        };
        let mut entries = lock(&self.entries);
        match entries.iter_mut().find(|(known, _)| *known == id) {
            Some(entry) => {
                entry.1 = token;
                true
            }
            None => false,
        }
    }
}

/// What we know about one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Which of our workspaces listed it (the one to send from).
    pub source: Option<String>,
    /// Sanitised display name.
    pub name: Option<String>,
    /// Sanitised role.
    pub role: Option<String>,
}

/// Upper bound on cached entries; the platform lists at most a few hundred peers.
const MAX_CACHE_ENTRIES: usize = 4096;

/// Peer → (source workspace, name, role), and delegation id → source workspace.
#[derive(Debug, Default)]
pub struct PeerCache {
    peers: Mutex<BTreeMap<String, PeerInfo>>,
    delegations: Mutex<BTreeMap<String, String>>,
}

impl PeerCache {
    /// What is known about `peer_id` (normalised).
    pub fn get(&self, peer_id: &str) -> Option<PeerInfo> {
        lock(&self.peers).get(peer_id).cloned()
    }

    /// Records that `source` can reach `peer_id` (last writer wins: the latest `list_peers`
    /// knows best).
    pub fn set_source(&self, peer_id: &str, source: &str) {
        self.update(peer_id, |info| info.source = Some(source.to_owned()));
    }

    /// Records sanitised display metadata; `None` fields leave the old value.
    pub fn set_display(&self, peer_id: &str, name: Option<String>, role: Option<String>) {
        self.update(peer_id, |info| {
            if name.is_some() {
                info.name = name;
            }
            if role.is_some() {
                info.role = role;
            }
        });
    }

    /// Remembers which workspace started a delegation.
    pub fn set_delegation_source(&self, delegation_id: &str, source: &str) {
        let mut map = lock(&self.delegations);
        if map.len() >= MAX_CACHE_ENTRIES && !map.contains_key(delegation_id) {
            map.pop_first();
        }
        map.insert(delegation_id.to_owned(), source.to_owned());
    }

    /// The workspace that started `delegation_id`, if this process started it.
    pub fn delegation_source(&self, delegation_id: &str) -> Option<String> {
        lock(&self.delegations).get(delegation_id).cloned()
    }

    fn update(&self, peer_id: &str, f: impl FnOnce(&mut PeerInfo)) {
        let mut map = lock(&self.peers);
        if map.len() >= MAX_CACHE_ENTRIES && !map.contains_key(peer_id) {
            map.pop_first();
        }
        f(map.entry(peer_id.to_owned()).or_default());
    }
}

/// Everything the tools share.
pub struct ToolContext {
    pub(crate) transport: Arc<dyn PlatformTransport>,
    /// Builds every tool request (URL, Authorization, User-Agent, Origin): the same
    /// builder the session and the inbox use.
    pub(crate) requests: PlatformRequests,
    pub(crate) workspaces: WorkspaceRegistry,
    pub(crate) peers: PeerCache,
    pub(crate) state_dir: Option<PathBuf>,
    /// Secret files outside the state directory (the token file): never attached.
    pub(crate) secret_files: Vec<PathBuf>,
    pub(crate) settings: ToolSettings,
    pub(crate) inbox: Option<Arc<dyn InboxAccess>>,
    /// Random ids (A2A message ids, idempotency nonces, multipart boundaries) and retry
    /// jitter: seeded once from the OS, never used for secrets.
    rng: Mutex<Rng>,
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContext")
            .field("platform", self.requests.platform())
            .field("workspaces", &self.workspaces)
            .field("state_dir", &self.state_dir)
            .field("settings", &self.settings)
            .field("inbox", &self.inbox.is_some())
            .finish()
    }
}

impl ToolContext {
    /// A context without inbox and without a state directory.
    pub fn new(
        transport: Arc<dyn PlatformTransport>,
        platform: PlatformUrl,
        workspaces: WorkspaceRegistry,
        settings: ToolSettings,
    ) -> Self {
        ToolContext {
            transport,
            requests: PlatformRequests::new(platform),
            workspaces,
            peers: PeerCache::default(),
            state_dir: None,
            secret_files: Vec::new(),
            settings,
            inbox: None,
            rng: Mutex::new(Rng::new(molecule_mcp_io_tokio::entropy::os_seed())),
        }
    }

    /// Attaches the inbox queue (enables the three inbox tools).
    pub fn with_inbox(mut self, inbox: Arc<dyn InboxAccess>) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Sets the state directory. `send_message_to_user` refuses to upload files from it,
    /// because it holds the workspace token.
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    /// Adds a file that holds a secret (the token file): `send_message_to_user` refuses to
    /// upload it or any hard link to it.
    pub fn with_secret_file(mut self, path: PathBuf) -> Self {
        self.secret_files.push(path);
        self
    }

    /// The workspaces (use [`WorkspaceRegistry::set_token`] when a token changes).
    pub fn workspaces(&self) -> &WorkspaceRegistry {
        &self.workspaces
    }

    /// The peer cache (the push-path enricher may fill names into it).
    pub fn peers(&self) -> &PeerCache {
        &self.peers
    }

    /// The normalised platform URL.
    pub fn platform(&self) -> &PlatformUrl {
        self.requests.platform()
    }

    /// The settings.
    pub fn settings(&self) -> &ToolSettings {
        &self.settings
    }

    /// Runs `f` with the context's random generator (a short lock, never held across an
    /// `.await`).
    pub(crate) fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

    #[test]
    fn registry_validates_and_orders() {
        let r = WorkspaceRegistry::new(vec![
            (B.to_uppercase(), Secret::new("tb")),
            (A.into(), Secret::new("ta")),
        ])
        .unwrap();
        assert_eq!(r.primary(), B);
        assert_eq!(r.ids(), vec![B.to_owned(), A.to_owned()]);
        assert_eq!(r.token(A).unwrap().expose(), "ta");
        assert!(r.token("cccccccc-0000-4000-8000-000000000003").is_none());
        assert!(r.set_token(A, Secret::new("new")));
        assert_eq!(r.token(A).unwrap().expose(), "new");
        assert!(!r.set_token("cccccccc-0000-4000-8000-000000000003", Secret::new("x")));
        assert_eq!(r.failure(A), None);
        assert!(r.mark_failed(&A.to_uppercase(), "HTTP 401"));
        assert_eq!(r.failure(A).as_deref(), Some("HTTP 401"));
        assert!(!r.mark_failed("cccccccc-0000-4000-8000-000000000003", "x"));
    }

    #[test]
    fn registry_rejects_bad_lists() {
        assert_eq!(
            WorkspaceRegistry::new(vec![]).unwrap_err(),
            RegistryError::Empty
        );
        assert!(matches!(
            WorkspaceRegistry::new(vec![("nope".into(), Secret::new("t"))]),
            Err(RegistryError::InvalidId(_))
        ));
        assert!(matches!(
            WorkspaceRegistry::new(vec![
                (A.into(), Secret::new("t")),
                (A.to_uppercase(), Secret::new("u"))
            ]),
            Err(RegistryError::Duplicate(_))
        ));
    }

    #[test]
    fn peer_cache_merges_fields() {
        let c = PeerCache::default();
        c.set_source(A, B);
        c.set_display(A, Some("Alice".into()), None);
        c.set_display(A, None, Some("writer".into()));
        assert_eq!(
            c.get(A),
            Some(PeerInfo {
                source: Some(B.into()),
                name: Some("Alice".into()),
                role: Some("writer".into())
            })
        );
        c.set_delegation_source("d1", A);
        assert_eq!(c.delegation_source("d1").as_deref(), Some(A));
        assert_eq!(c.delegation_source("d2"), None);
    }
}
