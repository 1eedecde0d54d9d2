//! The policy document as written (policy.json): serde types that refuse
//! unknown fields, wrong types and out-of-range values while reading, so that
//! every error carries the JSON path where it was found. Parts of the
//! document are read on their own ([`Checked`]), so that an error in one
//! does not stop the others from being read and checked.
//!
//! Nothing here decides anything; [`super::compile`] turns a document into
//! the [`super::Policy`] the filter enforces.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ShapeError;

use crate::arguments::ConditionsDocument;

/// `Deserialize` for an enum written as one of a few strings, and only as a
/// string: serde's derived enums also take the map form (`{"deny": null}`),
/// which no policy means, and answer another type with "expected value".
macro_rules! string_enum {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                const NAMES: &[&str] = &[$($name),+];
                struct Names;
                impl Visitor<'_> for Names {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        one_of(f, NAMES)
                    }
                    fn visit_str<E: de::Error>(self, value: &str) -> Result<$ty, E> {
                        match value {
                            $($name => Ok($ty::$variant),)+
                            _ => Err(E::unknown_variant(value, NAMES)),
                        }
                    }
                }
                deserializer.deserialize_str(Names)
            }
        }
    };
}

/// "`a` or `b`", "one of `a`, `b`, `c`": as serde names the variants it expected.
fn one_of(f: &mut fmt::Formatter, names: &[&str]) -> fmt::Result {
    match names {
        [only] => write!(f, "`{only}`"),
        [first, second] => write!(f, "`{first}` or `{second}`"),
        names => {
            f.write_str("one of ")?;
            for (index, name) in names.iter().enumerate() {
                if index > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "`{name}`")?;
            }
            Ok(())
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Editors' schema reference; ignored by the filter.
    #[serde(rename = "$schema", default)]
    pub schema: Option<Checked<String>>,
    pub version: Checked<Version>,
    pub default: Checked<Action>,
    #[serde(default)]
    pub identity: Option<Checked<Object<IdentityDocument>>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<ToolRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub tools: UniqueMap<Checked<Object<ToolRuleDocument>>>,
    /// Prompt name (or pattern) → rule.
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<PromptRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub prompts: UniqueMap<Checked<Object<PromptRuleDocument>>>,
    /// Resource URI (or pattern) → rule; URIs are normalised before matching.
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<ResourceRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub resources: UniqueMap<Checked<Object<ResourceRuleDocument>>>,
    /// What happens to prompts the policy does not name (default: `default`).
    #[serde(default)]
    pub default_prompts: Option<Checked<Action>>,
    /// What happens to resources the policy does not name (default: `default`).
    #[serde(default)]
    pub default_resources: Option<Checked<Action>>,
    /// JSON-RPC method → allow or deny; `other` for methods the gate does not know.
    #[serde(default)]
    pub methods: Option<Checked<UniqueMap<Action>>>,
    /// Tool annotation (as the server lists it) → a stricter rule for the
    /// tools that carry it.
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<AnnotationRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "enum": ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] })))]
    pub annotations: UniqueMap<Checked<Object<AnnotationRuleDocument>>>,
    #[serde(default)]
    pub all_tools: Option<Checked<Object<AllToolsDocument>>>,
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::policy::MAX_BODY_BYTES_LIMIT))
    )]
    pub max_body_bytes: Option<Checked<PositiveInteger>>,
    #[serde(default)]
    pub hide: Option<Checked<Vec<NonEmptyString>>>,
    #[serde(default)]
    pub list: Option<Checked<ListMode>>,
    #[serde(default)]
    pub mode: Option<Checked<Mode>>,
    #[serde(default)]
    pub deny_as: Option<Checked<DenyAs>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<GrantDocument>>>>")
    )]
    pub grants: UniqueMap<Checked<Object<GrantDocument>>>,
    /// Role name → a fragment like a grant's: the rules of every caller of
    /// that role (`grant_roles`, `identity.jwt_claim.role_claim`).
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<GrantDocument>>>>")
    )]
    pub roles: UniqueMap<Checked<Object<GrantDocument>>>,
    /// Grant → the name of its role in `roles`.
    #[serde(default)]
    pub grant_roles: Option<Checked<UniqueMap<NonEmptyString>>>,
    #[serde(default)]
    pub failure_mode: Option<Checked<FailureMode>>,
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::mcp::MAX_DEPTH_LIMIT))
    )]
    pub max_json_depth: Option<Checked<PositiveInteger>>,
    /// Slots in each counter's table: callers counted at once per counter.
    #[serde(default)]
    pub max_callers_per_counter: Option<Checked<PositiveInteger>>,
    /// Whether the filter holds request headers until the body is decided
    /// (needs Envoy's `allow_on_headers_stop_iteration: true`).
    #[serde(default)]
    pub hold_request_headers: Option<Checked<bool>>,
    /// The rate-limit service for limits with `store: global`.
    #[serde(default)]
    pub rate_limit_service: Option<Checked<Object<RateLimitServiceDocument>>>,
    /// The approval service asked about calls that need a person's approval
    /// (`"action": "approve"`, `approve_if`); required when a rule asks.
    #[serde(default)]
    pub approval_service: Option<Checked<Object<ApprovalServiceDocument>>>,
}

