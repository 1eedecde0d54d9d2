//! In-memory stand-ins for the host, faithful to Envoy's semantics, for tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::host::{host_cas, Cas, Clock, SharedStore, StoreError};

/// Envoy's shared data as proxy-wasm-cpp-host implements it: versions from a
/// global counter starting at 1; a set on an existing key with a non-zero CAS
/// that differs fails; a set on a missing key always succeeds.
/// Entries by key, and the last version handed out.
type Entries = (HashMap<String, (Vec<u8>, Cas)>, Cas);

#[derive(Default)]
pub struct EnvoySharedData {
    state: Mutex<Entries>,
    /// Called before each compare-and-swap, to interleave a competing writer.
    #[allow(clippy::type_complexity)]
    before_swap: Mutex<Option<Box<dyn FnMut(&EnvoySharedData) + Send>>>,
}

impl EnvoySharedData {
    /// The raw host call: `set_shared_data(key, value, cas)`.
    pub fn set_raw(&self, key: &str, value: &[u8], cas: Cas) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap();
        let (map, next) = &mut *state;
        *next = next.wrapping_add(1).max(1);
        let version = *next;
        match map.get_mut(key) {
            Some(entry) => {
                if cas != 0 && cas != entry.1 {
                    return Err(StoreError::CasMismatch);
                }
                *entry = (value.to_vec(), version);
            }
            None => {
                map.insert(key.to_string(), (value.to_vec(), version));
            }
        }
        Ok(())
    }

    /// Runs `hook` once before the next compare-and-swap.
    pub fn before_next_swap(&self, hook: impl FnMut(&EnvoySharedData) + Send + 'static) {
        *self.before_swap.lock().unwrap() = Some(Box::new(hook));
    }

    pub fn keys(&self) -> Vec<String> {
        self.state.lock().unwrap().0.keys().cloned().collect()
    }
}

impl SharedStore for EnvoySharedData {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Ok(self.state.lock().unwrap().0.get(key).cloned())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        let hook = self.before_swap.lock().unwrap().take();
        if let Some(mut hook) = hook {
            hook(self);
        }
        self.set_raw(key, value, host_cas(expected))
    }
}

/// A store that refuses every operation.
pub struct UnavailableStore;

impl SharedStore for UnavailableStore {
    fn get(&self, _key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        Err(StoreError::Unavailable("store down".to_string()))
    }
    fn compare_and_swap(&self, _: &str, _: &[u8], _: Option<Cas>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("store down".to_string()))
    }
}

/// A clock that says what it is told.
pub struct FixedClock(pub Mutex<Duration>);

impl FixedClock {
    pub fn at_seconds(seconds: u64) -> Self {
        FixedClock(Mutex::new(Duration::from_secs(seconds)))
    }
    pub fn set_seconds(&self, seconds: u64) {
        *self.0.lock().unwrap() = Duration::from_secs(seconds);
    }
}

impl Clock for FixedClock {
    fn unix_time(&self) -> Duration {
        *self.0.lock().unwrap()
    }
}
