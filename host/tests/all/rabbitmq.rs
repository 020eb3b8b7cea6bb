//! auth and notify against the real RabbitMQ (`SKIFF_TEST_AMQP_URL`, one vhost per test) and
//! Postgres when configured: broker outages, a consumer killed mid-stream, and the latency from
//! login to notification. Ignored unless asked for (`--ignored rabbitmq`, as `scripts/test`
//! does when `SKIFF_TEST_AMQP_URL` is set); the figures are the benchmark suite's.

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::fixtures::{Proxy, SkiffProcess, Webhook, amqp_vhost, via};
use crate::helpers::{AppOptions, Backend, TestApp, TestDb, component, get_json};
use crate::messaging::{PASSWORD, assert_notifications_stay, calling_webhook, login, sign_up, wait_for_notifications};
use crate::wait::{assert_stays, check, eventually};

/// users + auth in one host, publishing to `amqp_url`.
async fn front(amqp_url: String, backend: Backend) -> (TestApp, TestDb, TestDb) {
    let users = TestDb::new(backend, "users").await;
    let auth = TestDb::new(backend, "auth").await;
    let options = AppOptions { amqp_url: Some(amqp_url), ..AppOptions::default() };
    (TestApp::spawn_many(&[("users", &users), ("auth", &auth)], options).await, users, auth)
}

/// notify alone, consuming from `amqp_url`.
async fn notify(amqp_url: String, db: &TestDb, webhook: Option<&Webhook>) -> TestApp {
    let options = webhook.map_or_else(AppOptions::default, calling_webhook);
    TestApp::spawn_with("notify", db, AppOptions { amqp_url: Some(amqp_url), ..options }).await
}

fn postgres_or_sqlite() -> Backend {
    if std::env::var("SKIFF_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty()) {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

fn distinct_events(items: &[Value]) -> usize {
    items.iter().map(|item| item["event_id"].as_str().unwrap().to_owned()).collect::<HashSet<_>>().len()
}

async fn outbox_depth(app: &TestApp) -> i64 {
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find(|line| line.starts_with("skiff_outbox_depth{route=\"auth\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL)"]
async fn a_broker_outage_delays_events_and_loses_none() {
    let (amqp, broker) = amqp_vhost();
    let backend = postgres_or_sqlite();
    let proxy = Proxy::start(broker).await;
    let notify_db = TestDb::new(backend, "notify").await;
    let consumer = notify(amqp.clone(), &notify_db, None).await;
    let (app, _users, _auth) = front(via(&amqp, proxy.addr), backend).await;
    sign_up(&app, "ada@example.org").await;
    // One login while the broker is there, so the relay holds a live connection to lose.
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    wait_for_notifications(&consumer, 1, Duration::from_secs(10)).await;

    proxy.take_down();
    let outage = Instant::now();
    const LOGINS: usize = 1000;
    const OUTAGE: Duration = Duration::from_secs(30);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/auth-ms/auth/login"));
            tokio::spawn(async move {
                for _ in 0..LOGINS / 4 {
                    let body = serde_json::json!({"email": "ada@example.org", "password": PASSWORD});
                    let status = client.post(&url).json(&body).send().await.unwrap().status();
                    assert_eq!(status, StatusCode::OK, "login must not depend on the broker");
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // Nothing gets through while the broker is away.
    assert_notifications_stay(&consumer, 1, OUTAGE.saturating_sub(outage.elapsed())).await;
    assert_eq!(outbox_depth(&app).await, LOGINS as i64, "the events wait in the outbox");

    proxy.bring_up();
    let items = wait_for_notifications(&consumer, LOGINS + 1, Duration::from_secs(60)).await;
    // Exactly one notification per login.
    assert_notifications_stay(&consumer, LOGINS + 1, Duration::from_millis(500)).await;
    assert_eq!(distinct_events(&items), LOGINS + 1);
    assert_eq!(outbox_depth(&app).await, 0);
    app.stop().await;
    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL)"]
async fn a_consumer_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let (amqp, _) = amqp_vhost();
    let backend = postgres_or_sqlite();
    let notify_db = TestDb::new(backend, "notify").await;
    let notify_args = |db: &TestDb| {
        vec![
            "--component".to_owned(),
            component("notify").display().to_string(),
            "--database-url".to_owned(),
            db.url.clone(),
            "--amqp-url".to_owned(),
            amqp.clone(),
            "--data-dir".to_owned(),
            db.scratch.0.display().to_string(),
            "--config".to_owned(),
            format!(
                "token_public_key={}",
                skiff::capability::crypto::token::public_key_of(crate::helpers::TOKEN_SEED).unwrap()
            ),
        ]
    };
    let mut first = SkiffProcess::serve(&notify_args(&notify_db));
    first.wait_ready().await;
    let (app, _users, _auth) = front(amqp.clone(), backend).await;
    sign_up(&app, "ada@example.org").await;

    const LOGINS: usize = 40;
    let logins = {
        let (client, url) = (app.client.clone(), app.url("/auth-ms/auth/login"));
        tokio::spawn(async move {
            for _ in 0..LOGINS {
                let body = serde_json::json!({"email": "ada@example.org", "password": PASSWORD});
                let status = client.post(&url).json(&body).send().await.unwrap().status();
                assert_eq!(status, StatusCode::OK);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // SIGKILL notify while events are flowing, then start a new one on the same database.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();
    logins.await.unwrap();
    let second = SkiffProcess::serve(&notify_args(&notify_db));
    second.wait_ready().await;

    let admin = crate::helpers::token_for(
        "00000000-0000-4000-8000-00000000a11d",
        skiff::capability::crypto::token::Role::Admin,
    );
    let client = reqwest::Client::new();
    let notifications = || async {
        let page = get_json(&client, format!("http://{}/notify-ms/notifications?limit=100", second.addr), &admin).await;
        page["items"].as_array().unwrap().clone()
    };
    eventually(Duration::from_secs(20), || async {
        let items = notifications().await.len();
        check(items >= LOGINS, || format!("{items} of {LOGINS} notifications: one per login, none lost"))
    })
    .await;
    assert_stays(Duration::from_millis(500), || async {
        let items = notifications().await;
        check(items.len() == LOGINS, || format!("{} notifications for {LOGINS} logins", items.len()))?;
        check(distinct_events(&items) == LOGINS, || "none duplicated".into())
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ (SKIFF_TEST_AMQP_URL)"]
async fn login_to_notification_latency_with_rabbitmq() {
    let (amqp, _) = amqp_vhost();
    let backend = postgres_or_sqlite();
    let webhook = Webhook::start(0).await;
    let notify_db = TestDb::new(backend, "notify").await;
    let consumer = notify(amqp.clone(), &notify_db, Some(&webhook)).await;
    let (app, _users, _auth) = front(amqp, backend).await;
    sign_up(&app, "ada@example.org").await;

    const LOGINS: usize = 200;
    let mut latencies = Vec::with_capacity(LOGINS);
    for n in 0..LOGINS {
        let started = Instant::now();
        assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
        let received = webhook.wait_for(n + 1, Duration::from_secs(10)).await;
        latencies.push(received[n].at.duration_since(started));
    }
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    let p99 = percentile(0.99);
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    app.stop().await;
    consumer.stop().await;
}
