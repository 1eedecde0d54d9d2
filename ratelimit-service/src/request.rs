//! From an Envoy `RateLimitRequest` to limitador's terms: one [`Limit`] per
//! limit definition, and the [`Context`] that makes exactly this request's
//! limits apply.
//!
//! A descriptor is `[("counter", NAME), ("scope", VALUE)]` with a limit
//! override `{requests_per_unit, unit}`. Its limit is keyed by its whole
//! definition: window, max, the scope's kind (`grant` of `grant:alice`,
//! `global`) and the counter name. A changed max or window is therefore a
//! different limit with its own counts. The scope value is the limit's
//! variable: each (counter, scope) pair has its own counter in the store.
//!
//! The context holds one map, `limits[0]`, from each of the request's limit
//! keys to its scope value. A registered limit applies when its key is in that
//! map (its condition), and its counter is qualified by the value there (its
//! variable); limits registered by other requests do not apply.

use std::collections::HashMap;
use std::fmt;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use limitador::limit::{Context, Expression, Limit, Predicate};

/// The name the context binds the request's limits to.
const BINDING: &str = "limits";

/// A request the service refuses (answered with gRPC `INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One limit a request counts against, with the scope value it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The limit's definition as one string; unique per (window, max, scope kind, counter).
    pub key: String,
    pub counter: String,
    pub scope: String,
    pub max: u32,
    /// `envoy.type.v3.RateLimitUnit` as sent (also the numbering of the response's unit).
    pub unit: i32,
    pub seconds: u64,
}

impl Wanted {
    /// The limitador limit of this definition in `namespace`.
    pub fn limit(&self, namespace: &str) -> Result<Limit, Invalid> {
        let key = cel_string(&self.key);
        let condition = Predicate::parse(format!("{key} in {BINDING}[0]"))
            .map_err(|e| Invalid(format!("counter {:?}: {e}", self.counter)))?;
        let variable = Expression::parse(format!("{BINDING}[0][{key}]"))
            .map_err(|e| Invalid(format!("counter {:?}: {e}", self.counter)))?;
        let mut limit = Limit::new(
            namespace,
            u64::from(self.max),
            self.seconds,
            [condition],
            [variable],
        );
        limit.set_name(self.key.clone());
        Ok(limit)
    }
}

/// A request in limitador's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub namespace: String,
    /// Units taken from each counter when every one has room.
    pub hits: u64,
    /// The distinct limits, in order of first appearance.
    pub wanted: Vec<Wanted>,
    /// For each descriptor of the request, its index in `wanted`.
    pub descriptor_limit: Vec<usize>,
}

impl Plan {
    pub fn from_request(request: &RateLimitRequest) -> Result<Plan, Invalid> {
        if request.domain.is_empty() {
            return Err(Invalid("domain is empty".into()));
        }
        if request.descriptors.is_empty() {
            return Err(Invalid("no descriptors".into()));
        }
        let request_hits = if request.hits_addend == 0 {
            1
        } else {
            u64::from(request.hits_addend)
        };
        let mut hits = None;
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut descriptor_limit = Vec::with_capacity(request.descriptors.len());
        for (index, descriptor) in request.descriptors.iter().enumerate() {
            let at = |message: String| Invalid(format!("descriptors[{index}]: {message}"));
            let (one, descriptor_hits) = wanted_of(descriptor).map_err(|e| at(e.0))?;
            // limitador takes one delta for all the counters of a check.
            let descriptor_hits = descriptor_hits.unwrap_or(request_hits);
            match hits {
                None => hits = Some(descriptor_hits),
                Some(h) if h != descriptor_hits => {
                    return Err(at(format!(
                        "hits_addend {descriptor_hits} differs from the request's {h}: all descriptors of a request must take the same number of hits"
                    )))
                }
                Some(_) => {}
            }
            match by_key.get(&one.key) {
                // The same counter for the same caller twice in one call: one count,
                // as the filter's own limiter does.
                Some(&existing) if wanted[existing].scope == one.scope => {
                    descriptor_limit.push(existing)
                }
                Some(&existing) => {
                    return Err(at(format!(
                        "counter {:?} with scope {:?} and {:?} in one request: one scope value per counter and scope kind",
                        one.counter, wanted[existing].scope, one.scope
                    )))
                }
                None => {
                    by_key.insert(one.key.clone(), wanted.len());
                    descriptor_limit.push(wanted.len());
                    wanted.push(one);
                }
            }
        }
        Ok(Plan {
            namespace: request.domain.clone(),
            hits: hits.unwrap_or(request_hits),
            wanted,
            descriptor_limit,
        })
    }

