//! Components log through the host: a `wasi:logging` record becomes one of the host's JSON log
//! lines, inside the request's span (its id) and the component's (service and version).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{ScratchDir, component};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_record_lands_in_the_json_log_with_request_service_and_version() {
    let scratch = ScratchDir::new();
    let log_path = scratch.0.join("skiff.log");
    let (mut child, base) = serve_testbed_logging_json(&scratch, &log_path, &["--component-version", "v7"]).await;
    let client = reqwest::Client::new();
    let answer = client.get(format!("{base}/log")).header("x-request-id", "req-logs-1").send().await.unwrap();
    assert_eq!(answer.status(), 200);

    // The record is written before the response; wait for it to reach the file all the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let logs = std::fs::read_to_string(&log_path).unwrap();
        if let Some(line) = logs.lines().find(|line| line.contains("a record from inside the component")) {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "no component record in the log:\n{logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    assert_eq!(record["level"], "WARN", "{record}");
    assert_eq!(record["target"], "skiff::component", "{record}");
    assert_eq!(record["context"], "testbed", "{record}");
    assert_eq!(record["service"], "testbed", "{record}");
    // The innermost span is the component's; the request's is among its parents.
    let component = &record["span"];
    assert_eq!(
        (&component["name"], &component["service"], &component["version"]),
        (&"component".into(), &"testbed".into(), &"v7".into()),
        "{record}"
    );
    let spans = record["spans"].as_array().unwrap_or_else(|| panic!("no span list: {record}"));
    assert!(spans.iter().any(|span| span["name"] == "request" && span["id"] == "req-logs-1"), "{record}");
}

/// The access lines go through a writer thread (a request never waits for stderr); still every
/// line is whole, in the order the requests were served, and none is lost when skiff stops:
/// the last ones, written while it shuts down, are on disk once the process has exited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_line_is_whole_in_order_and_written_by_the_time_skiff_exits() {
    let scratch = ScratchDir::new();
    let log_path = scratch.0.join("skiff.log");
    let (mut child, base) = serve_testbed_logging_json(&scratch, &log_path, &[]).await;
    let client = reqwest::Client::new();
    let requests = 500;
    for index in 0..requests {
        let answer = client.get(format!("{base}/livez")).header("x-request-id", format!("order-{index}")).send().await;
        assert_eq!(answer.unwrap().status(), 200);
    }
    // Stopped at once, with the last access lines just formatted.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let records: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|error| panic!("not a whole JSON line ({error}): {line}"))
        })
        .collect();
    let served: Vec<String> = records
        .iter()
        .filter(|record| record["message"] == "served" && record["span"]["path"] == "/livez")
        .filter_map(|record| record["span"]["id"].as_str().filter(|id| id.starts_with("order-")).map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..requests).map(|index| format!("order-{index}")).collect();
    assert_eq!(served, expected, "access lines missing or out of order");
    let last_served = records.iter().rposition(|record| record["message"] == "served").unwrap();
    let drained = records
        .iter()
        .rposition(|record| record["message"] == "all connections drained" && record["listener"] == "public");
    assert!(
        drained.is_some_and(|drained| drained > last_served),
        "the lines written at shutdown are missing; the log ends with {}",
        records.last().unwrap()
    );
}

/// `skiff serve` of the testbed with `extra` flags, logging JSON lines at info to `log_path`;
/// returns once it is ready, with its base URL.
async fn serve_testbed_logging_json(
    scratch: &ScratchDir,
    log_path: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .arg("--component")
        .arg(component("testbed"))
        .arg("--data-dir")
        .arg(&scratch.0)
        .env("SKIFF_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_path).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "skiff did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, base)
}
