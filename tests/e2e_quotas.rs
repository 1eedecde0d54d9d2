//! End to end, the quota kinds of issue 14 through a real Envoy (two
//! workers, so shared data is what holds the counts): caps on calls in
//! flight, counted at a slow upstream by the calls it is working on, under
//! bursts where calls end every way a call can end (answered, reset by the
//! server, abandoned by the caller); budgets spent by costs; counters per
//! argument value; roles. Then the same kinds fleet-wide: two Envoy
//! replicas, two processes of the rate-limit service and a real Redis.
//!
//! The fleet tests need `redis-server` on PATH and the service binary in
//! `$MCP_RATELIMIT_SERVICE` (`make test` builds and installs both).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::envoy::{Envoy, EnvoyOptions};
use support::fleet::{config_with_service, global_window, start_redis, RateLimitService};
use support::inflight::{Ending, InflightUpstream};

/// What a caller got.
#[derive(Debug)]
enum Got {
    /// A result from the server.
    Passed,
    /// A JSON-RPC error from the gate.
    Error(Value),
    /// An HTTP answer that is not JSON-RPC (Envoy's 503 for a reset).
    Http(u16),
    /// The caller gave up waiting and went away.
    Abandoned,
}

fn call_body(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
        .to_string()
}

/// One call on a connection of its own; `patience`: how long the caller
/// waits before going away (dropping the request closes its connection).
async fn call(url: &str, grant: &str, tool: &str, arguments: Value, patience: Duration) -> Got {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-agent-id", grant)
        .body(call_body(1, tool, arguments))
        .send();
    let exchange = async {
        let response = request.await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(reply) if reply.get("result").is_some() => Got::Passed,
            Ok(reply) if reply.get("error").is_some() => Got::Error(reply["error"].clone()),
            _ => Got::Http(status),
        }
    };
    match tokio::time::timeout(patience, exchange).await {
        Ok(got) => got,
        Err(_) => Got::Abandoned,
    }
}

const PATIENT: Duration = Duration::from_secs(30);

fn passed(got: &Got) -> bool {
    matches!(got, Got::Passed)
}

/// Refused by a limit (-31002), not by anything else that is not a result
/// (a denial, the gate failing closed, Envoy's 503, a caller who gave up).
fn refused_by_limit(got: &Got) -> bool {
    matches!(got, Got::Error(error) if error["code"] == -31002)
}

/// Waits until Envoy has ended `count` decided streams (the filter writes
/// an audit line when each ends, after it has given back its slots).
async fn wait_for_stream_ends(envoy: &Envoy, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ended = envoy.log().matches(mcp_policy::audit::AUDIT_PREFIX).count();
        if ended >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ended} of {count} streams ended:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(policy: &str, upstream: &InflightUpstream) -> Envoy {
    Envoy::start(EnvoyOptions {
        workers: 2,
        ..EnvoyOptions::new(policy, upstream.port)
    })
    .await
}

/// The refusal of a full cap: its counter and cap, no retry guess.
fn assert_cap_refusal(error: &Value, cap: u64) {
    assert_eq!(error["code"], -31002, "{error}");
    assert_eq!(error["data"]["counter"], "exec_inflight", "{error}");
    assert_eq!(error["data"]["concurrent"], cap, "{error}");
    assert!(
        error["data"].get("retry_after_seconds").is_none(),
        "{error}"
    );
}

// ---- Concurrency caps, local ----

const CAP: &str = r#"{
  "version": "1", "default": "deny",
  "identity": { "header": "x-agent-id" },
  "tools": {
    "asyncExecuteCode": { "limits": [{ "counter": "exec_inflight", "concurrent": 3, "scope": "grant", "lease_seconds": 300 }] }
  }
}"#;

