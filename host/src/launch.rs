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
use crate::capability::crypto::Crypto;
use crate::capability::messaging::MessagingCapability;
use crate::capability::outbound_http::LocalServices;
pub use crate::capability::sql::sqlite_url;
use crate::capability::{CapabilitySettings, HostCapabilities, HostResources};
use crate::metrics::Metrics;
use crate::release::{self, ReleaseSpec};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::server::{self, App, DEFAULT_SHUTDOWN_GRACE, Health, InProcess, Listener, ListenerOptions};
use crate::service::{
    Isolation, PROBE_INSTANCES, RequestLimits, Service, ServiceContext, SwapOptions, WarmBudget, component_digest,
    wasm_beside,
};
use crate::tls::{ServerTls, TlsFiles};

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
    /// The operations listener: `/metrics` and readiness's detail; without it, neither is served.
    pub ops_listen: Option<SocketAddr>,
    pub services: Vec<ServiceSpec>,
    pub runtime: RuntimeOptions,
    pub limits: RequestLimits,
    /// Fresh instances per request, or warm ones reused (the default).
    pub isolation: Isolation,
    /// Each capability's own settings (its flags: `capability/*/settings.rs`).
    pub capabilities: CapabilitySettings,
    /// The component settings (`--config`), the host-only secrets among them.
    pub config: Vec<(String, String)>,
    pub data_dir: PathBuf,
    pub shutdown_grace: Duration,
    /// Connections each listener keeps open at once.
    pub max_connections: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the client; everyone else is their
    /// socket address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub swap: SwapOptions,
    /// The admin listener; `None` without a token.
    pub admin: Option<AdminSpec>,
    /// Every listener (public, internal, admin) serves HTTPS with this certificate and key,
    /// re-read when they change on disk; `None` for plain HTTP.
    pub tls: Option<TlsFiles>,
    /// A component path to watch (for the first service).
    pub watch: Option<WatchSpec>,
    /// A release file to follow (for the first service).
    pub release: Option<ReleaseSpec>,
}

impl HostSpec {
    /// A spec with every setting at its default around the given services.
    pub fn with_services(listen: SocketAddr, services: Vec<ServiceSpec>, data_dir: PathBuf) -> Self {
        Self {
            listen,
            internal_listen: None,
            ops_listen: None,
            services,
            runtime: RuntimeOptions::default(),
            limits: RequestLimits::default(),
            isolation: Isolation::default(),
            capabilities: CapabilitySettings::default(),
            config: Vec::new(),
            data_dir,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: Vec::new(),
            swap: SwapOptions::default(),
            admin: None,
            tls: None,
            watch: None,
            release: None,
        }
    }

    /// The capabilities every service of this host may import, each built from its own
    /// settings (the list and its order: `host_capabilities!` in `capability/mod.rs`).
    async fn capabilities(
        &self,
        metrics: &Arc<Metrics>,
        local: &Arc<LocalServices>,
    ) -> anyhow::Result<HostCapabilities> {
        let component_settings = component_settings(&self.config);
        let host = HostResources {
            metrics,
            local,
            data_dir: &self.data_dir,
            host_settings: &self.config,
            component_settings: &component_settings,
        };
        self.capabilities.compose(&host).await
    }
}

/// A host that has loaded its components and bound its ports, not yet serving.
pub struct Host {
    listener: TcpListener,
    internal_listener: Option<TcpListener>,
    ops_listener: Option<TcpListener>,
    admin: Option<(TcpListener, Arc<Admin>)>,
    watch: Option<WatchSpec>,
    /// The release file, with the image's component and label it falls back to.
    release: Option<(ReleaseSpec, PathBuf, Option<String>)>,
    app: Arc<App>,
    broker: &'static str,
    listening: ListenerOptions,
}

