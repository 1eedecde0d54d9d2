//! A real MCP client for the e2e tests: rmcp's Streamable-HTTP client on reqwest,
//! sending extra headers (e.g. `x-agent-id`) on every request and remembering the
//! `Mcp-Session-Id` the server issued.
//!
//! It speaks either protocol revision ([`McpClient::connect_at`]):
//!
//! - **2025-11-25**: `initialize` + `notifications/initialized`, then every request
//!   carries `Mcp-Session-Id` and `MCP-Protocol-Version: 2025-11-25`.
//! - **2026-07-28**: `server/discover` first (rmcp's discover lifecycle), no
//!   session; every request carries `MCP-Protocol-Version: 2026-07-28`, the
//!   `Mcp-Method` header and, where the method names something, `Mcp-Name`
//!   (rmcp's transport adds both), and `params._meta` with the protocol
//!   version, client info and client capabilities (rmcp adds it).
//!
//! Methods rmcp's typed client lacks (the 2025-11-25 task methods, a
//! task-augmented `tools/call`) go through [`McpClient::request`], which posts the
//! JSON-RPC message itself with the same headers and `_meta` rmcp would send;
//! [`McpClient::post`] and [`McpClient::post_with_headers`] go one level lower and
//! return the raw HTTP answer.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use base64::Engine as _;
use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, CancelTaskParams, ClientCapabilities,
        ClientConfig, ClientJsonRpcMessage, ElicitRequestParams, ElicitResult,
        GetPromptRequestParams, GetTaskParams, Implementation, ProtocolVersion,
        ReadResourceRequestParams, ResourceUpdatedNotificationParam, ServerNotification,
        SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams, UpdateTaskParams,
    },
    service::{
        ClientCacheConfig, ClientLifecycleMode, ClientServiceExt, NotificationContext,
        RequestContext, RunningService, Subscription,
    },
    transport::{
        streamable_http_client::{
            SseError, StreamableHttpClient, StreamableHttpClientTransportConfig,
            StreamableHttpError, StreamableHttpPostResponse,
        },
        StreamableHttpClientTransport,
    },
    ClientHandler, ErrorData as McpError, RoleClient, ServiceError, ServiceExt,
};
use serde_json::{json, Value};

/// The protocol revision [`McpClient::connect`] asks for in `initialize`: the
/// newest one that still has `initialize` and `Mcp-Session-Id` sessions.
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::LATEST_WITH_INITIALIZE;
/// The stateless revision (no `initialize`, no sessions, `Mcp-Method`/`Mcp-Name`).
pub const PROTOCOL_2026: ProtocolVersion = ProtocolVersion::V_2026_07_28;
/// The 2026-07-28 tasks extension's capability key.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// A failed call. Either the JSON-RPC error object the peer (server, or a proxy in
/// between) answered, with `code`/`message`/`data` as sent, or — with
/// `code == RpcError::TRANSPORT` — a failure below JSON-RPC (HTTP error status,
/// connection refused, ...) described in `message`.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    /// `code` of errors that are not JSON-RPC errors (0 is not a JSON-RPC code).
    pub const TRANSPORT: i32 = 0;

    pub fn is_transport(&self) -> bool {
        self.code == Self::TRANSPORT
    }

    fn local(message: impl Into<String>) -> Self {
        Self {
            code: Self::TRANSPORT,
            message: message.into(),
            data: None,
        }
    }

    /// From a JSON-RPC `error` object as it travels.
    pub fn from_json(error: &Value) -> Self {
        Self {
            code: error["code"]
                .as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(Self::TRANSPORT),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
            data: error.get("data").cloned(),
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " (data: {data})")?;
        }
        Ok(())
    }
}

impl From<ServiceError> for RpcError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::McpError(err) => Self {
                code: err.code.0,
                message: err.message.into_owned(),
                data: err.data,
            },
            other => Self::local(other.to_string()),
        }
    }
}

type SessionSlot = Arc<Mutex<Option<String>>>;

/// reqwest client that notes the `Mcp-Session-Id` of every POST (rmcp's transport
/// does not expose it). It sees the id in the `initialize` response and in each
/// later request the transport sends with it.
#[derive(Clone)]
struct SessionTap {
    http: reqwest::Client,
    session: SessionSlot,
}

