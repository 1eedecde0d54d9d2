//! The request path, host-free: from a request body and its caller to the
//! action the filter takes (forward or answer), the outcome and the audit
//! record. The proxy-wasm glue only gathers inputs and applies the result.

use crate::audit::AuditRecord;
use crate::decision::{self, Decision, Outcome};
use crate::host::{Clock, SharedStore};
use crate::mcp::{self, Message};
use crate::policy::{FailureMode, IdentityError, Mode, Policy};
use crate::ratelimit::{self, CallerScope, Reservation};
use crate::response::{self, Reply};

/// What the filter does with one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// `Some`: answer with this and forward nothing. `None`: forward.
    pub reply: Option<Reply>,
    /// Quota taken for a forwarded call.
    pub reservations: Vec<Reservation>,
    /// `None` for messages the policy does not gate (they pass unrecorded).
    pub audit: Option<AuditRecord>,
    /// Set for a listing request (`tools/list`) whose answer must be
    /// rewritten for this caller (it hides tools from them): the request's
    /// id (null for none), for an error in place of an unreadable answer.
    pub filter_listing: Option<serde_json::Value>,
    /// Global limits to ask the rate-limit service about before forwarding.
    pub global_check: Option<GlobalCheck>,
}

impl Inspection {
    pub fn outcome(&self) -> Option<Outcome> {
        self.audit.as_ref().map(|record| record.decision)
    }
}

impl Inspection {
    fn pass() -> Self {
        Inspection::default()
    }

    /// A request answered by the gate before any tool rule (unreadable,
    /// oversized, encoded, mismatched headers, no identity), as enforced.
    fn refusal(policy: &Policy, reply: Reply, audit: AuditRecord) -> Self {
        Inspection {
            reply: Some(reply),
            audit: Some(audit),
            ..Inspection::pass()
        }
        .enforced_by(policy.mode)
    }

    /// In monitor mode nothing is blocked: the decision stays in the audit
    /// record and the metrics, the reply is dropped.
    fn enforced_by(mut self, mode: Mode) -> Self {
        if mode == Mode::Monitor {
            self.reply = None;
            if let Some(audit) = &mut self.audit {
                audit.enforced = false;
            }
        }
        self
    }
}

/// The MCP 2026-07-28 request headers that mirror the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpHeaders<'a> {
    /// `Mcp-Method`
    pub method: Option<&'a str>,
    /// `Mcp-Name`
    pub name: Option<&'a str>,
}

/// Inspects a complete request body sent without `Mcp-Method`/`Mcp-Name`.
pub fn inspect_body<S: SharedStore + ?Sized, C: Clock + ?Sized>(
    policy: &Policy,
    store: &S,
    clock: &C,
    caller: CallerScope<'_>,
    body: &[u8],
) -> Inspection {
    inspect_request(policy, store, clock, caller, McpHeaders::default(), body)
}

