//! Messaging across replicas, as the manifests run it: users, two auth and two notify
//! `skiff serve` processes on one RabbitMQ vhost and Postgres databases, login events signed by
//! auth and checked by notify. Ignored unless asked for (`--ignored rabbitmq`); each test needs
//! both `SKIFF_TEST_AMQP_URL` and `SKIFF_TEST_POSTGRES_URL`.

use futures_util::future::join_all;
use futures_util::{StreamExt, stream};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use skiff::capability::messaging::{EventSigner, Exchange, OutboundMessage};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::fixtures::{SkiffProcess, Webhook, WebhookBehaviour, amqp_vhost};
use crate::helpers::{Backend, TOKEN_SEED, TestDb, component};
use crate::messaging::PASSWORD;
use crate::wait::{assert_stays, check, eventually};

/// auth's event key in these tests, and its public half as notify trusts it.
const EVENT_SEED: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
const EXCHANGE: &str = "user_login_event";
const NOTIFY_QUEUE: &str = "notify.user_login_event";

/// The permissions the production manifests give a service's broker user, read from
/// `k8s/components/rabbitmq-service-users/permissions.yaml`: (configure, write, read).
fn manifest_permissions(service: &str) -> [String; 3] {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/components/rabbitmq-service-users/permissions.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let document = text
        .split("\n---")
        .find(|document| document.contains(&format!("userReference: {{name: {service}-broker-user}}")))
        .unwrap_or_else(|| panic!("no Permission for {service} in {path}"));
    let line = document.lines().find_map(|line| line.trim().strip_prefix("permissions: ")).unwrap();
    // A YAML flow mapping of double-quoted strings is JSON once its keys are quoted.
    let json =
        line.replace("configure:", "\"configure\":").replace("write:", "\"write\":").replace("read:", "\"read\":");
    let permissions: Value = serde_json::from_str(&json).unwrap();
    ["configure", "write", "read"].map(|key| permissions[key].as_str().unwrap().to_owned())
}

