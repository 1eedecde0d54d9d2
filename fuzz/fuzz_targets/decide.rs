//! The whole request path: a policy and requests built from the fuzzer's
//! bytes. The policy is written from a small grammar of the document (tools,
//! grants, limits on a few shared counters, argument rules with valid
//! operands and patterns, every top-level option), so nearly every input
//! loads and the time goes into deciding calls; one input in sixteen has one
//! field spoiled, so the refusals keep being exercised. Each policy meets a
//! few requests: structured tool calls (names, case variants, arguments the
//! rules look at) and, now and then, raw bytes.
//!
//! Checked: no panic; every reply is a JSON-RPC message with the request's
//! id when the gate read one; a call the gate forwards was read as a tool
//! call; in enforce mode a forwarded, audited call was allowed (or failed
//! open), and a refused one was not allowed; the rate-limit service's answer,
//! whatever its bytes, completes a held call the same way.
//!
//! `MCP_FUZZ_STATS=1` prints how many inputs' policies loaded, at every
//! power of two from 1024 inputs on (`make fuzz` fails when none did: the
//! generator would have drifted from what the reader accepts, and the target
//! would check nothing).
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use mcp_policy::decision::Outcome;
use mcp_policy::gate;
use mcp_policy::host::Clock;
use mcp_policy::memory::MemorySharedData as Store;
use mcp_policy::policy::{FailureMode, Mode, Policy};
use mcp_policy::ratelimit::CallerScope;
use serde_json::{json, Map, Value};

struct At(u64);
impl Clock for At {
    fn unix_time(&self) -> Duration {
        Duration::from_secs(self.0)
    }
}

const TOOLS: [&str; 5] = [
    "asyncExecuteCode",
    "checkCodeExecStatus",
    "deleteWorkspace",
    "secretTool",
    "ns.tool/v-2",
];
const GRANTS: [&str; 3] = ["anonymous", "alice", "ci-runner"];
/// Counters with the one window and store each must keep wherever it is named.
const COUNTERS: [(&str, &str, &str); 4] = [
    ("burst", "\"second\"", "local"),
    ("poll", "60", "local"),
    ("daily", "\"day\"", "local"),
    ("fleet", "\"minute\"", "global"),
];
const PATHS: [&str; 5] = [
    "args.script",
    "args.timeout",
    "args.options.lang",
    "args.files.0.name",
    "args.files",
];
/// Patterns the module's regex engine accepts (ASCII classes written out).
const PATTERNS: [&str; 5] = [
    "subprocess|os\\.system",
    "^[0-9a-f-]{36}$",
    "[Rr][Mm] +-rf",
    "[0-9]+",
    "^$",
];
const WORDS: [&str; 6] = [
    "print(1)",
    "import subprocess",
    "RM -RF /",
    "00000000-0000-4000-8000-000000000001",
    "python",
    "",
];

static INPUTS: AtomicU64 = AtomicU64::new(0);
static LOADED: AtomicU64 = AtomicU64::new(0);

/// Writes one top-level option of a generated policy.
type MakeOption = fn(&mut Unstructured) -> Result<Value>;

fn pick<'a, T: ?Sized>(u: &mut Unstructured, items: &[&'a T]) -> Result<&'a T> {
    Ok(*u.choose(items)?)
}

/// A JSON value of the kinds argument rules compare.
fn value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Value::Null,
        1 => json!(u.arbitrary::<bool>()?),
        2 => json!(u.int_in_range(-5i64..=400)?),
        3 => json!(f64::from(u.int_in_range(-50i32..=50)?) / 4.0),
        4 if depth < 2 => {
            let len = u.int_in_range(0..=3)?;
            Value::Array(
                (0..len)
                    .map(|_| value(u, depth + 1))
                    .collect::<Result<_>>()?,
            )
        }
        5 if depth < 2 => {
            let mut map = Map::new();
            for _ in 0..u.int_in_range(0..=2)? {
                map.insert(
                    pick(u, &["name", "lang", "x"])?.to_string(),
                    value(u, depth + 1)?,
                );
            }
            Value::Object(map)
        }
        _ => json!(pick(u, &WORDS)?),
    })
}

