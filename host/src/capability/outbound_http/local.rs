//! Services of this process that components reach by name without a socket (`skiff dev`).
//!
//! The capability sees them only through [`LocalService`], so it depends on no service or
//! server type; the host registers each service once it is loaded. Implementations hold their
//! service weakly: the service's own capabilities lead back here.

use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use wasmtime_wasi_http::WasiBody;

/// A service in this process that answers HTTP requests.
pub trait LocalService: Send + Sync {
    fn call(&self, request: http::Request<WasiBody>) -> BoxFuture<'static, http::Response<WasiBody>>;
}

/// The local services by name.
#[derive(Default)]
pub struct LocalServices {
    by_name: RwLock<HashMap<String, Arc<dyn LocalService>>>,
}

impl LocalServices {
    pub fn register(&self, name: &str, service: Arc<dyn LocalService>) {
        self.by_name.write().unwrap_or_else(PoisonError::into_inner).insert(name.to_owned(), service);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn LocalService>> {
        self.by_name.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }
}