/// What happens when the gate cannot decide (counter store failed).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum FailureMode {
    /// Refuse the call with a JSON-RPC error; forward nothing (default).
    #[default]
    Closed,
    /// Forward the call, count it as failed and log it.
    Open,
}

string_enum!(FailureMode { Closed = "closed", Open = "open" });

/// A policy fragment for one grant: each field it names replaces the
/// top-level one for that grant; its `tools` replace top-level rules of the
/// same name and add the rest.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantDocument {
    #[serde(default)]
    pub default: Option<Checked<Action>>,
    #[serde(default)]
    pub default_prompts: Option<Checked<Action>>,
    #[serde(default)]
    pub default_resources: Option<Checked<Action>>,
    #[serde(default)]
    pub hide: Option<Checked<Vec<NonEmptyString>>>,
    #[serde(default)]
    pub all_tools: Option<Checked<Object<AllToolsDocument>>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<ToolRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub tools: UniqueMap<Checked<Object<ToolRuleDocument>>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<PromptRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub prompts: UniqueMap<Checked<Object<PromptRuleDocument>>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<UniqueMap<Checked<Object<ResourceRuleDocument>>>>")
    )]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "minLength": 1, "anyOf": [{ "pattern": "^[^*]*$" }, { "maxLength": crate::policy::glob::MAX_PATTERN_CHARS }] })))]
    pub resources: UniqueMap<Checked<Object<ResourceRuleDocument>>>,
    #[serde(default)]
    pub methods: Option<Checked<UniqueMap<Action>>>,
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("propertyNames" = { "enum": ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] })))]
    pub annotations: Option<Checked<UniqueMap<Checked<Object<AnnotationRuleDocument>>>>>,
}

/// Which tools `tools/list` shows a caller.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum ListMode {
    /// Hidden tools are removed; denied ones stay visible (default).
    #[default]
    ShowDenied,
    /// Tools the grant could never call (denied by rule or default) are removed too.
    HideDenied,
}

string_enum!(ListMode { ShowDenied = "show_denied", HideDenied = "hide_denied" });

/// Whether decisions are enforced or only observed.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum Mode {
    #[default]
    Enforce,
    /// Every decision is made, counted and logged, but nothing is blocked.
    Monitor,
}

string_enum!(Mode { Enforce = "enforce", Monitor = "monitor" });

/// How a refused call is answered.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum DenyAs {
    /// A JSON-RPC error (-31001, -31002).
    #[default]
    Error,
    /// A successful tool result with `isError: true`, for clients that feed
    /// tool errors back to the model.
    ToolResult,
}

string_enum!(DenyAs { Error = "error", ToolResult = "tool_result" });

/// A map or list a policy may leave out, or write as `null` (templating
/// tools write it for "unset"): both read as empty.
fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A struct that must be written as a JSON object. Serde's derived structs
/// also accept an array of their fields in order (`["c","minute",10,"grant"]`),
/// a form nobody means to write and that would hide mistakes.
#[derive(Debug, Default)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(access)).map(Object)
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

