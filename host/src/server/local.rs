//! A service of this process as outbound HTTP reaches it (`http://users/...` from auth in
//! `skiff dev`): the same handling and the same answers as over a socket.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use std::sync::Weak;
use wasmtime_wasi_http::WasiBody;

use super::{into_response, problem};
use crate::capability::outbound_http::LocalService;
use crate::service::Service;

/// Weak: the service's capabilities hold the registry that holds this.
pub struct InProcess(pub Weak<Service>);

impl LocalService for InProcess {
    fn call(&self, request: http::Request<WasiBody>) -> BoxFuture<'static, http::Response<WasiBody>> {
        let service = self.0.upgrade();
        async move {
            match service {
                Some(service) => into_response(service.handle(request).await),
                None => problem::draining(),
            }
        }
        .boxed()
    }
}
