//! The task store (2025-11-25 task-augmented `tools/call`): the async half of
//! [`TaskOp`](super::protocol::TaskOp), owned by the serve loop.
//!
//! A task-augmented call is answered at once with its task (`status: "working"`) and runs on
//! its own; `tasks/get` and `tasks/list` report it, `tasks/cancel` stops it, and
//! `tasks/result` answers with the call's result once it ends (waiting if it has not). A
//! tool result with `isError: true` ends the task `failed`, any other `completed`.
//!
//! Bounded: at most [`MAX_TASKS`] tasks are kept; an ended task is dropped its `ttl` after
//! it ended (the client's `ttl`, else [`DEFAULT_TTL`], capped at [`MAX_TTL`]), and a new task
//! while the store is full of unexpired ones is refused with `-32600`.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use molecule_mcp_core::inbox::format_rfc3339_micros;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::handler::ToolOutput;
use super::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, RequestId, RpcError, error_line, result_line,
};
use super::protocol::{CallReply, PendingCall};

/// The most tasks kept at once (running and ended, until their ttl passes).
pub const MAX_TASKS: usize = 32;
/// How long an ended task's result stays when the client names no `ttl`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// The longest `ttl` honoured.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The `pollInterval` suggested to clients.
const POLL_INTERVAL_MS: u64 = 1000;
/// The `_meta` key naming the task a `tasks/result` answer belongs to.
const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";

/// How a task ended, as `tasks/result` hands it back.
type Ended = Result<Value, RpcError>;

/// A finished task run: its id and its result object (or the panic).
pub(super) type TaskDone = (String, Result<Value, ()>, bool);

struct Entry {
    status: &'static str,
    created: String,
    updated: String,
    ttl: Duration,
    /// When an ended task is dropped.
    expires: Option<Instant>,
    status_message: Option<String>,
    abort: AbortHandle,
    ended: watch::Sender<Option<Ended>>,
}

/// Every task of this connection.
#[derive(Default)]
pub(super) struct Tasks {
    entries: BTreeMap<String, Entry>,
    /// Running task calls; the serve loop joins them.
    pub(super) running: JoinSet<TaskDone>,
    next: u64,
}

fn now_text() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
    format_rfc3339_micros(nanos)
}

impl Tasks {
    /// Drops ended tasks whose ttl has passed.
    fn purge(&mut self) {
        let now = Instant::now();
        self.entries
            .retain(|_, e| e.expires.is_none_or(|expires| expires > now));
    }

    fn task_json(id: &str, e: &Entry) -> Value {
        let mut task = json!({
            "taskId": id,
            "status": e.status,
            "ttl": u64::try_from(e.ttl.as_millis()).unwrap_or(u64::MAX),
            "createdAt": e.created,
            "lastUpdatedAt": e.updated,
            "pollInterval": POLL_INTERVAL_MS,
        });
        if let Some(message) = &e.status_message {
            task["statusMessage"] = json!(message);
        }
        task
    }

    fn unknown(id: &RequestId, task: &str) -> String {
        error_line(
            Some(id),
            &RpcError::new(
                INVALID_PARAMS,
                format!("Unknown task: {}", super::jsonrpc::excerpt(task)),
            ),
        )
    }

    /// Starts a task-augmented call; the answer is the new task (or `-32600` when full).
    pub(super) fn create(&mut self, call: PendingCall, ttl: Option<u64>) -> String {
        self.purge();
        let PendingCall {
            id, future, reply, ..
        } = call;
        if self.entries.len() >= MAX_TASKS {
            return error_line(
                Some(&id),
                &RpcError::invalid_request(&format!(
                    "too many tasks ({MAX_TASKS}); fetch or cancel some first"
                )),
            );
        }
        self.next += 1;
        let task_id = format!("task-{}", self.next);
        let ttl = ttl.map_or(DEFAULT_TTL, Duration::from_millis).min(MAX_TTL);
        let run_id = task_id.clone();
        let abort = self.running.spawn(async move {
            let output = super::server::CatchUnwind(future).await;
            let failed = matches!(output, Ok(ToolOutput::Error(_)));
            (run_id, output.map(|o| CallReply::result(reply, o)), failed)
        });
        let now = now_text();
        let entry = Entry {
            status: "working",
            created: now.clone(),
            updated: now,
            ttl,
            expires: None,
            status_message: None,
            abort,
            ended: watch::channel(None).0,
        };
        let line = result_line(&id, json!({"task": Self::task_json(&task_id, &entry)}));
        self.entries.insert(task_id, entry);
        line
    }

