//! Reads one MCP JSON-RPC message from a request body and classifies it: a
//! `tools/call` the policy must decide, anything else that passes, or a
//! message the gate refuses to forward because it cannot read it the way the
//! server would.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

mod look_alike;
pub mod methods;
pub(crate) mod scan;

pub use methods::{TOOLS_CALL, TOOLS_LIST};

/// A message read from a request body.
#[derive(Debug)]
pub enum Message<'a> {
    /// A `tools/call` request: decided by the policy.
    ToolCall(ToolCall<'a>),
    /// Any other request, notification or response.
    Other {
        method: Option<Cow<'a, str>>,
        id: Option<Value>,
        /// `params.name` and `params.uri` when they are strings: what the
        /// `Mcp-Name` header must mirror.
        named: Named<'a>,
        /// The whole (validated) body, for the members only some methods need
        /// ([`Params::read`]).
        body: &'a [u8],
    },
}

/// The `params` members the gate reads for methods other than `tools/call`,
/// read on demand from a body the single pass has already validated (no
/// duplicate or case-variant members), so serde reads it as the server would.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub name: Option<String>,
    pub uri: Option<String>,
    /// `params.arguments` as its raw JSON text (prompts: a map of strings).
    pub arguments: Option<Box<RawValue>>,
    /// `completion/complete`'s `ref`: its `type` and the name or URI it names.
    pub reference: Option<(String, Option<String>)>,
    pub task_id: Option<String>,
    /// `params.requestState` of a multi-round-trip retry (2026-07-28).
    pub request_state: Option<String>,
    /// `params.task` was given: the call asks to run as a task (2025-11-25).
    pub wants_task: bool,
    /// `params.notifications.resourceSubscriptions` (2026-07-28 `subscriptions/listen`):
    /// each entry's URI (a string, or an object's `uri`); `None` for an entry
    /// that names none.
    pub resource_subscriptions: Vec<Option<String>>,
    /// `params.notifications.taskIds`.
    pub task_ids: Vec<Option<String>>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`.
    pub protocol_version: Option<String>,
    /// `params._meta["io.modelcontextprotocol/clientCapabilities"]`.
    pub client_capabilities: Option<Value>,
    /// What is wrong with `ref` or `notifications`, if anything: a member
    /// spelt in another letter case than the one the gate reads (a
    /// case-insensitive decoder upstream would read it instead), or a value
    /// of the wrong shape (a server could read a string of task ids as one).
    pub malformed: Option<String>,
}

/// The members of `ref` and `notifications` (and of their entries) the gate
/// reads: a letter-case variant of one is refused, as at the top.
const REF_MEMBERS: [&str; 3] = ["type", "name", "uri"];
const NOTIFICATIONS_MEMBERS: [&str; 2] = ["resourceSubscriptions", "taskIds"];

/// Why an object read by the gate is refused: a member spelt as a guarded
/// one only in another letter case.
fn case_guard(object: &serde_json::Map<String, Value>, members: &[&'static str]) -> Option<String> {
    object.keys().find_map(|key| case_refusal(key, members))
}

/// Why a member named `key` is refused where `members` are read: it spells
/// one of them in another letter case, or with what a lax reader drops (a
/// NUL and what follows it, blanks, control or invisible characters:
/// `"name\u0000"`, `"\u200bname"`).
fn case_refusal(key: &str, members: &[&'static str]) -> Option<String> {
    // Where nothing is guarded (inside arguments, at any depth): nothing.
    if members.is_empty() {
        return None;
    }
    if let Some(member) = case_variant_of(key, members) {
        return Some(format!(
            "member {key:?} differs from {member:?} only in letter case"
        ));
    }
    // Plain ASCII has nothing to drop: the usual key is done above.
    if key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return None;
    }
    let loose = loosened(key);
    members
        .iter()
        .find(|member| loose.eq_ignore_ascii_case(member))
        .map(|member| {
            format!("member {key:?} differs from {member:?} only in characters a server may drop")
        })
}

/// What is wrong with `notifications` of `subscriptions/listen`: an object
/// whose `resourceSubscriptions` and `taskIds` are arrays of strings, or of
/// objects naming theirs by `uri` / `taskId`.
fn notifications_problem(notifications: &Value) -> Option<String> {
    let Value::Object(object) = notifications else {
        return Some("`notifications` must be an object".to_string());
    };
    if let Some(why) = case_guard(object, &NOTIFICATIONS_MEMBERS) {
        return Some(format!("notifications: {why}"));
    }
    for (list, member) in [("resourceSubscriptions", "uri"), ("taskIds", "taskId")] {
        let Some(entries) = object.get(list) else {
            continue;
        };
        let Value::Array(entries) = entries else {
            return Some(format!("`notifications.{list}` must be an array"));
        };
        for entry in entries {
            match entry {
                Value::String(_) => {}
                Value::Object(entry) => {
                    if let Some(why) = case_guard(entry, &[member]) {
                        return Some(format!("notifications.{list}: {why}"));
                    }
                }
                _ => {
                    return Some(format!(
                        "`notifications.{list}` entries must be strings or objects"
                    ))
                }
            }
        }
    }
    None
}

/// The members of `params` the gate reads, each as its raw JSON text, in
/// one pass over the body: every other member (a tool call's `arguments`
/// included) is skipped without being read into a value, and `params` that
/// is not an object has none of them.
#[derive(Default)]
struct Members<'a> {
    name: Option<&'a RawValue>,
    uri: Option<&'a RawValue>,
    arguments: Option<&'a RawValue>,
    reference: Option<&'a RawValue>,
    task_id: Option<&'a RawValue>,
    request_state: Option<&'a RawValue>,
    task: Option<&'a RawValue>,
    notifications: Option<&'a RawValue>,
    meta: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = Members<'a>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("any JSON value")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Members::default();
                // Keys borrowed from the body (serde's `Cow` would copy each).
                while let Some(BorrowedKey(key)) = map.next_key::<BorrowedKey<'de>>()? {
                    let slot = match key.as_ref() {
                        "name" => &mut members.name,
                        "uri" => &mut members.uri,
                        "arguments" => &mut members.arguments,
                        "ref" => &mut members.reference,
                        "taskId" => &mut members.task_id,
                        "requestState" => &mut members.request_state,
                        "task" => &mut members.task,
                        "notifications" => &mut members.notifications,
                        "_meta" => &mut members.meta,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // The body was validated: a member is not given twice.
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(members)
            }

            fn visit_seq<S: de::SeqAccess<'de>>(self, mut seq: S) -> Result<Members<'a>, S::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Members::default())
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }

            fn visit_unit<E: de::Error>(self) -> Result<Members<'a>, E> {
                Ok(Members::default())
            }
        }

        deserializer.deserialize_any(MembersVisitor(std::marker::PhantomData))
    }
}

impl Params {
    /// Reads `params` of a validated body. Only the members kept here are
    /// read into values; the rest (a tool call's `arguments`, however large)
    /// are skipped, and `arguments` is kept as its raw text.
    pub fn read(body: &[u8]) -> Result<Params, String> {
        #[derive(Deserialize)]
        struct Envelope<'a> {
            #[serde(default, borrow)]
            params: Members<'a>,
        }
        let envelope: Envelope = serde_json::from_slice(body).map_err(|err| err.to_string())?;
        let members = envelope.params;
        // A member's value, only when it is a small one the gate reads
        // whole (never `arguments`).
        let value = |raw: Option<&RawValue>| -> Option<Value> {
            raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        };
        let text = |raw: Option<&RawValue>| -> Option<String> {
            raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        };
        let value_text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
        let names = |value: Option<&Value>, key: &str| -> Vec<Option<String>> {
            value
                .and_then(Value::as_array)
                .map(|entries| {
                    entries
                        .iter()
                        .map(|entry| match entry {
                            Value::String(text) => Some(text.clone()),
                            Value::Object(object) => value_text(object.get(key)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let reference_value = value(members.reference);
        let notifications = value(members.notifications);
        let malformed = match &reference_value {
            Some(Value::Object(reference)) => {
                case_guard(reference, &REF_MEMBERS).map(|why| format!("ref: {why}"))
            }
            _ => None,
        }
        .or_else(|| notifications.as_ref().and_then(notifications_problem));
        let reference = reference_value.and_then(|reference| {
            let reference = reference.as_object()?;
            let kind = value_text(reference.get("type")).unwrap_or_default();
            // A prompt is named by `name`, a resource template by `uri`
            // (servers look it up by that alone): never the other member,
            // which a caller could set to an allowed decoy.
            let member = if kind == "ref/resource" {
                "uri"
            } else {
                "name"
            };
            Some((kind, value_text(reference.get(member))))
        });
        let meta = value(members.meta);
        Ok(Params {
            name: text(members.name),
            uri: text(members.uri),
            arguments: members.arguments.map(ToOwned::to_owned),
            reference,
            task_id: text(members.task_id),
            request_state: text(members.request_state),
            wants_task: members.task.is_some_and(|task| task.get().trim() != "null"),
            resource_subscriptions: names(
                notifications
                    .as_ref()
                    .and_then(|n| n.get("resourceSubscriptions")),
                "uri",
            ),
            task_ids: names(
                notifications.as_ref().and_then(|n| n.get("taskIds")),
                "taskId",
            ),
            protocol_version: value_text(meta.as_ref().and_then(|m| m.get(META_PROTOCOL_VERSION))),
            client_capabilities: meta
                .as_ref()
                .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                .cloned(),
            malformed,
        })
    }

    /// The top-level keys of `arguments` when it is an object, sorted.
    pub fn argument_keys(&self) -> Vec<String> {
        self.arguments
            .as_ref()
            .and_then(|raw| {
                serde_json::from_str::<std::collections::BTreeMap<String, IgnoredAny>>(raw.get())
                    .ok()
            })
            .map(|keys| keys.into_keys().collect())
            .unwrap_or_default()
    }
}

/// `_meta` keys of MCP 2026-07-28 requests.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The string members of `params` that name what a method addresses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Named<'a> {
    pub name: Option<Cow<'a, str>>,
    pub uri: Option<Cow<'a, str>>,
    pub present: Present,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, if a string.
    pub meta_version: Option<Cow<'a, str>>,
}

#[derive(Debug)]
pub struct ToolCall<'a> {
    /// The request id, a JSON string or integer, echoed in any answer.
    pub id: Value,
    pub name: Cow<'a, str>,
    /// Top-level argument names, in order (values are never logged).
    pub argument_keys: Vec<Cow<'a, str>>,
    /// The whole body, from which `arguments` is read when a rule needs it.
    body: &'a [u8],
    has_arguments: bool,
    /// Which optional `params` members the call carries.
    pub present: Present,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, if a string.
    pub meta_version: Option<Cow<'a, str>>,
}

impl<'a> ToolCall<'a> {
    /// The raw `arguments` object, if present. Read on demand with a second
    /// pass over the (already validated) body: only argument rules need it,
    /// and most calls have none.
    pub fn arguments(&self) -> Result<Option<&'a RawValue>, String> {
        if !self.has_arguments {
            return Ok(None);
        }
        let envelope: RawEnvelope<'a> =
            serde_json::from_slice(self.body).map_err(|err| err.to_string())?;
        let Some(params) = envelope.params else {
            return Ok(None);
        };
        let params: RawParams<'a> =
            serde_json::from_str(params.get()).map_err(|err| err.to_string())?;
        Ok(params.arguments)
    }
}

/// Why a body is refused before any policy is consulted.
#[derive(Debug, Clone, PartialEq)]
pub enum Invalid {
    /// Not JSON at all (JSON-RPC -32700).
    Malformed { detail: String },
    /// A JSON array: a batch. MCP does not use them and the gate does not
    /// split them, so none of it is forwarded (-32600).
    Batch,
    /// Not a valid JSON-RPC request object (-32600).
    Request { id: Value, detail: String },
    /// A `tools/call` whose params are unusable (-32602).
    Params { id: Value, detail: String },
}

/// Default for the deepest nesting of arrays and objects accepted.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// serde_json refuses nesting of 128 and more itself; a policy cannot raise the limit past it.
pub const MAX_DEPTH_LIMIT: usize = 127;
/// Longest tool name accepted (the MCP specification's recommendation).
pub const MAX_TOOL_NAME_LENGTH: usize = 128;

/// Parses one request body, nesting at most `DEFAULT_MAX_DEPTH` deep.
pub fn parse(body: &[u8]) -> Result<Message<'_>, Invalid> {
    parse_with_depth(body, DEFAULT_MAX_DEPTH)
}

/// Parses one request body. Before anything is read for the decision the
/// whole body is checked: valid UTF-8 and escapes, no member given twice in
/// any object at any depth, nesting at most `max_depth`, and no member that
/// differs from one the gate reads only in letter case. Anything the gate
/// could read differently from the server behind it is refused here.
pub fn parse_with_depth(body: &[u8], max_depth: usize) -> Result<Message<'_>, Invalid> {
    parse_strictly(body, max_depth).map_err(|invalid| match invalid {
        // Refused for its structure or a member's type: still answered with
        // its id when the id is beyond doubt.
        Invalid::Request {
            id: Value::Null,
            detail,
        } => Invalid::Request {
            id: readable_id(body).unwrap_or(Value::Null),
            detail,
        },
        other => other,
    })
}

fn parse_strictly(body: &[u8], max_depth: usize) -> Result<Message<'_>, Invalid> {
    let first = body
        .iter()
        .copied()
        .find(|byte| !byte.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            // Refuse a batch only if it is JSON; a broken array is malformed.
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(Invalid::Batch),
                Err(err) => Err(Invalid::Malformed {
                    detail: err.to_string(),
                }),
            };
        }
        Some(b'{') => {}
        _ => {
            return match serde_json::from_slice::<IgnoredAny>(body) {
                Ok(_) => Err(Invalid::Request {
                    id: Value::Null,
                    detail: "a JSON-RPC message must be an object".to_string(),
                }),
                Err(err) => Err(Invalid::Malformed {
                    detail: err.to_string(),
                }),
            };
        }
    }

    let envelope = read_envelope(body, max_depth)?;
    let id = match envelope.id {
        Some(Seen::Compound(_)) => Some(compound_id(body)?),
        Some(seen) => Some(seen.into_id()),
        None => None,
    };
    let jsonrpc = text_member(envelope.jsonrpc, "jsonrpc")?;
    let method = text_member(envelope.method, "method")?;

    if method.as_deref() != Some(TOOLS_CALL) {
        let named = match envelope.params {
            Some(Seen::Params(params)) => Named {
                name: params.name.and_then(Seen::into_text),
                uri: params.uri.and_then(Seen::into_text),
                present: params.present,
                meta_version: params.meta_version,
            },
            _ => Named::default(),
        };
        return Ok(Message::Other {
            method,
            id,
            named,
            body,
        });
    }

    let id = match id {
        Some(id @ Value::String(_)) => id,
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => Value::Number(number),
        Some(other) => {
            return Err(Invalid::Request {
                id: Value::Null,
                detail: format!("tools/call id must be a string or an integer, got {other}"),
            })
        }
        None => {
            return Err(Invalid::Request {
                id: Value::Null,
                detail: "tools/call must have an id".to_string(),
            })
        }
    };
    if jsonrpc.as_deref() != Some("2.0") {
        return Err(Invalid::Request {
            id,
            detail: "jsonrpc must be \"2.0\"".to_string(),
        });
    }
    let params = match envelope.params {
        None | Some(Seen::Null) => {
            return Err(Invalid::Params {
                id,
                detail: "tools/call must have params".to_string(),
            })
        }
        Some(Seen::Params(params)) => params,
        // An array is not read as the name (`["deleteWorkspace"]`): MCP
        // params are objects, and nothing else is read as one.
        Some(_) => {
            return Err(Invalid::Params {
                id,
                detail: "params must be an object".to_string(),
            })
        }
    };
    let present = params.present;
    let meta_version = params.meta_version;
    let name = match params.name {
        Some(Seen::Text(name)) => name,
        None => {
            return Err(Invalid::Params {
                id,
                detail: "missing field `name`".to_string(),
            })
        }
        Some(other) => {
            return Err(Invalid::Params {
                id,
                detail: format!("name must be a string, got {}", other.kind()),
            })
        }
    };
    let (argument_keys, has_arguments) = match params.arguments {
        None | Some(Seen::Null) => (Vec::new(), false),
        Some(Seen::Keys(keys)) => (keys, true),
        Some(other) => {
            return Err(Invalid::Params {
                id,
                detail: format!("arguments must be an object, got {}", other.kind()),
            })
        }
    };
    if let Err(detail) = check_tool_name(&name) {
        return Err(Invalid::Params { id, detail });
    }
    Ok(Message::ToolCall(ToolCall {
        id,
        name,
        argument_keys,
        body,
        has_arguments,
        present,
        meta_version,
    }))
}

/// A member read as text: absent and `null` are `None`, a string is
/// `Some`, anything else makes the message invalid.
fn text_member<'a>(seen: Option<Seen<'a>>, member: &str) -> Result<Option<Cow<'a, str>>, Invalid> {
    match seen {
        None | Some(Seen::Null) => Ok(None),
        Some(Seen::Text(text)) => Ok(Some(text)),
        Some(other) => Err(Invalid::Request {
            id: Value::Null,
            detail: format!("{member} must be a string, got {}", other.kind()),
        }),
    }
}

/// An `id` that is an array or an object (not JSON-RPC, but echoed as sent):
/// read again as a value. Rare, so the single pass does not build it.
fn compound_id(body: &[u8]) -> Result<Value, Invalid> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Value,
    }
    serde_json::from_slice::<IdOnly>(body)
        .map(|only| only.id)
        .map_err(|err| Invalid::Malformed {
            detail: err.to_string(),
        })
}

/// Why a `Content-Type`'s charset is not taken: the gate reads the body as
/// UTF-8; a server that honours the charset (Express's `express.json()`
/// decodes any `utf-*`: with UTF-7, `"+AG4-ame"` is `"name"`) would read
/// other members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset<'a> {
    /// A charset other than UTF-8, as written (quotes included).
    Foreign(&'a str),
    /// `charset` written more than once: parsers disagree on which counts.
    Twice,
}

/// The charset a `Content-Type` names when it is not UTF-8 (`None`: UTF-8,
/// or none named, which for JSON is UTF-8). A `charset` written twice, or
/// spelled so that parsers may disagree on it (a `;` inside quotes), is
/// refused as well.
pub fn unaccepted_charset(content_type: &str) -> Option<Charset<'_>> {
    let mut named = content_type
        .split(';')
        .skip(1)
        .filter_map(|parameter| parameter.split_once('='))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim());
    let charset = named.next()?;
    if named.next().is_some() {
        return Some(Charset::Twice);
    }
    let unquoted = charset
        .strip_prefix('"')
        .and_then(|value| value.strip_suffix('"'))
        .unwrap_or(charset);
    let utf8 = unquoted.eq_ignore_ascii_case("utf-8") || unquoted.eq_ignore_ascii_case("utf8");
    (!utf8).then_some(Charset::Foreign(charset))
}

/// Whether a `Content-Type` value is several joined by commas. The field
/// holds one media type, and a comma is in none outside a quoted parameter
/// value; Envoy joins a `Content-Type` sent twice into one value with a
/// comma (it is one of the headers its header map keeps once), so this is
/// how the filter sees the header given twice. A server reading the raw
/// request may take either.
pub fn joins_media_types(content_type: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for byte in content_type.bytes() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return true,
            _ => {}
        }
    }
    // A quote left open: the comma inside it may be where Envoy joined two
    // values (`x="a` and `text/plain`); a parser may end the quote anywhere.
    quoted && content_type.contains(',')
}

