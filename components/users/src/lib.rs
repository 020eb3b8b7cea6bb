//! The users service as a WebAssembly component: REST CRUD of user profiles on the
//! `skiff:service/http-service` world. This file only wires WIT to the modules below.

mod api;
pub mod domain;
mod error;
mod platform;
mod store;

// The generated canonical-ABI glue is the only unsafe code in the component.
#[allow(unsafe_code)]
mod bindings {
    // Only the exports are generated here; every import is the kit's, so the kit's functions
    // and these exports share one set of types.
    wit_bindgen::generate!({
        world: "skiff:service/http-service",
        path: "../../wit",
        with: {
            "wasi:cli/stderr@0.2.12": service_kit::bindings::wasi::cli::stderr,
            "wasi:cli/stdin@0.2.12": service_kit::bindings::wasi::cli::stdin,
            "wasi:cli/stdout@0.2.12": service_kit::bindings::wasi::cli::stdout,
            "wasi:clocks/monotonic-clock@0.2.12": service_kit::bindings::wasi::clocks::monotonic_clock,
            "wasi:clocks/wall-clock@0.2.12": service_kit::bindings::wasi::clocks::wall_clock,
            "wasi:config/store@0.2.0-rc.1": service_kit::bindings::wasi::config::store,
            "wasi:logging/logging": service_kit::bindings::wasi::logging::logging,
            "wasi:http/outgoing-handler@0.2.12": service_kit::bindings::wasi::http::outgoing_handler,
            "wasi:http/types@0.2.12": service_kit::bindings::wasi::http::types,
            "wasi:io/error@0.2.12": service_kit::bindings::wasi::io::error,
            "wasi:io/poll@0.2.12": service_kit::bindings::wasi::io::poll,
            "wasi:io/streams@0.2.12": service_kit::bindings::wasi::io::streams,
            "wasi:random/random@0.2.12": service_kit::bindings::wasi::random::random,
            "skiff:request/context@0.1.0": service_kit::bindings::skiff::request::context,
            "skiff:crypto/issuing@0.1.0": service_kit::bindings::skiff::crypto::issuing,
            "skiff:crypto/passwords@0.1.0": service_kit::bindings::skiff::crypto::passwords,
            "skiff:crypto/tokens@0.1.0": service_kit::bindings::skiff::crypto::tokens,
            "skiff:sql/client@0.2.0": service_kit::bindings::skiff::sql::client,
            "skiff:sql/types@0.2.0": service_kit::bindings::skiff::sql::types,
        },
    });

    use super::Component;
    export!(Component);
}

use bindings::exports::skiff::sql::migrations::{Guest as Migrations, Migration};
use bindings::exports::wasi::http::incoming_handler::{Guest as IncomingHandler, IncomingRequest, ResponseOutparam};

struct Component;

impl IncomingHandler for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        service_kit::wasi_http::serve(request, response_out, api::handle);
    }
}

impl Migrations for Component {
    fn all() -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                name: "create_users".into(),
                sql: include_str!("../migrations/0001_create_users.sql").into(),
            },
            Migration {
                version: 2,
                name: "add_role".into(),
                sql: include_str!("../migrations/0002_add_role.sql").into(),
            },
            Migration {
                version: 3,
                name: "signup_attempts".into(),
                sql: include_str!("../migrations/0003_signup_attempts.sql").into(),
            },
            Migration {
                version: 4,
                name: "password_changed_at".into(),
                sql: include_str!("../migrations/0004_password_changed_at.sql").into(),
            },
        ]
    }
}