    /// The context that makes exactly this plan's limits apply.
    pub fn context(&self) -> Context<'static> {
        let map: HashMap<String, String> = self
            .wanted
            .iter()
            .map(|w| (w.key.clone(), w.scope.clone()))
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding(BINDING.to_string(), vec![map]);
        ctx
    }
}

/// One descriptor's limit, and its own `hits_addend` if it has one.
fn wanted_of(descriptor: &RateLimitDescriptor) -> Result<(Wanted, Option<u64>), Invalid> {
    let mut counter = None;
    let mut scope = None;
    for entry in &descriptor.entries {
        let slot = match entry.key.as_str() {
            "counter" => &mut counter,
            "scope" => &mut scope,
            other => {
                return Err(Invalid(format!(
                    "unknown entry key {other:?} (expected \"counter\" and \"scope\")"
                )))
            }
        };
        if slot.is_some() {
            return Err(Invalid(format!("entry {:?} given twice", entry.key)));
        }
        if entry.value.is_empty() {
            return Err(Invalid(format!("entry {:?} has an empty value", entry.key)));
        }
        *slot = Some(entry.value.clone());
    }
    let counter = counter.ok_or_else(|| Invalid("no \"counter\" entry".into()))?;
    let scope = scope.ok_or_else(|| Invalid("no \"scope\" entry".into()))?;
    let limit = descriptor.limit.ok_or_else(|| {
        Invalid(format!(
            "counter {counter:?} has no limit override: the limit comes from the request (policy.json)"
        ))
    })?;
    let seconds = unit_seconds(limit.unit).ok_or_else(|| {
        Invalid(format!(
            "counter {counter:?}: unit {} not supported (SECOND, MINUTE, HOUR or DAY)",
            RateLimitUnit::try_from(limit.unit)
                .map(|u| u.as_str_name().to_string())
                .unwrap_or_else(|_| limit.unit.to_string())
        ))
    })?;
    if descriptor.is_negative_hits {
        return Err(Invalid(format!(
            "counter {counter:?}: is_negative_hits (refunds) is not supported by limitador"
        )));
    }
    let kind = scope.split(':').next().unwrap_or_default();
    let key = format!(
        "{seconds}s/{}/{}:{kind}/{counter}",
        limit.requests_per_unit,
        kind.len()
    );
    let hits = descriptor.hits_addend.map(|h| h.value);
    Ok((
        Wanted {
            key,
            counter,
            scope,
            max: limit.requests_per_unit,
            unit: limit.unit,
            seconds,
        },
        hits,
    ))
}

/// The window of a unit the policy's windows map to.
pub fn unit_seconds(unit: i32) -> Option<u64> {
    match RateLimitUnit::try_from(unit).ok()? {
        RateLimitUnit::Second => Some(1),
        RateLimitUnit::Minute => Some(60),
        RateLimitUnit::Hour => Some(3_600),
        RateLimitUnit::Day => Some(86_400),
        _ => None,
    }
}

