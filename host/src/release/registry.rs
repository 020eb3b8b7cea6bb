//! Components as OCI artifacts, in the Wasm OCI artifact layout that wasm-pkg-tools, wasmCloud
//! and Spin use: an OCI image manifest whose config is `application/vnd.wasm.config.v0+json`
//! and whose one layer is the component itself, `application/wasm`. So the component's digest
//! is the layer's, whatever the manifest around it.
//!
//! Pulls name a manifest digest (`REF@sha256:…`): the manifest is checked against it, the layer
//! against the manifest, and both are cached by digest.
//!
//! A registry is not trusted to behave: a pull is bounded in size and in time ([`PullLimits`]).
//! oci-client reads a manifest whole, however long, so pulls read the manifest and the layer
//! themselves (oci-client still does the registry's token handshake): the manifest up to
//! [`MAX_MANIFEST_BYTES`], the layer up to the size its manifest declares and never past
//! `max_component_bytes`, streamed into a file beside the cache and hashed as it arrives.

use anyhow::Context;
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::cache::{Cache, Partial};
use crate::service::digest_of;

/// The layer media type of a Wasm component artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The config media type of a Wasm component artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The largest manifest read: the size the OCI distribution spec asks registries to accept.
/// A component artifact's manifest is under a kilobyte.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`HOST:PORT`) reached over plain HTTP; every other one over HTTPS.
    pub insecure: Vec<String>,
    /// A docker config file (`~/.docker/config.json`, or a Kubernetes pull secret's
    /// `.dockerconfigjson`) with credentials per registry; anonymous without one.
    pub auth_file: Option<PathBuf>,
    pub limits: PullLimits,
}

/// Bounds on a pull, so that a registry can neither exhaust a host's memory nor hold a release
/// forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// The largest component pulled: a manifest declaring a larger layer is refused unread.
    pub max_component_bytes: u64,
    /// To connect, and between two reads of an answer.
    pub timeout: Duration,
    /// For the whole pull (token, manifest and component).
    pub deadline: Duration,
}

impl Default for PullLimits {
    fn default() -> Self {
        Self {
            max_component_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            deadline: Duration::from_secs(300),
        }
    }
}

/// Why a component could not be pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0} names no digest: a release names REF@sha256:<64 hex digits>, so every pod runs the same bytes")]
    NoDigest(String),
    #[error("{0} is not an OCI reference: {1}")]
    BadReference(String, String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{0} is not a Wasm component artifact: {1}")]
    NotComponent(String, String),
    /// Larger than allowed, or than its manifest declares: refused as it arrives.
    #[error("{what} of {reference} {why}")]
    TooLarge { reference: String, what: &'static str, why: String },
    /// The registry did not answer, or refused, or too slowly: worth trying again.
    #[error("pulling {0}: {1}")]
    Registry(String, String),
}

impl PullError {
    /// A short name for metrics and the status.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoDigest(_) | Self::BadReference(..) => "bad-reference",
            Self::DigestMismatch { .. } => "digest-mismatch",
            Self::NotComponent(..) => "not-a-component",
            Self::TooLarge { .. } => "too-large",
            Self::Registry(..) => "registry-unavailable",
        }
    }

    /// Whether the same pull may succeed later (the registry was down, or the push not done).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry(..))
    }
}

/// A component pulled (or found in the cache), its digest checked.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// `REF@sha256:…` as asked for.
    pub reference: String,
    /// The component's own digest: the layer's.
    pub digest: String,
    pub bytes: Vec<u8>,
    /// Whether it came from the cache without asking the registry.
    pub cached: bool,
}

/// What `skiff push` pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `REGISTRY/REPO@sha256:<manifest digest>`: what a release file names.
    pub reference: String,
    /// The component's own digest (the layer's), which hosts report.
    pub component_digest: String,
}

/// A registry client with a cache by digest.
pub struct Registry {
    client: Client,
    /// For pulls: oci-client's own reads are unbounded.
    http: reqwest::Client,
    options: RegistryOptions,
    cache: Option<Cache>,
}

