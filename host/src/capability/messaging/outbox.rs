//! The transactional-outbox half of publishing: `publish` writes to `skiff_outbox` in the
//! service's own database (`enqueue`, through the pool; `enqueue_in`, inside an open
//! transaction) and returns; the relay hands each row to the broker and deletes it only after
//! the broker confirmed it. A broker outage delays events, it loses none.
//!
//! Every replica of a service runs a relay on the same table, so a relay first claims a batch:
//! it stamps the rows with its own id and a lease (`claimed_by`, `claimed_until`, microseconds
//! since the epoch) in one statement, which on Postgres skips rows another relay is claiming
//! (`FOR UPDATE SKIP LOCKED`) and on SQLite runs under the database's single write lock. Rows
//! whose lease ran out (their relay crashed or lost its database) are claimable again. A row
//! reaches the broker twice only if its relay dies between the broker's confirm and the delete,
//! or stalls past the lease in the middle of its batch: delivery is at least once.
//!
//! The relay signs each message with the service's event key as it hands it over (see
//! `signing.rs`), so the key never sits in the table.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::client::{Broker, Exchange, ExchangeKind, OutboundMessage};
use super::signing::EventSigner;
use crate::capability::sql::{SqlClient, SqlError, SqlTransaction, Value};
use crate::retry::retry_forever;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS skiff_outbox (\
     id TEXT PRIMARY KEY, exchange TEXT NOT NULL, routing_key TEXT NOT NULL, content_type TEXT NOT NULL, \
     headers TEXT NOT NULL, body BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL, \
     claimed_by TEXT, claimed_until BIGINT, exchange_kind TEXT)";
/// Outbox tables from earlier releases lack these columns; `prepare` adds them. Rows written
/// before `exchange_kind` existed have none: they were login events, which are fanout now.
const ADDED_COLUMNS: [(&str, &str); 3] =
    [("claimed_by", "TEXT"), ("claimed_until", "BIGINT"), ("exchange_kind", "TEXT")];
const INSERT: &str = "INSERT INTO skiff_outbox (id, exchange, routing_key, content_type, headers, body, created_at, exchange_kind) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// Claims up to `$4` rows that are free, leased out past `$3`, or already this relay's (`$1`);
/// `{lock}` is Postgres's `FOR UPDATE SKIP LOCKED`.
const CLAIM: &str = "UPDATE skiff_outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN (\
     SELECT id FROM skiff_outbox WHERE claimed_until IS NULL OR claimed_until < $3 OR claimed_by = $1 \
     ORDER BY created_at, id LIMIT $4{lock})";
const CLAIMED: &str = "SELECT id, exchange, routing_key, content_type, headers, body, exchange_kind FROM skiff_outbox \
     WHERE claimed_by = $1 ORDER BY created_at, id LIMIT $2";
const BATCH: i64 = 100;
const BATCH_ROWS: usize = BATCH as usize;
/// How long a claim holds: a relay that has not delivered its batch by then (it crashed, or
/// lost its database) leaves the rows to the others. Far above a batch's publishing time.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Even without a wake-up, look again this often (rows written by another replica).
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Outbox {
    sql: Arc<dyn SqlClient>,
    wake: Notify,
    depth: Gauge,
    /// How long the oldest message has waited, in seconds: measured when the relay is idle,
    /// when it fails (the broker is down) and after each full batch (a backlog).
    oldest_age: Gauge,
    /// This relay's claim stamp, unique per process and service.
    relay_id: String,
    lease: Duration,
    /// Signs each message as it leaves; `None` publishes unsigned (no `event_signing_key`).
    signer: Option<EventSigner>,
}

impl Outbox {
    pub fn new(sql: Arc<dyn SqlClient>, depth: Gauge) -> Self {
        Self::with_lease(sql, depth, DEFAULT_LEASE)
    }

    /// An outbox whose relay's claims hold for `lease`.
    pub fn with_lease(sql: Arc<dyn SqlClient>, depth: Gauge, lease: Duration) -> Self {
        let relay_id = uuid::Uuid::new_v4().to_string();
        Self { sql, wake: Notify::new(), depth, oldest_age: Gauge::default(), relay_id, lease, signer: None }
    }

    /// This outbox reporting the age of its oldest message in `gauge`.
    pub fn with_age_gauge(mut self, gauge: Gauge) -> Self {
        self.oldest_age = gauge;
        self
    }

