//! Demo MCP server: a fake code-execution service behind Streamable HTTP at `/mcp`,
//! with the rest of the MCP surface beside it (resources, prompts, completions,
//! subscriptions, tasks, a multi-round-trip tool and a meta-tool: see `surface.rs`
//! and `tasks.rs`).
//!
//! Nothing here ever executes code. The server exists so the policy filter has a real
//! MCP peer to sit in front of, and so end-to-end tests can see exactly what got
//! through: a [`Recorder`] captures every HTTP request (before rmcp parses it) and
//! every tool invocation.
//!
//! It serves both protocol revisions at once: 2025-11-25 clients `initialize` and
//! get an `Mcp-Session-Id` session; 2026-07-28 clients send self-contained
//! requests (`_meta` protocol version and client capabilities, `Mcp-Method` /
//! `Mcp-Name` headers) that rmcp serves statelessly.
//!
//! This file is a module without `main`: `examples/demo_server/main.rs` runs it as a
//! binary and the e2e tests include it with
//! `#[path = "../../examples/demo_server/server.rs"] mod server;`.
#![allow(dead_code)]

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use rmcp::{
    handler::server::{router::tool::ToolRouter, tool::ToolCallContext, wrapper::Parameters},
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        CompleteRequestParams, CompleteResult, ContentBlock, GetPromptRequestParams,
        GetPromptResponse, GetTaskParams, GetTaskResult, Implementation, ListPromptsResult,
        ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
        SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{RequestContext, SubscriptionContext},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ErrorData as McpError, RoleServer, ServerHandler,
};
use serde::Deserialize;
use serde_json::{json, Value};

#[path = "surface.rs"]
mod surface;
#[path = "tasks.rs"]
mod tasks;

// For the tests (and the lead's e2e tests) that include this file; the binary uses none.
#[allow(unused_imports)]
pub use surface::{
    naive_path, CONFIRM_TOOL, META_TOOL, PUBLIC_MAIN_URI, PUBLIC_README_URI, PUBLIC_TEMPLATE,
    REPORT_TOOL, SECRET_PROMPT, SECRET_TEXT, SECRET_URI, TRAVERSAL_FORMS,
};

/// Path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// Largest request body the recording layer buffers (rmcp's own limit is 4 MiB).
const MAX_RECORDED_BODY: usize = 16 * 1024 * 1024;

/// Every revision the server speaks. `initialize` negotiates up to 2025-11-25
/// (the newest with a handshake and `Mcp-Session-Id` sessions); 2026-07-28
/// requests name their version in `_meta` and are served without a session.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] = ProtocolVersion::KNOWN_VERSIONS;

/// One HTTP request as it reached the server, before rmcp handled it. It is
/// recorded as soon as its headers arrive, and its body as it arrives: a
/// request cut off mid-body (the connection reset) stays recorded, with what
/// arrived of its body and `incomplete` set.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path only, without the query string.
    pub path: String,
    /// Header names are lowercase; repeated headers appear once per value.
    pub headers: Vec<(String, String)>,
    /// The body as far as it arrived.
    pub body: Vec<u8>,
    /// The body has not been read to its end: it is still arriving, or it
    /// never will (`body_error` then says why).
    pub incomplete: bool,
    /// Why reading the body stopped before its end (e.g. the connection was
    /// reset mid-body, or it was over the recorder's limit).
    pub body_error: Option<String>,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The JSON-RPC `method` of the body, if the body is a JSON-RPC message.
    pub fn jsonrpc_method(&self) -> Option<String> {
        self.json()?.get("method")?.as_str().map(str::to_owned)
    }

    /// The body could not be read to its end, and never will be.
    pub fn cut_off(&self) -> bool {
        self.incomplete && self.body_error.is_some()
    }

    /// For a `tools/call` request, the tool name.
    pub fn tool_name(&self) -> Option<String> {
        let body = self.json()?;
        if body.get("method")?.as_str()? != "tools/call" {
            return None;
        }
        body.get("params")?.get("name")?.as_str().map(str::to_owned)
    }
}

#[derive(Default)]
struct RecorderState {
    tool_calls: Vec<(String, Value)>,
    /// Each with the number that identifies it while its body arrives.
    http_requests: Vec<(u64, RecordedRequest)>,
    next_request: u64,
}

#[derive(Default)]
struct RecorderInner {
    state: Mutex<RecorderState>,
    log_tool_calls: bool,
}

/// Shared log of what reached the demo server. Cheap to clone; clones share the log.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

