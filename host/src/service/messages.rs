//! The message path: fresh instances of the active version for the capabilities that call the
//! component for the life of the process (a consumer's deliveries), each holding one of the
//! host's instance slots, so they stay within the instance limit.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

use super::service_core::ServiceCore;
use super::slot::Slot;
use crate::capability::{ActiveInstances, ExportInstance, VersionExports};
use crate::metrics::Metrics;
use crate::runtime::HostState;

pub struct MessagePath {
    pub(super) core: Arc<ServiceCore>,
    pub(super) slot: Arc<Slot>,
}

#[async_trait]
impl ActiveInstances<HostState> for MessagePath {
    fn active(&self) -> Box<dyn VersionExports<HostState>> {
        Box::new(self.core.exports_of(self.slot.active()))
    }

    async fn for_message(&self, message_id: &str) -> anyhow::Result<ExportInstance<HostState>> {
        let ctx = &self.core.ctx;
        let permit = ctx.instances.clone().acquire_owned().await?;
        let version = self.slot.active();
        let deadline = Instant::now() + ctx.limits.timeout;
        // The component's own log records (wasi:logging) go under this span.
        let span = tracing::info_span!("component", service = %self.core.name, version = %version.label, message = %message_id);
        let store = ctx.runtime.store(span.in_scope(|| self.core.new_state()), deadline);
        let live = LiveInstance::new(ctx.metrics.clone());
        Ok(ExportInstance::new(store, version.instance_pre.clone(), deadline).holding((permit, live)))
    }
}

/// Counts an instance in the live-instance gauge while it exists.
struct LiveInstance(Arc<Metrics>);

impl LiveInstance {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.live_instances.inc();
        Self(metrics)
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.live_instances.dec();
    }
}
