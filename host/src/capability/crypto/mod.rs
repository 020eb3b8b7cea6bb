//! `skiff:crypto`: bcrypt, token verification and token signing, natively in the host.
//!
//! Both are CPU-bound, and compiled to WebAssembly they ran well below native speed: the
//! benchmark suite measured the login rate at 0.70 of native bcrypt, and Ed25519 verification
//! as a third of the users service's CPU time (see docs/benchmarks.md). `host.rs` implements
//! the WIT traits; `token.rs` is the token format itself; `cache.rs` remembers the tokens
//! already verified.

mod cache;
mod host;
mod settings;
pub mod token;

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;
use wasmtime::component::{HasData, Linker};

use super::{CallerGone, Capability, CapabilityStore, ServiceSetup};
use crate::metrics::Metrics;
use cache::TokenCache;
pub use cache::TokenCacheOptions;
pub use settings::{CryptoArgs, CryptoSettings};
use token::{Issuer, Verifier};

// The only place the crypto world is turned into Rust.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "skiff:crypto/crypto-user",
        imports: { default: async | trappable },
    });
}

/// The setting that holds a service's token public key (base64 of the 32-byte Ed25519 key).
pub const TOKEN_PUBLIC_KEY: &str = "token_public_key";
/// The setting that holds the token signing key (base64 of the 32-byte Ed25519 seed).
pub const TOKEN_SIGNING_KEY: &str = "token_signing_key";

/// Highest bcrypt cost the host hashes at (about a second per hash on one core; each step
/// doubles it). A component asking for more gets an error, not a hash.
pub const MAX_BCRYPT_COST: u32 = 14;
/// How `passwords.hash` says the bcrypt queue is full; the component answers 503.
pub const BUSY_PREFIX: &str = "overloaded:";
/// How `passwords.hash` says it did not hash because nobody waits for the answer any more.
pub const CALLER_GONE_PREFIX: &str = "caller-gone:";
/// Hashes that may wait for a bcrypt thread, per thread; past it `hash` is shed.
const QUEUED_HASHES_PER_SLOT: usize = 2;

/// What a service's instances verify and sign tokens with, and the process-wide bcrypt pool.
pub struct Crypto {
    verifier: Result<Verifier, String>,
    /// Tokens `verifier` accepted lately, so a client's next requests skip the signature check.
    token_cache: TokenCache,
    issuer: Result<Issuer, String>,
    /// One bcrypt at a time per core: more would only time-slice the cores, while each login
    /// holds an instance slot and a connection.
    bcrypt_slots: Arc<Semaphore>,
    /// Work waiting for or holding a bcrypt slot; bounds the queue.
    bcrypt_queue: BcryptQueue,
}

/// Counts bcrypt work queued or running, so hashing can be shed instead of the queue growing.
#[derive(Clone)]
struct BcryptQueue {
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// A place in the [`BcryptQueue`], given up on drop.
struct Queued(Arc<AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl BcryptQueue {
    /// A place if fewer than `limit` are taken.
    fn try_join(&self) -> Option<Queued> {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limit).then_some(n + 1))
            .ok()
            .map(|_| Queued(self.queued.clone()))
    }

    /// A place whatever the count.
    fn join(&self) -> Queued {
        self.queued.fetch_add(1, Ordering::AcqRel);
        Queued(self.queued.clone())
    }
}

impl Crypto {
    /// From the service's settings; the public key is parsed once here, not per request. The
    /// token cache counts its hits and misses in `metrics`.
    pub fn new(
        config: &[(String, String)],
        bcrypt_slots: Arc<Semaphore>,
        settings: CryptoSettings,
        metrics: &Metrics,
    ) -> Self {
        let verifier = match config.iter().rev().find(|(key, _)| key == TOKEN_PUBLIC_KEY) {
            Some((_, key)) => Verifier::from_base64(key)
                .map(|verifier| verifier.with_max_lifetime(settings.token_max_lifetime_secs))
                .map_err(|e| format!("{TOKEN_PUBLIC_KEY}: {e}")),
            None => Err(format!("{TOKEN_PUBLIC_KEY} is not configured")),
        };
        let issuer = match config.iter().rev().find(|(key, _)| key == TOKEN_SIGNING_KEY) {
            Some((_, seed)) => Issuer::from_base64(seed).map_err(|e| format!("{TOKEN_SIGNING_KEY}: {e}")),
            None => Err(format!("{TOKEN_SIGNING_KEY} is not configured")),
        };
        let limit = bcrypt_slots.available_permits() * (1 + QUEUED_HASHES_PER_SLOT);
        let bcrypt_queue = BcryptQueue { queued: Arc::new(AtomicUsize::new(0)), limit };
        let token_cache = TokenCache::new(settings.token_cache, metrics);
        Self { verifier, token_cache, issuer, bcrypt_slots, bcrypt_queue }
    }

    /// Settings this capability reads that components must not see (secrets the host keeps).
    pub const HOST_ONLY_SETTINGS: &[&str] = &[TOKEN_SIGNING_KEY];

    /// A pool sized to this machine's cores.
    pub fn bcrypt_pool() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
    }
}

/// What a crypto call sees: the host's [`Crypto`] and whether the instance's caller still waits.
pub struct CryptoView {
    crypto: Arc<Crypto>,
    caller_gone: CallerGone,
}

struct HasCrypto;

impl HasData for HasCrypto {
    type Data<'a> = CryptoView;
}

/// Links `skiff:crypto`; `get` gives a call the instance's [`CryptoView`].
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> CryptoView) -> anyhow::Result<()> {
    bindings::skiff::crypto::passwords::add_to_linker::<T, HasCrypto>(linker, get)?;
    bindings::skiff::crypto::tokens::add_to_linker::<T, HasCrypto>(linker, get)?;
    bindings::skiff::crypto::issuing::add_to_linker::<T, HasCrypto>(linker, get)?;
    Ok(())
}

/// The crypto capability: one [`Crypto`] (key and bcrypt pool) for every service of the host.
pub struct CryptoCapability {
    crypto: Arc<Crypto>,
}

impl CryptoCapability {
    pub fn new(crypto: Crypto) -> Self {
        Self { crypto: Arc::new(crypto) }
    }
}

#[async_trait]
impl Capability for CryptoCapability {
    type Service = Arc<Crypto>;
    type Instance = Arc<Crypto>;

    fn name(&self) -> &'static str {
        "crypto"
    }

    fn add_to_linker<T: CapabilityStore>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        add_to_linker(linker, |store| CryptoView {
            crypto: store.capability::<Self>().state.clone(),
            caller_gone: store.caller_gone().clone(),
        })
    }

    async fn configure(&self, _service: &ServiceSetup<'_>) -> anyhow::Result<Arc<Crypto>> {
        Ok(self.crypto.clone())
    }

    fn instance(&self, service: &Arc<Crypto>) -> Arc<Crypto> {
        service.clone()
    }
}
