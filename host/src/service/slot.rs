//! The versions of one service's component: the active one, an optional canary that takes a
//! share of the requests, and earlier ones kept loaded for instant rollback.
//!
//! Readers take a read lock only to clone an `Arc`, so a switch (one write) never waits for a
//! request to finish and a request never sees half a switch.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::ComponentVersion;
use super::canary::{CanaryPolicy, Evidence, Judgement, Verdict, Window};

/// A version as it was deployed into the slot, with what it has served.
pub struct Deployed {
    pub id: u64,
    pub version: Arc<ComponentVersion>,
    requests: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VersionState {
    Active,
    Canary,
    /// Formerly active, kept loaded: what `rollback` returns to.
    Standby,
    /// Rolled back (by command or by the canary check); listed, never chosen again by rollback.
    RolledBack,
}

/// One line of `skiff versions`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub id: u64,
    pub label: String,
    pub digest: String,
    pub loaded_at: String,
    pub state: VersionState,
    /// Share of requests it gets, for the canary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    /// Requests it served (in this process), and how many of them were its own failures (a
    /// trap, its deadline, a 5xx other than a 503 shedding load with `Retry-After`).
    pub requests: u64,
    pub errors: u64,
}

struct Canary {
    deployed: Arc<Deployed>,
    percent: u8,
    routed: AtomicU64,
    window: Mutex<Window>,
}

struct State {
    active: Arc<Deployed>,
    canary: Option<Arc<Canary>>,
    /// Formerly active versions, the most recently active last.
    standby: Vec<Arc<Deployed>>,
    rolled_back: Vec<Arc<Deployed>>,
}

/// The version a request runs on.
pub struct Picked {
    pub deployed: Arc<Deployed>,
    /// The canary running when the request was routed: its window judges the canary against
    /// the stable version, so both versions' requests go into it.
    canary: Option<Arc<Canary>>,
    on_canary: bool,
}

impl Picked {
    pub fn version(&self) -> &Arc<ComponentVersion> {
        &self.deployed.version
    }
}

/// How a canary ended on its own.
#[derive(Debug, Clone)]
pub enum CanaryEnd {
    RolledBack { label: String, evidence: Evidence, served: u64 },
    Promoted { label: String },
}

/// The last canary the slot rolled back on its own, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRollback {
    pub digest: String,
    pub evidence: Evidence,
}

/// What `rollback` did.
#[derive(Debug, Clone)]
pub struct RolledBack {
    pub from: String,
    pub to: String,
    /// Requests the abandoned version served.
    pub served: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("a canary ({0}) is running: promote it or roll it back first")]
    CanaryRunning(String),
    #[error("no canary is running")]
    NoCanary,
    #[error("no earlier version is loaded to roll back to")]
    NothingToRollBackTo,
}

pub struct Slot {
    state: RwLock<State>,
    next_id: AtomicU64,
    keep: usize,
    policy: CanaryPolicy,
    last_rollback: Mutex<Option<CanaryRollback>>,
}

