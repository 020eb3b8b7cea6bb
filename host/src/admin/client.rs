//! A small HTTP/1 client for the admin API, used by `skiff swap`, `skiff versions` and the
//! like. Plain HTTP, or HTTPS when the host's listeners serve TLS (the admin URL `https://…`,
//! the host's certificate checked against the CA bundle given).

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;

use crate::tls::ClientTls;

/// Rollouts compile and smoke-test the component before answering.
const TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AdminClient {
    authority: String,
    token: String,
    /// For an `https://` admin URL: the CA its certificate must chain to.
    tls: Option<ClientTls>,
}

/// A refusal from the admin API, with its problem+json detail.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct Refused {
    pub status: StatusCode,
    pub detail: String,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>, ca: Option<&Path>) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("admin URL {url}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => None,
            Some("https") => {
                let ca = ca.with_context(|| {
                    format!(
                        "the admin URL {url} is https: give the CA of the host's certificate (SKIFF_TLS_CA or --tls-ca)"
                    )
                })?;
                Some(ClientTls::from_ca_file(ca)?)
            }
            _ => anyhow::bail!("the admin URL must be http://HOST:PORT or https://HOST:PORT, not {url}"),
        };
        let authority = uri.authority().context("the admin URL has no host")?.to_string();
        let token =
            token.filter(|t| !t.is_empty()).context("no admin token: set SKIFF_ADMIN_TOKEN or --admin-token")?;
        Ok(Self { authority, token, tls })
    }

    /// Sends one request; a 2xx answer's JSON body, or the refusal.
    pub async fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        tokio::time::timeout(TIMEOUT, self.send_once(method, path, content_type, body))
            .await
            .context("the admin API did not answer in time")?
    }

    async fn send_once(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to the admin API at {}", self.authority))?;
        let mut sender = match &self.tls {
            None => {
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                sender
            }
            Some(tls) => {
                let host = self.authority.parse::<http::uri::Authority>()?.host().to_owned();
                let stream = tls
                    .connect(&host, stream, CONNECT_TIMEOUT)
                    .await
                    .with_context(|| format!("TLS to the admin API at {}", self.authority))?;
                let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                sender
            }
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let detail =
            value["detail"].as_str().map_or_else(|| String::from_utf8_lossy(&bytes).into_owned(), str::to_owned);
        Err(Refused { status, detail }.into())
    }
}
