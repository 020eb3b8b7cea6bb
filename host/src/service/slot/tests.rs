//! The slot's transitions on real (if tiny) component versions: switch, canary, promote,
//! rollback, the canary's own verdicts, and how many versions stay loaded.

use std::sync::Arc;

use super::{CanaryEnd, Slot, SlotError, VersionState};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::service::canary::{CanaryPolicy, Judgement};
use crate::service::{ComponentVersion, Origin};

/// The least that compiles as a `wasi:http` component: the handler's export, named. Nothing
/// here is ever called, so the function's type does not have to be the real one.
const HANDLER: &str = r#"
(component
  (core module $m (func (export "handle")))
  (core instance $i (instantiate $m))
  (func $handle (canon lift (core func $i "handle")))
  (instance $handler (export "handle" (func $handle)))
  (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))
"#;

/// Builds versions labelled as asked, on one runtime without capabilities.
struct Versions {
    runtime: Runtime,
    bytes: Vec<u8>,
}

impl Versions {
    fn new() -> Self {
        let options = RuntimeOptions { max_instances: 1, ..RuntimeOptions::default() };
        let runtime = Runtime::compile_only(options).expect("a runtime");
        Self { runtime, bytes: wat::parse_str(HANDLER).expect("the handler parses") }
    }

    fn version(&self, label: &str) -> ComponentVersion {
        ComponentVersion::compile(&self.runtime, &self.bytes, Some(label.to_owned()), None, Origin::Upload)
            .expect("the handler compiles")
    }

    fn shared(&self, label: &str) -> Arc<ComponentVersion> {
        Arc::new(self.version(label))
    }

    fn slot(&self, first: &str, keep: usize, policy: CanaryPolicy) -> Slot {
        Slot::new(self.version(first), keep, policy)
    }
}

/// `(label, state)` of every loaded version, in `list` order.
fn states(slot: &Slot) -> Vec<(String, VersionState)> {
    slot.list().into_iter().map(|info| (info.label, info.state)).collect()
}

fn expected(states: &[(&str, VersionState)]) -> Vec<(String, VersionState)> {
    states.iter().map(|(label, state)| ((*label).to_owned(), *state)).collect()
}

/// Labels of the versions the next `n` requests run on.
fn picks(slot: &Slot, n: usize) -> Vec<String> {
    (0..n).map(|_| slot.pick().version().label.clone()).collect()
}

use VersionState::{Active, Canary, RolledBack, Standby};

#[test]
fn a_new_slot_serves_its_first_version_alone() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    assert_eq!(slot.active().label, "v1");
    assert_eq!(slot.canary_label(), None);
    assert_eq!(picks(&slot, 5), ["v1"; 5]);
    assert_eq!(states(&slot), expected(&[("v1", Active)]));
    assert_eq!(slot.list()[0].id, 1);
}

#[test]
fn activate_switches_at_once_and_keeps_the_previous_on_standby() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    let deployed = slot.activate(versions.shared("v2")).unwrap();
    assert_eq!(deployed.id, 2);
    assert_eq!(slot.active().label, "v2");
    assert_eq!(picks(&slot, 5), ["v2"; 5]);
    slot.activate(versions.shared("v3")).unwrap();
    // Standby versions are listed newest first.
    assert_eq!(states(&slot), expected(&[("v3", Active), ("v2", Standby), ("v1", Standby)]));
}

#[test]
fn rollback_returns_to_the_most_recent_standby_and_never_to_a_rolled_back_one() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 5, CanaryPolicy::default());
    slot.activate(versions.shared("v2")).unwrap();
    slot.activate(versions.shared("v3")).unwrap();
    let picked = slot.pick();
    slot.record(&picked, Judgement::Succeeded);

    let rolled = slot.rollback().unwrap();
    assert_eq!((rolled.from.as_str(), rolled.to.as_str(), rolled.served), ("v3", "v2", 1));
    assert_eq!(picks(&slot, 3), ["v2"; 3]);
    assert_eq!(states(&slot), expected(&[("v2", Active), ("v1", Standby), ("v3", RolledBack)]));

    let rolled = slot.rollback().unwrap();
    assert_eq!((rolled.from.as_str(), rolled.to.as_str()), ("v2", "v1"));
    assert_eq!(states(&slot), expected(&[("v1", Active), ("v2", RolledBack), ("v3", RolledBack)]));
    assert!(matches!(slot.rollback(), Err(SlotError::NothingToRollBackTo)));
    assert_eq!(slot.active().label, "v1");
}

