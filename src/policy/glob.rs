//! Keys with `*` in `tools`, `prompts`, `resources` and `hide`: `*` matches
//! any run of characters (none included, `/` included). An exact key beats
//! every pattern; between patterns, the one with the most literal text wins;
//! two patterns with as much literal text that can match one same name are
//! refused when the policy loads, because neither would clearly win.

/// The longest pattern read: checking that two patterns cannot match one
/// name costs the product of their lengths (time and memory), once per pair.
pub const MAX_PATTERN_CHARS: usize = 512;

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The literal pieces between the stars (`a*b*c` → `a`, `b`, `c`).
    pieces: Vec<String>,
    /// The same pieces in ASCII lower case, for names that match only when
    /// letter case is ignored.
    folded: Vec<String>,
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
        let folded = pieces
            .iter()
            .map(|piece| piece.to_ascii_lowercase())
            .collect();
        Some(Glob {
            pattern: pattern.to_string(),
            pieces,
            folded,
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

    /// Whether `text` (the name, and `lowered` the same in ASCII lower case)
    /// matches only when letter case is ignored: a server that matches names
    /// loosely would take it for a name this pattern governs.
    pub fn matches_only_ignoring_case(&self, text: &str, lowered: &str) -> bool {
        matches(&self.folded, lowered) && !self.matches(text)
    }

    /// A name both patterns match, if there is one.
    pub fn overlap(&self, other: &Glob) -> Option<String> {
        overlap(&self.pattern, &other.pattern)
    }
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
