//! `skiff:messaging`: publish through a durable outbox, consume with ack / retry / reject, on
//! RabbitMQ (AMQP 0.9.1) or the embedded SQLite-backed queue.
//!
//! `client.rs` is the broker trait, `amqp.rs` and `embedded.rs` its two implementations,
//! `host.rs` the WIT `Host` traits, `outbox.rs` the outbox and its relay, `signing.rs` the
//! events' Ed25519 signatures, `consumer.rs` the loop that settles each delivery, and
//! `component.rs` the component's side of it: its subscriptions, and each delivery handed to a
//! fresh instance.

mod amqp;
mod client;
mod component;
mod connect;
mod consumer;
mod embedded;
mod host;
mod outbox;
mod settings;
mod signing;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasData, Linker, ResourceTable};

pub use client::SubscriptionSpec;
pub use client::{Broker, DeliveryStream, Exchange, ExchangeKind, InboundDelivery, OutboundMessage, RetryPolicy};
pub use connect::connect_broker;
pub use outbox::{DEFAULT_LEASE, Outbox};
pub use settings::{MessagingArgs, MessagingSettings};
pub use signing::{EVENT_SIGNING_KEY, EVENT_TRUSTED_KEYS, EventSigner, TrustedPublishers};

use super::sql::SqlCapability;
use super::{ActiveInstances, Capability, CapabilityStore, InstanceView, ServiceSetup, VersionExports};
use crate::metrics::{Metrics, RouteLabels};
use component::{ComponentConsumer, subscriptions_of};
use consumer::{MessageHandler, Settler, run_subscription};

// The only place the messaging world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:messaging/messaging-host",
        imports: { default: async | trappable },
        exports: { default: async },
        // `publish-in` borrows the sql capability's transaction: the same resource, not a copy.
        with: {
            "skiff:sql/types": crate::capability::sql::bindings::skiff::sql::types,
            "skiff:sql/client": crate::capability::sql::bindings::skiff::sql::client,
        },
    });
}

use bindings::MessagingHostPre as ConsumerPre;
pub use bindings::exports::skiff::messaging::consumer::{Delivery, Outcome, Subscription};

impl From<Subscription> for SubscriptionSpec {
    fn from(subscription: Subscription) -> Self {
        Self {
            exchange: Exchange::new(subscription.exchange.name, host::exchange_kind(subscription.exchange.kind)),
            queue: subscription.queue,
            binding_key: subscription.binding_key,
        }
    }
}
pub use bindings::skiff::messaging::types::{Error as MessagingError, Message};

/// What the messaging host functions borrow from the store for one call: the outbox, and the
/// resource table in which `publish-in` finds the component's open transaction.
pub struct MessagingView<'a> {
    outbox: Option<&'a Arc<Outbox>>,
    table: &'a mut ResourceTable,
}

struct HasMessaging;

impl HasData for HasMessaging {
    type Data<'a> = MessagingView<'a>;
}

impl<'a> MessagingView<'a> {
    pub fn new(outbox: Option<&'a Arc<Outbox>>, table: &'a mut ResourceTable) -> Self {
        Self { outbox, table }
    }
}

/// The interface a component imports to publish (and so gets an outbox), by version-less prefix.
pub const PRODUCER_INTERFACE: &str = "skiff:messaging/producer@";
/// The interface a component exports to consume.
pub const CONSUMER_INTERFACE: &str = "skiff:messaging/consumer@";

/// Links `skiff:messaging`; `get` borrows the instance's outbox from the store.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> MessagingView<'_>,
) -> anyhow::Result<()> {
    bindings::skiff::messaging::types::add_to_linker::<T, HasMessaging>(linker, get)?;
    bindings::skiff::messaging::producer::add_to_linker::<T, HasMessaging>(linker, get)?;
    Ok(())
}

