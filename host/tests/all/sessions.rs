//! Sessions: short-lived access tokens and rotating refresh tokens kept in auth's database,
//! revoked by logout, by the reuse of a spent token, by a password change and by deleting the
//! user; users refuses access tokens issued before the password changed. users and auth run in
//! one host, on SQLite and on Postgres.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestApp, TestDb};
use crate::messaging::{PASSWORD, login, sign_up};

async fn spawn(backend: Backend) -> (TestApp, TestDb, TestDb) {
    let users = TestDb::new(backend, "users").await;
    let auth = TestDb::new(backend, "auth").await;
    let app = TestApp::spawn_many(&[("users", &users), ("auth", &auth)], AppOptions::default()).await;
    (app, users, auth)
}

/// A login's or a refresh's tokens: (access, refresh).
async fn tokens(response: reqwest::Response) -> (String, String) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "access tokens live 15 minutes by default");
    assert_eq!(body["refresh_expires_in"], 14 * 86_400);
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url(path)).json(body).send().await.unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    post(app, "/auth-ms/auth/refresh", &json!({ "refresh_token": refresh_token })).await
}

async fn logout(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    post(app, "/auth-ms/auth/logout", &json!({ "refresh_token": refresh_token })).await
}

/// Asserts the 401 every refused refresh token gets, whatever the reason.
async fn assert_refused(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:invalid-refresh-token");
}

async fn own_profile(app: &TestApp, id: &str, access: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(access).send().await.unwrap()
}

async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    let id = sign_up(&app, "ada@example.org").await;
    let (_, first) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;

    let (access, second) = tokens(refresh(&app, &first).await).await;
    assert_ne!(first, second, "a refresh spends its token and gives the next one");
    assert_eq!(own_profile(&app, &id, &access).await.status(), StatusCode::OK);

    // The spent token again: a stolen copy or a replay. Neither it nor its successor works.
    assert_refused(refresh(&app, &first).await).await;
    assert_refused(refresh(&app, &second).await).await;

    // A new login starts a new family.
    let (_, other) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;
    tokens(refresh(&app, &other).await).await;

    // Garbage is refused like an unknown token; a missing field names the field.
    assert_refused(refresh(&app, "not a token").await).await;
    let forged = format!("{}.{}", &first[..36], "A".repeat(43));
    assert_refused(refresh(&app, &forged).await).await;
    let missing = post(&app, "/auth-ms/auth/refresh", &json!({})).await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "refresh_token");
    app.stop().await;
}

async fn parallel_refreshes_with_one_token_have_at_most_one_winner(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    sign_up(&app, "ada@example.org").await;
    let (_, token) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;
    let attempts = (0..8).map(|_| refresh(&app, &token));
    let responses = futures_util::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for response in responses {
        match response.status() {
            StatusCode::OK => winners.push(tokens(response).await.1),
            _ => assert_refused(response).await,
        }
    }
    assert!(winners.len() <= 1, "{} refreshes spent one token", winners.len());
    // The others presented a spent token, so the family is gone, the winner's token included.
    for winner in winners {
        assert_refused(refresh(&app, &winner).await).await;
    }
    app.stop().await;
}

async fn logout_revokes_the_session_and_only_it(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    sign_up(&app, "ada@example.org").await;
    let (_, phone) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;
    let (_, laptop) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;

    assert_eq!(logout(&app, &phone).await.status(), StatusCode::NO_CONTENT);
    assert_refused(refresh(&app, &phone).await).await;
    // Idempotent, and an unknown token tells nothing.
    assert_eq!(logout(&app, &phone).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(logout(&app, "garbage").await.status(), StatusCode::NO_CONTENT);
    // The other session goes on.
    tokens(refresh(&app, &laptop).await).await;
    app.stop().await;
}

async fn a_password_change_needs_the_current_one_and_ends_every_session(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    let id = sign_up(&app, "ada@example.org").await;
    let (access, refresh_token) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;
    let put = |body: Value, token: String| {
        app.client.put(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(token).json(&body).send()
    };

    let without = put(json!({"password": "a new password"}), access.clone()).await.unwrap();
    assert_eq!(without.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = without.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "current_password");
    let wrong = put(json!({"password": "a new password", "current_password": "not it"}), access.clone()).await;
    let wrong = wrong.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let problem: Value = wrong.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:wrong-current-password");
    // Still the old password, and the session stands.
    assert_eq!(own_profile(&app, &id, &access).await.status(), StatusCode::OK);

    // Tokens carry whole seconds: change the password in a later second than the login.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let changed = put(json!({"password": "a new password", "current_password": PASSWORD}), access.clone()).await;
    assert_eq!(changed.unwrap().status(), StatusCode::OK);

    // The access token from before the change is refused, and so is the refresh token.
    let stale = own_profile(&app, &id, &access).await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:token-revoked");
    assert_refused(refresh(&app, &refresh_token).await).await;

    // The new password logs in at once, and its token works (in the very second of the change).
    assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::UNAUTHORIZED);
    let (access, refresh_token) = tokens(login(&app, "ada@example.org", "a new password").await).await;
    assert_eq!(own_profile(&app, &id, &access).await.status(), StatusCode::OK);
    tokens(refresh(&app, &refresh_token).await).await;
    app.stop().await;
}

async fn deleting_a_user_ends_their_sessions(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    let id = sign_up(&app, "ada@example.org").await;
    let (access, refresh_token) = tokens(login(&app, "ada@example.org", PASSWORD).await).await;
    let deleted = app.client.delete(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(&access).send();
    assert_eq!(deleted.await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_refused(refresh(&app, &refresh_token).await).await;
    assert_eq!(own_profile(&app, &id, &access).await.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn login_takes_the_email_as_username(backend: Backend) {
    let (app, _users, _auth) = spawn(backend).await;
    sign_up(&app, "ada@example.org").await;
    let body = json!({"username": "ada@example.org", "password": PASSWORD});
    tokens(post(&app, "/auth-ms/auth/login", &body).await).await;
    let both = json!({"username": "ada@example.org", "email": "ada@example.org", "password": PASSWORD});
    let refused = post(&app, "/auth-ms/auth/login", &both).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.stop().await;
}

both_backends!(
    refresh_tokens_rotate_and_a_reused_one_revokes_its_family,
    parallel_refreshes_with_one_token_have_at_most_one_winner,
    logout_revokes_the_session_and_only_it,
    a_password_change_needs_the_current_one_and_ends_every_session,
    deleting_a_user_ends_their_sessions,
    login_takes_the_email_as_username,
);
