//! The HTTP front: listeners, graceful shutdown, host routes, routing to services, and the one
//! place where what a service did becomes an HTTP response.

mod answer;
mod client_address;
mod health;
mod local;
pub mod problem;
mod router;
mod unread_body;

pub use answer::{DIGEST_HEADER, VERSION_HEADER, into_response};
pub use client_address::parse_trusted_proxy;
pub use health::Health;
pub use local::InProcess;
pub use router::App;
pub use unread_body::WatchedBody;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::tls::ServerTls;

/// Slow clients get this long to send their request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// On a TLS listener, a client gets as long to finish its handshake as it gets for its
/// headers: one that opens a connection and never completes a handshake holds its connection
/// slot no longer than a slow plain client does.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = HEADER_READ_TIMEOUT;
/// hyper's read buffer: a request line and header section that do not fit are refused by hyper
/// itself (431) before the router sees them. The router's own, smaller limit on the header
/// section is [`router::MAX_HEADER_SECTION_BYTES`].
pub const MAX_READ_BUFFER_BYTES: usize = 64 * 1024;
/// After an accept error (out of file descriptors and the like), wait this long instead of
/// spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long in-flight requests may take to finish after shutdown begins.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Connections one listener keeps open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// What every listener (public, internal, admin) is held to.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// How long in-flight requests may take to finish after shutdown begins.
    pub grace: Duration,
    /// Connections open at once; at the limit the listener stops accepting (new clients wait
    /// in the kernel's backlog) until one closes, so idle or slow clients cannot exhaust the
    /// process's file descriptors or memory.
    pub max_connections: usize,
    /// Serve HTTPS with this certificate (re-read when it changes on disk) instead of HTTP.
    pub tls: Option<ServerTls>,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self { grace: DEFAULT_SHUTDOWN_GRACE, max_connections: DEFAULT_MAX_CONNECTIONS, tls: None }
    }
}

/// Which of the host's listeners a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The app port: the services, and the probes' bare answers.
    Public,
    /// Calls from inside the cluster: requests are marked as such for the components (the
    /// users credentials check); it must only be reachable from inside the cluster.
    Internal,
    /// Operations (`--ops-listen`): `/metrics` and readiness with its detail, for Prometheus and
    /// the kubelet; no service is served on it. Never expose it through a public Service.
    Ops,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Ops => "ops",
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, marks the host
/// not ready, and lets in-flight requests finish for up to `options.grace`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    kind: Listener,
    shutdown: impl Future<Output = ()>,
    options: ListenerOptions,
) {
    let handler = app.clone();
    let handle = move |request, peer| {
        let app = handler.clone();
        async move { app.handle(request, peer, kind).await }
    };
    let stopped = async {
        shutdown.await;
        app.health().start_draining();
    };
    accept(listener, kind.name(), handle, stopped, options).await;
}

/// The accept loop every listener runs (public, internal, admin): one connection task per
/// client with the same header limits, at most `options.max_connections` at once (a TLS
/// handshake in progress counts, and gets [`TLS_HANDSHAKE_TIMEOUT`]), until `shutdown`; then
/// in-flight requests get `options.grace`.
pub async fn accept<H, F>(
    listener: TcpListener,
    name: &'static str,
    handle: H,
    shutdown: impl Future<Output = ()>,
    options: ListenerOptions,
) where
    H: Fn(Request<WatchedBody>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<HyperOutgoingBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_READ_BUFFER_BYTES);
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        // At the limit, stop accepting until a connection ends.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handle = handle.clone();
                let service = hyper::service::service_fn(move |request| {
                    let (request, body) = unread_body::watch_request(request);
                    let answer = handle(request, peer);
                    async move {
                        let mut response = answer.await;
                        if body.left_unread() {
                            response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                // Taken now: a connection still in its TLS handshake when shutdown begins is
                // closed as soon as it is served, and the drain waits for it.
                let watcher = graceful.watcher();
                let (builder, tls) = (builder.clone(), options.tls.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let served = match tls {
                        None => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                        Some(tls) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
                            Ok(Ok(stream)) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                            Ok(Err(error)) => {
                                tracing::debug!(listener = name, %error, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(listener = name, %peer, "TLS handshake not finished in time; connection closed");
                                return;
                            }
                        },
                    };
                    if let Err(error) = served {
                        tracing::debug!(listener = name, %error, %peer, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = options.grace;
    tracing::info!(listener = name, grace = ?grace, "shutting down: no new connections, draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!(listener = name, "all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(listener = name, "grace period over; closing the remaining connections"),
    }
}

/// A complete body, in the type responses carry.
pub fn full_body(bytes: impl Into<Bytes>) -> HyperOutgoingBody {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
