//! Consuming: up to [`IN_FLIGHT`] deliveries at once, each in a fresh component instance,
//! each settled by its outcome. A message that fails its signature check is dead-lettered
//! before any component sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Semaphore;

use super::Outcome;
use super::client::{Broker, DeliveryStream, IN_FLIGHT, InboundDelivery, RetryPolicy, SubscriptionSpec};
use super::signing::TrustedPublishers;
use crate::retry::retry_forever;

/// Something that handles one delivery and says what to do with it (a service's component).
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync {
    async fn handle_message(&self, delivery: &dyn InboundDelivery) -> anyhow::Result<Outcome>;
}

/// What settles each delivery of a subscription.
#[derive(Clone)]
pub(super) struct Settler {
    pub handler: Arc<dyn MessageHandler>,
    pub policy: RetryPolicy,
    /// `None` when the service trusts every message (no `event_trusted_keys`).
    pub trusted: Option<Arc<TrustedPublishers>>,
}

/// Consumes `subscription` for as long as the process runs, starting with `initial` if the
/// caller already subscribed, and resubscribing after connection loss. `connected` tells
/// readiness whether the broker is there.
pub(super) async fn run_subscription(
    broker: Arc<dyn Broker>,
    subscription: SubscriptionSpec,
    mut initial: Option<Box<dyn DeliveryStream>>,
    settler: Settler,
    connected: Arc<AtomicBool>,
) {
    let in_flight = Arc::new(Semaphore::new(usize::from(IN_FLIGHT)));
    loop {
        let mut stream = match initial.take() {
            Some(stream) => stream,
            None => {
                let subscribe = || broker.subscribe(&subscription, &settler.policy);
                retry_forever(subscribe, |error: &anyhow::Error, retry_in| {
                    connected.store(false, Ordering::Release);
                    tracing::warn!(queue = %subscription.queue, error = %format!("{error:#}"), ?retry_in, "cannot subscribe");
                })
                .await
            }
        };
        connected.store(true, Ordering::Release);
        tracing::info!(queue = %subscription.queue, exchange = %subscription.exchange.name, kind = subscription.exchange.kind.as_str(), backend = broker.backend(), "consuming");
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
            let delivery = match stream.next().await {
                Ok(delivery) => delivery,
                Err(error) => {
                    connected.store(false, Ordering::Release);
                    tracing::warn!(queue = %subscription.queue, error = %format!("{error:#}"), "consumer lost its broker; resubscribing");
                    break;
                }
            };
            let settler = settler.clone();
            let queue = subscription.queue.clone();
            tokio::spawn(async move {
                if let Err(error) = settler.settle(delivery).await {
                    // The delivery stays unsettled; the broker redelivers it.
                    tracing::warn!(%queue, error = %format!("{error:#}"), "could not settle a delivery");
                }
                drop(permit);
            });
        }
    }
}

impl Settler {
    async fn settle(&self, delivery: Box<dyn InboundDelivery>) -> anyhow::Result<()> {
        if let Some(trusted) = &self.trusted
            && let Err(reason) = trusted.verify(delivery.message())
        {
            return delivery.dead_letter(&format!("not verified: {reason}")).await;
        }
        settle(delivery, self.handler.as_ref(), &self.policy).await
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
