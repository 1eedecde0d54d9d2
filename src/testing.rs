//! In-memory stand-ins for the host, faithful to Envoy's semantics, for tests.

use std::cell::Cell;
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

/// Envoy's shared data with a competing worker that wins the race for the
/// first `losses` compare-and-swaps: just before each of them it rewrites
/// the key (keeping its bytes), so the swap meets a newer version and fails
/// with a mismatch. Counts every compare-and-swap asked of it.
pub struct ContendedStore {
    inner: EnvoySharedData,
    losses: usize,
    swaps: Cell<usize>,
}

impl ContendedStore {
    /// Every compare-and-swap loses.
    pub fn always() -> Self {
        Self::losing(usize::MAX)
    }

    /// The first `losses` compare-and-swaps lose, the rest are left alone.
    pub fn losing(losses: usize) -> Self {
        ContendedStore {
            inner: EnvoySharedData::default(),
            losses,
            swaps: Cell::new(0),
        }
    }

    /// Compare-and-swaps asked so far.
    pub fn swaps(&self) -> usize {
        self.swaps.get()
    }
}

impl SharedStore for ContendedStore {
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError> {
        self.inner.get(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError> {
        let swap = self.swaps.get();
        self.swaps.set(swap + 1);
        if swap < self.losses {
            let current = self.inner.get(key)?.map(|(bytes, _)| bytes);
            self.inner
                .set_raw(key, &current.unwrap_or_default(), 0)
                .expect("a set with CAS 0 always succeeds");
        }
        self.inner.compare_and_swap(key, value, expected)
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
