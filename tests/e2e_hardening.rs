//! End to end, the adversarial input matrix (README "Security: the input
//! matrix"): every row against a real Envoy over HTTP/1.1 and HTTP/2, with an
//! upstream that records everything it receives, proving that nothing of a
//! refused request reaches it. Also quota rollback when the call did not happen.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::demo_server::{self, Recorder};
use support::envoy::{ClosedPort, Envoy, EnvoyOptions};
use support::stack::Stack;

/// Default allow, so that anything the gate lets through reaches the
/// upstream: a refusal can only come from the gate.
const MATRIX_POLICY: &str = r#"{
    "version": "1", "default": "allow", "max_body_bytes": 4096,
    "hide": ["secretTool", "internal_*"],
    "tools": {"deleteWorkspace": {"action": "deny", "reason": "destructive"}, "drop_*": {"action": "deny"}}
}"#;

struct Row {
    name: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    /// Send the body in 1-byte chunks without content-length.
    chunked: bool,
    status: u16,
    code: i64,
}

fn row(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: i64) -> Row {
    Row {
        name,
        body: body.into(),
        headers: Vec::new(),
        chunked: false,
        status,
        code,
    }
}

fn call(name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
    )
}

fn matrix() -> Vec<Row> {
    let nested = |depth: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"asyncExecuteCode","arguments":{{"x":{}1{}}}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let mut invalid_utf8 = call("asyncExecuteCode").into_bytes();
    invalid_utf8.splice(60..60, [0xff, 0xfe]);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"asyncExecuteCode","arguments":{{"script":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    vec![
        row(
            "duplicate key: params.name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","name":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "duplicate key: top-level method",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "duplicate key: deep in arguments",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"a":[{"b":{"c":1,"c":2}}]}}}"#,
            400,
            -32600,
        ),
        row(
            "duplicate key: escaped spelling",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","n\u0061me":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: Name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","Name":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: Method",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: JSONRPC",
            r#"{"JSONRPC":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: ID",
            r#"{"jsonrpc":"2.0","id":1,"ID":2,"method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: PARAMS",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode"},"PARAMS":{"name":"deleteWorkspace"}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: ARGUMENTS",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{},"ARGUMENTS":{"script":"rm -rf /"}}}"#,
            400,
            -32600,
        ),
        row(
            "case variant: Unicode fold (argumentſ)",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","argumentſ":{}}}"#,
            400,
            -32600,
        ),
        row("invalid UTF-8", invalid_utf8, 400, -32700),
        row(
            "lone surrogate escape",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","arguments":{"s":"\ud800"}}}"#,
            400,
            -32700,
        ),
        row(
            "NUL in tool name",
            call("deleteWorkspace\\u0000"),
            400,
            -32602,
        ),
        row("nesting deeper than 64", nested(62), 400, -32600),
        row("body over max_body_bytes", big.clone(), 413, -32600),
        Row {
            chunked: true,
            ..row(
                "body over max_body_bytes, chunked in 1-byte pieces",
                big,
                413,
                -32600,
            )
        },
        Row {
            chunked: true,
            ..row(
                "denied call in 1-byte pieces",
                call("deleteWorkspace"),
                200,
                -31001,
            )
        },
        Row {
            headers: vec![("content-encoding", "gzip".to_string())],
            ..row(
                "Content-Encoding: gzip",
                call("deleteWorkspace"),
                415,
                -32600,
            )
        },
        Row {
            // Express's express.json() decodes UTF-7: "+AG4-ame" is "name",
            // the second name, to the server.
            headers: vec![(
                "content-type",
                "application/json; charset=utf-7".to_string(),
            )],
            ..row(
                "Content-Type charset=utf-7 with a decoy name",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"asyncExecuteCode","+AG4-ame":"deleteWorkspace"}}"#,
                415,
                -32600,
            )
        },
        Row {
            headers: vec![(
                "content-type",
                "application/json; charset=\"UTF-8\"".to_string(),
            )],
            ..row(
                "Content-Type charset UTF-8 is read as ever",
                call("deleteWorkspace"),
                200,
                -31001,
            )
        },
        Row {
            // Envoy joins the two into one value with a comma; the server
            // reading the raw request might take either.
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("content-type", "text/plain".to_string()),
            ],
            ..row(
                "Content-Type given twice",
                call("checkCodeExecStatus"),
                400,
                -32600,
            )
        },
        Row {
            headers: vec![(
                "content-type",
                "application/json; charset=utf-8; charset=utf-7".to_string(),
            )],
            ..row(
                "Content-Type with charset twice",
                call("checkCodeExecStatus"),
                415,
                -32600,
            )
        },
        Row {
            headers: vec![("content-type", "text/plain".to_string())],
            ..row(
                "non-JSON content type is still inspected",
                call("deleteWorkspace"),
                200,
                -31001,
            )
        },
        row(
            "id null",
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "id float",
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "id object",
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "id missing",
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"asyncExecuteCode"}}"#,
            400,
            -32600,
        ),
        row(
            "params not an object",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["deleteWorkspace"]}"#,
            400,
            -32602,
        ),
        row(
            "name not a string",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["deleteWorkspace"]}}"#,
            400,
            -32602,
        ),
        row(
            "tool name with a Cyrillic look-alike",
            call("dеleteWorkspace"),
            400,
            -32602,
        ),
        row(
            "tool name longer than 128",
            call(&"a".repeat(129)),
            400,
            -32602,
        ),
        row(
            "tool name with a space",
            call("delete Workspace"),
            400,
            -32602,
        ),
        row(
            "tool name differing only in case",
            call("DeleteWorkspace"),
            200,
            -31001,
        ),
        row(
            "hidden tool name differing only in case",
            call("SECRETTOOL"),
            200,
            -32602,
        ),
        row(
            "tool name a denied pattern matches only ignoring case",
            call("Drop_table"),
            200,
            -31001,
        ),
        row(
            "tool name a hidden pattern matches only ignoring case",
            call("Internal_debug"),
            200,
            -32602,
        ),
        row(
            "a known method in another letter case",
            call("deleteWorkspace").replace("tools/call", "Tools/call"),
            400,
            -32600,
        ),
        Row {
            headers: vec![
                ("mcp-name", "asyncExecuteCode".to_string()),
                ("mcp-name", "deleteWorkspace".to_string()),
            ],
            ..row(
                "a header the gate reads given twice",
                call("deleteWorkspace"),
                400,
                -32600,
            )
        },
        row(
            "batch",
            format!("[{}]", call("deleteWorkspace")),
            400,
            -32600,
        ),
        Row {
            headers: vec![("mcp-method", "tools/list".to_string())],
            ..row(
                "Mcp-Method disagrees with the body",
                call("deleteWorkspace"),
                400,
                -32020,
            )
        },
        Row {
            headers: vec![
                ("mcp-method", "tools/call".to_string()),
                ("mcp-name", "asyncExecuteCode".to_string()),
            ],
            ..row(
                "Mcp-Name disagrees with the body",
                call("deleteWorkspace"),
                400,
                -32020,
            )
        },
        Row {
            headers: vec![("mcp-name", "x".to_string())],
            ..row(
                "Mcp-Name on a method that names nothing",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                400,
                -32020,
            )
        },
    ]
}

