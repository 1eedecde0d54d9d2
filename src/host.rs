//! What the core needs from its host, as small traits. The proxy-wasm glue
//! implements them over Envoy's shared data and clock; tests implement them in
//! memory.

/// A version stamp of a stored value, as returned by [`SharedStore::get`].
pub type Cas = u32;

/// A key-value store shared by every worker, with compare-and-swap.
pub trait SharedStore {
    /// The value stored under `key` and its version, or `None` if absent.
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Cas)>, StoreError>;

    /// Stores `value` only if the key is still as it was read: at version
    /// `expected`, or absent when `expected` is `None`.
    fn compare_and_swap(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Cas>,
    ) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Someone else wrote the key since it was read: read again and retry.
    CasMismatch,
    /// The store refused the operation.
    Unavailable(String),
}

/// Wall-clock time, for fixed windows aligned to the Unix epoch.
pub trait Clock {
    /// Time since the Unix epoch.
    fn unix_time(&self) -> std::time::Duration;
}

/// Envoy's shared data has no "create if absent": a set on a missing key
/// always succeeds, and CAS 0 means "don't check". A CAS that no live value
/// carries gives create-if-absent instead: on a missing key the set creates
/// it, on a key someone created meanwhile it fails with a mismatch. Envoy
/// numbers versions from 1 upwards, so `u32::MAX` is only reached after four
/// billion writes, and even then only collides at that one moment.
pub const ABSENT_CAS: Cas = u32::MAX;

/// The CAS value to pass to Envoy's `set_shared_data` for an expected state.
pub fn host_cas(expected: Option<Cas>) -> Cas {
    expected.unwrap_or(ABSENT_CAS)
}
