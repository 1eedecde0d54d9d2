//! The request path, host-free: from a request body and its caller to the
//! action the filter takes (forward or answer), the outcome and the audit
//! record. The proxy-wasm glue only gathers inputs and applies the result.

use serde_json::Value;

use crate::approval::{self, ApprovalCheck, PendingAs, Verdict};
use crate::audit::{ApprovalRecord, AuditRecord};
use crate::bindings::{self, Table};
use crate::decision::{self, ArgumentSource, Counting, Decision, Outcome};
use crate::host::{Clock, SharedStore};
use crate::mcp::methods::{self, Handling};
use crate::mcp::{self, Invalid, Message, Params};
use crate::policy::{FailureMode, IdentityError, Mode, Policy, RateLimitService, View};
use crate::ratelimit::{self, CallerScope, Charge, Reservation};
use crate::response::{self, Answering, Reply};
use crate::target::{Invoked, Kind, Target};
use crate::uri;

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
    /// A forwarded use of this target whose answer may hand out a task or a
    /// `requestState` the gate must bind to the caller.
    pub observe: Option<Target<'static>>,
    /// Whom a `requestState` that answer hands out belongs to
    /// ([`bindings::state_owner`]).
    pub state_owner: Option<[u8; crate::ratelimit::OWNER_DIGEST_LEN]>,
    /// The call needs a person's approval: ask the approval service before
    /// anything else (the audit record waits with it).
    pub approval: Option<ApprovalCheck>,
    /// Forward this body instead of the one received (same length): a retry
    /// without the gate's own `requestState` and `inputResponses`.
    pub rewrite_body: Option<Vec<u8>>,
    /// An `initialize` whose client declared URL-mode elicitation: remember
    /// it for the session the server's answer names.
    pub remember_url_elicitation: bool,
    /// The digest of the key this forwarded request's id is claimed under in
    /// its session ([`Table::InFlight`]): released when the server's answer
    /// is complete (or shortened when its stream ends without one).
    pub in_flight: Option<[u8; crate::ratelimit::OWNER_DIGEST_LEN]>,
    /// A line for Envoy's log at warn: why the gate could not decide (its
    /// counters could not be written), which neither the caller's answer
    /// nor the audit line says.
    pub warning: Option<String>,
}

impl Inspection {
    pub fn outcome(&self) -> Option<Outcome> {
        self.audit.as_ref().map(|record| record.decision)
    }

    /// Ends the request's exchange as the filter does once its answer is
    /// complete: its id's claim in its session is released. For what drives
    /// the gate without a stream (`mcp-policy eval`, tests, benchmarks,
    /// fuzzing) and sends the same id again.
    pub fn answered<S: SharedStore + ?Sized>(&self, store: &S, now_seconds: u64) {
        if let Some(key) = &self.in_flight {
            bindings::release(store, Table::InFlight, key, now_seconds);
        }
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

/// The MCP request headers the gate checks against the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpHeaders<'a> {
    /// `Mcp-Method`
    pub method: Option<&'a str>,
    /// `Mcp-Name` (possibly `=?base64?…?=`-encoded)
    pub name: Option<&'a str>,
    /// `MCP-Protocol-Version`
    pub protocol_version: Option<&'a str>,
    /// `Mcp-Session-Id` as sent, whatever the revision says of it: a request
    /// id is claimed under it while the request is in flight.
    pub session: Option<&'a str>,
}

/// The first protocol revision without sessions, where `Mcp-Method` and
/// `Mcp-Name` are required.
pub const CURRENT_REVISION: &str = "2026-07-28";

/// Whether a protocol version is 2026-07-28 or later (versions are dates, so
/// they order as text).
pub fn is_current(version: &str) -> bool {
    version >= CURRENT_REVISION
}

/// Inspects a complete request body sent without `Mcp-*` headers.
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
    let revision = match check_mirrored_headers(&message, headers, body) {
        Ok(revision) => revision,
        Err((id, detail)) => {
            let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
            return Inspection::refusal(policy, response::header_mismatch(&id, &detail), audit);
        }
    };
    // A request that names its protocol version in `_meta` describes itself
    // (MCP 2026-07-28's way): servers serve it without a session, whatever
    // the headers say (rmcp does at 2025-11-25 too), so a `Mcp-Session-Id`
    // beside it names nothing it is counted by: it counts under its grant.
    // A request at 2026-07-28 or later (by its header alone too) has no
    // session either: an id made up per call must not count apart.
    let self_described = revision == Revision::Current
        || match &message {
            Message::ToolCall(call) => call.meta_version.is_some(),
            Message::Other { named, .. } => named.meta_version.is_some(),
        };
    // The id is claimed under the session header as sent, self-described or
    // at 2026-07-28 or not: a server may route the answer within that
    // session all the same.
    let claim = match in_flight_key(policy, headers.session.or(caller.session), &message) {
        Ok(key) => key.as_deref().map(bindings::id_digest),
        Err(invalid) => {
            let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
            return Inspection::refusal(policy, response::for_invalid(&invalid), audit);
        }
    };
    let caller = if self_described {
        CallerScope {
            session: None,
            ..caller
        }
    } else {
        caller
    };
    // MCP forbids reusing a request id within a session, and servers send
    // an answer to the stream that last sent its id: a listing answered on
    // another request's stream (a call sent with the listing's id) would
    // pass unread. So an id is claimed while its request is in flight.
    let mut claim = claim;
    if let Some(key) = &claim {
        match bindings::claim(store, Table::InFlight, key, now.as_secs()) {
            Ok(bindings::Claim::Claimed) => {}
            // Every slot the id may take holds a live claim (tens of
            // thousands of requests in flight): the request goes on
            // unclaimed rather than every caller being refused.
            Ok(bindings::Claim::Full) => claim = None,
            Ok(bindings::Claim::Taken) => {
                let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
                let invalid = Invalid::Request {
                    id: message_id(&message).cloned().unwrap_or(Value::Null),
                    detail: "this request id is in use by another request of this session"
                        .to_string(),
                };
                return Inspection::refusal(policy, response::for_invalid(&invalid), audit);
            }
            // Not recorded: forwarded unclaimed under `failure_mode: open`.
            Err(_) if policy.failure_mode == FailureMode::Open => {
                return inspect_message(policy, store, now, caller, revision, message, body);
            }
            Err(err) => {
                let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Failed);
                let id = message_id(&message).cloned().unwrap_or(Value::Null);
                return Inspection::refusal(policy, response::undecidable(&id, &err), audit);
            }
        }
    }
    let mut inspection = inspect_message(policy, store, now, caller, revision, message, body);
    if let Some(key) = claim {
        if inspection.reply.is_some() {
            // Answered by the gate: nothing reaches the server under it.
            bindings::release(store, Table::InFlight, &key, now.as_secs());
        } else {
            inspection.in_flight = Some(key);
        }
    }
    inspection
}

