//! Whole streams through the simulated Envoy (`mcp_policy::exchange::sim`),
//! in any order Envoy can produce them: request headers, the body in pieces
//! or ended by trailers, the rate-limit service's and the approval
//! service's answers (any bytes, any status, or none) whenever a call is
//! pending, the server's answer (JSON, an event stream, a listing, a task,
//! an `InputRequiredResult`, any bytes) or Envoy's own (a timeout, no
//! upstream), and the stream's end of every kind at any point. A few streams
//! share one Envoy, so quotas taken by one meet the next.
//!
//! Checked: no panic, and nothing Envoy refuses. The simulator panics where
//! Envoy would refuse an effect (a local reply after the response started,
//! a header change outside its callback, a body replaced with the wrong
//! size, a request resumed that was not held, a response held after it
//! ended...), which in Envoy makes the SDK panic and takes the VM down for
//! every later request on that worker.
//!
//! `MCP_FUZZ_STATS=1` prints, at every power of two from 1024 inputs on,
//! how often each kind of event was reached (so a change that stops the
//! streams from getting anywhere shows; `make fuzz` fails when a kind was
//! never reached).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mcp_policy::exchange::sim::{End, SimEnvoy, SimStream};

/// Approval, hiding, prompts and resources, local quotas (rate and
/// concurrency), methods denied as a whole.
const SURFACE: &str = r#"{
  "version": "1", "default": "deny", "identity": { "header": "x-agent-id" },
  "approval_service": { "cluster": "mcp_approval", "public_url": "https://approvals.example.com",
                        "timeout_ms": 200, "failure_mode": "closed" },
  "hide": ["secretTool", "prompt:secret_prompt", "resource:file:///srv/private/*"],
  "list": "hide_denied",
  "tools": {
    "run": { "approve_if": { "args.script": { "regex": "subprocess" } },
             "approval": { "reason": "scripts that start processes need a look", "ttl_seconds": 600 },
             "limits": [{ "counter": "run", "window": "day", "max": 2, "scope": "grant" }] },
    "wipe": { "action": "approve" },
    "poll": { "limits": [{ "counter": "poll_inflight", "concurrent": 1, "scope": "grant" }] },
    "read": {},
    "gone": { "action": "deny", "reason": "retired" }
  },
  "prompts": { "summarize": { "require": { "args.text": { "max_length": 20 } } }, "review_*": {} },
  "resources": { "file:///srv/public/*": {} },
  "methods": { "logging/setLevel": "deny" }
}"#;

/// Limits counted fleet-wide by the rate-limit service, failing closed.
const GLOBAL_CLOSED: &str = r#"{
  "version": "1", "default": "deny", "identity": { "header": "x-agent-id" },
  "rate_limit_service": { "cluster": "ratelimit", "timeout_ms": 50, "failure_mode": "closed" },
  "deny_as": "tool_result",
  "tools": {
    "run": { "limits": [
      { "counter": "run_inflight", "concurrent": 3, "scope": "grant", "store": "global" },
      { "counter": "run_rate", "window": "minute", "max": 10, "scope": "grant", "store": "global", "cost": 2 }
    ] },
    "read": { "limits": [{ "counter": "read", "window": "second", "max": 1, "scope": "grant" }] }
  }
}"#;

/// The same, failing open, in monitor mode.
const GLOBAL_OPEN: &str = r#"{
  "version": "1", "default": "allow", "identity": { "header": "x-agent-id" }, "mode": "monitor",
  "rate_limit_service": { "cluster": "ratelimit", "timeout_ms": 50, "failure_mode": "open" },
  "tools": {
    "run": { "limits": [{ "counter": "run_rate", "window": "minute", "max": 1, "scope": "global", "store": "global" }] },
    "wipe": { "action": "deny" }
  }
}"#;

/// How often each kind of event was reached, for `MCP_FUZZ_STATS`.
static INPUTS: AtomicU64 = AtomicU64::new(0);
static SEEN: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
const SEEN_NAMES: [&str; 7] = [
    "streams",
    "request upstream",
    "gate replies",
    "service answers",
    "approval answers",
    "server answers",
    "envoy answers",
];

