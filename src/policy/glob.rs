//! Keys with `*` in `tools`, `prompts`, `resources` and `hide`: `*` matches
//! any run of characters (none included, `/` included). An exact key beats
//! every pattern; between patterns, the one with the most literal text wins;
//! two patterns with as much literal text that can match one same name are
//! refused when the policy loads, because neither would clearly win.

use std::borrow::Cow;

/// The longest pattern read: checking that two patterns cannot match one
/// name costs the product of their lengths (time and memory), once per pair.
pub const MAX_PATTERN_CHARS: usize = 512;

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The literal pieces between the stars (`a*b*c` → `a`, `b`, `c`).
    pieces: Vec<String>,
    /// The same pieces as [`fold_case`] spells them, for names that match
    /// only when letter case is ignored.
    folded: Vec<String>,
    /// Whether `folded` differs from `pieces` (capitals, or characters
    /// whose case mapping is ASCII).
    has_upper: bool,
    literal_len: usize,
}

impl Glob {
    /// The pattern, or `None` when the key has no `*` (an exact key).
    pub fn new(pattern: &str) -> Option<Glob> {
        if !pattern.contains('*') {
            return None;
        }
        let pieces: Vec<String> = pattern.split('*').map(str::to_string).collect();
        let literal_len = pieces.iter().map(|piece| piece.chars().count()).sum();
        let folded: Vec<String> = pieces
            .iter()
            .map(|piece| fold_case(piece).into_owned())
            .collect();
        let has_upper = folded != pieces;
        Some(Glob {
            pattern: pattern.to_string(),
            pieces,
            folded,
            has_upper,
            literal_len,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Characters of literal text: the more, the more specific.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }

    pub fn matches(&self, text: &str) -> bool {
        matches(&self.pieces, text)
    }

    /// Whether `text` (the name, and `lowered` its [`fold_case`])
    /// matches only when letter case is ignored: a server that matches names
    /// loosely would take it for a name this pattern governs. A name that
    /// is its own fold can match so only a pattern with capitals: the others
    /// are not tried.
    pub fn matches_only_ignoring_case(&self, text: &str, lowered: &str) -> bool {
        if !self.has_upper && lowered == text {
            return false;
        }
        matches(&self.folded, lowered) && !self.matches(text)
    }

    /// A name both patterns match, if there is one.
    pub fn overlap(&self, other: &Glob) -> Option<String> {
        overlap(&self.pattern, &other.pattern)
    }
}

/// A name as a server that ignores letter case reads it: ASCII in lower
/// case, and the few other characters whose case mapping is ASCII letters
/// (`ſ` → `s`, `ı` → `i`, KELVIN SIGN → `k`, `ﬁ` → `fi`, ...) spelt so.
/// Borrowed when the name is already that (no allocation: the usual name).
///
/// Such a character escaped (`%C4%B1`, as a normalised URI writes `ı`) is
/// spelt so too: a server decodes it before it folds.
pub fn fold_case(name: &str) -> Cow<'_, str> {
    if !name
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii() || b == b'%')
    {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        let (c, length) = match escaped_char(rest) {
            Some((decoded, length)) if crate::mcp::ascii_spelling(decoded).is_some() => {
                (decoded, length)
            }
            _ => (c, c.len_utf8()),
        };
        match crate::mcp::ascii_spelling(c) {
            Some(spelling) => out.extend(spelling.chars().map(|c| c.to_ascii_lowercase())),
            None => out.push(c.to_ascii_lowercase()),
        }
        rest = &rest[length..];
    }
    Cow::Owned(out)
}

/// The character that escapes at the start of `text` encode in UTF-8
/// (`%C4%B1` is `ı`), and how many bytes of `text` they take.
fn escaped_char(text: &str) -> Option<(char, usize)> {
    let bytes = text.as_bytes();
    let hex = |at: usize| {
        bytes
            .get(at)
            .and_then(|byte| char::from(*byte).to_digit(16))
    };
    let mut encoded = [0u8; 4];
    for count in 1..=4 {
        let at = (count - 1) * 3;
        if bytes.get(at) != Some(&b'%') {
            return None;
        }
        let value = hex(at + 1)? * 16 + hex(at + 2)?;
        encoded[count - 1] = u8::try_from(value).ok()?;
        if let Ok(decoded) = std::str::from_utf8(&encoded[..count]) {
            return decoded.chars().next().map(|c| (c, count * 3));
        }
    }
    None
}

