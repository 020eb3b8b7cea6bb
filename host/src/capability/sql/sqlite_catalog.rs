//! The declared column types of SQLite tables, read from `pragma_table_xinfo` once per table and
//! forgotten when the schema changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::ColumnOrigin;
use sqlx::sqlite::SqliteColumn;
use sqlx::{Column, Row, Sqlite};

use super::SqlError;
use super::client::classify;
use super::sqlx_client::Schema;

/// Column name → declared type, for one table.
type TableTypes = Arc<HashMap<String, String>>;

#[derive(Default)]
pub struct Catalog {
    tables: Mutex<HashMap<Arc<str>, TableTypes>>,
}

impl Catalog {
    /// The declared type of each column that comes straight from a table (`None` for an
    /// expression, or a table column declared without a type).
    pub async fn declared_types(
        &self,
        mut schema: Schema<'_, Sqlite>,
        columns: &[SqliteColumn],
    ) -> Result<Vec<Option<String>>, SqlError> {
        let mut declared = Vec::with_capacity(columns.len());
        for column in columns {
            let ColumnOrigin::Table(origin) = column.origin() else {
                declared.push(None);
                continue;
            };
            let table = match self.cached(&origin.table) {
                Some(table) => table,
                None => self.load(&mut schema, origin.table.clone()).await?,
            };
            declared.push(table.get(&*origin.name).filter(|declared| !declared.is_empty()).cloned());
        }
        Ok(declared)
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn cached(&self, table: &str) -> Option<TableTypes> {
        self.lock().get(table).cloned()
    }

    async fn load(&self, schema: &mut Schema<'_, Sqlite>, table: Arc<str>) -> Result<TableTypes, SqlError> {
        let query = sqlx::query("SELECT name, type FROM pragma_table_xinfo($1)").bind(table.to_string());
        let rows = match schema {
            Schema::Pool(pool) => query.fetch_all(*pool).await,
            Schema::Connection(connection) => query.fetch_all(&mut **connection).await,
        }
        .map_err(classify)?;
        let types = rows
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?)))
            .collect::<Result<HashMap<_, _>, sqlx::Error>>()
            .map_err(classify)?;
        let types = Arc::new(types);
        self.lock().insert(table, types.clone());
        Ok(types)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, TableTypes>> {
        // The map is only a cache: a panic while it was held leaves nothing half-written.
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