impl Registry {
    pub fn new(options: RegistryOptions, cache: Option<Cache>) -> Self {
        let protocol = if options.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(options.insecure.clone())
        };
        let timeout = Some(options.limits.timeout);
        let config =
            ClientConfig { protocol, connect_timeout: timeout, read_timeout: timeout, ..ClientConfig::default() };
        let http = reqwest::Client::builder()
            .connect_timeout(options.limits.timeout)
            .read_timeout(options.limits.timeout)
            .user_agent(concat!("skiff/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client with rustls and webpki roots always builds");
        Self { client: Client::new(config), http, options, cache }
    }

    /// Credentials for `registry` from the docker config file, else anonymous.
    async fn auth(&self, registry: &str) -> anyhow::Result<RegistryAuth> {
        let Some(file) = &self.options.auth_file else { return Ok(RegistryAuth::Anonymous) };
        // An optional pull secret that is not there: anonymous, as for a public registry.
        let text = match tokio::fs::read(file).await {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
            Err(error) => {
                return Err(error).with_context(|| format!("reading registry credentials {}", file.display()));
            }
        };
        credentials_for(&text, registry).with_context(|| format!("registry credentials in {}", file.display()))
    }

    /// The component `reference` names (`REF@sha256:<manifest digest>`), from the cache or the
    /// registry; the manifest and the layer are checked against their digests either way.
    /// Bounded by [`PullLimits`]: past its deadline, the pull is a transient failure.
    pub async fn pull(&self, reference: &str) -> Result<Pulled, PullError> {
        let deadline = self.options.limits.deadline;
        match tokio::time::timeout(deadline, self.pull_unbounded_in_time(reference)).await {
            Ok(pulled) => pulled,
            Err(_) => Err(PullError::Registry(
                reference.to_owned(),
                format!("not pulled within the pull deadline of {} s", deadline.as_secs_f64()),
            )),
        }
    }

