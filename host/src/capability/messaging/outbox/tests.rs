//! The outbox on an in-memory SQLite database, relaying to a broker that records what it is
//! given and fails when told to.

use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BATCH, Outbox};
use crate::capability::messaging::client::{
    Broker, DeliveryStream, Exchange, ExchangeKind, OutboundMessage, RetryPolicy, SubscriptionSpec,
};
use crate::capability::sql::{Database, DatabaseOptions, Value};

/// Takes every message until `accept` runs out, then refuses as a broker that went away does.
struct RecordingBroker {
    published: Mutex<Vec<OutboundMessage>>,
    accept: AtomicUsize,
}

impl RecordingBroker {
    fn new(accept: usize) -> Arc<Self> {
        Arc::new(Self { published: Mutex::new(Vec::new()), accept: AtomicUsize::new(accept) })
    }

    fn come_back(&self) {
        self.accept.store(usize::MAX, Ordering::SeqCst);
    }

    fn ids(&self) -> Vec<String> {
        self.published.lock().unwrap().iter().map(|message| message.id.clone()).collect()
    }
}

#[async_trait]
impl Broker for RecordingBroker {
    async fn publish(&self, message: &OutboundMessage) -> anyhow::Result<()> {
        // A real broker answers later; letting other tasks run here lets relays interleave.
        tokio::task::yield_now().await;
        let taken = self.accept.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1));
        anyhow::ensure!(taken.is_ok(), "the broker is unreachable");
        self.published.lock().unwrap().push(message.clone());
        Ok(())
    }

    async fn subscribe(&self, _: &SubscriptionSpec, _: &RetryPolicy) -> anyhow::Result<Box<dyn DeliveryStream>> {
        anyhow::bail!("the outbox never subscribes")
    }

    fn backend(&self) -> &'static str {
        "recording"
    }
}

async fn outbox() -> (Arc<Outbox>, Gauge) {
    let sql = Database::connect("sqlite::memory:", &DatabaseOptions::default()).await.unwrap();
    let depth = Gauge::default();
    let outbox = Arc::new(Outbox::new(sql, depth.clone()));
    outbox.prepare().await.unwrap();
    (outbox, depth)
}

/// A second replica's relay on the same database as `first`, its claims holding for `lease`.
fn replica(first: &Outbox, lease: Duration) -> Arc<Outbox> {
    Arc::new(Outbox::with_lease(first.sql.clone(), Gauge::default(), lease))
}

fn message(id: &str) -> OutboundMessage {
    OutboundMessage {
        exchange: Exchange::new("user_login_event", ExchangeKind::Fanout),
        id: id.into(),
        routing_key: "user.login".into(),
        content_type: "application/json".into(),
        headers: vec![("traceparent".into(), format!("00-{id}-01")), ("x-empty".into(), String::new())],
        body: vec![0, 159, 146, 150, b'{', b'}', 255],
    }
}

async fn rows(outbox: &Outbox) -> Vec<String> {
    let rows = outbox.sql.query("SELECT id FROM skiff_outbox ORDER BY id", Vec::new()).await.unwrap();
    rows.rows
        .into_iter()
        .map(|row| match &row[0] {
            Value::Text(id) => id.clone(),
            other => panic!("an id that is not text: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn enqueued_messages_reach_the_broker_as_published_in_order_then_leave_the_outbox() {
    let (outbox, depth) = outbox().await;
    let sent: Vec<_> = ["m1", "m2", "m3"].map(message).into();
    for message in &sent {
        outbox.enqueue(message).await.unwrap();
    }
    assert_eq!(depth.get(), 3);
    assert_eq!(rows(&outbox).await, ["m1", "m2", "m3"]);

    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 3);
    // Headers, an empty header value and a body that is not UTF-8 come back unchanged.
    assert_eq!(*broker.published.lock().unwrap(), sent);
    assert!(rows(&outbox).await.is_empty());
    assert_eq!(depth.get(), 0);
    // Nothing is sent twice.
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 0);
    assert_eq!(broker.ids(), ["m1", "m2", "m3"]);
}

#[tokio::test]
async fn a_broker_outage_keeps_every_unconfirmed_message_for_later() {
    let (outbox, depth) = outbox().await;
    for id in ["m1", "m2", "m3"] {
        outbox.enqueue(&message(id)).await.unwrap();
    }
    // The broker confirms one message, then goes away.
    let broker = RecordingBroker::new(1);
    assert!(outbox.relay_batch(broker.as_ref()).await.is_err());
    assert_eq!(broker.ids(), ["m1"]);
    assert_eq!(rows(&outbox).await, ["m2", "m3"], "only the confirmed message left the outbox");
    assert_eq!(depth.get(), 2);
    assert!(outbox.relay_batch(broker.as_ref()).await.is_err());
    assert_eq!(rows(&outbox).await, ["m2", "m3"]);

    broker.come_back();
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 2);
    assert_eq!(broker.ids(), ["m1", "m2", "m3"], "none lost, none repeated");
    assert_eq!(depth.get(), 0);
}

