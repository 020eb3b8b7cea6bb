//! The `skiff` binary as a pod runs it: SIGTERM drains in-flight requests, then exits.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fixtures::ready;
use crate::helpers::{ScratchDir, component};
use crate::wait::{check, eventually};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let scratch = ScratchDir::new();
    let (port, ops_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--shutdown-grace-secs", "10"])
        .args(["--ops-listen", &format!("127.0.0.1:{ops_port}")])
        .arg("--component")
        .arg(component("testbed"))
        .arg("--data-dir")
        .arg(&scratch.0)
        .env("SKIFF_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    ready(&format!("{base}/readyz"), "skiff").await;

    let in_flight = {
        let url = format!("{base}/sleep?ms=1500");
        let client = client.clone();
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    // The request is running in an instance before the signal comes.
    eventually(Duration::from_secs(5), || async {
        let metrics =
            client.get(format!("http://127.0.0.1:{ops_port}/metrics")).send().await.unwrap().text().await.unwrap();
        check(metrics.lines().any(|l| l == "skiff_live_instances 1"), || "the request has not started".into())
    })
    .await;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());

    // No new connections once draining…
    eventually(Duration::from_millis(500), || async {
        let refused = reqwest::Client::new().get(format!("{base}/livez")).send().await;
        check(refused.is_err(), || "a new connection was accepted while draining".into())
    })
    .await;
    assert!(!in_flight.is_finished(), "refused because draining, not because the host is gone");
    // …but the request already running finishes normally.
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);

    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "skiff exited with {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_and_tokens_never_reach_the_logs() {
    use crate::helpers::{ScratchDir, TOKEN_SEED};
    let scratch = ScratchDir::new();
    let port = free_port();
    let log_path = scratch.0.join("skiff.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let components = component("users").parent().unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--components-dir")
        .arg(&components)
        .arg("--data-dir")
        .arg(&scratch.0)
        .args(["--config", "bcrypt_cost=4", "--config", &format!("token_signing_key={TOKEN_SEED}")])
        .env("SKIFF_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug,sqlx=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    ready(&format!("{base}/readyz"), "skiff dev").await;
    let secret = "Zebra-Quartz-7731-secret";
    let body = serde_json::json!({"name": "Ada", "surname": "L", "email": "ada@example.org", "password": secret});
    assert_eq!(client.post(format!("{base}/users-ms/users")).json(&body).send().await.unwrap().status(), 201);
    let login = serde_json::json!({"email": "ada@example.org", "password": secret});
    let granted: serde_json::Value =
        client.post(format!("{base}/auth-ms/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let token = granted["access_token"].as_str().unwrap().to_owned();
    let wrong = serde_json::json!({"email": "ada@example.org", "password": format!("{secret}-wrong")});
    assert_eq!(client.post(format!("{base}/auth-ms/auth/login")).json(&wrong).send().await.unwrap().status(), 401);
    let _ = client.get(format!("{base}/users-ms/users")).bearer_auth(&token).send().await.unwrap();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("served"), "the log was written at debug level");
    assert!(!logs.contains(secret), "a password reached the log");
    assert!(!logs.contains(&token), "a token reached the log");
    assert!(!logs.contains(TOKEN_SEED), "the signing key reached the log");
    assert!(!logs.contains("$2b$"), "a password hash reached the log");
}
