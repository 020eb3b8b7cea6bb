//! The database traits behind `skiff:sql`, their pool settings, and sqlx errors mapped to what
//! a component can act on.

use async_trait::async_trait;
use std::time::Duration;

use super::{Rows, SqlError, Value};

/// One database a component owns.
#[async_trait]
pub trait SqlClient: Send + Sync + 'static {
    async fn query(&self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError>;
    async fn execute(&self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError>;
    async fn begin(&self) -> Result<Box<dyn SqlTransaction>, SqlError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), SqlError>;
    /// `postgres` or `sqlite`, for logs and metrics.
    fn backend(&self) -> &'static str;
}

/// An open transaction; dropping it rolls it back.
#[async_trait]
pub trait SqlTransaction: Send {
    async fn query(&mut self, statement: &str, params: Vec<Value>) -> Result<Rows, SqlError>;
    async fn execute(&mut self, statement: &str, params: Vec<Value>) -> Result<u64, SqlError>;
    /// Runs a script of several statements without parameters (migrations).
    async fn execute_script(&mut self, script: &str) -> Result<(), SqlError>;
    /// Serialises migrations across processes sharing the database, until this transaction ends.
    async fn lock_for_migrations(&mut self) -> Result<(), SqlError>;
    async fn commit(self: Box<Self>) -> Result<(), SqlError>;
    async fn rollback(self: Box<Self>) -> Result<(), SqlError>;
}

/// A transaction as the component's resource table holds it: `None` once committed or rolled
/// back, so a late call gets `transaction-closed` instead of a trap.
pub struct TransactionSlot(pub(super) Option<Box<dyn SqlTransaction>>);

impl TransactionSlot {
    /// A slot holding `tx`, open.
    pub fn new(tx: Box<dyn SqlTransaction>) -> Self {
        Self(Some(tx))
    }

    /// The transaction, unless it was committed or rolled back.
    pub fn open(&mut self) -> Option<&mut (dyn SqlTransaction + 'static)> {
        self.0.as_deref_mut()
    }
}

/// Pool settings shared by both backends.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DatabaseOptions {
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self { max_connections: Self::DEFAULT_MAX_CONNECTIONS, acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT }
    }
}

/// A URL as it may appear in logs: the password replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => {
                    format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Maps a sqlx error to what a component can act on.
pub(super) fn classify(error: sqlx::Error) -> SqlError {
    use sqlx::error::ErrorKind;
    match error {
        sqlx::Error::Database(db) => {
            // Postgres connection exceptions (class 08) and shutdowns (57P0x) are connectivity.
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if code.starts_with("08") || code.starts_with("57P0") {
                return SqlError::ConnectionFailed(db.message().to_owned());
            }
            match db.kind() {
                ErrorKind::UniqueViolation => SqlError::UniqueViolation(db.constraint().map(str::to_owned)),
                ErrorKind::ForeignKeyViolation | ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
                    SqlError::ConstraintViolation(db.message().to_owned())
                }
                _ => SqlError::BadQuery(db.message().to_owned()),
            }
        }
        sqlx::Error::Io(e) => SqlError::ConnectionFailed(e.to_string()),
        sqlx::Error::Tls(e) => SqlError::ConnectionFailed(e.to_string()),
        sqlx::Error::PoolTimedOut => SqlError::ConnectionFailed("timed out waiting for a database connection".into()),
        sqlx::Error::PoolClosed => SqlError::ConnectionFailed("the connection pool is closed".into()),
        sqlx::Error::Protocol(e) => SqlError::ConnectionFailed(e),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => {
            SqlError::BadQuery(error.to_string())
        }
        other => SqlError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/users"), "postgres://app:***@db:5432/users");
        assert_eq!(redact("postgres://postgres@127.0.0.1/users"), "postgres://postgres@127.0.0.1/users");
        assert_eq!(redact("sqlite://data/users.db"), "sqlite://data/users.db");
    }
}
