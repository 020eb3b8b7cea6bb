//! The embedded broker on a file of its own: fan-out to bound queues, topic bindings, leases,
//! retries, dead letters, and what survives reopening the file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{EmbeddedBroker, LEASE};
use crate::capability::messaging::client::{
    Broker, DeliveryStream, Exchange, ExchangeKind, InboundDelivery, OutboundMessage, RetryPolicy, SubscriptionSpec,
};

/// A broker file in a folder removed when the test ends.
struct BrokerFile(PathBuf);

impl BrokerFile {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("skiff-embedded-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    async fn open(&self) -> EmbeddedBroker {
        EmbeddedBroker::open(&self.0.join("broker.db")).await.unwrap()
    }
}

impl Drop for BrokerFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The topic exchange most tests route on.
fn events() -> Exchange {
    Exchange::new("events", ExchangeKind::Topic)
}

fn message(id: &str, routing_key: &str) -> OutboundMessage {
    OutboundMessage {
        exchange: events(),
        id: id.into(),
        routing_key: routing_key.into(),
        content_type: "application/json".into(),
        headers: vec![("traceparent".into(), "00-abc-01".into())],
        body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
    }
}

async fn subscribe(broker: &EmbeddedBroker, queue: &str, binding_key: &str) -> Box<dyn DeliveryStream> {
    let spec = SubscriptionSpec { exchange: events(), queue: queue.into(), binding_key: binding_key.into() };
    broker.subscribe(&spec, &RetryPolicy::default()).await.unwrap()
}

async fn next(stream: &mut Box<dyn DeliveryStream>) -> Box<dyn InboundDelivery> {
    tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("a delivery within 5 s").unwrap()
}

/// Asserts that `stream` hands out nothing for `period`.
async fn assert_nothing_for(stream: &mut Box<dyn DeliveryStream>, period: Duration) {
    if let Ok(delivery) = tokio::time::timeout(period, stream.next()).await {
        panic!("delivered {:?}, expected nothing", delivery.map(|d| d.message().id.clone()));
    }
}

const QUIET: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_publish_that_no_queue_is_bound_for_is_refused() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    assert!(broker.publish(&message("m1", "user.login")).await.is_err(), "nobody bound at all");
    let _orders = subscribe(&broker, "orders", "order.*").await;
    let refused = broker.publish(&message("m1", "user.login")).await.unwrap_err();
    assert!(format!("{refused}").contains("no queue is bound"), "{refused}");
}

#[tokio::test]
async fn every_matching_queue_gets_its_own_copy_and_others_none() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut notify = subscribe(&broker, "notify", "#").await;
    let mut audit = subscribe(&broker, "audit", "user.*").await;
    let mut orders = subscribe(&broker, "orders", "order.*").await;
    let sent = message("m1", "user.login");
    broker.publish(&sent).await.unwrap();
    for stream in [&mut notify, &mut audit] {
        let delivery = next(stream).await;
        assert_eq!(delivery.message(), &sent);
        assert_eq!(delivery.attempt(), 1);
        delivery.ack().await.unwrap();
    }
    assert_nothing_for(&mut orders, QUIET).await;
}

#[tokio::test]
async fn a_fanout_exchange_gives_every_bound_queue_every_message_and_keeps_its_kind() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let logins = Exchange::new("user_login_event", ExchangeKind::Fanout);
    let subscribe_to_logins = |queue: &str, binding_key: &str| SubscriptionSpec {
        exchange: logins.clone(),
        queue: queue.into(),
        binding_key: binding_key.into(),
    };
    // Whatever the binding keys say: a fanout exchange ignores them, as RabbitMQ's does.
    let mut notify = broker.subscribe(&subscribe_to_logins("notify", ""), &RetryPolicy::default()).await.unwrap();
    let mut audit = broker.subscribe(&subscribe_to_logins("audit", "order.*"), &RetryPolicy::default()).await.unwrap();
    let mut sent = message("m1", "anything");
    sent.exchange = logins.clone();
    broker.publish(&sent).await.unwrap();
    for stream in [&mut notify, &mut audit] {
        let delivery = next(stream).await;
        assert_eq!(delivery.message(), &sent);
        delivery.ack().await.unwrap();
    }
    // Declared as fanout, it cannot be used as topic, by a publisher or by a subscriber.
    let mut as_topic = sent.clone();
    as_topic.exchange.kind = ExchangeKind::Topic;
    let refused = broker.publish(&as_topic).await.unwrap_err();
    assert!(format!("{refused}").contains("declared as fanout"), "{refused}");
    let topic_subscription =
        SubscriptionSpec { exchange: as_topic.exchange, queue: "late".into(), binding_key: "#".into() };
    assert!(broker.subscribe(&topic_subscription, &RetryPolicy::default()).await.is_err());
}

