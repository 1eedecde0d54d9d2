//! Positions in a policy's source text: turning the dotted error path of a
//! [`ConfigError`](crate::policy::ConfigError) (`tools.x.limits[0].window`)
//! into a line and column, for errors found after the document was read.
//!
//! Positions follow serde_json's convention, so that errors located here and
//! errors the reader reports look alike: the line is 1-based, the column
//! counts bytes from the start of the line up to and including the byte the
//! error points at.

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

#[cfg(test)]
use crate::policy::index_of_line_column;
use crate::policy::line_column_of_index;

/// A line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// serde_json's position for a byte index: the line it is on and how many
/// bytes of that line come before it.
pub fn position_of_index(text: &str, index: usize) -> Position {
    let (line, column) = line_column_of_index(text.as_bytes(), index);
    Position { line, column }
}

/// The byte index serde_json meant by a position (the inverse of
/// [`position_of_index`]), if the text has that line.
#[cfg(test)]
fn index_of_position(text: &str, position: Position) -> Option<usize> {
    index_of_line_column(text.as_bytes(), position.line, position.column)
}

/// Where `raw` starts in `text`, when `raw` was read from `text`.
fn offset_in(text: &str, raw: &RawValue) -> Option<usize> {
    let start = text.as_ptr() as usize;
    let found = raw.get().as_ptr() as usize;
    (found >= start && found <= start + text.len()).then(|| found - start)
}

/// An object's members in document order, duplicates kept, values unparsed.
struct Members<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = access.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// An array's elements, unparsed.
struct Elements<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementsVisitor;
        impl<'de> Visitor<'de> for ElementsVisitor {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Elements<'de>, A::Error> {
                let mut elements = Vec::new();
                while let Some(element) = access.next_element::<&'de RawValue>()? {
                    elements.push(element);
                }
                Ok(Elements(elements))
            }
        }
        deserializer.deserialize_seq(ElementsVisitor)
    }
}

/// The members of `raw` if it is an object.
fn members(raw: &RawValue) -> Option<Vec<(String, &RawValue)>> {
    raw.get()
        .starts_with('{')
        .then(|| serde_json::from_str::<Members<'_>>(raw.get()).ok())
        .flatten()
        .map(|members| members.0)
}

/// The elements of `raw` if it is an array.
fn elements(raw: &RawValue) -> Option<Vec<&RawValue>> {
    raw.get()
        .starts_with('[')
        .then(|| serde_json::from_str::<Elements<'_>>(raw.get()).ok())
        .flatten()
        .map(|elements| elements.0)
}

/// The position of the value an error path names, or of the deepest value on
/// the way to it that exists. `None` if the text is not one JSON value.
/// `root_name` is the path of the document itself (`policy`).
pub fn locate(text: &str, path: &str, root_name: &str) -> Option<Position> {
    let root: &RawValue = serde_json::from_str(text).ok()?;
    let rest = if path == root_name { "" } else { path };
    let (found, _) = resolve(root, rest, 0);
    let offset = offset_in(text, found)?;
    // Point at the value's first byte, as the reader points at the byte it stopped on.
    Some(position_of_index(text, offset + 1))
}

/// The position of the value a JSON pointer (`/tools/a.b/limits/0`) names,
/// or of the deepest value on the way to it that exists.
pub fn locate_pointer(text: &str, pointer: &str) -> Option<Position> {
    let mut value: &RawValue = serde_json::from_str(text).ok()?;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = if value.get().starts_with('[') {
            token
                .parse::<usize>()
                .ok()
                .and_then(|index| elements(value)?.into_iter().nth(index))
        } else {
            members(value)
                .unwrap_or_default()
                .into_iter()
                .find(|(key, _)| *key == token)
                .map(|(_, member)| member)
        };
        match next {
            Some(next) => value = next,
            None => break,
        }
    }
    let offset = offset_in(text, value)?;
    Some(position_of_index(text, offset + 1))
}

/// Walks `rest` (a dotted path with `[i]` indexes) down from `value`. Keys
/// may contain dots, so every key that fits is tried; the first complete
/// match wins, else the deepest partial one. Returns the value and the depth
/// reached, `usize::MAX` for a complete match.
fn resolve<'a>(value: &'a RawValue, rest: &str, depth: usize) -> (&'a RawValue, usize) {
    if rest.is_empty() {
        return (value, usize::MAX);
    }
    if let Some(indexed) = rest.strip_prefix('[') {
        let Some((index, after)) = indexed.split_once(']') else {
            return (value, depth);
        };
        let element = index
            .parse::<usize>()
            .ok()
            .and_then(|index| elements(value)?.into_iter().nth(index));
        return match element {
            Some(element) => resolve(element, after.strip_prefix('.').unwrap_or(after), depth + 1),
            None => (value, depth),
        };
    }
    let mut best = (value, depth);
    for (key, member) in members(value).unwrap_or_default() {
        let Some(after) = rest.strip_prefix(key.as_str()) else {
            continue;
        };
        let next = if after.is_empty() || after.starts_with('[') {
            after
        } else if let Some(after_dot) = after.strip_prefix('.') {
            after_dot
        } else {
            continue;
        };
        let found = resolve(member, next, depth + 1);
        if found.1 == usize::MAX {
            return found;
        }
        if found.1 > best.1 {
            best = found;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n  \"tools\": {\n    \"a.b\": {\"limits\": [\n      {\"window\": 3}\n    ]},\n    \"a\": {}\n  }\n}";

    #[test]
    fn positions_round_trip() {
        for index in 0..=TEXT.len() {
            let position = position_of_index(TEXT, index);
            assert_eq!(index_of_position(TEXT, position), Some(index), "{position}");
        }
    }

    #[test]
    fn paths_resolve_through_keys_with_dots_and_indexes() {
        // `3` is on line 4: `      {"window": 3}`, its first byte at column 18.
        assert_eq!(
            locate(TEXT, "tools.a.b.limits[0].window", "policy"),
            Some(Position {
                line: 4,
                column: 18
            })
        );
        assert_eq!(
            locate(TEXT, "tools.a", "policy"),
            Some(Position {
                line: 6,
                column: 10
            })
        );
        // The deepest value that exists.
        assert_eq!(
            locate(TEXT, "tools.a.b.limits[3].window", "policy"),
            Some(Position {
                line: 3,
                column: 23
            })
        );
        assert_eq!(
            locate(TEXT, "policy", "policy"),
            Some(Position { line: 1, column: 1 })
        );
        assert_eq!(locate("{", "policy", "policy"), None);
    }

    #[test]
    fn pointers_resolve_with_escapes() {
        assert_eq!(
            locate_pointer(TEXT, "/tools/a.b/limits/0/window"),
            Some(Position {
                line: 4,
                column: 18
            })
        );
        assert_eq!(
            locate_pointer("{\"a/b\": {\"c~d\": 1}}", "/a~1b/c~0d"),
            Some(Position {
                line: 1,
                column: 17
            })
        );
        // The deepest value that exists.
        assert_eq!(
            locate_pointer(TEXT, "/tools/zzz"),
            Some(Position {
                line: 2,
                column: 12
            })
        );
    }
}
