//! Whether a request's body was read to its end by the time its response went out.
//!
//! A listener may answer before reading the whole body (413 for a body over its limit, 404, 431,
//! the admin API's 401). The connection cannot be reused then, and the response must say so: a
//! client that puts the connection back in its pool would get a broken pipe on its next request.
//! So every listener marks such responses `Connection: close`.
//!
//! Closing at once would lose the answer: a client still sending gets a reset, and the kernel
//! throws away the response it had not read yet. So an unread body is drained for a while
//! (lingering close, as web servers do): at most [`LINGER_MAX_BYTES`] within [`LINGER_TIMEOUT`],
//! on a task of its own; the connection closes when the body ends or the drain gives up.

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;

/// Most a refused body is drained after its answer, before the connection is closed.
pub const LINGER_MAX_BYTES: usize = 16 << 20;
/// Longest a refused body is drained after its answer.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body that records when it has been read to its end.
pub struct WatchedBody {
    /// `None` only once dropped.
    inner: Option<Incoming>,
    finished: Arc<AtomicBool>,
}

/// The other half of a [`WatchedBody`]: asks whether the body was read to its end.
pub struct BodyWatch {
    finished: Arc<AtomicBool>,
}

impl BodyWatch {
    pub fn left_unread(&self) -> bool {
        !self.finished.load(Ordering::Acquire)
    }
}

/// Wraps the request's body; a body with nothing to read counts as read.
pub fn watch_request(request: Request<Incoming>) -> (Request<WatchedBody>, BodyWatch) {
    let finished = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let watch = BodyWatch { finished: finished.clone() };
    (request.map(|inner| WatchedBody { inner: Some(inner), finished }), watch)
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let ended = matches!(polled, Poll::Ready(None)) || inner.is_end_stream();
        if ended {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Incoming::size_hint).unwrap_or_default()
    }
}

impl Drop for WatchedBody {
    /// A body dropped before its end is drained for a while, so its answer reaches the client.
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else { return };
        if self.finished.load(Ordering::Acquire) || body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(body));
        }
    }
}

/// Reads and throws away what the client still sends, within the lingering bounds; hyper closes
/// the connection once the body ends or is dropped here.
async fn linger(mut body: Incoming) {
    let drain = async {
        let mut drained = 0;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, Bytes::len);
            if drained > LINGER_MAX_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}
