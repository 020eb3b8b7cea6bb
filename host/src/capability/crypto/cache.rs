//! Tokens verified once, remembered so the same token presented again skips the Ed25519 check
//! (about 43 µs of the ~300 µs of CPU a users GET costs; see docs/benchmarks.md).
//!
//! Verification is a pure function of the token, the process's one public key and the time, so
//! remembering its answer changes no outcome as long as the time is checked again on every hit:
//! a cached token is refused the moment it expires. Only accepted tokens are remembered; a
//! refused one may be retried, and a flood of garbage must neither grow the cache nor push good
//! entries out. Entries are keyed by the SHA-256 of the whole token, so the cache holds no
//! bearer credential and a token differing in any byte (its signature included) is a miss.

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::token::{Claims, TokenError, Verifier};
use crate::metrics::Metrics;

/// How many verified tokens to remember, and for how long at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheOptions {
    /// Entries at most; `0` turns the cache off (every token is verified).
    pub max_entries: usize,
    /// How long an entry is trusted at most, however long its token is valid; past it the
    /// token is verified again.
    pub max_age: Duration,
}

impl Default for TokenCacheOptions {
    /// Ten thousand tokens (about 3 MiB) for a minute: the active sessions of a busy pod, each
    /// costing one signature check a minute instead of one per request, and no entry trusted
    /// longer than that without its signature being checked again.
    fn default() -> Self {
        Self { max_entries: 10_000, max_age: Duration::from_secs(60) }
    }
}

/// SHA-256 of a whole token.
type TokenKey = [u8; 32];

/// Verified claims in front of a [`Verifier`].
pub struct TokenCache {
    /// `None` when the cache is off.
    entries: Option<Mutex<Entries>>,
    max_age_ms: i64,
    hits: Counter,
    misses: Counter,
}

impl TokenCache {
    /// A cache counting its hits and misses in `metrics`.
    pub fn new(options: TokenCacheOptions, metrics: &Metrics) -> Self {
        let entries = (options.max_entries > 0).then(|| Mutex::new(Entries::new(options.max_entries)));
        Self {
            entries,
            max_age_ms: i64::try_from(options.max_age.as_millis()).unwrap_or(i64::MAX),
            hits: metrics.token_cache_hits.clone(),
            misses: metrics.token_cache_misses.clone(),
        }
    }

    /// What `verifier.verify(token, now)` answers, `now` being `now_ms` in whole seconds (as the
    /// verifier reads it), without the signature check when the token was accepted in the last
    /// `max_age`. `now_ms` is milliseconds since the epoch.
    pub fn verify(&self, verifier: &Verifier, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let now = now_ms.div_euclid(1000);
        let Some(entries) = &self.entries else {
            return verifier.verify(token, now);
        };
        // Hashed before taking the lock: the lock is held only for one lookup or one insert.
        let key: TokenKey = Sha256::digest(token.as_bytes()).into();
        let cached = lock(entries).fresh(&key, now_ms, self.max_age_ms).cloned();
        if let Some(claims) = cached {
            self.hits.inc();
            claims.ensure_current_at(now)?;
            return Ok(claims);
        }
        self.misses.inc();
        let claims = verifier.verify(token, now)?;
        lock(entries).insert(key, CachedClaims { claims: claims.clone(), cached_at_ms: now_ms });
        Ok(claims)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| lock(entries).by_key.len())
    }
}

/// The map stays consistent whatever a panicking holder did: every change to it is one
/// `HashMap`/`VecDeque` call.
fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    entries.lock().unwrap_or_else(PoisonError::into_inner)
}

struct CachedClaims {
    claims: Claims,
    cached_at_ms: i64,
}

/// A bounded map that evicts the entry cached first. Every entry is trusted for the same
/// `max_age`, so the one cached first is also the first to go stale: first in, first out keeps
/// the freshest entries without an LRU's reordering on every hit (a hit only reads, under a
/// short lock). A flood of distinct valid tokens (each needs a real login) can push entries out,
/// which costs only a signature check when their tokens come back.
struct Entries {
    by_key: HashMap<TokenKey, CachedClaims>,
    /// Every key of `by_key` once, in the order it was first cached.
    order: VecDeque<TokenKey>,
    max_entries: usize,
}

