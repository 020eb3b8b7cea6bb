//! The admin listener: hot-swap a service's component over HTTP (upload, canary, promote,
//! rollback, list), on its own port and behind a bearer token. The public listeners never
//! route here; Kubernetes Services never expose its port.
//!
//! Without a token the admin listener does not start at all (a host with no way to
//! authenticate swaps is safer with no swap endpoint than with an open one).

mod api;
mod auth;
pub mod client;
mod error;
pub mod watch;

pub use api::Admin;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::server;

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

/// Serves the admin API on `listener` until `shutdown` resolves; a rollout in progress then
/// gets `options.grace` to finish.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
    options: server::ListenerOptions,
) {
    let handle = move |request, peer| {
        let admin = admin.clone();
        async move { admin.handle(request, peer).await }
    };
    server::accept(listener, "admin", handle, shutdown, options).await;
}
