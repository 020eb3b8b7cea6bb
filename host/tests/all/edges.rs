//! What a client chooses cannot grow the host's state or be charged to a version: junk methods
//! share one metric series, and a request the host cannot hand to a component is the client's
//! 400, not the version's 500.

use std::io::{Read, Write};

use crate::helpers::{Backend, TestApp, TestDb};

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
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
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
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("JUNK"), "a client-chosen method became a label:\n{metrics}");
    let other = metrics
        .lines()
        .find(|line| line.starts_with("skiff_http_requests_total") && line.contains("method=\"OTHER\""))
        .unwrap_or_else(|| panic!("no OTHER series:\n{metrics}"));
    assert!(other.ends_with(" 30"), "{other}");
}
