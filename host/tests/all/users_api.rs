//! The users REST contract, end to end over HTTP, on both backends.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb};

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
);

fn ada(email: &str) -> Value {
    json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": "analytical engine"})
}

async fn create(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/users-ms/users")).json(body).send().await.unwrap()
}

async fn create_ok(app: &TestApp, body: &Value) -> Value {
    let response = create(app, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn create_then_read_back_without_password(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
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

    let fetched: Value = app.client.get(app.url(&location)).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched, created);
    // The original contract's alias.
    let aliased: Value = app.client.get(app.url(&format!("/users/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(aliased, created);
    app.stop().await;
}

async fn duplicate_email_is_a_conflict_whatever_the_case(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
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
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    let attempts = (0..8).map(|_| {
        let (client, url) = (app.client.clone(), app.url("/users-ms/users"));
        async move { client.post(url).json(&ada("race@example.org")).send().await.unwrap().status() }
    });
    let statuses: Vec<StatusCode> = join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 7, "{statuses:?}");
    app.stop().await;
}

async fn invalid_input_names_the_field(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;

    let response =
        create(&app, &json!({"name": "", "surname": "L", "email": "nope", "password": "short", "role": "admin"})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "email", "password", "role"]);

    let malformed = app
        .client
        .post(app.url("/users-ms/users"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(malformed.headers()["content-type"], "application/problem+json");

    let not_json = app
        .client
        .post(app.url("/users-ms/users"))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge =
        json!({"name": "x".repeat(200_000), "surname": "L", "email": "big@example.org", "password": "long enough"});
    assert_eq!(create(&app, &huge).await.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let bad_query = app.client.get(app.url("/users-ms/users?limit=1000")).send().await.unwrap();
    assert_eq!(bad_query.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = bad_query.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "limit");

    let wrong_method = app.client.patch(app.url("/users-ms/users")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers()["allow"], "GET, POST");
    app.stop().await;
}

async fn list_filters_and_paginates(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    for (name, surname) in
        [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Ada", "Byron"), ("Edsger", "Dijkstra")]
    {
        let email = format!("{}.{}@example.org", name.to_lowercase(), surname.to_lowercase());
        create_ok(&app, &json!({"name": name, "surname": surname, "email": email, "password": "long enough"})).await;
    }
    let list = |query: &str| {
        let url = app.url(&format!("/users-ms/users{query}"));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let everyone = list("").await;
    assert_eq!(everyone["items"].as_array().unwrap().len(), 5);
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
    assert_eq!(third["next_offset"], Value::Null);
    let pages: Vec<&str> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().iter().map(|u| u["surname"].as_str().unwrap()))
        .collect();
    assert_eq!(pages, ["Lovelace", "Turing", "Hopper", "Byron", "Dijkstra"], "pages follow creation order");
    app.stop().await;
}

async fn update_changes_only_what_is_sent(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    let created = create_ok(&app, &json!({"name": "Ada", "surname": "Lovelace", "email": "ada@example.org", "password": "long enough", "phone": "12345"})).await;
    let other = create_ok(&app, &ada("other@example.org")).await;
    let path = format!("/users-ms/users/{}", created["id"].as_str().unwrap());

    let response =
        app.client.put(app.url(&path)).json(&json!({"surname": "Byron", "phone": null})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["surname"], "Byron");
    assert_eq!(updated["name"], "Ada");
    assert_eq!(updated["phone"], Value::Null);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_ne!(updated["updated_at"], created["updated_at"]);

    let taken = app.client.put(app.url(&path)).json(&json!({"email": other["email"]})).send().await.unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let empty = app.client.put(app.url(&path)).json(&json!({})).send().await.unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let alias = app
        .client
        .put(app.url(&format!("/users/{}", created["id"].as_str().unwrap())))
        .json(&json!({"name": "Augusta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(alias.status(), StatusCode::OK);
    let missing = app
        .client
        .put(app.url("/users-ms/users/00000000-0000-4000-8000-000000000000"))
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn delete_removes_and_unknown_ids_are_404(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    let created = create_ok(&app, &ada("ada@example.org")).await;
    let path = format!("/users/{}", created["id"].as_str().unwrap());
    assert_eq!(app.client.delete(app.url(&path)).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(app.client.get(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(app.client.delete(app.url(&path)).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let garbage = app.client.get(app.url("/users-ms/users/not-a-uuid")).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::NOT_FOUND);
    assert_eq!(garbage.headers()["content-type"], "application/problem+json");
    // The email is free again.
    create_ok(&app, &ada("ada@example.org")).await;
    app.stop().await;
}

async fn passwords_are_stored_only_as_bcrypt_hashes(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    let secret = "correct horse battery staple";
    let created =
        create_ok(&app, &json!({"name": "Ada", "surname": "L", "email": "ada@example.org", "password": secret})).await;
    let new_secret = "tr0ub4dor and three";
    let path = format!("/users-ms/users/{}", created["id"].as_str().unwrap());
    let response = app.client.put(app.url(&path)).json(&json!({"password": new_secret})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;

    let hash = stored_hash(&db, "ada@example.org").await;
    assert!(hash.starts_with("$2b$04$"), "bcrypt at the configured cost: {hash}");
    assert!(bcrypt::verify(new_secret, &hash).unwrap());
    if db.backend == Backend::Sqlite {
        // Nothing in the database files (main, WAL) holds either clear text.
        for entry in std::fs::read_dir(&db.scratch.0).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for clear in [secret, new_secret] {
                assert!(!bytes.windows(clear.len()).any(|w| w == clear.as_bytes()), "clear text on disk");
            }
        }
    }
}

async fn data_survives_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend, "users").await else {
        return;
    };
    let app = TestApp::spawn("users", &db).await;
    let created = create_ok(&app, &ada("ada@example.org")).await;
    app.stop().await;

    let restarted = TestApp::spawn("users", &db).await;
    let path = format!("/users-ms/users/{}", created["id"].as_str().unwrap());
    let fetched: Value = restarted.client.get(restarted.url(&path)).send().await.unwrap().json().await.unwrap();
    assert_eq!(fetched, created);
    restarted.stop().await;
}

async fn stored_hash(db: &TestDb, email: &str) -> String {
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
