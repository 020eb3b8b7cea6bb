//! A service: one component, its versions and its capabilities, in parts by job, each a type of
//! its own over a shared [`ServiceCore`] (`service_core.rs`: the name, the limits, the capabilities'
//! states, new instances):
//! - the request path ([`RequestPath`], `invoke.rs`, with what a request counts in
//!   `record.rs`): a request into an instance, a warm one of its version or a fresh one
//!   ([`Isolation`], `warm.rs`);
//! - the message path ([`MessagePath`], `messages.rs`): fresh instances of the active version
//!   for the capabilities that call the component for the life of the process (a consumer);
//! - versions and rollout ([`Versions`], `rollout.rs`, over the slot in `slot.rs`): the gate a
//!   candidate passes, the switch, canaries, rollback;
//! - preparation ([`Preparation`], `prepare.rs`): the active version prepared by the
//!   capabilities before the service is ready (its migrations).
//!
//! No part names a capability: what calls the component's exports (migrations, consumers) is
//! the capabilities' own, reached through their lifecycle hooks.

mod canary;
mod invoke;
mod messages;
mod outcome;
mod prepare;
mod record;
mod release_status;
mod rollout;
mod service_core;
mod slot;
mod version;
mod warm;

use std::sync::Arc;
use tokio::sync::Semaphore;

pub use canary::CanaryPolicy;
pub use invoke::{RequestLimits, RequestPath};
pub use messages::MessagePath;
pub use outcome::{Handled, Outcome};
pub use prepare::Preparation;
pub use release_status::{ReleasePhase, ReleaseStatus};
pub use rollout::{Candidate, DeployError, Deployment, SwapOptions, Versions};
pub use service_core::ServiceCore;
pub use slot::{RolledBack, SlotError, VersionInfo, VersionState};
pub use version::{
    ComponentVersion, Origin, component_digest, component_interfaces, digest_of, precompile, short_digest, valid_label,
    wasm_beside,
};
pub use warm::{Isolation, WarmBudget};

use crate::capability::ServiceFacts;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
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
    core: Arc<ServiceCore>,
    requests: Arc<RequestPath>,
    messages: Arc<MessagePath>,
    versions: Versions,
    preparation: Preparation,
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
        let Some(capabilities) = ctx.runtime.capabilities().cloned() else {
            anyhow::bail!("this runtime only compiles components: it has no capabilities to serve {name} with");
        };
        let states = capabilities.configure(&facts).await?;
        let slot = Arc::new(Slot::new(version, ctx.swap.keep_versions, ctx.swap.canary.clone()));
        let core = Arc::new(ServiceCore { name: name.to_owned(), ctx, capabilities, states });
        Ok(Self {
            requests: Arc::new(RequestPath { core: core.clone(), slot: slot.clone() }),
            messages: Arc::new(MessagePath { core: core.clone(), slot: slot.clone() }),
            versions: Versions::new(core.clone(), slot.clone()),
            preparation: Preparation::new(core.clone(), slot),
            release: std::sync::Mutex::new(None),
            core,
        })
    }

    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The request path.
    pub fn requests(&self) -> &RequestPath {
        &self.requests
    }

    /// The loaded versions and their rollout.
    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    /// Serves one request on an instance of the current version (see [`RequestPath::handle`]).
    pub async fn handle<B>(&self, request: http::Request<B>) -> Handled
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.requests.handle(request).await
    }

    /// Takes `candidate` through the gate (see [`Versions::deploy`]).
    pub async fn deploy(&self, candidate: Candidate) -> Result<Deployment, DeployError> {
        self.versions.deploy(candidate, &self.requests).await
    }

    /// The active version (the one messages and non-canary requests run on).
    pub fn current(&self) -> Arc<ComponentVersion> {
        self.versions.current()
    }

    /// Prepares the service to serve, retrying until it can (see [`Preparation`]).
    pub async fn prepare_until_done(&self) {
        self.preparation.until_done().await
    }

    pub fn is_prepared(&self) -> bool {
        self.preparation.is_done()
    }

    /// Starts what the capabilities call in the component for the life of the process (the
    /// consumers), once the service is prepared.
    pub async fn start(&self) -> anyhow::Result<()> {
        let instances: Arc<dyn crate::capability::ActiveInstances<crate::runtime::HostState>> = self.messages.clone();
        self.core.capabilities.start(&self.core.states, instances).await
    }

    /// What the capabilities run in the background for this service (an outbox relay).
    pub fn background_tasks(&self) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        self.core.capabilities.background(&self.core.states, &self.core.name)
    }

    /// Drops the warm instances whose budget ran out while they waited, so a service without
    /// traffic gives their memory back. Runs for the life of the process.
    pub async fn drop_used_up_instances(self: Arc<Self>) {
        self.requests.clone().drop_used_up_instances().await
    }

    /// Ready = prepared (migrations applied) and every capability ready (the database answers
    /// now, a consumer is subscribed); `Err` says what is missing.
    pub async fn readiness(&self) -> Result<(), String> {
        if let Some(missing) = self.preparation.missing() {
            return Err(missing);
        }
        if let Some(release) = self.release_status().filter(|release| !release.serving()) {
            return Err(release.describe());
        }
        self.core.capabilities.ready(&self.core.states).await
    }

    /// Where the service stands with its release file; `None` without one.
    pub fn release_status(&self) -> Option<ReleaseStatus> {
        self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Records where the service stands with its release file, and says so in the metrics.
    pub fn set_release_status(&self, status: ReleaseStatus) {
        let route = crate::metrics::RouteLabels { route: self.core.name.clone() };
        let metrics = &self.core.ctx.metrics;
        metrics.release_converged.get_or_create(&route).set(i64::from(status.phase == ReleasePhase::Applied));
        metrics.release_fallback.get_or_create(&route).set(i64::from(status.fallback));
        *self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }

    /// Counts a release the service refused, by why.
    pub fn count_release_refusal(&self, reason: &str) {
        let labels = crate::metrics::SwapLabels { route: self.core.name.clone(), result: reason.to_owned() };
        self.core.ctx.metrics.release_refusals.get_or_create(&labels).inc();
    }
}
