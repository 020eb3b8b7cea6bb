//! A small HTTP/1 client for the admin API, used by `skiff swap`, `skiff versions` and the
//! like. Plain HTTP only: the admin port lives on loopback or inside the cluster.

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;

/// Rollouts compile and smoke-test the component before answering.
const TIMEOUT: Duration = Duration::from_secs(120);

pub struct AdminClient {
    authority: String,
    token: String,
}

/// A refusal from the admin API, with its problem+json detail.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct Refused {
    pub status: StatusCode,
    pub detail: String,
}

impl AdminClient {
    pub fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("admin URL {url}"))?;
        anyhow::ensure!(uri.scheme_str() == Some("http"), "the admin URL must be http://HOST:PORT, not {url}");
        let authority = uri.authority().context("the admin URL has no host")?.to_string();
        let token =
            token.filter(|t| !t.is_empty()).context("no admin token: set SKIFF_ADMIN_TOKEN or --admin-token")?;
        Ok(Self { authority, token })
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
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
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