/// Tool names the gate accepts: the MCP specification's recommended
/// characters (`A-Z a-z 0-9 _ - .` and `/`), 1 to 128 of them. Anything else
/// (control characters, NUL, look-alike letters from other scripts) could
/// name a tool the policy does not see, so it is refused.
pub fn check_tool_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    if name.is_empty() {
        Err("tool name is empty".to_string())
    } else if name.chars().count() > MAX_TOOL_NAME_LENGTH {
        Err(format!(
            "tool name is longer than {MAX_TOOL_NAME_LENGTH} characters"
        ))
    } else if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        Err(format!(
            "tool name {name:?} has {bad:?}; tool names use A-Z a-z 0-9 _ - . /"
        ))
    } else {
        Ok(())
    }
}

/// Prompt names the gate accepts. MCP does not restrict their characters
/// as it does tools' (any language may name a prompt), but a name a server
/// could take for another is refused: blanks at either end (trimmed by
/// some), control characters, and every character Unicode normalisation
/// (NFKC) changes or that is invisible: full-width and mathematical letters
/// (`ａdmin`, `𝐚dmin`), circled letters, ligatures, superscripts, format
/// characters (zero-width spaces, joiners, direction marks, soft hyphens,
/// byte order marks), variation selectors, Hangul fillers, tags
/// ([`look_alike::LOOK_ALIKE`], generated from Unicode's tables).
pub fn check_prompt_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("prompt name is empty".to_string());
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Err(format!("prompt name {name:?} begins or ends with a blank"));
    }
    match name.chars().find(|&c| c.is_control() || is_look_alike(c)) {
        Some(bad) => Err(format!(
            "prompt name {name:?} has {bad:?}, which a server may drop or read as another character"
        )),
        None => Ok(()),
    }
}

