//! Isolation between requests: fresh instances share nothing; a warm instance serves requests
//! one after another and is dropped when it has used its budget, trapped, kept a resource open,
//! or its version stopped serving; the instance limit still holds. Uses the `testbed`
//! component, whose `/count` answers how many requests its instance has counted.

use reqwest::StatusCode;
use std::time::Duration;

use skiff::runtime::RuntimeOptions;
use skiff::service::{Isolation, RequestLimits};

use crate::helpers::{AppOptions, Backend, TestApp, TestDb, component};
use crate::wait::{check, eventually};

const TOKEN: &str = "test-admin-token";

async fn testbed(isolation: Isolation) -> (TestApp, TestDb) {
    testbed_with(AppOptions { isolation, ..AppOptions::default() }).await
}

async fn testbed_with(options: AppOptions) -> (TestApp, TestDb) {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let options = AppOptions { admin_token: Some(TOKEN.into()), ..options };
    (TestApp::spawn_with("testbed", &db, options).await, db)
}

fn reuse(max_requests: u32, max_age: Duration) -> Isolation {
    Isolation::Reuse { max_requests, max_age }
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

/// What `/count` answers: how many requests the instance that served it has counted. Waits
/// until that instance is back in its pool: it answers before it returns, and a next request
/// that came first would get another instance.
async fn count(app: &TestApp) -> u64 {
    let response = get(app, "/count").await;
    assert_eq!(response.status(), StatusCode::OK);
    let counted = response.text().await.unwrap().parse().unwrap();
    settled(app).await;
    counted
}

/// Waits until no instance runs: every one that served has been kept or dropped.
async fn settled(app: &TestApp) {
    eventually(Duration::from_secs(5), || async {
        let live = metric(app, "skiff_live_instances").await;
        check(live == 0, || format!("{live} live instances, waiting for 0"))
    })
    .await;
}

async fn counts(app: &TestApp, requests: usize) -> Vec<u64> {
    let mut counts = Vec::new();
    for _ in 0..requests {
        counts.push(count(app).await);
    }
    counts
}

/// The value of the `/metrics` line that starts with `series ` (0 if there is none).
async fn metric(app: &TestApp, series: &str) -> u64 {
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instances_do_not_see_what_an_earlier_request_left() {
    let (app, _db) = testbed(Isolation::Fresh).await;
    assert_eq!(counts(&app, 4).await, [1, 1, 1, 1]);
    assert_eq!(metric(&app, "skiff_instantiations_total").await, 4);
    assert_eq!(metric(&app, "skiff_warm_instances").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_serves_one_request_after_another_until_its_request_budget_is_spent() {
    let (app, _db) = testbed(reuse(3, Duration::from_secs(60))).await;
    // One instance serves three requests, then a new one starts from nothing.
    assert_eq!(counts(&app, 7).await, [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(metric(&app, "skiff_instantiations_total").await, 3);
    assert_eq!(metric(&app, "skiff_discarded_instances_total{reason=\"used-up\"}").await, 2);
    assert_eq!(metric(&app, "skiff_warm_instances").await, 1);
    // The warm instance's linear memory is counted: at least the 1 MiB shadow stack of a Rust
    // component, at most the instance limit.
    let memory = metric(&app, "skiff_warm_instance_memory_bytes").await;
    assert!((1 << 20..=64 << 20).contains(&memory), "{memory} bytes");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_is_dropped_when_its_time_is_up_even_without_traffic() {
    let (app, _db) = testbed(reuse(1000, Duration::from_millis(400))).await;
    assert_eq!(counts(&app, 2).await, [1, 2]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&app).await, 1, "an instance older than its age budget served a request");
    // Without requests, the sweep gives a spent instance's memory back.
    eventually(Duration::from_secs(5), || async {
        let warm = metric(&app, "skiff_warm_instances").await;
        check(warm == 0, || format!("{warm} warm instances, waiting for 0"))
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_or_a_deadline_discards_its_instance() {
    let limits = RequestLimits { timeout: Duration::from_millis(300), ..RequestLimits::default() };
    let (app, _db) = testbed_with(AppOptions { limits, ..AppOptions::default() }).await;
    assert_eq!(counts(&app, 2).await, [1, 2]);
    assert_eq!(get(&app, "/trap").await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    settled(&app).await;
    assert_eq!(count(&app).await, 1, "the request after a trap ran on the trapped instance");
    assert_eq!(count(&app).await, 2);
    assert_eq!(get(&app, "/spin").await.status(), StatusCode::GATEWAY_TIMEOUT);
    settled(&app).await;
    assert_eq!(count(&app).await, 1, "the request after a deadline ran on the stopped instance");
    assert_eq!(metric(&app, "skiff_discarded_instances_total{reason=\"failed\"}").await, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_keeps_a_resource_open_after_its_request_is_not_reused() {
    let (app, _db) = testbed(Isolation::default()).await;
    assert_eq!(counts(&app, 2).await, [1, 2]);
    assert_eq!(get(&app, "/leak").await.status(), StatusCode::OK);
    settled(&app).await;
    assert_eq!(count(&app).await, 1, "an instance holding a resource of an earlier request served again");
    assert_eq!(metric(&app, "skiff_discarded_instances_total{reason=\"leaked-resources\"}").await, 1);
    app.stop().await;
}

async fn as_admin(request: reqwest::RequestBuilder) -> StatusCode {
    request.bearer_auth(TOKEN).send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_drops_the_warm_instances_of_the_version_it_replaces() {
    let (app, _db) = testbed(Isolation::default()).await;
    let admin_url = |path: &str| format!("http://{}{path}", app.admin_addr.unwrap());
    assert_eq!(counts(&app, 2).await, [1, 2]);
    let bytes = crate::swap::variant(&std::fs::read(component("testbed")).unwrap(), "v2");
    let upload = app
        .client
        .post(admin_url("/admin/services/testbed/versions?label=v2"))
        .header("content-type", "application/wasm")
        .body(bytes);
    assert!(as_admin(upload).await.is_success());
    // The new version's instance; the smoke test's instance counted nothing on /count.
    assert_eq!(counts(&app, 2).await, [1, 2]);
    let rollback = app.client.post(admin_url("/admin/services/testbed/rollback"));
    assert!(as_admin(rollback).await.is_success());
    // Back on the first version: its warm instance (which had counted 2) was dropped at the swap.
    assert_eq!(count(&app).await, 1, "a version that stopped serving kept its warm instance");
    // The first version's new instance, and none of the second's: a switch hands the instances
    // it drops to a task of their own, so the gauge falls a moment after the rollback answers.
    eventually(Duration::from_secs(5), || async {
        let warm = metric(&app, "skiff_warm_instances").await;
        check(warm == 1, || format!("{warm} warm instances, waiting for 1"))
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_limit_and_shedding_hold_with_warm_instances() {
    let options = AppOptions {
        runtime: RuntimeOptions { max_instances: 2, ..RuntimeOptions::default() },
        limits: RequestLimits { queue_timeout: Duration::from_millis(100), ..RequestLimits::default() },
        ..AppOptions::default()
    };
    let (app, _db) = testbed_with(options).await;
    let sleep = |ms: u64| {
        let (client, url) = (app.client.clone(), app.url(&format!("/sleep?ms={ms}")));
        tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
    };
    // Two instances served at once and now wait warm.
    for sleeper in [sleep(200), sleep(200)] {
        assert_eq!(sleeper.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(metric(&app, "skiff_warm_instances").await, 2);
    // Both busy again: warm instances do not raise the limit, and the third request is shed.
    let sleepers = [sleep(800), sleep(800)];
    eventually(Duration::from_secs(5), || async {
        let live = metric(&app, "skiff_live_instances").await;
        check(live == 2, || format!("{live} live instances, waiting for 2"))
    })
    .await;
    let shed = get(&app, "/hello").await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    // Still two instances in all: the ones that served before.
    assert_eq!(metric(&app, "skiff_instantiations_total").await, 2);
    app.stop().await;
}
