use super::*;
use crate::testing::{ContendedStore, EnvoySharedData, UnavailableStore};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SLOTS: u64 = 1024;

/// The count the caller holds on `limit` now (test helper).
fn count_of(store: &EnvoySharedData, limit: &Limit, caller: CallerScope<'_>, now: u64) -> u64 {
    count_in_table(store, limit, caller, now, SLOTS)
}

fn count_in_table(
    store: &EnvoySharedData,
    limit: &Limit,
    caller: CallerScope<'_>,
    now: u64,
    slots: u64,
) -> u64 {
    let (scope, owner) = owner(limit, caller);
    let counted = Counted {
        limit,
        cost: 1,
        scope,
        owner: owner_digest(owner),
    };
    current_count(store, &counted, now, slots).unwrap()
}

fn limit(counter: &str, window_seconds: u64, max: u64, scope: Scope) -> Limit {
    Limit {
        counter: counter.to_string(),
        kind: LimitKind::Window {
            seconds: window_seconds,
            max,
        },
        scope,
        pointer: format!("/tools/t/limits/{counter}"),
        store: crate::policy::CounterStore::Local,
        cost: crate::policy::Cost::Units(1),
        per: None,
    }
}

/// Takes one unit (each limit's fixed cost) from each limit, without `per` values.
fn acquire<'p, S: SharedStore + ?Sized>(
    store: &S,
    limits: &[&'p Limit],
    caller: CallerScope<'_>,
    now: u64,
    slots: u64,
) -> Acquire<'p> {
    let charges: Vec<Charge<'p>> = limits.iter().map(|limit| Charge::plain(limit)).collect();
    super::acquire(store, &charges, caller, now, slots)
}

const ALICE: CallerScope<'static> = CallerScope {
    grant: "alice",
    session: Some("s-1"),
    role: None,
};
const BOB: CallerScope<'static> = CallerScope {
    grant: "bob",
    session: Some("s-2"),
    role: None,
};

fn granted(result: &Acquire<'_>) -> bool {
    matches!(result, Acquire::Granted(_))
}

#[test]
fn counts_up_to_max_then_refuses_until_the_window_ends() {
    let store = EnvoySharedData::default();
    let minute = limit("c", 60, 3, Scope::Grant);
    let now = 1_800_000_010; // 10 s into a minute window
    for _ in 0..3 {
        assert!(granted(&acquire(&store, &[&minute], ALICE, now, SLOTS)));
    }
    assert_eq!(
        acquire(&store, &[&minute], ALICE, now + 5, SLOTS),
        Acquire::Exhausted {
            limit: &minute,
            retry_after_seconds: 45,
            cost: 1
        }
    );
    // The next window starts empty.
    assert!(granted(&acquire(
        &store,
        &[&minute],
        ALICE,
        now + 50,
        SLOTS
    )));
}

#[test]
fn windows_are_aligned_to_the_epoch() {
    assert_eq!(window_start(1_800_000_059, 60), 1_800_000_000);
    assert_eq!(window_start(1_800_000_060, 60), 1_800_000_060);
    assert_eq!(window_start(100, 7), 98);
    assert_eq!(seconds_until_reset(1_800_000_059, 60), 1);
    assert_eq!(seconds_until_reset(1_800_000_000, 60), 60);
    assert_eq!(seconds_until_reset(5, 1), 1);
}

