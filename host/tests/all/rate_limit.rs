//! Login throttling in auth, with users beside it in one host: per account from one source, per
//! account across sources (a higher ceiling), per source address, 429 with `Retry-After`, state
//! in auth's own database (SQLite and Postgres). The tests' host trusts loopback and 10.0.0.0/8
//! as proxies, so their `X-Forwarded-For` names the client.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestApp, TestDb};
use crate::messaging::{PASSWORD, login, sign_up};

/// Failures of one account from one source.
const PER_ACCOUNT: u32 = 3;
/// Failures of one account from every source together.
const ACCOUNT_CEILING: u32 = 6;
const PER_SOURCE: u32 = 5;

/// users and auth on `backend`, with small limits and a window of `window_secs`.
async fn spawn(backend: Backend, window_secs: u32) -> (TestApp, TestDb, TestDb) {
    spawn_trusting(backend, window_secs, &["127.0.0.0/8", "10.0.0.0/8"]).await
}

async fn spawn_trusting(backend: Backend, window_secs: u32, proxies: &[&str]) -> (TestApp, TestDb, TestDb) {
    let users = TestDb::new(backend, "users").await;
    let auth = TestDb::new(backend, "auth").await;
    let mut options = AppOptions {
        trusted_proxies: proxies.iter().map(|cidr| cidr.parse().unwrap()).collect(),
        ..AppOptions::default()
    };
    options.config.extend([
        ("login_max_failures_per_account_and_source".to_owned(), PER_ACCOUNT.to_string()),
        ("login_max_failures_per_account".to_owned(), ACCOUNT_CEILING.to_string()),
        ("login_max_failures_per_source".to_owned(), PER_SOURCE.to_string()),
        ("login_failure_window_secs".to_owned(), window_secs.to_string()),
    ]);
    let app = TestApp::spawn_many(&[("users", &users), ("auth", &auth)], options).await;
    (app, users, auth)
}

async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth-ms/auth/login"))
        .header("x-forwarded-for", format!("{address}, 10.0.0.1"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Asserts a 429 problem and returns its `Retry-After` in seconds.
async fn assert_throttled(response: reqwest::Response, window_secs: u64) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=window_secs).contains(&retry_after), "Retry-After {retry_after} outside 1..={window_secs}");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:skiff:problem:too-many-attempts");
    assert_eq!(body["status"], 429);
    retry_after
}

