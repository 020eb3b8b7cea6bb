//! One sqlx implementation of [`SqlClient`] for both backends. A [`Backend`] says only what
//! differs between them: how a value binds, how a column decodes, how a transaction begins and
//! how migrations take their lock.

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Column, Database, Executor, IntoArguments, Pool, Row};

use super::client::{SqlClient, SqlTransaction, classify};
use super::{Rows, SqlError, Value};

/// A statement with its parameters bound, ready to run on backend `D`.
pub type BoundQuery<D> = Query<'static, D, <D as Database>::Arguments>;

/// What one database engine does its own way.
#[async_trait]
pub trait Backend: Send + Sync + Sized + 'static {
    type Db: Database;
    /// How one column of a result set decodes, worked out once per result set.
    type Column: Send + Sync;

    /// `postgres` or `sqlite`, for logs and metrics.
    const NAME: &'static str;
    /// The statement that opens a transaction.
    const BEGIN: &'static str;

    fn bind(query: BoundQuery<Self::Db>, value: Value) -> Result<BoundQuery<Self::Db>, SqlError>;

    /// How each column of a result set decodes; `schema` may be asked about the tables.
    async fn columns(
        &self,
        schema: Schema<'_, Self::Db>,
        columns: &[<Self::Db as Database>::Column],
    ) -> Result<Vec<Self::Column>, SqlError>;

    fn decode(row: &<Self::Db as Database>::Row, index: usize, column: &Self::Column) -> Result<Value, SqlError>;

    /// Serialises migrations across processes sharing the database, for the life of `tx`.
    async fn lock_for_migrations(tx: &mut <Self::Db as Database>::Connection) -> Result<(), SqlError>;

    /// sqlx's query results have no common trait for the count.
    fn rows_affected(result: <Self::Db as Database>::QueryResult) -> u64;

    /// Told after each statement or script that may have changed the schema.
    fn schema_changed(&self) {}
}

/// Where a backend may look up the schema: the pool, or the transaction's own connection (which
/// sees its uncommitted changes and needs no second connection).
pub enum Schema<'a, D: Database> {
    Pool(&'a Pool<D>),
    Connection(&'a mut D::Connection),
}

/// A pool on one database, and its backend.
pub struct SqlxClient<B: Backend> {
    pool: Pool<B::Db>,
    backend: std::sync::Arc<B>,
}

impl<B: Backend> SqlxClient<B> {
    pub fn new(pool: Pool<B::Db>, backend: B) -> Self {
        Self { pool, backend: std::sync::Arc::new(backend) }
    }
}

fn prepare<B: Backend>(statement: &str, params: Vec<Value>) -> Result<BoundQuery<B::Db>, SqlError> {
    let mut query = sqlx::query(AssertSqlSafe(statement.to_owned()));
    for value in params {
        query = B::bind(query, value)?;
    }
    Ok(query)
}

/// Whether `statement` may change the schema (so cached column types may be stale).
fn is_schema_change(statement: &str) -> bool {
    let first = statement.trim_start().split(|c: char| !c.is_ascii_alphabetic()).next().unwrap_or("");
    ["create", "alter", "drop"].iter().any(|keyword| first.eq_ignore_ascii_case(keyword))
}

async fn to_rows<B: Backend>(
    backend: &B,
    schema: Schema<'_, B::Db>,
    rows: Vec<<B::Db as Database>::Row>,
) -> Result<Rows, SqlError> {
    let Some(first) = rows.first() else {
        return Ok(Rows { columns: Vec::new(), rows: Vec::new() });
    };
    let names = first.columns().iter().map(|c| c.name().to_owned()).collect();
    let plan = backend.columns(schema, first.columns()).await?;
    let rows = rows
        .iter()
        .map(|row| plan.iter().enumerate().map(|(index, column)| B::decode(row, index, column)).collect())
        .collect::<Result<_, _>>()?;
    Ok(Rows { columns: names, rows })
}

#[async_trait]
impl<B: Backend> SqlClient for SqlxClient<B>
where
    for<'c> &'c Pool<B::Db>: Executor<'c, Database = B::Db>,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
{
    async fn query(&self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        let rows = prepare::<B>(statement, params)?.fetch_all(&self.pool).await.map_err(classify)?;
        to_rows(&*self.backend, Schema::Pool(&self.pool), rows).await
    }

    async fn execute(&self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let result = prepare::<B>(statement, params)?.execute(&self.pool).await;
        if is_schema_change(statement) {
            self.backend.schema_changed();
        }
        Ok(B::rows_affected(result.map_err(classify)?))
    }

    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError> {
        let tx = self.pool.begin_with(B::BEGIN).await.map_err(classify)?;
        Ok(Box::new(SqlxTransaction { tx, backend: self.backend.clone(), changed_schema: false }))
    }

    async fn ping(&self) -> Result<(), SqlError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(classify)
    }

    fn backend(&self) -> &'static str {
        B::NAME
    }
}

struct SqlxTransaction<B: Backend> {
    tx: sqlx::Transaction<'static, B::Db>,
    backend: std::sync::Arc<B>,
    /// Whether a statement in it may have changed the schema, to tell the backend on commit.
    changed_schema: bool,
}

#[async_trait]
impl<B: Backend> SqlTransaction for SqlxTransaction<B>
where
    for<'c> &'c Pool<B::Db>: Executor<'c, Database = B::Db>,
    for<'c> &'c mut <B::Db as Database>::Connection: Executor<'c, Database = B::Db>,
    <B::Db as Database>::Arguments: IntoArguments<B::Db>,
{
    async fn query(&mut self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError> {
        let rows = prepare::<B>(statement, params)?.fetch_all(&mut *self.tx).await.map_err(classify)?;
        to_rows(&*self.backend, Schema::Connection(&mut *self.tx), rows).await
    }

    async fn execute(&mut self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError> {
        let result = prepare::<B>(statement, params)?.execute(&mut *self.tx).await;
        if is_schema_change(statement) {
            self.changed_schema = true;
            self.backend.schema_changed();
        }
        Ok(B::rows_affected(result.map_err(classify)?))
    }

    async fn execute_script(&mut self, script: &str) -> Result<(), SqlError> {
        let result = sqlx::raw_sql(AssertSqlSafe(script.to_owned())).execute(&mut *self.tx).await;
        self.changed_schema = true;
        self.backend.schema_changed();
        result.map(drop).map_err(classify)
    }

    async fn lock_for_migrations(&mut self) -> Result<(), SqlError> {
        B::lock_for_migrations(&mut self.tx).await
    }

    async fn commit(self: Box<Self>) -> Result<(), SqlError> {
        let Self { tx, backend, changed_schema, .. } = *self;
        let result = tx.commit().await.map_err(classify);
        if changed_schema {
            // Column types read by another connection before the commit predate the change.
            backend.schema_changed();
        }
        result
    }

    async fn rollback(self: Box<Self>) -> Result<(), SqlError> {
        self.tx.rollback().await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::is_schema_change;

    #[test]
    fn schema_changes_are_recognised_by_their_first_keyword() {
        assert!(is_schema_change("CREATE TABLE t (x INT)"));
        assert!(is_schema_change("  alter table t add column y text"));
        assert!(is_schema_change("DROP INDEX i"));
        assert!(!is_schema_change("SELECT created_at FROM t"));
        assert!(!is_schema_change("INSERT INTO t (created) VALUES ($1)"));
    }
}
