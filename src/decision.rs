//! The decision for one use of a tool, prompt or resource, in the order the
//! policy promises: hidden → rule `deny` → unnamed under a deny default →
//! argument rules (`require`, `deny_if`) → limits (all must have room; quota
//! is taken from all or none) → allow.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::host::SharedStore;
use crate::policy::{Action, CounterStore, Hints, Limit, Rule, View};
use crate::ratelimit::{self, Acquire, CallerScope, Reservation};
use crate::target::Kind;

/// What the gate does with a tool call.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'p> {
    /// Forward it; `reservations` is the local quota it took. `global`: limits
    /// the rate-limit service must still allow (empty: none).
    Allow {
        reservations: Vec<Reservation>,
        global: Vec<&'p Limit>,
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
    /// Refused because a limit is full.
    RateLimited {
        limit: &'p Limit,
        retry_after_seconds: u64,
    },
    /// The gate could not decide (the counter store failed); fails closed.
    Failed { detail: String },
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
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::RateLimited,
        Outcome::Hidden,
        Outcome::Unauthorized,
        Outcome::Invalid,
        Outcome::Failed,
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
            Decision::Failed { .. } => Outcome::Failed,
        }
    }

    /// JSON pointer of the rule that decided, if one did.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Deny { rule, .. } | Decision::Hidden { rule, .. } => Some(rule),
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
    /// Rules and argument rules, no limits (a multi-round-trip retry the
    /// gate already counted).
    RulesOnly,
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
        hints: None,
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
    /// The annotations the server listed for this tool, if the gate saw them.
    pub hints: Option<Hints>,
}

/// A decision, and the inner tool when a meta-tool's call names one.
#[derive(Debug, PartialEq, Eq)]
pub struct Decided<'p> {
    pub decision: Decision<'p>,
    /// The tool a meta-tool runs (its rule's `invokes`), if it could be read.
    pub invoked: Option<String>,
    /// The decision was the inner tool's (answers name it).
    pub by_invoked: bool,
}

/// Decides one use of a tool, prompt or resource, in the documented order:
/// hidden → case variant of a named one → rule `deny` → unnamed under a
/// deny default → argument rules → (for a meta-tool: the same for the tool
/// it runs) → limits (all must have room; quota is taken from all or none)
/// → allow.
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
    let mut limits: Vec<&'p Limit> = rule.map_or(Vec::new(), |rule| rule.limits.iter().collect());
    let mut outcome = decided(Decision::Allow {
        reservations: Vec::new(),
        global: Vec::new(),
    });
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
        let inner_arguments = match (&arguments, &invokes.arguments) {
            (Some(arguments), Some(path)) => lookup(arguments, path).cloned(),
            _ => None,
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
            Ok(inner) => limits.extend(inner.map_or(&[][..], |rule| &rule.limits[..])),
            Err(decision) => {
                outcome.decision = decision;
                outcome.by_invoked = true;
                return outcome;
            }
        }
    }
    // Annotation rules: only stricter, and only for tools whose listed
    // annotations the gate has seen.
    if let Some(hints) = request
        .hints
        .filter(|_| request.counting != Counting::TargetOnly)
    {
        for rule in policy.annotation_rules() {
            if hints.get(rule.hint) != Some(rule.is) {
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
                return outcome;
            }
            limits.extend(rule.limits.iter());
        }
    }
    if request.kind == Kind::Tool {
        limits.extend(policy.all_tools_limits());
    }
    if request.counting != Counting::Take || limits.is_empty() {
        return outcome;
    }
    // Local limits first; the fleet-wide service is asked only if they pass.
    let (global, local): (Vec<&Limit>, Vec<&Limit>) = limits
        .into_iter()
        .partition(|limit| limit.store == CounterStore::Global);
    outcome.decision =
        match ratelimit::acquire(store, &local, caller, now_seconds, policy.slots_per_counter) {
            Acquire::Granted(reservations) => Decision::Allow {
                reservations,
                global,
            },
            Acquire::Exhausted {
                limit,
                retry_after_seconds,
            } => Decision::RateLimited {
                limit,
                retry_after_seconds,
            },
            Acquire::Failed(detail) => Decision::Failed { detail },
        };
    outcome
}

/// Whether the target itself may be used (hidden, case variant, `deny`,
/// default): the rule that applies (if any), or the decision that refuses it.
fn check_target<'p>(
    policy: &'p View,
    kind: Kind,
    name: &str,
) -> Result<Option<&'p Rule>, Decision<'p>> {
    let (default, default_pointer) = policy.default_for(kind);
    let unlisted = (default == Action::Deny).then_some(default_pointer);
    // A hidden name must look missing, so nothing else may answer first.
    if let Some(rule) = policy.hidden_as(kind, name) {
        return Err(Decision::Hidden { rule, unlisted });
    }
    // A name that differs only in case from one the policy names must not
    // escape that name's rules (a server may match names loosely): refused.
    if let Some(named) = policy.case_variant(kind, name) {
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
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