/// Callers that retry on a full cap until each has had one call: the
/// upstream never works on more than 3 at once, and reaches 3. (Every call
/// ends with an answer here: the upstream stops counting a call before its
/// answer leaves, so before the filter gives the slot back.)
#[tokio::test]
async fn a_cap_is_never_exceeded_by_callers_that_retry() {
    let upstream = InflightUpstream::answering_after(Duration::from_millis(120)).await;
    let envoy = start(CAP, &upstream).await;
    let url = envoy.mcp_url();
    let mut refusals = 0;
    for round in 0..3 {
        let callers = (0..10).map(|_| {
            let url = url.clone();
            async move {
                let mut refused = 0;
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "no slot in 30 s: slots are not coming back"
                    );
                    match call(&url, "alice", "asyncExecuteCode", json!({}), PATIENT).await {
                        Got::Passed => return refused,
                        Got::Error(error) => {
                            assert_cap_refusal(&error, 3);
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(15)).await;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        });
        refusals += futures::future::join_all(callers)
            .await
            .iter()
            .sum::<usize>();
        assert_eq!(upstream.arrived(), (round + 1) * 10);
        assert!(
            upstream.most() <= 3,
            "round {round}: {} in flight at once",
            upstream.most()
        );
    }
    assert_eq!(upstream.most(), 3, "the cap was never reached");
    assert!(refusals > 0);
    // Another grant was never limited by alice's calls.
    assert!(passed(
        &call(&url, "bob", "asyncExecuteCode", json!({}), PATIENT).await
    ));
}

/// Bursts of 8 calls against a cap of 3, where the server answers one of
/// the 3 calls it gets, resets another and never answers the third (its
/// caller gives up): exactly 3 reach the upstream in every round, which
/// they can only if every way of ending gave its slot back.
#[tokio::test]
async fn every_way_a_call_ends_gives_its_slot_back_under_bursts() {
    let upstream = InflightUpstream::start(|index, _| {
        let ending = [Ending::Answer, Ending::Reset, Ending::Hang][index % 3];
        (ending, Duration::from_millis(150))
    })
    .await;
    let envoy = start(CAP, &upstream).await;
    let url = envoy.mcp_url();
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let before = upstream.arrived();
        let burst = (0..8).map(|_| {
            call(
                &url,
                "alice",
                "asyncExecuteCode",
                json!({}),
                Duration::from_millis(1_500),
            )
        });
        let got = futures::future::join_all(burst).await;
        let refused: Vec<&Value> = got
            .iter()
            .filter_map(|got| match got {
                Got::Error(error) => Some(error),
                _ => None,
            })
            .collect();
        for error in &refused {
            assert_cap_refusal(error, 3);
        }
        assert_eq!(
            (upstream.arrived() - before, refused.len()),
            (3, 5),
            "round {round}: {got:?}"
        );
        assert_eq!(
            got.iter().filter(|got| passed(got)).count(),
            1,
            "round {round}: {got:?}"
        );
        assert!(
            got.iter().any(|got| matches!(got, Got::Http(503))),
            "round {round}: {got:?}"
        );
        assert!(
            got.iter().any(|got| matches!(got, Got::Abandoned)),
            "round {round}: {got:?}"
        );
        // Settle: the upstream has dropped every call, Envoy has ended
        // every stream.
        upstream.wait_idle().await;
        wait_for_stream_ends(&envoy, (round + 1) * 8).await;
    }
    assert!(
        upstream.most() <= 3,
        "{} in flight at once",
        upstream.most()
    );
    let counts = &upstream.counts;
    use support::inflight::Counts;
    assert_eq!(
        (
            Counts::get(&counts.answered),
            Counts::get(&counts.reset),
            Counts::get(&counts.abandoned)
        ),
        (ROUNDS, ROUNDS, ROUNDS)
    );
}

// ---- Costs, per-argument counters, roles, local ----

