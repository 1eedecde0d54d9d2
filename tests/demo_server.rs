//! The demo MCP server and the test-side MCP client, talking directly (no Envoy).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{future::Future, time::Duration};

use rmcp::model::ProtocolVersion;
use serde_json::{json, Value};
use support::{
    demo_server::{
        self, InterceptReply, RecordedRequest, Recorder, ServeOptions, CONFIRM_TOOL, META_TOOL,
        PUBLIC_MAIN_URI, PUBLIC_README_URI, PUBLIC_TEMPLATE, REPORT_TOOL, SECRET_PROMPT,
        SECRET_TEXT, SECRET_URI, TRAVERSAL_FORMS,
    },
    mcp_client::{result_json, CallOutcome, ClientOptions, McpClient, RpcError},
};
use tokio::{net::TcpListener, task::JoinHandle};

const AGENT: (&str, &str) = ("x-agent-id", "alice");

/// Every tool of the demo server, sorted.
const ALL_TOOLS: [&str; 6] = [
    "asyncExecuteCode",
    "call_tool",
    "checkCodeExecStatus",
    "confirmDeploy",
    "deleteWorkspace",
    "generateReport",
];

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

struct Server {
    addr: std::net::SocketAddr,
    recorder: Recorder,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(options: ServeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::default();
        let task = tokio::spawn(demo_server::serve_with_options(
            listener,
            recorder.clone(),
            options,
        ));
        Self {
            addr,
            recorder,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The recorded `tools/call` POSTs for `tool`.
    fn tool_call_requests(&self, tool: &str) -> Vec<RecordedRequest> {
        self.recorder
            .http_requests()
            .into_iter()
            .filter(|r| r.tool_name().as_deref() == Some(tool))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(server: &Server) -> McpClient {
    within("connect", McpClient::connect(&server.url(), &[AGENT]))
        .await
        .unwrap()
}

fn deny_error_data() -> Value {
    json!({ "tool": "deleteWorkspace", "rule": "deny", "agent": "alice" })
}

fn denying(tool: &str) -> ServeOptions {
    ServeOptions {
        intercept_tools: vec![(
            tool.to_owned(),
            InterceptReply::JsonRpcError {
                code: -31001,
                message: "tool call denied by policy".to_owned(),
                data: Some(deny_error_data()),
            },
        )],
        ..ServeOptions::default()
    }
}

#[tokio::test]
async fn client_calls_every_demo_tool_and_the_recorder_sees_it() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect(&server).await;

    let session = client
        .session_id()
        .expect("server issued an Mcp-Session-Id");
    assert!(!session.is_empty());
    assert_eq!(client.protocol_version().as_deref(), Some("2025-11-25"));

    let mut tools = within("list", client.list_tools()).await.unwrap();
    tools.sort();
    assert_eq!(tools, ALL_TOOLS);

    let exec_args =
        json!({ "script": "print('hi')", "timeout": 30, "options": { "lang": "python" } });
    let started = within(
        "asyncExecuteCode",
        client.call("asyncExecuteCode", exec_args.clone()),
    )
    .await
    .unwrap();
    assert_eq!(started["isError"], json!(false), "{started}");
    let started = result_json(&started).unwrap();
    assert_eq!(
        started,
        json!({ "execution_uuid": "00000000-0000-4000-8000-000000000001", "status": "pending" })
    );
    let uuid = started["execution_uuid"].as_str().unwrap();

    let status = within(
        "checkCodeExecStatus",
        client.call("checkCodeExecStatus", json!({ "execution_uuid": uuid })),
    )
    .await
    .unwrap();
    assert_eq!(
        result_json(&status).unwrap(),
        json!({
            "execution_uuid": uuid,
            "status": "completed",
            "output": "(demo server: code is never executed)",
        })
    );

    let deleted = within(
        "deleteWorkspace",
        client.call("deleteWorkspace", json!({ "workspace": "ws-1" })),
    )
    .await
    .unwrap();
    assert_eq!(result_json(&deleted).unwrap(), json!({ "deleted": "ws-1" }));

    // A second execution gets the next id.
    let again = within(
        "asyncExecuteCode",
        client.call("asyncExecuteCode", json!({ "script": "1" })),
    )
    .await
    .unwrap();
    assert_eq!(
        result_json(&again).unwrap()["execution_uuid"],
        json!("00000000-0000-4000-8000-000000000002")
    );

    // Tool invocations, by name and with the arguments as sent.
    let calls = server.recorder.tool_calls();
    let names: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "asyncExecuteCode",
            "checkCodeExecStatus",
            "deleteWorkspace",
            "asyncExecuteCode"
        ]
    );
    assert_eq!(calls[0].1, exec_args);
    assert_eq!(calls[1].1, json!({ "execution_uuid": uuid }));
    assert_eq!(calls[2].1, json!({ "workspace": "ws-1" }));
    assert_eq!(server.recorder.tool_call_count("asyncExecuteCode"), 2);
    assert_eq!(server.recorder.tool_call_count("deleteWorkspace"), 1);
    assert_eq!(server.recorder.tool_call_count("nope"), 0);

    // HTTP requests, as they arrived.
    let requests = server.recorder.http_requests();
    for request in &requests {
        assert_eq!(request.path, "/mcp", "{request:?}");
        assert_eq!(request.header("x-agent-id"), Some("alice"), "{request:?}");
        assert_eq!(request.header("X-Agent-Id"), Some("alice"));
        assert!(request.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
    }
    let initialize = requests
        .iter()
        .find(|r| r.jsonrpc_method().as_deref() == Some("initialize"))
        .expect("initialize recorded");
    assert_eq!(initialize.method, "POST");
    assert_eq!(initialize.header("mcp-session-id"), None);
    assert_eq!(
        initialize.json().unwrap()["params"]["protocolVersion"],
        json!("2025-11-25")
    );
    assert!(requests.iter().any(|r| r.jsonrpc_method().as_deref()
        == Some("notifications/initialized")
        && r.header("mcp-session-id") == Some(session.as_str())));

    let tool_posts: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.jsonrpc_method().as_deref() == Some("tools/call"))
        .collect();
    assert_eq!(tool_posts.len(), 4);
    for post in &tool_posts {
        assert_eq!(post.method, "POST");
        assert_eq!(post.header("mcp-session-id"), Some(session.as_str()));
        assert_eq!(post.header("mcp-protocol-version"), Some("2025-11-25"));
        assert!(post
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
    }
    // The full body, byte for byte as sent.
    let body = tool_posts[2].json().unwrap();
    assert_eq!(body["jsonrpc"], json!("2.0"));
    assert_eq!(body["params"]["name"], json!("deleteWorkspace"));
    assert_eq!(body["params"]["arguments"], json!({ "workspace": "ws-1" }));
    assert!(body["id"].is_number(), "{body}");

    within("close", client.close()).await;
    // Closing deletes the session.
    within("DELETE", async {
        loop {
            let deleted = server.recorder.http_requests().iter().any(|r| {
                r.method == "DELETE" && r.header("mcp-session-id") == Some(session.as_str())
            });
            if deleted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    server.recorder.clear();
    assert!(server.recorder.http_requests().is_empty());
    assert!(server.recorder.tool_calls().is_empty());
}

#[tokio::test]
async fn each_client_gets_its_own_session() {
    let server = Server::start(ServeOptions::default()).await;
    let alice = connect(&server).await;
    let bob = within(
        "connect bob",
        McpClient::connect(&server.url(), &[("x-agent-id", "bob"), ("x-team", "red")]),
    )
    .await
    .unwrap();
    let (a, b) = (alice.session_id().unwrap(), bob.session_id().unwrap());
    assert_ne!(a, b);

    within(
        "bob call",
        bob.call("checkCodeExecStatus", json!({ "execution_uuid": "x" })),
    )
    .await
    .unwrap();
    let post = &server.tool_call_requests("checkCodeExecStatus")[0];
    assert_eq!(post.header("x-agent-id"), Some("bob"));
    assert_eq!(post.header("x-team"), Some("red"));
    assert_eq!(post.header("mcp-session-id"), Some(b.as_str()));

    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn jsonrpc_error_answered_in_front_of_the_server_reaches_the_caller_intact() {
    let server = Server::start(denying("deleteWorkspace")).await;
    let client = connect(&server).await;

    for attempt in 0..2 {
        let err: RpcError = within(
            "denied call",
            client.call("deleteWorkspace", json!({ "workspace": "prod" })),
        )
        .await
        .expect_err("the call is answered with a JSON-RPC error");
        assert_eq!(err.code, -31001, "attempt {attempt}: {err}");
        assert_eq!(err.message, "tool call denied by policy");
        assert_eq!(err.data, Some(deny_error_data()));
        assert!(!err.is_transport());
    }

    // The tool never ran; the HTTP requests did arrive.
    assert_eq!(server.recorder.tool_call_count("deleteWorkspace"), 0);
    let posts = server.tool_call_requests("deleteWorkspace");
    assert_eq!(posts.len(), 2);
    assert_ne!(
        posts[0].json().unwrap()["id"],
        posts[1].json().unwrap()["id"]
    );

    // The session is still usable afterwards.
    let ok = within(
        "call after denial",
        client.call("asyncExecuteCode", json!({ "script": "x" })),
    )
    .await
    .unwrap();
    assert_eq!(result_json(&ok).unwrap()["status"], json!("pending"));
    let tools = within("list after denial", client.list_tools())
        .await
        .unwrap();
    assert_eq!(tools.len(), ALL_TOOLS.len());
    assert_eq!(server.recorder.tool_call_count("asyncExecuteCode"), 1);

    client.close().await;
}

#[tokio::test]
async fn jsonrpc_error_from_the_server_itself_is_surfaced() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect(&server).await;

    let err = within("unknown tool", client.call("noSuchTool", json!({})))
        .await
        .expect_err("unknown tool is a JSON-RPC error");
    assert_eq!(err.code, -32602, "{err}");
    assert_eq!(err.message, "tool not found");
    assert!(!err.is_transport());
    // The recorder logs every tools/call that reached the handler, known tool or not.
    assert_eq!(server.recorder.tool_call_count("noSuchTool"), 1);

    // Missing required argument: a tool-level error (isError), not a JSON-RPC error.
    let bad = within("bad args", client.call("deleteWorkspace", json!({})))
        .await
        .unwrap();
    assert_eq!(bad["isError"], json!(true), "{bad}");

    let ok = within(
        "ok",
        client.call("checkCodeExecStatus", json!({ "execution_uuid": "u" })),
    )
    .await
    .unwrap();
    assert_eq!(ok["isError"], json!(false));
    client.close().await;
}

#[tokio::test]
async fn http_error_status_in_front_of_the_server_is_a_transport_error() {
    let server = Server::start(ServeOptions {
        intercept_tools: vec![(
            "deleteWorkspace".to_owned(),
            InterceptReply::HttpStatus(503),
        )],
        ..ServeOptions::default()
    })
    .await;
    let client = connect(&server).await;

    let err = within(
        "503 call",
        client.call("deleteWorkspace", json!({ "workspace": "w" })),
    )
    .await
    .expect_err("HTTP 503 fails the call");
    assert!(err.is_transport(), "{err}");
    assert!(err.message.contains("503"), "{err}");

    // The session survives a failed POST.
    let ok = within(
        "call after 503",
        client.call("asyncExecuteCode", json!({ "script": "x" })),
    )
    .await
    .unwrap();
    assert_eq!(result_json(&ok).unwrap()["status"], json!("pending"));
    client.close().await;
}

#[tokio::test]
async fn host_header_check_accepts_loopback_names_on_any_port() {
    let server = Server::start(ServeOptions::default()).await;
    let http = reqwest::Client::new();
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "raw", "version": "1" }
        }
    });
    for (host, allowed) in [
        ("127.0.0.1:10000", true),
        ("localhost:10000", true),
        ("localhost", true),
        ("evil.example:10000", false),
    ] {
        let response = within(
            "raw initialize",
            http.post(server.url())
                .header("host", host)
                .header("accept", "application/json, text/event-stream")
                .json(&initialize)
                .send(),
        )
        .await
        .unwrap();
        if allowed {
            assert_eq!(response.status(), 200, "Host: {host}");
            assert!(
                response.headers().contains_key("mcp-session-id"),
                "Host: {host}"
            );
        } else {
            assert_eq!(response.status(), 403, "Host: {host}");
        }
    }
    let hosts: Vec<String> = server
        .recorder
        .http_requests()
        .iter()
        .filter_map(|r| r.header("host").map(str::to_owned))
        .collect();
    assert_eq!(
        hosts,
        [
            "127.0.0.1:10000",
            "localhost:10000",
            "localhost",
            "evil.example:10000"
        ]
    );
}

#[tokio::test]
async fn requests_outside_mcp_are_recorded_too() {
    let server = Server::start(ServeOptions::default()).await;
    let response = within(
        "GET /other",
        reqwest::Client::new()
            .get(format!("http://{}/other?x=1", server.addr))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 404);
    let requests = server.recorder.http_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/other");
}

#[tokio::test]
async fn status_upstream_answers_every_post_with_its_status_and_records_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder::default();
    let task = tokio::spawn(demo_server::serve_status(listener, recorder.clone(), 503));

    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/list" });
    let response = within(
        "POST",
        reqwest::Client::new()
            .post(format!("http://{addr}/mcp"))
            .header("x-agent-id", "alice")
            .json(&body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let answer: Value = response.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("503"));

    let requests = recorder.http_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("x-agent-id"), Some("alice"));
    assert_eq!(requests[0].json(), Some(body));
    assert_eq!(recorder.tool_calls().len(), 0);