#[tokio::test]
async fn deliveries_come_in_publish_order_and_an_ack_settles_for_good() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    for id in ["m1", "m2", "m3"] {
        broker.publish(&message(id, "user.login")).await.unwrap();
    }
    for id in ["m1", "m2", "m3"] {
        let delivery = next(&mut stream).await;
        assert_eq!(delivery.message().id, id);
        delivery.ack().await.unwrap();
    }
    assert_nothing_for(&mut stream, QUIET).await;
    let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM messages").fetch_one(&broker.pool).await.unwrap();
    assert_eq!(left, 0, "acknowledged messages are deleted, not just leased");
    // Not after a restart either.
    drop(stream);
    drop(broker);
    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    assert_nothing_for(&mut stream, QUIET).await;
}

#[tokio::test]
async fn competing_consumers_never_hold_the_same_delivery() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut first = subscribe(&broker, "notify", "#").await;
    let mut second = subscribe(&broker, "notify", "#").await;
    broker.publish(&message("m1", "user.login")).await.unwrap();
    let leased = next(&mut first).await;
    assert_eq!(leased.message().id, "m1");
    assert_nothing_for(&mut second, QUIET).await;
    broker.publish(&message("m2", "user.login")).await.unwrap();
    assert_eq!(next(&mut second).await.message().id, "m2");
}

#[tokio::test]
async fn a_retry_comes_back_after_its_delay_with_the_attempt_counted() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    broker.publish(&message("m1", "user.login")).await.unwrap();
    let delay = Duration::from_millis(700);
    let retried_at = Instant::now();
    next(&mut stream).await.retry(delay).await.unwrap();
    let again = next(&mut stream).await;
    assert!(retried_at.elapsed() >= delay, "delivered again after {:?}", retried_at.elapsed());
    assert_eq!((again.message().id.as_str(), again.attempt()), ("m1", 2));
    again.retry(Duration::ZERO).await.unwrap();
    assert_eq!(next(&mut stream).await.attempt(), 3);
}

#[tokio::test]
async fn a_dead_letter_is_kept_and_never_delivered_again() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    broker.publish(&message("m1", "user.login")).await.unwrap();
    next(&mut stream).await.dead_letter("not a login event").await.unwrap();
    assert_nothing_for(&mut stream, QUIET).await;
    let parked: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, dead_reason FROM messages").fetch_all(&broker.pool).await.unwrap();
    assert_eq!(parked, [("m1".to_owned(), Some("not a login event".to_owned()))]);
}

#[tokio::test]
async fn an_unsettled_delivery_comes_back_after_a_crash_once_its_lease_ends() {
    let file = BrokerFile::new();
    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    let sent = message("m1", "user.login");
    broker.publish(&sent).await.unwrap();
    let leased = next(&mut stream).await;
    assert_eq!(leased.message(), &sent);
    // The process dies holding it: nothing is settled.
    drop((leased, stream, broker));

    let broker = file.open().await;
    let mut stream = subscribe(&broker, "notify", "#").await;
    assert_nothing_for(&mut stream, QUIET).await;
    // The lease runs out: move it into the past rather than wait LEASE.
    let lease = i64::try_from(LEASE.as_micros()).unwrap();
    sqlx::query("UPDATE messages SET leased_until = leased_until - $1")
        .bind(lease)
        .execute(&broker.pool)
        .await
        .unwrap();
    let again = next(&mut stream).await;
    assert_eq!(again.message(), &sent);
    assert_eq!(again.attempt(), 1, "a lost lease is no failed attempt");
}
