//! The listeners' certificate: read at start (a bad file stops the host with its name), then
//! checked on every handshake against the files' identity on disk and re-read when it
//! changed. A `stat` of two files per handshake costs microseconds next to the handshake's
//! own signature; it catches the kubelet's `..data` symlink swap (new inode), an in-place
//! rewrite (new mtime or length), and a plain `mv` alike, without a watcher thread.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

pub use tokio_rustls::TlsAcceptor;

use super::{TlsFileError, TlsFiles, provider, read, read_certificates};

/// A listener's TLS: the acceptor every listener of the host shares, over one reloading
/// certificate.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the certificate and key now, so that a missing, unreadable or
    /// mismatched file stops the host at start with the file's name.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsFileError> {
        let provider = provider();
        let resolver = ReloadingCert::load(files.clone(), provider.clone())?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::BadKey { path: files.key.clone(), detail: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        // The listeners speak HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// What identifies a file's content on disk without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    length: u64,
    modified_ns: i128,
}

impl FileStamp {
    /// Follows symlinks, so a swapped `..data` link gives the new file's stamp.
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            length: meta.len(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

type Stamps = (FileStamp, FileStamp);

#[derive(Debug)]
struct Loaded {
    /// The files as they were when `key` was read from them.
    stamps: Option<Stamps>,
    key: Arc<CertifiedKey>,
    /// Files seen changed but not usable (e.g. the new certificate written, its key not yet):
    /// not re-read until they change again; the previous certificate keeps serving.
    refused: Option<Stamps>,
}

/// Serves the certificate on disk: re-read on the first handshake after the files change.
#[derive(Debug)]
pub(super) struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Mutex<Loaded>,
}

impl ReloadingCert {
    fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsFileError> {
        let stamps = stamps(&files);
        let key = Arc::new(certified_key(&files, &provider)?);
        Ok(Self { files, provider, current: Mutex::new(Loaded { stamps, key, refused: None }) })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let now = stamps(&self.files);
        let mut loaded = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if now.is_none() || now == loaded.stamps || now == loaded.refused {
            // Unchanged, or gone for a moment (mid-swap): keep serving what was read.
            return loaded.key.clone();
        }
        match certified_key(&self.files, &self.provider) {
            Ok(key) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate changed on disk; new connections get the new one");
                loaded.key = Arc::new(key);
                loaded.stamps = now;
                loaded.refused = None;
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate changed on disk but is not usable; still serving the previous one");
                loaded.refused = now;
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamps(files: &TlsFiles) -> Option<Stamps> {
    Some((FileStamp::of(&files.cert)?, FileStamp::of(&files.key)?))
}

/// The chain and key from their files, checked to belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsFileError> {
    let chain = read_certificates("certificate", &files.cert)?;
    let pem = read("key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsFileError::Empty { what: "key", path: files.key.clone(), expected: "private key" }
        }
        other => TlsFileError::Malformed { what: "key", path: files.key.clone(), detail: other.to_string() },
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsFileError::Mismatch { cert: files.cert.clone(), key: files.key.clone() }
        }
        other => TlsFileError::BadKey { path: files.key.clone(), detail: other.to_string() },
    })
}