/// The messaging capability: one broker for the host; per service an outbox if its component
/// publishes, and its subscriptions if it consumes.
pub struct MessagingCapability {
    broker: Arc<dyn Broker>,
    retry: RetryPolicy,
    outbox_lease: Duration,
    metrics: Arc<Metrics>,
    /// From the `event_signing_key` setting, parsed at start.
    signing_key: Option<ed25519_dalek::SigningKey>,
    trusted: Option<Arc<TrustedPublishers>>,
}

impl MessagingCapability {
    /// Settings this capability reads that components must not see.
    pub const HOST_ONLY_SETTINGS: &[&str] = &[EVENT_SIGNING_KEY];

    /// Refuses settings that cannot work (a malformed key), so a host never starts with
    /// signing or verification silently off.
    pub fn new(
        broker: Arc<dyn Broker>,
        retry: RetryPolicy,
        outbox_lease: Duration,
        metrics: Arc<Metrics>,
        config: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let setting = |key: &str| config.iter().rev().find(|(k, _)| k == key).map(|(_, value)| value.clone());
        let signing_key = setting(EVENT_SIGNING_KEY).map(|seed| signing::signing_key(&seed)).transpose();
        let signing_key = signing_key.map_err(anyhow::Error::msg)?;
        let trusted = match setting(EVENT_TRUSTED_KEYS) {
            Some(keys) => Some(Arc::new(TrustedPublishers::parse(&keys).map_err(anyhow::Error::msg)?)),
            None => None,
        };
        Ok(Self { broker, retry, outbox_lease, metrics, signing_key, trusted })
    }
}

/// One service's messaging.
pub struct ServiceMessaging {
    service: String,
    broker: Arc<dyn Broker>,
    retry: RetryPolicy,
    outbox: Option<Arc<Outbox>>,
    /// For a consuming service: whether every subscription is live (readiness).
    subscribed: Option<Arc<AtomicBool>>,
    trusted: Option<Arc<TrustedPublishers>>,
}

impl ServiceMessaging {
    /// The outbox of a service whose component publishes.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// Subscribes `handler` to every queue in `subscriptions`. Subscribing once here, before
    /// the outbox relays start, binds the queues before the first event is published; if the
    /// broker is down, each subscription keeps trying in the background.
    async fn consume(&self, subscriptions: Vec<SubscriptionSpec>, handler: Arc<dyn MessageHandler>) {
        let Some(subscribed) = &self.subscribed else { return };
        for spec in subscriptions {
            let initial = self.broker.subscribe(&spec, &self.retry).await.inspect_err(|error| {
                tracing::warn!(queue = %spec.queue, error = %format!("{error:#}"), "cannot subscribe yet");
            });
            let settler = Settler { handler: handler.clone(), policy: self.retry, trusted: self.trusted.clone() };
            let task = run_subscription(self.broker.clone(), spec, initial.ok(), settler, subscribed.clone());
            tokio::spawn(task);
        }
    }
}

#[async_trait]
impl Capability for MessagingCapability {
    type Service = ServiceMessaging;
    type Instance = Option<Arc<Outbox>>;