    // An MCP client cannot get past initialize.
    let err = within(
        "connect to 503",
        McpClient::connect(&format!("http://{addr}/mcp"), &[AGENT]),
    )
    .await
    .err()
    .expect("initialize fails");
    assert!(err.contains("503"), "{err}");

    task.abort();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = demo_server::serve_status(listener, Recorder::default(), 42).await;
    assert_eq!(bad.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}

// ---------------------------------------------------------------------------
// The whole MCP surface, at both protocol revisions.
// ---------------------------------------------------------------------------

const V2025: ProtocolVersion = ProtocolVersion::V_2025_11_25;
const V2026: ProtocolVersion = ProtocolVersion::V_2026_07_28;

/// Two tests from one `async fn(ProtocolVersion)`: `<name>::at_2025_11_25` and
/// `<name>::at_2026_07_28`.
macro_rules! at_both_revisions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn at_2025_11_25() {
                super::$name(super::V2025).await
            }
            #[tokio::test]
            async fn at_2026_07_28() {
                super::$name(super::V2026).await
            }
        }
    )*};
}

at_both_revisions!(
    tools_are_listed_with_their_annotations,
    resources_are_listed_templated_and_read,
    naive_traversal_forms_reach_the_secret_on_the_bare_server,
    prompts_are_listed_and_got,
    completions_cover_prompt_arguments_and_the_template,
    meta_tool_runs_the_tool_it_names,
    report_tool_without_a_task_answers_directly,
    both_revisions_are_served_by_a_json_upstream,
);

