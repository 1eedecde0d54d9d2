//! Approvals in this process (`--memory`): for `make run` and trying the
//! service, not for more than one service process. The same rules as the
//! Redis store (see store/redis.lua), under one lock.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use crate::model::{Answer, Approval, Call, CheckOutcome, HistoryEntry, Status, Verdict};
use crate::store::{DecideError, Limits, StoreError};

#[derive(Default)]
struct State {
    approvals: HashMap<String, Approval>,
    /// digest -> id of the approval checks of that digest see.
    by_digest: HashMap<String, String>,
    /// (created_ms, id) of pending approvals.
    pending: BTreeSet<(u64, String)>,
    /// Newest first.
    history: VecDeque<HistoryEntry>,
}

pub struct MemoryStore {
    limits: Limits,
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new(limits: Limits) -> MemoryStore {
        MemoryStore {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written
        // in a way later calls misread: take the state as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn check(
        &self,
        digest: &str,
        call: &Call,
        new_id: &str,
        now: u64,
    ) -> Result<CheckOutcome, StoreError> {
        let mut state = self.lock();
        state.prune(now, &self.limits);
        let outcome = |approval: &Approval, answer: Answer| CheckOutcome {
            answer,
            id: approval.id.clone(),
            expires_ms: approval.expires_ms,
            approver: approval.approver.clone(),
            decision_reason: approval.decision_reason.clone(),
            decided_ms: approval.decided_ms,
            now_ms: now,
        };
        if let Some(id) = state.by_digest.get(digest).cloned() {
            if let Some(approval) = state.approvals.get_mut(&id) {
                if approval.expires_ms > now {
                    match approval.status {
                        Status::Pending => {
                            return Ok(outcome(approval, Answer::Pending { created: false }))
                        }
                        Status::Denied => return Ok(outcome(approval, Answer::Denied)),
                        Status::Approved => {
                            approval.status = Status::Used;
                            approval.used_ms = Some(now);
                            let answer = outcome(approval, Answer::Approved);
                            let entry = HistoryEntry {
                                id: id.clone(),
                                event: "used".into(),
                                at_ms: now,
                                approver: approval.approver.clone(),
                                reason: None,
                                summary: approval.call.summary(),
                            };
                            state.by_digest.remove(digest);
                            state.push_history(entry, &self.limits);
                            return Ok(answer);
                        }
                        Status::Used | Status::Expired => {}
                    }
                }
            }
            state.by_digest.remove(digest);
        }
        if state.pending.len() >= self.limits.max_pending {
            return Err(StoreError::TooManyPending);
        }
        let of_grant = state
            .pending
            .iter()
            .filter(|(_, id)| {
                state
                    .approvals
                    .get(id)
                    .is_some_and(|a| a.call.grant == call.grant)
            })
            .count();
        if of_grant >= self.limits.max_pending_per_grant {
            return Err(StoreError::TooManyPendingForGrant);
        }
        let approval = Approval {
            id: new_id.to_owned(),
            digest: digest.to_owned(),
            call: call.clone(),
            status: Status::Pending,
            created_ms: now,
            expires_ms: now + call.ttl_seconds * 1000,
            approver: None,
            decision_reason: None,
            decided_ms: None,
            used_ms: None,
        };
        let answer = outcome(&approval, Answer::Pending { created: true });
        state.pending.insert((now, new_id.to_owned()));
        state.by_digest.insert(digest.to_owned(), new_id.to_owned());
        state.approvals.insert(new_id.to_owned(), approval);
        Ok(answer)
    }

    pub fn get(&self, id: &str, now: u64) -> Option<Approval> {
        let mut state = self.lock();
        state.prune(now, &self.limits);
        state.approvals.get(id).cloned()
    }

    pub fn pending(&self, limit: usize, now: u64) -> Vec<Approval> {
        let mut state = self.lock();
        state.prune(now, &self.limits);
        state
            .pending
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(_, id)| state.approvals.get(id).cloned())
            .collect()
    }

    pub fn pending_count(&self, now: u64) -> usize {
        let mut state = self.lock();
        state.prune(now, &self.limits);
        state.pending.len()
    }

