//! The sql capability's flags and settings.

use async_trait::async_trait;

use super::{DatabaseOptions, SqlCapability};
use crate::capability::{Composed, HostResources};

#[derive(Debug, Clone, clap::Args)]
pub struct SqlArgs {
    /// Connections per database pool.
    #[arg(long, env = "SKIFF_DB_MAX_CONNECTIONS", default_value_t = DatabaseOptions::DEFAULT_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
}

#[async_trait]
impl Composed for SqlCapability {
    type Args = SqlArgs;
    type Settings = DatabaseOptions;

    fn settings(args: &SqlArgs) -> DatabaseOptions {
        DatabaseOptions { max_connections: args.db_max_connections, ..DatabaseOptions::default() }
    }

    async fn build(settings: &DatabaseOptions, _host: &HostResources<'_>) -> anyhow::Result<Self> {
        Ok(Self::new(settings.clone()))
    }
}
