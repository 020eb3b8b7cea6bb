//! The notifications table, through the host's `skiff:sql` capability (bound parameters only).

use crate::domain::Notification;
use service_kit::bindings::skiff::sql::client;
use service_kit::bindings::skiff::sql::types::{Value, ValueKind};
use service_kit::page::Page;
use service_kit::sql::{Row, StoreError, bind};

const COLUMNS: &str = "id, event_id, user_id, kind, message, created_at, delivered_at, attempts";

/// Stores the notification unless one for its event exists already (a redelivery); `true` when
/// it was stored. With `claimed_until` (microseconds) the new row starts claimed for delivery by
/// this caller, so the first delivery of an event needs no separate claim.
pub fn insert_if_new(
    notification: &Notification,
    payload: &str,
    claimed_until: Option<i64>,
) -> Result<bool, StoreError> {
    let inserted = client::execute(
        "INSERT INTO notifications \
         (id, event_id, user_id, kind, message, payload, created_at, delivered_at, attempts, claimed_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, $8) ON CONFLICT (event_id) DO NOTHING",
        &[
            Value::Uuid(notification.id.clone()),
            Value::Text(notification.event_id.clone()),
            Value::Text(notification.user_id.clone()),
            Value::Text(notification.kind.clone()),
            Value::Text(notification.message.clone()),
            Value::Text(payload.to_owned()),
            Value::Timestamp(notification.created_at),
            claimed_until.map_or(Value::Null(Some(ValueKind::Int64)), Value::Int64),
        ],
    )?;
    Ok(inserted == 1)
}

pub fn by_event(event_id: &str) -> Result<Option<Notification>, StoreError> {
    let rows = client::query(
        &format!("SELECT {COLUMNS} FROM notifications WHERE event_id = $1"),
        &[Value::Text(event_id.to_owned())],
    )?;
    rows.rows.first().map(|row| from_row(row)).transpose()
}

/// Takes the right to call the webhook for the event's notification until `until`
/// (microseconds): `false` when it is delivered already or another delivery holds an unexpired
/// claim. One statement, so two replicas cannot both win.
pub fn claim_delivery(event_id: &str, now: i64, until: i64) -> Result<bool, StoreError> {
    let claimed = client::execute(
        "UPDATE notifications SET claimed_until = $1 \
         WHERE event_id = $2 AND delivered_at IS NULL AND (claimed_until IS NULL OR claimed_until < $3)",
        &[Value::Int64(until), Value::Text(event_id.to_owned()), Value::Int64(now)],
    )?;
    Ok(claimed == 1)
}

/// Counts a delivery attempt, records the delivery when it succeeded, and gives up the claim.
pub fn record_attempt(event_id: &str, delivered_at: Option<i64>) -> Result<(), StoreError> {
    let event = Value::Text(event_id.to_owned());
    match delivered_at {
        Some(at) => client::execute(
            "UPDATE notifications SET attempts = attempts + 1, delivered_at = $1, claimed_until = NULL \
             WHERE event_id = $2",
            &[Value::Timestamp(at), event],
        )?,
        None => client::execute(
            "UPDATE notifications SET attempts = attempts + 1, claimed_until = NULL WHERE event_id = $1",
            &[event],
        )?,
    };
    Ok(())
}

pub fn list(user_id: Option<&str>, page: Page) -> Result<Vec<Notification>, StoreError> {
    let mut params = Vec::new();
    let filter = match user_id {
        Some(user) => format!("WHERE user_id = {}", bind(&mut params, Value::Text(user.to_owned()))),
        None => String::new(),
    };
    let limit = bind(&mut params, Value::Int64(i64::from(page.limit)));
    let offset = bind(&mut params, Value::Int64(i64::try_from(page.offset).unwrap_or(i64::MAX)));
    let statement =
        format!("SELECT {COLUMNS} FROM notifications {filter} ORDER BY created_at, id LIMIT {limit} OFFSET {offset}");
    let rows = client::query(&statement, &params)?;
    rows.rows.iter().map(|row| from_row(row)).collect()
}

fn from_row(row: &[Value]) -> Result<Notification, StoreError> {
    let row = Row(row);
    Ok(Notification {
        id: row.uuid(0)?,
        event_id: row.text(1)?,
        user_id: row.text(2)?,
        kind: row.text(3)?,
        message: row.text(4)?,
        created_at: row.timestamp(5)?,
        delivered_at: row.optional_timestamp(6)?,
        attempts: i64::from(row.int32(7)?),
    })
}