impl Recorder {
    /// A recorder that also prints one line per tool call to stdout.
    pub fn logging_tool_calls() -> Self {
        Self {
            inner: Arc::new(RecorderInner {
                state: Mutex::default(),
                log_tool_calls: true,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, RecorderState> {
        // A panic while holding the lock cannot leave the Vecs half-updated.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every tool invocation that reached a tool, in order: (tool name, arguments).
    /// Arguments are the JSON object the client sent, or `null` when it sent none.
    pub fn tool_calls(&self) -> Vec<(String, Value)> {
        self.state().tool_calls.clone()
    }

    pub fn tool_call_count(&self, tool: &str) -> usize {
        self.state()
            .tool_calls
            .iter()
            .filter(|(name, _)| name == tool)
            .count()
    }

    /// Every HTTP request that reached the server, in arrival order: every
    /// request whose headers arrived, whether its body did or not (see
    /// [`RecordedRequest::incomplete`]). Empty means no request started.
    pub fn http_requests(&self) -> Vec<RecordedRequest> {
        self.state()
            .http_requests
            .iter()
            .map(|(_, request)| request.clone())
            .collect()
    }

    /// The requests that are, or may be, a `tools/call` of `tool`: those whose
    /// complete body names it, and those whose body did not arrive whole
    /// (what they would have named cannot be known). Empty means no such
    /// call started.
    pub fn calls_reaching(&self, tool: &str) -> Vec<RecordedRequest> {
        self.http_requests()
            .into_iter()
            .filter(|request| request.incomplete || request.tool_name().as_deref() == Some(tool))
            .collect()
    }

    /// The requests whose body was cut off before its end (reset mid-body).
    pub fn cut_off_requests(&self) -> Vec<RecordedRequest> {
        self.http_requests()
            .into_iter()
            .filter(RecordedRequest::cut_off)
            .collect()
    }

    /// The recorded requests whose body is a JSON-RPC message with this `method`.
    pub fn requests_with_method(&self, method: &str) -> Vec<RecordedRequest> {
        self.http_requests()
            .into_iter()
            .filter(|r| r.jsonrpc_method().as_deref() == Some(method))
            .collect()
    }

    /// How many recorded requests carry a JSON-RPC message with this `method`.
    pub fn method_count(&self, method: &str) -> usize {
        self.requests_with_method(method).len()
    }

    pub fn clear(&self) {
        let mut state = self.state();
        state.tool_calls.clear();
        state.http_requests.clear();
    }

    fn record_tool_call(&self, tool: &str, arguments: Value) {
        if self.inner.log_tool_calls {
            let keys: Vec<&str> = arguments
                .as_object()
                .map(|args| args.keys().map(String::as_str).collect())
                .unwrap_or_default();
            println!("tool call: {tool} args=[{}]", keys.join(", "));
        }
        self.state().tool_calls.push((tool.to_owned(), arguments));
    }

    /// Records a request whose headers have arrived; returns its number.
    fn start_http(&self, request: RecordedRequest) -> u64 {
        let mut state = self.state();
        let id = state.next_request;
        state.next_request += 1;
        state.http_requests.push((id, request));
        id
    }

    /// Updates request `id` (gone if the log was cleared meanwhile).
    fn update_http(&self, id: u64, update: impl FnOnce(&mut RecordedRequest)) {
        if let Some((_, request)) = self
            .state()
            .http_requests
            .iter_mut()
            .find(|(number, _)| *number == id)
        {
            update(request);
        }
    }
}

/// How the HTTP layer answers an intercepted `tools/call` (see [`ServeOptions`]).
#[derive(Clone, Debug)]
pub enum InterceptReply {
    /// HTTP 200, `content-type: application/json`, body
    /// `{"jsonrpc":"2.0","id":<request id>,"error":{"code":..,"message":..,"data":..}}` —
    /// the shape the policy filter answers a denied call with.
    JsonRpcError {
        code: i32,
        message: String,
        data: Option<Value>,
    },
    /// This HTTP status with a small JSON body that is not JSON-RPC.
    HttpStatus(u16),
}

/// Test hooks for [`serve_with_options`]. The defaults give the plain demo server.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// `tools/call` requests naming one of these tools are answered by the HTTP layer
    /// (after recording the HTTP request) and never reach rmcp, as if a proxy in front
    /// had answered them. They do not show up in [`Recorder::tool_calls`].
    pub intercept_tools: Vec<(String, InterceptReply)>,
    /// Stateless, answering each request with `application/json` instead of an
    /// event stream (rmcp's `json_response` mode; no `Mcp-Session-Id`).
    pub json_responses: bool,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
struct AsyncExecuteCodeArgs {
    /// The script to run (the demo server never runs it).
    script: String,
    /// Timeout in seconds.
    #[serde(default)]
    timeout: Option<i64>,
    /// Free-form execution options.
    #[serde(default)]
    options: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
struct CheckCodeExecStatusArgs {
    /// The id `asyncExecuteCode` returned.
    execution_uuid: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
struct DeleteWorkspaceArgs {
    /// Name of the workspace to delete.
    workspace: String,
}

/// The MCP handler; one instance per session (or per stateless 2026-07-28
/// request), sharing the recorder, the id counter and the [`surface::Shared`] state.
#[derive(Clone)]
struct DemoServer {
    tool_router: ToolRouter<Self>,
    recorder: Recorder,
    executions: Arc<AtomicU64>,
    shared: Arc<surface::Shared>,
}

fn json_result(value: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

#[tool_router]
impl DemoServer {
    fn new(recorder: Recorder, executions: Arc<AtomicU64>, shared: Arc<surface::Shared>) -> Self {
        let mut tool_router = Self::tool_router();
        tool_router.merge(surface::tool_router());
        Self {
            tool_router,
            recorder,
            executions,
            shared,
        }
    }

    #[tool(
        name = "asyncExecuteCode",
        description = "Queue a script for execution and return its execution id. \
                       (Demo server: the script is never executed.)",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn async_execute_code(
        &self,
        Parameters(args): Parameters<AsyncExecuteCodeArgs>,
    ) -> CallToolResult {
        let _ = (args.script, args.timeout, args.options);
        let n = self.executions.fetch_add(1, Ordering::Relaxed) + 1;
        let uuid = format!("00000000-0000-4000-8000-{n:012}");
        json_result(&json!({ "execution_uuid": uuid, "status": "pending" }))
    }

    #[tool(
        name = "checkCodeExecStatus",
        description = "Report the status and output of a queued execution.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    fn check_code_exec_status(
        &self,
        Parameters(args): Parameters<CheckCodeExecStatusArgs>,
    ) -> CallToolResult {
        json_result(&json!({
            "execution_uuid": args.execution_uuid,
            "status": "completed",
            "output": "(demo server: code is never executed)",
        }))
    }

    #[tool(
        name = "deleteWorkspace",
        description = "Delete a workspace and everything in it. (Destructive; the demo \
                       policy denies it.)",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn delete_workspace(
        &self,
        Parameters(args): Parameters<DeleteWorkspaceArgs>,
    ) -> CallToolResult {
        json_result(&json!({ "deleted": args.workspace }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_resources_list_changed()
            .enable_completions()
            .enable_tasks()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("mcp-policy-demo-server", "0.1.0"))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.clone().map_or(Value::Null, Value::Object);
        self.recorder.record_tool_call(&request.name, arguments);
        let call = ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        surface::list_resources(&context)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        surface::list_resource_templates(&context)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        surface::read_resource(&request, &context)
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        surface::subscribe(&self.shared, &request.uri, &context).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        surface::unsubscribe(&self.shared, &request.uri)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(surface::accepted_subscription_filter(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        surface::listen(context).await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        surface::list_prompts(&context)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        surface::get_prompt(&request)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        surface::complete(&request)
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        Ok(GetTaskResult::new(
            self.shared.tasks.detailed(&request.task_id)?,
        ))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // The demo's tasks never ask for input: an update for a known task is
        // acknowledged and ignored, as the extension allows.
        self.shared.tasks.detailed(&request.task_id).map(|_| ())
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.shared.tasks.cancel(&request.task_id)
    }
}

/// The rmcp server config: `Mcp-Session-Id` sessions, loopback hosts on any port.
pub fn server_config() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        // Sessions for every protocol revision that has them (< 2026-07-28).
        .with_legacy_session_mode(true)
        // Entries without a port match any port, so Envoy's `Host: 127.0.0.1:<its
        // listener port>` passes as well as direct connections.
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"])
}

/// Records the request as its headers arrive (method, path, headers), then its
/// body as it arrives; a body that cannot be read to its end (the connection
/// reset mid-body) stays recorded as far as it came, marked incomplete, and is
/// answered 400. A complete request is then either answered from
/// [`ServeOptions::intercept_tools`] or handed on unchanged.
async fn record_layer(
    State((recorder, options)): State<(Recorder, Arc<ServeOptions>)>,
    request: Request,
    next: Next,
) -> Response {
    use futures::StreamExt;

    let (parts, body) = request.into_parts();
    let mut recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
        incomplete: true,
        body_error: None,
    };
    let id = recorder.start_http(recorded.clone());
    let mut chunks = body.into_data_stream();
    let failure = loop {
        match chunks.next().await {
            None => break None,
            Some(Ok(chunk)) if recorded.body.len() + chunk.len() > MAX_RECORDED_BODY => {
                break Some((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body over {MAX_RECORDED_BODY} bytes"),
                ))
            }
            Some(Ok(chunk)) => {
                recorded.body.extend_from_slice(&chunk);
                recorder.update_http(id, |request| request.body.extend_from_slice(&chunk));
            }
            Some(Err(err)) => {
                break Some((StatusCode::BAD_REQUEST, format!("body cut off: {err}")))
            }
        }
    };
    if let Some((status, error)) = failure {
        recorder.update_http(id, |request| request.body_error = Some(error.clone()));
        return (status, format!("demo server: {error}")).into_response();
    }
    recorded.incomplete = false;
    recorder.update_http(id, |request| request.incomplete = false);
    if let Some(response) = intercept(&options, &recorded) {
        return response;
    }
    next.run(Request::from_parts(parts, Body::from(recorded.body)))
        .await
}

fn intercept(options: &ServeOptions, request: &RecordedRequest) -> Option<Response> {
    if options.intercept_tools.is_empty() {
        return None;
    }
    let tool = request.tool_name()?;
    let (_, reply) = options.intercept_tools.iter().find(|(t, _)| *t == tool)?;
    Some(match reply {
        InterceptReply::JsonRpcError {
            code,
            message,
            data,
        } => {
            let id = request
                .json()
                .and_then(|body| body.get("id").cloned())
                .unwrap_or(Value::Null);
            let mut error = json!({ "code": code, "message": message });
            if let (Some(data), Some(obj)) = (data, error.as_object_mut()) {
                obj.insert("data".to_owned(), data.clone());
            }
            let body = json!({ "jsonrpc": "2.0", "id": id, "error": error });
            json_response(StatusCode::OK, &body)
        }
        InterceptReply::HttpStatus(status) => status_response(*status),
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(body.to_string()),
    )
        .into_response()
}

fn status_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        code,
        &json!({ "error": format!("demo upstream answers every request with HTTP {status}") }),
    )
}

/// The full HTTP app: rmcp at [`MCP_PATH`], 404 elsewhere, all behind the recording
/// layer; the 2025-11-25 task methods are answered just in front of rmcp (`tasks.rs`).
pub fn app(recorder: Recorder, options: ServeOptions) -> Router {
    let executions = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(surface::Shared::default());
    let sessions = Arc::new(LocalSessionManager::default());
    let handler_recorder = recorder.clone();
    let handler_shared = shared.clone();
    let mcp = StreamableHttpService::new(
        move || {
            Ok(DemoServer::new(
                handler_recorder.clone(),
                executions.clone(),
                handler_shared.clone(),
            ))
        },
        sessions.clone(),
        if options.json_responses {
            server_config()
                .with_legacy_session_mode(false)
                .with_json_response(true)
        } else {
            server_config()
        },
    );
    let legacy_tasks = tasks::LegacyTasks {
        store: shared.tasks.clone(),
        recorder: recorder.clone(),
        sessions: (!options.json_responses).then_some(sessions),
        json_responses: options.json_responses,
    };
    Router::new()
        .nest_service(MCP_PATH, mcp)
        .fallback(|| async { (StatusCode::NOT_FOUND, "demo server: not found") })
        .layer(middleware::from_fn_with_state(
            legacy_tasks,
            tasks::legacy_tasks_layer,
        ))
        // Added after the routes and the fallback, so it wraps every request.
        .layer(middleware::from_fn_with_state(
            (recorder, Arc::new(options)),
            record_layer,
        ))
}

/// Serve the demo MCP server until the task is aborted or the runtime dropped.
pub async fn serve(listener: tokio::net::TcpListener, recorder: Recorder) -> std::io::Result<()> {
    serve_with_options(listener, recorder, ServeOptions::default()).await
}

/// [`serve`] with test hooks.
pub async fn serve_with_options(
    listener: tokio::net::TcpListener,
    recorder: Recorder,
    options: ServeOptions,
) -> std::io::Result<()> {
    axum::serve(listener, app(recorder, options)).await
}

/// A plain (non-MCP) upstream: answers every request, on any path, with HTTP `status`
/// and a small JSON body, after recording the request. Used as an upstream that fails.
pub async fn serve_status(
    listener: tokio::net::TcpListener,
    recorder: Recorder,
    status: u16,
) -> std::io::Result<()> {
    if StatusCode::from_u16(status).is_err() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not an HTTP status code: {status}"),
        ));
    }
    let app = Router::new()
        .fallback(move || async move { status_response(status) })
        .layer(middleware::from_fn_with_state(
            (recorder, Arc::new(ServeOptions::default())),
            record_layer,
        ));
    axum::serve(listener, app).await
}
