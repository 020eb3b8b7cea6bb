//! Things the messaging tests stand up beside the host: a webhook receiver, a TCP proxy that
//! can cut the broker off, a RabbitMQ vhost of the test's own, and a `skiff` process.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::wait::eventually;

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

/// How a [`Webhook`] answers.
#[derive(Debug, Clone, Default)]
pub struct WebhookBehaviour {
    /// Answer 500 to this many requests first.
    pub failures: usize,
    /// Take this long over each request (to make deliveries overlap).
    pub delay: Duration,
    /// Bytes of body in each answer.
    pub response_bytes: usize,
}

/// An HTTP server that records what it is sent and answers 500 to the first `failures` requests.
pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    attempts: Arc<AtomicUsize>,
    /// A user whose notifications get 500, from [`Webhook::break_for_user`] on.
    broken_for_user: Arc<Mutex<Option<String>>>,
}

impl Webhook {
    pub async fn start(failures: usize) -> Self {
        Self::start_with(WebhookBehaviour { failures, ..WebhookBehaviour::default() }).await
    }

    pub async fn start_with(behaviour: WebhookBehaviour) -> Self {
        let WebhookBehaviour { failures, delay, response_bytes } = behaviour;
        let broken_for_user = Arc::new(Mutex::new(None::<String>));
        let broken = broken_for_user.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (log, count) = (received.clone(), attempts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, count, broken) = (log.clone(), count.clone(), broken.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                        let (log, count, broken) = (log.clone(), count.clone(), broken.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            tokio::time::sleep(delay).await;
                            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                            let broken =
                                broken.lock().unwrap().as_ref().is_some_and(|user| body["user_id"] == user.as_str());
                            let status = if count.fetch_add(1, Ordering::SeqCst) < failures || broken {
                                500
                            } else {
                                log.lock().unwrap().push(Received { at: Instant::now(), headers: parts.headers, body });
                                200
                            };
                            let mut response = http::Response::new(Full::new(Bytes::from(vec![b'x'; response_bytes])));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { addr, received, attempts, broken_for_user }
    }

    /// From now on, every notification for `user_id` gets 500.
    pub fn break_for_user(&self, user_id: &str) {
        *self.broken_for_user.lock().unwrap() = Some(user_id.to_owned());
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/notify", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Waits until `count` deliveries arrived, or panics after `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        eventually(timeout, || async {
            let received = self.received();
            if received.len() >= count {
                Ok(received)
            } else {
                Err(format!("only {} of {count} webhook deliveries arrived", received.len()))
            }
        })
        .await
    }
}

/// A TCP proxy in front of a server that the test can take down (cutting open connections and
/// refusing new ones) and bring back.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (is_up, open) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !is_up.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                open.lock().unwrap().push(task);
            }
        });
        Self { addr, up, connections }
    }

    pub fn take_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn bring_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `SKIFF_TEST_AMQP_URL` pointed at a fresh vhost of this test's own. Tests that call this are
/// `#[ignore]`d and run only when asked for, so an unset URL or an unreachable broker fails.
pub fn amqp_vhost() -> (String, SocketAddr) {
    let base = std::env::var("SKIFF_TEST_AMQP_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| panic!("this test needs RabbitMQ: set SKIFF_TEST_AMQP_URL"));
    let vhost = format!("skiff_test_{}", uuid::Uuid::new_v4().simple());
    for args in [vec!["add_vhost", &vhost], vec!["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]] {
        let output = Command::new("rabbitmqctl").args(&args).output().expect("rabbitmqctl runs");
        assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let (without_vhost, _) = base.rsplit_once('/').expect("SKIFF_TEST_AMQP_URL ends with /VHOST");
    let authority = without_vhost.rsplit_once('@').map_or(without_vhost, |(_, host)| host);
    let authority = authority.trim_start_matches("amqp://");
    let addr: SocketAddr = authority.parse().expect("SKIFF_TEST_AMQP_URL has HOST:PORT as an IP address");
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("SKIFF_TEST_AMQP_URL is set but RabbitMQ is unreachable: {e}"));
    (format!("{without_vhost}/{vhost}"), addr)
}

/// Replaces the host:port of an AMQP URL (to go through a [`Proxy`]).
pub fn via(url: &str, proxy: SocketAddr) -> String {
    let (scheme_and_user, rest) = url.rsplit_once('@').expect("URL with credentials");
    let (_, vhost) = rest.split_once('/').expect("URL with a vhost");
    format!("{scheme_and_user}@{proxy}/{vhost}")
}

/// A `skiff serve` process, killed with SIGKILL when dropped.
pub struct SkiffProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The operations listener: `/metrics` and readiness's detail.
    pub ops: SocketAddr,
}

impl SkiffProcess {
    pub fn serve(args: &[String]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ops_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ops: SocketAddr = format!("127.0.0.1:{ops_port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--ops-listen")
            .arg(ops.to_string())
            .args(args)
            .env("SKIFF_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            // `SKIFF_TEST_PROCESS_LOGS=1` shows what the processes log, to debug a test.
            .stderr(if std::env::var_os("SKIFF_TEST_PROCESS_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        Self { child, addr, ops }
    }

    pub async fn wait_ready(&self) {
        ready(&format!("http://{}/readyz", self.addr), "skiff serve").await;
    }

    /// SIGKILL: no drain, no goodbye, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SkiffProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits up to 15 s for `readyz_url` to answer 200.
pub async fn ready(readyz_url: &str, what: &str) {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(15), || async {
        match client.get(readyz_url).send().await {
            Ok(response) if response.status() == 200 => Ok(()),
            Ok(response) => Err(format!("{what} is not ready: {}", response.status())),
            Err(error) => Err(format!("{what} does not answer: {error}")),
        }
    })
    .await;
}
