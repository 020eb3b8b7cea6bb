//! TLS on the listeners and to named services (rustls, ring provider; no system OpenSSL).
//!
//! `server.rs` is the listeners' side: a certificate and key read from files, re-read when
//! they change on disk (cert-manager renews a mounted Secret by swapping the kubelet's `..data`
//! symlink), so new connections get the new certificate without a restart. `client.rs` is the
//! side that calls a named service: its certificate must chain to the configured CA bundle and
//! name the service's DNS name.

mod client;
mod server;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use client::{ClientTls, TlsRefusal};
pub use server::{ServerTls, TlsAcceptor};

/// A listener's certificate chain and private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first), e.g. a cert-manager Secret's `tls.crt`.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1), e.g. the Secret's `tls.key`.
    pub key: PathBuf,
}

/// Why a certificate, key or CA bundle could not be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Unreadable { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the TLS {what} {} holds no PEM {expected}", path.display())]
    Empty { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("the TLS {what} {} is not valid PEM: {detail}", path.display())]
    Malformed { what: &'static str, path: PathBuf, detail: String },
    #[error("the TLS key {} is not usable: {detail}", path.display())]
    BadKey { path: PathBuf, detail: String },
    #[error("the TLS key {} does not belong to the certificate {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("the TLS CA bundle {} is not usable: {detail}", path.display())]
    BadCa { path: PathBuf, detail: String },
}

/// The one crypto provider skiff uses, chosen explicitly so that no other crate's choice of
/// process-wide default can change it.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain, or a CA bundle), at least one.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::Malformed { what, path: path.to_owned(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsFileError::Empty { what, path: path.to_owned(), expected: "certificate" });
    }
    Ok(certs)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Unreadable { what, path: path.to_owned(), source })
}