/// The id of a request message, if it has one.
fn message_id<'m>(message: &'m Message<'_>) -> Option<&'m Value> {
    match message {
        Message::ToolCall(call) => Some(&call.id),
        Message::Other {
            method: Some(_),
            id,
            ..
        } => id.as_ref(),
        Message::Other { method: None, .. } => None,
    }
}

/// The key a request's id is claimed under while it is in flight, where the
/// policy is enforced and the request has a session: the session and the id
/// (`None`: nothing to claim). Servers compare ids in their own ways (as
/// JavaScript numbers, so `7`, `7.0` and `7e0` are one id and so are
/// integers past 2^53 that round alike; as the text of an integer, so `7`
/// and `"7"` are one id): an integer is keyed as its decimal text, which a
/// string of it shares, and a number that is not an integer written
/// without fraction or exponent, within ±(2^53 − 1), is refused, as one the
/// gate could key apart from an id a server takes for the same.
fn in_flight_key(
    policy: &Policy,
    session: Option<&str>,
    message: &Message<'_>,
) -> Result<Option<String>, Invalid> {
    if policy.mode != Mode::Enforce {
        return Ok(None);
    }
    let (Some(session), Some(id)) = (session.filter(|s| !s.is_empty()), message_id(message)) else {
        return Ok(None);
    };
    const SAFE: u64 = (1 << 53) - 1;
    let mut key = String::with_capacity(session.len() + 24);
    ratelimit::push_decimal(&mut key, session.len() as u64);
    key.push(':');
    key.push_str(session);
    match id {
        Value::Number(number) => match (number.as_u64(), number.as_i64()) {
            (Some(n), _) if n <= SAFE => ratelimit::push_decimal(&mut key, n),
            (None, Some(n)) if n.unsigned_abs() <= SAFE => {
                key.push('-');
                ratelimit::push_decimal(&mut key, n.unsigned_abs());
            }
            _ => {
                return Err(Invalid::Request {
                    id: Value::Null,
                    detail: format!(
                        "in a session, a request id must be a string or an integer from -{SAFE} to {SAFE} written without fraction or exponent, got {number}: servers compare other numbers differently"
                    ),
                })
            }
        },
        Value::String(text) => key.push_str(text),
        _ => return Ok(None),
    }
    Ok(Some(key))
}

