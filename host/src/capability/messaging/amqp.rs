//! RabbitMQ over AMQP 0.9.1 (lapin): durable exchanges of the kind the contract names,
//! persistent messages, publisher confirms.
//!
//! Each consumer queue `Q` gets, beside it:
//! - `Q.retry`, a direct exchange only the consuming service writes to;
//! - one delay queue per back-off, `Q.retry.<ms>ms`, bound to `Q.retry` by `<ms>ms`, whose
//!   messages expire after that long and are dead-lettered back through `Q.retry` (key
//!   `redeliver`) into `Q`. A retry is a confirmed publish into its delay queue followed by
//!   an ack: the wait happens in the broker, and no other message waits for it;
//! - `Q.dead-letter`, bound to `Q.retry` by `dead-letter`, where a message ends with its
//!   reason and attempt count in its headers.
//!
//! The attempt count travels in `x-skiff-attempt` (and the original routing key in
//! `x-skiff-routing-key`), believed only on a message that came back through `Q.retry`, which
//! publishers of the event exchange cannot write to: a first delivery is attempt 1 whatever its
//! headers say.

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::Mutex;

use super::client::{
    ATTEMPTS_HEADER, Broker, DEAD_LETTER_REASON_HEADER, DeliveryStream, Exchange, ExchangeKind, IN_FLIGHT,
    InboundDelivery, OutboundMessage, RetryPolicy, SubscriptionSpec,
};

/// Header carrying how many times a message has been delivered to the component.
const ATTEMPT_HEADER: &str = "x-skiff-attempt";
/// Header keeping a retried message's routing key: the way back from a delay queue replaces
/// it with `redeliver`, and the signature covers the original.
const ROUTING_KEY_HEADER: &str = "x-skiff-routing-key";
/// Routing keys on a queue's retry exchange.
const REDELIVER_KEY: &str = "redeliver";
const DEAD_LETTER_KEY: &str = "dead-letter";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `delivery_mode` 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

pub struct AmqpBroker {
    url: String,
    /// One confirming channel for publishing, reopened after any failure.
    publisher: Mutex<Option<Publisher>>,
}

struct Publisher {
    _connection: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

impl AmqpBroker {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), publisher: Mutex::new(None) }
    }
}

async fn connect(url: &str) -> anyhow::Result<(Connection, Channel)> {
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, ConnectionProperties::default()))
        .await
        .context("timed out connecting to the AMQP broker")?
        .context("connecting to the AMQP broker")?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((connection, channel))
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

async fn declare_exchange(channel: &Channel, exchange: &Exchange) -> anyhow::Result<()> {
    let kind = match exchange.kind {
        ExchangeKind::Fanout => lapin::ExchangeKind::Fanout,
        ExchangeKind::Topic => lapin::ExchangeKind::Topic,
    };
    channel
        .exchange_declare(exchange.name.as_str().into(), kind, durable(), FieldTable::default())
        .await
        .with_context(|| {
            format!(
                "declaring exchange {:?} as {} (the broker refuses if it already exists as another kind: \
                 delete it, or declare it alike everywhere)",
                exchange.name,
                exchange.kind.as_str()
            )
        })?;
    Ok(())
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn properties(message: &OutboundMessage, extra: &[(&str, String)]) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &message.headers {
        headers.insert(name.as_str().into(), text(value));
    }
    for (name, value) in extra {
        headers.insert((*name).into(), text(value));
    }
    BasicProperties::default()
        .with_message_id(message.id.as_str().into())
        .with_content_type(message.content_type.as_str().into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers)
}

/// Publishes on a confirming channel and waits for the broker's ack.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &OutboundMessage,
    extra_headers: &[(&str, String)],
) -> anyhow::Result<()> {
    // Mandatory: a message no queue is bound for comes back instead of vanishing, so the
    // outbox keeps it until the consumer has declared its queue.
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &message.body,
            properties(message, extra_headers),
        )
        .await?
        .await?;
    if !confirm.is_ack() {
        bail!("the broker refused message {}", message.id);
    }
    if confirm.take_message().is_some() {
        bail!(
            "no queue is bound to exchange {exchange:?} for {routing_key:?}; message {} stays in the outbox",
            message.id
        );
    }
    Ok(())
}

