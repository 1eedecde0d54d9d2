//! Every lifecycle path of a stream, through the simulated Envoy: what
//! reaches the server, what the caller gets, what the counters keep.

use serde_json::{json, Value};

use super::sim::{flags, End, SimEnvoy, SimStream};
use super::*;
use crate::metrics::{DECISIONS, GRANT_DECISIONS};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A code-execution server's policy: `run` once a day per grant,
/// `secretTool` hidden, everything else denied.
const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "identity": { "header": "x-agent-id" },
  "hide": ["secretTool"],
  "tools": {
    "run": { "limits": [{ "counter": "run", "window": "day", "max": 1, "scope": "grant" }] },
    "read": {}
  }
}"#;

fn policy_with(extra: &str) -> String {
    POLICY.replacen('{', &format!("{{ {extra},"), 1)
}

fn call(id: u64, tool: &str) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"script":"print(1)"}}})
        .to_string()
        .into_bytes()
}

fn list(id: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#).into_bytes()
}

const POST: [(&str, &[u8]); 4] = [
    (":method", b"POST"),
    (":path", b"/mcp"),
    ("x-agent-id", b"alice"),
    ("content-type", b"application/json"),
];

fn headers_with<'a>(extra: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut headers: Vec<(&str, &[u8])> = POST.to_vec();
    headers.extend_from_slice(extra);
    headers
}

/// A call sent in full, in one piece.
fn post<'e>(envoy: &'e SimEnvoy, body: &[u8]) -> SimStream<'e> {
    let mut stream = envoy.stream();
    stream.send(&POST, &[body]);
    stream
}

const TOOLS: &str = r#"[{"name":"run"},{"name":"secretTool"},{"name":"read"}]"#;

fn listing(id: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{TOOLS}}}}}"#)
}

fn names(message: &Value) -> Vec<&str> {
    message["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn code_of(stream: &SimStream<'_>) -> Value {
    stream.downstream().json()["error"]["code"].clone()
}

// ---- The request path ----

#[test]
fn an_allowed_call_reaches_the_server_whole_and_is_audited_when_the_stream_ends() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &call(1, "read"));
    assert!(stream.upstream().complete);
    assert_eq!(stream.upstream().body, call(1, "read"));
    assert_eq!(stream.filter_state("mcp_policy.decision"), Some("allowed"));
    assert!(
        envoy.audit_lines().is_empty(),
        "written when the stream ends"
    );
    stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    stream.end(End::Completed);
    assert_eq!(envoy.sum(DECISIONS, &[("decision", "allowed")]), 1);
    assert_eq!(
        envoy.sum(
            DECISIONS,
            &[
                ("decision", "allowed"),
                ("kind", "tool"),
                ("target", "read")
            ]
        ),
        1
    );
    assert_eq!(envoy.sum(GRANT_DECISIONS, &[("decision", "allowed")]), 1);
    let audit = envoy.audit_lines();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["decision"], "allowed");
    assert_eq!(audit[0]["status"], 200);
}

#[test]
fn a_refused_call_never_reaches_the_server() {
    let envoy = SimEnvoy::new(POLICY);
    let stream = post(&envoy, &call(2, "deleteWorkspace"));
    assert!(!stream.upstream().started());
    assert!(stream.downstream().from_gate);
    assert_eq!(stream.downstream().status, Some(200));
    assert_eq!(code_of(&stream), -31001);
    assert_eq!(envoy.sum(DECISIONS, &[("decision", "denied")]), 1);
}

#[test]
fn a_body_in_pieces_is_held_until_complete() {
    let envoy = SimEnvoy::new(POLICY);
    let body = call(3, "read");
    let mut stream = envoy.stream();
    assert_eq!(stream.request_headers(&POST, false), Action::Pause);
    for piece in body.chunks(7) {
        assert!(
            !stream.upstream().started(),
            "nothing goes before the decision"
        );
        stream.request_body(piece, false);
    }
    assert_eq!(stream.request_body(b"", true), Action::Continue);
    assert_eq!(stream.upstream().body, body);
}

#[test]
fn a_body_followed_by_trailers_is_decided_at_the_trailers() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.request_body(&call(4, "deleteWorkspace"), false);
    assert_eq!(stream.request_trailers(), Action::Pause);
    assert!(!stream.upstream().started());
    assert_eq!(code_of(&stream), -31001);

    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.request_body(&call(5, "read"), false);
    assert_eq!(stream.request_trailers(), Action::Continue);
    assert!(stream.upstream().complete);
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_complete() {
    let envoy = SimEnvoy::new(&policy_with(r#""max_body_bytes": 64"#));
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.request_body(&[b' '; 50], false);
    stream.request_body(&[b' '; 50], false);
    assert_eq!(stream.downstream().status, Some(413));
    assert!(!stream.upstream().started());
}

#[test]
fn every_request_with_a_body_is_inspected_whatever_its_method() {
    // Some servers route methods case-insensitively: `post` is a POST to them.
    for method in ["post", "Post", "PUT", "PATCH", "GET", "DELETE", "BREW"] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = envoy.stream();
        let mut headers = POST.to_vec();
        headers[0] = (":method", method.as_bytes());
        stream.send(&headers, &[&call(6, "deleteWorkspace")]);
        assert!(!stream.upstream().started(), "{method}");
        assert_eq!(code_of(&stream), -31001, "{method}");
    }
}

#[test]
fn a_hidden_tool_is_answered_exactly_as_an_unlisted_one() {
    for extra in [r#""deny_as": "error""#, r#""deny_as": "tool_result""#] {
        let envoy = SimEnvoy::new(&policy_with(extra));
        let hidden = post(&envoy, &call(7, "secretTool"));
        let unlisted = post(&envoy, &call(7, "neverHeardOf"));
        let body = |stream: &SimStream<'_>| {
            String::from_utf8(stream.downstream().body.clone())
                .unwrap()
                .replace("secretTool", "NAME")
                .replace("neverHeardOf", "NAME")
        };
        assert_eq!(body(&hidden), body(&unlisted), "{extra}");
        assert_eq!(hidden.downstream().status, unlisted.downstream().status);
        assert_eq!(hidden.downstream().headers, unlisted.downstream().headers);
        // The operator still sees which it was.
        assert_eq!(hidden.filter_state("mcp_policy.decision"), Some("hidden"));
        assert_eq!(unlisted.filter_state("mcp_policy.decision"), Some("denied"));
    }
}

// ---- Router headers ----

#[test]
fn callers_cannot_steer_the_router_into_retries_or_timeouts() {
    let envoy = SimEnvoy::new(POLICY);
    let steering: Vec<(&str, &[u8])> = ROUTER_HEADERS
        .iter()
        .map(|name| (*name, &b"5"[..]))
        .collect();
    let mut stream = envoy.stream();
    stream.send(&headers_with(&steering), &[&call(8, "run")]);
    let upstream = stream.upstream().headers.clone().unwrap();
    for name in ROUTER_HEADERS {
        assert_eq!(upstream.raw(name), None, "{name} reached the router");
    }
    assert_eq!(upstream.get("x-agent-id"), Some("alice"));
    // GET streams too.
    let mut stream = envoy.stream();
    let mut get = headers_with(&steering);
    get[0] = (":method", b"GET");
    stream.send(&get, &[]);
    let upstream = stream.upstream().headers.clone().unwrap();
    assert!(ROUTER_HEADERS
        .iter()
        .all(|name| upstream.raw(name).is_none()));
}

// ---- Quota: taken for a forwarded call, kept unless it provably did not run ----

/// `run` may be called once a day: whether a second call passes says
/// whether the first one's quota came back.
fn second_call_allowed(envoy: &SimEnvoy) -> bool {
    let stream = post(envoy, &call(99, "run"));
    stream.upstream().complete
}

#[test]
fn quota_is_kept_when_the_client_hangs_up_after_the_call_was_forwarded() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &call(1, "run"));
    assert!(stream.upstream().complete);
    stream.end(End::ClientGone);
    assert!(!second_call_allowed(&envoy));
    // Even mid-answer.
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &call(1, "run"));
    stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
    stream.end(End::ClientGone);
    assert!(!second_call_allowed(&envoy));
}

#[test]
fn quota_is_kept_when_the_call_may_have_run() {
    type Outcome = fn(&mut SimStream<'_>);
    let cases: [(&str, Outcome); 5] = [
        ("the server answered 500", |s| {
            s.server_answers(500, &[], &[b"boom"])
        }),
        ("the server answered 502", |s| {
            s.server_answers(502, &[], &[])
        }),
        ("Envoy timed out", |s| {
            s.envoy_answers(
                504,
                "upstream_response_timeout",
                flags::UPSTREAM_REQUEST_TIMEOUT,
            )
        }),
        ("the server reset before answering", |s| {
            s.envoy_answers(
                503,
                "upstream_reset_before_response_started{remote_reset}",
                flags::UPSTREAM_REMOTE_RESET,
            )
        }),
        ("the connection was cut after the request went", |s| {
            s.envoy_answers(
                503,
                "upstream_reset_before_response_started{connection_termination}",
                flags::UPSTREAM_CONNECTION_TERMINATION,
            )
        }),
    ];
    for (what, outcome) in cases {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = post(&envoy, &call(1, "run"));
        outcome(&mut stream);
        stream.end(End::Completed);
        assert!(!second_call_allowed(&envoy), "{what}: quota came back");
    }
}

#[test]
fn quota_comes_back_when_the_call_provably_did_not_run() {
    type Outcome = fn(&mut SimStream<'_>);
    let cases: [(&str, Outcome); 4] = [
        ("Envoy could not connect", |s| {
            s.envoy_answers(
                503,
                "upstream_reset_before_response_started{remote_connection_failure}",
                flags::UPSTREAM_CONNECTION_FAILURE,
            )
        }),
        ("no healthy upstream", |s| {
            s.envoy_answers(503, "no_healthy_upstream", flags::NO_HEALTHY_UPSTREAM)
        }),
        ("the server answered 503", |s| {
            s.server_answers(503, &[], &[b"busy"])
        }),
        ("the server answered 429", |s| {
            s.server_answers(429, &[], &[])
        }),
    ];
    for (what, outcome) in cases {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = post(&envoy, &call(1, "run"));
        outcome(&mut stream);
        stream.end(End::Completed);
        assert!(second_call_allowed(&envoy), "{what}: quota kept");
        assert!(
            envoy
                .logs()
                .iter()
                .any(|(_, line)| line.contains("quota given back")),
            "{what}"
        );
    }
}

#[test]
fn a_connection_failure_after_the_server_was_reached_keeps_the_quota() {
    // With retries (configured on the route), a later attempt may fail to
    // connect after an earlier one reached the server.
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &call(1, "run"));
    stream.envoy_answers(
        503,
        "upstream_reset_before_response_started{remote_connection_failure}",
        flags::UPSTREAM_CONNECTION_FAILURE | flags::UPSTREAM_REMOTE_RESET,
    );
    stream.end(End::Completed);
    assert!(!second_call_allowed(&envoy));
}

// ---- Global limits: the held call ----

const SERVICE: &str = r#""rate_limit_service": { "cluster": "ratelimit", "timeout_ms": 50 }"#;

fn global_policy(failure_mode: &str) -> String {
    format!(
        r#"{{
  "version": "1", "default": "deny", "identity": {{ "header": "x-agent-id" }},
  {},
  "tools": {{ "run": {{ "limits": [
    {{ "counter": "local", "window": "day", "max": 1, "scope": "grant" }},
    {{ "counter": "fleet", "window": "minute", "max": 10, "scope": "grant", "store": "global" }}
  ] }} }}
}}"#,
        SERVICE.replace('}', &format!(r#", "failure_mode": "{failure_mode}" }}"#))
    )
}

/// RateLimitResponse { overall_code: OK }.
const SERVICE_OK: &[u8] = &[0x08, 0x01];
/// RateLimitResponse { overall_code: OVER_LIMIT, statuses: [{ code: OVER_LIMIT }] }.
const SERVICE_OVER: &[u8] = &[0x08, 0x02, 0x12, 0x02, 0x08, 0x02];

#[test]
fn a_call_with_global_limits_is_held_until_the_service_allows_it() {
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = post(&envoy, &call(1, "run"));
    assert!(
        !stream.upstream().started(),
        "held while the service decides"
    );
    let (token, request) = stream.calls()[0].clone();
    assert_eq!(request.cluster, "ratelimit");
    stream.service_answers(token, 0, SERVICE_OK);
    assert!(stream.upstream().complete);
    assert_eq!(stream.upstream().body, call(1, "run"));
}

#[test]
fn over_the_global_limit_the_local_quota_comes_back() {
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = post(&envoy, &call(1, "run"));
    let token = stream.calls()[0].0;
    stream.service_answers(token, 0, SERVICE_OVER);
    assert!(!stream.upstream().started());
    assert_eq!(code_of(&stream), -31002);
    stream.end(End::Completed);
    // The local limit (1 a day) has room again.
    let mut second = post(&envoy, &call(2, "run"));
    assert_eq!(second.calls().len(), 1, "the local limit let it through");
    let token = second.calls()[0].0;
    second.service_answers(token, 0, SERVICE_OK);
    assert!(second.upstream().complete);
}

#[test]
fn a_global_refusal_names_the_tool_a_meta_tool_runs_when_its_limit_refused() {
    let policy = format!(
        r#"{{
  "version": "1", "default": "allow", {SERVICE},
  "tools": {{
    "call_tool": {{ "invokes": {{ "name": "args.name", "arguments": "args.arguments" }},
                    "limits": [{{ "counter": "meta", "window": "minute", "max": 10, "scope": "grant", "store": "global" }}] }},
    "run": {{ "limits": [{{ "counter": "fleet", "window": "minute", "max": 10, "scope": "grant", "store": "global" }}] }}
  }}
}}"#
    );
    let envoy = SimEnvoy::new(&policy);
    // The service refuses the descriptor at `index`: the first is the
    // meta-tool's own limit, the second the inner tool's.
    for (index, named) in [(0u8, "call_tool"), (1, "run")] {
        let mut stream = post(&envoy, &meta_call(u64::from(index) + 1, "run", json!({})));
        let token = stream.calls()[0].0;
        let mut answer = vec![0x08, 0x02];
        for position in 0..2u8 {
            let code = if position == index { 0x02 } else { 0x01 };
            answer.extend([0x12, 0x02, 0x08, code]);
        }
        stream.service_answers(token, 0, &answer);
        assert!(!stream.upstream().started());
        let reply = stream.downstream().json();
        assert_eq!(reply["error"]["code"], -31002, "{index}");
        assert_eq!(reply["error"]["data"]["tool"], named, "{index}");
    }
}