/// Decides a parsed request (its id claimed, if it needed one).
fn inspect_message<S: SharedStore + ?Sized>(
    policy: &Policy,
    store: &S,
    now: std::time::Duration,
    caller: CallerScope<'_>,
    revision: Revision,
    message: Message<'_>,
    body: &[u8],
) -> Inspection {
    let asks_for_task = match &message {
        Message::ToolCall(call) => call.present.task,
        Message::Other { named, .. } => named.present.task,
    };
    let current = revision == Revision::Current;
    let context = Context {
        policy,
        view: policy.view_as(caller.grant, caller.role),
        caller,
        now,
        current,
        // Only a 2026-07-28 answer can be an InputRequiredResult or (tasks
        // extension) a task; before it, only a call with `params.task` makes
        // a task. Other answers are not read (a host call per chunk saved).
        watch_answers: current || asks_for_task,
    };
    let (method, id, body) = match message {
        Message::ToolCall(call) => {
            if let Some(pointer) = context.view.methods().denies(mcp::TOOLS_CALL) {
                return context.method_denied(mcp::TOOLS_CALL, Some(call.id.clone()), pointer);
            }
            let target = Target::tool(call.name.as_ref());
            let keys = call
                .argument_keys
                .iter()
                .map(|key| key.to_string())
                .collect();
            // Read only when the body may carry one: most calls do not.
            let state = if call.present.request_state {
                Params::read(body)
                    .ok()
                    .and_then(|params| params.request_state)
            } else {
                None
            };
            return context.decide(
                store,
                &call.id,
                &target,
                &call,
                Counting::Take,
                keys,
                body,
                state.as_deref(),
            );
        }
        Message::Other {
            method: Some(method),
            id,
            body,
            ..
        } => (method, id, body),
        // Responses to the server's requests and method-less messages pass.
        Message::Other { method: None, .. } => return Inspection::pass(),
    };
    // A method the gate knows spelt otherwise (letter case, blanks, a NUL
    // and what follows it, invisible characters): a server that matches
    // methods loosely would run it undecided.
    if !methods::is_known(&method) {
        let loosened = crate::mcp::loosened(&method);
        let known = methods::KNOWN
            .iter()
            .find(|known| crate::policy::fold_case(known.name) == loosened.as_str());
        if let Some(known) = known {
            return context.invalid(Invalid::Request {
                id: id.unwrap_or(Value::Null),
                detail: format!(
                    "method {method:?} differs from {:?} only in letter case, blanks or characters a server may drop",
                    known.name
                ),
            });
        }
    }
    if let Some(pointer) = context.view.methods().denies(&method) {
        return context.method_denied(&method, id, pointer);
    }
    let handling = methods::handling(&method);
    if method == "initialize"
        && policy.approval_service.is_some()
        && approval::initialize_declares_url_elicitation(body)
    {
        return Inspection {
            remember_url_elicitation: true,
            ..Inspection::pass()
        };
    }
    if handling == Handling::Pass {
        return Inspection::pass();
    }
    let params = match Params::read(body) {
        Ok(params) => params,
        Err(detail) => {
            let invalid = Invalid::Params {
                id: id.unwrap_or(Value::Null),
                detail,
            };
            let audit = AuditRecord::new(now, caller.grant, caller.session, Outcome::Invalid);
            return Inspection::refusal(policy, response::for_invalid(&invalid), audit);
        }
    };
    match handling {
        Handling::Pass => Inspection::pass(),
        Handling::List => {
            // Read for every caller when some caller's view differs: even an
            // unfiltered answer is marked private.
            let filters = policy.mode == Mode::Enforce && policy.listings_vary();
            // Annotation rules learn from what the server lists.
            let learns = method == mcp::TOOLS_LIST && !context.view.annotation_rules().is_empty();
            Inspection {
                filter_listing: filters.then(|| id.unwrap_or(Value::Null)),
                observe: learns.then(|| Target::tool(String::new())),
                ..Inspection::pass()
            }
        }
        Handling::Use(kind) => {
            let id = match request_id(id, &method) {
                Ok(id) => id,
                Err(refusal) => return context.invalid(refusal),
            };
            let named = match kind {
                Kind::Resource => params.uri.clone(),
                _ => params.name.clone(),
            };
            let Some(named) = named else {
                let member = if kind == Kind::Resource {
                    "uri"
                } else {
                    "name"
                };
                return context.invalid(Invalid::Params {
                    id,
                    detail: format!("{method} needs a string `params.{member}`"),
                });
            };
            let name = match context.target_name(kind, &named, &id) {
                Ok(name) => name,
                Err(invalid) => return context.invalid(invalid),
            };
            let raw = params.arguments.as_deref();
            let keys = params.argument_keys();
            let target = Target::new(kind, name);
            let state = params.request_state.as_deref();
            let mut inspection =
                context.decide(store, &id, &target, raw, Counting::Take, keys, body, state);
            if let Some(audit) = &mut inspection.audit {
                audit.method = Some(method.to_string());
            }
            inspection
        }
        Handling::Complete => {
            let id = match request_id(id, &method) {
                Ok(id) => id,
                Err(refusal) => return context.invalid(refusal),
            };
            if let Some(detail) = params.malformed {
                return context.invalid(Invalid::Params { id, detail });
            }
            let target = match params.reference {
                Some((kind, Some(named))) if kind == "ref/prompt" => (Kind::Prompt, named),
                Some((kind, Some(named))) if kind == "ref/resource" => (Kind::Resource, named),
                // A reference the gate does not know cannot be checked: refused.
                other => {
                    let got = match &other {
                        None => "no `ref`".to_string(),
                        Some((kind, _)) if kind.len() > 64 => "a type of over 64 bytes".to_string(),
                        Some((kind, None)) if kind == "ref/prompt" || kind == "ref/resource" => {
                            format!("{kind} without its string name or uri")
                        }
                        Some((kind, _)) => format!("type {kind:?}"),
                    };
                    return context.invalid(Invalid::Params {
                        id,
                        detail: format!(
                            "completion/complete needs `ref` of type ref/prompt (with name) or ref/resource (with uri), got {got}"
                        ),
                    });
                }
            };
            context.check_all(store, &method, &id, &[target])
        }
        Handling::Subscribe => {
            let id = match request_id(id, &method) {
                Ok(id) => id,
                Err(refusal) => return context.invalid(refusal),
            };
            let Some(uri) = params.uri else {
                return context.invalid(Invalid::Params {
                    id,
                    detail: "resources/subscribe needs a string `params.uri`".to_string(),
                });
            };
            context.check_all(store, &method, &id, &[(Kind::Resource, uri)])
        }
        Handling::Listen => {
            let id = match request_id(id, &method) {
                Ok(id) => id,
                Err(refusal) => return context.invalid(refusal),
            };
            if let Some(detail) = params.malformed {
                return context.invalid(Invalid::Params { id, detail });
            }
            for task in &params.task_ids {
                if !context.owns_task(store, task.as_deref()) {
                    return context.not_the_callers_task(&method, &id, task.as_deref());
                }
            }
            let mut targets = Vec::new();
            for uri in params.resource_subscriptions {
                let Some(uri) = uri else {
                    return context.invalid(Invalid::Params {
                        id,
                        detail: "every resourceSubscriptions entry must name a URI".to_string(),
                    });
                };
                targets.push((Kind::Resource, uri));
            }
            match params.task_ids.first() {
                // Only the caller's tasks: decided (and recorded) as theirs.
                Some(task) if targets.is_empty() => {
                    context.the_callers_task(&method, task.as_deref())
                }
                _ => context.check_all(store, &method, &id, &targets),
            }
        }
        Handling::Task => {
            let id = match request_id(id, &method) {
                Ok(id) => id,
                Err(refusal) => return context.invalid(refusal),
            };
            if context.owns_task(store, params.task_id.as_deref()) {
                context.the_callers_task(&method, params.task_id.as_deref())
            } else {
                context.not_the_callers_task(&method, &id, params.task_id.as_deref())
            }
        }
        // Always rewritten: a listing of tasks keeps only the caller's.
        Handling::TaskList if policy.mode == Mode::Enforce => Inspection {
            filter_listing: Some(id.unwrap_or(Value::Null)),
            ..Inspection::pass()
        },
        Handling::TaskList => Inspection::pass(),
    }
}

/// Which protocol revision a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// 2025-11-25 and earlier: sessions, `initialize`.
    Legacy,
    /// 2026-07-28 and later: no sessions, `Mcp-Method`/`Mcp-Name` required.
    Current,
}

