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

/// The method the policy gates.
pub const TOOLS_CALL: &str = "tools/call";
/// The method whose results hide tools the caller must not see.
pub const TOOLS_LIST: &str = "tools/list";

/// A message read from a request body.
#[derive(Debug)]
pub enum Message<'a> {
    /// A `tools/call` request: decided by the policy.
    ToolCall(ToolCall<'a>),
    /// Any other request, notification or response: forwarded unchanged.
    Other {
        method: Option<Cow<'a, str>>,
        id: Option<Value>,
        params: Option<&'a RawValue>,
    },
}

#[derive(Debug)]
pub struct ToolCall<'a> {
    /// The request id, a JSON string or integer, echoed in any answer.
    pub id: Value,
    pub name: Cow<'a, str>,
    /// Top-level argument names, in order (values are never logged).
    pub argument_keys: Vec<Cow<'a, str>>,
    /// The raw `arguments` object, if present.
    pub arguments: Option<&'a RawValue>,
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

    check_structure(body, max_depth)?;
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|err| {
        if err.is_data() {
            Invalid::Request {
                id: Value::Null,
                detail: err.to_string(),
            }
        } else {
            Invalid::Malformed {
                detail: err.to_string(),
            }
        }
    })?;

    if envelope.method.as_deref() != Some(TOOLS_CALL) {
        return Ok(Message::Other {
            method: envelope.method,
            id: envelope.id,
            params: envelope.params,
        });
    }

    let id = match envelope.id {
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
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(Invalid::Request {
            id,
            detail: "jsonrpc must be \"2.0\"".to_string(),
        });
    }
    let Some(params) = envelope.params else {
        return Err(Invalid::Params {
            id,
            detail: "tools/call must have params".to_string(),
        });
    };
    // Serde's derived structs also read arrays (`["deleteWorkspace"]` as the
    // name); MCP params are objects, and nothing else is read as one.
    if !params.get().trim_start().starts_with('{') {
        return Err(Invalid::Params {
            id,
            detail: "params must be an object".to_string(),
        });
    }
    let params: CallParams<'_> = match serde_json::from_str(params.get()) {
        Ok(params) => params,
        Err(err) => {
            return Err(Invalid::Params {
                id,
                detail: err.to_string(),
            })
        }
    };
    let argument_keys = match params.arguments {
        None => Vec::new(),
        Some(raw) => match serde_json::from_str::<ObjectKeys<'_>>(raw.get()) {
            Ok(keys) => keys.0,
            Err(err) => {
                return Err(Invalid::Params {
                    id,
                    detail: format!("arguments: {err}"),
                })
            }
        },
    };
    if let Err(detail) = check_tool_name(&params.name) {
        return Err(Invalid::Params { id, detail });
    }
    Ok(Message::ToolCall(ToolCall {
        id,
        name: params.name,
        argument_keys,
        arguments: params.arguments,
    }))
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

/// Members of the message the gate reads, and of `params`: a member that
/// differs from one of these only in letter case (`"Method"`, `"NAME"`, or
/// `"argumentſ"`, which Unicode folds to `arguments`) would be ignored here
/// but matched by case-insensitive decoders upstream (Go's encoding/json).
const ENVELOPE_MEMBERS: [&str; 4] = ["jsonrpc", "id", "method", "params"];
const PARAMS_MEMBERS: [&str; 2] = ["name", "arguments"];

fn case_variant_of(key: &str, members: &[&'static str]) -> Option<&'static str> {
    if key.is_ascii() {
        // The usual case, without allocating (measured: the Unicode path
        // below cost a fifth of parsing a 1 KiB call).
        return members
            .iter()
            .copied()
            .find(|member| key != *member && key.eq_ignore_ascii_case(member));
    }
    members.iter().copied().find(|member| {
        key != *member
            && (key.to_lowercase() == *member || key.to_uppercase() == member.to_uppercase())
    })
}

/// Walks the whole body once (see [`parse_with_depth`]).
fn check_structure(body: &[u8], max_depth: usize) -> Result<(), Invalid> {
    // serde_json's own recursion limit (128) stays as a backstop.
    let mut reader = serde_json::Deserializer::from_slice(body);
    let walk = Walk {
        depth: 0,
        max_depth,
        place: Place::Top,
    };
    let result =
        serde::de::DeserializeSeed::deserialize(walk, &mut reader).and_then(|()| reader.end());
    result.map_err(|err| {
        if err.is_data() {
            Invalid::Request {
                id: Value::Null,
                detail: strip_position(&err),
            }
        } else {
            Invalid::Malformed {
                detail: err.to_string(),
            }
        }
    })
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

/// Where the walk is: the message object, its `params`, or anywhere else.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Top,
    Params,
    Elsewhere,
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

impl<'de> de::DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq
            .next_element_seed(self.nested(Place::Elsewhere))?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        let mut keys = KeySet::default();
        while let Some(BorrowedKey(key)) = map.next_key()? {
            if keys.contains(&key) {
                return Err(de::Error::custom(format!("duplicate member {key:?}")));
            }
            let members: &[&'static str] = match self.place {
                Place::Top => &ENVELOPE_MEMBERS,
                Place::Params => &PARAMS_MEMBERS,
                Place::Elsewhere => &[],
            };
            if let Some(member) = case_variant_of(&key, members) {
                return Err(de::Error::custom(format!(
                    "member {key:?} differs from {member:?} only in letter case"
                )));
            }
            let place = if self.place == Place::Top && key == "params" {
                Place::Params
            } else {
                Place::Elsewhere
            };
            map.next_value_seed(self.nested(place))?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// The keys of one object: a short list for the usual few, a hash set once
/// there are many, so an object with 100k members costs linear time.
#[derive(Default)]
struct KeySet<'a> {
    few: Vec<Cow<'a, str>>,
    many: Option<HashSet<Cow<'a, str>>>,
}

impl<'a> KeySet<'a> {
    const FEW: usize = 16;

    fn contains(&self, key: &str) -> bool {
        match &self.many {
            Some(many) => many.contains(key),
            None => self.few.iter().any(|known| known == key),
        }
    }

    fn insert(&mut self, key: Cow<'a, str>) {
        match &mut self.many {
            Some(many) => {
                many.insert(key);
            }
            None if self.few.len() < Self::FEW => self.few.push(key),
            None => {
                let mut many: HashSet<Cow<'a, str>> = self.few.drain(..).collect();
                many.insert(key);
                self.many = Some(many);
            }
        }
    }
}

/// The members of a JSON-RPC message the gate reads. Serde refuses a member
/// that appears twice, so `{"method":"ping","method":"tools/call"}` cannot be
/// read one way here and another way upstream.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    /// `Some(Value::Null)` for `"id": null`, `None` when absent.
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// The keys of a JSON object, in order; values are skipped. (Duplicates
/// were refused by the structure check.)
struct ObjectKeys<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for ObjectKeys<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeysVisitor<'a> {
            type Value = ObjectKeys<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut keys: Vec<Cow<'a, str>> = Vec::new();
                while let Some(key) = access.next_key::<BorrowedKey<'a>>()? {
                    access.next_value::<IgnoredAny>()?;
                    keys.push(key.0);
                }
                Ok(ObjectKeys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor(std::marker::PhantomData))
    }
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
