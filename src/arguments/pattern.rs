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

use regex_lite::Regex;

/// The compiled pattern, or why it is refused (one line, for the policy error).
pub(super) fn compile(pattern: &str) -> Result<Regex, String> {
    refuse_unicode_dependent(pattern)?;
    Regex::new(pattern).map_err(|err| err.to_string())
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