async fn send(client: &reqwest::Client, url: &str, row: &Row) -> (u16, Value) {
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream");
    if !row.headers.iter().any(|(name, _)| *name == "content-type") {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in &row.headers {
        request = request.header(*name, value);
    }
    let request = if row.chunked {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            row.body.chunks(1).map(|c| Ok(c.to_vec())).collect();
        request.body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
    } else {
        request.body(row.body.clone())
    };
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", row.name));
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn run_matrix(http2: bool) {
    let stack = Stack::start(MATRIX_POLICY).await;
    let client = if http2 {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
    } else {
        reqwest::Client::builder().http1_only().build().unwrap()
    };
    let url = stack.envoy.mcp_url();
    let mut failures = Vec::new();
    for row in matrix() {
        stack.upstream.clear();
        let (status, body) = send(&client, &url, &row).await;
        let code = body["error"]["code"].as_i64().unwrap_or(0);
        let reached = stack.upstream.http_requests().len();
        if (status, code, reached) != (row.status, row.code, 0) {
            failures.push(format!(
                "{}: got HTTP {status} code {code}, {reached} request(s) upstream; want HTTP {} code {}, none upstream\n    body: {body}",
                row.name, row.status, row.code
            ));
        }
    }
    // The control: a well-formed allowed call does reach the upstream, over
    // the same client, with matching Mcp-* headers.
    stack.upstream.clear();
    let control = Row {
        headers: vec![
            ("mcp-method", "tools/call".to_string()),
            ("mcp-name", "asyncExecuteCode".to_string()),
        ],
        ..row("control", call("asyncExecuteCode"), 0, 0)
    };
    send(&client, &url, &control).await;
    assert_eq!(
        stack.upstream.http_requests().len(),
        1,
        "the allowed control call must reach the upstream"
    );
    assert!(
        failures.is_empty(),
        "{} of the matrix failed ({}):\n{}",
        failures.len(),
        if http2 { "HTTP/2" } else { "HTTP/1.1" },
        failures.join("\n")
    );
}

#[tokio::test]
async fn the_matrix_over_http1() {
    run_matrix(false).await;
}

#[tokio::test]
async fn the_matrix_over_http2() {
    run_matrix(true).await;
}

/// Raw tools/call, as a client without a session would send it (the demo
/// server answers such a call itself: a 4xx, but an answer).
async fn post_call(url: &str, tool: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(call(tool))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const ONE_CALL: &str = r#"{"version":"1","default":"allow","tools":{"asyncExecuteCode":{"limits":[{"counter":"one","window":1000000000,"max":1,"scope":"global"}]}}}"#;

#[tokio::test]
async fn quota_is_given_back_when_the_upstream_answers_5xx() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    let recorder = Recorder::default();
    let server = tokio::spawn(demo_server::serve_status(listener, recorder.clone(), 503));
    let envoy = Envoy::start(EnvoyOptions::new(ONE_CALL, upstream_port)).await;
    for attempt in 0..3 {
        let (status, body) = post_call(&envoy.mcp_url(), "asyncExecuteCode").await;
        assert_eq!(
            status, 503,
            "attempt {attempt}: the quota of a failed call must come back: {body}"
        );
        // The quota comes back when the stream ends: wait for that.
        envoy.settle();
    }
    assert_eq!(recorder.http_requests().len(), 3);
    assert!(
        envoy
            .log()
            .contains("quota given back (the server answered 503)"),
        "{}",
        envoy.log()
    );
    server.abort();
}

#[tokio::test]
async fn quota_is_given_back_when_the_upstream_is_down() {
    // Nothing listens on the upstream port (held by the test, never
    // listening): Envoy answers 503 itself.
    let upstream = ClosedPort::reserve();
    let envoy = Envoy::start(EnvoyOptions::new(ONE_CALL, upstream.port)).await;
    for attempt in 0..3 {
        let (status, body) = post_call(&envoy.mcp_url(), "asyncExecuteCode").await;
        assert_eq!(status, 503, "attempt {attempt}: {body}");
        envoy.settle();
    }
    assert!(
        envoy
            .log()
            .contains("quota given back (Envoy could not reach the server"),
        "{}",
        envoy.log()
    );
    drop(upstream);
}

#[tokio::test]
async fn calls_the_server_answered_count() {
    let stack = Stack::start(ONE_CALL).await;
    // Without a session the demo server refuses the call itself (4xx): it answered.
    let (status, _) = post_call(&stack.envoy.mcp_url(), "asyncExecuteCode").await;
    assert!((400..500).contains(&status), "{status}");
    let (status, body) = post_call(&stack.envoy.mcp_url(), "asyncExecuteCode").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (200, json!(-31002))
    );
    assert_eq!(stack.upstream.http_requests().len(), 1);
}

/// Envoy in front of a recording (stateless JSON) demo server, without
/// `allow_on_headers_stop_iteration`, and a policy that holds the body only.
async fn without_header_holding(
    policy: &str,
) -> (
    Envoy,
    Recorder,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = listener.local_addr().unwrap().port();
    let recorder = Recorder::default();
    let serve = demo_server::ServeOptions {
        json_responses: true,
        ..Default::default()
    };
    let server = tokio::spawn(demo_server::serve_with_options(
        listener,
        recorder.clone(),
        serve,
    ));
    let policy = policy.to_string();
    let envoy = Envoy::start_with_config(
        move |port, admin_port| {
            support::envoy::config_yaml(port, admin_port, upstream_port, &policy).replace(
                "allow_on_headers_stop_iteration: true",
                "allow_on_headers_stop_iteration: false",
            )
        },
        1,
    )
    .await;
    (envoy, recorder, server)
}

const BODY_ONLY_POLICY: &str = r#"{"version":"1","default":"deny","hold_request_headers":false,"tools":{"checkCodeExecStatus":{}}}"#;

/// Where Envoy's `allow_on_headers_stop_iteration` cannot be set (Istio's
/// WasmPlugin), `hold_request_headers: false` holds the body only: the
/// decision is the same and no refused call's body reaches the server whole.
#[tokio::test]
async fn without_header_holding_decisions_still_apply() {
    let (envoy, recorder, server) = without_header_holding(BODY_ONLY_POLICY).await;
    let (status, body) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        post_call(&envoy.mcp_url(), "deleteWorkspace"),
    )
    .await
    .expect("the denied call hung");
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (200, json!(-31001))
    );
    envoy.settle();
    assert!(recorder.tool_calls().is_empty());
    // Its headers may have reached the server; never all of its body.
    for request in recorder.http_requests() {
        assert!(request.incomplete, "{request:?}");
        assert!(
            call("deleteWorkspace")
                .as_bytes()
                .starts_with(&request.body),
            "{request:?}"
        );
    }
    let (status, _) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        post_call(&envoy.mcp_url(), "checkCodeExecStatus"),
    )
    .await
    .expect("the allowed call hung");
    assert!(status < 500, "{status}");
    assert_eq!(recorder.tool_call_count("checkCodeExecStatus"), 1);
    server.abort();
}

