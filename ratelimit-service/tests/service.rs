//! The service binary against a real redis-server, driven over gRPC with
//! envoy-types' tonic client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;

use RateLimitUnit::{Day, Hour, Minute, Second};

/// The Redis key of a window counter, as README.md documents the layout
/// (plain values of at most 64 bytes stay readable).
fn window_key(seconds: u64, counter: &str, scope: &str) -> String {
    format!(
        "mcprl:{{{}.{DOMAIN}}}:w{seconds}:{}.{counter}:{}.{scope}",
        DOMAIN.len(),
        counter.len(),
        scope.len()
    )
}

fn lease_key(counter: &str, scope: &str) -> String {
    format!(
        "mcprl:{{{}.{DOMAIN}}}:c:{}.{counter}:{}.{scope}",
        DOMAIN.len(),
        counter.len(),
        scope.len()
    )
}

fn reset_of(response: &RateLimitResponse, index: usize) -> Duration {
    let reset = response.statuses[index]
        .duration_until_reset
        .as_ref()
        .expect("duration_until_reset");
    Duration::new(reset.seconds as u64, reset.nanos as u32)
}

#[tokio::test(flavor = "multi_thread")]
async fn ok_under_the_limit_then_over_limit_with_the_reset() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let counter = unique("asyncexecutecode_rate");
    let req = || request(vec![descriptor(&counter, "grant:alice", 3, Minute)]);

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
    let reset = reset_of(&response, 0);
    assert!(
        reset > Duration::ZERO && reset <= Duration::from_secs(60),
        "duration_until_reset {reset:?} is not within the minute window"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_full_descriptor_refuses_the_call_and_takes_nothing_from_the_others() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let (full, other, third) = (unique("full"), unique("other"), unique("third"));
    let d_full = descriptor(&full, "global", 1, Hour);
    let d_other = descriptor(&other, "grant:alice", 5, Minute);
    let d_third = costing(&third, "session:s1", 9, Day, 3);

    assert_eq!(
        code(&call(&mut client, request(vec![d_full.clone()])).await),
        Code::Ok
    );

    // The full counter is in the middle: counters before and after it are untouched.
    let response = call(
        &mut client,
        request(vec![d_other.clone(), d_full.clone(), d_third.clone()]),
    )
    .await;
    assert_eq!(code(&response), Code::OverLimit);
    let codes: Vec<i32> = response.statuses.iter().map(|s| s.code).collect();
    assert_eq!(
        codes,
        [Code::Ok as i32, Code::OverLimit as i32, Code::Ok as i32]
    );
    assert_eq!(response.statuses[0].limit_remaining, 5, "nothing taken");
    assert_eq!(response.statuses[2].limit_remaining, 9, "nothing taken");
    assert_eq!(
        redis.cmd(&["EXISTS", &window_key(60, &other, "grant:alice")]),
        Resp::Int(0)
    );

    let response = call(&mut client, request(vec![d_other, d_third])).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 4);
    assert_eq!(response.statuses[1].limit_remaining, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_scope_value_window_and_domain_has_its_own_count() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let counter = unique("per_grant");
    let as_grant = |grant: &str, max: u32| {
        request(vec![descriptor(
            &counter,
            &format!("grant:{grant}"),
            max,
            Minute,
        )])
    };

    for expected in [Code::Ok, Code::Ok, Code::OverLimit] {
        assert_eq!(
            code(&call(&mut client, as_grant("alice", 2)).await),
            expected
        );
    }
    // Same counter name, another scope value: its own count.
    let response = call(&mut client, as_grant("bob", 2)).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 1);
    // The same counter with another window: its own count.
    let hourly = request(vec![descriptor(&counter, "grant:alice", 2, Hour)]);
    assert_eq!(code(&call(&mut client, hourly).await), Code::Ok);
    // Another domain: its own namespace.
    let mut elsewhere = as_grant("alice", 2);
    elsewhere.domain = "another-domain".into();
    assert_eq!(code(&call(&mut client, elsewhere).await), Code::Ok);
    // The max raised in policy.json applies to the current count (2 taken of 5),
    // as with the filter's own counters and envoyproxy/ratelimit.
    let response = call(&mut client, as_grant("alice", 5)).await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(
        response.statuses[0]
            .current_limit
            .as_ref()
            .map(|l| l.requests_per_unit),
        Some(5)
    );
    assert_eq!(response.statuses[0].limit_remaining, 2);
}

