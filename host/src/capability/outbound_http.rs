//! `wasi:http/outgoing-handler` policy. Until service discovery lands, components may not make
//! outbound requests at all: every attempt is refused with `HttpRequestDenied`.

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Refuses every outbound request; the component sees `http-request-denied`.
#[derive(Debug, Default)]
pub struct DenyAll;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for DenyAll {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        tracing::warn!(uri = %request.uri(), "outbound HTTP refused: not on the allow-list");
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