impl Slot {
    pub fn new(first: ComponentVersion, keep: usize, policy: CanaryPolicy) -> Self {
        let active = Arc::new(Deployed::new(1, Arc::new(first)));
        let state = State { active, canary: None, standby: Vec::new(), rolled_back: Vec::new() };
        Self {
            state: RwLock::new(state),
            next_id: AtomicU64::new(2),
            keep: keep.max(1),
            policy,
            last_rollback: Mutex::new(None),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn active(&self) -> Arc<ComponentVersion> {
        self.read().active.version.clone()
    }

    /// The versions that get requests now: the active one and the canary.
    pub fn serving(&self) -> Vec<Arc<ComponentVersion>> {
        let state = self.read();
        let canary = state.canary.as_ref().map(|canary| canary.deployed.version.clone());
        std::iter::once(state.active.version.clone()).chain(canary).collect()
    }

    pub fn canary_label(&self) -> Option<String> {
        self.read().canary.as_ref().map(|canary| canary.deployed.version.label.clone())
    }

    /// The version for the next request: the canary for its share, spread evenly (request n
    /// goes to the canary when ⌊(n+1)·p/100⌋ > ⌊n·p/100⌋), else the active one.
    pub fn pick(&self) -> Picked {
        let state = self.read();
        if let Some(canary) = &state.canary {
            let n = canary.routed.fetch_add(1, Ordering::Relaxed);
            let percent = u64::from(canary.percent);
            let on_canary = (n + 1) * percent / 100 > n * percent / 100;
            let deployed = if on_canary { &canary.deployed } else { &state.active };
            return Picked { deployed: deployed.clone(), canary: Some(canary.clone()), on_canary };
        }
        Picked { deployed: state.active.clone(), canary: None, on_canary: false }
    }

    /// Counts a served request; while a canary runs, judges it (by its own requests, against
    /// the stable version's) and ends it if its time has come.
    pub fn record(&self, picked: &Picked, judgement: Judgement) -> Option<CanaryEnd> {
        picked.deployed.requests.fetch_add(1, Ordering::Relaxed);
        let failed = match judgement {
            Judgement::NotJudged => return None,
            Judgement::Failed => true,
            Judgement::Succeeded => false,
        };
        if failed {
            picked.deployed.errors.fetch_add(1, Ordering::Relaxed);
        }
        let canary = picked.canary.as_ref()?;
        let verdict =
            canary.window.lock().unwrap_or_else(PoisonError::into_inner).record(picked.on_canary, failed, &self.policy);
        if verdict == Verdict::Continue {
            return None;
        }
        let mut state = self.write();
        // Another request may have ended this canary already.
        if !state.canary.as_ref().is_some_and(|current| Arc::ptr_eq(current, canary)) {
            return None;
        }
        let label = canary.deployed.version.label.clone();
        match verdict {
            Verdict::Continue => None,
            Verdict::RollBack(evidence) => {
                state.canary = None;
                state.rolled_back.push(canary.deployed.clone());
                self.settle(&mut state);
                let digest = canary.deployed.version.digest.clone();
                *self.last_rollback.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(CanaryRollback { digest, evidence });
                Some(CanaryEnd::RolledBack { label, evidence, served: canary.deployed.served() })
            }
            Verdict::Promote => {
                Self::promote_in(&mut state);
                self.settle(&mut state);
                Some(CanaryEnd::Promoted { label })
            }
        }
    }

    /// The last canary this slot rolled back on its own (not by command), and why.
    pub fn last_canary_rollback(&self) -> Option<CanaryRollback> {
        self.last_rollback.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes `version` the active one at once; the previous one goes to standby.
    #[cfg(test)]
    pub fn activate(&self, version: Arc<ComponentVersion>) -> Result<Arc<Deployed>, SlotError> {
        self.activate_replacing(version, false)
    }

    /// [`Slot::activate`]; with `replace_canary`, a running canary is rolled back in the same
    /// write instead of refusing the switch (a release file states the whole desired state).
    pub fn activate_replacing(
        &self,
        version: Arc<ComponentVersion>,
        replace_canary: bool,
    ) -> Result<Arc<Deployed>, SlotError> {
        let deployed = Arc::new(Deployed::new(self.next_id.fetch_add(1, Ordering::Relaxed), version));
        let mut state = self.write();
        Self::replace_canary_in(&mut state, replace_canary)?;
        let previous = std::mem::replace(&mut state.active, deployed.clone());
        state.standby.push(previous);
        self.settle(&mut state);
        Ok(deployed)
    }

    /// Sends `percent` of the requests to `version`, the rest to the active one.
    #[cfg(test)]
    pub fn start_canary(&self, version: Arc<ComponentVersion>, percent: u8) -> Result<Arc<Deployed>, SlotError> {
        self.start_canary_replacing(version, percent, false)
    }

    /// [`Slot::start_canary`], rolling back a running canary first if `replace_canary`.
    pub fn start_canary_replacing(
        &self,
        version: Arc<ComponentVersion>,
        percent: u8,
        replace_canary: bool,
    ) -> Result<Arc<Deployed>, SlotError> {
        let deployed = Arc::new(Deployed::new(self.next_id.fetch_add(1, Ordering::Relaxed), version));
        let mut state = self.write();
        Self::replace_canary_in(&mut state, replace_canary)?;
        state.canary = Some(Arc::new(Canary {
            deployed: deployed.clone(),
            percent,
            routed: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
        }));
        self.settle(&mut state);
        Ok(deployed)
    }

    /// Refuses while a canary runs, or rolls it back if `replace`.
    fn replace_canary_in(state: &mut State, replace: bool) -> Result<(), SlotError> {
        match state.canary.take() {
            None => Ok(()),
            Some(canary) if replace => {
                state.rolled_back.push(canary.deployed.clone());
                Ok(())
            }
            Some(canary) => {
                let label = canary.deployed.version.label.clone();
                state.canary = Some(canary);
                Err(SlotError::CanaryRunning(label))
            }
        }
    }

    pub fn set_canary_percent(&self, percent: u8) -> Result<(), SlotError> {
        let mut state = self.write();
        let Some(canary) = &state.canary else { return Err(SlotError::NoCanary) };
        // A fresh routing counter, same window: the judgement carries over.
        let window = std::mem::take(&mut *canary.window.lock().unwrap_or_else(PoisonError::into_inner));
        state.canary = Some(Arc::new(Canary {
            deployed: canary.deployed.clone(),
            percent,
            routed: AtomicU64::new(0),
            window: Mutex::new(window),
        }));
        Ok(())
    }

    /// The canary takes all the traffic; the previous active version goes to standby.
    pub fn promote(&self) -> Result<String, SlotError> {
        let mut state = self.write();
        let label = Self::promote_in(&mut state).ok_or(SlotError::NoCanary)?;
        self.settle(&mut state);
        Ok(label)
    }

    fn promote_in(state: &mut State) -> Option<String> {
        let canary = state.canary.take()?;
        let previous = std::mem::replace(&mut state.active, canary.deployed.clone());
        state.standby.push(previous);
        Some(canary.deployed.version.label.clone())
    }

    /// Drops the canary if there is one; else returns to the most recently active standby.
    pub fn rollback(&self) -> Result<RolledBack, SlotError> {
        let mut state = self.write();
        if let Some(canary) = state.canary.take() {
            state.rolled_back.push(canary.deployed.clone());
            self.settle(&mut state);
            return Ok(RolledBack {
                from: canary.deployed.version.label.clone(),
                to: state.active.version.label.clone(),
                served: canary.deployed.served(),
            });
        }
        let previous = state.standby.pop().ok_or(SlotError::NothingToRollBackTo)?;
        let abandoned = std::mem::replace(&mut state.active, previous);
        state.rolled_back.push(abandoned.clone());
        self.settle(&mut state);
        Ok(RolledBack {
            from: abandoned.version.label.clone(),
            to: state.active.version.label.clone(),
            served: abandoned.served(),
        })
    }

    /// After a switch: the versions that no longer serve drop their warm instances (a request
    /// still running on one finishes, and its instance is not kept), the serving ones keep
    /// theirs; then at most `keep` versions stay loaded, rolled-back ones going first, then the
    /// oldest standby. In-flight requests hold their own reference, so dropping a version never
    /// cuts them off.
    fn settle(&self, state: &mut State) {
        state.active.version.warm.revive();
        if let Some(canary) = &state.canary {
            canary.deployed.version.warm.revive();
        }
        for resting in state.standby.iter().chain(&state.rolled_back) {
            resting.version.warm.retire();
        }
        self.evict_loaded(state);
    }

    fn evict_loaded(&self, state: &mut State) {
        let loaded =
            |state: &State| 1 + usize::from(state.canary.is_some()) + state.standby.len() + state.rolled_back.len();
        while loaded(state) > self.keep {
            if !state.rolled_back.is_empty() {
                state.rolled_back.remove(0);
            } else if !state.standby.is_empty() {
                state.standby.remove(0);
            } else {
                break;
            }
        }
    }

    /// Every loaded version: active, canary, standby (newest first), rolled back.
    pub fn list(&self) -> Vec<VersionInfo> {
        let state = self.read();
        let mut versions = vec![state.active.info(VersionState::Active, None)];
        if let Some(canary) = &state.canary {
            versions.push(canary.deployed.info(VersionState::Canary, Some(canary.percent)));
        }
        versions.extend(state.standby.iter().rev().map(|d| d.info(VersionState::Standby, None)));
        versions.extend(state.rolled_back.iter().rev().map(|d| d.info(VersionState::RolledBack, None)));
        versions
    }
}

impl Deployed {
    fn new(id: u64, version: Arc<ComponentVersion>) -> Self {
        Self { id, version, requests: AtomicU64::new(0), errors: AtomicU64::new(0) }
    }

    fn served(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn info(&self, state: VersionState, percent: Option<u8>) -> VersionInfo {
        let version = &self.version;
        VersionInfo {
            id: self.id,
            label: version.label.clone(),
            digest: version.digest.clone(),
            loaded_at: chrono::DateTime::<chrono::Utc>::from(version.loaded_at)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            state,
            percent,
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