const BUDGETS: &str = r#"{
  "version": "1", "default": "deny",
  "identity": { "header": "x-agent-id" },
  "tools": {
    "exportRows": { "limits": [{ "counter": "rows", "window": "day", "max": 100, "scope": "grant", "cost_from": "args.rows" }] },
    "generateImage": { "limits": [{ "counter": "spend_cents", "window": "day", "max": 100, "scope": "grant", "cost": 40 }] },
    "mergePullRequest": { "limits": [{ "counter": "merges", "window": "hour", "max": 2, "scope": "grant", "per": "args.repo" }] }
  },
  "roles": {
    "engineer": { "tools": {
      "deploy": { "limits": [{ "counter": "deploys", "window": "hour", "max": 3, "scope": "role" }] }
    } }
  },
  "grant_roles": { "alice": "engineer", "bob": "engineer" }
}"#;

#[tokio::test]
async fn costs_spend_budgets_and_refusals_say_what_a_call_costs() {
    let upstream = InflightUpstream::answering_after(Duration::ZERO).await;
    let envoy = start(BUDGETS, &upstream).await;
    let url = envoy.mcp_url();
    let export = |rows: Value| call(&url, "carol", "exportRows", json!({"rows": rows}), PATIENT);
    assert!(passed(&export(json!(60)).await));
    let Got::Error(over) = export(json!(50)).await else {
        panic!("50 more rows than the budget passed")
    };
    assert_eq!(
        (&over["code"], &over["data"]["cost"], &over["data"]["max"]),
        (&json!(-31002), &json!(50), &json!(100)),
        "{over}"
    );
    assert!(passed(&export(json!(40)).await));
    assert!(refused_by_limit(&export(json!(1)).await));
    // A cost that cannot be read refuses the call as invalid params.
    for bad in [json!("10"), json!(-1), json!(1.5), Value::Null] {
        let Got::Error(error) = export(bad.clone()).await else {
            panic!("{bad} passed")
        };
        assert_eq!(error["code"], -32602, "{bad}: {error}");
    }
    // A fixed cost: 40 cents an image, 100 a day: two images.
    let image = || call(&url, "carol", "generateImage", json!({}), PATIENT);
    assert!(passed(&image().await));
    assert!(passed(&image().await));
    assert!(refused_by_limit(&image().await));
    let bodies = upstream.bodies();
    let names: Vec<&str> = bodies
        .iter()
        .filter_map(|body| body["params"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["exportRows", "exportRows", "generateImage", "generateImage"]
    );
    // The audit lines say what each counted call cost.
    wait_for_stream_ends(&envoy, 11).await;
    let costs: Vec<Value> = envoy
        .audit_records()
        .iter()
        .filter(|record| record["decision"] == "allowed")
        .map(|record| record["costs"].clone())
        .collect();
    assert_eq!(
        costs,
        [
            json!([{"counter": "rows", "cost": 60}]),
            json!([{"counter": "rows", "cost": 40}]),
            json!([{"counter": "spend_cents", "cost": 40}]),
            json!([{"counter": "spend_cents", "cost": 40}]),
        ]
    );
}

#[tokio::test]
async fn per_argument_counters_and_roles_count_as_written() {
    let upstream = InflightUpstream::answering_after(Duration::ZERO).await;
    let envoy = start(BUDGETS, &upstream).await;
    let url = envoy.mcp_url();
    let merge = |grant: &'static str, repo: String| {
        let url = url.clone();
        async move {
            call(
                &url,
                grant,
                "mergePullRequest",
                json!({"repo": repo}),
                PATIENT,
            )
            .await
        }
    };
    assert!(passed(&merge("carol", "acme/web".into()).await));
    assert!(passed(&merge("carol", "acme/web".into()).await));
    assert!(refused_by_limit(&merge("carol", "acme/web".into()).await));
    assert!(passed(&merge("carol", "acme/api".into()).await));
    assert!(passed(&merge("dave", "acme/web".into()).await));
    // A 20 KB repository name counts like any other (its key is a digest).
    let long = format!("acme/{}", "r".repeat(20_000));
    assert!(passed(&merge("carol", long.clone()).await));
    assert!(passed(&merge("carol", long.clone()).await));
    assert!(refused_by_limit(&merge("carol", long).await));

    // Roles: alice and bob are engineers and share 3 deploys an hour;
    // carol has no role, and the top level does not list deploy.
    let deploy = |grant| call(&url, grant, "deploy", json!({}), PATIENT);
    assert!(passed(&deploy("alice").await));
    assert!(passed(&deploy("bob").await));
    assert!(passed(&deploy("alice").await));
    let Got::Error(full) = deploy("bob").await else {
        panic!("a fourth deploy passed")
    };
    assert_eq!(
        full["data"]["rule"], "/roles/engineer/tools/deploy/limits/0",
        "{full}"
    );
    let Got::Error(denied) = deploy("carol").await else {
        panic!("carol deployed")
    };
    assert_eq!(denied["code"], -31001, "{denied}");
}

