//! The embedded backend: SQLite in WAL mode through a sqlx pool.
//!
//! SQLite stores what it is given: a `uuid` parameter becomes text, a `timestamp` RFC 3339 text
//! with microseconds (so text order is time order). Columns decode by the type their table
//! declares, named as in Postgres (see [`kind_of`]), so a component gets the same values from
//! both backends; an expression's column has no declared type and decodes by how its value is
//! stored.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteColumn, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Column, Row, Sqlite, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::Duration;

use super::client::{DatabaseOptions, classify};
use super::sqlite_catalog::Catalog;
use super::sqlx_client::{Backend, BoundQuery, Schema, SqlxClient};
use super::{SqlError, Value, ValueKind};

pub async fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<SqlxClient<SqliteBackend>> {
    let connect = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL survives a process crash (kill -9); only an OS crash can lose the
        // last commits.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(options.max_connections.clamp(1, 8))
        // A local file is never unreachable, only slow when the machine is busy: wait for it
        // rather than fail start-up or a request.
        .acquire_timeout(options.acquire_timeout.max(Duration::from_secs(30)))
        .connect_with(connect)
        .await?;
    Ok(SqlxClient::new(pool, SqliteBackend { catalog: Catalog::default() }))
}

pub struct SqliteBackend {
    catalog: Catalog,
}

/// How one result column decodes: by its declared type when its table declares one.
pub struct ColumnPlan {
    name: String,
    declared: Option<(String, ValueKind)>,
}

/// What a declared column type (named as in Postgres) decodes to; `None` for a type skiff:sql
/// does not know, which then decodes by storage class.
pub fn kind_of(declared: &str) -> Option<ValueKind> {
    let declared = declared.trim().to_ascii_lowercase();
    let base = declared.split('(').next().unwrap_or("").trim();
    Some(match base {
        _ if base.starts_with("timestamp") => ValueKind::Timestamp,
        "uuid" => ValueKind::Uuid,
        "json" | "jsonb" => ValueKind::Json,
        "bool" | "boolean" => ValueKind::Boolean,
        "smallint" | "int2" | "int" | "int4" | "integer" => ValueKind::Int32,
        "bigint" | "int8" => ValueKind::Int64,
        "real" | "float4" | "float8" | "double precision" => ValueKind::Float64,
        "text" | "varchar" | "character varying" | "char" | "character" | "bpchar" | "citext" => ValueKind::Text,
        "bytea" | "blob" => ValueKind::Bytes,
        _ => return None,
    })
}

