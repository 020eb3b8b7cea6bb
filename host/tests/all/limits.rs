//! One misbehaving request fails alone: deadlines, traps, memory, stack, and the bound on
//! concurrent instances. Uses the `testbed` component.

use reqwest::StatusCode;
use std::time::{Duration, Instant};

use skiff::runtime::RuntimeOptions;
use skiff::service::RequestLimits;

use crate::helpers::{AppOptions, Backend, TestApp, TestDb};
use crate::wait::{check, eventually};

async fn testbed(limits: RequestLimits, max_instances: u32) -> (TestApp, TestDb) {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let options = AppOptions {
        runtime: RuntimeOptions { max_instances, max_memory_bytes: 32 << 20, ..RuntimeOptions::default() },
        limits,
        ..AppOptions::default()
    };
    (TestApp::spawn_with("testbed", &db, options).await, db)
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).send().await.unwrap()
}

/// The `skiff_live_instances` line of `/metrics`.
async fn live_instances(app: &TestApp) -> Option<String> {
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    metrics.lines().find(|l| l.starts_with("skiff_live_instances ")).map(str::to_owned)
}

/// Waits until `/metrics` counts `count` live instances (requests the test started are running).
async fn until_live(app: &TestApp, count: usize) {
    let expected = format!("skiff_live_instances {count}");
    eventually(Duration::from_secs(5), || async {
        let live = live_instances(app).await;
        check(live.as_deref() == Some(expected.as_str()), || format!("{live:?}, waiting for {expected}"))
    })
    .await;
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
    until_live(&app, 1).await;
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
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("skiff_component_traps_total 3"), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_client_went_away_finishes_and_is_counted_out() {
    let (app, _db) = testbed(RequestLimits::default(), 4).await;
    // The client gives up after 100 ms; the instance sleeps 400 ms before answering.
    let gave_up = app.client.get(app.url("/sleep?ms=400")).timeout(Duration::from_millis(100)).send().await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert_eq!(live_instances(&app).await.as_deref(), Some("skiff_live_instances 1"));
    // It finishes its 400 ms and is counted out.
    until_live(&app, 0).await;
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
    until_live(&app, 2).await;
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
    // Refused before the body is read: hyper will close the connection, and the response
    // must say so, or a client reusing the connection fails its next request.
    for _ in 0..20 {
        let response = app.client.post(app.url("/hello")).body(vec![b'x'; 4096]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[http::header::CONNECTION], "close");
        assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    }
    // The host reads a body within the limit before the component runs (whether or not the
    // component reads it), so the connection stays usable.
    let small = app.client.post(app.url("/hello")).body(vec![b'x'; 512]).send().await.unwrap();
    assert_eq!(small.status(), StatusCode::OK);
    assert!(small.headers().get(http::header::CONNECTION).is_none());
    assert!(get(&app, "/hello").await.headers().get(http::header::CONNECTION).is_none());
    let big = get(&app, "/big?bytes=3000000").await;
    assert_eq!(big.bytes().await.unwrap().len(), 3_000_000, "large responses stream through");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_leave_other_requests_latency_normal() {
    let limits = RequestLimits { timeout: Duration::from_secs(2), ..RequestLimits::default() };
    let (app, _db) = testbed(limits, 16).await;
    let hello_latencies = |app: &TestApp| {
        let (client, url) = (app.client.clone(), app.url("/hello"));
        async move {
            let mut latencies = Vec::new();
            for _ in 0..100 {
                let started = Instant::now();
                assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
                latencies.push(started.elapsed());
            }
            latencies.sort();
            (latencies[49], latencies[98])
        }
    };
    // Two infinite loops, a memory bomb, a stack overflow and a trap, over and over, while
    // /hello is measured again.
    let hostile: Vec<_> = ["/spin", "/spin", "/grow", "/recurse", "/trap"]
        .into_iter()
        .map(|path| {
            let (client, url) = (app.client.clone(), app.url(path));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    statuses.push(client.get(&url).send().await.unwrap().status());
                }
                statuses
            })
        })
        .collect();
    eventually(Duration::from_secs(5), || async {
        let live = live_instances(&app).await;
        check(live.as_deref() != Some("skiff_live_instances 0"), || "no hostile request started".into())
    })
    .await;
    let (busy_p50, busy_p99) = hello_latencies(&app).await;
    for task in hostile {
        for status in task.await.unwrap() {
            assert!(status == StatusCode::GATEWAY_TIMEOUT || status == StatusCode::INTERNAL_SERVER_ERROR, "{status}");
        }
    }
    // Spinning instances yield every 5 ms, so /hello is never stuck behind one until its 2 s
    // deadline. (The suite runs tests in parallel on 2 cores, so only the median is held tight.)
    assert!(busy_p50 < Duration::from_millis(50), "hello p50 {busy_p50:?} next to hostile requests");
    assert!(busy_p99 < Duration::from_secs(2), "hello p99 {busy_p99:?} next to hostile requests");
    assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    app.stop().await;
}

/// Two limits apply to headers: hyper's read buffer (64 KiB, `MAX_READ_BUFFER_BYTES`), which
/// the test below exceeds, and the router's header-section limit (32 KiB,
/// `MAX_HEADER_SECTION_BYTES`), which only a section between the two reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_section_over_the_routers_limit_gets_a_problem() {
    let (app, _db) = testbed(RequestLimits::default(), 4).await;
    let padded = app.client.get(app.url("/hello")).header("x-padding", "x".repeat(40 * 1024)).send().await.unwrap();
    assert_eq!(padded.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(padded.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = padded.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:headers-too-large");
    assert!(problem["detail"].as_str().unwrap().contains("32768"), "{problem}");
    // Just under the limit is served.
    let fits = app.client.get(app.url("/hello")).header("x-padding", "x".repeat(30 * 1024)).send().await.unwrap();
    assert_eq!(fits.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, _db) = testbed(RequestLimits::default(), 4).await;
    let huge = app.client.get(app.url("/hello")).header("x-padding", "x".repeat(100 * 1024)).send().await;
    match huge {
        Ok(response) => assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(error) => assert!(error.is_request() || error.is_connect() || error.is_body(), "{error}"),
    }
    // A client that starts a request and never finishes its headers is disconnected.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    // Whatever the read returns (EOF, a reset, or a closing 408), the host must end it.
    let _last_read =
        tokio::time::timeout(Duration::from_secs(15), slow.read(&mut buffer)).await.expect("the host never hung up");
    let cut_after = started.elapsed();
    assert!(cut_after < Duration::from_secs(12), "{cut_after:?}");
    assert_eq!(get(&app, "/hello").await.status(), StatusCode::OK);
    app.stop().await;
}
