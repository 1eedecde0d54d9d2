//! The `regex` operator's patterns, compiled with `regex-lite`: linear-time
//! matching like the `regex` crate, without its Unicode tables (most of the
//! module's size when it was used).
//!
//! What `regex-lite` gives up is Unicode beyond matching code point by code
//! point: `\p{..}` classes (it refuses them itself), and it reads the Perl
//! classes `\d` `\s` `\w` (and their negations), the word boundaries `\b` `\B`
//! `\<` `\>` and case-insensitive matching `(?i)` with ASCII meanings, where
//! the `regex` crate's are Unicode-aware. A policy written for the one would
//! silently mean something else with the other (`(?i)subprocess` would stop
//! matching `ſubprocess`, which Python reads as `subprocess`), so patterns
//! using them are refused here, with the ASCII spelling to write instead.

use regex_lite::{Regex, RegexBuilder};

/// The largest compiled pattern accepted, in `regex-lite`'s measure of its
/// program. Matching is linear in the value's length *times* the number of
/// the pattern's states, and a counted repetition copies what it repeats
/// (`[^\n]{200}` is 200 states): natively about 60 ms per MiB of value for
/// a small pattern and 18 ms more per MiB for each repeated state
/// (BENCHMARKS.md "What a regex costs"). 64 KiB admits `[^\n]{1000}`,
/// `a{2000}` and `^[a-z0-9_./-]{1,255}$`; regex-lite's own limit (10 MiB,
/// `a{50000}`) would let one condition take a quarter of an hour per MiB.
pub(super) const MAX_COMPILED_BYTES: usize = 64 * 1024;

/// A compiled `regex` operand.
#[derive(Debug)]
pub(super) struct Pattern {
    regex: Regex,
    /// For a pattern that is only alternatives of plain text
    /// (`subprocess|os\.system`): the texts. It matches exactly where one
    /// of them occurs, which `str::contains` finds without running the
    /// regex's NFA over the value (measured: argument rules on a 64 KiB
    /// call, BENCHMARKS.md "Module size and start-up").
    literals: Option<Vec<String>>,
}

impl Pattern {
    /// Whether the pattern matches somewhere in `text` (a search, not anchored).
    pub(super) fn is_match(&self, text: &str) -> bool {
        match &self.literals {
            Some(literals) => literals
                .iter()
                .any(|literal| text.contains(literal.as_str())),
            None => self.regex.is_match(text),
        }
    }

    /// The pattern as written.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

/// The compiled pattern, or why it is refused (one line, for the policy error).
pub(super) fn compile(pattern: &str) -> Result<Pattern, String> {
    refuse_unicode_dependent(pattern)?;
    let regex = RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED_BYTES)
        .build()
        .map_err(|err| {
            let err = err.to_string();
            if err.contains("size limit") {
                format!(
                    "the pattern compiles to more than {} KiB (a counted repetition such as {{1000}} copies what it repeats); matching time grows with the value's length times the pattern's size, so write a smaller pattern",
                    MAX_COMPILED_BYTES / 1024
                )
            } else {
                err
            }
        })?;
    Ok(Pattern {
        regex,
        literals: literal_alternatives(pattern),
    })
}

/// About how many states the engine steps through per character of a
/// value for `pattern` (its compiled size, found as the smallest size limit
/// it compiles within, over ~32 bytes a state); `None` for a pattern
/// matched as substring searches, one anchored at the start without
/// alternatives (its work ends with its match), or one that does not
/// compile. Native
/// only: for `check`'s warning on what a pattern costs.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn states(pattern: &str) -> Option<usize> {
    // Plain alternatives are substring searches; a pattern anchored at the
    // start with no alternation stops where its match can no longer grow.
    let anchored = pattern.starts_with('^') && !pattern.contains('|');
    if literal_alternatives(pattern).is_some() || anchored {
        return None;
    }
    let compiles = |limit: usize| RegexBuilder::new(pattern).size_limit(limit).build().is_ok();
    if !compiles(MAX_COMPILED_BYTES) {
        return None;
    }
    let (mut low, mut high) = (0, MAX_COMPILED_BYTES);
    while high - low > 64 {
        let middle = low + (high - low) / 2;
        if compiles(middle) {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high / 32)
}

/// The alternatives of a pattern made of plain text and `|` only, with
/// escaped punctuation (`\.`) read as itself; `None` when anything else
/// (a class, a repetition, a group, an anchor, `.`, any other escape) is in
/// it. An empty alternative is the empty text, which occurs in every value,
/// as the empty regex matches every value.
fn literal_alternatives(pattern: &str) -> Option<Vec<String>> {
    let mut alternatives = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => alternatives.push(String::new()),
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => {
                    alternatives.last_mut()?.push(escaped)
                }
                _ => return None,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            c => alternatives.last_mut()?.push(c),
        }
    }
    Some(alternatives)
}

