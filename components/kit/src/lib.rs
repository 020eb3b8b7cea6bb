//! What every skiff service component shares: the platform's WIT bindings (generated once,
//! reused by every component with wit-bindgen's `with`), the macros that generate a component's
//! own bindings, its `wasi:http` export and its migrations, request/response values and the
//! `wasi:http` glue, the host helpers, problem+json and the common API errors, SQL errors and
//! rows, pagination, sliding-window throttles, bearer tokens, RFC 3339 time and UUIDs. Everything but the calls into the
//! host is unit-tested natively.

pub mod bindings;
pub mod component;
pub mod error;
pub mod http;
pub mod json;
pub mod page;
pub mod platform;
pub mod problem;
pub mod query;
pub mod sql;
pub mod throttle;
pub mod time;
pub mod token;
pub mod trace;
pub mod uuid;
pub mod wasi_http;