/// A CEL string literal holding exactly `s`: anything beyond a plain set of
/// characters is written as a `\u`/`\U` escape, so no counter name can end
/// the literal or change the expression.
pub fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || "_-./:@+=,".contains(c) {
            out.push(c);
        } else if (c as u32) <= 0xFFFF {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(&format!("\\U{:08x}", c as u32));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    use envoy_types::pb::google::protobuf::UInt64Value;
    use limitador::counter::Counter;

    fn descriptor(
        counter: &str,
        scope: &str,
        max: u32,
        unit: RateLimitUnit,
    ) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "counter".into(),
                    value: counter.into(),
                },
                Entry {
                    key: "scope".into(),
                    value: scope.into(),
                },
            ],
            limit: Some(RateLimitOverride {
                requests_per_unit: max,
                unit: unit as i32,
            }),
            hits_addend: None,
            is_negative_hits: false,
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "mcp-policy".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    /// The scope value limitador resolves for `wanted` in `plan`'s context, if its limit applies.
    fn resolved(plan: &Plan, wanted: &Wanted) -> Option<String> {
        let limit = wanted.limit(&plan.namespace).unwrap();
        let ctx = plan.context();
        if !limit.applies(&ctx) {
            return None;
        }
        let counter = Counter::new(limit, &ctx).unwrap()?;
        counter.set_variables().values().next().cloned()
    }

    #[test]
    fn each_limit_applies_with_its_own_scope_and_no_other() {
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            descriptor("b", "global", 100, RateLimitUnit::Hour),
        ]))
        .unwrap();
        assert_eq!(plan.hits, 1);
        assert_eq!(plan.descriptor_limit, vec![0, 1]);
        assert_eq!(plan.wanted[0].key, "60s/10/5:grant/a");
        assert_eq!(plan.wanted[1].seconds, 3600);
        assert_eq!(
            resolved(&plan, &plan.wanted[0]).as_deref(),
            Some("grant:alice")
        );
        assert_eq!(resolved(&plan, &plan.wanted[1]).as_deref(), Some("global"));

        // A limit of another definition (max changed) does not apply to this request.
        let other = Plan::from_request(&request(vec![descriptor(
            "a",
            "grant:alice",
            11,
            RateLimitUnit::Minute,
        )]))
        .unwrap();
        assert_eq!(resolved(&plan, &other.wanted[0]), None);
        assert_ne!(
            other.wanted[0].limit("mcp-policy").unwrap(),
            plan.wanted[0].limit("mcp-policy").unwrap()
        );
    }

    #[test]
    fn any_counter_name_is_one_literal() {
        for name in [
            "q\"uote",
            "back\\slash",
            "new\nline",
            "' in limits[0] || '",
            "é✓🦀",
            "a b",
        ] {
            let plan = Plan::from_request(&request(vec![descriptor(
                name,
                "session:x\"y",
                1,
                RateLimitUnit::Second,
            )]))
            .unwrap();
            assert_eq!(
                resolved(&plan, &plan.wanted[0]).as_deref(),
                Some("session:x\"y"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn same_counter_and_scope_twice_counts_once() {
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
        ]))
        .unwrap();
        assert_eq!(plan.wanted.len(), 1);
        assert_eq!(plan.descriptor_limit, vec![0, 0]);
    }

    #[test]
    fn same_counter_other_scope_kinds_are_two_limits() {
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            descriptor("a", "global", 10, RateLimitUnit::Minute),
        ]))
        .unwrap();
        assert_eq!(plan.wanted.len(), 2);
        assert_eq!(resolved(&plan, &plan.wanted[1]).as_deref(), Some("global"));
    }

    #[test]
    fn refused_requests() {
        let refused = |r: RateLimitRequest| Plan::from_request(&r).unwrap_err().0;
        let mut no_domain = request(vec![descriptor("a", "global", 1, RateLimitUnit::Second)]);
        no_domain.domain.clear();
        assert!(refused(no_domain).contains("domain"));
        assert!(refused(request(vec![])).contains("no descriptors"));

        let mut no_override = descriptor("a", "global", 1, RateLimitUnit::Second);
        no_override.limit = None;
        assert!(refused(request(vec![no_override])).contains("no limit override"));

        let month = descriptor("a", "global", 1, RateLimitUnit::Month);
        assert!(refused(request(vec![month])).contains("MONTH"));

        let mut extra = descriptor("a", "global", 1, RateLimitUnit::Second);
        extra.entries.push(Entry {
            key: "path".into(),
            value: "/".into(),
        });
        assert!(refused(request(vec![extra])).contains("unknown entry key"));

        let mut missing = descriptor("a", "global", 1, RateLimitUnit::Second);
        missing.entries.pop();
        assert!(refused(request(vec![missing])).contains("no \"scope\""));

        let mut negative = descriptor("a", "global", 1, RateLimitUnit::Second);
        negative.is_negative_hits = true;
        assert!(refused(request(vec![negative])).contains("is_negative_hits"));

        let mut two = descriptor("b", "global", 1, RateLimitUnit::Second);
        two.hits_addend = Some(UInt64Value { value: 2 });
        assert!(refused(request(vec![
            descriptor("a", "global", 1, RateLimitUnit::Second),
            two
        ]))
        .contains("hits_addend"));

        assert!(refused(request(vec![
            descriptor("a", "grant:alice", 1, RateLimitUnit::Second),
            descriptor("a", "grant:bob", 1, RateLimitUnit::Second),
        ]))
        .contains("one scope value"));
    }

    /// What README.md says of Kuadrant's Limitador server, checked against
    /// limitador itself: the server binds a request's descriptors as
    /// `descriptors` (a list of maps, one per descriptor) and matches its
    /// limits file with this library's `Limit::applies` and `Counter::new`.
    #[test]
    fn limitador_server_limit_forms() {
        let descriptor = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let context = |descriptors: Vec<HashMap<String, String>>| {
            let mut ctx = Context::default();
            ctx.list_binding("descriptors".to_string(), descriptors);
            ctx
        };
        let limit = |condition: &str, variable: &str| {
            Limit::new(
                "mcp-policy",
                10,
                60,
                [Predicate::parse(condition).unwrap()],
                [Expression::parse(variable).unwrap()],
            )
        };
        let scope_of = |limit: &Limit, ctx: &Context| {
            if !limit.applies(ctx) {
                return None;
            }
            Counter::new(limit.clone(), ctx)
                .unwrap()
                .and_then(|c| c.set_variables().values().next().cloned())
        };
        // The filter's layout: one descriptor per global limit.
        let two = context(vec![
            descriptor(&[("counter", "all"), ("scope", "global")]),
            descriptor(&[
                ("counter", "asyncexecutecode_rate"),
                ("scope", "grant:alice"),
            ]),
        ]);
        let one = context(vec![descriptor(&[
            ("counter", "asyncexecutecode_rate"),
            ("scope", "grant:bob"),
        ])]);

        // Searching the list never applies: limitador takes the comprehension's
        // `d` for a context variable the request lacks.
        let search = limit(
            "descriptors.exists(d, d.counter == 'asyncexecutecode_rate')",
            "descriptors.filter(d, d.counter == 'asyncexecutecode_rate')[0].scope",
        );
        assert_eq!(scope_of(&search, &two), None);

        // Positional, guarded by the list's size: applies at its index only.
        let at_1 = limit(
            "size(descriptors) > 1 && descriptors[1].counter == 'asyncexecutecode_rate'",
            "descriptors[1].scope",
        );
        assert_eq!(scope_of(&at_1, &two).as_deref(), Some("grant:alice"));
        assert_eq!(scope_of(&at_1, &one), None);
        let at_0 = limit(
            "descriptors[0].counter == 'asyncexecutecode_rate'",
            "descriptors[0].scope",
        );
        assert_eq!(scope_of(&at_0, &one).as_deref(), Some("grant:bob"));
        assert_eq!(scope_of(&at_0, &two), None);
        assert_ne!(at_0, at_1, "two limits: two separate counts of one counter");

        // Unguarded, an index past the request's descriptors panics in `applies`.
        let unguarded = limit(
            "descriptors[1].counter == 'asyncexecutecode_rate'",
            "descriptors[1].scope",
        );
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unguarded.applies(&one)));
        assert!(panicked.is_err());

        // One merged descriptor [(COUNTER, SCOPE), ...]: position-independent.
        let merged = context(vec![descriptor(&[
            ("all", "global"),
            ("asyncexecutecode_rate", "grant:alice"),
        ])]);
        let by_key = limit(
            "'asyncexecutecode_rate' in descriptors[0]",
            "descriptors[0]['asyncexecutecode_rate']",
        );
        assert_eq!(scope_of(&by_key, &merged).as_deref(), Some("grant:alice"));
        let absent = context(vec![descriptor(&[("all", "global")])]);
        assert_eq!(scope_of(&by_key, &absent), None);
    }

    #[test]
    fn hits_addend() {
        let mut r = request(vec![descriptor("a", "global", 5, RateLimitUnit::Second)]);
        r.hits_addend = 3;
        assert_eq!(Plan::from_request(&r).unwrap().hits, 3);
        r.descriptors[0].hits_addend = Some(UInt64Value { value: 2 });
        assert_eq!(Plan::from_request(&r).unwrap().hits, 2);
    }
}