#[test]
fn a_caller_who_leaves_while_the_service_decides_gets_the_local_quota_back() {
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = post(&envoy, &call(1, "run"));
    stream.end(End::ClientGone);
    assert!(!stream.upstream().started());
    let second = post(&envoy, &call(2, "run"));
    assert_eq!(second.calls().len(), 1, "local quota was given back");
}

#[test]
fn the_service_failing_follows_the_failure_mode() {
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = post(&envoy, &call(1, "run"));
    let token = stream.calls()[0].0;
    stream.service_answers(token, 14, b"");
    assert!(!stream.upstream().started());
    assert_eq!(code_of(&stream), -32603);

    let envoy = SimEnvoy::new(&global_policy("open"));
    let mut stream = post(&envoy, &call(1, "run"));
    let token = stream.calls()[0].0;
    stream.service_answers(token, 4, b"");
    assert!(stream.upstream().complete);
    stream.end(End::Completed);
    assert_eq!(envoy.sum(DECISIONS, &[("decision", "failed")]), 1);

    // A cluster Envoy refuses to call: decided at once, nothing held.
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = envoy.stream();
    stream.fail_dispatch();
    stream.send(&POST, &[&call(1, "run")]);
    assert!(!stream.upstream().started());
    assert_eq!(code_of(&stream), -32603);
}

#[test]
fn an_answer_for_another_call_is_ignored() {
    let envoy = SimEnvoy::new(&global_policy("closed"));
    let mut stream = post(&envoy, &call(1, "run"));
    let token = stream.calls()[0].0;
    stream.service_answers(token + 100, 0, SERVICE_OK);
    assert!(!stream.upstream().started());
    stream.service_answers(token, 0, SERVICE_OK);
    assert!(stream.upstream().complete);
}

// ---- Listings ----

fn listed(stream: &SimStream<'_>) -> Vec<String> {
    let body = String::from_utf8(stream.downstream().body.clone()).unwrap();
    let json = body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .next()
        .unwrap_or(&body)
        .to_string();
    let message: Value = serde_json::from_str(&json).unwrap();
    names(&message).into_iter().map(str::to_string).collect()
}

#[test]
fn listings_are_filtered_whatever_id_the_server_answers_with() {
    // Servers normalise ids: -0, 1.0 and 2e0 come back as 0, 1 and 2.
    for (sent, answered) in [("-0", "0"), ("1.0", "1"), ("2e0", "2"), ("\"x\"", "\"x\"")] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = post(&envoy, &list(sent));
        stream.server_answers(
            200,
            &[("content-type", b"application/json")],
            &[listing(answered).as_bytes()],
        );
        assert_eq!(listed(&stream), ["run", "read"], "id {sent}");
        assert_eq!(stream.downstream().header("content-length"), None);
    }
}

#[test]
fn an_event_stream_listing_is_filtered_in_any_pieces() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &list("3"));
    stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
    let events = format!("id: 1\ndata: {}\n\n", listing("3"));
    for piece in events.as_bytes().chunks(9) {
        stream.response_body(piece, false);
    }
    stream.response_body(b"", true);
    assert_eq!(listed(&stream), ["run", "read"]);
}

#[test]
fn listings_replayed_on_a_get_stream_are_filtered() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = envoy.stream();
    let mut get = headers_with(&[("last-event-id", b"41"), ("accept-encoding", b"gzip")]);
    get[0] = (":method", b"GET");
    stream.send(&get, &[]);
    let upstream = stream.upstream().headers.clone().unwrap();
    assert_eq!(upstream.raw("accept-encoding"), None, "asked for identity");
    stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
    stream.response_body(
        format!("id: 42\ndata: {}\n\n", listing("7")).as_bytes(),
        false,
    );
    assert_eq!(listed(&stream), ["run", "read"]);
}

/// What a replaying stream answers that no client reads as messages (a 405
/// in text, an HTML page) passes as it is; JSON and event streams are read.
#[test]
fn a_get_answered_in_text_passes_as_it_is() {
    let envoy = SimEnvoy::new(POLICY);
    let mut get_headers = headers_with(&[]);
    get_headers[0] = (":method", b"GET");
    let mut get = envoy.stream();
    get.send(&get_headers, &[]);
    get.server_answers(
        405,
        &[("content-type", b"text/plain"), ("content-length", b"18")],
        &[b"Method Not Allowed"],
    );
    assert_eq!(get.downstream().body, b"Method Not Allowed");
    assert_eq!(get.downstream().header("content-length"), Some(&b"18"[..]));
    let mut get = envoy.stream();
    get.send(&get_headers, &[]);
    get.server_answers(
        200,
        &[("content-type", b"application/json; charset=utf-8")],
        &[listing("7").as_bytes()],
    );
    assert_eq!(listed(&get), ["run", "read"]);
}

/// A successful answer to a GET is read as an event stream whatever its
/// Content-Type says, or without one: a client reads it so (the TypeScript
/// SDK does not look at the type), and a hidden entry must not reach it
/// under a mislabelled type.
#[test]
fn a_get_answered_as_events_under_another_type_is_filtered() {
    let envoy = SimEnvoy::new(POLICY);
    let mut get_headers = headers_with(&[("accept", b"application/json, Text/Event-Stream")]);
    get_headers[0] = (":method", b"GET");
    let events = format!("id: 42\ndata: {}\n\n", listing("7"));
    for content_type in [
        None,
        Some(&b"text/plain"[..]),
        Some(b"application/octet-stream"),
        Some(b"application/x-ndjson"),
        Some(b"text/html; charset=utf-8"),
    ] {
        let shown = format!("{:?}", content_type.map(String::from_utf8_lossy));
        let mut get = envoy.stream();
        get.send(&get_headers, &[]);
        let headers: Vec<(&str, &[u8])> = content_type
            .map(|value| ("content-type", value))
            .into_iter()
            .collect();
        get.server_answers(200, &headers, &[events.as_bytes()]);
        assert_eq!(listed(&get), ["run", "read"], "{shown}");
        // Text with no event in it passes as it is.
        let mut get = envoy.stream();
        get.send(&get_headers, &[]);
        get.server_answers(200, &headers, &[b"ok\n"]);
        assert_eq!(get.downstream().body, b"ok\n", "{shown}");
    }
    // A GET that did not ask for events (a download through the same
    // listener) gets its answer as it is.
    let mut plain_headers = headers_with(&[]);
    plain_headers[0] = (":method", b"GET");
    let mut get = envoy.stream();
    get.send(&plain_headers, &[]);
    get.server_answers(
        200,
        &[
            ("content-type", b"application/octet-stream"),
            ("content-length", b"5"),
        ],
        &[b"x\n\ny\n"],
    );
    assert_eq!(get.downstream().body, b"x\n\ny\n");
    assert_eq!(get.downstream().header("content-length"), Some(&b"5"[..]));
}

/// A GET with a body (or any request that is not a POST): servers answer it
/// as a GET stream and ignore the body, so its answers are read as a
/// bodiless GET's are, whatever call the body names.
#[test]
fn listings_replayed_on_a_get_stream_with_a_body_are_filtered() {
    let initialized = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    for method in [&b"GET"[..], b"get", b"PUT", b"DELETE"] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = envoy.stream();
        let mut get = headers_with(&[("last-event-id", b"41"), ("accept-encoding", b"gzip")]);
        get[0] = (":method", method);
        stream.send(&get, &[initialized]);
        let upstream = stream.upstream().headers.clone().unwrap();
        assert_eq!(upstream.raw("accept-encoding"), None, "asked for identity");
        stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
        stream.response_body(
            format!("id: 42\ndata: {}\n\n", listing("7")).as_bytes(),
            false,
        );
        assert_eq!(
            listed(&stream),
            ["run", "read"],
            "{}",
            String::from_utf8_lossy(method)
        );
    }
    // A POST of the same body is answered as that body: nothing to read.
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, initialized);
    stream.response_headers(200, &[("content-type", b"application/json")], false);
    stream.response_body(b"", true);
    assert!(stream.upstream().complete);
}