/// The names around one consumer queue (see the module documentation).
struct QueueTopology {
    queue: String,
    retry_exchange: String,
    dead_letter_queue: String,
}

impl QueueTopology {
    fn of(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            retry_exchange: format!("{queue}.retry"),
            dead_letter_queue: format!("{queue}.dead-letter"),
        }
    }

    fn delay_key(delay: Duration) -> String {
        format!("{}ms", delay.as_millis())
    }

    fn delay_queue(&self, delay: Duration) -> String {
        format!("{}.{}", self.retry_exchange, Self::delay_key(delay))
    }

    async fn declare(
        &self,
        channel: &Channel,
        subscription: &SubscriptionSpec,
        retry: &RetryPolicy,
    ) -> anyhow::Result<()> {
        let durable_queue = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let bind = |queue: String, exchange: String, key: String| async move {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        declare_exchange(channel, &subscription.exchange).await?;
        channel
            .exchange_declare(
                self.retry_exchange.as_str().into(),
                lapin::ExchangeKind::Direct,
                durable(),
                FieldTable::default(),
            )
            .await?;
        // The dead-letter queue, also bound (as in earlier releases) to the fanout
        // `<exchange>.dead-letter` that the main queue names for messages the broker itself
        // dead-letters: its arguments cannot change without deleting the queue.
        let legacy_dead_letter_exchange = format!("{}.dead-letter", subscription.exchange.name);
        channel
            .exchange_declare(
                legacy_dead_letter_exchange.as_str().into(),
                lapin::ExchangeKind::Fanout,
                durable(),
                FieldTable::default(),
            )
            .await?;
        channel.queue_declare(self.dead_letter_queue.as_str().into(), durable_queue, FieldTable::default()).await?;
        bind(self.dead_letter_queue.clone(), legacy_dead_letter_exchange.clone(), String::new()).await?;
        bind(self.dead_letter_queue.clone(), self.retry_exchange.clone(), DEAD_LETTER_KEY.into()).await?;

        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), text(&legacy_dead_letter_exchange));
        channel.queue_declare(self.queue.as_str().into(), durable_queue, arguments).await?;
        bind(self.queue.clone(), subscription.exchange.name.clone(), subscription.binding_key.clone()).await?;
        bind(self.queue.clone(), self.retry_exchange.clone(), REDELIVER_KEY.into()).await?;

        for delay in retry.delays() {
            let mut arguments = FieldTable::default();
            let millis = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
            arguments.insert("x-message-ttl".into(), AMQPValue::LongUInt(millis));
            arguments.insert("x-dead-letter-exchange".into(), text(&self.retry_exchange));
            arguments.insert("x-dead-letter-routing-key".into(), text(REDELIVER_KEY));
            let delay_queue = self.delay_queue(delay);
            channel.queue_declare(delay_queue.as_str().into(), durable_queue, arguments).await?;
            bind(delay_queue, self.retry_exchange.clone(), Self::delay_key(delay)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, message: &OutboundMessage) -> anyhow::Result<()> {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            let (connection, channel) = connect(&self.url).await?;
            *guard = Some(Publisher { _connection: connection, channel, declared: HashSet::new() });
        }
        let Some(publisher) = guard.as_mut() else { bail!("no AMQP channel") };
        let result = async {
            if !publisher.declared.contains(&message.exchange.name) {
                declare_exchange(&publisher.channel, &message.exchange).await?;
                publisher.declared.insert(message.exchange.name.clone());
            }
            publish_confirmed(&publisher.channel, &message.exchange.name, &message.routing_key, message, &[]).await
        }
        .await;
        if result.is_err() {
            // Start from a fresh connection next time.
            *guard = None;
        }
        result
    }

    async fn subscribe(
        &self,
        subscription: &SubscriptionSpec,
        retry: &RetryPolicy,
    ) -> anyhow::Result<Box<dyn DeliveryStream>> {
        let (connection, channel) = connect(&self.url).await?;
        let topology = QueueTopology::of(&subscription.queue);
        topology.declare(&channel, subscription, retry).await?;
        // The broker hands out no more than the consumer settles at once.
        channel.basic_qos(IN_FLIGHT, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                subscription.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Box::new(AmqpStream {
            _connection: connection,
            channel,
            consumer,
            topology,
            exchange: subscription.exchange.clone(),
        }))
    }

    fn backend(&self) -> &'static str {
        "amqp"
    }
}

