//! A service: one component (its current version), its capabilities, and the per-request path
//! into an instance (a warm one of the version, or a fresh one: [`Isolation`]) and the
//! per-message path into a fresh instance.

mod canary;
mod consume;
mod invoke;
mod outcome;
mod record;
mod release_status;
mod rollout;
mod slot;
mod version;
mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

pub use canary::CanaryPolicy;
pub use invoke::RequestLimits;
pub use outcome::{Handled, Outcome};
pub use release_status::{ReleasePhase, ReleaseStatus};
pub use rollout::{Candidate, DeployError, Deployment, SwapOptions};
pub use slot::{RolledBack, SlotError, VersionInfo, VersionState};
pub use version::{
    ComponentVersion, Origin, component_digest, component_interfaces, digest_of, precompile, short_digest, valid_label,
    wasm_beside,
};
pub use warm::{Isolation, WarmBudget};

use crate::capability::sql::{SqlCapability, SqlClient, apply_migrations};
use crate::capability::{Capability, HasServiceState, HostCapabilities, ServiceFacts, ServiceStates};
use crate::metrics::Metrics;
use crate::retry::retry_forever;
use crate::runtime::{HostState, Runtime};
use slot::Slot;

/// Instances kept for the services' health routes beyond `SKIFF_MAX_INSTANCES` (within the
/// pooling allocator's headroom), so a liveness probe is answered while every slot is busy.
pub const PROBE_INSTANCES: usize = 2;

/// Everything a service needs besides its component bytes and its database.
pub struct ServiceContext {
    pub runtime: Runtime,
    pub limits: RequestLimits,
    /// Shared by every service of the process: the bound on concurrent instances.
    pub instances: Arc<Semaphore>,
    /// Shared too: the few instances kept for the services' health routes (liveness probes)
    /// when every slot of `instances` is busy.
    pub probe_instances: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub swap: SwapOptions,
    /// Fresh instances per request, or warm ones reused.
    pub isolation: Isolation,
    /// Shared by every service of the process: how many instances may wait warm.
    pub warm: Arc<WarmBudget>,
}

pub struct Service {
    name: String,
    ctx: ServiceContext,
    /// The loaded versions and which one serves; see [`slot`].
    slot: Slot,
    /// The host's capabilities, and each one's state for this service.
    host_capabilities: Arc<HostCapabilities>,
    capabilities: ServiceStates,
    /// One rollout at a time per service.
    deploying: Mutex<()>,
    migrated: AtomicBool,
    /// Why the last start-up attempt to migrate failed, for the readiness answer.
    migration_failure: std::sync::Mutex<Option<String>>,
    /// Where the service stands with its release file, if it has one.
    release: std::sync::Mutex<Option<ReleaseStatus>>,
}

