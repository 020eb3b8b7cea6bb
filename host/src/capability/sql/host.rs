//! The generated `skiff:sql` host traits, implemented over a [`SqlClient`].

use wasmtime::component::Resource;

use super::bindings::skiff::sql::{client, types};
use super::client::TransactionSlot;
use super::{Rows, SqlError, SqlView, Value};

type Outcome<T> = wasmtime::Result<Result<T, SqlError>>;

impl types::Host for SqlView<'_> {}

impl client::Host for SqlView<'_> {
    #[tracing::instrument(level = "debug", name = "skiff.sql.query", skip_all, fields(backend = self.client.backend()))]
    async fn query(&mut self, statement: String, params: Vec<Value>) -> Outcome<Rows> {
        Ok(self.client.query(&statement, params).await)
    }

    #[tracing::instrument(level = "debug", name = "skiff.sql.execute", skip_all, fields(backend = self.client.backend()))]
    async fn execute(&mut self, statement: String, params: Vec<Value>) -> Outcome<u64> {
        Ok(self.client.execute(&statement, params).await)
    }

    #[tracing::instrument(level = "debug", name = "skiff.sql.begin", skip_all, fields(backend = self.client.backend()))]
    async fn begin(&mut self) -> Outcome<Resource<TransactionSlot>> {
        match self.client.begin().await {
            Ok(tx) => Ok(Ok(self.table.push(TransactionSlot(Some(tx)))?)),
            Err(error) => Ok(Err(error)),
        }
    }
}

impl client::HostTransaction for SqlView<'_> {
    #[tracing::instrument(level = "debug", name = "skiff.sql.tx.query", skip_all)]
    async fn query(&mut self, tx: Resource<TransactionSlot>, statement: String, params: Vec<Value>) -> Outcome<Rows> {
        match &mut self.table.get_mut(&tx)?.0 {
            Some(open) => Ok(open.query(&statement, params).await),
            None => Ok(Err(SqlError::TransactionClosed)),
        }
    }

    #[tracing::instrument(level = "debug", name = "skiff.sql.tx.execute", skip_all)]
    async fn execute(&mut self, tx: Resource<TransactionSlot>, statement: String, params: Vec<Value>) -> Outcome<u64> {
        match &mut self.table.get_mut(&tx)?.0 {
            Some(open) => Ok(open.execute(&statement, params).await),
            None => Ok(Err(SqlError::TransactionClosed)),
        }
    }

    #[tracing::instrument(level = "debug", name = "skiff.sql.tx.commit", skip_all)]
    async fn commit(&mut self, tx: Resource<TransactionSlot>) -> Outcome<()> {
        match self.table.delete(tx)?.0 {
            Some(open) => Ok(open.commit().await),
            None => Ok(Err(SqlError::TransactionClosed)),
        }
    }

    #[tracing::instrument(level = "debug", name = "skiff.sql.tx.rollback", skip_all)]
    async fn rollback(&mut self, tx: Resource<TransactionSlot>) -> Outcome<()> {
        match self.table.delete(tx)?.0 {
            Some(open) => Ok(open.rollback().await),
            None => Ok(Err(SqlError::TransactionClosed)),
        }
    }

    async fn drop(&mut self, tx: Resource<TransactionSlot>) -> wasmtime::Result<()> {
        // Dropping the sqlx transaction rolls it back when its connection is next used.
        self.table.delete(tx)?;
        Ok(())
    }
}