/// One operator object of an argument condition, operands of the right type.
fn condition(u: &mut Unstructured) -> Result<Value> {
    let mut ops = Map::new();
    for _ in 0..u.int_in_range(1..=2)? {
        let (op, operand) = match u.int_in_range(0..=8)? {
            0 => ("eq", value(u, 1)?),
            1 => ("neq", value(u, 1)?),
            2 => ("in", json!([value(u, 1)?, pick(u, &WORDS)?])),
            3 => ("not_in", json!([value(u, 1)?])),
            4 => (
                *u.choose(&["lt", "lte", "gt", "gte"])?,
                json!(u.int_in_range(0..=300)?),
            ),
            5 => ("contains", json!(pick(u, &WORDS)?)),
            6 => ("regex", json!(pick(u, &PATTERNS)?)),
            7 => ("exists", json!(u.arbitrary::<bool>()?)),
            _ => ("max_length", json!(u.int_in_range(0..=40)?)),
        };
        ops.insert(op.to_string(), operand);
    }
    Ok(Value::Object(ops))
}

fn limits(u: &mut Unstructured, global_used: &mut bool) -> Result<Value> {
    let mut limits = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let (counter, window, store) = *u.choose(&COUNTERS)?;
        *global_used |= store == "global";
        let window: Value = serde_json::from_str(window).unwrap_or(Value::Null);
        limits.push(json!({
            "counter": counter, "window": window, "store": store,
            "max": u.int_in_range(1..=4)?,
            "scope": pick(u, &["grant", "session", "global"])?,
        }));
    }
    Ok(Value::Array(limits))
}

fn tool_rule(u: &mut Unstructured, global_used: &mut bool) -> Result<Value> {
    let mut rule = Map::new();
    if u.ratio(1, 3)? {
        rule.insert("action".into(), json!(pick(u, &["allow", "deny"])?));
    }
    if u.ratio(1, 3)? {
        rule.insert("reason".into(), json!("because"));
    }
    if u.ratio(1, 2)? {
        rule.insert("limits".into(), limits(u, global_used)?);
    }
    for kind in ["require", "deny_if"] {
        if u.ratio(1, 3)? {
            let mut conditions = Map::new();
            for _ in 0..u.int_in_range(1..=2)? {
                conditions.insert(pick(u, &PATHS)?.to_string(), condition(u)?);
            }
            rule.insert(kind.into(), Value::Object(conditions));
        }
    }
    Ok(Value::Object(rule))
}

fn hide(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1, 8)? {
        return Ok(json!(["*"]));
    }
    let mut hidden = Vec::new();
    for tool in TOOLS {
        if u.ratio(1, 4)? {
            hidden.push(tool);
        }
    }
    Ok(json!(hidden))
}

/// Fields a grant fragment and the top level share.
fn fragment(
    u: &mut Unstructured,
    doc: &mut Map<String, Value>,
    global_used: &mut bool,
) -> Result<()> {
    if u.ratio(1, 3)? {
        doc.insert("hide".into(), hide(u)?);
    }
    if u.ratio(1, 3)? {
        doc.insert(
            "all_tools".into(),
            json!({ "limits": limits(u, global_used)? }),
        );
    }
    let mut tools = Map::new();
    for tool in TOOLS {
        if u.ratio(1, 2)? {
            tools.insert(tool.to_string(), tool_rule(u, global_used)?);
        }
    }
    if !tools.is_empty() {
        doc.insert("tools".into(), Value::Object(tools));
    }
    Ok(())
}

