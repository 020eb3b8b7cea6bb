//! What the component asks of its host besides HTTP and SQL: settings, time, randomness.

use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::random::random;

pub fn setting(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|e| format!("config {key}: {e:?}"))
}

pub fn now_micros() -> i64 {
    let now = wall_clock::now();
    i64::try_from(now.seconds).unwrap_or(i64::MAX) * 1_000_000 + i64::from(now.nanoseconds / 1000)
}

pub fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&random::get_random_bytes(16)[..16]);
    bytes
}

// `verify_bearer(request)`: the bearer token, checked by the host.
service_kit::host_verified_bearer!();
