//! A loopback fake of the Molecule platform (workspace-server), for `molecule-mcp demo` and
//! the end-to-end tests. It answers the routes `molecule-mcp` calls with the platform's
//! auth rules, error bodies and paging as the May 2026 platform release implements them
//! (that release is what "the platform" means in this crate's comments).
//!
//! [`PlatformStub::start`] binds a real hyper HTTP/1.1 server on `127.0.0.1:<ephemeral>`
//! with an in-memory store. The control API seeds workspaces and tokens, injects inbound
//! messages, drives lifecycle events (delete, token rotation, inbound-secret changes),
//! scripts per-endpoint faults ([`Script`]), and reads back everything that happened (the
//! request [`journal`](PlatformStub::journal), workspace snapshots, notifications).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use molecule_mcp_stub::{Action, InboundMessage, PlatformStub, Script, WorkspaceSpec};
//!
//! let stub = PlatformStub::start().await?;
//! let (ws, token) = stub.create_workspace(WorkspaceSpec::named("agent").poll());
//! // … point molecule-mcp at stub.url() with WORKSPACE_ID=ws and the token …
//! stub.inject_message(&ws, InboundMessage::canvas("hello"));
//! stub.script(Script::new("POST", "/registry/heartbeat", Action::status(503)).times(2));
//! let beat = |j: &[molecule_mcp_stub::JournalEntry]| j.iter().any(|e| e.path == "/registry/heartbeat");
//! assert!(stub.wait_for(beat, Duration::from_secs(5)).await);
//! # Ok(()) }
//! ```
//!
//! CORS is checked by default (as on the real server): a request whose `Origin` is not
//! exactly `http://127.0.0.1:PORT` gets 403 with an empty body. See [`StubOptions`].
//!
//! Where the stub simplifies the platform:
//! * one global rate-limit bucket; SSRF checks on push URLs only reject loopback/link-local
//!   literals; no healthsweep or virtual clock;
//! * push-mode A2A targets are not dialled: they answer with an echo unless scripted;
//! * delegations stay `dispatched` until [`PlatformStub::complete_delegation`] or
//!   [`PlatformStub::fail_delegation`] (the platform would run the A2A call in the background);
//! * memory search is a case-insensitive substring match.
//!
//! The stub never panics on a request; malformed input gets the platform's error replies.
//! Dropping the last handle (or calling [`PlatformStub::shutdown`]) stops the server.

mod ids;
mod multipart;
mod routes;
mod script;
mod server;
mod state;
mod time;
mod types;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use ids::is_uuid;
pub use script::{Action, Script};
pub use time::{format_rfc3339_micros, parse_rfc3339, unix_micros_now};
pub use types::{
    DelegationSnapshot, DeliveryMode, InboundMessage, JournalEntry, PendingUpload, StubOptions,
    WorkspaceSnapshot, WorkspaceSpec, WorkspaceStatus, message_send_envelope,
};

use server::Shared;
use state::{ActivityRow, State};

/// Handle to a running stub. Cheap to clone; the server stops when the last clone is dropped
/// or on [`PlatformStub::shutdown`].
#[derive(Clone)]
pub struct PlatformStub {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl PlatformStub {
    /// Starts a stub with [`StubOptions::default`] on the current tokio runtime.
    pub async fn start() -> std::io::Result<PlatformStub> {
        PlatformStub::start_with(StubOptions::default()).await
    }

