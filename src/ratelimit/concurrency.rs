//! Caps on calls in flight (`"concurrent": N`), in a [`SharedStore`]: exact
//! across the workers of one Envoy, bounded in memory, and never held
//! forever by a call whose end the filter does not see.
//!
//! A counter's callers hash to one of `slots` buckets (the policy's
//! `max_callers_per_counter`; `global` scope uses bucket 0). A bucket is one
//! key holding the leases of the callers that hash to it: for each, the
//! owner (a 16-byte digest, as for windows) and when the lease ends. Taking a
//! slot is one compare-and-swap of the caller's bucket: drop the leases that
//! ended, count the caller's live ones, add one if fewer than the cap. So a
//! caller's count is always read and written in one key, which is what
//! makes the cap exact (with probing, as windows use, a caller's leases
//! could end up in two keys and be counted apart).
//!
//! A lease is given back when the call's exchange ends (any way it ends);
//! one that is not (the worker's VM panicked mid-stream) ends by itself at
//! its expiry, `lease_seconds` after it was taken. Two leases of one owner
//! with the same expiry are interchangeable, so a lease is named by its
//! owner and expiry: giving one back removes one such entry.

use std::hash::{Hash, Hasher};

use super::{MAX_CAS_ATTEMPTS, OWNER_DIGEST_LEN};
use crate::host::{Cas, SharedStore, StoreError};

/// Key prefix of concurrency buckets (a layout of its own, apart from windows').
const KEY_PREFIX: &str = "mcp-policy/c1/";

/// Live leases one bucket holds at most, over all its callers: four times
/// the largest cap, so a bucket shared by a few callers still admits each up
/// to its cap. Past it the call fails (the policy's `failure_mode`), as a
/// window whose table is full does.
pub const MAX_BUCKET_LEASES: usize = 4 * crate::policy::MAX_CONCURRENT as usize;

const ENTRY_LEN: usize = OWNER_DIGEST_LEN + 8;

/// A slot taken for one call, given back when the call's exchange ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    owner: [u8; OWNER_DIGEST_LEN],
    /// Unix seconds at which the lease ends by itself.
    pub expires: u64,
}

/// One lease in a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    owner: [u8; OWNER_DIGEST_LEN],
    expires: u64,
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for entry in entries {
        bytes.extend_from_slice(&entry.owner);
        bytes.extend_from_slice(&entry.expires.to_le_bytes());
    }
    bytes
}

/// A bucket's entries; `None` for bytes that are not a bucket (a foreign
/// value under our key is treated as an empty bucket and overwritten).
fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) {
        return None;
    }
    bytes
        .chunks_exact(ENTRY_LEN)
        .map(|chunk| {
            let owner = chunk.get(..OWNER_DIGEST_LEN)?.try_into().ok()?;
            let expires = u64::from_le_bytes(chunk.get(OWNER_DIGEST_LEN..)?.try_into().ok()?);
            Some(Entry { owner, expires })
        })
        .collect()
}

/// The bucket a caller's leases live in.
fn bucket_key(counter: &str, scope: char, owner: &[u8; OWNER_DIGEST_LEN], slots: u64) -> String {
    let index = if scope == '*' {
        0
    } else {
        // The same in every worker's VM: `DefaultHasher::new()` has fixed keys.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        owner.hash(&mut hasher);
        hasher.finish() % slots.max(1)
    };
    super::counter_key(KEY_PREFIX, counter, scope, index)
}

/// The bucket's entries and version; an absent or foreign value is empty.
fn read<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<(Vec<Entry>, Option<Cas>), String> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => Ok((decode(&bytes).unwrap_or_default(), Some(cas))),
        Ok(None) => Ok((Vec::new(), None)),
        Err(StoreError::CasMismatch) => Err(format!("reading {key:?}: unexpected CAS mismatch")),
        Err(StoreError::Unavailable(err)) => Err(err),
    }
}

/// Takes a slot for `owner` if it holds fewer than `cap` live leases:
/// `Ok(None)` when the cap is reached. The lease ends by itself at `expires`.
#[allow(clippy::too_many_arguments)]
pub(super) fn take_slot<S: SharedStore + ?Sized>(
    store: &S,
    counter: &str,
    scope: char,
    owner: &[u8; OWNER_DIGEST_LEN],
    cap: u64,
    now: u64,
    expires: u64,
    slots: u64,
) -> Result<Option<Lease>, String> {
    let key = bucket_key(counter, scope, owner, slots);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (mut entries, cas) = read(store, &key)?;
        entries.retain(|entry| entry.expires > now);
        let held = entries.iter().filter(|entry| entry.owner == *owner).count() as u64;
        if held >= cap {
            return Ok(None);
        }
        if entries.len() >= MAX_BUCKET_LEASES {
            return Err(format!(
                "counter {counter:?} has no room for this caller: its bucket holds {MAX_BUCKET_LEASES} calls in flight of other callers (raise max_callers_per_counter)"
            ));
        }
        entries.push(Entry {
            owner: *owner,
            expires,
        });
        match store.compare_and_swap(&key, &encode(&entries), cas) {
            Ok(()) => {
                return Ok(Some(Lease {
                    key,
                    owner: *owner,
                    expires,
                }))
            }
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(err),
        }
    }
    Err(format!(
        "counter {counter:?} still contended after {MAX_CAS_ATTEMPTS} attempts"
    ))
}

/// The owner's live leases, reading only.
pub(super) fn live<S: SharedStore + ?Sized>(
    store: &S,
    counter: &str,
    scope: char,
    owner: &[u8; OWNER_DIGEST_LEN],
    now: u64,
    slots: u64,
) -> Option<u64> {
    let key = bucket_key(counter, scope, owner, slots);
    let (entries, _) = read(store, &key).ok()?;
    Some(
        entries
            .iter()
            .filter(|entry| entry.owner == *owner && entry.expires > now)
            .count() as u64,
    )
}

/// Gives a slot back: removes one entry of the lease's owner and expiry (an
/// entry that has ended and been dropped is not there: nothing to do).
/// `false` if the store could not be updated (the lease then ends by itself).
pub(super) fn give_back<S: SharedStore + ?Sized>(store: &S, lease: &Lease) -> bool {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Ok((mut entries, cas)) = read(store, &lease.key) else {
            return false;
        };
        let Some(position) = entries
            .iter()
            .position(|entry| entry.owner == lease.owner && entry.expires == lease.expires)
        else {
            return true;
        };
        entries.remove(position);
        match store.compare_and_swap(&lease.key, &encode(&entries), cas) {
            Ok(()) => return true,
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(_)) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests;
