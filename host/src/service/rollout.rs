//! Versions and their rollout: the gate every candidate passes (compile, the capabilities'
//! check against the running version, their preparation of it such as its migrations, a smoke
//! test) before an atomic switch or a canary; then rollback and promotion.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use super::ComponentVersion;
use super::canary::CanaryPolicy;
use super::invoke::RequestPath;
use super::service_core::ServiceCore;
use super::slot::{CanaryRollback, RolledBack, Slot, SlotError, VersionInfo, VersionState};
use super::version::{CompileError, Origin};
use crate::capability::VersionRefused;
use crate::metrics::SwapLabels;

/// How a service's versions are rolled out.
#[derive(Debug, Clone)]
pub struct SwapOptions {
    /// Versions kept loaded (the active one included) for instant rollback.
    pub keep_versions: usize,
    pub canary: CanaryPolicy,
    /// How long a candidate's health route may take in the smoke test.
    pub smoke_timeout: Duration,
}

impl SwapOptions {
    pub const DEFAULT_KEEP_VERSIONS: usize = 3;
    pub const DEFAULT_SMOKE_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for SwapOptions {
    fn default() -> Self {
        Self {
            keep_versions: Self::DEFAULT_KEEP_VERSIONS,
            canary: CanaryPolicy::default(),
            smoke_timeout: Self::DEFAULT_SMOKE_TIMEOUT,
        }
    }
}

/// A version offered for rollout.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub bytes: Vec<u8>,
    /// Defaults to the short digest.
    pub label: Option<String>,
    /// Route this share of requests to it (1–99) instead of switching everything at once.
    pub canary_percent: Option<u8>,
    /// The component's own digest when `bytes` are machine code compiled from it.
    pub digest: Option<String>,
    /// Uploads and pulls are WebAssembly only; the image's own files may be machine code.
    pub origin: Origin,
    /// Roll back a running canary in the switch instead of refusing (release files).
    pub replace_canary: bool,
}

impl Candidate {
    /// WebAssembly bytes from the admin API, a watched path or a registry.
    pub fn upload(bytes: Vec<u8>) -> Self {
        Self { bytes, label: None, canary_percent: None, digest: None, origin: Origin::Upload, replace_canary: false }
    }
}

/// A rollout that passed the gate.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// `switched` or `canary`.
    pub result: &'static str,
    pub deployed: VersionInfo,
    /// The label of the version that was active before.
    pub previous: String,
    /// The atomic switch itself: how long the slot's write lock was held.
    pub switch_micros: u64,
    /// The whole gate: compile, checks, migrations, smoke test and switch.
    pub rollout_millis: u64,
}

/// Why a candidate was refused; the running version stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("this component is already the active version ({0})")]
    Unchanged(String),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("the candidate does not fit this service: {0}")]
    WrongWorld(String),
    /// A capability could not prepare it (its migrations failed).
    #[error(transparent)]
    NotPrepared(#[from] VersionRefused),
    #[error("the smoke test failed: {0}")]
    SmokeTest(String),
    #[error(transparent)]
    Slot(#[from] SlotError),
}

impl DeployError {
    /// A short name for metrics and problem types.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unchanged(_) => "unchanged",
            Self::Compile(CompileError::Invalid(_) | CompileError::PrecompiledNotTrusted) => "invalid",
            Self::Compile(_) | Self::WrongWorld(_) => "wrong-world",
            Self::NotPrepared(refused) => refused.kind,
            Self::SmokeTest(_) => "smoke-test-failed",
            Self::Slot(_) => "conflict",
        }
    }
}

/// The loaded versions of a service and their rollout, one at a time.
pub struct Versions {
    pub(super) core: Arc<ServiceCore>,
    pub(super) slot: Arc<Slot>,
    /// One rollout at a time per service.
    deploying: Mutex<()>,
}

impl Versions {
    pub(super) fn new(core: Arc<ServiceCore>, slot: Arc<Slot>) -> Self {
        Self { core, slot, deploying: Mutex::new(()) }
    }

    /// The active version (the one messages and non-canary requests run on).
    pub fn current(&self) -> Arc<ComponentVersion> {
        self.slot.active()
    }

