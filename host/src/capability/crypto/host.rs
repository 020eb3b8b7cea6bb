//! The generated `skiff:crypto` host traits.

use super::bindings::skiff::crypto::{issuing, passwords, tokens};
use super::token::{Claims, Role};
use super::{BUSY_PREFIX, CALLER_GONE_PREFIX, CallerGone, Crypto, CryptoView, MAX_BCRYPT_COST, Queued};

// The one conversion between the claims components see (`skiff:crypto/tokens`) and the claims
// a token carries.
impl From<Claims> for tokens::Claims {
    fn from(claims: Claims) -> Self {
        let role = match claims.role {
            Role::User => tokens::Role::User,
            Role::Admin => tokens::Role::Admin,
        };
        Self { sub: claims.sub, role, iat: claims.iat, exp: claims.exp, jti: claims.jti }
    }
}

impl From<tokens::Claims> for Claims {
    fn from(claims: tokens::Claims) -> Self {
        let role = match claims.role {
            tokens::Role::User => Role::User,
            tokens::Role::Admin => Role::Admin,
        };
        Self { sub: claims.sub, role, iat: claims.iat, exp: claims.exp, jti: claims.jti }
    }
}

impl passwords::Host for CryptoView {
    #[tracing::instrument(level = "debug", name = "skiff.crypto.hash", skip_all, fields(cost = cost))]
    async fn hash(&mut self, password: String, cost: u32) -> wasmtime::Result<Result<String, String>> {
        if !(4..=MAX_BCRYPT_COST).contains(&cost) {
            return Ok(Err(format!("bcrypt cost must be from 4 to {MAX_BCRYPT_COST}, got {cost}")));
        }
        // A hash can be shed (the caller answers 503); a verify cannot say so through its
        // signature, so it waits its turn (logins are throttled before they get here, and each
        // waiting verify holds one of the service's bounded instance slots).
        let Some(queued) = self.crypto.bcrypt_queue.try_join() else {
            return Ok(Err(format!("{BUSY_PREFIX} the bcrypt queue is full")));
        };
        let hashed = self
            .crypto
            .bcrypt(queued, &self.caller_gone, move || {
                bcrypt::hash(password.as_bytes(), cost).map_err(|e| format!("bcrypt: {e}"))
            })
            .await?;
        Ok(hashed.unwrap_or_else(|| Err(format!("{CALLER_GONE_PREFIX} nobody waits for the answer: not hashed"))))
    }

    #[tracing::instrument(level = "debug", name = "skiff.crypto.verify", skip_all)]
    async fn verify(&mut self, password: String, hash: String) -> wasmtime::Result<bool> {
        let queued = self.crypto.bcrypt_queue.join();
        let verified = self
            .crypto
            .bcrypt(queued, &self.caller_gone, move || bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false))
            .await?;
        // Not checked because nobody waits for the answer: not a match.
        Ok(verified.unwrap_or(false))
    }
}

impl Crypto {
    /// Runs `work` on the blocking pool once a bcrypt slot is free; `queued` is its place in the
    /// queue, given up when the work is done. `None`, without running `work`, when the caller
    /// goes away before a slot is free: a hash nobody will read is not started.
    async fn bcrypt<T: Send + 'static>(
        &self,
        queued: Queued,
        caller_gone: &CallerGone,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> wasmtime::Result<Option<T>> {
        let slot = tokio::select! {
            biased;
            () = caller_gone.cancelled() => return Ok(None),
            slot = self.bcrypt_slots.clone().acquire_owned() => {
                slot.map_err(|e| wasmtime::format_err!("bcrypt pool closed: {e}"))?
            }
        };
        // The slot goes with the work: a request that gives up (deadline, client gone) cannot
        // stop a hash in progress, and the slot stays taken until the hash is done.
        let work = move || {
            let _slot = slot;
            let _queued = queued;
            work()
        };
        let done = tokio::task::spawn_blocking(work).await;
        done.map(Some).map_err(|e| wasmtime::format_err!("bcrypt task failed: {e}"))
    }
}

