//! Fixed-window counters in a [`SharedStore`], exact under concurrency and
//! bounded in memory.
//!
//! Each counter has a table of at most `slots` keys (the policy's
//! `max_callers_per_counter`). A caller (a grant or session value, or
//! everyone for `global`) owns one slot per window: the slot holds the
//! owner (a 16-byte digest of the grant or session value, so a slot's size
//! does not depend on how long the caller's name is), the start of the window
//! and the count in it. A caller's slot is
//! one of [`PROBES`] slots its name hashes to, tried in order; a
//! slot whose window has passed is free for anyone, so keys are reused rather
//! than multiplied by callers or by time. When every probed slot is held by
//! other callers in the current window, the table is full for that caller
//! and the call fails (closed, unless the policy's `failure_mode` is open).
//!
//! Every update is a compare-and-swap retried a bounded number of times: two
//! workers can never both take the last unit of quota.

pub mod service;

use std::hash::{Hash, Hasher};

use crate::host::{Cas, SharedStore, StoreError};
use crate::policy::{Limit, Scope};

/// CAS attempts per slot before the gate gives up (and fails closed).
pub const MAX_CAS_ATTEMPTS: usize = 64;

/// Slots probed for a caller before its counter is declared full.
pub const PROBES: u64 = 32;

/// Key prefix in Envoy's shared data; `v3` names the slot layout below
/// (owner digests; `v2` kept the owner's whole name).
const KEY_PREFIX: &str = "mcp-policy/v3/";

/// Bytes of an owner digest: 128 bits of SHA-256, so two callers never
/// share a slot by accident.
pub const OWNER_DIGEST_LEN: usize = 16;

/// The fixed-size digest a slot keeps of its owner's name.
pub fn owner_digest(owner: &str) -> [u8; OWNER_DIGEST_LEN] {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(owner.as_bytes());
    let mut digest = [0u8; OWNER_DIGEST_LEN];
    digest.copy_from_slice(&hash[..OWNER_DIGEST_LEN]);
    digest
}

/// Who is counted: the values scopes count by.
#[derive(Debug, Clone, Copy)]
pub struct CallerScope<'a> {
    pub grant: &'a str,
    /// `Mcp-Session-Id`; calls without one share a single "no session" count.
    pub session: Option<&'a str>,
}

/// The caller a limit counts, within the limit's scope.
fn owner<'a>(limit: &Limit, caller: CallerScope<'a>) -> (char, &'a str) {
    match (limit.scope, caller.session) {
        (Scope::Grant, _) => ('g', caller.grant),
        (Scope::Session, Some(session)) => ('s', session),
        // No session (MCP 2026-07-28 has none): counted under the caller's
        // grant, apart from its grant-scoped counts. Stricter than one count
        // per session, never unlimited.
        (Scope::Session, None) => ('n', caller.grant),
        (Scope::Global, _) => ('*', ""),
    }
}

/// The key of slot `index` of a counter's table for one scope. Lengths make
/// it unambiguous whatever characters counter names hold.
fn slot_key(limit: &Limit, scope: char, index: u64) -> String {
    format!(
        "{KEY_PREFIX}{}/{}/{scope}/{index}",
        limit.counter.len(),
        limit.counter
    )
}

/// The `probe`-th slot a caller may use. Each probe hashes afresh (random
/// probing): runs of taken slots do not cluster the way they do with linear
/// probing, so a table stays usable up to a high load. The hash must be the
/// same in every worker's VM: `DefaultHasher::new()` has fixed keys.
fn probe_slot(owner: &[u8; OWNER_DIGEST_LEN], probe: u64, slots: u64) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    owner.hash(&mut hasher);
    probe.hash(&mut hasher);
    hasher.finish() % slots.max(1)
}

/// A slot's state: whose it is, the window it counts, and the count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    window_start: u64,
    count: u64,
    owner: Vec<u8>,
}

impl Slot {
    const HEADER_LEN: usize = 16;

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::HEADER_LEN + self.owner.len());
        bytes.extend_from_slice(&self.window_start.to_le_bytes());
        bytes.extend_from_slice(&self.count.to_le_bytes());
        bytes.extend_from_slice(&self.owner);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Slot> {
        let window_start = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let count = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Slot {
            window_start,
            count,
            owner: bytes.get(Self::HEADER_LEN..)?.to_vec(),
        })
    }
}