impl SessionTap {
    fn note(&self, id: Option<&str>) {
        if let Some(id) = id {
            *self.session.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.to_owned());
        }
    }
}

impl StreamableHttpClient for SessionTap {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.note(session_id.as_deref());
        let response = self
            .http
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await?;
        self.note(issued_session(&response));
        Ok(response)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.note(session_id.as_deref());
        let response = self
            .http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await?;
        self.note(issued_session(&response));
        Ok(response)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.http
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<
        BoxStream<'static, Result<sse_stream::Sse, SseError>>,
        StreamableHttpError<Self::Error>,
    > {
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}

fn issued_session(response: &StreamableHttpPostResponse) -> Option<&str> {
    match response {
        StreamableHttpPostResponse::Json(_, id) | StreamableHttpPostResponse::Sse(_, id) => {
            id.as_deref()
        }
        _ => None,
    }
}

/// What the client declares and which revision it speaks.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub version: ProtocolVersion,
    /// Declare form-mode elicitation; requests are answered with
    /// [`McpClient::set_elicitation_answer`]'s answer (default: accept, `{"confirm": true}`).
    pub elicitation_form: bool,
    /// Declare URL-mode elicitation (2025-11-25: in `initialize`'s capabilities;
    /// 2026-07-28: in every request's `_meta` client capabilities).
    pub elicitation_url: bool,
    /// Declare the 2026-07-28 tasks extension (`extensions` in the client
    /// capabilities), so task-capable tools may answer `CreateTaskResult`.
    pub tasks: bool,
}

impl ClientOptions {
    /// Nothing declared, at `version`.
    pub fn at(version: ProtocolVersion) -> Self {
        Self {
            version,
            elicitation_form: false,
            elicitation_url: false,
            tasks: false,
        }
    }

    pub fn with_elicitation_form(mut self) -> Self {
        self.elicitation_form = true;
        self
    }

    pub fn with_elicitation_url(mut self) -> Self {
        self.elicitation_url = true;
        self
    }

    pub fn with_tasks(mut self) -> Self {
        self.tasks = true;
        self
    }

    /// The capabilities object these options declare.
    pub fn capabilities(&self) -> ClientCapabilities {
        let mut capabilities = serde_json::Map::new();
        let mut elicitation = serde_json::Map::new();
        if self.elicitation_form {
            elicitation.insert("form".to_owned(), json!({}));
        }
        if self.elicitation_url {
            elicitation.insert("url".to_owned(), json!({}));
        }
        if !elicitation.is_empty() {
            capabilities.insert("elicitation".to_owned(), Value::Object(elicitation));
        }
        if self.tasks {
            capabilities.insert("extensions".to_owned(), json!({ TASKS_EXTENSION: {} }));
        }
        serde_json::from_value(Value::Object(capabilities)).unwrap_or_default()
    }
}

/// What the client's handler saw from the server.
#[derive(Default)]
struct Seen {
    resource_updates: Vec<String>,
    elicitations: Vec<Value>,
    elicitation_answer: Option<Value>,
}

/// The client's side of server-to-client traffic: answers elicitation requests,
/// notes `notifications/resources/updated`.
#[derive(Clone)]
struct Handler {
    info: ClientConfig,
    seen: Arc<Mutex<Seen>>,
}

impl Handler {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let answer = {
            let mut seen = self.seen();
            seen.elicitations
                .push(serde_json::to_value(&request).unwrap_or_default());
            seen.elicitation_answer
                .clone()
                .unwrap_or_else(|| json!({ "action": "accept", "content": { "confirm": true } }))
        };
        serde_json::from_value(answer)
            .map_err(|err| McpError::internal_error(format!("elicitation answer: {err}"), None))
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.seen().resource_updates.push(params.uri);
    }
}

/// How a `tools/call` was answered.
#[derive(Debug, Clone)]
pub enum CallOutcome {
    /// A `CallToolResult` (a tool-level failure is `"isError": true`).
    Complete(Value),
    /// A 2026-07-28 `InputRequiredResult`, as JSON, with its `requestState`.
    InputRequired {
        request_state: Option<String>,
        result: Value,
    },
    /// A `CreateTaskResult` (2026-07-28 shape: `resultType: "task"`, the task's
    /// fields flattened), with the task id.
    Task { task_id: String, result: Value },
}

