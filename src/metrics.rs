//! The metrics the gate exports, named in one place. The plugin defines them
//! once per configuration ([`Catalog::names`], [`Catalog::info_name`]); an
//! exchange asks which counters one decision bumps ([`Catalog::counters`])
//! and hands the indexes to its host as effects.
//!
//! # Names and labels
//!
//! Prometheus sees (Envoy's `/stats/prometheus`):
//!
//! - `mcp_policy_decisions_total{decision, kind, target}`: every decision,
//!   once. `kind` is `tool`, `prompt`, `resource`, `task`, `method` (a method
//!   refused as a whole) or `none` (refused before any target was read:
//!   unreadable, unauthorized); `target` is the name the policy gives it (an
//!   exact name, or the pattern key that decides it), `*` for names the
//!   policy does not name, absent for `none`. Only what the policy names
//!   gets a series of its own, so callers cannot mint series.
//! - `mcp_policy_grant_decisions_total{decision, grant}`: every decision,
//!   once, by the caller's grant: a grant the policy names (`grants`, a
//!   bearer token's label), `anonymous`, or `*`.
//! - `mcp_policy_info{revision}`: 1 while a filter instance of this
//!   revision (see [`policy_revision`]) is loaded in this Envoy, 0 after it
//!   was replaced; `mcp_policy_instances{revision}` counts those instances
//!   (Envoy 1.40 makes one per worker thread and two on its main thread).
//!
//! Envoy stats have no labels of their own: a stat is a name, and the
//! bootstrap's `stats_tags` regexes cut labels out of it. The names written
//! here carry each label as `<label>=.=<value>;.;`, the form Istio's
//! `extraStatTags` (and its `sidecar.istio.io/extraStatTags` annotation)
//! write regexes for, so the same names get their labels from a bootstrap
//! the operator writes ([`stats_tags`]), from Istio, and from Envoy
//! Gateway's bootstrap patch alike:
//!
//! `mcp_policy.decision=.=denied;.;kind=.=tool;.;target=.=fetch;.;decisions_total`
//!
//! With the tags, that is `mcp_policy_decisions_total{decision="denied",kind="tool",target="fetch"}`.

use std::collections::BTreeSet;

use crate::lookup::HashMap;

use crate::audit::AuditRecord;
use crate::decision::Outcome;
use crate::policy::{Identity, Policy, ANONYMOUS_GRANT};
use crate::target::Kind;

/// The labels the names carry, in the order they are written.
pub const LABELS: [&str; 5] = ["decision", "kind", "target", "grant", "revision"];

/// The `target` (and `grant`) of what the policy does not name.
pub const OTHER: &str = "*";

/// `kind` of a decision about a method as a whole.
pub const KIND_METHOD: &str = "method";
/// `kind` of a request refused before a target was read.
pub const KIND_NONE: &str = "none";

/// Metric names, as Prometheus sees them.
pub const DECISIONS: &str = "mcp_policy_decisions_total";
pub const GRANT_DECISIONS: &str = "mcp_policy_grant_decisions_total";
pub const INFO: &str = "mcp_policy_info";
pub const INSTANCES: &str = "mcp_policy_instances";

/// Envoy's `stats_tags` entries that turn the names into labels: one regex
/// per label, as Istio writes them for `extraStatTags`.
pub fn stats_tags() -> Vec<(&'static str, String)> {
    LABELS
        .iter()
        .map(|label| (*label, format!("({label}=\\.=(.*?);\\.;)")))
        .collect()
}

/// One exported series: its Prometheus name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub metric: &'static str,
    pub labels: Vec<(&'static str, String)>,
}

impl Series {
    /// The Envoy stat name that carries it.
    pub fn stat_name(&self) -> String {
        let base = self
            .metric
            .strip_prefix("mcp_policy_")
            .unwrap_or(self.metric);
        let mut name = String::from("mcp_policy.");
        for (label, value) in &self.labels {
            name.push_str(label);
            name.push_str("=.=");
            name.push_str(&label_value(value));
            name.push_str(";.;");
        }
        name.push_str(base);
        name
    }

