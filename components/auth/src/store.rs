//! auth's tables, through the host's `skiff:sql` capability (bound parameters only): failed
//! logins (instances are fresh per request, so the throttle's memory is this table) and
//! refresh tokens.
//!
//! An attempt records its rows first (one per subject, under its attempt id) and only then
//! reads the counts, so of any number of parallel attempts at most the limit see room: each
//! one sees every attempt recorded before it. A refused or successful attempt takes its rows
//! back; a failed one leaves them as its failure.

use service_kit::bindings::skiff::sql::client;
use service_kit::bindings::skiff::sql::types::Value;
use service_kit::sql::{Row, StoreError, bind};

use crate::domain::session::StoredRefresh;

/// Records `attempt` under each subject at `at` (micros), before its password is checked: one
/// statement, so the attempt counts under all its subjects or none.
pub fn record_attempt(subjects: &[&str], attempt: &str, at: i64) -> Result<(), StoreError> {
    let mut params = vec![Value::Timestamp(at), Value::Text(attempt.to_owned())];
    let rows: Vec<String> = subjects
        .iter()
        .map(|subject| format!("({}, $1, $2)", bind(&mut params, Value::Text((*subject).to_owned()))))
        .collect();
    client::execute(&format!("INSERT INTO login_failures (subject, at, attempt) VALUES {}", rows.join(", ")), &params)?;
    Ok(())
}

/// For each `(subject, limit)`, the newest `limit` rows under it after `since` (micros) other
/// than `attempt`'s, newest first: enough for [`crate::domain::decide`], and bounded however
/// many there are. One statement for all subjects (each part walks the `(subject, at)` index).
pub fn recent_failures(limits: &[(&str, u32)], attempt: &str, since: i64) -> Result<Vec<Vec<i64>>, StoreError> {
    let mut params = vec![Value::Timestamp(since), Value::Text(attempt.to_owned())];
    let parts: Vec<String> = limits
        .iter()
        .enumerate()
        .map(|(index, (subject, limit))| {
            let subject = bind(&mut params, Value::Text((*subject).to_owned()));
            let limit = bind(&mut params, Value::Int64(i64::from(*limit)));
            // Wrapped so that each part keeps its own ORDER BY and LIMIT (SQLite allows them
            // only on the whole compound otherwise).
            format!(
                "SELECT subject, at FROM (SELECT subject, at FROM login_failures \
                 WHERE subject = {subject} AND at > $1 AND COALESCE(attempt, '') <> $2 \
                 ORDER BY at DESC LIMIT {limit}) AS part_{index}"
            )
        })
        .collect();
    let rows = client::query(&format!("{} ORDER BY at DESC", parts.join(" UNION ALL ")), &params)?;
    let mut found = vec![Vec::new(); limits.len()];
    for row in &rows.rows {
        let row = Row(row);
        let subject = row.text(0)?;
        if let Some(part) = limits.iter().position(|(wanted, _)| *wanted == subject) {
            found[part].push(row.timestamp(1)?);
        }
    }
    Ok(found)
}

/// Takes back `attempt`'s rows: it was refused, succeeded, or could not be checked.
pub fn withdraw_attempt(attempt: &str) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE attempt = $1", &[Value::Text(attempt.to_owned())])?;
    Ok(())
}

/// Takes back `attempt`'s rows and forgets every failure under `subjects` (an account after a
/// successful login; at least one), in one statement.
pub fn withdraw_and_clear(attempt: &str, subjects: &[&str]) -> Result<(), StoreError> {
    let mut params = vec![Value::Text(attempt.to_owned())];
    let placeholders: Vec<String> =
        subjects.iter().map(|subject| bind(&mut params, Value::Text((*subject).to_owned()))).collect();
    client::execute(
        &format!("DELETE FROM login_failures WHERE attempt = $1 OR subject IN ({})", placeholders.join(", ")),
        &params,
    )?;
    Ok(())
}

/// Deletes failures that have left the window (with the index on `at` this touches only
/// expired rows, so it stays cheap).
pub fn forget_expired(expired_before: i64) -> Result<(), StoreError> {
    client::execute("DELETE FROM login_failures WHERE at <= $1", &[Value::Timestamp(expired_before)])?;
    Ok(())
}

/// A new refresh token's row.
pub struct NewRefresh<'a> {
    pub id: &'a str,
    pub family: &'a str,
    pub user_id: &'a str,
    pub secret_hash: &'a str,
    pub family_started_at: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

fn refresh_values(token: &NewRefresh<'_>) -> Vec<Value> {
    vec![
        Value::Text(token.id.to_owned()),
        Value::Text(token.family.to_owned()),
        Value::Text(token.user_id.to_owned()),
        Value::Text(token.secret_hash.to_owned()),
        Value::Timestamp(token.family_started_at),
        Value::Timestamp(token.issued_at),
        Value::Timestamp(token.expires_at),
    ]
}

const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens \
     (id, family, user_id, secret_hash, family_started_at, issued_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Stores the first token of a new family (a login).
pub fn insert_refresh(token: &NewRefresh<'_>) -> Result<(), StoreError> {
    client::execute(INSERT_REFRESH, &refresh_values(token))?;
    Ok(())
}

/// The row of refresh token `id`, if any.
pub fn refresh(id: &str) -> Result<Option<StoredRefresh>, StoreError> {
    let rows = client::query(
        "SELECT family, user_id, secret_hash, family_started_at, expires_at, used_at, revoked_at \
         FROM refresh_tokens WHERE id = $1",
        &[Value::Text(id.to_owned())],
    )?;
    let Some(row) = rows.rows.first() else { return Ok(None) };
    let row = Row(row);
    Ok(Some(StoredRefresh {
        family: row.text(0)?,
        user_id: row.text(1)?,
        secret_hash: row.text(2)?,
        family_started_at: row.timestamp(3)?,
        expires_at: row.timestamp(4)?,
        used_at: row.optional_timestamp(5)?,
        revoked_at: row.optional_timestamp(6)?,
    }))
}

/// Spends token `spent` and stores `next` in its family, in one transaction; `false` (and
/// nothing changed) when `spent` was spent or revoked in the meantime: a parallel refresh with
/// the same token won, so this one is a reuse.
pub fn rotate_refresh(spent: &str, next: &NewRefresh<'_>) -> Result<bool, StoreError> {
    let tx = client::begin()?;
    let changed = tx.execute(
        "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
        &[Value::Timestamp(next.issued_at), Value::Text(spent.to_owned())],
    )?;
    if changed != 1 {
        client::Transaction::rollback(tx)?;
        return Ok(false);
    }
    tx.execute(INSERT_REFRESH, &refresh_values(next))?;
    client::Transaction::commit(tx)?;
    Ok(true)
}

/// Revokes every token of `family` that is not revoked yet.
pub fn revoke_family(family: &str, at: i64) -> Result<(), StoreError> {
    client::execute(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family = $2 AND revoked_at IS NULL",
        &[Value::Timestamp(at), Value::Text(family.to_owned())],
    )?;
    Ok(())
}

/// Deletes tokens that have expired (a spent token is kept until then, so its reuse is still
/// recognised).
pub fn forget_expired_refresh(now: i64) -> Result<(), StoreError> {
    client::execute("DELETE FROM refresh_tokens WHERE expires_at <= $1", &[Value::Timestamp(now)])?;
    Ok(())
}