    fn name(&self) -> &'static str {
        "messaging"
    }

    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        add_to_linker(linker, |store| {
            let InstanceView { state, table } = store.capability::<Self>();
            MessagingView::new(state.as_ref(), table)
        })
    }

    async fn configure(&self, service: &ServiceSetup<'_>) -> anyhow::Result<ServiceMessaging> {
        let outbox = if service.imports_interface(PRODUCER_INTERFACE) {
            // The outbox lives in the service's own database, so an event waits with its data.
            let Some(sql) = service.state_of::<SqlCapability>() else {
                anyhow::bail!("the outbox needs the sql capability composed before messaging");
            };
            let name = &service.service.name;
            let route = RouteLabels { route: name.clone() };
            let depth = self.metrics.outbox_depth.get_or_create(&route).clone();
            let age = self.metrics.outbox_oldest_age.get_or_create(&route).clone();
            let outbox = Outbox::with_lease((*sql).clone(), depth, self.outbox_lease).with_age_gauge(age);
            let outbox = match &self.signing_key {
                Some(key) => outbox.signed_by(EventSigner::with_key(name, key.clone())),
                None => {
                    tracing::warn!(service = %name, "no {EVENT_SIGNING_KEY}: this service's events go out unsigned");
                    outbox
                }
            };
            Some(Arc::new(outbox))
        } else {
            None
        };
        let consumes = service.exports_interface(CONSUMER_INTERFACE);
        if consumes && self.trusted.is_none() {
            tracing::warn!(service = %service.service.name, "no {EVENT_TRUSTED_KEYS}: this service handles events without checking who signed them");
        }
        let subscribed = consumes.then(|| Arc::new(AtomicBool::new(false)));
        Ok(ServiceMessaging {
            service: service.service.name.clone(),
            broker: self.broker.clone(),
            retry: self.retry,
            outbox,
            subscribed,
            trusted: self.trusted.clone(),
        })
    }

    fn instance(&self, service: &ServiceMessaging) -> Option<Arc<Outbox>> {
        service.outbox.clone()
    }

    async fn prepare(&self, service: &ServiceMessaging) -> anyhow::Result<()> {
        if let Some(outbox) = &service.outbox {
            outbox.prepare().await.map_err(|e| anyhow::anyhow!("creating the outbox: {e:?}"))?;
        }
        Ok(())
    }

    async fn ready(&self, service: &ServiceMessaging) -> Result<(), String> {
        match &service.subscribed {
            Some(live) if !live.load(Ordering::Acquire) => Err("not subscribed to the broker".into()),
            _ => Ok(()),
        }
    }

    fn background(&self, service: &ServiceMessaging, service_name: &str) -> Vec<BoxFuture<'static, ()>> {
        let relay = service.outbox.clone().map(|outbox| outbox.relay(service.broker.clone(), service_name.to_owned()));
        relay.into_iter().map(FutureExt::boxed).collect()
    }

    /// A candidate must publish only where the service has an outbox, and consume what the
    /// running version consumes: queues are subscribed once at start, so other queues need a
    /// restart.
    async fn check_candidate<T: CapabilityStore>(
        &self,
        service: &ServiceMessaging,
        running: &dyn VersionExports<T>,
        candidate: &dyn VersionExports<T>,
    ) -> Result<(), String> {
        if candidate.imports_interface(PRODUCER_INTERFACE) && service.outbox.is_none() {
            return Err("the candidate publishes messages but this service started without an outbox; \
                        restart the host to add messaging"
                .into());
        }
        match (running.exports_interface(CONSUMER_INTERFACE), candidate.exports_interface(CONSUMER_INTERFACE)) {
            (false, false) => Ok(()),
            (true, false) => {
                Err("the running version consumes messages (skiff:messaging/consumer) and the candidate does not"
                    .into())
            }
            (false, true) => {
                Err("the candidate consumes messages but the running version does not; restart the host to subscribe"
                    .into())
            }
            (true, true) => {
                let running = subscriptions_of(running).await;
                let running = running.map_err(|e| format!("reading the running subscriptions: {e:#}"))?;
                let offered = subscriptions_of(candidate).await;
                let offered = offered.map_err(|e| format!("reading the candidate's subscriptions: {e:#}"))?;
                if running != offered {
                    return Err(format!("the candidate subscribes to {offered:?}, the running version to {running:?}"));
                }
                Ok(())
            }
        }
    }

    /// Subscribes a consuming service to every queue its active version asks for; each
    /// delivery then runs on a fresh instance of whichever version serves.
    async fn start<T: CapabilityStore>(
        &self,
        service: &ServiceMessaging,
        instances: Arc<dyn ActiveInstances<T>>,
    ) -> anyhow::Result<()> {
        if service.subscribed.is_none() {
            return Ok(());
        }
        let subscriptions = subscriptions_of(instances.active().as_ref()).await?;
        let handler = ComponentConsumer { instances, metrics: self.metrics.clone(), service: service.service.clone() };
        service.consume(subscriptions, Arc::new(handler)).await;
        Ok(())
    }
}