#[test]
fn scopes_count_separately() {
    let store = EnvoySharedData::default();
    let per_grant = limit("g", 60, 1, Scope::Grant);
    let per_session = limit("s", 60, 1, Scope::Session);
    let global = limit("x", 60, 2, Scope::Global);
    let now = 1_800_000_000;

    assert!(granted(&acquire(&store, &[&per_grant], ALICE, now, SLOTS)));
    assert!(!granted(&acquire(&store, &[&per_grant], ALICE, now, SLOTS)));
    assert!(granted(&acquire(&store, &[&per_grant], BOB, now, SLOTS)));
    // Same grant, other session: the grant's count is shared.
    let alice_elsewhere = CallerScope {
        grant: "alice",
        session: Some("s-9"),
        role: None,
    };
    assert!(!granted(&acquire(
        &store,
        &[&per_grant],
        alice_elsewhere,
        now,
        SLOTS
    )));

    assert!(granted(&acquire(
        &store,
        &[&per_session],
        ALICE,
        now,
        SLOTS
    )));
    assert!(!granted(&acquire(
        &store,
        &[&per_session],
        ALICE,
        now,
        SLOTS
    )));
    assert!(granted(&acquire(
        &store,
        &[&per_session],
        alice_elsewhere,
        now,
        SLOTS
    )));
    // Calls without a session (MCP 2026-07-28 has none) count under their
    // grant: carol's second call is refused, dave's first is not.
    let no_session = CallerScope {
        grant: "carol",
        session: None,
        role: None,
    };
    assert!(granted(&acquire(
        &store,
        &[&per_session],
        no_session,
        now,
        SLOTS
    )));
    assert!(!granted(&acquire(
        &store,
        &[&per_session],
        no_session,
        now,
        SLOTS
    )));
    assert!(granted(&acquire(
        &store,
        &[&per_session],
        CallerScope {
            grant: "dave",
            session: None,
            role: None,
        },
        now,
        SLOTS
    )));
    // Apart from the grant's own grant-scoped count on the same counter.
    let per_grant = limit("s", 60, 1, Scope::Grant);
    assert!(granted(&acquire(
        &store,
        &[&per_grant],
        no_session,
        now,
        SLOTS
    )));

    assert!(granted(&acquire(&store, &[&global], ALICE, now, SLOTS)));
    assert!(granted(&acquire(&store, &[&global], BOB, now, SLOTS)));
    assert!(!granted(&acquire(
        &store,
        &[&global],
        no_session,
        now,
        SLOTS
    )));
}

#[test]
fn takes_from_all_limits_or_from_none() {
    let store = EnvoySharedData::default();
    let roomy = limit("roomy", 60, 100, Scope::Grant);
    let tight = limit("tight", 60, 1, Scope::Grant);
    let now = 1_800_000_000;
    assert!(granted(&acquire(
        &store,
        &[&roomy, &tight],
        ALICE,
        now,
        SLOTS
    )));
    // `tight` is full: `roomy` must not be charged for the refused call.
    for _ in 0..5 {
        assert!(!granted(&acquire(
            &store,
            &[&roomy, &tight],
            ALICE,
            now,
            SLOTS
        )));
    }
    assert_eq!(count_of(&store, &roomy, ALICE, now), 1);
}

#[test]
fn reports_the_full_limit_whose_window_ends_last() {
    let store = EnvoySharedData::default();
    let minute = limit("m", 60, 1, Scope::Grant);
    let hour = limit("h", 3600, 1, Scope::Grant);
    let now = 1_800_000_000; // a whole hour boundary
    assert!(granted(&acquire(
        &store,
        &[&minute, &hour],
        ALICE,
        now,
        SLOTS
    )));
    assert_eq!(
        acquire(&store, &[&minute, &hour], ALICE, now + 1, SLOTS),
        Acquire::Exhausted {
            limit: &hour,
            retry_after_seconds: 3599,
            cost: 1
        }
    );
}

#[test]
fn a_counter_named_twice_for_one_call_counts_once_against_the_smaller_max() {
    let store = EnvoySharedData::default();
    let own = limit("shared", 60, 5, Scope::Grant);
    let all = Limit {
        kind: LimitKind::Window {
            seconds: 60,
            max: 2,
        },
        pointer: "/all_tools/limits/0".to_string(),
        ..own.clone()
    };
    let now = 1_800_000_000;
    assert!(granted(&acquire(&store, &[&own, &all], ALICE, now, SLOTS)));
    assert!(granted(&acquire(&store, &[&own, &all], ALICE, now, SLOTS)));
    assert!(matches!(
        acquire(&store, &[&own, &all], ALICE, now, SLOTS),
        Acquire::Exhausted { limit, .. } if limit.pointer == "/all_tools/limits/0"
    ));
    // The larger cost of the two is taken, and the refusal says so, though
    // the limit whose max decided has no cost of its own.
    let store = EnvoySharedData::default();
    let costly = Limit {
        cost: crate::policy::Cost::Units(3),
        kind: LimitKind::Window {
            seconds: 60,
            max: 10,
        },
        ..own.clone()
    };
    let five = Limit {
        kind: LimitKind::Window {
            seconds: 60,
            max: 5,
        },
        ..all.clone()
    };
    let take = || {
        super::acquire(
            &store,
            &[charge(&costly, 3, None), charge(&five, 1, None)],
            ALICE,
            now,
            SLOTS,
        )
    };
    assert!(granted(&take()));
    assert_eq!(
        take(),
        Acquire::Exhausted {
            limit: &five,
            retry_after_seconds: 60,
            cost: 3
        }
    );
}