    /// Whether every `(label, value)` of `selector` is one of this series'.
    pub fn matches(&self, metric: &str, selector: &[(&str, &str)]) -> bool {
        self.metric == metric
            && selector.iter().all(|(label, value)| {
                self.labels
                    .iter()
                    .any(|(have, is)| have == label && is == value)
            })
    }
}

/// A value as it can stand between `=.=` and `;.;`: a `;` is written `%3B`
/// (and a `%` `%25`), so that no value ends its tag early. Tool names
/// cannot hold either; URIs rarely do.
fn label_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([';', '%']) {
        value.replace('%', "%25").replace(';', "%3B").into()
    } else {
        value.into()
    }
}

/// The policy's revision as exported: the first 16 hex digits of
/// [`crate::policy::revision_of`] (the SHA-256 of its canonical JSON without
/// the top-level `$schema`), so that the same policy has the same revision
/// however it is laid out, written by hand or handed over by Istio and
/// Envoy Gateway as a protobuf `Struct`, and whichever schema its copy
/// points to. `mcp-policy check` prints it; the filter exports it in
/// `mcp_policy_info` and in every audit line.
pub fn policy_revision(document: &[u8]) -> String {
    exported_revision(&crate::policy::revision_of(document))
}

/// The exported form of a policy's full revision (`sha256:<hex>`): its
/// first 16 hex digits.
pub fn exported_revision(full: &str) -> String {
    full.get("sha256:".len()..)
        .unwrap_or_default()
        .chars()
        .take(16)
        .collect()
}

/// Every counter of one policy, by index, and the revision gauges.
#[derive(Debug, Default)]
pub struct Catalog {
    series: Vec<Series>,
    revision: String,
    /// Kind → target → index of its first decision counter (looked up by
    /// `&str`, so a decision allocates nothing to find its counters).
    targets: HashMap<&'static str, HashMap<String, usize>>,
    /// Grant label → index of its first decision counter.
    grants: HashMap<String, usize>,
    /// Method names the policy rules on (any grant).
    methods: BTreeSet<String>,
}

impl Catalog {
    /// The counters of `policy` (its revision as it was worked out when
    /// the document was read, not a second time).
    pub fn for_policy(policy: &Policy) -> Catalog {
        let mut catalog = Catalog {
            revision: exported_revision(&policy.revision),
            ..Catalog::default()
        };
        // Inserted one by one: collecting would sort (5 KB more module).
        catalog.methods.extend(policy.named_methods());
        for kind in Kind::ALL {
            // Inserted one by one: collecting would sort (5 KB more module).
            let mut targets = BTreeSet::new();
            targets.extend(policy.named(kind));
            targets.extend(policy.patterns(kind));
            targets.insert(OTHER.to_string());
            for target in targets {
                catalog.add_target(kind.as_str(), Some(target));
            }
        }
        let methods: Vec<String> = catalog.methods.iter().cloned().collect();
        for method in methods.into_iter().chain([OTHER.to_string()]) {
            catalog.add_target(KIND_METHOD, Some(method));
        }
        catalog.add_target(KIND_NONE, None);
        let mut grants = BTreeSet::new();
        grants.extend(policy.grant_names().map(str::to_string));
        if let Identity::BearerTokens(tokens) = &policy.identity {
            grants.extend(tokens.values().cloned());
        }
        grants.insert(ANONYMOUS_GRANT.to_string());
        grants.insert(OTHER.to_string());
        for grant in grants {
            let base = catalog.series.len();
            catalog
                .series
                .extend(Outcome::ALL.iter().map(|outcome| Series {
                    metric: GRANT_DECISIONS,
                    labels: vec![
                        ("decision", outcome.as_str().to_string()),
                        ("grant", grant.clone()),
                    ],
                }));
            catalog.grants.insert(grant, base);
        }
        catalog
    }