#[test]
fn with_headers_not_held_listings_are_filtered_without_asking_envoy_the_impossible() {
    // The Istio WasmPlugin mode: the headers go upstream before the body is
    // read, so accept-encoding must go before that (the old glue removed it
    // afterwards, Envoy refused, and the SDK's panic took the VM down).
    let envoy = SimEnvoy::new(&policy_with(r#""hold_request_headers": false"#));
    let mut stream = envoy.stream();
    let headers = headers_with(&[("accept-encoding", b"gzip, br")]);
    assert_eq!(stream.request_headers(&headers, false), Action::Continue);
    let upstream = stream.upstream().headers.clone().unwrap();
    assert_eq!(upstream.raw("accept-encoding"), None);
    stream.request_body(&list("1"), true);
    stream.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[listing("1").as_bytes()],
    );
    assert_eq!(listed(&stream), ["run", "read"]);
}

#[test]
fn with_headers_held_only_requests_whose_answers_are_read_lose_accept_encoding() {
    // Listings (rewritten) and 2026-07-28 calls (read for task ids and
    // request states) must come back unencoded; anything else keeps what
    // the caller asked for.
    let envoy = SimEnvoy::new(POLICY);
    let headers = headers_with(&[("accept-encoding", b"gzip")]);
    let mut stream = envoy.stream();
    stream.send(&headers, &[&list("1")]);
    assert_eq!(
        stream
            .upstream()
            .headers
            .as_ref()
            .unwrap()
            .raw("accept-encoding"),
        None
    );
    let mut current = headers.clone();
    current.extend_from_slice(&[
        ("mcp-protocol-version", &b"2026-07-28"[..]),
        ("mcp-method", b"tools/call"),
        ("mcp-name", b"read"),
    ]);
    let mut stream = envoy.stream();
    stream.send(&current, &[&call(2, "read")]);
    assert_eq!(
        stream
            .upstream()
            .headers
            .as_ref()
            .unwrap()
            .raw("accept-encoding"),
        None
    );
    for body in [
        call(3, "read"),
        br#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#.to_vec(),
    ] {
        let mut stream = envoy.stream();
        stream.send(&headers, &[&body]);
        assert_eq!(
            stream
                .upstream()
                .headers
                .as_ref()
                .unwrap()
                .raw("accept-encoding"),
            Some(&b"gzip"[..])
        );
    }
}

/// A body in another charset than UTF-8 is refused before it is read: with
/// UTF-7, `"+AG4-ame"` is `"name"` to a server that decodes it, and the
/// gate would decide on the decoy.
#[test]
fn a_body_in_another_charset_is_refused() {
    // POST's headers with these Content-Types in place of its own.
    let typed = |types: &[&'static [u8]]| {
        let mut headers: Vec<(&str, &[u8])> = POST[..3].to_vec();
        headers.extend(types.iter().map(|value| ("content-type", *value)));
        headers
    };
    let decoy = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","+AG4-ame":"deleteAll"}}"#;
    for content_type in [
        &b"application/json; charset=utf-7"[..],
        b"application/json;charset=UTF-16LE",
        b"application/json; charset=\"utf-7\"",
        b"application/json; charset=utf-8; charset=utf-7",
        b"application/json; charset=\"utf-8;x\"",
        b"application/json; charset=",
    ] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = envoy.stream();
        stream.send(&typed(&[content_type]), &[decoy]);
        let answer = stream.downstream();
        assert_eq!(
            answer.status,
            Some(415),
            "{:?}",
            String::from_utf8_lossy(content_type)
        );
        assert_eq!(answer.json()["error"]["code"], -32600);
        assert!(!stream.upstream().started());
    }
    // `charset` twice: the answer says so (not that the first is refused).
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = envoy.stream();
    stream.send(
        &typed(&[b"application/json; charset=utf-8; charset=utf-7"]),
        &[decoy],
    );
    assert_eq!(
        stream.downstream().json()["error"]["message"],
        "Content-Type names its charset more than once; name one, UTF-8, or none"
    );
    // Two Content-Type headers: the server might read either. Envoy passes
    // them on joined with a comma (its header map keeps one Content-Type),
    // so the filter sees that; both spellings are refused, and a comma
    // inside a quoted parameter is not a second media type.
    for (types, refused) in [
        (
            &[&b"application/json"[..], b"application/json; charset=utf-7"][..],
            true,
        ),
        (&[b"application/json,text/plain"], true),
        (&[b"application/json, application/json"], true),
        (&[b"text/plain; x=\"a\\\",b\", application/json"], true),
        (&[b"application/json; x=\"a,text/plain"], true),
        (&[b"application/json; x=\"a,b\""], false),
    ] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = envoy.stream();
        stream.send(&typed(types), &[&call(1, "read")]);
        let shown = String::from_utf8_lossy(types[0]).into_owned();
        assert_eq!(!stream.upstream().started(), refused, "{shown}");
        if refused {
            assert_eq!(stream.downstream().status, Some(400), "{shown}");
            assert_eq!(
                stream.downstream().json()["error"]["message"],
                "Invalid Request: header content-type is given more than once",
                "{shown}"
            );
        }
    }
    // UTF-8, however it is written, is read as ever.
    for content_type in [
        &b"application/json; charset=utf-8"[..],
        b"application/json;CHARSET=\"UTF-8\"",
        b"application/json; charset=utf8",
        b"text/plain",
    ] {
        let envoy = SimEnvoy::new(POLICY);
        let mut stream = envoy.stream();
        stream.send(&typed(&[content_type]), &[&call(1, "read")]);
        assert!(
            stream.upstream().complete,
            "{:?}",
            String::from_utf8_lossy(content_type)
        );
    }
}

#[test]
fn an_encoded_listing_is_replaced_by_an_error() {
    // One encoding, or a second header behind a first that says none (a
    // single-value read would see only the first).
    let encodings: [&[(&str, &[u8])]; 3] = [
        &[("content-encoding", b"gzip")],
        &[
            ("content-encoding", b"identity"),
            ("content-encoding", b"gzip"),
        ],
        &[("content-encoding", b""), ("content-encoding", b"gzip")],
    ];
    for content_type in ["application/json", "text/event-stream"] {
        for encoding in encodings {
            let envoy = SimEnvoy::new(POLICY);
            let mut stream = post(&envoy, &list("4"));
            let mut headers = vec![("content-type", content_type.as_bytes())];
            headers.extend_from_slice(encoding);
            stream.server_answers(
                200,
                &headers,
                &[b"\x1f\x8b\x08 compressed secretTool", b" more"],
            );
            let body = String::from_utf8(stream.downstream().body.clone()).unwrap();
            assert!(
                !body.contains("secretTool"),
                "{content_type} {encoding:?}: {body}"
            );
            assert!(body.contains("-32603"), "{content_type}: {body}");
            assert_eq!(stream.downstream().header("content-encoding"), None);
        }
    }
}

#[test]
fn an_unreadable_listing_is_replaced_by_an_error() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &list("5"));
    // Not JSON to this reader (a lone surrogate), but JSON to JavaScript's.
    let answer =
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secretTool","x":"\ud800"}]}}"#;
    stream.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[answer.as_bytes()],
    );
    let reply = stream.downstream().json();
    assert_eq!(reply["error"]["code"], -32603);
    assert_eq!(reply["id"], 5);
}

#[test]
fn a_json_listing_followed_by_trailers_is_filtered_at_the_trailers() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &list("6"));
    stream.response_headers(200, &[("content-type", b"application/json")], false);
    stream.response_body(listing("6").as_bytes(), false);
    stream.response_trailers();
    assert_eq!(listed(&stream), ["run", "read"]);
}

