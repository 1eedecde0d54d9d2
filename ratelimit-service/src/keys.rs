//! Redis keys and members, of bounded size whatever the request holds.
//!
//! ```text
//! mcprl:{<domain>}:w<window seconds>:<counter>:<scope>    fixed-window counter (a hash)
//! mcprl:{<domain>}:c:<counter>:<scope>                    concurrency leases (a sorted set)
//! ```
//!
//! Each part is [`part`]: `<length>.<value>` for a short value of plain
//! characters, else `#` and the first 128 bits of its SHA-256 in hex. The
//! length makes the layout unambiguous (`a:b` + `c` and `a` + `b:c` give
//! different keys); the digest bounds it (a 50 KB session id makes a key of
//! the same size as a short one). A key is at most a few hundred bytes.
//!
//! `{<domain>}` is a Redis Cluster hash tag: every key of a domain is in one
//! hash slot, so one script call can take counters of any scope together. It
//! is also the namespace: two domains never share a key.

use sha2::{Digest, Sha256};

/// Prefix of every key this service writes.
pub const PREFIX: &str = "mcprl";

/// Values up to this many bytes of plain characters stay readable in keys.
pub const MAX_LITERAL: usize = 64;

fn plain(c: char) -> bool {
    // No `{` or `}` (hash tags), no spaces or control characters.
    c.is_ascii_alphanumeric() || "_-.:/@+=,".contains(c)
}

/// One part of a key: unambiguous, bounded, never containing `{` or `}`.
pub fn part(value: &str) -> String {
    if value.len() <= MAX_LITERAL && value.chars().all(plain) {
        format!("{}.{value}", value.len())
    } else {
        format!("#{}", digest_hex(value))
    }
}

/// The first 16 bytes of SHA-256, in hex.
fn digest_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash tag (and namespace) of a domain's keys.
fn tag(domain: &str) -> String {
    format!("{PREFIX}:{{{}}}", part(domain))
}

/// The key of a fixed-window counter.
pub fn window(domain: &str, window_seconds: u64, counter: &str, scope: &str) -> String {
    format!(
        "{}:w{window_seconds}:{}:{}",
        tag(domain),
        part(counter),
        part(scope)
    )
}

/// The key of a concurrency counter's leases.
pub fn leases(domain: &str, counter: &str, scope: &str) -> String {
    format!("{}:c:{}:{}", tag(domain), part(counter), part(scope))
}

/// A lease id as a member of the leases' set.
pub fn lease_member(lease: &str) -> String {
    part(lease)
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384).
#[cfg(test)]
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_values_stay_readable() {
        assert_eq!(
            window("mcp-policy", 60, "exec", "grant:alice"),
            "mcprl:{10.mcp-policy}:w60:4.exec:11.grant:alice"
        );
        assert_eq!(
            leases("mcp-policy", "inflight", "global"),
            "mcprl:{10.mcp-policy}:c:8.inflight:6.global"
        );
    }

    #[test]
    fn the_layout_is_unambiguous() {
        assert_ne!(window("d", 60, "a:b", "c"), window("d", 60, "a", "b:c"));
        assert_ne!(window("d", 60, "a", "b"), window("d", 3600, "a", "b"));
        assert_ne!(window("d", 60, "a", "b"), window("e", 60, "a", "b"));
        // A value that looks like a digest is not one.
        let long = "x".repeat(100);
        assert_ne!(part(&long), part(&format!("#{}", digest_hex(&long))));
    }

    #[test]
    fn long_or_unusual_values_are_digested_to_a_bounded_key() {
        let huge = "s".repeat(50_000);
        let mut other = huge.clone();
        other.push('t');
        let a = window("mcp-policy", 86_400, "exec", &format!("session:{huge}"));
        let b = window("mcp-policy", 86_400, "exec", &format!("session:{other}"));
        assert!(a.len() < 120, "{} bytes", a.len());
        assert_ne!(a, b);
        // Exactly at the bound: literal; one more byte: digested.
        assert_eq!(part(&"a".repeat(64)), format!("64.{}", "a".repeat(64)));
        assert!(part(&"a".repeat(65)).starts_with('#'));
        for unusual in ["a b", "new\nline", "{tag}", "é", ""] {
            let p = part(unusual);
            if !unusual.is_empty() {
                assert!(p.starts_with('#'), "{unusual:?}: {p}");
            }
            assert!(!p.contains(['{', '}', ' ', '\n']));
        }
        // The longest key any request can make.
        let worst = window(&huge, 86_400, &huge, &huge);
        assert!(worst.len() <= 140, "{} bytes", worst.len());
        assert!(lease_member(&huge).len() == 33);
    }

    #[test]
    fn every_key_of_a_domain_is_in_one_hash_slot() {
        for domain in ["mcp-policy", "other", &"d".repeat(500), "{weird}"] {
            let slot0 = slot(&window(domain, 1, "a", "global"));
            for key in [
                window(domain, 86_400, "b", "grant:alice"),
                window(domain, 60, &"c".repeat(300), "session:{x}"),
                leases(domain, "inflight", "grant:bob"),
            ] {
                assert_eq!(slot(&key), slot0, "{key}");
            }
        }
        // The slot function is Redis's: CLUSTER KEYSLOT "123456789" is 12739.
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    }
}
