//! RabbitMQ over AMQP 0.9.1 (lapin): durable topic exchanges, persistent messages, publisher
//! confirms; consumers get a durable queue with a dead-letter exchange and queue beside it.

use anyhow::{Context, bail};
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::Mutex;

use super::client::{Broker, DeliveryStream, InboundDelivery, OutboundMessage, SubscriptionSpec};

/// Header carrying how many times a message has been delivered to the component.
const ATTEMPT_HEADER: &str = "x-skiff-attempt";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged deliveries a consumer holds at once.
const PREFETCH: u16 = 8;
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

async fn declare_exchange(channel: &Channel, exchange: &str) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    Ok(())
}

fn properties(message: &OutboundMessage, attempt: Option<u32>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &message.headers {
        headers.insert(name.as_str().into(), AMQPValue::LongString(value.as_str().into()));
    }
    if let Some(attempt) = attempt {
        headers.insert(ATTEMPT_HEADER.into(), AMQPValue::LongString(attempt.to_string().as_str().into()));
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
    attempt: Option<u32>,
) -> anyhow::Result<()> {
    // Mandatory: a message no queue is bound for comes back instead of vanishing, so the
    // outbox keeps it until the consumer has declared its queue.
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &message.body,
            properties(message, attempt),
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
            if !publisher.declared.contains(&message.exchange) {
                declare_exchange(&publisher.channel, &message.exchange).await?;
                publisher.declared.insert(message.exchange.clone());
            }
            publish_confirmed(&publisher.channel, &message.exchange, &message.routing_key, message, None).await
        }
        .await;
        if result.is_err() {
            // Start from a fresh connection next time.
            *guard = None;
        }
        result
    }

    async fn subscribe(&self, subscription: &SubscriptionSpec) -> anyhow::Result<Box<dyn DeliveryStream>> {
        let (connection, channel) = connect(&self.url).await?;
        let durable_queue = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        declare_exchange(&channel, &subscription.exchange).await?;
        let dead_letter_exchange = format!("{}.dead-letter", subscription.exchange);
        let dead_letter_queue = format!("{}.dead-letter", subscription.queue);
        channel
            .exchange_declare(
                dead_letter_exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await?;
        channel.queue_declare(dead_letter_queue.as_str().into(), durable_queue, FieldTable::default()).await?;
        channel
            .queue_bind(
                dead_letter_queue.as_str().into(),
                dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dead_letter_exchange.as_str().into()));
        channel.queue_declare(subscription.queue.as_str().into(), durable_queue, arguments).await?;
        channel
            .queue_bind(
                subscription.queue.as_str().into(),
                subscription.exchange.as_str().into(),
                subscription.binding_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                subscription.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Box::new(AmqpStream { _connection: connection, channel, consumer, queue: subscription.queue.clone() }))
    }

    fn backend(&self) -> &'static str {
        "amqp"
    }
}

struct AmqpStream {
    _connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    queue: String,
}

#[async_trait]
impl DeliveryStream for AmqpStream {
    async fn next(&mut self) -> anyhow::Result<Box<dyn InboundDelivery>> {
        let delivery = self.consumer.next().await.context("the AMQP consumer was closed")??;
        let mut headers = Vec::new();
        let mut attempt = 1;
        if let Some(table) = delivery.properties.headers() {
            for (name, value) in table.inner() {
                let text = match value {
                    AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
                    AMQPValue::ShortString(text) => text.as_str().to_owned(),
                    other => format!("{other:?}"),
                };
                if name.as_str() == ATTEMPT_HEADER {
                    attempt = text.parse().unwrap_or(1);
                } else {
                    headers.push((name.as_str().to_owned(), text));
                }
            }
        }
        let message = OutboundMessage {
            exchange: delivery.exchange.as_str().to_owned(),
            id: delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
            routing_key: delivery.routing_key.as_str().to_owned(),
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
            queue: self.queue.clone(),
        }))
    }
}

struct AmqpDelivery {
    delivery: lapin::message::Delivery,
    message: OutboundMessage,
    attempt: u32,
    channel: Channel,
    queue: String,
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
        tokio::time::sleep(delay).await;
        // Back into the same queue through the default exchange, counted up, confirmed before
        // the original is acked: a crash in between redelivers it (at least once).
        publish_confirmed(&self.channel, "", &self.queue, &self.message, Some(self.attempt + 1)).await?;
        self.delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn dead_letter(self: Box<Self>, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(id = %self.message.id, queue = %self.queue, reason, "dead-lettering message");
        self.delivery.nack(BasicNackOptions { requeue: false, multiple: false }).await?;
        Ok(())
    }
}
