//! Applying a component's own migrations before its service reports ready.
//!
//! The semantics are sqlx's `Migrator`'s: a ledger row per applied migration with the SHA-384 of
//! its SQL; a migration whose SQL changed after it was applied is refused by name, never skipped;
//! each migration runs in its own transaction under a lock, so replicas starting together apply
//! it once. Versions in the ledger that the component no longer lists are allowed: a rollback to
//! an older version of the component runs on the newer schema (migrations expand, then contract
//! in a later release). sqlx's `Migrator` itself is not used because it wants a concrete
//! connection type and its own ledger, while the host holds databases behind [`SqlClient`] and
//! has ledgers written by earlier skiff releases to keep.

use sha2::{Digest, Sha384};
use std::sync::Arc;

use super::{Migration, MigrationsPre, SqlClient, SqlError, SqlTransaction, Value};
use crate::capability::{CapabilityStore, VersionExports, VersionRefused};

/// The interface a component with a database of its own exports, by version-less prefix.
pub const MIGRATIONS_INTERFACE: &str = "skiff:sql/migrations@";

/// Applies `version`'s migrations to `client`, if it has any: the sql capability's part in
/// preparing a version to serve.
pub async fn migrate_version<T: CapabilityStore>(
    client: &Arc<dyn SqlClient>,
    version: &dyn VersionExports<T>,
) -> Result<(), VersionRefused> {
    if !version.exports_interface(MIGRATIONS_INTERFACE) {
        return Ok(());
    }
    let refused = |reason: String| VersionRefused::new("migrations-failed", reason);
    let label = version.label();
    let migrations =
        read_migrations(version).await.map_err(|e| refused(format!("reading the migrations of {label}: {e:#}")))?;
    let applied = apply_migrations(client, &migrations)
        .await
        .map_err(|e| refused(format!("applying the migrations of {label} failed: {e}")))?;
    tracing::info!(version = %label, applied, backend = client.backend(), "database ready");
    Ok(())
}

/// Reads a component's migrations by instantiating it once.
async fn read_migrations<T: CapabilityStore>(version: &dyn VersionExports<T>) -> anyhow::Result<Vec<Migration>> {
    let mut instance = version.setup_instance();
    let pre = MigrationsPre::new(instance.pre.clone())?;
    let read = async {
        let migrations = pre.instantiate_async(&mut instance.store).await?;
        migrations.skiff_sql_migrations().call_all(&mut instance.store).await
    };
    let listed = tokio::time::timeout_at(instance.deadline.into(), read)
        .await
        .map_err(|_| anyhow::anyhow!("the component did not list its migrations in time"))?;
    Ok(listed?)
}

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS skiff_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL, checksum BYTEA)";
/// Fails on a ledger written before skiff recorded checksums.
const HAS_CHECKSUMS: &str = "SELECT checksum FROM skiff_migrations WHERE version < 0";
const ADD_CHECKSUMS: &str = "ALTER TABLE skiff_migrations ADD COLUMN checksum BYTEA";

/// Why a service's migrations were not applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration version {0} is declared twice")]
    DuplicateVersion(u32),
    #[error(
        "migration {version} ({name}) was changed after it was applied: its SQL no longer matches the checksum \
         recorded when it ran; restore it and put the change in a new migration"
    )]
    Edited { version: u32, name: String },
    #[error("migration {version} ({name}) failed: {error:?}")]
    Failed { version: u32, name: String, error: SqlError },
    #[error("the migrations ledger: {0:?}")]
    Ledger(SqlError),
}

/// Applies, in version order, each migration not yet recorded in `skiff_migrations`, each in
/// its own transaction together with its ledger row. Returns how many were applied.
pub async fn apply_migrations(client: &Arc<dyn SqlClient>, migrations: &[Migration]) -> Result<usize, MigrationError> {
    let mut ordered: Vec<&Migration> = migrations.iter().collect();
    ordered.sort_by_key(|m| m.version);
    if let Some(pair) = ordered.windows(2).find(|pair| pair[0].version == pair[1].version) {
        return Err(MigrationError::DuplicateVersion(pair[0].version));
    }
    prepare_ledger(client).await.map_err(MigrationError::Ledger)?;
    let mut applied = 0;
    for migration in ordered {
        let failed = |error| MigrationError::Failed { version: migration.version, name: migration.name.clone(), error };
        let mut tx = client.begin().await.map_err(failed)?;
        tx.lock_for_migrations().await.map_err(failed)?;
        if apply_one(tx, migration).await? {
            tracing::info!(version = migration.version, name = %migration.name, "applied migration");
            applied += 1;
        }
    }
    Ok(applied)
}

/// Creates the ledger, or adds the checksum column to one from before checksums.
async fn prepare_ledger(client: &Arc<dyn SqlClient>) -> Result<(), SqlError> {
    // Under the lock: Postgres may fail two concurrent `CREATE TABLE IF NOT EXISTS`.
    let mut tx = client.begin().await?;
    tx.lock_for_migrations().await?;
    tx.execute(CREATE_LEDGER, Vec::new()).await?;
    tx.commit().await?;
    // Outside a transaction: on Postgres a failed statement would abort it.
    if client.query(HAS_CHECKSUMS, Vec::new()).await.is_err() {
        let mut tx = client.begin().await?;
        tx.lock_for_migrations().await?;
        let added = tx.execute(ADD_CHECKSUMS, Vec::new()).await;
        tx.commit().await?;
        if let Err(error) = added {
            // Another replica may have added it first; if the column is there, all is well.
            client.query(HAS_CHECKSUMS, Vec::new()).await.map_err(|_| error)?;
        }
    }
    Ok(())
}

