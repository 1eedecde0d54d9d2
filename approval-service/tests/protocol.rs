//! The filter protocol against the real binary, in memory and on a real
//! redis-server (two service processes sharing it where agreement matters).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{call, Backend, Redis, Service, ALICE, BOB};
use serde_json::{json, Value};

/// Pending is create-or-get; approved answers exactly once; the next check
/// of the same call is a new pending approval.
async fn approve_once(service: &Service, other: &Service) {
    let call = call("agent-1", json!({ "code": "import os\nos.system('id')" }));
    let (status, first) = service.check(&call).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(first["created"], true);
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["url"], service.page_url(&format!("/approvals/{id}")));
    assert!(first["retry_after_seconds"].as_u64().unwrap() >= 1);

    let (_, again) = other.check(&call).await;
    assert_eq!(
        (again["status"].as_str(), again["id"].as_str()),
        (Some("pending"), Some(id.as_str()))
    );
    assert_eq!(again["created"], false);

    // Other arguments: another approval.
    let changed = common::call("agent-1", json!({ "code": "import os\nos.system('id') " }));
    let (_, other_call) = service.check(&changed).await;
    assert_eq!(other_call["status"], "pending");
    assert_ne!(other_call["id"], id.as_str());

    let (status, decided) = other.approve(BOB, &id).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");

    let (_, approved) = service.check(&call).await;
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(approved["id"], id.as_str());
    assert_eq!(approved["approver"], "bob");
    let (_, replay) = other.check(&call).await;
    assert_eq!(
        replay["status"], "pending",
        "an approval is used once: {replay}"
    );
    assert_eq!(replay["created"], true);
    assert_ne!(replay["id"], id.as_str());

    // The used approval can no longer be decided, and says it was used.
    let (status, _) = service.approve(BOB, &id).await;
    assert_eq!(status, 409);
    let (_, shown) = service
        .api(BOB, "GET", &format!("/api/v1/approvals/{id}"), None)
        .await;
    assert_eq!(shown["status"], "used");
    assert!(shown["used_at"].is_string());
}

#[tokio::test]
async fn approved_exactly_once_in_memory() {
    let service = Service::start(&Backend::Memory, &[]);
    approve_once(&service, &service).await;
}

#[tokio::test]
async fn approved_exactly_once_across_two_services_on_redis() {
    let redis = Redis::start();
    let a = Service::start(&Backend::Redis(&redis), &[]);
    let b = Service::start(&Backend::Redis(&redis), &[]);
    approve_once(&a, &b).await;
}

#[tokio::test]
async fn concurrent_checks_from_two_services_use_an_approval_once() {
    let redis = Redis::start();
    let a = Service::start(&Backend::Redis(&redis), &[]);
    let b = Service::start(&Backend::Redis(&redis), &[]);
    for round in 0..3 {
        let call = call("agent-race", json!({ "round": round }));
        let (_, first) = a.check(&call).await;
        let id = first["id"].as_str().unwrap().to_owned();
        assert_eq!(b.approve(BOB, &id).await.0, 200);
        let checks = (0..40).map(|i| {
            let service = if i % 2 == 0 { &a } else { &b };
            let call = call.clone();
            async move { service.check(&call).await }
        });
        let answers = futures::future::join_all(checks).await;
        let approved = answers
            .iter()
            .filter(|(_, a)| a["status"] == "approved")
            .count();
        let pending: Vec<&Value> = answers
            .iter()
            .filter(|(_, a)| a["status"] == "pending")
            .map(|(_, a)| &a["id"])
            .collect();
        assert_eq!(approved, 1, "round {round}: {answers:?}");
        assert_eq!(pending.len(), 39);
        // Every later check sees one and the same new pending approval.
        assert!(pending.iter().all(|id| *id == pending[0]) && pending[0] != id.as_str());
    }
}

/// A denial and its reason reach every check of the call until it lapses.
async fn denial_reaches_the_check(service: &Service) {
    let call = call("agent-2", json!({ "code": "import socket" }));
    let (_, first) = service.check(&call).await;
    let id = first["id"].as_str().unwrap();
    // A denial needs a reason.
    assert_eq!(service.deny(BOB, id, "  ").await.0, 400);
    let (status, denied) = service.deny(BOB, id, "no network access from agents").await;
    assert_eq!(status, 200, "{denied}");
    for _ in 0..2 {
        let (_, answer) = service.check(&call).await;
        assert_eq!(answer["status"], "denied");
        assert_eq!(answer["reason"], "no network access from agents");
        assert_eq!(answer["approver"], "bob");
        assert_eq!(answer["id"], id);
    }
    assert_eq!(service.approve(BOB, id).await.0, 409, "a denial is final");
}

#[tokio::test]
async fn denial_reaches_the_check_in_memory() {
    denial_reaches_the_check(&Service::start(&Backend::Memory, &[])).await;
}

