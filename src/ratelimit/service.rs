//! Limits with `store: global`: one `ShouldRateLimit` call to a rate-limit
//! service speaking Envoy's protocol (envoy.service.ratelimit.v3), carrying
//! one descriptor per global limit with the limit itself as an override, so
//! that policy.json stays the single source of truth. The wire contract is
//! in ratelimit-service/README.md ("Wire contract").

use prost::Message;
use sha2::{Digest, Sha256};

use super::CallerScope;
use crate::policy::{Limit, RateLimitService, Scope};

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
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
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

/// The descriptor value a scope counts by.
fn scope_value(limit: &Limit, caller: CallerScope<'_>) -> String {
    bounded(match (limit.scope, caller.session) {
        (Scope::Grant, _) => format!("grant:{}", caller.grant),
        (Scope::Session, Some(session)) => format!("session:{session}"),
        (Scope::Session, None) => format!("nosession:{}", caller.grant),
        (Scope::Global, _) => "global".to_string(),
    })
}

/// A scope value as sent: as is up to [`MAX_SCOPE_VALUE_BYTES`], else
/// `<kind>#<first 128 bits of SHA-256 of the whole value, hex>`, so that a
/// 50 KB session id costs the service (and Redis keys, here or in
/// envoyproxy/ratelimit, which writes values into keys verbatim) what a short
/// one does. `#` after the kind cannot come from a literal value (`kind:`).
fn bounded(value: String) -> String {
    if value.len() <= MAX_SCOPE_VALUE_BYTES {
        return value;
    }
    let kind = value.split(':').next().unwrap_or_default();
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(kind.len() + 33);
    out.push_str(kind);
    out.push('#');
    for byte in &digest[..16] {
        out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    out
}

/// The encoded `ShouldRateLimit` request for these global limits.
pub fn request(service: &RateLimitService, limits: &[&Limit], caller: CallerScope<'_>) -> Vec<u8> {
    let descriptors = limits
        .iter()
        .map(|limit| RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "counter".to_string(),
                    value: limit.counter.clone(),
                },
                Entry {
                    key: "scope".to_string(),
                    value: scope_value(limit, caller),
                },
            ],
            limit: Some(RateLimitOverride {
                requests_per_unit: u32::try_from(limit.max).unwrap_or(u32::MAX),
                unit: unit(limit.window_seconds),
            }),
        })
        .collect();
    RateLimitRequest {
        domain: service.domain.clone(),
        descriptors,
        hits_addend: 1,
    }
    .encode_to_vec()
}

/// What the service said.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every limit had room; the service took one unit from each.
    Allowed,
    /// `limits[index]` is full; retry after that many seconds.
    OverLimit {
        index: usize,
        retry_after_seconds: u64,
    },
    /// No usable answer.
    Failed(String),
}

