//! Bearer tokens: JWTs signed with Ed25519 (`alg: EdDSA`). The host of auth holds the signing
//! key; every other host verifies with the public key, without calling auth. Components never
//! see a key: they ask `skiff:crypto` to sign or verify.
//!
//! This file uses nothing of the host's but its dependencies, so the fuzz target compiles it
//! on its own (`fuzz/fuzz_targets/token_verify.rs`) instead of the whole host.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// The claims skiff tokens carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Token id.
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    WrongAlgorithm,
    BadSignature,
    Expired,
    /// Signed with the right key but not a skiff access token (`iss` or `aud` differ, or are
    /// missing): a token of another kind or for another audience must not open the API.
    WrongAudience,
    /// Its `nbf` (not before) is still ahead, past the leeway.
    NotYetValid,
    /// Its header names critical extensions (`crit`, RFC 7515 §4.1.11): skiff understands none,
    /// so the token cannot be checked as its issuer meant.
    CriticalExtension,
    /// It was issued to live longer (`exp` − `iat`) than the verifier allows: a token minted
    /// with a signing key outside auth's rules (auth issues at most 15 minutes).
    TooLong,
}

const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;
/// The `iss` of every access token: auth issues them.
pub const ISSUER: &str = "skiff-auth";
/// The `aud` of every access token: the skiff services' APIs.
pub const AUDIENCE: &str = "skiff-api";

/// The payload as signed: the claims with the issuer and audience beside them.
#[derive(Serialize)]
struct SignedPayload<'a> {
    #[serde(flatten)]
    claims: &'a Claims,
    iss: &'a str,
    aud: &'a str,
}

/// The payload as read: `aud` may be one string or a list (RFC 7519).
#[derive(Deserialize)]
struct ReadPayload {
    #[serde(flatten)]
    claims: Claims,
    iss: Option<String>,
    aud: Option<Audience>,
    /// Not before, seconds since the epoch (RFC 7519 §4.1.5); auth sets none.
    nbf: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn includes(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}
/// Clock difference tolerated between issuer and verifier.
pub const LEEWAY_SECS: i64 = 30;
/// The longest lifetime (`exp` − `iat`) a verifier accepts unless told otherwise: auth's
/// longest `token_ttl_secs`.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 900;

/// Reads a key given as base64 of its 32 raw bytes (the Ed25519 seed for a private key).
fn key_bytes(text: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("expected 32 bytes, got {}", b.len()))
}

/// auth's signing key.
pub struct Issuer(SigningKey);

impl Issuer {
    pub fn from_base64(seed: &str) -> Result<Self, String> {
        Ok(Self(SigningKey::from_bytes(&key_bytes(seed)?)))
    }

    /// Signs `claims` as an access token, with [`ISSUER`] and [`AUDIENCE`].
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(&SignedPayload { claims, iss: ISSUER, aud: AUDIENCE }).unwrap_or_default();
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let signature = self.0.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// A service's verifying key, and the longest token lifetime it accepts.
pub struct Verifier {
    key: VerifyingKey,
    max_lifetime_secs: i64,
}

impl Verifier {
    /// With [`DEFAULT_MAX_LIFETIME_SECS`].
    pub fn from_base64(public_key: &str) -> Result<Self, String> {
        let key = VerifyingKey::from_bytes(&key_bytes(public_key)?).map_err(|e| format!("not an Ed25519 key: {e}"))?;
        Ok(Self { key, max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS })
    }

    /// Refuses tokens issued to live longer than `secs`.
    pub fn with_max_lifetime(self, secs: i64) -> Self {
        Self { max_lifetime_secs: secs, ..self }
    }

    /// Checks the algorithm and that the header asks for no extension, the signature, the
    /// issuer and audience, the lifetime, and at `now` (seconds since the epoch) the expiry and
    /// `nbf`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = decode_json(header)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
            return Err(TokenError::WrongAlgorithm);
        }
        if header.get("crit").is_some() {
            return Err(TokenError::CriticalExtension);
        }
        let signature_bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?
            .try_into()
            .map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..header_len(token)];
        self.key
            .verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        let payload: ReadPayload = decode_json(payload)?;
        if payload.iss.as_deref() != Some(ISSUER) || !payload.aud.is_some_and(|aud| aud.includes(AUDIENCE)) {
            return Err(TokenError::WrongAudience);
        }
        let claims = payload.claims;
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime_secs {
            return Err(TokenError::TooLong);
        }
        claims.ensure_current_at(now)?;
        if payload.nbf.is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECS) > now) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

