//! The Postgres backend: values bound as native Postgres types, columns decoded by their type.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgColumn, PgConnection, PgPoolOptions, PgQueryResult, PgRow, PgTypeInfo, Postgres};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::client::{DatabaseOptions, classify};
use super::sqlx_client::{Backend, BoundQuery, Schema, SqlxClient};
use super::{SqlError, Value, ValueKind};

/// Any fixed number: migrations from every replica take this lock in turn.
const MIGRATION_LOCK_KEY: i64 = 0x0073_6b69_6666; // "skiff" in ASCII

/// Creates the pool without connecting, so the host starts (not ready) while the database is
/// still coming up.
pub fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<SqlxClient<PostgresBackend>> {
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy(url)?;
    Ok(SqlxClient::new(pool, PostgresBackend))
}

pub struct PostgresBackend;

/// A NULL of the given Postgres type; `None` sends it untyped, for Postgres to infer.
struct TypedNull(Option<ValueKind>);

/// Postgres's `unknown` pseudo-type: a parameter of this type takes the type its use implies.
const UNKNOWN: PgTypeInfo = PgTypeInfo::with_oid(Oid(705));

impl sqlx::Type<Postgres> for TypedNull {
    fn type_info() -> PgTypeInfo {
        UNKNOWN
    }

    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl sqlx::Encode<'_, Postgres> for TypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        fn of<T: sqlx::Type<Postgres>>() -> PgTypeInfo {
            T::type_info()
        }
        Some(match self.0 {
            None => UNKNOWN,
            Some(ValueKind::Boolean) => of::<bool>(),
            Some(ValueKind::Int32) => of::<i32>(),
            Some(ValueKind::Int64) => of::<i64>(),
            Some(ValueKind::Float64) => of::<f64>(),
            Some(ValueKind::Text) => of::<String>(),
            Some(ValueKind::Bytes) => of::<Vec<u8>>(),
            Some(ValueKind::Timestamp) => of::<DateTime<Utc>>(),
            Some(ValueKind::Uuid) => of::<uuid::Uuid>(),
            Some(ValueKind::Json) => of::<sqlx::types::Json<serde_json::Value>>(),
        })
    }
}

fn timestamp_from_micros(micros: i64) -> Result<DateTime<Utc>, SqlError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| SqlError::BadQuery(format!("timestamp out of range: {micros}")))
}

/// What a Postgres type decodes to (`None`: a type skiff:sql does not carry).
fn kind_of(type_name: &str) -> Option<ValueKind> {
    Some(match type_name {
        "BOOL" => ValueKind::Boolean,
        "INT2" | "INT4" => ValueKind::Int32,
        "INT8" => ValueKind::Int64,
        "FLOAT4" | "FLOAT8" => ValueKind::Float64,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => ValueKind::Text,
        "BYTEA" => ValueKind::Bytes,
        "TIMESTAMPTZ" | "TIMESTAMP" => ValueKind::Timestamp,
        "UUID" => ValueKind::Uuid,
        "JSON" | "JSONB" => ValueKind::Json,
        _ => return None,
    })
}

#[async_trait]
impl Backend for PostgresBackend {
    type Db = Postgres;
    /// The column's Postgres type name.
    type Column = String;

    const NAME: &'static str = "postgres";
    const BEGIN: &'static str = "BEGIN";

    fn bind(query: BoundQuery<Postgres>, value: Value) -> Result<BoundQuery<Postgres>, SqlError> {
        Ok(match value {
            Value::Null(kind) => query.bind(TypedNull(kind)),
            Value::Boolean(v) => query.bind(v),
            Value::Int32(v) => query.bind(v),
            Value::Int64(v) => query.bind(v),
            Value::Float64(v) => query.bind(v),
            Value::Text(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
            Value::Timestamp(micros) => query.bind(timestamp_from_micros(micros)?),
            Value::Uuid(v) => query.bind(
                uuid::Uuid::parse_str(&v)
                    .map_err(|e| SqlError::BadQuery(format!("invalid uuid parameter {v:?}: {e}")))?,
            ),
            Value::Json(v) => query.bind(sqlx::types::Json(
                serde_json::from_str::<serde_json::Value>(&v)
                    .map_err(|e| SqlError::BadQuery(format!("invalid json parameter: {e}")))?,
            )),
        })
    }

    async fn columns(&self, _: Schema<'_, Postgres>, columns: &[PgColumn]) -> Result<Vec<String>, SqlError> {
        Ok(columns.iter().map(|column| column.type_info().name().to_owned()).collect())
    }

    fn decode(row: &PgRow, index: usize, type_name: &String) -> Result<Value, SqlError> {
        let raw = row.try_get_raw(index).map_err(classify)?;
        if raw.is_null() {
            return Ok(Value::Null(kind_of(type_name)));
        }
        Ok(match type_name.as_str() {
            "BOOL" => Value::Boolean(row.try_get(index).map_err(classify)?),
            "INT2" => Value::Int32(i32::from(row.try_get::<i16, _>(index).map_err(classify)?)),
            "INT4" => Value::Int32(row.try_get(index).map_err(classify)?),
            "INT8" => Value::Int64(row.try_get(index).map_err(classify)?),
            "FLOAT4" => Value::Float64(f64::from(row.try_get::<f32, _>(index).map_err(classify)?)),
            "FLOAT8" => Value::Float64(row.try_get(index).map_err(classify)?),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Value::Text(row.try_get(index).map_err(classify)?),
            "BYTEA" => Value::Bytes(row.try_get(index).map_err(classify)?),
            "TIMESTAMPTZ" => {
                Value::Timestamp(row.try_get::<DateTime<Utc>, _>(index).map_err(classify)?.timestamp_micros())
            }
            "TIMESTAMP" => {
                Value::Timestamp(row.try_get::<NaiveDateTime, _>(index).map_err(classify)?.and_utc().timestamp_micros())
            }
            "UUID" => Value::Uuid(row.try_get::<uuid::Uuid, _>(index).map_err(classify)?.to_string()),
            "JSON" | "JSONB" => Value::Json(row.try_get::<serde_json::Value, _>(index).map_err(classify)?.to_string()),
            other => {
                return Err(SqlError::BadQuery(format!(
                    "column {index} has type {other}, which skiff:sql does not carry; cast it to text, int8, float8 or timestamptz"
                )));
            }
        })
    }

    async fn lock_for_migrations(tx: &mut PgConnection) -> Result<(), SqlError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(tx)
            .await
            .map(drop)
            .map_err(classify)
    }

    fn rows_affected(result: PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
