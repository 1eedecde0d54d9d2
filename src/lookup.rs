//! Maps the policy builds at load and the gate only reads: names to rules,
//! grants to views, labels to counters. They hash with a fast fixed
//! function rather than the standard library's SipHash under random keys,
//! which was a twentieth of an allowed call's instructions (a handful of
//! lookups of short names). Safe here because every key comes from the
//! policy: a caller's name is only looked up, never inserted, so no caller
//! can lengthen a chain beyond what the policy's own keys make it (flooding
//! a hash table needs inserted keys). Maps that take callers' keys (the
//! request walk's member names, `crate::mcp`) keep SipHash.

use std::hash::{BuildHasherDefault, Hasher};

/// A map filled from the policy (see the module's note).
pub type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A set filled from the policy (see the module's note).
pub type HashSet<K> = std::collections::HashSet<K, BuildHasherDefault<FastHasher>>;

/// Eight bytes at a time: rotate, mix the word in, multiply (as rustc's
/// FxHash), then a finaliser that spreads the state over every bit.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    /// Not inlined: into every lookup and insert it made the module 10 KB
    /// larger.
    #[inline(never)]
    fn write(&mut self, bytes: &[u8]) {
        // The length first: with it, the zeros that pad the last word
        // cannot make two names alike (`tool_12` and `tool_128`).
        self.add(bytes.len() as u64);
        let mut words = bytes.chunks_exact(8);
        for chunk in words.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    /// MurmurHash3's 64-bit finaliser: every bit of the state moves every
    /// bit of the hash. (A multiply leaves its low bits depending on the
    /// input's low bits only, and the table indexes by the low bits: names
    /// that differ in their last bytes, `tool_1` .. `tool_9999`, would share
    /// buckets without it.)
    fn finish(&self) -> u64 {
        let mut hash = self.0;
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        hash ^ (hash >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn hash(text: &str) -> u64 {
        use std::hash::BuildHasher;
        BuildHasherDefault::<FastHasher>::default().hash_one(text)
    }

    /// Names that differ in one byte, in their length or only by trailing
    /// NULs hash apart, and the map finds each by its own name only.
    #[test]
    fn names_hash_apart_and_are_found_by_their_own_name() {
        let mut names: Vec<String> = Vec::new();
        for len in 0..20 {
            for byte in [b'a', b'b', 0, 0xff] {
                let mut name = vec![b'x'; len];
                name.push(byte);
                names.push(String::from_utf8_lossy(&name).into_owned());
            }
        }
        // Names a word of zero padding could confuse.
        for name in [
            "tool_12",
            "tool_128",
            "a",
            "a\0\0\0\0\0\0\u{8}",
            "a\0",
            "abcdefgh",
            "abcdefgh\0",
        ] {
            names.push(name.to_string());
        }
        names.sort();
        names.dedup();
        let mut hashes: Vec<u64> = names.iter().map(|name| hash(name)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
        let map: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(index, name)| (name.clone(), index))
            .collect();
        for (index, name) in names.iter().enumerate() {
            assert_eq!(map.get(name.as_str()), Some(&index));
        }
        assert_eq!(map.get("y"), None);
    }

    /// Ten thousand tool-like names spread over a table's buckets: no bucket
    /// of the low bits (what the table indexes by) holds many more than its
    /// share.
    #[test]
    fn similar_names_spread_over_the_buckets() {
        let buckets = 1024;
        let mut counts = vec![0usize; buckets];
        for index in 0..10_000 {
            let low = hash(&format!("tool_{index}")) as usize % buckets;
            counts[low] += 1;
        }
        let fullest = counts.iter().copied().max().unwrap_or(0);
        let empty = counts.iter().filter(|count| **count == 0).count();
        assert!(empty < 5, "{empty} empty buckets");
        // About 10 per bucket; a poor hash piles hundreds into a few.
        assert!(fullest < 40, "fullest bucket {fullest}");
    }
}
