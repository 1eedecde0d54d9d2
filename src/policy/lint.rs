//! What a valid policy does that its author may not mean: `mcp-policy
//! check` prints these as warnings (`--strict` makes them errors). Each is a
//! JSON pointer into the document and a sentence. Native only: the module
//! Envoy loads never lints.
//!
//! With the tools a server offers ([`Policy::lint`]'s `offered`, from a
//! saved `tools/list` answer or the server itself), names the policy gives
//! that the server does not have, and tools a `default: allow` lets through
//! without any rule naming them, are reported too.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::{Action, Identity, Limit, Policy, Rule, Scope, View, ANONYMOUS_GRANT};
use crate::target::Kind;

/// One warning: where, and what.
pub type Warning = (String, String);

impl Policy {
    /// The warnings of the policy alone, sorted by pointer, once each.
    pub fn warnings(&self) -> Vec<Warning> {
        self.lint(None)
    }

    /// The warnings, and with `offered` (the tool names a server lists)
    /// those that compare the policy with the server.
    pub fn lint(&self, offered: Option<&[String]>) -> Vec<Warning> {
        let mut lint = Lint::default();
        self.lint_limits(&mut lint);
        self.lint_grants(&mut lint);
        self.lint_identity(&mut lint);
        for (grant, view) in self.views() {
            view.lint_rules(grant, &mut lint);
            view.lint_hide(self, offered, &mut lint);
            view.lint_methods(&mut lint);
        }
        if let Some(offered) = offered {
            self.lint_against_server(offered, &mut lint);
        }
        lint.0.into_iter().collect()
    }

    /// The base view, every role's and every grant's, with the grant's
    /// (or role's) name.
    fn views(&self) -> impl Iterator<Item = (Option<&str>, &View)> {
        let mut grants: Vec<(&String, &View)> =
            self.roles.iter().chain(self.grants.iter()).collect();
        grants.sort_by_key(|(name, _)| name.as_str());
        std::iter::once((None, &self.base)).chain(
            grants
                .into_iter()
                .map(|(name, view)| (Some(name.as_str()), view)),
        )
    }

    /// Every limit of every view, once per pointer.
    fn all_limits(&self) -> BTreeMap<&str, &Limit> {
        let mut limits = BTreeMap::new();
        for (_, view) in self.views() {
            let rules = Kind::RULED
                .iter()
                .filter_map(|kind| view.rule_set(*kind))
                .flat_map(|set| set.rules())
                .flat_map(|rule| rule.limits.iter());
            for limit in rules
                .chain(view.all_tools_limits.iter())
                .chain(view.annotations.iter().flat_map(|rule| rule.limits.iter()))
            {
                limits.insert(limit.pointer.as_str(), limit);
            }
        }
        limits
    }

    fn lint_limits(&self, lint: &mut Lint) {
        let limits = self.all_limits();
        let mut seen: BTreeMap<&str, Vec<&Limit>> = BTreeMap::new();
        for limit in limits.values() {
            if limit.scope == Scope::Session {
                lint.add(
                    &limit.pointer,
                    "scope \"session\": MCP 2026-07-28 has no sessions, so its requests (and any without Mcp-Session-Id) count under the caller's grant instead: stricter, never unlimited; use \"grant\" to say so",
                );
            }
            if limit.scope == Scope::Grant && matches!(self.identity, Identity::Anonymous) {
                lint.add(
                    &limit.pointer,
                    "scope \"grant\" without `identity`: every caller is \"anonymous\", so all callers together share one count; add `identity` to count each caller apart, or write scope \"global\" to say so",
                );
            }
            if limit.per.is_some()
                && limit.store == super::CounterStore::Local
                && self.failure_mode == super::FailureMode::Open
            {
                lint.add(
                    &limit.pointer,
                    "`per` values are the caller's to choose: one caller naming enough values fills the counter's table (max_callers_per_counter slots), and under failure_mode \"open\" a caller left without a slot is let through uncounted; keep failure_mode \"closed\" (such a caller is refused), or count it in the rate-limit service (store \"global\"), which keeps no table",
                );
            }
            let earlier = seen.entry(limit.counter.as_str()).or_default();
            // Compared with the first earlier limit of the counter that a
            // call of this one's can meet (not the same rule in another
            // layer, which replaces it).
            let clash = earlier
                .iter()
                .find(|other| !one_replaces_the_other(&limit.pointer, &other.pointer))
                .and_then(|other| {
                    if other.scope != limit.scope {
                        return Some((
                            other.pointer.clone(),
                            format!(
                                "scope {:?} here, {:?} there: each scope keeps a count of its own under the one name, so neither limit sees the other's calls",
                                limit.scope, other.scope
                            ),
                        ));
                    }
                    (other.max() != limit.max()).then(|| {
                        (
                            other.pointer.clone(),
                            format!(
                                "max {} here, {} there: both limits count in one place, and a call both name takes the larger cost against the smaller max",
                                limit.max(),
                                other.max()
                            ),
                        )
                    })
                });
            earlier.push(limit);
            if let Some((other, differs)) = clash {
                lint.add(
                    &limit.pointer,
                    format!(
                        "counter {:?} is also used at {other} with other settings ({differs}); give one of them its own counter",
                        limit.counter,
                    ),
                );
            }
        }
    }

