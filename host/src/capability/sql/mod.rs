//! `skiff:sql`: typed SQL for components, on Postgres or the embedded SQLite.
//!
//! `client.rs` holds the database traits the rest of the host uses; `sqlx_client.rs` implements
//! them once over sqlx, with `postgres.rs` and `sqlite.rs` (and its `sqlite_catalog.rs` of
//! declared column types) saying what differs; `connect.rs` picks the backend a URL names;
//! `host.rs` is the WIT `Host` traits; `migrate.rs` applies a component's migrations.

mod client;
mod connect;
mod host;
mod migrate;
mod postgres;
mod settings;
mod sqlite;
mod sqlite_catalog;
mod sqlx_client;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasData, Linker, ResourceTable};

pub use client::{DatabaseOptions, SqlClient, SqlTransaction, TransactionSlot};
pub use connect::Database;
pub use migrate::{MIGRATIONS_INTERFACE, MigrationError, apply_migrations};
pub use settings::SqlArgs;

/// The URL of service `name`'s embedded database under `data_dir`.
pub fn sqlite_url(data_dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}

use super::{Capability, CapabilityStore, InstanceView, ServiceSetup, VersionExports, VersionRefused};

// The only place the SQL world is turned into Rust (messaging reuses its `transaction`).
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:sql/sql-service",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "skiff:sql/client.transaction": super::client::TransactionSlot,
        },
    });
}

pub use bindings::SqlServicePre as MigrationsPre;
pub use bindings::exports::skiff::sql::migrations::Migration;
pub use bindings::skiff::sql::types::{Error as SqlError, Rows, Value, ValueKind};

/// What the SQL host functions borrow from the store for one call.
pub struct SqlView<'a> {
    client: &'a Arc<dyn SqlClient>,
    table: &'a mut ResourceTable,
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

impl<'a> SqlView<'a> {
    pub fn new(client: &'a Arc<dyn SqlClient>, table: &'a mut ResourceTable) -> Self {
        Self { client, table }
    }
}

/// Links `skiff:sql`; `get` borrows the instance's database and resource table from the store.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> SqlView<'_>) -> anyhow::Result<()> {
    bindings::skiff::sql::types::add_to_linker::<T, HasSql>(linker, get)?;
    bindings::skiff::sql::client::add_to_linker::<T, HasSql>(linker, get)?;
    Ok(())
}

/// How long readiness waits for the database to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The SQL capability: each service gets a pool on its own database.
pub struct SqlCapability {
    options: DatabaseOptions,
}

impl SqlCapability {
    pub fn new(options: DatabaseOptions) -> Self {
        Self { options }
    }
}

#[async_trait]
impl Capability for SqlCapability {
    type Service = Arc<dyn SqlClient>;
    type Instance = Arc<dyn SqlClient>;

    fn name(&self) -> &'static str {
        "sql"
    }

    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        add_to_linker(linker, |store| {
            let InstanceView { state, table } = store.capability::<Self>();
            SqlView::new(state, table)
        })
    }

    async fn configure(&self, service: &ServiceSetup<'_>) -> anyhow::Result<Arc<dyn SqlClient>> {
        Database::connect(&service.service.database_url, &self.options).await
    }

    fn instance(&self, service: &Arc<dyn SqlClient>) -> Arc<dyn SqlClient> {
        service.clone()
    }

    async fn ready(&self, service: &Arc<dyn SqlClient>) -> Result<(), String> {
        match tokio::time::timeout(PING_TIMEOUT, service.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("the database does not answer: {error:?}")),
            Err(_) => Err(format!("the database did not answer within {PING_TIMEOUT:?}")),
        }
    }

    /// A running version's migrations may not disappear: its schema would have no owner.
    async fn check_candidate<T: CapabilityStore>(
        &self,
        _service: &Arc<dyn SqlClient>,
        running: &dyn VersionExports<T>,
        candidate: &dyn VersionExports<T>,
    ) -> Result<(), String> {
        if running.exports_interface(MIGRATIONS_INTERFACE) && !candidate.exports_interface(MIGRATIONS_INTERFACE) {
            return Err("the running version exports skiff:sql/migrations and the candidate does not".into());
        }
        Ok(())
    }

    /// Applies the version's migrations. A candidate's run before the switch, while the old
    /// version still serves, so they must be forward-compatible (expand, then contract in a
    /// later release).
    async fn prepare_version<T: CapabilityStore>(
        &self,
        service: &Arc<dyn SqlClient>,
        version: &dyn VersionExports<T>,
    ) -> Result<(), VersionRefused> {
        migrate::migrate_version(service, version).await
    }
}
