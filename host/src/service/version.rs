//! One loaded version of a component: compiled once, linked once, instantiated per request or
//! kept warm between requests (see [`super::warm`]).

use http::HeaderValue;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Precompiled};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::warm::WarmPool;
use crate::runtime::{HostState, Runtime};

/// A component version, ready to serve: `InstancePre` is prepared here, once.
pub struct ComponentVersion {
    /// Human label, e.g. `v1.4.0`; defaults to the short digest.
    pub label: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// `label` and `digest` as response header values, made once here rather than per request.
    label_header: Option<HeaderValue>,
    digest_header: Option<HeaderValue>,
    pub loaded_at: SystemTime,
    /// For the request path.
    pub(crate) proxy: ProxyPre<HostState>,
    /// For the capabilities that call the component's other exports (migrations, a consumer).
    pub(crate) instance_pre: InstancePre<HostState>,
    /// Its instances idle between requests, under reuse isolation.
    pub(crate) warm: WarmPool,
    /// The interfaces it imports and exports, e.g. `skiff:sql/client@0.2.0`.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Why bytes are not a version skiff can serve.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("the component imports something skiff does not provide: {0}")]
    UnknownImport(String),
    #[error("the component does not export wasi:http/incoming-handler: {0}")]
    NotHttp(String),
    #[error(
        "this is a precompiled component (.cwasm): skiff loads those only from its own files at start; send the .wasm"
    )]
    PrecompiledNotTrusted,
}

/// Where component bytes come from, which decides whether precompiled code may be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file the operator gave the host at start (the image's component): precompiled machine
    /// code from `skiff compile` is accepted and mapped as it is.
    HostFile,
    /// Bytes from the admin API or a watched path: only WebAssembly, compiled here.
    Upload,
}

impl ComponentVersion {
    /// Compiles and links `bytes`; refuses anything that is not a `wasi:http` component whose
    /// imports skiff provides. Compilation is CPU-heavy: call it off the request path.
    ///
    /// `digest` is the component's own when `bytes` are machine code compiled from it (a `.cwasm`
    /// beside its `.wasm`), so that every pod on the same version reports the same digest; else
    /// the digest of `bytes`.
    pub fn compile(
        runtime: &Runtime,
        bytes: &[u8],
        label: Option<String>,
        digest: Option<String>,
        origin: Origin,
    ) -> Result<Self, CompileError> {
        let digest = digest.unwrap_or_else(|| digest_of(bytes));
        let component = match Engine::detect_precompiled(bytes) {
            None => Component::new(runtime.engine(), bytes).map_err(|e| CompileError::Invalid(format!("{e:#}")))?,
            Some(Precompiled::Component) if origin == Origin::HostFile => load_precompiled(runtime, bytes)?,
            Some(Precompiled::Component) => return Err(CompileError::PrecompiledNotTrusted),
            Some(Precompiled::Module) => {
                return Err(CompileError::Invalid("a precompiled core module, not a component".into()));
            }
        };
        let linker = runtime.linker().map_err(|e| CompileError::UnknownImport(format!("{e:#}")))?;
        let instance_pre: InstancePre<HostState> =
            linker.instantiate_pre(&component).map_err(|e| CompileError::UnknownImport(format!("{e:#}")))?;
        let component_type = component.component_type();
        let imports: Vec<String> = component_type.imports(runtime.engine()).map(|(name, _)| name.to_owned()).collect();
        let exports: Vec<String> = component_type.exports(runtime.engine()).map(|(name, _)| name.to_owned()).collect();
        let proxy = ProxyPre::new(instance_pre.clone()).map_err(|e| CompileError::NotHttp(format!("{e:#}")))?;
        let label = label.unwrap_or_else(|| short_digest(&digest));
        Ok(Self {
            label_header: HeaderValue::from_str(&label).ok(),
            digest_header: HeaderValue::from_str(&digest).ok(),
            label,
            digest,
            loaded_at: SystemTime::now(),
            proxy,
            instance_pre,
            warm: WarmPool::default(),
            imports,
            exports,
        })
    }

    /// `label` and `digest` as header values (`None` if one is not a valid header value).
    pub fn header_values(&self) -> (Option<&HeaderValue>, Option<&HeaderValue>) {
        (self.label_header.as_ref(), self.digest_header.as_ref())
    }
}

/// Maps machine code that `skiff compile` produced. wasmtime refuses code from another wasmtime
/// version or an incompatible engine configuration, with an error naming the difference.
#[allow(unsafe_code)]
fn load_precompiled(runtime: &Runtime, bytes: &[u8]) -> Result<Component, CompileError> {
    // SAFETY: `Component::deserialize` trusts that the bytes are what `Engine::precompile_component`
    // wrote, since it maps them as executable code. Only `Origin::HostFile` reaches this: a file
    // the operator put in the host's image or volume, as trusted as the skiff binary itself.
    // Bytes from the admin API or a watched path are refused before this point.
    unsafe { Component::deserialize(runtime.engine(), bytes) }
        .map_err(|e| CompileError::Invalid(format!("cannot load the precompiled component: {e:#}")))
}

/// A component's imports and exports, by compiling it: `skiff push` writes them into the
/// artifact's config, and refuses machine code and anything that is not a component.
pub fn component_interfaces(runtime: &Runtime, bytes: &[u8]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    anyhow::ensure!(
        Engine::detect_precompiled(bytes).is_none(),
        "this is machine code from `skiff compile`; push the .wasm (hosts compile it, or load it precompiled from their own files)"
    );
    let component = Component::new(runtime.engine(), bytes)?;
    let component_type = component.component_type();
    let imports = component_type.imports(runtime.engine()).map(|(name, _)| name.to_owned()).collect();
    let exports = component_type.exports(runtime.engine()).map(|(name, _)| name.to_owned()).collect();
    Ok((imports, exports))
}

/// Compiles a component ahead of time for this host's engine: what `skiff compile` writes, so
/// a pod starts without running the compiler.
pub fn precompile(runtime: &Runtime, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(runtime.engine().precompile_component(bytes)?)
}

/// `sha256:<hex>` of `bytes`: the digest of a component, as OCI registries write it.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The digest a component file reports: for `X.cwasm` the digest of the `X.wasm` beside it
/// (the component's own, which a registry also names), so that a pod on precompiled code and a
/// pod that compiled the `.wasm` report the same version; `None` (the file's own) otherwise.
pub async fn component_digest(path: &Path) -> Option<String> {
    let wasm = wasm_beside(path)?;
    let bytes = tokio::fs::read(&wasm).await.ok()?;
    Some(digest_of(&bytes))
}

/// For `X.cwasm`, an `X.wasm` beside it.
pub fn wasm_beside(component: &Path) -> Option<PathBuf> {
    let wasm = component.with_extension("wasm");
    (component.extension().is_some_and(|ext| ext == "cwasm") && wasm.is_file()).then_some(wasm)
}

/// Labels go into a response header: 1-64 characters of visible ASCII, no separators.
pub fn valid_label(label: &str) -> bool {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | ':');
    !label.is_empty() && label.len() <= 64 && label.chars().all(fine)
}

/// `sha256:` and the first 12 hex digits: enough to tell versions apart in a header.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256:{}", &hex[..hex.len().min(12)])
}
