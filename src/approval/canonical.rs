//! Canonical JSON and the call digest of the filter protocol.
//!
//! The digest binds an approval to the exact call: the service recomputes it
//! from the check's fields and refuses a check whose `digest` differs, so what
//! an approver sees is what the approval covers. The filter computes the same
//! bytes; README.md ("The digest") states the rules and gives test vectors.
//!
//! Canonical form of a JSON value:
//! - no whitespace; object keys sorted by their UTF-8 bytes; a key twice in
//!   one object is an error (parsers disagree on which one wins);
//! - strings: `"` and `\` escaped with a backslash, U+0008, U+0009, U+000A,
//!   U+000C, U+000D as `\b \t \n \f \r`, other U+0000..U+001F as `\u00xx`
//!   (lowercase hex), everything else as UTF-8 (this is what serde_json
//!   writes); lone surrogates are an error;
//! - numbers: an integer literal (no fraction, no exponent) as written, `-0`
//!   as `0`; any other number read as an IEEE double (an error if not
//!   finite): integral with magnitude below 2^53 as an integer, otherwise the
//!   shortest round-trip form as `ryu` (and so serde_json) writes it.
//!
//! The parser is self-contained (no serde) so that it can be copied as is.
//!
//! Copied from `approval-service/src/canonical.rs` (the reference). Doubles
//! are written with `ryu`, as there: serde_json 1.0.154 writes them with
//! another algorithm (`1e+23` where ryu writes `1e23`), so it cannot stand
//! in. `tests::digest_envelope_and_vector` checks the README's test vector.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 64;

/// A parsed JSON value; numbers are kept in canonical text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Sorted by key (UTF-8 bytes), keys unique.
    Object(Vec<(String, Json)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses one JSON value (surrounding whitespace allowed, nothing else).
pub fn parse(text: &str) -> Result<Json, Error> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        at: 0,
    };
    parser.whitespace();
    let value = parser.value(0)?;
    parser.whitespace();
    if parser.at != parser.bytes.len() {
        return Err(parser.error("trailing characters"));
    }
    Ok(value)
}

/// The canonical text of a JSON document.
pub fn canonicalize(text: &str) -> Result<String, Error> {
    Ok(parse(text)?.canonical())
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> Error {
        Error(format!("{what} at byte {}", self.at))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, Error> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        match self.peek() {
            Some(b'n') => self.literal("null", Json::Null),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("nested too deep"));
                }
                self.at += 1;
                let mut items = Vec::new();
                self.whitespace();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    self.whitespace();
                    items.push(self.value(depth + 1)?);
                    self.whitespace();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => return Err(self.error("expected , or ]")),
                    }
                }
            }
            Some(b'{') => {
                if depth >= MAX_DEPTH {
                    return Err(self.error("nested too deep"));
                }
                self.at += 1;
                let mut members: Vec<(String, Json)> = Vec::new();
                self.whitespace();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                loop {
                    self.whitespace();
                    if self.peek() != Some(b'"') {
                        return Err(self.error("expected a key"));
                    }
                    let key = self.string()?;
                    self.whitespace();
                    if self.peek() != Some(b':') {
                        return Err(self.error("expected :"));
                    }
                    self.at += 1;
                    self.whitespace();
                    let value = self.value(depth + 1)?;
                    members.push((key, value));
                    self.whitespace();
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            break;
                        }
                        _ => return Err(self.error("expected , or }")),
                    }
                }
                crate::sort::sort_by(&mut members, |a, b| a.0.as_bytes() < b.0.as_bytes());
                if let Some(pair) = members.windows(2).find(|pair| pair[0].0 == pair[1].0) {
                    return Err(Error(format!("duplicate key {:?}", pair[0].0)));
                }
                Ok(Json::Object(members))
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let value = u32::from_str_radix(digits, 16).map_err(|_| self.error("bad \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("bad \\u escape"));
        }
        self.at += 4;
        Ok(value)
    }

    fn string(&mut self) -> Result<String, Error> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // Cut at ASCII bytes only, so the slice is on char boundaries.
            out.push_str(&self.text[start..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.peek().ok_or_else(|| self.error("unexpected end"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if !self.bytes[self.at..].starts_with(b"\\u") {
                                    return Err(self.error("lone surrogate"));
                                }
                                self.at += 2;
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return Err(self.error("lone surrogate"));
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&first) {
                                return Err(self.error("lone surrogate"));
                            } else {
                                first
                            };
                            let c = char::from_u32(code).ok_or_else(|| self.error("bad escape"))?;
                            out.push(c);
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, Error> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let int_start = self.at;
        let int_digits = self.digits();
        if int_digits == 0 || (int_digits > 1 && self.bytes[int_start] == b'0') {
            return Err(self.error("invalid number"));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
        }
        let literal = &self.text[start..self.at];
        if integer {
            let digits = &self.text[int_start..self.at];
            return Ok(Json::Number(if digits == "0" {
                "0".to_owned()
            } else {
                literal.to_owned()
            }));
        }
        let value: f64 = literal.parse().map_err(|_| self.error("invalid number"))?;
        if !value.is_finite() {
            return Err(self.error("number out of range"));
        }
        Ok(Json::Number(format_double(value)))
    }
}

/// 2^53: below it every integer is exact in a double.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

pub(crate) fn format_double(value: f64) -> String {
    if value == value.trunc() && value.abs() < EXACT_INTEGERS {
        // Exact conversion: integral and within i64 (and -0.0 becomes 0).
        #[allow(clippy::cast_possible_truncation)]
        let integer = value as i64;
        integer.to_string()
    } else {
        ryu::Buffer::new().format_finite(value).to_owned()
    }
}

impl Json {
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        self.write_canonical(&mut out);
        out
    }

    pub fn write_canonical(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Number(text) => out.push_str(text),
            Json::String(text) => write_string(text, out),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.write_canonical(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write_canonical(out);
                }
                out.push('}');
            }
        }
    }
}

