//! The admin listener: hot-swap a service's component over HTTP (upload, canary, promote,
//! rollback, list), on its own port and behind a bearer token. The public listeners never
//! route here; Kubernetes Services never expose its port.
//!
//! Without a token the admin listener does not start at all (a host with no way to
//! authenticate swaps is safer with no swap endpoint than with an open one).

mod api;
mod auth;
pub mod client;
pub mod commands;
mod error;
pub mod watch;

pub use api::Admin;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Where the admin listener runs and whom it lets in.
#[derive(Debug, Clone)]
pub struct AdminSpec {
    pub listen: SocketAddr,
    /// The bearer token every request must carry.
    pub token: String,
    /// The only folder `{"path": ...}` rollouts may load from; `None` allows uploads only.
    pub components_dir: Option<PathBuf>,
}

/// Largest component accepted by upload.
pub const MAX_COMPONENT_BYTES: usize = 128 << 20;

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let admin = admin.clone();
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(request, peer).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, %peer, "admin connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
}
