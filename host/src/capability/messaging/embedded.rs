//! The embedded broker for `skiff dev`: durable queues in one SQLite file. Publishing copies a
//! message into every queue its exchange routes it to (every bound queue for a fanout
//! exchange, the matching ones for a topic exchange); a delivery is leased, so a crash before
//! it is settled makes it deliverable again (at least once). A retry waits in its row
//! (`available_at`), so it holds up no other message.

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::client::{
    Broker, DeliveryStream, Exchange, ExchangeKind, InboundDelivery, OutboundMessage, RetryPolicy, SubscriptionSpec,
};

/// How long a delivery may stay unsettled before it is handed out again.
const LEASE: Duration = Duration::from_secs(60);
/// How often an idle consumer looks for due retries.
const IDLE_POLL: Duration = Duration::from_millis(200);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exchanges (name TEXT PRIMARY KEY, kind TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
    exchange TEXT NOT NULL, queue TEXT NOT NULL, binding_key TEXT NOT NULL,
    PRIMARY KEY (exchange, queue, binding_key));
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL, id TEXT NOT NULL, exchange TEXT NOT NULL, routing_key TEXT NOT NULL,
    content_type TEXT NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL,
    attempt INTEGER NOT NULL, available_at INTEGER NOT NULL, leased_until INTEGER,
    dead_reason TEXT);
CREATE INDEX IF NOT EXISTS messages_due ON messages (queue, available_at) WHERE dead_reason IS NULL;
";

pub struct EmbeddedBroker {
    pool: SqlitePool,
    /// Wakes consumers in this process when something is published.
    published: Arc<Notify>,
    /// Exchanges this process has declared and their kinds, so a publish checks the kind
    /// without asking the database each time.
    declared: std::sync::Mutex<HashMap<String, ExchangeKind>>,
}

impl EmbeddedBroker {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the embedded broker at {}", path.display()))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Self { pool, published: Arc::new(Notify::new()), declared: Default::default() })
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl EmbeddedBroker {
    /// Declares `exchange` as RabbitMQ does: the first declaration fixes its kind, and
    /// declaring it again as another kind is refused. The database is asked once per exchange.
    async fn declare(&self, tx: &mut sqlx::SqliteConnection, exchange: &Exchange) -> anyhow::Result<()> {
        let known = self.declared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.get(&exchange.name).copied();
        match known {
            Some(kind) => ensure_kind(exchange, kind.as_str()),
            None => {
                declare_exchange(tx, exchange).await?;
                if let Ok(mut declared) = self.declared.lock() {
                    declared.insert(exchange.name.clone(), exchange.kind);
                }
                Ok(())
            }
        }
    }
}

fn ensure_kind(exchange: &Exchange, declared: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        declared == exchange.kind.as_str(),
        "exchange {:?} is declared as {declared}, not {}: every service must declare it as the same kind",
        exchange.name,
        exchange.kind.as_str()
    );
    Ok(())
}

async fn declare_exchange(tx: &mut sqlx::SqliteConnection, exchange: &Exchange) -> anyhow::Result<()> {
    sqlx::query("INSERT OR IGNORE INTO exchanges (name, kind) VALUES ($1, $2)")
        .bind(&exchange.name)
        .bind(exchange.kind.as_str())
        .execute(&mut *tx)
        .await?;
    let declared: String = sqlx::query_scalar("SELECT kind FROM exchanges WHERE name = $1")
        .bind(&exchange.name)
        .fetch_one(&mut *tx)
        .await?;
    ensure_kind(exchange, &declared)
}

