use super::super::{acquire, end_calls, release, Acquire, CallerScope, Charge, Reservation};
use super::*;
use crate::policy::{Cost, CounterStore, Limit, LimitKind, Scope};
use crate::testing::{EnvoySharedData, UnavailableStore};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SLOTS: u64 = 1024;
const NOW: u64 = 1_800_000_000;

fn cap(counter: &str, cap: u64, lease_seconds: u64, scope: Scope) -> Limit {
    Limit {
        counter: counter.to_string(),
        kind: LimitKind::Concurrent { cap, lease_seconds },
        scope,
        pointer: format!("/tools/t/limits/{counter}"),
        store: CounterStore::Local,
        cost: Cost::Units(1),
        per: None,
    }
}

fn window(counter: &str, max: u64) -> Limit {
    Limit {
        kind: LimitKind::Window { seconds: 60, max },
        ..cap(counter, 1, 1, Scope::Grant)
    }
}

fn caller(grant: &str) -> CallerScope<'_> {
    CallerScope {
        grant,
        session: None,
        role: None,
    }
}

fn take<'p>(store: &EnvoySharedData, limits: &[&'p Limit], grant: &str, now: u64) -> Acquire<'p> {
    let charges: Vec<Charge<'p>> = limits.iter().map(|limit| Charge::plain(limit)).collect();
    acquire(store, &charges, caller(grant), now, SLOTS)
}

fn held(result: Acquire<'_>) -> Vec<Reservation> {
    match result {
        Acquire::Granted(reservations) => reservations,
        other => panic!("expected a slot, got {other:?}"),
    }
}

#[test]
fn at_most_the_cap_in_flight_and_a_slot_comes_back_when_a_call_ends() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 3, 300, Scope::Grant);
    let calls: Vec<Vec<Reservation>> = (0..3)
        .map(|_| held(take(&store, &[&inflight], "alice", NOW)))
        .collect();
    // No retry guess: a slot frees when a call ends.
    assert_eq!(
        take(&store, &[&inflight], "alice", NOW + 1),
        Acquire::Exhausted {
            limit: &inflight,
            retry_after_seconds: 0,
            cost: 1
        }
    );
    // Another grant has slots of its own.
    held(take(&store, &[&inflight], "bob", NOW));
    // One call ends: exactly one slot comes back.
    assert!(end_calls(&store, &calls[1]).is_empty());
    held(take(&store, &[&inflight], "alice", NOW + 2));
    assert!(matches!(
        take(&store, &[&inflight], "alice", NOW + 2),
        Acquire::Exhausted { .. }
    ));
}

#[test]
fn a_lease_never_given_back_ends_by_itself() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 2, 300, Scope::Grant);
    held(take(&store, &[&inflight], "alice", NOW));
    let later = held(take(&store, &[&inflight], "alice", NOW + 100));
    assert!(matches!(
        take(&store, &[&inflight], "alice", NOW + 299),
        Acquire::Exhausted { .. }
    ));
    // The first lease (a worker that never saw its call end) ends at
    // NOW + 300; the second lives on.
    held(take(&store, &[&inflight], "alice", NOW + 300));
    assert!(matches!(
        take(&store, &[&inflight], "alice", NOW + 300),
        Acquire::Exhausted { .. }
    ));
    // Giving back the live lease frees its slot.
    assert!(release(&store, &later).is_empty());
    held(take(&store, &[&inflight], "alice", NOW + 301));
}

#[test]
fn giving_back_an_ended_lease_takes_nobody_elses_slot() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 1, 10, Scope::Global);
    let old = held(take(&store, &[&inflight], "alice", NOW));
    // Ended at NOW + 10; bob takes the slot.
    held(take(&store, &[&inflight], "bob", NOW + 10));
    // alice's call ends late: bob's slot stays his.
    assert!(end_calls(&store, &old).is_empty());
    assert!(matches!(
        take(&store, &[&inflight], "carol", NOW + 11),
        Acquire::Exhausted { .. }
    ));
}

