//! Tasks for the demo server, at both protocol revisions.
//!
//! One [`TaskStore`] holds every task, whichever revision created it; it answers
//! in two wire shapes:
//!
//! - **2026-07-28** (the `io.modelcontextprotocol/tasks` extension, SEP-2663):
//!   served through rmcp's typed `tasks/get`, `tasks/update`, `tasks/cancel`
//!   handlers; `tools/call` answers a `CreateTaskResult` (`resultType: "task"`,
//!   the task's fields flattened) when the request's `_meta` client capabilities
//!   declare the extension.
//! - **2025-11-25** (experimental tasks: `params.task` on `tools/call`,
//!   `tasks/get`, `tasks/result`, `tasks/list`, `tasks/cancel`): rmcp 3.9 does
//!   not implement this revision of tasks (its `CallToolRequestParams` drops
//!   `params.task`, and its typed `tasks/get` answers the 2026 shape after
//!   asking the client for the 2026 extension), so [`legacy_tasks_layer`]
//!   answers these requests at the HTTP layer, in front of rmcp, for sessions
//!   that negotiated 2025-11-25. Everything else goes to rmcp unchanged.
//!
//! The store is deliberately naive, like the rest of the demo server: any
//! caller may get, cancel or fetch the result of any task, and `tasks/list`
//! lists every task. Binding tasks to the caller that created them is the
//! policy filter's job.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::{
    model::{DetailedTask, ErrorCode, Task, TaskPayload, TaskStatus},
    transport::streamable_http_server::session::{local::LocalSessionManager, SessionManager},
    ErrorData as McpError,
};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};

use super::{Recorder, MCP_PATH};

/// `ttl` a 2025-11-25 task gets when the request names none, and the TTL of
/// every 2026-07-28 task (milliseconds). Tasks are never evicted early.
pub const DEFAULT_TASK_TTL_MS: u64 = 60_000;
/// `pollInterval` / `pollIntervalMs` the server suggests (milliseconds).
pub const POLL_INTERVAL_MS: u64 = 50;
/// The most tasks the store keeps; the oldest finished ones go first.
const MAX_TASKS: usize = 1024;
/// Largest body [`legacy_tasks_layer`] reads (the recorder's limit).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Working,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn wire(self) -> &'static str {
        match self {
            Status::Working => "working",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Status::Working
    }
}

struct Entry {
    id: String,
    /// The tool the task runs.
    tool: String,
    status: Status,
    status_message: Option<String>,
    created_at: String,
    last_updated_at: String,
    ttl_ms: Option<u64>,
    /// The `CallToolResult` JSON once completed.
    result: Option<Map<String, Value>>,
    /// The JSON-RPC error object once failed.
    error: Option<Map<String, Value>>,
    cancel: Arc<Notify>,
    /// Flips to `true` when the task reaches a terminal status.
    done: watch::Sender<bool>,
}

impl Entry {
    fn legacy_json(&self) -> Value {
        let mut task = json!({
            "taskId": self.id,
            "status": self.status.wire(),
            "createdAt": self.created_at,
            "lastUpdatedAt": self.last_updated_at,
            "ttl": self.ttl_ms,
            "pollInterval": POLL_INTERVAL_MS,
        });
        if let (Some(message), Some(obj)) = (&self.status_message, task.as_object_mut()) {
            obj.insert("statusMessage".to_owned(), json!(message));
        }
        task
    }

    fn task(&self) -> Task {
        let status = match self.status {
            Status::Working => TaskStatus::Working,
            Status::Completed => TaskStatus::Completed,
            Status::Failed => TaskStatus::Failed,
            Status::Cancelled => TaskStatus::Cancelled,
        };
        let mut task = Task::new(
            self.id.clone(),
            status,
            self.created_at.clone(),
            self.last_updated_at.clone(),
        )
        .with_poll_interval_ms(POLL_INTERVAL_MS);
        task.ttl_ms = self.ttl_ms;
        if let Some(message) = &self.status_message {
            task = task.with_status_message(message.clone());
        }
        task
    }

    fn detailed(&self) -> DetailedTask {
        let payload = match self.status {
            Status::Working => TaskPayload::Working,
            Status::Cancelled => TaskPayload::Cancelled,
            Status::Completed => TaskPayload::Completed {
                result: self.result.clone().unwrap_or_default(),
            },
            Status::Failed => TaskPayload::Failed {
                error: self.error.clone().unwrap_or_default(),
            },
        };
        DetailedTask::new(self.task(), payload)
    }
}

fn now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mcp_policy::audit::rfc3339_millis(since_epoch)
}

/// What a task runs: a future giving the `CallToolResult` JSON or a JSON-RPC error.
pub type TaskWork =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, McpError>> + Send>>;

/// Every task of the server, shared by all sessions and stateless requests.
#[derive(Default)]
pub struct TaskStore {
    entries: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
}

