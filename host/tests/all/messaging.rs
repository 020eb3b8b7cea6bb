//! auth and notify end to end in one host on the embedded queue, as `skiff dev` runs them:
//! sign up, log in, use the token, see the notification arrive through the webhook.

use reqwest::StatusCode;
use serde_json::{Value, json};
use skiff::capability::crypto::token::Role;
use std::time::{Duration, Instant};

use crate::fixtures::{Webhook, WebhookBehaviour};
use crate::helpers::{AppOptions, Backend, TestApp, TestDb, get_json, token_for};
use crate::wait::{assert_stays, check, eventually};

pub const PASSWORD: &str = "analytical engine";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

pub async fn sign_up(app: &TestApp, email: &str) -> String {
    let body = json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": PASSWORD});
    let response = app.client.post(app.url("/users-ms/users")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth-ms/auth/login"))
        .header("user-agent", "skiff-tests/1")
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Every notification, as an admin sees them.
pub async fn all_notifications(app: &TestApp) -> Vec<Value> {
    let admin = token_for("00000000-0000-4000-8000-00000000a11d", Role::Admin);
    let mut items = Vec::new();
    let mut offset = 0;
    loop {
        let url = app.url(&format!("/notify-ms/notifications?limit=100&offset={offset}"));
        let page = get_json(&app.client, url, &admin).await;
        let batch = page["items"].as_array().unwrap().clone();
        offset += batch.len();
        items.extend(batch);
        if page["next_offset"].is_null() {
            return items;
        }
    }
}

/// Polls until `count` notifications exist (or fails after `timeout`).
pub async fn wait_for_notifications(app: &TestApp, count: usize, timeout: Duration) -> Vec<Value> {
    eventually(timeout, || async {
        let items = all_notifications(app).await;
        if items.len() >= count { Ok(items) } else { Err(format!("only {} of {count} notifications", items.len())) }
    })
    .await
}

/// Asserts that exactly `count` notifications exist throughout `period`.
pub async fn assert_notifications_stay(app: &TestApp, count: usize, period: Duration) {
    assert_stays(period, || async {
        let items = all_notifications(app).await.len();
        check(items == count, || format!("{items} notifications, expected {count}"))
    })
    .await;
}

/// Host options under which notify calls `webhook`, and the host lets it.
pub fn calling_webhook(webhook: &Webhook) -> AppOptions {
    let mut options = AppOptions::default();
    options.config.push(("webhook_url".into(), webhook.url()));
    options.outbound_allow.push(webhook.addr.to_string());
    options
}

/// users, auth and notify in one host on SQLite, as `skiff dev` runs them.
async fn three_services(options: AppOptions) -> (TestApp, [TestDb; 3]) {
    let dbs = [
        TestDb::new(Backend::Sqlite, "users").await,
        TestDb::new(Backend::Sqlite, "auth").await,
        TestDb::new(Backend::Sqlite, "notify").await,
    ];
    let app = TestApp::spawn_many(&[("users", &dbs[0]), ("auth", &dbs[1]), ("notify", &dbs[2])], options).await;
    (app, dbs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_log_in_and_get_notified() {
    let webhook = Webhook::start(0).await;
    let (app, _dbs) = three_services(calling_webhook(&webhook)).await;
    let id = sign_up(&app, "ada@example.org").await;

    let response = login(&app, "ADA@example.org", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let granted: Value = response.json().await.unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 900);
    let token = granted["access_token"].as_str().unwrap();

    // The token opens the user's own profile, and only that.
    let own = app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(own.status(), StatusCode::OK);

    let delivered = webhook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].body["user_id"], id.as_str());
    assert_eq!(delivered[0].body["kind"], "login");
    let event_id = delivered[0].body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(delivered[0].headers["idempotency-key"], event_id.as_str());
    // The trace started by the client runs through auth, the broker and notify.
    let traceparent = delivered[0].headers["traceparent"].to_str().unwrap();
    assert!(traceparent.starts_with(&format!("00-{TRACE_ID}-")), "{traceparent}");

    let listed = get_json(&app.client, app.url(&format!("/notify-ms/notifications?user_id={id}")), token).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["event_id"], event_id.as_str());
    assert!(items[0]["message"].as_str().unwrap().contains("skiff-tests/1"));
    assert!(!items[0]["delivered_at"].is_null());
    // Someone else's notifications are not theirs to read.
    let other = app
        .client
        .get(app.url("/notify-ms/notifications?user_id=00000000-0000-4000-8000-000000000000"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    let anonymous = app.client.get(app.url("/notify-ms/notifications")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_look_the_same() {
    let (app, _dbs) = three_services(AppOptions::default()).await;
    sign_up(&app, "ada@example.org").await;
    let wrong = login(&app, "ada@example.org", "not the password").await;
    let unknown = login(&app, "nobody@example.org", PASSWORD).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (wrong, unknown): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(wrong, unknown);
    let malformed = app.client.post(app.url("/auth-ms/auth/login")).json(&json!({"email": "x"})).send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = malformed.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "password");
    // Failed logins publish nothing.
    assert_notifications_stay(&app, 0, Duration::from_millis(300)).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_and_the_event_delivered_once() {
    let webhook = Webhook::start(2).await;
    let (app, _dbs) = three_services(calling_webhook(&webhook)).await;
    let id = sign_up(&app, "ada@example.org").await;
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    let delivered = webhook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].body["user_id"], id.as_str());
    assert_stays(Duration::from_millis(500), || async {
        check(webhook.received().len() == 1, || "delivered more than once".into())
    })
    .await;
    assert_eq!(webhook.attempts(), 3, "two failures, then success");
    let items = all_notifications(&app).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["delivery_attempts"], 3, "every attempt is counted");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_says_503_when_users_is_down() {
    let db = TestDb::new(Backend::Sqlite, "auth").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options = AppOptions { service_routes: vec![("users".into(), closed.to_string())], ..AppOptions::default() };
    let app = TestApp::spawn_with("auth", &db, options).await;
    let started = Instant::now();
    let response = login(&app, "ada@example.org", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(6), "login hung for {:?}", started.elapsed());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_off_the_allow_list_are_refused() {
    // notify may only reach its webhook host: a webhook_url elsewhere is refused by the host,
    // so the event is retried and never delivered.
    let webhook = Webhook::start(0).await;
    let mut options = calling_webhook(&webhook);
    // The webhook's address is not on the allow-list.
    options.outbound_allow.clear();
    let (app, _dbs) = three_services(options).await;
    sign_up(&app, "ada@example.org").await;
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    let items = wait_for_notifications(&app, 1, Duration::from_secs(10)).await;
    assert_stays(Duration::from_millis(500), || async {
        check(webhook.attempts() == 0, || "the host let a request through to a host off the allow-list".into())
    })
    .await;
    assert!(items[0]["delivered_at"].is_null());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_check_answers_only_on_the_internal_listener() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let app = TestApp::spawn_with("users", &db, AppOptions { internal_listener: true, ..AppOptions::default() }).await;
    let id = sign_up(&app, "ada@example.org").await;
    let internal = app.internal_addr.unwrap();
    let check = |base: String, password: &str| {
        let request = app
            .client
            .post(format!("{base}/users-ms/internal/credentials"))
            .json(&json!({"email": "ada@example.org", "password": password}));
        async move { request.send().await.unwrap() }
    };
    let ok = check(format!("http://{internal}"), PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let verdict: Value = ok.json().await.unwrap();
    assert_eq!(verdict, json!({"id": id, "role": "user"}), "id and role only: the hash never leaves users");
    assert_eq!(check(format!("http://{internal}"), "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(check(app.url(""), PASSWORD).await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_is_dead_lettered_after_its_retries() {
    let webhook = Webhook::start(usize::MAX).await;
    let mut options = calling_webhook(&webhook);
    options.retry.max_attempts = 3;
    let (app, _dbs) = three_services(options).await;
    sign_up(&app, "ada@example.org").await;
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    eventually(Duration::from_secs(10), || async {
        check(webhook.attempts() >= 3, || format!("only {} attempts", webhook.attempts()))
    })
    .await;
    // The back-off would allow several more attempts in this time: the message was parked.
    assert_stays(Duration::from_millis(1500), || async {
        let attempts = webhook.attempts();
        check(attempts == 3, || format!("{attempts} attempts: retried past the budget of 3 instead of dead-lettered"))
    })
    .await;
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_messages_handled_total{route="notify",outcome="retry"} 3"#), "{metrics}");
    app.stop().await;
}

/// A 2xx is a delivery whatever body comes with it: notify reads a prefix of the answer and
/// closes. (A 2xx with a body over 1 MiB used to count as a failure, and the same event was
/// sent again and again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_with_a_large_body_is_one_delivery() {
    let webhook =
        Webhook::start_with(WebhookBehaviour { response_bytes: 2 << 20, ..WebhookBehaviour::default() }).await;
    let (app, _dbs) = three_services(calling_webhook(&webhook)).await;
    sign_up(&app, "ada@example.org").await;
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    webhook.wait_for(1, Duration::from_secs(10)).await;
    eventually(Duration::from_secs(10), || async {
        let items = all_notifications(&app).await;
        check(items.len() == 1 && !items[0]["delivered_at"].is_null(), || format!("not delivered yet: {items:?}"))
    })
    .await;
    // No retry follows.
    assert_stays(Duration::from_secs(3), || async {
        let attempts = webhook.attempts();
        check(attempts == 1, || format!("{attempts} webhook calls for one login"))
    })
    .await;
    app.stop().await;
}
