//! Prometheus metrics, served as text on `/metrics` (format 0.0.4).
//!
//! ```text
//! mcp_ratelimit_checks_total{result="ok|over_limit|error"}         ShouldRateLimit calls, by answer
//! mcp_ratelimit_errors_total{reason="invalid_argument|redis"}       calls answered with a gRPC error
//! mcp_ratelimit_descriptors_total{kind="window|acquire|release",
//!                                 code="ok|over_limit"}            descriptors, by kind and status
//! mcp_ratelimit_redis_duration_seconds (histogram)                 one script call, send to answer
//! ```
//!
//! Labels take a fixed set of values: nothing from a request (domain,
//! counter, scope) becomes a label, so a caller cannot grow the series.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::request::Kind;

/// Upper bounds of the Redis latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Ok,
    OverLimit,
    Invalid,
    Unavailable,
}

#[derive(Default)]
pub struct Metrics {
    ok: AtomicU64,
    over_limit: AtomicU64,
    invalid: AtomicU64,
    unavailable: AtomicU64,
    /// [kind][code]: kinds window, acquire, release; codes ok, over_limit.
    descriptors: [[AtomicU64; 2]; 3],
    redis_buckets: [AtomicU64; BUCKETS.len()],
    redis_count: AtomicU64,
    redis_sum_nanos: AtomicU64,
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Window { .. } => 0,
        Kind::Acquire => 1,
        Kind::Release => 2,
    }
}

const KINDS: [&str; 3] = ["window", "acquire", "release"];
const CODES: [&str; 2] = ["ok", "over_limit"];

impl Metrics {
    pub fn check(&self, check: Check) {
        let counter = match check {
            Check::Ok => &self.ok,
            Check::OverLimit => &self.over_limit,
            Check::Invalid => &self.invalid,
            Check::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn descriptor(&self, kind: Kind, over_limit: bool) {
        self.descriptors[kind_index(kind)][usize::from(over_limit)].fetch_add(1, Ordering::Relaxed);
    }

    /// One script call (failed ones too: a timeout is a latency).
    pub fn redis_call(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.redis_buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.redis_count.fetch_add(1, Ordering::Relaxed);
        self.redis_sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP mcp_ratelimit_checks_total ShouldRateLimit calls, by answer.\n# TYPE mcp_ratelimit_checks_total counter"
        );
        let errors = get(&self.invalid) + get(&self.unavailable);
        for (result, value) in [
            ("ok", get(&self.ok)),
            ("over_limit", get(&self.over_limit)),
            ("error", errors),
        ] {
            let _ = writeln!(
                out,
                "mcp_ratelimit_checks_total{{result=\"{result}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP mcp_ratelimit_errors_total ShouldRateLimit calls answered with a gRPC error, by reason.\n# TYPE mcp_ratelimit_errors_total counter"
        );
        for (reason, value) in [
            ("invalid_argument", get(&self.invalid)),
            ("redis", get(&self.unavailable)),
        ] {
            let _ = writeln!(
                out,
                "mcp_ratelimit_errors_total{{reason=\"{reason}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP mcp_ratelimit_descriptors_total Descriptors answered, by kind and status.\n# TYPE mcp_ratelimit_descriptors_total counter"
        );
        for (kind, codes) in KINDS.iter().zip(&self.descriptors) {
            for (code, value) in CODES.iter().zip(codes) {
                let _ = writeln!(
                    out,
                    "mcp_ratelimit_descriptors_total{{kind=\"{kind}\",code=\"{code}\"}} {}",
                    get(value)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mcp_ratelimit_redis_duration_seconds One script call to Redis, from send to answer.\n# TYPE mcp_ratelimit_redis_duration_seconds histogram"
        );
        for (bucket, bound) in self.redis_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "mcp_ratelimit_redis_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.redis_count);
        let _ = writeln!(
            out,
            "mcp_ratelimit_redis_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nmcp_ratelimit_redis_duration_seconds_sum {}\nmcp_ratelimit_redis_duration_seconds_count {count}",
            get(&self.redis_sum_nanos) as f64 / 1e9
        );
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn counts_and_histogram() {
        let metrics = Metrics::default();
        metrics.check(Check::Ok);
        metrics.check(Check::Ok);
        metrics.check(Check::OverLimit);
        metrics.check(Check::Invalid);
        metrics.check(Check::Unavailable);
        metrics.descriptor(Kind::Window { seconds: 60 }, true);
        metrics.descriptor(Kind::Acquire, false);
        metrics.redis_call(Duration::from_micros(80));
        metrics.redis_call(Duration::from_millis(3));
        metrics.redis_call(Duration::from_secs(2));
        let text = metrics.render();
        assert_eq!(
            value(&text, "mcp_ratelimit_checks_total{result=\"ok\"}"),
            2.0
        );
        assert_eq!(
            value(&text, "mcp_ratelimit_checks_total{result=\"over_limit\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "mcp_ratelimit_checks_total{result=\"error\"}"),
            2.0
        );
        assert_eq!(
            value(&text, "mcp_ratelimit_errors_total{reason=\"redis\"}"),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "mcp_ratelimit_descriptors_total{kind=\"window\",code=\"over_limit\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "mcp_ratelimit_descriptors_total{kind=\"acquire\",code=\"ok\"}"
            ),
            1.0
        );
        let bucket = |le: &str| {
            value(
                &text,
                &format!("mcp_ratelimit_redis_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.00005"), 0.0);
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("1"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            value(&text, "mcp_ratelimit_redis_duration_seconds_count"),
            3.0
        );
        let sum = value(&text, "mcp_ratelimit_redis_duration_seconds_sum");
        assert!((sum - 2.00308).abs() < 1e-9, "{sum}");
        // Every line is a comment or `name{labels} value`.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.split(' ').count() == 2,
                "{line}"
            );
        }
    }
}