#[test]
fn a_global_cap_is_one_count_for_everyone() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 2, 300, Scope::Global);
    held(take(&store, &[&inflight], "alice", NOW));
    held(take(&store, &[&inflight], "bob", NOW));
    assert!(matches!(
        take(&store, &[&inflight], "carol", NOW),
        Acquire::Exhausted { .. }
    ));
    assert_eq!(store.keys().len(), 1);
}

#[test]
fn slots_and_windows_are_taken_all_or_none() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 1, 300, Scope::Grant);
    let rate = window("rate", 2);
    let first = held(take(&store, &[&rate, &inflight], "alice", NOW));
    assert_eq!(first.len(), 2);
    // The cap is full: the window is not charged for the refused call.
    for _ in 0..3 {
        assert_eq!(
            take(&store, &[&rate, &inflight], "alice", NOW),
            Acquire::Exhausted {
                limit: &inflight,
                retry_after_seconds: 0,
                cost: 1
            }
        );
    }
    // The call ends: its slot comes back, its unit stays taken.
    assert!(end_calls(&store, &first).is_empty());
    held(take(&store, &[&rate, &inflight], "alice", NOW));
    // Now the window is full (2 of 2) and so is the cap: the window is
    // reported, with when to retry.
    assert_eq!(
        take(&store, &[&rate, &inflight], "alice", NOW),
        Acquire::Exhausted {
            limit: &rate,
            retry_after_seconds: 60,
            cost: 1
        }
    );
    // A full window takes no slot: with the window full and the slot free,
    // the slot stays free.
    let store = EnvoySharedData::default();
    let rate = window("rate", 1);
    let inflight = cap("inflight", 1, 300, Scope::Grant);
    let call = held(take(&store, &[&inflight, &rate], "alice", NOW));
    assert!(end_calls(&store, &call).is_empty());
    assert!(matches!(
        take(&store, &[&inflight, &rate], "alice", NOW),
        Acquire::Exhausted { limit, .. } if limit.counter == "rate"
    ));
    let other_rate = window("other", 5);
    held(take(&store, &[&inflight, &other_rate], "alice", NOW));
}

#[test]
fn a_counter_named_twice_takes_one_slot_against_the_smaller_cap() {
    let store = EnvoySharedData::default();
    let own = cap("inflight", 3, 300, Scope::Grant);
    let all = Limit {
        kind: LimitKind::Concurrent {
            cap: 2,
            lease_seconds: 300,
        },
        pointer: "/all_tools/limits/0".to_string(),
        ..own.clone()
    };
    let one = held(take(&store, &[&own, &all], "alice", NOW));
    assert_eq!(one.len(), 1);
    held(take(&store, &[&own, &all], "alice", NOW));
    assert!(matches!(
        take(&store, &[&own, &all], "alice", NOW),
        Acquire::Exhausted { limit, .. } if limit.pointer == "/all_tools/limits/0"
    ));
}

#[test]
fn a_lost_race_is_retried_and_the_cap_holds() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 1, 300, Scope::Global);
    // Another worker takes the only slot between our read and our write.
    let competitor = inflight.clone();
    store.before_next_swap(move |store| {
        let charge = Charge::plain(&competitor);
        assert!(matches!(
            acquire(store, &[charge], caller("bob"), NOW, SLOTS),
            Acquire::Granted(_)
        ));
    });
    assert_eq!(
        take(&store, &[&inflight], "alice", NOW),
        Acquire::Exhausted {
            limit: &inflight,
            retry_after_seconds: 0,
            cost: 1
        }
    );
}

