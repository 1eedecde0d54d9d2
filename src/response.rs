//! Every answer the gate gives instead of forwarding: JSON-RPC error codes,
//! HTTP statuses and bodies live here and nowhere else.

use serde_json::{json, Value};

use crate::decision::Decision;
use crate::mcp::Invalid;
use crate::policy::{DenyAs, IdentityError, LimitKind};
use crate::target::{Kind, Target};

/// JSON-RPC error codes the gate answers with.
pub mod code {
    /// Body is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a valid JSON-RPC request (including batches and oversized bodies).
    pub const INVALID_REQUEST: i32 = -32600;
    /// `tools/call` params unusable.
    pub const INVALID_PARAMS: i32 = -32602;
    /// The gate could not decide and fails closed.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// Denied by policy. Application codes sit outside -32768..=-32000,
    /// which JSON-RPC and MCP reserve.
    pub const POLICY_DENIED: i32 = -31001;
    /// A rate limit is full.
    pub const RATE_LIMITED: i32 = -31002;
    /// No acceptable identity (bearer token missing or unknown).
    pub const UNAUTHORIZED: i32 = -31003;
    /// The call waits for a person's approval: `data` has the link.
    pub const APPROVAL_REQUIRED: i32 = -31004;
    /// MCP 2025-11-25's URL-elicitation-required error (retired at 2026-07-28).
    pub const URL_ELICITATION_REQUIRED: i32 = -32042;
    /// `Mcp-Method` / `Mcp-Name` headers disagree with the body (MCP 2026-07-28).
    pub const HEADER_MISMATCH: i32 = -32020;
    /// A resource the server does not have (MCP 2025-11-25; -32602 from 2026-07-28).
    pub const RESOURCE_NOT_FOUND: i32 = -32002;
}

/// HTTP statuses of the gate's answers.
pub mod status {
    /// Decisions are JSON-RPC answers: MCP clients show them as tool errors.
    pub const DECIDED: u16 = 200;
    /// The body could not be read as one JSON-RPC request.
    pub const BAD_REQUEST: u16 = 400;
    /// The body exceeds `max_body_bytes`.
    pub const PAYLOAD_TOO_LARGE: u16 = 413;
    /// No acceptable identity.
    pub const UNAUTHORIZED: u16 = 401;
    /// A request body in a content encoding the gate does not read.
    pub const UNSUPPORTED_MEDIA_TYPE: u16 = 415;
    /// A notification of a method the policy denies.
    pub const FORBIDDEN: u16 = 403;
}

/// Text that starts a denial answered as a tool result (`deny_as: tool_result`).
pub const DENIED_PREFIX: &str = "[POLICY DENIED]";
/// Text that starts a rate limit answered as a tool result.
pub const RATE_LIMITED_PREFIX: &str = "[RATE LIMITED]";
/// Text that starts an approver's denial answered as a tool result.
pub const APPROVAL_DENIED_PREFIX: &str = "[APPROVAL DENIED]";

/// The content type of every answer.
pub const CONTENT_TYPE: &str = "application/json";

/// An HTTP answer sent by the gate in place of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The JSON-RPC error object of this reply, for tests and tools.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// `value` as compact JSON. Through serde_json's writer, not `Display`
/// (`to_string()`), which passes every piece through `fmt::Write`.
pub(crate) fn json_bytes(value: &Value) -> Vec<u8> {
    // Writing a `Value` into a Vec cannot fail (its keys are strings).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The value of a member of an answer or an audit record, written without
/// building a `Value`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field<'a> {
    Str(&'a str),
    Num(u64),
    Null,
    Json(&'a Value),
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(text: &'a str) -> Self {
        Field::Str(text)
    }
}

impl From<u64> for Field<'_> {
    fn from(number: u64) -> Self {
        Field::Num(number)
    }
}

impl<'a> From<Option<&'a str>> for Field<'a> {
    fn from(text: Option<&'a str>) -> Self {
        text.map_or(Field::Null, Field::Str)
    }
}

impl From<Option<u64>> for Field<'_> {
    fn from(number: Option<u64>) -> Self {
        number.map_or(Field::Null, Field::Num)
    }
}

/// A piece of a message put together by [`text`].
#[derive(Debug, Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Number(u64),
}

impl<'a> From<&'a str> for Piece<'a> {
    fn from(text: &'a str) -> Self {
        Piece::Text(text)
    }
}