#[test]
fn listings_pass_untouched_for_callers_who_see_everything() {
    let envoy = SimEnvoy::new(r#"{"version": "1", "default": "allow"}"#);
    let mut stream = post(&envoy, &list("1"));
    let answer = listing("1");
    stream.server_answers(
        200,
        &[
            ("content-type", b"application/json"),
            ("content-length", b"99"),
        ],
        &[answer.as_bytes()],
    );
    assert_eq!(stream.downstream().body, answer.as_bytes());
    assert_eq!(
        stream.downstream().header("content-length"),
        Some(&b"99"[..])
    );
}

// ---- Headers not held: the server may answer first ----

#[test]
fn a_refusal_after_the_server_started_answering_never_asks_for_a_second_answer() {
    let envoy = SimEnvoy::new(&policy_with(r#""hold_request_headers": false"#));
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    assert!(stream.upstream().started());
    // The server answers before the body is complete (allowed once the
    // headers went upstream).
    stream.response_headers(400, &[], false);
    stream.request_body(&call(1, "deleteWorkspace"), true);
    assert!(
        stream.upstream().body.is_empty(),
        "the refused body never went"
    );
    assert!(!stream.downstream().from_gate);
}

#[test]
fn with_headers_not_held_an_answer_before_the_body_is_decided_is_filtered() {
    // The server has the headers and part of the body, and answers before
    // the gate has read the method: the answer is read as a listing could be.
    let envoy = SimEnvoy::new(&policy_with(r#""hold_request_headers": false"#));
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    let body = list("1");
    let (first, rest) = body.split_at(10);
    stream.request_body(first, false);
    stream.response_headers(200, &[("content-type", b"application/json")], false);
    stream.response_body(listing("1").as_bytes(), true);
    stream.request_body(rest, true);
    assert_eq!(listed(&stream), ["run", "read"]);
    // Split around the decision: the answer started, part of it held, and
    // then the body is decided (allowed, or refused with the answer already
    // going): the rest is filtered, not let through.
    for extra in ["", r#", "methods": {"tools/list": "deny"}"#] {
        let envoy = SimEnvoy::new(&policy_with(&format!(
            r#""hold_request_headers": false{extra}"#
        )));
        let answer = listing("1");
        let (head, tail) = answer.split_at(answer.len() / 2);
        for content_type in ["application/json", "text/event-stream"] {
            let mut stream = envoy.stream();
            stream.request_headers(&POST, false);
            stream.request_body(first, false);
            stream.response_headers(200, &[("content-type", content_type.as_bytes())], false);
            if content_type == "application/json" {
                stream.response_body(head.as_bytes(), false);
                stream.request_body(rest, true);
                stream.response_body(tail.as_bytes(), true);
            } else {
                stream.response_body(format!("data: {head}").as_bytes(), false);
                stream.request_body(rest, true);
                stream.response_body(format!("{tail}\n\n").as_bytes(), true);
            }
            assert_eq!(listed(&stream), ["run", "read"], "{extra} {content_type}");
        }
    }
    // An early answer that lists nothing passes as it came.
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.request_body(first, false);
    stream.response_headers(200, &[("content-type", b"application/json")], false);
    let answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    stream.response_body(answer, true);
    assert_eq!(stream.downstream().body, answer.to_vec());
}

#[test]
fn with_headers_not_held_a_refused_body_never_reaches_the_server() {
    let envoy = SimEnvoy::new(&policy_with(r#""hold_request_headers": false"#));
    let mut stream = envoy.stream();
    stream.send(&POST, &[&call(1, "deleteWorkspace")]);
    assert!(stream.upstream().started());
    assert!(stream.upstream().body.is_empty());
    assert!(!stream.upstream().complete);
    assert_eq!(code_of(&stream), -31001);
}

// ---- Callers ----

#[test]
fn a_caller_costs_the_same_memory_whatever_the_length_of_its_name() {
    let policy = r#"{"version": "1", "default": "allow",
      "tools": {"run": {"limits": [{"counter": "s", "window": "day", "max": 5, "scope": "session"}]}}}"#;
    let envoy = SimEnvoy::new(policy);
    let long = "s".repeat(50_000);
    for session in ["short", long.as_str()] {
        let mut stream = envoy.stream();
        stream.send(
            &headers_with(&[("mcp-session-id", session.as_bytes())]),
            &[&call(1, "run")],
        );
        assert!(stream.upstream().complete);
        stream.end(End::Completed);
    }
    let mut sizes: Vec<usize> = envoy
        .store
        .keys()
        .iter()
        .filter(|key| !key.ends_with("/table-key"))
        .map(|key| envoy.store.get(key).unwrap().unwrap().0.len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [32, 32, 40, 40],
        "slot values: window, count, 16-byte owner digest; the request ids' \
         claims in their sessions: expiry, the digests of the id and the grant"
    );
    let audit = envoy.audit_lines();
    assert_eq!(audit[0]["session"], "short");
    let written = audit[1]["session"].as_str().unwrap();
    assert!(
        written.starts_with("sha256:") && written.len() == 71,
        "{written}"
    );
}

/// MCP forbids reusing a request id within a session, and servers send an
/// answer to the stream that last sent its id: a `tools/list` answered on a
/// call's stream sent with the same id would pass unread. So an id is the
/// request's while it is in flight in its session: another request with it
/// is refused, until the first one's answer is complete or its stream ends.
#[test]
fn a_request_id_in_flight_in_a_session_is_not_taken_twice() {
    let envoy = SimEnvoy::new(POLICY);
    let in_session =
        |session: &'static str| headers_with(&[("mcp-session-id", session.as_bytes())]);
    let send = |session: &'static str, body: &[u8]| {
        let mut stream = envoy.stream();
        stream.send(&in_session(session), &[body]);
        stream
    };
    let refused = |stream: &SimStream<'_>, detail: &str, what: &str| {
        assert!(!stream.upstream().started(), "{what}");
        assert_eq!(stream.downstream().status, Some(400), "{what}");
        let answer = stream.downstream().json();
        assert_eq!(answer["error"]["code"], -32600, "{what}");
        let got = answer["error"]["data"]["detail"].as_str().unwrap();
        assert!(got.starts_with(detail), "{what}: {got}");
    };
    let in_use = "this request id is in use by another request of this session";
    let mut first = send("s-1", &list("7"));
    assert!(first.upstream().complete);
    // The same id while the listing runs: as a number, as the string of it
    // (servers that key by text take them for one), with `_meta` naming the
    // revision, or at 2026-07-28 with the session header all the same (the
    // header is what a server routes by).
    let with_meta = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}"#;
    for body in [call(7, "read"), list("\"7\""), with_meta.to_vec()] {
        refused(&send("s-1", &body), in_use, &String::from_utf8_lossy(&body));
    }
    let mut current = envoy.stream();
    let mut headers = in_session("s-1");
    headers.extend([
        ("mcp-protocol-version", &b"2026-07-28"[..]),
        ("mcp-method", b"tools/list"),
    ]);
    current.send(&headers, &[&list("7")]);
    refused(&current, in_use, "2026-07-28");
    // Numbers servers compare otherwise than as their integer text: refused
    // in a session whatever else is in flight.
    for id in [
        "7.0",
        "7e0",
        "9007199254740992",
        "-9007199254740992",
        "1e20",
        "0.5",
    ] {
        refused(
            &send("s-1", &list(id)),
            "in a session, a request id must be",
            id,
        );
    }
    // Another id, another session, no session: other ids.
    for (session, body) in [("s-1", call(8, "read")), ("s-2", call(7, "read"))] {
        let mut other = send(session, &body);
        assert!(other.upstream().complete, "{session}");
        other.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    }
    let unsessioned = post(&envoy, &list("7.0"));
    assert!(unsessioned.upstream().complete);
    // The listing's answer ends: the id is free again (a client that sends
    // it again once it has the answer is not refused).
    first.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[listing("7").as_bytes()],
    );
    let mut after = send("s-1", &call(7, "read"));
    assert!(after.upstream().complete);
    // The caller leaves before the answer: the server may still answer, on
    // whichever stream sends the id next, so the id stays taken a while.
    after.end(End::ClientGone);
    refused(&send("s-1", &list("7")), in_use, "after the caller left");
    // So does an answer Envoy makes itself (the route timed out).
    let mut timed_out = send("s-1", &call(10, "read"));
    timed_out.envoy_answers(504, "upstream_response_timeout", 0);
    timed_out.end(End::Completed);
    refused(&send("s-1", &list("10")), in_use, "after a timeout");
    // Two minutes on, both are free.
    envoy.set_time(1_800_000_000 + crate::bindings::ABANDONED_CLAIM_SECONDS + 1);
    assert!(send("s-1", &list("7")).upstream().complete);
    assert!(send("s-1", &list("10")).upstream().complete);
    // A request the gate answers holds nothing.
    let refused_call = send("s-1", &call(9, "secretTool"));
    assert!(!refused_call.upstream().started());
    assert!(send("s-1", &call(9, "read")).upstream().complete);
}

/// In monitor mode nothing is refused, a reused id neither.
#[test]
fn a_reused_request_id_passes_in_monitor_mode() {
    let envoy = SimEnvoy::new(&policy_with(r#""mode": "monitor""#));
    let headers = headers_with(&[("mcp-session-id", b"s-1")]);
    for _ in 0..2 {
        let mut stream = envoy.stream();
        stream.send(&headers, &[&list("7")]);
        assert!(stream.upstream().complete);
    }
}

#[test]
fn unreadable_caller_headers_are_refused_before_anything_else() {
    let envoy = SimEnvoy::new(POLICY);
    for header in [
        "x-agent-id",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
        "content-length",
        "content-encoding",
    ] {
        let mut stream = envoy.stream();
        let mut headers: Vec<(&str, &[u8])> = POST
            .iter()
            .filter(|(name, _)| *name != header)
            .copied()
            .collect();
        headers.push((header, b"\xff\xfe"));
        stream.send(&headers, &[&call(1, "read")]);
        assert!(!stream.upstream().started(), "{header}");
        assert_eq!(stream.downstream().status, Some(400), "{header}");
    }
}

#[test]
fn a_bearer_token_is_for_the_gate_not_the_server() {
    let token_hash = crate::policy::sha256_hex(b"s3cret");
    let policy = format!(
        r#"{{"version": "1", "default": "allow", "identity": {{"bearer_tokens": {{"{token_hash}": "alice"}}}}}}"#
    );
    let envoy = SimEnvoy::new(&policy);
    let mut stream = envoy.stream();
    stream.send(
        &headers_with(&[("authorization", b"Bearer s3cret")]),
        &[&call(1, "read")],
    );
    assert_eq!(
        stream
            .upstream()
            .headers
            .as_ref()
            .unwrap()
            .raw("authorization"),
        None
    );
    assert_eq!(stream.filter_state("mcp_policy.grant"), Some("alice"));
    let mut stream = envoy.stream();
    stream.send(
        &headers_with(&[("authorization", b"Bearer wrong")]),
        &[&call(1, "read")],
    );
    assert_eq!(stream.downstream().status, Some(401));
    assert!(!stream.upstream().started());
    stream.end(End::Completed);
    // Counted apart from policy denials.
    assert_eq!(envoy.sum(DECISIONS, &[("decision", "denied")]), 0);
    assert_eq!(
        envoy.sum(DECISIONS, &[("decision", "unauthorized"), ("kind", "none")]),
        1
    );
    assert_eq!(envoy.audit_lines()[0]["decision"], "unauthorized");
}

#[test]
fn monitor_mode_forwards_everything_and_records_the_decision() {
    let envoy = SimEnvoy::new(&policy_with(r#""mode": "monitor""#));
    let mut stream = post(&envoy, &call(1, "deleteWorkspace"));
    assert!(stream.upstream().complete);
    stream.server_answers(200, &[], &[b"{}"]);
    stream.end(End::Completed);
    let audit = envoy.audit_lines();
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["enforced"], false);
}

// ---- Tasks, multi-round-trip requests and meta-tools ----

fn raw(method: &str, id: u64, params: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})
        .to_string()
        .into_bytes()
}

fn as_grant(grant: &str) -> Vec<(&str, &[u8])> {
    let mut headers: Vec<(&str, &[u8])> = POST.to_vec();
    headers[2] = ("x-agent-id", grant.as_bytes());
    headers
}

/// Sends `body` as `grant`; returns the stream.
fn send_as<'e>(envoy: &'e SimEnvoy, grant: &str, body: &[u8]) -> SimStream<'e> {
    let mut stream = envoy.stream();
    stream.send(&as_grant(grant), &[body]);
    stream
}

/// A `tools/call` of `tool` as MCP 2026-07-28 sends it (headers mirror the body).
fn call_2026<'e>(envoy: &'e SimEnvoy, grant: &str, body: &[u8], tool: &str) -> SimStream<'e> {
    let mut headers = as_grant(grant);
    headers.push(("mcp-protocol-version", b"2026-07-28"));
    headers.push(("mcp-method", b"tools/call"));
    headers.push(("mcp-name", tool.as_bytes()));
    let mut stream = envoy.stream();
    stream.send(&headers, &[body]);
    stream
}

/// alice's `read` is answered with MCP 2026-07-28's flat `CreateTaskResult`
/// for `task-a`, in a JSON answer.
fn alice_creates_task_a(envoy: &SimEnvoy) {
    let mut created = call_2026(envoy, "alice", &call(1, "read"), "read");
    created.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"task-a","status":"working","ttlMs":60000}}"#],
    );
    created.end(End::Completed);
}

#[test]
fn a_task_belongs_to_the_grant_whose_call_created_it() {
    let envoy = SimEnvoy::new(POLICY);
    // MCP 2026-07-28's flat CreateTaskResult, in a JSON answer.
    alice_creates_task_a(&envoy);
    // MCP 2025-11-25's nested one, in an event stream: the call asked for a task.
    let asks = raw(
        "tools/call",
        2,
        json!({"name": "read", "arguments": {}, "task": {"ttl": 60000}}),
    );
    let mut created = send_as(&envoy, "alice", &asks);
    created.server_answers(
        200,
        &[("content-type", b"text/event-stream")],
        &[b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"task\":{\"taskId\":\"task-b\",\"status\":\"working\"}}}\n\n"],
    );
    for (grant, task, passes) in [
        ("alice", "task-a", true),
        ("alice", "task-b", true),
        ("bob", "task-a", false),
        ("alice", "never-created", false),
    ] {
        for method in ["tasks/get", "tasks/result", "tasks/cancel", "tasks/update"] {
            let stream = send_as(&envoy, grant, &raw(method, 9, json!({"taskId": task})));
            assert_eq!(
                stream.upstream().complete,
                passes,
                "{grant} {method} {task}"
            );
            if !passes {
                let reply = stream.downstream().json();
                assert_eq!(reply["error"]["code"], -32602, "{grant} {method} {task}");
                assert_eq!(
                    reply["error"]["message"],
                    "Failed to retrieve task: Task not found"
                );
            }
        }
    }
    // A listing of tasks keeps only the caller's own.
    let mut listing = send_as(&envoy, "bob", &raw("tasks/list", 10, json!({})));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":10,"result":{"tasks":[{"taskId":"task-a"},{"taskId":"task-b"},{"taskId":"bobs"}]}}"#],
    );
    assert_eq!(listing.downstream().json()["result"]["tasks"], json!([]));
    let mut listing = send_as(&envoy, "alice", &raw("tasks/list", 11, json!({})));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":11,"result":{"tasks":[{"taskId":"task-a"},{"taskId":"bobs"}]}}"#],
    );
    assert_eq!(
        listing.downstream().json()["result"]["tasks"],
        json!([{"taskId":"task-a"}])
    );
    // A server that numbers afresh (restarted) hands "task-a" out again, to
    // bob: the task is his now, and no longer alice's.
    let mut again = call_2026(&envoy, "bob", &call(13, "read"), "read");
    again.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":13,"result":{"resultType":"task","taskId":"task-a","status":"working","ttlMs":60000}}"#],
    );
    again.end(End::Completed);
    for (grant, passes) in [("bob", true), ("alice", false)] {
        let stream = send_as(
            &envoy,
            grant,
            &raw("tasks/get", 14, json!({"taskId": "task-a"})),
        );
        assert_eq!(stream.upstream().complete, passes, "{grant}");
    }
    // Listening for another grant's task is refused too.
    let listen = send_as(
        &envoy,
        "bob",
        &raw(
            "subscriptions/listen",
            12,
            json!({"notifications": {"taskIds": ["task-b"]}}),
        ),
    );
    assert!(!listen.upstream().started());
}

