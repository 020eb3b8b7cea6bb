//! bcrypt is not a free weapon: sign-up is throttled per client address (so it cannot test
//! emails faster either), a duplicate email is refused before any hashing, and the host's bcrypt
//! queue sheds with 503 + `Retry-After` instead of growing, and a hash whose client has gone is
//! not started.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Backend, TestApp, TestDb};

fn person(email: &str) -> Value {
    json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": "analytical engine"})
}

async fn sign_up_from(app: &TestApp, address: &str, email: &str) -> reqwest::Response {
    let request = app.client.post(app.url("/users-ms/users")).header("x-forwarded-for", address);
    request.json(&person(email)).send().await.unwrap()
}

/// users with `config` on top of the tests' defaults, trusting loopback as a proxy so each
/// request's `X-Forwarded-For` names its client.
async fn users_with(config: &[(&str, &str)]) -> (TestApp, TestDb) {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let mut options = AppOptions { trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()], ..AppOptions::default() };
    options.config.extend(config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
    (TestApp::spawn_with("users", &db, options).await, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_throttled_per_source_and_cannot_test_emails_faster() {
    let (app, _db) = users_with(&[("signup_max_per_source", "3")]).await;
    let prober = "203.0.113.5";
    assert_eq!(sign_up_from(&app, "198.51.100.1", "ada@example.org").await.status(), StatusCode::CREATED);
    // Three attempts, whatever their outcome (a 409 tells the prober an email is taken)...
    assert_eq!(sign_up_from(&app, prober, "ada@example.org").await.status(), StatusCode::CONFLICT);
    assert_eq!(sign_up_from(&app, prober, "grace@example.org").await.status(), StatusCode::CREATED);
    assert_eq!(sign_up_from(&app, prober, "alan@example.org").await.status(), StatusCode::CREATED);
    // ...then 429 for anything, a registered email included: no more answers to learn from.
    for email in ["ada@example.org", "edsger@example.org"] {
        let refused = sign_up_from(&app, prober, email).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
        assert_eq!(refused.headers()["content-type"], "application/problem+json");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["type"], "urn:skiff:problem:too-many-signups");
    }
    // Another address is not held back by it.
    assert_eq!(sign_up_from(&app, "198.51.100.2", "edsger@example.org").await.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_email_is_refused_before_any_hashing() {
    // Cost 13: a hash takes hundreds of milliseconds, a lookup a few.
    let (app, _db) = users_with(&[("bcrypt_cost", "13")]).await;
    let started = Instant::now();
    assert_eq!(sign_up_from(&app, "198.51.100.1", "ada@example.org").await.status(), StatusCode::CREATED);
    let hashing = started.elapsed();
    let started = Instant::now();
    assert_eq!(sign_up_from(&app, "198.51.100.1", "ada@example.org").await.status(), StatusCode::CONFLICT);
    let refusing = started.elapsed();
    assert!(refusing * 4 < hashing, "the 409 took {refusing:?}, a sign-up with its hash {hashing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ups_is_shed_with_retry_after_not_queued() {
    let (app, _db) = users_with(&[("bcrypt_cost", "12")]).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let burst = 16;
    let attempts: Vec<_> = (0..burst)
        .map(|n| {
            let (client, url) = (app.client.clone(), app.url("/users-ms/users"));
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("x-forwarded-for", format!("198.51.100.{n}"))
                    .json(&person(&format!("user{n}@example.org")))
                    .send()
                    .await
                    .unwrap();
                let retry_after = response.headers().get("retry-after").is_some();
                (response.status(), retry_after)
            })
        })
        .collect();
    let (created, shed) = created_and_shed(attempts).await;
    // The queue holds 3 hashes per core (one running, two waiting); the rest are shed at once.
    assert!(created >= 1 && shed >= 1, "{created} created, {shed} shed of {burst} ({cores} cores)");
    assert!(created <= burst - shed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_whose_client_has_gone_is_not_started() {
    // Cost 13: every bcrypt thread stays busy for hundreds of milliseconds.
    let (app, _db) = users_with(&[("bcrypt_cost", "13")]).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fillers: Vec<_> = (0..cores)
        .map(|n| {
            let (client, url) = (app.client.clone(), app.url("/users-ms/users"));
            let request = client.post(url).header("x-forwarded-for", format!("198.51.100.{n}"));
            tokio::spawn(request.json(&person(&format!("filler{n}@example.org"))).send())
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;

    // This sign-up's hash waits for a thread; its client gives up and closes the connection.
    let gone = app
        .client
        .post(app.url("/users-ms/users"))
        .header("x-forwarded-for", "203.0.113.9")
        .timeout(Duration::from_millis(100))
        .json(&person("gone@example.org"))
        .send()
        .await;
    assert!(gone.is_err_and(|error| error.is_timeout()), "the client gave up");
    for filler in fillers {
        assert_eq!(filler.await.unwrap().unwrap().status(), StatusCode::CREATED);
    }
    // Time for the abandoned hash to have run and its user to be stored, had it started.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = sign_up_from(&app, "203.0.113.10", "gone@example.org").await;
    assert_eq!(again.status(), StatusCode::CREATED, "the abandoned sign-up stored nothing (before: 409)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_attempts_are_kept_only_for_their_window() {
    use sqlx::{Connection, Row};
    let (app, db) = users_with(&[("signup_window_secs", "1")]).await;
    let rows = || async {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let row = sqlx::query("SELECT COUNT(*) FROM signup_attempts").fetch_one(&mut conn).await.unwrap();
        row.get::<i64, _>(0)
    };
    // Sign-ups from many addresses, none refused...
    for n in 0..5 {
        let response = sign_up_from(&app, &format!("198.51.100.{n}"), &format!("user{n}@example.org")).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    assert_eq!(rows().await, 5);
    // ...are forgotten once their window has passed: the table holds a window's worth, not
    // every address that ever signed up.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let response = sign_up_from(&app, "198.51.100.99", "late@example.org").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(rows().await, 1);
}

/// The addresses of one IPv6 /64 are one client to the throttles (`throttle_ipv6_prefix`): a host
/// with a /64 cannot sign up 2^64 times. (Each address used to be a client of its own.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_slash_64_is_one_client() {
    let (app, _db) = users_with(&[("signup_max_per_source", "2")]).await;
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::1", "ada@example.org").await.status(), StatusCode::CREATED);
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::2", "grace@example.org").await.status(), StatusCode::CREATED);
    let same_host = sign_up_from(&app, "2001:db8:1:2:ffff:1:2:3", "alan@example.org").await;
    assert_eq!(same_host.status(), StatusCode::TOO_MANY_REQUESTS);
    // The next /64 is another client.
    assert_eq!(sign_up_from(&app, "2001:db8:1:3::1", "alan@example.org").await.status(), StatusCode::CREATED);

    // The prefix is configurable: at /128 each address counts alone.
    let (app, _db) = users_with(&[("signup_max_per_source", "1"), ("throttle_ipv6_prefix", "128")]).await;
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::1", "ada@example.org").await.status(), StatusCode::CREATED);
    assert_eq!(sign_up_from(&app, "2001:db8:1:2::2", "grace@example.org").await.status(), StatusCode::CREATED);
}

/// How many sign-ups of `attempts` (each its status and whether it said `Retry-After`) were
/// created and how many shed with 503 and `Retry-After`; anything else fails the test.
pub async fn created_and_shed(attempts: Vec<tokio::task::JoinHandle<(StatusCode, bool)>>) -> (usize, usize) {
    let (mut created, mut shed) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            (StatusCode::CREATED, _) => created += 1,
            (StatusCode::SERVICE_UNAVAILABLE, true) => shed += 1,
            other => panic!("a sign-up got {other:?}"),
        }
    }
    (created, shed)
}