#[test]
fn a_canary_gets_its_share_spread_evenly() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.start_canary(versions.shared("v2"), 25).unwrap();
    assert_eq!(slot.canary_label().as_deref(), Some("v2"));
    assert_eq!(slot.active().label, "v1", "the canary is not the active version");
    let served = picks(&slot, 100);
    let to_canary: Vec<usize> = served.iter().enumerate().filter(|(_, label)| *label == "v2").map(|(n, _)| n).collect();
    // Exactly its share, every fourth request, never two in a row.
    assert_eq!(to_canary, (0..25).map(|k| 4 * k + 3).collect::<Vec<_>>());
    assert_eq!(states(&slot), expected(&[("v1", Active), ("v2", Canary)]));
    assert_eq!(slot.list()[1].percent, Some(25));
}

#[test]
fn one_canary_at_a_time_and_no_switch_while_it_runs() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.start_canary(versions.shared("v2"), 10).unwrap();
    let again = slot.start_canary(versions.shared("v3"), 10);
    assert!(matches!(again, Err(SlotError::CanaryRunning(label)) if label == "v2"));
    let switch = slot.activate(versions.shared("v4"));
    assert!(matches!(switch, Err(SlotError::CanaryRunning(label)) if label == "v2"));
    assert_eq!(states(&slot), expected(&[("v1", Active), ("v2", Canary)]));
}

#[test]
fn promote_makes_the_canary_active_and_the_old_active_standby() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    assert!(matches!(slot.promote(), Err(SlotError::NoCanary)));
    slot.start_canary(versions.shared("v2"), 50).unwrap();
    assert_eq!(slot.promote().unwrap(), "v2");
    assert_eq!(slot.canary_label(), None);
    assert_eq!(picks(&slot, 10), ["v2"; 10]);
    assert_eq!(states(&slot), expected(&[("v2", Active), ("v1", Standby)]));
    assert!(matches!(slot.promote(), Err(SlotError::NoCanary)));
    // What was active before the canary is what rollback returns to.
    assert_eq!(slot.rollback().unwrap().to, "v1");
}

#[test]
fn rollback_during_a_canary_drops_the_canary_and_keeps_the_active() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.start_canary(versions.shared("v2"), 100).unwrap();
    let picked = slot.pick();
    assert_eq!(picked.version().label, "v2");
    slot.record(&picked, Judgement::Succeeded);
    let rolled = slot.rollback().unwrap();
    assert_eq!((rolled.from.as_str(), rolled.to.as_str(), rolled.served), ("v2", "v1", 1));
    assert_eq!(picks(&slot, 5), ["v1"; 5]);
    assert_eq!(states(&slot), expected(&[("v1", Active), ("v2", RolledBack)]));
    // The rolled-back canary is no standby: there is nothing earlier than v1.
    assert!(matches!(slot.rollback(), Err(SlotError::NothingToRollBackTo)));
}

#[test]
fn a_failing_canary_is_rolled_back_by_its_own_requests_once_it_has_a_sample() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.start_canary(versions.shared("bad"), 100).unwrap();
    let sample = CanaryPolicy::DEFAULT_MIN_REQUESTS;
    let picked: Vec<_> = (0..=sample).map(|_| slot.pick()).collect();
    for early in &picked[..sample - 1] {
        assert!(slot.record(early, Judgement::Failed).is_none(), "no verdict before a sample");
    }
    match slot.record(&picked[sample - 1], Judgement::Failed) {
        Some(CanaryEnd::RolledBack { label, evidence, served }) => {
            assert_eq!((label.as_str(), evidence.canary_errors, evidence.canary_requests), ("bad", sample, sample));
            assert_eq!(served, sample as u64);
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    let rollback = slot.last_canary_rollback().unwrap();
    assert_eq!((rollback.digest, rollback.evidence.canary_errors), (versions.shared("bad").digest.clone(), sample));
    // A request routed to it before the rollback finishes there, and ends nothing twice.
    assert!(slot.record(&picked[sample], Judgement::Failed).is_none());
    assert_eq!(slot.canary_label(), None);
    assert_eq!(picks(&slot, 10), ["v1"; 10]);
    let listed = slot.list();
    assert_eq!((listed[1].label.as_str(), listed[1].state), ("bad", RolledBack));
    assert_eq!((listed[1].requests, listed[1].errors), (sample as u64 + 1, sample as u64 + 1));
}

#[test]
fn shedding_and_failures_the_stable_version_shares_do_not_roll_a_canary_back() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.start_canary(versions.shared("v2"), 50).unwrap();
    // Load shed and client errors: never judged, whatever their number.
    for _ in 0..200 {
        let picked = slot.pick();
        assert!(slot.record(&picked, Judgement::NotJudged).is_none());
    }
    // An overload that fails half of both versions' requests (deadlines, say).
    for n in 0..400 {
        let picked = slot.pick();
        let judgement = if n % 4 < 2 { Judgement::Failed } else { Judgement::Succeeded };
        assert!(slot.record(&picked, judgement).is_none(), "rolled back at request {n}");
    }
    assert_eq!(slot.canary_label().as_deref(), Some("v2"));
    // Once the stable version recovers and the canary does not, it is the canary's fault.
    let ended = (0..400).find_map(|_| {
        let picked = slot.pick();
        let own = picked.version().label == "v2";
        slot.record(&picked, if own { Judgement::Failed } else { Judgement::Succeeded })
    });
    let Some(CanaryEnd::RolledBack { evidence, .. }) = ended else { panic!("not rolled back: {ended:?}") };
    assert!(evidence.canary_errors * evidence.stable_requests > evidence.stable_errors * evidence.canary_requests);
}