#[test]
fn a_callers_own_task_requests_are_recorded_as_allowed() {
    let envoy = SimEnvoy::new(POLICY);
    alice_creates_task_a(&envoy);
    let before = envoy.audit_lines().len();
    for (id, method, params) in [
        (2, "tasks/get", json!({"taskId": "task-a"})),
        (3, "tasks/cancel", json!({"taskId": "task-a"})),
        (
            4,
            "subscriptions/listen",
            json!({"notifications": {"taskIds": ["task-a"]}}),
        ),
    ] {
        let mut stream = send_as(&envoy, "alice", &raw(method, id, params));
        assert!(stream.upstream().complete, "{method}");
        stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
        stream.end(End::Completed);
        let audit = envoy.audit_lines();
        let last = audit.last().unwrap();
        assert_eq!(
            (
                &last["method"],
                &last["kind"],
                &last["target"],
                &last["decision"]
            ),
            (
                &json!(method),
                &json!("task"),
                &json!("task-a"),
                &json!("allowed")
            ),
            "{last}"
        );
    }
    assert_eq!(envoy.audit_lines().len(), before + 3);
    assert_eq!(
        envoy.sum(
            crate::metrics::DECISIONS,
            &[("decision", "allowed"), ("kind", "task")]
        ),
        3
    );
}

/// A GET stream (where servers replay answers on resumption, and the legacy
/// SSE transport sends every answer) may carry a `tasks/list` answer: it is
/// read for every caller, also one whose view hides nothing, and keeps only
/// the caller's tasks, as a POSTed listing does.
#[test]
fn tasks_replayed_on_a_get_stream_are_only_the_callers() {
    let policy = r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},"tools":{"read":{}}}"#;
    let envoy = SimEnvoy::new(policy);
    alice_creates_task_a(&envoy);
    let replay = br#"{"jsonrpc":"2.0","id":7,"result":{"tasks":[{"taskId":"task-a","statusMessage":"alice's job"}]}}"#;
    for (grant, method, body, shown) in [
        ("mallory", &b"GET"[..], None, json!([])),
        ("mallory", b"DELETE", None, json!([])),
        (
            "mallory",
            b"PUT",
            Some(&br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#[..]),
            json!([]),
        ),
        (
            "alice",
            b"GET",
            None,
            json!([{"taskId":"task-a","statusMessage":"alice's job"}]),
        ),
    ] {
        let mut stream = envoy.stream();
        let mut headers = as_grant(grant);
        headers[0] = (":method", method);
        headers.push(("last-event-id", b"41"));
        headers.push(("accept-encoding", b"gzip"));
        match body {
            Some(body) => stream.send(&headers, &[body]),
            None => stream.send(&headers, &[]),
        }
        let what = format!("{grant} {}", String::from_utf8_lossy(method));
        let upstream = stream.upstream().headers.clone().unwrap();
        assert_eq!(
            upstream.raw("accept-encoding"),
            None,
            "{what}: asked for identity"
        );
        stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
        let mut event = b"id: 42\ndata: ".to_vec();
        event.extend_from_slice(replay);
        event.extend_from_slice(b"\n\n");
        stream.response_body(&event, false);
        let body = String::from_utf8(stream.downstream().body.clone()).unwrap();
        let data = body
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .unwrap();
        let answer: Value = serde_json::from_str(data).unwrap();
        assert_eq!(answer["result"]["tasks"], shown, "{what}");
    }
}

/// The server answers request `id` with an `InputRequiredResult` handing
/// out `state`, and the stream ends.
fn answer_input_required(stream: &mut SimStream<'_>, id: u64, state: &str) {
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"resultType":"input_required","requestState":"{state}"}}}}"#
    );
    stream.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[answer.as_bytes()],
    );
    stream.end(End::Completed);
}

#[test]
fn a_multi_round_trip_call_counts_once_and_a_forged_state_counts() {
    // `run` once a day: the retry that carries the server's requestState is
    // the same call; any other state is a new one.
    let envoy = SimEnvoy::new(POLICY);
    let mut first = call_2026(&envoy, "alice", &call(1, "run"), "run");
    assert!(first.upstream().complete);
    first.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","requestState":"state-1","inputRequests":{"q":{"method":"elicitation/create","params":{}}}}}"#],
    );
    first.end(End::Completed);
    let retry = |id: u64, state: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"run","arguments":{},"requestState":state,"inputResponses":{"q":{"action":"accept"}}}})
            .to_string()
            .into_bytes()
    };
    let second = send_as(&envoy, "alice", &retry(2, "state-1"));
    assert!(second.upstream().complete, "the retry is not counted again");
    // Used once: the same state again, or a forged one, is a new call.
    for state in ["state-1", "forged"] {
        let again = send_as(&envoy, "alice", &retry(3, state));
        assert_eq!(
            again.downstream().json()["error"]["code"],
            -31002,
            "{state}"
        );
    }
    // Another grant cannot present alice's state: the server would resume
    // alice's call for bob. Refused before anything is counted.
    let envoy = SimEnvoy::new(POLICY);
    let mut first = call_2026(&envoy, "alice", &call(1, "run"), "run");
    first.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","requestState":"state-2"}}"#],
    );
    let bob = send_as(&envoy, "bob", &retry(2, "state-2"));
    assert!(!bob.upstream().started());
    let answer = bob.downstream().json();
    assert_eq!(answer["error"]["code"], -32602);
    assert_eq!(
        answer["error"]["data"]["detail"],
        "params.requestState was not issued for this call"
    );
    let bob_own = send_as(&envoy, "bob", &call(3, "run"));
    assert!(
        bob_own.upstream().complete,
        "bob's own call was not counted"
    );
    // Alice's retry is hers; after it, bob's replay is still refused.
    let alice = send_as(&envoy, "alice", &retry(4, "state-2"));
    assert!(alice.upstream().complete);
    let bob = send_as(&envoy, "bob", &retry(5, "state-2"));
    assert_eq!(bob.downstream().json()["error"]["code"], -32602);
}

/// A tool without limits: nothing to spare a retry, but the state its
/// answer hands out is still the caller's alone. A server whose states
/// repeat (the same state handed to two grants) has them refused to
/// neither.
#[test]
fn a_request_state_is_its_callers_alone_also_without_limits() {
    let envoy = SimEnvoy::new(POLICY);
    let retry = |id: u64, state: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"read","arguments":{},"requestState":state,"inputResponses":{"q":{"action":"accept"}}}})
            .to_string()
            .into_bytes()
    };
    let hand_out = |grant: &str, id: u64, state: &str| {
        let mut first = call_2026(&envoy, grant, &call(id, "read"), "read");
        answer_input_required(&mut first, id, state);
    };
    hand_out("alice", 1, "xfer-1");
    for (grant, passes) in [
        ("bob", false),
        ("alice", true),
        ("alice", true),
        ("bob", false),
    ] {
        let stream = call_2026(&envoy, grant, &retry(2, "xfer-1"), "read");
        assert_eq!(stream.upstream().complete, passes, "{grant}");
    }
    hand_out("alice", 3, "same");
    hand_out("bob", 4, "same");
    for grant in ["alice", "bob"] {
        let stream = call_2026(&envoy, grant, &retry(5, "same"), "read");
        assert!(stream.upstream().complete, "{grant}");
    }
}

/// A retry is spared only the window units its first request took: a retry
/// that changes what it costs, or the value it is counted under, counts as
/// a new call; a cap on calls in flight is taken again (the first
/// request's slot ended with its exchange).
#[test]
fn a_retry_is_spared_only_what_its_first_request_took() {
    let policy = r#"{
      "version": "1", "default": "deny",
      "identity": { "header": "x-agent-id" },
      "tools": {
        "export": { "limits": [{ "counter": "rows", "window": "day", "max": 100, "scope": "grant", "cost_from": "args.rows" }] },
        "merge": { "limits": [{ "counter": "merges", "window": "day", "max": 1, "scope": "grant", "per": "args.repo" }] },
        "exec": { "limits": [{ "counter": "inflight", "concurrent": 1, "scope": "grant" }] }
      }
    }"#;
    let body = |id: u64, tool: &str, arguments: Value, state: Option<&str>| {
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some(state) = state {
            params["requestState"] = json!(state);
            params["inputResponses"] = json!({"q": {"action": "accept"}});
        }
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params})
            .to_string()
            .into_bytes()
    };
    let input_required =
        |stream: &mut SimStream<'_>, state: &str| answer_input_required(stream, 1, state);
    let envoy = SimEnvoy::new(policy);
    // A budget: 0 rows first, then the retry asks for all 100 of them.
    let mut first = call_2026(
        &envoy,
        "alice",
        &body(1, "export", json!({"rows": 0}), None),
        "export",
    );
    assert!(first.upstream().complete);
    input_required(&mut first, "s-export");
    let retry = call_2026(
        &envoy,
        "alice",
        &body(2, "export", json!({"rows": 100}), Some("s-export")),
        "export",
    );
    assert!(retry.upstream().complete, "100 rows fit the budget");
    let more = call_2026(
        &envoy,
        "alice",
        &body(3, "export", json!({"rows": 1}), None),
        "export",
    );
    assert_eq!(
        more.downstream().json()["error"]["code"],
        -31002,
        "the retry's 100 rows were taken"
    );
    // Counted per repository: the retry names another one.
    let mut first = call_2026(
        &envoy,
        "alice",
        &body(4, "merge", json!({"repo": "a"}), None),
        "merge",
    );
    input_required(&mut first, "s-merge");
    let other = call_2026(
        &envoy,
        "alice",
        &body(5, "merge", json!({"repo": "b"}), Some("s-merge")),
        "merge",
    );
    assert!(other.upstream().complete, "repository b's first merge");
    let again = call_2026(
        &envoy,
        "alice",
        &body(6, "merge", json!({"repo": "b"}), None),
        "merge",
    );
    assert_eq!(
        again.downstream().json()["error"]["code"],
        -31002,
        "the retry was counted for b"
    );
    // The same charges: spared.
    let mut first = call_2026(
        &envoy,
        "bob",
        &body(7, "merge", json!({"repo": "a"}), None),
        "merge",
    );
    input_required(&mut first, "s-bob");
    let spared = call_2026(
        &envoy,
        "bob",
        &body(8, "merge", json!({"repo": "a"}), Some("s-bob")),
        "merge",
    );
    assert!(
        spared.upstream().complete,
        "the same merge, not counted again"
    );
    // One call in flight: a retry in flight holds the slot like any call.
    let mut first = call_2026(&envoy, "carol", &body(9, "exec", json!({}), None), "exec");
    input_required(&mut first, "s-exec");
    let retry = call_2026(
        &envoy,
        "carol",
        &body(10, "exec", json!({}), Some("s-exec")),
        "exec",
    );
    assert!(retry.upstream().complete);
    let beside = call_2026(&envoy, "carol", &body(11, "exec", json!({}), None), "exec");
    assert_eq!(
        beside.downstream().json()["error"]["code"],
        -31002,
        "the retry holds the only slot"
    );
}

