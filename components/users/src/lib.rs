//! The users service as a WebAssembly component: REST CRUD of user profiles on the
//! `skiff:service/http-service` world. This file only wires WIT to the modules below.

mod api;
pub mod domain;
mod error;
mod platform;
mod store;

service_kit::component!("skiff:service/http-service", Component, http: api::handle);
service_kit::migrations!(Component:
    "0001_create_users",
    "0002_add_role",
    "0003_signup_attempts",
    "0004_password_changed_at",
);

struct Component;