/// A name as a lax reader may take it: up to its first NUL (a reader of C
/// strings stops there), full-width forms read as the ASCII they stand for
/// (`ｔ` is `t`, as Unicode normalisation reads it), letter case folded as
/// Unicode folds it (`ſ` is `s`), without blanks, control characters, or
/// other characters that are invisible or that normalisation changes,
/// wherever they are (those are dropped, not mapped: the module carries no
/// normalisation tables). Two names equal so are one to a reader that
/// drops or folds as these rules do.
pub fn loosened(name: &str) -> String {
    let cut = name.split('\0').next().unwrap_or(name);
    let widened: String;
    let cut = if cut.chars().any(|c| ('\u{ff01}'..='\u{ff5e}').contains(&c)) {
        widened = cut
            .chars()
            .map(|c| match c {
                '\u{ff01}'..='\u{ff5e}' => char::from_u32(u32::from(c) - 0xfee0).unwrap_or(c),
                c => c,
            })
            .collect();
        widened.as_str()
    } else {
        cut
    };
    crate::policy::fold_case(cut)
        .chars()
        .filter(|&c| !(c.is_whitespace() || c.is_control() || is_look_alike(c)))
        .collect()
}

/// Whether Unicode normalisation changes `c`, or it is invisible.
fn is_look_alike(c: char) -> bool {
    let c = u32::from(c);
    if c < 0xA0 {
        return false;
    }
    let table = &look_alike::LOOK_ALIKE;
    let after = table.partition_point(|&(low, _)| low <= c);
    after > 0 && c <= table[after - 1].1
}

