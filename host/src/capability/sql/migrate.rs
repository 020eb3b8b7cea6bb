//! Applying a component's own migrations before its service reports ready.

use std::sync::Arc;

use super::{Migration, SqlClient, SqlError, Value};

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS skiff_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)";

/// Applies, in version order, each migration not yet recorded in `skiff_migrations`, each in
/// its own transaction together with its ledger row. Returns how many were applied.
pub async fn apply_migrations(client: &Arc<dyn SqlClient>, migrations: &[Migration]) -> Result<usize, SqlError> {
    let mut ordered: Vec<&Migration> = migrations.iter().collect();
    ordered.sort_by_key(|m| m.version);
    if let Some(pair) = ordered.windows(2).find(|pair| pair[0].version == pair[1].version) {
        return Err(SqlError::BadQuery(format!("migration version {} is declared twice", pair[0].version)));
    }
    client.execute(CREATE_LEDGER, Vec::new()).await?;
    let mut applied = 0;
    for migration in ordered {
        let mut tx = client.begin().await?;
        client.lock_for_migrations(tx.as_mut()).await?;
        let version = Value::Int64(i64::from(migration.version));
        let seen = tx.query("SELECT version FROM skiff_migrations WHERE version = $1", vec![version.clone()]).await?;
        if !seen.rows.is_empty() {
            tx.rollback().await?;
            continue;
        }
        tx.execute_script(&migration.sql).await?;
        tx.execute(
            "INSERT INTO skiff_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            vec![version, Value::Text(migration.name.clone()), Value::Timestamp(chrono::Utc::now().timestamp_micros())],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version = migration.version, name = %migration.name, "applied migration");
        applied += 1;
    }
    Ok(applied)
}