impl tokens::Host for CryptoView {
    async fn verify(&mut self, token: String) -> wasmtime::Result<Result<tokens::Claims, tokens::TokenError>> {
        let verifier = match &self.crypto.verifier {
            Ok(verifier) => verifier,
            Err(cause) => return Ok(Err(tokens::TokenError::NotConfigured(cause.clone()))),
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let verified = self.crypto.token_cache.verify(verifier, &token, now_ms);
        Ok(verified.map(tokens::Claims::from).map_err(|_| tokens::TokenError::Unauthorized))
    }
}

impl issuing::Host for CryptoView {
    #[tracing::instrument(level = "debug", name = "skiff.crypto.sign", skip_all)]
    async fn sign(&mut self, claims: tokens::Claims) -> wasmtime::Result<Result<String, tokens::TokenError>> {
        let issuer = match &self.crypto.issuer {
            Ok(issuer) => issuer,
            Err(cause) => return Ok(Err(tokens::TokenError::NotConfigured(cause.clone()))),
        };
        Ok(Ok(issuer.sign(&Claims::from(claims))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::crypto::token::{Claims, Issuer, public_key_of};
    use crate::capability::crypto::{CryptoSettings, TOKEN_PUBLIC_KEY, TOKEN_SIGNING_KEY};
    use crate::metrics::Metrics;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    /// What an instance's crypto calls see, with one bcrypt thread.
    fn crypto(config: &[(&str, &str)]) -> CryptoView {
        let pairs: Vec<(String, String)> = config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        CryptoView {
            crypto: Arc::new(Crypto::new(
                &pairs,
                Arc::new(Semaphore::new(1)),
                CryptoSettings::default(),
                &Metrics::default(),
            )),
            caller_gone: CallerGone::new(),
        }
    }

    fn token(exp_in: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: "u1".into(), role: Role::Admin, iat: now, exp: now + exp_in, jti: "j1".into() };
        Issuer::from_base64(SEED).unwrap().sign(&claims)
    }

    #[tokio::test]
    async fn hashes_and_verifies_passwords_natively() {
        let mut crypto = crypto(&[]);
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
        let mut crypto = crypto(&[]);
        // One bcrypt thread: one running and two waiting fill the queue.
        let places: Vec<_> = (0..3).map(|_| crypto.crypto.bcrypt_queue.try_join().unwrap()).collect();
        let shed = passwords::Host::hash(&mut crypto, "correct horse".into(), 4).await.unwrap();
        assert!(shed.unwrap_err().starts_with(BUSY_PREFIX));
        drop(places);
        assert!(passwords::Host::hash(&mut crypto, "correct horse".into(), 4).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_hash_whose_caller_has_gone_is_not_started() {
        let mut crypto = crypto(&[]);
        // The one bcrypt thread is busy: the hash waits for it.
        let busy = crypto.crypto.bcrypt_slots.clone().acquire_owned().await.unwrap();
        let mut waiting = crypto.clone_for_test();
        let hash = tokio::spawn(async move { passwords::Host::hash(&mut waiting, "correct horse".into(), 4).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        crypto.caller_gone.cancel();
        let refused = hash.await.unwrap().unwrap().unwrap_err();
        assert!(refused.starts_with(CALLER_GONE_PREFIX), "{refused}");
        // It gave its place in the queue back, and never took the thread.
        assert_eq!(crypto.crypto.bcrypt_slots.available_permits(), 0);
        drop(busy);
        assert_eq!(crypto.crypto.bcrypt_queue.queued.load(std::sync::atomic::Ordering::Acquire), 0);
        // A verify for nobody is not a match, and not run either.
        assert!(!passwords::Host::verify(&mut crypto, "x".into(), "y".into()).await.unwrap());
    }

    impl CryptoView {
        fn clone_for_test(&self) -> Self {
            Self { crypto: self.crypto.clone(), caller_gone: self.caller_gone.clone() }
        }
    }

    #[tokio::test]
    async fn verifies_tokens_against_the_configured_key() {
        let key = public_key_of(SEED).unwrap();
        let mut crypto = crypto(&[(TOKEN_PUBLIC_KEY, &key)]);
        let claims = tokens::Host::verify(&mut crypto, token(60)).await.unwrap().unwrap();
        assert_eq!((claims.sub.as_str(), claims.role, claims.jti.as_str()), ("u1", tokens::Role::Admin, "j1"));
        let expired = tokens::Host::verify(&mut crypto, token(-3600)).await.unwrap();
        assert!(matches!(expired, Err(tokens::TokenError::Unauthorized)));
        let garbage = tokens::Host::verify(&mut crypto, "a.b.c".into()).await.unwrap();
        assert!(matches!(garbage, Err(tokens::TokenError::Unauthorized)));
    }

    #[tokio::test]
    async fn without_a_key_every_token_is_an_operator_problem() {
        let mut missing = crypto(&[]);
        let outcome = tokens::Host::verify(&mut missing, token(60)).await.unwrap();
        assert!(matches!(outcome, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains("not configured")));
        let mut broken = crypto(&[(TOKEN_PUBLIC_KEY, "not base64!")]);
        let outcome = tokens::Host::verify(&mut broken, token(60)).await.unwrap();
        assert!(matches!(outcome, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains(TOKEN_PUBLIC_KEY)));
    }

    #[tokio::test]
    async fn signs_with_the_host_held_key_what_the_public_key_verifies() {
        let key = public_key_of(SEED).unwrap();
        let mut signer = crypto(&[(TOKEN_PUBLIC_KEY, &key), (TOKEN_SIGNING_KEY, SEED)]);
        let now = chrono::Utc::now().timestamp();
        let claims =
            tokens::Claims { sub: "u2".into(), role: tokens::Role::User, iat: now, exp: now + 60, jti: "j2".into() };
        let token = issuing::Host::sign(&mut signer, claims.clone()).await.unwrap().unwrap();
        let verified = tokens::Host::verify(&mut signer, token).await.unwrap().unwrap();
        assert_eq!((verified.sub, verified.role, verified.exp), (claims.sub.clone(), claims.role, claims.exp));
        let mut unconfigured = crypto(&[(TOKEN_PUBLIC_KEY, &key)]);
        let refused = issuing::Host::sign(&mut unconfigured, claims).await.unwrap();
        assert!(matches!(refused, Err(tokens::TokenError::NotConfigured(cause)) if cause.contains(TOKEN_SIGNING_KEY)));
    }
}
