//! `skiff:sql` keeps its typed promise on both backends: the same statements give a component
//! the same values from SQLite and from Postgres, NULLs carry their kind, and a value SQLite
//! stored against its column's declared type is refused by name, not passed on.

use skiff::capability::sql::{Database, DatabaseOptions, SqlClient, SqlError, Value, ValueKind};
use std::sync::Arc;

use crate::helpers::{Backend, TestDb};

const SCHEMA: &str = "CREATE TABLE typed (\
    id UUID PRIMARY KEY, at TIMESTAMPTZ NOT NULL, n INTEGER NOT NULL, big BIGINT NOT NULL, \
    flag BOOLEAN NOT NULL, doc JSONB NOT NULL, raw BYTEA NOT NULL, note TEXT, \
    ratio DOUBLE PRECISION NOT NULL, later TIMESTAMPTZ)";
const ID: &str = "0192F5A4-9B1C-7D3E-8F00-0123456789AB";
const AT: i64 = 1_700_000_000_123_456;

async fn open(db: &TestDb) -> Arc<dyn SqlClient> {
    let client = Database::connect(&db.url, &DatabaseOptions::default()).await.unwrap();
    client.execute(SCHEMA, Vec::new()).await.unwrap();
    client
        .execute(
            "INSERT INTO typed (id, at, n, big, flag, doc, raw, note, ratio, later) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                Value::Uuid(ID.into()),
                Value::Timestamp(AT),
                Value::Int32(-7),
                Value::Int64(1 << 40),
                Value::Boolean(true),
                Value::Json(r#"{"b": [1, 2], "a": "x"}"#.into()),
                Value::Bytes(vec![0, 1, 255]),
                Value::Null(Some(ValueKind::Text)),
                Value::Float64(0.25),
                Value::Null(Some(ValueKind::Timestamp)),
            ],
        )
        .await
        .unwrap();
    client
}

/// What every backend must return for the row `open` wrote.
async fn the_same_values_come_back(db: &TestDb) {
    let client = open(db).await;
    let rows = client
        .query(
            "SELECT id, at, n, big, flag, doc, raw, note, ratio, later, COUNT(*) OVER () AS total FROM typed",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows.columns, ["id", "at", "n", "big", "flag", "doc", "raw", "note", "ratio", "later", "total"]);
    assert_eq!(
        rows.rows,
        vec![vec![
            Value::Uuid(ID.to_ascii_lowercase()),
            Value::Timestamp(AT),
            Value::Int32(-7),
            Value::Int64(1 << 40),
            Value::Boolean(true),
            Value::Json(r#"{"a":"x","b":[1,2]}"#.into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Null(Some(ValueKind::Text)),
            Value::Float64(0.25),
            Value::Null(Some(ValueKind::Timestamp)),
            Value::Int64(1),
        ]]
    );

    // RETURNING and transactions decode the same way.
    let mut tx = client.begin().await.unwrap();
    let returned = tx
        .query(
            "UPDATE typed SET n = $1, later = $2 WHERE id = $3 RETURNING n, later",
            vec![Value::Int32(8), Value::Timestamp(AT + 1), Value::Uuid(ID.into())],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(returned.rows, vec![vec![Value::Int32(8), Value::Timestamp(AT + 1)]]);

    // An untyped NULL takes the type its column implies (Postgres infers it).
    client
        .execute(
            "UPDATE typed SET later = $1, note = $2 WHERE id = $3",
            vec![Value::Null(None), Value::Null(None), Value::Uuid(ID.into())],
        )
        .await
        .unwrap();
    let cleared = client.query("SELECT later, note FROM typed", vec![]).await.unwrap();
    assert_eq!(cleared.rows, vec![vec![Value::Null(Some(ValueKind::Timestamp)), Value::Null(Some(ValueKind::Text))]]);
}

#[tokio::test]
async fn sqlite_returns_values_by_declared_type() {
    the_same_values_come_back(&TestDb::new(Backend::Sqlite, "typed").await).await;
}

#[tokio::test]
#[ignore = "needs Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn postgres_returns_the_same_values() {
    the_same_values_come_back(&TestDb::new(Backend::Postgres, "typed").await).await;
}

#[tokio::test]
async fn a_value_sqlite_stored_against_its_declared_type_is_refused_by_name() {
    let db = TestDb::new(Backend::Sqlite, "typed").await;
    let client = open(&db).await;
    // SQLite accepts any text in a TIMESTAMPTZ column; only the host's decoding can catch it.
    client.execute("UPDATE typed SET at = 'yesterday'", vec![]).await.unwrap();
    let error = client.query("SELECT at FROM typed", vec![]).await.unwrap_err();
    assert_eq!(
        error,
        SqlError::BadQuery("column at is declared TIMESTAMPTZ but holds a non-RFC 3339 text value".into())
    );
}