    pub fn decide(
        &self,
        id: &str,
        verdict: Verdict,
        approver: &str,
        reason: Option<&str>,
        now: u64,
    ) -> Result<Approval, DecideError> {
        let mut state = self.lock();
        state.prune(now, &self.limits);
        let approval = state.approvals.get_mut(id).ok_or(DecideError::NotFound)?;
        if approval.status != Status::Pending {
            return Err(DecideError::NotPending(approval.status));
        }
        approval.status = verdict.status();
        approval.approver = Some(approver.to_owned());
        approval.decision_reason = reason.map(str::to_owned);
        approval.decided_ms = Some(now);
        approval.expires_ms = now + approval.call.ttl_seconds * 1000;
        let decided = approval.clone();
        state.pending.remove(&(decided.created_ms, id.to_owned()));
        state.push_history(
            HistoryEntry {
                id: id.to_owned(),
                event: verdict.status().as_str().to_owned(),
                at_ms: now,
                approver: Some(approver.to_owned()),
                reason: reason.map(str::to_owned),
                summary: decided.call.summary(),
            },
            &self.limits,
        );
        Ok(decided)
    }

    pub fn history(&self, limit: usize) -> Vec<HistoryEntry> {
        self.lock().history.iter().take(limit).cloned().collect()
    }
}

impl State {
    fn push_history(&mut self, entry: HistoryEntry, limits: &Limits) {
        self.history.push_front(entry);
        self.history.truncate(limits.history);
    }