impl Host {
    pub async fn build(spec: HostSpec) -> anyhow::Result<Self> {
        anyhow::ensure!(!spec.services.is_empty(), "no components to serve");
        // Before anything slow: a bad certificate or key stops the host at once, naming the file.
        let tls = spec.tls.as_ref().map(ServerTls::load).transpose()?;
        let metrics = Arc::new(Metrics::default());
        let local = Arc::new(LocalServices::default());
        let broker = if spec.capabilities.messaging.amqp_url.is_some() { "amqp" } else { "embedded" };
        let runtime = Runtime::new(spec.runtime.clone(), spec.capabilities(&metrics, &local).await?)?;
        let instances = Arc::new(Semaphore::new(spec.runtime.max_instances as usize));
        let probe_instances = Arc::new(Semaphore::new(PROBE_INSTANCES));
        // The pooling allocator keeps room for this many warm instances (runtime::pooling).
        let warm = WarmBudget::new(spec.runtime.warm_instances() as usize, metrics.clone());
        let mut services = Vec::new();
        for service in &spec.services {
            let ctx = || ServiceContext {
                runtime: runtime.clone(),
                limits: spec.limits.clone(),
                instances: instances.clone(),
                probe_instances: probe_instances.clone(),
                metrics: metrics.clone(),
                swap: spec.swap.clone(),
                isolation: spec.isolation,
                warm: warm.clone(),
            };
            let load = |path: PathBuf| {
                let ctx = ctx();
                async move {
                    let bytes = tokio::fs::read(&path)
                        .await
                        .with_context(|| format!("reading component {}", path.display()))?;
                    let digest = component_digest(&path).await;
                    Service::load(
                        &service.name,
                        &service.database_url,
                        bytes,
                        service.version_label.clone(),
                        digest,
                        ctx,
                    )
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
            let loaded = Arc::new(loaded);
            // In `skiff dev`, `http://users/...` from auth reaches the users component directly.
            local.register(&service.name, Arc::new(InProcess(Arc::downgrade(&loaded))));
            services.push(loaded);
        }
        let listener = TcpListener::bind(spec.listen).await.with_context(|| format!("binding {}", spec.listen))?;
        let internal_listener = match spec.internal_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?),
            None => None,
        };
        let ops_listener = match spec.ops_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding the operations listener {address}"))?,
            ),
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
        let app = Arc::new(App::new(services, Arc::new(Health::default()), metrics, spec.trusted_proxies.clone()));
        Ok(Self {
            listener,
            internal_listener,
            ops_listener,
            admin,
            watch: spec.watch,
            release: spec
                .release
                .zip(spec.services.first())
                .map(|(release, first)| (release, first.component.clone(), first.version_label.clone())),
            app,
            broker,
            listening: ListenerOptions { grace: spec.shutdown_grace, max_connections: spec.max_connections, tls },
        })
    }

    /// The loaded services, for embedding and measuring.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.app.services()
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.internal_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves. In the background it migrates every database, starts
    /// the consumers, then the outbox relays (so the embedded queue has its bindings before the
    /// first event), and only then reports started.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let app = self.app.clone();
        let address = self.local_addr().map(|a| a.to_string()).unwrap_or_default();
        // With a release file, the host is ready once the release is applied (or, if allowed,
        // fell back to the image's component), never on the image's component before.
        let (settled, mut release_settled) = watch::channel(self.release.is_none());
        let follower = match (self.release, self.app.services().next()) {
            (Some((spec, image, label)), Some(service)) => {
                service.set_release_status(release::initial_status(&spec));
                let service = service.clone();
                Some(tokio::spawn(async move {
                    // The image's version migrates first; the release's migrations run in its gate.
                    while !service.is_prepared() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    release::follow(service, spec, image, label, settled).await;
                }))
            }
            _ => None,
        };
        tokio::spawn(async move {
            for service in app.services() {
                service.prepare_until_done().await;
            }
            let _ = release_settled.wait_for(|settled| *settled).await;
            for service in app.services() {
                if let Err(error) = service.start().await {
                    tracing::error!(service = %service.name(), error = %format!("{error:#}"), "cannot start consuming");
                }
            }
            for service in app.services() {
                for task in service.background_tasks() {
                    tokio::spawn(task);
                }
                tokio::spawn(service.clone().drop_used_up_instances());
            }
            app.health().mark_started();
        });
        tracing::info!(address = %address, broker = self.broker, tls = self.listening.tls.is_some(), "listening");
        let (stop, stopped) = watch::channel(false);
        let wait = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let internal = self.internal_listener.map(|listener| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "internal listener");
            let serve = server::serve(listener, self.app.clone(), Listener::Internal, wait(stopped.clone()), self.listening.clone());
            tokio::spawn(serve)
        });
        let ops = self.ops_listener.map(|listener| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "operations listener");
            tokio::spawn(server::serve(listener, self.app.clone(), Listener::Ops, wait(stopped.clone()), self.listening.clone()))
        });
        let admin = self.admin.map(|(listener, api)| {
            tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin listener");
            tokio::spawn(admin::serve(listener, api, wait(stopped.clone()), self.listening.clone()))
        });
        let watcher = match (self.watch, self.app.services().next()) {
            (Some(spec), Some(service)) => Some(tokio::spawn(watch(service.clone(), spec))),
            _ => None,
        };
        let public = server::serve(self.listener, self.app, Listener::Public, wait(stopped), self.listening);
        tokio::pin!(public);
        tokio::select! {
            () = &mut public => {}
            () = shutdown => {
                let _ = stop.send(true);
                public.await;
            }
        }
        for listener in [internal, ops].into_iter().flatten() {
            let _ = listener.await;
        }
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        if let Some(follower) = follower {
            follower.abort();
        }
    }
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

/// The settings components see through `wasi:config`: all but the secrets the host keeps (the
/// token signing key is used by the host's `skiff:crypto` and the event signing key by its
/// outbox relay, never handed to a component).
fn component_settings(config: &[(String, String)]) -> Vec<(String, String)> {
    let host_only =
        |key: &str| Crypto::HOST_ONLY_SETTINGS.contains(&key) || MessagingCapability::HOST_ONLY_SETTINGS.contains(&key);
    config.iter().filter(|(key, _)| !host_only(key)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::component_settings;
    use crate::capability::crypto::{TOKEN_PUBLIC_KEY, TOKEN_SIGNING_KEY};
    use crate::capability::messaging::{EVENT_SIGNING_KEY, EVENT_TRUSTED_KEYS};

    #[test]
    fn components_never_see_the_signing_keys() {
        let config = [
            (TOKEN_SIGNING_KEY, "seed"),
            (TOKEN_PUBLIC_KEY, "public"),
            ("bcrypt_cost", "4"),
            (EVENT_SIGNING_KEY, "seed"),
            (EVENT_TRUSTED_KEYS, "auth=public"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let keys: Vec<String> = component_settings(&config).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, [TOKEN_PUBLIC_KEY, "bcrypt_cost", EVENT_TRUSTED_KEYS]);
    }
}
