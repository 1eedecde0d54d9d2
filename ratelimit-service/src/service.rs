//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.

use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::counter::Counter;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Failure, Outcome};
use crate::request::{Plan, Wanted};

pub struct Service {
    engine: Arc<Engine>,
}

impl Service {
    pub fn new(engine: Arc<Engine>) -> Service {
        Service { engine }
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let plan =
            Plan::from_request(request.get_ref()).map_err(|e| Status::invalid_argument(e.0))?;
        let outcome = self
            .engine
            .check(&plan)
            .await
            .map_err(|failure| match failure {
                Failure::Unavailable(e) => Status::unavailable(format!("rate-limit storage: {e}")),
                Failure::TooManyLimits(max) => Status::resource_exhausted(format!(
                    "more than {max} distinct limits registered (--max-limits)"
                )),
                Failure::Internal(e) => {
                    eprintln!("mcp-ratelimit-service: internal error: {e}");
                    Status::internal(e)
                }
            })?;
        Ok(Response::new(response(&plan, &outcome)))
    }
}

/// The answer: the overall code, and one status per descriptor, in order.
fn response(plan: &Plan, outcome: &Outcome) -> RateLimitResponse {
    let statuses = plan
        .descriptor_limit
        .iter()
        .map(|&index| {
            let wanted = &plan.wanted[index];
            let counter = outcome
                .counters
                .iter()
                .find(|c| c.limit().name() == Some(wanted.key.as_str()));
            status(wanted, counter, plan.hits, outcome.limited)
        })
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

fn status(
    wanted: &Wanted,
    counter: Option<&Counter>,
    hits: u64,
    limited: bool,
) -> DescriptorStatus {
    let remaining = counter
        .and_then(Counter::remaining)
        .unwrap_or(u64::from(wanted.max));
    // When the request was refused, nothing was taken and `remaining` is what
    // is left: this descriptor is the (or a) reason if its hits do not fit.
    let over = limited && remaining < hits;
    let reset = counter
        .and_then(Counter::expires_in)
        .unwrap_or(std::time::Duration::from_secs(wanted.seconds));
    DescriptorStatus {
        code: if over { Code::OverLimit } else { Code::Ok } as i32,
        current_limit: Some(RateLimit {
            name: wanted.counter.clone(),
            requests_per_unit: wanted.max,
            unit: wanted.unit,
        }),
        limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(PbDuration {
            seconds: i64::try_from(reset.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(reset.subsec_nanos()).unwrap_or(0),
        }),
        quota: None,
    }
}
