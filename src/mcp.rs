//! Reads one MCP JSON-RPC message from a request body and classifies it: a
//! `tools/call` the policy must decide, anything else that passes, or a
//! message the gate refuses to forward because it cannot read it the way the
//! server would.

use std::borrow::Cow;
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

/// Parses one request body.
pub fn parse(body: &[u8]) -> Result<Message<'_>, Invalid> {
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
    Ok(Message::ToolCall(ToolCall {
        id,
        name: params.name,
        argument_keys,
        arguments: params.arguments,
    }))
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

/// The keys of a JSON object, refusing duplicates; values are skipped.
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
                    if keys.contains(&key.0) {
                        return Err(de::Error::custom(format!("duplicate key {:?}", key.0)));
                    }
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
