//! The notify service as a WebAssembly component (`skiff:service/consuming-service`): it
//! consumes login events, delivers a notification through a webhook, and keeps each one.

mod api;
mod consumer;
pub mod domain;
mod store;

// The generated canonical-ABI glue is the only unsafe code in the component.
#[allow(unsafe_code)]
mod bindings {
    // Only the exports are generated here; every import is the kit's, so the kit's functions
    // and these exports share one set of types.
    wit_bindgen::generate!({
        world: "skiff:service/consuming-service",
        path: "../../wit",
        with: {
            "wasi:cli/stderr@0.2.12": service_kit::bindings::wasi::cli::stderr,
            "wasi:cli/stdin@0.2.12": service_kit::bindings::wasi::cli::stdin,
            "wasi:cli/stdout@0.2.12": service_kit::bindings::wasi::cli::stdout,
            "wasi:clocks/monotonic-clock@0.2.12": service_kit::bindings::wasi::clocks::monotonic_clock,
            "wasi:clocks/wall-clock@0.2.12": service_kit::bindings::wasi::clocks::wall_clock,
            "wasi:config/store@0.2.0-rc.1": service_kit::bindings::wasi::config::store,
            "wasi:logging/logging": service_kit::bindings::wasi::logging::logging,
            "wasi:http/outgoing-handler@0.2.12": service_kit::bindings::wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": service_kit::bindings::wasi::http::types,
            "wasi:io/error@0.2.12": service_kit::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": service_kit::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": service_kit::bindings::wasi::io::streams,
            "wasi:random/random@0.2.12": service_kit::bindings::wasi::random::random,
            "skiff:request/context@0.1.0": service_kit::bindings::skiff::request::context,
            "skiff:crypto/issuing@0.1.0": service_kit::bindings::skiff::crypto::issuing,
            "skiff:crypto/passwords@0.1.0": service_kit::bindings::skiff::crypto::passwords,
            "skiff:crypto/tokens@0.1.0": service_kit::bindings::skiff::crypto::tokens,
            "skiff:sql/client@0.2.0": service_kit::bindings::skiff::sql::client,
            "skiff:sql/types@0.2.0": service_kit::bindings::skiff::sql::types,
            "skiff:messaging/types@0.3.0": service_kit::bindings::skiff::messaging::types,
        },
    });

    use super::Component;
    export!(Component);
}

use bindings::exports::skiff::messaging::consumer::{Delivery, Guest as Consumer, Outcome, Subscription};
use bindings::exports::skiff::sql::migrations::{Guest as Migrations, Migration};
use bindings::exports::wasi::http::incoming_handler::{Guest as IncomingHandler, IncomingRequest, ResponseOutparam};

struct Component;

impl IncomingHandler for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        service_kit::wasi_http::serve(request, response_out, api::handle);
    }
}

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

impl Migrations for Component {
    fn all() -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                name: "create_notifications".into(),
                sql: include_str!("../migrations/0001_create_notifications.sql").into(),
            },
            Migration {
                version: 2,
                name: "add_delivery_claim".into(),
                sql: include_str!("../migrations/0002_add_delivery_claim.sql").into(),
            },
        ]
    }
}