fn is_2026(version: &ProtocolVersion) -> bool {
    *version == V2026
}

async fn connect_at(server: &Server, options: ClientOptions) -> McpClient {
    within(
        "connect",
        McpClient::connect_with(&server.url(), &[AGENT], options),
    )
    .await
    .unwrap()
}

/// The one recorded request for `method` (panics unless exactly one).
fn only(server: &Server, method: &str) -> RecordedRequest {
    let requests = server.recorder.requests_with_method(method);
    assert_eq!(requests.len(), 1, "{method}: {requests:?}");
    requests.into_iter().next().unwrap()
}

/// What every request of a revision carries: 2025-11-25 the session and the
/// version header, no `Mcp-Method`, no `_meta` version; 2026-07-28 the version
/// header, `Mcp-Method` equal to the body's method, `_meta` with version, client
/// info and capabilities, and no session.
fn assert_revision_headers(request: &RecordedRequest, version: &ProtocolVersion) {
    let body = request.json().unwrap();
    let method = body["method"].as_str().unwrap();
    assert_eq!(
        request.header("mcp-protocol-version"),
        Some(version.as_str()),
        "{request:?}"
    );
    let meta = &body["params"]["_meta"];
    if is_2026(version) {
        assert_eq!(request.header("mcp-method"), Some(method), "{request:?}");
        assert_eq!(request.header("mcp-session-id"), None);
        assert_eq!(
            meta["io.modelcontextprotocol/protocolVersion"],
            "2026-07-28"
        );
        assert!(meta["io.modelcontextprotocol/clientCapabilities"].is_object());
        assert_eq!(
            meta["io.modelcontextprotocol/clientInfo"]["name"],
            "mcp-policy-e2e-client"
        );
    } else {
        assert_eq!(request.header("mcp-method"), None, "{request:?}");
        assert_eq!(request.header("mcp-name"), None, "{request:?}");
        assert!(request.header("mcp-session-id").is_some(), "{request:?}");
        assert!(
            meta.get("io.modelcontextprotocol/protocolVersion")
                .is_none(),
            "{body}"
        );
    }
}

fn text_of(result: &Value) -> String {
    result["contents"][0]["text"].as_str().unwrap().to_owned()
}

async fn tools_are_listed_with_their_annotations(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;
    assert_eq!(client.protocol_version().as_deref(), Some(version.as_str()));
    assert_eq!(client.session_id().is_some(), !is_2026(&version));

    let listing = within("tools/list", client.list_tools_json())
        .await
        .unwrap();
    let annotations = |name: &str| {
        listing["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {listing}"))["annotations"]
            .clone()
    };
    assert_eq!(annotations("checkCodeExecStatus")["readOnlyHint"], true);
    assert_eq!(annotations("deleteWorkspace")["destructiveHint"], true);
    assert_eq!(annotations("deleteWorkspace")["readOnlyHint"], false);
    assert_eq!(annotations("asyncExecuteCode")["destructiveHint"], false);
    assert_eq!(annotations(REPORT_TOOL)["readOnlyHint"], true);
    assert_eq!(annotations(CONFIRM_TOOL)["destructiveHint"], true);
    assert_eq!(annotations(META_TOOL)["destructiveHint"], true);
    // Cache hints exist only at 2026-07-28; the server marks listings public.
    if is_2026(&version) {
        assert_eq!(listing["cacheScope"], "public", "{listing}");
        assert_eq!(listing["ttlMs"], 0);
        assert_eq!(listing["resultType"], "complete");
    } else {
        for key in ["cacheScope", "ttlMs", "resultType"] {
            assert!(listing.get(key).is_none(), "{key} in {listing}");
        }
    }
    assert_revision_headers(&only(&server, "tools/list"), &version);
    client.close().await;
}

async fn resources_are_listed_templated_and_read(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;

    let listing = within("resources/list", client.list_resources())
        .await
        .unwrap();
    let uris: Vec<&str> = listing["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, [PUBLIC_README_URI, PUBLIC_MAIN_URI, SECRET_URI]);
    assert_eq!(listing["resources"][2]["name"], ".env");
    // 2026-07-28 results say resultType and carry cache hints; 2025-11-25 ones neither.
    assert_eq!(listing.get("cacheScope").is_some(), is_2026(&version));
    assert_eq!(listing.get("resultType").is_some(), is_2026(&version));

    let templates = within("templates", client.list_resource_templates())
        .await
        .unwrap();
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        PUBLIC_TEMPLATE
    );
    assert_eq!(templates.get("cacheScope").is_some(), is_2026(&version));

    let readme = within("read readme", client.read_resource(PUBLIC_README_URI))
        .await
        .unwrap();
    assert_eq!(readme["contents"][0]["uri"], PUBLIC_README_URI);
    assert_eq!(readme["contents"][0]["mimeType"], "text/markdown");
    assert!(text_of(&readme).starts_with("# Demo project"));
    if is_2026(&version) {
        assert_eq!(
            (
                &readme["resultType"],
                &readme["cacheScope"],
                &readme["ttlMs"]
            ),
            (&json!("complete"), &json!("public"), &json!(0))
        );
    } else {
        for key in ["resultType", "cacheScope", "ttlMs"] {
            assert!(readme.get(key).is_none(), "{key} in {readme}");
        }
    }
    let main = within("read main.py", client.read_resource(PUBLIC_MAIN_URI))
        .await
        .unwrap();
    assert!(text_of(&main).contains("print("));
    // The server serves its secret to anyone who asks: the gate must stop it.
    let secret = within("read secret", client.read_resource(SECRET_URI))
        .await
        .unwrap();
    assert_eq!(text_of(&secret), SECRET_TEXT);

    // An unknown resource: -32002 at 2025-11-25, -32602 at 2026-07-28 (rmcp
    // rewrites the code for the newer revision, as that revision says).
    let missing = "file:///srv/public/nope.txt";
    let err = within("read missing", client.read_resource(missing))
        .await
        .unwrap_err();
    assert_eq!(err.code, if is_2026(&version) { -32602 } else { -32002 });
    assert_eq!(err.data, Some(json!({ "uri": missing })));

    let reads = server.recorder.requests_with_method("resources/read");
    assert_eq!(reads.len(), 4);
    for (read, uri) in reads
        .iter()
        .zip([PUBLIC_README_URI, PUBLIC_MAIN_URI, SECRET_URI, missing])
    {
        assert_revision_headers(read, &version);
        assert_eq!(read.json().unwrap()["params"]["uri"], uri);
        // 2026-07-28: Mcp-Name holds the URI, exactly as in the body.
        let expected_name = is_2026(&version).then_some(uri);
        assert_eq!(read.header("mcp-name"), expected_name);
    }
    for method in ["resources/list", "resources/templates/list"] {
        let request = only(&server, method);
        assert_revision_headers(&request, &version);
        assert_eq!(request.header("mcp-name"), None);
    }
    client.close().await;
}

