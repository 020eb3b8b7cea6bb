//! What a component asks of its host besides HTTP and SQL: settings, time, randomness, bearer
//! token checks and signing, publishing and logging. Thin calls into the host; the rules around them live in the
//! modules that are tested natively.

use crate::bindings::skiff::crypto::{issuing, tokens};
use crate::bindings::skiff::messaging::producer;
pub use crate::bindings::skiff::messaging::types::ExchangeKind;
use crate::bindings::skiff::messaging::types::{self as messaging, Message};
use crate::bindings::skiff::sql::client::Transaction;
use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::logging::logging;
use crate::bindings::wasi::random::random;
use crate::http::Request;
use crate::token::{BearerError, Claims};

/// A setting from `wasi:config`; `Err` only when the host cannot answer.
pub fn setting(key: &str) -> Result<Option<String>, String> {
    config::get(key).map_err(|e| format!("config {key}: {e:?}"))
}

/// The wall-clock time in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = wall_clock::now();
    i64::try_from(now.seconds).unwrap_or(i64::MAX) * 1_000_000 + i64::from(now.nanoseconds / 1000)
}

/// `N` bytes from the host's secure random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let fresh = random::get_random_bytes(N as u64);
    bytes.copy_from_slice(&fresh[..N]);
    bytes
}

/// A new random (version 4) UUID in its canonical text form.
pub fn new_uuid() -> String {
    crate::uuid::from_random_bytes(random_bytes())
}

/// The request's bearer token, checked by the host natively (`skiff:crypto/tokens`, against
/// the service's `token_public_key`).
pub fn verify_bearer(request: &Request) -> Result<Claims, BearerError> {
    let token = request.bearer_token().ok_or(BearerError::Unauthorized)?;
    tokens::verify(token).map_err(|error| match error {
        tokens::TokenError::Unauthorized => BearerError::Unauthorized,
        tokens::TokenError::NotConfigured(cause) => BearerError::NotConfigured(cause),
    })
}

/// The bearer token for `claims`, signed by the host with its `token_signing_key` (which no
/// component can read); `Err` says why the host cannot sign.
pub fn sign_token(claims: Claims) -> Result<String, String> {
    issuing::sign(&claims).map_err(|error| match error {
        tokens::TokenError::NotConfigured(cause) => cause,
        tokens::TokenError::Unauthorized => "the host refused to sign the token".into(),
    })
}

/// A warning in the host's log (`wasi:logging`), under the request's span: with the request id,
/// service and version, as JSON in production.
pub fn log_warning(context: &str, message: &str) {
    emit(logging::Level::Warn, context, message);
}

/// An error in the host's log; see [`log_warning`].
pub fn log_error(context: &str, message: &str) {
    emit(logging::Level::Error, context, message);
}

#[cfg(target_arch = "wasm32")]
fn emit(level: logging::Level, context: &str, message: &str) {
    logging::log(level, context, message);
}

/// Native builds are the unit tests, which have no host to log to.
#[cfg(not(target_arch = "wasm32"))]
fn emit(level: logging::Level, context: &str, message: &str) {
    eprintln!("{level:?} {context}: {message}");
}

/// An exchange a component publishes to or consumes from, named once as a constant in its
/// domain module. Every service that uses it must give the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub name: &'static str,
    pub kind: ExchangeKind,
}

impl Exchange {
    /// Events: every bound queue gets every message.
    pub const fn fanout(name: &'static str) -> Self {
        Self { name, kind: ExchangeKind::Fanout }
    }

    /// Routed by routing key against each queue's binding pattern.
    pub const fn topic(name: &'static str) -> Self {
        Self { name, kind: ExchangeKind::Topic }
    }

    /// The exchange as `skiff:messaging` takes it.
    pub fn to_wit(self) -> messaging::Exchange {
        messaging::Exchange { name: self.name.to_owned(), kind: self.kind }
    }
}

/// A JSON event for [`publish`] or [`publish_in`]: `id` is what consumers deduplicate on, and
/// `routing_key` what a topic exchange routes on.
pub fn json_message(id: &str, routing_key: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Message {
    Message {
        id: id.to_owned(),
        routing_key: routing_key.to_owned(),
        content_type: "application/json".into(),
        headers,
        body,
    }
}

/// Hands `message` to the host's outbox, which delivers it to `exchange`.
pub fn publish(exchange: Exchange, message: &Message) -> Result<(), String> {
    producer::publish(&exchange.to_wit(), message).map_err(|e| format!("{e:?}"))
}

/// Like [`publish`], inside `tx`: the event goes out once `tx` commits, never if it rolls back.
pub fn publish_in(tx: &Transaction, exchange: Exchange, message: &Message) -> Result<(), String> {
    producer::publish_in(tx, &exchange.to_wit(), message).map_err(|e| format!("{e:?}"))
}
