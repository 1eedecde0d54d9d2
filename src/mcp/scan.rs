//! The single pass's fast path: the same checks and the same result as the
//! serde_json walk ([`super::walk`]) for the bodies agents send, at a
//! fraction of the cost. serde_json decodes every string it meets into a
//! scratch buffer and checks its UTF-8 (an allowed 64 KiB call spent most of
//! its time there); a string the gate does not keep needs neither: only
//! that it is well formed.
//!
//! It vouches only for what it is sure of and leaves everything else to the
//! walk, whose verdict and error message then stand: any syntax error, a
//! nesting past the limit, a duplicate or letter-case-variant member (each
//! an error the walk reports in its own words), a member name or a kept
//! string (`method`, `params.name`, `id`, ...) with an escape, a `\u` escape
//! of a UTF-16 surrogate, a number serde_json might find out of range. Where
//! it does accept a body, the walk accepts it with the same result: the unit
//! tests and the `parse_body` fuzz target check exactly that.

use std::borrow::Cow;

use serde_json::Value;

use super::{Envelope, KeySet, Object, Place, Seen};

/// The message in `body`, or `None` when the walk must read it.
pub(super) fn read(body: &[u8], max_depth: usize) -> Option<Envelope<'_>> {
    let mut scanner = Scanner {
        body,
        at: 0,
        max_depth,
    };
    scanner.whitespace();
    if scanner.peek() != Some(b'{') {
        return None;
    }
    let seen = scanner.value(Place::Top, 0)?;
    scanner.whitespace();
    if scanner.at != body.len() {
        return None;
    }
    match seen {
        Seen::Envelope(envelope) => Some(*envelope),
        _ => None,
    }
}

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
    max_depth: usize,
}