/// Bursts of concurrent calls through two service processes sharing one
/// Redis, each call taking a global counter (max 20) and its grant's counter
/// (max 3, 8 grants): exactly 20 allowed in every round, no grant past 3, and
/// Redis holds exactly what was allowed (a refused call took nothing).
#[tokio::test(flavor = "multi_thread")]
async fn exactly_max_in_every_round_of_concurrent_bursts_through_two_services() {
    let redis = Redis::start();
    let services = [Service::redis(&redis), Service::redis(&redis)];
    let clients = [services[0].client().await, services[1].client().await];
    for round in 0..5 {
        let global = unique("burst_global");
        let per_grant = unique("burst_grant");
        let calls: Vec<_> = (0..200)
            .map(|i| {
                let mut client = clients[i % 2].clone();
                let grant = format!("grant:g{}", i % 8);
                let req = request(vec![
                    descriptor(&global, "global", 20, Hour),
                    descriptor(&per_grant, &grant, 3, Hour),
                ]);
                tokio::spawn(async move { (grant, client.should_rate_limit(req).await) })
            })
            .collect();
        let mut allowed: HashMap<String, i64> = HashMap::new();
        let mut refused = 0;
        for call in calls {
            let (grant, answer) = call.await.expect("task");
            match code(&answer.expect("ShouldRateLimit").into_inner()) {
                Code::Ok => *allowed.entry(grant).or_default() += 1,
                Code::OverLimit => refused += 1,
                other => panic!("unexpected code {other:?}"),
            }
        }
        let total: i64 = allowed.values().sum();
        println!("round {round}: {total} of 200 allowed with max 20, {refused} refused");
        assert_eq!((total, refused), (20, 180), "round {round}");
        assert!(allowed.values().all(|&n| n <= 3), "{allowed:?}");
        let stored = |key: String| redis.cmd(&["HGET", &key, "n"]).int();
        assert_eq!(stored(window_key(3_600, &global, "global")), 20);
        let mut in_redis = 0;
        for (grant, n) in &allowed {
            let count = stored(window_key(3_600, &per_grant, grant));
            assert_eq!(count, *n, "{grant}");
            in_redis += count;
        }
        assert_eq!(in_redis, 20);
    }
    // Both processes answered.
    for service in &services {
        assert!(service.metric("mcp_ratelimit_checks_total{result=\"ok\"}") > 0.0);
    }
}

/// Windows start at `now - now % window` on the Unix epoch (Redis's clock),
/// like the filter's local counters, not at the first hit.
#[tokio::test(flavor = "multi_thread")]
async fn windows_are_aligned_to_the_epoch() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;

    // A one-second window, filled half-way through a second: the next
    // second is a new window, though less than a second has passed since
    // the first hit. (A window starting at the first hit would still refuse.)
    let mut shown = false;
    for _attempt in 0..5 {
        let now = now();
        let into_second = Duration::from_nanos(u64::from(now.subsec_nanos()));
        if into_second > Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(1_500) - into_second).await;
        } else {
            tokio::time::sleep(Duration::from_millis(500) - into_second).await;
        }
        let counter = unique("second");
        let req = || request(vec![descriptor(&counter, "global", 3, Second)]);
        let first_hit = common::now();
        let mut codes = Vec::new();
        for _ in 0..4 {
            codes.push(call(&mut client, req()).await);
        }
        let filled = common::now();
        if filled.as_secs() != first_hit.as_secs() {
            continue; // the machine was too slow to stay within one second
        }
        let codes_only: Vec<Code> = codes.iter().map(code).collect();
        assert_eq!(
            codes_only,
            [Code::Ok, Code::Ok, Code::Ok, Code::OverLimit],
            "3 per second"
        );
        // The reset is the rest of this second, not a whole second.
        let reset = reset_of(&codes[3], 0);
        let left = Duration::from_secs(first_hit.as_secs() + 1) - first_hit;
        assert!(reset <= left, "reset {reset:?} beyond the second's end");
        let next_second = Duration::from_secs(first_hit.as_secs() + 1) + Duration::from_millis(30);
        tokio::time::sleep(next_second.saturating_sub(common::now())).await;
        let again = call(&mut client, req()).await;
        assert!(common::now() - first_hit < Duration::from_millis(1_000));
        assert_eq!(
            code(&again),
            Code::Ok,
            "a new window at the second's boundary"
        );
        shown = true;
        break;
    }
    assert!(shown, "five attempts, never within one second");

    // A minute: the reset agrees with the clock's minute, and the counter
    // expires in Redis when its window ends.
    let start = at_least_left_in_window(60, Duration::from_secs(5));
    let counter = unique("minute");
    let before = common::now();
    let response = call(
        &mut client,
        request(vec![descriptor(&counter, "grant:alice", 10, Minute)]),
    )
    .await;
    let after = common::now();
    let end = Duration::from_secs(start + 60);
    let reset = reset_of(&response, 0);
    assert!(
        end - after <= reset && reset <= end - before,
        "reset {reset:?}, window end in {:?}..{:?}",
        end - after,
        end - before
    );
    let key = window_key(60, &counter, "grant:alice");
    assert_eq!(
        redis.cmd(&["PEXPIRETIME", &key]).int(),
        (start as i64 + 60) * 1000,
        "TTL = the rest of the window"
    );
    assert_eq!(redis.cmd(&["HGET", &key, "s"]).int(), start as i64);

    // A day: midnight UTC.
    let counter = unique("day");
    call(
        &mut client,
        request(vec![descriptor(&counter, "global", 10, Day)]),
    )
    .await;
    let today = common::now().as_secs() / 86_400 * 86_400;
    assert_eq!(
        redis
            .cmd(&["PEXPIRETIME", &window_key(86_400, &counter, "global")])
            .int(),
        (today as i64 + 86_400) * 1000
    );
}