fn policy(u: &mut Unstructured) -> Result<Value> {
    let mut global_used = false;
    let mut doc = Map::new();
    doc.insert("version".into(), json!("1"));
    doc.insert("default".into(), json!(pick(u, &["allow", "deny"])?));
    fragment(u, &mut doc, &mut global_used)?;
    let mut grants = Map::new();
    for grant in GRANTS {
        if u.ratio(1, 3)? {
            let mut fragment_doc = Map::new();
            if u.ratio(1, 2)? {
                fragment_doc.insert("default".into(), json!(pick(u, &["allow", "deny"])?));
            }
            fragment(u, &mut fragment_doc, &mut global_used)?;
            grants.insert(grant.to_string(), Value::Object(fragment_doc));
        }
    }
    if !grants.is_empty() {
        doc.insert("grants".into(), Value::Object(grants));
    }
    let options: [(&str, MakeOption); 8] = [
        ("mode", |u| Ok(json!(pick(u, &["enforce", "monitor"])?))),
        ("deny_as", |u| {
            Ok(json!(pick(u, &["error", "tool_result"])?))
        }),
        ("list", |u| {
            Ok(json!(pick(u, &["show_denied", "hide_denied"])?))
        }),
        ("failure_mode", |u| Ok(json!(pick(u, &["closed", "open"])?))),
        ("max_body_bytes", |u| Ok(json!(u.int_in_range(16..=4096)?))),
        ("max_json_depth", |u| Ok(json!(u.int_in_range(1..=127)?))),
        // Small tables, so that callers run out of slots.
        ("max_callers_per_counter", |u| {
            Ok(json!(u.int_in_range(1..=8)?))
        }),
        ("identity", |_| Ok(json!({"header": "x-agent-id"}))),
    ];
    for (name, make) in options {
        if u.ratio(1, 3)? {
            doc.insert(name.into(), make(u)?);
        }
    }
    if global_used {
        doc.insert(
            "rate_limit_service".into(),
            json!({"cluster": "ratelimit", "failure_mode": pick(u, &["closed", "open"])?}),
        );
    }
    // Now and then one field spoiled: the refusals stay exercised. (Asked
    // this way round because a ratio drawn from exhausted input is true.)
    if !u.ratio(15, 16)? {
        let spoiled = [
            ("default", json!("maybe")),
            ("max_json_depth", json!(500)),
            ("version", json!(2)),
            (
                "tools",
                json!({"x": {"limits": [{"counter": "poll", "window": "fortnight", "max": 1, "scope": "grant"}]}}),
            ),
            (
                "tools",
                json!({"x": {"require": {"args.a": {"regex": "("}}}}),
            ),
            ("unknown", json!(true)),
        ];
        let (field, bad) = u.choose(&spoiled)?;
        doc.insert(field.to_string(), bad.clone());
    }
    Ok(Value::Object(doc))
}

/// A tool name the policy may know, in another case, or outside the MCP
/// character set.
fn tool_name(u: &mut Unstructured) -> Result<String> {
    let name = pick(u, &TOOLS)?;
    Ok(match u.int_in_range(0..=5)? {
        0 => name.to_uppercase(),
        1 => format!("{name}\u{0}"),
        2 => name.replacen('e', "\u{0435}", 1),
        3 => pick(u, &["runShell", "", "a b"])?.to_string(),
        _ => name.to_string(),
    })
}

