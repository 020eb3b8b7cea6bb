//! Host capabilities a component imports. Each lives in its own folder with the same shape:
//! `mod.rs` holds the WIT bindings, the capability's per-service and per-instance state, its
//! `add_to_linker` (generic over the embedder's store data, as wasmtime's own `wasi-config`
//! does) and its [`Capability`] implementation; `host.rs` implements the generated `Host`
//! traits; backends sit behind a trait in `client.rs`, and the choice between them in a file of
//! its own.
//!
//! No capability names the runtime's store type, a service or the server: the runtime reaches
//! each through the [`Capability`] trait, and a capability reaches its own state in a store
//! through [`CapabilityStore`]. Each capability owns its flags and its settings ([`Composed`]).
//! Adding one is its folder, its `pub mod` line and its line in `host_capabilities!` below
//! (see `docs/architecture.md`).

#[macro_use]
mod compose;
pub mod config;
pub mod crypto;
mod exports;
pub mod logging;
pub mod messaging;
pub mod outbound_http;
mod registry;
pub mod request;
pub mod sql;

// The host's capabilities, in the order they are configured for a service: messaging's outbox
// writes through the service's database, so sql comes before it.
host_capabilities! {
    config: config::ConfigCapability,
    logging: logging::LoggingCapability,
    crypto: crypto::CryptoCapability,
    sql: sql::SqlCapability,
    messaging: messaging::MessagingCapability,
    outbound_http: outbound_http::OutboundHttpCapability,
}

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceTable};

pub use compose::{Composed, HostResources, NoFlags};
pub use exports::{ActiveInstances, ExportInstance, VersionExports, VersionRefused};
pub use registry::{HasEarlierState, HasInstanceState, HasServiceState, ServiceFacts};

/// One capability's lifecycle, as the runtime drives it: link its imports once per engine,
/// configure it once per service, give every instance its state, and ask it whether the service
/// is ready and what it runs in the background. A capability that calls the component (its
/// exports: migrations, a consumer) does so in three hooks, on instances the service gives it:
/// it checks a candidate version against the running one, prepares a version before it serves,
/// and starts what it calls for the life of the process.
#[async_trait]
pub trait Capability: Send + Sync + 'static {
    /// Shared by every instance of one service (a database pool, an outbox).
    type Service: Send + Sync + 'static;
    /// What one instance's store holds (usually a cheap clone of the service's state).
    type Instance: Send + 'static;

    /// For logs and errors.
    fn name(&self) -> &'static str;

    /// Adds this capability's imports to `linker`.
    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()>;

    /// Sets the capability up for one service; may read the state of capabilities composed
    /// before it (messaging writes its outbox through the service's database).
    async fn configure(&self, service: &ServiceSetup<'_>) -> anyhow::Result<Self::Service>;

    /// The state one new instance of the service gets.
    fn instance(&self, service: &Self::Service) -> Self::Instance;

    /// Work that needs the service's backends reachable (creating tables); retried with the
    /// service's migrations until it succeeds.
    async fn prepare(&self, _service: &Self::Service) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether the service can serve now; `Err` says what is missing.
    async fn ready(&self, _service: &Self::Service) -> Result<(), String> {
        Ok(())
    }

    /// Tasks that run for the life of the process once the service is prepared (an outbox
    /// relay).
    fn background(&self, _service: &Self::Service, _service_name: &str) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }

    /// Whether `candidate` can take over from `running` as far as this capability is concerned
    /// (the exports it calls are still there, and ask for the same); `Err` says why not.
    async fn check_candidate<T: CapabilityStore>(
        &self,
        _service: &Self::Service,
        _running: &dyn VersionExports<T>,
        _candidate: &dyn VersionExports<T>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Work a version needs done before it serves, through its exports (applying its
    /// migrations): for the image's version at start, retried until it succeeds, and for a
    /// candidate before the switch, refusing it on failure.
    async fn prepare_version<T: CapabilityStore>(
        &self,
        _service: &Self::Service,
        _version: &dyn VersionExports<T>,
    ) -> Result<(), VersionRefused> {
        Ok(())
    }

    /// Starts what calls the component for the life of the process (a consumer), once the
    /// service is prepared, on instances of whichever version serves.
    async fn start<T: CapabilityStore>(
        &self,
        _service: &Self::Service,
        _instances: Arc<dyn ActiveInstances<T>>,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a capability learns about the service it is configured for.
pub struct ServiceSetup<'a> {
    pub service: &'a ServiceFacts,
    /// The state of the capabilities configured for this service so far.
    pub earlier: &'a EarlierStates,
}

impl ServiceSetup<'_> {
    /// The state of capability `C` for this service, if it was composed before the caller.
    pub fn state_of<C: Capability>(&self) -> Option<Arc<C::Service>>
    where
        EarlierStates: HasEarlierState<C>,
    {
        self.earlier.earlier_state().cloned()
    }

    /// Whether the component imports an interface whose name starts with `prefix`.
    pub fn imports_interface(&self, prefix: &str) -> bool {
        self.service.imports.iter().any(|name| name.starts_with(prefix))
    }

    /// Whether the component exports an interface whose name starts with `prefix`.
    pub fn exports_interface(&self, prefix: &str) -> bool {
        self.service.exports.iter().any(|name| name.starts_with(prefix))
    }
}

/// The part of a store a capability's host functions borrow: its own per-instance state and
/// the instance's resource table.
pub struct InstanceView<'a, S> {
    pub state: &'a mut S,
    pub table: &'a mut ResourceTable,
}

/// Store data that carries the capabilities' per-instance states. The runtime's store type
/// implements it; capabilities are generic over it and never name that type.
pub trait CapabilityStore: Send + 'static {
    /// Capability `C`'s state in this instance, and the instance's resource table.
    fn capability<C: Capability>(&mut self) -> InstanceView<'_, C::Instance>
    where
        InstanceStates: HasInstanceState<C>;

    /// Cancelled once nobody waits for the instance's answer any more (see [`CallerGone`]).
    fn caller_gone(&self) -> &CallerGone;

    /// Where the request the instance serves came from.
    fn request_origin(&self) -> request::RequestOrigin;
}

/// Whether the caller of an instance still waits for its answer: cancelled when the request's
/// task stops driving an instance that has not answered (the client went away, or a caller's
/// timeout dropped the request). Costly work that has not started by then (a bcrypt hash
/// waiting for a thread) is not started.
pub type CallerGone = tokio_util::sync::CancellationToken;