    fn add_target(&mut self, kind: &'static str, target: Option<String>) {
        let base = self.series.len();
        self.series.extend(Outcome::ALL.iter().map(|outcome| {
            let mut labels = vec![
                ("decision", outcome.as_str().to_string()),
                ("kind", kind.to_string()),
            ];
            if let Some(target) = &target {
                labels.push(("target", target.clone()));
            }
            Series {
                metric: DECISIONS,
                labels,
            }
        }));
        self.targets
            .entry(kind)
            .or_default()
            .insert(target.unwrap_or_default(), base);
    }

    /// The counters' Envoy stat names, in index order.
    pub fn names(&self) -> Vec<String> {
        self.series.iter().map(Series::stat_name).collect()
    }

    /// How many counters there are.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// What counter `index` is, as Prometheus sees it.
    pub fn series(&self, index: usize) -> Option<&Series> {
        self.series.get(index)
    }

    /// The policy's revision ([`policy_revision`]).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The stat name of the gauge that is 1 while this revision is loaded.
    pub fn info_name(&self) -> String {
        self.revision_series(INFO).stat_name()
    }

    /// The stat name of the gauge that counts this revision's filter instances.
    pub fn instances_name(&self) -> String {
        self.revision_series(INSTANCES).stat_name()
    }

    fn revision_series(&self, metric: &'static str) -> Series {
        Series {
            metric,
            labels: vec![("revision", self.revision.clone())],
        }
    }

    /// The counters one decision bumps: its target's and its grant's.
    ///
    /// The target's label is its exact name when the policy names it, else
    /// the pattern key that decides it for this caller (its grant, and the
    /// role a JWT claimed for it), else [`OTHER`].
    pub fn counters(
        &self,
        policy: &Policy,
        audit: &AuditRecord,
        claimed_role: Option<&str>,
    ) -> impl Iterator<Item = usize> {
        let offset = Outcome::ALL.iter().position(|o| *o == audit.decision);
        let exact = |kind: &'static str, target: &str| {
            self.targets
                .get(kind)
                .and_then(|targets| targets.get(target))
                .copied()
        };
        let slot =
            |kind: &'static str, target: &str| exact(kind, target).or_else(|| exact(kind, OTHER));
        let target = match (audit.kind, audit.target.as_deref(), audit.method.as_deref()) {
            (Some(kind), Some(name), _) => {
                let label = kind.as_str();
                exact(label, name).or_else(|| {
                    let key = match kind {
                        Kind::Task => None,
                        _ => policy
                            .view_as(&audit.grant, claimed_role)
                            .label_key(kind, name),
                    };
                    slot(label, key.unwrap_or(OTHER))
                })
            }
            (None, _, Some(method)) if audit.rule.as_deref().is_some_and(is_methods_pointer) => {
                slot(KIND_METHOD, method)
            }
            _ => slot(KIND_NONE, ""),
        };
        let grant = self
            .grants
            .get(&audit.grant)
            .or_else(|| self.grants.get(OTHER))
            .copied();
        offset.into_iter().flat_map(move |offset| {
            [target, grant]
                .into_iter()
                .flatten()
                .map(move |base| base + offset)
        })
    }
}

/// Whether a rule pointer is an entry of a `methods` map (`/methods/x`,
/// `/grants/g/methods/x`, `/roles/r/methods/x`).
fn is_methods_pointer(pointer: &str) -> bool {
    pointer.starts_with("/methods/")
        || ["/grants/", "/roles/"].iter().any(|part| {
            pointer
                .strip_prefix(part)
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, rest)| rest.starts_with("methods/"))
        })
}

/// What kind of metric Envoy is asked to define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Envoy's metrics as the root context reaches them: defining them, and
/// the revision's gauges.
pub trait Gauges {
    /// Defines a metric; `None` if Envoy refused (the host says why).
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds `delta`; false if Envoy refused.
    fn add(&mut self, id: u32, delta: i64) -> bool;
    /// The gauge's value; `None` if Envoy refused.
    fn get(&mut self, id: u32) -> Option<u64>;
    /// Sets the gauge; false if Envoy refused.
    fn set(&mut self, id: u32, value: u64) -> bool;
}

