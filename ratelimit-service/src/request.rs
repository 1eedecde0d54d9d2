//! From an Envoy `RateLimitRequest` to the counters one script call takes
//! (README.md, "Wire contract").
//!
//! A descriptor is one of three kinds, told apart by its entries:
//!
//! | kind | entries | limit override | hits |
//! | --- | --- | --- | --- |
//! | window | `counter`, `scope` | `{max, unit}`, unit SECOND..DAY | descriptor `hits_addend`, else the request's (0 means 1); 0 on the descriptor checks without taking |
//! | acquire | `counter`, `scope`, `lease`, `lease_ms` | `{cap, any unit}` | one slot; `hits_addend` absent or 1 |
//! | release | `counter`, `scope`, `lease`, `release` = `true` | ignored | `hits_addend` = 0 |
//!
//! A request holds windows and acquisitions, or releases only. Descriptors
//! naming the same counter (same key) are one counter: it takes the largest
//! of their hits, checked against the smallest of their maxima.

use std::collections::HashMap;
use std::fmt;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::r#type::v3::RateLimitUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

use crate::keys;

/// Descriptors in one request at most (each is a key the script touches).
pub const MAX_DESCRIPTORS: usize = 64;

/// The longest lease a request may ask for: a day.
pub const MAX_LEASE_MS: u64 = 86_400_000;

/// Hits are capped at this before they reach Redis: any larger number is
/// over every limit (maxima are 32-bit) and stays exact in Lua's doubles.
const HITS_CAP: u64 = 1 << 40;

/// A request the service refuses (answered with gRPC `INVALID_ARGUMENT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the script does with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Take `hits` from a fixed window of `seconds` aligned to the epoch,
    /// if the count stays within `max`.
    Window { seconds: u64, max: u64, hits: u64 },
    /// Hold a slot for `member` until `lease_ms` from now, if fewer than
    /// `cap` other live leases hold one (renews the lease if `member` holds one).
    Acquire {
        cap: u64,
        member: String,
        lease_ms: u64,
    },
    /// Give back `member`'s slot (nothing if it has none).
    Release { member: String },
}

/// One key of the script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub op: Op,
}

/// One descriptor of the request, for its status in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its counter, an index into [`Plan::counters`].
    pub counter: usize,
    pub name: String,
    /// Its own max (or cap), and unit as sent.
    pub max: u32,
    pub unit: i32,
    /// Its own hits (window kind); 1 for acquisitions, 0 for releases.
    pub hits: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Window { seconds: u64 },
    Acquire,
    Release,
}

/// A request as one script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub counters: Vec<Counter>,
    pub descriptors: Vec<Descriptor>,
}

impl Plan {
    pub fn from_request(request: &RateLimitRequest) -> Result<Plan, Invalid> {
        if request.domain.is_empty() {
            return Err(Invalid("domain is empty".into()));
        }
        if request.descriptors.is_empty() {
            return Err(Invalid("no descriptors".into()));
        }
        if request.descriptors.len() > MAX_DESCRIPTORS {
            return Err(Invalid(format!(
                "{} descriptors: at most {MAX_DESCRIPTORS} in one request",
                request.descriptors.len()
            )));
        }
        let request_hits = u64::from(request.hits_addend.max(1));
        let mut counters: Vec<Counter> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        let mut descriptors = Vec::with_capacity(request.descriptors.len());
        for (index, raw) in request.descriptors.iter().enumerate() {
            let at = |message: String| Invalid(format!("descriptors[{index}]: {message}"));
            let (counter, descriptor) =
                parse(&request.domain, raw, request_hits).map_err(|e| at(e.0))?;
            let position = match (by_key.get(&counter.key), &counter.op) {
                // Releases of several leases of one counter: one script step each.
                (_, Op::Release { .. }) => None,
                (Some(&existing), op) => match (&mut counters[existing].op, op) {
                    (
                        Op::Window { max, hits, .. },
                        Op::Window {
                            max: other_max,
                            hits: other_hits,
                            ..
                        },
                    ) => {
                        *max = (*max).min(*other_max);
                        *hits = (*hits).max(*other_hits);
                        Some(existing)
                    }
                    (
                        Op::Acquire {
                            cap,
                            member,
                            lease_ms,
                        },
                        Op::Acquire {
                            cap: other_cap,
                            member: other_member,
                            lease_ms: other_ms,
                        },
                    ) if member == other_member => {
                        *cap = (*cap).min(*other_cap);
                        *lease_ms = (*lease_ms).max(*other_ms);
                        Some(existing)
                    }
                    _ => {
                        return Err(at(format!(
                            "counter {:?} with scope {:?} appears twice with different leases: one lease per concurrency counter in one request",
                            descriptor.name,
                            scope_of(raw)
                        )))
                    }
                },
                (None, _) => None,
            };
            let position = position.unwrap_or_else(|| {
                by_key.insert(counter.key.clone(), counters.len());
                counters.push(counter);
                counters.len() - 1
            });
            descriptors.push(Descriptor {
                counter: position,
                ..descriptor
            });
        }
        let releases = descriptors
            .iter()
            .filter(|d| d.kind == Kind::Release)
            .count();
        if releases > 0 && releases < descriptors.len() {
            return Err(Invalid(
                "a request that releases leases holds releases only".into(),
            ));
        }
        Ok(Plan {
            counters,
            descriptors,
        })
    }
}

