//! Rolling out a new version: the gate every candidate passes (compile, world check,
//! migrations, smoke test) before an atomic switch or a canary; then rollback and promotion.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::canary::CanaryPolicy;
use super::slot::{RolledBack, SlotError, VersionInfo, VersionState};
use super::version::{CompileError, Origin};
use super::{ComponentVersion, Service};
use crate::capability::messaging::{MessagingCapability, Subscription, SubscriptionSpec};
use crate::capability::sql::apply_migrations;
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
    #[error("applying the candidate's migrations failed: {0}")]
    Migrations(String),
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
            Self::Migrations(_) => "migrations-failed",
            Self::SmokeTest(_) => "smoke-test-failed",
            Self::Slot(_) => "conflict",
        }
    }
}

impl Service {
    /// Takes `candidate` through the gate and, if it passes, switches to it (or starts it as a
    /// canary). Requests already running finish on the version they started on.
    pub async fn deploy(&self, candidate: Candidate) -> Result<Deployment, DeployError> {
        let started = Instant::now();
        let result = self.deploy_gated(candidate, started).await;
        let outcome = match &result {
            Ok(deployment) => {
                tracing::info!(service = %self.name, version = %deployment.deployed.label, digest = %deployment.deployed.digest,
                    previous = %deployment.previous, result = deployment.result, rollout_ms = deployment.rollout_millis,
                    switch_us = deployment.switch_micros, "rolled out");
                deployment.result
            }
            Err(error) => {
                tracing::warn!(service = %self.name, error = %error, "candidate refused; the running version stays");
                error.kind()
            }
        };
        self.ctx.metrics.swaps.get_or_create(&SwapLabels { route: self.name.clone(), result: outcome.into() }).inc();
        result
    }

    async fn deploy_gated(&self, candidate: Candidate, started: Instant) -> Result<Deployment, DeployError> {
        let _one_at_a_time = self.deploying.lock().await;
        if let Some(canary) = self.slot.canary_label().filter(|_| !candidate.replace_canary) {
            return Err(SlotError::CanaryRunning(canary).into());
        }
        let active = self.current();
        let runtime = self.ctx.runtime.clone();
        let Candidate { bytes, label, canary_percent, digest, origin, replace_canary } = candidate;
        // Compiling takes whole seconds of CPU: never on a request thread.
        let version =
            tokio::task::spawn_blocking(move || ComponentVersion::compile(&runtime, &bytes, label, digest, origin))
                .await
                .map_err(|e| DeployError::Compile(CompileError::Invalid(format!("the compiler failed: {e}"))))??;
        if version.digest == active.digest {
            return Err(DeployError::Unchanged(active.label.clone()));
        }
        self.check_world(&active, &version).await.map_err(DeployError::WrongWorld)?;
        // Migrations run before the switch while the old version still serves, so they must be
        // forward-compatible (expand, then contract in a later release).
        let migrations = version
            .migrations(self.new_state(), &self.ctx.runtime)
            .await
            .map_err(|e| DeployError::Migrations(format!("reading them: {e:#}")))?;
        apply_migrations(self.sql(), &migrations).await.map_err(|e| DeployError::Migrations(e.to_string()))?;
        let version = Arc::new(version);
        self.smoke_test(&version, self.ctx.swap.smoke_timeout).await.map_err(DeployError::SmokeTest)?;
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

    /// The candidate must serve everything the slot serves: HTTP always, and migrations and
    /// the message consumer (on the same queues) where the running version has them.
    async fn check_world(&self, active: &ComponentVersion, candidate: &ComponentVersion) -> Result<(), String> {
        if active.has_migrations() && !candidate.has_migrations() {
            return Err("the running version exports skiff:sql/migrations and the candidate does not".into());
        }
        let has_outbox = self.capability::<MessagingCapability>().outbox().is_some();
        if candidate.publishes() && !has_outbox {
            return Err("the candidate publishes messages but this service started without an outbox; \
                        restart the host to add messaging"
                .into());
        }
        if active.consumes() != candidate.consumes() {
            return Err(if active.consumes() {
                "the running version consumes messages (skiff:messaging/consumer) and the candidate does not".into()
            } else {
                "the candidate consumes messages but the running version does not; restart the host to subscribe".into()
            });
        }
        if active.consumes() {
            // Queues are subscribed once at start; a version wanting others needs a restart.
            let queues = |subscriptions: Vec<Subscription>| {
                let mut queues: Vec<SubscriptionSpec> = subscriptions.into_iter().map(SubscriptionSpec::from).collect();
                queues.sort();
                queues
            };
            let runtime = &self.ctx.runtime;
            let running = active.subscriptions(self.new_state(), runtime).await;
            let running = queues(running.map_err(|e| format!("reading the running subscriptions: {e:#}"))?);
            let offered = candidate.subscriptions(self.new_state(), runtime).await;
            let offered = queues(offered.map_err(|e| format!("reading the candidate's subscriptions: {e:#}"))?);
            if running != offered {
                return Err(format!("the candidate subscribes to {offered:?}, the running version to {running:?}"));
            }
        }
        Ok(())
    }

    /// Back to the previous version: drops a running canary, else reactivates the most recently
    /// active standby version.
    pub async fn rollback(&self) -> Result<RolledBack, SlotError> {
        let _one_at_a_time = self.deploying.lock().await;
        let rolled_back = self.slot.rollback()?;
        tracing::warn!(service = %self.name, from = %rolled_back.from, to = %rolled_back.to, "rolled back on command");
        self.count_rollback("command");
        Ok(rolled_back)
    }

    /// The canary takes all the traffic.
    pub async fn promote(&self) -> Result<String, SlotError> {
        let _one_at_a_time = self.deploying.lock().await;
        let label = self.slot.promote()?;
        tracing::info!(service = %self.name, version = %label, "canary promoted on command");
        self.count_swap("promoted");
        Ok(label)
    }

    pub fn set_canary_percent(&self, percent: u8) -> Result<(), SlotError> {
        self.slot.set_canary_percent(percent)
    }

    /// The running canary's label.
    pub fn canary(&self) -> Option<String> {
        self.slot.canary_label()
    }

    /// Every loaded version, the active one first.
    pub fn versions(&self) -> Vec<VersionInfo> {
        self.slot.list()
    }
}
