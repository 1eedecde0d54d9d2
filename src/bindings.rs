//! Who owns what the server handed out: tasks (a `taskId` from a
//! `CreateTaskResult`) belong to the grant whose call created them, and a
//! multi-round-trip `requestState` belongs to the grant and target of the
//! call that received it; and which sessions' clients declared URL-mode
//! elicitation (for approvals); and which request ids are in flight in
//! their sessions. Kept in Envoy's shared data like the counters, in
//! tables of a bounded number of slots, each entry with an expiry, so every
//! worker sees the same owners and memory stays bounded.
//!
//! A slot holds `expires_at` (8 bytes), the SHA-256 digest of the id (16
//! bytes) and the owner's digest (16 bytes): nothing the server or the
//! caller wrote is stored as such.

use crate::host::{Cas, SharedStore, StoreError};
use crate::ratelimit::{owner_digest, MAX_CAS_ATTEMPTS, OWNER_DIGEST_LEN};

type Digest = [u8; OWNER_DIGEST_LEN];

/// A table of bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `taskId` → the grant that created the task.
    Tasks,
    /// `requestState` → the grant and target of the call it was given to.
    RequestStates,
    /// Tool name → the annotations the server last listed for it.
    Hints,
    /// A tool name in letter case folded → the annotations the server
    /// listed within the day (every listing and page added up) for the
    /// tools whose names fold to it.
    FoldedHints,
    /// `Mcp-Session-Id` → the grant whose client declared URL-mode
    /// elicitation in that session's `initialize` (MCP 2025-11-25).
    UrlElicitation,
    /// A session and request id → the grant of the request in flight under
    /// it (released when its answer or stream ends).
    InFlight,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Tasks => "tasks",
            Table::RequestStates => "states",
            // Not "hints": that table held one tool's hints as one byte.
            Table::Hints => "tool-hints",
            Table::FoldedHints => "tool-hints-folded",
            Table::UrlElicitation => "elicit",
            Table::InFlight => "inflight",
        }
    }
}

/// Slots per table: how many live bindings one table holds.
pub const SLOTS: u64 = 65_536;
/// Slots probed for one id.
const PROBES: u64 = 8;
/// Longest a binding lives (a task's own TTL is used when shorter).
pub const MAX_TTL_SECONDS: u64 = 86_400;
/// How long a task binding lives when the server gives no TTL.
pub const DEFAULT_TASK_TTL_SECONDS: u64 = 3_600;
/// How long a `requestState` binding lives: a retry comes within minutes.
pub const REQUEST_STATE_TTL_SECONDS: u64 = 600;
/// How long the gate remembers that a session's client can be shown a link
/// (URL-mode elicitation): a day, the longest binding.
pub const SESSION_CAPABILITY_TTL_SECONDS: u64 = MAX_TTL_SECONDS;

const KEY_PREFIX: &str = "mcp-policy/v3/bind/";
const SLOT_LEN: usize = 8 + 2 * OWNER_DIGEST_LEN;

/// The owner digest of a grant.
pub fn grant_owner(grant: &str) -> Digest {
    owner_digest(grant)
}

/// Bytes of a request state's owner that name its grant (the rest name the
/// call: target and window units).
const STATE_GRANT_LEN: usize = OWNER_DIGEST_LEN / 2;
/// The grant half of a state handed to two grants (a server whose states
/// are not unique, e.g. derived from the call alone): nobody's, refused to
/// nobody.
const SHARED_STATE: [u8; STATE_GRANT_LEN] = [0; STATE_GRANT_LEN];
/// The call half of a state whose retry was spared its units: the grant
/// half stays, so another grant's replay is still known for what it is.
const SPENT_STATE: [u8; OWNER_DIGEST_LEN - STATE_GRANT_LEN] =
    [0; OWNER_DIGEST_LEN - STATE_GRANT_LEN];

