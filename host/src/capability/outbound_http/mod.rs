//! `wasi:http/outgoing-handler` for components: only service names and allow-listed hosts are
//! reachable. A service name resolves to a `host:port` from configuration (the Kubernetes
//! Service DNS name in a cluster) or, in `skiff dev`, to the component in this process.
//!
//! A route written `NAME=https://HOST:PORT` is called over TLS, the peer's certificate checked
//! against the configured CA bundle and HOST (`send_tls.rs`), whatever scheme the component
//! used: the component does not know where its callee runs.
//!
//! `hooks.rs` is the policy and the hooks wasi:http calls, `local.rs` the narrow trait through
//! which services of this process are reached. The wasi:http interfaces themselves are linked
//! with the rest of WASI by the runtime; this capability gives each instance its hooks.

mod hooks;
mod local;
mod send_tls;
mod settings;
mod timeouts;

use async_trait::async_trait;
use std::sync::Arc;
use wasmtime::component::Linker;

pub use hooks::{OutboundHttp, OutboundPolicy, RouteError, parse_service_route};
pub use local::{LocalService, LocalServices};
pub use settings::{OutboundArgs, OutboundSettings};

use super::{Capability, CapabilityStore, ServiceSetup};

/// The outbound HTTP capability: one policy for every service of the host.
pub struct OutboundHttpCapability {
    policy: Arc<OutboundPolicy>,
}

impl OutboundHttpCapability {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy: Arc::new(policy) }
    }
}

#[async_trait]
impl Capability for OutboundHttpCapability {
    type Service = Arc<OutboundPolicy>;
    type Instance = OutboundHttp;

    fn name(&self) -> &'static str {
        "outbound-http"
    }

    fn add_to_linker<T: CapabilityStore>(_linker: &mut Linker<T>) -> anyhow::Result<()> {
        // wasi:http is linked with WASI; the hooks below are what this capability adds.
        Ok(())
    }

    async fn configure(&self, _service: &ServiceSetup<'_>) -> anyhow::Result<Arc<OutboundPolicy>> {
        Ok(self.policy.clone())
    }

    fn instance(&self, service: &Arc<OutboundPolicy>) -> OutboundHttp {
        OutboundHttp(service.clone())
    }
}
