//! Limits with `store: global`: one `ShouldRateLimit` call to a rate-limit
//! service speaking Envoy's protocol (envoy.service.ratelimit.v3), carrying
//! one descriptor per global limit with the limit itself as an override, so
//! that policy.json stays the single source of truth. The wire contract is
//! in ratelimit-service/README.md ("Wire contract").

use prost::Message;
use sha2::{Digest, Sha256};

use super::{CallerScope, Charge};
use crate::policy::{Limit, LimitKind, RateLimitService, Scope};

/// gRPC service and method of the call.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `envoy.service.ratelimit.v3.RateLimitRequest` (the fields we send).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// The descriptor's own cost (`google.protobuf.UInt64Value`).
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`: the limit to apply.
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// `envoy.type.v3.RateLimitUnit`: SECOND = 1, MINUTE = 2, HOUR = 3, DAY = 4.
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.UInt64Value`.
#[derive(Clone, PartialEq, Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields we read).
#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    /// UNKNOWN = 0, OK = 1, OVER_LIMIT = 2.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<CurrentLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

/// `RateLimitResponse.RateLimit` (the name; the rest we do not read).
#[derive(Clone, PartialEq, Message)]
pub struct CurrentLimit {
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const CODE_OK: i32 = 1;
const CODE_OVER_LIMIT: i32 = 2;
/// The protocol's `SECOND`, sent as the (ignored) unit of acquisitions.
const UNIT_SECOND: i32 = 1;

/// What `current_limit.name` of an acquisition's status starts with when the
/// service holds leases (ratelimit-service/README.md, "The acknowledgement").
pub const CONCURRENT_NAME_PREFIX: &str = "concurrent:";

/// The protocol's unit for a window the policy allowed for `store: global`.
fn unit(window_seconds: u64) -> i32 {
    match window_seconds {
        1 => 1,
        60 => 2,
        3_600 => 3,
        _ => 4,
    }
}

/// Scope values longer than this many bytes are sent as a digest.
pub const MAX_SCOPE_VALUE_BYTES: usize = 64;

/// The descriptor value a charge counts by: the scope's value, then
/// `;<per key>` for a limit with `per` (see [`super::per_key`]).
fn scope_value(charge: &Charge<'_>, caller: CallerScope<'_>) -> String {
    let scope = match (charge.limit.scope, caller.session, caller.role) {
        (Scope::Grant, _, _) => format!("grant:{}", caller.grant),
        (Scope::Session, Some(session), _) => format!("session:{session}"),
        (Scope::Session, None, _) => format!("nosession:{}", caller.grant),
        (Scope::Global, _, _) => "global".to_string(),
        (Scope::Role, _, Some(role)) => format!("role:{role}"),
        (Scope::Role, _, None) => format!("norole:{}", caller.grant),
    };
    bounded(super::owner_text(&scope, charge.per.as_deref()))
}

/// A scope value as sent: as is up to [`MAX_SCOPE_VALUE_BYTES`], else
/// `<kind>#<first 128 bits of SHA-256 of the whole value, hex>`, so that a
/// 50 KB session id costs the service (and Redis keys, here or in
/// envoyproxy/ratelimit, which writes values into keys verbatim) what a short
/// one does. `#` after the kind cannot come from a literal value (`kind:`,
/// `kind;`, or `global` alone).
fn bounded(value: String) -> String {
    if value.len() <= MAX_SCOPE_VALUE_BYTES {
        return value;
    }
    // The scope's kind ends at its `:` (`grant:alice`), or at the `;` of a
    // `per` key (`global;args.repo=...`): never inside a value.
    let kind = value.split([':', ';']).next().unwrap_or_default();
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(kind.len() + 33);
    out.push_str(kind);
    out.push('#');
    out.push_str(&hex(&digest[..16]));
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

/// A lease id as sent: 128 random bits in hex (unique per exchange across
/// the fleet).
pub fn lease_id(random: u128) -> String {
    hex(&random.to_be_bytes())
}

/// One global limit as one call asks the service about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub limit: Limit,
    /// Units (0: checked only); 1 for a concurrency slot.
    pub cost: u64,
    /// The `scope` entry's value.
    pub scope: String,
}

/// The descriptors of one call's global charges. A counter named twice for
/// one owner is asked once, as the local store takes it: the largest cost
/// against the smallest `max` (or cap). So the service's answer for it is
/// the answer for every limit naming it, and a refusal names the limit
/// whose `max` decided it, with the cost taken.
pub fn descriptors(charges: &[Charge<'_>], caller: CallerScope<'_>) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = Vec::with_capacity(charges.len());
    for charge in charges {
        let descriptor = Descriptor {
            limit: charge.limit.clone(),
            cost: charge.cost,
            scope: scope_value(charge, caller),
        };
        let twin = out.iter_mut().find(|other| {
            other.limit.counter == descriptor.limit.counter && other.scope == descriptor.scope
        });
        match twin {
            Some(other) => {
                let cost = other.cost.max(descriptor.cost);
                if descriptor.limit.max() < other.limit.max() {
                    *other = descriptor;
                }
                other.cost = cost;
            }
            None => out.push(descriptor),
        }
    }
    out
}

fn entry(key: &str, value: impl Into<String>) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.into(),
    }
}