/// A string's bytes between its quotes: well formed, valid UTF-8.
struct Text<'a> {
    raw: &'a [u8],
    escaped: bool,
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` that is zero, and perhaps of some
/// bytes after the first zero one: the lowest bit set marks the first.
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

/// The bytes of `word` that end a run of plain string bytes: a quote, a
/// backslash or a control character (below 0x20). As with [`zero_bytes`],
/// only the lowest bit set is exact: it marks the first such byte.
const fn special_bytes(word: u64) -> u64 {
    zero_bytes(word ^ (ONES * b'"' as u64))
        | zero_bytes(word ^ (ONES * b'\\' as u64))
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

/// Whether `text` can stand in a JSON string as it is: no quote, backslash
/// or control character, the only bytes JSON (and serde_json's writer)
/// escape. Eight bytes at a time.
pub(crate) fn is_plain_text(text: &[u8]) -> bool {
    let mut words = text.chunks_exact(8);
    for chunk in words.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if special_bytes(u64::from_le_bytes(word)) != 0 {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    /// What serde_json skips between tokens.
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self, place: Place, depth: usize) -> Option<Seen<'a>> {
        if place == Place::Elsewhere {
            return self.skip(depth).map(|()| Seen::Nothing);
        }
        match self.peek()? {
            b'{' | b'[' if depth >= self.max_depth => None,
            b'{' => {
                self.at += 1;
                self.object(place, depth)
            }
            b'[' => {
                self.at += 1;
                self.array(depth)?;
                Some(place.array())
            }
            b'"' => {
                self.at += 1;
                let text = self.string()?;
                match place {
                    // Kept, so it must be decoded: the walk's job.
                    Place::Text | Place::Id if text.escaped => None,
                    Place::Text | Place::Id => {
                        let text = std::str::from_utf8(text.raw).ok()?;
                        Some(place.string(|| Cow::Borrowed(text)))
                    }
                    // Not kept: only its kind is.
                    _ => Some(place.string(|| Cow::Borrowed(""))),
                }
            }
            b't' => self
                .literal(b"true")
                .then(|| place.scalar(|| Value::Bool(true), "a boolean")),
            b'f' => self
                .literal(b"false")
                .then(|| place.scalar(|| Value::Bool(false), "a boolean")),
            b'n' => self.literal(b"null").then(|| place.null()),
            b'-' | b'0'..=b'9' => self.number(place),
            _ => None,
        }
    }

    /// A value of which nothing is kept (most of a body): checked the same
    /// way, with no [`Seen`] made, and an object's member names compared
    /// as bytes (without escapes, the same as comparing them decoded).
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' | b'[' if depth >= self.max_depth => None,
            b'{' => {
                self.at += 1;
                self.skip_object(depth)
            }
            b'[' => {
                self.at += 1;
                self.array(depth)
            }
            b'"' => {
                self.at += 1;
                self.string().map(drop)
            }
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            b'-' | b'0'..=b'9' => self.number(Place::Elsewhere).map(drop),
            _ => None,
        }
    }

    /// An object of which nothing is kept: its members may not repeat (no
    /// member name is guarded against letter-case variants here).
    fn skip_object(&mut self, depth: usize) -> Option<()> {
        debug_assert!(Place::Elsewhere.guarded_members().is_empty());
        let mut keys: KeySet<&[u8]> = KeySet::default();
        self.whitespace();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.member_name()?;
            if key.escaped || keys.contains(key.raw) {
                return None;
            }
            keys.insert(key.raw);
            self.skip(depth + 1)?;
            if !self.more(b'}')? {
                return Some(());
            }
        }
    }

    /// A member's name and the `:` after it (with the whitespace around it).
    fn member_name(&mut self) -> Option<Text<'a>> {
        if !self.eat(b'"') {
            return None;
        }
        let key = self.string()?;
        self.whitespace();
        if !self.eat(b':') {
            return None;
        }
        self.whitespace();
        Some(key)
    }

    /// What follows a member or an element: `,` and another (`true`), or
    /// `close` (`false`), each with the whitespace after it.
    fn more(&mut self, close: u8) -> Option<bool> {
        self.whitespace();
        if self.eat(b',') {
            self.whitespace();
            Some(true)
        } else if self.eat(close) {
            Some(false)
        } else {
            None
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let matched = self.body[self.at..].starts_with(word);
        if matched {
            self.at += word.len();
        }
        matched
    }

    fn object(&mut self, place: Place, depth: usize) -> Option<Seen<'a>> {
        let mut object = Object::new(place);
        self.whitespace();
        if self.eat(b'}') {
            return Some(object.finish());
        }
        loop {
            let key = self.member_name()?;
            if key.escaped {
                return None;
            }
            let key = std::str::from_utf8(key.raw).ok()?;
            if object.refuse(key).is_some() {
                return None;
            }
            let seen = self.value(place.member(key), depth + 1)?;
            object.member(Cow::Borrowed(key), seen);
            if !self.more(b'}')? {
                return Some(object.finish());
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.whitespace();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.skip(depth + 1)?;
            if !self.more(b']')? {
                return Some(());
            }
        }
    }

    /// A string after its opening quote, up to and past its closing one.
    fn string(&mut self) -> Option<Text<'a>> {
        let start = self.at;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            // Eight bytes at a time up to the first special one. (A
            // non-ASCII byte past it may mark the string for the UTF-8
            // check below: a check too many, never one too few.)
            while let Some(chunk) = self.body.get(self.at..self.at + 8) {
                let word = u64::from_le_bytes(chunk.try_into().ok()?);
                high |= word;
                let special = special_bytes(word);
                if special != 0 {
                    self.at += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                self.at += 8;
            }
            let byte = *self.body.get(self.at)?;
            self.at += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return None,
                _ => high |= u64::from(byte),
            }
        }
        let raw = &self.body[start..self.at - 1];
        if high & HIGHS != 0 && std::str::from_utf8(raw).is_err() {
            return None;
        }
        Some(Text { raw, escaped })
    }

    /// An escape after its backslash. A `\u` escape of a UTF-16 surrogate
    /// is the walk's to judge (serde_json pairs them, or refuses).
    fn escape(&mut self) -> Option<()> {
        let byte = *self.body.get(self.at)?;
        self.at += 1;
        match byte {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.body.get(self.at..self.at + 4)?;
                let mut unit = 0u32;
                for &digit in hex {
                    unit = unit * 16 + char::from(digit).to_digit(16)?;
                }
                self.at += 4;
                (!(0xD800..=0xDFFF).contains(&unit)).then_some(())
            }
            _ => None,
        }
    }

    /// A number. serde_json reads an integer of up to 18 digits, or a
    /// fraction with one and an exponent of at most two digits, without
    /// fail; any other number it may refuse as out of range, so serde_json
    /// reads it here (as it reads every `id`, which is kept as its value).
    fn number(&mut self, place: Place) -> Option<Seen<'a>> {
        let start = self.at;
        self.eat(b'-');
        let integer = self.at;
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let integer_digits = self.at - integer;
        if self.eat(b'.') && !self.digits_at_least_one() {
            return None;
        }
        let mut exponent_digits = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            let exponent = self.at;
            if !self.digits_at_least_one() {
                return None;
            }
            exponent_digits = self.at - exponent;
        }
        let certain = integer_digits <= 18 && exponent_digits <= 2;
        if certain && place != Place::Id {
            return Some(place.scalar(|| Value::Null, "a number"));
        }
        let value: Value = serde_json::from_slice(&self.body[start..self.at]).ok()?;
        Some(place.scalar(|| value, "a number"))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn digits_at_least_one(&mut self) -> bool {
        let start = self.at;
        self.digits();
        self.at > start
    }
}