/// A part of the document read on its own: its own value, or the first
/// error found in it, kept for [`super::compile`] to report under the part's
/// path while reading goes on with the next part. Every field of the
/// document, of a tool rule and of a grant, every tool rule, grant, limit and
/// argument condition is such a part, so one error does not hide the others.
///
/// Reading captures the part's text (serde_json's `RawValue`, a slice of the
/// source), then reads it as `T`; an error points at a byte of that slice,
/// hence of the source.
#[derive(Debug)]
pub struct Checked<T>(Result<T, ShapeError>, usize);

impl<T> Checked<T> {
    pub(crate) fn into_result(self) -> Result<T, ShapeError> {
        self.0
    }

    /// The address just past the part's last byte in the source, where the
    /// reader stops for an error of the part as a whole (a missing field):
    /// checks made after reading place their errors there.
    pub(crate) fn end(&self) -> usize {
        self.1
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Invalid JSON is an error of the whole document: the reader cannot
        // tell where the part ends.
        let part: &'de RawValue = Deserialize::deserialize(deserializer)?;
        // The reader `Policy::from_json` uses (bytes), so that the module
        // carries one reader type (measured: a second one adds 8 KB).
        let mut reader = serde_json::Deserializer::from_slice(part.get().as_bytes());
        let text = part.get();
        let read = T::deserialize(&mut reader).map_err(|err| ShapeError::in_part(&err, text));
        #[cfg(test)]
        super::error::check_path::<T>(text.as_bytes(), read.as_ref().err());
        Ok(Checked(read, text.as_ptr() as usize + text.len()))
    }
}

/// Only `"1"` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version;

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_string(deserializer, |text| {
            if text == "1" {
                Ok(Version)
            } else {
                Err(format!(
                    "unsupported version {text:?} (this filter reads version \"1\")"
                ))
            }
        })
    }
}

/// Refuses an array that serde_json opened for a visitor reading any value,
/// after reading it to its end: the error is placed past the array, as for
/// every other value of the wrong type, not at its first element (where it
/// would be taken for the element's: [`super::error::path_of_error`]).
pub(crate) fn refuse_array<'de, A: de::SeqAccess<'de>, T>(
    mut seq: A,
    expected: &dyn de::Expected,
) -> Result<T, A::Error> {
    while seq.next_element::<de::IgnoredAny>()?.is_some() {}
    Err(de::Error::invalid_type(de::Unexpected::Seq, expected))
}

/// A string, checked where serde_json reads it: an error is placed at the
/// string, which is how the error's path is found
/// ([`super::error::path_of_error`]); checked after reading, it would be
/// placed at the end of the object around it.
fn checked_string<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    check: fn(String) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct CheckedString<T>(fn(String) -> Result<T, String>);
    impl<T> Visitor<'_> for CheckedString<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v.to_string()).map_err(E::custom)
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<T, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_string(CheckedString(check))
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "lowercase"))]
pub enum Action {
    Allow,
    Deny,
}

string_enum!(Action { Allow = "allow", Deny = "deny" });

/// What a tool, prompt or resource rule does with a use: forward it, refuse
/// it, or forward it once a person has approved that exact call.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "lowercase"))]
pub enum RuleAction {
    Allow,
    Deny,
    /// Every use needs a person's approval (through `approval_service`).
    Approve,
}

string_enum!(RuleAction { Allow = "allow", Deny = "deny", Approve = "approve" });

/// How an approval is asked for (`approval` of a rule).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDocument {
    /// How long a pending approval waits for a person, and how long an
    /// approval (or a denial) lasts once decided; default 900.
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(max = 86_400)))]
    pub ttl_seconds: Option<PositiveInteger>,
    /// Shown to the approver and to the agent (default: the rule's `reason`).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(length(max = 2048)))]
    pub reason: Option<String>,
    /// The caller (its grant) may not approve its own call.
    #[serde(default)]
    pub separate_approver: Option<bool>,
}

/// The approval service (approval-service/, its "Filter protocol").
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalServiceDocument {
    /// The Envoy cluster (HTTP/1.1) of the service's filter listener.
    pub cluster: NonEmptyString,
    /// The approvers' page as people open it (`https://approvals.example.com`):
    /// links handed to agents are `<public_url>/approvals/<id>`. Default: the
    /// link the service gives.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(extend("pattern" = r"^https?://[^/?#\s]+(/[^?#\s]*)?$"))
    )]
    pub public_url: Option<NonEmptyString>,
    /// How long a call waits for the service's answer, default 200 ms.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::policy::MAX_SERVICE_TIMEOUT_MS))
    )]
    pub timeout_ms: Option<PositiveInteger>,
    /// What happens when the service fails or times out, default closed.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