#[async_trait]
impl Broker for EmbeddedBroker {
    async fn publish(&self, message: &OutboundMessage) -> anyhow::Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        self.declare(&mut tx, &message.exchange).await?;
        let bindings = sqlx::query("SELECT queue, binding_key FROM bindings WHERE exchange = $1 ORDER BY queue")
            .bind(&message.exchange.name)
            .fetch_all(&mut *tx)
            .await?;
        let headers = serde_json::to_string(&message.headers)?;
        let mut queues: Vec<String> = bindings
            .iter()
            .filter(|row| message.exchange.kind.routes(row.get::<&str, _>(1), &message.routing_key))
            .map(|row| row.get::<String, _>(0))
            .collect();
        queues.dedup();
        // Like a mandatory AMQP publish: with nobody listening the message stays in the outbox.
        anyhow::ensure!(
            !queues.is_empty(),
            "no queue is bound to exchange {} for {}",
            message.exchange.name,
            message.routing_key
        );
        for queue in queues {
            sqlx::query(
                "INSERT INTO messages (queue, id, exchange, routing_key, content_type, headers, body, attempt, available_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)",
            )
            .bind(queue)
            .bind(&message.id)
            .bind(&message.exchange.name)
            .bind(&message.routing_key)
            .bind(&message.content_type)
            .bind(&headers)
            .bind(&message.body)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: &SubscriptionSpec,
        _retry: &RetryPolicy,
    ) -> anyhow::Result<Box<dyn DeliveryStream>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        self.declare(&mut tx, &subscription.exchange).await?;
        sqlx::query("INSERT OR IGNORE INTO bindings (exchange, queue, binding_key) VALUES ($1, $2, $3)")
            .bind(&subscription.exchange.name)
            .bind(&subscription.queue)
            .bind(&subscription.binding_key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Box::new(EmbeddedStream {
            pool: self.pool.clone(),
            published: self.published.clone(),
            queue: subscription.queue.clone(),
            exchange: subscription.exchange.clone(),
        }))
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

struct EmbeddedStream {
    pool: SqlitePool,
    published: Arc<Notify>,
    queue: String,
    exchange: Exchange,
}

const LEASE_NEXT: &str = "UPDATE messages SET leased_until = $1 WHERE seq = (
    SELECT seq FROM messages
    WHERE queue = $2 AND dead_reason IS NULL AND available_at <= $3 AND (leased_until IS NULL OR leased_until < $3)
    ORDER BY available_at, seq LIMIT 1)
  RETURNING seq, id, exchange, routing_key, content_type, headers, body, attempt";

#[async_trait]
impl DeliveryStream for EmbeddedStream {
    async fn next(&mut self) -> anyhow::Result<Box<dyn InboundDelivery>> {
        loop {
            // Register interest before looking, so a publish in between is not missed.
            let woken = self.published.notified();
            let now = now_micros();
            let lease_until = now + i64::try_from(LEASE.as_micros()).unwrap_or(i64::MAX);
            let row = sqlx::query(AssertSqlSafe(LEASE_NEXT))
                .bind(lease_until)
                .bind(&self.queue)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                let headers: Vec<(String, String)> = serde_json::from_str(row.get::<&str, _>(5)).unwrap_or_default();
                let message = OutboundMessage {
                    id: row.get(1),
                    exchange: self.exchange.clone(),
                    routing_key: row.get(3),
                    content_type: row.get(4),
                    headers,
                    body: row.get(6),
                };
                return Ok(Box::new(EmbeddedDelivery {
                    pool: self.pool.clone(),
                    seq: row.get(0),
                    attempt: u32::try_from(row.get::<i64, _>(7)).unwrap_or(1),
                    message,
                }));
            }
            let _ = tokio::time::timeout(IDLE_POLL, woken).await;
        }
    }
}

struct EmbeddedDelivery {
    pool: SqlitePool,
    seq: i64,
    attempt: u32,
    message: OutboundMessage,
}

#[async_trait]
impl InboundDelivery for EmbeddedDelivery {
    fn message(&self) -> &OutboundMessage {
        &self.message
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self: Box<Self>) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM messages WHERE seq = $1").bind(self.seq).execute(&self.pool).await?;
        Ok(())
    }

    async fn retry(self: Box<Self>, delay: Duration) -> anyhow::Result<()> {
        let due = now_micros() + i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
        sqlx::query("UPDATE messages SET attempt = attempt + 1, available_at = $1, leased_until = NULL WHERE seq = $2")
            .bind(due)
            .bind(self.seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> anyhow::Result<()> {
        // The row keeps its attempt count beside the reason.
        tracing::warn!(id = %self.message.id, reason, attempts = self.attempt, "dead-lettering message");
        sqlx::query("UPDATE messages SET dead_reason = $1, leased_until = NULL WHERE seq = $2")
            .bind(reason)
            .bind(self.seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
