//! The core's host traits over proxy-wasm host calls.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use crate::decision::Outcome;
use crate::host::{host_cas, Cas, Clock, Metrics, SharedStore, StoreError};

/// Envoy's shared data: one map per `vm_id`, shared by every worker.
pub struct EnvoySharedData;

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Ok(Some((value, cas))),
            Ok((None, _)) => Ok(None),
            Ok((Some(_), None)) => Err(StoreError::Unavailable(format!(
                "shared data {key:?} has no version"
            ))),
            Err(status) => Err(StoreError::Unavailable(format!(
                "get_shared_data: {status:?}"
            ))),
        }
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), Some(host_cas(expected))) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(status) => Err(StoreError::Unavailable(format!(
                "set_shared_data: {status:?}"
            ))),
        }
    }
}

/// Envoy's wall clock.
pub struct EnvoyClock;

impl Clock for EnvoyClock {
    fn unix_time(&self) -> Duration {
        hostcalls::get_current_time()
            .ok()
            .and_then(|now| now.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }
}

/// Decision counters as Envoy stats, visible at `/stats/prometheus`.
pub struct EnvoyMetrics {
    totals: OutcomeCounters,
    /// Per tool, for the tools the policy names (bounded by the policy).
    per_tool: HashMap<String, OutcomeCounters>,
}

type OutcomeCounters = [Option<u32>; Outcome::ALL.len()];

/// Stat name of an outcome's counter: `mcp_policy_allowed`.
pub fn metric_name(outcome: Outcome) -> String {
    format!("mcp_policy_{}", outcome.as_str())
}

/// Stat name of a tool's outcome counter: `mcp_policy_tool.<tool>.allowed`.
/// Envoy's `stats_tags` (see envoy/envoy.yaml) turn the tool into a label:
/// `mcp_policy_tool_allowed{mcp_tool="<tool>"}`.
pub fn tool_metric_name(tool: &str, outcome: Outcome) -> String {
    format!("mcp_policy_tool.{tool}.{}", outcome.as_str())
}

fn define_counters(name: impl Fn(Outcome) -> String) -> OutcomeCounters {
    Outcome::ALL.map(|outcome| {
        let name = name(outcome);
        match hostcalls::define_metric(MetricType::Counter, &name) {
            Ok(id) => Some(id),
            Err(status) => {
                log::warn!("mcp-policy: cannot define metric {name}: {status:?}");
                None
            }
        }
    })
}

fn increment(counters: &OutcomeCounters, outcome: Outcome) {
    let index = Outcome::ALL
        .iter()
        .position(|candidate| *candidate == outcome);
    if let Some(Some(id)) = index.and_then(|index| counters.get(index)) {
        if let Err(status) = hostcalls::increment_metric(*id, 1) {
            log::warn!("mcp-policy: cannot increment metric: {status:?}");
        }
    }
}

impl EnvoyMetrics {
    /// Defines the counters (idempotent in Envoy: every worker gets the same
    /// stat). `tools`: every tool the policy names, in any grant.
    pub fn define<'a>(tools: impl Iterator<Item = &'a str>) -> Self {
        let mut per_tool = HashMap::new();
        for tool in tools {
            if !per_tool.contains_key(tool) {
                per_tool.insert(
                    tool.to_string(),
                    define_counters(|outcome| tool_metric_name(tool, outcome)),
                );
            }
        }
        EnvoyMetrics {
            totals: define_counters(metric_name),
            per_tool,
        }
    }
}

impl Metrics for EnvoyMetrics {
    fn record(&self, outcome: Outcome, tool: Option<&str>) {
        increment(&self.totals, outcome);
        if let Some(counters) = tool.and_then(|tool| self.per_tool.get(tool)) {
            increment(counters, outcome);
        }
    }
}
