//! Whether a request's body was read to its end by the time its response went out.
//!
//! A service may answer before reading the whole body (413 for a body over its limit, say).
//! hyper then closes the connection rather than read the rest, but the response does not say
//! so: a client that puts the connection back in its pool gets a broken pipe on its next
//! request. The router marks such responses `Connection: close` so the client knows, whoever
//! answered: a service, or the host itself (404, 405, 431).

use bytes::Bytes;
use http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A request body that records when it has been read to its end.
pub struct WatchedBody {
    inner: Incoming,
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
    (request.map(|inner| WatchedBody { inner, finished }), watch)
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