/// A root context's metrics for the plugin configuration it holds: Envoy's
/// ids of the catalog's counters (by index; `None` where Envoy refused one)
/// and of its revision's gauges.
#[derive(Debug, Default)]
pub struct Registered {
    pub counters: std::rc::Rc<Vec<Option<u32>>>,
    revision: Option<(u32, u32)>,
}

impl Registered {
    /// Defines `catalog`'s counters and its revision's gauges, and counts
    /// this instance in its revision; the configuration the root context
    /// held before, if any, is counted out of its own first.
    pub fn register(&mut self, catalog: &Catalog, gauges: &mut dyn Gauges) {
        let counters = catalog
            .names()
            .iter()
            .map(|name| gauges.define(MetricKind::Counter, name))
            .collect();
        self.counters = std::rc::Rc::new(counters);
        self.unregister(gauges);
        self.revision = gauges
            .define(MetricKind::Gauge, &catalog.instances_name())
            .zip(gauges.define(MetricKind::Gauge, &catalog.info_name()));
        if let Some(revision) = self.revision {
            count_instance(gauges, revision, 1);
        }
    }

    /// Counts this instance out of its revision (the root context is done).
    pub fn unregister(&mut self, gauges: &mut dyn Gauges) {
        if let Some(revision) = self.revision.take() {
            count_instance(gauges, revision, -1);
        }
    }
}

