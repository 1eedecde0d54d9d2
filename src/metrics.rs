//! The counters the gate exports, named in one place. The plugin defines
//! them once per configuration ([`Catalog::names`]); an exchange asks which
//! to bump for an outcome ([`Catalog::counters`]) and hands the indexes to
//! its host as effects.

use std::collections::HashMap;

use crate::decision::Outcome;
use crate::policy::Policy;
use crate::target::Kind;

/// Stat name of an outcome's total: `mcp_policy_allowed`.
pub fn metric_name(outcome: Outcome) -> String {
    format!("mcp_policy_{}", outcome.as_str())
}

/// Stat name of a tool's outcome counter: `mcp_policy_tool.<tool>.allowed`.
/// Envoy's `stats_tags` (see envoy/envoy.yaml) turn the tool into a label:
/// `mcp_policy_tool_allowed{mcp_tool="<tool>"}`.
pub fn target_metric_name(kind: Kind, name: &str, outcome: Outcome) -> String {
    format!("mcp_policy_{}.{name}.{}", kind.as_str(), outcome.as_str())
}

/// Every counter of one policy, by index.
#[derive(Debug, Default)]
pub struct Catalog {
    names: Vec<String>,
    /// Index of the first of a target's outcome counters. Only targets the
    /// policy names get counters of their own, so callers cannot mint series.
    targets: HashMap<Kind, HashMap<String, usize>>,
}

impl Catalog {
    pub fn for_policy(policy: &Policy) -> Catalog {
        let mut names: Vec<String> = Outcome::ALL.iter().map(|o| metric_name(*o)).collect();
        let mut targets: HashMap<Kind, HashMap<String, usize>> = HashMap::new();
        for tool in policy.named_tools() {
            let base = names.len();
            names.extend(
                Outcome::ALL
                    .iter()
                    .map(|outcome| target_metric_name(Kind::Tool, &tool, *outcome)),
            );
            targets.entry(Kind::Tool).or_default().insert(tool, base);
        }
        Catalog { names, targets }
    }

    /// The names to define, in index order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The counters one outcome bumps: its total, and the target's own if
    /// the policy names the target.
    pub fn counters(&self, outcome: Outcome, target: Option<(Kind, &str)>) -> Vec<usize> {
        let Some(offset) = Outcome::ALL.iter().position(|o| *o == outcome) else {
            return Vec::new();
        };
        let mut counters = vec![offset];
        if let Some((kind, name)) = target {
            if let Some(base) = self.targets.get(&kind).and_then(|names| names.get(name)) {
                counters.push(base + offset);
            }
        }
        counters
    }
}
