//! Failed logins, through the host's `skiff:sql` capability (bound parameters only). Instances
//! are fresh per request, so the throttle's memory is this table.
//!
//! An attempt records its rows first (one per subject, under its attempt id) and only then
//! reads the counts, so of any number of parallel attempts at most the limit see room: each
//! one sees every attempt recorded before it. A refused or successful attempt takes its rows
//! back; a failed one leaves them as its failure.

use service_kit::bindings::skiff::sql::client;
use service_kit::bindings::skiff::sql::types::Value;
use service_kit::sql::{Row, StoreError};

/// Records `attempt` under each subject at `at` (micros), before its password is checked.
pub fn record_attempt(subjects: &[&str], attempt: &str, at: i64) -> Result<(), StoreError> {
    for subject in subjects {
        client::execute(
            "INSERT INTO login_failures (subject, at, attempt) VALUES ($1, $2, $3)",
            &[Value::Text((*subject).to_owned()), Value::Timestamp(at), Value::Text(attempt.to_owned())],
        )?;
    }
    Ok(())
}

/// The newest `limit` rows under `subject` after `since` (micros) other than `attempt`'s,
/// newest first: enough for [`crate::domain::decide`], and bounded however many there are.
pub fn recent_failures(subject: &str, attempt: &str, since: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
    let rows = client::query(
        "SELECT at FROM login_failures WHERE subject = $1 AND at > $2 AND COALESCE(attempt, '') <> $3 \
         ORDER BY at DESC LIMIT $4",
        &[
            Value::Text(subject.to_owned()),
            Value::Timestamp(since),
            Value::Text(attempt.to_owned()),
            Value::Int64(i64::from(limit)),
        ],
    )?;
    rows.rows.iter().map(|row| Row(row).timestamp(0)).collect()
}

/// Takes back `attempt`'s rows: it was refused, succeeded, or could not be checked.
pub fn withdraw_attempt(attempt: &str) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE attempt = $1", &[Value::Text(attempt.to_owned())])?;
    Ok(())
}

/// Deletes failures that have left the window (with the index on `at` this touches only
/// expired rows, so it stays cheap).
pub fn forget_expired(expired_before: i64) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE at <= $1", &[Value::Timestamp(expired_before)])?;
    Ok(())
}

/// Forgets the failures under `subject` (an account after a successful login).
pub fn clear(subject: &str) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE subject = $1", &[Value::Text(subject.to_owned())])?;
    Ok(())
}