/// Counts one filter instance (a VM's root context) in or out of its
/// revision's `instances` gauge, then settles the `info` gauge to whether
/// any instance of the revision is left. Every worker does this on its own
/// with no lock between them: each sets `info`, reads the count again, and
/// sets `info` again if another worker changed the count in between, so
/// the last writer always wrote what the count says. Gives up after eight
/// rounds (workers starting and stopping in lockstep) or on a refused call.
pub fn count_instance(gauges: &mut dyn Gauges, (instances, info): (u32, u32), delta: i64) {
    if !gauges.add(instances, delta) {
        return;
    }
    let mut written = None;
    for _ in 0..8 {
        let Some(count) = gauges.get(instances) else {
            return;
        };
        let live = u64::from(count > 0);
        if written == Some(live) || !gauges.set(info, live) {
            return;
        }
        written = Some(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const POLICY: &str = r#"{"version":"1","default":"allow",
        "identity":{"header":"x-agent-id"},
        "tools":{"read":{},"fs_*":{"action":"deny"},"a;b":{}},
        "methods":{"sampling/createMessage":"deny"},
        "grants":{"ci":{"tools":{"deploy":{}}}}}"#;

    fn catalog() -> (Policy, Catalog) {
        let policy = Policy::from_json(POLICY.as_bytes()).unwrap();
        let catalog = Catalog::for_policy(&policy);
        (policy, catalog)
    }

    fn record(grant: &str, decision: Outcome) -> AuditRecord {
        AuditRecord::new(Duration::ZERO, grant, None, decision)
    }

    fn bumped(catalog: &Catalog, policy: &Policy, audit: &AuditRecord) -> Vec<Series> {
        catalog
            .counters(policy, audit, None)
            .map(|index| catalog.series(index).unwrap().clone())
            .collect()
    }

    fn labels(series: &Series) -> Vec<String> {
        series
            .labels
            .iter()
            .map(|(label, value)| format!("{label}={value}"))
            .collect()
    }

    #[test]
    fn a_named_tool_counts_under_its_name_and_the_grant() {
        let (policy, catalog) = catalog();
        let mut audit = record("ci", Outcome::Denied);
        audit.set_target(Kind::Tool, "read");
        let series = bumped(&catalog, &policy, &audit);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].metric, DECISIONS);
        assert_eq!(
            labels(&series[0]),
            ["decision=denied", "kind=tool", "target=read"]
        );
        assert_eq!(series[1].metric, GRANT_DECISIONS);
        assert_eq!(labels(&series[1]), ["decision=denied", "grant=ci"]);
    }

    #[test]
    fn unnamed_targets_count_under_their_pattern_or_the_other_bucket() {
        let (policy, catalog) = catalog();
        let mut audit = record("stranger", Outcome::Denied);
        audit.set_target(Kind::Tool, "fs_write");
        let series = bumped(&catalog, &policy, &audit);
        assert_eq!(
            labels(&series[0]),
            ["decision=denied", "kind=tool", "target=fs_*"]
        );
        assert_eq!(labels(&series[1]), ["decision=denied", "grant=*"]);
        let mut audit = record(ANONYMOUS_GRANT, Outcome::Allowed);
        audit.set_target(Kind::Prompt, "summarize");
        let series = bumped(&catalog, &policy, &audit);
        assert_eq!(
            labels(&series[0]),
            ["decision=allowed", "kind=prompt", "target=*"]
        );
        assert_eq!(labels(&series[1]), ["decision=allowed", "grant=anonymous"]);
        // A grant's own tool is named by the policy: its own series.
        let mut audit = record("ci", Outcome::Allowed);
        audit.set_target(Kind::Tool, "deploy");
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            ["decision=allowed", "kind=tool", "target=deploy"]
        );
    }

    /// A name the policy holds counts under it whatever its length, though
    /// the audit line writes a long one as its digest.
    #[test]
    fn a_long_named_target_counts_under_its_name() {
        let long = format!("file:///srv/{}", "d".repeat(300));
        let document =
            format!(r#"{{"version":"1","default":"deny","resources":{{"{long}":{{}}}}}}"#);
        let policy = Policy::from_json(document.as_bytes()).unwrap();
        let catalog = Catalog::for_policy(&policy);
        let mut audit = record("anonymous", Outcome::Allowed);
        audit.set_target(Kind::Resource, &long);
        assert!(audit.to_json().contains("\"target\":\"sha256:"));
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            [
                "decision=allowed".to_string(),
                "kind=resource".to_string(),
                format!("target={long}")
            ]
        );
    }

    #[test]
    fn methods_and_requests_without_a_target() {
        let (policy, catalog) = catalog();
        let mut audit = record("ci", Outcome::Denied);
        audit.method = Some("sampling/createMessage".to_string());
        audit.rule = Some("/methods/sampling~1createMessage".to_string());
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            [
                "decision=denied",
                "kind=method",
                "target=sampling/createMessage"
            ]
        );
        let audit = record("ci", Outcome::Unauthorized);
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            ["decision=unauthorized", "kind=none"]
        );
        let mut audit = record("ci", Outcome::Invalid);
        audit.method = Some("tools/call".to_string());
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            ["decision=invalid", "kind=none"]
        );
    }

    /// Rules written in a role count as the same rules at the top level
    /// would: its methods under their names, its patterns under their keys,
    /// for a role from `grant_roles` and one a JWT claims.
    #[test]
    fn a_roles_methods_and_patterns_have_their_own_series() {
        let policy = Policy::from_json(
            br#"{"version":"1","default":"deny","identity":{"header":"x-agent-id"},
                "roles":{"eng":{"methods":{"ping":"deny"},"tools":{"deploy_*":{"action":"deny"},"exact_tool":{}}}},
                "grant_roles":{"alice":"eng"}}"#,
        )
        .unwrap();
        let catalog = Catalog::for_policy(&policy);
        let mut audit = record("alice", Outcome::Denied);
        audit.method = Some("ping".to_string());
        audit.rule = Some("/roles/eng/methods/ping".to_string());
        assert_eq!(
            labels(&bumped(&catalog, &policy, &audit)[0]),
            ["decision=denied", "kind=method", "target=ping"]
        );
        for (grant, claimed) in [("alice", None), ("carol", Some("eng"))] {
            let mut audit = record(grant, Outcome::Denied);
            audit.set_target(Kind::Tool, "deploy_web");
            let series: Vec<Series> = catalog
                .counters(&policy, &audit, claimed)
                .map(|index| catalog.series(index).unwrap().clone())
                .collect();
            assert_eq!(
                labels(&series[0]),
                ["decision=denied", "kind=tool", "target=deploy_*"],
                "{grant}"
            );
        }
    }

    #[test]
    fn every_decision_has_a_counter_defined_up_front() {
        let (_, catalog) = catalog();
        for outcome in Outcome::ALL {
            for kind in Kind::ALL {
                assert!(
                    (0..catalog.len()).any(|index| catalog.series(index).unwrap().matches(
                        DECISIONS,
                        &[
                            ("decision", outcome.as_str()),
                            ("kind", kind.as_str()),
                            ("target", OTHER)
                        ]
                    )),
                    "{outcome:?} {kind:?}"
                );
            }
        }
        // Stat names are unique.
        let names: BTreeSet<String> = catalog.names().into_iter().collect();
        assert_eq!(names.len(), catalog.len());
    }

    #[test]
    fn stat_names_carry_labels_in_istio_s_tag_form() {
        let (_, catalog) = catalog();
        let names = catalog.names();
        assert!(names.contains(
            &"mcp_policy.decision=.=hidden;.;kind=.=tool;.;target=.=read;.;decisions_total"
                .to_string()
        ));
        assert!(names.contains(
            &"mcp_policy.decision=.=allowed;.;kind=.=tool;.;target=.=a%3Bb;.;decisions_total"
                .to_string()
        ));
        assert!(names.contains(
            &"mcp_policy.decision=.=failed;.;grant=.=ci;.;grant_decisions_total".to_string()
        ));
        assert!(names.contains(
            &"mcp_policy.decision=.=invalid;.;kind=.=none;.;decisions_total".to_string()
        ));
        assert_eq!(
            catalog.info_name(),
            format!("mcp_policy.revision=.={};.;info", catalog.revision())
        );
        assert_eq!(
            stats_tags()[0],
            ("decision", r"(decision=\.=(.*?);\.;)".to_string())
        );
    }

    #[test]
    fn the_revision_ignores_layout_and_key_order() {
        let a = policy_revision(
            br#"{"version":"1","default":"deny","tools":{"a":{},"b":{"action":"deny"}}}"#,
        );
        let b = policy_revision(
            b"{\n  \"tools\": {\"b\": {\"action\": \"deny\"}, \"a\": {}},\n  \"default\": \"deny\",\n  \"version\": \"1\"\n}\n",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 16);
        let c = policy_revision(
            br#"{"version":"1","default":"allow","tools":{"a":{},"b":{"action":"deny"}}}"#,
        );
        assert_ne!(a, c);
        // The editor's schema reference is not part of the policy; the
        // exported revision is the first digits of the approvals' one.
        let d = policy_revision(
            br#"{"$schema":"./policy.schema.json","version":"1","default":"deny","tools":{"a":{},"b":{"action":"deny"}}}"#,
        );
        assert_eq!(a, d);
        let full = crate::policy::revision_of(
            br#"{"$schema":"x","version":"1","default":"deny","tools":{"a":{},"b":{"action":"deny"}}}"#,
        );
        assert_eq!(full, format!("sha256:{}", &full[7..]));
        assert!(full[7..].starts_with(&a), "{full} {a}");
    }

    /// Gauges whose instance count another worker changes once, right
    /// after this one set `info` for the first time.
    struct Racing {
        values: [u64; 2],
        sets: usize,
        other_worker: i64,
    }

    impl Gauges for Racing {
        fn define(&mut self, _: MetricKind, _: &str) -> Option<u32> {
            None
        }
        fn add(&mut self, id: u32, delta: i64) -> bool {
            self.values[id as usize] = self.values[id as usize].saturating_add_signed(delta);
            true
        }
        fn get(&mut self, id: u32) -> Option<u64> {
            Some(self.values[id as usize])
        }
        fn set(&mut self, id: u32, value: u64) -> bool {
            self.values[id as usize] = value;
            self.sets += 1;
            if self.sets == 1 {
                let other = self.other_worker;
                self.add(0, other);
            }
            true
        }
    }

    #[test]
    fn info_ends_as_the_instance_count_says_though_another_worker_races() {
        // The last instance leaves while another starts: info must stay 1.
        let mut gauges = Racing {
            values: [1, 1],
            sets: 0,
            other_worker: 1,
        };
        count_instance(&mut gauges, (0, 1), -1);
        assert_eq!(gauges.values, [1, 1]);
        assert_eq!(gauges.sets, 2);
        // An instance starts while the only other one leaves: info stays 1.
        let mut gauges = Racing {
            values: [1, 1],
            sets: 0,
            other_worker: -1,
        };
        count_instance(&mut gauges, (0, 1), 1);
        assert_eq!((gauges.values, gauges.sets), ([1, 1], 1));
        // The last one leaves, nobody races: info drops to 0, one write.
        let mut gauges = Racing {
            values: [1, 1],
            sets: 0,
            other_worker: 0,
        };
        count_instance(&mut gauges, (0, 1), -1);
        assert_eq!((gauges.values, gauges.sets), ([0, 0], 1));
        // The first one starts: info 1.
        let mut gauges = Racing {
            values: [0, 0],
            sets: 0,
            other_worker: 0,
        };
        count_instance(&mut gauges, (0, 1), 1);
        assert_eq!(gauges.values, [1, 1]);
    }

    /// Gauges that refuse one kind of call, or whose count another worker
    /// flips after every write.
    struct Refusing {
        values: [u64; 2],
        refuse: &'static str,
        sets: usize,
        flip: bool,
    }

    impl Gauges for Refusing {
        fn define(&mut self, _: MetricKind, _: &str) -> Option<u32> {
            None
        }
        fn add(&mut self, id: u32, delta: i64) -> bool {
            if self.refuse == "add" {
                return false;
            }
            self.values[id as usize] = self.values[id as usize].saturating_add_signed(delta);
            true
        }
        fn get(&mut self, id: u32) -> Option<u64> {
            (self.refuse != "get").then(|| self.values[id as usize])
        }
        fn set(&mut self, id: u32, value: u64) -> bool {
            if self.refuse == "set" {
                return false;
            }
            self.values[id as usize] = value;
            self.sets += 1;
            if self.flip {
                self.values[0] = u64::from(self.values[0] == 0);
            }
            true
        }
    }

    #[test]
    fn a_refused_gauge_call_or_endless_races_stop_the_settling() {
        for refuse in ["add", "get", "set"] {
            let mut gauges = Refusing {
                values: [0, 0],
                refuse,
                sets: 0,
                flip: false,
            };
            count_instance(&mut gauges, (0, 1), 1);
            assert_eq!(gauges.sets, 0, "{refuse}");
            assert_eq!(gauges.values[1], 0, "{refuse}");
        }
        // The count flips after every write: eight writes, then it gives up.
        let mut gauges = Refusing {
            values: [0, 0],
            refuse: "",
            sets: 0,
            flip: true,
        };
        count_instance(&mut gauges, (0, 1), 1);
        assert_eq!(gauges.sets, 8);
    }

    /// Envoy's metrics in memory: ids by name, values by id; `refuse`
    /// names a metric Envoy will not define.
    #[derive(Default)]
    struct Defined {
        ids: Vec<(MetricKind, String)>,
        values: Vec<u64>,
        refuse: Option<String>,
    }

    impl Defined {
        fn id_of(&self, kind: MetricKind, name: &str) -> Option<usize> {
            self.ids.iter().position(|(k, n)| *k == kind && n == name)
        }

        fn value(&self, kind: MetricKind, name: &str) -> Option<u64> {
            Some(self.values[self.id_of(kind, name)?])
        }
    }

    impl Gauges for Defined {
        fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
            if self.refuse.as_deref() == Some(name) {
                return None;
            }
            // Envoy hands back the same id for a name defined again.
            let id = match self.id_of(kind, name) {
                Some(id) => id,
                None => {
                    self.ids.push((kind, name.to_string()));
                    self.values.push(0);
                    self.ids.len() - 1
                }
            };
            u32::try_from(id).ok()
        }
        fn add(&mut self, id: u32, delta: i64) -> bool {
            let value = &mut self.values[id as usize];
            *value = value.saturating_add_signed(delta);
            true
        }
        fn get(&mut self, id: u32) -> Option<u64> {
            Some(self.values[id as usize])
        }
        fn set(&mut self, id: u32, value: u64) -> bool {
            self.values[id as usize] = value;
            true
        }
    }

    fn catalog_of(document: &str) -> Catalog {
        let policy = Policy::from_json(document.as_bytes()).unwrap();
        Catalog::for_policy(&policy)
    }

    #[test]
    fn a_root_context_counts_itself_in_its_revision_and_out_on_a_new_one() {
        let first = catalog_of(POLICY);
        let second = catalog_of(r#"{"version":"1","default":"deny","tools":{"other":{}}}"#);
        assert_ne!(first.revision(), second.revision());
        let mut envoy = Defined::default();
        let mut root = Registered::default();
        root.register(&first, &mut envoy);
        // Every counter of the catalog, in its order, then the two gauges.
        let names: Vec<String> = envoy.ids.iter().map(|(_, name)| name.clone()).collect();
        assert_eq!(names[..first.len()], first.names()[..]);
        assert_eq!(root.counters.len(), first.len());
        assert!(root.counters.iter().all(Option::is_some));
        assert_eq!(
            envoy.value(MetricKind::Gauge, &first.instances_name()),
            Some(1)
        );
        assert_eq!(envoy.value(MetricKind::Gauge, &first.info_name()), Some(1));
        // A second root context of the same revision (another worker).
        let mut worker = Registered::default();
        worker.register(&first, &mut envoy);
        assert_eq!(
            envoy.value(MetricKind::Gauge, &first.instances_name()),
            Some(2)
        );
        // The first context configured again with a new policy: out of the
        // old revision (still loaded on the worker), into the new one.
        root.register(&second, &mut envoy);
        assert_eq!(
            envoy.value(MetricKind::Gauge, &first.instances_name()),
            Some(1)
        );
        assert_eq!(envoy.value(MetricKind::Gauge, &first.info_name()), Some(1));
        assert_eq!(
            envoy.value(MetricKind::Gauge, &second.instances_name()),
            Some(1)
        );
        assert_eq!(envoy.value(MetricKind::Gauge, &second.info_name()), Some(1));
        assert_eq!(root.counters.len(), second.len());
        // The worker is done: the old revision is gone; done twice changes nothing.
        worker.unregister(&mut envoy);
        worker.unregister(&mut envoy);
        assert_eq!(
            envoy.value(MetricKind::Gauge, &first.instances_name()),
            Some(0)
        );
        assert_eq!(envoy.value(MetricKind::Gauge, &first.info_name()), Some(0));
        assert_eq!(envoy.value(MetricKind::Gauge, &second.info_name()), Some(1));
    }

    #[test]
    fn metrics_envoy_refuses_are_left_out() {
        let catalog = catalog_of(POLICY);
        // A counter refused: no id at its index, the others defined.
        let refused = catalog.names()[1].clone();
        let mut envoy = Defined {
            refuse: Some(refused),
            ..Defined::default()
        };
        let mut root = Registered::default();
        root.register(&catalog, &mut envoy);
        assert_eq!(root.counters[1], None);
        assert!(root.counters[0].is_some());
        assert_eq!(
            envoy.value(MetricKind::Gauge, &catalog.info_name()),
            Some(1)
        );
        // A revision gauge refused: nothing counted, and nothing to count out.
        let mut envoy = Defined {
            refuse: Some(catalog.info_name()),
            ..Defined::default()
        };
        let mut root = Registered::default();
        root.register(&catalog, &mut envoy);
        assert_eq!(
            envoy.value(MetricKind::Gauge, &catalog.instances_name()),
            Some(0)
        );
        root.unregister(&mut envoy);
        assert_eq!(
            envoy.value(MetricKind::Gauge, &catalog.instances_name()),
            Some(0)
        );
    }
}