/// Start of the fixed window containing `now`, aligned to the Unix epoch.
pub fn window_start(now: u64, window_seconds: u64) -> u64 {
    now - now % window_seconds.max(1)
}

/// Seconds from `now` until the window containing it ends (at least 1).
pub fn seconds_until_reset(now: u64, window_seconds: u64) -> u64 {
    (window_start(now, window_seconds) + window_seconds - now).max(1)
}

/// A unit of quota taken from one counter for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub key: String,
    pub window_start: u64,
    owner: Vec<u8>,
}

/// The result of trying to take one unit from every limit of a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquire<'p> {
    /// Every limit had room; one unit was taken from each.
    Granted(Vec<Reservation>),
    /// A limit was full; nothing was taken. `limit` is the full limit whose
    /// window ends last, so `retry_after_seconds` is when a retry can pass.
    Exhausted {
        limit: &'p Limit,
        retry_after_seconds: u64,
    },
    /// The store could not be updated, or a counter's table has no slot left
    /// for this caller; nothing is known to be taken.
    Failed(String),
}

/// One limit as it applies to this caller.
struct Counted<'p> {
    limit: &'p Limit,
    scope: char,
    owner: [u8; OWNER_DIGEST_LEN],
}

/// Takes one unit from each limit, all or none. `slots` is the size of
/// each counter's table.
///
/// Limits that count the same caller on the same counter (the same counter
/// named twice for one call) take one unit, checked against the smallest `max`.
pub fn acquire<'p, S: SharedStore + ?Sized>(
    store: &S,
    limits: &[&'p Limit],
    caller: CallerScope<'_>,
    now: u64,
    slots: u64,
) -> Acquire<'p> {
    let mut counted: Vec<Counted<'p>> = Vec::with_capacity(limits.len());
    for limit in limits {
        let (scope, owner) = owner(limit, caller);
        match counted
            .iter_mut()
            .find(|c| c.limit.counter == limit.counter && c.scope == scope)
        {
            Some(entry) if limit.max < entry.limit.max => entry.limit = limit,
            Some(_) => {}
            None => counted.push(Counted {
                limit,
                scope,
                owner: owner_digest(owner),
            }),
        }
    }

    let mut taken: Vec<Reservation> = Vec::with_capacity(counted.len());
    for (index, entry) in counted.iter().enumerate() {
        match take_one(store, entry, now, slots) {
            Ok(Some(reservation)) => taken.push(reservation),
            Ok(None) => {
                release(store, &taken);
                return exhausted(store, &counted[index..], now, slots);
            }
            Err(err) => {
                release(store, &taken);
                return Acquire::Failed(err);
            }
        }
    }
    Acquire::Granted(taken)
}

/// Among limits of which the first is full, the full one whose window ends
/// last: a retry before then would be refused again.
fn exhausted<'p, S: SharedStore + ?Sized>(
    store: &S,
    counted: &[Counted<'p>],
    now: u64,
    slots: u64,
) -> Acquire<'p> {
    let mut worst: Option<(&'p Limit, u64)> = None;
    for (position, entry) in counted.iter().enumerate() {
        // The first limit was seen full; the rest are read once more.
        let full = position == 0
            || current_count(store, entry, now, slots)
                .is_some_and(|count| count >= entry.limit.max);
        if full {
            let retry = seconds_until_reset(now, entry.limit.window_seconds);
            if worst.is_none_or(|(_, longest)| retry > longest) {
                worst = Some((entry.limit, retry));
            }
        }
    }
    match worst {
        Some((limit, retry_after_seconds)) => Acquire::Exhausted {
            limit,
            retry_after_seconds,
        },
        None => Acquire::Failed("no limit found full".to_string()),
    }
}

/// The slots a caller may use, in probe order (a slot may repeat).
fn probe_sequence(entry: &Counted<'_>, slots: u64) -> impl Iterator<Item = u64> {
    let single = entry.scope == '*';
    // One caller for the whole counter: one slot.
    let probes = if single { 1 } else { PROBES };
    let owner = entry.owner;
    (0..probes).map(move |probe| {
        if single {
            0
        } else {
            probe_slot(&owner, probe, slots)
        }
    })
}

