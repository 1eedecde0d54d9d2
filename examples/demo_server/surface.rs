//! The demo server's MCP surface beyond the three code-execution tools:
//! resources (a `file:` tree with a secret outside `/srv/public`), resource
//! templates, subscriptions, prompts, completions, and three more tools: a
//! task-capable one ([`REPORT_TOOL`]), a multi-round-trip one
//! ([`CONFIRM_TOOL`]) and a meta-tool that runs another tool by name
//! ([`META_TOOL`]).
//!
//! The server protects nothing, on purpose: `resources/read` serves every URI it
//! has, and its path handling is naive (percent-decoding, `\` as a separator,
//! dot segments resolved), so `file:///srv/public/../.env` and
//! `file:///srv/public/%2e%2e/.env` reach the secret. What keeps callers out is
//! the policy filter in front of it; the tests prove that these forms do reach
//! the secret here, so the filter's tests mean something.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::Duration,
};

use rmcp::{
    handler::server::{
        router::tool::{ToolRoute, ToolRouter},
        tool::ToolCallContext,
    },
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientResult,
        CompleteRequestParams, CompleteResult, ContentBlock, CreateTaskResult,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequiredResult,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ProtocolVersion,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
        ResourceUpdatedNotificationParam, ServerNotification, ServerRequest, SubscriptionFilter,
        Tool,
    },
    service::{PeerRequestOptions, RequestContext, SubscriptionContext},
    ErrorData as McpError, RoleServer,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{
    tasks::{self, TaskStore},
    DemoServer,
};

/// The task-capable tool: `{"topic": string, "delay_ms"?: integer}`.
pub const REPORT_TOOL: &str = "generateReport";
/// The tool that answers `InputRequiredResult` at 2026-07-28: `{"environment": string}`.
pub const CONFIRM_TOOL: &str = "confirmDeploy";
/// The meta-tool: `{"name": string, "arguments"?: object}` runs tool `name`.
pub const META_TOOL: &str = "call_tool";

/// `README` under the allowed prefix.
pub const PUBLIC_README_URI: &str = "file:///srv/public/readme.md";
/// A source file under the allowed prefix.
pub const PUBLIC_MAIN_URI: &str = "file:///srv/public/src/main.py";
/// The secret, outside `/srv/public`.
pub const SECRET_URI: &str = "file:///srv/.env";
/// The secret's whole text; tests look for it in answers.
pub const SECRET_TEXT: &str = "SECRET=demo-secret-4f1c9a\n";
/// The one resource template.
pub const PUBLIC_TEMPLATE: &str = "file:///srv/public/{path}";
/// Spellings of [`SECRET_URI`] that climb out of `/srv/public` or disguise the
/// path; [`naive_path`] resolves every one to `/srv/.env`, so on the bare server
/// `resources/read` answers each with the secret.
pub const TRAVERSAL_FORMS: &[&str] = &[
    "file:///srv/public/../.env",
    "file:///srv/public/%2e%2e/.env",
    "file:///srv/public/%2E%2E/.env",
    "file:///srv/public/..%2f.env",
    "file:///srv/public/..%2F.env",
    "file:///srv/public/%2e%2e%2f.env",
    "file:///srv/public/..\\.env",
    "file:///srv/public/..%5c.env",
    "file:///srv/public/./../.env",
    "file:///srv/public/src/../../.env",
    "file:///srv/public/../../../srv/.env",
    "file:///srv//.env",
    "file:///srv/%2eenv",
    "FILE:///srv/.env",
    "file://localhost/srv/.env",
    "file://LOCALHOST/srv/public/../.env",
    // A server that does not split off the query or fragment climbs with them.
    "file:///srv/public/x?/../../.env",
    "file:///srv/public/x#/../../.env",
    "file:///srv/public/x?/..%2F..%2F.env",
];
/// The prompt policies hide.
pub const SECRET_PROMPT: &str = "secret_prompt";