async fn account_limit_refuses_even_the_right_password(backend: Backend) {
    let (app, _users, _auth) = spawn(backend, 60).await;
    sign_up(&app, "ada@example.org").await;
    sign_up(&app, "grace@example.org").await;

    for _ in 0..PER_ACCOUNT {
        assert_eq!(login(&app, "ada@example.org", "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    // The email is normalised before counting; the right password is not even checked.
    assert_throttled(login(&app, " ADA@example.org", PASSWORD).await, 60).await;
    assert_throttled(login(&app, "ada@example.org", "wrong password").await, 60).await;

    // Another account from the same address (below the source limit) is unaffected.
    assert_eq!(login(&app, "grace@example.org", PASSWORD).await.status(), StatusCode::OK);

    // An email with no account is counted the same way, so 429 does not reveal existence.
    for _ in 0..PER_ACCOUNT {
        let response = login_from(&app, "192.0.2.50", "nobody@example.org", "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(login_from(&app, "192.0.2.50", "nobody@example.org", PASSWORD).await, 60).await;
}

async fn source_limit_spans_accounts(backend: Backend) {
    let (app, _users, _auth) = spawn(backend, 60).await;
    sign_up(&app, "ada@example.org").await;
    let attacker = "203.0.113.9";

    // One failure each on many emails: no account reaches its limit, the address does.
    for n in 0..PER_SOURCE {
        let response = login_from(&app, attacker, &format!("guess{n}@example.org"), "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(login_from(&app, attacker, "ada@example.org", PASSWORD).await, 60).await;
    assert_throttled(login_from(&app, attacker, "fresh@example.org", "wrong password").await, 60).await;

    // Another address is not throttled by it, and the accounts' own counts are low.
    let other = "198.51.100.2";
    assert_eq!(
        login_from(&app, other, "guess0@example.org", "wrong password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(login_from(&app, other, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
}

async fn throttle_lifts_after_the_window(backend: Backend) {
    let window: u64 = 2;
    let (app, _users, _auth) = spawn(backend, 2).await;
    sign_up(&app, "ada@example.org").await;

    for _ in 0..PER_ACCOUNT {
        assert_eq!(login(&app, "ada@example.org", "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled_at = Instant::now();
    let retry_after = assert_throttled(login(&app, "ada@example.org", PASSWORD).await, window).await;

    // Waiting what Retry-After says is enough.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let response = login(&app, "ada@example.org", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    println!(
        "rate limit ({backend:?}): {PER_ACCOUNT} failures -> 429 with Retry-After {retry_after} s \
         (window {window} s); login accepted again after {:.1} s",
        throttled_at.elapsed().as_secs_f64()
    );
}

async fn success_clears_the_account_count(backend: Backend) {
    let (app, _users, _auth) = spawn(backend, 60).await;
    sign_up(&app, "ada@example.org").await;
    let address = "192.0.2.77";

    for _ in 0..PER_ACCOUNT - 1 {
        let response = login_from(&app, address, "ada@example.org", "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_from(&app, address, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    // Without the reset this would make PER_ACCOUNT + 1 failures and end in 429.
    for _ in 0..PER_ACCOUNT - 1 {
        let response = login_from(&app, address, "ada@example.org", "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(login_from(&app, address, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    // The source's count is not cleared by a success: 4 failures so far, the 5th reaches it.
    let response = login_from(&app, address, "ada@example.org", "wrong password").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_throttled(login_from(&app, address, "someone@example.org", PASSWORD).await, 60).await;
}

async fn parallel_guesses_cannot_exceed_the_limit(backend: Backend) {
    let (app, _users, _auth) = spawn(backend, 60).await;
    sign_up(&app, "ada@example.org").await;
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/auth-ms/auth/login"));
            tokio::spawn(async move {
                let guess = json!({"email": "ada@example.org", "password": "wrong password"});
                let response = client.post(url).header("x-forwarded-for", "192.0.2.9").json(&guess).send().await;
                response.unwrap().status()
            })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("a guess got {other}"),
        }
    }
    // Guesses in flight count against each other, so fewer than the limit (even none, when all
    // are recorded before any counts) may get through; never more.
    assert!(
        checked <= PER_ACCOUNT,
        "{checked} of 20 parallel guesses reached the password check (limit {PER_ACCOUNT})"
    );
}

async fn a_guesser_locks_out_themself_not_the_owner(backend: Backend) {
    let (app, _users, _auth) = spawn(backend, 60).await;
    sign_up(&app, "ada@example.org").await;
    let attacker = "203.0.113.7";
    for _ in 0..PER_ACCOUNT {
        let response = login_from(&app, attacker, "ada@example.org", "wrong password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The guesser keeps trying: refused, and a refusal does not count.
    for _ in 0..10 {
        assert_throttled(login_from(&app, attacker, "ada@example.org", "wrong password").await, 60).await;
    }
    // The owner, from their own address, still gets in.
    assert_eq!(login_from(&app, "198.51.100.1", "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
    // Locking the account for everyone takes the ceiling's worth of failures from several sources.
    let mut failures = 0;
    for n in 1.. {
        let address = format!("203.0.113.{}", 100 + n);
        for _ in 0..PER_ACCOUNT {
            if failures == ACCOUNT_CEILING {
                break;
            }
            let response = login_from(&app, &address, "ada@example.org", "wrong password").await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            failures += 1;
        }
        if failures == ACCOUNT_CEILING {
            break;
        }
    }
    assert_throttled(login_from(&app, "198.51.100.1", "ada@example.org", PASSWORD).await, 60).await;
}

async fn a_direct_client_cannot_choose_its_throttle_key(backend: Backend) {
    // No trusted proxies: X-Forwarded-For is the client's own claim.
    let (app, _users, _auth) = spawn_trusting(backend, 60, &[]).await;
    for n in 0..PER_SOURCE {
        let response = login_from(&app, &format!("198.51.100.{n}"), &format!("guess{n}@example.org"), "wrong").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(login_from(&app, "198.51.100.99", "fresh@example.org", "wrong").await, 60).await;
}

both_backends!(
    account_limit_refuses_even_the_right_password,
    source_limit_spans_accounts,
    throttle_lifts_after_the_window,
    success_clears_the_account_count,
    parallel_guesses_cannot_exceed_the_limit,
    a_guesser_locks_out_themself_not_the_owner,
    a_direct_client_cannot_choose_its_throttle_key,
);

/// The client's address reaches auth only as the host resolved it (`skiff:request`), never
/// from a header: a guesser who names a new address on every request, under the name the host
/// once used to pass it on, is still one source.
#[tokio::test]
async fn a_header_cannot_name_the_source_address() {
    let (app, _users, _auth) = spawn(Backend::Sqlite, 60).await;
    let login_claiming = |n: u32| {
        app.client
            .post(app.url("/auth-ms/auth/login"))
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
            .header("skiff-peer-address", format!("198.51.100.{n}"))
            .json(&json!({"email": format!("guess{n}@example.org"), "password": "wrong password"}))
            .send()
    };
    for n in 0..PER_SOURCE {
        assert_eq!(login_claiming(n).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_throttled(login_claiming(PER_SOURCE).await.unwrap(), 60).await;
}