fn scope_of(descriptor: &RateLimitDescriptor) -> &str {
    descriptor
        .entries
        .iter()
        .find(|e| e.key == "scope")
        .map(|e| e.value.as_str())
        .unwrap_or_default()
}

#[derive(Default)]
struct Entries<'a> {
    counter: Option<&'a str>,
    scope: Option<&'a str>,
    lease: Option<&'a str>,
    lease_ms: Option<&'a str>,
    release: Option<&'a str>,
}

fn entries(descriptor: &RateLimitDescriptor) -> Result<Entries<'_>, Invalid> {
    let mut found = Entries::default();
    for entry in &descriptor.entries {
        let slot = match entry.key.as_str() {
            "counter" => &mut found.counter,
            "scope" => &mut found.scope,
            "lease" => &mut found.lease,
            "lease_ms" => &mut found.lease_ms,
            "release" => &mut found.release,
            other => {
                return Err(Invalid(format!(
                "unknown entry key {other:?} (expected counter, scope, lease, lease_ms, release)"
            )))
            }
        };
        if slot.is_some() {
            return Err(Invalid(format!("entry {:?} given twice", entry.key)));
        }
        if entry.value.is_empty() {
            return Err(Invalid(format!("entry {:?} has an empty value", entry.key)));
        }
        *slot = Some(entry.value.as_str());
    }
    Ok(found)
}