/// Where the caller's grant comes from: exactly one of the fields.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Exactly one source, present and not null (null reads as absent).
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("oneOf" = [
        { "required": ["header"], "properties": { "header": { "not": { "type": "null" } } } },
        { "required": ["bearer_tokens"], "properties": { "bearer_tokens": { "not": { "type": "null" } } } },
        { "required": ["jwt_claim"], "properties": { "jwt_claim": { "not": { "type": "null" } } } }
    ]))
)]
pub struct IdentityDocument {
    /// Request header whose value names the caller's grant.
    #[serde(default)]
    pub header: Option<HeaderName>,
    /// SHA-256 (hex) of a bearer token → grant label.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(extend("propertyNames" = { "pattern": "^[0-9a-fA-F]{64}$" }))
    )]
    pub bearer_tokens: Option<UniqueMap<NonEmptyString>>,
    /// A claim of a JWT that Envoy's jwt_authn filter verified.
    #[serde(default)]
    pub jwt_claim: Option<Object<JwtClaimDocument>>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtClaimDocument {
    /// jwt_authn's `payload_in_metadata` name.
    pub provider_metadata: NonEmptyString,
    pub claim: NonEmptyString,
    /// A claim of the same payload naming the caller's role in `roles`.
    #[serde(default)]
    pub role_claim: Option<NonEmptyString>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
// `reason` and `on_deny` are one field under two names: not both (null reads as absent).
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("not" = {
        "required": ["reason", "on_deny"],
        "properties": { "reason": { "type": "string" }, "on_deny": { "type": "string" } }
    }))
)]
pub struct ToolRuleDocument {
    #[serde(default)]
    pub action: Option<Checked<RuleAction>>,
    #[serde(default)]
    pub reason: Option<Checked<String>>,
    /// Another name for `reason`, as PolicyLayer's published policies write it.
    #[serde(default)]
    pub on_deny: Option<Checked<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<Vec<Checked<Object<LimitDocument>>>>")
    )]
    pub limits: Vec<Checked<Object<LimitDocument>>>,
    /// PolicyLayer's shorthand for one window limit: `{"max": 10, "window": 60}`.
    #[serde(default)]
    pub rate_limit: Option<Checked<Object<RateLimitDocument>>>,
    /// Argument conditions that must all hold.
    #[serde(default)]
    pub require: Option<ConditionsDocument>,
    /// Argument conditions any of which denies the call.
    #[serde(default)]
    pub deny_if: Option<ConditionsDocument>,
    /// Argument conditions any of which makes the call wait for a person's approval.
    #[serde(default)]
    pub approve_if: Option<ConditionsDocument>,
    /// How approval is asked for (`"action": "approve"` or `approve_if`).
    #[serde(default)]
    pub approval: Option<Checked<Object<ApprovalDocument>>>,
    /// A meta-tool: the inner tool it runs, named by its arguments, is
    /// decided as if it were called directly.
    #[serde(default)]
    pub invokes: Option<Checked<Object<InvokesDocument>>>,
}

/// Where a meta-tool's arguments name the tool it runs and that tool's arguments.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvokesDocument {
    /// Argument path of the inner tool's name, e.g. `args.name`.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(regex(pattern = r"^args(\.[^.]+)+$"))
    )]
    pub name: NonEmptyString,
    /// Argument path of the inner tool's arguments, e.g. `args.arguments`.
    #[serde(default)]
    pub arguments: Option<NonEmptyString>,
}

/// A prompt's rule: as a tool's; `require`/`deny_if` read the prompt's arguments.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("not" = {
        "required": ["reason", "on_deny"],
        "properties": { "reason": { "type": "string" }, "on_deny": { "type": "string" } }
    }))
)]
pub struct PromptRuleDocument {
    #[serde(default)]
    pub action: Option<Checked<RuleAction>>,
    #[serde(default)]
    pub reason: Option<Checked<String>>,
    #[serde(default)]
    pub on_deny: Option<Checked<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<Vec<Checked<Object<LimitDocument>>>>")
    )]
    pub limits: Vec<Checked<Object<LimitDocument>>>,
    /// PolicyLayer's shorthand for one window limit: `{"max": 10, "window": 60}`.
    #[serde(default)]
    pub rate_limit: Option<Checked<Object<RateLimitDocument>>>,
    #[serde(default)]
    pub require: Option<ConditionsDocument>,
    #[serde(default)]
    pub deny_if: Option<ConditionsDocument>,
    #[serde(default)]
    pub approve_if: Option<ConditionsDocument>,
    #[serde(default)]
    pub approval: Option<Checked<Object<ApprovalDocument>>>,
}

