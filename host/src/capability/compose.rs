//! How the host builds its capabilities from its settings. Each capability owns its flags (a clap
//! `Args` of its own, flattened into every host verb) and its part of the host's settings; the
//! list in `capability/mod.rs` (`host_capabilities!`) is the one place that names them all.

use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

use super::Capability;
use super::outbound_http::LocalServices;
use crate::metrics::Metrics;

/// What the host gives every capability it builds, besides the capability's own settings.
pub struct HostResources<'a> {
    pub metrics: &'a Arc<Metrics>,
    /// Services of this process, for calls between them without a socket (`skiff dev`).
    pub local: &'a Arc<LocalServices>,
    /// Where embedded state lives (SQLite files, the embedded queue).
    pub data_dir: &'a Path,
    /// Every component setting (`--config`, `SKIFF_CONFIG_<KEY>`), the secrets only the host
    /// may read (signing keys) included.
    pub host_settings: &'a [(String, String)],
    /// The component settings without those secrets: what `wasi:config` shows a component.
    pub component_settings: &'a [(String, String)],
}

/// A capability the host composes from settings of its own.
#[async_trait]
pub trait Composed: Capability + Sized {
    /// Its flags and environment variables; [`NoFlags`] for none.
    type Args: clap::Args + clap::FromArgMatches + Clone + std::fmt::Debug + Send + Sync;
    /// Its part of the host's settings; `Default` is what the flags default to.
    type Settings: Clone + std::fmt::Debug + Default + Send + Sync;

    /// The settings the flags say.
    fn settings(args: &Self::Args) -> Self::Settings;

    /// The capability, ready to be composed.
    async fn build(settings: &Self::Settings, host: &HostResources<'_>) -> anyhow::Result<Self>;
}

/// The flags of a capability that has none.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoFlags {}

/// Declares the host's capabilities, in the order they are configured for a service (one may
/// read in `configure` the state of those before it): every capability's flags together
/// ([`CapabilityArgs`](super::CapabilityArgs)), its settings together
/// ([`CapabilitySettings`](super::CapabilitySettings)), and building them all.
macro_rules! host_capabilities {
    ($($field:ident: $capability:ty),+ $(,)?) => {
        /// Every capability's flags and environment variables, flattened into each host verb.
        #[derive(Debug, Clone, clap::Args)]
        pub struct CapabilityArgs {
            $(
                #[command(flatten)]
                pub $field: <$capability as Composed>::Args,
            )+
        }

        /// Every capability's part of the host's settings.
        #[derive(Debug, Clone, Default)]
        pub struct CapabilitySettings {
            $(pub $field: <$capability as Composed>::Settings,)+
        }

        impl CapabilityArgs {
            pub fn settings(&self) -> CapabilitySettings {
                CapabilitySettings { $($field: <$capability as Composed>::settings(&self.$field),)+ }
            }
        }

        impl CapabilitySettings {
            /// Builds every capability and composes them in the list's order.
            pub async fn compose<T: CapabilityStore>(&self, host: &HostResources<'_>) -> anyhow::Result<Capabilities<T>> {
                Ok(Capabilities::default()
                    $(.with(<$capability as Composed>::build(&self.$field, host).await?))+)
            }
        }
    };
}