    /// Records a finished run.
    pub(super) fn finished(&mut self, done: TaskDone) {
        let (task_id, result, failed) = done;
        let Some(entry) = self.entries.get_mut(&task_id) else {
            return;
        };
        if entry.expires.is_some() {
            return; // cancelled meanwhile
        }
        let ended = match result {
            Ok(value) => {
                entry.status = if failed { "failed" } else { "completed" };
                if failed {
                    entry.status_message = Some("the tool reported an error".to_owned());
                }
                Ok(value)
            }
            Err(()) => {
                entry.status = "failed";
                entry.status_message = Some("the tool failed unexpectedly".to_owned());
                Err(RpcError::new(
                    INTERNAL_ERROR,
                    "Internal error: the tool failed unexpectedly",
                ))
            }
        };
        self.end(&task_id, ended);
    }

    fn end(&mut self, task_id: &str, ended: Ended) {
        if let Some(entry) = self.entries.get_mut(task_id) {
            entry.updated = now_text();
            entry.expires = Some(Instant::now() + entry.ttl);
            entry.ended.send_replace(Some(ended));
        }
    }

    /// `tasks/get`.
    pub(super) fn get(&mut self, id: &RequestId, task: &str) -> String {
        self.purge();
        match self.entries.get(task) {
            Some(e) => result_line(id, Self::task_json(task, e)),
            None => Self::unknown(id, task),
        }
    }

    /// `tasks/list`: every kept task, one page.
    pub(super) fn list(&mut self, id: &RequestId) -> String {
        self.purge();
        let tasks: Vec<Value> = self
            .entries
            .iter()
            .map(|(task, e)| Self::task_json(task, e))
            .collect();
        result_line(id, json!({"tasks": tasks}))
    }

    /// `tasks/cancel`: stops a running task; an ended one is `-32602`.
    pub(super) fn cancel(&mut self, id: &RequestId, task: &str) -> String {
        self.purge();
        let Some(entry) = self.entries.get_mut(task) else {
            return Self::unknown(id, task);
        };
        if entry.expires.is_some() {
            return error_line(
                Some(id),
                &RpcError::invalid_params(format!(
                    "Cannot cancel task: it already ended ({})",
                    entry.status
                )),
            );
        }
        entry.abort.abort();
        entry.status = "cancelled";
        entry.status_message = Some("cancelled by the client".to_owned());
        self.end(
            task,
            Err(RpcError::invalid_params("the task was cancelled")),
        );
        match self.entries.get(task) {
            Some(e) => result_line(id, Self::task_json(task, e)),
            None => Self::unknown(id, task),
        }
    }

    /// `tasks/result`: the answer now when the task ended, else a future that waits for it.
    pub(super) fn result(
        &mut self,
        id: &RequestId,
        task: &str,
    ) -> Result<String, Pin<Box<dyn Future<Output = String> + Send + 'static>>> {
        self.purge();
        let Some(entry) = self.entries.get(task) else {
            return Ok(Self::unknown(id, task));
        };
        let mut ended = entry.ended.subscribe();
        let (id, task) = (id.clone(), task.to_owned());
        if let Some(done) = ended.borrow().clone() {
            return Ok(result_answer(&id, &task, done));
        }
        Err(Box::pin(async move {
            match ended.wait_for(Option::is_some).await {
                Ok(done) => match (*done).clone() {
                    Some(done) => result_answer(&id, &task, done),
                    None => Self::unknown(&id, &task),
                },
                // The store was dropped (the server is ending): nothing to report.
                Err(_) => Self::unknown(&id, &task),
            }
        }))
    }
}

/// The `tasks/result` answer: the call's own result plus the related-task `_meta`.
fn result_answer(id: &RequestId, task: &str, ended: Ended) -> String {
    match ended {
        Ok(mut result) => {
            if let Some(obj) = result.as_object_mut() {
                let meta = obj.entry("_meta").or_insert_with(|| json!({}));
                meta[RELATED_TASK] = json!({"taskId": task});
            }
            result_line(id, result)
        }
        Err(error) => error_line(Some(id), &error),
    }
}
