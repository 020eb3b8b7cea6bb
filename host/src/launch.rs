//! Assembling a host from its settings: the same path for `skiff serve`, `skiff dev` and tests.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::admin::watch::{WatchSpec, watch};
use crate::admin::{self, Admin, AdminSpec};
use crate::capability::config::ComponentConfig;
use crate::capability::crypto::Crypto;
use crate::capability::messaging::{Broker, RetryPolicy, connect_broker};
use crate::capability::outbound_http::OutboundPolicy;
use crate::capability::sql::{Database, DatabaseOptions};
use crate::cli::CommonArgs;
use crate::runtime::{Capabilities, Runtime, RuntimeOptions};
use crate::server::metrics::Metrics;
use crate::server::{self, App, Health};
use crate::service::{CanaryPolicy, RequestLimits, Service, ServiceContext, SwapOptions};

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
        Ok(Self { name, component: component.to_owned(), version_label: None, database_url })
    }
}

/// A host's settings.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub listen: SocketAddr,
    /// The listener whose requests count as coming from inside the cluster.
    pub internal_listen: Option<SocketAddr>,
    pub services: Vec<ServiceSpec>,
    pub runtime: RuntimeOptions,
    pub limits: RequestLimits,
    pub database: DatabaseOptions,
    pub config: Vec<(String, String)>,
    /// RabbitMQ; `None` for the embedded queue under `data_dir`.
    pub amqp_url: Option<String>,
    pub data_dir: PathBuf,
    /// Service name → `host:port` for outbound calls.
    pub service_routes: Vec<(String, String)>,
    pub outbound_allow: Vec<String>,
    pub retry: RetryPolicy,
    pub shutdown_grace: Duration,
    pub swap: SwapOptions,
    /// The admin listener; `None` without a token.
    pub admin: Option<AdminSpec>,
    /// A component path to watch (for the first service).
    pub watch: Option<WatchSpec>,
}

impl HostSpec {
    pub fn new(listen: SocketAddr, services: Vec<ServiceSpec>, common: &CommonArgs) -> Self {
        Self {
            listen,
            internal_listen: None,
            services,
            runtime: RuntimeOptions {
                max_instances: common.max_instances,
                max_memory_bytes: common.max_memory_mb << 20,
                perf_map: common.wasm_perf_map,
            },
            limits: RequestLimits {
                timeout: Duration::from_millis(common.request_timeout_ms),
                queue_timeout: Duration::from_millis(common.queue_timeout_ms),
                max_body_bytes: common.max_body_bytes,
            },
            database: DatabaseOptions { max_connections: common.db_max_connections, ..DatabaseOptions::default() },
            config: common.config.clone(),
            amqp_url: common.amqp_url.clone(),
            data_dir: common.data_dir.clone(),
            service_routes: common.services.clone(),
            outbound_allow: common.outbound_allow.clone(),
            retry: RetryPolicy {
                max_attempts: common.max_delivery_attempts.max(1),
                base_delay: Duration::from_millis(common.retry_base_delay_ms),
                ..RetryPolicy::default()
            },
            shutdown_grace: Duration::from_secs(common.shutdown_grace_secs),
            swap: SwapOptions {
                keep_versions: usize::try_from(common.keep_versions).unwrap_or(usize::MAX),
                canary: CanaryPolicy {
                    window: common.canary_window,
                    min_requests: common.canary_min_requests,
                    max_error_rate: common.canary_max_error_percent / 100.0,
                    promote_after: common.canary_promote_after,
                },
                smoke_timeout: Duration::from_millis(common.smoke_timeout_ms),
            },
            admin: common.admin_token.clone().filter(|token| !token.is_empty()).map(|token| AdminSpec {
                listen: common.admin_listen,
                token,
                components_dir: common.admin_components_dir.clone(),
            }),
            watch: None,
        }
    }

    /// A spec with defaults around the given services, for tests and embedding.
    pub fn with_services(listen: SocketAddr, services: Vec<ServiceSpec>, data_dir: PathBuf) -> Self {
        Self {
            listen,
            internal_listen: None,
            services,
            runtime: RuntimeOptions::default(),
            limits: RequestLimits::default(),
            database: DatabaseOptions::default(),
            config: Vec::new(),
            amqp_url: None,
            data_dir,
            service_routes: Vec::new(),
            outbound_allow: Vec::new(),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(25),
            swap: SwapOptions::default(),
            admin: None,
            watch: None,
        }
    }
}

/// A host that has loaded its components and bound its ports, not yet serving.
pub struct Host {
    listener: TcpListener,
    internal_listener: Option<TcpListener>,
    admin: Option<(TcpListener, Arc<Admin>)>,
    watch: Option<WatchSpec>,
    app: Arc<App>,
    broker: Arc<dyn Broker>,
    retry: RetryPolicy,
    grace: Duration,
}

