//! The running application: the tools' shared [`ToolContext`], the inbox driver, and the
//! MCP server that exposes them over stdio.
//!
//! ```text
//!   stdin ─► mcp::serve ─► ToolHandler (this file) ─► tools::call_tool(ctx, …) ─► platform
//!                 ▲                                         │
//!   stdout ◄──────┴── push notifications ◄── inbox driver ◄─┘ (InboxAccess: wait/peek/pop)
//! ```
//!
//! The fleet driver (register, heartbeats, inbox) is started by `serve.rs`; it reports
//! arrivals, minted tokens and rejected workspaces here ([`App::arrived`],
//! [`App::set_token`], [`App::mark_failed`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use molecule_mcp_core::Secret;
use molecule_mcp_core::config::ValidConfig;
use molecule_mcp_core::ids::normalize_uuid;
use molecule_mcp_core::inbox::{AgentSignal, InboxMessage, PeerLabel, push_content, push_meta};
use molecule_mcp_io_tokio::{FleetHandle, HttpClient};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::mcp::{
    CHANNEL_NOTIFICATION, CallEnv, ServeConfig, ServeEnd, ServerIdentity, ToolFuture, ToolHandler,
    ToolSpec, push_notification,
};
use crate::tools::context::{InvalidWorkspaceList, PopOutcome};
use crate::tools::{
    BoxFuture, InboxAccess, Tool, ToolContext, ToolSettings, WorkspaceRegistry, peers, tool_defs,
};

/// Channel notifications waiting for the MCP writer (for instance until the client's
/// `notifications/initialized`). When full, the push task waits, and arrivals wait for it;
/// arrivals are bounded in turn by the inbox queue (`max_pending` in
/// `core/src/inbox/config.rs`: the inbox stops fetching when it is full).
const PUSH_QUEUE: usize = 64;

/// How long the push path waits for discovery to name an unknown peer before pushing anyway.
const PUSH_ENRICH_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the MCP server serves.
pub struct App {
    ctx: Arc<ToolContext>,
    arrivals_tx: mpsc::UnboundedSender<InboxMessage>,
    arrivals: Mutex<Option<mpsc::UnboundedReceiver<InboxMessage>>>,
    pushes_tx: mpsc::Sender<Value>,
    pushes_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    identity: ServerIdentity,
    /// `MOLECULE_MCP_PROGRESS_INTERVAL_MS` and `MOLECULE_MCP_CALL_BUDGET_MS`.
    keepalive: (Duration, Duration),
}

impl App {
    /// Builds the tool context over the running `fleet` (the inbox tools use it unless the
    /// inbox is disabled).
    pub fn new(
        config: &ValidConfig,
        state_dir: &Path,
        secret_files: &[PathBuf],
        http: HttpClient,
        settings: ToolSettings,
        fleet: FleetHandle,
    ) -> Result<App, InvalidWorkspaceList> {
        let registry = WorkspaceRegistry::new(
            config
                .workspaces
                .iter()
                .map(|w| (w.id.clone(), w.token.clone()))
                .collect(),
        )
        .map_err(InvalidWorkspaceList)?;
        let mut ctx = ToolContext::new(Arc::new(http), config.platform.clone(), registry, settings)
            .with_state_dir(state_dir.to_path_buf());
        for file in secret_files {
            ctx = ctx.with_secret_file(file.clone());
        }
        if config.inbox_enabled {
            // `MOLECULE_MCP_POLL_TIMEOUT_SECS=0` tells the agent not to call
            // wait_for_message: messages reach it only as pushes, so someone always waits.
            let push_expected = config.poll_timeout_secs == 0;
            let tools = InboxTools {
                fleet,
                push_expected,
            };
            if push_expected {
                tools.agent(AgentSignal::PushListener(true));
            }
            ctx = ctx.with_inbox(Arc::new(tools));
        }
        let (poll_timeout, multi) = (config.poll_timeout_secs, config.multi_workspace);
        let identity = ServerIdentity::molecule(move || {
            crate::instructions::instructions(poll_timeout, multi)
        });
        let (pushes_tx, pushes_rx) = mpsc::channel(PUSH_QUEUE);
        let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
        Ok(App {
            ctx: Arc::new(ctx),
            arrivals_tx,
            arrivals: Mutex::new(Some(arrivals)),
            pushes_tx,
            pushes_rx: Mutex::new(Some(pushes_rx)),
            identity,
            keepalive: (config.progress_interval, config.call_budget),
        })
    }

    /// The tool context (tests and the demo inspect it).
    pub fn context(&self) -> &Arc<ToolContext> {
        &self.ctx
    }