    /// An identity header that carries credentials: the grant is the
    /// header's value, written into every audit line.
    fn lint_identity(&self, lint: &mut Lint) {
        const CREDENTIALS: [&str; 5] = [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "api-key",
        ];
        if let Identity::BearerTokens(tokens) = &self.identity {
            if tokens.is_empty() {
                lint.add(
                    "/identity/bearer_tokens",
                    "no token is listed: every caller is refused (401); list the SHA-256 of each token with its grant",
                );
            }
        }
        if let Identity::Header(header) = &self.identity {
            if CREDENTIALS.contains(&header.as_str()) {
                lint.add(
                    "/identity/header",
                    format!("{header:?} carries credentials: its value becomes the caller's grant, written into every audit line; use `bearer_tokens` (looked up by their SHA-256, never logged) or a header your authentication sets from the verified caller"),
                );
            }
        }
    }

    /// Grants the identity source can never name.
    fn lint_grants(&self, lint: &mut Lint) {
        let mut names: Vec<&String> = self.grants.keys().collect();
        names.sort();
        for grant in names {
            let pointer = format!("/grants/{}", super::escape_pointer_token(grant));
            match &self.identity {
                Identity::Anonymous if grant != ANONYMOUS_GRANT => lint.add(
                    &pointer,
                    "the policy has no `identity`, so every caller is \"anonymous\": this grant never applies",
                ),
                Identity::BearerTokens(tokens)
                    if grant == ANONYMOUS_GRANT && !tokens.values().any(|label| label == grant) =>
                {
                    lint.add(
                    &pointer,
                    "with `bearer_tokens` a caller without a known token is refused (401): the \"anonymous\" grant never applies",
                );
                }
                Identity::BearerTokens(tokens) if !tokens.values().any(|label| label == grant) => {
                    lint.add(
                        &pointer,
                        "no bearer token in `identity.bearer_tokens` maps to this grant: it never applies",
                    )
                }
                _ => {}
            }
        }
    }

    fn lint_against_server(&self, offered: &[String], lint: &mut Lint) {
        let offered_set: HashSet<&str> = offered.iter().map(String::as_str).collect();
        for (_, view) in self.views() {
            for (key, rule) in &view.tools.exact {
                if !offered_set.contains(key.as_str()) {
                    lint.add(
                        &rule.pointer,
                        format!("the server does not offer a tool named {key:?}"),
                    );
                }
            }
            for (glob, rule) in &view.tools.patterns {
                if !offered.iter().any(|tool| glob.matches(tool)) {
                    lint.add(
                        &rule.pointer,
                        format!(
                            "the pattern {:?} matches none of the server's tools",
                            glob.as_str()
                        ),
                    );
                }
            }
            if view.tools.default == Action::Allow {
                for tool in offered {
                    if view.tools.rule(tool).is_none() && view.hidden_as(Kind::Tool, tool).is_none()
                    {
                        lint.add(
                            &view.tools.default_pointer,
                            format!(
                                "the server's tool {tool:?} is allowed by this default: no rule names it"
                            ),
                        );
                    }
                }
            }
        }
    }
}

impl super::RuleSet {
    fn rules(&self) -> impl Iterator<Item = &Arc<Rule>> {
        self.exact
            .values()
            .chain(self.patterns.iter().map(|(_, rule)| rule))
    }
}

impl View {
    /// Rules whose limits or argument conditions can never be reached, and
    /// conditions that hold for everything or nothing.
    fn lint_rules(&self, _grant: Option<&str>, lint: &mut Lint) {
        for kind in Kind::RULED {
            let Some(set) = self.rule_set(kind) else {
                continue;
            };
            for (key, rule) in &set.exact {
                if self.hidden_in_any_case(kind, key).is_some() {
                    for member in limit_members(rule) {
                        lint.add(
                            &member,
                            format!(
                                "{} {key:?} is hidden by {}: its limits are never used",
                                kind.as_str(),
                                self.hide.pointer
                            ),
                        );
                    }
                }
                let named = match kind {
                    Kind::Tool => crate::mcp::check_tool_name(key),
                    Kind::Prompt => crate::mcp::check_prompt_name(key),
                    _ => Ok(()),
                };
                if let Err(why) = named {
                    let request = if kind == Kind::Tool {
                        "call"
                    } else {
                        "request"
                    };
                    lint.add(
                        &rule.pointer,
                        format!(
                            "no {request} can name this {}: the gate refuses it ({why})",
                            kind.as_str()
                        ),
                    );
                }
            }
            for rule in set.rules() {
                if rule.action == Action::Deny {
                    for member in limit_members(rule) {
                        lint.add(
                            &member,
                            "the rule denies every call: its limits are never used",
                        );
                    }
                    if !rule.arguments.is_empty() {
                        lint.add(
                            &rule.pointer,
                            "the rule denies every call: its `require`/`deny_if` conditions are never checked",
                        );
                    }
                }
                // `"action": null` reads as no action (allow): a reason
                // beside nothing else usually meant a denial (beside limits
                // it reads as their note, which the examples use).
                if rule.action == Action::Allow
                    && rule.reason.is_some()
                    && rule.arguments.is_empty()
                    && rule.approval.is_none()
                    && rule.limits.is_empty()
                {
                    lint.add(
                        &format!("{}/reason", rule.pointer),
                        "the rule allows every call (no `action`, or `null`, is allow): its reason is never shown; add \"action\": \"deny\" if it should refuse",
                    );
                }
                lint_conditions(rule, lint);
            }
        }
        for rule in self.annotations.iter() {
            if rule.deny && !rule.limits.is_empty() {
                lint.add(
                    &format!("{}/limits", rule.pointer),
                    "the rule denies every call it applies to (\"action\": \"deny\"): its limits are never used",
                );
            }
        }
    }

