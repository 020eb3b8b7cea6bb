//! Spawning a host for one test, on its own database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use skiff::launch::{Host, HostSpec, ServiceSpec, sqlite_url};
use skiff::runtime::RuntimeOptions;
use skiff::service::RequestLimits;
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the built components are: `SKIFF_COMPONENTS_DIR` or the workspace's target folder.
pub fn component(name: &str) -> PathBuf {
    let (profile, variable) =
        if name == "testbed" { ("testbed", "SKIFF_TESTBED_DIR") } else { ("release", "SKIFF_COMPONENTS_DIR") };
    let dir = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("wasm32-wasip2").join(profile)
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: build the components first (./scripts/test does)", path.display());
    path
}

/// A scratch folder removed when the test ends.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("skiff-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of the test's own, and the folder for anything on disk.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub scratch: ScratchDir,
}

impl TestDb {
    /// `None` when Postgres is asked for and `SKIFF_TEST_POSTGRES_URL` is not set (local runs);
    /// when it is set, an unreachable server fails the test.
    pub async fn new(backend: Backend, service: &str) -> Option<Self> {
        let scratch = ScratchDir::new();
        let url = match backend {
            Backend::Sqlite => sqlite_url(&scratch.0, service),
            Backend::Postgres => {
                let Some(admin_url) = std::env::var("SKIFF_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty())
                else {
                    eprintln!("skipped on Postgres: SKIFF_TEST_POSTGRES_URL is not set");
                    return None;
                };
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("SKIFF_TEST_POSTGRES_URL is set but Postgres is unreachable: {e}"));
                let name = format!("skiff_test_{}", uuid::Uuid::new_v4().simple());
                admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
                let (base, _) = admin_url.rsplit_once('/').expect("SKIFF_TEST_POSTGRES_URL names a database");
                format!("{base}/{name}")
            }
        };
        Some(Self { url, backend, scratch })
    }
}

/// A running host on a free loopback port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How a test wants its host.
pub struct AppOptions {
    pub runtime: RuntimeOptions,
    pub limits: RequestLimits,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            runtime: RuntimeOptions { max_instances: 16, ..RuntimeOptions::default() },
            limits: RequestLimits::default(),
        }
    }
}

impl TestApp {
    pub async fn spawn(service: &str, db: &TestDb) -> Self {
        Self::spawn_with(service, db, AppOptions::default()).await
    }

    pub async fn spawn_with(service: &str, db: &TestDb, options: AppOptions) -> Self {
        let spec = HostSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            services: vec![ServiceSpec {
                name: service.to_owned(),
                component: component(service),
                version_label: None,
                database_url: db.url.clone(),
            }],
            runtime: options.runtime,
            limits: options.limits,
            database: Default::default(),
            config: vec![("bcrypt_cost".into(), "4".into())],
            shutdown_grace: Duration::from_secs(5),
        };
        let host = Host::build(spec).await.expect("host starts");
        let addr = host.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(host.serve(async {
            let _ = signal.await;
        }));
        let app = Self { addr, client: reqwest::Client::new(), shutdown: Some(shutdown), task: Some(task) };
        app.wait_ready().await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the host did not become ready within 10 s");
    }

    /// Stops the host the way SIGTERM does and waits for it to finish draining.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Runs a test body on SQLite and on Postgres: `both_backends!(name, …)` expects
/// `async fn name(backend: Backend)` in the same module.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}
