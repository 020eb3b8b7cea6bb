//! What every skiff service component shares, free of WIT bindings so it is unit-tested
//! natively: request/response values and the `wasi:http` glue macro, problem+json, bearer
//! tokens, RFC 3339 time and UUIDs.

pub mod http;
pub mod json;
pub mod problem;
pub mod query;
pub mod time;
pub mod token;
pub mod trace;
pub mod uuid;