impl Entries {
    fn new(max_entries: usize) -> Self {
        Self { by_key: HashMap::new(), order: VecDeque::new(), max_entries }
    }

    /// The claims cached for `key` less than `max_age_ms` ago. An entry cached "in the future"
    /// (the wall clock went back) is not trusted either.
    fn fresh(&self, key: &TokenKey, now_ms: i64, max_age_ms: i64) -> Option<&Claims> {
        let entry = self.by_key.get(key)?;
        let age_ms = now_ms.saturating_sub(entry.cached_at_ms);
        (0..max_age_ms).contains(&age_ms).then_some(&entry.claims)
    }

    fn insert(&mut self, key: TokenKey, entry: CachedClaims) {
        if let Some(existing) = self.by_key.get_mut(&key) {
            // Verified again after going stale (or by two requests at once): refreshed where it
            // is, so `order` keeps each key once; it is evicted a little early, never kept long.
            *existing = entry;
            return;
        }
        if self.by_key.len() >= self.max_entries
            && let Some(oldest) = self.order.pop_front()
        {
            self.by_key.remove(&oldest);
        }
        self.by_key.insert(key, entry);
        self.order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::crypto::token::{Issuer, LEEWAY_SECS, Role, public_key_of};

    const SEED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// The tests' clock: tokens are issued at `ISSUED`, seconds since the epoch.
    const ISSUED: i64 = 1_800_000_000;

    /// Allows the hour-long tokens some of these tests use.
    fn verifier() -> Verifier {
        Verifier::from_base64(&public_key_of(SEED).unwrap()).unwrap().with_max_lifetime(3600)
    }

    /// A token issued at [`ISSUED`], valid for `lifetime_secs`, told apart from others by `jti`.
    fn token(jti: &str, lifetime_secs: i64) -> String {
        let claims =
            Claims { sub: "u1".into(), role: Role::User, iat: ISSUED, exp: ISSUED + lifetime_secs, jti: jti.into() };
        Issuer::from_base64(SEED).unwrap().sign(&claims)
    }

    fn ms(seconds: i64) -> i64 {
        seconds * 1000
    }

    fn cache(max_entries: usize, max_age: Duration) -> (TokenCache, Metrics) {
        let metrics = Metrics::default();
        (TokenCache::new(TokenCacheOptions { max_entries, max_age }, &metrics), metrics)
    }

    fn counts(metrics: &Metrics) -> (u64, u64) {
        (metrics.token_cache_hits.get(), metrics.token_cache_misses.get())
    }

    #[test]
    fn a_token_verified_once_is_a_hit_and_the_counters_count() {
        let (cache, metrics) = cache(10, Duration::from_secs(60));
        let verifier = verifier();
        let token = token("j1", 3600);
        let first = cache.verify(&verifier, &token, ms(ISSUED)).unwrap();
        assert_eq!(counts(&metrics), (0, 1));
        let again = cache.verify(&verifier, &token, ms(ISSUED + 1)).unwrap();
        assert_eq!(again, first);
        assert_eq!(counts(&metrics), (1, 1));
        assert!(metrics.encode().contains("skiff_token_cache_hits_total 1"), "{}", metrics.encode());
        assert!(metrics.encode().contains("skiff_token_cache_misses_total 1"));
    }

    #[test]
    fn an_expired_token_is_refused_even_when_cached() {
        // Trusted for longer than the token lives, so only the check on the hit can refuse it.
        let (cache, metrics) = cache(10, Duration::from_secs(3600));
        let verifier = verifier();
        let token = token("j1", 60);
        assert!(cache.verify(&verifier, &token, ms(ISSUED)).is_ok());
        let last_valid = ISSUED + 60 + LEEWAY_SECS;
        assert!(cache.verify(&verifier, &token, ms(last_valid) + 999).is_ok());
        assert_eq!(cache.verify(&verifier, &token, ms(last_valid + 1)), Err(TokenError::Expired));
        assert_eq!(counts(&metrics), (2, 1), "refused by the cache, not by verifying again");
    }

    #[test]
    fn a_token_with_one_character_changed_never_hits() {
        let (cache, metrics) = cache(10, Duration::from_secs(60));
        let verifier = verifier();
        let token = token("j1", 3600);
        cache.verify(&verifier, &token, ms(ISSUED)).unwrap();
        // One character of the signature, in the middle so the base64 stays well-formed.
        let at = token.rfind('.').unwrap() + 20;
        let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
        let changed = format!("{}{replacement}{}", &token[..at], &token[at + 1..]);
        assert!(cache.verify(&verifier, &changed, ms(ISSUED + 1)).is_err());
        assert_eq!(counts(&metrics), (0, 2));
        assert_eq!(cache.len(), 1, "the refused token is not cached");
    }

    #[test]
    fn refusals_are_never_cached() {
        // Full with one good entry: a refusal that took a place would push it out.
        let (cache, metrics) = cache(1, Duration::from_secs(60));
        let verifier = verifier();
        let good = token("good", 3600);
        cache.verify(&verifier, &good, ms(ISSUED)).unwrap();
        let expired = token("old", -3600);
        for attempt in 0..3 {
            assert!(cache.verify(&verifier, &format!("garbage.{attempt}.x"), ms(ISSUED)).is_err());
            assert_eq!(cache.verify(&verifier, &expired, ms(ISSUED)), Err(TokenError::Expired));
        }
        assert_eq!(counts(&metrics), (0, 7), "a refused token is verified again each time");
        assert_eq!(cache.len(), 1);
        cache.verify(&verifier, &good, ms(ISSUED + 1)).unwrap();
        assert_eq!(counts(&metrics), (1, 7), "the good entry is still there");
    }

    #[test]
    fn the_cache_stays_bounded_under_a_flood_of_valid_tokens() {
        let max_entries = 4;
        let (cache, metrics) = cache(max_entries, Duration::from_secs(60));
        let verifier = verifier();
        let tokens: Vec<String> = (0..3 * max_entries).map(|n| token(&format!("j{n}"), 3600)).collect();
        for token in &tokens {
            cache.verify(&verifier, token, ms(ISSUED)).unwrap();
            assert!(cache.len() <= max_entries);
        }
        assert_eq!(cache.len(), max_entries);
        // The last ones cached are kept, the first ones went first.
        cache.verify(&verifier, tokens.last().unwrap(), ms(ISSUED)).unwrap();
        cache.verify(&verifier, &tokens[0], ms(ISSUED)).unwrap();
        assert_eq!(counts(&metrics), (1, 3 * max_entries as u64 + 1));
        assert_eq!(cache.len(), max_entries);
    }

    #[test]
    fn an_entry_older_than_its_max_age_is_verified_again() {
        let (cache, metrics) = cache(10, Duration::from_secs(60));
        let verifier = verifier();
        let token = token("j1", 3600);
        cache.verify(&verifier, &token, ms(ISSUED)).unwrap();
        cache.verify(&verifier, &token, ms(ISSUED + 60) - 1).unwrap();
        assert_eq!(counts(&metrics), (1, 1));
        cache.verify(&verifier, &token, ms(ISSUED + 60)).unwrap();
        assert_eq!(counts(&metrics), (1, 2), "stale: verified again");
        // Verifying again refreshed it: a hit for another max age.
        cache.verify(&verifier, &token, ms(ISSUED + 61)).unwrap();
        assert_eq!(counts(&metrics), (2, 2));
        // A clock that went back does not make an entry young.
        cache.verify(&verifier, &token, ms(ISSUED + 10)).unwrap();
        assert_eq!(counts(&metrics), (2, 3));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn with_max_entries_zero_nothing_is_cached() {
        let (cache, metrics) = cache(0, Duration::from_secs(60));
        let verifier = verifier();
        let token = token("j1", 3600);
        for _ in 0..3 {
            cache.verify(&verifier, &token, ms(ISSUED)).unwrap();
        }
        assert_eq!(cache.len(), 0);
        assert_eq!(counts(&metrics), (0, 0), "no cache, nothing to count");
        assert_eq!(cache.verify(&verifier, &token, ms(ISSUED + 3600 + LEEWAY_SECS + 1)), Err(TokenError::Expired));
    }
}