    async fn pull_unbounded_in_time(&self, reference: &str) -> Result<Pulled, PullError> {
        let parsed: Reference =
            reference.parse().map_err(|e| PullError::BadReference(reference.to_owned(), format!("{e}")))?;
        let manifest_digest =
            parsed.digest().map(str::to_owned).ok_or_else(|| PullError::NoDigest(reference.into()))?;
        if !is_sha256(&manifest_digest) {
            return Err(PullError::NoDigest(reference.to_owned()));
        }
        // Asked of the registry once, and only if something is not cached.
        let mut authorization = None;
        let (manifest_bytes, manifest_cached) = match self.cached(&manifest_digest).await {
            Some(bytes) => (bytes, true),
            None => {
                let request = Fetch { reference, parsed: &parsed, what: "the manifest", digest: &manifest_digest };
                let authorization = self.authorization(&request, &mut authorization).await?;
                let mut bytes = Vec::new();
                let limit = Limit::AtMost(MAX_MANIFEST_BYTES);
                let actual = self.fetch(&request, OCI_IMAGE_MEDIA_TYPE, authorization, limit, &mut bytes).await?;
                check_digest("the manifest", &manifest_digest, &actual)?;
                (bytes, false)
            }
        };
        let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| PullError::NotComponent(reference.to_owned(), format!("its manifest does not parse: {e}")))?;
        let layer = component_layer(&manifest).map_err(|why| PullError::NotComponent(reference.to_owned(), why))?;
        let declared = u64::try_from(layer.size).map_err(|_| {
            PullError::NotComponent(reference.to_owned(), format!("its layer declares {} bytes", layer.size))
        })?;
        let max = self.options.limits.max_component_bytes;
        if declared > max {
            let why = format!("declares {declared} bytes, more than the {max} a component may have");
            return Err(PullError::TooLarge { reference: reference.to_owned(), what: "the component", why });
        }
        let (bytes, layer_cached) = match self.cached(&layer.digest).await {
            Some(bytes) => (bytes, true),
            None => {
                let request = Fetch { reference, parsed: &parsed, what: "the component", digest: &layer.digest };
                let authorization = self.authorization(&request, &mut authorization).await?;
                let folder = self.cache.as_ref().map_or_else(std::env::temp_dir, Cache::partial_dir);
                let io_error = |error: std::io::Error| {
                    PullError::Registry(reference.to_owned(), format!("writing the component aside: {error}"))
                };
                let mut partial = Partial::create(&folder).await.map_err(io_error)?;
                let limit = Limit::Exactly(declared);
                let actual = self.fetch(&request, WASM_LAYER_MEDIA_TYPE, authorization, limit, partial.file()).await?;
                check_digest("the component", &layer.digest, &actual)?;
                let bytes = partial.read().await.map_err(io_error)?;
                if let Some(cache) = &self.cache
                    && let Err(error) = cache.keep(&layer.digest, partial).await
                {
                    // A cache that cannot be written costs a pull at the next start, nothing more.
                    tracing::warn!(dir = %cache.dir().display(), %error, "cannot cache a pulled component");
                }
                (bytes, false)
            }
        };
        // A cached blob was checked when read; a pulled one as it arrived.
        if let Some(cache) = &self.cache
            && !manifest_cached
            && let Err(error) = cache.put(&manifest_digest, &manifest_bytes).await
        {
            tracing::warn!(dir = %cache.dir().display(), %error, "cannot cache a pulled manifest");
        }
        Ok(Pulled {
            reference: reference.to_owned(),
            digest: layer.digest,
            bytes,
            cached: manifest_cached && layer_cached,
        })
    }

    /// The `Authorization` header for pulls from `request`'s repository: a token from the
    /// registry's handshake (oci-client's), or basic credentials, or none; asked once per pull.
    async fn authorization(
        &self,
        request: &Fetch<'_>,
        known: &mut Option<Option<String>>,
    ) -> Result<Option<String>, PullError> {
        if let Some(header) = known {
            return Ok(header.clone());
        }
        let failed = |error: &dyn std::fmt::Display| {
            PullError::Registry(request.reference.to_owned(), format!("authenticating: {error:#}"))
        };
        let auth = self.auth(request.parsed.resolve_registry()).await.map_err(|e| failed(&e))?;
        let token = self.client.auth(request.parsed, &auth, RegistryOperation::Pull).await.map_err(|e| failed(&e))?;
        let header = match (token, auth) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, RegistryAuth::Basic(user, password)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            (None, _) => None,
        };
        *known = Some(header.clone());
        Ok(header)
    }

    /// GETs a manifest or a blob into `out`, refusing it as soon as it passes `limit`; the
    /// SHA-256 digest of what arrived.
    async fn fetch(
        &self,
        request: &Fetch<'_>,
        accept: &str,
        authorization: Option<String>,
        limit: Limit,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<String, PullError> {
        let Fetch { reference, parsed, what, digest } = *request;
        let registry = parsed.resolve_registry();
        let scheme = if self.options.insecure.iter().any(|insecure| insecure == registry) { "http" } else { "https" };
        let kind = if what == "the manifest" { "manifests" } else { "blobs" };
        let url = format!("{scheme}://{registry}/v2/{}/{kind}/{digest}", parsed.repository());
        let timeout = self.options.limits.timeout;
        let failed = |error: reqwest::Error| {
            let why = if error.is_timeout() {
                format!("no answer within {} s", timeout.as_secs_f64())
            } else {
                format!("{:#}", anyhow::Error::from(error))
            };
            PullError::Registry(reference.to_owned(), format!("{what}: {why}"))
        };
        let mut get = self.http.get(&url).header(http::header::ACCEPT, accept);
        if let Some(authorization) = authorization {
            get = get.header(http::header::AUTHORIZATION, authorization);
        }
        let mut response = get.send().await.map_err(failed)?;
        if !response.status().is_success() {
            let why = format!("{what}: the registry answered {}", response.status());
            return Err(PullError::Registry(reference.to_owned(), why));
        }
        let too_large = |why: String| PullError::TooLarge { reference: reference.to_owned(), what, why };
        if let Some(length) = response.content_length()
            && !limit.allows_length(length)
        {
            return Err(too_large(format!("is sent as {length} bytes, {}", limit.describe())));
        }
        let mut received = 0u64;
        let mut hasher = Sha256::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            received += chunk.len() as u64;
            if received > limit.max() {
                return Err(too_large(format!("passed {} bytes, {}", limit.max(), limit.describe())));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(|error| {
                PullError::Registry(reference.to_owned(), format!("{what}: writing it aside: {error}"))
            })?;
        }
        out.flush().await.map_err(|error| PullError::Registry(reference.to_owned(), format!("{what}: {error}")))?;
        if let Limit::Exactly(declared) = limit
            && received != declared
        {
            let why =
                format!("{what}: the answer ended after {received} of the {declared} bytes its manifest declares");
            return Err(PullError::Registry(reference.to_owned(), why));
        }
        Ok(format!("sha256:{:x}", hasher.finalize()))
    }

    async fn cached(&self, digest: &str) -> Option<Vec<u8>> {
        self.cache.as_ref()?.get(digest).await
    }

    /// Pushes `component` (WebAssembly component bytes) to `reference` (`REGISTRY/REPO:TAG`) as
    /// a Wasm artifact; `imports` and `exports` go into its config.
    pub async fn push(
        &self,
        reference: &str,
        component: Vec<u8>,
        imports: Vec<String>,
        exports: Vec<String>,
    ) -> anyhow::Result<Pushed> {
        let parsed: Reference = reference.parse().with_context(|| format!("{reference} is not an OCI reference"))?;
        let auth = self.auth(parsed.resolve_registry()).await?;
        self.client.store_auth_if_needed(parsed.resolve_registry(), &auth).await;
        let component_digest = digest_of(&component);
        let config = serde_json::json!({
            "created": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [component_digest],
            "component": { "imports": imports, "exports": exports },
        });
        let config = Config::new(serde_json::to_vec(&config)?, WASM_CONFIG_MEDIA_TYPE.into(), None);
        let layer = ImageLayer::new(component, WASM_LAYER_MEDIA_TYPE.into(), None);
        let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.into());
        manifest.annotations = Some(BTreeMap::from([(
            "org.opencontainers.image.created".to_owned(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )]));
        self.client.push_blob(&parsed, &layer.data, &component_digest).await.context("pushing the component")?;
        self.client.push_blob(&parsed, &config.data, &manifest.config.digest).await.context("pushing the config")?;
        // The manifest's bytes are ours, so its digest (what pods are told to run) is known
        // exactly, whatever the registry answers.
        let body = serde_json::to_vec(&manifest)?;
        let manifest_digest = digest_of(&body);
        self.client
            .push_manifest_raw(&parsed, body, http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE))
            .await
            .context("pushing the manifest")?;
        let repository = format!("{}/{}", parsed.registry(), parsed.repository());
        Ok(Pushed { reference: format!("{repository}@{manifest_digest}"), component_digest })
    }
}

