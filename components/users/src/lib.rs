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
    wit_bindgen::generate!({
        world: "skiff:service/http-service",
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
        ]
    }
}