struct AmqpStream {
    _connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    topology: QueueTopology,
    exchange: Exchange,
}

/// Headers the broker adds when it dead-letters a message (the delay queues do): its own
/// bookkeeping, not the publisher's.
fn is_broker_header(name: &str) -> bool {
    matches!(name, "x-death" | "x-first-death-exchange" | "x-first-death-queue" | "x-first-death-reason")
        || name.starts_with("x-last-death")
}

#[async_trait]
impl DeliveryStream for AmqpStream {
    async fn next(&mut self) -> anyhow::Result<Box<dyn InboundDelivery>> {
        let delivery = self.consumer.next().await.context("the AMQP consumer was closed")??;
        // Only a message that came back through this queue's own retry exchange carries the
        // host's count; anything a publisher put in the header is ignored.
        let came_back = delivery.exchange.as_str() == self.topology.retry_exchange;
        let mut headers = Vec::new();
        let mut attempt = 1;
        let mut routing_key = delivery.routing_key.as_str().to_owned();
        if let Some(table) = delivery.properties.headers() {
            for (name, value) in table.inner() {
                let text = match value {
                    AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
                    AMQPValue::ShortString(text) => text.as_str().to_owned(),
                    _ => continue,
                };
                match name.as_str() {
                    ATTEMPT_HEADER => {
                        if came_back {
                            attempt = text.parse().unwrap_or(1);
                        }
                    }
                    ROUTING_KEY_HEADER => {
                        if came_back {
                            routing_key = text;
                        }
                    }
                    name if is_broker_header(name) => {}
                    name => headers.push((name.to_owned(), text)),
                }
            }
        }
        let message = OutboundMessage {
            exchange: self.exchange.clone(),
            id: delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
            routing_key,
            content_type: delivery
                .properties
                .content_type()
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            headers,
            body: delivery.data.clone(),
        };
        Ok(Box::new(AmqpDelivery {
            delivery,
            message,
            attempt,
            channel: self.channel.clone(),
            retry_exchange: self.topology.retry_exchange.clone(),
        }))
    }
}

struct AmqpDelivery {
    delivery: lapin::message::Delivery,
    message: OutboundMessage,
    attempt: u32,
    channel: Channel,
    retry_exchange: String,
}

impl AmqpDelivery {
    /// Republishes the message through the retry exchange under `routing_key`, confirmed, then
    /// acks the original: a crash in between delivers it twice, never zero times. If the
    /// republish fails, the original goes back to the queue instead of holding a prefetch slot.
    async fn move_to(self: Box<Self>, routing_key: &str, headers: &[(&str, String)]) -> anyhow::Result<()> {
        let moved = publish_confirmed(&self.channel, &self.retry_exchange, routing_key, &self.message, headers).await;
        if let Err(error) = moved {
            self.delivery.nack(BasicNackOptions { requeue: true, multiple: false }).await?;
            return Err(error.context(format!("moving message {} to {routing_key}", self.message.id)));
        }
        self.delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }
}

#[async_trait]
impl InboundDelivery for AmqpDelivery {
    fn message(&self) -> &OutboundMessage {
        &self.message
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn ack(self: Box<Self>) -> anyhow::Result<()> {
        self.delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn retry(self: Box<Self>, delay: Duration) -> anyhow::Result<()> {
        let headers =
            [(ATTEMPT_HEADER, (self.attempt + 1).to_string()), (ROUTING_KEY_HEADER, self.message.routing_key.clone())];
        self.move_to(&QueueTopology::delay_key(delay), &headers).await
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(id = %self.message.id, exchange = %self.retry_exchange, reason, attempts = self.attempt, "dead-lettering message");
        let headers = [(DEAD_LETTER_REASON_HEADER, reason.to_owned()), (ATTEMPTS_HEADER, self.attempt.to_string())];
        self.move_to(DEAD_LETTER_KEY, &headers).await
    }
}
