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

// The testbed's way of answering, so the two test components answer alike.
#[path = "../../testbed/src/respond.rs"]
mod respond;

use bindings::exports::wasi::http::incoming_handler::Guest;
use bindings::wasi::http::types::{IncomingRequest, ResponseOutparam};
use respond::respond;

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