/// A count left from an earlier window is not this window's, even while
/// its key has not yet expired (the script compares the window's start).
#[tokio::test(flavor = "multi_thread")]
async fn a_count_from_another_window_is_not_this_one() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let counter = unique("stale");
    let key = window_key(3_600, &counter, "global");
    let hour = at_least_left_in_window(3_600, Duration::from_secs(5));
    // The last hour's count, still alive for a minute.
    redis.cmd(&["HSET", &key, "s", &(hour - 3_600).to_string(), "n", "5"]);
    redis.cmd(&["EXPIRE", &key, "60"]);
    let response = call(
        &mut client,
        request(vec![descriptor(&counter, "global", 5, Hour)]),
    )
    .await;
    assert_eq!(code(&response), Code::Ok);
    assert_eq!(response.statuses[0].limit_remaining, 4);
    assert_eq!(redis.cmd(&["HGET", &key, "n"]).int(), 1);
    assert_eq!(redis.cmd(&["HGET", &key, "s"]).int(), hour as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn costs_take_several_units_per_descriptor() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let rows = unique("rows_exported");

    // A budget of 10, calls costing 4: 4, 8, then 12 does not fit.
    let cost = |n: u64| request(vec![costing(&rows, "grant:alice", 10, Day, n)]);
    let response = call(&mut client, cost(4)).await;
    assert_eq!(
        (code(&response), response.statuses[0].limit_remaining),
        (Code::Ok, 6)
    );
    call(&mut client, cost(4)).await;
    let response = call(&mut client, cost(4)).await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].limit_remaining, 2, "what is left");
    // Nothing taken by the refused call: 2 still fit exactly.
    let response = call(&mut client, cost(2)).await;
    assert_eq!(
        (code(&response), response.statuses[0].limit_remaining),
        (Code::Ok, 0)
    );
    // A cost above the whole budget never fits.
    let big = unique("big");
    let response = call(
        &mut client,
        request(vec![costing(&big, "global", 10, Day, 11)]),
    )
    .await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].limit_remaining, 10);

    // Each descriptor its own cost in one call; the request's hits_addend for
    // descriptors without one; 0 on a descriptor checks without taking.
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    let mut mixed = request(vec![
        costing(&a, "global", 100, Hour, 7),
        descriptor(&b, "global", 100, Hour),
        costing(&c, "global", 100, Hour, 0),
    ]);
    mixed.hits_addend = 3;
    let response = call(&mut client, mixed.clone()).await;
    let remaining: Vec<u32> = response
        .statuses
        .iter()
        .map(|s| s.limit_remaining)
        .collect();
    assert_eq!(remaining, [93, 97, 100]);
    assert_eq!(
        redis.cmd(&["EXISTS", &window_key(3_600, &c, "global")]),
        Resp::Int(0)
    );
    // A cost that fits one counter but not another takes from neither.
    let response = call(
        &mut client,
        request(vec![
            costing(&a, "global", 100, Hour, 50),
            costing(&b, "global", 100, Hour, 98),
        ]),
    )
    .await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(
        (response.statuses[0].code, response.statuses[1].code),
        (Code::Ok as i32, Code::OverLimit as i32)
    );
    assert_eq!(
        redis
            .cmd(&["HGET", &window_key(3_600, &a, "global"), "n"])
            .int(),
        7
    );
    // A check-only descriptor is refused when its counter is already over its max.
    let response = call(
        &mut client,
        request(vec![costing(&a, "global", 5, Hour, 0)]),
    )
    .await;
    assert_eq!(code(&response), Code::OverLimit);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_caps_leases_and_releases_give_slots_back() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let inflight = unique("exec_inflight");
    let get = |lease: &str| request(vec![acquire(&inflight, "grant:alice", 2, lease, 30_000)]);
    let give = |lease: &str| request(vec![release(&inflight, "grant:alice", lease)]);

    let response = call(&mut client, get("l1")).await;
    assert_eq!(code(&response), Code::Ok);
    let status = &response.statuses[0];
    assert_eq!(status.limit_remaining, 1);
    assert_eq!(status.duration_until_reset, None, "no retry guess");
    assert_eq!(
        status.current_limit.as_ref().unwrap().name,
        format!("concurrent:{inflight}"),
        "the acknowledgement of a service that holds leases"
    );
    assert_eq!((code(&call(&mut client, get("l2")).await)), Code::Ok);
    let response = call(&mut client, get("l3")).await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(response.statuses[0].limit_remaining, 0);

    // A renewal of a held lease takes no second slot.
    let response = call(&mut client, get("l2")).await;
    assert_eq!(
        (code(&response), response.statuses[0].limit_remaining),
        (Code::Ok, 0)
    );
    // A release gives the slot back; releasing again, or a lease never held, is fine.
    for _ in 0..2 {
        let response = call(&mut client, give("l1")).await;
        assert_eq!(code(&response), Code::Ok);
        assert_eq!(
            response.statuses[0].current_limit.as_ref().unwrap().name,
            format!("concurrent:{inflight}")
        );
    }
    assert_eq!(code(&call(&mut client, give("never")).await), Code::Ok);
    assert_eq!(code(&call(&mut client, get("l3")).await), Code::Ok);
    assert_eq!(code(&call(&mut client, get("l4")).await), Code::OverLimit);
    assert_eq!(
        redis.cmd(&["ZCARD", &lease_key(&inflight, "grant:alice")]),
        Resp::Int(2)
    );

    // With a full rate counter in the same call, no slot is taken.
    let rate = unique("rate");
    call(
        &mut client,
        request(vec![descriptor(&rate, "global", 1, Hour)]),
    )
    .await;
    let other = unique("other_inflight");
    let response = call(
        &mut client,
        request(vec![
            acquire(&other, "grant:alice", 1, "x", 30_000),
            descriptor(&rate, "global", 1, Hour),
        ]),
    )
    .await;
    assert_eq!(code(&response), Code::OverLimit);
    assert_eq!(response.statuses[0].code, Code::Ok as i32);
    assert_eq!(
        redis.cmd(&["EXISTS", &lease_key(&other, "grant:alice")]),
        Resp::Int(0)
    );
}

