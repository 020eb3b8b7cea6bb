//! Hot swap: rollouts under load drop nothing, bad candidates are refused or rolled back, the
//! admin API wants its token, and the CLI and watch mode drive a real `skiff serve`.

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fixtures::SkiffProcess;
use crate::helpers::{AppOptions, Backend, ScratchDir, TestApp, TestDb, component};
use crate::messaging::{PASSWORD, assert_notifications_stay, login, sign_up, wait_for_notifications};
use crate::wait::{check, eventually};

const TOKEN: &str = "test-admin-token";

/// `bytes` with a custom section appended: the same code under another digest, the cheapest
/// "new build" there is.
pub fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"skiff-test-variant";
    let mut content = vec![u8::try_from(name.len()).unwrap()];
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    let mut size = content.len();
    loop {
        let byte = u8::try_from(size & 0x7f).unwrap();
        size >>= 7;
        out.push(if size == 0 { byte } else { byte | 0x80 });
        if size == 0 {
            break;
        }
    }
    out.extend(content);
    out
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(component(name)).unwrap()
}

async fn app_with_admin(service: &str, db: &TestDb) -> TestApp {
    let options = AppOptions { admin_token: Some(TOKEN.into()), ..AppOptions::default() };
    TestApp::spawn_with(service, db, options).await
}

fn admin_url(app: &TestApp, path: &str) -> String {
    format!("http://{}{path}", app.admin_addr.unwrap())
}