/// Whom a request state belongs to: its first half the grant's digest, its
/// second a digest of the grant using one target, with the window units its
/// call took (counter, cost and `per` value of each), so that a retry
/// naming the state is spared exactly those units and no others, and a
/// retry by another grant is known as such (64 bits each: enough against
/// chance, and neither half can be chosen by a caller, who would need 2^64
/// tries of arguments for one spared call).
pub fn state_owner(
    grant: &str,
    kind: crate::target::Kind,
    name: &str,
    charges: &[crate::ratelimit::Charge<'_>],
) -> Digest {
    // Each piece with its length first: no two lists of pieces make one text.
    let mut text = String::with_capacity(grant.len() + name.len() + 32);
    let mut piece = |part: &str| {
        crate::ratelimit::push_decimal(&mut text, part.len() as u64);
        text.push(':');
        text.push_str(part);
    };
    for part in [grant, kind.as_str(), name] {
        piece(part);
    }
    for charge in charges
        .iter()
        .filter(|charge| !charge.limit.is_concurrent())
    {
        piece(&charge.limit.counter);
        piece(&charge.cost.to_string());
        // A `per` key is never empty (`args.<path>...`): none is "".
        piece(charge.per.as_deref().unwrap_or_default());
    }
    let mut owner = owner_digest(&text);
    owner[..STATE_GRANT_LEN].copy_from_slice(&grant_owner(grant)[..STATE_GRANT_LEN]);
    owner
}

/// Binds a `requestState` the server handed to a call to that call's owner
/// ([`state_owner`]) for [`REQUEST_STATE_TTL_SECONDS`]. The first binding
/// stays; a state handed again to another grant's call while it lives is
/// marked as no single grant's (a server whose states repeat: neither
/// caller is refused for presenting it).
pub fn bind_state<S: SharedStore + ?Sized>(
    store: &S,
    state: &str,
    owner: &Digest,
    now: u64,
) -> Result<(), String> {
    write(
        store,
        Table::RequestStates,
        state,
        owner,
        now,
        REQUEST_STATE_TTL_SECONDS,
        Write::KeepFirstOrShare,
    )
}

/// Whether a live `requestState` binding names a grant other than
/// `grant`: the server handed the state to another caller's call, and
/// only that caller may present it (spent or not). `Err`: the store failed.
pub fn state_of_another_grant<S: SharedStore + ?Sized>(
    store: &S,
    state: &str,
    grant: &str,
    now: u64,
) -> Result<bool, String> {
    let found = find_live(store, Table::RequestStates, &owner_digest(state), now)?;
    Ok(found.is_some_and(|found| {
        let holder = &found.slot.owner[..STATE_GRANT_LEN];
        holder != SHARED_STATE && holder != &grant_owner(grant)[..STATE_GRANT_LEN]
    }))
}

/// `KEY_PREFIX` `<table>/<index>`, written without `format!` (a thousand
/// instructions a key, and a claimed call writes three or more).
fn slot_key(table: Table, index: u64) -> String {
    let name = table.name();
    let mut key = String::with_capacity(KEY_PREFIX.len() + name.len() + 21);
    key.push_str(KEY_PREFIX);
    key.push_str(name);
    key.push('/');
    crate::ratelimit::push_decimal(&mut key, index);
    key
}

fn probe(id: &Digest, probe: u64) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&id[..8]);
    // The digest is already uniform: step through the table with an odd stride.
    let start = u64::from_le_bytes(bytes);
    let mut stride = [0u8; 8];
    stride.copy_from_slice(&id[8..16]);
    let stride = u64::from_le_bytes(stride) | 1;
    start.wrapping_add(probe.wrapping_mul(stride)) % SLOTS
}

#[derive(Clone, Copy)]
struct Slot {
    expires_at: u64,
    id: Digest,
    owner: Digest,
}