/// What every decision of one request shares.
struct Context<'p, 'c> {
    policy: &'p Policy,
    view: &'p View,
    caller: CallerScope<'c>,
    now: std::time::Duration,
    current: bool,
    /// Whether an allowed use's answer may hand out what the gate binds.
    watch_answers: bool,
}

impl Context<'_, '_> {
    /// Whether the task is bound to the caller's grant (an unknown task is not).
    fn owns_task<S: SharedStore + ?Sized>(&self, store: &S, task: Option<&str>) -> bool {
        task.and_then(|task| bindings::owner(store, Table::Tasks, task, self.now.as_secs()))
            == Some(bindings::grant_owner(self.caller.grant))
    }

    /// A request about the caller's own task: allowed, and recorded as every
    /// decided request is.
    fn the_callers_task(&self, method: &str, task: Option<&str>) -> Inspection {
        let mut audit = self.audit(Outcome::Allowed);
        audit.set_target(Kind::Task, task.unwrap_or_default());
        audit.method = Some(method.to_string());
        Inspection {
            audit: Some(audit),
            ..Inspection::pass()
        }
        .enforced_by(self.policy.mode)
    }

    /// A request about a task of another grant (or one the gate never saw
    /// created): answered as if the task did not exist.
    fn not_the_callers_task(&self, method: &str, id: &Value, task: Option<&str>) -> Inspection {
        let target = Target::new(Kind::Task, task.unwrap_or_default().to_string());
        let decision = Decision::Hidden {
            rule: TASK_BINDING_POINTER,
            unlisted: None,
        };
        let mut audit = self.audit(Outcome::Hidden);
        audit.set_target(Kind::Task, &target.name);
        audit.method = Some(method.to_string());
        audit.rule = Some(TASK_BINDING_POINTER.to_string());
        let reply = response::for_decision(id, &target, &decision, self.answering());
        Inspection {
            reply,
            audit: Some(audit),
            ..Inspection::pass()
        }
        .enforced_by(self.policy.mode)
    }

    fn answering(&self) -> Answering {
        Answering {
            deny_as: self.policy.deny_as,
            current: self.current,
        }
    }

    fn audit(&self, outcome: Outcome) -> AuditRecord {
        AuditRecord::new(self.now, self.caller.grant, self.caller.session, outcome)
    }

    fn invalid(&self, invalid: Invalid) -> Inspection {
        Inspection::refusal(
            self.policy,
            response::for_invalid(&invalid),
            self.audit(Outcome::Invalid),
        )
    }

    fn method_denied(&self, method: &str, id: Option<Value>, pointer: &str) -> Inspection {
        // An id JSON-RPC does not allow (an object, a fraction) is not
        // echoed: refused as a request, as decided methods refuse it.
        if id.as_ref().is_some_and(|id| !id.is_null()) {
            if let Err(refusal) = request_id(id.clone(), method) {
                return self.invalid(refusal);
            }
        }
        let mut audit = self.audit(Outcome::Denied);
        audit.method = Some(method.to_string());
        audit.rule = Some(pointer.to_string());
        Inspection::refusal(
            self.policy,
            // A method name is the caller's: bounded as in the audit line.
            response::method_denied(id.as_ref(), &crate::audit::bounded(method), pointer),
            audit,
        )
    }

    /// The name rules see: a resource's URI normalised (a URI that cannot be
    /// is refused), other names as they are.
    fn target_name(&self, kind: Kind, named: &str, id: &Value) -> Result<String, Invalid> {
        if kind == Kind::Prompt {
            if let Err(detail) = mcp::check_prompt_name(named) {
                return Err(Invalid::Params {
                    id: id.clone(),
                    detail,
                });
            }
        }
        if kind != Kind::Resource {
            return Ok(named.to_string());
        }
        uri::normalize(named).map_err(|error| Invalid::Params {
            id: id.clone(),
            detail: format!("resource URI {named:?} has {error}"),
        })
    }