impl From<u64> for Piece<'_> {
    fn from(number: u64) -> Self {
        Piece::Number(number)
    }
}

/// The pieces one after the other: the messages of the refusals made most
/// often, without `format!`, which passes each piece through `fmt::Write`
/// (a tenth of a refused call's instructions).
fn text(pieces: &[Piece<'_>]) -> String {
    let len = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.len(),
            Piece::Number(_) => 20,
        })
        .sum();
    let mut out = String::with_capacity(len);
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Number(number) => crate::ratelimit::push_decimal(&mut out, *number),
        }
    }
    out
}

/// Writes JSON into `out`. Writing into a Vec cannot fail.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Writes `text` as a JSON string: as it is when nothing in it needs an
/// escape (most texts; serde_json's writer looks at each byte in turn),
/// else through serde_json, so the bytes are the same either way.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    if crate::mcp::scan::is_plain_text(text.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        write_json(out, text);
    }
}

/// Writes `number` in decimal, as serde_json writes an unsigned integer.
pub(crate) fn write_decimal(out: &mut Vec<u8>, number: u64) {
    out.extend_from_slice(crate::ratelimit::decimal(number, &mut [0; 20]));
}

/// Writes `{"key":value,...}` with the members in key order, the order
/// serde_json writes its maps in (sorted: no `preserve_order`), so an
/// answer is byte for byte what writing it as a `Value` gave, without the
/// `Value`'s allocations (a refused call's answer cost more than its
/// decision). Keys are the gate's own words, never the caller's.
fn write_object(out: &mut Vec<u8>, members: &mut [(&str, Field<'_>)]) {
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (index, (key, field)) in members.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_field(out, *field);
    }
    out.push(b'}');
}

/// Writes one member's value.
pub(crate) fn write_field(out: &mut Vec<u8>, field: Field<'_>) {
    match field {
        Field::Str(text) => write_str(out, text),
        Field::Num(number) => write_decimal(out, number),
        Field::Null => out.extend_from_slice(b"null"),
        Field::Json(value) => write_json(out, value),
    }
}

/// A JSON-RPC error answer; `data` is left out when it is `None`.
fn error_reply(
    status: u16,
    id: &Value,
    code: i32,
    message: &str,
    data: Option<&mut [(&str, Field<'_>)]>,
) -> Reply {
    let mut body = Vec::with_capacity(160 + message.len());
    // {"error":{"code":..,"data":{..},"message":".."},"id":..,"jsonrpc":"2.0"}
    body.extend_from_slice(b"{\"error\":{\"code\":");
    write_json(&mut body, &code);
    if let Some(data) = data {
        body.extend_from_slice(b",\"data\":");
        write_object(&mut body, data);
    }
    body.extend_from_slice(b",\"message\":");
    write_str(&mut body, message);
    body.extend_from_slice(b"},\"id\":");
    write_json(&mut body, id);
    body.extend_from_slice(b",\"jsonrpc\":\"2.0\"}");
    Reply { status, body }
}

/// A refusal answered as a successful tool result with `isError: true`.
fn tool_result_reply(id: &Value, text: String) -> Reply {
    let mut body = Vec::with_capacity(96 + text.len());
    // {"id":..,"jsonrpc":"2.0","result":{"content":[{"text":"..","type":"text"}],"isError":true}}
    body.extend_from_slice(b"{\"id\":");
    write_json(&mut body, id);
    body.extend_from_slice(b",\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"text\":");
    write_str(&mut body, &text);
    body.extend_from_slice(b",\"type\":\"text\"}],\"isError\":true}}");
    Reply {
        status: status::DECIDED,
        body,
    }
}

/// How refusals are worded for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answering {
    pub deny_as: DenyAs,
    /// The request speaks MCP 2026-07-28 or later.
    pub current: bool,
}

/// The member of `data` that names the target (`tool`, `prompt`, `resource`).
fn data_key(target: &Target<'_>) -> &'static str {
    target.kind.as_str()
}

/// The answer to a use of a tool, prompt or resource the policy refused, or
/// `None` if it is allowed.
///
/// `deny_as: tool_result` applies to tools' denials and rate limits. A
/// hidden target is answered as one the policy does not list, and a gate
/// failure always as a JSON-RPC error: neither is the model's to reason about.
pub fn for_decision(
    id: &Value,
    target: &Target<'_>,
    decision: &Decision<'_>,
    answering: Answering,
) -> Option<Reply> {
    let name = target.name.as_ref();
    let title = target.kind.title();
    let key = data_key(target);
    let as_tool_result = answering.deny_as == DenyAs::ToolResult && target.kind == Kind::Tool;
    match decision {
        Decision::Allow { .. } => None,
        Decision::Deny { rule, reason } => {
            let message = text(&[
                title.into(),
                " '".into(),
                name.into(),
                "' denied by policy: ".into(),
                reason.as_ref().into(),
            ]);
            Some(if as_tool_result {
                tool_result_reply(
                    id,
                    text(&[DENIED_PREFIX.into(), " ".into(), message.as_str().into()]),
                )
            } else {
                error_reply(
                    status::DECIDED,
                    id,
                    code::POLICY_DENIED,
                    &message,
                    Some(&mut [
                        (key, name.into()),
                        ("reason", reason.as_ref().into()),
                        ("rule", (*rule).into()),
                    ]),
                )
            })
        }
        Decision::Hidden {
            unlisted: Some(rule),
            ..
        } => {
            // Exactly the answer something the policy does not list gets.
            let unlisted = Decision::Deny {
                rule,
                reason: std::borrow::Cow::Borrowed(crate::decision::default_deny_reason(
                    target.kind,
                )),
            };
            for_decision(id, target, &unlisted, answering)
        }
        Decision::Hidden { unlisted: None, .. } => Some(unknown(id, target, answering)),
        Decision::RateLimited {
            limit,
            retry_after_seconds,
            cost,
        } => {
            let mut data: [(&str, Field<'_>); 7] = [("", Field::Null); 7];
            // A cost of its own, or the larger cost of another limit naming
            // the same counter, which the call took from it.
            let shows_cost = limit.has_cost() || *cost != 1;
            let (message, used) = match limit.kind {
                LimitKind::Window { seconds, max } => {
                    let (took, cost_text, closing) = if shows_cost {
                        (" (this call costs ", Piece::Number(*cost), ")")
                    } else {
                        ("", Piece::Text(""), "")
                    };
                    (
                        text(&[
                            "Rate limit exceeded for ".into(),
                            target.kind.as_str().into(),
                            " '".into(),
                            name.into(),
                            "': counter '".into(),
                            limit.counter.as_str().into(),
                            "' allows ".into(),
                            max.into(),
                            " per ".into(),
                            seconds.into(),
                            "s".into(),
                            took.into(),
                            cost_text,
                            closing.into(),
                            "; retry after ".into(),
                            (*retry_after_seconds).into(),
                            "s".into(),
                        ]),
                        {
                            data[..6].copy_from_slice(&[
                                (key, name.into()),
                                ("rule", limit.pointer.as_str().into()),
                                ("counter", limit.counter.as_str().into()),
                                ("max", max.into()),
                                ("window_seconds", seconds.into()),
                                ("retry_after_seconds", (*retry_after_seconds).into()),
                            ]);
                            6
                        },
                    )
                }
                // No retry guess: a slot frees when one of the calls ends.
                LimitKind::Concurrent { cap, .. } => (
                    text(&[
                        "Concurrency limit reached for ".into(),
                        target.kind.as_str().into(),
                        " '".into(),
                        name.into(),
                        "': counter '".into(),
                        limit.counter.as_str().into(),
                        "' allows ".into(),
                        cap.into(),
                        " calls in flight; retry when one has finished".into(),
                    ]),
                    {
                        data[..4].copy_from_slice(&[
                            (key, name.into()),
                            ("rule", limit.pointer.as_str().into()),
                            ("counter", limit.counter.as_str().into()),
                            ("concurrent", cap.into()),
                        ]);
                        4
                    },
                ),
            };
            let used = if shows_cost {
                data[used] = ("cost", (*cost).into());
                used + 1
            } else {
                used
            };
            Some(if as_tool_result {
                tool_result_reply(
                    id,
                    text(&[
                        RATE_LIMITED_PREFIX.into(),
                        " ".into(),
                        message.as_str().into(),
                    ]),
                )
            } else {
                error_reply(
                    status::DECIDED,
                    id,
                    code::RATE_LIMITED,
                    &message,
                    Some(&mut data[..used]),
                )
            })
        }
        // Always a JSON-RPC error: the call is malformed for this policy.
        Decision::InvalidArgument { rule, reason } => Some(error_reply(
            status::DECIDED,
            id,
            code::INVALID_PARAMS,
            &format!(
                "Invalid params for {} '{name}': {reason}",
                target.kind.as_str()
            ),
            Some(&mut [
                (key, name.into()),
                ("rule", (*rule).into()),
                ("reason", reason.as_str().into()),
            ]),
        )),
        Decision::Failed { .. } => Some(error_reply(
            status::DECIDED,
            id,
            code::INTERNAL_ERROR,
            "Policy gate could not decide; the request was not forwarded",
            Some(&mut [(key, name.into())]),
        )),
        // The gate asks the approval service before answering; should a
        // caller ever render this decision directly, the call still waits.
        Decision::NeedsApproval { rule, .. } => Some(error_reply(
            status::DECIDED,
            id,
            code::APPROVAL_REQUIRED,
            &format!("Approval required: {title} '{name}' needs a person's approval"),
            Some(&mut [(key, name.into()), ("rule", (*rule).into())]),
        )),
    }
}

/// A pending approval, as the caller is told where a person can approve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval<'a> {
    pub approval_id: &'a str,
    /// The page a person opens to approve or deny.
    pub url: &'a str,
    pub retry_after_seconds: u64,
    /// JSON pointer of what asked for approval.
    pub rule: &'a str,
    /// The rule's approval reason.
    pub reason: Option<&'a str>,
    /// RFC 3339: the approval waits until then.
    pub expires_at: Option<&'a str>,
}

fn approval_message(target: &Target<'_>, pending: &PendingApproval<'_>) -> String {
    let reason = pending
        .reason
        .map_or_else(String::new, |reason| format!(" ({reason})"));
    format!(
        "A person must approve this call of {} '{}'{reason}. Open {} to review it; once it is approved, send the same call again.",
        target.kind.as_str(),
        target.name,
        pending.url
    )
}

/// `-31004` "approval required": for any client. `data` names the approval,
/// its link, when to retry and the rule.
pub fn approval_required(id: &Value, target: &Target<'_>, pending: &PendingApproval<'_>) -> Reply {
    let key = data_key(target);
    let mut data: [(&str, Field<'_>); 7] = [
        (key, target.name.as_ref().into()),
        ("approval_id", pending.approval_id.into()),
        ("approval_url", pending.url.into()),
        ("retry_after_seconds", pending.retry_after_seconds.into()),
        ("rule", pending.rule.into()),
        ("", Field::Null),
        ("", Field::Null),
    ];
    let mut used = 5;
    for (name, value) in [
        ("reason", pending.reason),
        ("expires_at", pending.expires_at),
    ] {
        if let Some(value) = value {
            data[used] = (name, value.into());
            used += 1;
        }
    }
    error_reply(
        status::DECIDED,
        id,
        code::APPROVAL_REQUIRED,
        &format!(
            "Approval required: {} '{}' waits for a person's approval at {}; retry the same call once it is approved (in {}s or later)",
            target.kind.as_str(),
            target.name,
            pending.url,
            pending.retry_after_seconds
        ),
        Some(&mut data[..used]),
    )
}

/// MCP 2025-11-25's URL-elicitation-required error (`-32042`), for a
/// session whose client declared URL-mode elicitation: the client shows the
/// link and may retry the call once the person is done.
pub fn url_elicitation_required(
    id: &Value,
    target: &Target<'_>,
    pending: &PendingApproval<'_>,
) -> Reply {
    error_reply(
        status::DECIDED,
        id,
        code::URL_ELICITATION_REQUIRED,
        "This request requires approval: open the link, then retry it.",
        Some(&mut [(
            "elicitations",
            Field::Json(&json!([{
                "mode": "url",
                "elicitationId": pending.approval_id,
                "url": pending.url,
                "message": approval_message(target, pending),
            }])),
        )]),
    )
}

/// MCP 2026-07-28's `InputRequiredResult` for a request whose client
/// declared URL-mode elicitation: one URL-mode `elicitation/create` under
/// `input_key`, and the gate's own `requestState` to echo on the retry.
pub fn input_required(
    id: &Value,
    target: &Target<'_>,
    pending: &PendingApproval<'_>,
    input_key: &str,
    request_state: &str,
) -> Reply {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "resultType": "input_required",
            "inputRequests": {
                input_key: {
                    "method": "elicitation/create",
                    "params": {
                        "mode": "url",
                        "url": pending.url,
                        "message": approval_message(target, pending),
                    }
                }
            },
            "requestState": request_state,
        }
    });
    Reply {
        status: status::DECIDED,
        body: json_bytes(&body),
    }
}

/// A call a person denied: `-31001` with their reason (a tool result with
/// `deny_as: tool_result`).
pub fn approval_denied(
    id: &Value,
    target: &Target<'_>,
    rule: &str,
    approval_id: &str,
    approver: Option<&str>,
    reason: Option<&str>,
    answering: Answering,
) -> Reply {
    let by = approver.map_or_else(String::new, |approver| format!(" by {approver}"));
    let why = reason.unwrap_or("no reason given");
    let message = format!(
        "{} '{}' denied{by}: {why}",
        target.kind.title(),
        target.name
    );
    if answering.deny_as == DenyAs::ToolResult && target.kind == Kind::Tool {
        return tool_result_reply(id, format!("{APPROVAL_DENIED_PREFIX} {message}"));
    }
    error_reply(
        status::DECIDED,
        id,
        code::POLICY_DENIED,
        &message,
        Some(&mut [
            (data_key(target), target.name.as_ref().into()),
            ("reason", why.into()),
            ("rule", rule.into()),
            ("approval_id", approval_id.into()),
            ("approver", approver.into()),
        ]),
    )
}

/// The approval service refused the check itself (the call is too large to
/// approve, the approvers' backlog is full, or the check was malformed):
/// the call is refused, nothing forwarded.
pub fn approval_refused(id: &Value, target: &Target<'_>, rule: &str, detail: &str) -> Reply {
    error_reply(
        status::DECIDED,
        id,
        code::POLICY_DENIED,
        &format!(
            "{} '{}' cannot be approved now: {detail}",
            target.kind.title(),
            target.name
        ),
        Some(&mut [
            (data_key(target), target.name.as_ref().into()),
            ("reason", detail.into()),
            ("rule", rule.into()),
        ]),
    )
}

/// What a server answers for something it does not have, as the MCP
/// specification shows it: an unknown tool or prompt is `-32602`; a resource
/// is `-32002` "Resource not found" at 2025-11-25 and `-32602` from
/// 2026-07-28 on (which forbids -32002).
fn unknown(id: &Value, target: &Target<'_>, answering: Answering) -> Reply {
    let name = target.name.as_ref();
    match target.kind {
        Kind::Resource if !answering.current => error_reply(
            status::DECIDED,
            id,
            code::RESOURCE_NOT_FOUND,
            "Resource not found",
            Some(&mut [("uri", name.into())]),
        ),
        Kind::Resource => error_reply(
            status::DECIDED,
            id,
            code::INVALID_PARAMS,
            "Resource not found",
            Some(&mut [("uri", name.into())]),
        ),
        Kind::Task => error_reply(
            status::DECIDED,
            id,
            code::INVALID_PARAMS,
            "Failed to retrieve task: Task not found",
            None,
        ),
        Kind::Tool | Kind::Prompt => error_reply(
            status::DECIDED,
            id,
            code::INVALID_PARAMS,
            &format!("Unknown {}: {name}", target.kind.as_str()),
            None,
        ),
    }
}

/// The answer to a request whose method the policy denies as a whole
/// (`methods`). A notification (no id) cannot be answered with a JSON-RPC
/// response: it is refused with HTTP 403 and an error without id.
pub fn method_denied(id: Option<&Value>, method: &str, rule: &str) -> Reply {
    let status = if id.is_some() {
        status::DECIDED
    } else {
        status::FORBIDDEN
    };
    error_reply(
        status,
        id.unwrap_or(&Value::Null),
        code::POLICY_DENIED,
        &format!("Method '{method}' denied by policy"),
        Some(&mut [
            ("method", method.into()),
            ("reason", "method denied by policy".into()),
            ("rule", rule.into()),
        ]),
    )
}

/// The answer to a request without an acceptable identity. Sent before the
/// body is read, so the id is unknown (null).
pub fn unauthorized(error: &IdentityError) -> Reply {
    error_reply(
        status::UNAUTHORIZED,
        &Value::Null,
        code::UNAUTHORIZED,
        error.message(),
        None,
    )
}

/// The answer to a body the gate cannot read as one request.
pub fn for_invalid(invalid: &Invalid) -> Reply {
    match invalid {
        Invalid::Malformed { detail } => error_reply(
            status::BAD_REQUEST,
            &Value::Null,
            code::PARSE_ERROR,
            "Parse error",
            Some(&mut [("detail", detail.as_str().into())]),
        ),
        Invalid::Batch => error_reply(
            status::BAD_REQUEST,
            &Value::Null,
            code::INVALID_REQUEST,
            "Invalid Request: JSON-RPC batches are not accepted; send one message per request",
            None,
        ),
        Invalid::Request { id, detail } => error_reply(
            status::BAD_REQUEST,
            id,
            code::INVALID_REQUEST,
            "Invalid Request",
            Some(&mut [("detail", detail.as_str().into())]),
        ),
        Invalid::Params { id, detail } => error_reply(
            status::BAD_REQUEST,
            id,
            code::INVALID_PARAMS,
            "Invalid params",
            Some(&mut [("detail", detail.as_str().into())]),
        ),
    }
}

/// The answer to a request the gate could not decide for want of Envoy's
/// shared data (under `failure_mode: closed`).
pub fn undecidable(id: &Value, detail: &str) -> Reply {
    error_reply(
        status::DECIDED,
        id,
        code::INTERNAL_ERROR,
        "Policy gate could not decide; the request was not forwarded",
        Some(&mut [("detail", detail.into())]),
    )
}

/// The answer to a request whose `Mcp-Method` or `Mcp-Name` header does not
/// match its body: intermediaries route on the headers, the server executes
/// the body, so the two must agree.
pub fn header_mismatch(id: &Value, detail: &str) -> Reply {
    error_reply(
        status::BAD_REQUEST,
        id,
        code::HEADER_MISMATCH,
        &format!("Header mismatch: {detail}"),
        None,
    )
}

/// The answer to a request body with a `Content-Encoding` other than identity.
pub fn unsupported_encoding(encoding: &str) -> Reply {
    error_reply(
        status::UNSUPPORTED_MEDIA_TYPE,
        &Value::Null,
        code::INVALID_REQUEST,
        &format!("Content-Encoding {encoding:?} is not accepted; send the request body unencoded"),
        None,
    )
}

/// The answer to a request body whose `Content-Type` names a charset other
/// than UTF-8: a server that decodes it (Express's `express.json()` decodes
/// any `utf-*`, UTF-7 included) would read other members than the gate.
pub fn unsupported_charset(charset: crate::mcp::Charset) -> Reply {
    let message = match charset {
        crate::mcp::Charset::Foreign(charset) => format!(
            "Content-Type charset {charset:?} is not accepted; send the request body as UTF-8"
        ),
        crate::mcp::Charset::Twice => {
            "Content-Type names its charset more than once; name one, UTF-8, or none".to_string()
        }
    };
    error_reply(
        status::UNSUPPORTED_MEDIA_TYPE,
        &Value::Null,
        code::INVALID_REQUEST,
        &message,
        None,
    )
}

/// The answer to a request whose header the gate reads (identity, session,
/// `Mcp-*`, …) is not UTF-8 text, or is given more than once: the gate
/// cannot decide on what it cannot read, nor on one value of several.
pub fn unusable_header(name: &str, why: &str) -> Reply {
    error_reply(
        status::BAD_REQUEST,
        &Value::Null,
        code::INVALID_REQUEST,
        &format!("Invalid Request: header {name} {why}"),
        None,
    )
}

/// The JSON-RPC error sent in place of an answer the gate must rewrite for
/// the caller (it may list hidden entries) but cannot read.
pub fn unreadable_answer(id: &Value) -> Vec<u8> {
    error_reply(
        status::DECIDED,
        id,
        code::INTERNAL_ERROR,
        "Policy gate could not read an answer it must filter for this caller; the answer was withheld",
        None,
    )
    .body
}

/// The answer to a body larger than the policy's `max_body_bytes`.
pub fn body_too_large(max_body_bytes: u64) -> Reply {
    error_reply(
        status::PAYLOAD_TOO_LARGE,
        &Value::Null,
        code::INVALID_REQUEST,
        &format!("Request body exceeds the gate's limit of {max_body_bytes} bytes"),
        Some(&mut [("max_body_bytes", max_body_bytes.into())]),
    )
}

#[cfg(test)]
mod tests;
