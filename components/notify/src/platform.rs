//! What the component asks of its host besides HTTP and SQL: settings, time, randomness.

use service_kit::http::Request;
use service_kit::token::{BearerError, Claims, Role};

use crate::bindings::skiff::crypto::tokens;
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

/// The claims of the request's `Authorization: Bearer` token, which the host checks natively
/// against the `token_public_key` setting.
pub fn verify_bearer(request: &Request) -> Result<Claims, BearerError> {
    let token = request.bearer_token().ok_or(BearerError::Unauthorized)?;
    match tokens::verify(token) {
        Ok(claims) => Ok(Claims {
            sub: claims.sub,
            role: match claims.role {
                tokens::Role::User => Role::User,
                tokens::Role::Admin => Role::Admin,
            },
            iat: claims.iat,
            exp: claims.exp,
            jti: claims.jti,
        }),
        Err(tokens::TokenError::Unauthorized) => Err(BearerError::Unauthorized),
        Err(tokens::TokenError::NotConfigured(cause)) => Err(BearerError::NotConfigured(cause)),
    }
}
