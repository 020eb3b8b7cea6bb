//! Nothing a client can do tells whether an email is registered: a login takes as long for an
//! unknown email as for a wrong password, also while the bcrypt queue is full and after the
//! bcrypt cost changed. users and auth in one host, on SQLite and on Postgres.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestApp, TestDb};
use crate::messaging::{PASSWORD, login, sign_up};
use crate::users_api::stored_hash;

/// Failed logins the tests make without being throttled (each limit's maximum).
const UNTHROTTLED: [(&str, &str); 3] = [
    ("login_max_failures_per_account_and_source", "10000"),
    ("login_max_failures_per_account", "100000"),
    ("login_max_failures_per_source", "100000"),
];

/// users and auth on `backend`'s databases, bcrypt at `cost`, logins never throttled.
async fn users_and_auth(users: &TestDb, auth: &TestDb, cost: u32) -> TestApp {
    let mut options = AppOptions::default();
    // Instance slots for every login the tests have in flight (each holds one of auth and one
    // of users): what waits is bcrypt, not an instance.
    options.runtime.max_instances = 64;
    options.config.push(("bcrypt_cost".into(), cost.to_string()));
    options.config.extend(UNTHROTTLED.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
    TestApp::spawn_many(&[("users", users), ("auth", auth)], options).await
}

/// A login's status and how long it took.
async fn timed_login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = login(app, email, password).await.status();
    (status, started.elapsed())
}

