//! The decision for one use of a tool, prompt or resource, in the order the
//! policy promises: hidden → rule `deny` → unnamed under a deny default →
//! argument rules (`require`, `deny_if`) → approval (`"action": "approve"`,
//! `approve_if`: the gate asks the approval service, then takes the limits)
//! → limits (all must have room; quota is taken from all or none) → allow.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::bindings;
use crate::host::SharedStore;
use crate::policy::{
    Action, Approval, CaseVariant, Cost, CounterStore, Limit, ListedHints, Rule, View,
};
use crate::ratelimit::{self, Acquire, CallerScope, Charge, Reservation};
use crate::target::Kind;

/// What the gate does with a tool call.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Forward it; `reservations` is the local quota it took. `global`: limits
    /// the rate-limit service must still allow, with what the call takes
    /// from each (empty: none).
    Allow {
        reservations: Vec<Reservation>,
        global: Vec<Charge<'p>>,
    },
    /// Refused by a rule; `rule` is the JSON pointer of the rule that decided.
    Deny { rule: &'p str, reason: Cow<'p, str> },
    /// The tool is hidden from this caller: answered exactly as a tool the
    /// policy does not list. `unlisted`: the pointer of the `default: deny`
    /// that refuses unlisted tools for this caller (the answer is then that
    /// denial, byte for byte); `None` under `default: allow`, where an
    /// unlisted tool would reach the server (answered as an unknown tool).
    Hidden {
        rule: &'p str,
        unlisted: Option<&'p str>,
    },
    /// Refused because a limit is full: a window (retry after that many
    /// seconds), or a cap on calls in flight (`retry_after_seconds` 0: a
    /// slot frees when a call ends). `cost`: what the call would have taken.
    RateLimited {
        limit: &'p Limit,
        retry_after_seconds: u64,
        cost: u64,
    },
    /// A limit's `cost_from` argument is missing, not a non-negative integer,
    /// or more than the limit's `max`: the call cannot be counted (`-32602`).
    InvalidArgument { rule: &'p str, reason: String },
    /// The gate could not decide (the counter store failed); fails closed.
    Failed { detail: String },
    /// Allowed by every rule once a person approves this exact call: the
    /// gate asks the approval service first. `rule`: the pointer of what
    /// asked; `charges`: what the call takes once approved (nothing is
    /// taken before).
    NeedsApproval {
        rule: &'p str,
        approval: &'p Approval,
        charges: Vec<Charge<'p>>,
    },
}

/// Outcome of a request the gate inspected, for metrics and the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Denied,
    RateLimited,
    /// A call to a tool hidden from the caller.
    Hidden,
    /// Refused because the caller could not be identified (HTTP 401: a
    /// bearer token missing or unknown), before the policy was consulted.
    Unauthorized,
    /// Refused before the policy was consulted: unreadable or oversized.
    Invalid,
    /// The gate could not decide.
    Failed,
    /// Waiting for a person's approval: answered with where to approve it.
    ApprovalPending,
    /// The caller left while the rate-limit service decided: nothing was
    /// forwarded, nothing decided.
    Abandoned,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::RateLimited,
        Outcome::Hidden,
        Outcome::Unauthorized,
        Outcome::Invalid,
        Outcome::Failed,
        Outcome::ApprovalPending,
        Outcome::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::Hidden => "hidden",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
            Outcome::ApprovalPending => "approval_pending",
            Outcome::Abandoned => "abandoned",
        }
    }
}

impl Decision<'_> {
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Allow { .. } => Outcome::Allowed,
            Decision::Deny { .. } => Outcome::Denied,
            Decision::Hidden { .. } => Outcome::Hidden,
            Decision::RateLimited { .. } => Outcome::RateLimited,
            Decision::InvalidArgument { .. } => Outcome::Invalid,
            Decision::Failed { .. } => Outcome::Failed,
            Decision::NeedsApproval { .. } => Outcome::ApprovalPending,
        }
    }

    /// JSON pointer of the rule that decided, if one did.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Deny { rule, .. }
            | Decision::Hidden { rule, .. }
            | Decision::InvalidArgument { rule, .. }
            | Decision::NeedsApproval { rule, .. } => Some(rule),
            Decision::RateLimited { limit, .. } => Some(&limit.pointer),
            Decision::Allow { .. } | Decision::Failed { .. } => None,
        }
    }
}

