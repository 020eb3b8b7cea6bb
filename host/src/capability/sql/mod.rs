//! `skiff:sql`: typed SQL for components, on Postgres or the embedded SQLite.
//!
//! `client.rs` is the backend trait, `postgres.rs` and `sqlite.rs` its two implementations,
//! `host.rs` the WIT `Host` traits over it, and `migrate.rs` applies a component's migrations.

mod client;
mod host;
mod migrate;
mod postgres;
mod sqlite;

use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};

pub use client::{Database, DatabaseOptions, SqlClient, SqlTransaction};
pub use migrate::apply_migrations;

use crate::runtime::HostState;

// The only place the SQL world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:sql/sql-service",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "skiff:sql/client.transaction": super::client::TransactionSlot,
        },
    });
}

pub use bindings::SqlServicePre as MigrationsPre;
pub use bindings::exports::skiff::sql::migrations::Migration;
pub use bindings::skiff::sql::types::{Error as SqlError, Rows, Value};

/// What the SQL host functions borrow from the store for one call.
pub struct SqlView<'a> {
    client: &'a Arc<dyn SqlClient>,
    table: &'a mut ResourceTable,
}

struct HasSql;

impl HasData for HasSql {
    type Data<'a> = SqlView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    bindings::skiff::sql::types::add_to_linker::<HostState, HasSql>(linker, sql_view)?;
    bindings::skiff::sql::client::add_to_linker::<HostState, HasSql>(linker, sql_view)?;
    Ok(())
}

fn sql_view(state: &mut HostState) -> SqlView<'_> {
    SqlView { client: &state.sql, table: &mut state.table }
}
