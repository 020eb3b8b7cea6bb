//! The notify service as a WebAssembly component (`skiff:service/consuming-service`): it
//! consumes login events, delivers a notification through a webhook, and keeps each one.

mod api;
mod consumer;
pub mod domain;
mod platform;
mod store;

// The generated canonical-ABI glue is the only unsafe code in the component.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "skiff:service/consuming-service",
        path: "../../wit",
        generate_all,
    });

    use super::Component;
    export!(Component);
}

service_kit::wasi_http_glue!(Component, api::handle);

use bindings::exports::skiff::messaging::consumer::{Delivery, Guest as Consumer, Outcome, Subscription};
use bindings::exports::skiff::sql::migrations::{Guest as Migrations, Migration};

struct Component;

impl Consumer for Component {
    fn subscriptions() -> Vec<Subscription> {
        vec![Subscription {
            exchange: domain::LOGIN_EXCHANGE.into(),
            queue: domain::LOGIN_QUEUE.into(),
            binding_key: "#".into(),
        }]
    }

    fn handle_message(delivery: Delivery) -> Outcome {
        consumer::handle(&delivery)
    }
}

impl Migrations for Component {
    fn all() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "create_notifications".into(),
            sql: include_str!("../migrations/0001_create_notifications.sql").into(),
        }]
    }
}