async fn naive_traversal_forms_reach_the_secret_on_the_bare_server(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;
    for form in TRAVERSAL_FORMS {
        assert_eq!(
            demo_server::naive_path(form).as_deref(),
            Some("/srv/.env"),
            "{form}"
        );
        let read = within("traversal read", client.read_resource(form))
            .await
            .unwrap_or_else(|err| panic!("{form}: {err}"));
        assert_eq!(text_of(&read), SECRET_TEXT, "{form}");
        // The answer names the URI as asked, not as resolved.
        assert_eq!(read["contents"][0]["uri"], *form);
    }
    // Forms that leave the tree or the scheme are not found.
    for uri in [
        "file://evil.example/srv/.env",
        "http://127.0.0.1/srv/.env",
        "file:///srv/public/../../.env",
    ] {
        let err = within("not found", client.read_resource(uri))
            .await
            .unwrap_err();
        assert!([-32002, -32602].contains(&err.code), "{uri}: {err}");
    }
    let reads = server.recorder.requests_with_method("resources/read");
    assert_eq!(reads.len(), TRAVERSAL_FORMS.len() + 3);
    for (read, form) in reads.iter().zip(TRAVERSAL_FORMS) {
        // The URI travels as the client wrote it: body, and Mcp-Name at 2026-07-28
        // (base64-wrapped when it is not plain printable ASCII; all of these are).
        assert_eq!(read.json().unwrap()["params"]["uri"], *form);
        if is_2026(&version) {
            assert_eq!(read.header("mcp-name"), Some(*form));
        }
    }
    client.close().await;
}

#[tokio::test]
async fn resources_subscribe_at_2025_11_25_reports_updates_on_the_session() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2025)).await;

    within("subscribe", client.subscribe(PUBLIC_README_URI))
        .await
        .unwrap();
    // Naive: a traversal form of the secret subscribes too.
    within("subscribe traversal", client.subscribe(TRAVERSAL_FORMS[1]))
        .await
        .unwrap();
    within("update notifications", async {
        while client.resource_updates().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        client.resource_updates(),
        [PUBLIC_README_URI, TRAVERSAL_FORMS[1]]
    );
    let err = within("subscribe missing", client.subscribe("file:///nope"))
        .await
        .unwrap_err();
    assert_eq!(err.code, -32002);

    within("unsubscribe", client.unsubscribe(PUBLIC_README_URI))
        .await
        .unwrap();
    let again = within("unsubscribe again", client.unsubscribe(PUBLIC_README_URI))
        .await
        .unwrap_err();
    assert_eq!(again.code, -32602);

    // The 2026-07-28 method does not exist at 2025-11-25.
    let listen = within(
        "listen at 2025",
        client.request(
            "subscriptions/listen",
            json!({ "notifications": { "resourceSubscriptions": [PUBLIC_README_URI] } }),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(listen.code, -32601, "{listen}");

    let subscribes = server.recorder.requests_with_method("resources/subscribe");
    assert_eq!(subscribes.len(), 3);
    assert_revision_headers(&subscribes[0], &V2025);
    assert_eq!(
        subscribes[0].json().unwrap()["params"]["uri"],
        PUBLIC_README_URI
    );
    assert_revision_headers(&only(&server, "subscriptions/listen"), &V2025);
    client.close().await;
}

#[tokio::test]
async fn subscriptions_listen_at_2026_07_28_acknowledges_and_streams_updates() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2026)).await;

    let mut listening = within(
        "listen",
        client.listen(&[PUBLIC_README_URI, TRAVERSAL_FORMS[0], "file:///nope"]),
    )
    .await
    .unwrap();
    // Every URI that resolves is accepted, the traversal form included.
    assert_eq!(
        listening.acknowledged_uris(),
        [PUBLIC_README_URI, TRAVERSAL_FORMS[0]]
    );
    let first = within("first update", listening.next_update())
        .await
        .unwrap();
    let second = within("second update", listening.next_update())
        .await
        .unwrap();
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (Some(PUBLIC_README_URI), Some(TRAVERSAL_FORMS[0]))
    );
    within("cancel", listening.cancel()).await.unwrap();

    // The 2025-11-25 methods do not exist at 2026-07-28.
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        let err = within(
            "legacy subscribe",
            client.request(method, json!({ "uri": PUBLIC_README_URI })),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, -32601, "{method}: {err}");
    }

    let listen = only(&server, "subscriptions/listen");
    assert_revision_headers(&listen, &V2026);
    // No Mcp-Name for subscriptions/listen: the URIs are only in the body.
    assert_eq!(listen.header("mcp-name"), None);
    assert_eq!(
        listen.json().unwrap()["params"]["notifications"]["resourceSubscriptions"],
        json!([PUBLIC_README_URI, TRAVERSAL_FORMS[0], "file:///nope"])
    );
    // The raw legacy subscribe carried Mcp-Name = the URI.
    assert_eq!(
        only(&server, "resources/subscribe").header("mcp-name"),
        Some(PUBLIC_README_URI)
    );
    client.close().await;
}

