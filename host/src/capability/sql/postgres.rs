//! The Postgres backend: a sqlx pool, values bound as native Postgres types.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgArguments, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Column, Postgres, Row, TypeInfo, ValueRef};

use super::client::{DatabaseOptions, SqlClient, SqlTransaction, classify};
use super::{Rows, SqlError, Value};

/// Any fixed number: migrations from every replica take this lock in turn.
const MIGRATION_LOCK_KEY: i64 = 0x0073_6b69_6666; // "skiff" in ASCII

pub struct PostgresClient {
    pool: PgPool,
}

impl PostgresClient {
    /// Creates the pool without connecting, so the host starts (not ready) while the database is
    /// still coming up.
    pub fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy(url)?;
        Ok(Self { pool })
    }
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn prepare(statement: &str, params: Vec<Value>) -> Result<PgQuery<'static>, SqlError> {
    let mut query = sqlx::query(AssertSqlSafe(statement.to_owned()));
    for value in params {
        query = bind(query, value)?;
    }
    Ok(query)
}

fn bind(query: PgQuery<'static>, value: Value) -> Result<PgQuery<'static>, SqlError> {
    Ok(match value {
        // A null is sent as text; Postgres casts it for text columns, other types need an
        // explicit value.
        Value::Null => query.bind(None::<String>),
        Value::Boolean(v) => query.bind(v),
        Value::Int32(v) => query.bind(v),
        Value::Int64(v) => query.bind(v),
        Value::Float64(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::Bytes(v) => query.bind(v),
        Value::Timestamp(micros) => query.bind(timestamp_from_micros(micros)?),
        Value::Uuid(v) => query.bind(
            uuid::Uuid::parse_str(&v).map_err(|e| SqlError::BadQuery(format!("invalid uuid parameter {v:?}: {e}")))?,
        ),
        Value::Json(v) => query.bind(sqlx::types::Json(
            serde_json::from_str::<serde_json::Value>(&v)
                .map_err(|e| SqlError::BadQuery(format!("invalid json parameter: {e}")))?,
        )),
    })
}

fn timestamp_from_micros(micros: i64) -> Result<DateTime<Utc>, SqlError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| SqlError::BadQuery(format!("timestamp out of range: {micros}")))
}

fn to_rows(rows: Vec<PgRow>) -> Result<Rows, SqlError> {
    let columns =
        rows.first().map(|row| row.columns().iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default();
    let rows = rows.iter().map(decode_row).collect::<Result<_, _>>()?;
    Ok(Rows { columns, rows })
}

fn decode_row(row: &PgRow) -> Result<Vec<Value>, SqlError> {
    (0..row.len()).map(|index| decode(row, index)).collect()
}

fn decode(row: &PgRow, index: usize) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(index).map_err(classify)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    let get_error = |e| classify(e);
    Ok(match type_name.as_str() {
        "BOOL" => Value::Boolean(row.try_get(index).map_err(get_error)?),
        "INT2" => Value::Int32(i32::from(row.try_get::<i16, _>(index).map_err(get_error)?)),
        "INT4" => Value::Int32(row.try_get(index).map_err(get_error)?),
        "INT8" => Value::Int64(row.try_get(index).map_err(get_error)?),
        "FLOAT4" => Value::Float64(f64::from(row.try_get::<f32, _>(index).map_err(get_error)?)),
        "FLOAT8" => Value::Float64(row.try_get(index).map_err(get_error)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Value::Text(row.try_get(index).map_err(get_error)?),
        "BYTEA" => Value::Bytes(row.try_get(index).map_err(get_error)?),
        "TIMESTAMPTZ" => {
            Value::Timestamp(row.try_get::<DateTime<Utc>, _>(index).map_err(get_error)?.timestamp_micros())
        }
        "TIMESTAMP" => {
            Value::Timestamp(row.try_get::<NaiveDateTime, _>(index).map_err(get_error)?.and_utc().timestamp_micros())
        }
        "UUID" => Value::Uuid(row.try_get::<uuid::Uuid, _>(index).map_err(get_error)?.to_string()),
        "JSON" | "JSONB" => Value::Json(row.try_get::<serde_json::Value, _>(index).map_err(get_error)?.to_string()),
        other => {
            return Err(SqlError::BadQuery(format!(
                "column {index} has type {other}, which skiff:sql does not carry; cast it to text, int8, float8 or timestamptz"
            )));
        }
    })
}

#[async_trait]
impl SqlClient for PostgresClient {
    async fn query(&self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        to_rows(prepare(statement, params)?.fetch_all(&self.pool).await.map_err(classify)?)
    }

    async fn execute(&self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        Ok(prepare(statement, params)?.execute(&self.pool).await.map_err(classify)?.rows_affected())
    }

    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        Ok(Box::new(PostgresTransaction(self.pool.begin().await.map_err(classify)?)))
    }

    async fn ping(&self) -> Result<(), SqlError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(classify)
    }

    async fn lock_for_migrations(&self, tx: &mut dyn SqlTransaction) -> Result<(), SqlError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", vec![Value::Int64(MIGRATION_LOCK_KEY)]).await.map(drop)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

struct PostgresTransaction(sqlx::Transaction<'static, Postgres>);

#[async_trait]
impl SqlTransaction for PostgresTransaction {
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