impl Claims {
    /// Whether a token with these claims may be used at `now` (seconds since the epoch): not
    /// expired and not issued in the future, within [`LEEWAY_SECS`]. [`Verifier::verify`] checks
    /// it, and so does anything that remembers claims it verified earlier.
    pub fn ensure_current_at(&self, now: i64) -> Result<(), TokenError> {
        if self.exp + LEEWAY_SECS < now || self.iat - LEEWAY_SECS > now {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Length of `header.payload`, the signed part.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// The public key of a base64 seed, base64-encoded: what to give the verifying services.
pub fn public_key_of(seed: &str) -> Result<String, String> {
    let signing = SigningKey::from_bytes(&key_bytes(seed)?);
    Ok(STANDARD.encode(signing.verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn claims(exp: i64) -> Claims {
        Claims { sub: "user-1".into(), role: Role::User, iat: 1_000, exp, jti: "t1".into() }
    }

    /// A verifier that allows these tests' 1,000-second tokens.
    fn pair() -> (Issuer, Verifier) {
        let verifier = Verifier::from_base64(&public_key_of(SEED).unwrap()).unwrap().with_max_lifetime(1_000);
        (Issuer::from_base64(SEED).unwrap(), verifier)
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let (issuer, verifier) = pair();
        let token = issuer.sign(&claims(2_000));
        assert_eq!(verifier.verify(&token, 1_500), Ok(claims(2_000)));
        assert_eq!(verifier.verify(&token, 2_031), Err(TokenError::Expired));
        assert_eq!(verifier.verify(&token, 1_000 - LEEWAY_SECS), Ok(claims(2_000)), "within the leeway");
        assert_eq!(verifier.verify(&token, 1_000 - LEEWAY_SECS - 1), Err(TokenError::Expired), "issued in the future");
    }

    #[test]
    fn forged_and_garbled_tokens_are_refused() {
        let (issuer, verifier) = pair();
        let token = issuer.sign(&claims(2_000));
        let (signed, _) = token.rsplit_once('.').unwrap();
        // Same header and signature, claims changed to admin.
        let mut forged_claims = claims(2_000);
        forged_claims.role = Role::Admin;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_claims).unwrap());
        let header = signed.split('.').next().unwrap();
        let forged = format!("{header}.{forged_payload}.{}", token.rsplit('.').next().unwrap());
        assert_eq!(verifier.verify(&forged, 1_500), Err(TokenError::BadSignature));
        // Signed by another key.
        let other = Issuer::from_base64("HwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap().sign(&claims(2_000));
        assert_eq!(verifier.verify(&other, 1_500), Err(TokenError::BadSignature));
        // alg:none and HS256 are refused before any signature check.
        let none = format!("{}.{forged_payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(verifier.verify(&none, 1_500), Err(TokenError::WrongAlgorithm));
        let hs = format!("{}.{forged_payload}.AAAA", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#));
        assert_eq!(verifier.verify(&hs, 1_500), Err(TokenError::WrongAlgorithm));
        for garbage in ["", "a.b", "a.b.c.d", "!!!.???.###"] {
            assert_eq!(verifier.verify(garbage, 1_500), Err(TokenError::Malformed), "{garbage:?}");
        }
    }

    /// A token signed with the right key around `payload` (the claims as JSON).
    fn signed(payload: &serde_json::Value) -> String {
        signed_with_header(HEADER, payload)
    }

    fn signed_with_header(header: &str, payload: &serde_json::Value) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload.to_string()));
        let key = SigningKey::from_bytes(&key_bytes(SEED).unwrap());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes()))
    }

    #[test]
    fn tokens_for_another_issuer_or_audience_are_refused() {
        let (issuer, verifier) = pair();
        let token = issuer.sign(&claims(2_000));
        let payload: serde_json::Value = decode_json(token.split('.').nth(1).unwrap()).unwrap();
        assert_eq!((payload["iss"].as_str(), payload["aud"].as_str()), (Some(ISSUER), Some(AUDIENCE)));
        let base = serde_json::json!({"sub": "user-1", "role": "user", "iat": 1_000, "exp": 2_000, "jti": "t1"});
        let with = |extra: serde_json::Value| {
            let mut payload = base.clone();
            payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            verifier.verify(&signed(&payload), 1_500)
        };
        assert_eq!(with(serde_json::json!({})), Err(TokenError::WrongAudience), "neither");
        assert_eq!(with(serde_json::json!({"iss": ISSUER})), Err(TokenError::WrongAudience), "no aud");
        assert_eq!(with(serde_json::json!({"aud": AUDIENCE})), Err(TokenError::WrongAudience), "no iss");
        assert_eq!(with(serde_json::json!({"iss": "other", "aud": AUDIENCE})), Err(TokenError::WrongAudience));
        assert_eq!(with(serde_json::json!({"iss": ISSUER, "aud": "other"})), Err(TokenError::WrongAudience));
        assert_eq!(with(serde_json::json!({"iss": ISSUER, "aud": ["other", AUDIENCE]})), Ok(claims(2_000)));
    }

    #[test]
    fn not_before_critical_extensions_and_overlong_lifetimes_are_refused() {
        let verifier = Verifier::from_base64(&public_key_of(SEED).unwrap()).unwrap();
        let claims = |exp: i64| Claims { sub: "user-1".into(), role: Role::User, iat: 1_000, exp, jti: "t1".into() };
        let token = |extra: serde_json::Value| {
            let mut payload = serde_json::json!({"sub": "user-1", "role": "user", "iat": 1_000, "exp": 1_900,
                "jti": "t1", "iss": ISSUER, "aud": AUDIENCE});
            payload.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            signed(&payload)
        };
        // Lifetime: auth's longest (900 s) is the default ceiling; a second more is refused.
        assert_eq!(verifier.verify(&token(serde_json::json!({})), 1_500), Ok(claims(1_900)));
        let long = token(serde_json::json!({"exp": 1_901}));
        assert_eq!(verifier.verify(&long, 1_500), Err(TokenError::TooLong));
        let year = token(serde_json::json!({"exp": 1_000 + 365 * 86_400}));
        assert_eq!(verifier.verify(&year, 1_500), Err(TokenError::TooLong));
        let verifier = verifier.with_max_lifetime(86_400);
        assert_eq!(verifier.verify(&long, 1_500), Ok(claims(1_901)), "the ceiling is configurable");
        // nbf: not before it, within the leeway.
        let later = token(serde_json::json!({"nbf": 1_600}));
        assert_eq!(verifier.verify(&later, 1_500), Err(TokenError::NotYetValid));
        assert_eq!(verifier.verify(&later, 1_600 - LEEWAY_SECS - 1), Err(TokenError::NotYetValid));
        assert_eq!(verifier.verify(&later, 1_600 - LEEWAY_SECS), Ok(claims(1_900)));
        assert_eq!(verifier.verify(&token(serde_json::json!({"nbf": 1_000})), 1_500), Ok(claims(1_900)));
        let garbled = token(serde_json::json!({"nbf": "soon"}));
        assert_eq!(verifier.verify(&garbled, 1_500), Err(TokenError::Malformed));
        // crit: skiff understands no extension, so any the issuer calls critical is refused,
        // even a well-signed token's.
        let payload = serde_json::json!({"sub": "user-1", "role": "user", "iat": 1_000, "exp": 1_900,
            "jti": "t1", "iss": ISSUER, "aud": AUDIENCE});
        for header in [
            r#"{"alg":"EdDSA","typ":"JWT","crit":["b64"],"b64":false}"#,
            r#"{"alg":"EdDSA","typ":"JWT","crit":["exp"]}"#,
            r#"{"alg":"EdDSA","typ":"JWT","crit":[]}"#,
        ] {
            let token = signed_with_header(header, &payload);
            assert_eq!(verifier.verify(&token, 1_500), Err(TokenError::CriticalExtension), "{header}");
        }
        assert_eq!(verifier.verify(&signed(&payload), 1_500), Ok(claims(1_900)));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(Issuer::from_base64("short").is_err());
        assert!(Verifier::from_base64("AAAA").is_err());
    }
}
