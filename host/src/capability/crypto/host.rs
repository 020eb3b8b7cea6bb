//! The generated `skiff:crypto` host traits.

use super::bindings::skiff::crypto::{issuing, passwords, tokens};
use super::{BUSY_PREFIX, Crypto, MAX_BCRYPT_COST, Queued};
use service_kit::token::{Claims, Role};

impl passwords::Host for &Crypto {
    #[tracing::instrument(level = "debug", name = "skiff.crypto.hash", skip_all, fields(cost = cost))]
    async fn hash(&mut self, password: String, cost: u32) -> wasmtime::Result<Result<String, String>> {
        if !(4..=MAX_BCRYPT_COST).contains(&cost) {
            return Ok(Err(format!("bcrypt cost must be from 4 to {MAX_BCRYPT_COST}, got {cost}")));
        }
        // A hash can be shed (the caller answers 503); a verify cannot say so through its
        // signature, so it waits its turn (logins are throttled before they get here).
        let Some(queued) = self.bcrypt_queue.try_join() else {
            return Ok(Err(format!("{BUSY_PREFIX} the bcrypt queue is full")));
        };
        self.bcrypt(queued, move || bcrypt::hash(password.as_bytes(), cost).map_err(|e| format!("bcrypt: {e}"))).await
    }

    #[tracing::instrument(level = "debug", name = "skiff.crypto.verify", skip_all)]
    async fn verify(&mut self, password: String, hash: String) -> wasmtime::Result<bool> {
        let queued = self.bcrypt_queue.join();
        self.bcrypt(queued, move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)).await
    }
}

impl Crypto {
    /// Runs `work` on the blocking pool once a bcrypt slot is free; `queued` is its place in the
    /// queue, given up when the work is done.
    async fn bcrypt<T: Send + 'static>(
        &self,
        queued: Queued,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> wasmtime::Result<T> {
        let slot = self
            .bcrypt_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| wasmtime::format_err!("bcrypt pool closed: {e}"))?;
        // The slot goes with the work: a request that gives up (deadline, client gone) cannot
        // stop a hash in progress, and the slot stays taken until the hash is done.
        let work = move || {
            let _slot = slot;
            let _queued = queued;
            work()
        };
        tokio::task::spawn_blocking(work).await.map_err(|e| wasmtime::format_err!("bcrypt task failed: {e}"))
    }
}

impl tokens::Host for &Crypto {
    async fn verify(&mut self, token: String) -> wasmtime::Result<Result<tokens::Claims, tokens::TokenError>> {
        let verifier = match &self.verifier {
            Ok(verifier) => verifier,
            Err(cause) => return Ok(Err(tokens::TokenError::NotConfigured(cause.clone()))),
        };
        let now = chrono::Utc::now().timestamp();
        Ok(match verifier.verify(&token, now) {
            Ok(claims) => Ok(tokens::Claims {
                sub: claims.sub,
                role: match claims.role {
                    Role::User => tokens::Role::User,
                    Role::Admin => tokens::Role::Admin,
                },
                iat: claims.iat,
                exp: claims.exp,
                jti: claims.jti,
            }),
            Err(_) => Err(tokens::TokenError::Unauthorized),
        })
    }
}