/// A rule for the tools whose listed annotations say so: it can only make
/// a decision stricter (deny, or add limits).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
// A rule that does something: `action` or `limits`.
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("anyOf" = [{ "required": ["action"] }, { "required": ["limits"] }]))
)]
pub struct AnnotationRuleDocument {
    /// The hint's value that makes the rule apply (default `true`).
    #[serde(default)]
    pub is: Option<bool>,
    /// `deny` (the only action: annotations cannot allow).
    #[serde(default)]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["deny", null])))]
    pub action: Option<Checked<Action>>,
    #[serde(default)]
    pub reason: Option<Checked<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<Vec<Checked<Object<LimitDocument>>>>")
    )]
    pub limits: Vec<Checked<Object<LimitDocument>>>,
}

/// A resource's rule: allow, deny or approve, a reason, limits.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend("not" = {
        "required": ["reason", "on_deny"],
        "properties": { "reason": { "type": "string" }, "on_deny": { "type": "string" } }
    }))
)]
pub struct ResourceRuleDocument {
    #[serde(default)]
    pub action: Option<Checked<RuleAction>>,
    #[serde(default)]
    pub reason: Option<Checked<String>>,
    #[serde(default)]
    pub on_deny: Option<Checked<String>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<Vec<Checked<Object<LimitDocument>>>>")
    )]
    pub limits: Vec<Checked<Object<LimitDocument>>>,
    /// PolicyLayer's shorthand for one window limit: `{"max": 10, "window": 60}`.
    #[serde(default)]
    pub rate_limit: Option<Checked<Object<RateLimitDocument>>>,
    #[serde(default)]
    pub approval: Option<Checked<Object<ApprovalDocument>>>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllToolsDocument {
    #[serde(default, deserialize_with = "null_as_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<Vec<Checked<Object<LimitDocument>>>>")
    )]
    pub limits: Vec<Checked<Object<LimitDocument>>>,
}

/// PolicyLayer's `rate_limit` block: one window limit whose counter is the
/// rule's own (named by its JSON pointer unless `counter` names one), per
/// grant unless `scope` says otherwise.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDocument {
    /// Calls a caller may make per window.
    pub max: PositiveInteger,
    /// The fixed window the count resets with.
    pub window: Window,
    /// Default `grant`.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// Default: the rule's JSON pointer (`/tools/asyncExecuteCode/rate_limit`).
    #[serde(default)]
    pub counter: Option<NonEmptyString>,
    #[serde(default)]
    pub store: Option<CounterStore>,
}

