//! What every part of a service shares: its name, its limits, its capabilities and their
//! states for it, and the state and store of a new instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ComponentVersion, ServiceContext};
use crate::capability::{ExportInstance, HostCapabilities, InstanceStates, ServiceStates, VersionExports};
use crate::metrics::{RollbackLabels, SwapLabels};
use crate::runtime::HostState;

/// How long a setup call into a version (listing its migrations or its subscriptions) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServiceCore {
    pub(super) name: String,
    pub(super) ctx: ServiceContext,
    /// The host's capabilities, and each one's state for this service.
    pub(super) capabilities: Arc<HostCapabilities>,
    pub(super) states: ServiceStates,
}

impl ServiceCore {
    /// The capabilities' states for one instance's next request.
    pub(super) fn instance_states(&self) -> InstanceStates {
        self.capabilities.instances(&self.states)
    }

    /// The state of a new instance.
    pub(super) fn new_state(&self) -> HostState {
        self.ctx.runtime.instance_state(self.instance_states())
    }

    /// `version` as the capabilities see it from the export side.
    pub(super) fn exports_of(self: &Arc<Self>, version: Arc<ComponentVersion>) -> VersionOf {
        VersionOf { core: self.clone(), version }
    }

    pub(super) fn count_rollback(&self, reason: &str) {
        let labels = RollbackLabels { route: self.name.clone(), reason: reason.into() };
        self.ctx.metrics.rollbacks.get_or_create(&labels).inc();
    }

    pub(super) fn count_swap(&self, result: &str) {
        self.ctx.metrics.swaps.get_or_create(&SwapLabels { route: self.name.clone(), result: result.into() }).inc();
    }
}

/// One version of the service's component, for the capabilities that call its exports.
pub struct VersionOf {
    core: Arc<ServiceCore>,
    version: Arc<ComponentVersion>,
}

impl VersionExports<HostState> for VersionOf {
    fn label(&self) -> &str {
        &self.version.label
    }

    fn imports(&self) -> &[String] {
        &self.version.imports
    }

    fn exports(&self) -> &[String] {
        &self.version.exports
    }

    fn setup_instance(&self) -> ExportInstance<HostState> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let store = self.core.ctx.runtime.store(self.core.new_state(), deadline);
        ExportInstance::new(store, self.version.instance_pre.clone(), deadline)
    }
}