impl CallOutcome {
    /// The answer as JSON, whichever kind it is.
    pub fn json(&self) -> &Value {
        match self {
            CallOutcome::Complete(result)
            | CallOutcome::InputRequired { result, .. }
            | CallOutcome::Task { result, .. } => result,
        }
    }
}

/// One HTTP answer, unparsed and parsed.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Lowercase names, one entry per value.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The JSON-RPC messages in the body: the body itself when it is JSON, every
    /// `data:` event when it is an event stream.
    pub messages: Vec<Value>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The response (result or error) to request `id`.
    pub fn answer_to(&self, id: &Value) -> Option<&Value> {
        self.messages.iter().find(|m| {
            m.get("id") == Some(id) && (m.get("result").is_some() || m.get("error").is_some())
        })
    }
}

/// The `Mcp-Name` a request carries at 2026-07-28, as rmcp 3.9 computes it:
/// `params.name` for `tools/call` and `prompts/get`; `params.uri` for
/// `resources/read`, `resources/subscribe`, `resources/unsubscribe`;
/// `params.taskId` for `tasks/get`, `tasks/update`, `tasks/cancel`; none otherwise.
pub fn mcp_name(method: &str, params: &Value) -> Option<String> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    params.get(key)?.as_str().map(str::to_owned)
}

/// An HTTP header value the way rmcp sends `Mcp-Name`: as is when it is plain
/// printable ASCII, else `=?base64?<standard base64>?=`.
pub fn header_value(value: &str) -> String {
    let needs_wrapping = value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.chars().any(|c| !(' '..='~').contains(&c))
        || (value.starts_with("=?base64?") && value.ends_with("?="));
    if needs_wrapping {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    } else {
        value.to_owned()
    }
}

/// A live 2026-07-28 `subscriptions/listen` stream.
pub struct Listening {
    subscription: Subscription,
}

impl Listening {
    /// The resource URIs the server acknowledged.
    pub fn acknowledged_uris(&self) -> Vec<String> {
        self.subscription
            .acknowledged()
            .resource_subscriptions
            .clone()
            .unwrap_or_default()
    }

    /// The next `notifications/resources/updated` URI on the stream.
    pub async fn next_update(&mut self) -> Result<Option<String>, RpcError> {
        loop {
            match self.subscription.next().await? {
                None => return Ok(None),
                Some(ServerNotification::ResourceUpdatedNotification(update)) => {
                    return Ok(Some(update.params.uri))
                }
                Some(_) => {}
            }
        }
    }

    pub async fn cancel(mut self) -> Result<(), RpcError> {
        Ok(self.subscription.cancel().await?)
    }
}

/// A connected MCP client: a session at 2025-11-25, a stateless peer at 2026-07-28.
pub struct McpClient {
    service: RunningService<RoleClient, Handler>,
    session: SessionSlot,
    url: String,
    headers: Vec<(String, String)>,
    http: reqwest::Client,
    options: ClientOptions,
    info: ClientConfig,
    raw_ids: AtomicU64,
}