/// One limit: a rate or budget (`window` and `max`, each call taking `cost`
/// units or `cost_from` an argument), or a cap on calls in flight
/// (`concurrent`), counted per `scope` (and per value of `per`).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// Either a window limit (window and max, no concurrent or lease) or a
// concurrency limit (concurrent, no window, max or cost); cost and cost_from
// not both. null reads as absent.
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(extend(
        "oneOf" = [
            {
                "required": ["window", "max"],
                "properties": {
                    "window": { "not": { "type": "null" } },
                    "max": { "not": { "type": "null" } },
                    "concurrent": { "type": "null" },
                    "lease_seconds": { "type": "null" }
                }
            },
            {
                "required": ["concurrent"],
                "properties": {
                    "concurrent": { "not": { "type": "null" } },
                    "window": { "type": "null" },
                    "max": { "type": "null" },
                    "cost": { "type": "null" },
                    "cost_from": { "type": "null" }
                }
            }
        ],
        "not" = {
            "required": ["cost", "cost_from"],
            "properties": { "cost": { "type": "integer" }, "cost_from": { "type": "string" } }
        }
    ))
)]
pub struct LimitDocument {
    pub counter: NonEmptyString,
    /// The fixed window the count resets with (with `max`).
    #[serde(default)]
    pub window: Option<Window>,
    /// Units a caller may take per window: calls, or the sum of their costs.
    #[serde(default)]
    pub max: Option<PositiveInteger>,
    /// At most this many calls in flight at once (instead of `window` and `max`).
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::policy::MAX_CONCURRENT))
    )]
    pub concurrent: Option<PositiveInteger>,
    /// How long a `concurrent` slot outlives a call that never ends (a
    /// crashed worker or replica), in seconds; default 300.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::policy::MAX_LEASE_SECONDS))
    )]
    pub lease_seconds: Option<PositiveInteger>,
    pub scope: Scope,
    /// Where the count lives: this Envoy's shared data, or the fleet-wide
    /// rate-limit service.
    #[serde(default)]
    pub store: Option<CounterStore>,
    /// Units each call takes (default 1); at most `max`.
    #[serde(default)]
    pub cost: Option<PositiveInteger>,
    /// Units each call takes, read from an argument (`args.rows`): a
    /// non-negative integer of at most `max`.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(regex(pattern = r"^args(\.[^.]+)+$"))
    )]
    pub cost_from: Option<NonEmptyString>,
    /// Count apart per value of this argument (`args.repo`), within the scope.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(regex(pattern = r"^args(\.[^.]+)+$"))
    )]
    pub per: Option<NonEmptyString>,
}

/// Where a limit's count lives.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "lowercase"))]
pub enum CounterStore {
    /// Envoy's shared data: exact across the workers of one Envoy (default).
    #[default]
    Local,
    /// The rate-limit service in `rate_limit_service`: one count across every
    /// Envoy that uses it.
    Global,
}

string_enum!(CounterStore { Local = "local", Global = "global" });

/// The Envoy rate-limit service (envoy.service.ratelimit.v3) global limits use.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitServiceDocument {
    /// The Envoy cluster (gRPC, HTTP/2) of the service.
    pub cluster: NonEmptyString,
    /// Rate-limit domain of the requests, default `mcp-policy`.
    #[serde(default)]
    pub domain: Option<NonEmptyString>,
    /// How long a decision may wait for the service, default 50 ms.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(range(max = crate::policy::MAX_SERVICE_TIMEOUT_MS))
    )]
    pub timeout_ms: Option<PositiveInteger>,
    /// What happens when the service fails or times out, default closed.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "lowercase"))]
pub enum Scope {
    /// Per grant.
    Grant,
    /// Per `Mcp-Session-Id` (without one: under the grant, apart).
    Session,
    /// Across all callers.
    Global,
    /// Per role: the callers of one role together (without a role: under
    /// the grant, apart).
    Role,
}

string_enum!(Scope { Grant = "grant", Session = "session", Global = "global", Role = "role" });

/// A fixed window length in seconds: a name or a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(pub u64);

/// The longest window: 2^53 - 1 seconds, the largest integer every JSON
/// client reads exactly (a refusal's `retry_after_seconds` can be nearly a
/// window). A window longer than the time since the epoch never resets: a
/// budget.
pub const MAX_WINDOW_SECONDS: u64 = (1 << 53) - 1;

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct WindowVisitor;
        impl<'de> Visitor<'de> for WindowVisitor {
            type Value = Window;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""second", "minute", "hour", "day" or a positive number of seconds"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Window, E> {
                match v {
                    "second" => Ok(Window(1)),
                    "minute" => Ok(Window(60)),
                    "hour" => Ok(Window(3_600)),
                    "day" => Ok(Window(86_400)),
                    other => Err(E::custom(format!(
                        "unknown window {other:?} (use \"second\", \"minute\", \"hour\", \"day\" or a positive number of seconds)"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Window, E> {
                if v == 0 {
                    Err(E::custom(
                        "window must be a positive number of seconds, got 0",
                    ))
                } else if v > MAX_WINDOW_SECONDS {
                    Err(E::custom(format!(
                        "window must be at most {MAX_WINDOW_SECONDS} seconds (2^53 - 1: the largest integer a JSON client reads exactly), got {v}"
                    )))
                } else {
                    Ok(Window(v))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Window, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "window must be a positive number of seconds, got {v}"
                    ))),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Window, A::Error> {
                refuse_array(seq, &self)
            }
        }
        deserializer.deserialize_any(WindowVisitor)
    }
}

/// An integer of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositiveInteger(pub u64);

impl<'de> Deserialize<'de> for PositiveInteger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PositiveVisitor;
        impl Visitor<'_> for PositiveVisitor {
            type Value = PositiveInteger;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PositiveInteger, E> {
                if v == 0 {
                    Err(E::custom("must be a positive integer, got 0"))
                } else {
                    Ok(PositiveInteger(v))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PositiveInteger, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("must be a positive integer, got {v}"))),
                }
            }
        }
        deserializer.deserialize_u64(PositiveVisitor)
    }
}