fn decode(bytes: &[u8]) -> Option<Slot> {
    if bytes.len() != SLOT_LEN {
        return None;
    }
    let mut expires = [0u8; 8];
    expires.copy_from_slice(&bytes[..8]);
    let mut id = [0u8; OWNER_DIGEST_LEN];
    id.copy_from_slice(&bytes[8..8 + OWNER_DIGEST_LEN]);
    let mut owner = [0u8; OWNER_DIGEST_LEN];
    owner.copy_from_slice(&bytes[8 + OWNER_DIGEST_LEN..]);
    Some(Slot {
        expires_at: u64::from_le_bytes(expires),
        id,
        owner,
    })
}

fn encode(slot: &Slot) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SLOT_LEN);
    bytes.extend_from_slice(&slot.expires_at.to_le_bytes());
    bytes.extend_from_slice(&slot.id);
    bytes.extend_from_slice(&slot.owner);
    bytes
}

fn read<S: SharedStore + ?Sized>(
    store: &S,
    key: &str,
) -> Result<(Option<Slot>, Option<Cas>), String> {
    match store.get(key) {
        Ok(Some((bytes, cas))) => Ok((decode(&bytes), Some(cas))),
        Ok(None) => Ok((None, None)),
        Err(StoreError::CasMismatch) => Err(format!("reading {key:?}: unexpected CAS mismatch")),
        Err(StoreError::Unavailable(err)) => Err(err),
    }
}

/// Binds `id` to `owner` until `now + ttl` (at most [`MAX_TTL_SECONDS`]).
/// An existing binding of the same id keeps its owner: the first owner wins.
pub fn bind<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &str,
    owner: &Digest,
    now: u64,
    ttl: u64,
) -> Result<(), String> {
    write(store, table, id, owner, now, ttl, Write::KeepFirst)
}

/// How long a request id stays claimed at most (a stream that lasts longer,
/// or a VM gone before the stream ended).
pub const IN_FLIGHT_TTL_SECONDS: u64 = 3_600;

/// How long the id of a request that got no complete answer (the caller
/// left, the server reset it, Envoy answered a timeout) stays claimed
/// after its stream ended: the server may still be answering it.
pub const ABANDONED_CLAIM_SECONDS: u64 = 120;

/// What became of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The id is this request's now.
    Claimed,
    /// A live claim holds it already.
    Taken,
    /// Every slot it may take holds another live claim.
    Full,
}

/// The digest an id is kept under: what [`claim`], [`release`] and
/// [`shorten`] take, so that a claim's id is hashed once for its life.
pub fn id_digest(id: &str) -> Digest {
    owner_digest(id)
}

/// What a claim's slot holds as its owner: nothing is asked of it.
const CLAIMED: Digest = [0; OWNER_DIGEST_LEN];

/// Claims the id digested as `id`. `Err`: the store failed.
pub fn claim<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &Digest,
    now: u64,
) -> Result<Claim, String> {
    match write_digest(
        store,
        table,
        *id,
        &CLAIMED,
        now,
        IN_FLIGHT_TTL_SECONDS,
        Write::Claim,
    ) {
        Ok(true) => Ok(Claim::Claimed),
        Ok(false) => Ok(Claim::Taken),
        Err(WriteError::Full) => Ok(Claim::Full),
        Err(err) => Err(err.describe(table)),
    }
}

/// Ends a claim of `id` (a live binding of it, whoever holds it: only the
/// request that claimed it releases it). Best effort: a claim not released
/// expires.
pub fn release<S: SharedStore + ?Sized>(store: &S, table: Table, id: &Digest, now: u64) {
    let _ = change_live(store, table, *id, now, |slot| {
        Some(Slot {
            expires_at: 0,
            ..*slot
        })
    });
}

/// Makes a live entry of `id` end by `until` at the latest. Best effort.
pub fn shorten<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &Digest,
    now: u64,
    until: u64,
) {
    let _ = change_live(store, table, *id, now, |slot| {
        (slot.expires_at > until).then_some(Slot {
            expires_at: until,
            ..*slot
        })
    });
}

/// Sets `id`'s value, replacing what it held (the latest listing wins).
pub fn set<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &str,
    value: &Digest,
    now: u64,
    ttl: u64,
) -> Result<(), String> {
    write(store, table, id, value, now, ttl, Write::Replace)
}

