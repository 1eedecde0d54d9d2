//! The demo MCP server and the test-side MCP client, talking directly (no Envoy).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{future::Future, time::Duration};

use serde_json::{json, Value};
use support::{
    demo_server::{self, InterceptReply, RecordedRequest, Recorder, ServeOptions},
    mcp_client::{result_json, McpClient, RpcError},
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