#[test]
fn a_clean_canary_is_promoted_after_enough_requests() {
    let versions = Versions::new();
    let policy = CanaryPolicy { promote_after: 3, ..CanaryPolicy::default() };
    let slot = versions.slot("v1", 3, policy);
    slot.start_canary(versions.shared("v2"), 100).unwrap();
    for _ in 0..2 {
        let picked = slot.pick();
        assert!(slot.record(&picked, Judgement::Succeeded).is_none());
    }
    let picked = slot.pick();
    assert!(matches!(slot.record(&picked, Judgement::Succeeded), Some(CanaryEnd::Promoted { label }) if label == "v2"));
    assert_eq!(states(&slot), expected(&[("v2", Active), ("v1", Standby)]));
    // Requests on the active version are never judged.
    let picked = slot.pick();
    assert!(slot.record(&picked, Judgement::Failed).is_none());
    assert!(slot.record(&picked, Judgement::Failed).is_none());
    assert_eq!(slot.active().label, "v2");
}

#[test]
fn a_new_canary_share_keeps_the_judgement_so_far() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    assert!(matches!(slot.set_canary_percent(10), Err(SlotError::NoCanary)));
    slot.start_canary(versions.shared("v2"), 50).unwrap();
    let to_canary = (0..4).map(|_| slot.pick()).find(|picked| picked.version().label == "v2").unwrap();
    assert!(slot.record(&to_canary, Judgement::Failed).is_none());

    slot.set_canary_percent(100).unwrap();
    assert_eq!(picks(&slot, 10), ["v2"; 10]);
    assert_eq!(slot.list()[1].percent, Some(100));
    // The failure before the change still counts: the sample is complete one request sooner.
    for _ in 0..CanaryPolicy::DEFAULT_MIN_REQUESTS - 2 {
        let picked = slot.pick();
        assert!(slot.record(&picked, Judgement::Failed).is_none());
    }
    let picked = slot.pick();
    let ended = slot.record(&picked, Judgement::Failed);
    let sample = CanaryPolicy::DEFAULT_MIN_REQUESTS;
    assert!(
        matches!(ended, Some(CanaryEnd::RolledBack { evidence, .. }) if evidence.canary_requests == sample),
        "{ended:?}"
    );
}

#[test]
fn only_keep_versions_stay_loaded_rolled_back_ones_leaving_first() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    slot.activate(versions.shared("v2")).unwrap();
    slot.start_canary(versions.shared("v3"), 10).unwrap();
    slot.rollback().unwrap();
    assert_eq!(states(&slot), expected(&[("v2", Active), ("v1", Standby), ("v3", RolledBack)]));
    // A fourth version: the rolled-back one is unloaded before any standby.
    slot.activate(versions.shared("v4")).unwrap();
    assert_eq!(states(&slot), expected(&[("v4", Active), ("v2", Standby), ("v1", Standby)]));
    // Then the oldest standby.
    slot.activate(versions.shared("v5")).unwrap();
    assert_eq!(states(&slot), expected(&[("v5", Active), ("v4", Standby), ("v2", Standby)]));
    // The version a request already holds stays usable after it is unloaded.
    let held = slot.pick();
    slot.activate(versions.shared("v6")).unwrap();
    slot.activate(versions.shared("v7")).unwrap();
    slot.activate(versions.shared("v8")).unwrap();
    assert!(!slot.list().iter().any(|info| info.label == "v5"));
    assert_eq!(held.version().label, "v5");
}

#[test]
fn every_version_counts_its_own_requests_and_errors() {
    let versions = Versions::new();
    let slot = versions.slot("v1", 3, CanaryPolicy::default());
    for failed in [false, true, false] {
        let picked = slot.pick();
        slot.record(&picked, if failed { Judgement::Failed } else { Judgement::Succeeded });
    }
    slot.activate(versions.shared("v2")).unwrap();
    let picked = slot.pick();
    slot.record(&picked, Judgement::Succeeded);
    let counts: Vec<_> = slot.list().into_iter().map(|info| (info.label, info.requests, info.errors)).collect();
    assert_eq!(counts, [("v2".to_owned(), 1, 0), ("v1".to_owned(), 3, 1)]);
}