async fn prompts_are_listed_and_got(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;

    assert_eq!(
        within("prompts/list", client.prompt_names()).await.unwrap(),
        ["summarize", SECRET_PROMPT]
    );
    let summary = within(
        "summarize",
        client.get_prompt(
            "summarize",
            json!({ "text": "MCP is a protocol.", "style": "detailed" }),
        ),
    )
    .await
    .unwrap();
    assert_eq!(summary.get("resultType").is_some(), is_2026(&version));
    let text = summary["messages"][0]["content"]["text"].as_str().unwrap();
    assert!(text.contains("(detailed)") && text.contains("MCP is a protocol."));
    let secret = within(
        "secret prompt",
        client.get_prompt(SECRET_PROMPT, json!({ "topic": "deploy-keys" })),
    )
    .await
    .unwrap();
    assert!(secret["messages"][0]["content"]["text"]
        .as_str()
        .unwrap()
        .contains(SECRET_TEXT.trim_end()));

    let missing_arg = within("no text", client.get_prompt("summarize", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(missing_arg.code, -32602, "{missing_arg}");
    let unknown = within("unknown prompt", client.get_prompt("nope", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, -32602, "{unknown}");

    let gets = server.recorder.requests_with_method("prompts/get");
    assert_eq!(gets.len(), 4);
    for (get, name) in gets
        .iter()
        .zip(["summarize", SECRET_PROMPT, "summarize", "nope"])
    {
        assert_revision_headers(get, &version);
        assert_eq!(get.json().unwrap()["params"]["name"], name);
        assert_eq!(get.header("mcp-name"), is_2026(&version).then_some(name));
    }
    assert_eq!(
        gets[1].json().unwrap()["params"]["arguments"],
        json!({ "topic": "deploy-keys" })
    );
    client.close().await;
}

async fn completions_cover_prompt_arguments_and_the_template(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;

    let complete = |prompt: &'static str, arg: &'static str, value: &'static str| {
        within("complete", client.complete_prompt(prompt, arg, value))
    };
    assert_eq!(
        complete("summarize", "style", "b").await.unwrap(),
        ["brief", "bullet-points"]
    );
    assert_eq!(
        complete(SECRET_PROMPT, "topic", "").await.unwrap(),
        ["credentials", "deploy-keys", "incident-notes"]
    );
    assert!(complete("summarize", "text", "x").await.unwrap().is_empty());
    assert_eq!(complete("nope", "x", "").await.unwrap_err().code, -32602);
    let paths = |value: &'static str| {
        within(
            "complete path",
            client.complete_resource(PUBLIC_TEMPLATE, "path", value),
        )
    };
    assert_eq!(paths("").await.unwrap(), ["readme.md", "src/main.py"]);
    assert_eq!(paths("s").await.unwrap(), ["src/main.py"]);
    let unknown_template = within(
        "unknown template",
        client.complete_resource("file:///elsewhere/{x}", "x", ""),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown_template.code, -32602);

    let completes = server.recorder.requests_with_method("completion/complete");
    assert_eq!(completes.len(), 7);
    for request in &completes {
        assert_revision_headers(request, &version);
        // No Mcp-Name for completion/complete: the target is only in params.ref.
        assert_eq!(request.header("mcp-name"), None);
    }
    assert_eq!(
        completes[1].json().unwrap()["params"]["ref"],
        json!({ "type": "ref/prompt", "name": SECRET_PROMPT })
    );
    assert_eq!(
        completes[4].json().unwrap()["params"]["ref"],
        json!({ "type": "ref/resource", "uri": PUBLIC_TEMPLATE })
    );
    assert_eq!(
        completes[5].json().unwrap()["params"]["argument"],
        json!({ "name": "path", "value": "s" })
    );
    client.close().await;
}

async fn meta_tool_runs_the_tool_it_names(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;

    let args = json!({ "name": "deleteWorkspace", "arguments": { "workspace": "prod" } });
    let deleted = within("call_tool", client.call(META_TOOL, args.clone()))
        .await
        .unwrap();
    assert_eq!(result_json(&deleted).unwrap(), json!({ "deleted": "prod" }));
    // Nested: call_tool -> call_tool -> checkCodeExecStatus.
    let nested = json!({ "name": META_TOOL, "arguments": {
        "name": "checkCodeExecStatus", "arguments": { "execution_uuid": "u-1" }
    } });
    let status = within("nested", client.call(META_TOOL, nested.clone()))
        .await
        .unwrap();
    assert_eq!(result_json(&status).unwrap()["execution_uuid"], "u-1");
    // Every hop is a recorded tool call, the inner ones with their own arguments.
    assert_eq!(
        server.recorder.tool_calls(),
        [
            (META_TOOL.to_owned(), args.clone()),
            ("deleteWorkspace".to_owned(), json!({ "workspace": "prod" })),
            (META_TOOL.to_owned(), nested.clone()),
            (META_TOOL.to_owned(), nested["arguments"].clone()),
            (
                "checkCodeExecStatus".to_owned(),
                json!({ "execution_uuid": "u-1" })
            ),
        ]
    );

    let unknown = within(
        "unknown inner",
        client.call(META_TOOL, json!({ "name": "nope" })),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (unknown.code, unknown.message.as_str()),
        (-32602, "tool not found")
    );
    let bad = within("bad args", client.call(META_TOOL, json!({ "name": 7 })))
        .await
        .unwrap();
    assert_eq!(bad["isError"], true);

    // On the wire it is one tools/call of call_tool: the inner tool is only in
    // params.arguments (and Mcp-Name at 2026-07-28 names call_tool).
    let calls = server.recorder.requests_with_method("tools/call");
    assert_eq!(calls.len(), 4);
    assert_revision_headers(&calls[0], &version);
    assert_eq!(calls[0].json().unwrap()["params"]["arguments"], args);
    assert_eq!(
        calls[0].header("mcp-name"),
        is_2026(&version).then_some(META_TOOL)
    );
    client.close().await;
}

async fn report_tool_without_a_task_answers_directly(version: ProtocolVersion) {
    let server = Server::start(ServeOptions::default()).await;
    // No tasks declared (2026-07-28) and no params.task (2025-11-25).
    let client = connect_at(&server, ClientOptions::at(version.clone())).await;
    let outcome = within(
        "generateReport",
        client.call_once(REPORT_TOOL, json!({ "topic": "uptime" })),
    )
    .await
    .unwrap();
    let CallOutcome::Complete(result) = outcome else {
        panic!("expected a plain result, got {outcome:?}");
    };
    assert_eq!(
        result_json(&result).unwrap(),
        json!({ "topic": "uptime", "report": "Report on uptime: all systems nominal." })
    );
    let bad = within("no topic", client.call(REPORT_TOOL, json!({})))
        .await
        .unwrap();
    assert_eq!(bad["isError"], true);
    assert_eq!(server.recorder.tool_call_count(REPORT_TOOL), 2);
    client.close().await;
}

async fn both_revisions_are_served_by_a_json_upstream(version: ProtocolVersion) {
    let server = Server::start(ServeOptions {
        json_responses: true,
        ..ServeOptions::default()
    })
    .await;
    let client = connect_at(&server, ClientOptions::at(version.clone()).with_tasks()).await;
    assert_eq!(client.session_id(), None);
    assert_eq!(
        within("list", client.list_tools()).await.unwrap().len(),
        ALL_TOOLS.len()
    );
    let read = within("read", client.read_resource(SECRET_URI))
        .await
        .unwrap();
    assert_eq!(text_of(&read), SECRET_TEXT);
    let (task_id, _) = within(
        "task",
        client.call_as_task(REPORT_TOOL, json!({ "topic": "json" }), 5_000),
    )
    .await
    .unwrap();
    assert_eq!(task_id, "task-1");
    // Answers are application/json, the 2025-11-25 task methods included.
    let body = client.envelope("tasks/get", json!({ "taskId": task_id }));
    let raw = within("raw tasks/get", client.post(&body)).await.unwrap();
    assert_eq!(raw.status, 200, "{}", raw.body);
    assert!(raw
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(
        raw.answer_to(&body["id"]).unwrap()["result"]["taskId"],
        "task-1"
    );
    client.close().await;
}

/// Polls `tasks/get` until the task leaves `working`; returns the last answer.
async fn settled(client: &McpClient, task_id: &str) -> Value {
    within("task settles", async {
        loop {
            let task = client.get_task(task_id).await.unwrap();
            if task["status"] != "working" {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn tasks_at_2025_11_25_are_created_polled_listed_fetched_and_cancelled() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2025)).await;

    let (task_id, created) = within(
        "task call",
        client.call_as_task(REPORT_TOOL, json!({ "topic": "disk" }), 30_000),
    )
    .await
    .unwrap();
    assert_eq!(task_id, "task-1");
    // CreateTaskResult at 2025-11-25: the task under `task`, `ttl` as asked.
    let task = &created["task"];
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttl"], 30_000);
    assert_eq!(task["pollInterval"], 50);
    assert!(task["createdAt"].is_string() && task["lastUpdatedAt"].is_string());
    assert!(created.get("resultType").is_none());
    assert_eq!(server.recorder.tool_call_count(REPORT_TOOL), 1);

    let done = settled(&client, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["taskId"], task_id.as_str());
    // tasks/result answers what tools/call would have, tagged with the task.
    let result = within("tasks/result", client.task_result(&task_id))
        .await
        .unwrap();
    assert_eq!(
        result_json(&result).unwrap(),
        json!({ "topic": "disk", "report": "Report on disk: all systems nominal." })
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/related-task"],
        json!({ "taskId": task_id })
    );

    // A long task, cancelled while it works.
    let (long, _) = within(
        "long task",
        client.call_as_task(
            REPORT_TOOL,
            json!({ "topic": "slow", "delay_ms": 60_000 }),
            60_000,
        ),
    )
    .await
    .unwrap();
    assert_eq!(long, "task-2");
    let listed = within("tasks/list", client.list_tasks()).await.unwrap();
    let statuses: Vec<(&str, &str)> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["taskId"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [("task-1", "completed"), ("task-2", "working")]);
    let cancelled = within("tasks/cancel", client.cancel_task(&long))
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        within("get cancelled", client.get_task(&long))
            .await
            .unwrap()["status"],
        "cancelled"
    );
    let no_result = within("result of cancelled", client.task_result(&long))
        .await
        .unwrap_err();
    assert_eq!(no_result.code, -32602, "{no_result}");
    let twice = within("cancel again", client.cancel_task(&long))
        .await
        .unwrap_err();
    assert_eq!(twice.code, -32602, "{twice}");
    let unknown = within("unknown task", client.get_task("task-99"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, -32602);

    // Only the task tool runs as a task.
    let not_a_task = within(
        "task of a plain tool",
        client.request(
            "tools/call",
            json!({ "name": "deleteWorkspace", "arguments": { "workspace": "w" }, "task": {} }),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(not_a_task.code, -32601, "{not_a_task}");

    // Naive on purpose: another session sees, fetches and cancels these tasks.
    let bob = within(
        "bob",
        McpClient::connect(&server.url(), &[("x-agent-id", "bob")]),
    )
    .await
    .unwrap();
    assert_eq!(
        within("bob gets", bob.get_task("task-1")).await.unwrap()["status"],
        "completed"
    );
    assert!(within("bob fetches", bob.task_result("task-1"))
        .await
        .is_ok());
    assert_eq!(
        within("bob lists", bob.list_tasks()).await.unwrap()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // On the wire: tools/call with params.task; task methods name the task in params.taskId.
    let call = &server.recorder.requests_with_method("tools/call")[0];
    assert_revision_headers(call, &V2025);
    assert_eq!(
        call.json().unwrap()["params"]["task"],
        json!({ "ttl": 30_000 })
    );
    for method in ["tasks/get", "tasks/result", "tasks/list", "tasks/cancel"] {
        for request in server.recorder.requests_with_method(method) {
            assert_revision_headers(&request, &V2025);
            if method != "tasks/list" {
                assert!(request.json().unwrap()["params"]["taskId"].is_string());
            }
        }
    }
    client.close().await;
    bob.close().await;
}

#[tokio::test]
async fn task_methods_are_answered_as_an_event_stream_on_a_2025_11_25_session() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2025)).await;
    let body = client.envelope(
        "tools/call",
        json!({ "name": REPORT_TOOL, "arguments": { "topic": "sse" }, "task": { "ttl": 1000 } }),
    );
    let raw = within("raw task call", client.post(&body)).await.unwrap();
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        raw.answer_to(&body["id"]).unwrap()["result"]["task"]["taskId"],
        "task-1"
    );
    // Without a live session the task methods are left to rmcp, which refuses them.
    let mut headers = client.headers_for(&body);
    for (name, value) in &mut headers {
        if name == "mcp-session-id" {
            *value = "no-such-session".to_owned();
        }
    }
    let get = client.envelope("tasks/get", json!({ "taskId": "task-1" }));
    let refused = within("stale session", client.post_with_headers(&get, &headers))
        .await
        .unwrap();
    assert_eq!(refused.status, 404, "{}", refused.body);
    client.close().await;
}

#[tokio::test]
async fn tasks_at_2026_07_28_are_created_polled_and_cancelled() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2026).with_tasks()).await;

    let outcome = within(
        "task call",
        client.call_once(REPORT_TOOL, json!({ "topic": "disk" })),
    )
    .await
    .unwrap();
    let CallOutcome::Task { task_id, result } = outcome else {
        panic!("expected a CreateTaskResult, got {outcome:?}");
    };
    assert_eq!(task_id, "task-1");
    // CreateTaskResult at 2026-07-28: resultType "task", the task's fields flattened.
    assert_eq!(result["resultType"], "task");
    assert_eq!(result["taskId"], "task-1");
    assert_eq!(result["status"], "working");
    assert_eq!(result["ttlMs"], 60_000);
    assert_eq!(result["pollIntervalMs"], 50);

    let done = settled(&client, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["resultType"], "complete");
    // The result is inlined in tasks/get.
    assert_eq!(
        result_json(&done["result"]).unwrap()["report"],
        "Report on disk: all systems nominal."
    );

    let (long, _) = within(
        "long task",
        client.call_as_task(
            REPORT_TOOL,
            json!({ "topic": "slow", "delay_ms": 60_000 }),
            0,
        ),
    )
    .await
    .unwrap();
    within("tasks/update", client.update_task(&long, json!({})))
        .await
        .unwrap();
    assert_eq!(
        within("tasks/cancel", client.cancel_task(&long))
            .await
            .unwrap(),
        Value::Null
    );
    assert_eq!(settled(&client, &long).await["status"], "cancelled");
    let twice = within("cancel again", client.cancel_task(&long))
        .await
        .unwrap_err();
    assert_eq!(twice.code, -32602, "{twice}");
    assert_eq!(
        within("unknown", client.get_task("task-99"))
            .await
            .unwrap_err()
            .code,
        -32602
    );
    // The 2025-11-25 methods do not exist at 2026-07-28.
    for method in ["tasks/list", "tasks/result"] {
        let err = within(method, client.request(method, json!({ "taskId": task_id })))
            .await
            .unwrap_err();
        assert_eq!(err.code, -32601, "{method}: {err}");
    }

    // Naive on purpose: another caller that declares the extension gets the task.
    let bob = within(
        "bob",
        McpClient::connect_with(
            &server.url(),
            &[("x-agent-id", "bob")],
            ClientOptions::at(V2026).with_tasks(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        within("bob gets", bob.get_task("task-1")).await.unwrap()["status"],
        "completed"
    );
    // A caller that does not declare the extension is refused by rmcp: -32021.
    let plain = connect_at(&server, ClientOptions::at(V2026)).await;
    let missing = within("no capability", plain.get_task("task-1"))
        .await
        .unwrap_err();
    assert_eq!(missing.code, -32021, "{missing}");

    // On the wire: tasks/get, tasks/update and tasks/cancel name the task in Mcp-Name.
    for method in ["tasks/get", "tasks/update", "tasks/cancel"] {
        let requests = server.recorder.requests_with_method(method);
        assert!(!requests.is_empty(), "{method}");
        for request in requests {
            assert_revision_headers(&request, &V2026);
            let body = request.json().unwrap();
            assert_eq!(
                request.header("mcp-name"),
                body["params"]["taskId"].as_str(),
                "{method}"
            );
        }
    }
    // The client declares the extension in every request's _meta.
    let call = &server.recorder.requests_with_method("tools/call")[0];
    assert_eq!(
        call.json().unwrap()["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"],
        json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } })
    );
    client.close().await;
    bob.close().await;
    plain.close().await;
}