/// One manifest or blob of a pull.
#[derive(Clone, Copy)]
struct Fetch<'a> {
    reference: &'a str,
    parsed: &'a Reference,
    what: &'static str,
    digest: &'a str,
}

/// How many bytes an answer may have.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// A manifest: its size is not declared anywhere.
    AtMost(u64),
    /// A blob: the size its manifest declares (already checked against the maximum).
    Exactly(u64),
}

impl Limit {
    fn max(self) -> u64 {
        match self {
            Self::AtMost(max) | Self::Exactly(max) => max,
        }
    }

    fn allows_length(self, length: u64) -> bool {
        match self {
            Self::AtMost(max) => length <= max,
            // A shorter answer is cut off, which the end of the read reports.
            Self::Exactly(declared) => length <= declared,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::AtMost(max) => format!("more than the {max} allowed"),
            Self::Exactly(declared) => format!("while its manifest declares {declared}"),
        }
    }
}

fn check_digest(what: &str, expected: &str, actual: &str) -> Result<(), PullError> {
    if actual == expected {
        return Ok(());
    }
    Err(PullError::DigestMismatch { what: what.to_owned(), expected: expected.to_owned(), actual: actual.to_owned() })
}

fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The manifest's one component layer.
fn component_layer(manifest: &OciImageManifest) -> Result<oci_client::manifest::OciDescriptor, String> {
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(format!("its config is {}, not {WASM_CONFIG_MEDIA_TYPE}", manifest.config.media_type));
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE && is_sha256(&layer.digest) => Ok(layer.clone()),
        [layer] => Err(format!("its layer is {} {}, not {WASM_LAYER_MEDIA_TYPE}", layer.media_type, layer.digest)),
        layers => Err(format!("it has {} layers, not one component", layers.len())),
    }
}