/// Reads the service's answer to a request for `limits` (statuses come in
/// descriptor order). A missing `duration_until_reset` falls back to the
/// end of the limit's window as this host's clock sees it.
pub fn verdict(response: &[u8], limits: &[&Limit], now: u64) -> Verdict {
    let response = match RateLimitResponse::decode(response) {
        Ok(response) => response,
        Err(err) => return Verdict::Failed(format!("unreadable RateLimitResponse: {err}")),
    };
    match response.overall_code {
        CODE_OK => Verdict::Allowed,
        CODE_OVER_LIMIT => {
            let over = response
                .statuses
                .iter()
                .enumerate()
                .filter(|(index, status)| status.code == CODE_OVER_LIMIT && *index < limits.len())
                .map(|(index, status)| {
                    let retry = status
                        .duration_until_reset
                        .as_ref()
                        .map(|duration| {
                            let seconds = u64::try_from(duration.seconds).unwrap_or(0);
                            seconds + u64::from(duration.nanos > 0)
                        })
                        .unwrap_or_else(|| {
                            super::seconds_until_reset(now, limits[index].window_seconds)
                        });
                    (index, retry.max(1))
                })
                .max_by_key(|(_, retry)| *retry);
            match over {
                Some((index, retry_after_seconds)) => Verdict::OverLimit {
                    index,
                    retry_after_seconds,
                },
                // Over limit without saying which: the first global limit.
                None if !limits.is_empty() => Verdict::OverLimit {
                    index: 0,
                    retry_after_seconds: super::seconds_until_reset(now, limits[0].window_seconds),
                },
                None => Verdict::Failed("OVER_LIMIT for no limit".to_string()),
            }
        }
        code => Verdict::Failed(format!("overall_code {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{CounterStore, FailureMode};

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn limit(counter: &str, window_seconds: u64, max: u64, scope: Scope) -> Limit {
        Limit {
            counter: counter.to_string(),
            window_seconds,
            max,
            scope,
            pointer: format!("/tools/t/limits/{counter}"),
            store: CounterStore::Global,
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

    #[test]
    fn the_request_carries_one_descriptor_per_limit_with_its_override() {
        let (a, b) = (
            limit("exec", 60, 20, Scope::Grant),
            limit("all", 86_400, 1000, Scope::Global),
        );
        let caller = CallerScope {
            grant: "alice",
            session: Some("s1"),
        };
        let bytes = request(&service(), &[&a, &b], caller);
        let decoded = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.domain, "mcp-policy");
        assert_eq!(decoded.hits_addend, 1);
        let entries = |index: usize| -> Vec<(String, String)> {
            decoded.descriptors[index]
                .entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(
            entries(0),
            vec![
                ("counter".into(), "exec".into()),
                ("scope".into(), "grant:alice".into())
            ]
        );
        assert_eq!(
            entries(1),
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
    }

    #[test]
    fn long_scope_values_are_sent_as_digests() {
        let exec = limit("exec", 60, 20, Scope::Session);
        let scope = |session: &str| {
            let caller = CallerScope {
                grant: "alice",
                session: Some(session),
            };
            let bytes = request(&service(), &[&exec], caller);
            let decoded = RateLimitRequest::decode(bytes.as_slice()).unwrap();
            decoded.descriptors[0].entries[1].value.clone()
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
        };
        let bytes = request(&service(), &[&grant], caller);
        let value = RateLimitRequest::decode(bytes.as_slice())
            .unwrap()
            .descriptors[0]
            .entries[1]
            .value
            .clone();
        assert!(value.starts_with("grant#"), "{value}");
        assert_eq!(bounded("grant:a#b".to_string()), "grant:a#b");
    }

    #[test]
    fn answers_are_read_into_verdicts() {
        let (a, b) = (
            limit("a", 60, 1, Scope::Grant),
            limit("b", 3_600, 1, Scope::Grant),
        );
        let limits = [&a, &b];
        let ok = RateLimitResponse {
            overall_code: 1,
            statuses: vec![],
        }
        .encode_to_vec();
        assert_eq!(verdict(&ok, &limits, 0), Verdict::Allowed);
        let status = |code: i32, seconds: Option<i64>| DescriptorStatus {
            code,
            limit_remaining: 0,
            duration_until_reset: seconds.map(|seconds| ProtoDuration { seconds, nanos: 0 }),
        };
        let over = RateLimitResponse {
            overall_code: 2,
            statuses: vec![status(1, None), status(2, Some(1234))],
        }
        .encode_to_vec();
        assert_eq!(
            verdict(&over, &limits, 0),
            Verdict::OverLimit {
                index: 1,
                retry_after_seconds: 1234
            }
        );
        let unexplained = RateLimitResponse {
            overall_code: 2,
            statuses: vec![],
        }
        .encode_to_vec();
        assert_eq!(
            verdict(&unexplained, &limits, 30),
            Verdict::OverLimit {
                index: 0,
                retry_after_seconds: 30
            }
        );
        assert!(matches!(
            verdict(b"\xff\xff", &limits, 0),
            Verdict::Failed(_)
        ));
        let unknown = RateLimitResponse {
            overall_code: 0,
            statuses: vec![],
        }
        .encode_to_vec();
        assert!(matches!(verdict(&unknown, &limits, 0), Verdict::Failed(_)));
    }
}