/// Members of the message the gate reads, and of `params`: a member that
/// differs from one of these only in letter case (`"Method"`, `"NAME"`, or
/// `"argumentſ"`, which Unicode folds to `arguments`) would be ignored here
/// but matched by case-insensitive decoders upstream (Go's encoding/json).
const ENVELOPE_MEMBERS: [&str; 4] = ["jsonrpc", "id", "method", "params"];
const PARAMS_MEMBERS: [&str; 8] = [
    "name",
    "arguments",
    "uri",
    "ref",
    "taskId",
    "requestState",
    "notifications",
    "task",
];

pub(crate) fn case_variant_of(key: &str, members: &[&'static str]) -> Option<&'static str> {
    if key.is_ascii() {
        // The usual case, without allocating (measured: the Unicode path
        // cost a fifth of parsing a 1 KiB call).
        return members
            .iter()
            .copied()
            .find(|member| key != *member && key.eq_ignore_ascii_case(member));
    }
    // A non-ASCII key is a variant of an ASCII member when its characters'
    // Unicode case mappings spell the member: only the characters in
    // `ascii_spelling` map to ASCII at all (tested against the standard
    // library's mappings over every code point). Spelled out, so the module
    // carries no Unicode case tables for this one check.
    members.iter().copied().find(|member| {
        let mut expected = member.bytes().map(|b| b.to_ascii_uppercase());
        for c in key.chars() {
            let mut ascii = [0u8; 1];
            let spelled = if c.is_ascii() {
                c.to_ascii_uppercase().encode_utf8(&mut ascii).as_bytes()
            } else if let Some(spelled) = ascii_spelling(c) {
                spelled.as_bytes()
            } else {
                return false;
            };
            if !spelled.iter().all(|b| expected.next() == Some(*b)) {
                return false;
            }
        }
        expected.next().is_none()
    })
}

/// The uppercase ASCII spelling of a non-ASCII character whose Unicode case
/// mapping (upper; lower for KELVIN SIGN) is ASCII letters; `None` for
/// every other character.
pub(crate) fn ascii_spelling(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{df}' => "SS",                // ß
        '\u{131}' => "I",                // ı
        '\u{17f}' => "S",                // ſ
        '\u{212a}' => "K",               // KELVIN SIGN, whose lowercase is k
        '\u{fb00}' => "FF",              // ﬀ
        '\u{fb01}' => "FI",              // ﬁ
        '\u{fb02}' => "FL",              // ﬂ
        '\u{fb03}' => "FFI",             // ﬃ
        '\u{fb04}' => "FFL",             // ﬄ
        '\u{fb05}' | '\u{fb06}' => "ST", // ﬅ ﬆ
        _ => return None,
    })
}