/// Reason given when the default denies a tool the policy does not list.
pub const DEFAULT_DENY_REASON: &str = "tool is not listed in the policy and the default is deny";
/// Reason given when a rule denies without one of its own.
pub const RULE_DENY_REASON: &str = "denied by policy";
/// Reason given when an argument rule denies and the tool rule has no reason.
pub const ARGUMENT_DENY_REASON: &str = "arguments not allowed by policy";

/// Reason given when a default denies something of `kind` the policy does not name.
pub fn default_deny_reason(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => DEFAULT_DENY_REASON,
        Kind::Prompt => "prompt is not listed in the policy and the default is deny",
        Kind::Resource => "resource is not listed in the policy and the default is deny",
        Kind::Task => "task is not the caller's",
    }
}

/// Where a call's `arguments` come from, read only when a rule needs them:
/// a parsed call reads them from its body on demand.
pub trait ArgumentSource {
    fn raw_arguments(&self) -> Result<Option<&RawValue>, String>;
}

impl ArgumentSource for Option<&RawValue> {
    fn raw_arguments(&self) -> Result<Option<&RawValue>, String> {
        Ok(*self)
    }
}

impl ArgumentSource for &crate::mcp::ToolCall<'_> {
    fn raw_arguments(&self) -> Result<Option<&RawValue>, String> {
        self.arguments()
    }
}

/// Whether a decision takes quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Limits apply: one unit from each, all or none.
    Take,
    /// Whether the target itself may be used: hidden, `deny`, defaults; no
    /// argument rules, no limits (completions, subscriptions).
    TargetOnly,
}

/// Decides one call to `tool` by the policy as the caller's grant sees it,
/// taking quota from `store` if it is allowed.
pub fn decide<'p, S: SharedStore + ?Sized>(
    policy: &'p View,
    tool: &str,
    arguments: impl ArgumentSource,
    caller: CallerScope<'_>,
    store: &S,
    now_seconds: u64,
) -> Decision<'p> {
    let request = Request {
        kind: Kind::Tool,
        name: tool,
        counting: Counting::Take,
        request_state: None,
        binds_state: false,
    };
    decide_target(policy, request, arguments, caller, store, now_seconds).decision
}

/// What is being decided.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: Kind,
    /// A name, or a normalised URI for resources.
    pub name: &'a str,
    pub counting: Counting,
    /// A multi-round-trip retry's `params.requestState`: if the gate bound
    /// it to this caller, target and the same window charges (the first
    /// call took them), those are not taken again; used once.
    pub request_state: Option<&'a str>,
    /// Whether the answer may hand out a `requestState` the gate binds
    /// (MCP 2026-07-28): then [`Decided::state_owner`] is worked out.
    pub binds_state: bool,
}

/// A decision, and the inner tool when a meta-tool's call names one.
#[derive(Debug, PartialEq, Eq)]
pub struct Decided<'p> {
    pub decision: Decision<'p>,
    /// The tool a meta-tool runs (its rule's `invokes`), if it could be read.
    pub invoked: Option<String>,
    /// The decision was the inner tool's (answers name it).
    pub by_invoked: bool,
    /// What the call takes from limits with a cost of their own (`cost`,
    /// `cost_from`): counter and units, for the audit line.
    pub costs: Vec<(String, u64)>,
    /// Whom a `requestState` the answer hands out belongs to: the caller,
    /// the target and the window charges of this call
    /// ([`bindings::state_owner`]).
    pub state_owner: Option<[u8; crate::ratelimit::OWNER_DIGEST_LEN]>,
    /// The fleet-wide charges of a call whose local limits could not be
    /// counted (`Decision::Failed`): under `failure_mode: open` the call
    /// goes ahead, and these are still asked.
    pub global_unasked: Vec<Charge<'p>>,
    /// The limits (by pointer) whose refusal names the tool a meta-tool
    /// runs rather than the meta-tool: the inner tool's own, its annotation
    /// rules', and `all_tools`'s.
    pub naming_inner: Vec<&'p str>,
}