/// `Err` naming the first construct whose meaning `regex-lite` would narrow
/// to ASCII. Scans the pattern as the parser would for escapes and flag
/// groups; it may refuse such text where it is literal (in an `(?x)`
/// comment, or `(?i)` inside a class), never miss one.
fn refuse_unicode_dependent(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    if let Some(reason) = refused_escape(escaped) {
                        return Err(reason);
                    }
                }
            }
            '(' if chars.peek() == Some(&'?') => {
                chars.next();
                // `(?flags)` or `(?flags:...)`; flags after `-` are turned off.
                // Only flag characters are consumed, so `(?P<name>` and
                // `(?<name>` go on to be scanned as usual.
                let mut negated = false;
                while let Some(&flag) = chars.peek() {
                    match flag {
                        '-' => negated = true,
                        'i' if !negated => return Err(CASE_INSENSITIVE.to_string()),
                        f if f.is_ascii_alphabetic() => {}
                        _ => break,
                    }
                    chars.next();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

const CASE_INSENSITIVE: &str = "case-insensitive matching (?i) is not supported: the module's \
     regex engine folds ASCII case only, not Unicode's (ſ for s, \u{212A} (Kelvin) for k); write the cases out, \
     e.g. [Ss]ubprocess";

/// Why the escape `\c` is refused, if it is.
fn refused_escape(c: char) -> Option<String> {
    let ascii = match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        's' => "[\\t\\n\\v\\f\\r ]",
        'S' => "[^\\t\\n\\v\\f\\r ]",
        'b' | 'B' | '<' | '>' => {
            return Some(format!(
                "\\{c} is not supported: word boundaries in the module's regex engine know \
                 ASCII word characters only, not Unicode's; match the neighbours instead, \
                 e.g. (^|[^0-9A-Za-z_])rm([^0-9A-Za-z_]|$)"
            ))
        }
        'p' | 'P' => {
            return Some("Unicode classes (\\p{..}, \\P{..}) are not supported".to_string())
        }
        _ => return None,
    };
    Some(format!(
        "\\{c} is not supported: the module's regex engine reads it as ASCII only, not \
         Unicode; write {ascii} for the ASCII meaning"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn plain_alternatives_are_read_as_texts() {
        let texts = |pattern: &str| literal_alternatives(pattern);
        let owned = |texts: &[&str]| Some(texts.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        assert_eq!(
            texts(r"subprocess|os\.system|os\.popen|pty\.spawn"),
            owned(&["subprocess", "os.system", "os.popen", "pty.spawn"])
        );
        assert_eq!(texts("rm -rf /"), owned(&["rm -rf /"]));
        assert_eq!(texts(r"a\|b|é"), owned(&["a|b", "é"]));
        assert_eq!(texts("a|"), owned(&["a", ""]));
        assert_eq!(texts(""), owned(&[""]));
        for pattern in [
            "^rm", "rm$", "a.b", "a+", "a*", "a?", "(a)", "[ab]", "a{2}", r"\x41", r"\n", r"\Aa",
            "(?m)a", "a|b.c",
        ] {
            assert_eq!(texts(pattern), None, "{pattern}");
        }
    }

    /// The shortcut answers what the regex answers, on every value tried.
    #[test]
    fn the_shortcut_matches_exactly_where_the_regex_does() {
        let patterns = [
            r"subprocess|os\.system|os\.popen|pty\.spawn",
            "ab|ba|",
            "aa|b",
            r"a\.b|\|",
            "é|ab",
            "abab",
        ];
        // Every string of up to 5 characters over an alphabet that makes
        // partial and overlapping matches, and some longer ones.
        let alphabet = ['a', 'b', '.', '|', 'é'];
        let mut values = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|prefix| alphabet.iter().map(move |c| format!("{prefix}{c}")))
                .collect();
            values.extend(last.iter().cloned());
        }
        values.extend([
            "import os; os.system('x')".to_string(),
            "os_system".to_string(),
            "pty.spawnx".to_string(),
            "ospopen".to_string(),
        ]);
        for pattern in patterns {
            let compiled = compile(pattern).unwrap();
            assert!(compiled.literals.is_some(), "{pattern}");
            for value in &values {
                assert_eq!(
                    compiled.is_match(value),
                    compiled.regex.is_match(value),
                    "{pattern} on {value:?}"
                );
            }
        }
    }
}
