//! The auth service as a WebAssembly component (`skiff:service/publishing-service`): login
//! checks credentials with users (throttled per account and per source
//! address), issues a short-lived access token and a rotating refresh token, and publishes a
//! `user_login_event`; refresh and logout keep and end sessions.

mod api;
pub mod domain;
mod error;
mod store;

// The generated canonical-ABI glue is the only unsafe code in the component.
#[allow(unsafe_code)]
mod bindings {
    // Only the exports are generated here; every import is the kit's, so the kit's functions
    // and these exports share one set of types.
    wit_bindgen::generate!({
        world: "skiff:service/publishing-service",
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
            "skiff:messaging/producer@0.3.0": service_kit::bindings::skiff::messaging::producer,
            "skiff:messaging/types@0.3.0": service_kit::bindings::skiff::messaging::types,
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
    /// auth's tables count failed logins for throttling and keep refresh tokens; the same
    /// database holds the host's outbox.
    fn all() -> Vec<Migration> {
        vec![
            Migration {
                version: 1,
                name: "create_login_failures".into(),
                sql: include_str!("../migrations/0001_create_login_failures.sql").into(),
            },
            Migration {
                version: 2,
                name: "login_attempts".into(),
                sql: include_str!("../migrations/0002_login_attempts.sql").into(),
            },
            Migration {
                version: 3,
                name: "refresh_tokens".into(),
                sql: include_str!("../migrations/0003_refresh_tokens.sql").into(),
            },
        ]
    }
}