/// README: with `"hold_request_headers": false` a refused call's "body never
/// reaches the server, which sees its request start and then reset". The
/// body is held back until the server has the headers, so the start is seen
/// whatever the timing; then the body arrives, the gate refuses the call, and
/// the server's request is cut off with none of the body.
#[tokio::test]
async fn without_header_holding_a_refused_call_starts_upstream_and_is_reset() {
    use std::time::{Duration, Instant};
    let (envoy, recorder, server) = without_header_holding(BODY_ONLY_POLICY).await;
    let full = call("deleteWorkspace").into_bytes();
    let (body, pieces) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let request = reqwest::Client::new()
        .post(envoy.mcp_url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(reqwest::Body::wrap_stream(pieces))
        .send();
    let answer = tokio::spawn(async move {
        let response = request.await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    });

    // The headers reach the server before any of the body is sent.
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorder.http_requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the request never started upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = recorder.http_requests();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(
        (started[0].method.as_str(), started[0].path.as_str()),
        ("POST", "/mcp")
    );
    assert!(
        started[0].incomplete && started[0].body.is_empty(),
        "{started:?}"
    );

    // Then the body, in two pieces; the gate denies the call.
    let (head, tail) = full.split_at(full.len() / 2);
    body.unbounded_send(Ok(head.to_vec())).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    body.unbounded_send(Ok(tail.to_vec())).unwrap();
    body.close_channel();
    let (status, reply) = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("the denied call hung")
        .unwrap();
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (200, json!(-31001)),
        "{reply}"
    );

    // The server's request is reset, its body never complete.
    let deadline = Instant::now() + Duration::from_secs(10);
    let request = loop {
        let requests = recorder.http_requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        if requests[0].body_error.is_some() {
            break requests[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the server's request was neither completed nor reset: {requests:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(request.incomplete, "{request:?}");
    assert!(
        request.body.len() < full.len() && full.starts_with(&request.body),
        "{request:?}"
    );
    assert!(recorder.tool_calls().is_empty());
    server.abort();
}

/// One HTTP/1.1 request with the given raw header lines (and a correct
/// `content-length`), its status and body.
async fn raw_post(port: u16, header_lines: &[u8], body: &str) -> (u16, String) {
    let mut head = format!("content-length: {}\r\n", body.len()).into_bytes();
    head.extend_from_slice(header_lines);
    raw_exchange(port, &head, body).await
}

/// One HTTP/1.1 POST to /mcp with these header lines (no `content-length`
/// added) and body; its status (0: no HTTP answer) and body.
async fn raw_exchange(port: u16, header_lines: &[u8], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut request = b"POST /mcp HTTP/1.1\r\nhost: gate\r\nconnection: close\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n".to_vec();
    request.extend_from_slice(header_lines);
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("no answer within 10 s");
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (status, body)
}

/// The gate's refusal of a header it reads that is not text.
fn assert_unreadable(header: &str, (status, body): (u16, String)) {
    assert_eq!(status, 400, "{header}: {body}");
    let answer: Value =
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{header}: {err}: {body:?}"));
    assert_eq!(
        (&answer["error"]["code"], &answer["error"]["message"]),
        (
            &json!(-32600),
            &json!(format!(
                "Invalid Request: header {header} is not UTF-8 text"
            ))
        ),
        "{header}: {body}"
    );
}

/// HTTP allows bytes above 0x7f in header values. The gate refuses a request
/// whose identity (or another header it reads: SECURITY.md lists them) is not
/// text, forwards one whose other headers are not, and never panics on
/// either: the same worker (one) answers the next request. Raw bytes on the
/// wire, HTTP/1.1.
#[tokio::test]
async fn header_values_that_are_not_utf8() {
    const POLICY: &str = r#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},
        "tools":{"deleteWorkspace":{"action":"deny"}}}"#;
    let stack = Stack::start(POLICY).await;
    let port = stack.envoy.port;

    for (header, lines) in [
        ("x-agent-id", &b"x-agent-id: \xff\xfe\r\n"[..]),
        (
            "mcp-session-id",
            b"x-agent-id: alice\r\nmcp-session-id: s\xe9ance\r\n",
        ),
        (
            "mcp-method",
            b"x-agent-id: alice\r\nmcp-method: tools/c\xe0ll\r\n",
        ),
        ("mcp-name", b"x-agent-id: alice\r\nmcp-name: caf\xe9\r\n"),
        (
            "content-encoding",
            b"x-agent-id: alice\r\ncontent-encoding: \xefdentity\r\n",
        ),
    ] {
        assert_unreadable(
            header,
            raw_post(port, lines, &call("asyncExecuteCode")).await,
        );
    }
    // content-length: Envoy's HTTP/1 codec refuses it before any filter, with
    // its own 400 (not a JSON-RPC body); nothing is forwarded either way.
    let (status, body) = raw_exchange(
        port,
        b"x-agent-id: alice\r\ncontent-length: 1\xb9\r\n",
        &call("asyncExecuteCode"),
    )
    .await;
    assert_eq!(status, 400, "content-length: {body}");
    assert!(
        stack.upstream.http_requests().is_empty(),
        "{:?}",
        stack.upstream.http_requests()
    );

    // A header the gate does not read passes as it is; the call is decided.
    let (status, body) = raw_post(
        port,
        b"x-agent-id: alice\r\nx-trace: \xff\r\n",
        &call("deleteWorkspace"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -31001
    );
    let (status, _) = raw_post(
        port,
        b"x-agent-id: alice\r\nx-trace: \xff\r\n",
        &call("asyncExecuteCode"),
    )
    .await;
    assert!(
        status > 0 && status != 503,
        "forwarded and answered: {status}"
    );
    let forwarded = stack.upstream.http_requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(forwarded[0].header("x-trace"), Some("\u{fffd}"));
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}

/// The seventh header SECURITY.md lists: `authorization`, read when the
/// identity is `bearer_tokens`.
#[tokio::test]
async fn a_bearer_token_that_is_not_utf8_is_refused() {
    let policy = format!(
        r#"{{"version":"1","default":"allow","identity":{{"bearer_tokens":{{"{}":"ci-runner"}}}}}}"#,
        mcp_policy::policy::sha256_hex(b"t0ken")
    );
    let stack = Stack::start(&policy).await;
    let port = stack.envoy.port;
    assert_unreadable(
        "authorization",
        raw_post(
            port,
            b"authorization: Bearer t\xf6ken\r\n",
            &call("asyncExecuteCode"),
        )
        .await,
    );
    assert!(stack.upstream.http_requests().is_empty());
    // The same worker goes on: the right token passes.
    let (status, body) = raw_post(
        port,
        b"authorization: Bearer t0ken\r\n",
        &call("asyncExecuteCode"),
    )
    .await;
    assert!(status > 0 && status < 500, "{status}: {body}");
    assert_eq!(stack.upstream.http_requests().len(), 1);
    assert!(
        !stack.envoy.log().contains("panicked"),
        "{}",
        stack.envoy.log()
    );
}

/// One HTTP/2 (prior knowledge) POST to /mcp: `body` in one DATA frame
/// without END_STREAM, then a trailers frame; the status and JSON answer.
async fn h2_post_with_trailers(port: u16, body: &[u8]) -> (u16, Value) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderValue, Request};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(connection);
    let request = Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    stream
        .send_data(Bytes::copy_from_slice(body), false)
        .unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("0"));
    stream.send_trailers(trailers).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let status = response.status().as_u16();
    let mut answer = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = answer.data().await {
        let chunk = chunk.unwrap();
        let _ = answer.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    driver.abort();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// SECURITY.md: "a body followed by trailers is decided at the trailers (it
/// never reaches end_of_stream in the body callback)". Over HTTP/2 the
/// request's end is its trailers: a denied call ending so is answered by the
/// gate and never starts upstream; an allowed one is forwarded.
#[tokio::test]
async fn a_body_followed_by_trailers_is_decided_at_the_trailers() {
    let stack = Stack::start_json_upstream(MATRIX_POLICY).await;
    let port = stack.envoy.port;
    let (status, answer) = h2_post_with_trailers(port, call("deleteWorkspace").as_bytes()).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (200, &json!(-31001)),
        "{answer}"
    );
    assert!(
        stack.upstream.http_requests().is_empty(),
        "{:?}",
        stack.upstream.http_requests()
    );
    let (status, answer) = h2_post_with_trailers(port, call("asyncExecuteCode").as_bytes()).await;
    assert!(status < 500, "{status}: {answer}");
    let forwarded = stack.upstream.http_requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(
        forwarded[0].tool_name().as_deref(),
        Some("asyncExecuteCode")
    );
    assert!(!forwarded[0].incomplete);
}