    /// Starts the background tasks (the push path: inbox arrivals → channel notifications).
    /// Abort them with the returned set.
    pub fn start_background(&self) -> JoinSet<()> {
        let mut tasks = JoinSet::new();
        let arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut arrivals) = arrivals {
            let ctx = Arc::clone(&self.ctx);
            let tx = self.pushes_tx.clone();
            tasks.spawn(async move {
                while let Some(message) = arrivals.recv().await {
                    let notification = channel_notification(&ctx, &message).await;
                    if tx.send(notification).await.is_err() {
                        return;
                    }
                }
            });
        }
        tasks
    }

    /// Serves MCP on the process's stdin/stdout until EOF (or a closed stdout). Call once.
    pub async fn serve_stdio(&self) -> ServeEnd {
        let pushes = self
            .pushes_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let pushes = pushes.unwrap_or_else(|| mpsc::channel(1).1);
        let handler: Arc<dyn ToolHandler> = Arc::new(Tools(Arc::clone(&self.ctx)));
        let (progress_interval, call_budget) = self.keepalive;
        let config = ServeConfig {
            progress_interval,
            call_budget,
            max_calls: self.ctx.settings().max_concurrent_calls,
            // Every byte sent to the client passes the process's secret redaction.
            redact: molecule_mcp_io_tokio::secrets::redact,
            ..ServeConfig::default()
        };
        let (input, output) = crate::stdio::streams();
        crate::mcp::serve_with(
            config,
            input,
            output,
            handler,
            self.identity.clone(),
            pushes,
        )
        .await
    }

    /// A message arrived: push it to the client (through the background push path).
    pub fn arrived(&self, message: InboxMessage) {
        let _ = self.arrivals_tx.send(message);
    }

    /// The platform minted a new token for `workspace_id`: tools use it (the inbox already
    /// does).
    pub fn set_token(&self, workspace_id: &str, token: Secret) {
        self.ctx.workspaces().set_token(workspace_id, token);
    }

    /// The platform rejected `workspace_id` at register (multi-workspace mode): tools acting
    /// as it fail with `message` instead of sending requests that cannot succeed (its inbox
    /// already stopped polling).
    pub fn mark_failed(&self, workspace_id: &str, message: &str) {
        self.ctx.workspaces().mark_failed(workspace_id, message);
    }
}

/// The 12 tools as the MCP server sees them.
struct Tools(Arc<ToolContext>);

impl ToolHandler for Tools {
    fn tools(&self) -> Vec<ToolSpec> {
        tool_defs()
    }

    fn call(&self, name: &str, arguments: Map<String, Value>) -> Option<ToolFuture> {
        self.call_in(name, arguments, CallEnv::unlimited())
    }

    fn client_initialized(&self, takes_pushes: bool) {
        if let Some(inbox) = &self.0.inbox {
            inbox.agent(AgentSignal::PushListener(takes_pushes));
        }
    }

    fn call_in(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        env: CallEnv,
    ) -> Option<ToolFuture> {
        let tool = Tool::from_name(name)?;
        let ctx = Arc::clone(&self.0);
        Some(Box::pin(async move {
            // A call that runs (not one refused at the concurrency cap) is agent activity:
            // replies to what it does tend to follow.
            if let Some(inbox) = &ctx.inbox {
                inbox.agent(AgentSignal::Used);
            }
            tool.call_in(&ctx, &arguments, &env).await
        }))
    }
}

/// [`InboxAccess`] over the fleet driver.
struct InboxTools {
    fleet: FleetHandle,
    /// The agent was told to rely on pushes (see [`App::new`]): a client that does not
    /// declare the channel capability does not end the push listening.
    push_expected: bool,
}

impl InboxAccess for InboxTools {
    fn enabled(&self) -> bool {
        true
    }

    fn wait_next(&self, timeout: Duration) -> BoxFuture<'_, Option<Value>> {
        Box::pin(async move {
            self.fleet
                .wait_unreturned(timeout)
                .await
                .map(|m| m.to_json())
        })
    }

    fn peek(&self, limit: usize) -> BoxFuture<'_, Vec<Value>> {
        Box::pin(async move {
            self.fleet
                .peek(limit)
                .await
                .iter()
                .map(InboxMessage::to_json)
                .collect()
        })
    }

    fn pop<'a>(&'a self, activity_id: &'a str) -> BoxFuture<'a, PopOutcome<Value>> {
        Box::pin(async move { self.fleet.pop(activity_id).await.map(|m| m.to_json()) })
    }

    fn begin_outbound_upload(&self, workspace_id: &str) {
        self.fleet.begin_outbound_upload(workspace_id);
    }

    fn end_outbound_upload(&self, workspace_id: &str, file_ids: Vec<String>) {
        self.fleet.end_outbound_upload(workspace_id, file_ids);
    }

    fn report_current_task(&self, workspace_id: &str, summary: &str) {
        self.fleet.report_current_task(workspace_id, summary);
    }

    fn agent(&self, signal: AgentSignal) {
        self.fleet.agent(match signal {
            AgentSignal::PushListener(on) => AgentSignal::PushListener(on || self.push_expected),
            other @ (AgentSignal::WaitStarted | AgentSignal::WaitEnded | AgentSignal::Used) => {
                other
            }
        });
    }
}

/// The `notifications/claude/channel` frame for a new message (`content` + `meta`, see
/// `core/src/inbox/push.rs`). A peer the
/// cache does not know yet is looked up first (bounded), so the push names it.
async fn channel_notification(ctx: &ToolContext, message: &InboxMessage) -> Value {
    let peer = normalize_uuid(&message.peer_id);
    if let Some(peer) = &peer
        && ctx.peers().get(peer).and_then(|info| info.name).is_none()
    {
        let source = message
            .arrival_workspace_id
            .clone()
            .filter(|ws| ctx.workspaces().contains(ws))
            .unwrap_or_else(|| ctx.workspaces().primary());
        // The result lands in the peer cache; a slow or failing lookup just means no name.
        let _ =
            tokio::time::timeout(PUSH_ENRICH_TIMEOUT, peers::discover(ctx, &source, peer)).await;
    }
    let info = peer
        .as_deref()
        .and_then(|p| ctx.peers().get(p))
        .unwrap_or_default();
    let label = PeerLabel {
        name: info.name,
        role: info.role,
    };
    push_notification(
        CHANNEL_NOTIFICATION,
        json!({
            "content": push_content(message, &label),
            "meta": push_meta(message, ctx.platform(), &label),
        }),
    )
}
