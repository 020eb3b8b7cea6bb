//! Consuming: each delivery runs in a fresh component instance, and its outcome settles it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Outcome;
use super::client::{Broker, DeliveryStream, InboundDelivery, RetryPolicy, SubscriptionSpec};
use crate::retry::retry_forever;

/// Something that handles one delivery and says what to do with it (a service's component).
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync {
    async fn handle_message(&self, delivery: &dyn InboundDelivery) -> anyhow::Result<Outcome>;
}

/// Consumes `subscription` for as long as the process runs, starting with `initial` if the
/// caller already subscribed, and resubscribing after connection loss. `connected` tells
/// readiness whether the broker is there.
pub(super) async fn run_subscription(
    broker: Arc<dyn Broker>,
    subscription: SubscriptionSpec,
    mut initial: Option<Box<dyn DeliveryStream>>,
    handler: Arc<dyn MessageHandler>,
    policy: RetryPolicy,
    connected: Arc<AtomicBool>,
) {
    loop {
        let mut stream = match initial.take() {
            Some(stream) => stream,
            None => {
                let subscribe = || broker.subscribe(&subscription);
                retry_forever(subscribe, |error: &anyhow::Error, retry_in| {
                    connected.store(false, Ordering::Release);
                    tracing::warn!(queue = %subscription.queue, error = %format!("{error:#}"), ?retry_in, "cannot subscribe");
                })
                .await
            }
        };
        connected.store(true, Ordering::Release);
        tracing::info!(queue = %subscription.queue, exchange = %subscription.exchange, backend = broker.backend(), "consuming");
        loop {
            let delivery = match stream.next().await {
                Ok(delivery) => delivery,
                Err(error) => {
                    connected.store(false, Ordering::Release);
                    tracing::warn!(queue = %subscription.queue, error = %format!("{error:#}"), "consumer lost its broker; resubscribing");
                    break;
                }
            };
            if let Err(error) = settle(delivery, handler.as_ref(), &policy).await {
                // The delivery stays unsettled; the broker redelivers it.
                tracing::warn!(queue = %subscription.queue, error = %format!("{error:#}"), "could not settle a delivery");
            }
        }
    }
}

async fn settle(
    delivery: Box<dyn InboundDelivery>,
    handler: &dyn MessageHandler,
    policy: &RetryPolicy,
) -> anyhow::Result<()> {
    let attempt = delivery.attempt();
    let outcome = match handler.handle_message(delivery.as_ref()).await {
        Ok(outcome) => outcome,
        Err(error) => {
            // A trap or a deadline: the component could not say, so try again.
            tracing::warn!(id = %delivery.message().id, attempt, error = %format!("{error:#}"), "handling failed");
            Outcome::Retry
        }
    };
    match outcome {
        Outcome::Ack => delivery.ack().await,
        Outcome::Reject => delivery.dead_letter("rejected by the component").await,
        Outcome::Retry if attempt >= policy.max_attempts => delivery.dead_letter("retries exhausted").await,
        Outcome::Retry => delivery.retry(policy.delay_after(attempt)).await,
    }
}
