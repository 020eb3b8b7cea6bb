//! Assembling a host from its settings: the same path for `skiff serve`, `skiff dev` and tests.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::capability::config::ComponentConfig;
use crate::capability::sql::{Database, DatabaseOptions};
use crate::cli::CommonArgs;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::server::metrics::Metrics;
use crate::server::{self, App, Health};
use crate::service::{RequestLimits, Service, ServiceContext};

/// One service to mount.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub component: PathBuf,
    pub version_label: Option<String>,
    pub database_url: String,
}

impl ServiceSpec {
    /// A service named after its file, on SQLite under `data_dir`.
    pub fn embedded(component: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let name = service_name(component)?;
        let database_url = sqlite_url(data_dir, &name);
        Ok(Self {
            name,
            component: component.to_owned(),
            version_label: None,
            database_url,
        })
    }
}

/// A host's settings.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub listen: SocketAddr,
    pub services: Vec<ServiceSpec>,
    pub runtime: RuntimeOptions,
    pub limits: RequestLimits,
    pub database: DatabaseOptions,
    pub config: Vec<(String, String)>,
    pub shutdown_grace: Duration,
}

impl HostSpec {
    pub fn new(listen: SocketAddr, services: Vec<ServiceSpec>, common: &CommonArgs) -> Self {
        Self {
            listen,
            services,
            runtime: RuntimeOptions {
                max_instances: common.max_instances,
                max_memory_bytes: common.max_memory_mb << 20,
            },
            limits: RequestLimits {
                timeout: Duration::from_millis(common.request_timeout_ms),
                queue_timeout: Duration::from_millis(common.queue_timeout_ms),
                max_body_bytes: common.max_body_bytes,
            },
            database: DatabaseOptions {
                max_connections: common.db_max_connections,
                ..DatabaseOptions::default()
            },
            config: common.config.clone(),
            shutdown_grace: Duration::from_secs(common.shutdown_grace_secs),
        }
    }
}

/// A host that has loaded its components and bound its port, not yet serving.
pub struct Host {
    listener: TcpListener,
    app: Arc<App>,
    grace: Duration,
}

impl Host {
    pub async fn build(spec: HostSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(!spec.services.is_empty(), "no components to serve");
        let runtime = Runtime::new(spec.runtime.clone())?;
        let metrics = Arc::new(Metrics::default());
        let instances = Arc::new(Semaphore::new(spec.runtime.max_instances as usize));
        let config = ComponentConfig::from_pairs(spec.config.clone());
        let mut services = Vec::new();
        for service in &spec.services {
            let bytes = tokio::fs::read(&service.component)
                .await
                .with_context(|| format!("reading component {}", service.component.display()))?;
            let sql = Database::connect(&service.database_url, &spec.database)
                .await
                .with_context(|| format!("opening the database of {}", service.name))?;
            let ctx = ServiceContext {
                runtime: runtime.clone(),
                sql,
                config: config.clone(),
                limits: spec.limits.clone(),
                instances: instances.clone(),
                metrics: metrics.clone(),
            };
            let loaded = Service::load(&service.name, bytes, service.version_label.clone(), ctx)
                .await
                .with_context(|| format!("loading component {}", service.component.display()))?;
            services.push(Arc::new(loaded));
        }
        let listener = TcpListener::bind(spec.listen)
            .await
            .with_context(|| format!("binding {}", spec.listen))?;
        let app = Arc::new(App::new(services, Arc::new(Health::default()), metrics));
        Ok(Self {
            listener,
            app,
            grace: spec.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` resolves, migrating every service's database in the background
    /// (the host answers `/livez` at once and `/readyz` once migrations are applied).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let app = self.app.clone();
        tokio::spawn(async move {
            for service in app.services() {
                service.migrate_until_done().await;
            }
            app.health().mark_started();
        });
        tracing::info!(address = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        server::serve(self.listener, self.app, shutdown, self.grace).await;
    }
}

/// `users.wasm` → `users`.
pub fn service_name(component: &Path) -> anyhow::Result<String> {
    let stem = component
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    anyhow::ensure!(
        !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "cannot name a service after {}: use --name",
        component.display()
    );
    Ok(stem.to_owned())
}

pub fn sqlite_url(data_dir: &Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}

/// Every `*.wasm` directly in `dir`, sorted by name.
pub fn components_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    found.sort();
    anyhow::ensure!(
        !found.is_empty(),
        "no components (*.wasm) in {}",
        dir.display()
    );
    Ok(found)
}