    /// Decides one use of a target and renders the answer. `body`: the
    /// whole request (for what an approval needs of it); `request_state`:
    /// its `params.requestState`, as the single pass read it.
    #[allow(clippy::too_many_arguments)]
    fn decide<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        id: &Value,
        target: &Target<'_>,
        arguments: impl ArgumentSource + Copy,
        counting: Counting,
        argument_keys: Vec<String>,
        body: &[u8],
        request_state: Option<&str>,
    ) -> Inspection {
        // A state the server handed to another grant's call: only that
        // grant may present it. (The server may not know the gate's grants,
        // and would resume that call's state for this caller.)
        if let Some(state) = request_state.filter(|state| !approval::is_gate_state(state)) {
            match bindings::state_of_another_grant(
                store,
                state,
                self.caller.grant,
                self.now.as_secs(),
            ) {
                Ok(false) => {}
                Ok(true) => {
                    return self.invalid(Invalid::Params {
                        id: id.clone(),
                        detail: "params.requestState was not issued for this call".to_string(),
                    })
                }
                Err(_) if self.policy.failure_mode == FailureMode::Open => {}
                Err(err) => {
                    let mut audit = self.audit(Outcome::Failed);
                    audit.set_target(target.kind, &target.name);
                    return Inspection::refusal(
                        self.policy,
                        response::undecidable(id, &err),
                        audit,
                    );
                }
            }
        }
        let request = decision::Request {
            kind: target.kind,
            name: &target.name,
            counting,
            request_state,
            binds_state: self.watch_answers,
        };
        let decided = decision::decide_target(
            self.view,
            request,
            arguments,
            self.caller,
            store,
            self.now.as_secs(),
        );
        let invoked = decided.invoked();
        let decision = decided.decision;
        let mut audit = self.audit(decision.outcome());
        audit.set_target(target.kind, &target.name);
        audit.rule = decision.rule().map(str::to_string);
        audit.set_argument_keys(argument_keys);
        audit.invokes = decided.invoked.clone();
        audit.costs = decided
            .costs
            .iter()
            .map(|(counter, cost)| crate::audit::CostRecord {
                counter: counter.clone(),
                cost: *cost,
            })
            .collect();
        if let Decision::NeedsApproval {
            rule,
            approval,
            charges,
        } = decision
        {
            let raw = arguments.raw_arguments().ok().flatten();
            let asked = Asked {
                rule,
                approval,
                charges,
            };
            let mut inspection =
                self.ask_for_approval(store, id, target, invoked, raw, body, asked, audit);
            if inspection.observe.is_some() {
                inspection.state_owner = decided.state_owner;
            }
            return inspection;
        }
        // A retry carrying the gate's own requestState is only ever an
        // approval's retry: for a call that needs none it cannot be checked.
        // (The state the single pass read: neither the body scanned for the
        // prefix nor parsed again, which cost 13% of an allowed 64 KiB call.)
        if request_state.is_some_and(approval::is_gate_state) {
            if let Decision::Allow { reservations, .. } = &decision {
                ratelimit::release(store, reservations);
                return self.invalid(Invalid::Params {
                    id: id.clone(),
                    detail: "params.requestState was not issued for this call".to_string(),
                });
            }
        }
        let shown = match (&decided.invoked, decided.by_invoked) {
            (Some(inner), true) => Target::tool(inner.as_str()),
            _ => target.clone(),
        };
        let fails_open = matches!(decision, Decision::Failed { .. })
            && self.policy.failure_mode == FailureMode::Open;
        let warning = undecided(&shown, &decision, self.policy);
        let reply =
            response::for_decision(id, &shown, &decision, self.answering()).filter(|_| !fails_open);
        if fails_open {
            audit.enforced = false;
        }
        let observe = (reply.is_none() && self.watch_answers).then(|| target.clone().into_owned());
        let (reservations, global) = match decision {
            Decision::Allow {
                reservations,
                global,
            } => (reservations, global),
            // Local counting failed open: the fleet-wide limits still hold.
            Decision::Failed { .. } if fails_open && reply.is_none() => {
                (Vec::new(), decided.global_unasked)
            }
            _ => (Vec::new(), Vec::new()),
        };
        let global_check = GlobalCheck::of(
            self.policy,
            &global,
            self.caller,
            id,
            shown,
            invoked,
            self.answering(),
        );
        Inspection {
            reply,
            reservations,
            audit: Some(audit),
            global_check,
            observe,
            state_owner: decided.state_owner,
            warning,
            ..Inspection::pass()
        }
        .enforced_by(self.policy.mode)
    }

    /// Builds the approval check of a call that needs approval: its digest
    /// and check body, how a pending answer reaches this client, and (for a
    /// 2026-07-28 retry) the body without the gate's own members.
    #[allow(clippy::too_many_arguments)]
    fn ask_for_approval<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        id: &Value,
        target: &Target<'_>,
        invoked: Option<Invoked>,
        arguments: Option<&serde_json::value::RawValue>,
        body: &[u8],
        asked: Asked<'_>,
        mut audit: AuditRecord,
    ) -> Inspection {
        let observe = Some(target.clone().into_owned());
        if self.policy.mode == Mode::Monitor {
            // Nothing is blocked and nobody is asked: recorded, forwarded.
            audit.enforced = false;
            return Inspection {
                audit: Some(audit),
                observe,
                ..Inspection::pass()
            };
        }
        let call = approval::Call {
            grant: self.caller.grant,
            kind: target.kind,
            name: &target.name,
            arguments: arguments.map(serde_json::value::RawValue::get),
            rule: asked.rule,
            approval: asked.approval,
            policy_revision: &self.policy.revision,
        };
        let (digest, request) = match approval::check_request(&call) {
            Ok(check) => check,
            Err(err) => {
                return self.invalid(Invalid::Params {
                    id: id.clone(),
                    detail: format!("the arguments cannot be shown to an approver: {err}"),
                })
            }
        };
        let retry = approval::retry_of(body);
        let mut rewrite_body = None;
        if let Some(state) = retry
            .request_state
            .as_deref()
            .filter(|state| approval::is_gate_state(state))
        {
            if approval::verify_gate_state(state, &digest).is_none() {
                return self.invalid(Invalid::Params {
                    id: id.clone(),
                    detail: "params.requestState was not issued for this call".to_string(),
                });
            }
            // The server never issued it: it must not see it.
            rewrite_body = approval::strip_retry_members(body);
        }
        let declined = matches!(retry.action.as_deref(), Some("decline" | "cancel"));
        let pending_as = if self.current {
            if retry.url_elicitation && !declined {
                PendingAs::InputRequired
            } else {
                PendingAs::Error
            }
        } else if self.caller.session.is_some_and(|session| {
            bindings::owner(store, Table::UrlElicitation, session, self.now.as_secs())
                == Some(bindings::grant_owner(self.caller.grant))
        }) {
            PendingAs::UrlElicitationError
        } else {
            PendingAs::Error
        };
        let check = ApprovalCheck {
            request,
            digest,
            rule: asked.rule.to_string(),
            reason: asked.approval.reason.clone(),
            charges: asked.charges.iter().map(Charge::held).collect(),
            id: id.clone(),
            target: target.clone().into_owned(),
            invoked,
            answering: self.answering(),
            pending_as,
        };
        Inspection {
            audit: Some(audit),
            observe,
            approval: Some(check),
            rewrite_body,
            ..Inspection::pass()
        }
    }

    /// Checks targets by their rules alone (nothing counted): the first one
    /// refused refuses the request, as a use of it would be refused.
    fn check_all<S: SharedStore + ?Sized>(
        &self,
        store: &S,
        method: &str,
        id: &Value,
        targets: &[(Kind, String)],
    ) -> Inspection {
        let mut last = None;
        for (kind, named) in targets {
            let name = match self.target_name(*kind, named, id) {
                Ok(name) => name,
                Err(invalid) => return self.invalid(invalid),
            };
            let target = Target::new(*kind, name);
            let mut inspection = self.decide(
                store,
                id,
                &target,
                None,
                Counting::TargetOnly,
                Vec::new(),
                &[],
                None,
            );
            if let Some(audit) = &mut inspection.audit {
                audit.method = Some(method.to_string());
            }
            if inspection.outcome() != Some(Outcome::Allowed) {
                return inspection;
            }
            last = Some(inspection);
        }
        last.unwrap_or_else(Inspection::pass)
    }
}