impl Decided<'_> {
    /// The tool a meta-tool's call runs, and the limits whose refusal
    /// names it.
    pub fn invoked(&self) -> Option<crate::target::Invoked> {
        self.invoked.as_deref().map(|inner| crate::target::Invoked {
            target: crate::target::Target::tool(inner).into_owned(),
            limits: self.naming_inner.iter().map(|p| p.to_string()).collect(),
        })
    }
}

/// Decides one use of a tool, prompt or resource, in the documented order:
/// hidden → case variant of a named one → rule `deny` → unnamed under a
/// deny default → argument rules → (for a meta-tool: the same for the tool
/// it runs) → annotation rules → approval (nothing counted: the gate asks
/// the approval service, then takes the limits) → limits (all must have
/// room; quota is taken from all or none) → allow.
pub fn decide_target<'p, S: SharedStore + ?Sized>(
    policy: &'p View,
    request: Request<'_>,
    arguments: impl ArgumentSource,
    caller: CallerScope<'_>,
    store: &S,
    now_seconds: u64,
) -> Decided<'p> {
    let decided = |decision| Decided {
        decision,
        invoked: None,
        by_invoked: false,
        costs: Vec::new(),
        state_owner: None,
        global_unasked: Vec::new(),
        naming_inner: Vec::new(),
    };
    // Arguments are read only when a rule needs them (most calls: never).
    let read = || arguments.raw_arguments();
    let mut parsed: Option<Option<Value>> = None;
    let checked = if request.counting == Counting::TargetOnly {
        check_target(policy, request.kind, request.name)
    } else {
        check_rules(policy, request.kind, request.name, &read, &mut parsed)
    };
    let rule = match checked {
        Ok(rule) => rule,
        Err(decision) => return decided(decision),
    };
    // Each limit with whether it reads the inner call's arguments (a
    // meta-tool's inner tool) or the call's own.
    let mut limits: Vec<(&'p Limit, bool)> = rule.map_or(Vec::new(), |rule| {
        rule.limits.iter().map(|limit| (limit, false)).collect()
    });
    // The limits whose refusal names the tool a meta-tool runs: its own,
    // its annotation rules', and `all_tools` (a direct call of it would be
    // refused by them under its name).
    let mut naming_inner: Vec<&'p Limit> = Vec::new();
    // The annotations the server listed for a tool (and for the tools its
    // name is a letter-case variant of), read only if a rule needs them.
    let listed = |name: &str| {
        if policy.annotation_rules().is_empty() {
            ListedHints::default()
        } else {
            bindings::hints(store, name, now_seconds)
        }
    };
    let mut inner_hints = ListedHints::default();
    let mut inner_arguments_value: Option<Value> = None;
    let mut outcome = decided(Decision::Allow {
        reservations: Vec::new(),
        global: Vec::new(),
    });
    // What the inner tool's rule asks for approval, for a meta-tool.
    let mut inner_approval: Option<(&'p str, &'p Approval)> = None;
    // A meta-tool: the tool it runs is decided as if it were called directly.
    let invokes = rule
        .and_then(|rule| rule.invokes.as_ref())
        .filter(|_| request.counting != Counting::TargetOnly);
    if let Some(invokes) = invokes {
        if parsed.is_none() {
            match read() {
                Ok(raw) => parsed = Some(parse(raw)),
                Err(err) => {
                    return decided(Decision::Failed {
                        detail: format!("arguments could not be read: {err}"),
                    })
                }
            }
        }
        let arguments = parsed.clone().flatten();
        // What names the tool to run, and its arguments, must be read as
        // the server reads them.
        let loosely_named = arguments.as_ref().and_then(|arguments| {
            std::iter::once(&invokes.name)
                .chain(&invokes.arguments)
                .find_map(|path| {
                    crate::arguments::loosely_named_member(
                        arguments,
                        path.iter().map(String::as_str),
                    )
                })
        });
        if let Some(reason) = loosely_named {
            return decided(Decision::InvalidArgument {
                rule: rule.map_or("/tools", |rule| rule.pointer.as_str()),
                reason,
            });
        }
        let inner_name = arguments
            .as_ref()
            .and_then(|arguments| lookup(arguments, &invokes.name))
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(inner_name) = inner_name else {
            return decided(Decision::Deny {
                rule: rule.map_or("/tools", |rule| rule.pointer.as_str()),
                reason: Cow::Borrowed("the meta-tool's arguments do not name the tool to run"),
            });
        };
        // Named as a direct call must name it (a name with a NUL or a
        // space is refused there too).
        if let Err(why) = crate::mcp::check_tool_name(&inner_name) {
            return decided(Decision::Deny {
                rule: rule.map_or("/tools", |rule| rule.pointer.as_str()),
                reason: Cow::Owned(format!(
                    "the meta-tool's arguments name no valid tool: {why}"
                )),
            });
        }
        let inner_arguments = match (&arguments, &invokes.arguments) {
            (Some(arguments), Some(path)) => lookup(arguments, path).cloned(),
            _ => None,
        };
        // As a direct call's: an object, or none. Anything else (a JSON
        // text in a string, which some meta-tool servers parse, a list)
        // is what the inner tool's argument rules cannot read.
        let inner_arguments = match inner_arguments {
            None | Some(Value::Null) => None,
            Some(Value::Object(object)) => Some(Value::Object(object)),
            Some(other) => {
                let kind = match other {
                    Value::String(_) => "a string",
                    Value::Array(_) => "an array",
                    Value::Number(_) => "a number",
                    _ => "a boolean",
                };
                return decided(Decision::Deny {
                    rule: rule.map_or("/tools", |rule| rule.pointer.as_str()),
                    reason: Cow::Owned(format!(
                        "the meta-tool's arguments for the tool it runs must be an object, got {kind}"
                    )),
                });
            }
        };
        let inner_raw = inner_arguments
            .as_ref()
            .and_then(|value| serde_json::value::to_raw_value(value).ok());
        let mut inner_parsed = None;
        outcome.invoked = Some(inner_name.clone());
        let read_inner = || Ok(inner_raw.as_deref());
        match check_rules(
            policy,
            Kind::Tool,
            &inner_name,
            &read_inner,
            &mut inner_parsed,
        ) {
            // A meta-tool run by a meta-tool would run a third tool this
            // decision never saw: refused, whatever that tool is.
            Ok(Some(inner)) if inner.invokes.is_some() => {
                outcome.decision = Decision::Deny {
                    rule: &inner.pointer,
                    reason: Cow::Borrowed("a meta-tool may not run another meta-tool"),
                };
                outcome.by_invoked = true;
                return outcome;
            }
            Ok(inner) => {
                let inner_limits = inner.map_or(&[][..], |rule| &rule.limits[..]);
                limits.extend(inner_limits.iter().map(|limit| (limit, true)));
                naming_inner.extend(inner_limits.iter());
                inner_hints = listed(&inner_name);
                inner_approval = inner.and_then(|rule| {
                    let arguments = inner_parsed.as_ref().and_then(Option::as_ref);
                    let asked = rule.approval_needed(arguments)?;
                    Some((asked, rule.approval.as_ref()?))
                });
                inner_arguments_value = inner_arguments;
            }
            Err(decision) => {
                outcome.decision = decision;
                outcome.by_invoked = true;
                return outcome;
            }
        }
    }
    // Annotation rules: only stricter, and only for tools whose listed
    // annotations the gate has seen: the tool called, and the tool a
    // meta-tool runs (decided as if it were called directly).
    if request.kind == Kind::Tool && request.counting != Counting::TargetOnly {
        let own_hints = listed(request.name);
        for (hints, inner) in [(own_hints, false), (inner_hints, true)] {
            for rule in policy.annotation_rules() {
                if !hints.has(rule.hint, rule.is) {
                    continue;
                }
                if rule.deny {
                    outcome.decision = Decision::Deny {
                        rule: &rule.pointer,
                        reason: rule.reason.as_deref().map_or_else(
                            || {
                                Cow::Owned(format!(
                                    "the server lists this tool with {}: {}",
                                    rule.hint.name(),
                                    rule.is
                                ))
                            },
                            Cow::Borrowed,
                        ),
                    };
                    outcome.by_invoked = inner;
                    return outcome;
                }
                limits.extend(rule.limits.iter().map(|limit| (limit, inner)));
                if inner {
                    naming_inner.extend(rule.limits.iter());
                }
            }
        }
    }
    if request.kind == Kind::Tool {
        limits.extend(policy.all_tools_limits().iter().map(|limit| (limit, false)));
        if outcome.invoked.is_some() {
            naming_inner.extend(policy.all_tools_limits().iter());
        }
    }
    // What a refusal by a limit names, here or once the fleet-wide service
    // or an approval has answered.
    if outcome.invoked.is_some() {
        outcome.naming_inner = naming_inner
            .iter()
            .map(|limit| limit.pointer.as_str())
            .collect();
    }
    // Approval: the call's own rule first, then the rule of the tool a
    // meta-tool runs. The approval covers the call as sent; what the call
    // will take is worked out now (a call that cannot be counted is refused
    // before anyone is asked) and taken only once it is approved.
    let asked = if request.counting == Counting::TargetOnly {
        None
    } else {
        rule.and_then(|rule| {
            let arguments = parsed.as_ref().and_then(Option::as_ref);
            let asked = rule.approval_needed(arguments)?;
            Some((asked, rule.approval.as_ref()?))
        })
        .or(inner_approval)
    };
    if request.counting != Counting::Take || limits.is_empty() {
        // Nothing to spare a retry, but a state the answer hands out is
        // still bound: to this grant, whose alone it is to present.
        outcome.state_owner = request
            .binds_state
            .then(|| bindings::state_owner(caller.grant, request.kind, request.name, &[]));
        if let Some((rule, approval)) = asked {
            outcome.decision = Decision::NeedsApproval {
                rule,
                approval,
                charges: Vec::new(),
            };
        }
        return outcome;
    }
    // What the call takes from each limit, and under which `per` value.
    let needs_arguments = limits.iter().any(|(limit, inner)| {
        !*inner && (limit.per.is_some() || matches!(limit.cost, Cost::Argument(_)))
    });
    if needs_arguments && parsed.is_none() {
        match read() {
            Ok(raw) => parsed = Some(parse(raw)),
            Err(err) => {
                outcome.decision = Decision::Failed {
                    detail: format!("arguments could not be read: {err}"),
                };
                return outcome;
            }
        }
    }
    let own_arguments: Option<&Value> = if needs_arguments {
        parsed.as_ref().and_then(Option::as_ref)
    } else {
        None
    };
    let mut charges: Vec<Charge<'p>> = Vec::with_capacity(limits.len());
    for (limit, inner) in limits {
        let arguments = if inner {
            inner_arguments_value.as_ref()
        } else {
            own_arguments
        };
        match charge(limit, arguments) {
            Ok(charge) => charges.push(charge),
            Err(reason) => {
                outcome.decision = Decision::InvalidArgument {
                    rule: &limit.pointer,
                    reason,
                };
                outcome.by_invoked = inner;
                return outcome;
            }
        }
    }
    outcome.costs = charges
        .iter()
        .filter(|charge| charge.limit.has_cost())
        .map(|charge| (charge.limit.counter.clone(), charge.cost))
        .collect();
    // A multi-round-trip retry of a call whose first request took these
    // same window units: not taken again. Anything else a retry changes
    // (a cost, a `per` value, the target) counts as a new call; caps on
    // calls in flight are always taken (the first request's slot ended
    // with its exchange).
    // (A digest per call: only where an answer can hand out a state, or a
    // retry names one.)
    let owner = (request.binds_state || request.request_state.is_some())
        .then(|| bindings::state_owner(caller.grant, request.kind, request.name, &charges));
    outcome.state_owner = owner;
    if let (Some(state), Some(owner)) = (request.request_state, owner) {
        if bindings::spend_state(store, state, &owner, now_seconds) {
            charges.retain(|charge| charge.limit.is_concurrent());
        }
    }
    if let Some((rule, approval)) = asked {
        outcome.decision = Decision::NeedsApproval {
            rule,
            approval,
            charges,
        };
        return outcome;
    }
    // Local limits first; the fleet-wide service is asked only if they pass.
    let (global, local): (Vec<Charge<'p>>, Vec<Charge<'p>>) = charges
        .into_iter()
        .partition(|charge| charge.limit.store == CounterStore::Global);
    outcome.decision =
        match take_local(store, &local, caller, now_seconds, policy.slots_per_counter) {
            Ok(reservations) => Decision::Allow {
                reservations,
                global,
            },
            Err(failed @ Decision::Failed { .. }) => {
                outcome.global_unasked = global;
                failed
            }
            Err(refusal) => {
                if let Decision::RateLimited { limit, .. } = &refusal {
                    outcome.by_invoked = outcome.naming_inner.contains(&limit.pointer.as_str());
                }
                refusal
            }
        };
    outcome
}

