//! A service: one component (its current version), its database and settings, and the
//! per-request path into a fresh instance.

mod invoke;
mod version;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{RwLock, Semaphore};

pub use invoke::{DIGEST_HEADER, RequestLimits, VERSION_HEADER, full_body};
pub use version::{ComponentVersion, short_digest};

use crate::capability::config::ComponentConfig;
use crate::capability::sql::{SqlClient, apply_migrations};
use crate::runtime::{HostState, Runtime};
use crate::server::metrics::Metrics;

/// Everything a service needs besides its component bytes.
pub struct ServiceContext {
    pub runtime: Runtime,
    pub sql: Arc<dyn SqlClient>,
    pub config: ComponentConfig,
    pub limits: RequestLimits,
    /// Shared by every service of the process: the bound on concurrent instances.
    pub instances: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

pub struct Service {
    name: String,
    ctx: ServiceContext,
    current: RwLock<Arc<ComponentVersion>>,
    migrated: AtomicBool,
}

impl Service {
    /// Compiles the component (on a blocking thread) and prepares it for instantiation.
    pub async fn load(
        name: &str,
        bytes: Vec<u8>,
        label: Option<String>,
        ctx: ServiceContext,
    ) -> anyhow::Result<Self> {
        let runtime = ctx.runtime.clone();
        let version =
            tokio::task::spawn_blocking(move || ComponentVersion::compile(&runtime, &bytes, label))
                .await??;
        tracing::info!(service = name, version = %version.label, digest = %version.digest, "component loaded");
        Ok(Self {
            name: name.to_owned(),
            ctx,
            current: RwLock::new(Arc::new(version)),
            migrated: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn current(&self) -> Arc<ComponentVersion> {
        self.current.read().await.clone()
    }

    fn new_state(&self) -> HostState {
        HostState::new(
            self.ctx.sql.clone(),
            self.ctx.config.clone(),
            self.ctx.runtime.options().max_memory_bytes,
        )
    }

    /// Applies the current version's migrations; until this succeeds the service is not ready.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let version = self.current().await;
        let migrations = version
            .migrations(self.new_state(), &self.ctx.runtime)
            .await?;
        let applied = apply_migrations(&self.ctx.sql, &migrations)
            .await
            .map_err(|e| anyhow::anyhow!("applying migrations of {}: {e:?}", self.name))?;
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
                    tracing::info!(service = %self.name, applied, backend = self.ctx.sql.backend(), "database ready");
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

    /// Ready = migrations applied and the database answers now.
    pub async fn is_ready(&self) -> bool {
        if !self.is_migrated() {
            return false;
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.ctx.sql.ping()).await,
            Ok(Ok(()))
        )
    }
}
