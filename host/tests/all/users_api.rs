//! The users REST contract, end to end over HTTP, on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

use crate::both_backends;
use skiff::capability::crypto::token::Role;

use crate::helpers::{ADMIN_EMAIL, AppOptions, Backend, TestApp, TestDb, get_json, token_for};
use crate::wait::{check, eventually};

both_backends!(
    create_then_read_back_without_password,
    duplicate_email_is_a_conflict_whatever_the_case,
    racing_sign_ups_with_one_email_create_one_user,
    invalid_input_names_the_field,
    list_filters_and_paginates,
    update_changes_only_what_is_sent,
    delete_removes_and_unknown_ids_are_404,
    passwords_are_stored_only_as_bcrypt_hashes,
    data_survives_a_restart,
    tokens_decide_who_may_act_on_whom,
    a_users_own_list_pages_end,
);

fn ada(email: &str) -> Value {
    json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": "analytical engine"})
}

async fn create(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/users-ms/users")).json(body).send().await.unwrap()
}

/// A sign-up whose body goes as is, under `content_type` (without one when `None`): for bodies
/// the service must refuse before it reads them as JSON.
async fn create_raw(app: &TestApp, content_type: Option<&str>, body: &'static str) -> reqwest::Response {
    let mut request = app.client.post(app.url("/users-ms/users")).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

async fn create_ok(app: &TestApp, body: &Value) -> Value {
    let response = create(app, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// A PUT of `body` to the user at `path`, acting with `token`.
async fn update(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.client.put(app.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

/// The id of a created user and a token for acting as them.
fn as_user(created: &Value) -> (String, String) {
    let id = created["id"].as_str().unwrap().to_owned();
    let token = token_for(&id, Role::User);
    (id, token)
}

async fn create_then_read_back_without_password(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;

    let response = create(&app, &json!({"name": "Ada", "surname": "Lovelace", "email": "Ada@Example.org", "password": "analytical engine", "phone": "+44 20 7946 0958"})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(response.headers().contains_key("skiff-component-version"));
    assert!(response.headers()["skiff-component-digest"].to_str().unwrap().starts_with("sha256:"));
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/users-ms/users/{id}"));
    assert_eq!(created["email"], "ada@example.org");
    assert_eq!(created["phone"], "+44 20 7946 0958");
    assert!(created.get("password").is_none() && created.get("password_hash").is_none());

    assert_eq!(created["role"], "user");
    let token = token_for(id, Role::User);
    let fetched = get_json(&app.client, app.url(&location), &token).await;
    assert_eq!(fetched, created);
    // The original contract's alias.
    let aliased = get_json(&app.client, app.url(&format!("/users/{id}")), &token).await;
    assert_eq!(aliased, created);
    app.stop().await;
}

async fn duplicate_email_is_a_conflict_whatever_the_case(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    create_ok(&app, &ada("ada@example.org")).await;
    let response = create(&app, &ada("  ADA@example.org")).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 409);
    assert_eq!(problem["errors"][0]["field"], "email");
    app.stop().await;
}

async fn racing_sign_ups_with_one_email_create_one_user(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    let attempts = (0..8).map(|_| {
        let (client, url) = (app.client.clone(), app.url("/users-ms/users"));
        async move { client.post(url).json(&ada("race@example.org")).send().await.unwrap().status() }
    });
    let statuses: Vec<StatusCode> = join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    // The others collide on the email, or (on a loaded machine, where the racers' hashes
    // overlap) are shed by the bcrypt queue before they could.
    let conflicts = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    let shed = statuses.iter().filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE).count();
    assert!(conflicts >= 1 && conflicts + shed == 7, "{statuses:?}");
    app.stop().await;
}

async fn invalid_input_names_the_field(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn_with("users", &db, with_operator()).await;

    let response =
        create(&app, &json!({"name": "", "surname": "L", "email": "nope", "password": "short", "role": "admin"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.headers().get("connection").is_none(), "the body was read: the connection stays open");
    let problem: Value = response.json().await.unwrap();
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "email", "password", "role"]);

    let malformed = create_raw(&app, Some("application/json"), "{\"name\": ").await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.headers()["content-type"], "application/problem+json");

    let not_json = create_raw(&app, Some("text/plain"), "hi").await;
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A body without a content type is not read as JSON either (a cross-site form can send one).
    let sign_up = r#"{"name":"Ada","surname":"L","email":"untyped@example.org","password":"long enough"}"#;
    let untyped = create_raw(&app, None, sign_up).await;
    assert_eq!(untyped.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge =
        json!({"name": "x".repeat(200_000), "surname": "L", "email": "big@example.org", "password": "long enough"});
    let too_large = create(&app, &huge).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The host read the body (it is under the host's limit) before the component refused it,
    // so the connection stays usable.
    assert!(too_large.headers().get("connection").is_none());

    let admin = an_admin(&app).await;
    let bad_query = app.client.get(app.url("/users-ms/users?limit=1000")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(bad_query.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = bad_query.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "limit");

    let wrong_method = app.client.patch(app.url("/users-ms/users")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");
    app.stop().await;
}

async fn list_filters_and_paginates(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn_with("users", &db, with_operator()).await;
    for (name, surname) in
        [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Ada", "Byron"), ("Edsger", "Dijkstra")]
    {
        let email = format!("{}.{}@example.org", name.to_lowercase(), surname.to_lowercase());
        create_ok(&app, &json!({"name": name, "surname": surname, "email": email, "password": "long enough"})).await;
    }
    let admin = an_admin(&app).await;
    let list = |query: &str| {
        let url = app.url(&format!("/users-ms/users{query}"));
        let client = app.client.clone();
        let admin = admin.clone();
        async move {
            let response = client.get(url).bearer_auth(admin).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let everyone = list("").await;
    assert_eq!(everyone["items"].as_array().unwrap().len(), 6, "five and the admin");
    assert_eq!(everyone["limit"], 20);
    assert_eq!(everyone["next_offset"], Value::Null);

    let adas = list("?name=Ada").await;
    let surnames: Vec<&str> =
        adas["items"].as_array().unwrap().iter().map(|u| u["surname"].as_str().unwrap()).collect();
    assert_eq!(surnames, ["Lovelace", "Byron"]);
    let one = list("?name=Ada&surname=Byron").await;
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    let by_email = list("?email=GRACE.HOPPER%40example.org").await;
    assert_eq!(by_email["items"][0]["name"], "Grace");

    let first = list("?limit=2").await;
    assert_eq!(first["next_offset"], 2);
    let second = list("?limit=2&offset=2").await;
    let third = list("?limit=2&offset=4").await;
    assert_eq!(third["next_offset"], 6, "a full page may have a next one");
    let past_the_end = list("?limit=2&offset=6").await;
    assert_eq!(past_the_end["items"].as_array().unwrap().len(), 0);
    assert_eq!(past_the_end["next_offset"], Value::Null);
    let pages: Vec<&str> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().iter().map(|u| u["surname"].as_str().unwrap()))
        .collect();
    assert_eq!(pages, ["Lovelace", "Turing", "Hopper", "Byron", "Dijkstra", "Admin"], "pages follow creation order");
    app.stop().await;
}

async fn update_changes_only_what_is_sent(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn_with("users", &db, with_operator()).await;
    let created = create_ok(&app, &json!({"name": "Ada", "surname": "Lovelace", "email": "ada@example.org", "password": "long enough", "phone": "12345"})).await;
    let other = create_ok(&app, &ada("other@example.org")).await;
    let (id, token) = as_user(&created);
    let path = format!("/users-ms/users/{id}");

    let response = update(&app, &path, &token, &json!({"surname": "Byron", "phone": null})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["surname"], "Byron");
    assert_eq!(updated["name"], "Ada");
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);

    let taken_email = json!({"email": other["email"], "current_password": "long enough"});
    assert_eq!(update(&app, &path, &token, &taken_email).await.status(), StatusCode::CONFLICT);
    assert_eq!(update(&app, &path, &token, &json!({})).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let alias = format!("/users/{id}");
    assert_eq!(update(&app, &alias, &token, &json!({"name": "Augusta"})).await.status(), StatusCode::OK);
    let admin = an_admin(&app).await;
    let missing = "/users-ms/users/00000000-0000-4000-8000-000000000000";
    assert_eq!(update(&app, missing, &admin, &json!({"name": "X"})).await.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn delete_removes_and_unknown_ids_are_404(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn_with("users", &db, with_operator()).await;
    let created = create_ok(&app, &ada("ada@example.org")).await;
    let (id, token) = as_user(&created);
    let admin = an_admin(&app).await;
    let path = format!("/users/{id}");
    let delete = |token: &str| app.client.delete(app.url(&path)).bearer_auth(token).send();
    assert_eq!(delete(&token).await.unwrap().status(), StatusCode::NO_CONTENT);
    // The deleted user's token is no longer accepted; an admin finds nothing.
    let read = |token: &str| app.client.get(app.url(&path)).bearer_auth(token).send();
    assert_eq!(read(&token).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(read(&admin).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(delete(&admin).await.unwrap().status(), StatusCode::NOT_FOUND);
    let garbage = app.client.get(app.url("/users-ms/users/not-a-uuid")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::NOT_FOUND);
    assert_eq!(garbage.headers()["content-type"], "application/problem+json");
    // The email is free again.
    create_ok(&app, &ada("ada@example.org")).await;
    app.stop().await;
}

async fn passwords_are_stored_only_as_bcrypt_hashes(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    let secret = "correct horse battery staple";
    let created =
        create_ok(&app, &json!({"name": "Ada", "surname": "L", "email": "ada@example.org", "password": secret})).await;
    let new_secret = "tr0ub4dor and three";
    let (id, token) = as_user(&created);
    let path = format!("/users-ms/users/{id}");
    let response = update(&app, &path, &token, &json!({"password": new_secret, "current_password": secret})).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;

    let hash = stored_hash(&db, "ada@example.org").await;
    assert!(hash.starts_with("$2b$04$"), "bcrypt at the configured cost: {hash}");
    assert!(bcrypt::verify(new_secret, &hash).unwrap());
    if db.backend == Backend::Sqlite {
        // Nothing in the database files (main, WAL) holds either clear text. SQLite may still be
        // checkpointing and removing its WAL as the last connection closes: a file that vanished
        // mid-scan means a new scan of what is there now.
        eventually(Duration::from_secs(2), || async {
            check(no_clear_text_in(&db.scratch.0, &[secret, new_secret]), || "the database files kept changing".into())
        })
        .await;
    }
}

/// Whether every file in `dir` is free of each of `clears`; false when a file vanished while
/// being read (the scan is then not complete).
fn no_clear_text_in(dir: &std::path::Path, clears: &[&str]) -> bool {
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = match std::fs::read(entry.unwrap().path()) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return false,
            Err(error) => panic!("reading a database file: {error}"),
        };
        for clear in clears {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear.as_bytes()), "clear text on disk");
        }
    }
    true
}

async fn data_survives_a_restart(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    let created = create_ok(&app, &ada("ada@example.org")).await;
    app.stop().await;

    let restarted = TestApp::spawn("users", &db).await;
    let (id, token) = as_user(&created);
    let path = format!("/users-ms/users/{id}");
    let fetched = get_json(&restarted.client, restarted.url(&path), &token).await;
    assert_eq!(fetched, created);
    restarted.stop().await;
}

async fn tokens_decide_who_may_act_on_whom(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let options = AppOptions { admin_token: Some(OPERATOR_TOKEN.into()), ..AppOptions::default() };
    let app = TestApp::spawn_with("users", &db, options).await;
    let ada_user = create_ok(&app, &ada("ada@example.org")).await;
    let grace = create_ok(
        &app,
        &json!({"name": "Grace", "surname": "Hopper", "email": "grace@example.org", "password": "long enough"}),
    )
    .await;
    let root =
        create_ok(&app, &json!({"name": "Root", "surname": "Admin", "email": ADMIN_EMAIL, "password": "long enough"}))
            .await;
    let root = grant_admin(&app, Some(OPERATOR_TOKEN), root["id"].as_str().unwrap()).await;
    assert_eq!(root.status(), StatusCode::OK);
    let root: Value = root.json().await.unwrap();
    assert_eq!(root["role"], "admin", "made an admin by the operator");
    let (ada_id, ada_token) = as_user(&ada_user);
    let (grace_id, _) = as_user(&grace);
    let get = |id: &str, token: Option<String>| {
        let mut request = app.client.get(app.url(&format!("/users-ms/users/{id}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap() }
    };
    let missing = get(&ada_id, None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_eq!(get(&ada_id, Some("garbage".into())).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&ada_id, Some(ada_token.clone())).await.status(), StatusCode::OK);
    assert_eq!(get(&grace_id, Some(ada_token.clone())).await.status(), StatusCode::FORBIDDEN);
    let delete_grace =
        app.client.delete(app.url(&format!("/users-ms/users/{grace_id}"))).bearer_auth(&ada_token).send();
    assert_eq!(delete_grace.await.unwrap().status(), StatusCode::FORBIDDEN);
    let admin = token_for(root["id"].as_str().unwrap(), Role::Admin);
    assert_eq!(get(&grace_id, Some(admin.clone())).await.status(), StatusCode::OK);

    // Forged: Ada's token with its claims changed to admin keeps Ada's signature.
    let parts: Vec<&str> = ada_token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    assert_eq!(get(&grace_id, Some(forged)).await.status(), StatusCode::UNAUTHORIZED);
    // Expired.
    let now = chrono::Utc::now().timestamp();
    let expired = skiff::capability::crypto::token::Issuer::from_base64(crate::helpers::TOKEN_SEED).unwrap().sign(
        &skiff::capability::crypto::token::Claims {
            sub: ada_id.clone(),
            role: Role::User,
            iat: now - 4500,
            exp: now - 3600,
            jti: "old".into(),
        },
    );
    assert_eq!(get(&ada_id, Some(expired)).await.status(), StatusCode::UNAUTHORIZED);

    // A user's list is themself; an admin's is everyone.
    let listed = get_json(&app.client, app.url("/users-ms/users"), &ada_token).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let everyone = get_json(&app.client, app.url("/users-ms/users"), &admin).await;
    assert_eq!(everyone["items"].as_array().unwrap().len(), 3);
    // The credentials check is not reachable from outside, even with the marker header.
    let spoofed = app
        .client
        .post(app.url("/users-ms/internal/credentials"))
        .header("skiff-internal", "1")
        .json(&json!({"email": "ada@example.org", "password": "analytical engine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

pub async fn stored_hash(db: &TestDb, email: &str) -> String {
    use sqlx::{Connection, Row};
    const STATEMENT: &str = "SELECT password_hash FROM users WHERE email = $1";
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(STATEMENT).bind(email).fetch_one(&mut conn).await.unwrap().get(0)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(STATEMENT).bind(email).fetch_one(&mut conn).await.unwrap().get(0)
        }
    }
}

/// Runs the futures concurrently on the runtime and collects their outputs in order.
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

async fn a_users_own_list_pages_end(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let app = TestApp::spawn("users", &db).await;
    let (_, token) = as_user(&create_ok(&app, &ada("ada@example.org")).await);
    let list = |query: &str| {
        let request = app.client.get(app.url(&format!("/users-ms/users{query}"))).bearer_auth(&token);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // A client following next_offset stops: the offset is honoured and the pages run out.
    let mut query = "?limit=1".to_owned();
    let mut seen = 0;
    for _ in 0..3 {
        let page = list(&query).await;
        seen += page["items"].as_array().unwrap().len();
        match page["next_offset"].as_u64() {
            Some(next) => query = format!("?limit=1&offset={next}"),
            None => break,
        }
    }
    assert_eq!(seen, 1, "a user's own list has one item, however it is paged");
    let past = list("?offset=1").await;
    assert_eq!(past["items"].as_array().unwrap().len(), 0, "{past}");
    assert_eq!(past["next_offset"], Value::Null);
    app.stop().await;
}

/// A token signed with the services' own key whose payload is `payload` as is.
fn signed_with_the_test_key(payload: &Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ed25519_dalek::Signer;
    let seed: [u8; 32] = STANDARD.decode(crate::helpers::TOKEN_SEED).unwrap().try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_our_issuer_and_audience_are_refused() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let app = TestApp::spawn("users", &db).await;
    let (id, token) = as_user(&create_ok(&app, &ada("ada@example.org")).await);
    let read = |token: String| {
        let request = app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(read(token).await, StatusCode::OK);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": id, "role": "admin", "iat": now, "exp": now + 600, "jti": "j"});
    // The right key, but a token of another kind: no issuer and audience, or others.
    for extra in
        [json!({}), json!({"iss": "skiff-auth", "aud": "another-api"}), json!({"iss": "someone", "aud": "skiff-api"})]
    {
        let mut payload = claims.clone();
        payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(read(signed_with_the_test_key(&payload)).await, StatusCode::UNAUTHORIZED, "{payload}");
    }
    app.stop().await;
}

/// The admin listener's token in these tests.
const OPERATOR_TOKEN: &str = "operator-secret";

/// Options with the admin listener, so a test can make an admin.
fn with_operator() -> AppOptions {
    AppOptions { admin_token: Some(OPERATOR_TOKEN.into()), ..AppOptions::default() }
}

/// A token of a user the operator made an admin (users takes the role from its table, not
/// from the token).
async fn an_admin(app: &TestApp) -> String {
    let email = format!("admin-{}@example.org", uuid::Uuid::new_v4().simple());
    let created =
        create_ok(app, &json!({"name": "Root", "surname": "Admin", "email": email, "password": "long enough"})).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(grant_admin(app, Some(OPERATOR_TOKEN), id).await.status(), StatusCode::OK);
    token_for(id, Role::Admin)
}

/// `POST /admin/services/users/admins` on the admin listener, as `skiff admin grant-admin` sends it.
async fn grant_admin(app: &TestApp, token: Option<&str>, user_id: &str) -> reqwest::Response {
    let url = format!("http://{}/admin/services/users/admins", app.admin_addr.unwrap());
    let mut request = app.client.post(url).json(&json!({ "user_id": user_id }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_makes_admins() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    // `admin_emails` still lists ADMIN_EMAIL here (the tests' default settings): it no longer
    // means anything.
    let options = AppOptions { admin_token: Some(OPERATOR_TOKEN.into()), ..AppOptions::default() };
    let app = TestApp::spawn_with("users", &db, options).await;
    let first = create_ok(&app, &ada(ADMIN_EMAIL)).await;
    assert_eq!(first["role"], "user", "whoever signs up first with a listed address is not an admin");
    let id = first["id"].as_str().unwrap();
    // Nothing a client sends makes an admin: the grant route is not on the public listener,
    // and the host strips the operator's mark.
    let forged = app
        .client
        .put(app.url(&format!("/users-ms/internal/admins/{id}")))
        .header("skiff-admin", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    for token in [None, Some("wrong")] {
        assert_eq!(grant_admin(&app, token, id).await.status(), StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let (_, token) = as_user(&first);
    let read = app.client.get(app.url(&format!("/users-ms/users/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(read.json::<Value>().await.unwrap()["role"], "user");
    // The operator grants it, with the admin token.
    let granted = grant_admin(&app, Some(OPERATOR_TOKEN), id).await;
    assert_eq!(granted.status(), StatusCode::OK);
    assert_eq!(granted.json::<Value>().await.unwrap()["role"], "admin");
    let unknown = grant_admin(&app, Some(OPERATOR_TOKEN), "00000000-0000-4000-8000-000000000000").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
