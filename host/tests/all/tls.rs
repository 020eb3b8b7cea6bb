//! TLS: passwords never cross an unsafe connection. auth checks credentials with users over
//! TLS, trusting only the cluster's CA and the name it called; the listeners serve HTTPS with a
//! certificate re-read when it is renewed on disk, and a client that never finishes its
//! handshake holds its connection no longer than a slow plain client would.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::helpers::{AppOptions, Backend, ScratchDir, TestApp, TestDb};
use crate::messaging::{PASSWORD, login};
use crate::wait::{check, eventually};
use skiff::launch::{Host, HostSpec, ServiceSpec, sqlite_url};
use skiff::server::TLS_HANDSHAKE_TIMEOUT;
use skiff::tls::TlsFiles;

/// A certificate authority of the test's own, as cert-manager's CA Issuer is in the cluster.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { issuer: Issuer::new(params, key), pem }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) and its key, as PEM.
    fn issue(&self, names: &[&str]) -> (String, String) {
        let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf for `names` into `dir` as `tls.crt`/`tls.key` (a Secret's keys).
    fn issue_into(&self, dir: &Path, names: &[&str]) -> TlsFiles {
        let (cert, key) = self.issue(names);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }

    fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.pem).unwrap();
        path.to_owned()
    }
}

/// An answer over HTTPS, and the certificate the server presented.
struct Answer {
    status: StatusCode,
    body: Value,
    peer: CertificateDer<'static>,
}

/// One request over a fresh TLS connection to `addr`, trusting `ca` for `name`.
async fn https(
    addr: SocketAddr,
    ca: &str,
    name: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Answer, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    // Longer than the host's handshake deadline: a client waiting in the backlog of a full
    // listener is served once a stalled handshake is given up on.
    let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5), connector.connect(server_name, tcp))
        .await
        .map_err(|_| "the TLS handshake hung".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let peer = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).cloned().unwrap().into_owned();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    let mut request = http::Request::builder().method(method).uri(path).header("host", name);
    let bytes = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let response =
        sender.send_request(request.body(Full::new(bytes)).unwrap()).await.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), peer })
}

async fn ready_over_https(addr: SocketAddr, ca: &str) {
    eventually(Duration::from_secs(30), || async {
        let answer = https(addr, ca, "localhost", "GET", "/readyz", None).await;
        check(matches!(&answer, Ok(a) if a.status == StatusCode::OK), || "waiting for /readyz over HTTPS".into())
    })
    .await;
}

fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// users with every listener on TLS for `names`, from `ca`.
async fn users_over_tls(db: &TestDb, ca: &Ca, names: &[&str]) -> TestApp {
    let files = ca.issue_into(&db.scratch.0.join("users-tls"), names);
    let options = AppOptions { internal_listener: true, tls: Some(files), wait_ready: false, ..AppOptions::default() };
    TestApp::spawn_with("users", db, options).await
}

/// auth calling users at `https://localhost:PORT`, trusting `ca`.
async fn auth_calling(db: &TestDb, users_internal: SocketAddr, ca: &Path) -> TestApp {
    let route = format!("https://localhost:{}", users_internal.port());
    let options = AppOptions {
        service_routes: vec![("users".into(), route)],
        tls_ca: Some(ca.to_owned()),
        ..AppOptions::default()
    };
    TestApp::spawn_with("auth", db, options).await
}