/// Reads the whole body in one pass (see [`parse_with_depth`]): checks the
/// structure everywhere and keeps what the gate reads on the way.
fn read_envelope(body: &[u8], max_depth: usize) -> Result<Envelope<'_>, Invalid> {
    // The usual body takes the fast path; anything it does not vouch for
    // (an error of any kind, an escaped member name, ...) is read again by
    // serde_json, whose verdict and error message stand.
    match scan::read(body, max_depth) {
        Some(envelope) => Ok(envelope),
        None => walk(body, max_depth),
    }
}

/// Whether the fast path vouches for `body` (`Ok(true)`), leaves it to the
/// walk (`Ok(false)`), or accepted it where the walk reads it otherwise
/// (`Err`, with both readings): for the unit tests and the fuzz target.
#[doc(hidden)]
pub fn fast_path_agrees(body: &[u8], max_depth: usize) -> Result<bool, String> {
    let Some(fast) = scan::read(body, max_depth) else {
        return Ok(false);
    };
    match walk(body, max_depth) {
        Ok(walked) if walked == fast => Ok(true),
        walked => Err(format!("fast path: {fast:?}; walk: {walked:?}")),
    }
}

/// The `id` of a message refused for its structure (a member given twice,
/// in another letter case, nested too deep) when it can still be read
/// beyond doubt, so that the client can match the refusal with its
/// request: a top-level `id` given once, with no member a loose reader
/// takes for it (`"ID"`, `"id\u0000"`), a string or an integer. `None`
/// otherwise (JSON-RPC answers such a refusal with a null id).
fn readable_id(body: &[u8]) -> Option<Value> {
    struct Top;
    impl<'de> serde::de::Visitor<'de> for Top {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut id = None;
            let mut doubtful = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key == "id" {
                    doubtful |= id.is_some();
                    id = Some(map.next_value::<Value>()?);
                } else {
                    doubtful |= loosened(&key) == "id";
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(id.filter(|_| !doubtful))
        }
    }
    let mut reader = serde_json::Deserializer::from_slice(body);
    let id = serde::Deserializer::deserialize_map(&mut reader, Top).ok()??;
    match id {
        Value::String(_) => Some(id),
        Value::Number(ref number) if number.is_i64() || number.is_u64() => Some(id),
        _ => None,
    }
}