/// Takes what a call costs from its local limits, all or none: the
/// reservations, or the decision that refuses the call (a full limit, with
/// what the call would have taken from it; the store failing).
pub fn take_local<'p, S: SharedStore + ?Sized>(
    store: &S,
    local: &[Charge<'p>],
    caller: CallerScope<'_>,
    now_seconds: u64,
    slots: u64,
) -> Result<Vec<Reservation>, Decision<'p>> {
    match ratelimit::acquire(store, local, caller, now_seconds, slots) {
        Acquire::Granted(reservations) => Ok(reservations),
        Acquire::Exhausted {
            limit,
            retry_after_seconds,
            cost,
        } => Err(Decision::RateLimited {
            limit,
            retry_after_seconds,
            cost,
        }),
        Acquire::Failed(detail) => Err(Decision::Failed { detail }),
    }
}

/// What one call takes from a limit: its cost (a fixed number, or an
/// argument's value) and its `per` value. `Err`: why the call cannot be
/// counted.
fn charge<'p>(limit: &'p Limit, arguments: Option<&Value>) -> Result<Charge<'p>, String> {
    let paths = match &limit.cost {
        Cost::Argument(path) => Some(path),
        Cost::Units(_) => None,
    }
    .into_iter()
    .chain(&limit.per);
    if let Some(arguments) = arguments {
        for path in paths {
            let segments = path.segments.iter().map(String::as_str);
            if let Some(reason) = crate::arguments::loosely_named_member(arguments, segments) {
                return Err(reason);
            }
        }
    }
    let cost = match &limit.cost {
        Cost::Units(units) => *units,
        Cost::Argument(path) => {
            let max = limit.max();
            match path.lookup(arguments) {
                None => {
                    return Err(format!(
                        "{} is required: it is the cost counted against {:?}",
                        path.written, limit.counter
                    ))
                }
                Some(value) => match value.as_u64() {
                    Some(units) if units <= max => units,
                    Some(units) => {
                        return Err(format!(
                            "{} is {units}, more than the {max} counter {:?} allows",
                            path.written, limit.counter
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{} must be a non-negative integer (it is the cost counted against {:?}), got {value}",
                            path.written, limit.counter
                        ))
                    }
                },
            }
        }
    };
    let per = limit
        .per
        .as_ref()
        .map(|path| ratelimit::per_key(&path.written, path.lookup(arguments)));
    Ok(Charge { limit, cost, per })
}

