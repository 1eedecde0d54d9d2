//! `mcp-policy explain`: what a policy does for one grant, tool by tool.

use std::fmt::Write as _;

use crate::decision::{Decision, ARGUMENT_DENY_REASON, DEFAULT_DENY_REASON, RULE_DENY_REASON};
use crate::policy::{
    escape_pointer_token, Action, ApprovalService, Cost, DenyAs, FailureMode, Identity, Limit,
    LimitKind, ListMode, Mode, Policy, Rule, Scope, ToolRule, View,
};
use crate::target::Kind;

/// What a denied caller reads for a hidden tool.
const HIDDEN_REASON: &str = "(answered as a tool the policy does not list)";

/// Stands for a tool the view does not name: no tool has an empty name.
const UNNAMED: &str = "";

/// The explanation of `policy` for `grant` (`None`: callers without a grant
/// entry of their own). `name` names the policy in the heading.
pub fn explain(policy: &Policy, name: &str, grant: Option<&str>) -> String {
    explain_as(policy, name, grant, None)
}

/// The explanation for `grant` whose role claim names `role` (both `None`:
/// callers without a grant entry or a role; `role` alone: any caller of that
/// role without a grant entry of its own).
pub fn explain_as(policy: &Policy, name: &str, grant: Option<&str>, role: Option<&str>) -> String {
    let mut grants: Vec<&str> = policy.grant_names().collect();
    grants.sort_unstable();
    let mut roles: Vec<&str> = policy.role_names().collect();
    roles.sort_unstable();
    let (view, role) = match grant {
        Some(grant) => (policy.view_as(grant, role), policy.role_of(grant, role)),
        None => match role.and_then(|role| Some((policy.role(role)?, role))) {
            Some((view, role)) => (view, Some(role)),
            None => (policy.base(), None),
        },
    };
    // Writing to a String cannot fail: the `fmt::Result`s below are dropped.
    let mut out = String::new();

    let pointer =
        |section: &str, label: &str| format!("/{section}/{}", escape_pointer_token(label));
    let over = match role {
        Some(role) if grant.is_some_and(|grant| policy.role_of(grant, None) == Some(role)) => {
            format!(
                "role {role:?} ({}) over the top-level policy",
                pointer("roles", role)
            )
        }
        _ => "the top-level policy".to_string(),
    };
    let seen_by = match (grant, role) {
        (None, None) if roles.is_empty() => "callers without a grant entry of their own".to_string(),
        (None, None) => "callers without a grant entry of their own or a role".to_string(),
        (None, Some(role)) => format!(
            "role {role:?}: its entry {} over the top-level policy",
            pointer("roles", role)
        ),
        (Some(grant), _) if grants.contains(&grant) => format!(
            "grant {grant:?}: its entry {} over {over}",
            pointer("grants", grant)
        ),
        (Some(grant), Some(role)) => format!(
            "grant {grant:?}, which has no entry, of role {role:?}: its entry {} over the top-level policy",
            pointer("roles", role)
        ),
        (Some(grant), None) if roles.is_empty() => {
            format!("grant {grant:?}, which has no entry: the top-level policy")
        }
        (Some(grant), None) => {
            format!("grant {grant:?}, which has no entry or role: the top-level policy")
        }
    };
    let _ = writeln!(out, "{name} as seen by {seen_by}\n");

    let hide = {
        let mut names: Vec<&str> = view.hidden_names().collect();
        names.sort_unstable();
        if names.is_empty() {
            "(nothing)".to_string()
        } else {
            format!("{}  {}", names.join(", "), view.hide_pointer())
        }
    };
    let mut settings = vec![
        ("identity", describe_identity(&policy.identity)),
        (
            "default",
            format!("{}  {}", action_name(view.default), view.default_pointer),
        ),
        ("default_prompts", {
            let (action, pointer) = view.default_for(Kind::Prompt);
            format!("{}  {pointer}", action_name(action))
        }),
        ("default_resources", {
            let (action, pointer) = view.default_for(Kind::Resource);
            format!("{}  {pointer}", action_name(action))
        }),
        ("prompts", describe_keys(view, Kind::Prompt)),
        ("resources", describe_keys(view, Kind::Resource)),
        ("methods", describe_methods(view)),
        ("annotations", describe_annotations(view)),
        ("hide", hide),
        ("all_tools", describe_all_tools(view.all_tools_limits())),
        ("list", list_name(policy.list).to_string()),
        ("mode", mode_name(policy.mode).to_string()),
        ("deny_as", deny_as_name(policy.deny_as).to_string()),
        (
            "failure_mode",
            failure_mode_name(policy.failure_mode).to_string(),
        ),
        ("max_body_bytes", policy.max_body_bytes.to_string()),
        ("max_json_depth", policy.max_json_depth.to_string()),
        (
            "grants",
            if grants.is_empty() {
                "(none)".to_string()
            } else {
                grants.join(", ")
            },
        ),
    ];
    // Policies without roles read as they did before roles existed.
    if !roles.is_empty() {
        let of = |role: &str| {
            let mut members: Vec<&str> = policy
                .grant_names()
                .chain(policy.grant_roles_keys())
                .filter(|grant| policy.role_of(grant, None) == Some(role))
                .collect();
            members.sort_unstable();
            members.dedup();
            if members.is_empty() {
                role.to_string()
            } else {
                format!("{role} (grants {})", members.join(", "))
            }
        };
        let described: Vec<String> = roles.iter().map(|role| of(role)).collect();
        settings.push(("roles", described.join(", ")));
    }
    for (setting, value) in settings {
        let _ = writeln!(out, "{setting:<18}{value}");
    }
    // Approvals are bound to the revision: shown with the service.
    if let Some(service) = &policy.approval_service {
        let _ = writeln!(
            out,
            "{:<18}{}",
            "approval_service",
            describe_approval_service(service)
        );
        let _ = writeln!(out, "{:<18}{}", "revision", policy.revision);
    }
    out.push('\n');
    out.push_str(&tool_table(view, policy.mode));
    out
}