/// Inspects a complete request: its body and the headers that mirror it.
pub fn inspect_request<S: SharedStore + ?Sized, C: Clock + ?Sized>(
    policy: &Policy,
    store: &S,
    clock: &C,
    caller: CallerScope<'_>,
    headers: McpHeaders<'_>,
    body: &[u8],
) -> Inspection {
    let now = clock.unix_time();
    let message = match mcp::parse_with_depth(body, policy.max_json_depth) {
        Ok(message) => message,
        Err(invalid) => {
            let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
            return Inspection::refusal(policy, response::for_invalid(&invalid), audit);
        }
    };
    if let Err((id, detail)) = check_mirrored_headers(&message, headers) {
        let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
        return Inspection::refusal(policy, response::header_mismatch(&id, &detail), audit);
    }
    let view = policy.view(caller.grant);
    let call = match message {
        Message::ToolCall(call) => call,
        Message::Other { method, id, .. } => {
            let lists = method.as_deref() == Some(mcp::TOOLS_LIST);
            let filters = lists && policy.mode == Mode::Enforce && view.filters_listing();
            return Inspection {
                filter_listing: filters.then(|| id.unwrap_or(serde_json::Value::Null)),
                ..Inspection::pass()
            };
        }
    };

    let decision = decision::decide(view, &call.name, &call, caller, store, now.as_secs());
    let mut audit = AuditRecord::new(now, caller.grant, caller.session, decision.outcome());
    audit.method = Some(mcp::TOOLS_CALL.to_string());
    audit.tool = Some(call.name.to_string());
    audit.rule = decision.rule().map(str::to_string);
    audit.argument_keys = call
        .argument_keys
        .iter()
        .map(|key| key.to_string())
        .collect();

    let fails_open =
        matches!(decision, Decision::Failed { .. }) && policy.failure_mode == FailureMode::Open;
    let reply = response::for_decision(&call.id, &call.name, &decision, policy.deny_as)
        .filter(|_| !fails_open);
    if fails_open {
        audit.enforced = false;
    }
    let (reservations, global) = match decision {
        Decision::Allow {
            reservations,
            global,
        } => (reservations, global),
        _ => (Vec::new(), Vec::new()),
    };
    let global_check = match (&policy.rate_limit_service, global.is_empty()) {
        (Some(service), false) => Some(GlobalCheck {
            request: ratelimit::service::request(service, &global, caller),
            limits: global.into_iter().cloned().collect(),
            id: call.id.clone(),
            tool: call.name.to_string(),
        }),
        _ => None,
    };
    Inspection {
        reply,
        reservations,
        audit: Some(audit),
        filter_listing: None,
        global_check,
    }
    .enforced_by(policy.mode)
}

/// Global limits still to be asked of the rate-limit service before the call
/// may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCheck {
    /// The encoded `ShouldRateLimit` request.
    pub request: Vec<u8>,
    pub limits: Vec<crate::policy::Limit>,
    id: serde_json::Value,
    tool: String,
}

/// The decision once the rate-limit service has answered (`Ok`: the
/// response message; `Err`: the call failed or timed out). Updates the audit
/// record; the reply is `None` when the call goes ahead. The caller gives
/// back the local quota when a reply is sent.
pub fn complete_global_check(
    policy: &Policy,
    check: &GlobalCheck,
    answer: Result<&[u8], String>,
    now_seconds: u64,
    audit: &mut AuditRecord,
) -> Option<Reply> {
    let limits: Vec<&crate::policy::Limit> = check.limits.iter().collect();
    let verdict = match answer {
        Ok(bytes) => ratelimit::service::verdict(bytes, &limits, now_seconds),
        Err(err) => ratelimit::service::Verdict::Failed(err),
    };
    let failure_mode = policy
        .rate_limit_service
        .as_ref()
        .map_or(FailureMode::Closed, |service| service.failure_mode);
    let reply = match verdict {
        ratelimit::service::Verdict::Allowed => None,
        ratelimit::service::Verdict::OverLimit {
            index,
            retry_after_seconds,
        } => {
            let limit = limits.get(index).copied()?;
            let decision = Decision::RateLimited {
                limit,
                retry_after_seconds,
            };
            audit.decision = Outcome::RateLimited;
            audit.rule = Some(limit.pointer.clone());
            response::for_decision(&check.id, &check.tool, &decision, policy.deny_as)
        }
        ratelimit::service::Verdict::Failed(detail) => {
            log::warn!(
                "mcp-policy: rate-limit service failed ({detail}); failure_mode {failure_mode:?}"
            );
            audit.decision = Outcome::Failed;
            if failure_mode == FailureMode::Open {
                audit.enforced = false;
                None
            } else {
                let decision = Decision::Failed { detail };
                response::for_decision(&check.id, &check.tool, &decision, policy.deny_as)
            }
        }
    };
    if policy.mode == Mode::Monitor {
        audit.enforced = false;
        return None;
    }
    reply
}