/// Whether the target itself may be used (hidden, case variant, `deny`,
/// default): the rule that applies (if any), or the decision that refuses it.
pub(crate) fn check_target<'p>(
    policy: &'p View,
    kind: Kind,
    name: &str,
) -> Result<Option<&'p Rule>, Decision<'p>> {
    let (default, default_pointer) = policy.default_for(kind);
    let unlisted = (default == Action::Deny).then_some(default_pointer);
    // `…/secret.txt?x`, `…#x`, `…/` read `…/secret.txt` on many servers:
    // what refuses that resource by a rule refuses them too. (A default
    // does not: an exact key with a query must stay usable.)
    if kind == Kind::Resource {
        if let Some(bare) = crate::uri::bare(name) {
            match check_target(policy, kind, &bare) {
                Err(hidden @ Decision::Hidden { .. }) => return Err(hidden),
                Err(Decision::Deny { rule, reason }) if rule != default_pointer => {
                    return Err(Decision::Deny { rule, reason })
                }
                _ => {}
            }
        }
    }
    // A hidden name must look missing, so nothing else may answer first.
    if let Some(rule) = policy.hidden_as(kind, name) {
        return Err(Decision::Hidden { rule, unlisted });
    }
    // A name that differs only in case from one the policy names must not
    // escape that name's rules (a server may match names loosely): refused.
    match policy.case_variant(kind, name) {
        None => {}
        Some(CaseVariant::Named(named)) => {
            if let Some(rule) = policy.hidden_as(kind, named) {
                return Err(Decision::Hidden { rule, unlisted });
            }
            return Err(Decision::Deny {
                rule: policy
                    .rule(kind, named)
                    .map_or(default_pointer, |rule| rule.pointer.as_str()),
                reason: Cow::Owned(format!(
                    "{} name differs from {named:?} only in letter case",
                    kind.as_str()
                )),
            });
        }
        Some(CaseVariant::Hidden(rule)) => return Err(Decision::Hidden { rule, unlisted }),
        Some(CaseVariant::Pattern(pattern, rule)) => {
            return Err(Decision::Deny {
                rule: &rule.pointer,
                reason: Cow::Owned(format!(
                    "{} name matches {pattern:?} only when letter case is ignored",
                    kind.as_str()
                )),
            })
        }
    }
    let rule = policy.rule(kind, name);
    match rule {
        Some(rule) if rule.action == Action::Deny => Err(Decision::Deny {
            rule: &rule.pointer,
            reason: rule
                .reason
                .as_deref()
                .map_or(Cow::Borrowed(RULE_DENY_REASON), Cow::Borrowed),
        }),
        None if default == Action::Deny => Err(Decision::Deny {
            rule: default_pointer,
            reason: Cow::Borrowed(default_deny_reason(kind)),
        }),
        rule => Ok(rule),
    }
}