/// The single pass through serde_json: the reference the fast path
/// ([`scan`]) must agree with wherever it accepts a body.
fn walk(body: &[u8], max_depth: usize) -> Result<Envelope<'_>, Invalid> {
    // serde_json's own recursion limit (128) stays as a backstop.
    let mut reader = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        depth: 0,
        max_depth,
        place: Place::Top,
    };
    let result = serde::de::DeserializeSeed::deserialize(walk, &mut reader)
        .and_then(|seen| reader.end().map(|()| seen));
    match result {
        Ok(Seen::Envelope(envelope)) => Ok(*envelope),
        // The first byte was `{`: a complete value is an object.
        Ok(_) => Err(Invalid::Request {
            id: Value::Null,
            detail: "a JSON-RPC message must be an object".to_string(),
        }),
        Err(err) if err.is_data() => Err(Invalid::Request {
            id: Value::Null,
            detail: strip_position(&err),
        }),
        Err(err) => Err(Invalid::Malformed {
            detail: err.to_string(),
        }),
    }
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

/// Where the walk is, which says what it keeps of the value there.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// The message object.
    Top,
    /// `params` of the message.
    Params,
    /// `params.arguments`: its member names are kept.
    Arguments,
    /// `params._meta`: the protocol version member is kept.
    Meta,
    /// `jsonrpc`, `method`, `params.name`, `params.uri`,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`: a string is kept.
    Text,
    /// `id`: a scalar is kept.
    Id,
    /// Anything else: checked, nothing kept.
    Elsewhere,
}

