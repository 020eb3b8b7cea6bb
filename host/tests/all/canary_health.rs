//! Only a version's own faults count against a canary: load shed by the host's bcrypt queue
//! (503 with `Retry-After`) is not the canary's doing, however much of it there is.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{AppOptions, Backend, TestApp, TestDb, component};
use crate::signup::created_and_shed;
use crate::swap::variant;

const TOKEN: &str = "test-admin-token";

async fn versions(app: &TestApp) -> Vec<Value> {
    let url = format!("http://{}/admin/services/users/versions", app.admin_addr.unwrap());
    let answer: Value = app.client.get(url).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    answer["versions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_shed_by_the_bcrypt_queue_do_not_roll_a_canary_back() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    // Each request's X-Forwarded-For names its client, as behind the ingress.
    let mut options = AppOptions {
        admin_token: Some(TOKEN.into()),
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..AppOptions::default()
    };
    options.config.extend([("bcrypt_cost", "12"), ("signup_max_per_source", "8")].map(|(k, v)| (k.into(), v.into())));
    let app = TestApp::spawn_with("users", &db, options).await;
    let canary = variant(&std::fs::read(component("users")).unwrap(), "canary");
    let url = format!("http://{}/admin/services/users/versions?label=canary&canary=50", app.admin_addr.unwrap());
    let started = app.client.post(url).bearer_auth(TOKEN).header("content-type", "application/wasm").body(canary);
    assert_eq!(started.send().await.unwrap().status(), StatusCode::CREATED);

    // As in the report: 32 valid, anonymous sign-ups from 4 addresses, within the sign-up
    // throttle (8 each), at once: more than the bcrypt queue holds (3 per core).
    let attempts: Vec<_> = (0..32)
        .map(|n| {
            let (client, url) = (app.client.clone(), app.url("/users-ms/users"));
            let person = json!({"name": "Ada", "surname": "Lovelace", "email": format!("ada{n}@example.org"),
                "password": "correct horse battery"});
            tokio::spawn(async move {
                let response =
                    client.post(url).header("x-forwarded-for", format!("198.51.100.{}", n % 4)).json(&person).send();
                let response = response.await.unwrap();
                (response.status(), response.headers().contains_key("retry-after"))
            })
        })
        .collect();
    let (created, shed) = created_and_shed(attempts).await;
    eprintln!("{created} created, {shed} shed");
    assert!(shed >= 10, "only {shed} of 32 shed: the test would not show anything");

    // The canary is still running, and none of the shed sign-ups counts as its error.
    let listed = versions(&app).await;
    let canary = listed.iter().find(|v| v["label"] == "canary").unwrap();
    assert_eq!(canary["state"], "canary", "{listed:?}");
    assert_eq!(canary["errors"], 0, "{listed:?}");
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("skiff_rollbacks_total{"), "{metrics}");
    assert!(
        metrics.contains(r#"skiff_version_requests_total{route="users",version="canary",result="shed"}"#),
        "{metrics}"
    );
    app.stop().await;
}