impl Service {
    /// Compiles the component (on a blocking thread), or maps it if `skiff compile` already did,
    /// prepares it for instantiation, and sets up its capabilities. `bytes` come from the host's
    /// own files.
    pub async fn load(
        name: &str,
        database_url: &str,
        bytes: Vec<u8>,
        label: Option<String>,
        digest: Option<String>,
        ctx: ServiceContext,
    ) -> anyhow::Result<Self> {
        let runtime = ctx.runtime.clone();
        let version = tokio::task::spawn_blocking(move || {
            ComponentVersion::compile(&runtime, &bytes, label, digest, Origin::HostFile)
        })
        .await??;
        tracing::info!(service = name, version = %version.label, digest = %version.digest, isolation = %ctx.isolation.describe(), "component loaded");
        let facts = ServiceFacts {
            name: name.to_owned(),
            database_url: database_url.to_owned(),
            imports: version.imports.clone(),
            exports: version.exports.clone(),
        };
        let Some(host_capabilities) = ctx.runtime.capabilities().cloned() else {
            anyhow::bail!("this runtime only compiles components: it has no capabilities to serve {name} with");
        };
        let capabilities = host_capabilities.configure(&facts).await?;
        Ok(Self {
            name: name.to_owned(),
            slot: Slot::new(version, ctx.swap.keep_versions, ctx.swap.canary.clone()),
            host_capabilities,
            capabilities,
            deploying: Mutex::new(()),
            migrated: AtomicBool::new(false),
            migration_failure: std::sync::Mutex::new(None),
            release: std::sync::Mutex::new(None),
            ctx,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state of capability `C` for this service.
    pub fn capability<C: Capability>(&self) -> Arc<C::Service>
    where
        ServiceStates: HasServiceState<C>,
    {
        self.capabilities.service_state().clone()
    }

    /// The service's own database, where its migrations go.
    fn sql(&self) -> &Arc<dyn SqlClient> {
        HasServiceState::<SqlCapability>::service_state(&self.capabilities)
    }

    /// What the capabilities run in the background for this service (an outbox relay).
    pub fn background_tasks(&self) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        self.host_capabilities.background(&self.capabilities, &self.name)
    }

    /// The active version (the one messages and non-canary requests run on).
    pub fn current(&self) -> Arc<ComponentVersion> {
        self.slot.active()
    }

    fn new_state(&self) -> HostState {
        self.ctx.runtime.instance_state(self.host_capabilities.instances(&self.capabilities))
    }

    /// Drops the warm instances whose budget ran out while they waited, so a service without
    /// traffic gives their memory back. Runs for the life of the process.
    pub async fn drop_used_up_instances(self: Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for version in self.slot.serving() {
                let dropped = version.warm.drop_used_up(&self.ctx.isolation);
                warm::count_discards(&self.ctx.metrics, "used-up", dropped);
            }
        }
    }

    /// Applies the current version's migrations, then prepares the capabilities (the outbox
    /// table); until this succeeds the service is not ready.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let version = self.current();
        let migrations = version.migrations(self.new_state(), &self.ctx.runtime).await?;
        let applied = apply_migrations(self.sql(), &migrations)
            .await
            .map_err(|e| anyhow::anyhow!("applying migrations of {}: {e}", self.name))?;
        self.host_capabilities.prepare(&self.capabilities).await?;
        self.migrated.store(true, Ordering::Release);
        Ok(applied)
    }

    /// Retries [`Service::migrate`] with back-off until it succeeds (the database may start
    /// after the host, as pods do).
    pub async fn migrate_until_done(&self) {
        let applied = retry_forever(
            || self.migrate(),
            |error: &anyhow::Error, retry_in| {
                let error = format!("{error:#}");
                tracing::warn!(service = %self.name, %error, ?retry_in, "migrations not applied; retrying");
                *self.migration_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
            },
        )
        .await;
        tracing::info!(service = %self.name, applied, backend = self.sql().backend(), "database ready");
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Ready = migrations applied and every capability ready (the database answers now, a
    /// consumer is subscribed); `Err` says what is missing.
    pub async fn readiness(&self) -> Result<(), String> {
        if !self.is_migrated() {
            let failure = self.migration_failure.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            return Err(match failure {
                Some(failure) => format!("migrations not applied yet: {failure}"),
                None => "migrations not applied yet".into(),
            });
        }
        if let Some(release) = self.release_status().filter(|release| !release.serving()) {
            return Err(release.describe());
        }
        self.host_capabilities.ready(&self.capabilities).await
    }

    /// Where the service stands with its release file; `None` without one.
    pub fn release_status(&self) -> Option<ReleaseStatus> {
        self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records where the service stands with its release file, and says so in the metrics.
    pub fn set_release_status(&self, status: ReleaseStatus) {
        let route = crate::metrics::RouteLabels { route: self.name.clone() };
        let metrics = &self.ctx.metrics;
        metrics.release_converged.get_or_create(&route).set(i64::from(status.phase == ReleasePhase::Applied));
        metrics.release_fallback.get_or_create(&route).set(i64::from(status.fallback));
        *self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// Counts a release the service refused, by why.
    pub fn count_release_refusal(&self, reason: &str) {
        let labels = crate::metrics::SwapLabels { route: self.name.clone(), result: reason.to_owned() };
        self.ctx.metrics.release_refusals.get_or_create(&labels).inc();
    }
}
