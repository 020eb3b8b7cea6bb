//! Signed events: the publishing host signs each message with its service's Ed25519 key as
//! the relay hands it to the broker, and the consuming host checks the signature against the
//! publishers it trusts before any component sees the message. Broker credentials alone then
//! let nobody put words in a service's mouth: a forged, altered or unsigned message is
//! dead-lettered with the reason.
//!
//! What is signed: the publisher's name, the exchange, the message id, routing key, content
//! type and body, each length-prefixed so that no two messages sign the same bytes. Headers
//! are not signed (`traceparent` is advisory), and the host's own headers are stripped from
//! whatever a component publishes. A replayed message verifies; consumers deduplicate by id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::HashMap;

use super::client::{HOST_HEADER_PREFIX, OutboundMessage};

/// The setting with the publishing service's key: base64 of the 32-byte Ed25519 seed. A
/// secret the host keeps: components never see it.
pub const EVENT_SIGNING_KEY: &str = "event_signing_key";
/// The setting with the publishers a consuming service trusts: `name=base64 public key`,
/// comma-separated (`auth=MCow…,billing=…`).
pub const EVENT_TRUSTED_KEYS: &str = "event_trusted_keys";
pub const PUBLISHER_HEADER: &str = "x-skiff-publisher";
pub const SIGNATURE_HEADER: &str = "x-skiff-signature";

/// Signs what one service publishes.
pub struct EventSigner {
    publisher: String,
    key: SigningKey,
}

impl EventSigner {
    /// `seed` is the base64 setting value.
    pub fn new(publisher: &str, seed: &str) -> Result<Self, String> {
        Ok(Self::with_key(publisher, signing_key(seed)?))
    }

    pub fn with_key(publisher: &str, key: SigningKey) -> Self {
        Self { publisher: publisher.to_owned(), key }
    }

    /// `message` with the publisher and signature headers in place of any the host's prefix
    /// already had.
    pub fn sign(&self, message: &mut OutboundMessage) {
        message.headers.retain(|(name, _)| !is_host_header(name));
        let signature = self.key.sign(&signed_bytes(&self.publisher, message));
        message.headers.push((PUBLISHER_HEADER.into(), self.publisher.clone()));
        message.headers.push((SIGNATURE_HEADER.into(), STANDARD.encode(signature.to_bytes())));
    }
}

/// The key in an `event_signing_key` setting (base64 of the 32-byte seed).
pub fn signing_key(seed: &str) -> Result<SigningKey, String> {
    let bytes: [u8; 32] = STANDARD
        .decode(seed.trim())
        .map_err(|e| format!("{EVENT_SIGNING_KEY} is not base64: {e}"))?
        .try_into()
        .map_err(|_| format!("{EVENT_SIGNING_KEY} must be 32 bytes"))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// The publishers a consuming service accepts messages from, by name.
#[derive(Debug, Default)]
pub struct TrustedPublishers(HashMap<String, VerifyingKey>);

impl TrustedPublishers {
    /// Parses the `event_trusted_keys` setting.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut keys = HashMap::new();
        for entry in setting.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            let Some((name, key)) = entry.split_once('=') else {
                return Err(format!("{EVENT_TRUSTED_KEYS}: {entry:?} is not name=key"));
            };
            let bytes: [u8; 32] = STANDARD
                .decode(key.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("{EVENT_TRUSTED_KEYS}: the key of {name:?} is not 32 bytes of base64"))?;
            let key = VerifyingKey::from_bytes(&bytes)
                .map_err(|e| format!("{EVENT_TRUSTED_KEYS}: the key of {name:?}: {e}"))?;
            keys.insert(name.trim().to_owned(), key);
        }
        if keys.is_empty() {
            return Err(format!("{EVENT_TRUSTED_KEYS} names no publisher"));
        }
        Ok(Self(keys))
    }

    /// The publisher's name if `message` carries a valid signature of a trusted publisher;
    /// otherwise why not, for the dead-letter queue.
    pub fn verify<'m>(&self, message: &'m OutboundMessage) -> Result<&'m str, String> {
        let header = |name: &str| message.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let (Some(publisher), Some(signature)) = (header(PUBLISHER_HEADER), header(SIGNATURE_HEADER)) else {
            return Err("unsigned: no x-skiff-publisher and x-skiff-signature headers".into());
        };
        let Some(key) = self.0.get(publisher) else {
            return Err(format!("signed by {publisher:?}, which this service does not trust"));
        };
        let signature = STANDARD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or("the signature is not 64 bytes of base64")?;
        key.verify(&signed_bytes(publisher, message), &signature)
            .map_err(|_| format!("the signature does not match the message or {publisher:?}'s key"))?;
        Ok(publisher)
    }
}