    /// This outbox with its relay signing every message with `signer`.
    pub fn signed_by(mut self, signer: EventSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Creates the outbox table, or adds the newer columns to one from an earlier release;
    /// part of getting the service ready.
    pub async fn prepare(&self) -> Result<(), SqlError> {
        self.sql.execute(CREATE_TABLE, Vec::new()).await?;
        for (column, kind) in ADDED_COLUMNS {
            let probe = format!("SELECT {column} FROM skiff_outbox LIMIT 1");
            if self.sql.query(&probe, Vec::new()).await.is_ok() {
                continue;
            }
            let added =
                self.sql.execute(&format!("ALTER TABLE skiff_outbox ADD COLUMN {column} {kind}"), Vec::new()).await;
            if let Err(error) = added {
                // Another replica may have added it first; if the column is there, all is well.
                self.sql.query(&probe, Vec::new()).await.map_err(|_| error)?;
            }
        }
        Ok(())
    }

    /// Stores `message` through the pool, committed on return.
    pub async fn enqueue(&self, message: &OutboundMessage) -> Result<(), SqlError> {
        self.sql.execute(INSERT, row_of(message)).await?;
        self.enqueued();
        Ok(())
    }

    /// Stores `message` in the caller's open transaction: it is relayed once that commits, and
    /// never if it rolls back.
    pub async fn enqueue_in(&self, tx: &mut dyn SqlTransaction, message: &OutboundMessage) -> Result<(), SqlError> {
        tx.execute(INSERT, row_of(message)).await?;
        // Before the commit the relay cannot see the row; the idle poll finds it after.
        self.wake.notify_one();
        Ok(())
    }

    fn enqueued(&self) {
        self.depth.inc();
        self.wake.notify_one();
    }

    /// Delivers outbox rows to `broker` for as long as the process runs.
    pub async fn relay(self: Arc<Self>, broker: Arc<dyn Broker>, service: String) {
        loop {
            let delivered = retry_forever(
                || self.relay_batch(broker.as_ref()),
                |error: &anyhow::Error, retry_in| {
                    tracing::warn!(%service, error = %format!("{error:#}"), ?retry_in, "outbox relay: broker or database unavailable");
                },
            )
            .await;
            // A short batch emptied the table as far as this relay can tell: wait for a wake-up
            // (one that came during the batch returns at once) or the idle poll, instead of
            // claiming again for nothing.
            if delivered < BATCH_ROWS {
                let _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()).await;
            }
        }
    }

    /// Claims, publishes and deletes up to one batch; returns how many rows it delivered. An
    /// idle relay, a failed batch and a full one (a backlog) measure the oldest message's age.
    async fn relay_batch(&self, broker: &dyn Broker) -> anyhow::Result<usize> {
        let delivered = self.publish_batch(broker).await;
        if !matches!(delivered, Ok(count) if count > 0 && count < BATCH_ROWS) {
            self.measure_oldest_age().await;
        }
        delivered
    }

    async fn publish_batch(&self, broker: &dyn Broker) -> anyhow::Result<usize> {
        let rows = self.claim().await?;
        if rows.is_empty() {
            // Idle: the moment to count the backlog across replicas (while busy, this relay's
            // own enqueues and deletes move the gauge).
            self.depth.set(self.count().await?);
            return Ok(0);
        }
        let mut published = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut message = message_from_row(row)?;
            if let Some(signer) = &self.signer {
                signer.sign(&mut message);
            }
            if let Err(error) = broker.publish(&message).await {
                // What the broker confirmed goes; the rest is given back for whoever can deliver.
                let deleted = self.delete(&published).await;
                self.release().await;
                deleted?;
                return Err(error);
            }
            published.push(message.id);
        }
        self.delete(&published).await?;
        Ok(published.len())
    }

    /// Deletes the rows the broker confirmed, in one statement.
    async fn delete(&self, ids: &[String]) -> anyhow::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let statement = format!("DELETE FROM skiff_outbox WHERE id IN ({})", placeholders.join(", "));
        self.sql
            .execute(&statement, ids.iter().cloned().map(Value::Text).collect())
            .await
            .map_err(|e| anyhow::anyhow!("deleting relayed messages: {e:?}"))?;
        self.depth.dec_by(i64::try_from(ids.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Takes a batch for this relay; the rows, oldest first.
    async fn claim(&self) -> anyhow::Result<Vec<Vec<Value>>> {
        let now = chrono::Utc::now().timestamp_micros();
        let until = now.saturating_add(i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX));
        let lock = if self.sql.backend() == "postgres" { " FOR UPDATE SKIP LOCKED" } else { "" };
        let me = Value::Text(self.relay_id.clone());
        self.sql
            .execute(
                &CLAIM.replace("{lock}", lock),
                vec![me.clone(), Value::Int64(until), Value::Int64(now), Value::Int64(BATCH)],
            )
            .await
            .map_err(|e| anyhow::anyhow!("claiming outbox rows: {e:?}"))?;
        let claimed = self
            .sql
            .query(CLAIMED, vec![me, Value::Int64(BATCH)])
            .await
            .map_err(|e| anyhow::anyhow!("reading the outbox: {e:?}"))?;
        Ok(claimed.rows)
    }

    /// Gives this relay's undelivered rows back at once (the broker refused), so another
    /// replica with a working broker connection need not wait for the lease.
    async fn release(&self) {
        let released = self
            .sql
            .execute(
                "UPDATE skiff_outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = $1",
                vec![Value::Text(self.relay_id.clone())],
            )
            .await;
        if let Err(error) = released {
            tracing::debug!(error = ?error, "outbox claims left to expire");
        }
    }
}