/// The caller's count in the current window, reading only.
fn current_count<S: SharedStore + ?Sized>(
    store: &S,
    entry: &Counted<'_>,
    now: u64,
    slots: u64,
) -> Option<u64> {
    let window = window_start(now, entry.limit.window_seconds);
    for index in probe_sequence(entry, slots) {
        let key = slot_key(entry.limit, entry.scope, index);
        match read(store, &key).ok()? {
            (Some(slot), _) if slot.owner == entry.owner && slot.window_start == window => {
                return Some(slot.count)
            }
            (Some(slot), _) if slot.window_start == window => continue,
            _ => return Some(0),
        }
    }
    None
}

/// Takes one unit for the caller if its limit has room: `Ok(None)` when full.
fn take_one<S: SharedStore + ?Sized>(
    store: &S,
    entry: &Counted<'_>,
    now: u64,
    slots: u64,
) -> Result<Option<Reservation>, String> {
    let window = window_start(now, entry.limit.window_seconds);
    let owner = &entry.owner[..];
    'probes: for index in probe_sequence(entry, slots) {
        let key = slot_key(entry.limit, entry.scope, index);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (current, cas) = read(store, &key)?;
            let count = match &current {
                // Ours in this window: count on.
                Some(slot) if slot.owner == owner && slot.window_start == window => slot.count,
                // Someone else's in this window: try the next slot.
                Some(slot) if slot.window_start == window => continue 'probes,
                // Empty, or left from an older window: ours from 0. (Within a
                // window a caller's slot always precedes any free one, so the
                // caller has none further on.)
                _ => 0,
            };
            if count >= entry.limit.max {
                return Ok(None);
            }
            let next = Slot {
                window_start: window,
                count: count + 1,
                owner: owner.to_vec(),
            };
            match store.compare_and_swap(&key, &next.encode(), cas) {
                Ok(()) => {
                    return Ok(Some(Reservation {
                        key,
                        window_start: window,
                        owner: owner.to_vec(),
                    }))
                }
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Unavailable(err)) => return Err(err),
            }
        }
        return Err(format!(
            "counter {:?} still contended after {MAX_CAS_ATTEMPTS} attempts",
            entry.limit.counter
        ));
    }
    Err(format!(
        "counter {:?} has no free slot for this caller in this window: its {PROBES} candidate slots of {slots} are held by other callers (raise max_callers_per_counter)",
        entry.limit.counter
    ))
}

fn read<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<(Option<Slot>, Option<Cas>), String> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => match Slot::decode(&bytes) {
            Some(slot) => Ok((Some(slot), Some(cas))),
            // Not ours or from another layout: treat as free rather than fail forever.
            None => Ok((None, Some(cas))),
        },
        Ok(None) => Ok((None, None)),
        Err(StoreError::CasMismatch) => Err(format!("reading {key:?}: unexpected CAS mismatch")),
        Err(StoreError::Unavailable(err)) => Err(err),
    }
}

/// Gives back units taken for a call that did not happen. A unit whose
/// window has already ended, or whose slot has passed to another caller, is
/// not given back: that count no longer matters. Returns the keys that could
/// not be updated.
pub fn release<S: SharedStore + ?Sized>(store: &S, reservations: &[Reservation]) -> Vec<String> {
    let mut failed = Vec::new();
    'keys: for reservation in reservations {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Ok((current, cas)) = read(store, &reservation.key) else {
                failed.push(reservation.key.clone());
                continue 'keys;
            };
            let Some(slot) = current else {
                continue 'keys;
            };
            if slot.window_start != reservation.window_start
                || slot.owner != reservation.owner
                || slot.count == 0
            {
                continue 'keys;
            }
            let next = Slot {
                count: slot.count - 1,
                ..slot
            };
            match store.compare_and_swap(&reservation.key, &next.encode(), cas) {
                Ok(()) => continue 'keys,
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Unavailable(_)) => break,
            }
        }
        failed.push(reservation.key.clone());
    }
    failed
}

#[cfg(test)]
mod tests;