/// While other logins fill the bcrypt queue, an unknown email waits its turn as a wrong password
/// does. (It used to be shed at once: 401 in a few milliseconds, against hundreds for a
/// registered email.)
async fn an_unknown_email_waits_for_bcrypt_like_a_wrong_password_under_load(backend: Backend) {
    let (users, auth) = (TestDb::new(backend, "users").await, TestDb::new(backend, "auth").await);
    // Cost 11: about 120 ms a check on one core.
    let app = users_and_auth(&users, &auth, 11).await;
    sign_up(&app, "ada@example.org").await;
    sign_up(&app, "grace@example.org").await;
    // Twelve logins in flight: far more bcrypt work than the host's queue holds.
    let load = (0..12).map(|_| timed_login(&app, "grace@example.org", "not the password"));
    let probes = async {
        // Once the load has reached the bcrypt queue.
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::join!(
            timed_login(&app, "ada@example.org", "not the password"),
            timed_login(&app, "nobody@example.org", "not the password"),
        )
    };
    let (load, ((wrong_status, wrong), (unknown_status, unknown))) =
        tokio::join!(futures_util::future::join_all(load), probes);
    eprintln!("under load: wrong password {wrong:?}, unknown email {unknown:?}; load {load:?}");
    assert!(load.iter().all(|(status, _)| *status == StatusCode::UNAUTHORIZED), "{load:?}");
    assert_eq!((wrong_status, unknown_status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert!(
        unknown * 2 >= wrong && wrong * 2 >= unknown,
        "under load a wrong password took {wrong:?} and an unknown email {unknown:?}"
    );
    app.stop().await;
}

/// After the cost is raised, an account's next successful login remakes its hash at the new
/// cost (without ending its sessions), so from then on a wrong password for it costs what an
/// unknown email does.
async fn a_hash_moves_to_the_configured_cost_at_the_next_login(backend: Backend) {
    let (users, auth) = (TestDb::new(backend, "users").await, TestDb::new(backend, "auth").await);
    let app = users_and_auth(&users, &auth, 4).await;
    sign_up(&app, "ada@example.org").await;
    app.stop().await;
    assert!(stored_hash(&users, "ada@example.org").await.starts_with("$2b$04$"));

    let app = users_and_auth(&users, &auth, 11).await;
    // Until then the old hash answers faster than the decoy: what remains (docs/guarantees.md).
    let (wrong_status, wrong_old) = timed_login(&app, "ada@example.org", "not the password").await;
    assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
    let (_, unknown) = timed_login(&app, "nobody@example.org", "not the password").await;
    eprintln!("before the next login: wrong password {wrong_old:?} (cost 4), unknown email {unknown:?} (cost 11)");
    assert!(stored_hash(&users, "ada@example.org").await.starts_with("$2b$04$"), "a wrong password changes nothing");
    let response = login(&app, "ada@example.org", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(stored_hash(&users, "ada@example.org").await.starts_with("$2b$11$"));

    // Not a password change: the session goes on, and the password still logs in.
    let id = sign_in_id(&app, &access).await;
    let own = app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(&access).send().await.unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);

    // A wrong password for the account and an unknown email, each the median of five.
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        wrong.push(timed_login(&app, "ada@example.org", "not the password").await.1);
        unknown.push(timed_login(&app, "nobody@example.org", "not the password").await.1);
    }
    wrong.sort();
    unknown.sort();
    let (wrong, unknown) = (wrong[2], unknown[2]);
    eprintln!("after the cost change: wrong password {wrong:?}, unknown email {unknown:?}");
    assert!(unknown * 2 >= wrong && wrong * 2 >= unknown, "wrong password {wrong:?}, unknown email {unknown:?}");
    app.stop().await;
}

/// The user id an access token was issued to.
async fn sign_in_id(app: &TestApp, access: &str) -> String {
    let listed: Value =
        app.client.get(app.url("/users-ms/users")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
    listed["items"][0]["id"].as_str().unwrap().to_owned()
}

/// users and auth with `config` on top of the tests' defaults.
async fn users_and_auth_with(users: &TestDb, auth: &TestDb, config: &[(&str, &str)]) -> TestApp {
    let mut options = AppOptions::default();
    options.config.extend(config.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
    TestApp::spawn_many(&[("users", users), ("auth", auth)], options).await
}

/// A login's (access token, refresh token, user id).
async fn logged_in(app: &TestApp, email: &str, password: &str) -> (String, String, String) {
    let response = login(app, email, password).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let id = sign_in_id(app, &access).await;
    (access, body["refresh_token"].as_str().unwrap().to_owned(), id)
}

async fn change(app: &TestApp, id: &str, access: &str, body: &Value) -> reqwest::Response {
    let url = app.url(&format!("/users-ms/users/{id}"));
    app.client.put(url).bearer_auth(access).json(body).send().await.unwrap()
}

async fn problem_type(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["type"].as_str().unwrap_or_default().to_owned()
}

/// Changing one's email needs the current password, is throttled per account, and ends the
/// account's sessions as a password change does. (It used to answer 409 or 200 to the token
/// alone, as fast as a client could ask.)
async fn an_email_change_needs_the_password_is_throttled_and_ends_sessions(backend: Backend) {
    let (users, auth) = (TestDb::new(backend, "users").await, TestDb::new(backend, "auth").await);
    let app = users_and_auth_with(&users, &auth, &[("email_change_max_per_account", "4")]).await;
    sign_up(&app, "ada@example.org").await;
    sign_up(&app, "grace@example.org").await;
    let (access, refresh, id) = logged_in(&app, "ada@example.org", PASSWORD).await;
    // Tokens carry whole seconds: change the email in a later second than the login.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let without = change(&app, &id, &access, &json!({"email": "grace@example.org"})).await;
    assert_eq!(without.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let wrong = json!({"email": "grace@example.org", "current_password": "not the password"});
    assert_eq!(
        problem_type(change(&app, &id, &access, &wrong).await).await,
        "urn:skiff:problem:wrong-current-password"
    );
    let taken = json!({"email": "grace@example.org", "current_password": PASSWORD});
    assert_eq!(change(&app, &id, &access, &taken).await.status(), StatusCode::CONFLICT);
    let free = json!({"email": "ada.lovelace@example.org", "current_password": PASSWORD});
    assert_eq!(change(&app, &id, &access, &free).await.status(), StatusCode::OK);

    // Every session of the account has ended: its access token and its refresh token.
    let stale = app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(&access).send().await.unwrap();
    assert_eq!(problem_type(stale).await, "urn:skiff:problem:token-revoked");
    let refreshed = app.client.post(app.url("/auth-ms/auth/refresh")).json(&json!({"refresh_token": refresh}));
    assert_eq!(refreshed.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // The fifth email change of the account in the window is refused, whatever it asks.
    let (access, _, _) = logged_in(&app, "ada.lovelace@example.org", PASSWORD).await;
    let refused = change(&app, &id, &access, &taken).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(problem_type(refused).await, "urn:skiff:problem:too-many-email-changes");
    // Other changes are not throttled.
    assert_eq!(change(&app, &id, &access, &json!({"name": "Augusta"})).await.status(), StatusCode::OK);
    app.stop().await;
}

/// Email changes share the sign-up budget of their client address: both test whether an
/// address is registered.
async fn email_changes_and_sign_ups_share_a_per_source_budget(backend: Backend) {
    let (users, auth) = (TestDb::new(backend, "users").await, TestDb::new(backend, "auth").await);
    let app = users_and_auth_with(&users, &auth, &[("signup_max_per_source", "3")]).await;
    sign_up(&app, "ada@example.org").await;
    sign_up(&app, "grace@example.org").await;
    let (access, _, id) = logged_in(&app, "grace@example.org", PASSWORD).await;
    let taken = json!({"email": "ada@example.org", "current_password": PASSWORD});
    assert_eq!(change(&app, &id, &access, &taken).await.status(), StatusCode::CONFLICT);
    let refused = change(&app, &id, &access, &taken).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem_type(refused).await, "urn:skiff:problem:too-many-email-changes");
    app.stop().await;
}

async fn create(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let body = json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": password});
    app.client.post(app.url("/users-ms/users")).json(&body).send().await.unwrap()
}

/// A password is all of what was typed: 72 bytes at most at login as at sign-up (bcrypt reads
/// no further, so a 72-byte password plus any suffix used to log in), and no control
/// characters when one is set (NUL used to be accepted, and bcrypt ends a password there).
async fn a_password_is_all_of_what_was_typed(backend: Backend) {
    let (users, auth) = (TestDb::new(backend, "users").await, TestDb::new(backend, "auth").await);
    let app = users_and_auth_with(&users, &auth, &[]).await;
    let longest = "x".repeat(72);
    assert_eq!(create(&app, "ada@example.org", &longest).await.status(), StatusCode::CREATED);
    let (access, _, id) = logged_in(&app, "ada@example.org", &longest).await;
    for suffix in ["y", "anything at all"] {
        let longer = login(&app, "ada@example.org", &format!("{longest}{suffix}")).await;
        assert_eq!(longer.status(), StatusCode::UNAUTHORIZED, "72 bytes + {suffix:?}");
    }
    // As a current password too.
    let change_with_longer =
        json!({"name": "Augusta", "email": "ada.l@example.org", "current_password": format!("{longest}y")});
    assert_eq!(change(&app, &id, &access, &change_with_longer).await.status(), StatusCode::FORBIDDEN);

    for control in ["nul\u{0}inside!", "line\nbreak!!", "escape\u{1b}[0m!"] {
        let refused = create(&app, "grace@example.org", control).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{control:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "password");
        let new_password = json!({"password": control, "current_password": longest});
        assert_eq!(change(&app, &id, &access, &new_password).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.stop().await;
}

/// One account per visible address: a zero-width space, a Cyrillic look-alike mixed with Latin
/// letters or a decomposed accent no longer make a second account, and the domain counts in its
/// IDNA form, whatever its case.
async fn one_account_per_visible_address(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    assert_eq!(create(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::CREATED);
    for invisible in ["ad\u{200B}a@example.org", "ada\u{200D}@example.org", "\u{430}da@example.org"] {
        let refused = create(&app, invisible, PASSWORD).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{invisible:?}");
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "email");
    }
    assert_eq!(create(&app, "ada@EXAMPLE.org", PASSWORD).await.status(), StatusCode::CONFLICT);

    let composed = create(&app, "ren\u{E9}@example.org", PASSWORD).await;
    assert_eq!(composed.status(), StatusCode::CREATED);
    assert_eq!(create(&app, "rene\u{301}@example.org", PASSWORD).await.status(), StatusCode::CONFLICT);

    let unicode_domain = create(&app, "ada@B\u{FC}cher.example", PASSWORD).await;
    assert_eq!(unicode_domain.status(), StatusCode::CREATED);
    let body: Value = unicode_domain.json().await.unwrap();
    assert_eq!(body["email"], "ada@xn--bcher-kva.example");
    assert_eq!(create(&app, "ada@xn--bcher-kva.example", PASSWORD).await.status(), StatusCode::CONFLICT);
    assert_eq!(create(&app, "ada@b\u{FC}cher.EXAMPLE", PASSWORD).await.status(), StatusCode::CONFLICT);
    app.stop().await;
}

both_backends!(
    an_unknown_email_waits_for_bcrypt_like_a_wrong_password_under_load,
    a_hash_moves_to_the_configured_cost_at_the_next_login,
    an_email_change_needs_the_password_is_throttled_and_ends_sessions,
    email_changes_and_sign_ups_share_a_per_source_budget,
    a_password_is_all_of_what_was_typed,
    one_account_per_visible_address,
);
