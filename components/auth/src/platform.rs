//! What the component asks of its host besides HTTP: settings, time, randomness, publishing.

use crate::bindings::skiff::messaging::producer;
use crate::bindings::skiff::messaging::types::Message;
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

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let fresh = random::get_random_bytes(N as u64);
    bytes.copy_from_slice(&fresh[..N]);
    bytes
}

/// Hands an event to the host's outbox.
pub fn publish(
    exchange: &str,
    id: &str,
    routing_key: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<(), String> {
    let message = Message {
        id: id.to_owned(),
        routing_key: routing_key.to_owned(),
        content_type: "application/json".into(),
        headers,
        body,
    };
    producer::publish(exchange, &message).map_err(|e| format!("{e:?}"))
}
