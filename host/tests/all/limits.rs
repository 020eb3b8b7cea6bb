//! One misbehaving request fails alone: deadlines, traps, memory, stack, and the bound on
//! concurrent instances. Uses the `testbed` component.

use reqwest::StatusCode;
use std::time::{Duration, Instant};

use skiff::runtime::RuntimeOptions;
use skiff::service::RequestLimits;

use crate::helpers::{AppOptions, Backend, TestApp, TestDb};

async fn testbed(limits: RequestLimits, max_instances: u32) -> (TestApp, TestDb) {
    let db = TestDb::new(Backend::Sqlite, "testbed").await.unwrap();
    let options = AppOptions {
        runtime: RuntimeOptions { max_instances, max_memory_bytes: 32 << 20 },
        limits,
        ..AppOptions::default()
    };
    (TestApp::spawn_with("testbed", &db, options).await, db)
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_stopped_and_others_keep_flowing() {
    let limits = RequestLimits { timeout: Duration::from_millis(500), ..RequestLimits::default() };
    let (app, _db) = testbed(limits, 8).await;
    let spinning = {
        let (client, url) = (app.client.clone(), app.url("/spin"));
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client.get(url).send().await.unwrap();
            (response.status(), started.elapsed())
        })
    };
    // While one instance burns CPU, others are served promptly: epoch yields share the core.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(250), "hello took {:?}", started.elapsed());
    }
    let (status, elapsed) = spinning.await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(elapsed < Duration::from_secs(2), "the deadline was not enforced: {elapsed:?}");
    assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_memory_bombs_and_stack_overflows_fail_only_their_request() {
    let (app, _db) = testbed(RequestLimits::default(), 8).await;
    for path in ["/trap", "/grow", "/recurse"] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{path}");
        assert_eq!(get(&app, "/hello").await.text().await.unwrap(), "hello", "after {path}");
    }
    let metrics = get(&app, "/metrics").await.text().await.unwrap();
    assert!(metrics.contains("skiff_component_traps_total 3"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_instance_bound_requests_are_shed_with_retry_after() {
    let limits = RequestLimits { queue_timeout: Duration::from_millis(100), ..RequestLimits::default() };
    let (app, _db) = testbed(limits, 2).await;
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/sleep?ms=800"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = get(&app, "/hello").await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    // The host's own routes never queue behind components.
    assert_eq!(get(&app, "/livez").await.status(), StatusCode::OK);
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_refused() {
    let limits = RequestLimits { max_body_bytes: 1024, ..RequestLimits::default() };
    let (app, _db) = testbed(limits, 4).await;
    let response = app.client.post(app.url("/hello")).body(vec![b'x'; 4096]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let big = get(&app, "/big?bytes=3000000").await;
    assert_eq!(big.bytes().await.unwrap().len(), 3_000_000, "large responses stream through");
    app.stop().await;
}
