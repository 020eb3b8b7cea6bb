//! Choosing the backend a database URL names, and opening its pool.

use std::sync::Arc;

use super::client::{DatabaseOptions, SqlClient, redact};
use super::{postgres, sqlite};

/// Opens the database named by `url`: `postgres://…` or `sqlite://path`.
pub struct Database;

impl Database {
    pub async fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<Arc<dyn SqlClient>> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Arc::new(postgres::connect(url, options)?))
        } else if url.starts_with("sqlite:") {
            Ok(Arc::new(sqlite::connect(url, options).await?))
        } else {
            anyhow::bail!("unsupported database URL scheme (expected postgres:// or sqlite:): {}", redact(url))
        }
    }
}