/// What the walk kept of one value.
#[derive(Debug, PartialEq)]
enum Seen<'a> {
    Nothing,
    Null,
    Text(Cow<'a, str>),
    /// A scalar `id`: a number or a boolean.
    Scalar(Value),
    /// An array or an object where only a scalar is kept.
    Compound(&'static str),
    /// A string, number or boolean where none is kept.
    Other(&'static str),
    Envelope(Box<Envelope<'a>>),
    Params(Box<ParamsSeen<'a>>),
    Keys(Vec<Cow<'a, str>>),
    /// `params._meta`: its protocol version, if a string.
    Meta(Option<Cow<'a, str>>),
}

impl<'a> Seen<'a> {
    fn kind(&self) -> &'static str {
        match self {
            Seen::Null => "null",
            Seen::Text(_) => "a string",
            Seen::Scalar(Value::Bool(_)) => "a boolean",
            Seen::Scalar(_) => "a number",
            Seen::Other(kind) => kind,
            Seen::Compound(kind) => kind,
            Seen::Envelope(_) | Seen::Params(_) | Seen::Keys(_) | Seen::Meta(_) => "an object",
            Seen::Nothing => "a value",
        }
    }

    fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Seen::Text(text) => Some(text),
            _ => None,
        }
    }

    /// A scalar id as the value to echo.
    fn into_id(self) -> Value {
        match self {
            Seen::Text(text) => Value::String(text.into_owned()),
            Seen::Scalar(value) => value,
            _ => Value::Null,
        }
    }
}

/// The members of the message the gate reads.
#[derive(Debug, Default, PartialEq)]
struct Envelope<'a> {
    jsonrpc: Option<Seen<'a>>,
    id: Option<Seen<'a>>,
    method: Option<Seen<'a>>,
    params: Option<Seen<'a>>,
}

/// The members of `params` the gate reads.
#[derive(Debug, Default, PartialEq)]
struct ParamsSeen<'a> {
    name: Option<Seen<'a>>,
    uri: Option<Seen<'a>>,
    arguments: Option<Seen<'a>>,
    present: Present,
    meta_version: Option<Cow<'a, str>>,
}

/// Which of the `params` members only some requests carry are present, noted
/// by the single pass so that [`Params::read`] runs only when one is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Present {
    /// `requestState` (a multi-round-trip retry).
    pub request_state: bool,
    /// `_meta` (per-request protocol fields at 2026-07-28).
    pub meta: bool,
    /// `task` (a task-augmented call at 2025-11-25).
    pub task: bool,
}

struct Walk {
    depth: usize,
    max_depth: usize,
    place: Place,
}

impl Walk {
    fn nested(&self, place: Place) -> Walk {
        Walk {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            place,
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= self.max_depth {
            Err(E::custom(format!(
                "nesting deeper than {} levels",
                self.max_depth
            )))
        } else {
            Ok(())
        }
    }
}

/// What each reader keeps of a value, by where it is: one definition for
/// the serde_json walk and the fast path ([`scan`]).
impl Place {
    /// A number or boolean: kept as the id, otherwise only its kind.
    fn scalar<'a>(self, value: impl FnOnce() -> Value, kind: &'static str) -> Seen<'a> {
        match self {
            Place::Id => Seen::Scalar(value()),
            Place::Elsewhere => Seen::Nothing,
            _ => Seen::Other(kind),
        }
    }

    fn string<'a>(self, text: impl FnOnce() -> Cow<'a, str>) -> Seen<'a> {
        match self {
            Place::Text | Place::Id => Seen::Text(text()),
            Place::Elsewhere => Seen::Nothing,
            _ => Seen::Other("a string"),
        }
    }

    fn null<'a>(self) -> Seen<'a> {
        if self == Place::Elsewhere {
            Seen::Nothing
        } else {
            Seen::Null
        }
    }

    fn array<'a>(self) -> Seen<'a> {
        match self {
            Place::Elsewhere => Seen::Nothing,
            _ => Seen::Compound("an array"),
        }
    }

    /// Where a member's value is, by the member's name.
    fn member(self, key: &str) -> Place {
        match (self, key) {
            (Place::Top, "params") => Place::Params,
            (Place::Top, "jsonrpc" | "method") => Place::Text,
            (Place::Top, "id") => Place::Id,
            (Place::Params, "name" | "uri") => Place::Text,
            (Place::Params, "arguments") => Place::Arguments,
            (Place::Params, "_meta") => Place::Meta,
            (Place::Meta, META_PROTOCOL_VERSION) => Place::Text,
            _ => Place::Elsewhere,
        }
    }

    /// The members whose letter-case variants an object here may not have.
    fn guarded_members(self) -> &'static [&'static str] {
        match self {
            Place::Top => &ENVELOPE_MEMBERS,
            Place::Params => &PARAMS_MEMBERS,
            _ => &[],
        }
    }
}

/// One object as it is read: its member names so far (each may appear
/// once, and none may be a letter-case variant of a member the gate reads)
/// and what is kept of its members, by where the object is.
struct Object<'a> {
    place: Place,
    keys: KeySet<Cow<'a, str>>,
    envelope: Envelope<'a>,
    params: ParamsSeen<'a>,
    argument_keys: Vec<Cow<'a, str>>,
    meta_version: Option<Cow<'a, str>>,
}