#[test]
fn a_meta_tool_runs_only_what_the_inner_tool_may() {
    let policy = r#"{
      "version": "1", "default": "deny",
      "hide": ["secretTool"],
      "tools": {
        "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } },
        "run": { "limits": [{ "counter": "run", "window": "day", "max": 1, "scope": "grant" }] },
        "write": { "deny_if": { "args.path": { "regex": "^/etc" } } },
        "deleteWorkspace": { "action": "deny", "reason": "destructive" }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let meta = |id: u64, name: &str, arguments: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"call_tool","arguments":{"name":name,"arguments":arguments}}})
            .to_string()
            .into_bytes()
    };
    let denied = post(&envoy, &meta(1, "deleteWorkspace", json!({})));
    let reply = denied.downstream().json();
    assert_eq!(reply["error"]["data"]["rule"], "/tools/deleteWorkspace");
    assert_eq!(reply["error"]["data"]["tool"], "deleteWorkspace");
    assert!(!denied.upstream().started());
    // The inner tool's argument rules and limits apply.
    assert!(
        !post(&envoy, &meta(2, "write", json!({"path": "/etc/passwd"})))
            .upstream()
            .started()
    );
    assert!(
        post(&envoy, &meta(3, "write", json!({"path": "/tmp/x"})))
            .upstream()
            .complete
    );
    assert!(post(&envoy, &meta(4, "run", json!({}))).upstream().complete);
    assert_eq!(
        post(&envoy, &meta(5, "run", json!({}))).downstream().json()["error"]["code"],
        -31002
    );
    // Inner arguments that are not an object (a JSON text in a string, a
    // list, a number) are refused: the inner tool's rules cannot read them.
    for (id, arguments) in [
        (20, json!("{\"path\":\"/etc/passwd\"}")),
        (21, json!([{"path": "/etc/passwd"}])),
        (22, json!(5)),
        (23, json!(true)),
    ] {
        let refused = post(&envoy, &meta(id, "write", arguments.clone()));
        assert!(!refused.upstream().started(), "{arguments}");
        let reply = refused.downstream().json();
        assert_eq!(reply["error"]["code"], -31001, "{arguments}");
        assert!(
            reply["error"]["data"]["reason"]
                .as_str()
                .unwrap()
                .contains("must be an object"),
            "{reply}"
        );
    }
    // None, or null, is a call without arguments, as a direct one may be.
    assert!(
        post(&envoy, &meta(24, "write", Value::Null))
            .upstream()
            .complete
    );
    // A hidden inner tool looks missing; an unlisted one is denied.
    assert_eq!(
        post(&envoy, &meta(6, "secretTool", json!({})))
            .downstream()
            .json()["error"]["code"],
        -31001
    );
    assert!(!post(&envoy, &meta(7, "unlisted", json!({})))
        .upstream()
        .started());
    // Without a name there is nothing to decide: refused.
    let nameless = post(&envoy, &json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"call_tool","arguments":{}}}).to_string().into_bytes());
    assert_eq!(nameless.downstream().json()["error"]["code"], -31001);
    // The audit line names both.
    let mut allowed = post(&envoy, &meta(9, "write", json!({"path": "/tmp/y"})));
    allowed.server_answers(200, &[], &[b"{}"]);
    allowed.end(End::Completed);
    let audit = envoy.audit_lines();
    let last = audit.last().unwrap();
    assert_eq!(
        (last["tool"].as_str(), last["invokes"].as_str()),
        (Some("call_tool"), Some("write"))
    );
}

#[test]
fn annotations_the_server_lists_can_only_make_decisions_stricter() {
    let policy = r#"{
      "version": "1", "default": "allow",
      "annotations": {
        "destructiveHint": { "action": "deny", "reason": "no destructive tools here" },
        "readOnlyHint": { "is": false, "limits": [{ "counter": "writes", "window": "day", "max": 1, "scope": "grant" }] }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    // Before any listing, nothing is known of the tools: decided without.
    assert!(post(&envoy, &call(1, "wipe")).upstream().complete);
    let mut listing = post(&envoy, &list("2"));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[
            {"name":"wipe","annotations":{"destructiveHint":true}},
            {"name":"edit","annotations":{"readOnlyHint":false,"destructiveHint":false}},
            {"name":"look","annotations":{"readOnlyHint":true}},
            {"name":"plain"}]}}"#],
    );
    let wipe = post(&envoy, &call(3, "wipe")).downstream().json();
    assert_eq!(
        wipe["error"]["data"]["rule"],
        "/annotations/destructiveHint"
    );
    assert_eq!(wipe["error"]["data"]["reason"], "no destructive tools here");
    assert!(post(&envoy, &call(4, "edit")).upstream().complete);
    assert_eq!(
        post(&envoy, &call(5, "edit")).downstream().json()["error"]["code"],
        -31002
    );
    for tool in ["look", "plain", "look", "plain"] {
        assert!(post(&envoy, &call(6, tool)).upstream().complete, "{tool}");
    }
    // An annotation rule cannot allow.
    let error = Plugin::configure(
        br#"{"version":"1","default":"deny","annotations":{"readOnlyHint":{"action":"allow"}}}"#,
    )
    .err()
    .unwrap();
    assert!(error.contains("can only deny or limit"), "{error}");
}

fn meta_call(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"call_tool","arguments":{"name":tool,"arguments":arguments}}})
        .to_string()
        .into_bytes()
}

/// Lists `tools` (a JSON array) as the server's answer to `tools/list`.
fn server_lists(envoy: &SimEnvoy, tools: &str) {
    let mut listing = post(envoy, &list("100"));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[format!(r#"{{"jsonrpc":"2.0","id":100,"result":{{"tools":{tools}}}}}"#).as_bytes()],
    );
    listing.end(End::Completed);
}

#[test]
fn a_meta_tool_runs_a_tool_under_that_tools_annotation_rules() {
    let policy = r#"{
      "version": "1", "default": "allow",
      "tools": { "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } } },
      "annotations": {
        "openWorldHint": { "action": "deny", "reason": "no open-world tools" },
        "readOnlyHint": { "is": false, "limits": [{ "counter": "writes", "window": "day", "max": 1, "scope": "grant" }] }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    server_lists(
        &envoy,
        r#"[{"name":"call_tool","annotations":{"openWorldHint":false,"readOnlyHint":true}},
            {"name":"world","annotations":{"openWorldHint":true}},
            {"name":"edit","annotations":{"readOnlyHint":false}}]"#,
    );
    // Refused as a direct call of it would be, and the answer names it.
    let world = post(&envoy, &meta_call(1, "world", json!({})));
    assert!(!world.upstream().started());
    let reply = world.downstream().json();
    assert_eq!(reply["error"]["data"]["rule"], "/annotations/openWorldHint");
    assert_eq!(reply["error"]["data"]["tool"], "world");
    // Its annotation rule's limits count it, whichever way it is called.
    let mut first = post(&envoy, &meta_call(2, "edit", json!({})));
    assert!(first.upstream().complete);
    first.server_answers(200, &[], &[b"{}"]);
    first.end(End::Completed);
    let again = post(&envoy, &meta_call(3, "edit", json!({})))
        .downstream()
        .json();
    assert_eq!(again["error"]["code"], -31002);
    assert_eq!(again["error"]["data"]["tool"], "edit");
    assert_eq!(
        post(&envoy, &call(4, "edit")).downstream().json()["error"]["code"],
        -31002
    );
    assert!(
        post(&envoy, &meta_call(5, "plain", json!({})))
            .upstream()
            .complete
    );
    // The meta-tool's own hints still decide its calls, under its name.
    server_lists(
        &envoy,
        r#"[{"name":"call_tool","annotations":{"openWorldHint":true}}]"#,
    );
    let own = post(&envoy, &meta_call(6, "plain", json!({})))
        .downstream()
        .json();
    assert_eq!(own["error"]["data"]["rule"], "/annotations/openWorldHint");
    assert_eq!(own["error"]["data"]["tool"], "call_tool");
}

#[test]
fn a_meta_tools_limit_refusals_name_the_tool_it_runs() {
    let policy = r#"{
      "version": "1", "default": "allow",
      "all_tools": { "limits": [{ "counter": "all", "window": "day", "max": 3, "scope": "grant" }] },
      "tools": {
        "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" },
                       "limits": [{ "counter": "meta", "window": "day", "max": 5, "scope": "grant" }] },
        "once": { "limits": [{ "counter": "once", "window": "day", "max": 1, "scope": "grant" }] }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    assert!(
        post(&envoy, &meta_call(1, "once", json!({})))
            .upstream()
            .complete
    );
    let once = post(&envoy, &meta_call(2, "once", json!({})))
        .downstream()
        .json();
    assert_eq!(
        (&once["error"]["code"], &once["error"]["data"]["tool"]),
        (&json!(-31002), &json!("once"))
    );
    assert!(
        post(&envoy, &meta_call(3, "other", json!({})))
            .upstream()
            .complete
    );
    assert!(post(&envoy, &call(4, "other")).upstream().complete);
    // all_tools counts tools run: a direct call of it would be refused so.
    let all = post(&envoy, &meta_call(5, "other", json!({})))
        .downstream()
        .json();
    assert_eq!(
        (&all["error"]["data"]["rule"], &all["error"]["data"]["tool"]),
        (&json!("/all_tools/limits/0"), &json!("other"))
    );
}

#[test]
fn letter_case_variants_of_a_listed_tool_are_decided_by_its_annotations() {
    let policy = r#"{
      "version": "1", "default": "allow",
      "tools": { "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } } },
      "annotations": {
        "destructiveHint": { "action": "deny", "reason": "no destructive tools here" },
        "readOnlyHint": { "is": false, "action": "deny" }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    server_lists(
        &envoy,
        r#"[{"name":"wipe","annotations":{"destructiveHint":true}},
            {"name":"Look","annotations":{"readOnlyHint":true}},
            {"name":"look","annotations":{"readOnlyHint":false}},
            {"name":"read","annotations":{"readOnlyHint":true}}]"#,
    );
    // A server that matches names loosely would run wipe.
    for (id, body) in [
        (1, call(1, "Wipe")),
        (2, call(2, "WIPE")),
        (3, meta_call(3, "wIpe", json!({}))),
    ] {
        let refused = post(&envoy, &body);
        assert!(!refused.upstream().started(), "call {id}");
        assert_eq!(
            refused.downstream().json()["error"]["data"]["rule"],
            "/annotations/destructiveHint",
            "call {id}"
        );
    }
    // Two listed tools fold alike: each listed name is decided by its own
    // hints, a name listed in neither spelling by both.
    assert!(post(&envoy, &call(4, "Look")).upstream().complete);
    for (id, tool) in [(5, "look"), (6, "LOOK")] {
        assert_eq!(
            post(&envoy, &call(id, tool)).downstream().json()["error"]["data"]["rule"],
            "/annotations/readOnlyHint",
            "{tool}"
        );
    }
    for (id, tool) in [(7, "read"), (8, "READ")] {
        assert!(post(&envoy, &call(id, tool)).upstream().complete, "{tool}");
    }
    // A listing in pages: the spellings of one name on two pages add up,
    // whichever page comes last.
    server_lists(
        &envoy,
        r#"[{"name":"Wipe","annotations":{"readOnlyHint":true}}]"#,
    );
    assert!(post(&envoy, &call(9, "Wipe")).upstream().complete);
    assert_eq!(
        post(&envoy, &call(10, "WIPE")).downstream().json()["error"]["data"]["rule"],
        "/annotations/destructiveHint"
    );
}

#[test]
fn annotations_are_learned_from_a_filtered_listing_in_several_pieces() {
    // hide filters every listing, so a JSON answer is held until it is
    // whole, and Envoy hands the whole buffer over at every callback.
    let policy = r#"{
      "version": "1", "default": "allow", "hide": ["secret"],
      "annotations": { "destructiveHint": { "action": "deny", "reason": "no destructive tools here" } }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let mut listing = post(&envoy, &list("1"));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"wipe","annot"#,
            br#"ations":{"destructiveHint":true}},{"name":"sec"#,
            br#"ret"},{"name":"plain"}]}}"#,
        ],
    );
    let listed = listing.downstream().json();
    assert_eq!(
        listed["result"]["tools"],
        json!([{"name":"wipe","annotations":{"destructiveHint":true}},{"name":"plain"}])
    );
    let wipe = post(&envoy, &call(2, "wipe")).downstream().json();
    assert_eq!(
        wipe["error"]["data"]["rule"],
        "/annotations/destructiveHint"
    );
    assert!(post(&envoy, &call(3, "plain")).upstream().complete);
}

