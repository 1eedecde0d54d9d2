//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Outcome, Unavailable};
use crate::metrics::{Check, Metrics};
use crate::request::{Descriptor, Kind, Op, Plan};

/// The prefix of `current_limit.name` in the status of a concurrency
/// descriptor: the acknowledgement that the service holds leases (README.md,
/// "Wire contract"). A service without leases (envoyproxy/ratelimit) names
/// override limits "".
pub const CONCURRENT_NAME_PREFIX: &str = "concurrent:";

pub struct Service {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
}

impl Service {
    pub fn new(engine: Arc<Engine>, metrics: Arc<Metrics>) -> Service {
        Service { engine, metrics }
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let plan = Plan::from_request(request.get_ref()).map_err(|e| {
            self.metrics.check(Check::Invalid);
            Status::invalid_argument(e.0)
        })?;
        let outcome = self.engine.take(&plan).await.map_err(|Unavailable(e)| {
            self.metrics.check(Check::Unavailable);
            Status::unavailable(format!("rate-limit storage: {e}"))
        })?;
        let response = response(&plan, &outcome);
        self.metrics.check(if outcome.limited {
            Check::OverLimit
        } else {
            Check::Ok
        });
        for (descriptor, status) in plan.descriptors.iter().zip(&response.statuses) {
            self.metrics
                .descriptor(descriptor.kind, status.code == Code::OverLimit as i32);
        }
        Ok(Response::new(response))
    }
}

/// The answer: the overall code, and one status per descriptor, in order.
pub fn response(plan: &Plan, outcome: &Outcome) -> RateLimitResponse {
    let statuses = plan
        .descriptors
        .iter()
        .map(|descriptor| status(plan, descriptor, outcome))
        .collect();
    let overall = if outcome.limited {
        Code::OverLimit
    } else {
        Code::Ok
    };
    RateLimitResponse {
        overall_code: overall as i32,
        statuses,
        ..Default::default()
    }
}