// ---- The same kinds fleet-wide ----

const FLEET: &str = r#"{
  "version": "1", "default": "deny",
  "identity": { "header": "x-agent-id" },
  "rate_limit_service": { "cluster": "ratelimit", "timeout_ms": 500 },
  "tools": {
    "asyncExecuteCode": { "limits": [{ "counter": "exec_inflight", "concurrent": 3, "scope": "grant", "lease_seconds": 300, "store": "global" }] },
    "exportRows": { "limits": [{ "counter": "rows", "window": "WINDOW", "max": 100, "scope": "grant", "cost_from": "args.rows", "store": "global" }] },
    "mergePullRequest": { "limits": [{ "counter": "merges", "window": "WINDOW", "max": 2, "scope": "grant", "per": "args.repo", "store": "global" }] }
  },
  "roles": {
    "engineer": { "tools": {
      "deploy": { "limits": [{ "counter": "deploys", "window": "WINDOW", "max": 3, "scope": "role", "store": "global" }] }
    } }
  },
  "grant_roles": { "alice": "engineer", "bob": "engineer" }
}"#;

/// Two Envoy replicas, each spreading its checks over two service
/// processes on one Redis, in front of one upstream.
struct Fleet {
    _redis: support::fleet::Process,
    services: [RateLimitService; 2],
    replicas: [Envoy; 2],
    upstream: InflightUpstream,
}

impl Fleet {
    async fn start(upstream: InflightUpstream) -> Fleet {
        let (redis, redis_port) = start_redis();
        let services = [
            RateLimitService::start(redis_port),
            RateLimitService::start(redis_port),
        ];
        let service_ports = [services[0].grpc_port, services[1].grpc_port];
        let policy = FLEET.replace("WINDOW", global_window());
        let upstream_port = upstream.port;
        let replica = || {
            let policy = policy.clone();
            Envoy::start_with_config(
                move |port, admin| {
                    config_with_service(port, admin, upstream_port, &service_ports, &policy)
                },
                2,
            )
        };
        let replicas = [replica().await, replica().await];
        Fleet {
            _redis: redis,
            services,
            replicas,
            upstream,
        }
    }

    fn url(&self, index: usize) -> String {
        self.replicas[index % 2].mcp_url()
    }
}