/// A request refused before its body is read as a call (`Outcome::Invalid`).
fn refused_as_invalid<C: Clock + ?Sized>(
    policy: &Policy,
    clock: &C,
    caller: CallerScope<'_>,
    reply: Reply,
) -> Inspection {
    let audit = AuditRecord::new(
        clock.unix_time(),
        caller.grant,
        caller.session,
        Outcome::Invalid,
    );
    Inspection::refusal(policy, reply, audit)
}

/// The answer to a body over the policy's limit, seen before it is complete.
pub fn body_too_large<C: Clock + ?Sized>(
    policy: &Policy,
    clock: &C,
    caller: CallerScope<'_>,
) -> Inspection {
    let reply = response::body_too_large(policy.max_body_bytes);
    refused_as_invalid(policy, clock, caller, reply)
}

/// The answer to a request body in an encoding the gate does not read.
pub fn unsupported_encoding<C: Clock + ?Sized>(
    policy: &Policy,
    clock: &C,
    caller: CallerScope<'_>,
    encoding: &str,
) -> Inspection {
    let reply = response::unsupported_encoding(encoding);
    refused_as_invalid(policy, clock, caller, reply)
}

/// The answer to a request with a header the gate reads that is not text.
pub fn unreadable_header<C: Clock + ?Sized>(
    policy: &Policy,
    clock: &C,
    caller: CallerScope<'_>,
    name: &str,
) -> Inspection {
    let reply = response::unreadable_header(name);
    refused_as_invalid(policy, clock, caller, reply)
}

/// The answer to a request without an acceptable identity.
pub fn unauthorized<C: Clock + ?Sized>(
    policy: &Policy,
    clock: &C,
    caller: CallerScope<'_>,
    error: &IdentityError,
) -> Inspection {
    let mut audit = AuditRecord::new(
        clock.unix_time(),
        caller.grant,
        caller.session,
        Outcome::Denied,
    );
    audit.rule = Some(IDENTITY_POINTER.to_string());
    Inspection::refusal(policy, response::unauthorized(error), audit)
}

/// Methods whose `Mcp-Name` mirrors `params.name`, and those where it mirrors `params.uri`.
const NAMED_BY_NAME: [&str; 2] = [mcp::TOOLS_CALL, "prompts/get"];
const NAMED_BY_URI: [&str; 3] = [
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// `Mcp-Method` must equal the body's `method`, and `Mcp-Name` the name or
/// URI the method addresses, whenever the headers are sent. Err: the id to
/// answer with and what disagrees.
fn check_mirrored_headers(
    message: &Message<'_>,
    headers: McpHeaders<'_>,
) -> Result<(), (serde_json::Value, String)> {
    let (method, id, named): (Option<&str>, serde_json::Value, Option<String>) = match message {
        Message::ToolCall(call) => (
            Some(mcp::TOOLS_CALL),
            call.id.clone(),
            Some(call.name.to_string()),
        ),
        Message::Other { method, id, named } => {
            let method = method.as_deref();
            let named = match method {
                Some(m) if NAMED_BY_NAME.contains(&m) => named.name.as_deref(),
                Some(m) if NAMED_BY_URI.contains(&m) => named.uri.as_deref(),
                _ => None,
            }
            .map(str::to_string);
            (method, id.clone().unwrap_or(serde_json::Value::Null), named)
        }
    };
    if let Some(header) = headers.method {
        if Some(header) != method {
            return Err((
                id,
                format!("Mcp-Method {header:?} does not match the body's method {method:?}"),
            ));
        }
    }
    if let Some(header) = headers.name {
        if Some(header) != named.as_deref() {
            return Err((
                id,
                format!("Mcp-Name {header:?} does not match the body's {named:?}"),
            ));
        }
    }
    Ok(())
}

/// Rule reported when the identity refuses a request.
pub const IDENTITY_POINTER: &str = "/identity";

#[cfg(test)]
mod tests;
