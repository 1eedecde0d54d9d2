//! Argument rules of a tool: `require` (every condition must hold) and
//! `deny_if` (any condition that holds denies), each a map from an argument
//! path (`args.options.timeout`) to an operator object (`{"lte": 300}`).
//!
//! Read by serde like the rest of the policy, so type errors name their JSON
//! path; [`ArgumentRules::compile`] checks the rest (paths, regexes) once at
//! configuration time, so a request only walks a path and compares values.

use crate::lookup::HashSet;
use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::policy::document::{Checked, Object};

mod pattern;

use crate::policy::{escape_pointer_token, ConfigError, ConfigErrors, Errors};
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use pattern::states as regex_states;

/// Every argument path starts with this; the rest is a dot path into `params.arguments`.
pub const ARGS_PREFIX: &str = "args.";

/// The operator object as written. Several operators are ANDed.
///
/// Every field is read with [`present`], so `"eq": null` compares with null
/// and `"lt": null` is a type error, where a plain `Option` would read both
/// as "no operator".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
// Schema: each field has its operand's schema, not Option's nullable one
// (`present` reads null as a value); an empty object is refused at load.
#[cfg_attr(
    not(target_arch = "wasm32"),
    schemars(
        description = "Operators applied to the argument's value; several must all hold.",
        extend("minProperties" = 1)
    )
)]
pub struct OperatorsDocument {
    #[serde(default, deserialize_with = "present_strict")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Value"))]
    pub eq: Option<Value>,
    #[serde(default, deserialize_with = "present_strict")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Value"))]
    pub neq: Option<Value>,
    #[serde(rename = "in", default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Array"))]
    pub in_: Option<Array>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Array"))]
    pub not_in: Option<Array>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "JsonNumber"))]
    pub lt: Option<JsonNumber>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "JsonNumber"))]
    pub lte: Option<JsonNumber>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "JsonNumber"))]
    pub gt: Option<JsonNumber>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "JsonNumber"))]
    pub gte: Option<JsonNumber>,
    #[serde(default, deserialize_with = "present_strict")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Value"))]
    pub contains: Option<Value>,
    /// A regular expression the string value must match (search, not
    /// anchored), in the `regex-lite` syntax: linear time; `\p{..}`,
    /// `\d` `\s` `\w` (and negations), word boundaries and `(?i)` are refused.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "String"))]
    pub regex: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "bool"))]
    pub exists: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "NonNegativeInteger"))]
    pub max_length: Option<NonNegativeInteger>,
    /// A path (or URI) that must name this one or something inside it, once
    /// both are normalised: `..`, `%2e%2e`, doubled slashes cannot climb out.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "String", length(min = 1))
    )]
    pub under: Option<String>,
}

/// A field that was written, whatever its value (null included).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A field written with any JSON value (null included), read as
/// strictly as the rest of the policy: a member given twice at any depth
/// is refused, not silently read as the last one.
fn present_strict<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    StrictValue::deserialize(deserializer).map(|strict| Some(strict.0))
}

