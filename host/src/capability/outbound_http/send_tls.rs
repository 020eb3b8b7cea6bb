//! Sending a component's request to a named service over TLS. wasmtime's default sender
//! trusts the public web's roots and does not bound the handshake; a service inside the
//! cluster has a certificate from the cluster's own CA, and a peer that never finishes its
//! handshake must fail the call within the connect timeout, not hang the component.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tracing::Instrument;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::timeouts::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
use crate::tls::{ClientTls, TlsRefusal};

type ResponseFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// Sends `request` (its URI already `https://HOST:PORT/…`) to `service`, checking the peer's
/// certificate against `tls` and HOST. Every step is bounded by `options`' timeouts.
pub(super) async fn send_over_tls(
    mut request: http::Request<WasiBody>,
    options: RequestOptions,
    tls: Arc<ClientTls>,
    service: String,
) -> Result<(http::Response<WasiBody>, ResponseFuture), Error> {
    let authority = request.uri().authority().cloned().ok_or(Error::HttpRequestUriInvalid)?;
    let connect_timeout = options.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options.first_byte_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
    let between_bytes_timeout = options.between_bytes_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
    let port = authority.port_u16().unwrap_or(443);
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect((authority.host(), port))).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(error)) => return Err(Error::Connect(error)),
        Err(_) => return Err(Error::ConnectionTimeout),
    };
    let _ = tcp.set_nodelay(true);
    let stream = tls.connect(authority.host(), tcp, connect_timeout).await.map_err(|refusal| {
        // The operator's reason goes to the log; the component gets wasi:http's error code.
        tracing::warn!(%service, peer = %authority, error = %refusal, "outbound TLS to a service refused");
        match refusal {
            TlsRefusal::Certificate(_) => Error::TlsCertificateError,
            TlsRefusal::Alert(rustls::Error::AlertReceived(alert)) => {
                Error::TlsAlertReceived { alert_id: Some(u8::from(alert)), alert_message: Some(format!("{alert:?}")) }
            }
            TlsRefusal::Timeout(_) => Error::ConnectionTimeout,
            TlsRefusal::BadName(_) => Error::HttpRequestUriInvalid,
            TlsRefusal::Alert(_) | TlsRefusal::Protocol(_) => Error::TlsProtocolError,
        }
    })?;
    let (mut sender, connection) =
        tokio::time::timeout(connect_timeout, hyper::client::conn::http1::handshake(TokioIo::new(stream)))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    let connection = tokio::spawn(connection.in_current_span());
    // Over a connection of its own, the request line carries the path only.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|incoming| BetweenBytes::new(incoming, between_bytes_timeout).boxed_unsync());
    let done: ResponseFuture = Box::new(async move {
        match connection.await {
            Ok(outcome) => outcome.map_err(Error::from),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, done))
}

/// A response body that fails when the peer goes quiet for longer than `limit` between frames.
struct BetweenBytes {
    incoming: hyper::body::Incoming,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl BetweenBytes {
    fn new(incoming: hyper::body::Incoming, limit: Duration) -> Self {
        Self { incoming, limit, deadline: Box::pin(tokio::time::sleep(limit)) }
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = Instant::now() + self.limit;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Error::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
