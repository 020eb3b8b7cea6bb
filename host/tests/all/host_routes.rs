//! The host's own routes: probes, metrics and the OpenAPI document.

use reqwest::StatusCode;
use std::time::Duration;

use crate::helpers::{Backend, TestApp, TestDb};
use crate::wait::{assert_stays, check};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics_answer() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let app = TestApp::spawn("users", &db).await;
    for probe in ["/livez", "/readyz", "/startupz", "/users-ms/healthcheck"] {
        let response = app.client.get(app.url(probe)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe}");
    }
    let openapi = app.client.get(app.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(openapi.headers()["content-type"], "application/yaml");
    assert!(openapi.text().await.unwrap().starts_with("openapi: 3.1"));
    let post = app.client.post(app.url("/livez")).send().await.unwrap();
    assert_eq!(
        (post.status(), post.headers()["allow"].to_str().unwrap()),
        (StatusCode::METHOD_NOT_ALLOWED, "GET, HEAD")
    );
    let first = app.client.get(app.url("/users-ms/healthcheck")).send().await.unwrap();
    let request_id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!request_id.is_empty());
    let echoed = app.client.get(app.url("/livez")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");

    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_http_requests_total{route="users",method="GET",status="200"}"#), "{metrics}");
    assert!(metrics.contains("skiff_http_request_duration_seconds_bucket"), "{metrics}");
    assert!(metrics.contains("skiff_live_instances"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_only_on_the_operations_listener() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let app = TestApp::spawn("users", &db).await;
    // The app port: no /metrics (request counts per route and status tell login volume), for
    // GET or anything else, and the probes a kubelet may send there answer without detail.
    for method in [reqwest::Method::GET, reqwest::Method::HEAD, reqwest::Method::POST] {
        let response = app.client.request(method.clone(), app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method} /metrics on the app port");
    }
    let not_found = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(not_found.headers()["content-type"], "application/problem+json");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!((ready.status(), ready.text().await.unwrap()), (StatusCode::OK, "ready".to_owned()));
    // The seed's liveness path stays on the app port.
    let seed = app.client.get(app.url("/users-ms/healthcheck")).send().await.unwrap();
    assert_eq!(seed.status(), StatusCode::OK);
    // The operations listener: the metrics, and no service.
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(metrics.text().await.unwrap().contains("skiff_http_requests_total"));
    for path in ["/users-ms/healthcheck", "/users-ms/users", "/openapi.yaml/../users-ms/users"] {
        let response = app.client.get(app.ops_url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path} on the operations listener");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_database() {
    // A Postgres that does not answer: the host serves liveness but never reports ready.
    let db = TestDb {
        url: "postgres://nobody@127.0.0.1:1/none".into(),
        backend: Backend::Postgres,
        scratch: crate::helpers::ScratchDir::new(),
    };
    let mut spec = skiff::launch::HostSpec::with_services(
        "127.0.0.1:0".parse().unwrap(),
        vec![skiff::launch::ServiceSpec {
            name: "users".into(),
            component: crate::helpers::component("users"),
            version_label: None,
            database_url: db.url.clone(),
        }],
        db.scratch.0.clone(),
    );
    spec.runtime.max_instances = 4;
    spec.capabilities.sql.acquire_timeout = Duration::from_millis(300);
    spec.shutdown_grace = Duration::from_secs(1);
    spec.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    let host = skiff::launch::Host::build(spec).await.unwrap();
    let addr = host.local_addr().unwrap();
    let ops = host.ops_addr().unwrap();
    let task = tokio::spawn(host.serve(std::future::pending()));
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("http://{addr}/livez")).send().await.unwrap().status(), StatusCode::OK);
    // While the database does not answer, the host never turns ready or started.
    assert_stays(Duration::from_millis(500), || async {
        for probe in ["readyz", "startupz"] {
            let status = client.get(format!("http://{addr}/{probe}")).send().await.unwrap().status();
            check(status == StatusCode::SERVICE_UNAVAILABLE, || format!("/{probe} answered {status}"))?;
        }
        Ok(())
    })
    .await;
    // Why it is not ready is said on the operations listener only; the app port says no more
    // than its status.
    let public = client.get(format!("http://{addr}/readyz")).send().await.unwrap().text().await.unwrap();
    assert_eq!(public, "not ready");
    let detail = client.get(format!("http://{ops}/readyz")).send().await.unwrap();
    assert_eq!(detail.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(detail.text().await.unwrap(), "not ready: users");
    // Requests that need the database fail fast and clearly instead of hanging.
    let response = client
        .post(format!("http://{addr}/users-ms/users"))
        .json(&serde_json::json!({"name": "A", "surname": "B", "email": "a@example.org", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    task.abort();
}
