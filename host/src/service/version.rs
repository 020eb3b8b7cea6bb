//! One loaded version of a component: compiled once, linked once, instantiated per request.

use sha2::{Digest, Sha256};
use std::time::SystemTime;
use wasmtime::component::{Component, InstancePre};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::capability::messaging::{ConsumerPre, Subscription};
use crate::capability::sql::{Migration, MigrationsPre};
use crate::runtime::{HostState, Runtime};

/// A component version, ready to serve: `InstancePre` is prepared here, once.
pub struct ComponentVersion {
    /// Human label, e.g. `v1.4.0`; defaults to the short digest.
    pub label: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    pub loaded_at: SystemTime,
    pub(crate) proxy: ProxyPre<HostState>,
    migrations: Option<MigrationsPre<HostState>>,
    pub(crate) consumer: Option<ConsumerPre<HostState>>,
    /// Whether the component imports the producer, and so needs an outbox.
    pub publishes: bool,
}

/// Why bytes are not a version skiff can serve.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the component imports something skiff does not provide: {0}")]
    UnknownImport(String),
    #[error("the component does not export wasi:http/incoming-handler: {0}")]
    NotHttp(String),
}

impl ComponentVersion {
    /// Compiles and links `bytes`; refuses anything that is not a `wasi:http` component whose
    /// imports skiff provides. Compilation is CPU-heavy: call it off the request path.
    pub fn compile(runtime: &Runtime, bytes: &[u8], label: Option<String>) -> Result<Self, CompileError> {
        let digest = format!("sha256:{:x}", Sha256::digest(bytes));
        let component = Component::new(runtime.engine(), bytes).map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let linker = runtime.linker().map_err(|e| CompileError::UnknownImport(format!("{e:#}")))?;
        let instance_pre: InstancePre<HostState> =
            linker.instantiate_pre(&component).map_err(|e| CompileError::UnknownImport(format!("{e:#}")))?;
        let publishes = component
            .component_type()
            .imports(runtime.engine())
            .any(|(name, _)| name.starts_with("skiff:messaging/producer@"));
        let proxy = ProxyPre::new(instance_pre.clone()).map_err(|e| CompileError::NotHttp(format!("{e:#}")))?;
        // A component without a database of its own exports no migrations.
        let migrations = MigrationsPre::new(instance_pre.clone()).ok();
        // Only components that handle messages export the consumer interface.
        let consumer = ConsumerPre::new(instance_pre).ok();
        let label = label.unwrap_or_else(|| short_digest(&digest));
        Ok(Self { label, digest, loaded_at: SystemTime::now(), proxy, migrations, consumer, publishes })
    }

    /// Whether the component exports `skiff:sql/migrations`.
    pub fn has_migrations(&self) -> bool {
        self.migrations.is_some()
    }

    /// Whether the component exports `skiff:messaging/consumer`.
    pub fn consumes(&self) -> bool {
        self.consumer.is_some()
    }

    /// Reads the component's migrations by instantiating it once.
    pub async fn migrations(&self, state: HostState, runtime: &Runtime) -> anyhow::Result<Vec<Migration>> {
        let Some(pre) = &self.migrations else {
            return Ok(Vec::new());
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut store = runtime.store(state, deadline);
        let instance = pre.instantiate_async(&mut store).await?;
        Ok(instance.skiff_sql_migrations().call_all(&mut store).await?)
    }
}

impl ComponentVersion {
    /// The queues the component consumes, asked of one instance.
    pub async fn subscriptions(&self, state: HostState, runtime: &Runtime) -> anyhow::Result<Vec<Subscription>> {
        let Some(pre) = &self.consumer else { return Ok(Vec::new()) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut store = runtime.store(state, deadline);
        let instance = pre.instantiate_async(&mut store).await?;
        Ok(instance.skiff_messaging_consumer().call_subscriptions(&mut store).await?)
    }
}

/// `sha256:` and the first 12 hex digits: enough to tell versions apart in a header.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256:{}", &hex[..hex.len().min(12)])
}