#[tokio::test]
async fn the_age_of_the_oldest_message_shows_while_the_broker_is_away_and_clears_once_it_is_back() {
    let (outbox, _) = outbox().await;
    let age = Gauge::default();
    let outbox = Arc::new(Outbox::new(outbox.sql.clone(), Gauge::default()).with_age_gauge(age.clone()));
    outbox.enqueue(&message("old")).await.unwrap();
    outbox.enqueue(&message("new")).await.unwrap();
    // "old" has waited 90 s.
    let ninety_seconds_ago = chrono::Utc::now().timestamp_micros() - 90_000_000;
    outbox
        .sql
        .execute(
            "UPDATE skiff_outbox SET created_at = $1 WHERE id = $2",
            vec![Value::Timestamp(ninety_seconds_ago), Value::Text("old".into())],
        )
        .await
        .unwrap();
    let broker = RecordingBroker::new(0);
    assert!(outbox.relay_batch(broker.as_ref()).await.is_err());
    assert!(
        (90..100).contains(&age.get()),
        "the oldest message's age, measured while the broker is away: {}",
        age.get()
    );

    broker.come_back();
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 2);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 0);
    assert_eq!(age.get(), 0, "an empty outbox has no age");
}

#[tokio::test]
async fn a_batch_is_bounded_and_the_depth_counts_what_waits_beyond_it() {
    let (outbox, depth) = outbox().await;
    let total = usize::try_from(BATCH).unwrap() + 50;
    for n in 0..total {
        outbox.enqueue(&message(&format!("m{n:03}"))).await.unwrap();
    }
    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 100);
    assert_eq!(depth.get(), 50);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 50);
    assert_eq!(depth.get(), 0);
    let expected: Vec<String> = (0..total).map(|n| format!("m{n:03}")).collect();
    assert_eq!(broker.ids(), expected, "oldest first, each once");
}

