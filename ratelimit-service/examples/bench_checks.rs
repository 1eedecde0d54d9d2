//! `make bench`'s driver for the engine's cost (bench/run.py runs it): pushes
//! checks straight at a running mcp-ratelimit-service over gRPC, all on ONE
//! counter, and reads what Redis itself says a script call costs
//! (`INFO commandstats`, `usec_per_call` of `evalsha`):
//!
//! 1. `--sample` checks on a fresh counter (Redis statistics reset first);
//! 2. `--checks` more on the same counter (10^6 by default), timed: checks/s;
//! 3. `--sample` checks again, statistics reset first: the cost once the
//!    counter has admitted `--checks` calls.
//!
//! Every check must be allowed (the limit is 4,294,967,295 a day), and the
//! counter in Redis must hold exactly the number of checks made. One JSON
//! line on stdout.
//!
//! ```text
//! cargo run --release --example bench_checks -- --service 127.0.0.1:8089 --redis redis://127.0.0.1:6379
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
    Entry, RateLimitOverride,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use tonic::transport::Channel;

struct Args {
    service: String,
    redis: String,
    checks: u64,
    sample: u64,
    concurrency: usize,
    connections: usize,
    domain: String,
}

fn args() -> Args {
    let mut args = Args {
        service: "127.0.0.1:8089".into(),
        redis: "redis://127.0.0.1:6379".into(),
        checks: 1_000_000,
        sample: 20_000,
        concurrency: 64,
        connections: 4,
        domain: "mcp-bench-engine".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--service" => args.service = value(),
            "--redis" => args.redis = value(),
            "--checks" => args.checks = value().parse().expect("--checks"),
            "--sample" => args.sample = value().parse().expect("--sample"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency"),
            "--connections" => args.connections = value().parse().expect("--connections"),
            "--domain" => args.domain = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn request(domain: &str, counter: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "counter".into(),
                    value: counter.into(),
                },
                Entry {
                    key: "scope".into(),
                    value: "grant:bench".into(),
                },
            ],
            limit: Some(RateLimitOverride {
                requests_per_unit: u32::MAX,
                unit: RateLimitUnit::Day as i32,
            }),
            hits_addend: None,
            is_negative_hits: false,
        }],
        hits_addend: 1,
    }
}

/// `n` checks over the clients, `concurrency` at a time; returns the time taken.
async fn run(
    clients: &[RateLimitServiceClient<Channel>],
    concurrency: usize,
    n: u64,
    req: &RateLimitRequest,
) -> Duration {
    let started = Instant::now();
    let per_task = n / concurrency as u64;
    let extra = n % concurrency as u64;
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let mut client = clients[task % clients.len()].clone();
        let req = req.clone();
        let count = per_task + u64::from((task as u64) < extra);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                let answer = client
                    .should_rate_limit(req.clone())
                    .await
                    .expect("ShouldRateLimit")
                    .into_inner();
                assert_eq!(
                    answer.overall_code, 1,
                    "a check was not allowed: {answer:?}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    started.elapsed()
}

/// (calls, usec_per_call) of `evalsha` since the last CONFIG RESETSTAT.
fn evalsha_stats(redis: &mut redis::Connection) -> (u64, f64) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(redis)
        .expect("INFO commandstats");
    let line = info
        .lines()
        .find(|line| line.starts_with("cmdstat_evalsha:"))
        .unwrap_or_else(|| panic!("no evalsha in INFO commandstats:\n{info}"));
    let field = |name: &str| -> f64 {
        line.split([':', ','])
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (field("calls") as u64, field("usec_per_call"))
}

fn reset_stats(redis: &mut redis::Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(redis)
        .expect("CONFIG RESETSTAT");
}

#[tokio::main]
async fn main() {
    let args = args();
    let mut redis = redis::Client::open(args.redis.as_str())
        .expect("--redis")
        .get_connection()
        .expect("connect to Redis");
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(
            RateLimitServiceClient::connect(format!("http://{}", args.service))
                .await
                .expect("connect to the service"),
        );
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let counter = format!("bench-{nanos}");
    let req = request(&args.domain, &counter);
    // The script loaded (a first EVALSHA after a Redis start answers NOSCRIPT),
    // on another counter.
    run(
        &clients,
        1,
        1,
        &request(&args.domain, &format!("{counter}-warm-up")),
    )
    .await;

    reset_stats(&mut redis);
    run(&clients, args.concurrency, args.sample, &req).await;
    let (fresh_calls, fresh_usec) = evalsha_stats(&mut redis);

    reset_stats(&mut redis);
    let filled_in = run(&clients, args.concurrency, args.checks, &req).await;
    let (fill_calls, fill_usec) = evalsha_stats(&mut redis);

    reset_stats(&mut redis);
    run(&clients, args.concurrency, args.sample, &req).await;
    let (after_calls, after_usec) = evalsha_stats(&mut redis);

    // Exactly the checks made, all admitted, in one counter.
    // The key as README.md documents it (plain values of at most 64 bytes).
    let key = format!(
        "mcprl:{{{}.{}}}:w86400:{}.{counter}:11.grant:bench",
        args.domain.len(),
        args.domain,
        counter.len()
    );
    let count: u64 = redis::cmd("HGET")
        .arg(&key)
        .arg("n")
        .query(&mut redis)
        .unwrap_or_else(|e| panic!("HGET {key} n: {e}"));
    let made = 2 * args.sample + args.checks;
    assert_eq!(
        count, made,
        "the counter holds {count}, {made} checks were allowed"
    );
    assert_eq!(
        (fresh_calls, fill_calls, after_calls),
        (args.sample, args.checks, args.sample),
        "one EVALSHA per check"
    );
    println!(
        "{{\"fresh_usec_per_call\": {fresh_usec}, \"fill_usec_per_call\": {fill_usec}, \"after_usec_per_call\": {after_usec}, \"admitted_before_after\": {}, \"fill_checks\": {}, \"fill_seconds\": {:.3}, \"fill_checks_per_second\": {:.0}, \"counter\": {count}, \"concurrency\": {}, \"connections\": {}}}",
        args.sample + args.checks,
        args.checks,
        filled_in.as_secs_f64(),
        args.checks as f64 / filled_in.as_secs_f64(),
        args.concurrency,
        args.connections
    );
}
