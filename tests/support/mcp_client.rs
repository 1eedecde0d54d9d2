//! A real MCP client for the e2e tests: rmcp's Streamable-HTTP client on reqwest,
//! sending extra headers (e.g. `x-agent-id`) on every request and remembering the
//! `Mcp-Session-Id` the server issued.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::{
        CallToolRequestParams, ClientCapabilities, ClientConfig, ClientJsonRpcMessage,
        Implementation, ProtocolVersion,
    },
    service::RunningService,
    transport::{
        streamable_http_client::{
            SseError, StreamableHttpClient, StreamableHttpClientTransportConfig,
            StreamableHttpError, StreamableHttpPostResponse,
        },
        StreamableHttpClientTransport,
    },
    RoleClient, ServiceError, ServiceExt,
};
use serde_json::Value;

/// The protocol revision the client asks for in `initialize`: the newest one that
/// still has `initialize` and `Mcp-Session-Id` sessions (2026-07-28 removed both).
pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::LATEST_WITH_INITIALIZE;

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

/// A connected MCP client session.
pub struct McpClient {
    service: RunningService<RoleClient, ClientConfig>,
    session: SessionSlot,
}

impl McpClient {
    /// Connect to the Streamable-HTTP endpoint `url` (e.g. `http://127.0.0.1:PORT/mcp`),
    /// sending `headers` on every request, and complete `initialize` + `initialized`.
    ///
    /// The transport does not silently re-initialize when the server reports the
    /// session gone (HTTP 404): the call fails instead, so tests see it.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Self, String> {
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
            http,
            session: session.clone(),
        };
        let transport = StreamableHttpClientTransport::with_client(tap, config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcp-policy-e2e-client", "0.1.0"),
        )
        .with_protocol_version(PROTOCOL_VERSION);
        let service = info
            .serve(transport)
            .await
            .map_err(|err| format!("MCP initialize with {url} failed: {err}"))?;
        Ok(Self { service, session })
    }

    /// The `Mcp-Session-Id` the server issued, if it issued one.
    pub fn session_id(&self) -> Option<String> {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The protocol version the server agreed to in `initialize`.
    pub fn protocol_version(&self) -> Option<String> {
        self.service
            .peer_info()
            .map(|info| info.protocol_version.to_string())
    }

    /// `tools/call`. `args` must be a JSON object or `null` (no arguments).
    /// `Ok` is the `CallToolResult` as JSON (a tool-level failure is `Ok` with
    /// `"isError": true`); `Err` is the JSON-RPC error answered instead.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, RpcError> {
        let mut params = CallToolRequestParams::new(tool.to_owned());
        match args {
            Value::Object(args) => params = params.with_arguments(args),
            Value::Null => {}
            other => {
                return Err(RpcError::local(format!(
                    "tool arguments must be a JSON object, got {other}"
                )))
            }
        }
        let result = self.service.call_tool(params).await?;
        serde_json::to_value(result).map_err(|err| RpcError::local(err.to_string()))
    }

    /// `tools/list` (all pages); the tool names in server order.
    pub async fn list_tools(&self) -> Result<Vec<String>, RpcError> {
        let tools = self.service.list_all_tools().await?;
        Ok(tools
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect())
    }

    /// End the session (the transport sends `DELETE` with the session id).
    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
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