/// Any JSON value, refused if an object in it names a member twice.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrictVisitor;
        impl<'de> Visitor<'de> for StrictVisitor {
            type Value = StrictValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Bool(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
                Ok(StrictValue(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
                Ok(StrictValue(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
                Number::from_f64(v)
                    .map(|number| StrictValue(Value::Number(number)))
                    .ok_or_else(|| E::custom(format!("not a finite number: {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::String(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
                Ok(StrictValue(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
                let mut items = Vec::new();
                while let Some(StrictValue(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StrictValue(Value::Array(items)))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if object.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate member {key:?}")));
                    }
                    let StrictValue(value) = map.next_value()?;
                    object.insert(key, value);
                }
                Ok(StrictValue(Value::Object(object)))
            }
        }
        deserializer.deserialize_any(StrictVisitor)
    }
}

/// A JSON number, any kind.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonNumber(pub Number);

impl<'de> Deserialize<'de> for JsonNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = JsonNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonNumber, E> {
                Ok(JsonNumber(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonNumber, E> {
                Ok(JsonNumber(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonNumber, E> {
                Number::from_f64(v)
                    .map(JsonNumber)
                    .ok_or_else(|| E::custom(format!("not a finite number: {v}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<JsonNumber, A::Error> {
                crate::policy::document::refuse_array(seq, &self)
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A JSON array of any values (`in`, `not_in`).
#[derive(Debug, Clone, PartialEq)]
pub struct Array(pub Vec<Value>);

impl<'de> Deserialize<'de> for Array {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = Array;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Array, A::Error> {
                let mut values = Vec::new();
                while let Some(StrictValue(value)) = access.next_element()? {
                    values.push(value);
                }
                Ok(Array(values))
            }
        }
        deserializer.deserialize_seq(ArrayVisitor)
    }
}

/// An integer of at least 0 (`max_length`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonNegativeInteger(pub u64);

impl<'de> Deserialize<'de> for NonNegativeInteger {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NonNegativeVisitor;
        impl Visitor<'_> for NonNegativeVisitor {
            type Value = NonNegativeInteger;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NonNegativeInteger, E> {
                Ok(NonNegativeInteger(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NonNegativeInteger, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "must be a non-negative integer, got {v}"
                    ))),
                }
            }
        }
        deserializer.deserialize_u64(NonNegativeVisitor)
    }
}

/// `require` / `deny_if` as written: argument path → operators, in document
/// order (the order decides which condition is reported), duplicates refused.
/// Each condition's operators are read on their own, so an error in one
/// does not hide the others'. An empty array is no conditions, as `{}`:
/// PolicyLayer's published policy shape writes `"require": []`.
#[derive(Debug, Default)]
pub struct ConditionsDocument(pub Vec<(String, Checked<Object<OperatorsDocument>>)>);

impl<'de> Deserialize<'de> for ConditionsDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ConditionsVisitor;
        impl<'de> Visitor<'de> for ConditionsVisitor {
            type Value = ConditionsDocument;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<ConditionsDocument, A::Error> {
                let mut seen = HashSet::default();
                let mut conditions = Vec::new();
                while let Some(key) = access.next_key::<String>()? {
                    // A plain map keeps the last duplicate silently, hiding a condition.
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate argument path {key:?}"
                        )));
                    }
                    let operators = access.next_value()?;
                    conditions.push((key, operators));
                }
                Ok(ConditionsDocument(conditions))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ConditionsDocument, A::Error> {
                let mut empty = true;
                while seq.next_element::<de::IgnoredAny>()?.is_some() {
                    empty = false;
                }
                if empty {
                    return Ok(ConditionsDocument::default());
                }
                // Placed at the array's end, so the error names the field.
                Err(de::Error::custom(
                    "conditions are an object keyed by argument path, e.g. {\"args.amount\": {\"lte\": 10000}}; only an empty array ([], no conditions) is read as a list",
                ))
            }
        }
        deserializer.deserialize_any(ConditionsVisitor)
    }
}

/// The compiled argument rules of one tool.
#[derive(Debug, Default)]
pub struct ArgumentRules {
    require: Vec<Condition>,
    deny_if: Vec<Condition>,
    /// Conditions any of which holding means a person must approve the call.
    approve_if: Vec<Condition>,
}

/// One argument path and the operators applied to the value found there.
#[derive(Debug)]
struct Condition {
    path: Vec<Segment>,
    operators: Vec<Operator>,
}

/// One dot-separated step of an argument path.
#[derive(Debug)]
struct Segment {
    key: String,
    /// The key read as an array index, when it is a canonical decimal.
    index: Option<usize>,
}

#[derive(Debug)]
struct Operator {
    test: Test,
    /// JSON pointer of the operator in the policy, reported when it decides.
    pointer: String,
}

#[derive(Debug)]
enum Test {
    Eq(Value),
    Neq(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Lt(Number),
    Lte(Number),
    Gt(Number),
    Gte(Number),
    Contains(Value),
    Regex(pattern::Pattern),
    Exists(bool),
    MaxLength(u64),
    /// Under this normalised base path or URI.
    Under(String),
}

impl ArgumentRules {
    /// Compiles a tool's `require` and `deny_if`: the rules, or every error
    /// found in them. `path` is the dotted path of the tool rule for errors
    /// (`tools.asyncExecuteCode`), `pointer` its JSON pointer
    /// (`/tools/asyncExecuteCode`).
    pub fn compile(
        require: Option<ConditionsDocument>,
        deny_if: Option<ConditionsDocument>,
        path: &str,
        pointer: &str,
    ) -> Result<ArgumentRules, ConfigErrors> {
        let mut errors = Errors::default();
        let rules = Self::compile_into(require, deny_if, path, pointer, &mut errors);
        errors.finish(rules)
    }

    /// As [`ArgumentRules::compile`], adding the errors to those of the
    /// policy being compiled; the conditions with errors are left out.
    pub(crate) fn compile_into(
        require: Option<ConditionsDocument>,
        deny_if: Option<ConditionsDocument>,
        path: &str,
        pointer: &str,
        errors: &mut Errors,
    ) -> ArgumentRules {
        ArgumentRules {
            require: compile_conditions(
                require,
                &format!("{path}.require"),
                &format!("{pointer}/require"),
                errors,
            ),
            deny_if: compile_conditions(
                deny_if,
                &format!("{path}.deny_if"),
                &format!("{pointer}/deny_if"),
                errors,
            ),
            approve_if: Vec::new(),
        }
    }

    /// Adds `approve_if` (same shape as `deny_if`): conditions any of which
    /// holding means the call needs a person's approval.
    pub(crate) fn with_approve_if(
        mut self,
        approve_if: Option<ConditionsDocument>,
        path: &str,
        pointer: &str,
        errors: &mut Errors,
    ) -> ArgumentRules {
        self.approve_if = compile_conditions(
            approve_if,
            &format!("{path}.approve_if"),
            &format!("{pointer}/approve_if"),
            errors,
        );
        self
    }

    /// True when the tool has no argument conditions at all.
    pub fn is_empty(&self) -> bool {
        self.require.is_empty() && self.deny_if.is_empty() && self.approve_if.is_empty()
    }

    /// Whether the rule has `approve_if` conditions.
    pub fn has_approve_if(&self) -> bool {
        !self.approve_if.is_empty()
    }

    /// The pointer of the first `approve_if` operator whose condition holds
    /// (document order), or `None`: no condition asks for approval.
    pub fn approval_condition(&self, arguments: Option<&Value>) -> Option<&str> {
        self.approve_if.iter().find_map(|condition| {
            let value = arguments.and_then(|arguments| condition.lookup(arguments));
            if condition
                .operators
                .iter()
                .all(|op| op.test.holds_to_refuse(value))
            {
                condition.operators.first().map(|op| op.pointer.as_str())
            } else {
                None
            }
        })
    }

    /// `None`: every `require` condition holds and no `deny_if` condition
    /// does. `Some(pointer)`: the call is denied; the pointer of the operator
    /// that decided. `require` is checked first, then `deny_if`, each in
    /// document order. `arguments` is `params.arguments` of the call; `None`
    /// (absent) reads as an empty object.
    pub fn violation(&self, arguments: Option<&Value>) -> Option<&str> {
        for condition in &self.require {
            let value = arguments.and_then(|arguments| condition.lookup(arguments));
            if let Some(failed) = condition.operators.iter().find(|op| !op.test.holds(value)) {
                return Some(&failed.pointer);
            }
        }
        for condition in &self.deny_if {
            let value = arguments.and_then(|arguments| condition.lookup(arguments));
            if condition
                .operators
                .iter()
                .all(|op| op.test.holds_to_refuse(value))
            {
                // compile refuses empty operator objects, so there is a first one.
                return condition.operators.first().map(|op| op.pointer.as_str());
            }
        }
        None
    }
}

fn compile_conditions(
    document: Option<ConditionsDocument>,
    path: &str,
    pointer: &str,
    errors: &mut Errors,
) -> Vec<Condition> {
    let Some(ConditionsDocument(conditions)) = document else {
        return Vec::new();
    };
    let mut compiled = Vec::with_capacity(conditions.len());
    for (key, operators) in conditions {
        let condition_path = format!("{path}.{key}");
        let condition_pointer = format!("{pointer}/{}", escape_pointer_token(&key));
        let segments = compile_path(&key, &condition_path).map_err(|error| errors.push(error));
        let operators = errors
            .read(operators, &condition_path)
            .map(|Object(operators)| {
                compile_operators(operators, &condition_path, &condition_pointer, errors)
            });
        if let (Ok(path), Some(Some(operators))) = (segments, operators) {
            compiled.push(Condition { path, operators });
        }
    }
    compiled
}

fn compile_path(key: &str, path: &str) -> Result<Vec<Segment>, ConfigError> {
    let Some(rest) = key.strip_prefix(ARGS_PREFIX) else {
        return Err(ConfigError::new(
            path,
            format!("argument paths start with {ARGS_PREFIX:?} (got {key:?})"),
        ));
    };
    rest.split('.')
        .map(|segment| {
            if segment.is_empty() {
                return Err(ConfigError::new(
                    path,
                    format!("empty segment in argument path {key:?}"),
                ));
            }
            Ok(Segment {
                key: segment.to_string(),
                index: array_index(segment),
            })
        })
        .collect()
}

/// `0`, `7`, `12` index arrays; `01`, `+1`, `-1` do not (as in JSON pointers).
pub(crate) fn array_index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    if canonical {
        segment.parse().ok()
    } else {
        None
    }
}

/// The operators of one condition; `None` (and the error in `errors`) if one
/// is wrong or there are none.
fn compile_operators(
    document: OperatorsDocument,
    path: &str,
    pointer: &str,
    errors: &mut Errors,
) -> Option<Vec<Operator>> {
    let OperatorsDocument {
        eq,
        neq,
        in_,
        not_in,
        lt,
        lte,
        gt,
        gte,
        contains,
        regex,
        exists,
        max_length,
        under,
    } = document;
    let under = match under {
        Some(base) => match crate::uri::normalize_path_value(&base) {
            Ok(normalised) if !normalised.is_empty() => Some(normalised),
            Ok(_) => {
                errors.push(ConfigError::new(format!("{path}.under"), "an empty path"));
                return None;
            }
            Err(error) => {
                errors.push(ConfigError::new(
                    format!("{path}.under"),
                    format!("{base:?} has {error}"),
                ));
                return None;
            }
        },
        None => None,
    };
    let regex = match regex {
        Some(pattern) => match compile_regex(&pattern, &format!("{path}.regex")) {
            Ok(regex) => Some(regex),
            Err(error) => {
                errors.push(error);
                return None;
            }
        },
        None => None,
    };
    // The order here is the order operators are checked and reported in.
    let tests = [
        ("eq", eq.map(Test::Eq)),
        ("neq", neq.map(Test::Neq)),
        ("in", in_.map(|a| Test::In(a.0))),
        ("not_in", not_in.map(|a| Test::NotIn(a.0))),
        ("lt", lt.map(|n| Test::Lt(n.0))),
        ("lte", lte.map(|n| Test::Lte(n.0))),
        ("gt", gt.map(|n| Test::Gt(n.0))),
        ("gte", gte.map(|n| Test::Gte(n.0))),
        ("contains", contains.map(Test::Contains)),
        ("regex", regex.map(Test::Regex)),
        ("exists", exists.map(Test::Exists)),
        ("max_length", max_length.map(|n| Test::MaxLength(n.0))),
        ("under", under.map(Test::Under)),
    ];
    let operators: Vec<Operator> = tests
        .into_iter()
        .filter_map(|(name, test)| {
            test.map(|test| Operator {
                test,
                pointer: format!("{pointer}/{name}"),
            })
        })
        .collect();
    if operators.is_empty() {
        errors.push(ConfigError::new(
            path,
            "no operator (use one or more of eq, neq, in, not_in, lt, lte, gt, gte, contains, regex, exists, max_length, under)",
        ));
        return None;
    }
    Some(operators)
}

fn compile_regex(pattern: &str, path: &str) -> Result<pattern::Pattern, ConfigError> {
    pattern::compile(pattern)
        .map_err(|reason| ConfigError::new(path, format!("invalid regex {pattern:?}: {reason}")))
}

/// Why the members on the way along `segments` in `arguments` are not all
/// read as the gate reads them: a member a loose reader takes for the one
/// a rule reads (`"Script"` or `"ſcript"` beside, or in place of,
/// `"script"`; `"script\u0000x"`), so that the server may see another
/// value than the rule did. `None`: every step is unambiguous.
pub fn loosely_named_member<'s>(
    arguments: &Value,
    segments: impl IntoIterator<Item = &'s str>,
) -> Option<String> {
    let mut value = arguments;
    // Plain ASCII names differ loosely only in letter case; anything else
    // is loosened (allocating) before it is compared.
    let plain = |text: &str| text.bytes().all(|byte| byte.is_ascii_graphic());
    for segment in segments {
        match value {
            Value::Object(map) => {
                let segment_plain = plain(segment);
                let mut wanted: Option<String> = None;
                let other = map.keys().find(|key| {
                    if key.as_str() == segment {
                        false
                    } else if segment_plain && plain(key) {
                        key.eq_ignore_ascii_case(segment)
                    } else {
                        let wanted = wanted.get_or_insert_with(|| crate::mcp::loosened(segment));
                        crate::mcp::loosened(key) == *wanted
                    }
                });
                if let Some(other) = other {
                    return Some(format!(
                        "argument member {other:?} differs from {segment:?} only in letter case or characters a server may drop: a server may read either"
                    ));
                }
                value = map.get(segment)?;
            }
            Value::Array(items) => value = items.get(array_index(segment)?)?,
            _ => return None,
        }
    }
    None
}

impl ArgumentRules {
    /// [`loosely_named_member`] for every path this rule's conditions read.
    pub fn loosely_named(&self, arguments: Option<&Value>) -> Option<String> {
        let arguments = arguments?;
        self.require
            .iter()
            .chain(&self.deny_if)
            .chain(&self.approve_if)
            .find_map(|condition| {
                loosely_named_member(
                    arguments,
                    condition.path.iter().map(|segment| segment.key.as_str()),
                )
            })
    }
}

impl Condition {
    /// The value at this condition's path, if there is one.
    fn lookup<'v>(&self, arguments: &'v Value) -> Option<&'v Value> {
        self.path
            .iter()
            .try_fold(arguments, |value, segment| match value {
                Value::Object(map) => map.get(&segment.key),
                Value::Array(items) => segment.index.and_then(|index| items.get(index)),
                _ => None,
            })
    }
}

impl Test {
    /// As [`Test::holds`], for a condition whose holding refuses the call
    /// (`deny_if`) or asks for approval (`approve_if`): `under` also holds
    /// for a value a server may take for one under the base
    /// ([`crate::uri::may_be_under`]), so that no spelling slips by.
    fn holds_to_refuse(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Test::Under(base), Some(value)) => value
                .as_str()
                .is_some_and(|path| crate::uri::may_be_under(path, base)),
            _ => self.holds(value),
        }
    }

    /// Whether the operator holds for `value` (`None`: nothing at the path).
    /// Only `exists: false` holds for a missing value; a value of the wrong
    /// type holds for nothing but `neq`, `not_in` and `exists: true`.
    fn holds(&self, value: Option<&Value>) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::Exists(false));
        };
        match self {
            Test::Eq(operand) => json_eq(value, operand),
            Test::Neq(operand) => !json_eq(value, operand),
            Test::In(operands) => operands.iter().any(|operand| json_eq(value, operand)),
            Test::NotIn(operands) => !operands.iter().any(|operand| json_eq(value, operand)),
            Test::Lt(bound) => compare_with(value, bound) == Some(Ordering::Less),
            Test::Lte(bound) => matches!(
                compare_with(value, bound),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Test::Gt(bound) => compare_with(value, bound) == Some(Ordering::Greater),
            Test::Gte(bound) => matches!(
                compare_with(value, bound),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Test::Contains(operand) => match (value, operand) {
                (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                (Value::Array(items), _) => items.iter().any(|item| json_eq(item, operand)),
                _ => false,
            },
            Test::Regex(regex) => value.as_str().is_some_and(|text| regex.is_match(text)),
            Test::Exists(exists) => *exists,
            Test::MaxLength(max) => match value {
                Value::String(text) => fits(text.chars().count(), *max),
                Value::Array(items) => fits(items.len(), *max),
                _ => false,
            },
            Test::Under(base) => value
                .as_str()
                .is_some_and(|path| crate::uri::is_under(path, base)),
        }
    }
}

fn fits(length: usize, max: u64) -> bool {
    u64::try_from(length).is_ok_and(|length| length <= max)
}

/// Compares a value with a numeric bound; `None` when the value is no number.
fn compare_with(value: &Value, bound: &Number) -> Option<Ordering> {
    match value {
        Value::Number(number) => compare_numbers(number, bound),
        _ => None,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// Exact comparison of two JSON numbers: integers as integers (no rounding
/// above 2^53), floats as floats, and an integer against a float exactly.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        (Some(a), None) => compare_integer_float(a, b.as_f64()?),
        (None, Some(b)) => compare_integer_float(b, a.as_f64()?).map(Ordering::reverse),
        (None, None) => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn integer(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

fn compare_integer_float(integer: i128, float: f64) -> Option<Ordering> {
    // Rounding is monotonic, so an unequal rounded comparison is already the
    // answer; equal means the float is a whole number near the integer,
    // which converts exactly.
    match (integer as f64).partial_cmp(&float)? {
        Ordering::Equal => Some(integer.cmp(&(float as i128))),
        other => Some(other),
    }
}

/// One operator of a compiled argument rule, for `mcp-policy explain`.
/// Native only, like the rest of what that command reads: the module does
/// not carry it.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSummary<'a> {
    /// `"require"`, `"deny_if"` or `"approve_if"`.
    pub list: &'static str,
    /// The argument path as written, e.g. `args.options.timeout`.
    pub argument: String,
    /// The operator's name, e.g. `lte`.
    pub operator: &'static str,
    /// The operand as written (a regex as its pattern).
    pub operand: Value,
    /// JSON pointer of the operator, e.g. `/tools/x/require/args.timeout/lte`.
    pub pointer: &'a str,
}

#[cfg(not(target_arch = "wasm32"))]
impl ArgumentRules {
    /// Every operator, in the order they are checked: `require` first, then
    /// `deny_if`, each in document order. Read-only; decisions use [`Self::violation`].
    pub fn operators(&self) -> impl Iterator<Item = OperatorSummary<'_>> {
        [
            ("require", &self.require),
            ("deny_if", &self.deny_if),
            ("approve_if", &self.approve_if),
        ]
        .into_iter()
        .flat_map(|(list, conditions)| {
            conditions.iter().flat_map(move |condition| {
                let argument = condition.argument_path();
                condition
                    .operators
                    .iter()
                    .map(move |operator| OperatorSummary {
                        list,
                        argument: argument.clone(),
                        operator: operator.test.name(),
                        operand: operator.test.operand(),
                        pointer: &operator.pointer,
                    })
            })
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Condition {
    /// The path as the policy writes it: `args.` and the segments joined by dots.
    fn argument_path(&self) -> String {
        let segments: Vec<&str> = self
            .path
            .iter()
            .map(|segment| segment.key.as_str())
            .collect();
        format!("{ARGS_PREFIX}{}", segments.join("."))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Test {
    /// The operator's name in the policy.
    fn name(&self) -> &'static str {
        match self {
            Test::Eq(_) => "eq",
            Test::Neq(_) => "neq",
            Test::In(_) => "in",
            Test::NotIn(_) => "not_in",
            Test::Lt(_) => "lt",
            Test::Lte(_) => "lte",
            Test::Gt(_) => "gt",
            Test::Gte(_) => "gte",
            Test::Contains(_) => "contains",
            Test::Regex(_) => "regex",
            Test::Exists(_) => "exists",
            Test::MaxLength(_) => "max_length",
            Test::Under(_) => "under",
        }
    }

    /// The operand as the policy wrote it.
    fn operand(&self) -> Value {
        match self {
            Test::Eq(value) | Test::Neq(value) | Test::Contains(value) => value.clone(),
            Test::In(values) | Test::NotIn(values) => Value::Array(values.clone()),
            Test::Lt(bound) | Test::Lte(bound) | Test::Gt(bound) | Test::Gte(bound) => {
                Value::Number(bound.clone())
            }
            Test::Regex(regex) => Value::String(regex.as_str().to_string()),
            Test::Exists(exists) => Value::Bool(*exists),
            Test::MaxLength(max) => Value::from(*max),
            Test::Under(base) => Value::String(base.clone()),
        }
    }
}

/// JSON Schema of the argument types whose `Deserialize` is written by hand
/// (`mcp-policy schema`). Native only, like the rest of the schema.
#[cfg(not(target_arch = "wasm32"))]
mod json_schema {
    use std::borrow::Cow;

    use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

    use super::{Array, ConditionsDocument, JsonNumber, NonNegativeInteger, OperatorsDocument};

    impl JsonSchema for JsonNumber {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "JsonNumber".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "number" })
        }
    }

    impl JsonSchema for Array {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "Array".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "array" })
        }
    }

    impl JsonSchema for NonNegativeInteger {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> Cow<'static, str> {
            "NonNegativeInteger".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "integer", "minimum": 0 })
        }
    }

    /// Argument path → operators. The pattern is what `compile_path` accepts:
    /// `args.` then non-empty dot-separated segments.
    impl JsonSchema for ConditionsDocument {
        fn schema_name() -> Cow<'static, str> {
            "Conditions".into()
        }
        fn json_schema(generator: &mut SchemaGenerator) -> Schema {
            json_schema!({
                "description": "Argument path (`args.` and a dot path into the call's arguments) → operators; an empty array is no conditions.",
                "anyOf": [
                    {
                        "type": "object",
                        "additionalProperties": generator.subschema_for::<OperatorsDocument>(),
                        "propertyNames": { "pattern": "^args(\\.[^.]+)+$" }
                    },
                    { "type": "array", "maxItems": 0 }
                ]
            })
        }
    }
}

#[cfg(test)]
mod tests;