/// A string in canonical form (the escaping serde_json uses).
pub fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What the digest covers: every field of a check but the digest itself.
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Canonical text of the call's arguments.
    pub arguments: &'a str,
    pub caller: Option<&'a str>,
    pub grant: &'a str,
    pub policy_revision: &'a str,
    pub reason: Option<&'a str>,
    pub rule: &'a str,
    pub separate_approver: bool,
    pub target_kind: &'a str,
    pub target_name: &'a str,
    pub ttl_seconds: u64,
}

/// The version of the digest's envelope (its `"v"` member).
pub const DIGEST_VERSION: u32 = 1;

/// The canonical envelope the digest is the SHA-256 of.
pub fn digest_envelope(input: &DigestInput<'_>) -> String {
    let optional = |value: Option<&str>, out: &mut String| match value {
        Some(text) => write_string(text, out),
        None => out.push_str("null"),
    };
    // Members in sorted order.
    let mut out = String::from("{\"arguments\":");
    out.push_str(input.arguments);
    out.push_str(",\"caller\":");
    optional(input.caller, &mut out);
    out.push_str(",\"grant\":");
    write_string(input.grant, &mut out);
    out.push_str(",\"policy_revision\":");
    write_string(input.policy_revision, &mut out);
    out.push_str(",\"reason\":");
    optional(input.reason, &mut out);
    out.push_str(",\"rule\":");
    write_string(input.rule, &mut out);
    out.push_str(",\"separate_approver\":");
    out.push_str(if input.separate_approver {
        "true"
    } else {
        "false"
    });
    out.push_str(",\"target\":{\"kind\":");
    write_string(input.target_kind, &mut out);
    out.push_str(",\"name\":");
    write_string(input.target_name, &mut out);
    let _ = write!(
        out,
        "}},\"ttl_seconds\":{},\"v\":{DIGEST_VERSION}}}",
        input.ttl_seconds
    );
    out
}