/// The files the server has: (path, MIME type, text).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/srv/public/readme.md",
        "text/markdown",
        "# Demo project\n\nEverything under /srv/public may be read.\n",
    ),
    (
        "/srv/public/src/main.py",
        "text/x-python",
        "print('hello from the demo server')\n",
    ),
    ("/srv/.env", "text/plain", SECRET_TEXT),
];

/// How long `confirmDeploy` waits for a 2025-11-25 client to answer its elicitation.
const ELICITATION_TIMEOUT: Duration = Duration::from_secs(10);

/// `summarize`'s `style` values and `secret_prompt`'s `topic` values, for completion.
const STYLES: &[&str] = &["brief", "bullet-points", "detailed"];
const SECRET_TOPICS: &[&str] = &["credentials", "deploy-keys", "incident-notes"];

/// State every handler instance shares (sessions and stateless requests alike).
#[derive(Default)]
pub struct Shared {
    pub tasks: Arc<TaskStore>,
    /// Outstanding `confirmDeploy` rounds by `requestState`.
    pending: Mutex<HashMap<String, String>>,
    next_state: AtomicU64,
    /// URIs subscribed with `resources/subscribe` (2025-11-25), in order.
    subscriptions: Mutex<Vec<String>>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscriptions(&self) -> MutexGuard<'_, Vec<String>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// URIs currently subscribed with `resources/subscribe`.
    pub fn subscribed(&self) -> Vec<String> {
        self.subscriptions().clone()
    }
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, McpError> {
    serde_json::from_value(value)
        .map_err(|err| McpError::internal_error(format!("demo server: {err}"), None))
}

/// A complete result from its JSON, with `resultType: "complete"` (rmcp drops it
/// again for peers older than 2026-07-28, which do not know the field).
fn complete_result<T: DeserializeOwned>(mut result: Value) -> Result<T, McpError> {
    if let Some(obj) = result.as_object_mut() {
        obj.insert("resultType".to_owned(), json!("complete"));
    }
    typed(result)
}

fn is_2026(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// A listing result; at 2026-07-28 marked cacheable by anyone (`cacheScope:
/// "public"`, `ttlMs: 0`), so a filter that narrows it must say `private`.
fn listing<T: DeserializeOwned>(
    mut result: Value,
    context: &RequestContext<RoleServer>,
) -> Result<T, McpError> {
    if let (true, Some(obj)) = (is_2026(context), result.as_object_mut()) {
        obj.insert("ttlMs".to_owned(), json!(0));
        obj.insert("cacheScope".to_owned(), json!("public"));
    }
    complete_result(result)
}

/// The path a `file:` URI names, resolved the naive way a careless file server
/// does: scheme case-insensitive, empty or `localhost` host, every `%XX`
/// decoded (`%2f` too), `\` taken as `/`, empty and `.` segments dropped, `..`
/// popping a segment (never above the root). `None` if it is not a `file:` URI.
pub fn naive_path(uri: &str) -> Option<String> {
    let scheme = uri.get(..5)?;
    if !scheme.eq_ignore_ascii_case("file:") {
        return None;
    }
    let rest = uri.get(5..)?.strip_prefix("//")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
        return None;
    }
    let decoded = percent_decode(path).replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn file(uri: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    let path = naive_path(uri)?;
    FILES.iter().find(|(p, _, _)| *p == path)
}

fn resource_not_found(uri: &str) -> McpError {
    McpError::resource_not_found(
        format!("resource not found: {uri}"),
        Some(json!({ "uri": uri })),
    )
}

pub fn list_resources(
    context: &RequestContext<RoleServer>,
) -> Result<ListResourcesResult, McpError> {
    let resources: Vec<Value> = FILES
        .iter()
        .map(|(path, mime, text)| {
            let name = path.rsplit('/').next().unwrap_or(path);
            json!({
                "uri": format!("file://{path}"),
                "name": name,
                "mimeType": mime,
                "size": text.len(),
            })
        })
        .collect();
    listing(json!({ "resources": resources }), context)
}

pub fn list_resource_templates(
    context: &RequestContext<RoleServer>,
) -> Result<ListResourceTemplatesResult, McpError> {
    listing(
        json!({ "resourceTemplates": [{
            "uriTemplate": PUBLIC_TEMPLATE,
            "name": "public-file",
            "title": "A file under /srv/public",
            "mimeType": "text/plain",
        }] }),
        context,
    )
}

/// `resources/read`: any URI that resolves (naively) to a file, the secret included.
pub fn read_resource(
    request: &ReadResourceRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<ReadResourceResponse, McpError> {
    let uri = request.uri.as_str();
    let (_, mime, text) = file(uri).ok_or_else(|| resource_not_found(uri))?;
    let mut result = json!({ "contents": [{ "uri": uri, "mimeType": mime, "text": text }] });
    if let (true, Some(obj)) = (is_2026(context), result.as_object_mut()) {
        obj.insert("ttlMs".to_owned(), json!(0));
        obj.insert("cacheScope".to_owned(), json!("public"));
    }
    Ok(ReadResourceResponse::Complete(complete_result::<
        ReadResourceResult,
    >(result)?))
}

/// `resources/subscribe` (2025-11-25): any URI that resolves to a file. The
/// server then reports it updated once, at once (`notifications/resources/updated`
/// on the request's stream), so clients see the notification path work.
pub async fn subscribe(
    shared: &Shared,
    uri: &str,
    context: &RequestContext<RoleServer>,
) -> Result<(), McpError> {
    file(uri).ok_or_else(|| resource_not_found(uri))?;
    shared.subscriptions().push(uri.to_owned());
    context
        .peer
        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
        .await
        .map_err(|err| McpError::internal_error(format!("notify: {err}"), None))
}

/// `resources/unsubscribe` (2025-11-25).
pub fn unsubscribe(shared: &Shared, uri: &str) -> Result<(), McpError> {
    let mut subscriptions = shared.subscriptions();
    match subscriptions.iter().position(|u| u == uri) {
        Some(index) => {
            subscriptions.remove(index);
            Ok(())
        }
        None => Err(McpError::invalid_params(
            format!("not subscribed: {uri}"),
            None,
        )),
    }
}

/// `subscriptions/listen` (2026-07-28): accepts the list-changed categories and
/// every requested URI that resolves to a file.
pub fn accepted_subscription_filter(requested: &SubscriptionFilter) -> SubscriptionFilter {
    let mut accepted = requested.clone();
    accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
        uris.iter()
            .filter(|uri| file(uri).is_some())
            .cloned()
            .collect()
    });
    accepted
}

/// Runs one `subscriptions/listen` stream: reports each accepted URI updated
/// once, then waits for the client to cancel.
pub async fn listen(subscription: SubscriptionContext) -> Result<(), McpError> {
    let uris = subscription
        .accepted()
        .resource_subscriptions
        .clone()
        .unwrap_or_default();
    for uri in uris {
        let notification = ServerNotification::ResourceUpdatedNotification(
            rmcp::model::ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(
                uri,
            )),
        );
        subscription
            .sink()
            .send(notification)
            .await
            .map_err(|err| McpError::internal_error(format!("listen: {err}"), None))?;
    }
    subscription.cancelled().await;
    Ok(())
}

