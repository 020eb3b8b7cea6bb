//! The auth service as a WebAssembly component (`skiff:service/publishing-service`): login
//! checks credentials with users (throttled per account and per source
//! address), issues a short-lived access token and a rotating refresh token, and publishes a
//! `user_login_event`; refresh and logout keep and end sessions.

mod api;
pub mod domain;
mod error;
mod store;

service_kit::component!("skiff:service/publishing-service", Component, http: api::handle);
// auth's tables count failed logins for throttling and keep refresh tokens; the same database
// holds the host's outbox.
service_kit::migrations!(Component:
    "0001_create_login_failures",
    "0002_login_attempts",
    "0003_refresh_tokens",
);

struct Component;