/// The bursts of the local test, spread over two replicas: exactly 3 reach
/// the upstream in every round, so every exchange's release reached the
/// service (a lost release holds its slot for the 300 s lease, and the next
/// round would get fewer through).
#[tokio::test]
async fn a_global_cap_holds_across_replicas_and_every_ending_releases_its_slot() {
    let upstream = InflightUpstream::start(|index, _| {
        let ending = [Ending::Answer, Ending::Reset, Ending::Hang][index % 3];
        (ending, Duration::from_millis(150))
    })
    .await;
    let fleet = Fleet::start(upstream).await;
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let before = fleet.upstream.arrived();
        let burst = (0..8).map(|i| {
            let url = fleet.url(i);
            async move {
                call(
                    &url,
                    "alice",
                    "asyncExecuteCode",
                    json!({}),
                    Duration::from_millis(1_500),
                )
                .await
            }
        });
        let got = futures::future::join_all(burst).await;
        let refused: Vec<&Value> = got
            .iter()
            .filter_map(|got| match got {
                Got::Error(error) => Some(error),
                _ => None,
            })
            .collect();
        for error in &refused {
            assert_cap_refusal(error, 3);
        }
        assert_eq!(
            (fleet.upstream.arrived() - before, refused.len()),
            (3, 5),
            "round {round}: {got:?}"
        );
        fleet.upstream.wait_idle().await;
        // Both replicas ended their streams (and sent their releases).
        let ended = |envoy: &Envoy| envoy.log().matches(mcp_policy::audit::AUDIT_PREFIX).count();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ended(&fleet.replicas[0]) + ended(&fleet.replicas[1]) < (round + 1) * 8 {
            assert!(Instant::now() < deadline, "streams did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The releases are in flight to the service; give them a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        fleet.upstream.most() <= 3,
        "{} in flight at once",
        fleet.upstream.most()
    );
    // Every forwarded call's exchange released its slot, from the stream's
    // end (on_log): one release descriptor each at the services; refused
    // calls took nothing and released nothing.
    let released = fleet.services[0].descriptors("release").await
        + fleet.services[1].descriptors("release").await;
    assert_eq!(released, 3 * ROUNDS as u64);
    // Another grant has a cap of its own.
    assert!(passed(
        &call(
            &fleet.url(1),
            "bob",
            "asyncExecuteCode",
            json!({}),
            Duration::from_secs(5)
        )
        .await
    ));
}

#[tokio::test]
async fn global_costs_per_argument_counters_and_roles_count_across_replicas() {
    let fleet = Fleet::start(InflightUpstream::answering_after(Duration::ZERO).await).await;
    let url = |i| fleet.url(i);
    // A budget of 100 rows spent from both replicas.
    let export = |i, rows: Value| {
        let url = url(i);
        async move { call(&url, "carol", "exportRows", json!({"rows": rows}), PATIENT).await }
    };
    assert!(passed(&export(0, json!(60)).await));
    let Got::Error(over) = export(1, json!(50)).await else {
        panic!("over budget passed")
    };
    assert_eq!(
        (&over["code"], &over["data"]["cost"], &over["data"]["rule"]),
        (
            &json!(-31002),
            &json!(50),
            &json!("/tools/exportRows/limits/0")
        ),
        "{over}"
    );
    assert!((1..=86_400).contains(&over["data"]["retry_after_seconds"].as_u64().unwrap()));
    assert!(passed(&export(1, json!(40)).await));
    assert!(refused_by_limit(&export(0, json!(1)).await));
    // A cost of 0 checks and passes.
    assert!(passed(&export(0, json!(0)).await));

    // Per repository, twice per window, across replicas.
    let merge = |i, grant: &'static str, repo: &'static str| {
        let url = url(i);
        async move {
            call(
                &url,
                grant,
                "mergePullRequest",
                json!({"repo": repo}),
                PATIENT,
            )
            .await
        }
    };
    assert!(passed(&merge(0, "carol", "acme/web").await));
    assert!(passed(&merge(1, "carol", "acme/web").await));
    assert!(refused_by_limit(&merge(0, "carol", "acme/web").await));
    assert!(passed(&merge(1, "carol", "acme/api").await));
    assert!(passed(&merge(0, "dave", "acme/web").await));

    // Engineers share 3 deploys, whichever replica they use.
    let deploy = |i, grant: &'static str| {
        let url = url(i);
        async move { call(&url, grant, "deploy", json!({}), PATIENT).await }
    };
    assert!(passed(&deploy(0, "alice").await));
    assert!(passed(&deploy(1, "bob").await));
    assert!(passed(&deploy(1, "alice").await));
    assert!(refused_by_limit(&deploy(0, "bob").await));

    let names: Vec<String> = fleet
        .upstream
        .bodies()
        .iter()
        .filter_map(|body| body["params"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        names,
        [
            "exportRows",
            "exportRows",
            "exportRows",
            "mergePullRequest",
            "mergePullRequest",
            "mergePullRequest",
            "mergePullRequest",
            "deploy",
            "deploy",
            "deploy"
        ]
    );
}