impl McpClient {
    /// Connect to the Streamable-HTTP endpoint `url` (e.g. `http://127.0.0.1:PORT/mcp`),
    /// sending `headers` on every request, and complete `initialize` + `initialized`
    /// at [`PROTOCOL_VERSION`] (2025-11-25).
    ///
    /// The transport does not silently re-initialize when the server reports the
    /// session gone (HTTP 404): the call fails instead, so tests see it.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, String> {
        Self::connect_at(url, headers, PROTOCOL_VERSION).await
    }

    /// [`Self::connect`] at `version`: 2025-11-25 (or older) `initialize`s a
    /// session; 2026-07-28 sends `server/discover` and no session follows.
    pub async fn connect_at(
        url: &str,
        headers: &[(&str, &str)],
        version: ProtocolVersion,
    ) -> Result<Self, String> {
        Self::connect_with(url, headers, ClientOptions::at(version)).await
    }

    /// [`Self::connect_at`] declaring what `options` says.
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
        options: ClientOptions,
    ) -> Result<Self, String> {
        let mut custom_headers = HashMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|err| format!("header name {name:?}: {err}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|err| format!("header value {value:?}: {err}"))?;
            custom_headers.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(url)
            .custom_headers(custom_headers)
            .reinit_on_expired_session(false);
        let http = reqwest::Client::builder()
            // Same as rmcp's default client: idle pooled connections cause ~40 ms
            // delayed-ACK stalls when a response body was not fully read.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|err| format!("building the HTTP client: {err}"))?;
        let session = SessionSlot::default();
        let tap = SessionTap {
            http: http.clone(),
            session: session.clone(),
        };
        let transport = StreamableHttpClientTransport::with_client(tap, config);
        let info = ClientConfig::new(
            options.capabilities(),
            Implementation::new("mcp-policy-e2e-client", "0.1.0"),
        )
        .with_protocol_version(options.version.clone());
        let handler = Handler {
            info: info.clone(),
            seen: Arc::default(),
        };
        let service = if options.version.has_initialize() {
            handler
                .serve(transport)
                .await
                .map_err(|err| format!("MCP initialize with {url} failed: {err}"))?
        } else {
            let lifecycle = ClientLifecycleMode::Discover {
                preferred_versions: vec![options.version.clone()],
            };
            handler
                .serve_with_lifecycle(transport, lifecycle)
                .await
                .map_err(|err| format!("MCP server/discover with {url} failed: {err}"))?
        };
        // Tests must see every answer the server (or a proxy) gives: no
        // response cache, and no stale answer served in place of an error.
        service
            .peer()
            .set_response_cache_config(ClientCacheConfig::disabled())
            .await;
        Ok(Self {
            service,
            session,
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            http,
            options,
            info,
            raw_ids: AtomicU64::new(0),
        })
    }

    /// The revision this client speaks.
    pub fn version(&self) -> &ProtocolVersion {
        &self.options.version
    }

    fn is_2026(&self) -> bool {
        !self.options.version.has_initialize()
    }

    /// The `Mcp-Session-Id` the server issued, if it issued one.
    pub fn session_id(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The protocol version agreed: in `initialize` (2025-11-25) or chosen
    /// from the server's `server/discover` answer (2026-07-28).
    pub fn protocol_version(&self) -> Option<String> {
        self.service
            .peer_info()
            .map(|info| info.protocol_version.to_string())
    }

    /// `tools/call`. `args` must be a JSON object or `null` (no arguments).
    /// `Ok` is the answer as JSON: a `CallToolResult` (a tool-level failure is
    /// `Ok` with `"isError": true`), or an `InputRequiredResult` /
    /// `CreateTaskResult` when the server answers one; `Err` is the JSON-RPC
    /// error answered instead.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, RpcError> {
        Ok(self.call_once(tool, args).await?.json().clone())
    }

    /// `tools/call`, telling apart the three kinds of answer.
    pub async fn call_once(&self, tool: &str, args: Value) -> Result<CallOutcome, RpcError> {
        self.send_call(tool_params(tool, args)?).await
    }

    /// The retry of a call answered with `InputRequiredResult`: the same tool and
    /// arguments, plus `requestState` and `inputResponses` (a JSON object keyed
    /// like the `inputRequests` it answers; `null` for none).
    pub async fn retry(
        &self,
        tool: &str,
        args: Value,
        request_state: Option<&str>,
        input_responses: Value,
    ) -> Result<CallOutcome, RpcError> {
        let mut params = tool_params(tool, args)?;
        params.request_state = request_state.map(str::to_owned);
        params.input_responses = match input_responses {
            Value::Null => None,
            Value::Object(map) => Some(map.into_iter().collect::<BTreeMap<_, _>>()),
            other => {
                return Err(RpcError::local(format!(
                    "inputResponses must be a JSON object, got {other}"
                )))
            }
        };
        self.send_call(params).await
    }

    async fn send_call(&self, params: CallToolRequestParams) -> Result<CallOutcome, RpcError> {
        let response = self.service.call_tool_once(params).await?;
        Ok(match response {
            CallToolResponse::Complete(result) => CallOutcome::Complete(to_json(&result)?),
            CallToolResponse::InputRequired(result) => CallOutcome::InputRequired {
                request_state: result.request_state.clone(),
                result: to_json(&result)?,
            },
            CallToolResponse::Task(result) => CallOutcome::Task {
                task_id: result.task.task_id.clone(),
                result: to_json(&result)?,
            },
            other => return Err(RpcError::local(format!("unknown answer: {other:?}"))),
        })
    }

    /// `tools/call` asking for a task. 2025-11-25: `params.task: {"ttl": ttl_ms}`
    /// (sent with [`Self::request`]; rmcp has no such parameter); the answer is
    /// `{"task": {...}}`. 2026-07-28: a plain call from a client that declared the
    /// tasks extension ([`ClientOptions::with_tasks`]); the answer is a
    /// `CreateTaskResult`. `Ok` is (task id, the answer as JSON).
    pub async fn call_as_task(
        &self,
        tool: &str,
        args: Value,
        ttl_ms: u64,
    ) -> Result<(String, Value), RpcError> {
        if self.is_2026() {
            return match self.call_once(tool, args).await? {
                CallOutcome::Task { task_id, result } => Ok((task_id, result)),
                other => Err(RpcError::local(format!(
                    "expected a CreateTaskResult, got {}",
                    other.json()
                ))),
            };
        }
        let result = self
            .request(
                "tools/call",
                json!({ "name": tool, "arguments": args, "task": { "ttl": ttl_ms } }),
            )
            .await?;
        let task_id = result["task"]["taskId"]
            .as_str()
            .ok_or_else(|| RpcError::local(format!("no task in {result}")))?
            .to_owned();
        Ok((task_id, result))
    }

    /// `tasks/get`: the task as JSON (2025-11-25 `Task`; 2026-07-28 `GetTaskResult`,
    /// with the result inlined once completed).
    pub async fn get_task(&self, task_id: &str) -> Result<Value, RpcError> {
        if self.is_2026() {
            let result = self.service.get_task(GetTaskParams::new(task_id)).await?;
            return to_json(&result);
        }
        self.request("tasks/get", json!({ "taskId": task_id }))
            .await
    }

    /// `tasks/cancel`: 2025-11-25 answers the task (now `cancelled`); 2026-07-28
    /// answers an empty acknowledgement (`null` here).
    pub async fn cancel_task(&self, task_id: &str) -> Result<Value, RpcError> {
        if self.is_2026() {
            self.service
                .cancel_task(CancelTaskParams::new(task_id))
                .await?;
            return Ok(Value::Null);
        }
        self.request("tasks/cancel", json!({ "taskId": task_id }))
            .await
    }

    /// `tasks/update` (2026-07-28): answer a task's `inputRequests`.
    pub async fn update_task(&self, task_id: &str, input_responses: Value) -> Result<(), RpcError> {
        let responses = match input_responses {
            Value::Object(map) => map.into_iter().collect::<BTreeMap<_, _>>(),
            other => {
                return Err(RpcError::local(format!(
                    "inputResponses must be a JSON object, got {other}"
                )))
            }
        };
        self.service
            .update_task(UpdateTaskParams::new(task_id, responses))
            .await?;
        Ok(())
    }

    /// `tasks/list` (2025-11-25; not a 2026-07-28 method).
    pub async fn list_tasks(&self) -> Result<Value, RpcError> {
        self.request("tasks/list", json!({})).await
    }

    /// `tasks/result` (2025-11-25; not a 2026-07-28 method): waits for the task.
    pub async fn task_result(&self, task_id: &str) -> Result<Value, RpcError> {
        self.request("tasks/result", json!({ "taskId": task_id }))
            .await
    }

    /// `tools/list` (all pages); the tool names in server order.
    pub async fn list_tools(&self) -> Result<Vec<String>, RpcError> {
        let tools = self.service.list_all_tools().await?;
        Ok(tools
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect())
    }

    /// `tools/list` (first page) as JSON: `tools` with their `annotations`, and
    /// at 2026-07-28 `ttlMs` / `cacheScope`.
    pub async fn list_tools_json(&self) -> Result<Value, RpcError> {
        to_json(&self.service.list_tools(None).await?)
    }

    /// `resources/list` (first page) as JSON.
    pub async fn list_resources(&self) -> Result<Value, RpcError> {
        to_json(&self.service.list_resources(None).await?)
    }

    /// The URIs `resources/list` names.
    pub async fn resource_uris(&self) -> Result<Vec<String>, RpcError> {
        let listing = self.list_resources().await?;
        Ok(strings_at(&listing["resources"], "uri"))
    }

    /// `resources/templates/list` (first page) as JSON.
    pub async fn list_resource_templates(&self) -> Result<Value, RpcError> {
        to_json(&self.service.list_resource_templates(None).await?)
    }

    /// `resources/read` as JSON (`contents`, ...).
    pub async fn read_resource(&self, uri: &str) -> Result<Value, RpcError> {
        let result = self
            .service
            .read_resource_once(ReadResourceRequestParams::new(uri))
            .await?;
        match result {
            rmcp::model::ReadResourceResponse::Complete(result) => to_json(&result),
            rmcp::model::ReadResourceResponse::InputRequired(result) => to_json(&result),
            other => Err(RpcError::local(format!("unknown answer: {other:?}"))),
        }
    }

    /// `resources/subscribe` (2025-11-25; 2026-07-28 uses [`Self::listen`]).
    #[allow(deprecated)]
    pub async fn subscribe(&self, uri: &str) -> Result<(), RpcError> {
        Ok(self
            .service
            .subscribe(SubscribeRequestParams::new(uri))
            .await?)
    }

    /// `resources/unsubscribe` (2025-11-25).
    #[allow(deprecated)]
    pub async fn unsubscribe(&self, uri: &str) -> Result<(), RpcError> {
        Ok(self
            .service
            .unsubscribe(UnsubscribeRequestParams::new(uri))
            .await?)
    }

    /// `subscriptions/listen` (2026-07-28) for these resource URIs; returns once
    /// the server acknowledged. The stream stays open until cancelled or dropped.
    pub async fn listen(&self, uris: &[&str]) -> Result<Listening, RpcError> {
        let filter = SubscriptionFilter::builder()
            .resource_subscriptions(uris.iter().copied())
            .build();
        let subscription = self.service.listen(filter).await?;
        Ok(Listening { subscription })
    }

    /// `notifications/resources/updated` URIs this client's handler received
    /// (2025-11-25 subscriptions; 2026-07-28 ones arrive on the [`Listening`]).
    pub fn resource_updates(&self) -> Vec<String> {
        self.service.service().seen().resource_updates.clone()
    }

    /// The `elicitation/create` requests the server sent this client (as JSON).
    pub fn elicitations(&self) -> Vec<Value> {
        self.service.service().seen().elicitations.clone()
    }

    /// What the client answers the next elicitation requests with (an
    /// `ElicitResult` as JSON, e.g. `{"action": "decline"}`).
    pub fn set_elicitation_answer(&self, answer: Value) {
        self.service.service().seen().elicitation_answer = Some(answer);
    }

    /// `prompts/list` (first page) as JSON.
    pub async fn list_prompts(&self) -> Result<Value, RpcError> {
        to_json(&self.service.list_prompts(None).await?)
    }

    /// The prompt names `prompts/list` gives.
    pub async fn prompt_names(&self) -> Result<Vec<String>, RpcError> {
        let listing = self.list_prompts().await?;
        Ok(strings_at(&listing["prompts"], "name"))
    }

    /// `prompts/get`; `args` is a JSON object of strings or `null`.
    pub async fn get_prompt(&self, name: &str, args: Value) -> Result<Value, RpcError> {
        let mut params = GetPromptRequestParams::new(name);
        match args {
            Value::Object(map) => params = params.with_arguments(map),
            Value::Null => {}
            other => {
                return Err(RpcError::local(format!(
                    "prompt arguments must be a JSON object, got {other}"
                )))
            }
        }
        to_json(&self.service.get_prompt(params).await?)
    }

    /// `completion/complete` for argument `argument` of prompt `prompt`.
    pub async fn complete_prompt(
        &self,
        prompt: &str,
        argument: &str,
        value: &str,
    ) -> Result<Vec<String>, RpcError> {
        Ok(self
            .service
            .complete_prompt_simple(prompt, argument, value)
            .await?)
    }

    /// `completion/complete` for argument `argument` of resource template `template`.
    pub async fn complete_resource(
        &self,
        template: &str,
        argument: &str,
        value: &str,
    ) -> Result<Vec<String>, RpcError> {
        Ok(self
            .service
            .complete_resource_simple(template, argument, value)
            .await?)
    }

    /// A JSON-RPC request this client would send for `method` with `params`:
    /// id `"raw-<n>"`, and at 2026-07-28 `params._meta` with the protocol
    /// version, client info and client capabilities (as rmcp adds them).
    pub fn envelope(&self, method: &str, params: Value) -> Value {
        let n = self.raw_ids.fetch_add(1, Ordering::Relaxed) + 1;
        let mut params = match params {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".to_owned(), other);
                map
            }
        };
        if self.is_2026() {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut meta = meta;
            meta.insert(
                "io.modelcontextprotocol/protocolVersion".to_owned(),
                json!(self.options.version.as_str()),
            );
            meta.insert(
                "io.modelcontextprotocol/clientInfo".to_owned(),
                to_json(&self.info.client_info).unwrap_or_default(),
            );
            meta.insert(
                "io.modelcontextprotocol/clientCapabilities".to_owned(),
                to_json(&self.info.capabilities).unwrap_or_default(),
            );
            params.insert("_meta".to_owned(), Value::Object(meta));
        }
        json!({ "jsonrpc": "2.0", "id": format!("raw-{n}"), "method": method, "params": params })
    }

    /// The headers this client would send with `body`: the connect headers,
    /// `MCP-Protocol-Version`, the session id if any, and at 2026-07-28
    /// `Mcp-Method` and (where the method names something) `Mcp-Name`.
    pub fn headers_for(&self, body: &Value) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        headers.push((
            "mcp-protocol-version".to_owned(),
            self.options.version.to_string(),
        ));
        if let Some(session) = self.session_id() {
            headers.push(("mcp-session-id".to_owned(), session));
        }
        if self.is_2026() {
            if let Some(method) = body["method"].as_str() {
                headers.push(("mcp-method".to_owned(), method.to_owned()));
                if let Some(name) = mcp_name(method, &body["params"]) {
                    headers.push(("mcp-name".to_owned(), header_value(&name)));
                }
            }
        }
        headers
    }

    /// POST `body` with [`Self::headers_for`]`(body)`.
    pub async fn post(&self, body: &Value) -> Result<RawResponse, RpcError> {
        let headers = self.headers_for(body);
        self.post_with_headers(body, &headers).await
    }

    /// POST `body` with exactly these headers (plus `content-type` and `accept`).
    pub async fn post_with_headers(
        &self,
        body: &Value,
        headers: &[(String, String)],
    ) -> Result<RawResponse, RpcError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|err| RpcError::local(format!("POST {}: {err}", self.url)))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .text()
            .await
            .map_err(|err| RpcError::local(format!("reading the answer: {err}")))?;
        let messages = parse_messages(&body);
        Ok(RawResponse {
            status,
            headers,
            body,
            messages,
        })
    }

    /// Send any JSON-RPC request (see [`Self::envelope`] and [`Self::headers_for`])
    /// and return its `result`, or its `error` as [`RpcError`]. An HTTP answer
    /// with no JSON-RPC response to the request is a transport error naming the
    /// status and body.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let body = self.envelope(method, params);
        let response = self.post(&body).await?;
        match response.answer_to(&body["id"]) {
            Some(answer) => match answer.get("error") {
                Some(error) => Err(RpcError::from_json(error)),
                None => Ok(answer["result"].clone()),
            },
            None => Err(RpcError::local(format!(
                "HTTP {} without an answer to {}: {}",
                response.status, body["id"], response.body
            ))),
        }
    }

    /// End the session (the transport sends `DELETE` with the session id).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}

fn tool_params(tool: &str, args: Value) -> Result<CallToolRequestParams, RpcError> {
    let params = CallToolRequestParams::new(tool.to_owned());
    match args {
        Value::Object(args) => Ok(params.with_arguments(args)),
        Value::Null => Ok(params),
        other => Err(RpcError::local(format!(
            "tool arguments must be a JSON object, got {other}"
        ))),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|err| RpcError::local(err.to_string()))
}

fn strings_at(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[key].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON-RPC messages of an answer body: the body when it is JSON, else the
/// `data:` of each server-sent event that parses as JSON.
pub fn parse_messages(body: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        return match value {
            Value::Array(items) => items,
            other => vec![other],
        };
    }
    let mut messages = Vec::new();
    let mut data = String::new();
    for line in body.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Ok(value) = serde_json::from_str::<Value>(&data) {
                messages.push(value);
            }
            data.clear();
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    messages
}

/// The text of the first text content block of a `CallToolResult` JSON, parsed as JSON
/// (the demo server answers with JSON text).
pub fn result_json(result: &Value) -> Option<Value> {
    let text = result
        .get("content")?
        .as_array()?
        .iter()
        .find_map(|block| block.get("text")?.as_str())?;
    serde_json::from_str(text).ok()
}
