//! Handing deliveries to the service's component, one fresh instance per message, each
//! holding one of the host's instance slots (so consumers stay within the instance limit).

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Instant;

use super::Service;
use crate::capability::messaging::{
    Delivery, InboundDelivery, Message, MessageHandler, MessagingCapability, Outcome, SubscriptionSpec,
};
use crate::metrics::MessageLabels;
use crate::runtime::DeadlineExceeded;

impl Service {
    /// Subscribes the component to every queue it asks for; no-op for services that consume
    /// nothing. Returns once the subscriptions are set up to run in the background.
    pub async fn start_consuming(self: &Arc<Self>) -> anyhow::Result<()> {
        let version = self.current();
        let messaging = self.capability::<MessagingCapability>();
        if !version.consumes() {
            return Ok(());
        }
        let subscriptions = version.subscriptions(self.new_state(), &self.ctx.runtime).await?;
        let specs = subscriptions.into_iter().map(SubscriptionSpec::from).collect();
        let handler: Arc<dyn MessageHandler> = self.clone();
        messaging.consume(specs, handler).await;
        Ok(())
    }
}

#[async_trait]
impl MessageHandler for Service {
    async fn handle_message(&self, delivery: &dyn InboundDelivery) -> anyhow::Result<Outcome> {
        let _permit = self.ctx.instances.clone().acquire_owned().await?;
        let version = self.current();
        let Some(pre) = version.consumer.clone() else { anyhow::bail!("this version does not consume messages") };
        let deadline = Instant::now() + self.ctx.limits.timeout;
        let message = delivery.message();
        // The component's own log records (wasi:logging) go under this span.
        let span =
            tracing::info_span!("component", service = %self.name, version = %version.label, message = %message.id);
        let mut store = self.ctx.runtime.store(span.in_scope(|| self.new_state()), deadline);
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
        self.ctx.metrics.live_instances.inc();
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.skiff_messaging_consumer().call_handle_message(&mut store, &wit_delivery).await
        };
        let result = match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(result) => result,
            Err(_) => Err(DeadlineExceeded.into()),
        };
        self.ctx.metrics.live_instances.dec();
        let outcome = match &result {
            Ok(Outcome::Ack) => "ack",
            Ok(Outcome::Retry) => "retry",
            Ok(Outcome::Reject) => "reject",
            Err(_) => "failed",
        };
        self.ctx
            .metrics
            .messages
            .get_or_create(&MessageLabels { route: self.name.clone(), outcome: outcome.into() })
            .inc();
        result.map_err(|error| anyhow::anyhow!("{error:?}"))
    }
}