/// A lease not released (its holder crashed) gives its slot back when it
/// expires, while the other leases of its counter live on; the set
/// disappears with its last lease.
#[tokio::test(flavor = "multi_thread")]
async fn leases_expire_so_a_crashed_holder_cannot_keep_slots() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let inflight = unique("crash");
    let get = |lease: &str, ms: u64| request(vec![acquire(&inflight, "global", 2, lease, ms)]);
    let key = lease_key(&inflight, "global");

    let taken = Instant::now();
    assert_eq!(
        code(&call(&mut client, get("crashed", 400)).await),
        Code::Ok
    );
    assert_eq!(
        code(&call(&mut client, get("long", 30_000)).await),
        Code::Ok
    );
    assert_eq!(
        code(&call(&mut client, get("next", 400)).await),
        Code::OverLimit
    );
    tokio::time::sleep(Duration::from_millis(450).saturating_sub(taken.elapsed())).await;
    let acquired = Instant::now();
    assert_eq!(
        code(&call(&mut client, get("next", 300)).await),
        Code::Ok,
        "the crashed holder's lease expired"
    );
    assert_eq!(
        code(&call(&mut client, get("another", 300)).await),
        Code::OverLimit
    );
    assert_eq!(redis.cmd(&["ZCARD", &key]), Resp::Int(2));

    // Released, the long lease no longer keeps the set: it lives as long as "next".
    let released = call(
        &mut client,
        request(vec![release(&inflight, "global", "long")]),
    )
    .await;
    assert_eq!(code(&released), Code::Ok);
    let ttl = redis.cmd(&["PTTL", &key]).int();
    assert!(
        (0..=300).contains(&ttl),
        "PTTL {ttl} ms after the long lease was released"
    );
    tokio::time::sleep(Duration::from_millis(350).saturating_sub(acquired.elapsed())).await;
    assert_eq!(
        redis.cmd(&["EXISTS", &key]),
        Resp::Int(0),
        "gone with its last lease"
    );
}