pub fn list_prompts(context: &RequestContext<RoleServer>) -> Result<ListPromptsResult, McpError> {
    listing(
        json!({ "prompts": [
            {
                "name": "summarize",
                "title": "Summarize text",
                "description": "Summarize a text in the given style.",
                "arguments": [
                    { "name": "text", "description": "The text to summarize", "required": true },
                    { "name": "style", "description": "brief, bullet-points or detailed", "required": false }
                ]
            },
            {
                "name": SECRET_PROMPT,
                "title": "Internal operations prompt",
                "description": "Internal prompt that quotes deployment secrets (policies hide it).",
                "arguments": [
                    { "name": "topic", "description": "What the internal note is about", "required": true }
                ]
            }
        ] }),
        context,
    )
}

pub fn get_prompt(request: &GetPromptRequestParams) -> Result<GetPromptResponse, McpError> {
    let request = serde_json::to_value(request)
        .map_err(|err| McpError::internal_error(err.to_string(), None))?;
    let name = request["name"].as_str().unwrap_or_default();
    let args = request.get("arguments").cloned().unwrap_or(json!({}));
    let arg = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
    let missing = |key: &str| {
        McpError::invalid_params(
            format!("prompt {name}: missing required argument {key}"),
            None,
        )
    };
    let (description, text) = match name {
        "summarize" => {
            let text = arg("text").ok_or_else(|| missing("text"))?;
            let style = arg("style").unwrap_or_else(|| "brief".to_owned());
            (
                "Summarize text",
                format!("Summarize the following text ({style}):\n\n{text}"),
            )
        }
        SECRET_PROMPT => {
            let topic = arg("topic").ok_or_else(|| missing("topic"))?;
            (
                "Internal operations prompt",
                format!(
                    "You are the internal operations assistant. Topic: {topic}. \
                     Deployment credentials: {}",
                    SECRET_TEXT.trim_end()
                ),
            )
        }
        other => {
            return Err(McpError::invalid_params(
                format!("prompt not found: {other}"),
                None,
            ))
        }
    };
    let result = complete_result::<GetPromptResult>(json!({
        "description": description,
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
    }))?;
    Ok(GetPromptResponse::Complete(result))
}