fn seen(what: usize) {
    SEEN[what].fetch_add(1, Ordering::Relaxed);
}

/// Request headers go upstream at once (an Envoy without
/// `allow_on_headers_stop_iteration`), a small body limit, approval
/// failing open, JSON-RPC errors for refusals.
const HEADERS_FIRST: &str = r#"{
  "version": "1", "default": "allow", "identity": { "header": "x-agent-id" },
  "hold_request_headers": false, "max_body_bytes": 160, "max_json_depth": 4,
  "approval_service": { "cluster": "mcp_approval", "timeout_ms": 100, "failure_mode": "open" },
  "hide": ["secretTool"],
  "tools": {
    "run": { "approve_if": { "args.script": { "regex": "subprocess" } },
             "limits": [{ "counter": "run", "window": "minute", "max": 1, "scope": "grant" }] },
    "wipe": { "action": "approve" },
    "gone": { "action": "deny" }
  }
}"#;

const GRANTS: [&str; 3] = ["alice", "bob", ""];
const VERSIONS: [&[u8]; 4] = [b"2025-11-25", b"2026-07-28", b"2025-06-18", b"bogus"];
const TOOLS: [&str; 7] = [
    "run",
    "wipe",
    "poll",
    "read",
    "gone",
    "secretTool",
    "unknown",
];
const SCRIPTS: [&str; 3] = ["print(1)", "import subprocess", "x\u{0}\u{2028}\"\\"];

/// A request body: one of the methods the gate reads, or any bytes.
fn request_body(u: &mut Unstructured) -> Result<Vec<u8>> {
    let id = match u.int_in_range(0..=3)? {
        0 => "1".to_string(),
        1 => "\"a\"".to_string(),
        2 => u.int_in_range(0..=u64::MAX)?.to_string(),
        _ => "null".to_string(),
    };
    let tool = *u.choose(&TOOLS)?;
    let script = *u.choose(&SCRIPTS)?;
    let meta = if u.ratio(1, 4)? {
        r#","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}"#
    } else {
        ""
    };
    let state = if u.ratio(1, 6)? {
        r#","requestState":"forged","inputResponses":{"approval":{"action":"accept"}}"#
    } else {
        ""
    };
    let body = match u.int_in_range(0..=13)? {
        0..=4 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"script":"{script}","text":"t"}}{meta}{state}}}}}"#
        ),
        5 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"{}}}"#,
            if meta.is_empty() {
                ""
            } else {
                r#","params":{"_meta":{}}"#
            }
        ),
        6 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"prompts/get","params":{{"name":"summarize","arguments":{{"text":"{script}"}}}}}}"#
        ),
        7 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"resources/read","params":{{"uri":"file:///srv/public/../private/x"}}}}"#
        ),
        8 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tasks/get","params":{{"taskId":"t-1"}}}}"#
        ),
        9 => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"completion/complete","params":{{"ref":{{"type":"ref/prompt","name":"secret_prompt"}},"argument":{{"name":"a","value":"b"}}}}}}"#
        ),
        10 => r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string(),
        11 => format!(
            r#"[{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}]"#
        ),
        12 => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#),
        _ => {
            let len = u.int_in_range(0..=64)?;
            return Ok(u.bytes(len)?.to_vec());
        }
    };
    Ok(body.into_bytes())
}

/// The server's answer body.
fn server_body(u: &mut Unstructured, sse: bool) -> Result<Vec<u8>> {
    let message = match u.int_in_range(0..=7)? {
        0 => r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"run"},{"name":"secretTool"},{"name":"gone"},{"x":1}],"cacheScope":"public"}}"#.to_string(),
        1 => r#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t-1","status":"working"}}}"#.to_string(),
        2 => r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required","inputRequests":{},"requestState":"s1"}}"#.to_string(),
        3 => r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#.to_string(),
        4 => r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom"}}"#.to_string(),
        5 => r#"[{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"secret_prompt"}]}}]"#.to_string(),
        6 => String::new(),
        _ => {
            let len = u.int_in_range(0..=48)?;
            String::from_utf8_lossy(u.bytes(len)?).into_owned()
        }
    };
    if !sse {
        return Ok(message.into_bytes());
    }
    let ending = *u.choose(&["\n\n", "\r\n\r\n", "\r\r", "\n"])?;
    let id = if u.ratio(1, 3)? { "id: 7\n" } else { "" };
    Ok(format!("{id}event: message\ndata: {message}{ending}").into_bytes())
}