#[test]
fn one_caller_keeps_one_key_across_windows() {
    let store = EnvoySharedData::default();
    let per_grant = limit("g", 1, 1000, Scope::Grant);
    // A thousand windows later there is still one key.
    for second in 0..1000 {
        assert!(granted(&acquire(
            &store,
            &[&per_grant],
            ALICE,
            1_800_000_000 + second,
            SLOTS
        )));
    }
    assert_eq!(store.keys().len(), 1);
}

/// The digests kept for recent owners are the ones computed, whichever
/// owners come and go (more of them than are kept, some again).
#[test]
fn kept_owner_digests_are_the_computed_ones() {
    // Unkeyed, whatever an earlier test in this thread (one wasm instance
    // runs them all) left.
    use_table_key([0; 16]);
    let names: Vec<String> = (0..3 * RECENT_OWNERS)
        .map(|i| format!("caller-{}", i % (RECENT_OWNERS + 2)))
        .chain([
            "".to_string(),
            "ünï;code".to_string(),
            "caller-0".to_string(),
        ])
        .collect();
    for name in names.iter().chain(names.iter().rev()) {
        assert_eq!(owner_digest(name), sha256_digest(&[0; 16], name), "{name}");
    }
    assert_ne!(owner_digest("caller-0"), owner_digest("caller-1"));
    // Keyed: what was kept under no key is not reused.
    let plain = owner_digest("caller-0");
    use_table_key([7; 16]);
    assert_eq!(
        owner_digest("caller-0"),
        sha256_digest(&[7; 16], "caller-0")
    );
    assert_ne!(owner_digest("caller-0"), plain);
    use_table_key([0; 16]);
    assert_eq!(owner_digest("caller-0"), plain);
}

/// The table key: written once by whichever worker needs it first, read by
/// every other; digests made with it cannot be foretold from a name.
#[test]
fn the_table_key_is_written_once_and_read_by_every_worker() {
    let store = EnvoySharedData::default();
    let first = table_key(&store, || 0x1234).unwrap();
    assert_eq!(first, 0x1234u128.to_le_bytes());
    let second = table_key(&store, || panic!("a key is there: no new one")).unwrap();
    assert_eq!(first, second);
    // A foreign value under its name is replaced.
    let store = EnvoySharedData::default();
    store
        .compare_and_swap("mcp-policy/v3/table-key", b"junk", None)
        .unwrap();
    assert_eq!(table_key(&store, || 9).unwrap(), 9u128.to_le_bytes());
    // Keyed digests move a name's probe slots.
    let name = "alice;args.repo=acme/web";
    let slots = |key: [u8; 16]| -> Vec<u64> {
        (0..4)
            .map(|probe| probe_slot(&sha256_digest(&key, name), probe, SLOTS))
            .collect()
    };
    assert_ne!(slots([0; 16]), slots(first));
    assert_ne!(slots([1; 16]), slots(first));
    // Unavailable: said, not guessed.
    assert!(table_key(&UnavailableStore, || 1).is_err());
}

#[test]
fn keys_cannot_collide_across_counters_and_scopes() {
    let a = limit("a/g", 60, 1, Scope::Grant);
    let b = limit("a", 60, 1, Scope::Grant);
    assert_ne!(slot_key(&a, 'g', 0), slot_key(&b, 'g', 0));
    assert_ne!(slot_key(&a, 's', 0), slot_key(&a, 'g', 0));
    // The layout every worker (and a reloaded policy) must agree on.
    assert_eq!(slot_key(&a, 'g', 0), "mcp-policy/v3/3/a/g/g/0");
    assert_eq!(
        slot_key(&b, 's', u64::MAX),
        format!("mcp-policy/v3/1/a/s/{}", u64::MAX)
    );
    assert_eq!(slot_key(&b, '*', 1_000_007), "mcp-policy/v3/1/a/*/1000007");
    // A grant and a session with the same value count separately.
    let store = EnvoySharedData::default();
    let session = limit("c", 60, 1, Scope::Session);
    let grant = limit("c", 60, 1, Scope::Grant);
    let same = CallerScope {
        grant: "v",
        session: Some("v"),
        role: None,
    };
    assert!(granted(&acquire(&store, &[&session], same, 0, SLOTS)));
    assert!(granted(&acquire(&store, &[&grant], same, 0, SLOTS)));
}

