//! A `wasi:http/proxy` component that passes its health check and traps on every other
//! request: the release that looks fine to a smoke test and fails on real traffic. The
//! hot-swap tests deploy it as a canary and expect the host to roll it back on its own.

#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "wasi:http/proxy@0.2.12",
        path: "../../../wit",
        generate_all,
    });

    use super::Faulty;
    export!(Faulty);
}

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Faulty;

impl Guest for Faulty {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path.ends_with("/healthcheck") {
            respond(out, 200, b"ok");
            return;
        }
        panic!("the faulty component traps on purpose");
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[("content-length".to_owned(), body.len().to_string().into_bytes())])
        .unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        let _ = stream.blocking_write_and_flush(body);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
