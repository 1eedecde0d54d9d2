//! Envoy's shared data, in memory: the one stand-in for the host store that
//! the tests, `mcp-policy eval`, the benchmarks and the fuzzers all use, so
//! each decides a request exactly as the filter in Envoy does. (The filter
//! itself never uses it; the linker drops it from the module.)

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::host::{host_cas, Cas, SharedStore, StoreError};

/// Envoy's shared data as proxy-wasm-cpp-host implements it
/// (`SharedData::set`): versions come from one counter starting at 1, taken
/// only by a set that succeeds; a set on an existing key with a non-zero CAS
/// that differs from the key's version fails and changes nothing; a set on a
/// missing key always succeeds.
#[derive(Default)]
pub struct MemorySharedData {
    state: Mutex<Entries>,
    /// Called before the next compare-and-swap, to interleave a competing
    /// writer in tests.
    #[allow(clippy::type_complexity)]
    before_swap: Mutex<Option<Box<dyn FnMut(&MemorySharedData) + Send>>>,
}

#[derive(Debug, Default)]
struct Entries {
    values: HashMap<String, (Vec<u8>, Cas)>,
    last_version: Cas,
}

/// The host's `nextCas()`: the next version, skipping 0 when it wraps.
fn next_version(last: Cas) -> Cas {
    last.wrapping_add(1).max(1)
}

/// A panic while a lock is held cannot leave the state half-written (every
/// update is one assignment), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemorySharedData {
    /// The raw host call: `set_shared_data(key, value, cas)`.
    pub fn set_raw(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
        let mut entries = lock(&self.state);
        if let Some((_, current)) = entries.values.get(key) {
            if cas != 0 && cas != *current {
                // A failed set writes nothing and takes no version.
                return Err(StoreError::CasMismatch);
            }
        }
        entries.last_version = next_version(entries.last_version);
        let version = entries.last_version;
        entries
            .values
            .insert(key.to_string(), (value.to_vec(), version));
        Ok(())
    }

    /// Runs `hook` once, before the next compare-and-swap.
    pub fn before_next_swap(&self, hook: impl FnMut(&MemorySharedData) + Send + 'static) {
        *lock(&self.before_swap) = Some(Box::new(hook));
    }

    /// The keys stored so far.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.state).values.keys().cloned().collect()
    }
}

impl SharedStore for MemorySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Ok(lock(&self.state).values.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        let hook = lock(&self.before_swap).take();
        if let Some(mut hook) = hook {
            hook(self);
        }
        self.set_raw(key, value, host_cas(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ABSENT_CAS;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn behaves_as_envoy_shared_data() {
        let store = MemorySharedData::default();
        assert_eq!(store.get("k"), Ok(None));
        // Create-if-absent through the CAS no live value carries.
        store.compare_and_swap("k", b"1", None).unwrap();
        let (value, version) = store.get("k").unwrap().unwrap();
        assert_eq!((value.as_slice(), version), (&b"1"[..], 1));
        assert_eq!(
            store.set_raw("k", b"2", ABSENT_CAS),
            Err(StoreError::CasMismatch)
        );
        assert_eq!(
            store.compare_and_swap("k", b"2", Some(version + 7)),
            Err(StoreError::CasMismatch)
        );
        // The failed sets changed nothing, not even the version.
        assert_eq!(store.get("k").unwrap().unwrap(), (b"1".to_vec(), version));
        store.compare_and_swap("k", b"2", Some(version)).unwrap();
        assert_eq!(store.get("k").unwrap().unwrap(), (b"2".to_vec(), 2));
        // CAS 0 does not check; versions count successful sets across keys.
        store.set_raw("other", b"x", 0).unwrap();
        store.set_raw("k", b"3", 0).unwrap();
        assert_eq!(store.get("k").unwrap().unwrap(), (b"3".to_vec(), 4));
        assert_eq!(store.get("other").unwrap().unwrap(), (b"x".to_vec(), 3));
    }

    #[test]
    fn versions_skip_zero_when_they_wrap() {
        assert_eq!(next_version(0), 1);
        assert_eq!(next_version(41), 42);
        assert_eq!(next_version(Cas::MAX), 1);
    }

    #[test]
    fn a_hook_runs_once_before_the_next_swap() {
        let store = MemorySharedData::default();
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        store.before_next_swap(move |store| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            store.set_raw("other", b"x", 0).unwrap();
        });
        store.compare_and_swap("k", b"1", None).unwrap();
        // It ran before the first swap: "other" was set first (version 1).
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(store.get("other").unwrap().unwrap(), (b"x".to_vec(), 1));
        store.compare_and_swap("k2", b"1", None).unwrap();
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "the hook ran again"
        );
        let mut keys = store.keys();
        keys.sort();
        assert_eq!(keys, ["k", "k2", "other"]);
    }
}