/// What asked for approval, and what the call takes once approved.
struct Asked<'p> {
    rule: &'p str,
    approval: &'p crate::policy::Approval,
    charges: Vec<Charge<'p>>,
}

/// The decision once the approval service has answered (or failed):
/// approved calls take their limits (and may still need the rate-limit
/// service), denied ones get the approver's reason, pending ones are told
/// where a person can approve them, and a failure follows the service's
/// `failure_mode`. Updates the audit record.
pub fn complete_approval<S: SharedStore + ?Sized>(
    policy: &Policy,
    store: &S,
    now: std::time::Duration,
    caller: CallerScope<'_>,
    check: &ApprovalCheck,
    verdict: Verdict,
    audit: &mut AuditRecord,
) -> Inspection {
    let service = policy.approval_service.as_ref();
    let failure_mode = service.map_or(FailureMode::Closed, |service| service.failure_mode);
    let refuse = |reply: Reply| Inspection {
        reply: Some(reply),
        ..Inspection::pass()
    };
    let failed = |detail: String, audit: &mut AuditRecord| {
        log::warn!("mcp-policy: approval service failed ({detail}); failure_mode {failure_mode:?}");
        audit.decision = Outcome::Failed;
        audit.approval = Some(ApprovalRecord::new("unavailable", None, None));
        if failure_mode == FailureMode::Open {
            audit.enforced = false;
            None
        } else {
            let decision = Decision::Failed { detail };
            response::for_decision(&check.id, &check.target, &decision, check.answering)
        }
    };
    match verdict {
        Verdict::Approved { id, approver } => {
            audit.decision = Outcome::Allowed;
            audit.approval = Some(ApprovalRecord::new("approved", Some(id), approver));
        }
        Verdict::Denied {
            id,
            approver,
            reason,
        } => {
            audit.decision = Outcome::Denied;
            let reply = response::approval_denied(
                &check.id,
                &check.target,
                &check.rule,
                &id,
                approver.as_deref(),
                reason.as_deref(),
                check.answering,
            );
            audit.approval = Some(ApprovalRecord::new("denied", Some(id), approver));
            return refuse(reply);
        }
        Verdict::Pending {
            id,
            url,
            retry_after_seconds,
            expires_at,
        } => {
            let public_url = service.and_then(|service| service.public_url.as_deref());
            let Some(link) = approval::approval_link(public_url, &id, &url) else {
                let detail = "the approval service's answer has no usable link".to_string();
                return match failed(detail, audit) {
                    Some(reply) => refuse(reply),
                    None => take_limits(policy, store, now, caller, check, audit),
                };
            };
            audit.decision = Outcome::ApprovalPending;
            let pending = response::PendingApproval {
                approval_id: &id,
                url: &link,
                retry_after_seconds,
                rule: &check.rule,
                reason: check.reason.as_deref(),
                expires_at: expires_at.as_deref(),
            };
            let reply = match check.pending_as {
                PendingAs::Error => response::approval_required(&check.id, &check.target, &pending),
                PendingAs::UrlElicitationError => {
                    response::url_elicitation_required(&check.id, &check.target, &pending)
                }
                PendingAs::InputRequired => response::input_required(
                    &check.id,
                    &check.target,
                    &pending,
                    approval::INPUT_KEY,
                    &approval::gate_state(&id, &check.digest),
                ),
            };
            audit.approval = Some(ApprovalRecord::new("pending", Some(id), None));
            return refuse(reply);
        }
        Verdict::Refused {
            status,
            error,
            message,
        } => {
            let detail = match status {
                413 => "the call is too large for an approver to review".to_string(),
                429 => "too many calls are waiting for approval; try again later".to_string(),
                _ => {
                    // The service says the check is wrong: a bug on one side.
                    log::warn!(
                        "mcp-policy: the approval service refused the check ({status} {error}: {message})"
                    );
                    audit.decision = Outcome::Failed;
                    audit.approval = Some(ApprovalRecord::new("refused", None, None));
                    let decision = Decision::Failed {
                        detail: format!("{error}: {message}"),
                    };
                    let reply = response::for_decision(
                        &check.id,
                        &check.target,
                        &decision,
                        check.answering,
                    );
                    return Inspection {
                        reply,
                        ..Inspection::pass()
                    };
                }
            };
            audit.decision = Outcome::Denied;
            audit.approval = Some(ApprovalRecord::new("refused", None, None));
            return refuse(response::approval_refused(
                &check.id,
                &check.target,
                &check.rule,
                &detail,
            ));
        }
        Verdict::Unavailable(detail) => {
            if let Some(reply) = failed(detail, audit) {
                return refuse(reply);
            }
        }
    }
    take_limits(policy, store, now, caller, check, audit)
}

