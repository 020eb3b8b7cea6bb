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
/// read in `configure` the state of those before it). From the one list it generates, with a
/// field per capability:
/// - [`CapabilityArgs`](super::CapabilityArgs): every capability's flags, flattened into the
///   host verbs, and [`CapabilitySettings`](super::CapabilitySettings): its settings;
/// - [`HostCapabilities`](super::HostCapabilities): the capabilities, built; it links, configures
///   per service, makes instance states, prepares, asks readiness and starts background tasks,
///   each in the list's order;
/// - [`ServiceStates`](super::ServiceStates) and [`InstanceStates`](super::InstanceStates):
///   their states per service and per instance, reached by type through the `Has…State` traits
///   (`registry.rs`), with no lookup at run time.
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
            /// Builds every capability.
            pub async fn compose(&self, host: &HostResources<'_>) -> anyhow::Result<HostCapabilities> {
                Ok(HostCapabilities { $($field: <$capability as Composed>::build(&self.$field, host).await?,)+ })
            }
        }

        /// The capabilities of a host, built.
        pub struct HostCapabilities {
            $(pub $field: $capability,)+
        }

        /// Every capability's state for one service.
        pub struct ServiceStates {
            $(pub $field: Arc<<$capability as Capability>::Service>,)+
        }

        /// Every capability's state for one instance, kept in its store.
        pub struct InstanceStates {
            $(pub $field: <$capability as Capability>::Instance,)+
        }

        /// The states of the capabilities configured so far for a service.
        #[derive(Default)]
        pub struct EarlierStates {
            $($field: Option<Arc<<$capability as Capability>::Service>>,)+
        }

        $(
            impl registry::HasInstanceState<$capability> for InstanceStates {
                fn instance_state(&mut self) -> &mut <$capability as Capability>::Instance {
                    &mut self.$field
                }
            }

            impl registry::HasServiceState<$capability> for ServiceStates {
                fn service_state(&self) -> &Arc<<$capability as Capability>::Service> {
                    &self.$field
                }
            }

            impl registry::HasEarlierState<$capability> for EarlierStates {
                fn earlier_state(&self) -> Option<&Arc<<$capability as Capability>::Service>> {
                    self.$field.as_ref()
                }
            }
        )+

        impl HostCapabilities {
            /// Adds every capability's imports to `linker`.
            pub fn add_to_linker<T: CapabilityStore>(linker: &mut wasmtime::component::Linker<T>) -> anyhow::Result<()> {
                $(
                    <$capability as Capability>::add_to_linker(linker)
                        .map_err(|e| e.context(concat!("linking the ", stringify!($field), " capability")))?;
                )+
                Ok(())
            }

            /// Configures every capability for one service, each seeing the ones before it.
            pub async fn configure(&self, service: &ServiceFacts) -> anyhow::Result<ServiceStates> {
                let mut earlier = EarlierStates::default();
                $(
                    let setup = ServiceSetup { service, earlier: &earlier };
                    let $field = self.$field.configure(&setup).await.map_err(|e| {
                        e.context(format!("setting up {} for {}", self.$field.name(), service.name))
                    })?;
                    let $field = Arc::new($field);
                    earlier.$field = Some($field.clone());
                )+
                Ok(ServiceStates { $($field,)+ })
            }

            /// The per-instance states for a new instance of the service (or a warm instance's
            /// next request).
            pub fn instances(&self, service: &ServiceStates) -> InstanceStates {
                InstanceStates { $($field: self.$field.instance(&service.$field),)+ }
            }

            /// Work that needs the service's backends reachable, in the list's order.
            pub async fn prepare(&self, service: &ServiceStates) -> anyhow::Result<()> {
                $(
                    self.$field
                        .prepare(&service.$field)
                        .await
                        .map_err(|e| e.context(format!("preparing {}", self.$field.name())))?;
                )+
                Ok(())
            }

            /// `Err` names the first capability that is not ready and why.
            pub async fn ready(&self, service: &ServiceStates) -> Result<(), String> {
                $(
                    self.$field.ready(&service.$field).await.map_err(|why| format!("{}: {why}", self.$field.name()))?;
                )+
                Ok(())
            }

            /// Every capability's verdict on `candidate` taking over from `running`; the first
            /// `Err` names the capability and why.
            pub async fn check_candidate<T: CapabilityStore>(
                &self,
                service: &ServiceStates,
                running: &dyn VersionExports<T>,
                candidate: &dyn VersionExports<T>,
            ) -> Result<(), String> {
                $(
                    self.$field.check_candidate(&service.$field, running, candidate).await?;
                )+
                Ok(())
            }

            /// Prepares `version` to serve, capability by capability in the list's order.
            pub async fn prepare_version<T: CapabilityStore>(
                &self,
                service: &ServiceStates,
                version: &dyn VersionExports<T>,
            ) -> Result<(), VersionRefused> {
                $(self.$field.prepare_version(&service.$field, version).await?;)+
                Ok(())
            }

            /// Starts what each capability calls in the component for the life of the process.
            pub async fn start<T: CapabilityStore>(
                &self,
                service: &ServiceStates,
                instances: Arc<dyn ActiveInstances<T>>,
            ) -> anyhow::Result<()> {
                $(
                    self.$field
                        .start(&service.$field, instances.clone())
                        .await
                        .map_err(|e| e.context(format!("starting {}", self.$field.name())))?;
                )+
                Ok(())
            }

            /// What the capabilities run for the life of the process for this service.
            pub fn background(&self, service: &ServiceStates, service_name: &str) -> Vec<BoxFuture<'static, ()>> {
                let mut tasks = Vec::new();
                $(tasks.extend(self.$field.background(&service.$field, service_name));)+
                tasks
            }
        }
    };
}
