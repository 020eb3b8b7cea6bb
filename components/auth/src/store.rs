//! Failed logins, through the host's `skiff:sql` capability (bound parameters only). Instances
//! are fresh per request, so the throttle's memory is this table.

use service_kit::bindings::skiff::sql::client;
use service_kit::bindings::skiff::sql::types::Value;
use service_kit::sql::{Row, StoreError};

/// The newest `limit` failures under `subject` after `since` (micros), newest first: enough
/// for [`crate::domain::decide`], and bounded however many there are.
pub fn recent_failures(subject: &str, since: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
    let rows = client::query(
        "SELECT at FROM login_failures WHERE subject = $1 AND at > $2 ORDER BY at DESC LIMIT $3",
        &[Value::Text(subject.to_owned()), Value::Timestamp(since), Value::Int64(i64::from(limit))],
    )?;
    rows.rows.iter().map(|row| Row(row).timestamp(0)).collect()
}

/// Records one failure under each subject, and deletes failures that have left the window
/// (with the index on `at` this touches only expired rows, so it stays cheap).
pub fn record_failure(subjects: &[&str], at: i64, expired_before: i64) -> Result<(), StoreError> {
    for subject in subjects {
        client::execute(
            "INSERT INTO login_failures (subject, at) VALUES ($1, $2)",
            &[Value::Text((*subject).to_owned()), Value::Timestamp(at)],
        )?;
    }
    client::execute("DELETE FROM login_failures WHERE at <= $1", &[Value::Timestamp(expired_before)])?;
    Ok(())
}

/// Forgets the failures under `subject` (an account after a successful login).
pub fn clear(subject: &str) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE subject = $1", &[Value::Text(subject.to_owned())])?;
    Ok(())
}