/// `body` cut in up to four pieces at points the input picks.
fn pieces<'b>(u: &mut Unstructured, body: &'b [u8]) -> Result<Vec<&'b [u8]>> {
    let mut cuts: Vec<usize> = (0..u.int_in_range(0..=3)?)
        .map(|_| u.int_in_range(0..=body.len()))
        .collect::<Result<_>>()?;
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(body.len())) {
        out.push(&body[start..cut]);
        start = cut;
    }
    Ok(out)
}

/// An answer of the rate-limit service: OK, OVER_LIMIT, empty, or any bytes.
fn service_answer(u: &mut Unstructured) -> Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=4)? {
        0 => vec![0x08, 0x01],
        1 => vec![0x08, 0x02],
        2 => vec![0x08, 0x02, 0x12, 0x04, 0x08, 0x02, 0x18, 0x00],
        3 => Vec::new(),
        _ => {
            let len = u.int_in_range(0..=16)?;
            u.bytes(len)?.to_vec()
        }
    })
}

/// An answer of the approval service.
fn approval_answer(u: &mut Unstructured) -> Result<(Option<u16>, Vec<u8>)> {
    let status = *u.choose(&[Some(200), Some(201), Some(404), Some(500), None])?;
    let body = match u.int_in_range(0..=4)? {
        0 => br#"{"status":"pending","id":"00000000000000000000000000000001"}"#.to_vec(),
        1 => br#"{"status":"approved","id":"00000000000000000000000000000001"}"#.to_vec(),
        2 => {
            br#"{"status":"denied","id":"00000000000000000000000000000001","reason":"no"}"#.to_vec()
        }
        3 => br#"{"error":"unavailable","message":"redis"}"#.to_vec(),
        _ => {
            let len = u.int_in_range(0..=32)?;
            u.bytes(len)?.to_vec()
        }
    };
    Ok((status, body))
}

