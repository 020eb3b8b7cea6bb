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

/// The Postgres types skiff:sql carries, resolved once per result set from the type name.
pub enum PgColumnType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Bytea,
    Timestamptz,
    Timestamp,
    Uuid,
    Json,
    /// Any other type, by name, for the error.
    Other(String),
}

impl PgColumnType {
    fn of(type_name: &str) -> Self {
        match type_name {
            "BOOL" => Self::Bool,
            "INT2" => Self::Int2,
            "INT4" => Self::Int4,
            "INT8" => Self::Int8,
            "FLOAT4" => Self::Float4,
            "FLOAT8" => Self::Float8,
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Self::Text,
            "BYTEA" => Self::Bytea,
            "TIMESTAMPTZ" => Self::Timestamptz,
            "TIMESTAMP" => Self::Timestamp,
            "UUID" => Self::Uuid,
            "JSON" | "JSONB" => Self::Json,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The kind a value of this type has (`None`: a type skiff:sql does not carry).
    fn kind(&self) -> Option<ValueKind> {
        Some(match self {
            Self::Bool => ValueKind::Boolean,
            Self::Int2 | Self::Int4 => ValueKind::Int32,
            Self::Int8 => ValueKind::Int64,
            Self::Float4 | Self::Float8 => ValueKind::Float64,
            Self::Text => ValueKind::Text,
            Self::Bytea => ValueKind::Bytes,
            Self::Timestamptz | Self::Timestamp => ValueKind::Timestamp,
            Self::Uuid => ValueKind::Uuid,
            Self::Json => ValueKind::Json,
            Self::Other(_) => return None,
        })
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    type Db = Postgres;
    type Column = PgColumnType;

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

    async fn columns(&self, _: Schema<'_, Postgres>, columns: &[PgColumn]) -> Result<Vec<PgColumnType>, SqlError> {
        Ok(columns.iter().map(|column| PgColumnType::of(column.type_info().name())).collect())
    }

    fn decode(row: &PgRow, index: usize, column: &PgColumnType) -> Result<Value, SqlError> {
        let raw = row.try_get_raw(index).map_err(classify)?;
        if raw.is_null() {
            return Ok(Value::Null(column.kind()));
        }
        Ok(match column {
            PgColumnType::Bool => Value::Boolean(row.try_get(index).map_err(classify)?),
            PgColumnType::Int2 => Value::Int32(i32::from(row.try_get::<i16, _>(index).map_err(classify)?)),
            PgColumnType::Int4 => Value::Int32(row.try_get(index).map_err(classify)?),
            PgColumnType::Int8 => Value::Int64(row.try_get(index).map_err(classify)?),
            PgColumnType::Float4 => Value::Float64(f64::from(row.try_get::<f32, _>(index).map_err(classify)?)),
            PgColumnType::Float8 => Value::Float64(row.try_get(index).map_err(classify)?),
            PgColumnType::Text => Value::Text(row.try_get(index).map_err(classify)?),
            PgColumnType::Bytea => Value::Bytes(row.try_get(index).map_err(classify)?),
            PgColumnType::Timestamptz => {
                Value::Timestamp(row.try_get::<DateTime<Utc>, _>(index).map_err(classify)?.timestamp_micros())
            }
            PgColumnType::Timestamp => {
                Value::Timestamp(row.try_get::<NaiveDateTime, _>(index).map_err(classify)?.and_utc().timestamp_micros())
            }
            PgColumnType::Uuid => Value::Uuid(row.try_get::<uuid::Uuid, _>(index).map_err(classify)?.to_string()),
            PgColumnType::Json => {
                Value::Json(row.try_get::<serde_json::Value, _>(index).map_err(classify)?.to_string())
            }
            PgColumnType::Other(other) => {
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
