//! Prometheus text for `/metrics`, from atomics (no client library needed for
//! a handful of series).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Results of `POST /v1/check`.
pub const CHECK_RESULTS: [&str; 6] = ["approved", "denied", "pending", "invalid", "full", "error"];
/// Upper bounds (seconds) of the check latency histogram.
const BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5];

#[derive(Default)]
pub struct Metrics {
    checks: [AtomicU64; 6],
    created: AtomicU64,
    approved: AtomicU64,
    denied: AtomicU64,
    refused_decisions: AtomicU64,
    buckets: [AtomicU64; 9],
    duration_count: AtomicU64,
    duration_micros: AtomicU64,
}

impl Metrics {
    pub fn check(&self, result: &str, created: bool, took: Duration) {
        if let Some(index) = CHECK_RESULTS.iter().position(|r| *r == result) {
            self.checks[index].fetch_add(1, Ordering::Relaxed);
        }
        if created {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn decision(&self, approved: bool) {
        let counter = if approved {
            &self.approved
        } else {
            &self.denied
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A decision refused: CSRF, own call, not pending, bad input.
    pub fn refused_decision(&self) {
        self.refused_decisions.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `pending` is left out when the store did not answer.
    pub fn render(&self, pending: Option<usize>, redis_errors: u64) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP mcp_approval_checks_total Filter checks answered, by result.\n");
        out.push_str("# TYPE mcp_approval_checks_total counter\n");
        for (result, counter) in CHECK_RESULTS.iter().zip(&self.checks) {
            let _ = writeln!(
                out,
                "mcp_approval_checks_total{{result=\"{result}\"}} {}",
                get(counter)
            );
        }
        out.push_str("# HELP mcp_approval_created_total Pending approvals created by checks.\n");
        out.push_str("# TYPE mcp_approval_created_total counter\n");
        let _ = writeln!(out, "mcp_approval_created_total {}", get(&self.created));
        if let Some(pending) = pending {
            out.push_str("# HELP mcp_approval_pending Approvals waiting for an approver.\n");
            out.push_str("# TYPE mcp_approval_pending gauge\n");
            let _ = writeln!(out, "mcp_approval_pending {pending}");
        }
        out.push_str("# HELP mcp_approval_decisions_total Approvers' decisions, by outcome.\n");
        out.push_str("# TYPE mcp_approval_decisions_total counter\n");
        let _ = writeln!(
            out,
            "mcp_approval_decisions_total{{outcome=\"approved\"}} {}",
            get(&self.approved)
        );
        let _ = writeln!(
            out,
            "mcp_approval_decisions_total{{outcome=\"denied\"}} {}",
            get(&self.denied)
        );
        out.push_str("# HELP mcp_approval_decisions_refused_total Decisions refused (CSRF, own call, no longer pending, bad input).\n");
        out.push_str("# TYPE mcp_approval_decisions_refused_total counter\n");
        let _ = writeln!(
            out,
            "mcp_approval_decisions_refused_total {}",
            get(&self.refused_decisions)
        );
        out.push_str("# HELP mcp_approval_redis_errors_total Redis calls that failed (unreachable, timed out, error).\n");
        out.push_str("# TYPE mcp_approval_redis_errors_total counter\n");
        let _ = writeln!(out, "mcp_approval_redis_errors_total {redis_errors}");
        out.push_str("# HELP mcp_approval_check_duration_seconds Time to answer a filter check.\n");
        out.push_str("# TYPE mcp_approval_check_duration_seconds histogram\n");
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "mcp_approval_check_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.duration_count);
        let _ = writeln!(
            out,
            "mcp_approval_check_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        #[allow(clippy::cast_precision_loss)]
        let sum = get(&self.duration_micros) as f64 / 1e6;
        let _ = writeln!(out, "mcp_approval_check_duration_seconds_sum {sum}");
        let _ = writeln!(out, "mcp_approval_check_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauge_and_histogram() {
        let metrics = Metrics::default();
        metrics.check("pending", true, Duration::from_millis(3));
        metrics.check("approved", false, Duration::from_millis(30));
        metrics.decision(true);
        let text = metrics.render(Some(2), 5);
        for line in [
            "mcp_approval_checks_total{result=\"pending\"} 1",
            "mcp_approval_checks_total{result=\"approved\"} 1",
            "mcp_approval_checks_total{result=\"denied\"} 0",
            "mcp_approval_created_total 1",
            "mcp_approval_pending 2",
            "mcp_approval_decisions_total{outcome=\"approved\"} 1",
            "mcp_approval_redis_errors_total 5",
            "mcp_approval_check_duration_seconds_bucket{le=\"0.005\"} 1",
            "mcp_approval_check_duration_seconds_bucket{le=\"0.05\"} 2",
            "mcp_approval_check_duration_seconds_bucket{le=\"+Inf\"} 2",
            "mcp_approval_check_duration_seconds_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!metrics.render(None, 0).contains("mcp_approval_pending "));
    }
}