/// Uploads `bytes` as a new version of `service`.
async fn swap(app: &TestApp, service: &str, bytes: Vec<u8>, query: &str) -> reqwest::Response {
    app.client
        .post(admin_url(app, &format!("/admin/services/{service}/versions?{query}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn versions(app: &TestApp, service: &str) -> Vec<Value> {
    let response = app
        .client
        .get(admin_url(app, &format!("/admin/services/{service}/versions")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["versions"].as_array().unwrap().clone()
}

async fn post(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.post(admin_url(app, path)).bearer_auth(TOKEN).send().await.unwrap()
}

/// The label and status of one public request.
async fn hello(app: &TestApp) -> (StatusCode, String) {
    let response = app.client.get(app.url("/hello")).send().await.unwrap();
    let label = response.headers()["skiff-component-version"].to_str().unwrap().to_owned();
    (response.status(), label)
}

/// Client tasks sending requests back to back until stopped, recording what served them.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<usize>>,
}

impl Load {
    fn start(app: &TestApp, path: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (client, url) = (reqwest::Client::new(), app.url(path));
                let (stop, seen, failures) = (stop.clone(), seen.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut sent = 0;
                    while !stop.load(Ordering::Relaxed) {
                        sent += 1;
                        match client.get(&url).send().await {
                            Ok(response) if response.status() == StatusCode::OK => {
                                let label = response.headers()["skiff-component-version"].to_str().unwrap().to_owned();
                                seen.lock().unwrap().push((Instant::now(), label));
                            }
                            Ok(response) => failures.lock().unwrap().push(format!("status {}", response.status())),
                            Err(error) => failures.lock().unwrap().push(format!("{error}")),
                        }
                    }
                    sent
                })
            })
            .collect();
        Self { stop, seen, failures, tasks }
    }

    /// When a response from `label` first arrived after `since`.
    fn first_served_by(&self, label: &str, since: Instant) -> Option<Instant> {
        self.seen.lock().unwrap().iter().find(|(at, seen)| *at >= since && seen == label).map(|(at, _)| *at)
    }

    async fn finish(self) -> (usize, Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut sent = 0;
        for task in self.tasks {
            sent += task.await.unwrap();
        }
        let labels = self.seen.lock().unwrap().iter().map(|(_, label)| label.clone()).collect();
        let failures = self.failures.lock().unwrap().clone();
        (sent, failures, labels)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_load_fail_no_request_and_every_version_serves() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = app_with_admin("testbed", &db).await;
    let (_, first) = hello(&app).await;
    let builds = [variant(&read("testbed"), "a"), variant(&read("testbed"), "b")];
    let load = Load::start(&app, "/hello", 8);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut labels = vec![first];
    for round in 0..4 {
        let label = format!("v{}", round + 2);
        let asked = Instant::now();
        let response = swap(&app, "testbed", builds[round % 2].clone(), &format!("label={label}")).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["deployment"]["result"], "switched");
        assert_eq!(body["versions"][0]["label"], label.as_str());
        // The switch happened before the answer; new requests see the new version at once.
        eventually(Duration::from_secs(10), || async {
            check(load.first_served_by(&label, asked).is_some(), || format!("{label} never served a request"))
        })
        .await;
        labels.push(label);
        // Let the new version carry the load a while before the next swap.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (requests, failures, seen) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for label in &labels {
        assert!(seen.contains(label), "{label} never served; seen {seen:?}");
    }
    // The last three stay loaded (active and two standby); the oldest was unloaded.
    let loaded = versions(&app, "testbed").await;
    let states: Vec<_> = loaded.iter().map(|v| (v["label"].as_str().unwrap(), v["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("v5", "active"), ("v4", "standby"), ("v3", "standby")]);
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_swaps_total{route="testbed",result="switched"} 4"#), "{metrics}");
    assert!(metrics.contains(r#"skiff_version_requests_total{route="testbed",version="v5",result="ok"}"#), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_candidates_are_refused_and_the_running_version_stays() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = app_with_admin("testbed", &db).await;
    let (_, running) = hello(&app).await;
    // An empty core module: valid WebAssembly, but not a component.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: [(&str, Vec<u8>, &str, &str); 3] = [
        ("garbage", b"this is not wasm".to_vec(), "urn:skiff:problem:invalid", "not a valid WebAssembly component"),
        ("core module", core_module, "urn:skiff:problem:invalid", "not a valid WebAssembly component"),
        // users in the testbed's slot: it loads, but its health route is not where this slot's is.
        (
            "another service",
            read("users"),
            "urn:skiff:problem:smoke-test-failed",
            "GET /testbed-ms/healthcheck answered 404",
        ),
    ];
    for (case, bytes, kind, detail) in cases {
        let response = swap(&app, "testbed", bytes, "label=bad").await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{case}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{case}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], kind, "{case}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{case}: {problem}");
        assert_eq!(hello(&app).await, (StatusCode::OK, running.clone()), "{case}");
    }
    let loaded = versions(&app, "testbed").await;
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[0]["state"], "active");
    // The same bytes again are no new version.
    let same = swap(&app, "testbed", read("testbed"), "").await;
    assert_eq!(same.status(), StatusCode::CONFLICT);
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_swaps_total{route="testbed",result="invalid"} 2"#), "{metrics}");
    assert!(metrics.contains(r#"skiff_swaps_total{route="testbed",result="smoke-test-failed"} 1"#), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_for_another_world_is_refused() {
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let app = app_with_admin("users", &db).await;
    // The testbed is a plain wasi:http component: no migrations for the users database.
    let response = swap(&app, "users", read("testbed"), "label=wrong").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:wrong-world", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("skiff:sql/migrations"), "{problem}");
    let health = app.client.get(app.url("/users-ms/healthcheck")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(versions(&app, "users").await.len(), 1);
    // A new build of users itself passes: its migrations are already applied, its health is fine.
    let response = swap(&app, "users", variant(&read("users"), "next"), "label=users-next").await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    let health = app.client.get(app.url("/users-ms/healthcheck")).send().await.unwrap();
    assert_eq!(health.headers()["skiff-component-version"], "users-next");
    app.stop().await;
}

/// A candidate's migrations run in its gate, through the sql capability: one that cannot be
/// applied (here the ledger says the first migration's SQL changed since it ran) refuses the
/// candidate, and the running version keeps serving.
async fn a_candidate_whose_migrations_fail_is_refused(backend: Backend) {
    use sqlx::{Connection, Executor};
    let db = TestDb::new(backend, "users").await;
    let app = app_with_admin("users", &db).await;
    let edit = "UPDATE skiff_migrations SET checksum = substr(checksum, 2) \
                WHERE version = (SELECT MIN(version) FROM skiff_migrations)";
    match backend {
        Backend::Sqlite => {
            sqlx::SqliteConnection::connect(&db.url).await.unwrap().execute(edit).await.unwrap();
        }
        Backend::Postgres => {
            sqlx::PgConnection::connect(&db.url).await.unwrap().execute(edit).await.unwrap();
        }
    }
    let response = swap(&app, "users", variant(&read("users"), "next"), "label=users-next").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:skiff:problem:migrations-failed", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("was changed after it was applied"), "{problem}");
    let health = app.client.get(app.url("/users-ms/healthcheck")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_ne!(health.headers()["skiff-component-version"], "users-next");
    assert_eq!(versions(&app, "users").await.len(), 1);
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_swaps_total{route="users",result="migrations-failed"} 1"#), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_whose_migrations_fail_is_refused_on_sqlite() {
    a_candidate_whose_migrations_fail_is_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Postgres (SKIFF_TEST_POSTGRES_URL)"]
async fn a_candidate_whose_migrations_fail_is_refused_on_postgres() {
    a_candidate_whose_migrations_fail_is_refused(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_traps_is_rolled_back_automatically() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = app_with_admin("testbed", &db).await;
    let (_, running) = hello(&app).await;
    // The faulty build passes its smoke test (its health route works) and traps on the rest.
    let response = swap(&app, "testbed", read("faulty"), "label=faulty&canary=25").await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    let load = Load::start(&app, "/hello", 4);
    eventually(Duration::from_secs(20), || async {
        let states = versions(&app, "testbed").await;
        let rolled_back = states.iter().any(|v| v["label"] == "faulty" && v["state"] == "rolled-back");
        check(rolled_back, || format!("the faulty canary was not rolled back: {states:?}"))
    })
    .await;
    // The load goes on a while after the rollback: none of it may fail.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, failures, seen) = load.finish().await;
    let faulty = versions(&app, "testbed").await.into_iter().find(|v| v["label"] == "faulty").unwrap();
    let reached = faulty["requests"].as_u64().unwrap();
    // Rolled back once it has its minimum sample (20 failures); requests already routed to it
    // (at most one per client) still finish there.
    assert!((20..=20 + 4).contains(&reached), "{reached} requests reached the bad canary");
    assert_eq!(failures.len() as u64, reached, "every request it served failed, and no other did");
    assert_eq!(faulty["errors"].as_u64().unwrap(), reached);
    assert_eq!(seen, BTreeSet::from([running.clone()]));
    assert_eq!(hello(&app).await, (StatusCode::OK, running));
    let metrics = app.client.get(app.ops_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"skiff_rollbacks_total{route="testbed",reason="canary-errors"} 1"#), "{metrics}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_shares_traffic_then_is_promoted_and_rolled_back() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = app_with_admin("testbed", &db).await;
    let (_, first) = hello(&app).await;
    let response = swap(&app, "testbed", variant(&read("testbed"), "canary"), "label=v2&canary=25").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut served = Vec::new();
    for _ in 0..40 {
        served.push(hello(&app).await.1);
    }
    // Every fourth request, spread evenly.
    assert_eq!(served.iter().filter(|label| *label == "v2").count(), 10, "{served:?}");
    // One canary at a time.
    let second = swap(&app, "testbed", variant(&read("testbed"), "other"), "label=v3").await;
    assert_eq!(second.status(), StatusCode::CONFLICT);
    assert_eq!(post(&app, "/admin/services/testbed/promote").await.status(), StatusCode::OK);
    assert_eq!(hello(&app).await, (StatusCode::OK, "v2".to_owned()));
    assert_eq!(post(&app, "/admin/services/testbed/promote").await.status(), StatusCode::CONFLICT);
    // Rollback returns to the version active before, at once.
    let response = post(&app, "/admin/services/testbed/rollback").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["active"], first.as_str());
    assert_eq!(hello(&app).await, (StatusCode::OK, first));
    let states: Vec<_> =
        versions(&app, "testbed").await.iter().map(|v| v["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states, ["active", "rolled-back"]);
    assert_eq!(post(&app, "/admin/services/testbed/rollback").await.status(), StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_its_token_and_is_not_on_the_public_listener() {
    let db = TestDb::new(Backend::Sqlite, "testbed").await;
    let app = app_with_admin("testbed", &db).await;
    let (_, running) = hello(&app).await;
    let upload = admin_url(&app, "/admin/services/testbed/versions?label=sneaky");
    let bytes = variant(&read("testbed"), "sneaky");
    for token in [None, Some("wrong"), Some("")] {
        let mut request = app.client.post(&upload).header("content-type", "application/wasm").body(bytes.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let listing = app.client.get(admin_url(&app, "/admin/services/testbed/versions")).bearer_auth("wrong");
        assert_eq!(listing.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        let rollback = app.client.post(admin_url(&app, "/admin/services/testbed/rollback"));
        assert_eq!(rollback.send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(versions(&app, "testbed").await.len(), 1);
    assert_eq!(hello(&app).await, (StatusCode::OK, running));
    // The public listener has no admin routes: the request goes to the component (404 there).
    let public = app.client.post(app.url("/admin/services/testbed/versions")).bearer_auth(TOKEN).body(bytes);
    let response = public.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(versions(&app, "testbed").await.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_swapped_mid_stream_handles_every_message_once() {
    let dbs = [
        TestDb::new(Backend::Sqlite, "users").await,
        TestDb::new(Backend::Sqlite, "auth").await,
        TestDb::new(Backend::Sqlite, "notify").await,
    ];
    let options = AppOptions { admin_token: Some(TOKEN.into()), ..AppOptions::default() };
    let app = TestApp::spawn_many(&[("users", &dbs[0]), ("auth", &dbs[1]), ("notify", &dbs[2])], options).await;
    sign_up(&app, "ada@example.org").await;
    let notify = read("notify");
    let logins = 30;
    for i in 0..logins {
        assert_eq!(login(&app, "ada@example.org", PASSWORD).await.status(), StatusCode::OK);
        if i % 10 == 5 {
            let response = swap(&app, "notify", variant(&notify, &format!("n{i}")), &format!("label=notify-{i}")).await;
            assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        }
    }
    let notifications = wait_for_notifications(&app, logins, Duration::from_secs(30)).await;
    assert_eq!(notifications.len(), logins);
    // Nothing more arrives: no message was handled twice.
    assert_notifications_stay(&app, logins, Duration::from_secs(1)).await;
    let labels: Vec<_> =
        versions(&app, "notify").await.iter().map(|v| v["label"].as_str().unwrap().to_owned()).collect();
    assert_eq!(labels[0], "notify-25");
    app.stop().await;
}

fn skiff(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .env("SKIFF_ADMIN_TOKEN", TOKEN)
        .env("SKIFF_LOG_FORMAT", "json")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_watch_mode_roll_out_on_a_running_serve_process() {
    let scratch = ScratchDir::new();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let watched = scratch.0.join("incoming.wasm");
    let v2 = scratch.0.join("v2.wasm");
    std::fs::write(&v2, variant(&read("testbed"), "v2")).unwrap();
    let garbage = scratch.0.join("garbage.wasm");
    std::fs::write(&garbage, b"not a component").unwrap();
    let host = SkiffProcess::serve(&[
        "--component".into(),
        component("testbed").display().to_string(),
        "--data-dir".into(),
        scratch.0.join("data").display().to_string(),
        "--admin-listen".into(),
        format!("127.0.0.1:{admin_port}"),
        "--admin-token".into(),
        TOKEN.into(),
        "--watch".into(),
        watched.display().to_string(),
        "--watch-interval-ms".into(),
        "100".into(),
    ]);
    host.wait_ready().await;
    let client = reqwest::Client::new();
    let label = || async {
        let response = client.get(format!("http://{}/hello", host.addr)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        (header("skiff-component-version"), header("skiff-component-digest"))
    };
    let (first, _) = label().await;

    let v2_path = v2.display().to_string();
    let out = skiff(&["swap", "--service", "testbed", "--component", &v2_path, "--label", "v2", "--admin-url", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("testbed: v2 (sha256:") && stdout.contains("is active"), "{stdout}");
    assert_eq!(label().await.0, "v2");

    let out = skiff(&["versions", "--service", "testbed", "--admin-url", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let lines: Vec<_> = stdout.lines().collect();
    assert!(lines[1].starts_with("active") && lines[1].contains("v2"), "{stdout}");
    assert!(lines[2].starts_with("standby") && lines[2].contains(&first), "{stdout}");

    let garbage_path = garbage.display().to_string();
    let out = skiff(&["swap", "--service", "testbed", "--component", &garbage_path, "--admin-url", &admin]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("422") && stderr.contains("not a valid WebAssembly component"), "{stderr}");
    assert_eq!(label().await.0, "v2");

    let out = skiff(&["rollback", "--service", "testbed", "--admin-url", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rolled back from v2") && stdout.contains(&first), "{stdout}");
    assert_eq!(label().await.0, first);

    let out = skiff(&["versions", "--service", "testbed", "--admin-url", &admin, "--admin-token", "wrong"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // Watch mode: whatever lands at the path (atomically, as a volume update does) rolls out.
    let next = variant(&read("testbed"), "watched");
    let digest = format!("sha256:{}", sha256_hex(&next));
    std::fs::write(scratch.0.join("incoming.tmp"), &next).unwrap();
    std::fs::rename(scratch.0.join("incoming.tmp"), &watched).unwrap();
    eventually(Duration::from_secs(30), || async {
        check(label().await.1 == digest, || "the watched component was not rolled out".into())
    })
    .await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}