#[tokio::test]
async fn the_relay_delivers_what_is_published_while_it_runs_and_outlasts_an_outage() {
    let (outbox, _depth) = outbox().await;
    let broker = RecordingBroker::new(0);
    let relay = tokio::spawn(outbox.clone().relay(broker.clone(), "test".into()));
    outbox.enqueue(&message("m1")).await.unwrap();
    // Refused while the broker is away: it stays in the outbox.
    tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            assert_eq!(rows(&outbox).await, ["m1"]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_err();
    broker.come_back();
    outbox.enqueue(&message("m2")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while broker.ids().len() < 2 || !rows(&outbox).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both messages relayed once the broker is back");
    assert_eq!(broker.ids(), ["m1", "m2"]);
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_of_two_replicas_deliver_every_row_exactly_once() {
    let (first, _depth) = outbox().await;
    let second = replica(&first, Duration::from_secs(30));
    let total = 250;
    for n in 0..total {
        first.enqueue(&message(&format!("m{n:03}"))).await.unwrap();
    }
    let broker = RecordingBroker::new(usize::MAX);
    let relays = [first.clone(), second].map(|outbox| tokio::spawn(outbox.relay(broker.clone(), "test".into())));
    tokio::time::timeout(Duration::from_secs(10), async {
        while !rows(&first).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the relays empty the outbox");
    relays.iter().for_each(tokio::task::JoinHandle::abort);
    let mut ids = broker.ids();
    assert_eq!(ids.len(), total, "each row reached the broker once, not once per relay");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "none lost");
}

#[tokio::test]
async fn rows_a_relay_claimed_wait_for_its_lease_then_another_relay_takes_them() {
    let (first, depth) = outbox().await;
    let lease = Duration::from_millis(300);
    let crashed = replica(&first, lease);
    for id in ["m1", "m2", "m3"] {
        first.enqueue(&message(id)).await.unwrap();
    }
    // The relay claims a batch, then dies before publishing any of it.
    assert_eq!(crashed.claim().await.unwrap().len(), 3);
    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(first.relay_batch(broker.as_ref()).await.unwrap(), 0, "claimed rows are not the other relay's");
    assert_eq!(depth.get(), 3, "claimed rows still count as waiting");
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    assert_eq!(first.relay_batch(broker.as_ref()).await.unwrap(), 3);
    assert_eq!(broker.ids(), ["m1", "m2", "m3"]);
    assert!(rows(&first).await.is_empty());
}

#[tokio::test]
async fn a_relay_the_broker_refused_gives_its_rows_back_at_once() {
    let (first, _depth) = outbox().await;
    let other = replica(&first, Duration::from_secs(30));
    for id in ["m1", "m2"] {
        first.enqueue(&message(id)).await.unwrap();
    }
    let away = RecordingBroker::new(0);
    assert!(first.relay_batch(away.as_ref()).await.is_err());
    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(other.relay_batch(broker.as_ref()).await.unwrap(), 2, "no lease to wait for");
    assert_eq!(broker.ids(), ["m1", "m2"]);
}

#[tokio::test]
async fn an_outbox_table_from_an_earlier_release_gains_the_claim_columns_and_keeps_its_rows() {
    let sql = Database::connect("sqlite::memory:", &DatabaseOptions::default()).await.unwrap();
    // The table as releases before claims created it, with a row waiting in it.
    sql.execute(
        "CREATE TABLE skiff_outbox (id TEXT PRIMARY KEY, exchange TEXT NOT NULL, routing_key TEXT NOT NULL, \
         content_type TEXT NOT NULL, headers TEXT NOT NULL, body BYTEA NOT NULL, created_at TIMESTAMPTZ NOT NULL)",
        Vec::new(),
    )
    .await
    .unwrap();
    sql.execute(
        "INSERT INTO skiff_outbox VALUES ('old', 'user_login_event', 'user.login', 'application/json', '[]', $1, $2)",
        vec![Value::Bytes(b"{}".to_vec()), Value::Timestamp(0)],
    )
    .await
    .unwrap();
    let outbox = Outbox::new(sql, Gauge::default());
    outbox.prepare().await.unwrap();
    outbox.prepare().await.unwrap();
    outbox.enqueue(&message("new")).await.unwrap();
    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 2);
    assert_eq!(broker.ids(), ["old", "new"]);
    let kinds: Vec<_> = broker.published.lock().unwrap().iter().map(|m| m.exchange.clone()).collect();
    assert_eq!(kinds, [Exchange::new("user_login_event", ExchangeKind::Fanout), message("new").exchange]);
}

#[tokio::test]
async fn the_exchange_kind_goes_out_as_published_and_a_relay_with_a_key_signs_every_message() {
    use crate::capability::messaging::signing::{EventSigner, TrustedPublishers};
    let sql = Database::connect("sqlite::memory:", &DatabaseOptions::default()).await.unwrap();
    let seed = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let outbox = Outbox::new(sql, Gauge::default()).signed_by(EventSigner::new("auth", seed).unwrap());
    outbox.prepare().await.unwrap();
    let mut topic = message("t1");
    topic.exchange = Exchange::new("orders", ExchangeKind::Topic);
    outbox.enqueue(&topic).await.unwrap();
    outbox.enqueue(&message("f1")).await.unwrap();
    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 2);

    let public = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
    let trusted = TrustedPublishers::parse(&format!("auth={public}")).unwrap();
    let published = broker.published.lock().unwrap().clone();
    assert_eq!(published[0].exchange, topic.exchange);
    assert_eq!(published[1].exchange.kind, ExchangeKind::Fanout);
    for message in &published {
        assert_eq!(trusted.verify(message), Ok("auth"), "{message:?}");
    }
}

#[tokio::test]
async fn a_message_published_in_a_transaction_is_relayed_only_if_it_commits() {
    // A database file, as a service has: a write outside the open transaction would wait for
    // its lock instead of sharing it.
    let dir = std::env::temp_dir().join(format!("skiff-outbox-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sql = Database::connect(&crate::capability::sql::sqlite_url(&dir, "auth"), &DatabaseOptions::default())
        .await
        .unwrap();
    let outbox = Outbox::new(sql, Gauge::default());
    outbox.prepare().await.unwrap();
    let mut rolled_back = outbox.sql.begin().await.unwrap();
    outbox.enqueue_in(rolled_back.as_mut(), &message("rolled-back")).await.unwrap();
    rolled_back.rollback().await.unwrap();
    let mut committed = outbox.sql.begin().await.unwrap();
    outbox.enqueue_in(committed.as_mut(), &message("committed")).await.unwrap();
    committed.commit().await.unwrap();
    let mut dropped = outbox.sql.begin().await.unwrap();
    outbox.enqueue_in(dropped.as_mut(), &message("dropped")).await.unwrap();
    drop(dropped);

    let broker = RecordingBroker::new(usize::MAX);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 1);
    assert_eq!(outbox.relay_batch(broker.as_ref()).await.unwrap(), 0);
    assert_eq!(broker.ids(), ["committed"], "the rolled-back and dropped ones never, the committed one once");
    let _ = std::fs::remove_dir_all(&dir);
}
