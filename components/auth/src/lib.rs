//! The auth service as a WebAssembly component (`skiff:service/publishing-service`): login
//! checks credentials with users (throttled per account and per source
//! address), issues a token and publishes a `user_login_event`.

mod api;
pub mod domain;
mod platform;
mod store;

// The generated canonical-ABI glue is the only unsafe code in the component.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({
        world: "skiff:service/publishing-service",
        path: "../../wit",
        generate_all,
    });

    use super::Component;
    export!(Component);
}

service_kit::wasi_http_glue!(Component, api::handle);

use bindings::exports::skiff::sql::migrations::{Guest as Migrations, Migration};

struct Component;

impl Migrations for Component {
    /// auth's one table counts failed logins for throttling; the same database holds the
    /// host's outbox.
    fn all() -> Vec<Migration> {
        vec![Migration {
            version: 1,
            name: "create_login_failures".into(),
            sql: include_str!("../migrations/0001_create_login_failures.sql").into(),
        }]
    }
}
