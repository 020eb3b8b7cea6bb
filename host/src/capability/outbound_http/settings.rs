//! The outbound HTTP capability's flags and settings.

use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

use super::{OutboundHttpCapability, OutboundPolicy, parse_service_route};
use crate::capability::{Composed, HostResources};
use crate::tls::ClientTls;

#[derive(Debug, Clone, clap::Args)]
pub struct OutboundArgs {
    /// Where a service name resolves for outbound calls, `NAME=HOST:PORT` (e.g.
    /// `users=users-cluster-ip-service:4001`), or `NAME=https://HOST:PORT` to call it over
    /// TLS (checked against --tls-ca); repeatable or comma-separated.
    #[arg(long = "service", env = "SKIFF_SERVICES", value_parser = parse_service_route, value_delimiter = ',')]
    pub services: Vec<(String, String)>,
    /// Hosts (`HOST` or `HOST:PORT`) components may call directly, e.g. a webhook receiver;
    /// repeatable or comma-separated. Everything else is refused.
    #[arg(long = "outbound-allow", env = "SKIFF_OUTBOUND_ALLOW", value_delimiter = ',')]
    pub outbound_allow: Vec<String>,
    /// The CA bundle (PEM) that services routed as `NAME=https://HOST:PORT` must present a
    /// certificate from, for HOST.
    #[arg(long, env = "SKIFF_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// Where components' outbound calls may go.
#[derive(Debug, Clone, Default)]
pub struct OutboundSettings {
    /// Service name → `host:port` (or `https://host:port`).
    pub service_routes: Vec<(String, String)>,
    /// Other hosts components may call.
    pub allow: Vec<String>,
    /// The CA bundle that `https://` service routes' certificates must chain to.
    pub tls_ca: Option<PathBuf>,
}

#[async_trait]
impl Composed for OutboundHttpCapability {
    type Args = OutboundArgs;
    type Settings = OutboundSettings;

    fn settings(args: &OutboundArgs) -> OutboundSettings {
        OutboundSettings {
            service_routes: args.services.clone(),
            allow: args.outbound_allow.clone(),
            tls_ca: args.tls_ca.clone(),
        }
    }

    async fn build(settings: &OutboundSettings, host: &HostResources<'_>) -> anyhow::Result<Self> {
        let ca = match &settings.tls_ca {
            Some(path) => Some(Arc::new(ClientTls::from_ca_file(path)?)),
            None => None,
        };
        let policy =
            OutboundPolicy::new(settings.service_routes.clone(), settings.allow.clone(), host.local.clone(), ca)?;
        Ok(Self::new(policy))
    }
}