    /// Takes `candidate` through the gate and, if it passes, switches to it (or starts it as a
    /// canary); `requests` runs its smoke test. Requests already running finish on the version
    /// they started on.
    pub async fn deploy(&self, candidate: Candidate, requests: &RequestPath) -> Result<Deployment, DeployError> {
        let started = Instant::now();
        let result = self.deploy_gated(candidate, requests, started).await;
        let name = &self.core.name;
        let outcome = match &result {
            Ok(deployment) => {
                tracing::info!(service = %name, version = %deployment.deployed.label, digest = %deployment.deployed.digest,
                    previous = %deployment.previous, result = deployment.result, rollout_ms = deployment.rollout_millis,
                    switch_us = deployment.switch_micros, "rolled out");
                deployment.result
            }
            Err(error) => {
                tracing::warn!(service = %name, error = %error, "candidate refused; the running version stays");
                error.kind()
            }
        };
        self.core.ctx.metrics.swaps.get_or_create(&SwapLabels { route: name.clone(), result: outcome.into() }).inc();
        result
    }

    async fn deploy_gated(
        &self,
        candidate: Candidate,
        requests: &RequestPath,
        started: Instant,
    ) -> Result<Deployment, DeployError> {
        let _one_at_a_time = self.deploying.lock().await;
        if let Some(canary) = self.slot.canary_label().filter(|_| !candidate.replace_canary) {
            return Err(SlotError::CanaryRunning(canary).into());
        }
        let active = self.current();
        let runtime = self.core.ctx.runtime.clone();
        let Candidate { bytes, label, canary_percent, digest, origin, replace_canary } = candidate;
        // Compiling takes whole seconds of CPU: never on a request thread.
        let version =
            tokio::task::spawn_blocking(move || ComponentVersion::compile(&runtime, &bytes, label, digest, origin))
                .await
                .map_err(|e| DeployError::Compile(CompileError::Invalid(format!("the compiler failed: {e}"))))??;
        if version.digest == active.digest {
            return Err(DeployError::Unchanged(active.label.clone()));
        }
        let version = Arc::new(version);
        let (core, capabilities) = (&self.core, &self.core.capabilities);
        let (running, offered) = (core.exports_of(active.clone()), core.exports_of(version.clone()));
        capabilities.check_candidate(&core.states, &running, &offered).await.map_err(DeployError::WrongWorld)?;
        // The capabilities prepare it (its migrations) while the old version still serves.
        capabilities.prepare_version(&core.states, &offered).await?;
        requests.smoke_test(&version, core.ctx.swap.smoke_timeout).await.map_err(DeployError::SmokeTest)?;
        let switching = Instant::now();
        let (deployed, result) = match canary_percent {
            Some(percent) => (self.slot.start_canary_replacing(version, percent, replace_canary)?, "canary"),
            None => (self.slot.activate_replacing(version, replace_canary)?, "switched"),
        };
        let switch_micros = u64::try_from(switching.elapsed().as_micros()).unwrap_or(u64::MAX);
        let state = if canary_percent.is_some() { VersionState::Canary } else { VersionState::Active };
        Ok(Deployment {
            result,
            deployed: deployed.info(state, canary_percent),
            previous: active.label.clone(),
            switch_micros,
            rollout_millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Back to the previous version: drops a running canary, else reactivates the most recently
    /// active standby version.
    pub async fn rollback(&self) -> Result<RolledBack, SlotError> {
        let _one_at_a_time = self.deploying.lock().await;
        let rolled_back = self.slot.rollback()?;
        tracing::warn!(service = %self.core.name, from = %rolled_back.from, to = %rolled_back.to, "rolled back on command");
        self.core.count_rollback("command");
        Ok(rolled_back)
    }

    /// The canary takes all the traffic.
    pub async fn promote(&self) -> Result<String, SlotError> {
        let _one_at_a_time = self.deploying.lock().await;
        let label = self.slot.promote()?;
        tracing::info!(service = %self.core.name, version = %label, "canary promoted on command");
        self.core.count_swap("promoted");
        Ok(label)
    }

    pub fn set_canary_percent(&self, percent: u8) -> Result<(), SlotError> {
        self.slot.set_canary_percent(percent)
    }

    /// The last canary rolled back on its own for its errors, and what the window showed.
    pub fn last_canary_rollback(&self) -> Option<CanaryRollback> {
        self.slot.last_canary_rollback()
    }

    /// The running canary's label.
    pub fn canary(&self) -> Option<String> {
        self.slot.canary_label()
    }

    /// Every loaded version, the active one first.
    pub fn list(&self) -> Vec<VersionInfo> {
        self.slot.list()
    }
}