    /// `methods` entries that misspell a method the gate knows
    /// (`tools/cal`, `Tools/call`) or the catch-all `other` (`Other`,
    /// `others`): they match only a method of exactly that name, so the
    /// method meant (every unknown one, for `other`) is not governed by them.
    fn lint_methods(&self, lint: &mut Lint) {
        for (method, (_, pointer)) in &self.methods.named {
            if crate::mcp::methods::is_known(method) {
                continue;
            }
            // `other` is a short word: within one edit (or in another case)
            // only, so that a real method such as `order` is not taken for it.
            if method.eq_ignore_ascii_case("other")
                || method.eq_ignore_ascii_case("others")
                || edits_within_one(&method.to_ascii_lowercase(), "other")
            {
                lint.add(
                    pointer,
                    format!("{method:?} is not a method the gate knows, so this entry governs only a method of exactly that name, not every method the gate does not know; did you mean \"other\"?"),
                );
                continue;
            }
            if method.contains('*') {
                lint.add(
                    pointer,
                    format!("{method:?}: `methods` keys are exact method names, not patterns, so this entry governs only a method of exactly that name; list each method"),
                );
                continue;
            }
            let near = crate::mcp::methods::KNOWN
                .iter()
                .map(|known| known.name)
                .find(|known| near_miss(method, known));
            if let Some(near) = near {
                lint.add(
                    pointer,
                    format!("{method:?} is not a method the gate knows, so this entry does not govern {near:?}; did you mean {near:?}?"),
                );
            }
        }
    }

    /// `hide` entries that name nothing the policy (or the server) has.
    fn lint_hide(&self, policy: &Policy, offered: Option<&[String]>, lint: &mut Lint) {
        for (index, entry) in self.hide.written.iter().enumerate() {
            let pointer = format!("{}/{index}", self.hide.pointer);
            let (kind, name) = match entry.split_once(':') {
                Some((prefix, rest)) => match Kind::from_prefix(prefix) {
                    Some(kind) => (kind, rest),
                    None => {
                        // `prompts:x`, `Resource:x`: a kind misspelt hides a
                        // tool by that whole name, which no call can name.
                        let near = ["tool", "prompt", "resource"]
                            .into_iter()
                            .find(|kind| near_miss(prefix, kind));
                        if let Some(near) = near {
                            lint.add(
                                &pointer,
                                format!("hides a tool named {entry:?} (tool names have no `:`); did you mean \"{near}:{rest}\"?"),
                            );
                        }
                        (Kind::Tool, entry.as_str())
                    }
                },
                None => (Kind::Tool, entry.as_str()),
            };
            let pattern = super::Glob::new(name);
            if let (Kind::Tool, Some(offered)) = (kind, offered) {
                let found = match &pattern {
                    Some(glob) => offered.iter().any(|tool| glob.matches(tool)),
                    None => offered.iter().any(|tool| tool == name),
                };
                if !found {
                    lint.add(
                        &pointer,
                        format!("hides {name:?}, which the server does not offer: a typo?"),
                    );
                }
                continue;
            }
            if pattern.is_some() {
                continue;
            }
            let named: BTreeSet<String> = policy
                .named_by_rules(kind)
                .into_iter()
                .filter(|known| known != name)
                .collect();
            if policy
                .named_by_rules(kind)
                .iter()
                .any(|known| known == name)
            {
                continue;
            }
            if let Some(near) = named.iter().find(|known| near_miss(name, known)) {
                lint.add(
                    &pointer,
                    format!(
                        "hides {name:?}, which no rule names; did you mean {near:?}? (pass --tools or --server to check hide against the server's tools)"
                    ),
                );
            }
        }
    }
}

