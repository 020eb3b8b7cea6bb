//! Spawning a host for one test, on its own database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use skiff::admin::AdminSpec;
use skiff::capability::crypto::token::{Claims, Issuer, Role, public_key_of};
use skiff::capability::messaging::RetryPolicy;
use skiff::launch::{Host, HostSpec, ServiceSpec, sqlite_url};
use skiff::runtime::RuntimeOptions;
use skiff::service::{Isolation, RequestLimits, SwapOptions};
use skiff::tls::TlsFiles;
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the built components are: `SKIFF_COMPONENTS_DIR` or the workspace's target folder.
pub fn component(name: &str) -> PathBuf {
    let (profile, variable) = if name == "testbed" || name == "faulty" {
        ("testbed", "SKIFF_TESTBED_DIR")
    } else {
        ("release", "SKIFF_COMPONENTS_DIR")
    };
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
    /// On Postgres, a fresh database on `SKIFF_TEST_POSTGRES_URL`'s server. Tests that ask for
    /// one are `#[ignore]`d and run only when asked for, so an unset URL or an unreachable
    /// server fails the test.
    pub async fn new(backend: Backend, service: &str) -> Self {
        let scratch = ScratchDir::new();
        let url = match backend {
            Backend::Sqlite => sqlite_url(&scratch.0, service),
            Backend::Postgres => {
                let admin_url = std::env::var("SKIFF_TEST_POSTGRES_URL")
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| panic!("this test needs Postgres: set SKIFF_TEST_POSTGRES_URL"));
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("SKIFF_TEST_POSTGRES_URL is set but Postgres is unreachable: {e}"));
                let name = format!("skiff_test_{}", uuid::Uuid::new_v4().simple());
                admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.unwrap();
                let (base, _) = admin_url.rsplit_once('/').expect("SKIFF_TEST_POSTGRES_URL names a database");
                format!("{base}/{name}")
            }
        };
        Self { url, backend, scratch }
    }
}

/// The tests' token signing key (base64 Ed25519 seed); hosts get its public half.
pub const TOKEN_SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Listed in the (retired) `admin_emails` setting: signing up with it no longer makes an admin.
pub const ADMIN_EMAIL: &str = "admin@example.org";

/// A bearer token for `user_id`, valid for an hour.
pub fn token_for(user_id: &str, role: Role) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = Claims { sub: user_id.into(), role, iat: now, exp: now + 900, jti: uuid::Uuid::new_v4().to_string() };
    Issuer::from_base64(TOKEN_SEED).unwrap().sign(&claims)
}

/// GETs `url` with `bearer` as its bearer token and reads the answer as JSON, whatever its
/// status: for reads whose body the test compares.
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl, bearer: &str) -> serde_json::Value {
    client.get(url).bearer_auth(bearer).send().await.unwrap().json().await.unwrap()
}

/// A running host on a free loopback port.
pub struct TestApp {
    pub addr: SocketAddr,
    pub internal_addr: Option<SocketAddr>,
    /// The operations listener: `/metrics` and readiness's detail.
    pub ops_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How a test wants its host.
pub struct AppOptions {
    pub runtime: RuntimeOptions,
    pub limits: RequestLimits,
    pub isolation: Isolation,
    pub config: Vec<(String, String)>,
    pub amqp_url: Option<String>,
    pub service_routes: Vec<(String, String)>,
    pub outbound_allow: Vec<String>,
    pub internal_listener: bool,
    pub retry: RetryPolicy,
    /// Wait for /readyz before returning.
    pub wait_ready: bool,
    /// Start the admin listener with this token.
    pub admin_token: Option<String>,
    pub swap: SwapOptions,
    /// Connections each listener keeps open at once.
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` the host believes.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve every listener over TLS (the test waits for readiness itself, over HTTPS).
    pub tls: Option<TlsFiles>,
    /// The CA that `https://` service routes are checked against.
    pub tls_ca: Option<PathBuf>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            runtime: RuntimeOptions { max_instances: 16, ..RuntimeOptions::default() },
            limits: RequestLimits::default(),
            isolation: Isolation::default(),
            config: vec![
                ("bcrypt_cost".into(), "4".into()),
                ("token_signing_key".into(), TOKEN_SEED.into()),
                ("token_public_key".into(), public_key_of(TOKEN_SEED).unwrap()),
                ("admin_emails".into(), ADMIN_EMAIL.into()),
                // Tests sign many users up from loopback; the sign-up throttle's own tests
                // set a small limit.
                ("signup_max_per_source".into(), "1000000".into()),
            ],
            amqp_url: None,
            service_routes: Vec::new(),
            outbound_allow: Vec::new(),
            internal_listener: false,
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
            },
            wait_ready: true,
            admin_token: None,
            swap: SwapOptions::default(),
            max_connections: skiff::server::DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: Vec::new(),
            tls: None,
            tls_ca: None,
        }
    }
}

