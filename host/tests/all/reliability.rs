//! Overload, crashes and database outages: what holds. The figures (how much was shed, how
//! fast readiness turns) are measured by the benchmark suite (`bench/guarantees.py`).

use reqwest::StatusCode;
use serde_json::json;
use skiff::capability::crypto::token::Role;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use skiff::runtime::RuntimeOptions;
use skiff::service::RequestLimits;

use crate::fixtures::{Proxy, SkiffProcess};
use crate::helpers::{AppOptions, Backend, TOKEN_SEED, TestApp, TestDb, component, token_for};
use crate::wait::{check, eventually};

fn sign_up_body(n: usize) -> serde_json::Value {
    json!({"name": "Load", "surname": "Test", "email": format!("load-{n}-{}@example.org", uuid::Uuid::new_v4().simple()), "password": "long enough"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_every_request_succeeds_or_is_shed_and_probes_keep_answering() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let mut options = AppOptions {
        runtime: RuntimeOptions { max_instances: 4, ..RuntimeOptions::default() },
        limits: RequestLimits { queue_timeout: Duration::from_millis(50), ..RequestLimits::default() },
        ..AppOptions::default()
    };
    // A real bcrypt cost makes every sign-up CPU-heavy, so 64 clients overload 2 cores.
    options.config.retain(|(key, _)| key != "bcrypt_cost");
    options.config.push(("bcrypt_cost".into(), "10".into()));
    let app = TestApp::spawn_with("users", &db, options).await;

    const CLIENTS: usize = 64;
    let run_for = Duration::from_secs(5);
    let (created, shed, other) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (http, url) = (app.client.clone(), app.url("/users-ms/users"));
            let (created, shed, other) = (created.clone(), shed.clone(), other.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while started.elapsed() < run_for {
                    n += 1;
                    let response = http.post(&url).json(&sign_up_body(client * 100_000 + n)).send().await.unwrap();
                    match response.status() {
                        StatusCode::CREATED => created.fetch_add(1, Ordering::Relaxed),
                        StatusCode::SERVICE_UNAVAILABLE if response.headers().contains_key("retry-after") => {
                            shed.fetch_add(1, Ordering::Relaxed)
                        }
                        status => {
                            eprintln!("unexpected {status}: {}", response.text().await.unwrap_or_default());
                            other.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let mut slowest_probe = Duration::ZERO;
    while started.elapsed() < run_for {
        let probe = Instant::now();
        assert_eq!(app.client.get(app.url("/livez")).send().await.unwrap().status(), StatusCode::OK);
        slowest_probe = slowest_probe.max(probe.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for client in clients {
        client.await.unwrap();
    }
    let (created, shed, other) =
        (created.load(Ordering::Relaxed), shed.load(Ordering::Relaxed), other.load(Ordering::Relaxed));
    assert_eq!(other, 0, "every request either succeeds or is shed with 503 + Retry-After");
    assert!(created > 0 && shed > 0, "the load should both succeed and be shed: {created} created, {shed} shed");
    assert!(slowest_probe < Duration::from_secs(1), "liveness took {slowest_probe:?}");
    app.stop().await;
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let db = TestDb::new(backend, "users").await;
    let args = vec![
        "--component".to_owned(),
        component("users").display().to_string(),
        "--database-url".to_owned(),
        db.url.clone(),
        "--data-dir".to_owned(),
        db.scratch.0.display().to_string(),
        "--config".to_owned(),
        "bcrypt_cost=4".to_owned(),
        "--config".to_owned(),
        format!("token_public_key={}", skiff::capability::crypto::token::public_key_of(TOKEN_SEED).unwrap()),
    ];
    let mut first = SkiffProcess::serve(&args);
    first.wait_ready().await;
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let url = format!("http://{}/users-ms/users", first.addr);
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    // Once the process is gone, sends fail: stop.
                    let Ok(response) = client.post(&url).json(&sign_up_body(writer * 100_000 + n)).send().await else {
                        return;
                    };
                    if response.status() == StatusCode::CREATED
                        && let Ok(body) = response.json::<serde_json::Value>().await
                    {
                        acknowledged.lock().unwrap().push(body["id"].as_str().unwrap().to_owned());
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(!acknowledged.is_empty());

    let second = SkiffProcess::serve(&args);
    second.wait_ready().await;
    let client = reqwest::Client::new();
    let mut missing = 0;
    for id in &acknowledged {
        // Each user reads itself: users checks a token against its user's row, so a missing
        // write is a refused token (401) rather than a 404, and either counts as missing.
        let status = client
            .get(format!("http://{}/users-ms/users/{id}", second.addr))
            .bearer_auth(token_for(id, Role::User))
            .send()
            .await
            .unwrap()
            .status();
        if status != StatusCode::OK {
            missing += 1;
        }
    }
    assert_eq!(missing, 0, "every acknowledged write is there after kill -9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    acknowledged_writes_survive_kill_9(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    acknowledged_writes_survive_kill_9(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn a_postgres_outage_turns_readiness_off_gives_503s_and_heals() {
    let db = TestDb::new(Backend::Postgres, "users").await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let through_proxy = TestDb {
        url: db.url.replace("127.0.0.1:5432", &proxy.addr.to_string()),
        backend: db.backend,
        scratch: crate::helpers::ScratchDir::new(),
    };
    assert_ne!(through_proxy.url, db.url, "SKIFF_TEST_POSTGRES_URL must point at 127.0.0.1:5432 for this test");
    let app = TestApp::spawn("users", &through_proxy).await;
    let sign_up = || app.client.post(app.url("/users-ms/users")).json(&sign_up_body(0)).send();
    assert_eq!(sign_up().await.unwrap().status(), StatusCode::CREATED);

    // A steady write load runs through the whole outage: every request must end in 201 or a
    // 503 with Retry-After, and none may hang.
    let load_running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load: Vec<_> = (0..4)
        .map(|worker| {
            let (client, url, running) = (app.client.clone(), app.url("/users-ms/users"), load_running.clone());
            tokio::spawn(async move {
                let (mut statuses, mut slowest) = (Vec::new(), Duration::ZERO);
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let response = client.post(&url).json(&sign_up_body(worker * 100_000 + n)).send().await.unwrap();
                    slowest = slowest.max(started.elapsed());
                    let shed_properly = response.status() == StatusCode::SERVICE_UNAVAILABLE
                        && response.headers().contains_key("retry-after");
                    statuses.push(response.status() == StatusCode::CREATED || shed_properly);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (statuses, slowest)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.take_down();
    eventually(Duration::from_secs(5), || async {
        let status = app.client.get(app.url("/readyz")).send().await.unwrap().status();
        check(status == StatusCode::SERVICE_UNAVAILABLE, || format!("readiness still {status} into the outage"))
    })
    .await;
    let attempt = Instant::now();
    let refused = sign_up().await.unwrap();
    let answered_in = attempt.elapsed();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(answered_in < Duration::from_secs(7), "a request hung for {answered_in:?}");
    assert_eq!(app.client.get(app.url("/livez")).send().await.unwrap().status(), StatusCode::OK);

    proxy.bring_up();
    app.wait_ready().await;
    assert_eq!(sign_up().await.unwrap().status(), StatusCode::CREATED);
    load_running.store(false, Ordering::Relaxed);
    let mut slowest = Duration::ZERO;
    for worker in load {
        let (statuses, worker_slowest) = worker.await.unwrap();
        assert!(
            statuses.iter().all(|ok| *ok),
            "a request under load ended in something else than 201 or 503 + Retry-After"
        );
        slowest = slowest.max(worker_slowest);
    }
    assert!(slowest < Duration::from_secs(7), "a request under load hung for {slowest:?}");
    app.stop().await;
}