/// `registry`'s credentials in a docker config file (`{"auths": {"HOST": {"auth": base64}}}`,
/// or `username`/`password`), else anonymous.
fn credentials_for(config: &[u8], registry: &str) -> anyhow::Result<RegistryAuth> {
    #[derive(serde::Deserialize)]
    struct DockerConfig {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let config: DockerConfig = serde_json::from_slice(config).context("not a docker config file")?;
    // Keys may be `host`, `host:port` or a URL (`https://host/v1/`).
    let host = |key: &str| {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or_default().to_owned()
    };
    let Some(entry) = config.auths.iter().find(|(key, _)| host(key) == registry).map(|(_, entry)| entry) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(username.clone(), password.clone()));
    }
    let Some(auth) = &entry.auth else { return Ok(RegistryAuth::Anonymous) };
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).context("auth is not base64")?;
    let decoded = String::from_utf8(decoded).context("auth is not text")?;
    let (username, password) = decoded.split_once(':').context("auth is not USER:PASSWORD")?;
    Ok(RegistryAuth::Basic(username.to_owned(), password.to_owned()))
}

/// The registry (`HOST:PORT`) of `reference`.
pub fn registry_of(reference: &str) -> anyhow::Result<String> {
    let parsed: Reference = reference.parse().with_context(|| format!("{reference} is not an OCI reference"))?;
    Ok(parsed.resolve_registry().to_owned())
}

/// The docker config file credentials come from by default: `$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`, if there is one.
pub fn default_auth_file() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")))?;
    let file = dir.join("config.json");
    file.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_a_docker_config_file() {
        let config = br#"{"auths": {
            "https://registry.example:5000/v1/": {"auth": "dXNlcjpzM2NyZXQ="},
            "other.example": {"username": "u", "password": "p"}
        }}"#;
        let basic = |user: &str, password: &str| format!("{:?}", RegistryAuth::Basic(user.into(), password.into()));
        assert_eq!(format!("{:?}", credentials_for(config, "registry.example:5000").unwrap()), basic("user", "s3cret"));
        assert_eq!(format!("{:?}", credentials_for(config, "other.example").unwrap()), basic("u", "p"));
        assert_eq!(format!("{:?}", credentials_for(config, "nobody.example").unwrap()), "Anonymous");
    }

    #[test]
    fn only_wasm_artifacts_are_components() {
        let layer = ImageLayer::new(b"\0asm".to_vec(), WASM_LAYER_MEDIA_TYPE.into(), None);
        let config = Config::new(b"{}".to_vec(), WASM_CONFIG_MEDIA_TYPE.into(), None);
        let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        assert_eq!(component_layer(&manifest).unwrap().digest, digest_of(b"\0asm"));
        let image = OciImageManifest::build(&[layer], &Config::new(b"{}".to_vec(), "application/x".into(), None), None);
        assert!(component_layer(&image).is_err());
    }
}