/// Applies `migration` in `tx` (which holds the migrations lock) unless the ledger has it;
/// whether it was applied.
async fn apply_one(mut tx: Box<dyn SqlTransaction>, migration: &Migration) -> Result<bool, MigrationError> {
    let failed = |error| MigrationError::Failed { version: migration.version, name: migration.name.clone(), error };
    let version = Value::Int64(i64::from(migration.version));
    let checksum = Sha384::digest(migration.sql.as_bytes()).to_vec();
    let recorded = tx
        .query("SELECT checksum FROM skiff_migrations WHERE version = $1", vec![version.clone()])
        .await
        .map_err(failed)?;
    match recorded.rows.first().and_then(|row| row.first()) {
        Some(Value::Bytes(recorded)) if *recorded == checksum => {
            tx.rollback().await.map_err(failed)?;
            Ok(false)
        }
        Some(Value::Bytes(_)) => {
            Err(MigrationError::Edited { version: migration.version, name: migration.name.clone() })
        }
        Some(_) => {
            // Applied by a skiff that kept no checksums: record the SQL as it is now.
            tx.execute(
                "UPDATE skiff_migrations SET checksum = $1 WHERE version = $2",
                vec![Value::Bytes(checksum), version],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(false)
        }
        None => {
            tx.execute_script(&migration.sql).await.map_err(failed)?;
            tx.execute(
                "INSERT INTO skiff_migrations (version, name, applied_at, checksum) VALUES ($1, $2, $3, $4)",
                vec![
                    version,
                    Value::Text(migration.name.clone()),
                    Value::Timestamp(chrono::Utc::now().timestamp_micros()),
                    Value::Bytes(checksum),
                ],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MigrationError, apply_migrations};
    use crate::capability::sql::{Database, DatabaseOptions, Migration, SqlClient, Value};
    use std::sync::Arc;

    fn migration(version: u32, name: &str, sql: &str) -> Migration {
        Migration { version, name: name.into(), sql: sql.into() }
    }

    async fn memory_database() -> Arc<dyn SqlClient> {
        Database::connect("sqlite::memory:", &DatabaseOptions { max_connections: 1, ..DatabaseOptions::default() })
            .await
            .expect("in-memory SQLite")
    }

    #[tokio::test]
    async fn applies_each_migration_once_in_version_order() {
        let db = memory_database().await;
        let list = [
            migration(2, "add_b", "ALTER TABLE t ADD COLUMN b TEXT"),
            migration(1, "create_t", "CREATE TABLE t (a INTEGER)"),
        ];
        assert_eq!(apply_migrations(&db, &list).await.unwrap(), 2);
        assert_eq!(apply_migrations(&db, &list).await.unwrap(), 0);
        let rows = db.query("SELECT version, name FROM skiff_migrations ORDER BY version", vec![]).await.unwrap();
        assert_eq!(
            rows.rows,
            vec![
                vec![Value::Int64(1), Value::Text("create_t".into())],
                vec![Value::Int64(2), Value::Text("add_b".into())],
            ]
        );
    }

    #[tokio::test]
    async fn an_edited_migration_is_refused_by_name() {
        let db = memory_database().await;
        apply_migrations(&db, &[migration(1, "create_t", "CREATE TABLE t (a INTEGER)")]).await.unwrap();
        let edited = [migration(1, "create_t", "CREATE TABLE t (a BIGINT)")];
        let error = apply_migrations(&db, &edited).await.unwrap_err();
        assert!(matches!(&error, MigrationError::Edited { version: 1, name } if name == "create_t"), "{error}");
        assert!(error.to_string().contains("migration 1 (create_t) was changed after it was applied"), "{error}");
    }

    #[tokio::test]
    async fn a_failed_migration_leaves_nothing_behind() {
        let db = memory_database().await;
        let list = [migration(1, "broken", "CREATE TABLE t (a INTEGER); CREATE TABLE t (a INTEGER)")];
        let error = apply_migrations(&db, &list).await.unwrap_err();
        assert!(matches!(error, MigrationError::Failed { version: 1, .. }), "{error}");
        let ledger = db.query("SELECT COUNT(*) FROM skiff_migrations", vec![]).await.unwrap();
        assert_eq!(ledger.rows, vec![vec![Value::Int64(0)]]);
        assert!(db.query("SELECT a FROM t", vec![]).await.is_err(), "the first statement was rolled back");
    }

    #[tokio::test]
    async fn a_ledger_from_before_checksums_is_kept_and_backfilled() {
        let db = memory_database().await;
        db.execute(
            "CREATE TABLE skiff_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)",
            vec![],
        )
        .await
        .unwrap();
        db.execute("CREATE TABLE t (a INTEGER)", vec![]).await.unwrap();
        db.execute("INSERT INTO skiff_migrations VALUES (1, 'create_t', '2026-01-01T00:00:00.000000Z')", vec![])
            .await
            .unwrap();
        let list = [migration(1, "create_t", "CREATE TABLE t (a INTEGER)")];
        assert_eq!(apply_migrations(&db, &list).await.unwrap(), 0, "not applied twice");
        let checksum = db.query("SELECT checksum FROM skiff_migrations", vec![]).await.unwrap();
        assert!(matches!(checksum.rows[0][0], Value::Bytes(ref sum) if sum.len() == 48), "{checksum:?}");
        // From now on an edit is caught.
        let edited = [migration(1, "create_t", "CREATE TABLE t (a TEXT)")];
        assert!(matches!(apply_migrations(&db, &edited).await, Err(MigrationError::Edited { .. })));
    }
}
