//! The users table, through the host's `skiff:sql` capability. Every value is a bound
//! parameter; statement texts are constants or built only from constant fragments.

use crate::domain::{ListQuery, User};
use service_kit::bindings::skiff::sql::client;
use service_kit::bindings::skiff::sql::types::Value;
use service_kit::sql::{Row, StoreError, bind, text_or_null};
use service_kit::token::{Role, role_name, role_named};

const COLUMNS: &str = "id, email, name, surname, phone, role, created_at, updated_at, password_changed_at";

/// A profile to insert, with its password already hashed.
pub struct UserRecord<'a> {
    pub user: &'a User,
    pub password_hash: &'a str,
}

pub fn insert(record: UserRecord<'_>) -> Result<(), StoreError> {
    let user = record.user;
    client::execute(
        "INSERT INTO users (id, email, name, surname, phone, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            Value::Uuid(user.id.clone()),
            Value::Text(user.email.clone()),
            Value::Text(user.name.clone()),
            Value::Text(user.surname.clone()),
            text_or_null(user.phone.as_deref()),
            Value::Text(record.password_hash.to_owned()),
            Value::Text(role_name(user.role).to_owned()),
            Value::Timestamp(user.created_at),
            Value::Timestamp(user.updated_at),
        ],
    )?;
    Ok(())
}

pub fn get(id: &str) -> Result<Option<User>, StoreError> {
    let rows = client::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"), &[Value::Uuid(id.to_owned())])?;
    rows.rows.into_iter().next().map(|row| user_from_row(&row)).transpose()
}

pub fn list(query: &ListQuery) -> Result<Vec<User>, StoreError> {
    let mut conditions = Vec::new();
    let mut params = Vec::new();
    let filters = [
        ("email", query.email.as_ref().map(|e| e.as_str())),
        ("name", query.name.as_deref()),
        ("surname", query.surname.as_deref()),
    ];
    for (column, value) in filters {
        if let Some(value) = value {
            conditions.push(format!("{column} = {}", bind(&mut params, Value::Text(value.to_owned()))));
        }
    }
    let where_clause =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let limit = bind(&mut params, Value::Int64(i64::from(query.page.limit)));
    let offset = bind(&mut params, Value::Int64(i64::try_from(query.page.offset).unwrap_or(i64::MAX)));
    let statement =
        format!("SELECT {COLUMNS} FROM users {where_clause} ORDER BY created_at, id LIMIT {limit} OFFSET {offset}");
    let rows = client::query(&statement, &params)?;
    rows.rows.iter().map(|row| user_from_row(row)).collect()
}

/// Column values for an update; `None` leaves a column as it is.
pub struct UserUpdate {
    pub email: Option<String>,
    pub name: Option<String>,
    pub surname: Option<String>,
    pub phone: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub updated_at: i64,
}

pub fn update(id: &str, update: UserUpdate) -> Result<Option<User>, StoreError> {
    let mut assignments = Vec::new();
    let mut params = Vec::new();
    let mut set = |column: &str, value: Value| assignments.push(format!("{column} = {}", bind(&mut params, value)));
    // A new password or email ends the access tokens and refresh token families issued before.
    if update.password_hash.is_some() || update.email.is_some() {
        set("password_changed_at", Value::Timestamp(update.updated_at));
    }
    if let Some(email) = update.email {
        set("email", Value::Text(email));
    }
    if let Some(name) = update.name {
        set("name", Value::Text(name));
    }
    if let Some(surname) = update.surname {
        set("surname", Value::Text(surname));
    }
    if let Some(phone) = update.phone {
        set("phone", text_or_null(phone.as_deref()));
    }
    if let Some(hash) = update.password_hash {
        set("password_hash", Value::Text(hash));
    }
    set("updated_at", Value::Timestamp(update.updated_at));
    let id = bind(&mut params, Value::Uuid(id.to_owned()));
    let statement = format!("UPDATE users SET {} WHERE id = {id} RETURNING {COLUMNS}", assignments.join(", "));
    let rows = client::query(&statement, &params)?;
    rows.rows.into_iter().next().map(|row| user_from_row(&row)).transpose()
}

pub fn delete(id: &str) -> Result<bool, StoreError> {
    let changed = client::execute("DELETE FROM users WHERE id = $1", &[Value::Uuid(id.to_owned())])?;
    Ok(changed > 0)
}

/// What the credentials check needs: id, role and the stored hash.
pub struct StoredCredentials {
    pub id: String,
    pub role: Role,
    pub password_hash: String,
}