impl Host {
    pub async fn build(spec: HostSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(!spec.services.is_empty(), "no components to serve");
        let runtime = Runtime::new(spec.runtime.clone())?;
        let metrics = Arc::new(Metrics::default());
        let instances = Arc::new(Semaphore::new(spec.runtime.max_instances as usize));
        let config = ComponentConfig::from_pairs(spec.config.clone());
        let outbound = Arc::new(OutboundPolicy::new(spec.service_routes.clone(), spec.outbound_allow.clone()));
        let crypto = Arc::new(Crypto::new(&spec.config, Crypto::bcrypt_pool()));
        let broker = connect_broker(spec.amqp_url.as_deref(), &spec.data_dir).await?;
        let mut services = Vec::new();
        for service in &spec.services {
            let sql = Database::connect(&service.database_url, &spec.database)
                .await
                .with_context(|| format!("opening the database of {}", service.name))?;
            let ctx = || ServiceContext {
                runtime: runtime.clone(),
                capabilities: Capabilities {
                    sql: sql.clone(),
                    config: config.clone(),
                    crypto: crypto.clone(),
                    outbox: None,
                    outbound: outbound.clone(),
                },
                limits: spec.limits.clone(),
                instances: instances.clone(),
                metrics: metrics.clone(),
                swap: spec.swap.clone(),
            };
            let load = |path: PathBuf| {
                let ctx = ctx();
                async move {
                    let bytes = tokio::fs::read(&path)
                        .await
                        .with_context(|| format!("reading component {}", path.display()))?;
                    Service::load(&service.name, bytes, service.version_label.clone(), ctx)
                        .await
                        .with_context(|| format!("loading component {}", path.display()))
                }
            };
            let loaded = match (load(service.component.clone()).await, wasm_beside(&service.component)) {
                (Ok(loaded), _) => loaded,
                // Machine code from `skiff compile` on another CPU or skiff version: the .wasm the
                // image ships beside it still serves, after a compile at start.
                (Err(error), Some(wasm)) => {
                    tracing::warn!(error = %format!("{error:#}"), fallback = %wasm.display(), "precompiled component unusable; compiling the .wasm");
                    load(wasm).await?
                }
                (Err(error), None) => return Err(error),
            };
            services.push(Arc::new(loaded));
        }
        // In `skiff dev`, `http://users/...` from auth reaches the users component directly.
        outbound.set_local_services(&services);
        let listener = TcpListener::bind(spec.listen).await.with_context(|| format!("binding {}", spec.listen))?;
        let internal_listener = match spec.internal_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?),
            None => None,
        };
        let admin = match &spec.admin {
            Some(admin) => {
                let listener = TcpListener::bind(admin.listen)
                    .await
                    .with_context(|| format!("binding the admin listener {}", admin.listen))?;
                Some((listener, Arc::new(Admin::new(services.clone(), admin))))
            }
            None => {
                tracing::info!("admin listener off: set SKIFF_ADMIN_TOKEN to enable hot swap over HTTP");
                None
            }
        };
        let app = Arc::new(App::new(services, Arc::new(Health::default()), metrics));
        Ok(Self {
            listener,
            internal_listener,
            admin,
            watch: spec.watch,
            app,
            broker,
            retry: spec.retry,
            grace: spec.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves. In the background it migrates every database, starts
    /// the consumers, then the outbox relays (so the embedded queue has its bindings before the
    /// first event), and only then reports started.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let app = self.app.clone();
        let broker = self.broker.clone();
        let retry = self.retry;
        tokio::spawn(async move {
            for service in app.services() {
                service.migrate_until_done().await;
            }
            for service in app.services() {
                if let Err(error) = service.start_consuming(broker.clone(), retry).await {
                    tracing::error!(service = %service.name(), error = %format!("{error:#}"), "cannot start consuming");
                }
            }
            for service in app.services() {
                if let Some(outbox) = service.outbox() {
                    tokio::spawn(outbox.relay(broker.clone(), service.name().to_owned()));
                }
            }
            app.health().mark_started();
        });
        tracing::info!(address = %self.local_addr().map(|a| a.to_string()).unwrap_or_default(), broker = self.broker.backend(), "listening");
        let (stop, stopped) = watch::channel(false);
        let wait = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let internal = self.internal_listener.map(|listener| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "internal listener");
            tokio::spawn(server::serve(listener, self.app.clone(), true, wait(stopped.clone()), self.grace))
        });
        let admin = self.admin.map(|(listener, api)| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin listener");
            tokio::spawn(admin::serve(listener, api, wait(stopped.clone())))
        });
        let watcher = match (self.watch, self.app.services().next()) {
            (Some(spec), Some(service)) => Some(tokio::spawn(watch(service.clone(), spec))),
            _ => None,
        };
        let public = server::serve(self.listener, self.app, false, wait(stopped), self.grace);
        tokio::pin!(public);
        tokio::select! {
            () = &mut public => {}
            () = shutdown => {
                let _ = stop.send(true);
                public.await;
            }
        }
        if let Some(internal) = internal {
            let _ = internal.await;
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
    }
}

/// For `X.cwasm`, an `X.wasm` beside it.
fn wasm_beside(component: &Path) -> Option<PathBuf> {
    let wasm = component.with_extension("wasm");
    (component.extension().is_some_and(|ext| ext == "cwasm") && wasm.is_file()).then_some(wasm)
}

/// `users.wasm` → `users`.
pub fn service_name(component: &Path) -> anyhow::Result<String> {
    let stem = component.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    anyhow::ensure!(
        !stem.is_empty() && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
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
    anyhow::ensure!(!found.is_empty(), "no components (*.wasm) in {}", dir.display());
    Ok(found)
}

/// A fresh Ed25519 key pair as `(private seed, public key)`, both base64: `skiff dev` uses one
/// so that auth can sign and the others verify without any setup.
pub fn generate_token_keys() -> anyhow::Result<(String, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    Ok((STANDARD.encode(seed), STANDARD.encode(public)))
}
