//! Host tests: one binary that loads the real built components and talks to them over real
//! HTTP, on SQLite and on Postgres (`SKIFF_TEST_POSTGRES_URL`, one database per test). The tests
//! that need Postgres or RabbitMQ are `#[ignore]`d, so a plain run lists them as ignored;
//! `cargo test … -- --ignored postgres` and `-- --ignored rabbitmq` run them (`scripts/test`
//! does when the URLs are set). The release tests need Debian's `docker-registry` and are
//! ignored too (`-- --ignored registry`; `scripts/test` runs them when it is installed).
//!
//! Build the components first (`./scripts/test` does): `users` into
//! `target/wasm32-wasip2/release`, the misbehaving `testbed` into `target/wasm32-wasip2/testbed`.

// A failed unwrap is a failed test, with its location: exactly what a test should do.
#![allow(clippy::unwrap_used)]

mod canary_health;
mod component_logs;
mod configuration;
mod edges;
mod enumeration;
mod fixtures;
mod fleet;
mod helpers;
mod host_routes;
mod hostile_registry;
mod isolation;
mod lifecycle;
mod limits;
mod messaging;
mod outbox;
mod precompiled;
mod rabbitmq;
mod rate_limit;
mod registry;
mod reliability;
mod sessions;
mod signup;
mod sql_types;
mod swap;
mod tls;
mod users_api;
mod wait;