#[test]
fn a_listing_nothing_is_hidden_from_is_still_marked_private_when_views_differ() {
    // admin sees every tool, alice not secretTool: a shared cache must not
    // serve admin's (public) listing to alice.
    let envoy = SimEnvoy::new(&policy_with(r#""grants": {"admin": {"hide": []}}"#));
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secretTool"},{"name":"read"}],"cacheScope":"public","ttlMs":60000}}"#;
    for (grant, tools) in [
        ("admin", json!(["secretTool", "read"])),
        ("alice", json!(["read"])),
    ] {
        let mut stream = send_as(&envoy, grant, &list("1"));
        stream.server_answers(
            200,
            &[("content-type", b"application/json")],
            &[answer.as_bytes()],
        );
        let listed = stream.downstream().json();
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap())
            .collect();
        assert_eq!(json!(names), tools, "{grant}");
        assert_eq!(listed["result"]["cacheScope"], "private", "{grant}");
    }
    // One view for everybody: nothing to protect, the answer passes as it came.
    let envoy = SimEnvoy::new(r#"{"version":"1","default":"allow"}"#);
    let mut stream = post(&envoy, &list("1"));
    stream.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[answer.as_bytes()],
    );
    assert_eq!(stream.downstream().body, answer.as_bytes().to_vec());
}

#[test]
fn a_task_is_bound_as_soon_as_its_event_passes_not_when_the_stream_ends() {
    let envoy = SimEnvoy::new(POLICY);
    let mut created = call_2026(&envoy, "alice", &call(1, "read"), "read");
    created.response_headers(200, &[("content-type", b"text/event-stream")], false);
    created.response_body(b"id: 0\ndata:\n\n", false);
    created.response_body(
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"task\",\"taskId\":\"early\"}}\n\n",
        false,
    );
    // The caller has its task id and asks at once; the stream is still open.
    let get = send_as(
        &envoy,
        "alice",
        &raw("tasks/get", 2, json!({"taskId": "early"})),
    );
    assert!(get.upstream().complete);
    created.response_body(b"", true);
}

#[test]
fn no_audit_line_is_formatted_when_envoy_would_drop_it() {
    let envoy = SimEnvoy::new(POLICY);
    envoy.set_log_level(Level::Warn);
    let mut stream = post(&envoy, &call(1, "deleteWorkspace"));
    stream.end(End::Completed);
    assert!(envoy.audit_lines().is_empty());
    // The decision still reaches the access log (filter state) and the counters.
    assert_eq!(stream.filter_state("mcp_policy.decision"), Some("denied"));
    assert_eq!(
        envoy.sum(crate::metrics::DECISIONS, &[("decision", "denied")]),
        1
    );
    // Raised again: seen once the level is read again, the next second.
    envoy.set_log_level(Level::Info);
    envoy.set_time(1_800_000_001);
    let mut stream = post(&envoy, &call(2, "deleteWorkspace"));
    stream.end(End::Completed);
    assert_eq!(envoy.audit_lines().len(), 1);
}

/// Reading Envoy's log level is a call into Envoy: it is read at most once
/// a second per VM, by the clock the stream read anyway, so a change
/// (`/logging?wasm=warning`) takes effect within a second, and the streams
/// in between pay nothing for it.
#[test]
fn envoy_log_level_is_read_at_most_once_a_second() {
    let envoy = SimEnvoy::new(POLICY);
    envoy.set_time(1_800_000_000);
    for id in 0..5 {
        post(&envoy, &call(id, "deleteWorkspace")).end(End::Completed);
    }
    assert_eq!(envoy.log_level_reads(), 1);
    assert_eq!(envoy.audit_lines().len(), 5);
    // Lowered within the second: the streams of that second still log.
    envoy.set_log_level(Level::Warn);
    post(&envoy, &call(5, "deleteWorkspace")).end(End::Completed);
    assert_eq!((envoy.log_level_reads(), envoy.audit_lines().len()), (1, 6));
    // The next second reads it again, and the line is no longer written.
    envoy.set_time(1_800_000_001);
    for id in 6..9 {
        post(&envoy, &call(id, "deleteWorkspace")).end(End::Completed);
    }
    assert_eq!((envoy.log_level_reads(), envoy.audit_lines().len()), (2, 6));
    // A stream that ends without a decision to record reads nothing.
    envoy.set_time(1_800_000_002);
    let mut get = envoy.stream();
    get.request_headers(&[(":method", b"GET"), (":path", b"/mcp")], true);
    get.end(End::Completed);
    assert_eq!(envoy.log_level_reads(), 2);
}

/// Each call across the Envoy/wasm boundary costs about a microsecond in V8:
/// the budget of an allowed call is a test, so a change that adds crossings
/// is seen. `make bench`'s cell (6x) makes this list of calls from a
/// trivial filter (`mimic` in bench/trivial-filter/src/lib.rs), to measure
/// what they cost in Envoy apart from the module's own code: a change to
/// the list here changes it there.
#[test]
fn an_allowed_call_crosses_into_envoy_a_bounded_number_of_times() {
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = post(&envoy, &call(1, "run"));
    let request = stream.host_calls();
    stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    let response = stream.host_calls() - request;
    stream.end(End::Completed);
    let end = stream.host_calls() - request - response;
    // Request: the clock, the headers, the body, the counter (read and
    // compare-and-swap), two counters bumped, three filter-state values.
    // Response: nothing (a legacy call's answer is not read). End: the
    // response code, the clock, Envoy's log level (the first stream of the
    // second reads it), the audit record as filter state (the JSON access
    // log), the audit line. The first stream of a plugin also reads the
    // counter tables' key and, the store being empty, writes it: 2 more,
    // once.
    assert_eq!(
        (request, response, end),
        (11 + 2, 0, 5),
        "request, response, end"
    );
    // The next allowed call in the same second (another grant: `run`
    // allows one call per grant a day): the level is known.
    let mut again = send_as(&envoy, "bob", &call(2, "run"));
    again.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    again.end(End::Completed);
    assert_eq!(again.host_calls(), 15);
    // A denied call: no counter to take, but the answer, the rule's filter
    // state and the audit record's.
    let mut denied = post(&envoy, &call(3, "deleteWorkspace"));
    denied.end(End::Completed);
    assert_eq!(denied.host_calls(), 15);
    // In a session, the id is claimed (a read of its first probe, free in
    // this empty table, and the write) and released once the server's
    // answer ends (its code details, the clock, the read, the write): 6
    // more. (In a table whose slots have all been used, the claim reads up
    // to its 8 probes.)
    let mut in_session = envoy.stream();
    in_session.send(
        &[
            (":method", b"POST"),
            (":path", b"/mcp"),
            ("x-agent-id", b"carol"),
            ("content-type", b"application/json"),
            ("mcp-session-id", b"s-1"),
        ],
        &[&call(4, "run")],
    );
    let request = in_session.host_calls();
    in_session.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
    let response = in_session.host_calls() - request;
    in_session.end(End::Completed);
    let end = in_session.host_calls() - request - response;
    assert_eq!((request, response, end), (11 + 2, 4, 4));
}

#[test]
fn at_2026_07_28_a_session_id_names_nothing_and_counts_under_the_grant() {
    // The revision has no sessions: an invented Mcp-Session-Id per call must
    // not make a per-session limit unlimited.
    let policy = r#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},
      "tools":{"exec":{"limits":[{"counter":"exec","window":"hour","max":1,"scope":"session"}]}}}"#;
    let envoy = SimEnvoy::new(policy);
    let body =
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exec","arguments":{},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}})
        .to_string()
        .into_bytes();
    let send = |session: &str| {
        let mut headers = as_grant("alice");
        headers.push(("mcp-protocol-version", b"2026-07-28"));
        headers.push(("mcp-method", b"tools/call"));
        headers.push(("mcp-name", b"exec"));
        headers.push(("mcp-session-id", session.as_bytes()));
        let mut stream = envoy.stream();
        stream.send(&headers, &[&body]);
        stream
    };
    assert!(send("made-up-1").upstream().complete);
    for session in ["made-up-2", "made-up-3"] {
        assert_eq!(code_of(&send(session)), -31002, "{session}");
    }
    // The header alone says the revision: the body need not repeat it.
    let bare =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exec","arguments":{}}}"#;
    for (grant, session, passes) in [("dave", "made-up-4", true), ("dave", "made-up-5", false)] {
        let mut headers = as_grant(grant);
        headers.push(("mcp-protocol-version", b"2026-07-28"));
        headers.push(("mcp-method", b"tools/call"));
        headers.push(("mcp-name", b"exec"));
        headers.push(("mcp-session-id", session.as_bytes()));
        let mut stream = envoy.stream();
        stream.send(&headers, &[bare]);
        assert_eq!(stream.upstream().complete, passes, "{session}");
    }
    // At 2025-11-25 a session is the server's: each counts apart.
    let legacy = |session: &str, id: u64| {
        let mut stream = envoy.stream();
        stream.send(
            &headers_with(&[("mcp-session-id", session.as_bytes())]),
            &[&call(id, "exec")],
        );
        stream
    };
    assert!(legacy("s-1", 2).upstream().complete);
    assert!(legacy("s-2", 3).upstream().complete);
    assert_eq!(code_of(&legacy("s-1", 4)), -31002);
}