fn matches(pieces: &[String], text: &str) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return false;
    };
    if text.len() < first.len() + last.len()
        || !text.starts_with(first.as_str())
        || !text.ends_with(last.as_str())
    {
        return false;
    }
    // The middle pieces, leftmost first, between the prefix and the suffix.
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A name both `a` and `b` (with `*` as above; an exact key is a pattern
/// without stars) match, found by a search over pairs of positions.
pub fn overlap(a: &str, b: &str) -> Option<String> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // For each reached state (i, j): the state it came from and the character
    // written on the way (none for a star skipped).
    let mut from: Vec<Option<(usize, Option<char>)>> = vec![None; (a.len() + 1) * width];
    let start = 0;
    from[start] = Some((usize::MAX, None));
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]);
    while let Some((i, j)) = queue.pop_front() {
        if i == a.len() && j == b.len() {
            let mut name = Vec::new();
            let mut state = i * width + j;
            while let Some((previous, written)) = from[state] {
                if previous == usize::MAX {
                    break;
                }
                name.extend(written);
                state = previous;
            }
            name.reverse();
            return Some(name.into_iter().collect());
        }
        let here = i * width + j;
        let mut next = Vec::new();
        match (a.get(i), b.get(j)) {
            (Some('*'), Some('*')) => {
                next.push((i + 1, j, None));
                next.push((i, j + 1, None));
            }
            (Some('*'), other) => {
                next.push((i + 1, j, None));
                if let Some(c) = other {
                    next.push((i, j + 1, Some(*c)));
                }
            }
            (other, Some('*')) => {
                next.push((i, j + 1, None));
                if let Some(c) = other {
                    next.push((i + 1, j, Some(*c)));
                }
            }
            (Some(x), Some(y)) if x == y => next.push((i + 1, j + 1, Some(*x))),
            _ => {}
        }
        for (ni, nj, written) in next {
            let state = ni * width + nj;
            if from[state].is_none() {
                from[state] = Some((here, written));
                queue.push_back((ni, nj));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stars_match_any_run() {
        let glob = Glob::new("file:///srv/public/*").unwrap();
        assert!(glob.matches("file:///srv/public/a/b.md"));
        assert!(glob.matches("file:///srv/public/"));
        assert!(!glob.matches("file:///srv/.env"));
        let glob = Glob::new("get_*_status*").unwrap();
        assert!(glob.matches("get_job_status"));
        assert!(glob.matches("get__status_v2"));
        assert!(!glob.matches("get_status"));
        assert_eq!(glob.literal_len(), "get__status".len());
        assert!(Glob::new("*").unwrap().matches(""));
        let glob = Glob::new("ab*ba").unwrap();
        assert!(
            !glob.matches("aba"),
            "prefix and suffix may not share characters"
        );
        assert!(glob.matches("abba"));
        assert_eq!(Glob::new("exact"), None);
    }

    #[test]
    fn folding_borrows_what_needs_none() {
        assert!(matches!(fold_case("tools_list-1"), Cow::Borrowed(_)));
        assert_eq!(fold_case("GetUser"), "getuser");
        assert_eq!(fold_case("\u{17f}ecret\u{fb01}le"), "secretfile");
        assert_eq!(fold_case("\u{212a}elvin\u{e9}"), "kelvin\u{e9}");
        // Escaped, as a normalised URI writes them: decoded first.
        assert_eq!(fold_case("file:///den%C4%B1ed"), "file:///denied");
        assert_eq!(fold_case("%C5%BFecret%E2%84%AAey"), "secretkey");
        // Other escapes and a lone % stay as they are, in lower case.
        assert_eq!(fold_case("caf%C3%A9%2"), "caf%c3%a9%2");
        // A lower-case pattern is never tried against a name that folds to itself.
        let glob = Glob::new("drop_*").unwrap();
        assert!(!glob.matches_only_ignoring_case("drop_x", &fold_case("drop_x")));
        assert!(glob.matches_only_ignoring_case("Drop_x", &fold_case("Drop_x")));
        let capital = Glob::new("Drop_*").unwrap();
        assert!(capital.matches_only_ignoring_case("drop_x", &fold_case("drop_x")));
    }

    #[test]
    fn overlapping_patterns_come_with_a_witness() {
        for (a, b) in [
            ("a*", "*b"),
            ("*x*", "*y*"),
            ("f*le", "fi*e"),
            ("*", "abc"),
            ("a*c", "ab*"),
        ] {
            let witness = overlap(a, b).unwrap_or_else(|| panic!("{a} and {b} overlap"));
            let matches = |p: &str| match Glob::new(p) {
                Some(glob) => glob.matches(&witness),
                None => p == witness,
            };
            assert!(matches(a) && matches(b), "{a} {b} {witness:?}");
        }
        for (a, b) in [("a*", "b*"), ("*a", "*b"), ("x*y", "x*z"), ("abc", "abd")] {
            assert_eq!(overlap(a, b), None, "{a} {b}");
        }
    }
}