    /// Pending approvals past their expiry become expired (and leave a
    /// history line); records past expiry plus the grace are dropped.
    fn prune(&mut self, now: u64, limits: &Limits) {
        let expired: Vec<(u64, String)> = self
            .pending
            .iter()
            .filter(|(_, id)| self.approvals.get(id).is_none_or(|a| a.expires_ms <= now))
            .cloned()
            .collect();
        for key in expired {
            self.pending.remove(&key);
            let Some(approval) = self.approvals.get_mut(&key.1) else {
                continue;
            };
            approval.status = Status::Expired;
            let entry = HistoryEntry {
                id: key.1.clone(),
                event: "expired".into(),
                at_ms: approval.expires_ms,
                approver: None,
                reason: None,
                summary: approval.call.summary(),
            };
            if self.by_digest.get(&approval.digest) == Some(&key.1) {
                let digest = approval.digest.clone();
                self.by_digest.remove(&digest);
            }
            self.push_history(entry, limits);
        }
        let grace = limits.grace_ms;
        let gone: Vec<(String, String)> = self
            .approvals
            .values()
            .filter(|a| a.expires_ms.saturating_add(grace) <= now)
            .map(|a| (a.id.clone(), a.digest.clone()))
            .collect();
        for (id, digest) in gone {
            self.approvals.remove(&id);
            if self.by_digest.get(&digest) == Some(&id) {
                self.by_digest.remove(&digest);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::model::Target;

    fn limits() -> Limits {
        Limits {
            max_pending: 3,
            max_pending_per_grant: 2,
            history: 4,
            grace_ms: 1000,
        }
    }

    fn call(grant: &str, code: &str) -> (String, Call) {
        let call = Call {
            grant: grant.into(),
            caller: None,
            target: Target {
                kind: "tool".into(),
                name: "run".into(),
            },
            arguments: format!("{{\"code\":\"{code}\"}}"),
            rule: "/tools/run/approve".into(),
            reason: None,
            ttl_seconds: 10,
            separate_approver: false,
            policy_revision: "r1".into(),
        };
        (call.digest(), call)
    }

    #[test]
    fn pending_is_create_or_get_and_approved_is_used_once() {
        let store = MemoryStore::new(limits());
        let (digest, call) = call("alice", "x");
        let first = store.check(&digest, &call, "id1", 0).unwrap();
        assert_eq!(first.answer, Answer::Pending { created: true });
        assert_eq!(first.expires_ms, 10_000);
        let again = store.check(&digest, &call, "id2", 1).unwrap();
        assert_eq!(again.answer, Answer::Pending { created: false });
        assert_eq!(again.id, "id1");
        assert_eq!(store.pending_count(1), 1);

        let decided = store
            .decide("id1", Verdict::Approve, "bob", None, 2000)
            .unwrap();
        assert_eq!(decided.status, Status::Approved);
        assert_eq!(
            decided.expires_ms, 12_000,
            "approved for ttl from the decision"
        );
        assert_eq!(store.pending_count(2000), 0);
        let used = store.check(&digest, &call, "id3", 3000).unwrap();
        assert_eq!(used.answer, Answer::Approved);
        assert_eq!(
            (used.id.as_str(), used.approver.as_deref()),
            ("id1", Some("bob"))
        );
        let next = store.check(&digest, &call, "id4", 3001).unwrap();
        assert_eq!(next.answer, Answer::Pending { created: true });
        assert_eq!(next.id, "id4");
        assert_eq!(store.get("id1", 3001).unwrap().status, Status::Used);
        assert_eq!(
            store.decide("id1", Verdict::Approve, "bob", None, 3002),
            Err(DecideError::NotPending(Status::Used))
        );
        let events: Vec<String> = store.history(10).into_iter().map(|e| e.event).collect();
        assert_eq!(events, ["used", "approved"]);
    }

    #[test]
    fn denied_is_reported_until_its_expiry_then_a_new_approval() {
        let store = MemoryStore::new(limits());
        let (digest, call) = call("alice", "x");
        store.check(&digest, &call, "id1", 0).unwrap();
        store
            .decide("id1", Verdict::Deny, "bob", Some("no"), 1000)
            .unwrap();
        for now in [1001, 10_999] {
            let denied = store.check(&digest, &call, "idx", now).unwrap();
            assert_eq!(denied.answer, Answer::Denied);
            assert_eq!(denied.decision_reason.as_deref(), Some("no"));
        }
        let fresh = store.check(&digest, &call, "id2", 11_000).unwrap();
        assert_eq!(fresh.answer, Answer::Pending { created: true });
    }

    #[test]
    fn pending_expires_into_the_history_and_is_not_decidable() {
        let store = MemoryStore::new(limits());
        let (digest, call) = call("alice", "x");
        store.check(&digest, &call, "id1", 0).unwrap();
        assert_eq!(store.pending_count(9_999), 1);
        assert_eq!(store.pending_count(10_000), 0);
        assert_eq!(
            store.decide("id1", Verdict::Approve, "bob", None, 10_000),
            Err(DecideError::NotPending(Status::Expired))
        );
        assert_eq!(store.history(10)[0].event, "expired");
        assert_eq!(store.history(10)[0].at_ms, 10_000);
        // Kept for the grace, then gone.
        assert!(store.get("id1", 10_999).is_some());
        assert!(store.get("id1", 11_000).is_none());
        assert_eq!(
            store.decide("id1", Verdict::Approve, "bob", None, 11_000),
            Err(DecideError::NotFound)
        );
        let fresh = store.check(&digest, &call, "id2", 11_000).unwrap();
        assert_eq!(fresh.answer, Answer::Pending { created: true });
    }

    #[test]
    fn an_approval_not_used_in_time_lapses() {
        let store = MemoryStore::new(limits());
        let (digest, call) = call("alice", "x");
        store.check(&digest, &call, "id1", 0).unwrap();
        store
            .decide("id1", Verdict::Approve, "bob", None, 0)
            .unwrap();
        let later = store.check(&digest, &call, "id2", 10_000).unwrap();
        assert_eq!(later.answer, Answer::Pending { created: true });
    }

    #[test]
    fn pending_approvals_are_bounded_in_all_and_per_grant() {
        let store = MemoryStore::new(limits());
        for (index, code) in ["a", "b"].iter().enumerate() {
            let (digest, call) = call("alice", code);
            store
                .check(&digest, &call, &format!("a{index}"), 0)
                .unwrap();
        }
        let (digest, alice3) = call("alice", "c");
        assert_eq!(
            store.check(&digest, &alice3, "a3", 0),
            Err(StoreError::TooManyPendingForGrant)
        );
        let (digest, bob) = call("bob", "a");
        store.check(&digest, &bob, "b0", 0).unwrap();
        let (digest, carol) = call("carol", "a");
        assert_eq!(
            store.check(&digest, &carol, "c0", 0),
            Err(StoreError::TooManyPending)
        );
        // A known digest is still answered when full.
        let (digest, alice_a) = call("alice", "a");
        assert_eq!(
            store.check(&digest, &alice_a, "zz", 0).unwrap().answer,
            Answer::Pending { created: false }
        );
    }

    #[test]
    fn history_is_bounded_and_newest_first() {
        let store = MemoryStore::new(Limits {
            max_pending: 100,
            ..limits()
        });
        for index in 0..6 {
            let (digest, call) = call(&format!("g{index}"), "x");
            store
                .check(&digest, &call, &format!("id{index}"), 0)
                .unwrap();
            store
                .decide(
                    &format!("id{index}"),
                    Verdict::Deny,
                    "bob",
                    Some("no"),
                    index,
                )
                .unwrap();
        }
        let history = store.history(100);
        assert_eq!(history.len(), 4);
        assert_eq!(history[0].id, "id5");
        assert_eq!(history[3].id, "id2");
    }

    #[test]
    fn pending_lists_newest_first() {
        let store = MemoryStore::new(Limits {
            max_pending: 100,
            ..limits()
        });
        for (index, grant) in ["a", "b", "c"].iter().enumerate() {
            let (digest, call) = call(grant, "x");
            store
                .check(&digest, &call, &format!("id{index}"), index as u64)
                .unwrap();
        }
        let ids: Vec<String> = store.pending(2, 5).into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["id2", "id1"]);
    }
}
