//! A plain `wasi:http/proxy` component that answers every request with `hello`. It imports
//! nothing skiff-specific, so `wasmtime serve` can run the very same file: the benchmark's
//! measure of what the host itself costs per request.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "wasi:http/proxy@0.2.12",
        path: "../../wit",
        generate_all,
    });

    use super::Hello;
    export!(Hello);
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

const BODY: &[u8] = b"hello";

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let headers = Fields::new();
        // Setting a header cannot fail for these constant, valid values.
        let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
        let _ = headers.set("content-length", &[BODY.len().to_string().into_bytes()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = body.write() {
            let _ = stream.blocking_write_and_flush(BODY);
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