fn timestamp_text(micros: i64) -> Result<String, SqlError> {
    let time = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| SqlError::BadQuery(format!("timestamp out of range: {micros}")))?;
    Ok(time.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// A value stored in a column whose declared type says otherwise (SQLite does not refuse it).
fn mismatch(column: &ColumnPlan, declared: &str, storage: &str) -> SqlError {
    SqlError::BadQuery(format!("column {} is declared {declared} but holds a {storage} value", column.name))
}

#[async_trait]
impl Backend for SqliteBackend {
    type Db = Sqlite;
    type Column = ColumnPlan;

    const NAME: &'static str = "sqlite";
    // IMMEDIATE takes the write lock up front, so a transaction that reads then writes waits
    // (busy_timeout) instead of failing with SQLITE_BUSY on upgrade. It also serialises
    // migrations: the database has one write lock.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn bind(query: BoundQuery<Sqlite>, value: Value) -> Result<BoundQuery<Sqlite>, SqlError> {
        Ok(match value {
            Value::Null(_) => query.bind(None::<String>),
            Value::Boolean(v) => query.bind(v),
            Value::Int32(v) => query.bind(v),
            Value::Int64(v) => query.bind(v),
            Value::Float64(v) => query.bind(v),
            Value::Text(v) | Value::Json(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Timestamp(micros) => query.bind(timestamp_text(micros)?),
            Value::Uuid(v) => {
                let parsed = uuid::Uuid::parse_str(&v)
                    .map_err(|e| SqlError::BadQuery(format!("invalid uuid parameter {v:?}: {e}")))?;
                query.bind(parsed.hyphenated().to_string())
            }
        })
    }

    async fn columns(&self, schema: Schema<'_, Sqlite>, columns: &[SqliteColumn]) -> Result<Vec<ColumnPlan>, SqlError> {
        let declared = self.catalog.declared_types(schema, columns).await?;
        Ok(columns
            .iter()
            .zip(declared)
            .map(|(column, declared)| ColumnPlan {
                name: column.name().to_owned(),
                declared: declared.and_then(|declared| kind_of(&declared).map(|kind| (declared, kind))),
            })
            .collect())
    }

    fn decode(row: &SqliteRow, index: usize, column: &ColumnPlan) -> Result<Value, SqlError> {
        let raw = row.try_get_raw(index).map_err(classify)?;
        if raw.is_null() {
            return Ok(Value::Null(column.declared.as_ref().map(|(_, kind)| *kind)));
        }
        // The value's own storage class: INTEGER, REAL, TEXT or BLOB.
        let storage = raw.type_info().name().to_owned();
        let integer = || row.try_get_unchecked::<i64, _>(index).map_err(classify);
        let text = || row.try_get_unchecked::<String, _>(index).map_err(classify);
        let Some((declared, kind)) = &column.declared else {
            return Ok(match storage.as_str() {
                "INTEGER" => Value::Int64(integer()?),
                "REAL" => Value::Float64(row.try_get_unchecked(index).map_err(classify)?),
                "BLOB" => Value::Bytes(row.try_get_unchecked(index).map_err(classify)?),
                _ => Value::Text(text()?),
            });
        };
        Ok(match (kind, storage.as_str()) {
            (ValueKind::Boolean, "INTEGER") => Value::Boolean(integer()? != 0),
            (ValueKind::Int32, "INTEGER") => {
                let value = integer()?;
                Value::Int32(i32::try_from(value).map_err(|_| {
                    SqlError::BadQuery(format!("column {} ({declared}) holds {value}, out of int32 range", column.name))
                })?)
            }
            (ValueKind::Int64, "INTEGER") => Value::Int64(integer()?),
            (ValueKind::Float64, "REAL" | "INTEGER") => Value::Float64(row.try_get_unchecked(index).map_err(classify)?),
            (ValueKind::Text, "TEXT") => Value::Text(text()?),
            (ValueKind::Json, "TEXT") => {
                // Re-serialised as the Postgres backend does, so both give the same text.
                let document: serde_json::Value =
                    serde_json::from_str(&text()?).map_err(|_| mismatch(column, declared, "non-JSON text"))?;
                Value::Json(document.to_string())
            }
            (ValueKind::Bytes, "BLOB") => Value::Bytes(row.try_get_unchecked(index).map_err(classify)?),
            (ValueKind::Uuid, "TEXT") => {
                let stored = text()?;
                let parsed = uuid::Uuid::parse_str(&stored).map_err(|_| mismatch(column, declared, "non-uuid text"))?;
                Value::Uuid(parsed.hyphenated().to_string())
            }
            (ValueKind::Timestamp, "TEXT") => {
                let stored = text()?;
                let parsed = DateTime::parse_from_rfc3339(&stored)
                    .map_err(|_| mismatch(column, declared, "non-RFC 3339 text"))?;
                Value::Timestamp(parsed.timestamp_micros())
            }
            (_, storage) => return Err(mismatch(column, declared, &storage.to_ascii_lowercase())),
        })
    }

    async fn lock_for_migrations(_tx: &mut SqliteConnection) -> Result<(), SqlError> {
        // BEGIN IMMEDIATE already holds the database's single write lock.
        Ok(())
    }

    fn rows_affected(result: SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn schema_changed(&self) {
        self.catalog.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{ValueKind, kind_of};

    #[test]
    fn declared_types_are_read_by_their_postgres_names() {
        assert_eq!(kind_of("TIMESTAMPTZ"), Some(ValueKind::Timestamp));
        assert_eq!(kind_of("timestamp with time zone"), Some(ValueKind::Timestamp));
        assert_eq!(kind_of("UUID"), Some(ValueKind::Uuid));
        assert_eq!(kind_of("INTEGER"), Some(ValueKind::Int32));
        assert_eq!(kind_of("BIGINT"), Some(ValueKind::Int64));
        assert_eq!(kind_of("VARCHAR(20)"), Some(ValueKind::Text));
        assert_eq!(kind_of("BYTEA"), Some(ValueKind::Bytes));
        assert_eq!(kind_of("NUMERIC(10,2)"), None);
    }
}