/// What a write does to a live entry of the same id.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    KeepFirst,
    /// Keep the first owner; one of another grant (a state's first half)
    /// makes the entry no single grant's.
    KeepFirstOrShare,
    /// Keep the first owner, and say the write did not happen.
    Claim,
    /// Replace it, unless it holds the same value for at least half the TTL.
    Replace,
}

fn write<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &str,
    value: &Digest,
    now: u64,
    ttl: u64,
    how: Write,
) -> Result<(), String> {
    write_digest(store, table, owner_digest(id), value, now, ttl, how)
        .map(|_| ())
        .map_err(|err| err.describe(table))
}

/// Why a write did not happen.
enum WriteError {
    /// Every probe holds another live entry.
    Full,
    /// Compare-and-swap lost [`MAX_CAS_ATTEMPTS`] times.
    Contended,
    /// The store failed.
    Store(String),
}

impl WriteError {
    fn describe(self, table: Table) -> String {
        match self {
            WriteError::Full => format!(
                "no free slot in the {} table for this id ({PROBES} probes of {SLOTS})",
                table.name()
            ),
            WriteError::Contended => format!(
                "the {} table stayed contended for this id ({MAX_CAS_ATTEMPTS} attempts)",
                table.name()
            ),
            WriteError::Store(err) => err,
        }
    }
}

/// Writes the entry of the id digested as `id`, as `how` says; `Ok(false)`:
/// a live entry of it was left as it was.
///
/// Every probe is read before a free slot is taken (up to the first slot
/// never written, past which no write of `id` can have gone): a live entry
/// of `id` may sit past a slot that was taken when it was written and has
/// been freed since, and must be found, not duplicated.
fn write_digest<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: Digest,
    value: &Digest,
    now: u64,
    ttl: u64,
    how: Write,
) -> Result<bool, WriteError> {
    let expires_at = now.saturating_add(ttl.clamp(1, MAX_TTL_SECONDS));
    'attempt: for _ in 0..MAX_CAS_ATTEMPTS {
        let mut free: Option<(String, Option<Cas>)> = None;
        for index in (0..PROBES).map(|n| probe(&id, n)) {
            let key = slot_key(table, index);
            let (current, cas) = read(store, &key).map_err(WriteError::Store)?;
            let slot = match current {
                Some(slot) if slot.id == id && slot.expires_at > now => slot,
                Some(slot) if slot.expires_at > now => continue,
                // Expired, or never written (no value at all): free.
                _ => {
                    let never_written = cas.is_none();
                    if free.is_none() {
                        free = Some((key, cas));
                    }
                    if never_written {
                        break;
                    }
                    continue;
                }
            };
            // A live entry of `id`: what this write does to it.
            let replacement = match how {
                Write::KeepFirst | Write::Claim => None,
                Write::KeepFirstOrShare => {
                    let holder = &slot.owner[..STATE_GRANT_LEN];
                    if holder == &value[..STATE_GRANT_LEN] {
                        // The same grant's call again (a server that keeps
                        // one state across rounds): bound to the latest.
                        (slot.owner != *value).then_some(Slot {
                            expires_at,
                            id,
                            owner: *value,
                        })
                    } else if holder == SHARED_STATE {
                        None
                    } else {
                        let mut shared = slot.owner;
                        shared[..STATE_GRANT_LEN].copy_from_slice(&SHARED_STATE);
                        Some(Slot {
                            owner: shared,
                            ..slot
                        })
                    }
                }
                Write::Replace if slot.owner == *value && slot.expires_at > now + ttl / 2 => None,
                Write::Replace => Some(Slot {
                    expires_at,
                    id,
                    owner: *value,
                }),
            };
            let Some(replacement) = replacement else {
                return Ok(false);
            };
            match store.compare_and_swap(&key, &encode(&replacement), cas) {
                Ok(()) => return Ok(true),
                Err(StoreError::CasMismatch) => continue 'attempt,
                Err(StoreError::Unavailable(err)) => return Err(WriteError::Store(err)),
            }
        }
        let Some((key, cas)) = free else {
            return Err(WriteError::Full);
        };
        let slot = Slot {
            expires_at,
            id,
            owner: *value,
        };
        match store.compare_and_swap(&key, &encode(&slot), cas) {
            Ok(()) => return Ok(true),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(WriteError::Store(err)),
        }
    }
    Err(WriteError::Contended)
}