#[test]
fn a_lost_race_is_retried_not_counted_twice() {
    let store = EnvoySharedData::default();
    let tight = limit("race", 60, 2, Scope::Global);
    let now = 1_800_000_000;
    // Another worker takes a unit between our read and our write, while the
    // key does not exist yet: the create-if-absent CAS must notice.
    let competitor = tight.clone();
    store.before_next_swap(move |store| {
        assert!(matches!(
            acquire(store, &[&competitor], ALICE, now, SLOTS),
            Acquire::Granted(_)
        ));
    });
    assert!(granted(&acquire(&store, &[&tight], BOB, now, SLOTS)));
    // Both units are taken: a third call is refused.
    assert!(!granted(&acquire(&store, &[&tight], BOB, now, SLOTS)));
    assert_eq!(count_of(&store, &tight, BOB, now), 2);
}

#[test]
fn a_race_for_the_last_unit_has_one_winner() {
    let store = EnvoySharedData::default();
    let tight = limit("last", 60, 1, Scope::Global);
    let now = 1_800_000_000;
    let competitor = tight.clone();
    store.before_next_swap(move |store| {
        assert!(matches!(
            acquire(store, &[&competitor], ALICE, now, SLOTS),
            Acquire::Granted(_)
        ));
    });
    assert!(!granted(&acquire(&store, &[&tight], BOB, now, SLOTS)));
}

/// README and SECURITY.md: "updates are compare-and-swap, retried up to 64
/// times, then the call fails closed".
#[test]
fn a_counter_contended_on_every_attempt_fails_after_64_attempts() {
    assert_eq!(
        MAX_CAS_ATTEMPTS, 64,
        "the bound README.md and SECURITY.md state"
    );
    let hot = limit("hot", 60, 10, Scope::Global);
    let now = 1_800_000_000;
    let store = ContendedStore::always();
    match acquire(&store, &[&hot], ALICE, now, SLOTS) {
        Acquire::Failed(reason) => assert_eq!(
            reason, "counter \"hot\" still contended after 64 attempts",
            "{reason}"
        ),
        other => panic!("a counter that never settles must fail the call: {other:?}"),
    }
    assert_eq!(store.swaps(), 64, "one swap per attempt, then give up");

    // One loss fewer than the bound: the 64th attempt takes the unit.
    let store = ContendedStore::losing(63);
    assert!(granted(&acquire(&store, &[&hot], ALICE, now, SLOTS)));
    assert_eq!(store.swaps(), 64);
}

#[test]
fn an_unavailable_store_fails_the_acquisition() {
    let tight = limit("c", 60, 1, Scope::Global);
    assert!(matches!(
        acquire(&UnavailableStore, &[&tight], ALICE, 0, SLOTS),
        Acquire::Failed(_)
    ));
}

#[test]
fn released_quota_can_be_taken_again_in_the_same_window() {
    let store = EnvoySharedData::default();
    let tight = limit("c", 60, 1, Scope::Grant);
    let now = 1_800_000_000;
    let Acquire::Granted(reservations) = acquire(&store, &[&tight], ALICE, now, SLOTS) else {
        panic!("first call must pass");
    };
    assert!(!granted(&acquire(&store, &[&tight], ALICE, now, SLOTS)));
    assert!(release(&store, &reservations).is_empty());
    assert!(granted(&acquire(&store, &[&tight], ALICE, now, SLOTS)));
    // Released in a later window: nothing to give back, nothing goes negative.
    let Acquire::Granted(late) = acquire(&store, &[&tight], ALICE, now + 60, SLOTS) else {
        panic!("new window must pass");
    };
    assert!(release(&store, &reservations).is_empty());
    assert!(!granted(&acquire(
        &store,
        &[&tight],
        ALICE,
        now + 61,
        SLOTS
    )));
    assert_eq!(late.len(), 1);
}