/// An approved call (or one let through by `failure_mode: open`) takes its
/// local limits and, if it has global ones, still needs the rate-limit service.
fn take_limits<S: SharedStore + ?Sized>(
    policy: &Policy,
    store: &S,
    now: std::time::Duration,
    caller: CallerScope<'_>,
    check: &ApprovalCheck,
    audit: &mut AuditRecord,
) -> Inspection {
    if check.charges.is_empty() {
        return Inspection::pass();
    }
    let (global, local): (Vec<Charge<'_>>, Vec<Charge<'_>>) = check
        .charges
        .iter()
        .map(ratelimit::HeldCharge::charge)
        .partition(|charge| charge.limit.store == crate::policy::CounterStore::Global);
    let slots = policy.view(caller.grant).slots_per_counter;
    let global_check = |global: &[Charge<'_>]| {
        GlobalCheck::of(
            policy,
            global,
            caller,
            &check.id,
            check.target.clone(),
            check.invoked.clone(),
            check.answering,
        )
    };
    let decision = match decision::take_local(store, &local, caller, now.as_secs(), slots) {
        Ok(reservations) => {
            return Inspection {
                reservations,
                global_check: global_check(&global),
                ..Inspection::pass()
            };
        }
        Err(refusal) => refusal,
    };
    audit.decision = decision.outcome();
    audit.rule = decision.rule().map(str::to_string).or(audit.rule.take());
    let warning = undecided(&check.target, &decision, policy);
    if matches!(decision, Decision::Failed { .. }) && policy.failure_mode == FailureMode::Open {
        // Let through without its local limits; its fleet-wide ones hold.
        audit.enforced = false;
        return Inspection {
            global_check: global_check(&global),
            warning,
            ..Inspection::pass()
        };
    }
    let shown = match &decision {
        Decision::RateLimited { limit, .. } => {
            Invoked::shown(&check.invoked, &check.target, &limit.pointer)
        }
        _ => &check.target,
    };
    Inspection {
        reply: response::for_decision(&check.id, shown, &decision, check.answering),
        warning,
        ..Inspection::pass()
    }
}

/// The log line of a call the gate could not decide (its limits could not
/// be counted, its arguments not read), if `decision` says so. The name as
/// audit lines write it (a long one as its digest).
fn undecided(target: &Target<'_>, decision: &Decision<'_>, policy: &Policy) -> Option<String> {
    let Decision::Failed { detail } = decision else {
        return None;
    };
    let then = match (policy.mode, policy.failure_mode) {
        (Mode::Monitor, _) => "forwarded (monitor mode)",
        (_, FailureMode::Open) => "forwarded undecided (failure_mode open)",
        (_, FailureMode::Closed) => "refused (failure_mode closed)",
    };
    Some(format!(
        "mcp-policy: could not decide {} {:?}: {detail}; {then}",
        target.kind.as_str(),
        crate::audit::bounded(&target.name)
    ))
}

/// Rule reported when a task request names a task of another grant.
/// (No pointer: no rule of the policy decides it. A task the gate never saw
/// created is no more the caller's than another grant's.)
pub const TASK_BINDING_POINTER: &str = "(not the caller's task)";

/// A request's id as MCP requires it: a string or an integer.
fn request_id(id: Option<Value>, method: &str) -> Result<Value, Invalid> {
    match id {
        Some(id @ Value::String(_)) => Ok(id),
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => {
            Ok(Value::Number(number))
        }
        Some(other) => Err(Invalid::Request {
            id: Value::Null,
            detail: format!("{method} id must be a string or an integer, got {other}"),
        }),
        None => Err(Invalid::Request {
            id: Value::Null,
            detail: format!("{method} must have an id"),
        }),
    }
}

/// Global limits still to be asked of the rate-limit service before the call
/// may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalCheck {
    /// What the call asks of each global limit.
    pub descriptors: Vec<ratelimit::service::Descriptor>,
    id: serde_json::Value,
    target: Target<'static>,
    invoked: Option<Invoked>,
    answering: Answering,
}

impl GlobalCheck {
    /// What the rate-limit service must be asked for the call's global
    /// charges, if it has any and the policy names a service.
    fn of(
        policy: &Policy,
        global: &[Charge<'_>],
        caller: CallerScope<'_>,
        id: &Value,
        target: Target<'_>,
        invoked: Option<Invoked>,
        answering: Answering,
    ) -> Option<GlobalCheck> {
        if policy.rate_limit_service.is_none() || global.is_empty() {
            return None;
        }
        Some(GlobalCheck {
            descriptors: ratelimit::service::descriptors(global, caller),
            id: id.clone(),
            target: target.into_owned(),
            invoked,
            answering,
        })
    }

    /// The encoded `ShouldRateLimit` request; concurrency slots are leased
    /// as `lease` (unique to the exchange across the fleet).
    pub fn request(&self, service: &RateLimitService, lease: &str) -> Vec<u8> {
        ratelimit::service::request(service, &self.descriptors, lease)
    }

    /// The encoded request giving back the slots `lease` took, if the call
    /// asked for any.
    pub fn release(&self, service: &RateLimitService, lease: &str) -> Option<Vec<u8>> {
        ratelimit::service::release_request(service, &self.descriptors, lease)
    }
}

/// What the rate-limit service's answer means for a held call.
#[derive(Debug)]
pub struct GlobalOutcome {
    /// The answer in place of the server (`None`: the call goes ahead).
    pub reply: Option<Reply>,
    /// Whether enforcement refuses the call. The caller gives back the local
    /// quota then, in monitor mode too (where the call goes ahead anyway),
    /// so that monitor mode counts what enforcement would.
    pub refused: bool,
}

/// The decision once the rate-limit service has answered (`Ok`: the
/// response message; `Err`: the call failed or timed out). Updates the audit
/// record.
pub fn complete_global_check(
    policy: &Policy,
    check: &GlobalCheck,
    answer: Result<&[u8], String>,
    now_seconds: u64,
    audit: &mut AuditRecord,
) -> GlobalOutcome {
    let reply = enforced_global_reply(policy, check, answer, now_seconds, audit);
    let refused = reply.is_some();
    if refused {
        // Refused here, even if an earlier step let the call through
        // unenforced (its local limits failed open).
        audit.enforced = true;
    }
    if policy.mode == Mode::Monitor {
        audit.enforced = false;
        return GlobalOutcome {
            reply: None,
            refused,
        };
    }
    GlobalOutcome { reply, refused }
}

/// The answer enforcement gives once the service has answered.
fn enforced_global_reply(
    policy: &Policy,
    check: &GlobalCheck,
    answer: Result<&[u8], String>,
    now_seconds: u64,
    audit: &mut AuditRecord,
) -> Option<Reply> {
    let verdict = match answer {
        Ok(bytes) => ratelimit::service::verdict(bytes, &check.descriptors, now_seconds),
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
            let descriptor = check.descriptors.get(index)?;
            let decision = Decision::RateLimited {
                limit: &descriptor.limit,
                retry_after_seconds,
                cost: descriptor.cost,
            };
            audit.decision = Outcome::RateLimited;
            audit.rule = Some(descriptor.limit.pointer.clone());
            let shown = Invoked::shown(&check.invoked, &check.target, &descriptor.limit.pointer);
            response::for_decision(&check.id, shown, &decision, check.answering)
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
                response::for_decision(&check.id, &check.target, &decision, check.answering)
            }
        }
    };
    reply
}