/// Whether `needle` occurs in `haystack` (first byte located, then compared).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut from = 0;
    while let Some(offset) = haystack
        .get(from..)
        .and_then(|tail| tail.iter().position(|&b| b == first))
    {
        let at = from + offset;
        if haystack
            .get(at + 1..)
            .is_some_and(|tail| tail.starts_with(rest))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// What a server listed for tools: each tool's name and annotations, from
/// a listing answer (JSON, or the message events of a stream).
pub fn listed_hints(answer: &[u8], stream: bool) -> Vec<(String, crate::policy::Hints)> {
    let messages = if stream {
        crate::listing::sse_messages(answer)
    } else {
        vec![answer.to_vec()]
    };
    let mut found = Vec::new();
    for message in messages {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(&message) else {
            continue;
        };
        let tools = message
            .get("result")
            .and_then(|result| result.get("tools"))
            .and_then(serde_json::Value::as_array);
        for tool in tools.into_iter().flatten() {
            if let Some(name) = tool.get("name").and_then(serde_json::Value::as_str) {
                let hints = crate::policy::Hints::from_annotations(tool.get("annotations"));
                found.push((name.to_string(), hints));
            }
        }
    }
    found
}

/// The annotations last listed for a tool; for a name never listed as it
/// is, those listed (within a day, over every listing and page) for the
/// tools it is a letter-case variant of. Empty: the gate saw none.
pub fn hints<S: SharedStore + ?Sized>(
    store: &S,
    tool: &str,
    now: u64,
) -> crate::policy::ListedHints {
    read_hints(store, Table::Hints, tool, now)
        .or_else(|| {
            read_hints(
                store,
                Table::FoldedHints,
                &crate::policy::glob::fold_case(tool),
                now,
            )
        })
        .unwrap_or_default()
}

fn read_hints<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &str,
    now: u64,
) -> Option<crate::policy::ListedHints> {
    owner(store, table, id, now)
        .map(|value| crate::policy::ListedHints::from_bytes([value[0], value[1]]))
}