/// A request body: mostly a tool call, sometimes another method or raw bytes.
fn request(u: &mut Unstructured) -> Result<Vec<u8>> {
    if u.ratio(1, 8)? {
        let len = u.int_in_range(0..=64)?;
        return Ok(u.bytes(len)?.to_vec());
    }
    let id = if u.ratio(1, 4)? {
        json!(format!("r{}", u.int_in_range(0..=9)?))
    } else {
        json!(u.int_in_range(0..=1_000)?)
    };
    let message = if u.ratio(1, 6)? {
        json!({"jsonrpc": "2.0", "id": id, "method": pick(u, &["tools/list", "ping", "initialize"])?})
    } else {
        let mut arguments = Map::new();
        for key in ["script", "timeout", "options", "files"] {
            if u.ratio(1, 2)? {
                arguments.insert(key.to_string(), value(u, 0)?);
            }
        }
        let mut params = Map::new();
        params.insert("name".into(), json!(tool_name(u)?));
        if u.ratio(3, 4)? {
            params.insert("arguments".into(), Value::Object(arguments));
        }
        if u.ratio(1, 16)? {
            params.insert("Name".into(), json!(pick(u, &TOOLS)?));
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };
    Ok(message.to_string().into_bytes())
}

/// The request as the gate reads it under this policy.
fn read(policy: &Policy, request: &[u8]) -> Option<Value> {
    match mcp_policy::mcp::parse_with_depth(request, policy.max_json_depth) {
        Ok(mcp_policy::mcp::Message::ToolCall(call)) => Some(call.id.clone()),
        _ => None,
    }
}

fn check_reply(policy: &Policy, body: &[u8], request: &[u8]) {
    let json: Value = serde_json::from_slice(body).expect("replies are JSON");
    assert_eq!(json["jsonrpc"], "2.0");
    assert!(json.get("error").is_some() || json.get("result").is_some());
    if let Some(id) = read(policy, request) {
        assert_eq!(json["id"], id, "a reply answers the call's id");
    }
}

fn run(u: &mut Unstructured) -> Result<()> {
    let document = policy(u)?.to_string();
    let Ok(policy) = Policy::from_json(document.as_bytes()) else {
        return Ok(());
    };
    LOADED.fetch_add(1, Ordering::Relaxed);
    let store = Store::default();
    let clock = At(1_800_000_000);
    for _ in 0..u.int_in_range(1..=4)? {
        let request = request(u)?;
        let grant = pick(u, &GRANTS)?;
        let session = if u.arbitrary::<bool>()? {
            Some("s")
        } else {
            None
        };
        let caller = CallerScope {
            grant,
            session,
            role: None,
        };
        // Twice: the second call meets the counters the first one left.
        for _ in 0..2 {
            let mut inspection = gate::inspect_body(&policy, &store, &clock, caller, &request);
            // Answered before the second call sends its id again.
            inspection.answered(&store, clock.unix_time().as_secs());
            let enforced = policy.mode == Mode::Enforce;
            if let Some(reply) = &inspection.reply {
                check_reply(&policy, &reply.body, &request);
                if enforced {
                    assert_ne!(
                        inspection.outcome(),
                        Some(Outcome::Allowed),
                        "refused yet allowed"
                    );
                }
            } else if let Some(outcome) = inspection.outcome() {
                // Forwarded and audited: a tools/call the gate read.
                assert!(
                    read(&policy, &request).is_some()
                        || !enforced
                        || policy.failure_mode == FailureMode::Open,
                    "forwarded a request it could not read"
                );
                if enforced {
                    assert!(
                        outcome == Outcome::Allowed || outcome == Outcome::Failed,
                        "forwarded a call decided {outcome:?}"
                    );
                }
            }
            if let (Some(check), Some(audit)) = (&inspection.global_check, &mut inspection.audit) {
                let len = u.int_in_range(0..=16)?;
                let answer = u.bytes(len)?.to_vec();
                let answer = if u.arbitrary::<bool>()? {
                    Ok(&answer[..])
                } else {
                    Err("down".to_string())
                };
                let outcome =
                    gate::complete_global_check(&policy, check, answer, 1_800_000_000, audit);
                // A reply is always a refusal; monitor mode refuses nothing.
                assert!(outcome.reply.is_none() || outcome.refused);
                if let Some(reply) = outcome.reply {
                    check_reply(&policy, &reply.body, &request);
                }
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let inputs = INPUTS.fetch_add(1, Ordering::Relaxed) + 1;
    if inputs.is_power_of_two() && inputs >= 1024 && std::env::var_os("MCP_FUZZ_STATS").is_some() {
        let loaded = LOADED.load(Ordering::Relaxed);
        eprintln!("MCP_FUZZ_STATS {inputs} inputs: policies loaded {loaded}");
    }
    let _ = run(&mut Unstructured::new(data));
});
