//! How the runtime reaches each capability's state, typed: `host_capabilities!` (in
//! `capability/mod.rs`, from `compose.rs`) generates one struct field per capability for the
//! capabilities themselves ([`HostCapabilities`](super::HostCapabilities)), their state per
//! service ([`ServiceStates`](super::ServiceStates)) and per instance
//! ([`InstanceStates`](super::InstanceStates)), and implements the traits below for each listed
//! capability. A capability that is not in the list has no state to ask for: asking for it does
//! not compile, instead of failing at run time.

use std::sync::Arc;

use super::Capability;

/// What the runtime knows of a service when its capabilities are configured.
#[derive(Debug, Clone)]
pub struct ServiceFacts {
    pub name: String,
    /// Where the service's own database lives (`postgres://…` or `sqlite://…`).
    pub database_url: String,
    /// The interfaces the component imports, e.g. `skiff:messaging/producer@0.3.0`.
    pub imports: Vec<String>,
    /// The interfaces it exports, e.g. `skiff:messaging/consumer@0.3.0`.
    pub exports: Vec<String>,
}

/// Holds capability `C`'s state for one instance.
pub trait HasInstanceState<C: Capability> {
    fn instance_state(&mut self) -> &mut C::Instance;
}

/// Holds capability `C`'s state for one service.
pub trait HasServiceState<C: Capability> {
    fn service_state(&self) -> &Arc<C::Service>;
}

/// May hold capability `C`'s state for one service: while a service's capabilities are
/// configured, those composed before the one being configured have theirs.
pub trait HasEarlierState<C: Capability> {
    fn earlier_state(&self) -> Option<&Arc<C::Service>>;
}