fn status(plan: &Plan, descriptor: &Descriptor, outcome: &Outcome) -> DescriptorStatus {
    let seen = outcome
        .counters
        .get(descriptor.counter)
        .copied()
        .unwrap_or(crate::engine::Seen {
            used: 0,
            held: false,
        });
    let max = u64::from(descriptor.max);
    // What this call took from the counter (the largest hits of the
    // descriptors naming it), if it took anything.
    let taken = match plan.counters.get(descriptor.counter).map(|c| &c.op) {
        _ if outcome.limited => 0,
        Some(Op::Window { hits, .. }) => *hits,
        Some(Op::Acquire { .. }) => u64::from(!seen.held),
        _ => 0,
    };
    let (over, reset, name) = match descriptor.kind {
        Kind::Window { seconds } => (
            outcome.limited && seen.used.saturating_add(descriptor.hits) > max,
            Some(until_reset(outcome.now, seconds)),
            descriptor.name.clone(),
        ),
        Kind::Acquire => (
            outcome.limited && !seen.held && seen.used + 1 > max,
            None,
            format!("{CONCURRENT_NAME_PREFIX}{}", descriptor.name),
        ),
        Kind::Release => (
            false,
            None,
            format!("{CONCURRENT_NAME_PREFIX}{}", descriptor.name),
        ),
    };
    let remaining = if descriptor.kind == Kind::Release {
        0
    } else {
        max.saturating_sub(seen.used.saturating_add(taken))
    };
    DescriptorStatus {
        code: if over { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(RateLimit {
            name,
            requests_per_unit: descriptor.max,
            unit: descriptor.unit,
        }),
        limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        duration_until_reset: reset.map(|reset| PbDuration {
            seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
        }),
        quota: None,
    }
}

/// From `now` to the end of the fixed window of `seconds` that holds it,
/// windows aligned to the Unix epoch (`start = now - now % seconds`), as the
/// filter's own counters (`src/ratelimit/mod.rs`). Rounded up to whole
/// seconds it is the filter's `seconds_until_reset`.
pub fn until_reset(now: Duration, seconds: u64) -> Duration {
    let whole = now.as_secs();
    let end = whole - whole % seconds.max(1) + seconds.max(1);
    Duration::from_secs(end).saturating_sub(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::engine::Seen;
    use crate::request::Counter;

    fn window(name: &str, max: u32, hits: u64, counter: usize) -> Descriptor {
        Descriptor {
            counter,
            name: name.into(),
            max,
            unit: 2,
            hits,
            kind: Kind::Window { seconds: 60 },
        }
    }

    fn plan(descriptors: Vec<Descriptor>, ops: Vec<Op>) -> Plan {
        Plan {
            counters: ops
                .into_iter()
                .enumerate()
                .map(|(i, op)| Counter {
                    key: format!("k{i}"),
                    op,
                })
                .collect(),
            descriptors,
        }
    }

    fn outcome(limited: bool, seen: &[(u64, bool)]) -> Outcome {
        Outcome {
            limited,
            now: Duration::new(1_700_000_030, 250_000_000),
            counters: seen
                .iter()
                .map(|&(used, held)| Seen { used, held })
                .collect(),
        }
    }

    #[test]
    fn the_reset_is_the_end_of_the_epoch_aligned_window() {
        // 1_700_000_030 s is 50 s into its minute (1_699_999_980 = 28_333_333 × 60).
        let now = Duration::new(1_700_000_030, 250_000_000);
        assert_eq!(until_reset(now, 60), Duration::new(9, 750_000_000));
        assert_eq!(until_reset(now, 1), Duration::from_millis(750));
        assert_eq!(
            until_reset(Duration::from_secs(1_700_000_040), 60),
            Duration::from_secs(60),
            "at a window's first instant, the whole window"
        );
        // Rounded up, the filter's seconds_until_reset (start + window - now, at least 1).
        for now_s in [0u64, 1, 59, 60, 61, 3_599, 86_399, 1_700_000_030] {
            for window in [1u64, 60, 3_600, 86_400] {
                for nanos in [0u32, 1, 999_999_999] {
                    let reset = until_reset(Duration::new(now_s, nanos), window);
                    let ceil = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
                    let filter = (now_s - now_s % window + window - now_s).max(1);
                    assert_eq!(ceil, filter, "now {now_s}.{nanos:09} window {window}");
                }
            }
        }
    }

    #[test]
    fn allowed_statuses_say_what_is_left_after_the_call() {
        let p = plan(
            vec![window("a", 10, 3, 0), window("b", 5, 1, 1)],
            vec![
                Op::Window {
                    seconds: 60,
                    max: 10,
                    hits: 3,
                },
                Op::Window {
                    seconds: 60,
                    max: 5,
                    hits: 1,
                },
            ],
        );
        let r = response(&p, &outcome(false, &[(4, false), (0, false)]));
        assert_eq!(r.overall_code, Code::Ok as i32);
        assert_eq!(r.statuses[0].limit_remaining, 3);
        assert_eq!(r.statuses[1].limit_remaining, 4);
        let reset = r.statuses[0].duration_until_reset.unwrap();
        assert_eq!((reset.seconds, reset.nanos), (9, 750_000_000));
        let limit = r.statuses[0].current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit, limit.unit),
            ("a", 10, 2)
        );
    }

    #[test]
    fn refused_statuses_name_the_full_counters_and_what_is_left() {
        let p = plan(
            vec![window("a", 10, 3, 0), window("b", 5, 1, 1)],
            vec![
                Op::Window {
                    seconds: 60,
                    max: 10,
                    hits: 3,
                },
                Op::Window {
                    seconds: 60,
                    max: 5,
                    hits: 1,
                },
            ],
        );
        let r = response(&p, &outcome(true, &[(8, false), (2, false)]));
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(r.statuses[0].limit_remaining, 2);
        assert_eq!(r.statuses[1].code, Code::Ok as i32);
        assert_eq!(r.statuses[1].limit_remaining, 3, "nothing taken");
    }

    #[test]
    fn concurrency_statuses() {
        let acquire = Descriptor {
            counter: 0,
            name: "inflight".into(),
            max: 3,
            unit: 1,
            hits: 1,
            kind: Kind::Acquire,
        };
        let op = Op::Acquire {
            cap: 3,
            member: "m".into(),
            lease_ms: 1000,
        };
        let p = plan(vec![acquire.clone()], vec![op.clone()]);
        let r = response(&p, &outcome(false, &[(1, false)]));
        let s = &r.statuses[0];
        assert_eq!(s.code, Code::Ok as i32);
        assert_eq!(s.limit_remaining, 1);
        assert_eq!(s.duration_until_reset, None, "no guess when a slot frees");
        assert_eq!(
            s.current_limit.as_ref().unwrap().name,
            "concurrent:inflight"
        );
        // A renewal takes no second slot.
        let r = response(&p, &outcome(false, &[(3, true)]));
        assert_eq!(r.statuses[0].limit_remaining, 0);
        let r = response(&p, &outcome(true, &[(3, false)]));
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        // Refused for another counter: this one had room.
        let p = plan(
            vec![window("rate", 1, 1, 1), acquire],
            vec![
                op,
                Op::Window {
                    seconds: 60,
                    max: 1,
                    hits: 1,
                },
            ],
        );
        let r = response(&p, &outcome(true, &[(0, false), (1, false)]));
        assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
        assert_eq!(r.statuses[1].code, Code::Ok as i32);
        assert_eq!(r.statuses[1].limit_remaining, 3);
    }
}
