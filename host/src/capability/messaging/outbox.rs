//! The transactional-outbox half of publishing: `publish` writes to `skiff_outbox` in the
//! service's own database and returns; the relay hands each row to the broker and deletes it
//! only after the broker confirmed it. A broker outage delays events, it loses none.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::client::{Broker, OutboundMessage};
use crate::capability::sql::{SqlClient, SqlError, Value};
use crate::retry::retry_forever;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS skiff_outbox (\
     id TEXT PRIMARY KEY, exchange TEXT NOT NULL, routing_key TEXT NOT NULL, content_type TEXT NOT NULL, \
     headers TEXT NOT NULL, body BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)";
const BATCH: i64 = 100;
/// Even without a wake-up, look again this often (rows written by another replica).
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct Outbox {
    sql: Arc<dyn SqlClient>,
    wake: Notify,
    depth: Gauge,
}

impl Outbox {
    pub fn new(sql: Arc<dyn SqlClient>, depth: Gauge) -> Self {
        Self { sql, wake: Notify::new(), depth }
    }

    /// Creates the outbox table; part of getting the service ready.
    pub async fn prepare(&self) -> Result<(), SqlError> {
        self.sql.execute(CREATE_TABLE, Vec::new()).await.map(drop)
    }

    pub async fn enqueue(&self, message: &OutboundMessage) -> Result<(), SqlError> {
        let headers = serde_json::to_string(&message.headers).unwrap_or_else(|_| "[]".into());
        self.sql
            .execute(
                "INSERT INTO skiff_outbox (id, exchange, routing_key, content_type, headers, body, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    Value::Text(message.id.clone()),
                    Value::Text(message.exchange.clone()),
                    Value::Text(message.routing_key.clone()),
                    Value::Text(message.content_type.clone()),
                    Value::Text(headers),
                    Value::Bytes(message.body.clone()),
                    Value::Timestamp(chrono::Utc::now().timestamp_micros()),
                ],
            )
            .await?;
        self.depth.inc();
        self.wake.notify_one();
        Ok(())
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
            if delivered == 0 {
                let _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()).await;
            }
        }
    }

    /// Publishes up to one batch; returns how many rows it delivered.
    async fn relay_batch(&self, broker: &dyn Broker) -> anyhow::Result<usize> {
        let rows = self
            .sql
            .query(
                "SELECT id, exchange, routing_key, content_type, headers, body FROM skiff_outbox ORDER BY created_at, id LIMIT $1",
                vec![Value::Int64(BATCH)],
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the outbox: {e:?}"))?;
        self.depth.set(self.depth_now(rows.rows.len()).await?);
        let mut delivered = 0;
        for row in &rows.rows {
            let message = message_from_row(row)?;
            broker.publish(&message).await?;
            self.sql
                .execute("DELETE FROM skiff_outbox WHERE id = $1", vec![Value::Text(message.id.clone())])
                .await
                .map_err(|e| anyhow::anyhow!("deleting a relayed message: {e:?}"))?;
            self.depth.dec();
            delivered += 1;
        }
        Ok(delivered)
    }
}

impl Outbox {
    /// The backlog: the batch size when the batch was not full, else a count.
    async fn depth_now(&self, batch_len: usize) -> anyhow::Result<i64> {
        if (batch_len as i64) < BATCH {
            return Ok(batch_len as i64);
        }
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
    Ok(OutboundMessage {
        id: text(0)?,
        exchange: text(1)?,
        routing_key: text(2)?,
        content_type: text(3)?,
        headers: serde_json::from_str(&text(4)?).unwrap_or_default(),
        body,
    })
}

#[cfg(test)]
mod tests;
