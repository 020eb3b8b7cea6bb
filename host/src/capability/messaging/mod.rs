//! `skiff:messaging`: publish through a durable outbox, consume with ack / retry / reject, on
//! RabbitMQ (AMQP 0.9.1) or the embedded SQLite-backed queue.
//!
//! `client.rs` is the broker trait, `amqp.rs` and `embedded.rs` its two implementations,
//! `host.rs` the WIT `Host` traits, `outbox.rs` the outbox and its relay, and `consumer.rs`
//! the loop that hands each delivery to a fresh component instance.

mod amqp;
mod client;
mod consumer;
mod embedded;
mod host;
mod outbox;

use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

pub use client::SubscriptionSpec;
pub use client::{Broker, InboundDelivery, OutboundMessage, RetryPolicy, connect_broker};
pub use consumer::{MessageHandler, run_subscription};
pub use outbox::Outbox;

use crate::runtime::HostState;

// The only place the messaging world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:messaging/messaging-host",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use bindings::MessagingHostPre as ConsumerPre;
pub use bindings::exports::skiff::messaging::consumer::{Delivery, Outcome, Subscription};
pub use bindings::skiff::messaging::types::{Error as MessagingError, Message};

/// What the messaging host functions borrow from the store for one call.
pub struct MessagingView<'a> {
    outbox: Option<&'a Arc<Outbox>>,
}

struct HasMessaging;

impl HasData for HasMessaging {
    type Data<'a> = MessagingView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    bindings::skiff::messaging::types::add_to_linker::<HostState, HasMessaging>(linker, view)?;
    bindings::skiff::messaging::producer::add_to_linker::<HostState, HasMessaging>(linker, view)?;
    Ok(())
}

fn view(state: &mut HostState) -> MessagingView<'_> {
    MessagingView { outbox: state.outbox.as_ref() }
}
