//! The crypto capability's flags and settings. Its keys are component settings the host keeps
//! (`token_signing_key`, `token_public_key`, read from `--config`); its flags size the
//! verified-token cache.

use async_trait::async_trait;
use std::time::Duration;

use super::token::DEFAULT_MAX_LIFETIME_SECS;
use super::{Crypto, CryptoCapability, TokenCacheOptions};
use crate::capability::{Composed, HostResources};

#[derive(Debug, Clone, clap::Args)]
pub struct CryptoArgs {
    /// Verified bearer tokens remembered (by a SHA-256 of the token), so a token presented again
    /// skips its Ed25519 check; 0 turns the cache off.
    #[arg(long, env = "SKIFF_TOKEN_CACHE_ENTRIES", default_value_t = TokenCacheOptions::default().max_entries)]
    pub token_cache_entries: usize,
    /// How long a remembered token is trusted at most before its signature is checked again, in
    /// milliseconds (never past the token's own expiry).
    #[arg(long, env = "SKIFF_TOKEN_CACHE_MAX_AGE_MS", default_value_t = TokenCacheOptions::default().max_age.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_cache_max_age_ms: u64,
    /// The longest a bearer token may have been issued to live (`exp` − `iat`), in seconds; a
    /// longer one is refused even when its signature checks. Auth issues at most 900.
    #[arg(long, env = "SKIFF_TOKEN_MAX_LIFETIME_SECS", default_value_t = DEFAULT_MAX_LIFETIME_SECS, value_parser = clap::value_parser!(i64).range(1..))]
    pub token_max_lifetime_secs: i64,
}

/// The crypto capability's part of the host's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoSettings {
    pub token_cache: TokenCacheOptions,
    /// Tokens issued to live longer are refused.
    pub token_max_lifetime_secs: i64,
}

impl Default for CryptoSettings {
    fn default() -> Self {
        Self { token_cache: TokenCacheOptions::default(), token_max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS }
    }
}

#[async_trait]
impl Composed for CryptoCapability {
    type Args = CryptoArgs;
    type Settings = CryptoSettings;

    fn settings(args: &CryptoArgs) -> CryptoSettings {
        CryptoSettings {
            token_cache: TokenCacheOptions {
                max_entries: args.token_cache_entries,
                max_age: Duration::from_millis(args.token_cache_max_age_ms),
            },
            token_max_lifetime_secs: args.token_max_lifetime_secs,
        }
    }

    async fn build(settings: &CryptoSettings, host: &HostResources<'_>) -> anyhow::Result<Self> {
        Ok(Self::new(Crypto::new(host.host_settings, Crypto::bcrypt_pool(), *settings, host.metrics)))
    }
}
