//! The decision for one `tools/call`, in the order the policy promises:
//! hidden tool → tool rule `deny` → unlisted tool under `default: deny` →
//! argument rules (`require`, `deny_if`) → limits (all must have room; quota
//! is taken from all or none) → allow.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::host::SharedStore;
use crate::policy::{Action, CounterStore, Limit, View};
use crate::ratelimit::{self, Acquire, CallerScope, Reservation};

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
    /// Refused before the policy was consulted: unreadable or oversized.
    Invalid,
    /// The gate could not decide.
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::RateLimited,
        Outcome::Hidden,
        Outcome::Invalid,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::Hidden => "hidden",
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
    // A hidden tool must look missing, so nothing else may answer first.
    let unlisted = (policy.default == Action::Deny).then_some(policy.default_pointer.as_str());
    if let Some(rule) = policy.hidden(tool) {
        return Decision::Hidden { rule, unlisted };
    }
    // A name that differs only in case from one the policy names must not
    // escape that tool's rules (a server may match names loosely): refused.
    if let Some(named) = policy.case_variant_of(tool) {
        if let Some(rule) = policy.hidden(named) {
            return Decision::Hidden { rule, unlisted };
        }
        return Decision::Deny {
            rule: policy
                .tool(named)
                .map_or("/tools", |rule| rule.pointer.as_str()),
            reason: Cow::Owned(format!(
                "tool name differs from {named:?} only in letter case"
            )),
        };
    }
    let rule = policy.tool(tool);
    match rule {
        Some(rule) if rule.action == Action::Deny => {
            return Decision::Deny {
                rule: &rule.pointer,
                reason: rule
                    .reason
                    .as_deref()
                    .map_or(Cow::Borrowed(RULE_DENY_REASON), Cow::Borrowed),
            }
        }
        None if policy.default == Action::Deny => {
            return Decision::Deny {
                rule: &policy.default_pointer,
                reason: Cow::Borrowed(DEFAULT_DENY_REASON),
            }
        }
        Some(rule) if !rule.arguments.is_empty() => {
            // Arguments are read only for tools with argument rules.
            let raw = match arguments.raw_arguments() {
                Ok(raw) => raw,
                Err(err) => {
                    return Decision::Failed {
                        detail: format!("arguments could not be read: {err}"),
                    }
                }
            };
            let arguments: Option<Value> = match raw.map(|raw| serde_json::from_str(raw.get())) {
                None => None,
                Some(Ok(value)) => Some(value),
                Some(Err(err)) => {
                    return Decision::Failed {
                        detail: format!("arguments could not be read: {err}"),
                    }
                }
            };
            if let Some(condition) = rule.arguments.violation(arguments.as_ref()) {
                return Decision::Deny {
                    rule: condition,
                    reason: rule
                        .reason
                        .as_deref()
                        .map_or(Cow::Borrowed(ARGUMENT_DENY_REASON), Cow::Borrowed),
                };
            }
        }
        _ => {}
    }

    let own_limits = rule.map_or(&[][..], |rule| &rule.limits[..]);
    let all_tools = policy.all_tools_limits();
    if own_limits.is_empty() && all_tools.is_empty() {
        return Decision::Allow {
            reservations: Vec::new(),
            global: Vec::new(),
        };
    }
    // Local limits first; the fleet-wide service is asked only if they pass.
    let (global, local): (Vec<&Limit>, Vec<&Limit>) = own_limits
        .iter()
        .chain(all_tools)
        .partition(|limit| limit.store == CounterStore::Global);
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
    }
}

#[cfg(test)]
mod tests;
