//! The component's side of consuming: which queues a version asks for, and handing one
//! delivery to a fresh instance of the version that serves.

use async_trait::async_trait;
use std::sync::Arc;

use super::client::{InboundDelivery, SubscriptionSpec};
use super::consumer::MessageHandler;
use super::{ConsumerPre, Delivery, Message, Outcome};
use crate::capability::{ActiveInstances, CapabilityStore, VersionExports};
use crate::metrics::{MessageLabels, Metrics};

/// The queues `version` consumes, asked of one instance, sorted (so two lists compare).
pub(super) async fn subscriptions_of<T: CapabilityStore>(
    version: &dyn VersionExports<T>,
) -> anyhow::Result<Vec<SubscriptionSpec>> {
    let mut instance = version.setup_instance();
    let pre = ConsumerPre::new(instance.pre.clone())?;
    let ask = async {
        let consumer = pre.instantiate_async(&mut instance.store).await?;
        consumer.skiff_messaging_consumer().call_subscriptions(&mut instance.store).await
    };
    let subscriptions = tokio::time::timeout_at(instance.deadline.into(), ask)
        .await
        .map_err(|_| anyhow::anyhow!("the component did not list its subscriptions in time"))??;
    let mut specs: Vec<SubscriptionSpec> = subscriptions.into_iter().map(SubscriptionSpec::from).collect();
    specs.sort();
    Ok(specs)
}

/// Hands each delivery to a fresh instance of the service's active version.
pub(super) struct ComponentConsumer<T: 'static> {
    pub instances: Arc<dyn ActiveInstances<T>>,
    pub metrics: Arc<Metrics>,
    pub service: String,
}

#[async_trait]
impl<T: CapabilityStore> MessageHandler for ComponentConsumer<T> {
    async fn handle_message(&self, delivery: &dyn InboundDelivery) -> anyhow::Result<Outcome> {
        let message = delivery.message();
        let mut instance = self.instances.for_message(&message.id).await?;
        let wit_delivery = Delivery {
            message: Message {
                id: message.id.clone(),
                routing_key: message.routing_key.clone(),
                content_type: message.content_type.clone(),
                headers: message.headers.clone(),
                body: message.body.clone(),
            },
            attempt: delivery.attempt(),
        };
        let run = async {
            let pre = ConsumerPre::new(instance.pre.clone())?;
            let consumer = pre.instantiate_async(&mut instance.store).await?;
            consumer.skiff_messaging_consumer().call_handle_message(&mut instance.store, &wit_delivery).await
        };
        // Host calls (a database that hangs) are not interrupted by the store's deadline; this is.
        let result = match tokio::time::timeout_at(instance.deadline.into(), run).await {
            Ok(result) => result.map_err(|error| anyhow::anyhow!("{error:?}")),
            Err(_) => Err(anyhow::anyhow!("the message ran past its deadline")),
        };
        // Out of the live-instance gauge, and its slot given back, before the outcome counts.
        drop(instance);
        let outcome = match &result {
            Ok(Outcome::Ack) => "ack",
            Ok(Outcome::Retry) => "retry",
            Ok(Outcome::Reject) => "reject",
            Err(_) => "failed",
        };
        let labels = MessageLabels { route: self.service.clone(), outcome: outcome.into() };
        self.metrics.messages.get_or_create(&labels).inc();
        result
    }
}