pub fn credentials(email: &str) -> Result<Option<StoredCredentials>, StoreError> {
    let rows =
        client::query("SELECT id, role, password_hash FROM users WHERE email = $1", &[Value::Text(email.to_owned())])?;
    let Some(row) = rows.rows.into_iter().next() else { return Ok(None) };
    match row.as_slice() {
        [Value::Uuid(id), Value::Text(role), Value::Text(hash)] => {
            Ok(Some(StoredCredentials { id: id.clone(), role: role_named(role), password_hash: hash.clone() }))
        }
        other => Err(StoreError::Internal(format!("unexpected credentials row: {} columns", other.len()))),
    }
}

/// Replaces user `id`'s password hash `old` by `new`, the same password at another cost: not a
/// password change, so `password_changed_at` and the sessions stay. Nothing happens when the
/// hash is no longer `old` (the password changed meanwhile).
pub fn replace_password_hash(id: &str, old: &str, new: &str) -> Result<(), StoreError> {
    client::execute(
        "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        &[Value::Text(new.to_owned()), Value::Uuid(id.to_owned()), Value::Text(old.to_owned())],
    )?;
    Ok(())
}

/// The stored hash of user `id`'s password, for checking the current password on a change.
pub fn password_hash(id: &str) -> Result<Option<String>, StoreError> {
    let rows = client::query("SELECT password_hash FROM users WHERE id = $1", &[Value::Uuid(id.to_owned())])?;
    rows.rows.first().map(|row| Row(row).text(0)).transpose()
}

fn user_from_row(row: &[Value]) -> Result<User, StoreError> {
    let row = Row(row);
    Ok(User {
        id: row.uuid(0)?,
        email: row.text(1)?,
        name: row.text(2)?,
        surname: row.text(3)?,
        phone: row.optional_text(4)?,
        role: role_named(&row.text(5)?),
        created_at: row.timestamp(6)?,
        updated_at: row.timestamp(7)?,
        password_changed_at: row.optional_timestamp(8)?,
    })
}

/// Whether a user has this email (checked before hashing a new user's password; the insert's
/// unique constraint still decides a race).
pub fn email_taken(email: &str) -> Result<bool, StoreError> {
    let rows = client::query("SELECT 1 FROM users WHERE email = $1", &[Value::Text(email.to_owned())])?;
    Ok(!rows.rows.is_empty())
}

/// Records a sign-up attempt from `source` before it is judged, so parallel attempts count
/// each other.
pub fn record_signup(source: &str, attempt: &str, at: i64) -> Result<(), StoreError> {
    client::execute(
        "INSERT INTO signup_attempts (source, at, attempt) VALUES ($1, $2, $3)",
        &[Value::Text(source.to_owned()), Value::Timestamp(at), Value::Text(attempt.to_owned())],
    )?;
    Ok(())
}

/// The newest `limit` other attempts from `source` after `since`, newest first.
pub fn recent_signups(source: &str, attempt: &str, since: i64, limit: u32) -> Result<Vec<i64>, StoreError> {
    let rows = client::query(
        "SELECT at FROM signup_attempts WHERE source = $1 AND at > $2 AND attempt <> $3 ORDER BY at DESC LIMIT $4",
        &[
            Value::Text(source.to_owned()),
            Value::Timestamp(since),
            Value::Text(attempt.to_owned()),
            Value::Int64(i64::from(limit)),
        ],
    )?;
    rows.rows.iter().map(|row| Row(row).timestamp(0)).collect()
}

/// Takes back a refused attempt.
pub fn withdraw_signup(attempt: &str) -> Result<(), StoreError> {
    client::execute("DELETE FROM signup_attempts WHERE attempt = $1", &[Value::Text(attempt.to_owned())])?;
    Ok(())
}

/// Forgets attempts that have left the window.
pub fn forget_expired_signups(expired_before: i64) -> Result<(), StoreError> {
    client::execute("DELETE FROM signup_attempts WHERE at <= $1", &[Value::Timestamp(expired_before)])?;
    Ok(())
}

/// Gives the user `id` the admin role; `None` when there is no such user.
pub fn grant_admin(id: &str, at: i64) -> Result<Option<User>, StoreError> {
    client::execute(
        "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3",
        &[Value::Text(role_name(Role::Admin).to_owned()), Value::Timestamp(at), Value::Uuid(id.to_owned())],
    )?;
    get(id)
}