async fn sign_up_over_https(users: &TestApp, ca: &str, email: &str) {
    let body = json!({"name": "Ada", "surname": "Lovelace", "email": email, "password": PASSWORD});
    let answer = https(users.addr, ca, "localhost", "POST", "/users-ms/users", Some(body)).await.unwrap();
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_checks_the_password_with_users_over_tls() {
    let ca = Ca::new("skiff test CA");
    let (users_db, auth_db) = (TestDb::new(Backend::Sqlite, "users").await, TestDb::new(Backend::Sqlite, "auth").await);
    let users = users_over_tls(&users_db, &ca, &["localhost"]).await;
    ready_over_https(users.addr, &ca.pem).await;
    sign_up_over_https(&users, &ca.pem, "ada@example.org").await;
    let ca_file = ca.write(&auth_db.scratch.0.join("ca.crt"));
    let auth = auth_calling(&auth_db, users.internal_addr.unwrap(), &ca_file).await;

    let granted = login(&auth, "ada@example.org", PASSWORD).await;
    assert_eq!(granted.status(), StatusCode::OK);
    assert!(granted.json::<Value>().await.unwrap()["access_token"].is_string());
    assert_eq!(login(&auth, "ada@example.org", "not the password").await.status(), StatusCode::UNAUTHORIZED);

    // The internal listener speaks nothing but TLS: the credentials check in clear is not
    // answered at all.
    let mut clear = TcpStream::connect(users.internal_addr.unwrap()).await.unwrap();
    let request = "POST /users-ms/internal/credentials HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
    tokio::io::AsyncWriteExt::write_all(&mut clear, request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), clear.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "answered in clear");
    auth.stop().await;
    users.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_another_ca_is_refused() {
    let (ca, other) = (Ca::new("skiff test CA"), Ca::new("someone else's CA"));
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let users = users_over_tls(&db, &ca, &["localhost"]).await;
    ready_over_https(users.addr, &ca.pem).await;
    let refused = https(users.addr, &other.pem, "localhost", "GET", "/readyz", None).await.err().unwrap();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Nor does a name the certificate is not for pass.
    let refused = https(users.addr, &ca.pem, "users.example", "GET", "/readyz", None).await.err().unwrap();
    assert!(refused.contains("not valid for name"), "{refused}");
    users.stop().await;
}

/// Logs in through auth and expects the clean refusal: a problem, 503, well within the
/// credentials check's own 5 s deadline.
async fn assert_login_refused_cleanly(auth: &TestApp) {
    let started = Instant::now();
    let response = login(auth, "ada@example.org", PASSWORD).await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: Value = response.json().await.unwrap();
    assert!(problem["type"].as_str().unwrap().ends_with("users-unavailable"), "{problem}");
    assert!(took < Duration::from_secs(3), "login took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_refuses_a_users_with_a_certificate_from_another_ca_or_for_another_name() {
    let (ca, other) = (Ca::new("skiff test CA"), Ca::new("someone else's CA"));
    let auth_db = TestDb::new(Backend::Sqlite, "auth").await;
    let ca_file = ca.write(&auth_db.scratch.0.join("ca.crt"));

    // A users whose certificate another CA signed.
    let impostor_db = TestDb::new(Backend::Sqlite, "users").await;
    let impostor = users_over_tls(&impostor_db, &other, &["localhost"]).await;
    ready_over_https(impostor.addr, &other.pem).await;
    sign_up_over_https(&impostor, &other.pem, "ada@example.org").await;
    let auth = auth_calling(&auth_db, impostor.internal_addr.unwrap(), &ca_file).await;
    assert_login_refused_cleanly(&auth).await;
    auth.stop().await;

    // The right CA, but a certificate for another service's name.
    let misnamed_db = TestDb::new(Backend::Sqlite, "users").await;
    let misnamed = users_over_tls(&misnamed_db, &ca, &["notify-cluster-ip-service"]).await;
    let auth = auth_calling(&auth_db, misnamed.internal_addr.unwrap(), &ca_file).await;
    assert_login_refused_cleanly(&auth).await;
    auth.stop().await;

    // A peer that accepts the connection and never answers the hello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let auth = auth_calling(&auth_db, silent_addr, &ca_file).await;
    let started = Instant::now();
    let response = login(&auth, "ada@example.org", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(7), "login hung for {:?}", started.elapsed());
    held.abort();
    auth.stop().await;
    impostor.stop().await;
    misnamed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_holds_its_connection_only_until_the_deadline() {
    let ca = Ca::new("skiff test CA");
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let files = ca.issue_into(&db.scratch.0.join("tls"), &["localhost"]);
    let options = AppOptions { tls: Some(files), max_connections: 2, wait_ready: false, ..AppOptions::default() };
    let users = TestApp::spawn_with("users", &db, options).await;
    ready_over_https(users.addr, &ca.pem).await;
    // Let the readiness checks' connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two clients open a connection and never send a hello: the listener is at its limit.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(TcpStream::connect(users.addr).await.unwrap());
    }
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn({
        let (addr, ca) = (users.addr, ca.pem.clone());
        async move {
            // Waits in the backlog until a stalled connection is dropped, then is served.
            let answer = https(addr, &ca, "localhost", "GET", "/readyz", None).await;
            (answer.map(|a| a.status), Instant::now())
        }
    });
    // Each stalled connection is closed by the host once the handshake deadline has passed.
    for stream in &mut stalled {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a stalled handshake was still open after {:?}",
            opened.elapsed()
        );
    }
    let closed = opened.elapsed();
    assert!(closed >= TLS_HANDSHAKE_TIMEOUT - Duration::from_millis(500), "closed too early: {closed:?}");
    let (status, served_at) = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!(status, Ok(StatusCode::OK));
    assert!(served_at.duration_since(opened) < TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(5));
    users.stop().await;
}

/// The kubelet's layout for a mounted Secret: `tls.crt` → `..data/tls.crt`, `..data` → a
/// timestamped folder; an update writes a new folder and swaps `..data` in one rename.
fn kubelet_publish(dir: &Path, version: &str, cert: &str, key: &str) {
    let folder = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("tls.crt"), cert).unwrap();
    std::fs::write(folder.join("tls.key"), key).unwrap();
    let staged = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(format!("..{version}"), &staged).unwrap();
    std::fs::rename(&staged, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let ca = Ca::new("skiff test CA");
    let db = TestDb::new(Backend::Sqlite, "users").await;
    let secret = db.scratch.0.join("secret");
    let (first_cert, first_key) = ca.issue(&["localhost"]);
    kubelet_publish(&secret, "2026_12_01_10_00_00.1", &first_cert, &first_key);
    let files = TlsFiles { cert: secret.join("tls.crt"), key: secret.join("tls.key") };
    let options = AppOptions { tls: Some(files), wait_ready: false, ..AppOptions::default() };
    let users = TestApp::spawn_with("users", &db, options).await;
    ready_over_https(users.addr, &ca.pem).await;
    let served = https(users.addr, &ca.pem, "localhost", "GET", "/readyz", None).await.unwrap();
    assert_eq!(served.peer, leaf_der(&first_cert));

    // cert-manager renews it (a new key too: rotationPolicy Always).
    let (renewed_cert, renewed_key) = ca.issue(&["localhost"]);
    kubelet_publish(&secret, "2026_12_01_11_00_00.2", &renewed_cert, &renewed_key);
    let served = https(users.addr, &ca.pem, "localhost", "GET", "/readyz", None).await.unwrap();
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.peer, leaf_der(&renewed_cert), "a new connection got the old certificate");

    // A half-written renewal (the key not matching) is not served; the last good one is.
    let (next_cert, _) = ca.issue(&["localhost"]);
    kubelet_publish(&secret, "2026_12_01_12_00_00.3", &next_cert, &first_key);
    let served = https(users.addr, &ca.pem, "localhost", "GET", "/readyz", None).await.unwrap();
    assert_eq!(served.peer, leaf_der(&renewed_cert));
    users.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_mismatched_certificate_stops_the_host_naming_the_file() {
    let ca = Ca::new("skiff test CA");
    let scratch = ScratchDir::new();
    let files = ca.issue_into(&scratch.0.join("a"), &["localhost"]);
    let other = ca.issue_into(&scratch.0.join("b"), &["localhost"]);
    let start = |tls: TlsFiles, tls_ca: Option<PathBuf>| {
        let service = ServiceSpec {
            name: "users".into(),
            component: crate::helpers::component("users"),
            version_label: None,
            database_url: sqlite_url(&scratch.0, "users"),
        };
        let mut spec = HostSpec::with_services("127.0.0.1:0".parse().unwrap(), vec![service], scratch.0.clone());
        spec.tls = Some(tls);
        spec.capabilities.outbound_http.tls_ca = tls_ca;
        async move { format!("{:#}", Host::build(spec).await.err().expect("the host refused to start")) }
    };
    let missing = scratch.0.join("nowhere/tls.key");
    let error = start(TlsFiles { key: missing.clone(), ..files.clone() }, None).await;
    assert!(error.contains(&missing.display().to_string()) && error.contains("cannot read"), "{error}");
    let error = start(TlsFiles { key: other.key.clone(), ..files.clone() }, None).await;
    assert!(error.contains("does not belong") && error.contains(&other.key.display().to_string()), "{error}");
    let error = start(TlsFiles { key: files.cert.clone(), ..files.clone() }, None).await;
    assert!(error.contains("no PEM private key") && error.contains(&files.cert.display().to_string()), "{error}");
    let not_a_ca = scratch.0.join("empty.pem");
    std::fs::write(&not_a_ca, "").unwrap();
    let error = start(files.clone(), Some(not_a_ca.clone())).await;
    assert!(error.contains("CA bundle") && error.contains(&not_a_ca.display().to_string()), "{error}");
}
