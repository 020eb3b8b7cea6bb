//! The generated `skiff:messaging` host traits.

use wasmtime::component::Resource;

use super::bindings::skiff::messaging::{producer, types};
use super::client::{Exchange, ExchangeKind};
use super::signing::is_host_header;
use super::{Message, MessagingError, MessagingView, OutboundMessage, Outbox};
use crate::capability::sql::TransactionSlot;

type Outcome = wasmtime::Result<Result<(), MessagingError>>;

impl types::Host for MessagingView<'_> {}

impl producer::Host for MessagingView<'_> {
    #[tracing::instrument(level = "debug", name = "skiff.messaging.publish", skip_all, fields(exchange = %exchange.name, id = %message.id))]
    async fn publish(&mut self, exchange: types::Exchange, message: Message) -> Outcome {
        let (outbox, outbound) = match checked(self.outbox, exchange, message) {
            Ok(checked) => checked,
            Err(error) => return Ok(Err(error)),
        };
        Ok(outbox.enqueue(&outbound).await.map_err(|e| MessagingError::Unavailable(format!("{e:?}"))))
    }

    #[tracing::instrument(level = "debug", name = "skiff.messaging.publish_in", skip_all, fields(exchange = %exchange.name, id = %message.id))]
    async fn publish_in(
        &mut self,
        tx: Resource<TransactionSlot>,
        exchange: types::Exchange,
        message: Message,
    ) -> Outcome {
        let (outbox, outbound) = match checked(self.outbox, exchange, message) {
            Ok(checked) => checked,
            Err(error) => return Ok(Err(error)),
        };
        let Some(open) = self.table.get_mut(&tx)?.open() else {
            return Ok(Err(MessagingError::Invalid("the transaction was already committed or rolled back".into())));
        };
        Ok(outbox.enqueue_in(open, &outbound).await.map_err(|e| MessagingError::Unavailable(format!("{e:?}"))))
    }
}

/// The outbox, and the message as the outbox stores it, or what the component got wrong.
fn checked(
    outbox: Option<&std::sync::Arc<Outbox>>,
    exchange: types::Exchange,
    message: Message,
) -> Result<(&std::sync::Arc<Outbox>, OutboundMessage), MessagingError> {
    let Some(outbox) = outbox else {
        return Err(MessagingError::Unavailable("this service has no outbox".into()));
    };
    if message.id.trim().is_empty() {
        return Err(MessagingError::Invalid("the message id must not be empty".into()));
    }
    if exchange.name.is_empty() || exchange.name.len() > 255 {
        return Err(MessagingError::Invalid("the exchange name must be 1 to 255 bytes".into()));
    }
    if let Some((name, _)) = message.headers.iter().find(|(name, _)| is_host_header(name)) {
        return Err(MessagingError::Invalid(format!("header {name:?}: names starting with x-skiff- are the host's")));
    }
    let outbound = OutboundMessage {
        exchange: Exchange::new(exchange.name, exchange_kind(exchange.kind)),
        id: message.id,
        routing_key: message.routing_key,
        content_type: message.content_type,
        headers: message.headers,
        body: message.body,
    };
    Ok((outbox, outbound))
}

pub(super) fn exchange_kind(kind: types::ExchangeKind) -> ExchangeKind {
    match kind {
        types::ExchangeKind::Fanout => ExchangeKind::Fanout,
        types::ExchangeKind::Topic => ExchangeKind::Topic,
    }
}

#[cfg(test)]
mod tests;
