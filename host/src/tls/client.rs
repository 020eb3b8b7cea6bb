//! Calling a named service over TLS: its certificate must chain to the configured CA bundle
//! (not the public web's roots) and name the host the call is addressed to.

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{TlsFileError, provider, read_certificates};

/// The CA bundle a host trusts for the services it calls.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// Why a TLS connection to a peer was not made.
#[derive(Debug, thiserror::Error)]
pub enum TlsRefusal {
    /// The peer's certificate is not from the trusted CA, not for this name, or expired.
    #[error("the peer's certificate was refused: {0}")]
    Certificate(rustls::Error),
    /// The peer sent an alert (e.g. it refused our hello).
    #[error("the peer ended the handshake: {0}")]
    Alert(rustls::Error),
    /// Anything else in the handshake (closed mid-way, not TLS at all).
    #[error("TLS handshake failed: {0}")]
    Protocol(std::io::Error),
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("{0:?} is not a name a certificate can be checked against")]
    BadName(String),
}

impl ClientTls {
    /// Trusts exactly the certificates in the PEM bundle at `path`.
    pub fn from_ca_file(path: &Path) -> Result<Self, TlsFileError> {
        let mut roots = RootCertStore::empty();
        for cert in read_certificates("CA bundle", path)? {
            roots.add(cert).map_err(|e| TlsFileError::BadCa { path: path.to_owned(), detail: e.to_string() })?;
        }
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsFileError::BadCa { path: path.to_owned(), detail: e.to_string() })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// A TLS session over `stream` with the peer named `host` (a DNS name or an IP address),
    /// the handshake bounded by `within` so a peer that never answers cannot hold the caller.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
        within: Duration,
    ) -> Result<TlsStream<TcpStream>, TlsRefusal> {
        // `[::1]` in an authority is `::1` in a certificate.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned()).map_err(|_| TlsRefusal::BadName(host.to_owned()))?;
        match tokio::time::timeout(within, self.connector.connect(name, stream)).await {
            Err(_) => Err(TlsRefusal::Timeout(within)),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(classify(error)),
        }
    }
}

fn classify(error: std::io::Error) -> TlsRefusal {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(refused @ rustls::Error::InvalidCertificate(_)) => TlsRefusal::Certificate(refused.clone()),
        Some(alert @ rustls::Error::AlertReceived(_)) => TlsRefusal::Alert(alert.clone()),
        _ => TlsRefusal::Protocol(error),
    }
}