/// A request refused before its body is read as a call (`Outcome::Invalid`),
/// with `reply`: a header the gate cannot read, a body it does not decode
/// (`response::unusable_header`, `unsupported_encoding`, `unsupported_charset`).
pub fn refused_as_invalid<C: Clock + ?Sized>(
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
        Outcome::Unauthorized,
    );
    audit.rule = Some(IDENTITY_POINTER.to_string());
    Inspection::refusal(policy, response::unauthorized(error), audit)
}

/// `Mcp-Method` must equal the body's `method`, and `Mcp-Name` the name, URI
/// or task id the method addresses, whenever the headers are sent; at MCP
/// 2026-07-28 (by `MCP-Protocol-Version`, or the body's `_meta` when the
/// header is missing) they are required, and the header and `_meta` versions
/// must agree. Ok: the revision the request speaks. Err: the id to answer
/// with and what is wrong (answered 400, `-32020`, as the specification asks).
fn check_mirrored_headers(
    message: &Message<'_>,
    headers: McpHeaders<'_>,
    body: &[u8],
) -> Result<Revision, (Value, String)> {
    // A method the gate does not know (an extension) may name something as
    // the standard ones do: an `Mcp-Name` equal to its `params.name` or
    // `params.uri` agrees with the body; it is never required.
    let mut extension_names: [Option<&str>; 2] = [None, None];
    let (method, id, named): (Option<&str>, Value, Option<String>) = match message {
        Message::ToolCall(call) => (
            Some(mcp::TOOLS_CALL),
            call.id.clone(),
            Some(call.name.to_string()),
        ),
        Message::Other {
            method, id, named, ..
        } => {
            let method = method.as_deref();
            let named = match method {
                Some(m) if methods::NAMED_BY_NAME.contains(&m) => {
                    named.name.as_deref().map(str::to_string)
                }
                Some(m) if methods::NAMED_BY_URI.contains(&m) => {
                    named.uri.as_deref().map(str::to_string)
                }
                Some(m) if methods::NAMED_BY_TASK_ID.contains(&m) => {
                    Params::read(body).ok().and_then(|params| params.task_id)
                }
                Some(m) if !methods::is_known(m) => {
                    extension_names = [named.name.as_deref(), named.uri.as_deref()];
                    None
                }
                _ => None,
            };
            (method, id.clone().unwrap_or(Value::Null), named)
        }
    };
    // The version in `_meta`, as the single pass kept it.
    let meta_version = match message {
        Message::ToolCall(call) => call.meta_version.as_deref(),
        Message::Other { named, .. } => named.meta_version.as_deref(),
    };
    let revision = match (headers.protocol_version, meta_version) {
        (Some(header), Some(meta)) if header != meta => {
            return Err((
                id,
                format!("MCP-Protocol-Version header {header:?} does not match the body's _meta protocolVersion {meta:?}"),
            ))
        }
        (None, Some(meta)) if is_current(meta) => {
            return Err((
                id,
                format!("protocol version {meta} requires the MCP-Protocol-Version header"),
            ))
        }
        (Some(version), _) if is_current(version) => Revision::Current,
        _ => Revision::Legacy,
    };
    if revision == Revision::Current && method.is_some() {
        if headers.method.is_none() {
            return Err((id, "missing required Mcp-Method header".to_string()));
        }
        if named.is_some() && headers.name.is_none() {
            return Err((
                id,
                format!(
                    "missing required Mcp-Name header for {}",
                    method.unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(header) = headers.method {
        if Some(header) != method {
            return Err((
                id,
                format!("Mcp-Method {header:?} does not match the body's method {method:?}"),
            ));
        }
    }
    if let Some(header) = headers.name {
        let decoded = decode_header_value(header);
        let names_the_extension = decoded.is_some()
            && extension_names
                .iter()
                .any(|name| name.is_some() && *name == decoded.as_deref());
        if decoded.as_deref() != named.as_deref() && !names_the_extension {
            return Err((
                id,
                format!("Mcp-Name {header:?} does not match the body's {named:?}"),
            ));
        }
    }
    Ok(revision)
}

/// A header value as MCP 2026-07-28 sends values that are not plain visible
/// ASCII: `=?base64?<standard Base64 of UTF-8>?=`. `None` when the encoding
/// is broken (which then matches nothing).
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(encoded) = value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    else {
        return Some(value.to_string());
    };
    String::from_utf8(base64_decode(encoded)?).ok()
}

/// Standard Base64 with padding, strictly (what rmcp sends and accepts).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index + 1 == bytes.len() / 4;
        let padding = chunk.iter().rev().take_while(|byte| **byte == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut word = 0u32;
        for (position, byte) in chunk.iter().enumerate() {
            let digit = if position >= 4 - padding {
                0
            } else {
                value(*byte)?
            };
            word = (word << 6) | digit;
        }
        // The bits of the bytes padding drops must be zero: `cmVhZB==` is not
        // `cmVhZA==` spelt otherwise (strict decoders, rmcp's, refuse it).
        if word & ((1u32 << (8 * padding)) - 1) != 0 {
            return None;
        }
        let decoded = [(word >> 16) as u8, (word >> 8) as u8, word as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

/// Rule reported when the identity refuses a request.
pub const IDENTITY_POINTER: &str = "/identity";

#[cfg(test)]
mod tests;
