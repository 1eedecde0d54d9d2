//! An in-memory host for `mcp-policy eval`: Envoy's shared data and a real
//! clock, so a request is decided exactly as the filter decides it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::host::{host_cas, Cas, Clock, SharedStore, StoreError};

/// Envoy's shared data as proxy-wasm-cpp-host implements it: versions come
/// from one counter starting at 1; a set on an existing key with a non-zero
/// CAS that differs from the key's version fails; a set on a missing key
/// always succeeds.
#[derive(Debug, Default)]
pub struct MemorySharedData {
    state: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    values: HashMap<String, (Vec<u8>, Cas)>,
    last_version: Cas,
}

impl MemorySharedData {
    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the map half-written
        // (every update is one insert), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The raw host call: `set_shared_data(key, value, cas)`.
    pub fn set_raw(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
        let mut entries = self.entries();
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
}

impl SharedStore for MemorySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Ok(self.entries().values.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        self.set_raw(key, value, host_cas(expected))
    }
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_time(&self) -> Duration {
        // A clock set before 1970 reads as the epoch rather than failing.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ABSENT_CAS;

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
    fn the_clock_is_after_2020() {
        assert!(SystemClock.unix_time().as_secs() > 1_577_836_800);
    }
}
