//! `wasi:config/store`: a component's settings, given to the host as `key=value` pairs.

use async_trait::async_trait;
use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;
pub use wasmtime_wasi_config::WasiConfigVariables;

use super::{Capability, CapabilityStore, Composed, HostResources, NoFlags, ServiceSetup};

/// The settings every instance of a component sees; shared, never copied per request.
#[derive(Clone, Default)]
pub struct ComponentConfig(Arc<WasiConfigVariables>);

impl ComponentConfig {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(Arc::new(pairs.into_iter().collect()))
    }

    pub fn view(&self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.0)
    }
}

/// Links `wasi:config/store`; `get` borrows the instance's settings from the store.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> WasiConfig<'_>) -> anyhow::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, get)?;
    Ok(())
}

/// The configuration capability: one set of settings for every service of the host.
pub struct ConfigCapability {
    settings: ComponentConfig,
}

impl ConfigCapability {
    pub fn new(settings: ComponentConfig) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Capability for ConfigCapability {
    type Service = ComponentConfig;
    type Instance = ComponentConfig;

    fn name(&self) -> &'static str {
        "config"
    }

    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        add_to_linker(linker, |store| store.capability::<Self>().state.view())
    }

    async fn configure(&self, _service: &ServiceSetup<'_>) -> anyhow::Result<ComponentConfig> {
        Ok(self.settings.clone())
    }

    fn instance(&self, service: &ComponentConfig) -> ComponentConfig {
        service.clone()
    }
}

/// Parses a `key=value` argument; the key is what the component asks `wasi:config` for.
pub fn parse_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// The settings are every component's (`--config`, a host-level flag): nothing of its own.
#[async_trait]
impl Composed for ConfigCapability {
    type Args = NoFlags;
    type Settings = ();

    fn settings(_args: &NoFlags) {}

    async fn build(_settings: &(), host: &HostResources<'_>) -> anyhow::Result<Self> {
        Ok(Self::new(ComponentConfig::from_pairs(host.component_settings.iter().cloned())))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pair;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_pair("bcrypt_cost=12"), Ok(("bcrypt_cost".into(), "12".into())));
        assert_eq!(parse_pair("url=a=b"), Ok(("url".into(), "a=b".into())));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }
}