/// Remembers the annotations a server listed (a day, refreshed by each
/// listing): each tool's under its name, as listed last; and under its
/// name in letter case folded, those of every tool that folds alike, added
/// to what earlier listings and pages gave (a listing can come in pages,
/// and one name's variants on two of them). What could not be remembered,
/// for the log.
pub fn remember_hints<S: SharedStore + ?Sized>(
    store: &S,
    tools: &[(String, crate::policy::Hints)],
    now: u64,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut write = |table, id: &str, listed: crate::policy::ListedHints| {
        let mut value = [0u8; OWNER_DIGEST_LEN];
        value[..2].copy_from_slice(&listed.to_bytes());
        if let Err(err) = set(store, table, id, &value, now, MAX_TTL_SECONDS) {
            failed.push(format!("could not remember {id:?}'s annotations: {err}"));
        }
    };
    // Each tool's hints, then the spellings of one name merged: sorted by
    // the folded name, so that they are neighbours (O(n log n) however the
    // server names its tools).
    let mut spellings: Vec<(std::borrow::Cow<'_, str>, crate::policy::ListedHints)> =
        Vec::with_capacity(tools.len());
    for (tool, hints) in tools {
        let mut listed = crate::policy::ListedHints::default();
        listed.add(*hints);
        write(Table::Hints, tool, listed);
        spellings.push((crate::policy::glob::fold_case(tool), listed));
    }
    crate::sort::sort_by(&mut spellings, |a, b| a.0 < b.0);
    let mut folded: Vec<(std::borrow::Cow<'_, str>, crate::policy::ListedHints)> = Vec::new();
    for (key, listed) in spellings {
        match folded.last_mut() {
            Some((last, merged)) if *last == key => merged.merge(listed),
            _ => folded.push((key, listed)),
        }
    }
    for (key, mut merged) in folded {
        if let Some(earlier) = read_hints(store, Table::FoldedHints, &key, now) {
            merged.merge(earlier);
        }
        write(Table::FoldedHints, &key, merged);
    }
    failed
}

/// The owner of a live binding of `id`.
pub fn owner<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &str,
    now: u64,
) -> Option<Digest> {
    find_live(store, table, &owner_digest(id), now)
        .ok()
        .flatten()
        .map(|found| found.slot.owner)
}

/// A live entry found, where it is, and its compare-and-swap token.
struct Found {
    key: String,
    slot: Slot,
    cas: Option<Cas>,
}

/// The live entry of `id`, looking through its probes up to the first slot
/// never written (no write of `id` went past one).
fn find_live<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: &Digest,
    now: u64,
) -> Result<Option<Found>, String> {
    for index in (0..PROBES).map(|n| probe(id, n)) {
        let key = slot_key(table, index);
        match read(store, &key)? {
            (Some(slot), cas) if slot.id == *id && slot.expires_at > now => {
                return Ok(Some(Found { key, slot, cas }))
            }
            (_, None) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Swaps the live entry of `id` for what `change` makes of it (`None`:
/// left as it is). `Ok(true)` once swapped; `Ok(false)` for no live entry,
/// or one `change` leaves.
fn change_live<S: SharedStore + ?Sized>(
    store: &S,
    table: Table,
    id: Digest,
    now: u64,
    change: impl Fn(&Slot) -> Option<Slot>,
) -> Result<bool, String> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some(found) = find_live(store, table, &id, now)? else {
            return Ok(false);
        };
        let Some(changed) = change(&found.slot) else {
            return Ok(false);
        };
        match store.compare_and_swap(&found.key, &encode(&changed), found.cas) {
            Ok(()) => return Ok(true),
            Err(StoreError::CasMismatch) => continue,
            Err(StoreError::Unavailable(err)) => return Err(err),
        }
    }
    Err(format!(
        "the {} table stayed contended ({MAX_CAS_ATTEMPTS} attempts)",
        table.name()
    ))
}

/// Uses up a live `requestState` binding held by `owner`: true once, false
/// after (or for another owner, or an unknown state). A spent state keeps
/// its grant half until it expires ([`state_of_another_grant`]).
pub fn spend_state<S: SharedStore + ?Sized>(
    store: &S,
    state: &str,
    owner: &Digest,
    now: u64,
) -> bool {
    change_live(
        store,
        Table::RequestStates,
        owner_digest(state),
        now,
        |slot| {
            (slot.owner == *owner).then(|| {
                let mut spent = slot.owner;
                spent[STATE_GRANT_LEN..].copy_from_slice(&SPENT_STATE);
                Slot {
                    owner: spent,
                    ..*slot
                }
            })
        },
    )
    .unwrap_or(false)
}

/// What a server's answer hands out that the gate must bind to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandedOut {
    /// A task was created (`CreateTaskResult`), living `ttl_seconds`.
    Task { id: String, ttl_seconds: u64 },
    /// A multi-round-trip answer (`InputRequiredResult`) with its `requestState`.
    RequestState(String),
}

/// Every task id and request state in an answer: a JSON body (a message or
/// a batch) or, with `stream`, the message events of an event stream.
pub fn handed_out(answer: &[u8], stream: bool) -> Vec<HandedOut> {
    // Most answers hand out nothing: parse only those that could.
    if !contains(answer, b"taskId") && !contains(answer, b"requestState") {
        return Vec::new();
    }
    let messages = if stream {
        crate::listing::sse_messages(answer)
    } else {
        vec![answer.to_vec()]
    };
    let mut found = Vec::new();
    for message in messages {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(&message) else {
            continue;
        };
        let results: Vec<&serde_json::Value> = match &message {
            serde_json::Value::Array(batch) => {
                batch.iter().filter_map(|m| m.get("result")).collect()
            }
            message => message.get("result").into_iter().collect(),
        };
        for result in results {
            found.extend(handed_out_by(result));
        }
    }
    found
}

fn handed_out_by(result: &serde_json::Value) -> Option<HandedOut> {
    let text = |value: Option<&serde_json::Value>| {
        value
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let seconds = |ms: Option<&serde_json::Value>| {
        ms.and_then(serde_json::Value::as_u64)
            .map_or(DEFAULT_TASK_TTL_SECONDS, |ms| ms.div_ceil(1000))
    };
    let kind = result.get("resultType").and_then(serde_json::Value::as_str);
    match kind {
        // MCP 2026-07-28 (tasks extension): a flat CreateTaskResult.
        Some("task") => text(result.get("taskId")).map(|id| HandedOut::Task {
            id,
            ttl_seconds: seconds(result.get("ttlMs")),
        }),
        Some("input_required") => text(result.get("requestState")).map(HandedOut::RequestState),
        // MCP 2025-11-25: `{"task": {"taskId", "ttl"}}`.
        _ => {
            let task = result.get("task")?;
            text(task.get("taskId")).map(|id| HandedOut::Task {
                id,
                ttl_seconds: seconds(task.get("ttl")),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemorySharedData;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn slot_keys_are_the_prefix_the_table_and_the_index() {
        assert_eq!(
            slot_key(Table::InFlight, 0),
            "mcp-policy/v3/bind/inflight/0"
        );
        assert_eq!(
            slot_key(Table::Tasks, u64::MAX),
            "mcp-policy/v3/bind/tasks/18446744073709551615"
        );
        assert_eq!(
            slot_key(Table::RequestStates, 4_096),
            "mcp-policy/v3/bind/states/4096"
        );
    }

    #[test]
    fn a_binding_has_one_owner_until_it_expires() {
        let store = MemorySharedData::default();
        let (alice, bob) = (grant_owner("alice"), grant_owner("bob"));
        bind(&store, Table::Tasks, "task-1", &alice, 100, 60).unwrap();
        assert_eq!(owner(&store, Table::Tasks, "task-1", 120), Some(alice));
        // The first owner wins.
        bind(&store, Table::Tasks, "task-1", &bob, 130, 60).unwrap();
        assert_eq!(owner(&store, Table::Tasks, "task-1", 130), Some(alice));
        assert_eq!(owner(&store, Table::Tasks, "task-2", 130), None);
        assert_eq!(owner(&store, Table::Tasks, "task-1", 160), None, "expired");
        // Tables are apart.
        assert_eq!(owner(&store, Table::RequestStates, "task-1", 120), None);
        // Values are digests, of a fixed size.
        assert!(store
            .keys()
            .iter()
            .all(|key| store.get(key).unwrap().unwrap().0.len() == SLOT_LEN));
    }

    #[test]
    fn answers_hand_out_tasks_and_request_states() {
        let legacy = br#"{"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t-1","status":"working","ttl":60000}}}"#;
        assert_eq!(
            handed_out(legacy, false),
            [HandedOut::Task {
                id: "t-1".into(),
                ttl_seconds: 60
            }]
        );
        let current = b"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resultType\":\"task\",\"taskId\":\"t-2\",\"ttlMs\":1500}}\n\n";
        assert_eq!(
            handed_out(current, true),
            [HandedOut::Task {
                id: "t-2".into(),
                ttl_seconds: 2
            }]
        );
        let input = br#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"input_required","requestState":"s-1","inputRequests":{}}}"#;
        assert_eq!(
            handed_out(input, false),
            [HandedOut::RequestState("s-1".into())]
        );
        let plain = br#"{"jsonrpc":"2.0","id":4,"result":{"content":[],"taskId":"not a task"}}"#;
        assert!(handed_out(plain, false).is_empty());
        assert!(handed_out(b"not json", false).is_empty());
    }

    #[test]
    fn a_request_state_is_used_once_by_its_owner() {
        let store = MemorySharedData::default();
        let owner = state_owner("alice", crate::target::Kind::Tool, "run", &[]);
        let other = state_owner("alice", crate::target::Kind::Tool, "delete", &[]);
        bind_state(&store, "state", &owner, 0).unwrap();
        assert!(!spend_state(&store, "state", &other, 1));
        assert!(!spend_state(&store, "forged", &owner, 1));
        assert!(spend_state(&store, "state", &owner, 1));
        assert!(!spend_state(&store, "state", &owner, 2), "reused");
    }

    #[test]
    fn a_request_state_is_its_grants_spent_or_not_unless_handed_to_two() {
        let store = MemorySharedData::default();
        let alices = state_owner("alice", crate::target::Kind::Tool, "run", &[]);
        let bobs = state_owner("bob", crate::target::Kind::Tool, "run", &[]);
        let another = |state: &str, grant: &str, now: u64| {
            state_of_another_grant(&store, state, grant, now).unwrap()
        };
        bind_state(&store, "s-1", &alices, 0).unwrap();
        assert!(another("s-1", "bob", 1));
        assert!(!another("s-1", "alice", 1));
        assert!(!another("unknown", "bob", 1));
        // Spent by alice: still hers.
        assert!(spend_state(&store, "s-1", &alices, 2));
        assert!(another("s-1", "bob", 3));
        assert!(!spend_state(&store, "s-1", &alices, 3), "spent once");
        // Handed to alice again (a server that keeps one state across
        // rounds): spared again, once.
        bind_state(&store, "s-1", &alices, 4).unwrap();
        assert!(spend_state(&store, "s-1", &alices, 5));
        assert!(!spend_state(&store, "s-1", &alices, 6));
        // Expired: nobody's.
        let after = 4 + REQUEST_STATE_TTL_SECONDS + 1;
        assert!(!another("s-1", "bob", after));
        // A state the server hands to two grants is neither's: no one is
        // refused, and no one is spared.
        bind_state(&store, "same", &alices, 0).unwrap();
        bind_state(&store, "same", &alices, 1).unwrap();
        assert!(another("same", "bob", 1));
        bind_state(&store, "same", &bobs, 2).unwrap();
        for grant in ["alice", "bob", "carol"] {
            assert!(!another("same", grant, 3), "{grant}");
        }
        assert!(!spend_state(&store, "same", &alices, 3));
        assert!(!spend_state(&store, "same", &bobs, 3));
    }

    /// An id written past a slot that was taken then is found there once
    /// that slot is free: claimed once, never twice.
    #[test]
    fn an_entry_past_a_freed_slot_is_found_not_duplicated() {
        let store = MemorySharedData::default();
        let owner = grant_owner("alice");
        let id = owner_digest("the-id");
        // Another id holds the id's first probe.
        let first = slot_key(Table::InFlight, probe(&id, 0));
        let other = Slot {
            expires_at: 1_000,
            id: owner_digest("another"),
            owner,
        };
        store
            .compare_and_swap(&first, &encode(&other), None)
            .unwrap();
        assert_eq!(claim(&store, Table::InFlight, &id, 1), Ok(Claim::Claimed));
        // The first probe frees up.
        let (_, cas) = read(&store, &first).unwrap();
        let freed = Slot {
            expires_at: 0,
            ..other
        };
        store
            .compare_and_swap(&first, &encode(&freed), cas)
            .unwrap();
        assert_eq!(claim(&store, Table::InFlight, &id, 2), Ok(Claim::Taken));
        release(&store, Table::InFlight, &id, 3);
        assert_eq!(claim(&store, Table::InFlight, &id, 4), Ok(Claim::Claimed));
    }
}