impl Policy {
    /// Exact rule keys of `kind` in every view (not `hide`).
    fn named_by_rules(&self, kind: Kind) -> Vec<String> {
        let mut names: Vec<String> = self
            .views()
            .filter_map(|(_, view)| view.rule_set(kind))
            .flat_map(|set| set.exact.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The pointers of the members of `rule` that hold its limits, as the
/// document wrote them: `…/limits`, `…/rate_limit`, or both.
fn limit_members(rule: &Rule) -> BTreeSet<String> {
    let rate_limit = format!("{}/rate_limit", rule.pointer);
    rule.limits
        .iter()
        .map(|limit| {
            if limit.pointer == rate_limit {
                rate_limit.clone()
            } else {
                format!("{}/limits", rule.pointer)
            }
        })
        .collect()
}

/// One operator of a condition: its name, operand and pointer.
type Operand<'a> = (&'a str, serde_json::Value, String);

/// Argument conditions that hold for every value, or for none.
/// Whether two limits sit at the same place of one rule in two layers (the
/// base and a grant's or role's entry for the same tool): a caller's call
/// is counted by one of them only, so they never meet on one call.
fn one_replaces_the_other(a: &str, b: &str) -> bool {
    // The rule's pointer: a grant's rule replaces the top-level one whole,
    // whichever place its limits take in it.
    fn rule(pointer: &str) -> &str {
        pointer.rsplit_once("/limits/").map_or(
            pointer.strip_suffix("/rate_limit").unwrap_or(pointer),
            |(rule, _)| rule,
        )
    }
    let (a, b) = (rule(a), rule(b));
    fn layer(pointer: &str) -> (&str, &str) {
        for prefix in ["/grants/", "/roles/"] {
            if let Some(rest) = pointer.strip_prefix(prefix) {
                if let Some(at) = rest.find('/') {
                    return pointer.split_at(prefix.len() + at);
                }
            }
        }
        ("", pointer)
    }
    let ((a_layer, a_place), (b_layer, b_place)) = (layer(a), layer(b));
    a_layer != b_layer && a_place == b_place
}

fn lint_conditions(rule: &Rule, lint: &mut Lint) {
    let mut by_condition: BTreeMap<(&str, String), Vec<Operand<'_>>> = BTreeMap::new();
    for operator in rule.arguments.operators() {
        by_condition
            .entry((operator.list, operator.argument.clone()))
            .or_default()
            .push((
                operator.operator,
                operator.operand.clone(),
                operator.pointer.to_string(),
            ));
    }
    for ((list, argument), operators) in by_condition {
        let find = |name: &str| operators.iter().find(|(operator, _, _)| *operator == name);
        for (_, operand, pointer) in operators.iter().filter(|(name, _, _)| *name == "regex") {
            let Some(pattern) = operand.as_str() else {
                continue;
            };
            // Matching costs ~18 ms per MiB of value for each state
            // (BENCHMARKS.md "What a regex costs"): say so past a second.
            if let Some(states) = crate::arguments::regex_states(pattern).filter(|&n| n >= 50) {
                lint.add(
                    pointer,
                    format!("the regex {pattern:?} compiles to about {states} states: matching it takes time proportional to the value's length times that (natively about {} ms per MiB of {argument}, more in Envoy), however the pattern is written; a counted repetition ({{200}}) copies what it repeats: write a smaller pattern, anchor it, or keep max_body_bytes small", states * 18),
                );
            }
            if regex_matches_everything(pattern) {
                let meaning = if list == "deny_if" {
                    "denies every call where it is a string"
                } else {
                    "lets every string through: only its type is checked"
                };
                lint.add(
                    pointer,
                    format!("the regex {pattern:?} matches every string (it can match the empty string): this condition on {argument} {meaning}"),
                );
            }
        }
        if let (Some((_, exists, _)), Some((_, max, pointer))) =
            (find("exists"), find("max_length"))
        {
            if exists == &serde_json::Value::Bool(true) && max.as_u64() == Some(0) {
                lint.add(
                    pointer,
                    format!("`exists: true` with `max_length: 0` on {argument} only holds for an empty string, array or object: was another max_length meant?"),
                );
            }
        }
        if let Some((_, exists, pointer)) = find("exists") {
            if exists == &serde_json::Value::Bool(false) && operators.len() > 1 {
                lint.add(
                    pointer,
                    format!("`exists: false` with other operators on {argument} holds for nothing: a missing value meets no other operator"),
                );
            }
        }
        for (name, operand, pointer) in &operators {
            if matches!(*name, "in") && operand.as_array().is_some_and(Vec::is_empty) {
                lint.add(pointer, format!("`in: []` on {argument} holds for nothing"));
            }
        }
        let number = |name: &str| {
            find(name).and_then(|(_, value, pointer)| Some((value.as_f64()?, pointer)))
        };
        let lower = number("gt")
            .map(|(v, p)| (v, true, p))
            .or(number("gte").map(|(v, p)| (v, false, p)));
        let upper = number("lt")
            .map(|(v, p)| (v, true, p))
            .or(number("lte").map(|(v, p)| (v, false, p)));
        if let (Some((low, low_strict, _)), Some((high, high_strict, pointer))) = (lower, upper) {
            if low > high || (low == high && (low_strict || high_strict)) {
                lint.add(
                    pointer,
                    format!("the bounds on {argument} leave no number between them: the condition holds for nothing"),
                );
            }
        }
    }
}

/// Whether a regex (searched, as argument rules search) matches every
/// string: it matches the empty string and a handful of unlike strings.
fn regex_matches_everything(pattern: &str) -> bool {
    let Ok(regex) = regex_lite::Regex::new(pattern) else {
        return false;
    };
    [
        "",
        "a",
        "Z9",
        " \t",
        "\n",
        "zzzz zzzz",
        "Ωμέγα",
        "{\"x\":[1]}",
    ]
    .iter()
    .all(|sample| regex.is_match(sample))
}

/// Whether `a` looks like a misspelling of `b`: they differ only in case,
/// or by at most two edits and both have at least four characters.
/// Whether `a` becomes `b` by at most one insertion, deletion or
/// substitution of a character.
fn edits_within_one(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short
        .iter()
        .zip(long.iter())
        .take_while(|(x, y)| x == y)
        .count();
    if short.len() == long.len() {
        short[prefix + 1.min(short.len() - prefix)..] == long[prefix + 1.min(long.len() - prefix)..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

fn near_miss(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() < 4 || b.len() < 4 || a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()] <= 2
}

/// Warnings by pointer and message, once each.
#[derive(Default)]
struct Lint(BTreeSet<Warning>);

impl Lint {
    fn add(&mut self, pointer: &str, message: impl Into<String>) {
        self.0.insert((pointer.to_string(), message.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(policy: &str) -> Vec<String> {
        warnings_with(policy, None)
    }

    fn warnings_with(policy: &str, offered: Option<&[&str]>) -> Vec<String> {
        let policy = Policy::from_json(policy.as_bytes()).unwrap();
        let offered: Option<Vec<String>> =
            offered.map(|tools| tools.iter().map(|tool| tool.to_string()).collect());
        policy
            .lint(offered.as_deref())
            .into_iter()
            .map(|(pointer, message)| format!("{pointer}: {message}"))
            .collect()
    }

    #[test]
    fn per_values_under_fail_open_are_said() {
        let policy = |mode: &str, store: &str| {
            let service = if store == "global" {
                r#""rate_limit_service":{"cluster":"rls"},"#
            } else {
                ""
            };
            format!(
                r#"{{"version":"1","default":"deny","identity":{{"header":"x"}},"failure_mode":"{mode}",{service}
                "tools":{{"merge":{{"limits":[{{"counter":"m","window":"hour","max":5,"scope":"grant","per":"args.repo","store":"{store}"}}]}}}}}}"#
            )
        };
        let said = warnings(&policy("open", "local")).join("\n");
        assert!(
            said.contains("/tools/merge/limits/0: `per` values are the caller's to choose"),
            "{said}"
        );
        for (mode, store) in [("closed", "local"), ("open", "global")] {
            let said = warnings(&policy(mode, store)).join("\n");
            assert!(!said.contains("`per` values"), "{mode} {store}: {said}");
        }
    }

    fn has(warnings: &[String], pointer: &str, words: &str) -> bool {
        warnings
            .iter()
            .any(|warning| warning.starts_with(&format!("{pointer}: ")) && warning.contains(words))
    }

    #[test]
    fn a_clean_policy_has_no_warnings() {
        let clean = r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
            "tools":{"read":{"limits":[{"counter":"r","window":"minute","max":5,"scope":"grant"}],
                             "deny_if":{"args.path":{"regex":"^/etc/"}}},
                     "write":{"require":{"args.size":{"gte":1,"lte":10}}}},
            "hide":["admin"],
            "grants":{"ci":{"tools":{"deploy":{}}}}}"#;
        assert_eq!(warnings(clean), Vec::<String>::new());
        let repository =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policy.json")).unwrap();
        assert_eq!(warnings(&repository), Vec::<String>::new());
    }

    #[test]
    fn a_reason_no_caller_sees_a_misspelt_kind_and_a_misspelt_method_are_caught() {
        let found = warnings(
            r#"{"version":"1","default":"allow",
                "tools":{"wipe":{"action":null,"reason":"destroys a workspace"},
                         "read":{"reason":"shown when an argument rule refuses","deny_if":{"args.p":{"regex":"^/etc"}}},
                         "drop":{"action":"deny","reason":"shown"}},
                "hide":["prompts:secret","Resource:file:///x","tool:ok","github:issues"],
                "methods":{"tools/cal":"deny","Tools/call":"deny","vendor/custom":"deny","ping":"allow"}}"#,
        );
        assert!(
            has(&found, "/tools/wipe/reason", "its reason is never shown"),
            "{found:?}"
        );
        assert!(
            has(&found, "/hide/0", "did you mean \"prompt:secret\""),
            "{found:?}"
        );
        assert!(
            has(&found, "/hide/1", "did you mean \"resource:file:///x\""),
            "{found:?}"
        );
        assert!(
            has(&found, "/methods/tools~1cal", "did you mean \"tools/call\""),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "/methods/Tools~1call",
                "did you mean \"tools/call\""
            ),
            "{found:?}"
        );
        // A reason that is shown, a server's own method, a tool with `:`.
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn a_typo_in_hide_is_caught_near_the_name_it_misses() {
        let found = warnings(
            r#"{"version":"1","default":"allow","tools":{"deleteWorkspace":{"action":"deny","reason":"x"}},"hide":["deleteWorkspce","somethingElse"]}"#,
        );
        assert!(
            has(&found, "/hide/0", "did you mean \"deleteWorkspace\""),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "{found:?}");
        // Against the server's list: exact.
        let found = warnings_with(
            r#"{"version":"1","default":"deny","tools":{"a":{}},"hide":["b","c*"]}"#,
            Some(&["a", "x"]),
        );
        assert!(has(&found, "/hide/0", "does not offer"), "{found:?}");
        assert!(has(&found, "/hide/1", "does not offer"), "{found:?}");
    }

    #[test]
    fn the_catch_all_other_misspelt_is_caught() {
        let found = warnings(
            r#"{"version":"1","default":"deny","methods":{"Other":"deny","OTHER":"deny","others":"deny","othr":"deny","other":"deny","ping":"allow"}}"#,
        );
        for key in ["Other", "OTHER", "others", "othr"] {
            assert!(
                has(&found, &format!("/methods/{key}"), "did you mean \"other\""),
                "{key}: {found:?}"
            );
        }
        assert_eq!(found.len(), 4, "`other` itself is the catch-all: {found:?}");
    }

    #[test]
    fn a_pattern_in_methods_governs_nothing() {
        let found = warnings(
            r#"{"version":"1","default":"deny","methods":{"tools/*":"deny","notifications/*":"deny"}}"#,
        );
        assert!(
            has(&found, "/methods/tools~1*", "not patterns"),
            "{found:?}"
        );
        assert!(
            has(&found, "/methods/notifications~1*", "not patterns"),
            "{found:?}"
        );
    }

    #[test]
    fn an_identity_header_that_carries_credentials() {
        let found =
            warnings(r#"{"version":"1","default":"deny","identity":{"header":"Authorization"}}"#);
        assert!(
            has(&found, "/identity/header", "carries credentials"),
            "{found:?}"
        );
        let found =
            warnings(r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"}}"#);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn grants_the_identity_cannot_name() {
        let found =
            warnings(r#"{"version":"1","default":"deny","grants":{"ci":{},"anonymous":{}}}"#);
        assert!(has(&found, "/grants/ci", "never applies"), "{found:?}");
        assert!(
            !found.iter().any(|w| w.starts_with("/grants/anonymous")),
            "{found:?}"
        );
        let hash = crate::policy::sha256_hex(b"t");
        let found = warnings(&format!(
            r#"{{"version":"1","default":"deny","identity":{{"bearer_tokens":{{"{hash}":"ci"}}}},"grants":{{"ci":{{}},"cd":{{}},"anonymous":{{}}}}}}"#
        ));
        assert!(has(&found, "/grants/cd", "no bearer token"), "{found:?}");
        assert!(has(&found, "/grants/anonymous", "401"), "{found:?}");
        assert!(
            !found.iter().any(|w| w.starts_with("/grants/ci")),
            "{found:?}"
        );
        // A token labelled "anonymous" gives that grant its callers.
        let found = warnings(&format!(
            r#"{{"version":"1","default":"deny","identity":{{"bearer_tokens":{{"{hash}":"anonymous"}}}},"grants":{{"anonymous":{{}}}}}}"#
        ));
        assert!(found.is_empty(), "{found:?}");
        let found = warnings(
            r#"{"version":"1","default":"deny","identity":{"header":"x"},"grants":{"ci":{}}}"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_count_per_grant_without_identity_is_one_count_for_everybody() {
        // PolicyLayer's published example: per grant, and no identity.
        let found = warnings(
            r#"{"version":"1","default":"deny","tools":{
                "a":{"limits":[{"counter":"c","window":"minute","max":10,"scope":"grant"}]},
                "b":{"rate_limit":{"max":10,"window":60}},
                "g":{"limits":[{"counter":"g","window":"minute","max":10,"scope":"global"}]}}}"#,
        );
        for pointer in ["/tools/a/limits/0", "/tools/b/rate_limit"] {
            assert!(
                has(&found, pointer, "all callers together share one count"),
                "{pointer}: {found:?}"
            );
        }
        assert_eq!(found.len(), 2, "a global scope says so itself: {found:?}");
        // With an identity, each caller counts apart: nothing to say.
        let found = warnings(
            r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
                "tools":{"b":{"rate_limit":{"max":10,"window":60}}}}"#,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_grant_s_own_cap_on_a_shared_counter_is_not_two_settings() {
        // Bob's rule for the tool replaces the base one for bob: no call
        // is counted by both.
        let found = warnings(
            r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
                "tools":{"t":{"limits":[{"counter":"c","concurrent":3,"scope":"grant"}]}},
                "grants":{"bob":{"tools":{"t":{"limits":[{"counter":"c","concurrent":1,"scope":"grant"}]},
                                 "u":{"limits":[{"counter":"c","concurrent":1,"scope":"grant"}]}}}}}"#,
        );
        // Another tool of bob's on the same counter does meet the base one.
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            has(&found, "/tools/t/limits/0", "/grants/bob/tools/u/limits/0")
                || has(&found, "/grants/bob/tools/u/limits/0", "counter"),
            "{found:?}"
        );
    }

    #[test]
    fn one_counter_with_two_settings() {
        let found = warnings(
            r#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},"tools":{
                "a":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]},
                "b":{"limits":[{"counter":"c","window":"minute","max":50,"scope":"global"}]},
                "d":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]},
                "e":{"limits":[{"counter":"c","window":"minute","max":7,"scope":"grant"}]}}}"#,
        );
        // Another scope: counted apart, which "one place" would misstate.
        assert!(
            has(
                &found,
                "/tools/b/limits/0",
                "scope Global here, Grant there: each scope keeps a count of its own"
            ),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "/tools/e/limits/0",
                "max 7 here, 5 there: both limits count in one place"
            ),
            "{found:?}"
        );
        assert_eq!(
            found.len(),
            2,
            "same settings, shared on purpose: {found:?}"
        );
    }

    #[test]
    fn limits_and_conditions_on_a_denied_or_hidden_tool() {
        let found = warnings(
            r#"{"version":"1","default":"allow","hide":["h"],"tools":{
                "d":{"action":"deny","limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}],
                     "deny_if":{"args.x":{"eq":1}}},
                "h":{"limits":[{"counter":"e","window":"minute","max":5,"scope":"grant"}]}}}"#,
        );
        assert!(has(&found, "/tools/d/limits", "never used"), "{found:?}");
        assert!(has(&found, "/tools/d", "never checked"), "{found:?}");
        assert!(
            has(&found, "/tools/h/limits", "hidden by /hide"),
            "{found:?}"
        );
    }

    /// The pointer names the member the policy wrote: `rate_limit` when
    /// the limit is a `rate_limit` block, never a `limits` that is not there.
    #[test]
    fn a_regex_whose_size_makes_matching_slow_is_named() {
        let found = warnings(
            r#"{"version":"1","default":"allow","tools":{"t":{"deny_if":{
                "args.a":{"regex":"[^\n]{200}"},"args.b":{"regex":"pty\\.spawn|os\\.fork"},"args.c":{"regex":"^[a-z]+$"}}}}}"#,
        );
        assert!(
            has(&found, "/tools/t/deny_if/args.a/regex", "states"),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|warning| warning.contains("args.b") || warning.contains("args.c")),
            "{found:?}"
        );
    }

    #[test]
    fn limits_of_a_name_hidden_in_another_letter_case_are_never_used() {
        let found = warnings(
            r#"{"version":"1","default":"allow","hide":["Secret"],
                "tools":{"secret":{"rate_limit":{"max":5,"window":60}}}}"#,
        );
        assert!(
            has(&found, "/tools/secret/rate_limit", "hidden by /hide"),
            "{found:?}"
        );
    }

    #[test]
    fn limits_never_used_are_pointed_at_where_they_are_written() {
        let found = warnings(
            r#"{"version":"1","default":"allow","identity":{"header":"x"},"hide":["h"],
                "tools":{"h":{"rate_limit":{"max":5,"window":60}},
                         "d":{"action":"deny","rate_limit":{"max":5,"window":60}},
                         "b":{"action":"deny","rate_limit":{"max":5,"window":60},
                              "limits":[{"counter":"c","window":"minute","max":5,"scope":"grant"}]}},
                "resources":{"file:///x":{"action":"deny","rate_limit":{"max":5,"window":60}}}}"#,
        );
        assert!(
            has(&found, "/tools/h/rate_limit", "hidden by /hide"),
            "{found:?}"
        );
        assert!(
            has(&found, "/tools/d/rate_limit", "denies every call"),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "/resources/file:~1~1~1x/rate_limit",
                "denies every call"
            ),
            "{found:?}"
        );
        assert!(
            has(&found, "/tools/b/rate_limit", "denies every call"),
            "{found:?}"
        );
        assert!(
            has(&found, "/tools/b/limits", "denies every call"),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|w| w.starts_with("/tools/h/limits") || w.starts_with("/tools/d/limits")),
            "{found:?}"
        );
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn conditions_that_hold_for_everything_or_nothing() {
        let found = warnings(
            r#"{"version":"1","default":"allow","tools":{"t":{
                "deny_if":{"args.a":{"regex":".*"},"args.b":{"regex":"x|"},"args.c":{"regex":"^$"}},
                "require":{"args.d":{"exists":true,"max_length":0},"args.e":{"exists":false,"eq":1},
                           "args.f":{"gt":10,"lt":5},"args.g":{"in":[]},"args.h":{"gte":1,"lte":1}}}}}"#,
        );
        assert!(
            has(
                &found,
                "/tools/t/deny_if/args.a/regex",
                "matches every string"
            ),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "/tools/t/deny_if/args.b/regex",
                "matches every string"
            ),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|w| w.contains("args.c")),
            "^$ does not: {found:?}"
        );
        assert!(
            has(
                &found,
                "/tools/t/require/args.d/max_length",
                "only holds for an empty"
            ),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "/tools/t/require/args.e/exists",
                "holds for nothing"
            ),
            "{found:?}"
        );
        assert!(
            has(&found, "/tools/t/require/args.f/lt", "no number between"),
            "{found:?}"
        );
        assert!(
            has(&found, "/tools/t/require/args.g/in", "holds for nothing"),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|w| w.contains("args.h")),
            "gte 1 lte 1 holds for 1: {found:?}"
        );
    }

    #[test]
    fn tool_names_no_call_can_carry() {
        let found =
            warnings(r#"{"version":"1","default":"deny","tools":{"read file":{},"ok_name":{}}}"#);
        assert!(
            has(&found, "/tools/read file", "no call can name"),
            "{found:?}"
        );
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn prompt_names_no_request_can_carry() {
        let found = warnings(
            r#"{"version":"1","default":"deny","prompts":{"ａdmin":{"action":"deny"}," admin":{"action":"deny"},"admin ":{"action":"deny"},"résumé":{}}}"#,
        );
        for key in ["ａdmin", " admin", "admin "] {
            assert!(
                has(
                    &found,
                    &format!("/prompts/{key}"),
                    "no request can name this prompt"
                ),
                "{key}: {found:?}"
            );
        }
        assert_eq!(found.len(), 3, "any language may name a prompt: {found:?}");
    }

    #[test]
    fn no_bearer_token_refuses_every_caller() {
        let found = warnings(r#"{"version":"1","default":"deny","identity":{"bearer_tokens":{}}}"#);
        assert!(
            has(&found, "/identity/bearer_tokens", "every caller is refused"),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let hash = crate::policy::sha256_hex(b"t");
        let found = warnings(&format!(
            r#"{{"version":"1","default":"deny","identity":{{"bearer_tokens":{{"{hash}":"ci"}}}}}}"#
        ));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn limits_on_an_annotation_rule_that_denies() {
        let found = warnings(
            r#"{"version":"1","default":"allow","identity":{"header":"x"},"annotations":{
                "destructiveHint":{"action":"deny","limits":[{"counter":"d","window":"minute","max":5,"scope":"grant"}]},
                "openWorldHint":{"limits":[{"counter":"o","window":"minute","max":5,"scope":"grant"}]}}}"#,
        );
        assert!(
            has(
                &found,
                "/annotations/destructiveHint/limits",
                "its limits are never used"
            ),
            "{found:?}"
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn the_server_s_tools_against_the_policy() {
        let policy = r#"{"version":"1","default":"allow","tools":{"read":{},"gone":{},"fs_*":{},"old_*":{}},"hide":["secret"],
            "grants":{"ci":{"default":"deny"}}}"#;
        let found = warnings_with(policy, Some(&["read", "fs_write", "secret", "shell"]));
        assert!(has(&found, "/tools/gone", "does not offer"), "{found:?}");
        assert!(has(&found, "/tools/old_*", "matches none"), "{found:?}");
        assert!(
            has(&found, "/default", "\"shell\" is allowed by this default"),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|w| w.contains("\"secret\" is allowed")),
            "hidden: {found:?}"
        );
        assert!(
            !found.iter().any(|w| w.contains("\"fs_write\" is allowed")),
            "a pattern names it: {found:?}"
        );
        assert!(
            !found.iter().any(|w| w.starts_with("/grants/ci/default")),
            "deny default: {found:?}"
        );
    }

    #[test]
    fn near_misses() {
        assert!(near_miss("deleteWorkspce", "deleteWorkspace"));
        assert!(near_miss("Read", "read"));
        assert!(!near_miss("read", "write"));
        assert!(!near_miss("abc", "abd"), "too short to tell");
        for (a, within) in [
            ("other", true),
            ("othr", true),
            ("otherx", true),
            ("0ther", true),
            ("order", false),
            ("ot", false),
            ("others", true),
        ] {
            assert_eq!(edits_within_one(a, "other"), within, "{a}");
        }
    }
}