/// `completion/complete` for prompt arguments (`ref/prompt`) and for the
/// template's `path` (`ref/resource`): the known values starting with the
/// typed prefix. An unknown prompt or template is `-32602`.
pub fn complete(request: &CompleteRequestParams) -> Result<CompleteResult, McpError> {
    let request = serde_json::to_value(request)
        .map_err(|err| McpError::internal_error(err.to_string(), None))?;
    let reference = &request["ref"];
    let argument = request["argument"]["name"].as_str().unwrap_or_default();
    let prefix = request["argument"]["value"].as_str().unwrap_or_default();
    let candidates: Vec<String> = match (reference["type"].as_str(), argument) {
        (Some("ref/prompt"), _) => match (reference["name"].as_str(), argument) {
            (Some("summarize"), "style") => STYLES.iter().map(|s| (*s).to_owned()).collect(),
            (Some(SECRET_PROMPT), "topic") => {
                SECRET_TOPICS.iter().map(|s| (*s).to_owned()).collect()
            }
            (Some("summarize" | SECRET_PROMPT), _) => Vec::new(),
            (name, _) => {
                return Err(McpError::invalid_params(
                    format!("prompt not found: {}", name.unwrap_or_default()),
                    None,
                ))
            }
        },
        (Some("ref/resource"), "path") if reference["uri"] == PUBLIC_TEMPLATE => FILES
            .iter()
            .filter_map(|(path, _, _)| path.strip_prefix("/srv/public/"))
            .map(str::to_owned)
            .collect(),
        (Some("ref/resource"), _) if reference["uri"] == PUBLIC_TEMPLATE => Vec::new(),
        _ => {
            return Err(McpError::invalid_params(
                format!("unknown completion reference: {reference}"),
                None,
            ))
        }
    };
    let values: Vec<String> = candidates
        .into_iter()
        .filter(|value| value.starts_with(prefix))
        .collect();
    complete_result(json!({
        "completion": { "values": values, "total": values.len(), "hasMore": false }
    }))
}

/// `generateReport`'s arguments: (topic, delay in ms; default 50, at most 60 000).
pub fn report_args(arguments: &Value) -> Result<(String, u64), McpError> {
    let topic = arguments
        .get("topic")
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::invalid_params("generateReport: topic must be a string", None))?;
    let delay = arguments
        .get("delay_ms")
        .and_then(Value::as_u64)
        .unwrap_or(50)
        .min(60_000);
    Ok((topic.to_owned(), delay))
}

/// A tool definition from its JSON. The definitions below are literals; one
/// that does not parse is left out (and the demo tests, which list every tool,
/// fail).
fn tool(definition: Value) -> Option<Tool> {
    serde_json::from_value(definition)
        .inspect_err(|err| eprintln!("demo server: bad tool definition: {err}"))
        .ok()
}