    pub async fn start_with(options: StubOptions) -> std::io::Result<PlatformStub> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(State::new(options), stop_rx));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(PlatformStub {
            inner: Arc::new(Inner {
                shared,
                addr,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash) — use it as `PLATFORM_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// Stops accepting connections, ends hung requests, lets in-flight ones finish, and waits
    /// until the listener is closed. Idempotent; every clone is affected.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.shared.lock()
    }

    // ----- seeding & lifecycle ------------------------------------------------------------

    /// Seeds a workspace and mints its first bearer token. Returns `(id, token)`.
    pub fn create_workspace(&self, spec: WorkspaceSpec) -> (String, String) {
        self.state().create_workspace(spec)
    }

    /// A copy of the workspace row (status, card, last heartbeat, inbound secret, …).
    pub fn workspace(&self, id: &str) -> Option<WorkspaceSnapshot> {
        self.state().ws(id).cloned()
    }

    /// `DELETE /workspaces/:id`: status `removed` for it and its descendants, all their tokens
    /// revoked. Returns false for an unknown id.
    pub fn delete_workspace(&self, id: &str) -> bool {
        self.state().delete_workspace(id)
    }

    /// `?purge=true`: the row and its tokens disappear (register would re-create it).
    pub fn purge_workspace(&self, id: &str) -> bool {
        let mut st = self.state();
        let existed = st.ws(id).is_some();
        st.workspaces.retain(|w| w.id != id);
        st.tokens.retain(|t| t.workspace_id != id);
        existed
    }

    /// `external/rotate`: revokes every token of the workspace and mints one new token.
    pub fn rotate_token(&self, id: &str) -> String {
        let mut st = self.state();
        st.revoke_all(id);
        st.mint_token(id)
    }

    /// Mints an additional live token (the old ones stay valid).
    pub fn mint_token(&self, id: &str) -> String {
        self.state().mint_token(id)
    }

    /// Revokes one token. Returns false if it was unknown or already revoked.
    pub fn revoke_token(&self, token: &str) -> bool {
        let mut st = self.state();
        match st
            .tokens
            .iter_mut()
            .find(|t| t.token == token && !t.revoked)
        {
            Some(t) => {
                t.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Revokes every token: register/heartbeat/discover/peers become bootstrap (no bearer).
    pub fn revoke_all_tokens(&self, id: &str) {
        self.state().revoke_all(id);
    }

    /// Number of live tokens (0 ⇒ bootstrap-aware routes accept requests without a bearer).
    pub fn live_tokens(&self, id: &str) -> usize {
        self.state().live_tokens(id)
    }

    fn edit(&self, id: &str, f: impl FnOnce(&mut WorkspaceSnapshot)) -> bool {
        self.state().ws_mut(id).map(f).is_some()
    }

    /// Sets the status directly (e.g. `Paused`, `Offline`). False for an unknown id (as for
    /// every `set_*` control below).
    pub fn set_status(&self, id: &str, status: WorkspaceStatus) -> bool {
        self.edit(id, |w| w.status = status)
    }

    /// Changes how A2A to this workspace is delivered (queued row vs. echo reply).
    pub fn set_delivery_mode(&self, id: &str, mode: DeliveryMode) -> bool {
        self.edit(id, |w| w.delivery_mode = mode)
    }

    /// Sets the registered URL (what discover returns).
    pub fn set_url(&self, id: &str, url: &str) -> bool {
        self.edit(id, |w| w.url = url.to_string())
    }

    /// Re-parents a workspace (`None` = root), which changes `CanCommunicate` and peers.
    pub fn set_parent(&self, id: &str, parent_id: Option<&str>) -> bool {
        self.edit(id, |w| w.parent_id = parent_id.map(str::to_string))
    }

    /// `Some(s)`: register/heartbeat deliver `s` from now on. `None`: they omit the secret
    /// (the platform's fail-open "heal read failed" case) until a value is set again.
    pub fn set_inbound_secret(&self, id: &str, secret: Option<String>) -> bool {
        self.edit(id, |w| {
            w.inbound_secret_withheld = secret.is_none();
            w.inbound_secret = secret;
        })
    }

    /// Replaces the inbound secret with a fresh one and returns it.
    pub fn rotate_inbound_secret(&self, id: &str) -> Option<String> {
        let mut st = self.state();
        let fresh = st.rng.token();
        let w = st.ws_mut(id)?;
        w.inbound_secret_withheld = false;
        w.inbound_secret = Some(fresh.clone());
        Some(fresh)
    }

    /// Changes options at runtime (rate limit, CORS, TenantGuard, caps, …). The closure runs
    /// under the stub's lock, so it must not call back into the stub.
    pub fn update_options(&self, f: impl FnOnce(&mut StubOptions)) {
        f(&mut self.state().opts);
    }

    /// Sets (or with `None` removes) the per-minute rate limit; the window restarts.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        let mut st = self.state();
        st.opts.rate_limit_per_minute = per_minute;
        st.rate.started = std::time::Instant::now();
        st.rate.count = 0;
    }

    // ----- scripts ------------------------------------------------------------------------

    /// Adds a scripted override (see [`Script`]).
    pub fn script(&self, rule: Script) {
        self.state().scripts.push(rule);
    }

    /// Whether a script that is not used up would answer a `method` request to `path` (a
    /// concrete path such as `/workspaces/<id>/activity`).
    pub fn has_live_script(&self, method: &str, path: &str) -> bool {
        self.state().scripts.iter().any(|s| s.matches(method, path))
    }

    /// Removes every script, used up or not.
    pub fn clear_scripts(&self) {
        self.state().scripts.clear();
    }

    // ----- inbox / activity -----------------------------------------------------------------

    /// Appends an `a2a_receive` row to `workspace`'s feed; returns the row id (a cursor).
    pub fn inject_message(&self, workspace: &str, msg: InboundMessage) -> String {
        let mut row = ActivityRow::blank(workspace, "a2a_receive");
        row.source_id = msg.source_id;
        row.target_id = Some(workspace.to_string());
        row.method = Some(msg.method);
        row.summary = msg.summary;
        row.request_body = msg.request_body;
        row.response_body = msg.response_body;
        row.created_at = msg.created_at.unwrap_or(0);
        self.state().insert_activity(row)
    }

    /// Stages a file as if the canvas user uploaded it to a poll-mode workspace: a pending
    /// upload plus its `chat_upload_receive` row. Returns `(file_id, activity id)`.
    pub fn inject_upload(
        &self,
        workspace: &str,
        name: &str,
        mime_type: &str,
        bytes: impl Into<Bytes>,
    ) -> (String, String) {
        let mut st = self.state();
        let (activity_id, desc) =
            routes::stage_upload(&mut st, workspace, name, mime_type, bytes.into());
        let file_id = desc
            .get("uri")
            .and_then(Value::as_str)
            .and_then(|u| u.rsplit('/').next())
            .unwrap_or_default();
        (file_id.to_string(), activity_id)
    }

    /// Deletes an activity row; a later `since_id=<that id>` gets 410.
    pub fn prune_activity(&self, workspace: &str, activity_id: &str) -> bool {
        let mut st = self.state();
        let before = st.activity.len();
        st.activity
            .retain(|r| !(r.workspace_id == workspace && r.id == activity_id));
        st.activity.len() != before
    }

    /// The workspace's feed in wire shape, oldest first.
    pub fn activity(&self, workspace: &str) -> Vec<Value> {
        let st = self.state();
        let mut rows: Vec<&ActivityRow> = st
            .activity
            .iter()
            .filter(|r| r.workspace_id == workspace)
            .collect();
        rows.sort_by_key(|r| r.key());
        rows.into_iter().map(ActivityRow::to_json).collect()
    }

    /// Bodies accepted by `POST /workspaces/:id/notify`, in order.
    pub fn notifications(&self, workspace: &str) -> Vec<Value> {
        let st = self.state();
        st.notifications
            .iter()
            .filter(|(w, _)| w == workspace)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Uploads staged for a workspace (acked ones included).
    pub fn pending_uploads(&self, workspace: &str) -> Vec<PendingUpload> {
        self.state()
            .uploads
            .iter()
            .filter(|u| u.workspace_id == workspace)
            .cloned()
            .collect()
    }

    // ----- delegations ----------------------------------------------------------------------

    /// Delegations whose source is `source`, oldest first.
    pub fn delegations(&self, source: &str) -> Vec<DelegationSnapshot> {
        self.state()
            .delegations
            .iter()
            .filter(|d| d.snap.source_id == source)
            .map(|d| d.snap.clone())
            .collect()
    }

    /// Marks a delegation `completed` with the agent's reply text as `response_preview`.
    pub fn complete_delegation(&self, delegation_id: &str, preview: &str) -> bool {
        routes::finish_delegation(&mut self.state(), delegation_id, Ok(preview.to_string()))
    }

    /// Marks a delegation `failed` with `error`.
    pub fn fail_delegation(&self, delegation_id: &str, error: &str) -> bool {
        routes::finish_delegation(&mut self.state(), delegation_id, Err(error.to_string()))
    }

    // ----- journal --------------------------------------------------------------------------

    /// Every request received so far (scripted ones included), oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.state().journal.clone()
    }

    /// Forgets all journal entries (ids keep increasing).
    pub fn clear_journal(&self) {
        self.state().journal.clear();
    }

    /// Polls the journal every 10 ms until `pred` holds; false on timeout.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[JournalEntry]) -> bool,
        timeout: Duration,
    ) -> bool {
        self.wait_until(|stub| pred(&stub.state().journal), timeout)
            .await
    }

    /// Polls any condition over the stub every 10 ms until it holds; false on timeout.
    pub async fn wait_until(
        &self,
        pred: impl Fn(&PlatformStub) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
