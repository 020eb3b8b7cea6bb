//! The embedded backend: SQLite in WAL mode through a sqlx pool.
//!
//! SQLite stores what it is given: a `uuid` parameter becomes text, a `timestamp` RFC 3339
//! text with microseconds (so text order is time order). Columns come back by storage class
//! (integer, real, text, blob), which components read alongside the Postgres types.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Column, Row, Sqlite, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::Duration;

use super::client::{DatabaseOptions, SqlClient, SqlTransaction, classify};
use super::{Rows, SqlError, Value};

pub struct SqliteClient {
    pool: SqlitePool,
}

impl SqliteClient {
    pub async fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<Self> {
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
        Ok(Self { pool })
    }
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

fn prepare(statement: &str, params: Vec<Value>) -> Result<SqliteQuery<'static>, SqlError> {
    let mut query = sqlx::query(AssertSqlSafe(statement.to_owned()));
    for value in params {
        query = match value {
            Value::Null => query.bind(None::<String>),
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
        };
    }
    Ok(query)
}

fn timestamp_text(micros: i64) -> Result<String, SqlError> {
    let time = DateTime::<Utc>::from_timestamp_micros(micros)
        .ok_or_else(|| SqlError::BadQuery(format!("timestamp out of range: {micros}")))?;
    Ok(time.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn to_rows(rows: Vec<SqliteRow>) -> Result<Rows, SqlError> {
    let columns =
        rows.first().map(|row| row.columns().iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default();
    let rows = rows.iter().map(|row| (0..row.len()).map(|i| decode(row, i)).collect()).collect::<Result<_, _>>()?;
    Ok(Rows { columns, rows })
}

fn decode(row: &SqliteRow, index: usize) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(index).map_err(classify)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // The value's own storage class, not the column's declared type.
    let storage = raw.type_info().name().to_owned();
    Ok(match storage.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Int64(row.try_get(index).map_err(classify)?),
        "REAL" => Value::Float64(row.try_get(index).map_err(classify)?),
        "BLOB" => Value::Bytes(row.try_get(index).map_err(classify)?),
        _ => Value::Text(row.try_get(index).map_err(classify)?),
    })
}

#[async_trait]
impl SqlClient for SqliteClient {
    async fn query(&self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        to_rows(prepare(statement, params)?.fetch_all(&self.pool).await.map_err(classify)?)
    }

    async fn execute(&self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        Ok(prepare(statement, params)?.execute(&self.pool).await.map_err(classify)?.rows_affected())
    }

    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        // IMMEDIATE takes the write lock up front, so a transaction that reads then writes
        // waits (busy_timeout) instead of failing with SQLITE_BUSY on upgrade.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
        Ok(Box::new(SqliteTransaction(tx)))
    }

    async fn ping(&self) -> Result<(), SqlError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(classify)
    }

    async fn lock_for_migrations(&self, _tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        // BEGIN IMMEDIATE already holds the database's single write lock.
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

struct SqliteTransaction(sqlx::Transaction<'static, Sqlite>);

#[async_trait]
impl SqlTransaction for SqliteTransaction {
    async fn query(&mut self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        to_rows(prepare(statement, params)?.fetch_all(&mut *self.0).await.map_err(classify)?)
    }

    async fn execute(&mut self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        Ok(prepare(statement, params)?.execute(&mut *self.0).await.map_err(classify)?.rows_affected())
    }

    async fn execute_script(&mut self, script: &str) -> Result<(), SqlError> {
        sqlx::raw_sql(AssertSqlSafe(script.to_owned())).execute(&mut *self.0).await.map(drop).map_err(classify)
    }

    async fn commit(self: Box<Self>) -> Result<(), SqlError> {
        self.0.commit().await.map_err(classify)
    }

    async fn rollback(self: Box<Self>) -> Result<(), SqlError> {
        self.0.rollback().await.map_err(classify)
    }
}