#[test]
fn a_header_the_gate_reads_given_twice_is_refused() {
    let envoy = SimEnvoy::new(POLICY);
    for (name, first, second) in [
        ("x-agent-id", &b"alice"[..], &b"intern"[..]),
        ("x-agent-id", b"alice", b"\xff\xfe"),
        ("mcp-method", b"tools/call", b"tools/list"),
        ("mcp-name", b"read", b"deleteWorkspace"),
        ("mcp-session-id", b"a", b"b"),
        ("mcp-protocol-version", b"2025-11-25", b"2026-07-28"),
    ] {
        let mut headers: Vec<(&str, &[u8])> = POST.to_vec();
        headers.retain(|(key, _)| *key != name);
        headers.push((name, first));
        headers.push((name, second));
        let mut stream = envoy.stream();
        stream.send(&headers, &[&call(1, "read")]);
        assert!(!stream.upstream().started(), "{name}");
        let json = stream.downstream().json();
        assert_eq!(stream.downstream().status, Some(400), "{name}");
        assert_eq!(
            json["error"]["message"],
            format!("Invalid Request: header {name} is given more than once"),
            "{name}"
        );
    }
    // Headers the gate does not read may repeat (Envoy joins or keeps them).
    let mut stream = envoy.stream();
    stream.send(
        &headers_with(&[
            ("accept", b"application/json"),
            ("accept", b"text/event-stream"),
        ]),
        &[&call(1, "read")],
    );
    assert!(stream.upstream().complete);
}

/// With `hold_request_headers: false`, a body refused for its size after
/// the server started answering stays held: none of it, before or after the
/// refusal, goes on (the gate cannot answer in place of the server any more).
#[test]
fn a_body_refused_after_the_answer_started_stays_held_to_its_end() {
    let envoy = SimEnvoy::new(&policy_with(
        r#""hold_request_headers": false, "max_body_bytes": 64"#,
    ));
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.response_headers(200, &[("content-type", b"text/event-stream")], false);
    let body = call(1, "deleteWorkspace");
    assert!(body.len() > 70);
    let (head, tail) = body.split_at(70);
    stream.request_body(head, false);
    stream.request_body(tail, true);
    assert!(
        stream.upstream().body.is_empty() && !stream.upstream().complete,
        "refused body reached the server: {:?}",
        String::from_utf8_lossy(&stream.upstream().body)
    );
}

/// Monitor mode reports what enforcement would do: an unidentified caller
/// would be refused 401 before any body is read, so that is the one record
/// and the one count, and nothing is taken from limits.
#[test]
fn in_monitor_mode_an_unidentified_caller_is_recorded_once() {
    let token_hash = crate::policy::sha256_hex(b"s3cret");
    let policy = format!(
        r#"{{"version": "1", "default": "deny", "mode": "monitor", "identity": {{"bearer_tokens": {{"{token_hash}": "alice"}}}},
            "tools": {{"run": {{"limits": [{{"counter": "run", "window": "day", "max": 1, "scope": "grant"}}]}}}}}}"#
    );
    let envoy = SimEnvoy::new(&policy);
    for id in 0..2 {
        let mut stream = envoy.stream();
        stream.send(
            &headers_with(&[("authorization", b"Bearer wrong")]),
            &[&call(id, "run")],
        );
        assert!(stream.upstream().complete, "monitor mode blocks nothing");
        stream.end(End::Completed);
    }
    let decisions: Vec<Value> = envoy
        .audit_lines()
        .iter()
        .map(|line| line["decision"].clone())
        .collect();
    assert_eq!(decisions, [json!("unauthorized"), json!("unauthorized")]);
    assert_eq!(envoy.sum(DECISIONS, &[]), 2);
}

/// With the headers not held, every request's answer comes back unencoded
/// (the gate may have to read it for tasks and request states, known only
/// once the body is), and a body that ends empty is a bodiless request.
#[test]
fn with_headers_not_held_answers_come_back_readable_and_an_empty_body_passes() {
    let envoy = SimEnvoy::new(&policy_with(r#""hold_request_headers": false"#));
    let mut stream = envoy.stream();
    let headers = headers_with(&[("accept-encoding", b"gzip")]);
    stream.request_headers(&headers, false);
    let upstream = stream.upstream().headers.clone().unwrap();
    assert_eq!(upstream.raw("accept-encoding"), None);
    // Ended by an empty DATA frame: nothing to decide, nothing refused.
    let envoy = SimEnvoy::new(POLICY);
    let mut stream = envoy.stream();
    stream.request_headers(&POST, false);
    stream.request_body(b"", true);
    assert!(stream.upstream().complete);
    assert_eq!(stream.downstream().status, None);
}

#[test]
fn deny_as_tool_result_answers_tool_calls_only() {
    let policy = r#"{"version":"1","default":"allow","deny_as":"tool_result",
      "identity":{"header":"x-agent-id"},
      "methods":{"logging/setLevel":"deny"},
      "tools":{"danger":{"action":"deny"}},
      "prompts":{"p_denied":{"action":"deny"}},
      "resources":{"file:///srv/secret.txt":{"action":"deny"}}}"#;
    let envoy = SimEnvoy::new(policy);
    let tool = send_as(
        &envoy,
        "alice",
        &raw("tools/call", 1, json!({"name": "danger"})),
    );
    assert_eq!(tool.downstream().json()["result"]["isError"], true);
    // No tool result exists for the rest: JSON-RPC errors, as the README says.
    for (id, method, params) in [
        (2, "prompts/get", json!({"name": "p_denied"})),
        (
            3,
            "resources/read",
            json!({"uri": "file:///srv/secret.txt"}),
        ),
        (4, "logging/setLevel", json!({"level": "debug"})),
    ] {
        let refused = send_as(&envoy, "alice", &raw(method, id, params));
        assert!(!refused.upstream().started(), "{method}");
        assert_eq!(
            refused.downstream().json()["error"]["code"],
            -31001,
            "{method}"
        );
    }
}

#[test]
fn a_use_hidden_by_a_pattern_is_counted_under_that_pattern() {
    let policy = r#"{"version":"1","default":"allow","identity":{"header":"x-agent-id"},
      "hide":["sec_*","resource:file:///srv/hidden/*","exact"],
      "tools":{"run_*":{}}}"#;
    let envoy = SimEnvoy::new(policy);
    for (id, method, params) in [
        (1, "tools/call", json!({"name": "sec_x"})),
        (2, "resources/read", json!({"uri": "file:///srv/hidden/x"})),
        (3, "tools/call", json!({"name": "exact"})),
        (4, "tools/call", json!({"name": "run_y"})),
    ] {
        let mut stream = send_as(&envoy, "alice", &raw(method, id, params));
        if stream.upstream().complete {
            stream.server_answers(200, &[("content-type", b"application/json")], &[b"{}"]);
        }
        stream.end(End::Completed);
    }
    for (decision, kind, target) in [
        ("hidden", "tool", "sec_*"),
        ("hidden", "resource", "file:///srv/hidden/*"),
        ("hidden", "tool", "exact"),
        ("allowed", "tool", "run_*"),
    ] {
        assert_eq!(
            envoy.sum(
                DECISIONS,
                &[("decision", decision), ("kind", kind), ("target", target)]
            ),
            1,
            "{decision} {kind} {target}"
        );
    }
    assert_eq!(envoy.sum(DECISIONS, &[("target", "*")]), 0);
}

/// A member a loose reader (Go's `encoding/json`: any letter case, `ſ` for
/// `s`; a C reader: up to a NUL) takes for the one an argument rule, a
/// limit's `per` or `cost_from`, or a meta-tool's `invokes` reads is
/// refused: the server could run what the rule never saw.
#[test]
fn an_argument_spelt_so_a_server_reads_it_for_another_is_refused() {
    let policy = r#"{
      "version": "1", "default": "deny",
      "tools": {
        "exec": {
          "deny_if": { "args.script": { "regex": "pty\\.spawn" }, "args.opts.shell": { "eq": true } },
          "require": { "args.timeout": { "lte": 300 } }
        },
        "fetch": { "limits": [{ "counter": "f", "window": "day", "max": 9, "scope": "grant", "per": "args.host" }] },
        "call_tool": { "invokes": { "name": "args.name", "arguments": "args.arguments" } }
      }
    }"#;
    let envoy = SimEnvoy::new(policy);
    let call_with = |id: u64, tool: &str, arguments: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
            .to_string()
            .into_bytes()
    };
    for (id, tool, arguments) in [
        (
            1,
            "exec",
            json!({"script":"print(1)","timeout":60,"Script":"import pty; pty.spawn('/bin/sh')"}),
        ),
        (
            2,
            "exec",
            json!({"\u{17f}cript":"pty.spawn()","timeout":60}),
        ),
        (
            3,
            "exec",
            json!({"script":"print(1)","timeout":60,"TIMEOUT":99999}),
        ),
        (
            4,
            "exec",
            json!({"script":"x","timeout":1,"opts":{"Shell":true}}),
        ),
        (
            5,
            "exec",
            json!({"script":"x","timeout":1,"script\u{0}x":"pty.spawn()"}),
        ),
        (6, "fetch", json!({"host":"a","HOST":"b"})),
        (7, "call_tool", json!({"name":"fetch","Name":"exec"})),
        (
            8,
            "call_tool",
            json!({"name":"exec","arguments":{"script":"x","timeout":1,"SCRIPT":"pty.spawn()"}}),
        ),
    ] {
        let refused = post(&envoy, &call_with(id, tool, arguments.clone()));
        assert!(!refused.upstream().started(), "{arguments}");
        let reply = refused.downstream().json();
        assert_eq!(reply["error"]["code"], -32602, "{arguments}: {reply}");
        assert!(
            reply.to_string().contains("a server may read either"),
            "{reply}"
        );
    }
    // Exactly as the rules read them, the calls pass.
    for (id, tool, arguments) in [
        (
            11,
            "exec",
            json!({"script":"print(1)","timeout":60,"scripts":"other"}),
        ),
        (12, "fetch", json!({"host":"a","hosts":"b"})),
    ] {
        assert!(
            post(&envoy, &call_with(id, tool, arguments.clone()))
                .upstream()
                .complete,
            "{arguments}"
        );
    }
}

/// A rule for a name does not reopen it when `hide` names it in another
/// letter case (by name or by pattern): hidden comes first, and a server
/// that matches names loosely would run the hidden tool.
#[test]
fn a_rule_does_not_reopen_a_name_hidden_in_another_letter_case() {
    let policy = r#"{"version":"1","default":"allow","hide":["Secret","Internal_*"],
      "tools":{"secret":{},"internal_debug":{},"visible":{}}}"#;
    let envoy = SimEnvoy::new(policy);
    for (id, tool) in [(1, "secret"), (2, "internal_debug"), (3, "SECRET")] {
        let stream = post(&envoy, &call(id, tool));
        assert!(!stream.upstream().started(), "{tool}");
        let reply = stream.downstream().json();
        assert_eq!(reply["error"]["code"], -32602, "{tool}: {reply}");
        assert_eq!(reply["error"]["message"], format!("Unknown tool: {tool}"));
    }
    assert!(post(&envoy, &call(4, "visible")).upstream().complete);
    let mut listing = post(&envoy, &list("5"));
    listing.server_answers(
        200,
        &[("content-type", b"application/json")],
        &[br#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"secret"},{"name":"internal_debug"},{"name":"visible"}]}}"#],
    );
    assert_eq!(listed(&listing), ["visible"]);
}

/// A `max` (and `cost`) of 2^64 - 1 is a limit like any other: the second
/// call is refused, not let through by a sum that saturates or wraps.
#[test]
fn a_limit_at_the_top_of_u64_still_refuses() {
    let policy = r#"{"version":"1","default":"allow","tools":{"big":{"limits":[
      {"counter":"c","window":"minute","max":18446744073709551615,"cost":18446744073709551615,"scope":"grant"}]}}}"#;
    let envoy = SimEnvoy::new(policy);
    assert!(post(&envoy, &call(1, "big")).upstream().complete);
    for id in 2..4 {
        assert_eq!(
            post(&envoy, &call(id, "big")).downstream().json()["error"]["code"],
            -31002,
            "call {id}"
        );
    }
}