impl issuing::Host for &Crypto {
    #[tracing::instrument(level = "debug", name = "skiff.crypto.sign", skip_all)]
    async fn sign(&mut self, claims: tokens::Claims) -> wasmtime::Result<Result<String, tokens::TokenError>> {
        let issuer = match &self.issuer {
            Ok(issuer) => issuer,
            Err(cause) => return Ok(Err(tokens::TokenError::NotConfigured(cause.clone()))),
        };
        let claims = Claims {
            sub: claims.sub,
            role: match claims.role {
                tokens::Role::User => Role::User,
                tokens::Role::Admin => Role::Admin,
            },
            iat: claims.iat,
            exp: claims.exp,
            jti: claims.jti,
        };
        Ok(Ok(issuer.sign(&claims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::crypto::{TOKEN_PUBLIC_KEY, TOKEN_SIGNING_KEY};
    use service_kit::token::{Claims, Issuer, public_key_of};
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn crypto(config: &[(&str, &str)]) -> Crypto {
        let pairs: Vec<(String, String)> = config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Crypto::new(&pairs, Arc::new(Semaphore::new(1)))
    }

    fn token(exp_in: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: "u1".into(), role: Role::Admin, iat: now, exp: now + exp_in, jti: "j1".into() };
        Issuer::from_base64(SEED).unwrap().sign(&claims)
    }

    #[tokio::test]
    async fn hashes_and_verifies_passwords_natively() {
        let mut crypto = &crypto(&[]);
        let hash = passwords::Host::hash(&mut crypto, "correct horse".into(), 4).await.unwrap().unwrap();
        assert!(hash.starts_with("$2b$04$") && !hash.contains("correct horse"));
        assert!(passwords::Host::verify(&mut crypto, "correct horse".into(), hash.clone()).await.unwrap());
        assert!(!passwords::Host::verify(&mut crypto, "wrong horse!".into(), hash).await.unwrap());
        assert!(!passwords::Host::verify(&mut crypto, "x".into(), "not a hash".into()).await.unwrap());
        let refused = passwords::Host::hash(&mut crypto, "correct horse".into(), 3).await.unwrap();
        assert!(refused.unwrap_err().contains("from 4 to 14"));
        // Above the host's cap (31 used to be accepted: hours of CPU per hash).
        let refused = passwords::Host::hash(&mut crypto, "correct horse".into(), 15).await.unwrap();
        assert!(refused.unwrap_err().contains("from 4 to 14"));
    }

    #[tokio::test]
    async fn hashing_is_shed_once_the_bcrypt_queue_is_full() {
        let mut crypto = &crypto(&[]);
        // One bcrypt thread: one running and two waiting fill the queue.
        let places: Vec<_> = (0..3).map(|_| crypto.bcrypt_queue.try_join().unwrap()).collect();
        let shed = passwords::Host::hash(&mut crypto, "correct horse".into(), 4).await.unwrap();
        assert!(shed.unwrap_err().starts_with(BUSY_PREFIX));
        drop(places);
        assert!(passwords::Host::hash(&mut crypto, "correct horse".into(), 4).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn verifies_tokens_against_the_configured_key() {
        let key = public_key_of(SEED).unwrap();
        let mut crypto = &crypto(&[(TOKEN_PUBLIC_KEY, &key)]);
        let claims = tokens::Host::verify(&mut crypto, token(60)).await.unwrap().unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.jti.as_str()), ("u1", tokens::Role::Admin, "j1"));
        let expired = tokens::Host::verify(&mut crypto, token(-3600)).await.unwrap();
        assert!(matches!(expired, Err(tokens::TokenError::Unauthorized)));
        let garbage = tokens::Host::verify(&mut crypto, "a.b.c".into()).await.unwrap();
        assert!(matches!(garbage, Err(tokens::TokenError::Unauthorized)));
    }

    #[tokio::test]
    async fn without_a_key_every_token_is_an_operator_problem() {
        let mut missing = &crypto(&[]);
        let outcome = tokens::Host::verify(&mut missing, token(60)).await.unwrap();
        assert!(matches!(outcome, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains("not configured")));
        let mut broken = &crypto(&[(TOKEN_PUBLIC_KEY, "not base64!")]);
        let outcome = tokens::Host::verify(&mut broken, token(60)).await.unwrap();
        assert!(matches!(outcome, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains(TOKEN_PUBLIC_KEY)));
    }

    #[tokio::test]
    async fn signs_with_the_host_held_key_what_the_public_key_verifies() {
        let key = public_key_of(SEED).unwrap();
        let mut signer = &crypto(&[(TOKEN_PUBLIC_KEY, &key), (TOKEN_SIGNING_KEY, SEED)]);
        let now = chrono::Utc::now().timestamp();
        let claims =
            tokens::Claims { sub: "u2".into(), role: tokens::Role::User, iat: now, exp: now + 60, jti: "j2".into() };
        let token = issuing::Host::sign(&mut signer, claims.clone()).await.unwrap().unwrap();
        let verified = tokens::Host::verify(&mut signer, token).await.unwrap().unwrap();
        assert_eq!((verified.sub, verified.role, verified.exp), (claims.sub.clone(), claims.role, claims.exp));
        let mut unconfigured = &crypto(&[(TOKEN_PUBLIC_KEY, &key)]);
        let refused = issuing::Host::sign(&mut unconfigured, claims).await.unwrap();
        assert!(matches!(refused, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains(TOKEN_SIGNING_KEY)));
    }
}
