//! Sorting for what is sorted once, when a policy is read (names, patterns,
//! the members of a canonical object): a heap sort, a few hundred bytes of
//! module per element type where the standard library's sorts take about
//! 5 KB each (measured with twiggy; BENCHMARKS.md, "Module size and
//! start-up"). O(n log n) like them, and not stable: for orders where no
//! two items compare equal, or where equal items are alike.

/// Sorts `items` so that no item is `less` than one before it.
pub fn sort_by<T>(items: &mut [T], mut less: impl FnMut(&T, &T) -> bool) {
    let len = items.len();
    for root in (0..len / 2).rev() {
        sift_down(items, root, len, &mut less);
    }
    for end in (1..len).rev() {
        items.swap(0, end);
        sift_down(items, 0, end, &mut less);
    }
}

/// Sorts names and keeps one of each.
pub fn sort_unique(names: &mut Vec<String>) {
    sort_by(names, |a, b| a < b);
    names.dedup();
}

/// Restores the max-heap order of `items[..end]` below `root`.
fn sift_down<T>(
    items: &mut [T],
    mut root: usize,
    end: usize,
    less: &mut impl FnMut(&T, &T) -> bool,
) {
    loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && less(&items[child], &items[child + 1]) {
            child += 1;
        }
        if !less(&items[root], &items[child]) {
            return;
        }
        items.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The standard library's order, on every length up to 64 with many
    /// repeats and on pseudo-random lists up to 2,000 long.
    #[test]
    fn sorts_as_the_standard_library_does() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in (0..=64).chain([100, 257, 1_000, 2_000]) {
            for modulus in [1, 3, 50, u64::MAX] {
                let original: Vec<u64> = (0..len).map(|_| next() % modulus).collect();
                let mut ours = original.clone();
                sort_by(&mut ours, |a, b| a < b);
                let mut std = original;
                std.sort_unstable();
                assert_eq!(ours, std, "length {len}, modulus {modulus}");
            }
        }
        let mut descending: Vec<u32> = (0..500).rev().collect();
        sort_by(&mut descending, |a, b| a < b);
        assert!(descending.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn sort_unique_keeps_one_of_each_name() {
        let mut names: Vec<String> = ["b", "a", "c", "a", "b", ""]
            .iter()
            .map(|name| name.to_string())
            .collect();
        sort_unique(&mut names);
        assert_eq!(names, ["", "a", "b", "c"]);
    }
}