/// A name that must not be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmptyString(pub String);

impl<'de> Deserialize<'de> for NonEmptyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_string(deserializer, |text| {
            if text.is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(NonEmptyString(text))
            }
        })
    }
}

/// An HTTP header name (RFC 9110 token), stored lowercase as Envoy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderName(pub String);

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_string(deserializer, |text| {
            let is_token_char =
                |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if text.is_empty() {
                Err("header name must not be empty".to_string())
            } else if !text.chars().all(is_token_char) {
                Err(format!("invalid header name {text:?}"))
            } else {
                Ok(HeaderName(text.to_ascii_lowercase()))
            }
        })
    }
}

/// A JSON object read into a map that refuses empty and duplicate keys:
/// plain maps keep the last duplicate silently, which would let one rule hide
/// another.
#[derive(Debug)]
pub struct UniqueMap<V>(pub BTreeMap<String, V>);

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueMap<V>, A::Error> {
                let mut map = BTreeMap::new();
                while let Some(key) = access.next_key::<String>()? {
                    if key.is_empty() {
                        return Err(de::Error::custom("empty name"));
                    }
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate name {key:?}")));
                    }
                    let value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(UniqueMap(map))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(std::marker::PhantomData))
    }
}

/// JSON Schema of the types above whose `Deserialize` is written by hand, so
/// the schema says what their visitors accept (`mcp-policy schema`). Native
/// only: the module Envoy loads has no use for a schema.
#[cfg(not(target_arch = "wasm32"))]
mod json_schema {
    use std::borrow::Cow;

    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

    use super::{
        Checked, HeaderName, NonEmptyString, Object, PositiveInteger, UniqueMap, Version, Window,
    };

    /// A part read on its own accepts what `T` does.
    impl<T: JsonSchema> JsonSchema for Checked<T> {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            T::schema_name()
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            generator.subschema_for::<T>()
        }
    }

    /// The wrapper only refuses arrays, which the object schema of `T` already does.
    impl<T: JsonSchema> JsonSchema for Object<T> {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            T::schema_name()
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            generator.subschema_for::<T>()
        }
    }

    impl JsonSchema for Version {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Version".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "The policy format version; only \"1\" exists.",
                "const": "1"
            })
        }
    }

    impl JsonSchema for Window {
        fn schema_name() -> Cow<'static, str> {
            "Window".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "Fixed window length, aligned to the Unix epoch: a name or a positive number of seconds.",
                "oneOf": [
                    { "enum": ["second", "minute", "hour", "day"] },
                    { "type": "integer", "minimum": 1, "maximum": super::MAX_WINDOW_SECONDS }
                ]
            })
        }
    }

    impl JsonSchema for PositiveInteger {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "PositiveInteger".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "integer", "minimum": 1 })
        }
    }

    impl JsonSchema for NonEmptyString {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "NonEmptyString".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "minLength": 1 })
        }
    }

    impl JsonSchema for HeaderName {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "HeaderName".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            // RFC 9110 token characters, as the visitor checks them.
            json_schema!({
                "description": "An HTTP header name (read case-insensitively).",
                "type": "string",
                "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
            })
        }
    }

    /// Duplicate names are refused too, but a schema sees the parsed object,
    /// where a duplicate is already gone.
    impl<V: JsonSchema> JsonSchema for UniqueMap<V> {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            format!("UniqueMap_{}", V::schema_name()).into()
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "type": "object",
                "additionalProperties": generator.subschema_for::<V>(),
                "propertyNames": { "minLength": 1 }
            })
        }
    }
}