#[test]
fn a_foreign_value_under_our_key_is_overwritten_not_fatal() {
    let store = EnvoySharedData::default();
    let tight = limit("c", 60, 1, Scope::Grant);
    let (scope, owner) = owner(&tight, ALICE);
    let home = probe_slot(&owner_digest(owner), 0, SLOTS);
    store
        .set_raw(&slot_key(&tight, scope, home), b"junk", 0)
        .unwrap();
    assert!(granted(&acquire(
        &store,
        &[&tight],
        ALICE,
        1_800_000_000,
        SLOTS
    )));
}

/// Real threads against one store: exactly `max` calls pass.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn concurrent_callers_never_exceed_max() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let store = Arc::new(EnvoySharedData::default());
    let tight = Arc::new(limit("threads", 3600, 50, Scope::Global));
    let passed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, tight, passed) = (store.clone(), tight.clone(), passed.clone());
            std::thread::spawn(move || {
                for _ in 0..40 {
                    if let Acquire::Granted(_) =
                        acquire(&*store, &[&*tight], ALICE, 1_800_000_000, SLOTS)
                    {
                        passed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(passed.load(Ordering::SeqCst), 50);
}

#[test]
fn keys_are_bounded_by_the_table_and_reused_after_their_window() {
    let store = EnvoySharedData::default();
    let per_grant = limit("g", 60, 5, Scope::Grant);
    let now = 1_800_000_000;
    let slots = 256;
    let grants: Vec<String> = (0..200).map(|i| format!("grant-{i}")).collect();
    for grant in &grants {
        let caller = CallerScope {
            grant,
            session: None,
            role: None,
        };
        assert!(
            matches!(
                acquire(&store, &[&per_grant], caller, now, slots),
                Acquire::Granted(_)
            ),
            "{grant}"
        );
    }
    assert!(store.keys().len() <= 200);
    // Each grant still has its own count: 4 more each, then full.
    for grant in &grants {
        let caller = CallerScope {
            grant,
            session: None,
            role: None,
        };
        for _ in 0..4 {
            assert!(matches!(
                acquire(&store, &[&per_grant], caller, now, slots),
                Acquire::Granted(_)
            ));
        }
        assert!(matches!(
            acquire(&store, &[&per_grant], caller, now, slots),
            Acquire::Exhausted { .. }
        ));
    }
    // A new window: another 200 callers reuse the same keys.
    let before = store.keys().len();
    for i in 0..200 {
        let grant = format!("later-{i}");
        let caller = CallerScope {
            grant: &grant,
            session: None,
            role: None,
        };
        let result = acquire(&store, &[&per_grant], caller, now + 60, slots);
        assert!(matches!(result, Acquire::Granted(_)), "{grant}: {result:?}");
    }
    assert!(store.keys().len() <= slots as usize);
    assert!(store.keys().len() >= before);
}

#[test]
fn a_full_table_fails_the_call_with_a_clear_reason() {
    let store = EnvoySharedData::default();
    let per_grant = limit("tiny", 60, 5, Scope::Grant);
    let now = 1_800_000_000;
    for i in 0..4 {
        let grant = format!("g{i}");
        let caller = CallerScope {
            grant: &grant,
            session: None,
            role: None,
        };
        assert!(matches!(
            acquire(&store, &[&per_grant], caller, now, 4),
            Acquire::Granted(_)
        ));
    }
    let fifth = CallerScope {
        grant: "g4",
        session: None,
        role: None,
    };
    match acquire(&store, &[&per_grant], fifth, now, 4) {
        Acquire::Failed(reason) => assert!(reason.contains("max_callers_per_counter"), "{reason}"),
        other => panic!("expected a full table, got {other:?}"),
    }
    // The next window frees every slot.
    assert!(matches!(
        acquire(&store, &[&per_grant], fifth, now + 60, 4),
        Acquire::Granted(_)
    ));
    assert_eq!(store.keys().len(), 4);
}

#[test]
fn a_caller_finds_its_slot_past_others_and_keeps_counting_there() {
    let store = EnvoySharedData::default();
    let per_grant = limit("probe", 60, 2, Scope::Grant);
    // With 2 slots and 32 probes each caller tries both; three callers: the third is out.
    let (a, b) = (
        CallerScope {
            grant: "a",
            session: None,
            role: None,
        },
        CallerScope {
            grant: "b",
            session: None,
            role: None,
        },
    );
    assert!(granted(&acquire(&store, &[&per_grant], a, 0, 2)));
    assert!(granted(&acquire(&store, &[&per_grant], b, 0, 2)));
    assert!(granted(&acquire(&store, &[&per_grant], a, 0, 2)));
    assert!(granted(&acquire(&store, &[&per_grant], b, 0, 2)));
    assert!(matches!(
        acquire(&store, &[&per_grant], a, 0, 2),
        Acquire::Exhausted { .. }
    ));
    assert!(matches!(
        acquire(&store, &[&per_grant], b, 0, 2),
        Acquire::Exhausted { .. }
    ));
    assert_eq!(count_in_table(&store, &per_grant, a, 0, 2), 2);
    let c = CallerScope {
        grant: "c",
        session: None,
        role: None,
    };
    assert!(matches!(
        acquire(&store, &[&per_grant], c, 0, 2),
        Acquire::Failed(_)
    ));
}

fn costly(counter: &str, max: u64) -> Limit {
    Limit {
        cost: crate::policy::Cost::Argument(
            crate::policy::ArgumentPath::parse("args.rows").unwrap(),
        ),
        ..limit(counter, 86_400, max, Scope::Grant)
    }
}

fn charge<'p>(limit: &'p Limit, cost: u64, per: Option<&str>) -> Charge<'p> {
    Charge {
        limit,
        cost,
        per: per.map(str::to_string),
    }
}

#[test]
fn costs_take_several_units_and_a_cost_that_does_not_fit_takes_nothing() {
    let store = EnvoySharedData::default();
    let rows = costly("rows", 10_000);
    let now = 1_800_000_000;
    let take = |cost| super::acquire(&store, &[charge(&rows, cost, None)], ALICE, now, SLOTS);
    assert!(granted(&take(6_000)));
    assert!(granted(&take(3_000)));
    assert_eq!(count_of(&store, &rows, ALICE, now), 9_000);
    // 2,000 more would make 11,000: refused, and nothing taken.
    assert_eq!(
        take(2_000),
        Acquire::Exhausted {
            limit: &rows,
            retry_after_seconds: 86_400 - now % 86_400,
            cost: 2_000
        }
    );
    assert_eq!(count_of(&store, &rows, ALICE, now), 9_000);
    // What fits still passes; then the budget is spent exactly.
    assert!(granted(&take(1_000)));
    assert_eq!(count_of(&store, &rows, ALICE, now), 10_000);
    // A cost of 0 is checked, takes nothing and gives nothing back.
    assert_eq!(take(0), Acquire::Granted(vec![]));
    assert!(!granted(&take(1)));
}

#[test]
fn units_taken_for_a_call_that_did_not_happen_come_back_exactly() {
    let store = EnvoySharedData::default();
    let rows = costly("rows", 100);
    let now = 1_800_000_000;
    let Acquire::Granted(first) =
        super::acquire(&store, &[charge(&rows, 30, None)], ALICE, now, SLOTS)
    else {
        panic!("granted")
    };
    assert!(granted(&super::acquire(
        &store,
        &[charge(&rows, 50, None)],
        ALICE,
        now,
        SLOTS
    )));
    assert!(release(&store, &first).is_empty());
    assert_eq!(count_of(&store, &rows, ALICE, now), 50);
}

#[test]
fn a_counter_named_twice_with_costs_takes_the_largest() {
    let store = EnvoySharedData::default();
    let rows = costly("rows", 100);
    let now = 1_800_000_000;
    assert!(granted(&super::acquire(
        &store,
        &[charge(&rows, 30, None), charge(&rows, 70, None)],
        ALICE,
        now,
        SLOTS
    )));
    assert_eq!(count_of(&store, &rows, ALICE, now), 70);
}

/// `scope: global` with `per`: one count per value across all callers, as
/// many values as a table holds (not one slot for the whole counter, which
/// made every value after the first fail the call).
#[test]
fn global_scope_with_per_counts_each_value_across_callers() {
    let store = EnvoySharedData::default();
    let now = 1_800_000_000;
    let window = Limit {
        per: crate::policy::ArgumentPath::parse("args.repo"),
        ..limit("merges", 3_600, 2, Scope::Global)
    };
    let inflight = Limit {
        kind: LimitKind::Concurrent {
            cap: 1,
            lease_seconds: 300,
        },
        ..window.clone()
    };
    for limit in [&window, &inflight] {
        let take = |repo: usize, caller| {
            let value = serde_json::json!(format!("acme/{repo}"));
            super::acquire(
                &store,
                &[Charge {
                    limit,
                    cost: 1,
                    per: Some(per_key("args.repo", Some(&value))),
                }],
                caller,
                now,
                SLOTS,
            )
        };
        let max = limit.max();
        for repo in 0..200 {
            for _ in 0..max {
                let caller = if repo % 2 == 0 { ALICE } else { BOB };
                assert!(granted(&take(repo, caller)), "{:?} repo {repo}", limit.kind);
            }
            // Full for every caller: the value's count is shared.
            assert!(!granted(&take(repo, ALICE)), "{:?} repo {repo}", limit.kind);
            assert!(!granted(&take(repo, BOB)), "{:?} repo {repo}", limit.kind);
        }
    }
}

#[test]
fn per_argument_values_count_apart_within_the_scope() {
    let store = EnvoySharedData::default();
    let merges = Limit {
        per: crate::policy::ArgumentPath::parse("args.repo"),
        ..limit("merges", 3_600, 2, Scope::Grant)
    };
    let now = 1_800_000_000;
    let repo = |value: serde_json::Value| Some(per_key("args.repo", Some(&value)));
    let take = |per: Option<String>, caller| {
        super::acquire(
            &store,
            &[Charge {
                limit: &merges,
                cost: 1,
                per,
            }],
            caller,
            now,
            SLOTS,
        )
    };
    let web = repo(serde_json::json!("acme/web"));
    let api = repo(serde_json::json!("acme/api"));
    assert!(granted(&take(web.clone(), ALICE)));
    assert!(granted(&take(web.clone(), ALICE)));
    assert!(!granted(&take(web.clone(), ALICE)));
    // Another repository, another grant: counts of their own.
    assert!(granted(&take(api.clone(), ALICE)));
    assert!(granted(&take(web.clone(), BOB)));
    // A call without the argument counts under "no value", apart.
    let absent = Some(per_key("args.repo", None));
    assert!(granted(&take(absent.clone(), ALICE)));
    assert!(granted(&take(absent.clone(), ALICE)));
    assert!(!granted(&take(absent, ALICE)));
    // 1 and "1" are one value (stricter, never looser), and so are the
    // spellings of one number, at any depth; null is no value.
    assert_eq!(repo(serde_json::json!(1)), repo(serde_json::json!("1")));
    let number = |text: &str| repo(serde_json::from_str(text).unwrap());
    for (a, b) in [
        ("7", "7.0"),
        ("7", "7e0"),
        ("10", "1e1"),
        ("-0.0", "0"),
        ("0.5", "5e-1"),
        ("[1,{\"a\":2.0}]", "[1.0,{\"a\":2}]"),
        // Past 2^53, spellings a double cannot tell apart.
        ("10000000000000000", "10000000000000001"),
        ("10000000000000000", "1e16"),
        ("-10000000000000001", "-1e16"),
    ] {
        assert_eq!(number(a), number(b), "{a} {b}");
    }
    assert_ne!(number("0.1"), number("0.2"));
    assert_ne!(number("9007199254740991"), number("9007199254740990"));
    assert_eq!(
        per_key("args.repo", Some(&serde_json::Value::Null)),
        per_key("args.repo", None)
    );
    // Separators in values cannot forge another pair.
    assert_ne!(
        per_key("args.repo", Some(&serde_json::json!("a;args.repo=b"))),
        "args.repo=a;args.repo=b"
    );
    assert_eq!(
        per_key("args.repo", Some(&serde_json::json!("50%;x=y"))),
        "args.repo=50%25%3Bx%3Dy"
    );
    // Long values cost what short ones do: the owner is a digest.
    let long = repo(serde_json::json!("r".repeat(50_000)));
    assert!(granted(&take(long, ALICE)));
    assert!(store
        .keys()
        .iter()
        .all(|key| store.get(key).unwrap().unwrap().0.len() <= 16 + OWNER_DIGEST_LEN));
}