#[tokio::test]
async fn denial_reaches_the_check_on_redis() {
    let redis = Redis::start();
    denial_reaches_the_check(&Service::start(&Backend::Redis(&redis), &[])).await;
}

/// A pending approval lapses after its ttl: not decidable, in the history,
/// and the call asks anew.
async fn pending_expires(service: &Service) {
    let mut call = call("agent-3", json!({ "code": "x" }));
    call.ttl_seconds = 1;
    let (_, first) = service.check(&call).await;
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["retry_after_seconds"], 1, "capped at the time left");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, _) = service.approve(BOB, &id).await;
    assert_eq!(status, 409, "expired approvals cannot be approved");
    let (_, listed) = service.api(BOB, "GET", "/api/v1/approvals", None).await;
    assert!(!listed["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id.as_str()));
    let (_, history) = service.api(BOB, "GET", "/api/v1/history", None).await;
    let entry = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id.as_str())
        .expect("expired in the history");
    assert_eq!(entry["event"], "expired");
    let (_, again) = service.check(&call).await;
    assert_eq!(again["status"], "pending");
    assert_eq!(again["created"], true);
    assert_ne!(again["id"], id.as_str());
}

#[tokio::test]
async fn pending_expires_in_memory() {
    pending_expires(&Service::start(&Backend::Memory, &[])).await;
}

#[tokio::test]
async fn pending_expires_on_redis() {
    let redis = Redis::start();
    pending_expires(&Service::start(&Backend::Redis(&redis), &[])).await;
}

/// More approvals lapse at once than prunes reach (Redis prunes 100 a call;
/// an approval prunes twice): the last of them still cannot be approved.
async fn a_flood_of_expiries_leaves_none_approvable(service: &Service) {
    let mut last = None;
    for index in 0..350 {
        let mut call = call(&format!("agent-flood-{index}"), json!({ "code": index }));
        call.ttl_seconds = 1;
        let (status, answer) = service.check(&call).await;
        assert_eq!(
            (status, &answer["status"]),
            (200, &json!("pending")),
            "{answer}"
        );
        last = Some((call, answer["id"].as_str().unwrap().to_owned()));
    }
    let (call, id) = last.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (status, answer) = service.approve(BOB, &id).await;
    assert_eq!(
        status, 409,
        "expired approvals cannot be approved: {answer}"
    );
    let (_, again) = service.check(&call).await;
    assert_eq!(again["status"], "pending", "{again}");
    assert_ne!(again["id"], id.as_str());
}

#[tokio::test]
async fn a_flood_of_expiries_leaves_none_approvable_in_memory() {
    a_flood_of_expiries_leaves_none_approvable(&Service::start(&Backend::Memory, &[])).await;
}

#[tokio::test]
async fn a_flood_of_expiries_leaves_none_approvable_on_redis() {
    let redis = Redis::start();
    a_flood_of_expiries_leaves_none_approvable(&Service::start(&Backend::Redis(&redis), &[])).await;
}

#[tokio::test]
async fn bad_checks_are_refused_and_counted() {
    let service = Service::start(&Backend::Memory, &["--max-check-bytes", "4096"]);
    let call = call("agent-4", json!({ "code": "x" }));
    let mut body = common::check_body(&call);
    body["arguments"]["code"] = json!("y");
    let (status, answer) = service.check_raw(body.to_string()).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "digest_mismatch");
    assert!(answer["expected"].as_str().unwrap().starts_with("sha256:"));

    let big = common::call("agent-4", json!({ "code": "x".repeat(5000) }));
    let (status, answer) = service.check(&big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "too_large");

    let (status, answer) = service.check_raw("{\"digest\":".into()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let duplicate = common::check_body(&call).to_string().replace(
        r#""arguments":{"code":"x"}"#,
        r#""arguments":{"code":"x","code":"rm -rf /"}"#,
    );
    assert!(duplicate.contains("rm -rf"));
    let (status, answer) = service.check_raw(duplicate).await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key"),
        "{answer}"
    );

    assert_eq!(
        service
            .metric("mcp_approval_checks_total{result=\"invalid\"}")
            .await,
        Some(4.0)
    );
    assert_eq!(service.metric("mcp_approval_pending").await, Some(0.0));
}

#[tokio::test]
async fn pending_approvals_are_bounded_on_redis() {
    let redis = Redis::start();
    let service = Service::start(
        &Backend::Redis(&redis),
        &["--max-pending", "3", "--max-pending-per-grant", "2"],
    );
    for code in ["a", "b"] {
        assert_eq!(
            service
                .check(&call("flood", json!({ "code": code })))
                .await
                .0,
            200
        );
    }
    let (status, answer) = service.check(&call("flood", json!({ "code": "c" }))).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (429, Some("too_many_pending"))
    );
    assert_eq!(
        service
            .check(&call("other", json!({ "code": "a" })))
            .await
            .0,
        200
    );
    let (status, _) = service.check(&call("third", json!({ "code": "a" }))).await;
    assert_eq!(status, 429);
    // Known calls are still answered.
    let (status, answer) = service.check(&call("flood", json!({ "code": "a" }))).await;
    assert_eq!((status, answer["created"].as_bool()), (200, Some(false)));
    assert_eq!(
        service
            .metric("mcp_approval_checks_total{result=\"full\"}")
            .await,
        Some(2.0)
    );
    assert_eq!(service.metric("mcp_approval_pending").await, Some(3.0));
}