/// Everything but limits, for one name: the rule that applies (if any), or
/// the decision that refuses it. `parsed` caches the parsed arguments.
fn check_rules<'p, 'a>(
    policy: &'p View,
    kind: Kind,
    name: &str,
    read: &dyn Fn() -> Result<Option<&'a RawValue>, String>,
    parsed: &mut Option<Option<Value>>,
) -> Result<Option<&'p Rule>, Decision<'p>> {
    match check_target(policy, kind, name)? {
        Some(rule) if !rule.arguments.is_empty() => {
            // Arguments are read only for rules with argument conditions.
            let raw = match parsed {
                Some(_) => None,
                None => match read() {
                    Ok(raw) => raw,
                    Err(err) => {
                        return Err(Decision::Failed {
                            detail: format!("arguments could not be read: {err}"),
                        })
                    }
                },
            };
            let arguments = match parsed {
                Some(arguments) => arguments.clone(),
                None => match raw.map(|raw| serde_json::from_str::<Value>(raw.get())) {
                    None => None,
                    Some(Ok(value)) => Some(value),
                    Some(Err(err)) => {
                        return Err(Decision::Failed {
                            detail: format!("arguments could not be read: {err}"),
                        })
                    }
                },
            };
            *parsed = Some(arguments.clone());
            if let Some(reason) = rule.arguments.loosely_named(arguments.as_ref()) {
                return Err(Decision::InvalidArgument {
                    rule: &rule.pointer,
                    reason,
                });
            }
            match rule.arguments.violation(arguments.as_ref()) {
                Some(condition) => Err(Decision::Deny {
                    rule: condition,
                    reason: rule
                        .reason
                        .as_deref()
                        .map_or(Cow::Borrowed(ARGUMENT_DENY_REASON), Cow::Borrowed),
                }),
                None => Ok(Some(rule)),
            }
        }
        rule => Ok(rule),
    }
}

fn parse(raw: Option<&RawValue>) -> Option<Value> {
    raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
}

/// The value at a dot path (segments) inside `value`.
fn lookup<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, segment| match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => crate::arguments::array_index(segment).and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod quota_tests;