fn add_route(
    router: &mut ToolRouter<DemoServer>,
    definition: Value,
    call: impl for<'a> Fn(
            ToolCallContext<'a, DemoServer>,
        ) -> futures::future::BoxFuture<'a, Result<CallToolResponse, McpError>>
        + Send
        + Sync
        + 'static,
) {
    if let Some(tool) = tool(definition) {
        router.add_route(ToolRoute::new_dyn(tool, call));
    }
}

fn arguments_of(context: &ToolCallContext<'_, DemoServer>) -> Value {
    context.arguments.clone().map_or(Value::Null, Value::Object)
}

/// The three tools this module adds, as routes for the server's tool router.
pub fn tool_router() -> ToolRouter<DemoServer> {
    let mut router = ToolRouter::new();
    add_route(
        &mut router,
        json!({
            "name": REPORT_TOOL,
            "description": "Write a report on a topic after delay_ms milliseconds. Runs as a \
                            task when the client asks for one (2025-11-25: params.task; \
                            2026-07-28: the tasks extension in its capabilities).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "topic": { "type": "string" },
                    "delay_ms": { "type": "integer", "minimum": 0, "maximum": 60000 }
                },
                "required": ["topic"]
            },
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        }),
        |context| Box::pin(generate_report(context)),
    );
    add_route(
        &mut router,
        json!({
            "name": CONFIRM_TOOL,
            "description": "Deploy to an environment after the user confirms. 2026-07-28: \
                            answers InputRequiredResult (an elicitation and a requestState), \
                            completes on the retry; 2025-11-25: asks with elicitation/create.",
            "inputSchema": {
                "type": "object",
                "properties": { "environment": { "type": "string" } },
                "required": ["environment"]
            },
            "annotations": {
                "readOnlyHint": false, "destructiveHint": true,
                "idempotentHint": false, "openWorldHint": true
            }
        }),
        |context| Box::pin(confirm_deploy(context)),
    );
    add_route(
        &mut router,
        json!({
            "name": META_TOOL,
            "description": "Run another tool of this server: {\"name\": tool, \"arguments\": {...}}.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "name": { "type": "string" },
                    "arguments": { "type": "object" }
                },
                "required": ["name"]
            },
            "annotations": { "readOnlyHint": false, "destructiveHint": true, "openWorldHint": false }
        }),
        |context| Box::pin(call_tool(context)),
    );
    router
}

fn text_result(value: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value.to_string())])
}

async fn generate_report(
    context: ToolCallContext<'_, DemoServer>,
) -> Result<CallToolResponse, McpError> {
    let (topic, delay_ms) = match report_args(&arguments_of(&context)) {
        Ok(args) => args,
        Err(err) => return Ok(CallToolResult::error(vec![ContentBlock::text(err.message)]).into()),
    };
    let wants_task = is_2026(&context.request_context)
        && context
            .request_context
            .client_capabilities()
            .is_some_and(|caps| caps.supports_tasks());
    if wants_task {
        let task = context.service.shared.tasks.spawn(
            REPORT_TOOL,
            Some(tasks::DEFAULT_TASK_TTL_MS),
            tasks::report_work(topic, delay_ms),
        );
        return Ok(CallToolResponse::Task(CreateTaskResult::new(task)));
    }
    let result = tasks::report_work(topic, delay_ms).await?;
    Ok(CallToolResponse::Complete(
        complete_result::<CallToolResult>(result)?,
    ))
}

fn confirm_request() -> Value {
    json!({
        "type": "object",
        "properties": { "confirm": { "type": "boolean", "title": "Deploy now?" } },
        "required": ["confirm"]
    })
}

fn deploy_outcome(environment: &str, answer: Option<&Value>) -> CallToolResult {
    let accepted = answer.is_some_and(|answer| {
        answer["action"] == "accept" && answer["content"]["confirm"] == Value::Bool(true)
    });
    if accepted {
        text_result(&json!({ "deployed": environment }))
    } else {
        text_result(&json!({ "deployed": null, "declined": environment }))
    }
}

