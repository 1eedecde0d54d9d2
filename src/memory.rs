//! Envoy's shared data, in memory: the one stand-in for the host store that
//! the tests, `mcp-policy eval`, the benchmarks and the fuzzers all use, so
//! each decides a request exactly as the filter in Envoy does. (The filter
//! itself never uses it; the linker drops it from the module.)

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::host::{host_cas, Cas, SharedStore, StoreError};

/// Envoy's shared data as proxy-wasm-cpp-host implements it: versions come
/// from one counter starting at 1; a set on an existing key with a non-zero
/// CAS that differs from the key's version fails; a set on a missing key
/// always succeeds.
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

/// A panic while a lock is held cannot leave the state half-written (every
/// update is one assignment), so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemorySharedData {
    /// The raw host call: `set_shared_data(key, value, cas)`.
    pub fn set_raw(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
        let mut entries = lock(&self.state);
        entries.last_version = entries.last_version.wrapping_add(1).max(1);
        let version = entries.last_version;
        match entries.values.get_mut(key) {
            Some(entry) if cas != 0 && cas != entry.1 => Err(StoreError::CasMismatch),
            Some(entry) => {
                *entry = (value.to_vec(), version);
                Ok(())
            }
            None => {
                entries
                    .values
                    .insert(key.to_string(), (value.to_vec(), version));
                Ok(())
            }
        }
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
        store.compare_and_swap("k", b"2", Some(version)).unwrap();
        // CAS 0 does not check; versions keep counting across keys and failures.
        store.set_raw("k", b"3", 0).unwrap();
        assert_eq!(store.get("k").unwrap().unwrap(), (b"3".to_vec(), 5));
    }

    #[test]
    fn a_hook_runs_once_before_the_next_swap() {
        let store = MemorySharedData::default();
        store.before_next_swap(|store| store.set_raw("other", b"x", 0).unwrap());
        store.compare_and_swap("k", b"1", None).unwrap();
        store.compare_and_swap("k2", b"1", None).unwrap();
        let mut keys = store.keys();
        keys.sort();
        assert_eq!(keys, ["k", "k2", "other"]);
    }
}