fn cap(limit: &Limit) -> u32 {
    u32::try_from(limit.max()).unwrap_or(u32::MAX)
}

/// The encoded `ShouldRateLimit` request for these descriptors: a window
/// descriptor per window (its cost in its own `hits_addend` unless 1), an
/// acquire descriptor per concurrency cap, leased as `lease`.
pub fn request(service: &RateLimitService, descriptors: &[Descriptor], lease: &str) -> Vec<u8> {
    let descriptors = descriptors
        .iter()
        .map(|descriptor| {
            let limit = &descriptor.limit;
            let mut entries = vec![
                entry("counter", limit.counter.clone()),
                entry("scope", descriptor.scope.clone()),
            ];
            match limit.kind {
                LimitKind::Window { seconds, .. } => RateLimitDescriptor {
                    entries,
                    limit: Some(RateLimitOverride {
                        requests_per_unit: cap(limit),
                        unit: unit(seconds),
                    }),
                    hits_addend: (descriptor.cost != 1).then_some(UInt64Value {
                        value: descriptor.cost,
                    }),
                },
                LimitKind::Concurrent { lease_seconds, .. } => {
                    entries.push(entry("lease", lease));
                    entries.push(entry("lease_ms", (lease_seconds * 1_000).to_string()));
                    RateLimitDescriptor {
                        entries,
                        limit: Some(RateLimitOverride {
                            requests_per_unit: cap(limit),
                            unit: UNIT_SECOND,
                        }),
                        hits_addend: None,
                    }
                }
            }
        })
        .collect();
    RateLimitRequest {
        domain: service.domain.clone(),
        descriptors,
        hits_addend: 1,
    }
    .encode_to_vec()
}

/// The encoded request giving back the slots `lease` holds among these
/// descriptors (`None` if none is a concurrency cap): one release descriptor
/// each, with `hits_addend` 0, so that a service without leases counts
/// nothing.
pub fn release_request(
    service: &RateLimitService,
    descriptors: &[Descriptor],
    lease: &str,
) -> Option<Vec<u8>> {
    let releases: Vec<RateLimitDescriptor> = descriptors
        .iter()
        .filter(|descriptor| descriptor.limit.is_concurrent())
        .map(|descriptor| RateLimitDescriptor {
            entries: vec![
                entry("counter", descriptor.limit.counter.clone()),
                entry("scope", descriptor.scope.clone()),
                entry("lease", lease),
                entry("release", "true"),
            ],
            limit: None,
            hits_addend: Some(UInt64Value { value: 0 }),
        })
        .collect();
    (!releases.is_empty()).then(|| {
        RateLimitRequest {
            domain: service.domain.clone(),
            descriptors: releases,
            hits_addend: 0,
        }
        .encode_to_vec()
    })
}

/// What the service said.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every limit had room; the service took each call's cost (and slots).
    Allowed,
    /// `descriptors[index]` is full; for a window, retry after that many
    /// seconds (0 for a concurrency cap: a slot frees when a call ends).
    OverLimit {
        index: usize,
        retry_after_seconds: u64,
    },
    /// No usable answer.
    Failed(String),
}