impl<'a> Object<'a> {
    fn new(place: Place) -> Object<'a> {
        Object {
            place,
            keys: KeySet::default(),
            envelope: Envelope::default(),
            params: ParamsSeen::default(),
            argument_keys: Vec::new(),
            meta_version: None,
        }
    }

    /// Why `key` may not be the next member's name, if it may not.
    fn refuse(&self, key: &str) -> Option<String> {
        if self.keys.contains::<str>(key) {
            return Some(format!("duplicate member {key:?}"));
        }
        case_refusal(key, self.place.guarded_members())
    }

    /// Keeps what the gate reads of the member `key` (already accepted by
    /// [`Object::refuse`]) and its value.
    fn member(&mut self, key: Cow<'a, str>, seen: Seen<'a>) {
        match (self.place, key.as_ref()) {
            (Place::Top, "jsonrpc") => self.envelope.jsonrpc = Some(seen),
            (Place::Top, "id") => self.envelope.id = Some(seen),
            (Place::Top, "method") => self.envelope.method = Some(seen),
            (Place::Top, "params") => self.envelope.params = Some(seen),
            (Place::Params, "name") => self.params.name = Some(seen),
            (Place::Params, "uri") => self.params.uri = Some(seen),
            (Place::Params, "arguments") => self.params.arguments = Some(seen),
            (Place::Params, "requestState") => self.params.present.request_state = true,
            (Place::Params, "_meta") => {
                self.params.present.meta = true;
                if let Seen::Meta(version) = seen {
                    self.params.meta_version = version;
                }
            }
            (Place::Params, "task") => self.params.present.task = true,
            (Place::Arguments, _) => self.argument_keys.push(key.clone()),
            (Place::Meta, META_PROTOCOL_VERSION) => self.meta_version = seen.into_text(),
            _ => {}
        }
        self.keys.insert(key);
    }

    fn finish(self) -> Seen<'a> {
        match self.place {
            Place::Top => Seen::Envelope(Box::new(self.envelope)),
            Place::Params => Seen::Params(Box::new(self.params)),
            Place::Arguments => Seen::Keys(self.argument_keys),
            Place::Meta => Seen::Meta(self.meta_version),
            Place::Text | Place::Id => Seen::Compound("an object"),
            Place::Elsewhere => Seen::Nothing,
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for Walk {
    type Value = Seen<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Seen<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Seen<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Seen<'de>, E> {
        Ok(self.place.scalar(|| Value::Bool(v), "a boolean"))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seen<'de>, E> {
        Ok(self.place.scalar(|| Value::from(v), "a number"))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seen<'de>, E> {
        Ok(self.place.scalar(|| Value::from(v), "a number"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seen<'de>, E> {
        Ok(self.place.scalar(|| Value::from(v), "a number"))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Seen<'de>, E> {
        Ok(self.place.string(|| Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Seen<'de>, E> {
        // A string with escapes, decoded into serde_json's scratch buffer.
        Ok(self.place.string(|| Cow::Owned(v.to_string())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Seen<'de>, E> {
        Ok(self.place.null())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Seen<'de>, A::Error> {
        self.enter()?;
        while seq
            .next_element_seed(self.nested(Place::Elsewhere))?
            .is_some()
        {}
        Ok(self.place.array())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen<'de>, A::Error> {
        self.enter()?;
        let mut object = Object::new(self.place);
        while let Some(BorrowedKey(key)) = map.next_key()? {
            if let Some(refused) = object.refuse(&key) {
                return Err(de::Error::custom(refused));
            }
            let seen = map.next_value_seed(self.nested(self.place.member(&key)))?;
            object.member(key, seen);
        }
        Ok(object.finish())
    }
}

/// The keys of one object: a short inline list for the usual few (no
/// allocation), a hash set once there are many, so an object with 100k
/// members costs linear time.
struct KeySet<K> {
    few: [Option<K>; FEW_KEYS],
    len: usize,
    many: Option<HashSet<K>>,
}

const FEW_KEYS: usize = 16;

impl<K> Default for KeySet<K> {
    fn default() -> Self {
        KeySet {
            few: [const { None }; FEW_KEYS],
            len: 0,
            many: None,
        }
    }
}

impl<K: Eq + std::hash::Hash> KeySet<K> {
    fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        match &self.many {
            Some(many) => {
                counted_comparisons(1);
                many.contains(key)
            }
            None => self.few[..self.len].iter().flatten().any(|known| {
                counted_comparisons(1);
                known.borrow() == key
            }),
        }
    }

    fn insert(&mut self, key: K) {
        if let Some(many) = &mut self.many {
            many.insert(key);
        } else if self.len < FEW_KEYS {
            self.few[self.len] = Some(key);
            self.len += 1;
        } else {
            let mut many: HashSet<K> = self.few.iter_mut().flat_map(Option::take).collect();
            many.insert(key);
            self.many = Some(many);
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Key comparisons (list entries compared, or hash lookups) made by
    /// [`KeySet::contains`] on this thread: the unit tests count them to check
    /// that duplicate detection grows linearly with the members of an object.
    static KEY_COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn counted_comparisons(n: usize) {
    KEY_COMPARISONS.with(|count| count.set(count.get() + n));
}

#[cfg(not(test))]
#[inline(always)]
fn counted_comparisons(_: usize) {}

/// `params.arguments` as raw JSON, read on demand (see [`ToolCall::arguments`]).
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawParams<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// A key borrowed from the body when it has no escapes.
struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for BorrowedKey<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = BorrowedKey<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests;