fn stream(envoy: &SimEnvoy, u: &mut Unstructured) -> Result<()> {
    let mut stream = envoy.stream();
    seen(0);
    let grant = *u.choose(&GRANTS)?;
    let version = *u.choose(&VERSIONS)?;
    let method: &[u8] = u.choose(&[&b"POST"[..], b"POST", b"POST", b"GET", b"DELETE"])?;
    let body = request_body(u)?;
    let body = if method == b"POST" { body } else { Vec::new() };
    let mut headers: Vec<(&str, &[u8])> = vec![(":method", method), (":path", b"/mcp")];
    if u.ratio(3, 4)? {
        headers.push(("content-type", b"application/json"));
    }
    if !grant.is_empty() {
        headers.push(("x-agent-id", grant.as_bytes()));
    }
    if u.ratio(1, 2)? {
        headers.push(("mcp-protocol-version", version));
    }
    if u.ratio(1, 4)? {
        headers.push(("mcp-method", b"tools/call"));
        headers.push((
            "mcp-name",
            *u.choose(&[&b"run"[..], b"=?base64?cnVu?=", b"other"])?,
        ));
    }
    if u.ratio(1, 4)? {
        headers.push(("mcp-session-id", b"s-1"));
    }
    if u.ratio(1, 8)? {
        headers.push(("content-length", b"5"));
    }
    let trailers = !body.is_empty() && u.ratio(1, 6)?;
    let chunks = pieces(u, &body)?;
    let mut next_chunk = 0;
    let no_body = body.is_empty();
    stream.request_headers(&headers, no_body);
    let mut request_ended = no_body;
    let mut answered_calls = 0;
    let mut answered_http = 0;

    for _ in 0..u.int_in_range(0..=12)? {
        let replied = stream.downstream().status.is_some();
        // A pending call is answered more often than not before anything else.
        let pending =
            answered_calls < stream.calls().len() || answered_http < stream.http_calls().len();
        let pick = if pending && u.ratio(2, 3)? {
            if answered_calls < stream.calls().len() {
                2
            } else {
                3
            }
        } else {
            u.int_in_range(0..=7)?
        };
        match pick {
            0 | 1 if !request_ended => {
                if next_chunk < chunks.len() {
                    let last = next_chunk + 1 == chunks.len() && !trailers;
                    stream.request_body(chunks[next_chunk], last);
                    next_chunk += 1;
                    request_ended = last;
                } else {
                    stream.request_trailers();
                    request_ended = true;
                }
            }
            2 if answered_calls < stream.calls().len() => {
                let token = stream.calls()[answered_calls].0;
                answered_calls += 1;
                let status = *u.choose(&[0, 0, 0, 14, 4])?;
                let message = service_answer(u)?;
                stream.service_answers(token, status, &message);
                seen(3);
            }
            3 if answered_http < stream.http_calls().len() => {
                let token = stream.http_calls()[answered_http].0;
                answered_http += 1;
                let (status, body) = approval_answer(u)?;
                stream.http_answers(token, status, &body);
                seen(4);
            }
            4 | 5 if !replied && stream.upstream().started() => {
                seen(5);
                let sse = u.ratio(1, 3)?;
                let content_type: &[u8] = if sse {
                    b"text/event-stream"
                } else {
                    b"application/json"
                };
                let status = *u.choose(&[200, 200, 202, 400, 500])?;
                let answer = server_body(u, sse)?;
                let parts = pieces(u, &answer)?;
                if u.ratio(1, 5)? {
                    // Headers, the body by hand, then trailers.
                    stream.response_headers(
                        status,
                        &[("content-type", content_type)],
                        answer.is_empty(),
                    );
                    if !answer.is_empty() {
                        for part in &parts {
                            stream.response_body(part, false);
                        }
                        stream.response_trailers();
                    }
                } else if answer.is_empty() {
                    stream.server_answers(status, &[("content-type", content_type)], &[]);
                } else {
                    stream.server_answers(status, &[("content-type", content_type)], &parts);
                }
            }
            6 if !replied => {
                let (status, details, flags) = *u.choose(&[
                    (504, "upstream_response_timeout", 0x4_u64),
                    (503, "no_healthy_upstream", 0x2),
                    (
                        503,
                        "upstream_reset_before_response_started{connection_failure}",
                        0x20,
                    ),
                ])?;
                stream.envoy_answers(status, details, flags);
                seen(6);
            }
            7 => {
                let how = *u.choose(&[End::ClientGone, End::ServerReset, End::Completed])?;
                stream.end(how);
                tally(&stream);
                return Ok(());
            }
            _ => {}
        }
    }
    let how = *u.choose(&[End::Completed, End::ClientGone])?;
    stream.end(how);
    tally(&stream);
    Ok(())
}

fn tally(stream: &SimStream<'_>) {
    if stream.upstream().started() {
        seen(1);
    }
    if stream.downstream().from_gate {
        seen(2);
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let policy = *u.choose(&[SURFACE, GLOBAL_CLOSED, GLOBAL_OPEN, HEADERS_FIRST])?;
    let envoy = SimEnvoy::new(policy);
    envoy.set_time(u.int_in_range(1_700_000_000..=1_900_000_000)?);
    for _ in 0..u.int_in_range(1..=3)? {
        stream(&envoy, u)?;
        if u.ratio(1, 4)? {
            envoy.set_time(u.int_in_range(1_700_000_000..=1_900_000_000)?);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let inputs = INPUTS.fetch_add(1, Ordering::Relaxed) + 1;
    if inputs.is_power_of_two() && inputs >= 1024 && std::env::var_os("MCP_FUZZ_STATS").is_some() {
        let counts: Vec<String> = SEEN_NAMES
            .iter()
            .zip(&SEEN)
            .map(|(name, count)| format!("{name} {}", count.load(Ordering::Relaxed)))
            .collect();
        eprintln!("MCP_FUZZ_STATS {inputs} inputs: {}", counts.join(", "));
    }
    let _ = run(&mut Unstructured::new(data));
});