fn row_of(message: &OutboundMessage) -> Vec<Value> {
    let headers = serde_json::to_string(&message.headers).unwrap_or_else(|_| "[]".into());
    vec![
        Value::Text(message.id.clone()),
        Value::Text(message.exchange.name.clone()),
        Value::Text(message.routing_key.clone()),
        Value::Text(message.content_type.clone()),
        Value::Text(headers),
        Value::Bytes(message.body.clone()),
        Value::Timestamp(chrono::Utc::now().timestamp_micros()),
        Value::Text(message.exchange.kind.as_str().into()),
    ]
}

impl Outbox {
    /// Sets the age gauge from the oldest row, claimed or not, across every replica (0 when
    /// the outbox is empty). A database that does not answer leaves the last figure.
    async fn measure_oldest_age(&self) {
        let oldest =
            self.sql.query("SELECT created_at FROM skiff_outbox ORDER BY created_at LIMIT 1", Vec::new()).await;
        let age_seconds = match oldest.as_ref().map(|rows| rows.rows.first().and_then(|row| row.first())) {
            Ok(Some(Value::Timestamp(created_micros))) => {
                let waited = chrono::Utc::now().timestamp_micros().saturating_sub(*created_micros);
                waited.max(0) / 1_000_000
            }
            Ok(None) => 0,
            Ok(Some(other)) => {
                tracing::debug!(value = ?other, "outbox created_at is not a timestamp");
                return;
            }
            Err(error) => {
                tracing::debug!(error = ?error, "outbox age not measured");
                return;
            }
        };
        self.oldest_age.set(age_seconds);
    }

    /// The backlog, claimed or not, across every replica.
    async fn count(&self) -> anyhow::Result<i64> {
        let counted = self
            .sql
            .query("SELECT COUNT(*) FROM skiff_outbox", Vec::new())
            .await
            .map_err(|e| anyhow::anyhow!("counting the outbox: {e:?}"))?;
        match counted.rows.first().and_then(|row| row.first()) {
            Some(Value::Int64(count)) => Ok(*count),
            other => anyhow::bail!("unexpected outbox count: {other:?}"),
        }
    }
}

fn message_from_row(row: &[Value]) -> anyhow::Result<OutboundMessage> {
    let text = |index: usize| match row.get(index) {
        Some(Value::Text(text)) => Ok(text.clone()),
        other => Err(anyhow::anyhow!("unexpected outbox column {index}: {other:?}")),
    };
    let body = match row.get(5) {
        Some(Value::Bytes(bytes)) => bytes.clone(),
        other => anyhow::bail!("unexpected outbox body: {other:?}"),
    };
    let kind = match row.get(6) {
        Some(Value::Text(kind)) => {
            ExchangeKind::parse(kind).ok_or_else(|| anyhow::anyhow!("unknown exchange kind {kind:?} in the outbox"))?
        }
        _ => ExchangeKind::Fanout,
    };
    Ok(OutboundMessage {
        id: text(0)?,
        exchange: Exchange::new(text(1)?, kind),
        routing_key: text(2)?,
        content_type: text(3)?,
        headers: serde_json::from_str(&text(4)?).unwrap_or_default(),
        body,
    })
}

#[cfg(test)]
mod tests;