/// Reads the service's answer to a request for `descriptors` (statuses come
/// in descriptor order). Every acquisition must be acknowledged
/// (`current_limit.name` is `concurrent:<counter>`), whatever the overall
/// code: a service that does not hold leases answers OK and enforces
/// nothing, which is a failure of the service. A window's missing
/// `duration_until_reset` falls back to the end of the limit's window as this
/// host's clock sees it; an acquisition carries none.
pub fn verdict(response: &[u8], descriptors: &[Descriptor], now: u64) -> Verdict {
    let response = match RateLimitResponse::decode(response) {
        Ok(response) => response,
        Err(err) => return Verdict::Failed(format!("unreadable RateLimitResponse: {err}")),
    };
    for (index, descriptor) in descriptors.iter().enumerate() {
        if !descriptor.limit.is_concurrent() {
            continue;
        }
        let name = response
            .statuses
            .get(index)
            .and_then(|status| status.current_limit.as_ref())
            .map(|limit| limit.name.as_str());
        let expected = format!("{CONCURRENT_NAME_PREFIX}{}", descriptor.limit.counter);
        if name != Some(expected.as_str()) {
            return Verdict::Failed(format!(
                "the rate-limit service did not acknowledge concurrency counter {:?} (current_limit.name {name:?}, expected {expected:?}): it does not hold leases, so it cannot cap calls in flight",
                descriptor.limit.counter
            ));
        }
    }
    let retry = |index: usize, status: &DescriptorStatus| -> Option<u64> {
        let (seconds, _) = descriptors.get(index)?.limit.window()?;
        let retry = status
            .duration_until_reset
            .as_ref()
            .map(|duration| {
                let seconds = u64::try_from(duration.seconds).unwrap_or(0);
                seconds + u64::from(duration.nanos > 0)
            })
            .unwrap_or_else(|| super::seconds_until_reset(now, seconds));
        Some(retry.max(1))
    };
    match response.overall_code {
        CODE_OK => Verdict::Allowed,
        CODE_OVER_LIMIT => {
            let over: Vec<(usize, &DescriptorStatus)> = response
                .statuses
                .iter()
                .enumerate()
                .filter(|(index, status)| {
                    status.code == CODE_OVER_LIMIT && *index < descriptors.len()
                })
                .collect();
            // The window that resets last; else a full concurrency cap.
            let window = over
                .iter()
                .filter_map(|(index, status)| Some((*index, retry(*index, status)?)))
                .max_by_key(|(_, retry)| *retry);
            let concurrent = over
                .iter()
                .find(|(index, _)| descriptors[*index].limit.is_concurrent());
            match (window, concurrent) {
                (Some((index, retry_after_seconds)), _) => Verdict::OverLimit {
                    index,
                    retry_after_seconds,
                },
                (None, Some((index, _))) => Verdict::OverLimit {
                    index: *index,
                    retry_after_seconds: 0,
                },
                // Over limit without saying which: the first global limit.
                (None, None) => match descriptors.first() {
                    Some(first) => Verdict::OverLimit {
                        index: 0,
                        retry_after_seconds: first
                            .limit
                            .window()
                            .map_or(0, |(seconds, _)| super::seconds_until_reset(now, seconds)),
                    },
                    None => Verdict::Failed("OVER_LIMIT for no limit".to_string()),
                },
            }
        }
        code => Verdict::Failed(format!("overall_code {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ArgumentPath, Cost, CounterStore, FailureMode};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn limit(counter: &str, window_seconds: u64, max: u64, scope: Scope) -> Limit {
        Limit {
            counter: counter.to_string(),
            kind: LimitKind::Window {
                seconds: window_seconds,
                max,
            },
            scope,
            pointer: format!("/tools/t/limits/{counter}"),
            store: CounterStore::Global,
            cost: Cost::Units(1),
            per: None,
        }
    }

    fn concurrent(counter: &str, cap: u64, scope: Scope) -> Limit {
        Limit {
            kind: LimitKind::Concurrent {
                cap,
                lease_seconds: 300,
            },
            ..limit(counter, 1, 1, scope)
        }
    }

    fn service() -> RateLimitService {
        RateLimitService {
            cluster: "ratelimit".to_string(),
            domain: "mcp-policy".to_string(),
            timeout_ms: 50,
            failure_mode: FailureMode::Closed,
        }
    }

    const ALICE: CallerScope<'static> = CallerScope {
        grant: "alice",
        session: Some("s1"),
        role: None,
    };

    fn plain(limits: &[&Limit], caller: CallerScope<'_>) -> Vec<Descriptor> {
        let charges: Vec<Charge<'_>> = limits.iter().map(|limit| Charge::plain(limit)).collect();
        descriptors(&charges, caller)
    }

    fn entries(descriptor: &RateLimitDescriptor) -> Vec<(String, String)> {
        descriptor
            .entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    fn decode(bytes: &[u8]) -> RateLimitRequest {
        RateLimitRequest::decode(bytes).unwrap()
    }

    #[test]
    fn the_request_carries_one_descriptor_per_limit_with_its_override() {
        let (a, b) = (
            limit("exec", 60, 20, Scope::Grant),
            limit("all", 86_400, 1000, Scope::Global),
        );
        let decoded = decode(&request(&service(), &plain(&[&a, &b], ALICE), "l"));
        assert_eq!(decoded.domain, "mcp-policy");
        assert_eq!(decoded.hits_addend, 1);
        assert_eq!(
            entries(&decoded.descriptors[0]),
            vec![
                ("counter".into(), "exec".into()),
                ("scope".into(), "grant:alice".into())
            ]
        );
        assert_eq!(
            entries(&decoded.descriptors[1]),
            vec![
                ("counter".into(), "all".into()),
                ("scope".into(), "global".into())
            ]
        );
        assert_eq!(
            decoded.descriptors[0].limit,
            Some(RateLimitOverride {
                requests_per_unit: 20,
                unit: 2
            })
        );
        assert_eq!(
            decoded.descriptors[1].limit,
            Some(RateLimitOverride {
                requests_per_unit: 1000,
                unit: 4
            })
        );
        // A cost of 1 is the request's: no hits_addend of its own.
        assert_eq!(decoded.descriptors[0].hits_addend, None);
    }

    #[test]
    fn costs_go_in_each_descriptors_hits_addend() {
        let rows = Limit {
            cost: Cost::Argument(ArgumentPath::parse("args.rows").unwrap()),
            ..limit("rows", 86_400, 10_000, Scope::Grant)
        };
        let calls = limit("calls", 60, 10, Scope::Grant);
        let charges = [
            Charge {
                limit: &rows,
                cost: 500,
                per: None,
            },
            Charge::plain(&calls),
            Charge {
                limit: &rows,
                cost: 0,
                per: Some("args.table=t".to_string()),
            },
        ];
        let decoded = decode(&request(&service(), &descriptors(&charges, ALICE), "l"));
        assert_eq!(
            decoded.descriptors[0].hits_addend,
            Some(UInt64Value { value: 500 })
        );
        assert_eq!(decoded.descriptors[1].hits_addend, None);
        // 0 checks without taking.
        assert_eq!(
            decoded.descriptors[2].hits_addend,
            Some(UInt64Value { value: 0 })
        );
        assert_eq!(
            entries(&decoded.descriptors[2])[1],
            ("scope".into(), "grant:alice;args.table=t".into())
        );
    }

    /// A window counter named by two limits of one call (a tool's and
    /// `all_tools`') is asked once, as the local store takes it: the largest
    /// cost against the smallest max; so the service's answer for that one
    /// descriptor is the refusal's, naming the limit whose max decided.
    #[test]
    fn a_window_counter_named_twice_is_asked_once() {
        let tool = Limit {
            pointer: "/tools/t/limits/0".to_string(),
            cost: crate::policy::Cost::Units(3),
            ..limit("x", 60, 10, Scope::Grant)
        };
        let all = Limit {
            pointer: "/all_tools/limits/0".to_string(),
            ..limit("x", 60, 5, Scope::Grant)
        };
        let other = limit("y", 60, 5, Scope::Grant);
        let charges = [
            Charge::plain(&tool),
            Charge::plain(&all),
            Charge::plain(&other),
        ];
        let described = descriptors(&charges, ALICE);
        assert_eq!(described.len(), 2, "{described:?}");
        assert_eq!(described[0].limit.pointer, "/all_tools/limits/0");
        assert_eq!((described[0].limit.max(), described[0].cost), (5, 3));
        assert_eq!(described[1].limit.counter, "y");
        // Another caller's count of one counter is another descriptor.
        let sessions = Limit {
            scope: Scope::Session,
            ..all.clone()
        };
        let described = descriptors(&[Charge::plain(&tool), Charge::plain(&sessions)], ALICE);
        assert_eq!(described.len(), 2, "{described:?}");
    }

    #[test]
    fn concurrency_caps_are_acquired_and_released_by_lease() {
        let inflight = concurrent("inflight", 3, Scope::Grant);
        let rate = limit("rate", 60, 10, Scope::Grant);
        let described = plain(&[&rate, &inflight, &inflight], ALICE);
        assert_eq!(described.len(), 2, "a cap named twice is asked once");
        let decoded = decode(&request(&service(), &described, "0123abcd"));
        assert_eq!(
            entries(&decoded.descriptors[1]),
            vec![
                ("counter".into(), "inflight".into()),
                ("scope".into(), "grant:alice".into()),
                ("lease".into(), "0123abcd".into()),
                ("lease_ms".into(), "300000".into()),
            ]
        );
        assert_eq!(
            decoded.descriptors[1].limit,
            Some(RateLimitOverride {
                requests_per_unit: 3,
                unit: 1
            })
        );
        assert_eq!(decoded.descriptors[1].hits_addend, None);
        // The release names the lease, hits_addend 0, no window descriptors.
        let release = decode(&release_request(&service(), &described, "0123abcd").unwrap());
        assert_eq!(release.descriptors.len(), 1);
        assert_eq!(
            entries(&release.descriptors[0]),
            vec![
                ("counter".into(), "inflight".into()),
                ("scope".into(), "grant:alice".into()),
                ("lease".into(), "0123abcd".into()),
                ("release".into(), "true".into()),
            ]
        );
        assert_eq!(
            release.descriptors[0].hits_addend,
            Some(UInt64Value { value: 0 })
        );
        assert_eq!(
            release_request(&service(), &plain(&[&rate], ALICE), "x"),
            None
        );
        // Lease ids: 128 bits in hex.
        assert_eq!(lease_id(0xff), format!("{}ff", "0".repeat(30)));
    }

    #[test]
    fn roles_and_argument_values_make_scope_values() {
        let per_role = limit("r", 60, 1, Scope::Role);
        let mut caller = ALICE;
        let value = |limit: &Limit, caller: CallerScope<'_>, per: Option<&str>| {
            let charge = Charge {
                limit,
                cost: 1,
                per: per.map(str::to_string),
            };
            descriptors(&[charge], caller)[0].scope.clone()
        };
        assert_eq!(value(&per_role, caller, None), "norole:alice");
        caller.role = Some("engineer");
        assert_eq!(value(&per_role, caller, None), "role:engineer");
        let per_grant = limit("g", 60, 1, Scope::Grant);
        assert_eq!(
            value(&per_grant, caller, Some("args.repo=acme/web")),
            "grant:alice;args.repo=acme/web"
        );
        // Long pairs are digested like any scope value.
        let long = format!("args.repo={}", "r".repeat(100));
        assert!(value(&per_grant, caller, Some(&long)).starts_with("grant#"));
    }

    #[test]
    fn long_scope_values_are_sent_as_digests() {
        let exec = limit("exec", 60, 20, Scope::Session);
        let scope = |session: &str| {
            let caller = CallerScope {
                grant: "alice",
                session: Some(session),
                role: None,
            };
            plain(&[&exec], caller)[0].scope.clone()
        };
        // "session:" is 8 bytes: 56 more fit as they are.
        let fits = "s".repeat(56);
        assert_eq!(scope(&fits), format!("session:{fits}"));
        let over = "s".repeat(57);
        let digested = scope(&over);
        assert!(digested.starts_with("session#"), "{digested}");
        assert_eq!(digested.len(), "session#".len() + 32);
        assert!(digested[8..].bytes().all(|b| b.is_ascii_hexdigit()));
        // Stable, and apart for values that differ only at the end.
        let huge = "x".repeat(50_000);
        assert_eq!(scope(&huge), scope(&huge));
        assert_ne!(scope(&huge), scope(&format!("{huge}y")));
        assert!(scope(&huge).len() <= MAX_SCOPE_VALUE_BYTES);
        // Grants too; a literal value cannot take a digest's form.
        let grant = limit("exec", 60, 20, Scope::Grant);
        let long_grant = "g".repeat(100);
        let caller = CallerScope {
            grant: &long_grant,
            session: None,
            role: None,
        };
        let value = plain(&[&grant], caller)[0].scope.clone();
        assert!(value.starts_with("grant#"), "{value}");
        assert_eq!(bounded("grant:a#b".to_string()), "grant:a#b");
        // A global scope with `per`: bounded too, whatever the value holds
        // (a `:` in it once made the kind end inside the value, so that
        // `https:<long>` and the literal `https#<digest>` met).
        let merges = Limit {
            per: crate::policy::ArgumentPath::parse("args.url"),
            ..limit("merges", 60, 20, Scope::Global)
        };
        let per = |value: &str| {
            let charge = Charge {
                limit: &merges,
                cost: 1,
                per: Some(super::super::per_key(
                    "args.url",
                    Some(&serde_json::json!(value)),
                )),
            };
            descriptors(
                &[charge],
                CallerScope {
                    grant: "alice",
                    session: None,
                    role: None,
                },
            )[0]
            .scope
            .clone()
        };
        let long = format!("https://{}", "h".repeat(100_000));
        let digested = per(&long);
        assert!(digested.starts_with("global#"), "{digested}");
        assert!(
            digested.len() <= MAX_SCOPE_VALUE_BYTES,
            "{}",
            digested.len()
        );
        let literal = format!("https#{}", &digested["global#".len()..]);
        assert_ne!(per(&literal), digested);
        assert_eq!(per("acme"), "global;args.url=acme");
    }

    fn status(code: i32, seconds: Option<i64>, name: &str) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                name: name.to_string(),
            }),
            limit_remaining: 0,
            duration_until_reset: seconds.map(|seconds| ProtoDuration { seconds, nanos: 0 }),
        }
    }

    fn answer(overall_code: i32, statuses: Vec<DescriptorStatus>) -> Vec<u8> {
        RateLimitResponse {
            overall_code,
            statuses,
        }
        .encode_to_vec()
    }

    #[test]
    fn answers_are_read_into_verdicts() {
        let (a, b) = (
            limit("a", 60, 1, Scope::Grant),
            limit("b", 3_600, 1, Scope::Grant),
        );
        let described = plain(&[&a, &b], ALICE);
        assert_eq!(verdict(&answer(1, vec![]), &described, 0), Verdict::Allowed);
        let over = answer(2, vec![status(1, None, "a"), status(2, Some(1234), "b")]);
        assert_eq!(
            verdict(&over, &described, 0),
            Verdict::OverLimit {
                index: 1,
                retry_after_seconds: 1234
            }
        );
        assert_eq!(
            verdict(&answer(2, vec![]), &described, 30),
            Verdict::OverLimit {
                index: 0,
                retry_after_seconds: 30
            }
        );
        assert!(matches!(
            verdict(b"\xff\xff", &described, 0),
            Verdict::Failed(_)
        ));
        assert!(matches!(
            verdict(&answer(0, vec![]), &described, 0),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn an_acquisition_needs_the_acknowledgement() {
        let rate = limit("rate", 60, 10, Scope::Grant);
        let inflight = concurrent("inflight", 2, Scope::Grant);
        let described = plain(&[&rate, &inflight], ALICE);
        let acknowledged = answer(
            1,
            vec![
                status(1, Some(10), "rate"),
                status(1, None, "concurrent:inflight"),
            ],
        );
        assert_eq!(verdict(&acknowledged, &described, 0), Verdict::Allowed);
        // envoyproxy/ratelimit names override limits "": it holds no leases.
        for name in ["", "inflight", "concurrent:other"] {
            let unacknowledged =
                answer(1, vec![status(1, Some(10), "rate"), status(1, None, name)]);
            assert!(
                matches!(verdict(&unacknowledged, &described, 0), Verdict::Failed(ref why) if why.contains("acknowledge")),
                "{name:?}"
            );
        }
        // No statuses at all: nothing acknowledged.
        assert!(matches!(
            verdict(&answer(1, vec![]), &described, 0),
            Verdict::Failed(_)
        ));
        // A full cap: no duration, no retry guess.
        let full = answer(
            2,
            vec![
                status(1, Some(10), "rate"),
                status(2, None, "concurrent:inflight"),
            ],
        );
        assert_eq!(
            verdict(&full, &described, 0),
            Verdict::OverLimit {
                index: 1,
                retry_after_seconds: 0
            }
        );
        // A full window and a full cap: the window says when to retry.
        let both = answer(
            2,
            vec![
                status(2, Some(42), "rate"),
                status(2, None, "concurrent:inflight"),
            ],
        );
        assert_eq!(
            verdict(&both, &described, 0),
            Verdict::OverLimit {
                index: 0,
                retry_after_seconds: 42
            }
        );
    }
}
