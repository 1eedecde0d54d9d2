//! The service binary against a real redis-server, driven over gRPC with
//! envoy-types' tonic client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;

#[tokio::test(flavor = "multi_thread")]
async fn ok_under_the_limit_then_over_limit_with_the_reset() {
    let redis = Redis::start();
    let service = Service::redis(&redis, &[]);
    let mut client = service.client().await;
    let counter = unique("asyncexecutecode_rate");
    let req = || {
        request(vec![descriptor(
            &counter,
            "grant:alice",
            3,
            RateLimitUnit::Minute,
        )])
    };

    for remaining in [2, 1, 0] {
        let response = call(&mut client, req()).await;
        assert_eq!(code(&response), Code::Ok);
        assert_eq!(response.statuses.len(), 1);
        let status = &response.statuses[0];
        assert_eq!(status.code, Code::Ok as i32);
        assert_eq!(status.limit_remaining, remaining);
        let limit = status.current_limit.as_ref().expect("current_limit");
        assert_eq!(limit.requests_per_unit, 3);
        assert_eq!(limit.unit, Unit::Minute as i32);
        assert_eq!(limit.name, counter);
    }

    let response = call(&mut client, req()).await;
    assert_eq!(code(&response), Code::OverLimit);
    let status = &response.statuses[0];
    assert_eq!(status.code, Code::OverLimit as i32);
    assert_eq!(status.limit_remaining, 0);
    let reset = status
        .duration_until_reset
        .as_ref()
        .expect("duration_until_reset");
    let reset = Duration::new(reset.seconds as u64, reset.nanos as u32);
    assert!(
        reset > Duration::ZERO && reset <= Duration::from_secs(60),
        "duration_until_reset {reset:?} is not within the minute window"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_full_descriptor_refuses_the_call_and_takes_nothing_from_the_other() {
    let redis = Redis::start();
    let service = Service::redis(&redis, &[]);
    let mut client = service.client().await;
    let full = descriptor(&unique("full"), "global", 1, RateLimitUnit::Hour);
    let other = descriptor(&unique("other"), "grant:alice", 5, RateLimitUnit::Minute);

    assert_eq!(
        code(&call(&mut client, request(vec![full.clone()])).await),
        Code::Ok
    );

    let response = call(&mut client, request(vec![full.clone(), other.clone()])).await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(response.statuses[1].code, Code::Ok as i32);
    assert_eq!(
        response.statuses[1].limit_remaining, 5,
        "nothing taken from the other counter"
    );

    // The other counter still has all 5: the refused call took nothing.
    let response = call(&mut client, request(vec![other])).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_scope_value_has_its_own_count_and_each_limit_definition_too() {
    let redis = Redis::start();
    let service = Service::redis(&redis, &[]);
    let mut client = service.client().await;
    let counter = unique("per_grant");
    let as_grant = |grant: &str, max: u32| {
        request(vec![descriptor(
            &counter,
            &format!("grant:{grant}"),
            max,
            RateLimitUnit::Minute,
        )])
    };

    assert_eq!(
        code(&call(&mut client, as_grant("alice", 2)).await),
        Code::Ok
    );
    assert_eq!(
        code(&call(&mut client, as_grant("alice", 2)).await),
        Code::Ok
    );
    assert_eq!(
        code(&call(&mut client, as_grant("alice", 2)).await),
        Code::OverLimit
    );
    // Same counter name, another scope value: its own count.
    let response = call(&mut client, as_grant("bob", 2)).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 1);
    // Same counter, same scope, but the override changed (policy.json edited):
    // the override is honoured, as a limit of its own.
    let response = call(&mut client, as_grant("alice", 5)).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(
        response.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.requests_per_unit),
        Some(5)
    );
    assert_eq!(response.statuses[0].limit_remaining, 4);
}

/// 200 concurrent calls through two service processes sharing one Redis.
async fn concurrent_ok_count(admission: &str) -> (usize, usize) {
    let redis = Redis::start();
    let one = Service::redis(&redis, &["--admission", admission]);
    let two = Service::redis(&redis, &["--admission", admission]);
    let clients = [one.client().await, two.client().await];
    let counter = unique("concurrent");
    let mut calls = Vec::new();
    for i in 0..200 {
        let mut client = clients[i % 2].clone();
        let req = request(vec![descriptor(
            &counter,
            "global",
            20,
            RateLimitUnit::Hour,
        )]);
        calls.push(tokio::spawn(
            async move { client.should_rate_limit(req).await },
        ));
    }
    let (mut ok, mut over) = (0, 0);
    for call in calls {
        let response = call
            .await
            .expect("task")
            .expect("ShouldRateLimit")
            .into_inner();
        match code(&response) {
            Code::Ok => ok += 1,
            Code::OverLimit => over += 1,
            other => panic!("unexpected code {other:?}"),
        }
    }
    (ok, over)
}

/// One counter shared by two service processes: calls one after the other,
/// alternating between them, get exactly `max`.
#[tokio::test(flavor = "multi_thread")]
async fn two_service_processes_share_one_count() {
    let redis = Redis::start();
    let one = Service::redis(&redis, &[]);
    let two = Service::redis(&redis, &[]);
    let mut clients = [one.client().await, two.client().await];
    let counter = unique("shared");
    let mut ok = 0;
    for i in 0..40 {
        let req = request(vec![descriptor(
            &counter,
            "global",
            20,
            RateLimitUnit::Hour,
        )]);
        if code(&call(&mut clients[i % 2], req).await) == Code::Ok {
            ok += 1;
        }
    }
    assert_eq!(ok, 20);
}

/// The default admission (limitador's reserve, held for the window) allows
/// exactly `max` under concurrency through two service processes. Three
/// rounds, each on a fresh counter, so one lucky interleaving cannot pass it.
#[tokio::test(flavor = "multi_thread")]
async fn exactly_max_under_concurrency_across_two_service_processes() {
    for round in 0..3 {
        let (ok, over) = concurrent_ok_count("hold").await;
        println!("hold admission, round {round}: {ok} of 200 allowed with max 20");
        assert_eq!((ok, over), (20, 180), "round {round}");
    }
}

/// A held unit is given back when its counter's window ends, not before.
#[tokio::test(flavor = "multi_thread")]
async fn held_units_come_back_when_the_window_ends() {
    let redis = Redis::start();
    let service = Service::redis(&redis, &[]);
    let mut client = service.client().await;
    let counter = unique("window");
    let second = || {
        request(vec![descriptor(
            &counter,
            "global",
            3,
            RateLimitUnit::Second,
        )])
    };
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(code(&call(&mut client, second()).await));
    }
    assert_eq!(
        codes,
        [Code::Ok, Code::Ok, Code::Ok, Code::OverLimit],
        "3 per second"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    assert_eq!(code(&call(&mut client, second()).await), Code::Ok);
}

/// limitador's reserve + commit never allows more than `max`, whatever the
/// concurrency. It is not exact: while a commit is between its increment and
/// its release, the unit counts twice, and calls arriving then are refused
/// (README.md, Exactness).
#[tokio::test(flavor = "multi_thread")]
async fn reserve_admission_never_more_than_max_under_concurrency() {
    let (ok, over) = concurrent_ok_count("reserve").await;
    println!("reserve admission: {ok} of 200 allowed with max 20 ({over} refused)");
    assert!(ok <= 20, "max 20, yet {ok} allowed");
    assert!(ok > 0);
}

/// What limitador's `check_rate_limited_and_update` (Kuadrant's Limitador
/// server's path) does in the same race: a measurement, not exactness.
#[tokio::test(flavor = "multi_thread")]
async fn check_and_update_admission_under_the_same_race() {
    let (ok, over) = concurrent_ok_count("check-and-update").await;
    println!("check-and-update admission: {ok} of 200 allowed with max 20 ({over} refused)");
    assert!(ok >= 20, "never fewer than max: {ok}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_is_unavailable_and_the_service_reconnects() {
    let mut redis = Redis::start();
    let service = Service::redis(&redis, &[]);
    let mut client = service.client().await;
    let counter = unique("reconnect");
    let req = || {
        request(vec![descriptor(
            &counter,
            "global",
            100,
            RateLimitUnit::Minute,
        )])
    };
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);

    redis.stop();
    let status = client
        .should_rate_limit(req())
        .await
        .expect_err("no answer without Redis");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.should_rate_limit(req()).await {
            Ok(response) => {
                assert_eq!(code(&response.into_inner()), Code::Ok);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(
                    Instant::now() < deadline,
                    "not reconnected within 20 s: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn started_before_redis_it_answers_unavailable_then_connects() {
    let mut redis = Redis::start();
    redis.stop();
    let service = Service::start(&["--redis".into(), redis.url()]);
    let mut client = service.client().await;
    let req = request(vec![descriptor(
        &unique("early"),
        "global",
        1,
        RateLimitUnit::Minute,
    )]);
    let status = client
        .should_rate_limit(req.clone())
        .await
        .expect_err("Redis is down");
    assert_eq!(status.code(), tonic::Code::Unavailable);

    redis.restart();
    service.wait_for_line("redis connection established");
    assert_eq!(code(&call(&mut client, req).await), Code::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory_mode_counts_in_the_process() {
    let service = Service::start(&["--in-memory".into()]);
    let mut client = service.client().await;
    let req = || {
        request(vec![descriptor(
            "in_memory",
            "session:abc",
            2,
            RateLimitUnit::Second,
        )])
    };
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);
    let response = call(&mut client, req()).await;
    // A second window may have begun between the calls; then the third is allowed.
    if code(&response) == Code::OverLimit {
        let reset = response.statuses[0]
            .duration_until_reset
            .as_ref()
            .expect("reset");
        assert!(reset.seconds <= 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_descriptor_without_an_override_is_an_invalid_argument() {
    let service = Service::start(&["--in-memory".into()]);
    let mut client = service.client().await;
    let mut d = descriptor("c", "global", 1, RateLimitUnit::Minute);
    d.limit = None;
    let status = client
        .should_rate_limit(request(vec![d]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("no limit override"),
        "{}",
        status.message()
    );
}
