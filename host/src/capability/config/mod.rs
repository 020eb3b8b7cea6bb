//! `wasi:config/store`: a component's settings, given to the host as `key=value` pairs.

use std::sync::Arc;
use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;
pub use wasmtime_wasi_config::WasiConfigVariables;

use crate::runtime::HostState;

/// The settings every instance of a component sees; shared, never copied per request.
#[derive(Clone, Default)]
pub struct ComponentConfig(Arc<WasiConfigVariables>);

impl ComponentConfig {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(Arc::new(pairs.into_iter().collect()))
    }

    fn view(&self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.0)
    }
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, |state| state.config.view())?;
    Ok(())
}

/// Parses a `key=value` argument; the key is what the component asks `wasi:config` for.
pub fn parse_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
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
