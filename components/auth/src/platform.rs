//! What the component asks of its host besides HTTP: settings, time, randomness, publishing,
//! token signing.

use crate::bindings::skiff::crypto::{issuing, tokens};
use crate::bindings::skiff::messaging::producer;
use crate::bindings::skiff::messaging::types::Message;
use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::random::random;
use service_kit::token::{Claims, Role};

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

/// The bearer token for `claims`, signed by the host with its `token_signing_key`.
pub fn sign_token(claims: Claims) -> Result<String, String> {
    let claims = tokens::Claims {
        sub: claims.sub,
        role: match claims.role {
            Role::User => tokens::Role::User,
            Role::Admin => tokens::Role::Admin,
        },
        iat: claims.iat,
        exp: claims.exp,
        jti: claims.jti,
    };
    issuing::sign(&claims).map_err(|error| match error {
        tokens::TokenError::NotConfigured(cause) => cause,
        tokens::TokenError::Unauthorized => "the host refused to sign".into(),
    })
}