#[tokio::test]
async fn history_is_bounded_and_newest_first_on_redis() {
    let redis = Redis::start();
    let service = Service::start(&Backend::Redis(&redis), &["--history", "3"]);
    for index in 0..5 {
        let (_, answer) = service.check(&call("agent-5", json!({ "n": index }))).await;
        let id = answer["id"].as_str().unwrap();
        assert_eq!(service.deny(BOB, id, &format!("no {index}")).await.0, 200);
    }
    let (_, history) = service.api(ALICE, "GET", "/api/v1/history", None).await;
    let reasons: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["no 4", "no 3", "no 2"]);
    assert_eq!(redis.command(&["LLEN", "{mcp-approval}:history"]), ":3");
}

#[tokio::test]
async fn redis_down_is_unavailable_fast_and_recovers() {
    let mut redis = Redis::start();
    let service = Service::start(&Backend::Redis(&redis), &[]);
    service.wait_for_line("redis connection established");
    let call = call("agent-6", json!({ "code": "x" }));
    let (_, first) = service.check(&call).await;
    let id = first["id"].as_str().unwrap().to_owned();
    let ready = common::http()
        .get(service.filter_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    redis.stop();
    let started = Instant::now();
    let (status, answer) = service.check(&call).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("unavailable"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let ready = common::http()
        .get(service.filter_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert!(
        service
            .metric("mcp_approval_redis_errors_total")
            .await
            .unwrap()
            >= 2.0
    );
    assert_eq!(
        service
            .metric("mcp_approval_checks_total{result=\"error\"}")
            .await,
        Some(1.0)
    );
    let metrics = service.metrics().await;
    assert!(
        !metrics.contains("mcp_approval_pending "),
        "no gauge without the store"
    );

    // Redis comes back empty (no persistence): the service reconnects by itself.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, answer) = service.check(&call).await;
        if status == 200 {
            assert_eq!(answer["status"], "pending");
            assert_ne!(
                answer["id"],
                id.as_str(),
                "the old state is gone with that Redis"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {status} {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn metrics_and_health() {
    let redis = Redis::start();
    let service = Service::start(&Backend::Redis(&redis), &[]);
    let one = call("agent-7", json!({ "code": "1" }));
    let two = call("agent-7", json!({ "code": "2" }));
    let (_, a) = service.check(&one).await;
    service.check(&one).await;
    let (_, b) = service.check(&two).await;
    assert_eq!(service.metric("mcp_approval_pending").await, Some(2.0));
    service.approve(BOB, a["id"].as_str().unwrap()).await;
    service.deny(BOB, b["id"].as_str().unwrap(), "no").await;
    service.check(&one).await;
    service.check(&two).await;
    for (series, value) in [
        ("mcp_approval_checks_total{result=\"pending\"}", 3.0),
        ("mcp_approval_checks_total{result=\"approved\"}", 1.0),
        ("mcp_approval_checks_total{result=\"denied\"}", 1.0),
        ("mcp_approval_created_total", 2.0),
        ("mcp_approval_pending", 0.0),
        ("mcp_approval_decisions_total{outcome=\"approved\"}", 1.0),
        ("mcp_approval_decisions_total{outcome=\"denied\"}", 1.0),
        ("mcp_approval_redis_errors_total", 0.0),
        ("mcp_approval_check_duration_seconds_count", 5.0),
    ] {
        assert_eq!(service.metric(series).await, Some(value), "{series}");
    }
    for (url, body) in [
        (service.filter_url("/healthz"), "ok\n"),
        (service.filter_url("/readyz"), "ready\n"),
        (service.page_url("/healthz"), "ok\n"),
    ] {
        let response = common::http().get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        assert_eq!(response.text().await.unwrap(), body);
    }
}

#[tokio::test]
async fn the_filter_port_answers_while_redis_is_not_up_yet() {
    let mut redis = Redis::start();
    redis.stop();
    let mut service = Service::start(&Backend::RedisNotYetUp(&redis), &[]);
    let health = common::http()
        .get(service.filter_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = common::http()
        .get(service.filter_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let call = call("agent-8", json!({ "code": "x" }));
    let started = Instant::now();
    let (status, _) = service.check(&call).await;
    assert_eq!(status, 503, "failure_mode's case, answered at once");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The page waits for the signing secret in Redis, then serves.
    redis.restart();
    service.wait_for_page();
    let (status, answer) = service.check(&call).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pending")));
    let (status, _) = service.api(BOB, "GET", "/api/v1/approvals", None).await;
    assert_eq!(status, 200);
}