/// Whether a header name is reserved for the host.
pub fn is_host_header(name: &str) -> bool {
    name.len() >= HOST_HEADER_PREFIX.len() && name[..HOST_HEADER_PREFIX.len()].eq_ignore_ascii_case(HOST_HEADER_PREFIX)
}

fn signed_bytes(publisher: &str, message: &OutboundMessage) -> Vec<u8> {
    let fields: [&[u8]; 6] = [
        publisher.as_bytes(),
        message.exchange.name.as_bytes(),
        message.id.as_bytes(),
        message.routing_key.as_bytes(),
        message.content_type.as_bytes(),
        &message.body,
    ];
    let mut bytes = b"skiff-event-v1".to_vec();
    for field in fields {
        bytes.extend_from_slice(&(field.len() as u64).to_be_bytes());
        bytes.extend_from_slice(field);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::messaging::client::{Exchange, ExchangeKind};

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn public_key(seed: &str) -> String {
        let seed: [u8; 32] = STANDARD.decode(seed).unwrap().try_into().unwrap();
        STANDARD.encode(SigningKey::from_bytes(&seed).verifying_key().to_bytes())
    }

    fn event() -> OutboundMessage {
        OutboundMessage {
            exchange: Exchange::new("user_login_event", ExchangeKind::Fanout),
            id: "e1".into(),
            routing_key: String::new(),
            content_type: "application/json".into(),
            headers: vec![("traceparent".into(), "00-abc-01".into()), ("X-Skiff-Attempt".into(), "9".into())],
            body: br#"{"user_id":"u1"}"#.to_vec(),
        }
    }

    #[test]
    fn a_signed_event_verifies_and_any_change_to_it_does_not() {
        let signer = EventSigner::new("auth", SEED).unwrap();
        let trusted = TrustedPublishers::parse(&format!("auth={}", public_key(SEED))).unwrap();
        let mut signed = event();
        signer.sign(&mut signed);
        assert_eq!(trusted.verify(&signed), Ok("auth"));
        assert!(
            !signed.headers.iter().any(|(name, _)| name == "X-Skiff-Attempt"),
            "a component's host header is dropped"
        );

        let mut body = signed.clone();
        body.body = br#"{"user_id":"admin"}"#.to_vec();
        assert!(trusted.verify(&body).unwrap_err().contains("does not match"));
        let mut id = signed.clone();
        id.id = "e2".into();
        assert!(trusted.verify(&id).is_err());
        let mut exchange = signed.clone();
        exchange.exchange.name = "other".into();
        assert!(trusted.verify(&exchange).is_err());
        // Headers outside the host's are not signed: a trace id may change on the way.
        let mut traced = signed.clone();
        traced.headers[0].1 = "00-def-01".into();
        assert_eq!(trusted.verify(&traced), Ok("auth"));
    }

    #[test]
    fn unsigned_untrusted_and_garbled_events_are_refused_with_the_reason() {
        let trusted = TrustedPublishers::parse(&format!("auth={}", public_key(SEED))).unwrap();
        assert!(trusted.verify(&event()).unwrap_err().starts_with("unsigned"));

        // Signed by a key the consumer does not hold, under a trusted name.
        let other_seed = STANDARD.encode([7u8; 32]);
        let mut impostor = event();
        EventSigner::new("auth", &other_seed).unwrap().sign(&mut impostor);
        assert!(trusted.verify(&impostor).unwrap_err().contains("does not match"));

        // Signed correctly, by a publisher nobody trusts.
        let mut stranger = event();
        EventSigner::new("billing", SEED).unwrap().sign(&mut stranger);
        assert!(trusted.verify(&stranger).unwrap_err().contains("does not trust"));

        let mut garbled = event();
        garbled.headers.push((PUBLISHER_HEADER.into(), "auth".into()));
        garbled.headers.push((SIGNATURE_HEADER.into(), "not base64!".into()));
        assert!(trusted.verify(&garbled).unwrap_err().contains("64 bytes"));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        assert!(EventSigner::new("auth", "short").is_err());
        assert!(TrustedPublishers::parse("").is_err());
        assert!(TrustedPublishers::parse("auth").is_err());
        assert!(TrustedPublishers::parse("auth=AAAA").is_err());
        let two = format!("auth={}, billing={}", public_key(SEED), public_key(SEED));
        assert_eq!(TrustedPublishers::parse(&two).unwrap().0.len(), 2);
    }
}
