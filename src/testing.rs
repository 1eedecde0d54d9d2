//! In-memory stand-ins for the host, faithful to Envoy's semantics, for tests.

use std::sync::Mutex;
use std::time::Duration;

use crate::host::{Cas, Clock, SharedStore, StoreError};

/// Envoy's shared data in memory (the one shared by tests, CLI, benches and fuzzers).
pub use crate::memory::MemorySharedData as EnvoySharedData;

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
