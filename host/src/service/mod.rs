//! A service: one component (its current version), its capabilities, and the per-request and
//! per-message paths into a fresh instance.

mod canary;
mod consume;
mod invoke;
mod rollout;
mod slot;
mod version;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

pub use canary::CanaryPolicy;
pub use invoke::{DIGEST_HEADER, RequestLimits, VERSION_HEADER, full_body};
pub use rollout::{Candidate, DeployError, Deployment, SwapOptions};
pub use slot::{RolledBack, SlotError, VersionInfo, VersionState};
pub use version::{ComponentVersion, Origin, precompile, short_digest};

use crate::capability::messaging::Outbox;
use crate::capability::sql::apply_migrations;
use crate::runtime::{Capabilities, HostState, Runtime};
use crate::server::metrics::{Metrics, RouteLabels};
use slot::Slot;

/// Everything a service needs besides its component bytes.
pub struct ServiceContext {
    pub runtime: Runtime,
    pub capabilities: Capabilities,
    pub limits: RequestLimits,
    /// Shared by every service of the process: the bound on concurrent instances.
    pub instances: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    pub swap: SwapOptions,
}

pub struct Service {
    name: String,
    ctx: ServiceContext,
    /// The loaded versions and which one serves; see [`slot`].
    slot: Slot,
    /// One rollout at a time per service.
    deploying: Mutex<()>,
    migrated: AtomicBool,
    /// `None` for services that consume nothing; else whether every subscription is live.
    consuming: Option<Arc<AtomicBool>>,
}

impl Service {
    /// Compiles the component (on a blocking thread), or maps it if `skiff compile` already did,
    /// and prepares it for instantiation. `bytes` come from the host's own files.
    pub async fn load(name: &str, bytes: Vec<u8>, label: Option<String>, ctx: ServiceContext) -> anyhow::Result<Self> {
        let runtime = ctx.runtime.clone();
        let version =
            tokio::task::spawn_blocking(move || ComponentVersion::compile(&runtime, &bytes, label, Origin::HostFile))
                .await??;
        tracing::info!(service = name, version = %version.label, digest = %version.digest, "component loaded");
        let consuming = version.consumer.is_some().then(|| Arc::new(AtomicBool::new(false)));
        let mut ctx = ctx;
        if version.publishes {
            let depth = ctx.metrics.outbox_depth.get_or_create(&RouteLabels { route: name.to_owned() }).clone();
            ctx.capabilities.outbox = Some(Arc::new(Outbox::new(ctx.capabilities.sql.clone(), depth)));
        }
        Ok(Self {
            name: name.to_owned(),
            slot: Slot::new(version, ctx.swap.keep_versions, ctx.swap.canary.clone()),
            deploying: Mutex::new(()),
            migrated: AtomicBool::new(false),
            consuming,
            ctx,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The outbox of a service whose component publishes.
    pub fn outbox(&self) -> Option<Arc<Outbox>> {
        self.ctx.capabilities.outbox.clone()
    }

    /// The active version (the one messages and non-canary requests run on).
    pub fn current(&self) -> Arc<ComponentVersion> {
        self.slot.active()
    }

    fn new_state(&self) -> HostState {
        HostState::new(&self.ctx.capabilities, self.ctx.runtime.options().max_memory_bytes)
    }

    /// Applies the current version's migrations (and creates the outbox); until this succeeds
    /// the service is not ready.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let version = self.current();
        let migrations = version.migrations(self.new_state(), &self.ctx.runtime).await?;
        let sql = &self.ctx.capabilities.sql;
        let applied = apply_migrations(sql, &migrations)
            .await
            .map_err(|e| anyhow::anyhow!("applying migrations of {}: {e:?}", self.name))?;
        if let Some(outbox) = &self.ctx.capabilities.outbox {
            outbox.prepare().await.map_err(|e| anyhow::anyhow!("creating the outbox of {}: {e:?}", self.name))?;
        }
        self.migrated.store(true, Ordering::Release);
        Ok(applied)
    }

    /// Retries [`Service::migrate`] with back-off until it succeeds (the database may start
    /// after the host, as pods do).
    pub async fn migrate_until_done(&self) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.migrate().await {
                Ok(applied) => {
                    tracing::info!(service = %self.name, applied, backend = self.ctx.capabilities.sql.backend(), "database ready");
                    return;
                }
                Err(error) => {
                    tracing::warn!(service = %self.name, error = %format!("{error:#}"), retry_in = ?delay, "database not ready");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::Acquire)
    }

    /// Ready = migrations applied, the database answers now, and a consumer is subscribed.
    pub async fn is_ready(&self) -> bool {
        if !self.is_migrated() || self.consuming.as_ref().is_some_and(|live| !live.load(Ordering::Acquire)) {
            return false;
        }
        matches!(tokio::time::timeout(Duration::from_secs(2), self.ctx.capabilities.sql.ping()).await, Ok(Ok(())))
    }
}