/// One descriptor: the counter it names and its own status parameters (its
/// `counter` index is filled in by the caller).
fn parse(
    domain: &str,
    descriptor: &RateLimitDescriptor,
    request_hits: u64,
) -> Result<(Counter, Descriptor), Invalid> {
    let found = entries(descriptor)?;
    let name = found
        .counter
        .ok_or_else(|| Invalid("no \"counter\" entry".into()))?;
    let scope = found
        .scope
        .ok_or_else(|| Invalid("no \"scope\" entry".into()))?;
    if descriptor.is_negative_hits {
        return Err(Invalid(format!(
            "counter {name:?}: is_negative_hits is not supported (a refund arriving after its window ended would be taken from the next window); concurrency slots are given back with a release"
        )));
    }
    let own_hits = descriptor.hits_addend.map(|h| h.value);
    let override_limit = descriptor.limit;
    let descriptor_of = |kind: Kind, max: u32, unit: i32, hits: u64| Descriptor {
        counter: 0,
        name: name.to_string(),
        max,
        unit,
        hits,
        kind,
    };
    match (found.lease, found.lease_ms, found.release) {
        (None, None, None) => {
            let limit = override_limit.ok_or_else(|| {
                Invalid(format!(
                    "counter {name:?} has no limit override: the limit comes from the request (policy.json)"
                ))
            })?;
            let seconds = unit_seconds(limit.unit).ok_or_else(|| {
                Invalid(format!(
                    "counter {name:?}: unit {} not supported (SECOND, MINUTE, HOUR or DAY)",
                    unit_name(limit.unit)
                ))
            })?;
            let hits = own_hits.unwrap_or(request_hits);
            Ok((
                Counter {
                    key: keys::window(domain, seconds, name, scope),
                    op: Op::Window {
                        seconds,
                        max: u64::from(limit.requests_per_unit),
                        hits: hits.min(HITS_CAP),
                    },
                },
                descriptor_of(
                    Kind::Window { seconds },
                    limit.requests_per_unit,
                    limit.unit,
                    hits,
                ),
            ))
        }
        (Some(lease), Some(lease_ms), None) => {
            let limit = override_limit.ok_or_else(|| {
                Invalid(format!(
                    "counter {name:?}: an acquisition needs the limit override (requests_per_unit is the cap)"
                ))
            })?;
            let lease_ms = lease_ms
                .parse::<u64>()
                .ok()
                .filter(|ms| (1..=MAX_LEASE_MS).contains(ms))
                .ok_or_else(|| {
                    Invalid(format!(
                        "counter {name:?}: lease_ms {lease_ms:?} is not a whole number of milliseconds from 1 to {MAX_LEASE_MS}"
                    ))
                })?;
            if own_hits.is_some_and(|h| h != 1) {
                return Err(Invalid(format!(
                    "counter {name:?}: an acquisition takes one slot (hits_addend absent or 1)"
                )));
            }
            Ok((
                Counter {
                    key: keys::leases(domain, name, scope),
                    op: Op::Acquire {
                        cap: u64::from(limit.requests_per_unit),
                        member: keys::lease_member(lease),
                        lease_ms,
                    },
                },
                descriptor_of(Kind::Acquire, limit.requests_per_unit, limit.unit, 1),
            ))
        }
        (Some(lease), None, Some(release)) => {
            if release != "true" {
                return Err(Invalid(format!(
                    "counter {name:?}: release {release:?} (the marker is release = \"true\")"
                )));
            }
            if own_hits != Some(0) {
                return Err(Invalid(format!(
                    "counter {name:?}: a release carries hits_addend 0 (so that services without leases count nothing)"
                )));
            }
            let (max, unit) = override_limit
                .map(|l| (l.requests_per_unit, l.unit))
                .unwrap_or((0, 0));
            Ok((
                Counter {
                    key: keys::leases(domain, name, scope),
                    op: Op::Release {
                        member: keys::lease_member(lease),
                    },
                },
                descriptor_of(Kind::Release, max, unit, 0),
            ))
        }
        (None, _, _) => Err(Invalid(format!(
            "counter {name:?}: lease_ms or release without a lease"
        ))),
        (Some(_), None, None) => Err(Invalid(format!(
            "counter {name:?}: a lease needs lease_ms (acquire) or release = \"true\""
        ))),
        (Some(_), Some(_), Some(_)) => Err(Invalid(format!(
            "counter {name:?}: lease_ms and release in one descriptor"
        ))),
    }
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

fn unit_name(unit: i32) -> String {
    RateLimitUnit::try_from(unit)
        .map(|u| u.as_str_name().to_string())
        .unwrap_or_else(|_| unit.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    use envoy_types::pb::google::protobuf::UInt64Value;

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

    fn with(mut d: RateLimitDescriptor, key: &str, value: &str) -> RateLimitDescriptor {
        d.entries.push(Entry {
            key: key.into(),
            value: value.into(),
        });
        d
    }

    fn acquire(counter: &str, lease: &str, cap: u32) -> RateLimitDescriptor {
        with(
            with(
                descriptor(counter, "grant:alice", cap, RateLimitUnit::Second),
                "lease",
                lease,
            ),
            "lease_ms",
            "30000",
        )
    }

    fn release(counter: &str, lease: &str) -> RateLimitDescriptor {
        let mut d = with(
            with(
                descriptor(counter, "grant:alice", 3, RateLimitUnit::Second),
                "lease",
                lease,
            ),
            "release",
            "true",
        );
        d.hits_addend = Some(UInt64Value { value: 0 });
        d
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "mcp-policy".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    #[test]
    fn window_descriptors_become_counters() {
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            descriptor("b", "global", 100, RateLimitUnit::Hour),
        ]))
        .unwrap();
        assert_eq!(plan.counters.len(), 2);
        assert_eq!(
            plan.counters[0],
            Counter {
                key: keys::window("mcp-policy", 60, "a", "grant:alice"),
                op: Op::Window {
                    seconds: 60,
                    max: 10,
                    hits: 1
                }
            }
        );
        assert_eq!(
            plan.counters[1].op,
            Op::Window {
                seconds: 3_600,
                max: 100,
                hits: 1
            }
        );
        assert_eq!(plan.descriptors[1].counter, 1);
        assert_eq!(plan.descriptors[1].name, "b");
    }

    #[test]
    fn hits_come_from_the_descriptor_else_the_request() {
        let mut r = request(vec![
            descriptor("a", "global", 50, RateLimitUnit::Second),
            descriptor("b", "global", 50, RateLimitUnit::Second),
        ]);
        let hits = |r: &RateLimitRequest| -> Vec<u64> {
            Plan::from_request(r)
                .unwrap()
                .counters
                .iter()
                .map(|c| match c.op {
                    Op::Window { hits, .. } => hits,
                    _ => panic!(),
                })
                .collect()
        };
        assert_eq!(hits(&r), [1, 1], "0 on the request means 1");
        r.hits_addend = 3;
        assert_eq!(hits(&r), [3, 3]);
        r.descriptors[1].hits_addend = Some(UInt64Value { value: 7 });
        assert_eq!(hits(&r), [3, 7], "each descriptor its own cost");
        r.descriptors[0].hits_addend = Some(UInt64Value { value: 0 });
        assert_eq!(hits(&r), [0, 7], "0 on a descriptor checks only");
        r.descriptors[0].hits_addend = Some(UInt64Value { value: u64::MAX });
        assert_eq!(hits(&r)[0], 1 << 40, "capped, still over any max");
        assert_eq!(
            Plan::from_request(&r).unwrap().descriptors[0].hits,
            u64::MAX
        );
    }

    #[test]
    fn one_counter_named_twice_is_taken_once() {
        let mut second = descriptor("a", "grant:alice", 5, RateLimitUnit::Minute);
        second.hits_addend = Some(UInt64Value { value: 2 });
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            second,
        ]))
        .unwrap();
        assert_eq!(plan.counters.len(), 1);
        assert_eq!(
            plan.counters[0].op,
            Op::Window {
                seconds: 60,
                max: 5,
                hits: 2
            },
            "smallest max, largest hits"
        );
        assert_eq!(plan.descriptors[0].counter, 0);
        assert_eq!(plan.descriptors[1].counter, 0);
        assert_eq!((plan.descriptors[0].max, plan.descriptors[1].max), (10, 5));

        // Another scope value or another window: another counter.
        let plan = Plan::from_request(&request(vec![
            descriptor("a", "grant:alice", 10, RateLimitUnit::Minute),
            descriptor("a", "grant:bob", 10, RateLimitUnit::Minute),
            descriptor("a", "grant:alice", 10, RateLimitUnit::Hour),
        ]))
        .unwrap();
        assert_eq!(plan.counters.len(), 3);
    }

    #[test]
    fn acquisitions_and_releases() {
        let plan = Plan::from_request(&request(vec![
            descriptor("rate", "grant:alice", 10, RateLimitUnit::Minute),
            acquire("inflight", "lease-1", 3),
        ]))
        .unwrap();
        assert_eq!(
            plan.counters[1],
            Counter {
                key: keys::leases("mcp-policy", "inflight", "grant:alice"),
                op: Op::Acquire {
                    cap: 3,
                    member: keys::lease_member("lease-1"),
                    lease_ms: 30_000
                }
            }
        );
        assert_eq!(plan.descriptors[1].kind, Kind::Acquire);

        let plan = Plan::from_request(&request(vec![
            release("inflight", "lease-1"),
            release("inflight", "lease-2"),
        ]))
        .unwrap();
        assert!(plan.descriptors.iter().all(|d| d.kind == Kind::Release));
        assert_eq!(plan.counters.len(), 2);
        assert_eq!(
            plan.counters[1].op,
            Op::Release {
                member: keys::lease_member("lease-2")
            }
        );
        // A long lease id is digested like a scope value.
        let plan =
            Plan::from_request(&request(vec![acquire("c", &"l".repeat(10_000), 1)])).unwrap();
        match &plan.counters[0].op {
            Op::Acquire { member, .. } => assert_eq!(member.len(), 33),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_requests() {
        let refused = |r: RateLimitRequest| Plan::from_request(&r).unwrap_err().0;
        let mut no_domain = request(vec![descriptor("a", "global", 1, RateLimitUnit::Second)]);
        no_domain.domain.clear();
        assert!(refused(no_domain).contains("domain"));
        assert!(refused(request(vec![])).contains("no descriptors"));
        let many = (0..65)
            .map(|i| descriptor(&format!("c{i}"), "global", 1, RateLimitUnit::Second))
            .collect();
        assert!(refused(request(many)).contains("at most 64"));

        let mut no_override = descriptor("a", "global", 1, RateLimitUnit::Second);
        no_override.limit = None;
        assert!(refused(request(vec![no_override])).contains("no limit override"));
        let month = descriptor("a", "global", 1, RateLimitUnit::Month);
        assert!(refused(request(vec![month])).contains("MONTH"));
        let extra = with(
            descriptor("a", "global", 1, RateLimitUnit::Second),
            "path",
            "/",
        );
        assert!(refused(request(vec![extra])).contains("unknown entry key"));
        let mut missing = descriptor("a", "global", 1, RateLimitUnit::Second);
        missing.entries.pop();
        assert!(refused(request(vec![missing])).contains("no \"scope\""));
        let twice = with(
            descriptor("a", "global", 1, RateLimitUnit::Second),
            "scope",
            "x",
        );
        assert!(refused(request(vec![twice])).contains("twice"));
        let mut empty = descriptor("a", "global", 1, RateLimitUnit::Second);
        empty.entries[1].value.clear();
        assert!(refused(request(vec![empty])).contains("empty value"));
        let mut negative = descriptor("a", "global", 1, RateLimitUnit::Second);
        negative.is_negative_hits = true;
        assert!(refused(request(vec![negative])).contains("is_negative_hits"));

        // Concurrency.
        for bad_ms in ["0", "-1", "1.5", "86400001", "soon"] {
            let mut d = acquire("c", "l", 1);
            d.entries[3].value = bad_ms.into();
            assert!(refused(request(vec![d])).contains("lease_ms"), "{bad_ms}");
        }
        let mut two_slots = acquire("c", "l", 1);
        two_slots.hits_addend = Some(UInt64Value { value: 2 });
        assert!(refused(request(vec![two_slots])).contains("one slot"));
        let mut no_cap = acquire("c", "l", 1);
        no_cap.limit = None;
        assert!(refused(request(vec![no_cap])).contains("cap"));
        assert!(
            refused(request(vec![acquire("c", "l1", 2), acquire("c", "l2", 2)]))
                .contains("different leases")
        );
        let mut counted_release = release("c", "l");
        counted_release.hits_addend = None;
        assert!(refused(request(vec![counted_release])).contains("hits_addend 0"));
        let mut wrong_marker = release("c", "l");
        wrong_marker.entries[3].value = "yes".into();
        assert!(refused(request(vec![wrong_marker])).contains("marker"));
        assert!(refused(request(vec![
            release("c", "l"),
            descriptor("a", "global", 1, RateLimitUnit::Second)
        ]))
        .contains("releases only"));
        let lease_only = with(
            descriptor("a", "global", 1, RateLimitUnit::Second),
            "lease",
            "l",
        );
        assert!(refused(request(vec![lease_only])).contains("needs lease_ms"));
        let ms_only = with(
            descriptor("a", "global", 1, RateLimitUnit::Second),
            "lease_ms",
            "5",
        );
        assert!(refused(request(vec![ms_only])).contains("without a lease"));
        let both = with(acquire("c", "l", 1), "release", "true");
        assert!(refused(request(vec![both])).contains("lease_ms and release"));
    }

    #[test]
    fn the_same_acquisition_twice_is_one() {
        let plan =
            Plan::from_request(&request(vec![acquire("c", "l", 3), acquire("c", "l", 2)])).unwrap();
        assert_eq!(plan.counters.len(), 1);
        assert!(matches!(plan.counters[0].op, Op::Acquire { cap: 2, .. }));
    }
}