/// `sha256:` and the lowercase hex SHA-256 of the envelope.
pub fn digest(input: &DigestInput<'_>) -> String {
    let hash = Sha256::digest(digest_envelope(input).as_bytes());
    format!("sha256:{}", hex(&hash))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn canon(text: &str) -> String {
        canonicalize(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        assert_eq!(
            canon(" { \"b\" : [1, 2 ,{\"z\":null,\"a\":true}], \"a\": \"x\" } "),
            r#"{"a":"x","b":[1,2,{"a":true,"z":null}]}"#
        );
        // UTF-8 byte order: "Z" < "a" < "é".
        assert_eq!(canon(r#"{"é":1,"a":2,"Z":3}"#), r#"{"Z":3,"a":2,"é":1}"#);
    }

    #[test]
    fn numbers_are_normalised() {
        for (input, expected) in [
            ("100", "100"),
            ("1e2", "100"),
            ("1.0", "1"),
            ("1.50", "1.5"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("0.1", "0.1"),
            ("-12.5e-1", "-1.25"),
            ("1e23", "1e23"),
            ("9007199254740993", "9007199254740993"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("9007199254740992.0", "9007199254740992.0"),
            ("1.5E-7", "1.5e-7"),
        ] {
            assert_eq!(canon(input), expected, "{input}");
        }
        assert!(canonicalize("1e400").is_err());
        assert!(canonicalize("01").is_err());
        assert!(canonicalize("1.").is_err());
        assert!(canonicalize("-").is_err());
        assert!(canonicalize(".5").is_err());
    }

    #[test]
    fn strings_use_minimal_escapes() {
        assert_eq!(
            canon(r#""a\/b\u0041\u00e9\n\u0001\u001F\"\\ \ud83d\ude00""#),
            "\"a/bAé\\n\\u0001\\u001f\\\"\\\\ 😀\""
        );
        assert!(canonicalize(r#""\ud83d""#).is_err(), "lone high surrogate");
        assert!(canonicalize(r#""\ude00""#).is_err(), "lone low surrogate");
        assert!(
            canonicalize("\"a\u{1}b\"").is_err(),
            "raw control character"
        );
        assert!(canonicalize(r#""\x""#).is_err());
        assert!(canonicalize(r#""\u00g0""#).is_err());
    }

    #[test]
    fn duplicate_keys_depth_and_garbage_are_refused() {
        let err = canonicalize(r#"{"code":"print(1)","code":"rm -rf /"}"#).unwrap_err();
        assert!(err.0.contains("duplicate key"), "{err}");
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(canonicalize(&deep).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(canonicalize(&deeper).is_err());
        for bad in [
            "",
            "nul",
            "[1,]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "1 2",
            "{1:2}",
            "tru",
        ] {
            assert!(canonicalize(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_json_writes_the_same_strings() {
        // The filter may write strings with serde_json: same bytes.
        let text = "a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{1f} é 😀 / \u{2028}";
        let mut ours = String::new();
        write_string(text, &mut ours);
        assert_eq!(ours, serde_json::to_string(text).unwrap());
        for value in [0.1f64, 1e23, 1.5e-7, 123.456, 9007199254740992.0] {
            assert_eq!(
                canon(&serde_json::to_string(&value).unwrap()),
                format_double(value)
            );
        }
    }

    pub(crate) fn example_input(arguments: &str) -> DigestInput<'_> {
        DigestInput {
            arguments,
            caller: Some("alice@example.com"),
            grant: "alice",
            policy_revision: "r1",
            reason: Some("scripts that start processes need a look"),
            rule: "/tools/asyncExecuteCode/approve_if/0",
            separate_approver: true,
            target_kind: "tool",
            target_name: "asyncExecuteCode",
            ttl_seconds: 900,
        }
    }

    #[test]
    fn digest_envelope_and_vector() {
        let arguments = canon(r#"{"code": "import os\nos.system('id')", "timeout": 30.0}"#);
        let input = example_input(&arguments);
        assert_eq!(
            digest_envelope(&input),
            r#"{"arguments":{"code":"import os\nos.system('id')","timeout":30},"caller":"alice@example.com","grant":"alice","policy_revision":"r1","reason":"scripts that start processes need a look","rule":"/tools/asyncExecuteCode/approve_if/0","separate_approver":true,"target":{"kind":"tool","name":"asyncExecuteCode"},"ttl_seconds":900,"v":1}"#
        );
        // The envelope is itself canonical JSON.
        assert_eq!(canon(&digest_envelope(&input)), digest_envelope(&input));
        // The README's test vector (computed with Python's hashlib from the
        // envelope above, independently of this code).
        assert_eq!(
            digest(&input),
            "sha256:0b83657c9b9a9f1af494bf8e625a57a9376d0e023fc7c526940a236d4970031f"
        );
        let other = canon(r#"{"code": "import os\nos.system('id')", "timeout": 31}"#);
        assert_ne!(digest(&input), digest(&example_input(&other)));
        let mut no_caller = example_input(&arguments);
        no_caller.caller = None;
        assert!(digest_envelope(&no_caller).contains("\"caller\":null"));
        assert_ne!(digest(&input), digest(&no_caller));
    }
}