impl TaskStore {
    fn entries(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn find<T>(&self, id: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut entries = self.entries();
        entries.values_mut().find(|e| e.id == id).map(f)
    }

    /// Start `work` as a task of `tool`; the task is observable before this returns.
    /// Its id is `task-<n>`, counting from 1 per server.
    pub fn spawn(self: &Arc<Self>, tool: &str, ttl_ms: Option<u64>, work: TaskWork) -> Task {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("task-{n}");
        let created = now();
        let cancel = Arc::new(Notify::new());
        let entry = Entry {
            id: id.clone(),
            tool: tool.to_owned(),
            status: Status::Working,
            status_message: Some(format!("{tool} is running")),
            created_at: created.clone(),
            last_updated_at: created,
            ttl_ms,
            result: None,
            error: None,
            cancel: cancel.clone(),
            done: watch::channel(false).0,
        };
        let task = entry.task();
        {
            let mut entries = self.entries();
            while entries.len() >= MAX_TASKS {
                let oldest = entries
                    .iter()
                    .find(|(_, e)| e.status.is_terminal())
                    .or_else(|| entries.iter().next())
                    .map(|(k, _)| *k);
                match oldest {
                    Some(key) => entries.remove(&key),
                    None => break,
                };
            }
            entries.insert(n, entry);
        }
        let store = self.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = work => Some(outcome),
                () = cancel.notified() => None,
            };
            store.settle(&id, outcome);
        });
        task
    }

    fn settle(&self, id: &str, outcome: Option<Result<Value, McpError>>) {
        self.find(id, |entry| {
            if entry.status.is_terminal() {
                return;
            }
            match outcome {
                None => {
                    entry.status = Status::Cancelled;
                    entry.status_message = Some("cancelled by the client".to_owned());
                }
                Some(Ok(Value::Object(result))) => {
                    entry.status = Status::Completed;
                    entry.status_message = None;
                    entry.result = Some(result);
                }
                Some(Ok(other)) => {
                    entry.status = Status::Failed;
                    entry.error = error_object(&McpError::internal_error(
                        format!("task result is not an object: {other}"),
                        None,
                    ));
                }
                Some(Err(error)) => {
                    entry.status = Status::Failed;
                    entry.status_message = Some(error.message.to_string());
                    entry.error = error_object(&error);
                }
            }
            entry.last_updated_at = now();
            entry.done.send_replace(true);
        });
    }

    /// `tasks/cancel`: a working task becomes `cancelled` at once (its work is
    /// dropped). `Err` for an unknown task or one already finished.
    pub fn cancel(&self, id: &str) -> Result<(), McpError> {
        let cancel = self
            .find(id, |entry| {
                if entry.status.is_terminal() {
                    return Err(McpError::invalid_params(
                        format!(
                            "cannot cancel task {id}: it is already {}",
                            entry.status.wire()
                        ),
                        None,
                    ));
                }
                entry.status = Status::Cancelled;
                entry.status_message = Some("cancelled by the client".to_owned());
                entry.last_updated_at = now();
                entry.done.send_replace(true);
                Ok(entry.cancel.clone())
            })
            .ok_or_else(|| unknown_task(id))??;
        cancel.notify_one();
        Ok(())
    }

    /// `tasks/get` at 2026-07-28.
    pub fn detailed(&self, id: &str) -> Result<DetailedTask, McpError> {
        self.find(id, |entry| entry.detailed())
            .ok_or_else(|| unknown_task(id))
    }

    /// The 2025-11-25 `Task` object.
    pub fn legacy_json(&self, id: &str) -> Result<Value, McpError> {
        self.find(id, |entry| entry.legacy_json())
            .ok_or_else(|| unknown_task(id))
    }

    /// Every task, oldest first (2025-11-25 `Task` objects).
    pub fn list_legacy(&self) -> Vec<Value> {
        self.entries().values().map(Entry::legacy_json).collect()
    }

    /// Wait until the task is terminal; then its status, result and error.
    pub async fn wait(
        &self,
        id: &str,
    ) -> Result<
        (
            Status,
            Option<Map<String, Value>>,
            Option<Map<String, Value>>,
        ),
        McpError,
    > {
        let mut done = self
            .find(id, |entry| entry.done.subscribe())
            .ok_or_else(|| unknown_task(id))?;
        // A closed channel means the entry was evicted; report what is left.
        let _ = done.wait_for(|finished| *finished).await;
        self.find(id, |entry| {
            (entry.status, entry.result.clone(), entry.error.clone())
        })
        .ok_or_else(|| unknown_task(id))
    }

    /// The tool a task runs, if the task exists.
    pub fn tool_of(&self, id: &str) -> Option<String> {
        self.find(id, |entry| entry.tool.clone())
    }
}

fn unknown_task(id: &str) -> McpError {
    McpError::invalid_params(format!("unknown task: {id}"), Some(json!({ "taskId": id })))
}

fn error_object(error: &McpError) -> Option<Map<String, Value>> {
    match serde_json::to_value(error) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// The work `generateReport` does: wait `delay_ms`, then answer a report.
pub fn report_work(topic: String, delay_ms: u64) -> TaskWork {
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let text = json!({
            "topic": topic,
            "report": format!("Report on {topic}: all systems nominal."),
        })
        .to_string();
        Ok(json!({ "content": [{ "type": "text", "text": text }], "isError": false }))
    })
}