async fn confirm_deploy(
    context: ToolCallContext<'_, DemoServer>,
) -> Result<CallToolResponse, McpError> {
    let arguments = arguments_of(&context);
    let Some(environment) = arguments["environment"].as_str().map(str::to_owned) else {
        return Ok(CallToolResult::error(vec![ContentBlock::text(
            "confirmDeploy: environment must be a string",
        )])
        .into());
    };
    let shared = &context.service.shared;
    let message = format!("Deploy to {environment}?");
    if !is_2026(&context.request_context) {
        // 2025-11-25: ask on the request's stream with elicitation/create.
        let can_ask = context
            .request_context
            .client_capabilities()
            .and_then(|caps| caps.elicitation)
            .is_some();
        if !can_ask {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "confirmDeploy needs a client that declares the elicitation capability",
            )])
            .into());
        }
        let request = typed::<ServerRequest>(json!({
            "method": "elicitation/create",
            "params": { "mode": "form", "message": message, "requestedSchema": confirm_request() }
        }))?;
        // A client that never answers (e.g. a raw POST that got the request on
        // its stream) must not hold the tool call open for ever.
        let answer = context
            .request_context
            .peer
            .send_request_with_option(
                request,
                PeerRequestOptions::with_timeout(ELICITATION_TIMEOUT),
            )
            .await
            .map_err(|err| McpError::internal_error(format!("elicitation: {err}"), None))?
            .await_response()
            .await
            .map_err(|err| McpError::internal_error(format!("elicitation: {err}"), None))?;
        let answer = match answer {
            ClientResult::ElicitResult(answer) => serde_json::to_value(answer)
                .map_err(|err| McpError::internal_error(err.to_string(), None))?,
            other => {
                return Err(McpError::internal_error(
                    format!("elicitation answered with {other:?}"),
                    None,
                ))
            }
        };
        return Ok(deploy_outcome(&environment, Some(&answer)).into());
    }
    let ask = |state: String| -> Result<CallToolResponse, McpError> {
        let requests = typed(json!({
            "confirm": {
                "method": "elicitation/create",
                "params": { "mode": "form", "message": message, "requestedSchema": confirm_request() }
            }
        }))?;
        Ok(InputRequiredResult::new(Some(requests), Some(state)).into())
    };
    let Some(state) = context.request_state.clone() else {
        let n = shared.next_state.fetch_add(1, Ordering::Relaxed) + 1;
        let state = format!("confirmDeploy-{n}");
        shared.pending().insert(state.clone(), environment);
        return ask(state);
    };
    if !shared.pending().contains_key(&state) {
        return Err(McpError::invalid_params(
            format!("unknown requestState: {state}"),
            Some(json!({ "requestState": state })),
        ));
    }
    let answer = context
        .input_responses
        .as_ref()
        .and_then(|responses| responses.get("confirm"));
    match answer {
        // The retry came without the answer: ask again, same state.
        None => ask(state),
        // Deliberately naive: the state stays valid, so a retry can be replayed.
        Some(answer) => Ok(deploy_outcome(&environment, Some(answer)).into()),
    }
}

/// The meta-tool: runs the tool its arguments name, as if called directly
/// (the inner call is recorded as a tool call too). Nested meta-calls work.
async fn call_tool(context: ToolCallContext<'_, DemoServer>) -> Result<CallToolResponse, McpError> {
    let arguments = arguments_of(&context);
    let Some(name) = arguments["name"].as_str().map(str::to_owned) else {
        return Ok(CallToolResult::error(vec![ContentBlock::text(
            "call_tool: name must be a string",
        )])
        .into());
    };
    let inner_arguments = match arguments.get("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(_) => {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "call_tool: arguments must be an object",
            )])
            .into())
        }
    };
    let server = context.service;
    server.recorder.record_tool_call(
        &name,
        inner_arguments.clone().map_or(Value::Null, Value::Object),
    );
    let mut inner = CallToolRequestParams::new(name);
    if let Some(arguments) = inner_arguments {
        inner = inner.with_arguments(arguments);
    }
    inner.request_state = context.request_state.clone();
    inner.input_responses = context.input_responses.clone();
    let call = ToolCallContext::new(server, inner, context.request_context);
    server.tool_router.call(call).await
}
