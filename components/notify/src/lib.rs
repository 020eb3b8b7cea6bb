//! The notify service as a WebAssembly component (`skiff:service/consuming-service`): it
//! consumes login events, delivers a notification through a webhook, and keeps each one.

mod api;
mod consumer;
pub mod domain;
mod store;

service_kit::component!("skiff:service/consuming-service", Component, http: api::handle);
service_kit::migrations!(Component:
    "0001_create_notifications",
    "0002_add_delivery_claim",
);

use bindings::exports::skiff::messaging::consumer::{Delivery, Guest as Consumer, Outcome, Subscription};

struct Component;

impl Consumer for Component {
    fn subscriptions() -> Vec<Subscription> {
        vec![Subscription {
            exchange: domain::LOGIN_EXCHANGE.to_wit(),
            queue: domain::LOGIN_QUEUE.into(),
            // A fanout exchange ignores binding keys.
            binding_key: String::new(),
        }]
    }

    fn handle_message(delivery: Delivery) -> Outcome {
        consumer::handle(&delivery)
    }
}