/// A user of the vhost in `amqp` with the manifests' permissions for `service`; its URL.
fn broker_user(amqp: &str, service: &str) -> String {
    let (without_vhost, vhost) = amqp.rsplit_once('/').unwrap();
    let host = without_vhost.rsplit_once('@').unwrap().1;
    let user = format!("{service}-{vhost}");
    let password = uuid::Uuid::new_v4().simple().to_string();
    let [configure, write, read] = manifest_permissions(service);
    for args in [
        vec!["add_user", user.as_str(), password.as_str()],
        vec!["set_permissions", "-p", vhost, user.as_str(), configure.as_str(), write.as_str(), read.as_str()],
    ] {
        let output = std::process::Command::new("rabbitmqctl").args(&args).output().expect("rabbitmqctl runs");
        assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    format!("amqp://{user}:{password}@{host}/{vhost}")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().flat_map(|(flag, value)| [format!("--{flag}"), value.clone()]).collect()
}

/// users, two auth and two notify processes, and the test's own queue on the exchange.
struct Fleet {
    /// notify's broker user, with the manifests' permissions.
    notify_amqp: String,
    users: SkiffProcess,
    auth: Vec<SkiffProcess>,
    _notify: Vec<SkiffProcess>,
    auth_db: TestDb,
    _dbs: Vec<TestDb>,
    /// Bound to the exchange before the first login: counts what reaches the broker.
    tap: Channel,
    _tap_connection: Connection,
    /// What [`Fleet::dead_letters`] took off the dead-letter queue so far.
    dead: std::sync::Mutex<Vec<(String, String, String)>>,
    client: reqwest::Client,
}

const TAP_QUEUE: &str = "test.tap";

impl Fleet {
    async fn start(webhook: &Webhook) -> Self {
        let (amqp, _) = amqp_vhost();
        // auth and notify connect as users with exactly the production manifests' permissions.
        let (auth_amqp, notify_amqp) = (broker_user(&amqp, "auth"), broker_user(&amqp, "notify"));
        let token_public = skiff::capability::crypto::token::public_key_of(TOKEN_SEED).unwrap();
        let event_public = skiff::capability::crypto::token::public_key_of(EVENT_SEED).unwrap();
        let (users_db, auth_db, notify_db) = (
            TestDb::new(Backend::Postgres, "users").await,
            TestDb::new(Backend::Postgres, "auth").await,
            TestDb::new(Backend::Postgres, "notify").await,
        );

        let internal = free_addr();
        let users = SkiffProcess::serve(&args(&[
            ("component", component("users").display().to_string()),
            ("database-url", users_db.url.clone()),
            ("internal-listen", internal.to_string()),
            ("data-dir", users_db.scratch.0.display().to_string()),
            ("config", format!("token_public_key={token_public}")),
            ("config", "bcrypt_cost=4".into()),
        ]));
        users.wait_ready().await;

        let (tap_connection, tap) = tap(&amqp).await;
        let auth_args = |n: usize| {
            args(&[
                ("component", component("auth").display().to_string()),
                ("database-url", auth_db.url.clone()),
                ("amqp-url", auth_amqp.clone()),
                ("service", format!("users={internal}")),
                ("data-dir", auth_db.scratch.0.join(format!("auth-{n}")).display().to_string()),
                ("config", format!("token_signing_key={TOKEN_SEED}")),
                ("config", format!("event_signing_key={EVENT_SEED}")),
                // Short, so that a test sees another replica take over a dead relay's rows.
                ("outbox-lease-ms", "2000".into()),
            ])
        };
        let notify_args = |n: usize| {
            args(&[
                ("component", component("notify").display().to_string()),
                ("database-url", notify_db.url.clone()),
                ("amqp-url", notify_amqp.clone()),
                ("data-dir", notify_db.scratch.0.join(format!("notify-{n}")).display().to_string()),
                ("config", format!("token_public_key={token_public}")),
                ("config", format!("event_trusted_keys=auth={event_public}")),
                ("config", format!("webhook_url={}", webhook.url())),
                ("outbound-allow", webhook.addr.to_string()),
                ("retry-base-delay-ms", "200".into()),
            ])
        };
        let notify: Vec<_> = (0..2).map(|n| SkiffProcess::serve(&notify_args(n))).collect();
        let auth: Vec<_> = (0..2).map(|n| SkiffProcess::serve(&auth_args(n))).collect();
        for process in notify.iter().chain(&auth) {
            process.wait_ready().await;
        }
        Self {
            notify_amqp,
            users,
            auth,
            _notify: notify,
            auth_db,
            _dbs: vec![users_db, notify_db],
            tap,
            _tap_connection: tap_connection,
            dead: Default::default(),
            client: reqwest::Client::new(),
        }
    }

    async fn sign_up(&self, email: &str) -> String {
        let body = json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": PASSWORD});
        let response =
            self.client.post(format!("http://{}/users-ms/users", self.users.addr)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    /// Logs in through auth replica `replica`; the status.
    async fn login(&self, replica: usize, email: &str) -> StatusCode {
        let url = format!("http://{}/auth-ms/auth/login", self.auth[replica % self.auth.len()].addr);
        let body = json!({"email": email, "password": PASSWORD});
        self.client.post(url).json(&body).send().await.map(|r| r.status()).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    /// How many messages reached the exchange so far.
    async fn on_the_exchange(&self) -> u32 {
        let queue = self
            .tap
            .queue_declare(
                TAP_QUEUE.into(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        queue.message_count()
    }

    /// Publishes `message` to the exchange as a client holding broker credentials would.
    async fn publish_raw(&self, message: &OutboundMessage) {
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(name.as_str().into(), AMQPValue::LongString(value.as_str().into()));
        }
        let properties = BasicProperties::default()
            .with_message_id(message.id.as_str().into())
            .with_content_type(message.content_type.as_str().into())
            .with_headers(headers);
        self.tap
            .basic_publish(EXCHANGE.into(), "".into(), BasicPublishOptions::default(), &message.body, properties)
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Every message the dead-letter queue got so far: (message id, reason, attempts).
    async fn dead_letters(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        while let Some(message) = self
            .tap
            .basic_get(format!("{NOTIFY_QUEUE}.dead-letter").as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let header = |name: &str| {
                message.properties.headers().as_ref().and_then(|h| h.inner().get(name).cloned()).map(
                    |value| match value {
                        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
                        other => format!("{other:?}"),
                    },
                )
            };
            let id = message.properties.message_id().as_ref().map(|id| id.to_string()).unwrap_or_default();
            found.push((
                id,
                header("x-skiff-dead-letter-reason").unwrap_or_default(),
                header("x-skiff-attempts").unwrap_or_default(),
            ));
        }
        let mut dead = self.dead.lock().unwrap();
        dead.extend(found);
        dead.clone()
    }
}

/// A channel of the test's own, with a queue bound to the fanout exchange.
async fn tap(amqp: &str) -> (Connection, Channel) {
    let connection = Connection::connect(amqp, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    channel.exchange_declare(EXCHANGE.into(), ExchangeKind::Fanout, durable, FieldTable::default()).await.unwrap();
    channel.queue_declare(TAP_QUEUE.into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    channel
        .queue_bind(TAP_QUEUE.into(), EXCHANGE.into(), "".into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    (connection, channel)
}

/// Webhook deliveries per event id.
fn deliveries_per_event(webhook: &Webhook) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for received in webhook.received() {
        *counts.entry(received.body["event_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    counts
}

/// A login event for `user_id` as auth would write it.
fn login_event(user_id: &str) -> OutboundMessage {
    let event_id = uuid::Uuid::new_v4().to_string();
    let body = json!({"event_id": event_id, "user_id": user_id, "occurred_at": "2026-12-01T08:00:00.000000Z"});
    OutboundMessage {
        exchange: Exchange::new(EXCHANGE, skiff::capability::messaging::ExchangeKind::Fanout),
        id: event_id,
        routing_key: String::new(),
        content_type: "application/json".into(),
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }
}

/// Logs `email` in `count` times, one at a time, taking turns among the auths; the p99 from
/// sending each login to the webhook receiving its notification (counted after whatever the
/// webhook had received before).
async fn login_to_notification_p99(
    fleet: &Fleet,
    webhook: &Webhook,
    email: &str,
    count: usize,
    timeout: Duration,
) -> Duration {
    let already = webhook.received().len();
    let mut latencies = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        assert_eq!(fleet.login(n, email).await, StatusCode::OK);
        let received = webhook.wait_for(already + n + 1, timeout).await;
        latencies.push(received[already + n].at.duration_since(started));
    }
    p99(latencies)
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[((latencies.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL) and Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn two_auth_and_two_notify_replicas_on_rabbitmq_and_postgres_send_each_login_once() {
    // Each webhook call takes a while, so that copies of one event overlap on two replicas.
    let webhook =
        Webhook::start_with(WebhookBehaviour { delay: Duration::from_millis(100), ..Default::default() }).await;
    let fleet = Fleet::start(&webhook).await;
    let ada = fleet.sign_up("ada@example.org").await;

    const LOGINS: usize = 200;
    // Four at a time: more would only meet the host's bounded bcrypt queue (503).
    let statuses: Vec<StatusCode> =
        stream::iter((0..LOGINS).map(|n| fleet.login(n, "ada@example.org"))).buffer_unordered(4).collect().await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK), "{statuses:?}");

    // Ten events, each twice at the same moment, signed as auth signs (a relay that died
    // between the broker's confirm and its delete sends such a copy).
    const DUPLICATED: usize = 10;
    let signer = EventSigner::new("auth", EVENT_SEED).unwrap();
    let duplicated: Vec<OutboundMessage> = (0..DUPLICATED)
        .map(|_| {
            let mut event = login_event(&ada);
            signer.sign(&mut event);
            event
        })
        .collect();
    join_all(duplicated.iter().flat_map(|event| [fleet.publish_raw(event), fleet.publish_raw(event)])).await;

    let expected = LOGINS + DUPLICATED;
    webhook.wait_for(expected, Duration::from_secs(60)).await;
    assert_stays(Duration::from_secs(2), || async {
        let per_event = deliveries_per_event(&webhook);
        let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
        check(twice.is_empty(), || format!("delivered more than once: {twice:?}"))?;
        check(per_event.len() == expected, || {
            format!("{} events reached the webhook, {expected} expected", per_event.len())
        })
    })
    .await;
    // Exactly one message per login reached the exchange (plus the copies sent by hand).
    let on_exchange = fleet.on_the_exchange().await as usize;
    assert_eq!(on_exchange, LOGINS + 2 * DUPLICATED, "messages on the exchange for {LOGINS} logins");
    // notify's broker user cannot publish a login event: only auth's can.
    let connection = Connection::connect(&fleet.notify_amqp, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(lapin::options::ConfirmSelectOptions::default()).await.unwrap();
    let published = match channel
        .basic_publish(EXCHANGE.into(), "".into(), BasicPublishOptions::default(), b"{}", BasicProperties::default())
        .await
    {
        Ok(confirm) => confirm.await.map(|confirm| confirm.is_ack()).unwrap_or(false),
        Err(_) => false,
    };
    assert!(!published, "notify's broker user published to {EXCHANGE}");
    println!(
        "figure fleet_logins={LOGINS} broker_messages={} webhook_deliveries={}",
        on_exchange - 2 * DUPLICATED,
        webhook.received().len() - DUPLICATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL) and Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn a_webhook_failing_for_one_user_does_not_delay_the_others_on_rabbitmq_and_postgres() {
    let webhook = Webhook::start_with(WebhookBehaviour::default()).await;
    let fleet = Fleet::start(&webhook).await;
    let broken = fleet.sign_up("broken@example.org").await;
    fleet.sign_up("ada@example.org").await;
    webhook.break_for_user(&broken);

    // The broken user's events fail and wait out their back-off (200 ms doubling, 5
    // attempts) while the others' notifications are measured.
    for n in 0..20 {
        assert_eq!(fleet.login(n, "broken@example.org").await, StatusCode::OK);
    }
    let p99 = login_to_notification_p99(&fleet, &webhook, "ada@example.org", 100, Duration::from_secs(20)).await;
    println!("figure others_notification_p99_while_one_webhook_fails_ms={:.1}", p99.as_secs_f64() * 1000.0);
    assert!(p99 < Duration::from_millis(500), "the other user's notifications waited: p99 {p99:?}");

    // The broken user's events end in the dead-letter queue, each with its reason and count.
    let dead = eventually(Duration::from_secs(30), || async {
        let mut dead = fleet.dead_letters().await;
        dead.retain(|(_, reason, _)| reason == "retries exhausted");
        if dead.len() >= 20 { Ok(dead) } else { Err(format!("{} of 20 dead-lettered", dead.len())) }
    })
    .await;
    assert!(dead.iter().all(|(_, _, attempts)| attempts == "5"), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL) and Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn forged_unsigned_and_self_counted_events_on_rabbitmq_and_postgres() {
    // The first call fails: only the self-counted event gets that far.
    let webhook = Webhook::start(1).await;
    let fleet = Fleet::start(&webhook).await;
    let ada = fleet.sign_up("ada@example.org").await;

    let unsigned = login_event(&ada);
    let mut forged = login_event(&ada);
    EventSigner::new("auth", &base64_of([9u8; 32])).unwrap().sign(&mut forged);
    let mut altered = login_event(&ada);
    EventSigner::new("auth", EVENT_SEED).unwrap().sign(&mut altered);
    altered.body = altered.body.iter().map(|b| if *b == b'8' { b'9' } else { *b }).collect();
    // Signed correctly, but claiming to be its fifth and last attempt: the count is the
    // host's, so it is handled as a first delivery, retried after the webhook's first 500,
    // and delivered.
    let mut self_counted = login_event(&ada);
    EventSigner::new("auth", EVENT_SEED).unwrap().sign(&mut self_counted);
    self_counted.headers.push(("x-skiff-attempt".into(), "5".into()));
    for message in [&unsigned, &forged, &altered, &self_counted] {
        fleet.publish_raw(message).await;
    }

    let dead = eventually(Duration::from_secs(20), || async {
        let dead = fleet.dead_letters().await;
        if dead.len() >= 3 { Ok(dead) } else { Err(format!("{} of 3 dead-lettered: {dead:?}", dead.len())) }
    })
    .await;
    let reason = |id: &str| dead.iter().find(|(dead_id, _, _)| dead_id == id).map(|(_, reason, _)| reason.clone());
    assert!(reason(&unsigned.id).is_some_and(|r| r.contains("unsigned")), "{dead:?}");
    assert!(reason(&forged.id).is_some_and(|r| r.contains("does not match")), "{dead:?}");
    assert!(reason(&altered.id).is_some_and(|r| r.contains("does not match")), "{dead:?}");
    assert_eq!(reason(&self_counted.id), None, "{dead:?}");
    let delivered = webhook.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(delivered[0].body["event_id"], self_counted.id.as_str());
    assert_stays(Duration::from_secs(1), || async {
        check(webhook.received().len() == 1, || "nothing unverified reached the webhook".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL) and Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn a_relay_killed_mid_stream_loses_nothing_on_rabbitmq_and_postgres() {
    let webhook = Webhook::start_with(WebhookBehaviour::default()).await;
    let mut fleet = Fleet::start(&webhook).await;
    let ada = fleet.sign_up("ada@example.org").await;

    // Rows a relay claimed just before it died: the survivor takes them once the lease (2 s
    // here) runs out.
    let orphans: Vec<OutboundMessage> = (0..5).map(|_| login_event(&ada)).collect();
    let pool = sqlx::PgPool::connect(&fleet.auth_db.url).await.unwrap();
    let claimed_until = chrono::Utc::now().timestamp_micros() + 2_000_000;
    for event in &orphans {
        sqlx::query(
            "INSERT INTO skiff_outbox (id, exchange, routing_key, content_type, headers, body, created_at, claimed_by, claimed_until, exchange_kind) \
             VALUES ($1, $2, '', 'application/json', '[]', $3, now(), 'a-relay-that-died', $4, 'fanout')",
        )
        .bind(&event.id)
        .bind(EXCHANGE)
        .bind(&event.body)
        .bind(claimed_until)
        .execute(&pool)
        .await
        .unwrap();
    }

    // Logins on both replicas; one of them is SIGKILLed while they run.
    const LOGINS: usize = 60;
    let mut ok = 0;
    for n in 0..LOGINS {
        if n == LOGINS / 3 {
            fleet.auth[0].kill();
        }
        let replica = if n >= LOGINS / 3 { 1 } else { n };
        if fleet.login(replica, "ada@example.org").await == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, LOGINS);

    let expected = LOGINS + orphans.len();
    webhook.wait_for(expected, Duration::from_secs(30)).await;
    let per_event = deliveries_per_event(&webhook);
    assert_eq!(per_event.len(), expected, "every login and every orphaned row delivered");
    assert!(orphans.iter().all(|event| per_event.contains_key(&event.id)));
    assert!(per_event.values().all(|n| *n == 1), "once each");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM skiff_outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0, "the outbox drained");
}

fn base64_of(bytes: [u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The figure for the benchmark suite: login to webhook with two auth and two notify replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL) and Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn login_to_notification_latency_with_replicas_on_rabbitmq_and_postgres() {
    let webhook = Webhook::start_with(WebhookBehaviour::default()).await;
    let fleet = Fleet::start(&webhook).await;
    fleet.sign_up("ada@example.org").await;
    let p99 = login_to_notification_p99(&fleet, &webhook, "ada@example.org", 200, Duration::from_secs(10)).await;
    println!("figure login_to_notification_p99_replicas_ms={:.1}", p99.as_secs_f64() * 1000.0);
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}
