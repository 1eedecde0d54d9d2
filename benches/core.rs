//! Micro-benchmarks of the pure core, natively: reading a request body
//! (`mcp::parse`) against the floor of merely skipping over the same JSON, and
//! the whole decision for one request (`gate::inspect_body`) with an in-memory
//! counter store faithful to Envoy's shared data and a fixed clock.
//!
//! `cargo bench --bench core` (short: `make bench` runs it, with the load test).
//! Inputs are the files under `bench/` (written by `bench/gen.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{BenchmarkId, Criterion, Throughput};
    use mcp_policy::decision::Outcome;
    use mcp_policy::gate;
    use mcp_policy::host::Clock;
    use mcp_policy::mcp::{self, Message};
    use mcp_policy::memory::MemorySharedData as MemoryStore;
    use mcp_policy::policy::Policy;
    use mcp_policy::ratelimit::CallerScope;

    const BODY_1K: &[u8] = include_bytes!("../bench/bodies/call-1k.json");
    const BODY_64K: &[u8] = include_bytes!("../bench/bodies/call-64k.json");
    const POLICY: &[u8] = include_bytes!("../bench/policy-bench.json");
    const POLICY_ARGUMENTS: &[u8] = include_bytes!("../bench/policy-bench-arguments.json");
    const POLICY_500: &[u8] = include_bytes!("../bench/policy-500.json");

    /// The bodies call `asyncExecuteCode` (allowed); these names are denied by
    /// rule and rate limited by `bench/policy-bench.json`.
    const ALLOWED: &str = "asyncExecuteCode";
    const DENIED: &str = "deleteWorkspace";
    const LIMITED: &str = "checkCodeExecStatus";

    struct FixedClock;

    impl Clock for FixedClock {
        fn unix_time(&self) -> Duration {
            Duration::from_millis(1_763_719_200_123)
        }
    }

    const CALLER: CallerScope<'static> = CallerScope {
        grant: "bench",
        session: None,
        role: None,
    };

    fn with_tool(body: &[u8], tool: &str) -> Vec<u8> {
        let text = std::str::from_utf8(body).unwrap();
        let from = format!("\"name\":\"{ALLOWED}\"");
        assert_eq!(text.matches(&from).count(), 1, "one tool name in the body");
        text.replacen(&from, &format!("\"name\":\"{tool}\""), 1)
            .into_bytes()
    }

    fn bodies() -> [(&'static str, &'static [u8]); 2] {
        [("1k", BODY_1K), ("64k", BODY_64K)]
    }

    /// Visits every value with `deserialize_any` and keeps nothing: what any
    /// reader that looks at every string (unescaped, UTF-8 checked) and number
    /// (parsed) pays, without building anything. `IgnoredAny` only skips.
    struct VisitAll;

    impl<'de> serde::Deserialize<'de> for VisitAll {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(VisitAll)
        }
    }

    impl<'de> serde::de::Visitor<'de> for VisitAll {
        type Value = VisitAll;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_i64<E>(self, _: i64) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_u64<E>(self, _: u64) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_f64<E>(self, _: f64) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_str<E>(self, _: &str) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_unit<E>(self) -> Result<VisitAll, E> {
            Ok(VisitAll)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<VisitAll, A::Error> {
            while seq.next_element::<VisitAll>()?.is_some() {}
            Ok(VisitAll)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<VisitAll, A::Error> {
            while map.next_key::<VisitAll>()?.is_some() {
                map.next_value::<VisitAll>()?;
            }
            Ok(VisitAll)
        }
    }

    /// Reading the body: the parser against serde_json skipping the same bytes
    /// (the cost of reading the JSON at all), visiting every value, and
    /// building a full `Value`.
    pub fn parse(c: &mut Criterion) {
        let mut group = c.benchmark_group("parse");
        for (size, body) in bodies() {
            assert!(matches!(mcp::parse(body), Ok(Message::ToolCall(_))));
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(
                BenchmarkId::new("serde_ignored_any", size),
                body,
                |b, body| {
                    b.iter(|| {
                        serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).unwrap()
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("serde_visit_all", size),
                body,
                |b, body| b.iter(|| serde_json::from_slice::<VisitAll>(black_box(body)).unwrap()),
            );
            group.bench_with_input(BenchmarkId::new("mcp_parse", size), body, |b, body| {
                b.iter(|| mcp::parse(black_box(body)).unwrap())
            });
            group.bench_with_input(BenchmarkId::new("serde_value", size), body, |b, body| {
                b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
            });
        }
        group.finish();
    }

    /// One request, start to finish: parse, decide (counters in the store),
    /// the reply and the audit record, as `gate::inspect_body` does in the filter.
    pub fn inspect(c: &mut Criterion) {
        let policy = Policy::from_json(POLICY).unwrap();
        let with_arguments = Policy::from_json(POLICY_ARGUMENTS).unwrap();
        let mut group = c.benchmark_group("inspect");
        for (size, body) in bodies() {
            group.throughput(Throughput::Bytes(body.len() as u64));
            let cases = [
                ("allowed", &policy, body.to_vec(), Outcome::Allowed),
                ("denied", &policy, with_tool(body, DENIED), Outcome::Denied),
                (
                    "rate_limited",
                    &policy,
                    with_tool(body, LIMITED),
                    Outcome::RateLimited,
                ),
                (
                    "allowed_argument_rules",
                    &with_arguments,
                    body.to_vec(),
                    Outcome::Allowed,
                ),
            ];
            for (name, policy, body, expected) in cases {
                let store = MemoryStore::default();
                // Use up the limit of 1 (rate_limited), and check the outcome.
                let _ = gate::inspect_body(policy, &store, &FixedClock, CALLER, &body);
                let first = gate::inspect_body(policy, &store, &FixedClock, CALLER, &body);
                assert_eq!(first.outcome(), Some(expected), "{name} {size}");
                group.bench_with_input(BenchmarkId::new(name, size), &body, |b, body| {
                    b.iter(|| {
                        gate::inspect_body(policy, &store, &FixedClock, CALLER, black_box(body))
                    })
                });
            }
        }
        group.finish();
    }

    /// What the filter adds per decision besides `inspect_body`: the audit line
    /// (`log::info!` hands it to Envoy).
    pub fn audit(c: &mut Criterion) {
        let policy = Policy::from_json(POLICY).unwrap();
        let store = MemoryStore::default();
        let inspection = gate::inspect_body(&policy, &store, &FixedClock, CALLER, BODY_1K);
        let record = inspection.audit.unwrap();
        c.bench_function("audit/to_log_line/1k", |b| {
            b.iter(|| black_box(&record).to_log_line())
        });
    }

    /// Reading and compiling a 500-tool policy: the filter's part of
    /// `on_configure` (V8 compiling the module is measured by `make bench` in Envoy).
    pub fn policy_load(c: &mut Criterion) {
        c.bench_function("policy/from_json/500_tools", |b| {
            b.iter(|| Policy::from_json(black_box(POLICY_500)).unwrap())
        });
    }

    /// Hiding entries from a listing answer on its way back: a 200-tool
    /// `tools/list` answer (about 50 KB; one tool hidden) as JSON and as one
    /// event, and a notification on a listing's stream (read, not rewritten).
    pub fn listing(c: &mut Criterion) {
        use mcp_policy::listing::{filter_json_body, SseFilter};
        use mcp_policy::target::Kind;
        let tools: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    r#"{{"name":"tool_{i}","description":"Runs step {i} of the pipeline and reports its state.","inputSchema":{{"type":"object","properties":{{"id":{{"type":"string"}},"limit":{{"type":"integer","maximum":1000}}}}}},"annotations":{{"readOnlyHint":true}}}}"#
                )
            })
            .collect();
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{}]}}}}"#,
            tools.join(",")
        );
        let event = format!("data: {answer}\n\n");
        let notification = br#"data: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":50,"total":100,"message":"halfway"}}

"#;
        let shows = |_: Kind, name: &str| name != "tool_100";
        let mut group = c.benchmark_group("listing");
        group.throughput(Throughput::Bytes(answer.len() as u64));
        group.bench_function("json_body/200_tools", |b| {
            b.iter(|| filter_json_body(black_box(answer.as_bytes()), &shows))
        });
        group.bench_function("event/200_tools", |b| {
            b.iter(|| SseFilter::new(Vec::new()).push(black_box(event.as_bytes()), true, &shows))
        });
        group.throughput(Throughput::Bytes(notification.len() as u64));
        group.bench_function("event/notification", |b| {
            b.iter(|| SseFilter::new(Vec::new()).push(black_box(notification), true, &shows))
        });
        group.finish();
    }

    pub fn config() -> Criterion {
        // Short: `make bench` runs the whole suite in about a minute.
        Criterion::default()
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    }
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_group! {
    name = benches;
    config = native::config();
    targets = native::parse, native::inspect, native::audit, native::policy_load, native::listing
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(benches);

#[cfg(target_arch = "wasm32")]
fn main() {}