impl TestApp {
    pub async fn spawn(service: &str, db: &TestDb) -> Self {
        Self::spawn_with(service, db, AppOptions::default()).await
    }

    pub async fn spawn_with(service: &str, db: &TestDb, options: AppOptions) -> Self {
        Self::spawn_many(&[(service, db)], options).await
    }

    /// Several services in one host (as `skiff dev` runs them); the embedded queue, if used,
    /// lives beside the first service's database.
    pub async fn spawn_many(services: &[(&str, &TestDb)], options: AppOptions) -> Self {
        let specs = services
            .iter()
            .map(|(name, db)| ServiceSpec {
                name: (*name).to_owned(),
                component: component(name),
                version_label: None,
                database_url: db.url.clone(),
            })
            .collect();
        let mut spec = HostSpec::with_services("127.0.0.1:0".parse().unwrap(), specs, services[0].1.scratch.0.clone());
        spec.internal_listen = options.internal_listener.then(|| "127.0.0.1:0".parse().unwrap());
        spec.ops_listen = Some("127.0.0.1:0".parse().unwrap());
        spec.runtime = options.runtime;
        spec.limits = options.limits;
        spec.isolation = options.isolation;
        spec.config = options.config;
        spec.capabilities.messaging.amqp_url = options.amqp_url;
        spec.capabilities.messaging.retry = options.retry;
        spec.capabilities.outbound_http.service_routes = options.service_routes;
        spec.capabilities.outbound_http.allow = options.outbound_allow;
        spec.capabilities.outbound_http.tls_ca = options.tls_ca;
        spec.shutdown_grace = Duration::from_secs(5);
        spec.swap = options.swap;
        spec.max_connections = options.max_connections;
        spec.trusted_proxies = options.trusted_proxies;
        let plain = options.tls.is_none();
        spec.tls = options.tls;
        spec.admin = options.admin_token.map(|token| AdminSpec {
            listen: "127.0.0.1:0".parse().unwrap(),
            token,
            components_dir: None,
        });
        let host = Host::build(spec).await.expect("host starts");
        let addr = host.local_addr().unwrap();
        let internal_addr = host.internal_addr();
        let ops_addr = host.ops_addr().unwrap();
        let admin_addr = host.admin_addr();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(host.serve(async {
            let _ = signal.await;
        }));
        let app = Self {
            addr,
            internal_addr,
            ops_addr,
            admin_addr,
            // The host closes a keep-alive connection that stays idle for its header timeout
            // (10 s); a pooled connection reused at that moment fails with IncompleteMessage.
            // Tests that wait that long (slow clients, outages) get a fresh connection instead.
            client: reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(5)).build().unwrap(),
            shutdown: Some(shutdown),
            task: Some(task),
        };
        if options.wait_ready && plain {
            app.wait_ready().await;
        }
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// On the operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops_addr)
    }

    pub async fn wait_ready(&self) {
        crate::fixtures::ready(&self.url("/readyz"), "the host").await;
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
/// `async fn name(backend: Backend)` in the same module. The Postgres ones are ignored unless
/// asked for (`--ignored postgres`, as `scripts/test` does when `SKIFF_TEST_POSTGRES_URL` is set).
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
                #[ignore = "needs Postgres (SKIFF_TEST_POSTGRES_URL)"]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}