#[tokio::test]
async fn input_required_at_2026_07_28_completes_when_retried_with_its_state() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2026)).await;
    let args = json!({ "environment": "prod" });

    let first = within("first round", client.call_once(CONFIRM_TOOL, args.clone()))
        .await
        .unwrap();
    let CallOutcome::InputRequired {
        request_state: Some(state),
        result,
    } = first
    else {
        panic!("expected InputRequiredResult, got {first:?}");
    };
    assert_eq!(state, "confirmDeploy-1");
    assert_eq!(result["resultType"], "input_required");
    assert_eq!(result["requestState"], state.as_str());
    let ask = &result["inputRequests"]["confirm"];
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(ask["params"]["mode"], "form");
    assert_eq!(ask["params"]["message"], "Deploy to prod?");

    let accept = json!({ "confirm": { "action": "accept", "content": { "confirm": true } } });
    let done = within(
        "retry",
        client.retry(CONFIRM_TOOL, args.clone(), Some(&state), accept.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        result_json(done.json()).unwrap(),
        json!({ "deployed": "prod" })
    );
    // Naive: the state stays valid, so the retry can be replayed.
    let replay = within(
        "replay",
        client.retry(CONFIRM_TOOL, args.clone(), Some(&state), accept.clone()),
    )
    .await
    .unwrap();
    assert_eq!(result_json(replay.json()).unwrap()["deployed"], "prod");
    // Declined.
    let declined = within(
        "decline",
        client.retry(
            CONFIRM_TOOL,
            args.clone(),
            Some(&state),
            json!({ "confirm": { "action": "decline" } }),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        result_json(declined.json()).unwrap(),
        json!({ "deployed": null, "declined": "prod" })
    );
    // The state without the answer asks again, same state.
    let again = within(
        "no answer",
        client.retry(CONFIRM_TOOL, args.clone(), Some(&state), Value::Null),
    )
    .await
    .unwrap();
    assert!(
        matches!(&again, CallOutcome::InputRequired { request_state: Some(s), .. } if *s == state)
    );
    // A forged state is refused.
    let forged = within(
        "forged",
        client.retry(CONFIRM_TOOL, args.clone(), Some("forged"), accept.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(forged.code, -32602, "{forged}");
    assert_eq!(forged.data, Some(json!({ "requestState": "forged" })));
    // Through the meta-tool the rounds work the same.
    let via_meta = json!({ "name": CONFIRM_TOOL, "arguments": { "environment": "staging" } });
    let meta_first = within("meta first", client.call_once(META_TOOL, via_meta.clone()))
        .await
        .unwrap();
    let CallOutcome::InputRequired {
        request_state: Some(meta_state),
        ..
    } = meta_first
    else {
        panic!("expected InputRequiredResult, got {meta_first:?}");
    };
    let meta_done = within(
        "meta retry",
        client.retry(META_TOOL, via_meta, Some(&meta_state), accept.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        result_json(meta_done.json()).unwrap(),
        json!({ "deployed": "staging" })
    );

    // On the wire: the retry is a new tools/call (new id) carrying the same
    // name and arguments plus params.requestState and params.inputResponses.
    let calls = server.recorder.requests_with_method("tools/call");
    assert_eq!(calls.len(), 8);
    let (first, retry) = (calls[0].json().unwrap(), calls[1].json().unwrap());
    assert_ne!(first["id"], retry["id"]);
    assert!(first["params"].get("requestState").is_none());
    assert_eq!(retry["params"]["name"], CONFIRM_TOOL);
    assert_eq!(retry["params"]["arguments"], args);
    assert_eq!(retry["params"]["requestState"], state.as_str());
    assert_eq!(retry["params"]["inputResponses"], accept);
    for call in &calls {
        assert_revision_headers(call, &V2026);
        // Neither requestState nor inputResponses travels in a header.
        assert!(call
            .headers
            .iter()
            .all(|(_, v)| !v.contains("confirmDeploy-")));
    }
    client.close().await;
}

#[tokio::test]
async fn confirm_tool_at_2025_11_25_asks_with_elicitation_on_the_session() {
    let server = Server::start(ServeOptions::default()).await;
    // A client that cannot answer elicitations gets a tool error.
    let plain = connect_at(&server, ClientOptions::at(V2025)).await;
    let refused = within(
        "no elicitation",
        plain.call(CONFIRM_TOOL, json!({ "environment": "prod" })),
    )
    .await
    .unwrap();
    assert_eq!(refused["isError"], true);
    plain.close().await;

    let client = connect_at(&server, ClientOptions::at(V2025).with_elicitation_form()).await;
    let done = within(
        "confirmed",
        client.call(CONFIRM_TOOL, json!({ "environment": "prod" })),
    )
    .await
    .unwrap();
    assert_eq!(result_json(&done).unwrap(), json!({ "deployed": "prod" }));
    let asked = client.elicitations();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["message"], "Deploy to prod?");
    client.set_elicitation_answer(json!({ "action": "decline" }));
    let declined = within(
        "declined",
        client.call(CONFIRM_TOOL, json!({ "environment": "prod" })),
    )
    .await
    .unwrap();
    assert_eq!(result_json(&declined).unwrap()["declined"], "prod");

    // The client's answer travels as its own POST: a JSON-RPC response (no
    // method) on the session.
    let answers: Vec<Value> = server
        .recorder
        .http_requests()
        .iter()
        .filter_map(RecordedRequest::json)
        .filter(|body| body.get("method").is_none() && body.get("result").is_some())
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0]["result"]["action"], "accept");
    assert_eq!(answers[0]["result"]["content"], json!({ "confirm": true }));
    // The client declared the capability in initialize.
    let initialize = server.recorder.requests_with_method("initialize");
    assert_eq!(
        initialize[1].json().unwrap()["params"]["capabilities"]["elicitation"],
        json!({ "form": {} })
    );
    client.close().await;
}

#[tokio::test]
async fn url_elicitation_support_is_declared_in_each_revision_s_place() {
    let server = Server::start(ServeOptions::default()).await;
    let legacy = connect_at(&server, ClientOptions::at(V2025).with_elicitation_url()).await;
    let modern = connect_at(&server, ClientOptions::at(V2026).with_elicitation_url()).await;
    within("legacy list", legacy.list_tools()).await.unwrap();
    within("modern list", modern.list_tools()).await.unwrap();
    let initialize = only(&server, "initialize");
    assert_eq!(
        initialize.json().unwrap()["params"]["capabilities"],
        json!({ "elicitation": { "url": {} } })
    );
    let lists = server.recorder.requests_with_method("tools/list");
    let modern_list = lists
        .iter()
        .find(|r| r.header("mcp-method").is_some())
        .unwrap();
    assert_eq!(
        modern_list.json().unwrap()["params"]["_meta"]
            ["io.modelcontextprotocol/clientCapabilities"],
        json!({ "elicitation": { "url": {} } })
    );
    legacy.close().await;
    modern.close().await;
}

#[tokio::test]
async fn a_2026_07_28_request_with_missing_or_wrong_headers_is_refused_by_rmcp() {
    let server = Server::start(ServeOptions::default()).await;
    let client = connect_at(&server, ClientOptions::at(V2026)).await;
    let call = client.envelope(
        "tools/call",
        json!({ "name": "deleteWorkspace", "arguments": { "workspace": "w" } }),
    );
    let standard = client.headers_for(&call);
    let without = |name: &str| -> Vec<(String, String)> {
        standard
            .iter()
            .filter(|(n, _)| n != name)
            .cloned()
            .collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut headers = without(name);
        headers.push((name.to_owned(), value.to_owned()));
        headers
    };
    let cases = [
        (without("mcp-method"), "missing required Mcp-Method header"),
        (
            without("mcp-name"),
            "missing required Mcp-Name header for `tools/call`",
        ),
        (
            with("mcp-method", "tools/list"),
            "Mcp-Method header `tools/list` does not match body method `tools/call`",
        ),
        (
            with("mcp-name", "checkCodeExecStatus"),
            "Mcp-Name header `checkCodeExecStatus` does not match body value `deleteWorkspace`",
        ),
    ];
    for (headers, message) in cases {
        let raw = within("refused", client.post_with_headers(&call, &headers))
            .await
            .unwrap();
        // HTTP 400, a JSON body with the request's id and code -32020.
        assert_eq!(raw.status, 400, "{message}: {}", raw.body);
        assert!(raw
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(
            raw.messages,
            [json!({ "jsonrpc": "2.0", "id": call["id"],
                     "error": { "code": -32020, "message": message } })]
        );
    }
    // Mcp-Name may be base64-wrapped; the wrapped form of the right name passes.
    let wrapped = with("mcp-name", "=?base64?ZGVsZXRlV29ya3NwYWNl?=");
    let ok = within("base64 name", client.post_with_headers(&call, &wrapped))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(server.recorder.tool_call_count("deleteWorkspace"), 1);

    // A 2026-07-28 header without _meta in the body: -32602, HTTP 400.
    let bare = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" });
    let headers = client.headers_for(&bare);
    let raw = within("no _meta", client.post_with_headers(&bare, &headers))
        .await
        .unwrap();
    assert_eq!(raw.status, 400, "{}", raw.body);
    assert_eq!(raw.messages[0]["error"]["code"], -32602);
    assert!(raw.messages[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("_meta is missing"));
    // A 2025-11-25 request without a session is refused before any method runs.
    let legacy = json!({ "jsonrpc": "2.0", "id": 10, "method": "tools/list" });
    let raw = within(
        "no session",
        client.post_with_headers(
            &legacy,
            &[("mcp-protocol-version".to_owned(), "2025-11-25".to_owned())],
        ),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 400, "{}", raw.body);
    client.close().await;
}

#[tokio::test]
async fn both_revisions_at_once_share_one_task_store() {
    let server = Server::start(ServeOptions::default()).await;
    let legacy = connect_at(&server, ClientOptions::at(V2025)).await;
    let modern = connect_at(&server, ClientOptions::at(V2026).with_tasks()).await;
    let (modern_task, _) = within(
        "2026 task",
        modern.call_as_task(REPORT_TOOL, json!({ "topic": "a" }), 0),
    )
    .await
    .unwrap();
    let (legacy_task, _) = within(
        "2025 task",
        legacy.call_as_task(REPORT_TOOL, json!({ "topic": "b" }), 1_000),
    )
    .await
    .unwrap();
    assert_eq!(
        (modern_task.as_str(), legacy_task.as_str()),
        ("task-1", "task-2")
    );
    // Each revision sees the other's task, in its own shape.
    let seen_by_legacy = settled(&legacy, &modern_task).await;
    assert_eq!(seen_by_legacy["ttl"], 60_000);
    assert!(seen_by_legacy.get("ttlMs").is_none());
    let seen_by_modern = settled(&modern, &legacy_task).await;
    assert_eq!(seen_by_modern["ttlMs"], 1_000);
    assert!(seen_by_modern.get("ttl").is_none());
    // One session (2025-11-25) and no session (2026-07-28).
    let initializes = server.recorder.method_count("initialize");
    let discovers = server.recorder.method_count("server/discover");
    assert_eq!((initializes, discovers), (1, 1));
    legacy.close().await;
    modern.close().await;
}

/// The recorder sees a request as soon as its headers arrive, and keeps one
/// whose connection is cut off mid-body: what came of the body, marked
/// incomplete, with the reason.
#[tokio::test]
async fn a_request_cut_off_mid_body_is_recorded_as_incomplete() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(ServeOptions::default()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
        .await
        .unwrap();
    // The headers alone are a started request.
    within("the request start", async {
        while server.recorder.http_requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let started = server.recorder.http_requests();
    assert!(
        started[0].incomplete && started[0].body_error.is_none(),
        "{started:?}"
    );
    stream.write_all(br#"{"jsonrpc":"#).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let request = within("the cut", async {
        loop {
            let requests = server.recorder.cut_off_requests();
            if let Some(request) = requests.first() {
                break request.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/mcp")
    );
    assert_eq!(request.header("content-length"), Some("100"));
    assert_eq!(request.body, br#"{"jsonrpc":"#);
    assert!(request.incomplete);
    assert!(
        request
            .body_error
            .as_deref()
            .unwrap()
            .starts_with("body cut off"),
        "{request:?}"
    );
    assert_eq!(server.recorder.http_requests().len(), 1);
    assert_eq!(server.recorder.calls_reaching("deleteWorkspace").len(), 1);
    assert!(server.recorder.tool_calls().is_empty());
}
