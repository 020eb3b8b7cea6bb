//! Abuse-proof edges: what a client chooses cannot grow the host's state or be charged to a
//! version (junk methods share one metric series; a request the host cannot hand to a component
//! is the client's 400, not the version's 500), and slow or idle clients cannot hold capacity.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use skiff::runtime::RuntimeOptions;
use skiff::service::RequestLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{AppOptions, Backend, TestApp, TestDb};
use crate::wait::{assert_stays, check, eventually};

/// Sends `raw` on a fresh connection and returns what came back.
fn exchange(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_the_clients_400_not_the_versions_500() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = TestApp::spawn("testbed", &db).await;
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let raw = format!("GET /hello {version}\r\nConnection: close\r\n\r\n");
        let addr = app.addr;
        let answer = tokio::task::spawn_blocking(move || exchange(addr, &raw)).await.unwrap();
        assert!(answer.starts_with(&format!("{version} 400")), "{answer}");
        assert!(answer.contains("application/problem+json") && answer.contains("host header"), "{answer}");
    }
    // Nothing was charged to the version: a canary judged by these would not roll back.
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        !metrics
            .lines()
            .any(|line| line.starts_with("skiff_version_requests_total") && line.contains("result=\"error\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn junk_methods_share_one_metric_series() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = TestApp::spawn("testbed", &db).await;
    for n in 0..30 {
        let method = reqwest::Method::from_bytes(format!("JUNK{n}").as_bytes()).unwrap();
        app.client.request(method, app.url("/hello")).send().await.unwrap();
    }
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("JUNK"), "a client-chosen method became a label:\n{metrics}");
    let other = metrics
        .lines()
        .find(|line| line.starts_with("skiff_http_requests_total") && line.contains("method=\"OTHER\""))
        .unwrap_or_else(|| panic!("no OTHER series:\n{metrics}"));
    assert!(other.ends_with(" 30"), "{other}");
}

/// Reads whatever comes back on `stream` within `within` (`None` if nothing did).
async fn first_bytes(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<String> {
    let mut buffer = vec![0; 4096];
    match tokio::time::timeout(within, stream.read(&mut buffer)).await {
        Ok(Ok(read)) if read > 0 => Some(String::from_utf8_lossy(&buffer[..read]).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_send_their_body_hold_no_instance_slot() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let options = AppOptions {
        runtime: RuntimeOptions { max_instances: 4, ..RuntimeOptions::default() },
        limits: RequestLimits {
            queue_timeout: Duration::from_millis(200),
            body_timeout: Duration::from_secs(3),
            ..RequestLimits::default()
        },
        ..AppOptions::default()
    };
    let app = TestApp::spawn_with("users", &db, options).await;
    // A few dozen sign-ups that announce a body and send one byte of it.
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = "POST /users-ms/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    // The liveness route and a real sign-up are served at once all along.
    let started = Instant::now();
    let mut signed_up = 0;
    assert_stays(Duration::from_secs(2), || {
        signed_up += 1;
        let (client, app) = (&app.client, &app);
        let email = format!("ada{signed_up}@example.org");
        async move {
            let asked = Instant::now();
            let probe = client.get(app.url("/users-ms/healthcheck")).send().await.unwrap().status();
            let slow = asked.elapsed();
            check(probe == StatusCode::OK && slow < Duration::from_millis(150), || {
                format!("/users-ms/healthcheck: {probe} after {slow:?}, {:?} into the stall", started.elapsed())
            })?;
            let user = serde_json::json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": "analytical engine"});
            let created = client.post(app.url("/users-ms/users")).json(&user).send().await.unwrap().status();
            check(created == StatusCode::CREATED, || format!("sign-up: {created}, {:?} into the stall", started.elapsed()))
        }
    })
    .await;
    // A body that never comes is given up on after the body timeout, with a problem.
    let answer =
        first_bytes(&mut stalled[0], Duration::from_secs(5)).await.expect("the host answered the stalled client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json") && answer.contains("body-timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_route_is_answered_while_every_slot_is_busy() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let options = AppOptions {
        runtime: RuntimeOptions { max_instances: 2, ..RuntimeOptions::default() },
        limits: RequestLimits { queue_timeout: Duration::from_millis(100), ..RequestLimits::default() },
        ..AppOptions::default()
    };
    let app = TestApp::spawn_with("testbed", &db, options).await;
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/sleep?ms=2000"));
            tokio::spawn(async move { client.get(url).send().await.unwrap().status() })
        })
        .collect();
    eventually(Duration::from_secs(5), || async {
        let status = app.client.get(app.url("/hello")).send().await.unwrap().status();
        check(status == StatusCode::SERVICE_UNAVAILABLE, || format!("/hello: {status}, waiting for the slots to fill"))
    })
    .await;
    for _ in 0..3 {
        let status = app.client.get(app.url("/testbed-ms/healthcheck")).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "the liveness route waited behind busy slots");
    }
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_holds_at_most_its_connection_limit() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let options = AppOptions { max_connections: 4, ..AppOptions::default() };
    let app = TestApp::spawn_with("testbed", &db, options).await;
    let request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let answer = first_bytes(&mut stream, Duration::from_secs(5)).await.expect("served within the limit");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(stream);
    }
    // A fifth client waits in the backlog while the four stay open...
    let mut fifth = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    fifth.write_all(request).await.unwrap();
    assert_eq!(first_bytes(&mut fifth, Duration::from_secs(1)).await, None, "a fifth connection was served");
    // ...and is served once one of them closes.
    drop(open.pop());
    let answer = first_bytes(&mut fifth, Duration::from_secs(5)).await.expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sends a request announcing and then sending `body_bytes` of body, all of it before reading
/// (as a simple client does), and returns what came back; a reset reads as an error.
fn send_all_then_read(addr: std::net::SocketAddr, head: &str, body_bytes: usize) -> Result<String, std::io::Error> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{head}Content-Length: {body_bytes}\r\n\r\n").as_bytes())?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < body_bytes {
        let n = chunk.len().min(body_bytes - sent);
        stream.write_all(&chunk[..n])?;
        sent += n;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_still_sending() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let options = AppOptions {
        limits: RequestLimits { max_body_bytes: 1024, ..RequestLimits::default() },
        admin_token: Some("admin-secret".into()),
        ..AppOptions::default()
    };
    let app = TestApp::spawn_with("testbed", &db, options).await;
    let (public, admin) = (app.addr, app.admin_addr.unwrap());
    for _ in 0..3 {
        // 413 as soon as the headers say 4 MiB; the client is still sending them.
        let head = "POST /hello HTTP/1.1\r\nHost: x\r\n";
        let answer = tokio::task::spawn_blocking(move || send_all_then_read(public, head, 4 << 20)).await.unwrap();
        let answer = answer.expect("the 413 reached the client (not a reset)");
        assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("payload-too-large"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
        // The admin API's 401 comes before it reads an upload.
        let head =
            "POST /admin/services/testbed/versions?label=x HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\n";
        let answer = tokio::task::spawn_blocking(move || send_all_then_read(admin, head, 4 << 20)).await.unwrap();
        let answer = answer.expect("the 401 reached the client (not a reset)");
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
}
