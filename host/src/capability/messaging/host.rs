//! The generated `skiff:messaging` host traits.

use super::bindings::skiff::messaging::{producer, types};
use super::{Message, MessagingError, MessagingView, OutboundMessage};

impl types::Host for MessagingView<'_> {}

impl producer::Host for MessagingView<'_> {
    #[tracing::instrument(level = "debug", name = "skiff.messaging.publish", skip_all, fields(%exchange, id = %message.id))]
    async fn publish(&mut self, exchange: String, message: Message) -> wasmtime::Result<Result<(), MessagingError>> {
        let Some(outbox) = self.outbox else {
            return Ok(Err(MessagingError::Unavailable("this service has no outbox".into())));
        };
        if message.id.trim().is_empty() {
            return Ok(Err(MessagingError::Invalid("the message id must not be empty".into())));
        }
        if exchange.is_empty() || exchange.len() > 255 {
            return Ok(Err(MessagingError::Invalid("the exchange name must be 1 to 255 bytes".into())));
        }
        let outbound = OutboundMessage {
            exchange,
            id: message.id,
            routing_key: message.routing_key,
            content_type: message.content_type,
            headers: message.headers,
            body: message.body,
        };
        Ok(outbox.enqueue(&outbound).await.map_err(|e| MessagingError::Unavailable(format!("{e:?}"))))
    }
}