/// Workers through two service processes take slots of a cap of 5, hold
/// them a moment, and give them back (a release, or for some a crash that
/// leaves the lease to expire). Slots held, as the workers see them, never
/// exceed the cap; afterwards every slot is free again.
#[tokio::test(flavor = "multi_thread")]
async fn concurrency_bursts_never_exceed_the_cap_through_two_services() {
    const CAP: i64 = 5;
    let redis = Redis::start();
    let services = [Service::redis(&redis), Service::redis(&redis)];
    let clients = [services[0].client().await, services[1].client().await];
    let counter = Arc::new(unique("burst_inflight"));
    let held = Arc::new(AtomicI64::new(0));
    let most = Arc::new(AtomicI64::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..40 {
        let mut client = clients[worker % 2].clone();
        let (counter, held, most, refused) =
            (counter.clone(), held.clone(), most.clone(), refused.clone());
        workers.push(tokio::spawn(async move {
            for round in 0..8 {
                let lease = format!("w{worker}-r{round}");
                let crash = (worker + round) % 7 == 0;
                let lease_ms = if crash { 300 } else { 30_000 };
                let sent = Instant::now();
                let answer = call(
                    &mut client,
                    request(vec![acquire(
                        &counter, "global", CAP as u32, &lease, lease_ms,
                    )]),
                )
                .await;
                if code(&answer) != Code::Ok {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let now_held = held.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now_held, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(3 + (worker as u64 % 5))).await;
                if crash {
                    // No release: the slot is held until the lease ends. Counted
                    // as held until `sent + lease_ms`, no later than Redis ends it.
                    let held = held.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(
                            Duration::from_millis(lease_ms).saturating_sub(sent.elapsed()),
                        )
                        .await;
                        held.fetch_sub(1, Ordering::SeqCst);
                    });
                } else {
                    held.fetch_sub(1, Ordering::SeqCst);
                    let answer = call(
                        &mut client,
                        request(vec![release(&counter, "global", &lease)]),
                    )
                    .await;
                    assert_eq!(code(&answer), Code::Ok);
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("worker");
    }
    let most = most.load(Ordering::SeqCst);
    let refused = refused.load(Ordering::Relaxed);
    println!("at most {most} held of a cap of {CAP}; {refused} acquisitions refused");
    assert!(most <= CAP, "{most} slots held at once, cap {CAP}");
    assert!(
        refused > 0,
        "the cap was never reached: the test proves nothing"
    );
    // Every slot comes back (the crashed leases after 300 ms).
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut client = clients[0].clone();
    for i in 0..CAP {
        let answer = call(
            &mut client,
            request(vec![acquire(
                &counter,
                "global",
                CAP as u32,
                &format!("end{i}"),
                30_000,
            )]),
        )
        .await;
        assert_eq!(code(&answer), Code::Ok, "slot {i}");
    }
}

/// A 50 KB session id or lease id makes a key of the same bounded size, and
/// two long values differing in their last byte count apart.
#[tokio::test(flavor = "multi_thread")]
async fn long_values_make_bounded_keys_and_count_apart() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let session = "s".repeat(50_000);
    let (one, two) = (format!("session:{session}a"), format!("session:{session}b"));
    let counter = unique("per_session");
    let req = || {
        request(vec![
            descriptor(&counter, &one, 1, Hour),
            descriptor(&counter, &two, 1, Hour),
        ])
    };
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);
    let response = call(&mut client, req()).await;
    assert_eq!(
        (response.statuses[0].code, response.statuses[1].code),
        (Code::OverLimit as i32, Code::OverLimit as i32),
        "each had its own count of 1"
    );
    let inflight = unique("inflight");
    let lease = "l".repeat(50_000);
    let answer = call(
        &mut client,
        request(vec![acquire(&inflight, &one, 1, &lease, 30_000)]),
    )
    .await;
    assert_eq!(code(&answer), Code::Ok);
    let keys = redis.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        assert!(key.len() <= 160, "{} bytes: {key}", key.len());
    }
    let lease_set = keys.iter().find(|k| k.contains(":c:")).unwrap();
    let Resp::Array(members) = redis.cmd(&["ZRANGE", lease_set, "0", "-1"]) else {
        panic!()
    };
    assert!(matches!(&members[0], Resp::Bulk(m) if m.len() == 33));
    // The long lease id releases what it took.
    call(&mut client, request(vec![release(&inflight, &one, &lease)])).await;
    assert_eq!(redis.cmd(&["ZCARD", lease_set]), Resp::Int(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_endpoints() {
    let mut redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    assert_eq!(service.get("/healthz").0, 200);
    assert_eq!(service.get("/readyz").0, 200);
    let counter = unique("metered");
    let req = || request(vec![descriptor(&counter, "global", 1, Hour)]);
    call(&mut client, req()).await;
    call(&mut client, req()).await;
    call(&mut client, req()).await;
    let mut invalid = req();
    invalid.domain.clear();
    assert_eq!(
        client.should_rate_limit(invalid).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        service.metric("mcp_ratelimit_checks_total{result=\"ok\"}"),
        1.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_checks_total{result=\"over_limit\"}"),
        2.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_errors_total{reason=\"invalid_argument\"}"),
        1.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_descriptors_total{kind=\"window\",code=\"over_limit\"}"),
        2.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_redis_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_redis_duration_seconds_bucket{le=\"+Inf\"}"),
        3.0
    );

    redis.stop();
    let (status, body) = service.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(service.get("/healthz").0, 200, "alive without Redis");
    assert_eq!(
        client.should_rate_limit(req()).await.unwrap_err().code(),
        tonic::Code::Unavailable
    );
    assert_eq!(
        service.metric("mcp_ratelimit_errors_total{reason=\"redis\"}"),
        1.0
    );
    assert_eq!(
        service.metric("mcp_ratelimit_checks_total{result=\"error\"}"),
        2.0
    );
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.get("/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "not ready again within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_is_unavailable_and_the_service_reconnects() {
    let mut redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let counter = unique("reconnect");
    let req = || request(vec![descriptor(&counter, "global", 100, Minute)]);
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);

    redis.stop();
    let status = client
        .should_rate_limit(req())
        .await
        .expect_err("no answer without Redis");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // A new Redis (empty, no script cached): the service reconnects and
    // loads the script again.
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
    // EVALSHA, once the script is loaded again.
    assert!(redis
        .command_stats("evalsha")
        .is_some_and(|(calls, _)| calls >= 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restarted_between_two_checks_answers_the_second() {
    let mut redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let counter = unique("restarted");
    let req = || request(vec![descriptor(&counter, "global", 100, Minute)]);
    assert_eq!(code(&call(&mut client, req()).await), Code::Ok);
    // Restarted while the service's connection idles: the service sees
    // the dead connection only when it next calls.
    redis.stop();
    redis.restart();
    assert_eq!(
        code(&call(&mut client, req()).await),
        Code::Ok,
        "refused although Redis answers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn started_before_redis_it_answers_unavailable_then_connects() {
    let mut redis = Redis::start();
    redis.stop();
    let service = Service::start(&["--redis".into(), redis.url()]);
    let mut client = service.client().await;
    let req = request(vec![descriptor(&unique("early"), "global", 1, Minute)]);
    let status = client
        .should_rate_limit(req.clone())
        .await
        .expect_err("Redis is down");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(service.get("/readyz").0, 503);

    redis.restart();
    service.wait_for_line("redis connection established");
    assert_eq!(code(&call(&mut client, req).await), Code::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_invalid_arguments() {
    let redis = Redis::start();
    let service = Service::redis(&redis);
    let mut client = service.client().await;
    let mut no_override = descriptor("c", "global", 1, Minute);
    no_override.limit = None;
    let mut counted_release = release("c", "global", "l");
    counted_release.hits_addend = None;
    for (descriptors, message) in [
        (vec![no_override], "no limit override"),
        (vec![counted_release], "hits_addend 0"),
        (
            vec![descriptor("c", "global", 1, RateLimitUnit::Year)],
            "YEAR",
        ),
    ] {
        let status = client
            .should_rate_limit(request(descriptors))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(message), "{}", status.message());
    }
    assert!(redis.keys().is_empty());
}