/// Real threads against one store: never more than the cap held at once.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn concurrent_workers_never_hold_more_than_the_cap() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let store = Arc::new(EnvoySharedData::default());
    let inflight = Arc::new(cap("threads", 4, 300, Scope::Grant));
    let holding = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let granted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, inflight) = (store.clone(), inflight.clone());
            let (holding, most, granted) = (holding.clone(), most.clone(), granted.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let charge = Charge::plain(&inflight);
                    if let Acquire::Granted(slots) =
                        acquire(&*store, &[charge], caller("alice"), NOW, SLOTS)
                    {
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        granted.fetch_add(1, Ordering::SeqCst);
                        std::thread::yield_now();
                        holding.fetch_sub(1, Ordering::SeqCst);
                        assert!(end_calls(&*store, &slots).is_empty());
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(most.load(Ordering::SeqCst) <= 4, "{most:?} held at once");
    assert!(granted.load(Ordering::SeqCst) >= 4);
    // Every slot came back.
    assert_eq!(
        live(
            &*store,
            "threads",
            'g',
            &super::super::owner_digest("alice"),
            NOW,
            SLOTS
        ),
        Some(0)
    );
}

#[test]
fn a_bucket_is_bounded_and_fails_closed_when_full() {
    let store = EnvoySharedData::default();
    // One bucket for everyone (a table of 1 slot), caps of 1024 each.
    let inflight = cap("inflight", crate::policy::MAX_CONCURRENT, 300, Scope::Grant);
    let charge = Charge::plain(&inflight);
    for i in 0..MAX_BUCKET_LEASES {
        let grant = format!("g{}", i % 4);
        assert!(matches!(
            acquire(
                &store,
                std::slice::from_ref(&charge),
                caller(&grant),
                NOW,
                1
            ),
            Acquire::Granted(_)
        ));
    }
    assert!(matches!(
        acquire(&store, std::slice::from_ref(&charge), caller("g5"), NOW, 1),
        Acquire::Failed(reason) if reason.contains("no room")
    ));
    let (bytes, _) = store.get(&store.keys()[0]).unwrap().unwrap();
    assert_eq!(bytes.len(), MAX_BUCKET_LEASES * ENTRY_LEN);
    // Ended leases make room again.
    assert!(matches!(
        acquire(&store, &[charge], caller("g5"), NOW + 300, 1),
        Acquire::Granted(_)
    ));
}

#[test]
fn a_foreign_value_under_our_key_is_overwritten_not_fatal() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 1, 300, Scope::Global);
    let key = bucket_key("inflight", '*', &[0; OWNER_DIGEST_LEN], SLOTS);
    store.set_raw(&key, b"not a bucket", 0).unwrap();
    held(take(&store, &[&inflight], "alice", NOW));
}

#[test]
fn an_unavailable_store_fails_the_call() {
    let inflight = cap("inflight", 1, 300, Scope::Global);
    let charge = Charge::plain(&inflight);
    assert!(matches!(
        acquire(&UnavailableStore, &[charge], caller("alice"), NOW, SLOTS),
        Acquire::Failed(_)
    ));
}

#[test]
fn roles_count_their_callers_together() {
    let store = EnvoySharedData::default();
    let inflight = cap("inflight", 1, 300, Scope::Role);
    let engineer = |grant| CallerScope {
        grant,
        session: None,
        role: Some("engineer"),
    };
    let charge = Charge::plain(&inflight);
    assert!(matches!(
        acquire(
            &store,
            std::slice::from_ref(&charge),
            engineer("alice"),
            NOW,
            SLOTS
        ),
        Acquire::Granted(_)
    ));
    assert!(matches!(
        acquire(
            &store,
            std::slice::from_ref(&charge),
            engineer("bob"),
            NOW,
            SLOTS
        ),
        Acquire::Exhausted { .. }
    ));
    // Without a role, a caller counts alone.
    assert!(matches!(
        acquire(
            &store,
            std::slice::from_ref(&charge),
            caller("carol"),
            NOW,
            SLOTS
        ),
        Acquire::Granted(_)
    ));
    assert!(matches!(
        acquire(&store, &[charge], caller("dave"), NOW, SLOTS),
        Acquire::Granted(_)
    ));
}

#[test]
fn bucket_keys_name_the_counter_by_length_the_scope_and_the_bucket() {
    let owner = [7u8; OWNER_DIGEST_LEN];
    assert_eq!(
        bucket_key("jobs", '*', &owner, SLOTS),
        "mcp-policy/c1/4/jobs/*/0"
    );
    let key = bucket_key("a/b", 'g', &owner, SLOTS);
    let index: u64 = key
        .strip_prefix("mcp-policy/c1/3/a/b/g/")
        .and_then(|index| index.parse().ok())
        .unwrap();
    assert!(index < SLOTS);
    // The same owner, the same bucket: every worker's VM finds its leases.
    assert_eq!(bucket_key("a/b", 'g', &owner, SLOTS), key);
}