/// State of [`legacy_tasks_layer`].
#[derive(Clone)]
pub struct LegacyTasks {
    pub store: Arc<TaskStore>,
    pub recorder: Recorder,
    /// rmcp's session manager in session mode; `None` when the server is stateless.
    pub sessions: Option<Arc<LocalSessionManager>>,
    /// Answer `application/json` instead of an event stream.
    pub json_responses: bool,
}

/// The 2025-11-25 experimental task methods, answered in front of rmcp (see the
/// module docs). Passes every other request on unchanged, and also these when
/// the request is not a 2025-11-25 one, or names no live session in session
/// mode (rmcp then answers it as it answers any request).
pub async fn legacy_tasks_layer(
    State(tasks): State<LegacyTasks>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != axum::http::Method::POST || request.uri().path() != MCP_PATH {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(err) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("demo server: {err}")).into_response()
        }
    };
    if let Some(response) = answer_legacy_task_request(&tasks, &parts.headers, &body).await {
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The protocol revision a request uses, the way rmcp classifies it: the
/// version in `params._meta`, else the `MCP-Protocol-Version` header, else 2025-03-26.
pub fn request_version(headers: &axum::http::HeaderMap, message: &Value) -> String {
    message
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .and_then(Value::as_str)
        .or_else(|| {
            headers
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("2025-03-26")
        .to_owned()
}

async fn answer_legacy_task_request(
    tasks: &LegacyTasks,
    headers: &axum::http::HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let message: Value = serde_json::from_slice(body).ok()?;
    let method = message.get("method")?.as_str()?;
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let is_task_method = matches!(
        method,
        "tasks/get" | "tasks/result" | "tasks/list" | "tasks/cancel"
    );
    let is_task_call = method == "tools/call" && params.get("task").is_some_and(Value::is_object);
    if !(is_task_method || is_task_call) {
        return None;
    }
    if request_version(headers, &message) != "2025-11-25" {
        return None;
    }
    let id = message.get("id")?.clone();
    if let Some(sessions) = &tasks.sessions {
        let session = headers.get("mcp-session-id")?.to_str().ok()?;
        if !sessions
            .has_session(&session.to_owned().into())
            .await
            .ok()?
        {
            return None;
        }
    }
    let outcome = match method {
        "tools/call" => call_as_task(tasks, &params),
        "tasks/get" => task_id(&params).and_then(|id| tasks.store.legacy_json(id)),
        "tasks/list" => Ok(json!({ "tasks": tasks.store.list_legacy() })),
        "tasks/cancel" => task_id(&params).and_then(|id| {
            tasks.store.cancel(id)?;
            tasks.store.legacy_json(id)
        }),
        _ => match task_id(&params) {
            Ok(task) => task_result(&tasks.store, task).await,
            Err(err) => Err(err),
        },
    };
    let answer = match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
    };
    Some(if tasks.json_responses {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(answer.to_string()),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Bytes::from(format!("event: message\ndata: {answer}\n\n")),
        )
            .into_response()
    })
}

fn task_id(params: &Value) -> Result<&str, McpError> {
    params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params("params.taskId must be a string", None))
}

/// `tools/call` with `params.task` at 2025-11-25: only `generateReport` runs as a task.
fn call_as_task(tasks: &LegacyTasks, params: &Value) -> Result<Value, McpError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params("params.name must be a string", None))?;
    let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
    tasks.recorder.record_tool_call(name, arguments.clone());
    if name != super::surface::REPORT_TOOL {
        return Err(McpError::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("tool {name} does not support task-augmented execution"),
            None,
        ));
    }
    let (topic, delay_ms) = super::surface::report_args(&arguments)?;
    let ttl = params
        .get("task")
        .and_then(|t| t.get("ttl"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_TASK_TTL_MS);
    let task = tasks
        .store
        .spawn(name, Some(ttl), report_work(topic, delay_ms));
    let task = tasks.store.legacy_json(&task.task_id)?;
    Ok(json!({ "task": task }))
}

/// `tasks/result` at 2025-11-25: waits for the task, then answers what the
/// original request would have answered, tagged with the task id.
async fn task_result(store: &TaskStore, id: &str) -> Result<Value, McpError> {
    let (status, result, error) = store.wait(id).await?;
    let related = json!({ "io.modelcontextprotocol/related-task": { "taskId": id } });
    match (status, result, error) {
        (Status::Completed, Some(mut result), _) => {
            result.insert("_meta".to_owned(), related);
            Ok(Value::Object(result))
        }
        (Status::Failed, _, Some(error)) => {
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(ErrorCode::INTERNAL_ERROR.0);
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("task failed")
                .to_owned();
            Err(McpError::new(ErrorCode(code), message, Some(related)))
        }
        _ => Err(McpError::invalid_params(
            format!("task {id} was cancelled and has no result"),
            Some(related),
        )),
    }
}