/// The keys of one kind, exact ones and patterns, with what they do
/// (`hidden` for those `hide` hides, whatever their rule says).
fn describe_keys(view: &View, kind: Kind) -> String {
    let mut keys = view.keys(kind);
    if keys.is_empty() {
        return "(none)".to_string();
    }
    keys.sort_unstable();
    keys.iter()
        .map(|key| {
            let action = if view.hidden_in_any_case(kind, key).is_some() {
                "hidden"
            } else {
                view.rule(kind, key)
                    .filter(|rule| rule.key == *key)
                    .map_or("allow", rule_action_name)
            };
            format!("{key} ({action})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `methods` entries: each method denied or allowed as a whole.
fn describe_methods(view: &View) -> String {
    let entries = view.methods().entries();
    if entries.is_empty() {
        return "(none)".to_string();
    }
    entries
        .iter()
        .map(|(method, action, pointer)| format!("{method} {}  {pointer}", action_name(*action)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_annotations(view: &View) -> String {
    let rules = view.annotation_rules();
    if rules.is_empty() {
        return "(none)".to_string();
    }
    rules
        .iter()
        .map(|rule| {
            let what = if rule.deny { "deny" } else { "limits" };
            format!("{}={} → {what}", rule.hint.name(), rule.is)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// For each example name: the key that decides it (exact beats pattern; the
/// pattern with the most literal text beats the others) and what it does.
pub fn examples(view: &View, examples: &[(Kind, &str)]) -> String {
    let mut out = String::from("\nEXAMPLES\n");
    for (kind, name) in examples {
        let normalised = match kind {
            Kind::Resource => match crate::uri::normalize(name) {
                Ok(uri) => uri,
                Err(error) => {
                    let _ = writeln!(
                        out,
                        "{} {name}: refused (-32602): it has {error}",
                        kind.as_str()
                    );
                    continue;
                }
            },
            _ => name.to_string(),
        };
        let shown = if normalised == *name {
            name.to_string()
        } else {
            format!("{name} (normalised: {normalised})")
        };
        let kind_name = kind.as_str();
        // The gate's own checks, in its order: a tool name it cannot
        // accept, then hidden, a case variant, the rule, the default.
        if *kind == Kind::Tool {
            if let Err(why) = crate::mcp::check_tool_name(&normalised) {
                let _ = writeln!(out, "{kind_name} {shown}: refused (-32602): {why}");
                continue;
            }
        }
        if view.hidden_as(*kind, &normalised).is_some()
            || view.case_variant(*kind, &normalised).is_some()
        {
            // Refused before any rule: as the gate refuses it.
            match crate::decision::check_target(view, *kind, &normalised) {
                Err(Decision::Hidden { rule, .. }) => {
                    let _ = writeln!(out, "{kind_name} {shown}: hidden by {rule}");
                }
                Err(Decision::Deny { rule, reason }) => {
                    let _ = writeln!(out, "{kind_name} {shown}: denied by {rule}: {reason}");
                }
                other => {
                    let what =
                        other.map_or_else(|decision| decision.outcome().as_str(), |_| "allowed");
                    let _ = writeln!(out, "{kind_name} {shown}: {what}");
                }
            }
            continue;
        }
        let (key, pointer) = view.deciding_key(*kind, &normalised);
        let action = match view.rule(*kind, &normalised) {
            Some(rule) => rule_action_name(rule),
            None => action_name(view.default_for(*kind).0),
        };
        match key {
            Some(key) => {
                let _ = writeln!(
                    out,
                    "{kind_name} {shown}: key {key:?} ({pointer}) → {action}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{kind_name} {shown}: no key; the default ({pointer}) → {action}"
                );
            }
        }
    }
    out
}

/// Limits every call counts against, one per line, with their pointers.
fn describe_all_tools(limits: &[Limit]) -> String {
    if limits.is_empty() {
        return "(no limits)".to_string();
    }
    let width = limits
        .iter()
        .map(|limit| describe_limit(limit).len())
        .max()
        .unwrap_or(0);
    let lines: Vec<String> = limits
        .iter()
        .map(|limit| format!("{:<width$}  {}", describe_limit(limit), limit.pointer))
        .collect();
    // Continuation lines line up with the settings' value column.
    lines.join(&format!("\n{:16}", ""))
}

/// One row per tool key (exact or pattern) and tool `hide` entry of the
/// view, and one for every other tool. `mode` decides whether `tools/list`
/// answers are rewritten at all.
fn tool_table(view: &View, mode: Mode) -> String {
    let hidden_tools = view.hidden_names().filter_map(|entry| {
        match entry.split_once(':') {
            Some(("tool", name)) => Some(name),
            // A prompt's or a resource's: on the settings' lines above.
            Some((prefix, _)) if Kind::from_prefix(prefix).is_some() => None,
            _ => Some(entry),
        }
    });
    let mut names: Vec<&str> = view
        .keys(Kind::Tool)
        .into_iter()
        .chain(hidden_tools.filter(|name| *name != "*"))
        .collect();
    names.sort_unstable();
    names.dedup();

    let header = [
        "TOOL".to_string(),
        "ACTION".to_string(),
        "LISTED".to_string(),
        "RULE".to_string(),
        "REASON".to_string(),
    ];
    let mut rows: Vec<[String; 5]> = vec![header];
    let mut details: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for name in &names {
        let (row, detail) = tool_row(view, mode, name);
        rows.push(row);
        details.push(detail);
    }
    rows.push(other_tools_row(view, mode));
    details.push(Vec::new());
    let case_note = if names.is_empty() {
        ""
    } else {
        "\nA name that differs from one above only in letter case, or that a pattern above matches only ignoring case, is refused (hidden if that tool is).\n"
    };

    let widths: Vec<usize> = (0..4)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let detail_width = details
        .iter()
        .flatten()
        .map(|(text, _)| text.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (row, detail) in rows.iter().zip(&details) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            match widths.get(column) {
                Some(width) => {
                    let _ = write!(line, "{cell:<width$}  ");
                }
                None => line.push_str(cell),
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        for (text, pointer) in detail {
            let _ = writeln!(out, "{text:<detail_width$}  {pointer}");
        }
    }
    out.push_str(case_note);
    out
}

/// A tool's row and its detail lines (limits and argument conditions, each
/// with its pointer).
fn tool_row(view: &View, mode: Mode, name: &str) -> ([String; 5], Vec<(String, String)>) {
    let listed = listed(view, mode, name);
    if let Some(pointer) = view.hidden_in_any_case(Kind::Tool, name) {
        let row = [
            name.to_string(),
            "hidden".to_string(),
            listed,
            pointer.to_string(),
            HIDDEN_REASON.to_string(),
        ];
        return (row, Vec::new());
    }
    let Some(rule) = view.tool(name) else {
        // Names come from the rules or from `hide` (answered above), so this
        // is not reached; were it, the default would decide.
        let mut row = other_tools_row(view, mode);
        row[0] = name.to_string();
        return (row, Vec::new());
    };
    let row = [
        name.to_string(),
        rule_action_name(rule).to_string(),
        listed,
        rule.pointer.clone(),
        denial_reason(rule),
    ];
    let mut detail: Vec<(String, String)> = Vec::new();
    if rule.action == Action::Allow {
        for limit in &rule.limits {
            detail.push((
                format!("  limit    {}", describe_limit(limit)),
                limit.pointer.clone(),
            ));
        }
        for operator in rule.arguments.operators() {
            // approve_if's conditions read "approve <when> args.x ...".
            let list = match operator.list {
                "approve_if" => "approve",
                list => list,
            };
            detail.push((
                format!(
                    "  {:<8} {} {} {}",
                    list, operator.argument, operator.operator, operator.operand
                ),
                operator.pointer.to_string(),
            ));
        }
        if let Some(approval) = &rule.approval {
            let who = if approval.separate_approver {
                ", not by the caller"
            } else {
                ""
            };
            let reason = approval
                .reason
                .as_deref()
                .map_or_else(String::new, |reason| format!(", reason {reason:?}"));
            detail.push((
                format!("  approval ttl {} s{who}{reason}", approval.ttl_seconds),
                format!("{}/approval", rule.pointer),
            ));
        }
    }
    (row, detail)
}

/// The row for tools the view does not name.
fn other_tools_row(view: &View, mode: Mode) -> [String; 5] {
    let (action, pointer, reason) = match view.hidden(UNNAMED) {
        Some(pointer) => ("hidden", pointer, HIDDEN_REASON),
        None => match view.default {
            Action::Allow => ("allow", view.default_pointer.as_str(), "-"),
            Action::Deny => ("deny", view.default_pointer.as_str(), DEFAULT_DENY_REASON),
        },
    };
    [
        "(any other tool)".to_string(),
        action.to_string(),
        listed(view, mode, UNNAMED),
        pointer.to_string(),
        reason.to_string(),
    ]
}

/// Whether `tools/list` answers show the tool: monitor mode rewrites none.
fn listed(view: &View, mode: Mode, name: &str) -> String {
    let shown = mode == Mode::Monitor || !view.filters_listing() || view.lists(name);
    if shown { "yes" } else { "no" }.to_string()
}

/// What a caller reads when the rule denies a call; `-` if it never does.
fn denial_reason(rule: &ToolRule) -> String {
    let default = match rule.action {
        Action::Deny => RULE_DENY_REASON,
        Action::Allow if !rule.arguments.is_empty() => ARGUMENT_DENY_REASON,
        Action::Allow => return rule.reason.clone().unwrap_or_else(|| "-".to_string()),
    };
    rule.reason.clone().unwrap_or_else(|| default.to_string())
}

/// `asyncexecutecode_rate: 10 per minute, per grant`,
/// `rows: 10000 units per day, cost args.rows, per grant and args.table`,
/// `exec_inflight: 3 in flight (lease 300 s), per grant`.
pub fn describe_limit(limit: &Limit) -> String {
    let scope = match limit.scope {
        Scope::Grant => "per grant",
        Scope::Session => "per session",
        Scope::Global => "global",
        Scope::Role => "per role",
    };
    let scope = match &limit.per {
        Some(per) if limit.scope == Scope::Global => format!("per {}", per.written),
        Some(per) => format!("{scope} and {}", per.written),
        None => scope.to_string(),
    };
    let global = if limit.store == crate::policy::CounterStore::Global {
        ", fleet-wide"
    } else {
        ""
    };
    match limit.kind {
        LimitKind::Window { seconds, max } => {
            let window = match seconds {
                1 => "second".to_string(),
                60 => "minute".to_string(),
                3_600 => "hour".to_string(),
                86_400 => "day".to_string(),
                seconds => format!("{seconds} s"),
            };
            let cost = match &limit.cost {
                Cost::Units(1) => String::new(),
                Cost::Units(units) => format!(", {units} per call"),
                Cost::Argument(path) => format!(", each call costs {}", path.written),
            };
            let units = if limit.has_cost() { " units" } else { "" };
            format!(
                "{}: {max}{units} per {window}{cost}, {scope}{global}",
                limit.counter
            )
        }
        LimitKind::Concurrent { cap, lease_seconds } => format!(
            "{}: {cap} in flight (lease {lease_seconds} s), {scope}{global}",
            limit.counter
        ),
    }
}

fn describe_identity(identity: &Identity) -> String {
    match identity {
        Identity::Anonymous => "(none: every caller is anonymous)".to_string(),
        Identity::Header(header) => format!("header {header}"),
        Identity::BearerTokens(tokens) => {
            let mut grants: Vec<&str> = tokens.values().map(String::as_str).collect();
            grants.sort_unstable();
            grants.dedup();
            let plural = if tokens.len() == 1 { "" } else { "es" };
            format!(
                "bearer tokens: {} token hash{plural} for grants {}",
                tokens.len(),
                grants.join(", ")
            )
        }
        Identity::JwtClaim {
            provider_metadata,
            claim,
            role_claim,
        } => {
            let role = role_claim
                .as_ref()
                .map(|role| format!(", role from claim {role:?}"))
                .unwrap_or_default();
            format!("JWT claim {claim:?} of jwt_authn metadata {provider_metadata:?}{role}")
        }
    }
}

/// A rule's action as written: `approve` for `"action": "approve"`.
fn rule_action_name(rule: &Rule) -> &'static str {
    match &rule.approval {
        Some(approval) if approval.always => "approve",
        _ => action_name(rule.action),
    }
}

fn describe_approval_service(service: &ApprovalService) -> String {
    format!(
        "cluster {}, page {}, timeout {} ms, failure_mode {}",
        service.cluster,
        service
            .public_url
            .as_deref()
            .unwrap_or("(the service's own links)"),
        service.timeout_ms,
        failure_mode_name(service.failure_mode)
    )
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    }
}

fn list_name(list: ListMode) -> &'static str {
    match list {
        ListMode::ShowDenied => "show_denied",
        ListMode::HideDenied => "hide_denied",
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor (decisions are logged, nothing is blocked or hidden)",
    }
}

fn deny_as_name(deny_as: DenyAs) -> &'static str {
    match deny_as {
        DenyAs::Error => "error",
        DenyAs::ToolResult => "tool_result",
    }
}

fn failure_mode_name(failure_mode: FailureMode) -> &'static str {
    match failure_mode {
        FailureMode::Closed => "closed",
        FailureMode::Open => "open",
    }
}
